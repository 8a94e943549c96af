//! Partner Center v1: a customer's subscriptions (read; PATCH of quantity, status and
//! `autoRenewEnabled`), trial conversions, carts and checkout. Only subscriptions this partner
//! sold (channel `Direct` in the tenant file) are here; every change goes through the
//! simulator's rules and is refused with Partner Center's codes.

use super::{Emulator, pc_error};
use crate::backend::microsoft::{ids, wire};
use crate::backend::{Backend, BackendError, PurchaseRequest, SeatChange};
use crate::domain::rules::{cancellation_window_open, check_reduction_window};
use crate::domain::{BillingFrequency, Channel, Organization, Refusal, SubscriptionState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// Partner Center's headers, as its "REST headers" page describes them: `MS-RequestId` names
/// one call, and the service answers a repeat of it (a retry) as it answered the first; the
/// same id on another call is a client's mistake, refused here so a test sees it.
/// `MS-CorrelationId` ties the calls of one operation together; both are recorded.
pub async fn request_ids(
    axum::extract::State(em): axum::extract::State<Arc<Emulator>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    if !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let call = recorded(&em, &req, &path);
    if let Some(first) = reused(&em, &call) {
        return pc_error(
            StatusCode::BAD_REQUEST,
            400,
            &format!(
                "MS-RequestId {} was sent before with another request ({first}): a request id names one call",
                call.request_id.unwrap_or_default()
            ),
        );
    }
    next.run(req).await
}

/// The call, recorded with its ids.
fn recorded(em: &Emulator, req: &axum::extract::Request, path: &str) -> super::PcCall {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let call = super::PcCall {
        method: req.method().to_string(),
        path: path.to_string(),
        request_id: header("MS-RequestId"),
        correlation_id: header("MS-CorrelationId"),
    };
    let mut calls = em.pc_calls.lock().expect("calls lock");
    if calls.len() == 10_000 {
        calls.pop_front();
    }
    calls.push_back(call.clone());
    call
}

/// The other call this call's request id named first, if any.
fn reused(em: &Emulator, call: &super::PcCall) -> Option<String> {
    let id = call.request_id.as_ref()?;
    let this = format!("{} {}", call.method, call.path);
    let mut seen = em.request_ids.lock().expect("request ids lock");
    match seen.get(id) {
        Some(first) if *first != this => Some(first.clone()),
        Some(_) => None,
        None => {
            // A long-running sandbox forgets old ids (as the service's window does) rather
            // than growing without bound.
            if seen.len() >= 100_000 {
                seen.clear();
            }
            seen.insert(id.clone(), this);
            None
        }
    }
}

async fn customer(
    em: &Emulator,
    headers: &HeaderMap,
    customer: &str,
) -> Result<Organization, Response> {
    em.tenant_of(headers, super::Service::PartnerCenter)?;
    let snap = em
        .backend
        .snapshot(customer)
        .await
        .map_err(|e| failure(&e))?;
    snap.organization.ok_or_else(|| {
        pc_error(
            StatusCode::NOT_FOUND,
            600039,
            &format!("Customer {customer} was not found."),
        )
    })
}

fn failure(e: &BackendError) -> Response {
    match e {
        BackendError::Refused(r) => refused(r),
        other => pc_error(StatusCode::INTERNAL_SERVER_ERROR, 500, &other.to_string()),
    }
}

/// A refusal as Partner Center words it.
fn refused(r: &Refusal) -> Response {
    let bad = |code: u32, d: String| pc_error(StatusCode::BAD_REQUEST, code, &d);
    match r {
        // Partner Center answers a held credit check with 403 Forbidden and its own code.
        Refusal::CreditCheckPending { .. } => pc_error(
            StatusCode::FORBIDDEN,
            800023,
            "The customer's credit check is pending.",
        ),
        Refusal::Trial { .. } => bad(
            800027,
            "The quantity of a trial subscription cannot change.".into(),
        ),
        Refusal::SeatsInUse {
            assigned,
            requested,
        } => bad(
            800090,
            format!(
                "The quantity cannot be decreased: {assigned} assigned, {requested} requested."
            ),
        ),
        Refusal::ReductionWindowClosed { closed_at } => bad(
            800090,
            format!(
                "The quantity cannot be decreased: the refundable quantity expired{}.",
                closed_at.map_or_else(String::new, |t| format!(" at {t}"))
            ),
        ),
        Refusal::CancellationWindowClosed { .. } => bad(
            900117,
            "You've passed your 7-day cancellation window.".into(),
        ),
        Refusal::NotActiveYet { .. } => bad(800082, "The subscription is not ready yet.".into()),
        Refusal::SubscriptionSuspended { .. } | Refusal::SubscriptionCanceled { .. } => {
            bad(800091, "The subscription is suspended.".into())
        }
        Refusal::NotAvailable { product, .. } => bad(
            800029,
            format!("The add-on {product} is not related to the base offer."),
        ),
        Refusal::NotFound { what } => pc_error(
            StatusCode::NOT_FOUND,
            800002,
            &format!("{what} was not found."),
        ),
        other => bad(800002, other.message()),
    }
}

/// (base subscription id in the tenant file, add-on id) or (subscription id, None).
fn locate(org: &Organization, pc_id: &str) -> Option<(String, Option<String>)> {
    let pc_id = pc_id.to_lowercase();
    for s in org
        .subscriptions
        .iter()
        .filter(|s| s.channel == Channel::Direct)
    {
        if ids::subscription_id(&s.id) == pc_id {
            return Some((s.id.clone(), None));
        }
        if let Some(a) = s
            .add_ons
            .iter()
            .find(|a| ids::subscription_id(&a.id) == pc_id)
        {
            return Some((s.id.clone(), Some(a.id.clone())));
        }
    }
    None
}

fn listed(em: &Emulator, org: &Organization) -> Vec<wire::PcSubscription> {
    let mut out = vec![];
    let visible =
        |s: &&crate::domain::Subscription| s.channel == Channel::Direct && !em.lagging(&s.id);
    for s in org.subscriptions.iter().filter(visible) {
        let status = match s.status {
            SubscriptionState::Pending => "pending",
            SubscriptionState::Suspended => "suspended",
            SubscriptionState::Canceled => "deleted",
            _ => "active",
        };
        let base = wire::PcSubscription {
            id: ids::subscription_id(&s.id),
            // New commerce: the catalog item the subscription was bought as.
            offer_id: super::catalog::item(&s.product, "M"),
            offer_name: s.product.clone(),
            quantity: s.seats,
            status: status.into(),
            auto_renew_enabled: s.recurring_billing,
            billing_cycle: match s.billing_frequency {
                BillingFrequency::Monthly => "monthly",
                BillingFrequency::Annual => "annual",
            }
            .into(),
            term_duration: Some("P1M".into()),
            creation_date: s.purchased_at.map(|t| t.to_string()),
            commitment_end_date: s.term_ends_at.map(|t| t.to_string()),
            cancellation_allowed_until_date: s.cancellation_window_ends_at.map(|t| t.to_string()),
            refundable_quantity: s
                .reduction_window_ends_at
                .map(|t| wire::RefundableQuantity {
                    total_quantity: if check_reduction_window(s, em.backend.now()).is_ok() {
                        s.seats
                    } else {
                        0
                    },
                    details: vec![wire::RefundableDetail {
                        quantity: s.seats,
                        allowed_until_date_time: t.to_string(),
                    }],
                }),
            is_trial: s.trial,
            parent_subscription_id: None,
            order_id: None,
        };
        for a in &s.add_ons {
            out.push(wire::PcSubscription {
                id: ids::subscription_id(&a.id),
                offer_id: super::catalog::item(&a.product, "M"),
                offer_name: a.product.clone(),
                quantity: a.quantity,
                parent_subscription_id: Some(base.id.clone()),
                is_trial: false,
                ..base.clone()
            });
        }
        out.push(base);
    }
    out
}

pub async fn subscriptions(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(c): Path<String>,
) -> Response {
    let org = match customer(&em, &headers, &c).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let items = listed(&em, &org);
    Json(wire::Items {
        total_count: items.len(),
        items,
    })
    .into_response()
}

fn one(em: &Emulator, org: &Organization, id: &str) -> Result<wire::PcSubscription, Response> {
    listed(em, org)
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .ok_or_else(|| {
            pc_error(
                StatusCode::NOT_FOUND,
                800002,
                &format!("Subscription {id} was not found."),
            )
        })
}

pub async fn subscription(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, id)): Path<(String, String)>,
) -> Response {
    match customer(&em, &headers, &c)
        .await
        .and_then(|org| one(&em, &org, &id))
    {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

/// PATCH: the subscription as the client wants it; what differs is changed, by the rules.
pub async fn update(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, id)): Path<(String, String)>,
    Json(want): Json<wire::PcSubscription>,
) -> Response {
    let org = match customer(&em, &headers, &c).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some((base, add_on)) = locate(&org, &id) else {
        return r_missing(&id);
    };
    let current = match one(&em, &org, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let tenant = org.domain.clone();
    let b = &em.backend;
    let mut accepted = false;
    if want.status == "deleted" && current.status != "deleted" {
        let sub = org.subscription(&base).expect("located");
        if !cancellation_window_open(sub, em.backend.now()) {
            return refused(&Refusal::CancellationWindowClosed { term_ends_at: None });
        }
        if let Err(e) = b.cancel(&tenant, &base).await {
            return failure(&e);
        }
    }
    if want.auto_renew_enabled != current.auto_renew_enabled
        && let Err(e) = b
            .set_recurring_billing(&tenant, &base, want.auto_renew_enabled)
            .await
    {
        return failure(&e);
    }
    if want.quantity != current.quantity {
        let result = match &add_on {
            Some(a) => b
                .set_add_on_quantity(&tenant, &base, a, want.quantity)
                .await
                .map(|()| SeatChange::Applied),
            None => b.set_seats(&tenant, &base, want.quantity, None).await,
        };
        match result {
            Ok(SeatChange::Accepted) => accepted = true,
            Ok(SeatChange::Applied) => {}
            Err(e) => return failure(&e),
        }
    }
    let after = match customer(&em, &headers, &c)
        .await
        .and_then(|org| one(&em, &org, &id))
    {
        Ok(s) => s,
        Err(r) => return r,
    };
    let status = if accepted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (status, Json(after)).into_response()
}

fn r_missing(id: &str) -> Response {
    pc_error(
        StatusCode::NOT_FOUND,
        800002,
        &format!("Subscription {id} was not found."),
    )
}

pub async fn convert(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, id)): Path<(String, String)>,
) -> Response {
    let org = match customer(&em, &headers, &c).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some((base, None)) = locate(&org, &id) else {
        return r_missing(&id);
    };
    match em.backend.convert_trial(&org.domain, &base).await {
        Ok(()) => Json(json!({"subscriptionId": id, "status": "success"})).into_response(),
        Err(e) => failure(&e),
    }
}

