//! Fault injection: added latency, server errors before anything is done, replies lost after
//! the change was made, and Graph's write budget (3,000 writes per 150 s per app and tenant),
//! its window compressible so tests run in seconds. Deterministic for a given seed.

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
    /// Graph licence writes allowed per window; None: no budget.
    pub write_budget: Option<u32>,
    /// The budget's window (Graph: 150 s; shorter to compress time in tests).
    pub window: Duration,
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
    writes: Mutex<VecDeque<Instant>>,
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
            writes: Mutex::new(VecDeque::new()),
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

    /// The share of the write budget used in the current window, as Graph reports it in
    /// `x-ms-throttle-limit-percentage` (only from 0.8 on); None without a budget.
    pub fn usage(&self) -> Option<f64> {
        let faults = self.current();
        let budget = faults.write_budget?;
        let now = Instant::now();
        let writes = self.writes.lock().expect("writes lock");
        let used = writes
            .iter()
            .filter(|t| now.duration_since(**t) < faults.window)
            .count();
        Some(used as f64 / budget.max(1) as f64)
    }

    /// One write against the budget: Err(seconds to wait) when it is spent.
    pub fn take_write(&self) -> Result<(), u64> {
        let faults = self.current();
        let Some(budget) = faults.write_budget else {
            return Ok(());
        };
        let now = Instant::now();
        let window = faults.window;
        let mut writes = self.writes.lock().expect("writes lock");
        while writes
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            writes.pop_front();
        }
        if writes.len() < budget as usize {
            writes.push_back(now);
            return Ok(());
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let oldest = *writes.front().expect("the budget is spent");
        let wait = window.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }
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
