//! Fault injection: added latency, server errors before anything is done, replies lost after
//! the change was made, and Graph's write budgets (3,000 writes per 150 s per app and tenant;
//! 70,000 per 5 minutes per app across all its tenants), their windows compressible so tests
//! run in seconds. Deterministic for a given seed.

use super::Emulator;
use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Faults {
    /// Added to every answer.
    pub latency: Duration,
    /// Share of requests (0–1) answered 503 before anything is done.
    pub error_rate: f64,
    /// Share of writes (0–1) whose reply is lost after the change was made (500).
    pub drop_rate: f64,
    /// Graph licence writes allowed per window, per tenant (Graph's limit per app and tenant);
    /// None: no budget.
    pub write_budget: Option<u32>,
    /// The budget's window (Graph: 150 s; shorter to compress time in tests).
    pub window: Duration,
    /// Graph licence writes allowed per `app_window` for the app across every tenant served
    /// (Graph: 70,000 per 5 minutes); None: no app-wide budget.
    pub app_write_budget: Option<u32>,
    /// The app-wide budget's window (Graph: 300 s).
    pub app_window: Duration,
    pub seed: u64,
    /// Tokens stop working this long after they were issued, whatever `expires_in` said
    /// (a token revoked or expiring mid-run).
    pub tokens_die_after: Option<Duration>,
    /// A subscription just bought is not in reads for this long (replication lag).
    pub replication_lag: Duration,
    /// Licence writes are refused 403, as when the application lacks the permission.
    pub deny_licence_writes: bool,
    /// Users' `signInActivity` is refused 403, as for an app without AuditLog.Read.All (or a
    /// tenant without Microsoft Entra ID P1).
    pub deny_sign_in_activity: bool,
    /// Tenants (by domain) whose admin consent to the app was revoked: their token requests
    /// are refused (AADSTS65001), the other tenants' are not.
    pub revoked_consent: Vec<String>,
    /// Tenants whose delegated access ended (a GDAP relationship expired): tokens are issued,
    /// every call for the tenant is refused 403.
    pub denied_tenants: Vec<String>,
    /// Every checkout goes through and its reply is lost (500).
    pub lose_checkout_replies: bool,
    /// An order is listed (`GET …/orders`) only this long after it was placed (Partner
    /// Center: up to 15 minutes).
    pub orders_lag: Duration,
    /// Every trial transition is answered with a `Failed` event and converts nothing (a
    /// billing or eligibility problem Partner Center finds after accepting the request).
    pub fail_transitions: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            error_rate: 0.0,
            drop_rate: 0.0,
            write_budget: None,
            window: Duration::from_secs(150),
            app_write_budget: None,
            app_window: Duration::from_secs(300),
            seed: 1,
            tokens_die_after: None,
            replication_lag: Duration::ZERO,
            deny_licence_writes: false,
            deny_sign_in_activity: false,
            revoked_consent: vec![],
            denied_tenants: vec![],
            lose_checkout_replies: false,
            orders_lag: Duration::ZERO,
            fail_transitions: false,
        }
    }
}

/// What the faults did, and what they need to remember.
pub struct State {
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    /// Per tenant: its writes in the window.
    writes: Mutex<std::collections::HashMap<String, VecDeque<Instant>>>,
    /// The app's writes, every tenant's, in the app-wide window.
    app_writes: Mutex<VecDeque<Instant>>,
    /// Writes answered 429 by the app-wide limit (of `throttled`).
    pub app_throttled: AtomicU64,
    /// Licence changes made (each user's change answered 200).
    pub applied: AtomicU64,
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
}

