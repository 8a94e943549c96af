//! Partner Center v1: a customer's subscriptions (read; PATCH of quantity, status and
//! `autoRenewEnabled`), trial conversions, carts and checkout. Only subscriptions this partner
//! sold (channel `Direct` in the tenant file) are here; every change goes through the
//! simulator's rules and is refused with Partner Center's codes.

use super::{Emulator, pc_error};
use crate::backend::{Backend, BackendError, PurchaseRequest, SeatChange};
use crate::domain::rules::{cancellation_window_open, check_reduction_window};
use crate::domain::{BillingFrequency, Channel, Organization, Refusal, SubscriptionState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
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

/// The call's `MS-RequestId` ("" without one).
fn request_id_of(headers: &HeaderMap) -> String {
    headers
        .get("MS-RequestId")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
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
        if super::subscription_id(&s.id) == pc_id {
            return Some((s.id.clone(), None));
        }
        if let Some(a) = s
            .add_ons
            .iter()
            .find(|a| super::subscription_id(&a.id) == pc_id)
        {
            return Some((s.id.clone(), Some(a.id.clone())));
        }
    }
    None
}

/// A member of a Partner Center JSON object by name, whatever the case of its first letters
/// (the service reads JSON case-insensitively, and its own examples mix `lineItems` and
/// `LineItems`).
pub(super) fn member<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, x)| x)
        .filter(|x| !x.is_null())
}

