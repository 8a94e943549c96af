//! HTTP to Microsoft's services: client-credential tokens cached until shortly before they
//! expire, a timeout on every call, 429 surfaced with its `Retry-After` (the executor waits),
//! 5xx and timeouts retried with exponential backoff and jitter, but only for requests that
//! cannot buy twice (reads, and writes carrying an idempotency id), and `$batch` items
//! throttled on their own retried on their own. Secrets never reach an error message.

use super::wire;
use super::{Config, mapping};
use crate::backend::{BackendError, Result};
use crate::domain::Refusal;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Which service a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Graph,
    PartnerCenter,
}

impl Scope {
    /// The scope a token is asked for: the cloud's, never derived from an endpoint override.
    fn name(self, cfg: &Config) -> String {
        match self {
            Scope::Graph => cfg.endpoints.graph_scope.clone(),
            Scope::PartnerCenter => cfg.endpoints.partner_center_scope.clone(),
        }
    }
}

/// A `$batch` item's header, whatever its case (HTTP header names are case-insensitive).
fn header<'a>(
    headers: &'a std::collections::BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Tries of a request that failed for a passing reason (5xx, timeout, replication lag).
const TRIES: u32 = 4;
/// Rounds of retrying the throttled items of one `$batch`.
const BATCH_ROUNDS: u32 = 6;

pub struct Client {
    http: reqwest::Client,
    cfg: Config,
    tokens: Mutex<HashMap<Scope, (String, Instant)>>,
    /// Licence writes within the budget's window: (when, how many, ticket, answered). "When"
    /// is the answer's arrival once there is one: the service counted them no later than that,
    /// so network delay never squeezes two windows' writes into one of the service's. The
    /// unanswered ones are the writes in flight (kept here, not in a counter apart, so a call
    /// that never ends cannot leave a count behind).
    writes: tokio::sync::Mutex<std::collections::VecDeque<(Instant, u32, u64, bool)>>,
    tickets: std::sync::atomic::AtomicU64,
    /// The budget the service seems to grant now (see [`Pacing`]).
    pacing: Mutex<Pacing>,
}

/// Adaptive pacing. The documented budget is a ceiling, not a promise: another deployment or
/// script on the same app registration, or Graph's own accounting, leaves less. The client
/// keeps an estimate of the limit the service applies and paces to 97 % of it:
/// - a warning (`x-ms-throttle-limit-percentage` ≥ 0.8 on a response) is a measurement: the
///   limit is about what the service had counted divided by that share. The first one is
///   taken as it is (the pace drops at once); later ones are averaged in, since each is off by
///   the writes in flight, and pacing at 97 % of the limit draws a warning on every answer:
///   keeping the lowest of them would sink the pace with every unlucky reading;
/// - a 429 (on an item or on the whole `$batch`) is a fact: the limit is at most what was
///   accepted, and the estimate drops to it;
/// - after a window with neither, in which an answer came with the pace at its budget (a
///   pause in writing is no sign of room), the pace climbs 2 %, never above the documented
///   budget.
#[derive(Debug)]
struct Pacing {
    budget: f64,
    /// The limit the service seems to apply; None until it has said anything.
    limit: Option<f64>,
    slowed_at: Option<Instant>,
    raised_at: Option<Instant>,
    /// Since the last step up, an answer arrived with the pace at its budget and no warning:
    /// evidence the service grants more. A quiet spell (writes pausing) is no evidence.
    room: bool,
}

impl Pacing {
    /// A reading of the service's limit: from a warning (`hard` false: one noisy sample
    /// among many), or from a 429 (`hard`: the limit is no more than what was accepted).
    fn observe(&mut self, reading: f64, hard: bool, ceiling: f64) {
        let limit = match self.limit {
            Some(known) if hard => known.min(reading),
            Some(known) => known + PACING_SMOOTHING * (reading - known),
            None => reading,
        };
        let limit = limit.min(ceiling / PACING_MARGIN);
        self.limit = Some(limit);
        self.budget = (limit * PACING_MARGIN).clamp(1.0, ceiling);
    }
}

