//! `seatkeeper emulate`: Microsoft's licensing services on one address, for tests and as a
//! sandbox. The identity platform's token endpoint, the Microsoft Graph v1.0 licensing
//! endpoints and the Partner Center v1 subscription, cart and order endpoints, with the
//! vendors' shapes, error envelopes and throttling headers, backed by a tenant file and the
//! very same rules as the embedded backend: every change goes through the simulator, which
//! checks it with the rule functions and saves the file.
//!
//! An organization's tenant id is its domain, and so is its Partner Center customer id. Ids of
//! products, plans, users and subscriptions are stable GUIDs derived from the tenant file's
//! names (`crate::guid`), so a client must map ids to names as against the real services.
//!
//! The emulator has its own reading of the vendors' pages: it never uses the Microsoft
//! client's types (`backend::microsoft::wire`, `credential`). Requests are read and answers
//! written as JSON, field by field, after the pages' examples (kept as fixtures in
//! `tests/fixtures/microsoft/`, which a conformance test holds the answers to), so a client
//! that misreads a page is caught here rather than confirmed.

// Handlers answer errors as ready HTTP responses; boxing them would buy nothing.
#![allow(clippy::result_large_err)]

// The core and the simulator under the names this crate was written with; never the
// Microsoft client (this crate does not depend on it).
pub(crate) use seatkeeper_core::{domain, guid};
pub(crate) mod backend {
    pub use seatkeeper_core::backend::*;
    pub use seatkeeper_embedded::embedded;
}

mod assertion;
pub mod catalog;
mod faults;
mod graph;
mod groups;
mod partner;
mod token;

pub use faults::Faults;

use crate::backend::embedded::Embedded;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Who may ask for tokens, and how the services misbehave.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The one application accepted; None: any client id.
    pub client_id: Option<String>,
    /// Its secret; None: any secret.
    pub client_secret: Option<String>,
    /// How long a token lives, in seconds.
    pub token_lifetime: u64,
    pub faults: Faults,
}

/// Which service a token is for: the identity platform issues it for one scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Graph,
    PartnerCenter,
}

impl Service {
    /// The service a scope names (`{application ID URI}/.default`), for the global cloud the
    /// emulator stands for; any other scope is refused as the identity platform does.
    pub fn of_scope(scope: &str) -> Option<Service> {
        match scope {
            "https://graph.microsoft.com/.default" => Some(Service::Graph),
            "https://api.partnercenter.microsoft.com/.default" => Some(Service::PartnerCenter),
            _ => None,
        }
    }
}

/// The emulator's state: the simulated tenant, tokens it handed out, carts and orders.
pub struct Emulator {
    backend: Embedded,
    options: Options,
    /// token → (tenant domain, valid until, the service it is for).
    tokens: Mutex<HashMap<String, (String, std::time::Instant, Service)>>,
    faults: faults::State,
    /// cart id → (customer, cart).
    carts: Mutex<HashMap<String, (String, Value)>>,
    /// MS-RequestId of a checkout → its result: a repeated checkout buys nothing new.
    orders: Mutex<HashMap<String, (std::time::Instant, Value)>>,
    /// MS-RequestId of a transition → its answer: a repeated one converts nothing new.
    transitions: Mutex<HashMap<String, Value>>,
    /// Subscription (tenant-file id) → when it was bought here: reads lag behind.
    fresh: Mutex<HashMap<String, std::time::Instant>>,
    /// User id → UPN, built from the tenant when an id is not in it (ids are hashes of UPNs,
    /// so finding one otherwise means hashing every user's UPN).
    user_ids: Mutex<HashMap<String, String>>,
    /// Partner Center calls as they arrived, with their ids (the last 10,000).
    pc_calls: Mutex<std::collections::VecDeque<PcCall>>,
    /// MS-RequestId → the call it named ("METHOD path").
    request_ids: Mutex<HashMap<String, String>>,
    /// Graph's resource units spent on directory reads (users, groups, members).
    read_units: std::sync::atomic::AtomicU64,
}

/// A read's cost in Graph's resource units ("Identity and access service limits"): the
/// path's base cost, one less with `$select`, one more with `$expand`, one less with a
/// `$top` under 20; at least one.
pub(crate) fn read_cost(base: u64, q: &HashMap<String, String>) -> u64 {
    let mut cost = base as i64;
    if q.contains_key("$select") {
        cost -= 1;
    }
    if q.contains_key("$expand") {
        cost += 1;
    }
    if q.get("$top")
        .and_then(|t| t.parse::<u32>().ok())
        .is_some_and(|t| t < 20)
    {
        cost -= 1;
    }
    cost.max(1) as u64
}