/// The customer's subscriptions this partner sold, as "Get a subscription by ID" shows a new
/// commerce subscription (its example, `pcNceSubscription.json`), add-ons with their
/// `parentSubscriptionId`.
fn listed(em: &Emulator, org: &Organization) -> Vec<Value> {
    let mut out = vec![];
    let visible =
        |s: &&crate::domain::Subscription| s.channel == Channel::Direct && !em.lagging(&s.id);
    let partner = super::graph::partner_tenant(true);
    for s in org.subscriptions.iter().filter(visible) {
        let status = match s.status {
            SubscriptionState::Pending => "pending",
            SubscriptionState::Suspended => "suspended",
            SubscriptionState::Canceled => "deleted",
            _ => "active",
        };
        let one = |id: &str, product: &str, quantity: u32, trial: bool| {
            let mut v = json!({
                "id": super::subscription_id(id),
                // New commerce: the catalog item the subscription was bought as.
                "offerId": super::catalog::item(product, if trial { super::catalog::TRIAL } else { "M" }),
                "offerName": product,
                "friendlyName": product,
                "productType": {"id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE"},
                "quantity": quantity,
                "unitType": "Licenses",
                "hasPurchasableAddons": false,
                "creationDate": s.purchased_at.map(|t| t.to_string()),
                "effectiveStartDate": s.purchased_at.map(|t| t.to_string()),
                "commitmentEndDate": s.term_ends_at.map(|t| t.to_string()),
                "status": status,
                "autoRenewEnabled": s.recurring_billing,
                "isTrial": trial,
                "billingType": "license",
                "billingCycle": match s.billing_frequency {
                    BillingFrequency::Monthly => "monthly",
                    BillingFrequency::Annual => "annual",
                },
                "termDuration": "P1M",
                "isMicrosoftProduct": true,
                "partnerId": partner,
                "publisherName": "Microsoft Corporation",
                "attributes": {"objectType": "Subscription"},
            });
            if let Some(t) = s.cancellation_window_ends_at {
                v["cancellationAllowedUntilDate"] = json!(t.to_string());
            }
            if let Some(t) = s.reduction_window_ends_at {
                // The .NET SDK's RefundableQuantity: seats that may still be removed, and
                // until when.
                let open = check_reduction_window(s, em.backend.now()).is_ok();
                v["refundableQuantity"] = json!({
                    "totalQuantity": if open { quantity } else { 0 },
                    "details": [{"quantity": quantity, "allowedUntilDateTime": t.to_string()}],
                });
            }
            v
        };
        let base = one(&s.id, &s.product, s.seats, s.trial);
        for a in &s.add_ons {
            let mut v = one(&a.id, &a.product, a.quantity, false);
            v["parentSubscriptionId"] = base["id"].clone();
            out.push(v);
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
    collection(listed(&em, &org))
}

/// A Partner Center collection: `totalCount`, `items`, `attributes`.
fn collection(items: Vec<Value>) -> Response {
    Json(json!({"totalCount": items.len(), "items": items,
        "attributes": {"objectType": "Collection"}}))
    .into_response()
}

fn one(em: &Emulator, org: &Organization, id: &str) -> Result<Value, Response> {
    listed(em, org)
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
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

/// PATCH: the subscription as the client wants it ("Change the quantity of licenses": the
/// whole subscription, as read, with the fields to change); what differs from the current
/// `quantity`, `status` and `autoRenewEnabled` is changed, by the rules. A field left out is
/// left as it is.
pub async fn update(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, id)): Path<(String, String)>,
    Json(want): Json<Value>,
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
    let wanted = |name: &str| member(&want, name).or_else(|| member(&current, name));
    let (Some(status), Some(renew), Some(quantity)) = (
        wanted("status").and_then(Value::as_str),
        wanted("autoRenewEnabled").and_then(Value::as_bool),
        wanted("quantity").and_then(Value::as_u64),
    ) else {
        return pc_error(
            StatusCode::BAD_REQUEST,
            400,
            "The subscription's status, autoRenewEnabled or quantity is not of its type.",
        );
    };
    let quantity = quantity as u32;
    let was = |name: &str| current[name].clone();
    if status == "deleted" && was("status") != "deleted" {
        let sub = org.subscription(&base).expect("located");
        if !cancellation_window_open(sub, em.backend.now()) {
            return refused(&Refusal::CancellationWindowClosed { term_ends_at: None });
        }
        if let Err(e) = b.cancel(&tenant, &base).await {
            return failure(&e);
        }
    }
    if was("autoRenewEnabled") != renew
        && let Err(e) = b.set_recurring_billing(&tenant, &base, renew).await
    {
        return failure(&e);
    }
    if was("quantity") != quantity {
        let result = match &add_on {
            Some(a) => b
                .set_add_on_quantity(&tenant, &base, a, quantity)
                .await
                .map(|()| SeatChange::Applied),
            None => b.set_seats(&tenant, &base, quantity, None).await,
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

/// `GET …/transitionEligibilities`: a new commerce trial may become its paid availability
/// (`M`) now, as `transition_only`; nothing else is offered (upgrades are not emulated).
pub async fn transition_eligibilities(
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
    let sub = org.subscription(&base).expect("located");
    let items: Vec<Value> = if sub.trial && sub.status != SubscriptionState::Canceled {
        vec![json!({
            "operationId": crate::guid::guid("transition-operation", &id),
            "catalogItemId": super::catalog::item(&sub.product, "M"),
            "title": sub.product,
            "description": sub.product,
            "quantity": sub.seats,
            "eligibilities": [{"isEligible": true, "transitionType": "transition_only", "errors": []}],
            "attributes": {"objectType": "TransitionEligibility"},
        })]
    } else {
        vec![]
    };
    collection(items)
}

/// `POST …/transitions`: a trial to its paid availability, for at least the trial's seats.
/// The same MS-RequestId again answers as the first time and converts nothing new.
pub async fn transition(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, id)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let org = match customer(&em, &headers, &c).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let request_id = request_id_of(&headers);
    if let Some(done) = em
        .transitions
        .lock()
        .expect("transitions lock")
        .get(&request_id)
    {
        return Json(done.clone()).into_response();
    }
    let Some((base, None)) = locate(&org, &id) else {
        return r_missing(&id);
    };
    let sub = org.subscription(&base).expect("located").clone();
    let text = |name: &str| member(&body, name).and_then(Value::as_str);
    let (Some(to), Some(quantity), Some(kind)) = (
        text("toCatalogItemId"),
        member(&body, "quantity").and_then(Value::as_u64),
        text("transitionType"),
    ) else {
        return pc_error(
            StatusCode::BAD_REQUEST,
            400,
            "toCatalogItemId, quantity and transitionType are required.",
        );
    };
    let paid = super::catalog::item(&sub.product, "M");
    if !sub.trial || !to.eq_ignore_ascii_case(&paid) || kind != "transition_only" {
        return pc_error(
            StatusCode::BAD_REQUEST,
            400,
            &format!("Subscription {id} is not eligible for a {kind} transition to {to}."),
        );
    }
    if (quantity as u32) < sub.seats {
        return pc_error(
            StatusCode::BAD_REQUEST,
            400,
            &format!(
                "A trial converts with at least its {} licenses, not {quantity}.",
                sub.seats
            ),
        );
    }
    // "Transition a new commerce subscription": the answer's events say how it went.
    let failed = em.faults.current().fail_transitions;
    if !failed && let Err(e) = em.backend.convert_trial(&org.domain, &base).await {
        return failure(&e);
    }
    let answer = json!({
        "fromCatalogItemId": super::catalog::item(&sub.product, super::catalog::TRIAL),
        "fromSubscriptionId": id,
        "toCatalogItemId": paid,
        "toSubscriptionId": id,
        "quantity": quantity,
        "transitionType": kind,
        "Events": [{"name": "Conversion", "status": if failed { "Failed" } else { "Completed" },
            "timestamp": em.backend.now().to_string(),
            "attributes": {"objectType": "TransitionEvent"}}],
        "attributes": {"objectType": "Transition"},
    });
    em.transitions
        .lock()
        .expect("transitions lock")
        .insert(request_id, answer.clone());
    Json(answer).into_response()
}

pub async fn create_cart(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(c): Path<String>,
    Json(mut cart): Json<Value>,
) -> Response {
    if let Err(r) = customer(&em, &headers, &c).await {
        return r;
    }
    let request_id = request_id_of(&headers);
    if !member(&cart, "lineItems").is_some_and(Value::is_array) {
        return pc_error(
            StatusCode::BAD_REQUEST,
            400,
            "A cart needs lineItems: catalogItemId, quantity, billingCycle, termDuration.",
        );
    }
    let id = crate::guid::guid(
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
    // "Create a cart": the cart as sent, with its id, its status and its timestamps.
    let now = em.backend.now().to_string();
    cart["id"] = json!(id);
    cart["status"] = json!("Active");
    cart["creationTimestamp"] = json!(now);
    cart["lastModifiedTimestamp"] = json!(now);
    cart["attributes"] = json!({"objectType": "Cart"});
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
    let request_id = request_id_of(&headers);
    if let Some((_, done)) = em.orders.lock().expect("orders lock").get(&request_id) {
        return Json(done.clone()).into_response();
    }
    let Some((_, cart)) = em.carts.lock().expect("carts lock").get(&cart_id).cloned() else {
        return pc_error(
            StatusCode::NOT_FOUND,
            800002,
            &format!("Cart {cart_id} was not found."),
        );
    };
    if cart["status"] == "Ordered" {
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
    let items = member(&cart, "lineItems")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (n, l) in items.iter().enumerate() {
        let key = format!("{key}/{n}");
        let text = |name: &str| member(l, name).and_then(Value::as_str).unwrap_or_default();
        let Some(quantity) = member(l, "quantity").and_then(Value::as_u64) else {
            return pc_error(
                StatusCode::BAD_REQUEST,
                400,
                "A line item's quantity is required.",
            );
        };
        let term_text = match text("termDuration") {
            "" => "P1M",
            t => t,
        };
        let term = match term_text {
            "P1Y" => crate::domain::Term::P1Y,
            "P3Y" => crate::domain::Term::P3Y,
            _ => crate::domain::Term::P1M,
        };
        let billing = match text("billingCycle") {
            "" => "monthly",
            b => b,
        };
        let part =
            match super::catalog::resolve(&catalog, text("catalogItemId"), term_text, billing) {
                Ok(p) => p,
                Err(why) => return pc_error(StatusCode::BAD_REQUEST, 800004, &why),
            };
        let request = PurchaseRequest {
            product: part,
            seats: quantity as u32,
            billing_frequency: if billing.eq_ignore_ascii_case("annual") {
                BillingFrequency::Annual
            } else {
                BillingFrequency::Monthly
            },
            term,
            offer: None,
            recurring_billing: true,
            idempotency_key: key,
        };
        let parent = member(l, "provisioningContext")
            .and_then(|p| member(p, "parentSubscriptionId"))
            .and_then(Value::as_str);
        let id = match parent {
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
            // "Update a cart" (checkout): the order's line items as its example shows them.
            Ok(id) => line_items.push(json!({
                "lineItemNumber": n,
                "offerId": text("catalogItemId"),
                "subscriptionId": super::subscription_id(&id),
                "termDuration": term_text,
                "transactionType": "New",
                "friendlyName": member(l, "friendlyName"),
                "quantity": quantity,
            })),
            Err(e) => return failure(&e),
        }
    }
    let order_id = crate::guid::guid("order", &key_of(&request_id, &cart_id));
    let value = json!({
        "orders": [{
            "id": order_id,
            "alternateId": &order_id[..12],
            "referenceCustomerId": org.domain,
            "billingCycle": "monthly",
            "currencyCode": "USD",
            "currencySymbol": "$",
            "lineItems": line_items,
            "creationDate": em.backend.now().to_string(),
            "status": "completed",
            "transactionType": "UserPurchase",
            "attributes": {"objectType": "Order"},
        }],
        "attributes": {"objectType": "CartCheckoutResult"},
    });
    em.orders
        .lock()
        .expect("orders lock")
        .insert(request_id, (std::time::Instant::now(), value.clone()));
    if let Some((_, c)) = em.carts.lock().expect("carts lock").get_mut(&cart_id) {
        c["status"] = json!("Ordered");
    }
    Json(value).into_response()
}

fn key_of(request_id: &str, cart: &str) -> String {
    format!("{request_id}/{cart}")
}

/// `GET /customers/{customer}/orders`: the orders checked out here, each once it is listed
/// (Partner Center lists an order up to 15 minutes after it was placed: `orders_lag`).
pub async fn orders(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(c): Path<String>,
) -> Response {
    if let Err(r) = customer(&em, &headers, &c).await {
        return r;
    }
    let lag = em.faults.current().orders_lag;
    let items: Vec<serde_json::Value> = em
        .orders
        .lock()
        .expect("orders lock")
        .values()
        .filter(|(placed, _)| placed.elapsed() >= lag)
        .flat_map(|(_, v)| v["orders"].as_array().cloned().unwrap_or_default())
        .collect();
    collection(items)
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
    let items: Vec<Value> = listed(&em, &org)
        .into_iter()
        .filter(|s| {
            s["parentSubscriptionId"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case(&id))
        })
        .collect();
    collection(items)
}