/// The share of an estimated limit paced to, and the step back up per calm window.
const PACING_MARGIN: f64 = 0.97;
const PACING_CLIMB: f64 = 1.02;
/// The weight of a new warning's reading in the limit's estimate.
const PACING_SMOOTHING: f64 = 0.2;

/// The ids a call carries. Partner Center's headers page: `MS-RequestId` names one call (a
/// retry of that call sends it again, the next call gets a new one), `MS-CorrelationId` one
/// operation (every call of one purchase shares it). A call without a request id gets a fresh
/// one and is not repeated after a failure unless it is a read.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallIds<'a> {
    /// Given: the call may be repeated (the service recognises the id).
    pub request: Option<&'a str>,
    pub correlation: Option<&'a str>,
    /// Never repeated after a failure, even with a request id: what happened is read back
    /// instead (a checkout).
    pub once: bool,
}

/// A new id for one call or operation: unique, not secret.
pub fn fresh_id(kind: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    crate::guid::guid(kind, &format!("{}-{now}-{n}", std::process::id()))
}

pub use super::mapping::ItemError;

impl Client {
    pub fn new(cfg: &Config) -> std::result::Result<Client, String> {
        for url in [
            &cfg.endpoints.login,
            &cfg.endpoints.graph,
            &cfg.endpoints.partner_center,
        ] {
            check_endpoint(url)?;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Client {
            http,
            cfg: cfg.clone(),
            tokens: Mutex::new(HashMap::new()),
            pacing: Mutex::new(Pacing {
                budget: cfg.write_budget.map_or(f64::MAX, |(b, _)| b as f64),
                limit: None,
                slowed_at: None,
                raised_at: None,
                room: false,
            }),
            writes: tokio::sync::Mutex::new(std::collections::VecDeque::new()),
            tickets: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A token for `scope`, from the cache while it has more than a minute left.
    async fn token(&self, scope: Scope) -> Result<String> {
        if let Some((t, until)) = self.tokens.lock().expect("token lock").get(&scope)
            && Instant::now() + Duration::from_secs(60) < *until
        {
            return Ok(t.clone());
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.cfg.endpoints.login.trim_end_matches('/'),
            self.cfg.tenant_id
        );
        let mut form = vec![
            ("client_id", self.cfg.client_id.clone()),
            ("scope", scope.name(&self.cfg)),
            ("grant_type", "client_credentials".to_string()),
        ];
        form.extend(
            self.cfg
                .credential
                .form(&self.cfg.client_id, &url)
                .map_err(BackendError::CredentialsInvalid)?,
        );
        let reply = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable("the token endpoint", &e))?;
        let status = reply.status();
        let body = reply.bytes().await.unwrap_or_default();
        if !status.is_success() {
            STATS.token_failures.fetch_add(1, Ordering::Relaxed);
            let detail = serde_json::from_slice::<wire::TokenError>(&body)
                .map(|e| first_line(&e.error_description))
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(BackendError::CredentialsInvalid(format!(
                "credentials refused for tenant {} (client {}): {detail}",
                self.cfg.tenant_id, self.cfg.client_id
            )));
        }
        let token: wire::Token = serde_json::from_slice(&body)
            .map_err(|e| BackendError::Unavailable(format!("the token endpoint answered: {e}")))?;
        let until = Instant::now() + Duration::from_secs(token.expires_in);
        self.tokens
            .lock()
            .expect("token lock")
            .insert(scope, (token.access_token.clone(), until));
        Ok(token.access_token)
    }

    /// One request, retried when that cannot do harm: `request_id` marks a write that may be
    /// repeated (the service recognises it); reads may always be.
    async fn send(
        &self,
        scope: Scope,
        method: Method,
        url: &str,
        body: Option<&Value>,
        ids: CallIds<'_>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        let repeatable = method == Method::GET || (ids.request.is_some() && !ids.once);
        // One id for this call, kept through its retries; the operation's, or one of its own.
        let request_id = ids
            .request
            .map(str::to_string)
            .unwrap_or_else(|| fresh_id("request"));
        let correlation_id = ids
            .correlation
            .map(str::to_string)
            .unwrap_or_else(|| fresh_id("operation"));
        let mut tries = 0;
        loop {
            tries += 1;
            if scope == Scope::PartnerCenter
                && let Some(p) = &self.cfg.partner_pause
            {
                p.wait().await;
            }
            let token = self.token(scope).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token)
                .header("Accept", "application/json");
            if scope == Scope::PartnerCenter || ids.request.is_some() {
                req = req.header("MS-RequestId", &request_id);
            }
            if scope == Scope::PartnerCenter {
                req = req.header("MS-CorrelationId", &correlation_id);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let failure = match req.send().await {
                Ok(reply) => {
                    let status = reply.status();
                    STATS.requested(scope);
                    let headers = reply.headers().clone();
                    let bytes = reply.bytes().await.unwrap_or_default().to_vec();
                    if status == StatusCode::UNAUTHORIZED && tries == 1 {
                        // An expired or revoked token: get a new one, once.
                        self.tokens.lock().expect("token lock").remove(&scope);
                        continue;
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        STATS.throttled(scope, 1);
                        let retry_after_seconds = retry_after(&headers);
                        if scope == Scope::PartnerCenter
                            && let Some(p) = &self.cfg.partner_pause
                        {
                            p.pause(retry_after_seconds);
                        }
                        return Err(BackendError::Throttled {
                            retry_after_seconds,
                        });
                    }
                    if !status.is_server_error() {
                        return Ok((status, headers, bytes));
                    }
                    format!("{} answered HTTP {status}", host(url))
                }
                Err(e) => format!("{}: {}", host(url), short(&e)),
            };
            if !repeatable || tries >= TRIES {
                return Err(BackendError::Unavailable(failure));
            }
            tokio::time::sleep(backoff(tries)).await;
        }
    }

    fn decode<T: DeserializeOwned>(url: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| {
            BackendError::Unavailable(format!(
                "{} answered in an unexpected shape: {e}",
                host(url)
            ))
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, scope: Scope, url: &str) -> Result<T> {
        self.get_in(scope, url, None).await
    }

    /// A read that belongs to an operation (its `MS-CorrelationId`).
    pub async fn get_in<T: DeserializeOwned>(
        &self,
        scope: Scope,
        url: &str,
        correlation: Option<&str>,
    ) -> Result<T> {
        let ids = CallIds {
            request: None,
            correlation,
            once: false,
        };
        let (status, _, bytes) = self.send(scope, Method::GET, url, None, ids).await?;
        if !status.is_success() {
            return Err(refused(scope, status, &bytes));
        }
        Self::decode(url, &bytes)
    }

    /// Every page of a Graph collection.
    pub async fn all<T: DeserializeOwned>(&self, scope: Scope, url: &str) -> Result<Vec<T>> {
        let mut out = vec![];
        self.each_page(scope, url, |page| out.extend(page)).await?;
        Ok(out)
    }

    /// Every page of a collection, each handed to `f` as it arrives (`@odata.nextLink`).
    pub async fn each_page<T: DeserializeOwned>(
        &self,
        scope: Scope,
        url: &str,
        mut f: impl FnMut(Vec<T>),
    ) -> Result<()> {
        let mut next = Some(url.to_string());
        while let Some(url) = next {
            let page: wire::Page<T> = self.get(scope, &url).await?;
            f(page.value);
            next = page.next_link;
        }
        Ok(())
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        scope: Scope,
        url: &str,
        body: &Value,
        ids: CallIds<'_>,
    ) -> Result<T> {
        let (status, _, bytes) = self.send(scope, Method::POST, url, Some(body), ids).await?;
        if !status.is_success() {
            return Err(refused(scope, status, &bytes));
        }
        Self::decode(url, if bytes.is_empty() { b"{}" } else { &bytes })
    }

    /// A PATCH of a resource to a state: repeating it leaves the same state, so it may be
    /// retried; its request id is its own (a later PATCH to the same state is another call).
    pub async fn patch(
        &self,
        scope: Scope,
        url: &str,
        body: &Value,
        correlation: Option<&str>,
    ) -> Result<u16> {
        let id = fresh_id("patch");
        let ids = CallIds {
            request: Some(&id),
            correlation,
            once: false,
        };
        let (status, _, bytes) = self
            .send(scope, Method::PATCH, url, Some(body), ids)
            .await?;
        if !status.is_success() {
            return Err(refused(scope, status, &bytes));
        }
        Ok(status.as_u16())
    }

    /// Waits until `n` more licence writes fit Graph's write budget (client-side pacing);
    /// the ticket is handed to [`Client::settle`] when the answer arrives.
    async fn pace(&self, n: u32) -> u64 {
        let ticket = self
            .tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((budget, window)) = self.cfg.write_budget else {
            return ticket;
        };
        loop {
            let wait = {
                let mut sent = self.writes.lock().await;
                let now = Instant::now();
                sent.retain(|(t, _, _, _)| now.duration_since(*t) < window);
                let used: u32 = sent.iter().map(|(_, k, _, _)| k).sum();
                let budget = self.paced_budget(budget, window, now);
                // A batch larger than the whole budget still goes, alone in its window.
                if used + n <= budget || used == 0 {
                    sent.push_back((now, n, ticket, false));
                    return ticket;
                }
                let oldest = sent.iter().map(|(t, _, _, _)| *t).min().unwrap_or(now);
                window.saturating_sub(now.duration_since(oldest))
            };
            // Not holding the lock: answers arriving meanwhile settle their writes.
            tokio::time::sleep(wait).await;
        }
    }

    /// The budget to pace to now: the adaptive one, raised a step after a calm window.
    fn paced_budget(&self, ceiling: u32, window: Duration, now: Instant) -> u32 {
        let mut p = self.pacing.lock().expect("pacing lock");
        let calm = |at: Option<Instant>| at.is_none_or(|t| now.duration_since(t) >= window);
        if p.budget < ceiling as f64 && p.room && calm(p.slowed_at) && calm(p.raised_at) {
            p.budget = (p.budget * PACING_CLIMB).min(ceiling as f64);
            p.limit = Some(p.budget / PACING_MARGIN);
            p.raised_at = Some(now);
            p.room = false;
        }
        (p.budget.min(ceiling as f64) as u32).max(1)
    }

    /// Graph said the budget is (nearly) spent: pace to 97 % of the limit it implies. `used`
    /// is what this client counts in the window; `share` the limit's share used (a 429 is 1,
    /// with `throttled` of the batch's items refused).
    async fn slow_down(&self, ticket: u64, share: f64, throttled: u32) {
        let Some((_, window)) = self.cfg.write_budget else {
            return;
        };
        let mut sent = self.writes.lock().await;
        // Refused writes did not count against the service's budget.
        if let Some(entry) = sent.iter_mut().find(|(_, _, k, _)| *k == ticket) {
            entry.1 = entry.1.saturating_sub(throttled);
        }
        let now = Instant::now();
        // What the service had counted when it answered: the answered writes in the window,
        // not the ones still in flight.
        let counted: u32 = sent
            .iter()
            .filter(|(t, _, _, answered)| *answered && now.duration_since(*t) < window)
            .map(|(_, k, _, _)| k)
            .sum();
        let reading = counted as f64 / share.max(0.01);
        let ceiling = self.cfg.write_budget.map_or(f64::MAX, |(b, _)| b as f64);
        let mut p = self.pacing.lock().expect("pacing lock");
        p.observe(reading, share >= 1.0, ceiling);
        p.slowed_at = Some(now);
    }

    /// An answer without a warning: if the pace was at its budget, the service grants more.
    async fn note_room(&self) {
        let Some((_, window)) = self.cfg.write_budget else {
            return;
        };
        let sent = self.writes.lock().await;
        let now = Instant::now();
        let used: u32 = sent
            .iter()
            .filter(|(t, _, _, _)| now.duration_since(*t) < window)
            .map(|(_, k, _, _)| k)
            .sum();
        let mut p = self.pacing.lock().expect("pacing lock");
        if used as f64 >= 0.8 * p.budget {
            p.room = true;
        }
    }

    /// The writes of `ticket` are being sent now (after waiting for the app's budget): their
    /// time in the window is now, not when they were paced.
    async fn settle_pending(&self, ticket: u64, n: u32) {
        if self.cfg.write_budget.is_none() {
            return;
        }
        let mut sent = self.writes.lock().await;
        match sent.iter_mut().find(|(_, _, k, _)| *k == ticket) {
            Some(entry) => entry.0 = Instant::now(),
            // Waited longer than a window: back in it from now.
            None => sent.push_back((Instant::now(), n, ticket, false)),
        }
    }

    /// The answer to the writes of `ticket` arrived: they count from now.
    async fn settle(&self, ticket: u64) {
        if self.cfg.write_budget.is_none() {
            return;
        }
        let mut sent = self.writes.lock().await;
        if let Some(entry) = sent.iter_mut().find(|(_, _, k, _)| *k == ticket) {
            entry.0 = Instant::now();
            entry.3 = true;
        }
    }

    /// `$batch` licence changes: each item's answer, by its index; items throttled on their
    /// own are sent again after their `Retry-After`.
    pub async fn batch(
        &self,
        url: &str,
        mut items: Vec<wire::BatchItem>,
    ) -> Result<Vec<(usize, std::result::Result<(), ItemError>)>> {
        let mut answers = vec![];
        for _ in 0..BATCH_ROUNDS {
            if items.is_empty() {
                break;
            }
            let ticket = self.pace(items.len() as u32).await;
            // The app's budget across its tenants, shared fairly among them.
            let app_ticket = match &self.cfg.app_budget {
                Some(app) => Some(
                    app.take(
                        crate::fleet::tenant_key(&self.cfg.organization),
                        items.len() as u32,
                    )
                    .await,
                ),
                None => None,
            };
            if app_ticket.is_some() {
                // Waiting for the app's budget took time: the tenant's window counts these
                // writes from now, when they are sent, not from when they were paced.
                self.settle_pending(ticket, items.len() as u32).await;
            }
            let body = serde_json::to_value(wire::BatchRequest {
                requests: items.clone(),
            })
            .expect("batches serialize");
            // Each item is one user's atomic change: sending an item again leaves the same state.
            let id = crate::guid::guid("batch", &body.to_string());
            let ids = CallIds {
                request: Some(&id),
                correlation: None,
                once: false,
            };
            let sent = self
                .send(Scope::Graph, Method::POST, url, Some(&body), ids)
                .await;
            self.settle(ticket).await;
            if let (Some(app), Some(t)) = (&self.cfg.app_budget, app_ticket) {
                app.settle(t);
            }
            let (status, headers, bytes) = match sent {
                Ok(r) => r,
                Err(e @ BackendError::Throttled { .. }) => {
                    // The whole $batch refused: every item of it.
                    self.slow_down(ticket, 1.0, items.len() as u32).await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if !status.is_success() {
                return Err(refused(Scope::Graph, status, &bytes));
            }
            let reply: wire::BatchResponse = Self::decode(url, &bytes)?;
            let share = headers
                .get("x-ms-throttle-limit-percentage")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok());
            let refused_items = reply.responses.iter().filter(|r| r.status == 429).count() as u32;
            STATS.throttled(Scope::Graph, refused_items as u64);
            // Which limit refused them: the app's across all tenants, or this tenant's.
            let app_wide = reply.responses.iter().any(|r| {
                r.status == 429
                    && crate::fleet::ThrottleScope::parse(header(&r.headers, "x-ms-throttle-scope"))
                        == crate::fleet::ThrottleScope::Application
            });
            if refused_items > 0 && app_wide {
                if let Some(app) = &self.cfg.app_budget {
                    app.throttled();
                }
            } else if refused_items > 0 {
                self.slow_down(ticket, 1.0, refused_items).await;
            } else if let Some(share) = share.filter(|s| *s >= 0.8) {
                // A warning while the app's budget is nearly spent is the app's limit, paced
                // by the app's budget: the tenant's own pace stays.
                if !self.cfg.app_budget.as_ref().is_some_and(|a| a.busy()) {
                    self.slow_down(ticket, share, 0).await;
                }
            } else {
                self.note_room().await;
            }
            let mut wait = 0;
            let mut again = vec![];
            for r in reply.responses {
                let index: usize = r.id.parse().unwrap_or(usize::MAX);
                if r.status == 429 {
                    wait = wait.max(
                        r.headers
                            .get("Retry-After")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(1),
                    );
                    if let Some(item) = items.iter().find(|i| i.id == r.id) {
                        again.push(item.clone());
                    }
                    continue;
                }
                let outcome = if (200..300).contains(&r.status) {
                    Ok(())
                } else {
                    let (code, message) = mapping::graph_error(r.body.as_ref());
                    Err(ItemError {
                        status: r.status,
                        code,
                        message,
                    })
                };
                answers.push((index, outcome));
            }
            items = again;
            if !items.is_empty() {
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
        }
        if !items.is_empty() {
            return Err(BackendError::Throttled {
                retry_after_seconds: 30,
            });
        }
        Ok(answers)
    }
}

/// A non-success answer as a refusal (or an outage).
fn refused(scope: Scope, status: StatusCode, bytes: &[u8]) -> BackendError {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    // Partner Center sends some business refusals (a pending credit check) as 403 with its own
    // code: the code decides, not the status.
    if scope == Scope::PartnerCenter
        && let refused @ BackendError::Refused(_) =
            mapping::pc_refusal(body.as_ref(), status.as_u16())
    {
        return refused;
    }
    if status == StatusCode::FORBIDDEN {
        let (_, message) = mapping::graph_error(body.as_ref());
        return Refusal::PermissionDenied {
            permission: mapping::permission_in(&message),
        }
        .into();
    }
    if status == StatusCode::NOT_FOUND {
        let (_, message) = mapping::graph_error(body.as_ref());
        return Refusal::NotFound { what: message }.into();
    }
    match scope {
        Scope::PartnerCenter => mapping::pc_refusal(body.as_ref(), status.as_u16()),
        Scope::Graph => {
            let (code, message) = mapping::graph_error(body.as_ref());
            BackendError::Unavailable(format!("Graph answered {status}: {code}: {message}"))
        }
    }
}

/// `http://` only for loopback (tests, the emulator); everything else must be `https://`.
pub fn check_endpoint(url: &str) -> std::result::Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!("{url}: an endpoint must be an https:// URL"));
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    let loopback = host == "localhost"
        || host.starts_with("127.")
        || rest.starts_with("[::1]")
        || host == "::1";
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{url}: plain http:// is accepted only for loopback addresses (use https://)"
        ))
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

/// 0.5 s, 1 s, 2 s … with up to 25 % jitter.
fn backoff(tries: u32) -> Duration {
    let base = 500u64 << (tries - 1).min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    Duration::from_millis(base + nanos % (base / 4 + 1))
}

fn host(url: &str) -> String {
    url.split('/').take(3).collect::<Vec<_>>().join("/")
}

/// A transport error in a few words (never the request, which may carry a secret).
fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "the request failed".into()
    }
}