impl State {
    pub fn new(faults: &Faults) -> State {
        State {
            faults: Mutex::new(faults.clone()),
            rng: Mutex::new(faults.seed.max(1)),
            writes: Mutex::new(Default::default()),
            app_writes: Mutex::new(VecDeque::new()),
            app_throttled: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A number in [0, 1) (xorshift).
    fn roll(&self) -> f64 {
        let mut x = self.rng.lock().expect("rng lock");
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The faults in force.
    pub fn current(&self) -> Faults {
        self.faults.lock().expect("faults lock").clone()
    }

    /// Switches faults on or off while serving.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().expect("faults lock") = faults;
    }

    /// The share of the tightest write budget `tenant` writes against, as Graph reports it in
    /// `x-ms-throttle-limit-percentage` (only from 0.8 on); None without a budget.
    pub fn usage(&self, tenant: &str) -> Option<f64> {
        let faults = self.current();
        let now = Instant::now();
        let in_window = |q: &VecDeque<Instant>, w: Duration| {
            q.iter().filter(|t| now.duration_since(**t) < w).count() as f64
        };
        let mut share: Option<f64> = None;
        if let Some(b) = faults.write_budget {
            let writes = self.writes.lock().expect("writes lock");
            let used = writes
                .get(tenant)
                .map_or(0.0, |q| in_window(q, faults.window));
            share = Some(used / b.max(1) as f64);
        }
        if let Some(b) = faults.app_write_budget {
            let used = in_window(
                &self.app_writes.lock().expect("writes lock"),
                faults.app_window,
            );
            let s = used / b.max(1) as f64;
            share = Some(share.map_or(s, |x| x.max(s)));
        }
        share
    }

    /// One write of `tenant` against the budgets: Err when one is spent, with the seconds to
    /// wait and the throttle scope to name (`Tenant_Application` or `Application`).
    pub fn take_write(&self, tenant: &str) -> Result<(), (u64, &'static str)> {
        let faults = self.current();
        let now = Instant::now();
        let prune = |q: &mut VecDeque<Instant>, w: Duration| {
            while q.front().is_some_and(|t| now.duration_since(*t) >= w) {
                q.pop_front();
            }
        };
        let wait = |q: &VecDeque<Instant>, w: Duration| {
            let oldest = *q.front().expect("the budget is spent");
            w.saturating_sub(now.duration_since(oldest))
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        };
        let mut writes = self.writes.lock().expect("writes lock");
        let mut app = self.app_writes.lock().expect("writes lock");
        let mine = writes.entry(tenant.to_lowercase()).or_default();
        prune(mine, faults.window);
        prune(&mut app, faults.app_window);
        if let Some(b) = faults.write_budget
            && mine.len() >= b as usize
        {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err((wait(mine, faults.window), "Tenant_Application"));
        }
        if let Some(b) = faults.app_write_budget
            && app.len() >= b as usize
        {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            self.app_throttled.fetch_add(1, Ordering::Relaxed);
            return Err((wait(&app, faults.app_window), "Application"));
        }
        if faults.write_budget.is_some() {
            mine.push_back(now);
        }
        if faults.app_write_budget.is_some() {
            app.push_back(now);
        }
        Ok(())
    }
}

/// The `x-ms-throttle-scope` of a 429 (`<Scope>/<Limit>/<ApplicationId>/<TenantId>`, Graph's
/// throttling-limits page, identity and access service).
pub fn throttle_scope(scope: &str, app: &str, tenant: &str) -> String {
    format!("{scope}/Write/{app}/{tenant}")
}

/// Runs around every request but the token endpoint's.
pub async fn layer(AxState(em): AxState<Arc<Emulator>>, req: Request, next: Next) -> Response {
    let f = &em.faults;
    let faults = f.current();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if req.uri().path().ends_with("/oauth2/v2.0/token") {
        return next.run(req).await;
    }
    f.requests.fetch_add(1, Ordering::Relaxed);
    if faults.error_rate > 0.0 && f.roll() < faults.error_rate {
        f.errors.fetch_add(1, Ordering::Relaxed);
        let mut r = super::graph_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable.",
        );
        r.headers_mut()
            .insert("Retry-After", "1".parse().expect("a header value"));
        return r;
    }
    let write = req.method() != axum::http::Method::GET;
    let checkout = req.uri().path().ends_with("/checkout");
    let response = next.run(req).await;
    if checkout && faults.lose_checkout_replies && response.status().is_success() {
        f.dropped.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::INTERNAL_SERVER_ERROR, "connection reset").into_response();
    }
    if write
        && response.status().is_success()
        && faults.drop_rate > 0.0
        && f.roll() < faults.drop_rate
    {
        // The change was made; the reply never arrives.
        f.dropped.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::INTERNAL_SERVER_ERROR, "connection reset").into_response();
    }
    response
}