/// One Partner Center call as the emulator received it.
#[derive(Clone, Debug, PartialEq)]
pub struct PcCall {
    pub method: String,
    pub path: String,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl Emulator {
    pub fn new(backend: Embedded, options: Options) -> Emulator {
        Emulator {
            faults: faults::State::new(&options.faults),
            backend,
            options,
            tokens: Mutex::new(HashMap::new()),
            carts: Mutex::new(HashMap::new()),
            orders: Mutex::new(HashMap::new()),
            transitions: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
            pc_calls: Mutex::new(std::collections::VecDeque::new()),
            request_ids: Mutex::new(HashMap::new()),
            user_ids: Mutex::new(HashMap::new()),
            read_units: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn charge_read(&self, units: u64) {
        self.read_units
            .fetch_add(units, std::sync::atomic::Ordering::Relaxed);
    }

    /// Graph resource units the directory reads so far have cost.
    pub fn read_units(&self) -> u64 {
        self.read_units.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The user a Graph path names, by id or UPN, if `org` has one.
    fn user<'o>(
        &self,
        org: &'o crate::domain::Organization,
        id: &str,
    ) -> Option<&'o crate::domain::User> {
        if !crate::guid::is_guid(id) {
            return org.user(id);
        }
        let id = id.to_lowercase();
        let mut ids = self.user_ids.lock().expect("user ids lock");
        let known = ids.get(&id).and_then(|upn| org.user(upn));
        if known.is_some() {
            return known;
        }
        *ids = org
            .users
            .iter()
            .map(|u| (graph::user_id(&u.upn), u.upn.clone()))
            .collect();
        ids.get(&id).and_then(|upn| org.user(upn))
    }

    /// Ids handed out by a read of users: the licence writes that follow name users by them,
    /// and finding them here spares building the whole index on the first write.
    fn remember_user_ids<'u>(&self, users: impl Iterator<Item = (&'u str, &'u str)>) {
        let mut ids = self.user_ids.lock().expect("user ids lock");
        for (id, upn) in users {
            if !ids.contains_key(id) {
                ids.insert(id.to_lowercase(), upn.to_string());
            }
        }
    }

    /// Whether a subscription bought here is still invisible to reads (replication lag).
    fn lagging(&self, id: &str) -> bool {
        let lag = self.faults.current().replication_lag;
        self.fresh
            .lock()
            .expect("fresh lock")
            .get(id)
            .is_some_and(|t| t.elapsed() < lag)
    }

    /// The organization a bearer token was issued for.
    /// The tenant a request's token was issued for, when it is for `service` and alive.
    fn tenant_of(&self, headers: &HeaderMap, service: Service) -> Result<String, Response> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let tokens = self.tokens.lock().expect("token lock");
        match tokens.get(token) {
            // A token for the other service: its audience is wrong here.
            Some((_, _, s)) if *s != service => Err(graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )),
            Some((tenant, _, _))
                if self
                    .faults
                    .current()
                    .denied_tenants
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(tenant)) =>
            {
                Err(graph_error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                ))
            }
            Some((tenant, until, _)) if std::time::Instant::now() < *until => Ok(tenant.clone()),
            Some(_) => Err(graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )),
            None => Err(graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )),
        }
    }

    /// The simulated tenant behind the services: a test acts on it as another admin would,
    /// in the vendor's portal, between seatkeeper's calls.
    pub fn backend(&self) -> &Embedded {
        &self.backend
    }

    /// The tenant as the emulated services hold it.
    pub fn tenant(&self) -> crate::backend::embedded::TenantFile {
        self.backend.tenant()
    }

    /// The Partner Center calls received so far (the last 10,000), in order.
    pub fn partner_center_calls(&self) -> Vec<PcCall> {
        self.pc_calls
            .lock()
            .expect("calls lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Switches faults on or off while serving.
    pub fn set_faults(&self, faults: Faults) {
        self.faults.set(faults);
    }

    /// (requests, 5xx answered, replies dropped, items throttled) so far.
    pub fn fault_counts(&self) -> (u64, u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.faults;
        (
            f.requests.load(Relaxed),
            f.errors.load(Relaxed),
            f.dropped.load(Relaxed),
            f.throttled.load(Relaxed),
        )
    }

    /// Items answered 429 because the write budget was spent.
    pub fn throttled(&self) -> u64 {
        self.faults
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Items answered 429 because the app-wide write budget was spent (of [`Emulator::throttled`]).
    pub fn app_throttled(&self) -> u64 {
        self.faults
            .app_throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Licence changes made (users' assignLicense answered 200).
    pub fn licence_changes(&self) -> u64 {
        self.faults
            .applied
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `domain` is an organization of the tenant file.
    fn knows(&self, domain: &str) -> bool {
        self.backend
            .tenant()
            .organizations
            .iter()
            .any(|o| o.domain.eq_ignore_ascii_case(domain))
    }
}

/// The routes, on one address.
pub fn router(emulator: Arc<Emulator>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token::issue))
        .route("/v1.0/subscribedSkus", get(graph::subscribed_skus))
        .route("/v1.0/directory/subscriptions", get(graph::subscriptions))
        .route("/v1.0/users", get(graph::users))
        .route(
            "/v1.0/users/{id}/assignLicense",
            post(graph::assign_license),
        )
        .route("/v1.0/$batch", post(graph::batch))
        .route("/v1.0/groups", get(groups::list))
        .route("/v1.0/groups/{id}/members", get(groups::members))
        .route(
            "/v1.0/groups/{id}/membersWithLicenseErrors",
            get(groups::members_with_licence_errors),
        )
        .route(
            "/v1.0/groups/{id}/assignLicense",
            post(groups::assign_license),
        )
        .route(
            "/v1/customers/{customer}/subscriptions",
            get(partner::subscriptions),
        )
        .route(
            "/v1/customers/{customer}/subscriptions/{id}",
            get(partner::subscription).patch(partner::update),
        )
        .route(
            "/v1/customers/{customer}/subscriptions/{id}/transitionEligibilities",
            get(partner::transition_eligibilities),
        )
        .route(
            "/v1/customers/{customer}/subscriptions/{id}/transitions",
            post(partner::transition),
        )
        .route(
            "/v1/customers/{customer}/subscriptions/{id}/addons",
            get(partner::add_ons),
        )
        .route("/v1/customers/{customer}/carts", post(partner::create_cart))
        .route("/v1/customers/{customer}/carts/{cart}", get(partner::cart))
        .route("/v1/customers/{customer}/products", get(catalog::products))
        .route(
            "/v1/customers/{customer}/products/{product}/skus",
            get(catalog::skus),
        )
        .route(
            "/v1/customers/{customer}/products/{product}/skus/{sku}/availabilities",
            get(catalog::availabilities),
        )
        .route("/v1/customers/{customer}/orders", get(partner::orders))
        .route(
            "/v1/customers/{customer}/carts/{cart}/checkout",
            post(partner::checkout),
        )
        .fallback(|req: Request| async move {
            graph_error(
                StatusCode::NOT_FOUND,
                "UnknownError",
                &format!("no route {} {}", req.method(), req.uri().path()),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            emulator.clone(),
            partner::request_ids,
        ))
        .layer(axum::middleware::from_fn_with_state(
            emulator.clone(),
            faults::layer,
        ))
        .with_state(emulator)
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    emulator: Arc<Emulator>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // A large tenant's journal is folded into its file once a second has passed without a
    // change, and when the emulator stops.
    let idle = emulator.clone();
    let folding = tokio::spawn(async move {
        let mut last = u64::MAX;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let writes = idle.backend.writes();
            if writes == last
                && let Err(e) = idle.backend.checkpoint()
            {
                tracing::warn!(error = %e, "cannot fold the journal into the tenant file");
            }
            last = writes;
        }
    });
    let served = axum::serve(listener, router(emulator.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    folding.abort();
    emulator
        .backend
        .checkpoint()
        .map_err(std::io::Error::other)?;
    served
}

/// A subscription's id in Partner Center and Graph's `commerceSubscriptionId`: the tenant
/// file's id when it is a GUID, else one derived from it.
pub fn subscription_id(id: &str) -> String {
    if crate::guid::is_guid(id) {
        id.to_lowercase()
    } else {
        crate::guid::guid("subscription", id)
    }
}

/// Graph's error envelope.
pub fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message,
        "innerError": {"date": "2026-01-01T00:00:00", "request-id": crate::guid::guid("request", message)}}});
    (status, axum::Json(body)).into_response()
}

/// Partner Center's error envelope.
pub fn pc_error(status: StatusCode, code: u32, description: &str) -> Response {
    let body = json!({"code": code, "description": description, "data": [], "source": "PartnerFD"});
    (status, axum::Json(body)).into_response()
}