fn unavailable(what: &str, e: &reqwest::Error) -> BackendError {
    BackendError::Unavailable(format!("{what}: {}", short(e)))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// What this process asked of the services, for metrics: requests answered (any status),
/// answers 429 (a whole request, or items of a `$batch`), token requests refused.
#[derive(Default)]
pub struct Stats {
    pub graph_requests: AtomicU64,
    pub graph_throttled: AtomicU64,
    pub partner_center_requests: AtomicU64,
    pub partner_center_throttled: AtomicU64,
    pub token_failures: AtomicU64,
}

/// The process's counts (every client adds to them).
pub static STATS: Stats = Stats {
    graph_requests: AtomicU64::new(0),
    graph_throttled: AtomicU64::new(0),
    partner_center_requests: AtomicU64::new(0),
    partner_center_throttled: AtomicU64::new(0),
    token_failures: AtomicU64::new(0),
};

impl Stats {
    fn requested(&self, scope: Scope) {
        match scope {
            Scope::Graph => &self.graph_requests,
            Scope::PartnerCenter => &self.partner_center_requests,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn throttled(&self, scope: Scope, n: u64) {
        match scope {
            Scope::Graph => &self.graph_throttled,
            Scope::PartnerCenter => &self.partner_center_throttled,
        }
        .fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(budget: u32, window: Duration) -> Client {
        Client::new(&Config {
            organization: "contoso.com".into(),
            tenant_id: "contoso.com".into(),
            endpoints: crate::Endpoints::at("http://127.0.0.1:1"),
            client_id: "app".into(),
            credential: crate::credential::Credential::Secret("s".into()),
            partner_center_customer: None,
            timeout: Duration::from_secs(1),
            write_budget: Some((budget, window)),
            app_budget: None,
            partner_pause: None,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_write_never_answered_leaves_nothing_in_flight_behind() {
        // A batch paced and then dropped (its pass interrupted, its replica handing the
        // tenant over) is never answered. Once its window has passed, a warning on a later
        // answer must read the service's count, not the count minus a ghost in flight:
        // before, the ghost made every later reading zero and the pace sank to one write.
        let window = Duration::from_millis(30);
        let c = client(100, window);
        let _lost = c.pace(60).await;
        tokio::time::sleep(window * 2).await;
        let t = c.pace(20).await;
        c.settle(t).await;
        c.slow_down(t, 0.2, 0).await;
        let budget = c.pacing.lock().unwrap().budget;
        // 20 counted at 20 % of the limit: a limit of 100, paced at 97.
        assert!(budget > 90.0, "{budget}");
    }

    fn pacing(budget: f64) -> Pacing {
        Pacing {
            budget,
            limit: None,
            slowed_at: None,
            raised_at: None,
            room: false,
        }
    }

    #[test]
    fn pacing_follows_the_limit_graph_reports_and_does_not_sink_with_noisy_readings() {
        // Told 3,000; the service grants 750. Paced at 97 % of it, every answer carries a
        // warning, each reading off by the writes in flight (here ±8 %, as measured).
        let mut p = pacing(3000.0);
        p.observe(750.0, false, 3000.0);
        assert!(
            (p.budget - 727.5).abs() < 1.0,
            "drops at once: {}",
            p.budget
        );
        for i in 0..500 {
            let noise = [0.92, 1.08, 0.97, 1.03, 1.0][i % 5];
            p.observe(750.0 * noise, false, 3000.0);
        }
        // The lowest reading (690) would pace at 669: 11 % slower than the service allows.
        assert!(
            (715.0..=740.0).contains(&p.budget),
            "paces at about 97 % of 750: {}",
            p.budget
        );
    }

    #[test]
    fn pacing_drops_to_what_was_accepted_on_a_429_and_never_above_the_documented_budget() {
        let mut p = pacing(3000.0);
        p.observe(1500.0, false, 3000.0);
        p.observe(1000.0, true, 3000.0);
        assert!((p.budget - 970.0).abs() < 1.0, "{}", p.budget);
        let mut p = pacing(3000.0);
        p.observe(9000.0, false, 3000.0);
        assert_eq!(p.budget, 3000.0);
    }

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(check_endpoint("https://graph.microsoft.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8443").is_ok());
        assert!(check_endpoint("http://localhost:1").is_ok());
        assert!(check_endpoint("http://[::1]:9").is_ok());
        assert!(check_endpoint("http://graph.example.com").is_err());
        assert!(check_endpoint("http://10.0.0.1").is_err());
    }

    #[test]
    fn r03_partner_center_credit_check_sent_as_403_is_credit_check_pending_not_permission() {
        let body = br#"{"code": 800023, "description": "The customer's credit check is pending.", "errorName": "CreditCheckPending"}"#;
        let e = refused(Scope::PartnerCenter, StatusCode::FORBIDDEN, body);
        assert!(
            matches!(e, BackendError::Refused(Refusal::CreditCheckPending { .. })),
            "{e:?}"
        );
        // A 403 without a known Partner Center code is still a missing permission.
        let e = refused(Scope::PartnerCenter, StatusCode::FORBIDDEN, b"{}");
        assert!(matches!(
            e,
            BackendError::Refused(Refusal::PermissionDenied { .. })
        ));
        let e = refused(Scope::Graph, StatusCode::FORBIDDEN, body);
        assert!(matches!(
            e,
            BackendError::Refused(Refusal::PermissionDenied { .. })
        ));
    }
}