pub async fn create_cart(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(c): Path<String>,
    Json(mut cart): Json<wire::Cart>,
) -> Response {
    if let Err(r) = customer(&em, &headers, &c).await {
        return r;
    }
    let request_id = headers
        .get("MS-RequestId")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let id = ids::guid(
        "cart",
        &format!(
            "{c}/{request_id}/{}",
            serde_json::to_string(&cart).unwrap_or_default()
        ),
    );
    let mut carts = em.carts.lock().expect("carts lock");
    // The same call again (its MS-RequestId): the cart it made, as it stands now.
    if let Some((_, made)) = carts.get(&id) {
        return (StatusCode::CREATED, Json(made.clone())).into_response();
    }
    cart.id = Some(id.clone());
    cart.status = Some("Active".into());
    carts.insert(id, (c.to_lowercase(), cart.clone()));
    (StatusCode::CREATED, Json(cart)).into_response()
}

/// `GET /customers/{customer}/carts/{cart}`: `Active` until checked out, then `Ordered`.
pub async fn cart(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, cart_id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = customer(&em, &headers, &c).await {
        return r;
    }
    match em.carts.lock().expect("carts lock").get(&cart_id) {
        Some((_, cart)) => Json(cart.clone()).into_response(),
        None => pc_error(
            StatusCode::NOT_FOUND,
            800002,
            &format!("Cart {cart_id} was not found."),
        ),
    }
}

