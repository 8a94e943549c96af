//! One app, many tenants: Graph's write budget for the whole app registration.
//!
//! Graph counts licence writes against several limits at once (its throttling-limits page,
//! identity and access service): 3,000 per 150 s per app and tenant, 18,000 per 5 minutes per
//! tenant for all apps, and **70,000 per 5 minutes per app across all tenants**. A partner app
//! serving hundreds of customer tenants hits the last one first. Each tenant's client paces
//! itself to the first ([`super::client`]); every client of one app in one process also takes
//! its writes from one [`AppBudget`], whose share is the app's budget divided by the replicas
//! sharing it ([`set_replicas`]).
//!
//! Fair: when writes wait, the next to go is the tenant that wrote least in the window, so a
//! tenant with 100,000 changes does not hold back 999 with ten each.
//!
//! Adaptive: a 429 whose `x-ms-throttle-scope` starts with `Application` (the app-wide limit)
//! lowers the pace towards what was accepted (at most halving it at once, since another
//! replica may have caused it); after a calm window it climbs back 10 %, never above the
//! documented budget.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
// tokio's clock: paused in tests, the wall's otherwise.
use tokio::time::Instant;

/// Graph's documented write budget per app across all tenants.
pub const GRAPH_APP_WRITE_BUDGET: (u32, Duration) = (70_000, Duration::from_secs(300));

/// Replicas sharing the app's budget (sharded runs); 1 otherwise.
static REPLICAS: AtomicUsize = AtomicUsize::new(1);
/// When fewer replicas than before were last seen, and how many there had been: a replica
/// gone leaves its writes in the service's window, so the survivors keep the smaller share
/// for one window.
static SHRUNK: Mutex<Option<(Instant, usize)>> = Mutex::new(None);

/// The number of live replicas the app's budget is shared by (each paces to its share).
pub fn set_replicas(n: usize) {
    let n = n.max(1);
    let before = REPLICAS.swap(n, Ordering::Relaxed);
    if n < before {
        let mut shrunk = SHRUNK.lock().expect("replicas lock");
        let keep = shrunk.map_or(before, |(_, b)| b.max(before));
        *shrunk = Some((Instant::now(), keep));
    }
}

/// The replicas to divide by now: the current count, or the count before the last drop for
/// one `window` after it.
fn replicas_now(window: Duration) -> usize {
    let current = REPLICAS.load(Ordering::Relaxed).max(1);
    match *SHRUNK.lock().expect("replicas lock") {
        Some((at, before)) if at.elapsed() < window => before.max(current),
        _ => current,
    }
}

/// The scope a 429 names (`x-ms-throttle-scope: <Scope>/<Limit>/<ApplicationId>/<TenantId>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleScope {
    /// `Application`: every request of the app, across all tenants.
    Application,
    /// `Tenant_Application` or `Tenant` (or none said): this tenant's.
    Tenant,
}

impl ThrottleScope {
    pub fn parse(header: Option<&str>) -> ThrottleScope {
        match header.and_then(|h| h.split('/').next()).map(str::trim) {
            Some(s) if s.eq_ignore_ascii_case("Application") => ThrottleScope::Application,
            _ => ThrottleScope::Tenant,
        }
    }
}

pub struct AppBudget {
    budget: u32,
    window: Duration,
    /// Replicas sharing it, when fixed (tests); otherwise [`set_replicas`]'s.
    replicas: Option<usize>,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    tickets: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Writes in the window: (when, tenant, how many, ticket). "When" is the answer's arrival
    /// once there is one ([`AppBudget::settle`]): the service counted them no later than that.
    sent: VecDeque<(Instant, u64, u32, u64)>,
    /// Writes waiting: ticket → tenant.
    waiting: BTreeMap<u64, u64>,
    /// The share of the budget the service seems to grant (1: all of it).
    scale: f64,
    slowed_at: Option<Instant>,
    raised_at: Option<Instant>,
}

/// A waiting write, forgotten if its caller gives up (a pass interrupted, a replica stopping).
struct Waiting<'a>(&'a AppBudget, u64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let removed = self
            .0
            .state
            .lock()
            .expect("app budget lock")
            .waiting
            .remove(&self.1);
        if removed.is_some() {
            self.0.notify.notify_waiters();
        }
    }
}

impl AppBudget {
    pub fn new((budget, window): (u32, Duration)) -> AppBudget {
        AppBudget {
            budget: budget.max(1),
            window,
            replicas: None,
            state: Mutex::new(State {
                scale: 1.0,
                ..Default::default()
            }),
            notify: tokio::sync::Notify::new(),
            tickets: AtomicU64::new(0),
        }
    }

    /// A budget shared by a fixed number of replicas.
    pub fn shared_by(mut self, replicas: usize) -> AppBudget {
        self.replicas = Some(replicas.max(1));
        self
    }

    fn replicas(&self) -> f64 {
        self.replicas
            .unwrap_or_else(|| replicas_now(self.window))
            .max(1) as f64
    }

    /// The writes this replica may make per window now.
    fn share(&self, s: &mut State, now: Instant) -> u32 {
        let calm = |at: Option<Instant>| at.is_none_or(|t| now.duration_since(t) >= self.window);
        if s.scale < 1.0 && calm(s.slowed_at) && calm(s.raised_at) {
            s.scale = (s.scale * 1.1).min(1.0);
            s.raised_at = Some(now);
        }
        ((self.budget as f64 * s.scale / self.replicas()) as u32).max(1)
    }

    /// Waits until `n` writes of `tenant` fit this replica's share of the app's budget, the
    /// tenant that wrote least in the window going first. The ticket goes to
    /// [`AppBudget::settle`] when the answer arrives.
    pub async fn take(&self, tenant: u64, n: u32) -> u64 {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        self.state
            .lock()
            .expect("app budget lock")
            .waiting
            .insert(ticket, tenant);
        let waiting = Waiting(self, ticket);
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut s = self.state.lock().expect("app budget lock");
                let now = Instant::now();
                let window = self.window;
                s.sent
                    .retain(|(t, _, _, _)| now.duration_since(*t) < window);
                let share = self.share(&mut s, now);
                let used: u32 = s.sent.iter().map(|(_, _, k, _)| k).sum();
                let mut by_tenant: BTreeMap<u64, u32> = BTreeMap::new();
                for (_, t, k, _) in &s.sent {
                    *by_tenant.entry(*t).or_default() += k;
                }
                let next = s
                    .waiting
                    .iter()
                    .min_by_key(|(k, t)| (by_tenant.get(t).copied().unwrap_or(0), **k))
                    .map(|(k, _)| *k);
                let fits = used + n <= share || used == 0;
                if fits && next == Some(ticket) {
                    s.sent.push_back((now, tenant, n, ticket));
                    s.waiting.remove(&ticket);
                    drop(s);
                    std::mem::forget(waiting);
                    // The next in line may fit too.
                    self.notify.notify_waiters();
                    return ticket;
                }
                if fits {
                    // Another tenant goes first; it wakes the others when it has.
                    Duration::from_millis(50)
                } else {
                    // Settled entries move to the back: the oldest is the earliest of all.
                    let oldest = s.sent.iter().map(|(t, _, _, _)| *t).min().unwrap_or(now);
                    self.window
                        .saturating_sub(now.duration_since(oldest))
                        .max(Duration::from_millis(1))
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = notified => {}
            }
        }
    }

    /// The answer to the writes of `ticket` arrived: they count from now (network delay never
    /// squeezes two of the service's windows into one of ours).
    pub fn settle(&self, ticket: u64) {
        let mut s = self.state.lock().expect("app budget lock");
        if let Some(e) = s.sent.iter_mut().find(|e| e.3 == ticket) {
            e.0 = Instant::now();
        }
    }

    /// A 429 naming the app-wide scope: the service grants less than the documented budget
    /// (another deployment of the app, or Graph's own accounting). The pace drops to 97 % of
    /// what this replica had in the window.
    pub fn throttled(&self) {
        let mut s = self.state.lock().expect("app budget lock");
        let now = Instant::now();
        let used = self.used_in(&s, now);
        let full = self.budget as f64 / self.replicas();
        let accepted = used as f64 * 0.97 / full;
        // Others on the app (another replica, another deployment) may have caused it: never
        // more than halve the pace at once, and not again within the same window.
        if s.slowed_at
            .is_some_and(|t| now.duration_since(t) < self.window / 4)
        {
            return;
        }
        s.scale = s.scale.min(accepted).max(s.scale * 0.5).clamp(0.05, 1.0);
        s.slowed_at = Some(now);
    }

    /// Whether this replica has used 80 % of its share in the window: Graph's warning header
    /// (`x-ms-throttle-limit-percentage`) names no scope, and one arriving now is the app's
    /// limit speaking, not the tenant's.
    pub fn busy(&self) -> bool {
        let mut s = self.state.lock().expect("app budget lock");
        let now = Instant::now();
        let share = self.share(&mut s, now);
        self.used_in(&s, now) as f64 >= 0.8 * share as f64
    }

    /// Writes taken in the window, for tests and figures.
    pub fn used(&self) -> u32 {
        let s = self.state.lock().expect("app budget lock");
        self.used_in(&s, Instant::now())
    }

    /// Writes in the window at `now`.
    fn used_in(&self, s: &State, now: Instant) -> u32 {
        s.sent
            .iter()
            .filter(|(t, _, _, _)| now.duration_since(*t) < self.window)
            .map(|(_, _, k, _)| k)
            .sum()
    }
}

/// Partner Center's limits are per partner and per partner/customer pair, and unpublished: a
/// 429 with `Retry-After` on one customer's call holds every customer's calls of that partner
/// until it has passed, instead of each finding the limit for itself.
#[derive(Default)]
pub struct PartnerPause {
    until: Mutex<Option<Instant>>,
    pauses: AtomicU64,
}