/// Checkout: the same MS-RequestId returns the first order, never a second purchase.
pub async fn checkout(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, cart_id)): Path<(String, String)>,
) -> Response {
    let org = match customer(&em, &headers, &c).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let request_id = headers
        .get("MS-RequestId")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(done) = em.orders.lock().expect("orders lock").get(&request_id) {
        return Json(done.clone()).into_response();
    }
    let Some((_, cart)) = em.carts.lock().expect("carts lock").get(&cart_id).cloned() else {
        return pc_error(
            StatusCode::NOT_FOUND,
            800002,
            &format!("Cart {cart_id} was not found."),
        );
    };
    if cart.status.as_deref() == Some("Ordered") {
        // Checked out already, by another call: Partner Center refuses a second checkout.
        return pc_error(
            StatusCode::BAD_REQUEST,
            800065,
            "The cart has already been submitted.",
        );
    }
    let catalog = match em.backend.snapshot(&org.domain).await {
        Ok(s) => s.catalog,
        Err(e) => return failure(&e),
    };
    let key = if request_id.is_empty() {
        cart_id.clone()
    } else {
        request_id.clone()
    };
    let mut line_items = vec![];
    for (n, l) in cart.line_items.iter().enumerate() {
        let key = format!("{key}/{n}");
        let term = match l.term_duration.as_deref() {
            Some("P1Y") => crate::domain::Term::P1Y,
            Some("P3Y") => crate::domain::Term::P3Y,
            _ => crate::domain::Term::P1M,
        };
        let term_text = l.term_duration.clone().unwrap_or_else(|| "P1M".into());
        let billing = if l.billing_cycle.is_empty() {
            "monthly".to_string()
        } else {
            l.billing_cycle.clone()
        };
        let part = match super::catalog::resolve(&catalog, &l.catalog_item_id, &term_text, &billing)
        {
            Ok(p) => p,
            Err(why) => return pc_error(StatusCode::BAD_REQUEST, 800004, &why),
        };
        let request = PurchaseRequest {
            product: part,
            seats: l.quantity,
            billing_frequency: if l.billing_cycle.eq_ignore_ascii_case("annual") {
                BillingFrequency::Annual
            } else {
                BillingFrequency::Monthly
            },
            term,
            offer: None,
            recurring_billing: true,
            idempotency_key: key,
        };
        let id = match l.provisioning_context.get("ParentSubscriptionId") {
            Some(parent) => {
                let Some((base, None)) = locate(&org, parent) else {
                    return r_missing(parent);
                };
                em.backend
                    .buy_add_on(&org.domain, &base, &request)
                    .await
                    .map(|a| a.id)
            }
            None => em
                .backend
                .buy_subscription(&org.domain, &request)
                .await
                .map(|s| s.id),
        };
        if let Ok(id) = &id {
            em.fresh
                .lock()
                .expect("fresh lock")
                .insert(id.clone(), std::time::Instant::now());
        }
        match id {
            Ok(id) => line_items.push(wire::OrderLineItem {
                line_item_number: n as u32,
                offer_id: l.catalog_item_id.clone(),
                subscription_id: Some(ids::subscription_id(&id)),
                quantity: l.quantity,
                friendly_name: l.friendly_name.clone(),
            }),
            Err(e) => return failure(&e),
        }
    }
    let result = wire::CartCheckoutResult {
        orders: vec![wire::Order {
            id: ids::guid("order", &key_of(&request_id, &cart_id)),
            status: "completed".into(),
            line_items,
        }],
        order_errors: vec![],
    };
    let value = serde_json::to_value(&result).expect("orders serialize");
    em.orders
        .lock()
        .expect("orders lock")
        .insert(request_id, value.clone());
    if let Some((_, c)) = em.carts.lock().expect("carts lock").get_mut(&cart_id) {
        c.status = Some("Ordered".into());
    }
    Json(value).into_response()
}

fn key_of(request_id: &str, cart: &str) -> String {
    format!("{request_id}/{cart}")
}

/// `GET /customers/{customer}/orders`: the orders checked out here.
pub async fn orders(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(c): Path<String>,
) -> Response {
    if let Err(r) = customer(&em, &headers, &c).await {
        return r;
    }
    let items: Vec<serde_json::Value> = em
        .orders
        .lock()
        .expect("orders lock")
        .values()
        .flat_map(|v| v["orders"].as_array().cloned().unwrap_or_default())
        .collect();
    Json(json!({"totalCount": items.len(), "items": items})).into_response()
}

/// `GET /customers/{customer}/subscriptions/{id}/addons`: a base subscription's add-ons.
pub async fn add_ons(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, id)): Path<(String, String)>,
) -> Response {
    let org = match customer(&em, &headers, &c).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let items: Vec<wire::PcSubscription> = listed(&em, &org)
        .into_iter()
        .filter(|s| {
            s.parent_subscription_id
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&id))
        })
        .collect();
    Json(wire::Items {
        total_count: items.len(),
        items,
    })
    .into_response()
}