impl PartnerPause {
    /// Waits while the partner is paused.
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock().expect("partner pause lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// Partner Center answered 429: every call of the partner waits `retry_after` seconds.
    pub fn pause(&self, retry_after_seconds: u64) {
        let t = Instant::now() + Duration::from_secs(retry_after_seconds.max(1));
        let mut until = self.until.lock().expect("partner pause lock");
        if until.is_none_or(|u| u < t) {
            *until = Some(t);
        }
        self.pauses.fetch_add(1, Ordering::Relaxed);
    }

    /// How many 429s paused the partner.
    pub fn pauses(&self) -> u64 {
        self.pauses.load(Ordering::Relaxed)
    }
}

/// A tenant's key in the app's budget (only this process compares them).
pub fn tenant_key(organization: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    organization.to_lowercase().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_throttle_scope_names_the_app_wide_limit_or_the_tenant_s() {
        let scope = ThrottleScope::parse;
        assert_eq!(
            scope(Some(
                "Application/Write/9a3d526c-b3c1-4479-ba74-197b5c5751ae/0785ef7c-2d7a-4542-b048-95bcab406e0b"
            )),
            ThrottleScope::Application
        );
        assert_eq!(
            scope(Some(
                "Tenant_Application/ReadWrite/9a3d526c-b3c1-4479-ba74-197b5c5751ae/0785ef7c-2d7a-4542-b048-95bcab406e0b"
            )),
            ThrottleScope::Tenant
        );
        assert_eq!(scope(Some("Tenant/Write/a/b")), ThrottleScope::Tenant);
        assert_eq!(scope(None), ThrottleScope::Tenant);
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_a_partner_center_429_holds_every_customer_of_the_partner() {
        let partner = Arc::new(PartnerPause::default());
        partner.pause(30);
        let start = Instant::now();
        // Another customer's call of the same partner waits out the Retry-After.
        partner.wait().await;
        assert!(start.elapsed() >= Duration::from_secs(30));
        let again = Instant::now();
        partner.wait().await;
        assert!(again.elapsed() < Duration::from_secs(1), "no longer paused");
        assert_eq!(partner.pauses(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_a_busy_tenant_does_not_starve_the_small_ones() {
        // 100 writes per 10 s for the app; a big tenant queues 20 batches of 20 first, then
        // ten small tenants each ask for one batch of 10.
        let app = Arc::new(AppBudget::new((100, Duration::from_secs(10))).shared_by(1));
        let done = Arc::new(Mutex::new(Vec::<(u64, Instant)>::new()));
        let start = Instant::now();
        let mut tasks = vec![];
        for _ in 0..20 {
            let (app, done) = (app.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                app.take(0, 20).await;
                done.lock().unwrap().push((0, Instant::now()));
            }));
        }
        tokio::task::yield_now().await;
        for t in 1..=10 {
            let (app, done) = (app.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                app.take(t, 10).await;
                done.lock().unwrap().push((t, Instant::now()));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let done = done.lock().unwrap();
        let small_last = done
            .iter()
            .filter(|(t, _)| *t != 0)
            .map(|(_, at)| at.duration_since(start))
            .max()
            .unwrap();
        let big_last = done
            .iter()
            .filter(|(t, _)| *t == 0)
            .map(|(_, at)| at.duration_since(start))
            .max()
            .unwrap();
        // First come, first served, the small ones would wait for all 400 of the big one's
        // writes (four windows); fairly, they are done within the second window.
        assert!(small_last <= Duration::from_secs(20), "{small_last:?}");
        assert!(big_last >= Duration::from_secs(40), "{big_last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_a_replica_gone_leaves_the_others_their_old_share_for_a_window() {
        // The only test that moves the process-wide count.
        set_replicas(3);
        set_replicas(2);
        let window = Duration::from_secs(10);
        assert_eq!(
            replicas_now(window),
            3,
            "its writes are still in the window"
        );
        tokio::time::advance(window).await;
        assert_eq!(replicas_now(window), 2);
        set_replicas(1);
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_each_replica_paces_to_its_share_of_the_app_budget() {
        let app = AppBudget::new((100, Duration::from_secs(10))).shared_by(4);
        let start = Instant::now();
        for _ in 0..5 {
            app.take(1, 10).await;
        }
        // 25 per window each: the fifth batch of 10 waits for the next window.
        assert!(
            start.elapsed() >= Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_an_application_scope_429_lowers_the_pace_at_most_by_half_at_once() {
        let app = AppBudget::new((100, Duration::from_secs(10))).shared_by(1);
        for _ in 0..4 {
            app.take(1, 10).await;
        }
        app.throttled();
        // 40 were accepted, but another replica may have caused it: the pace halves (to 50
        // per window), not lower; a second 429 at once changes nothing more.
        app.throttled();
        let start = Instant::now();
        app.take(1, 10).await;
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        app.take(1, 10).await;
        assert!(
            start.elapsed() >= Duration::from_secs(9),
            "{:?}",
            start.elapsed()
        );
    }
}
