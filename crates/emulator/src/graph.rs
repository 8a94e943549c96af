//! Microsoft Graph v1.0: `subscribedSkus`, `directory/subscriptions`, `users` (paged),
//! `users/{id}/assignLicense` and `$batch` of at most 20, per item, with Graph's messages.

use super::groups::Inherited;
use super::{Emulator, graph_error};
use crate::backend::Backend;
use crate::domain::{
    Catalog, Channel, Licence, Organization, Refusal, SubscriptionState, User, UserChange,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// `f` on the users of the organization behind a request's token, borrowed (no copy of a
/// large tenant per request).
fn with_users<T>(
    em: &Emulator,
    tenant: &str,
    f: impl FnOnce(&Organization, &Catalog) -> T,
) -> Result<T, Response> {
    em.backend
        .with_users(tenant, f)
        .map_err(|e| unknown_error(&e))?
        .ok_or_else(no_tenant)
}

fn no_tenant() -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        "The tenant does not exist.",
    )
}

fn unknown_error(e: &crate::backend::BackendError) -> Response {
    graph_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UnknownError",
        &e.to_string(),
    )
}

/// The organization behind a request's token, as it stands.
async fn organization(
    em: &Emulator,
    headers: &HeaderMap,
) -> Result<(Arc<Catalog>, Organization), Response> {
    let tenant = em.tenant_of(headers, super::Service::Graph)?;
    let snap = em
        .backend
        .snapshot(&tenant)
        .await
        .map_err(|e| unknown_error(&e))?;
    let org = snap.organization.ok_or_else(no_tenant)?;
    Ok((snap.catalog, org))
}

pub(super) fn sku_id(product: &str) -> String {
    crate::guid::guid("sku", product)
}

pub(super) fn plan_id(plan: &str) -> String {
    crate::guid::guid("plan", plan)
}

pub(super) fn user_id(upn: &str) -> String {
    crate::guid::guid("user", upn)
}

/// A Graph collection: `value`, and `@odata.nextLink` when there is more.
fn page(value: Vec<Value>, next_link: Option<String>) -> Response {
    let mut body = json!({"value": value});
    if let Some(next) = next_link {
        body["@odata.nextLink"] = json!(next);
    }
    Json(body).into_response()
}

pub async fn subscribed_skus(State(em): State<Arc<Emulator>>, headers: HeaderMap) -> Response {
    let (catalog, org) = match organization(&em, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut products: Vec<String> = org
        .subscriptions
        .iter()
        .flat_map(|s| {
            std::iter::once(s.product.clone()).chain(s.add_ons.iter().map(|a| a.product.clone()))
        })
        .chain(
            org.users
                .iter()
                .flat_map(|u| u.licenses.iter().map(|l| l.product.clone())),
        )
        .collect();
    products.sort();
    products.dedup();
    // "List subscribedSkus": one subscribedSku per product the tenant has or uses.
    let value: Vec<Value> = products
        .iter()
        .map(|p| {
            let (mut enabled, mut warning, mut suspended) = (0u32, 0u32, 0u32);
            for s in org.subscriptions.iter().filter(|s| &s.product == p) {
                match s.status {
                    SubscriptionState::Active | SubscriptionState::Pending => enabled += s.seats,
                    SubscriptionState::Warning => warning += s.seats,
                    SubscriptionState::Suspended => suspended += s.seats,
                    SubscriptionState::Canceled => {}
                }
            }
            for a in org
                .subscriptions
                .iter()
                .flat_map(|s| &s.add_ons)
                .filter(|a| &a.product == p)
            {
                enabled += a.quantity;
            }
            let plans: Vec<Value> = catalog
                .product(p)
                .map(|x| {
                    x.plans
                        .iter()
                        .map(|plan| {
                            json!({"servicePlanId": plan_id(plan), "servicePlanName": plan,
                                "provisioningStatus": "Success", "appliesTo": "User"})
                        })
                        .collect()
                })
                .unwrap_or_default();
            let subscription_ids: Vec<String> = org
                .subscriptions
                .iter()
                .filter(|s| &s.product == p)
                .map(|s| crate::guid::guid("companySubscription", &s.id))
                .collect();
            json!({
                "accountName": org.domain,
                "accountId": crate::guid::guid("tenant", &org.domain),
                "appliesTo": "User",
                "capabilityStatus": if enabled + warning > 0 { "Enabled" } else { "Suspended" },
                "consumedUnits": org.consumed(p),
                "id": format!("{}_{}", crate::guid::guid("tenant", &org.domain), sku_id(p)),
                "prepaidUnits": {"enabled": enabled, "lockedOut": 0, "suspended": suspended,
                    "warning": warning},
                "servicePlans": plans,
                "skuId": sku_id(p),
                "skuPartNumber": p,
                "subscriptionIds": subscription_ids,
            })
        })
        .collect();
    page(value, None)
}

/// The partner that sells the tenant's `Direct` subscriptions through Partner Center, and one
/// that sold its `Reseller` ones.
pub fn partner_tenant(ours: bool) -> String {
    crate::guid::guid(
        "tenant",
        if ours {
            "seatkeeper-partner"
        } else {
            "another-partner"
        },
    )
}

pub async fn subscriptions(State(em): State<Arc<Emulator>>, headers: HeaderMap) -> Response {
    let (_, org) = match organization(&em, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let status = |s: SubscriptionState| match s {
        SubscriptionState::Warning => "Warning",
        SubscriptionState::Suspended => "Suspended",
        SubscriptionState::Canceled => "Deleted",
        _ => "Enabled",
    };
    // "List subscriptions" (companySubscription): bases and their add-ons alike.
    let company_subscription = |id: &str,
                                product: &str,
                                state: SubscriptionState,
                                seats: u32,
                                trial: bool,
                                created: Option<String>,
                                next: Option<String>,
                                owner: (&str, Option<String>)| {
        let mut v = json!({
            "id": crate::guid::guid("companySubscription", id),
            "commerceSubscriptionId": super::subscription_id(id),
            "skuId": sku_id(product),
            "skuPartNumber": product,
            "status": status(state),
            "totalLicenses": seats,
            "isTrial": trial,
            "createdDateTime": created,
            "nextLifecycleDateTime": next,
            "ownerType": owner.0,
            "ownerTenantId": owner.1,
        });
        if owner.0 == "User" {
            v["ownerId"] = json!(crate::guid::guid("owner", id));
        }
        v
    };
    let mut value = vec![];
    for s in org.subscriptions.iter().filter(|s| !em.lagging(&s.id)) {
        let owner = match s.channel {
            Channel::SelfService => ("User", None),
            Channel::Reseller => ("Company", Some(partner_tenant(false))),
            Channel::Direct => ("Company", Some(partner_tenant(true))),
            Channel::Prepaid => ("Company", None),
        };
        let next = s.term_ends_at.map(|t| t.to_string());
        value.push(company_subscription(
            &s.id,
            &s.product,
            s.status,
            s.seats,
            s.trial,
            s.purchased_at.map(|t| t.to_string()),
            next.clone(),
            (owner.0, owner.1.clone()),
        ));
        for a in &s.add_ons {
            value.push(company_subscription(
                &a.id,
                &a.product,
                s.status,
                a.quantity,
                false,
                None,
                next.clone(),
                ("Company", owner.1.clone()),
            ));
        }
    }
    page(value, None)
}

/// A user with every property the emulator knows (the user resource type's, with its
/// `assignedLicense` and `licenseAssignmentState`); `$select` picks among them.
fn graph_user(org: &Organization, inherited: &Inherited, u: &User) -> Value {
    let assigned: Vec<Value> = u
        .licenses
        .iter()
        .map(|l| {
            json!({"skuId": sku_id(&l.product),
                "disabledPlans": l.disabled_plans.iter().map(|p| plan_id(p)).collect::<Vec<_>>()})
        })
        .collect();
    // licenseAssignmentState: `assignedByGroup` is the group's id (null when direct);
    // a member's group licence in error is a state `Error` with the error, and no
    // assignedLicense.
    let mut states: Vec<Value> = u
        .licenses
        .iter()
        .zip(&assigned)
        .map(|(held, a)| {
            json!({"skuId": a["skuId"], "disabledPlans": a["disabledPlans"],
                "assignedByGroup": held.by_group.then(|| inherited.group_of(&u.upn, &held.product)),
                "state": "Active", "error": "None"})
        })
        .collect();
    for e in &u.license_errors {
        states.push(json!({"skuId": sku_id(&e.product), "disabledPlans": [],
            "assignedByGroup": Inherited::id_of_key(org, &e.group),
            "state": "Error", "error": e.error.as_str()}));
    }
    json!({
        "id": user_id(&u.upn),
        "userPrincipalName": u.upn,
        "userType": if u.guest { "Guest" } else { "Member" },
        "usageLocation": u.usage_location,
        "department": u.department,
        "jobTitle": u.job_title,
        "companyName": u.company_name,
        "officeLocation": u.office_location,
        "country": u.country,
        "employeeType": u.employee_type,
        "accountEnabled": u.account_enabled,
        // The signInActivity resource type: the last interactive and non-interactive
        // attempts and the last successful sign-in; null for a user who never signed in. The
        // tenant file records one time, the last successful (interactive) sign-in.
        "signInActivity": u.last_sign_in_at.map(|at| json!({
            "lastSignInDateTime": at.to_string(),
            "lastSignInRequestId": seatkeeper_core::guid::guid("sign-in", &format!("{} {at}", u.upn)),
            // No non-interactive sign-in: the user-list page's example prints Graph's never.
            "lastNonInteractiveSignInDateTime": "0001-01-01T00:00:00Z",
            "lastNonInteractiveSignInRequestId": "",
            "lastSuccessfulSignInDateTime": at.to_string(),
            "lastSuccessfulSignInRequestId": seatkeeper_core::guid::guid("sign-in", &format!("{} {at}", u.upn)),
        })),
        "assignedLicenses": assigned,
        "licenseAssignmentStates": states,
    })
}

pub async fn users(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let tenant = match em.tenant_of(&headers, super::Service::Graph) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let top: usize = q.get("$top").and_then(|t| t.parse().ok()).unwrap_or(100);
    if top == 0 || top > 999 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Invalid page size specified: '$top'. Must be between 1 and 999 inclusive.",
        );
    }
    // "When you specify $select=signInActivity … the maximum page size for $top is 120.
    // Requests with $top set higher than 120 will return pages with up to 120 users."
    let top = if q
        .get("$select")
        .is_some_and(|s| s.split(',').any(|f| f.trim() == "signInActivity"))
    {
        top.min(120)
    } else {
        top
    };
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    // "users: 2" resource units.
    em.charge_read(super::read_cost(2, &q));
    let read = with_users(&em, &tenant, |org, _| {
        let inherited = Inherited::of(org);
        let value: Vec<Value> = org
            .users
            .iter()
            .skip(skip)
            .take(top)
            .map(|u| graph_user(org, &inherited, u))
            .collect();
        (value, org.users.len())
    });
    let (value, total) = match read {
        Ok(p) => p,
        Err(r) => return r,
    };
    em.remember_user_ids(
        value
            .iter()
            .filter_map(|u| Some((u["id"].as_str()?, u["userPrincipalName"].as_str()?))),
    );
    // The user page: "By default, only a limited set of properties are returned (businessPhones,
    // displayName, givenName, id, jobTitle, mail, mobilePhone, officeLocation,
    // preferredLanguage, surname, and userPrincipalName). To return an alternative property
    // set, you must specify the desired set of user properties using the OData $select query
    // parameter." Of those, the emulator knows id, jobTitle, officeLocation and the UPN.
    let select = q.get("$select").cloned();
    // signInActivity: "AuditLog.Read.All" on top of reading users (the user-list page), and
    // a tenant with Microsoft Entra ID P1 or P2; an app without it is refused the whole page.
    if em.faults.current().deny_sign_in_activity
        && select
            .as_deref()
            .is_some_and(|s| s.split(',').any(|f| f.trim() == "signInActivity"))
    {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    let fields: Vec<&str> = match &select {
        Some(s) => s.split(',').map(str::trim).collect(),
        None => vec!["id", "jobTitle", "officeLocation", "userPrincipalName"],
    };
    let value: Vec<Value> = value
        .into_iter()
        .map(|mut u| {
            if let Some(o) = u.as_object_mut() {
                o.retain(|k, _| fields.contains(&k.as_str()));
            }
            u
        })
        .collect();
    let next_link = (skip + top < total).then(|| {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        // The next page keeps the query's $select, as Graph's next links do.
        let select = select
            .as_deref()
            .map(|s| format!("&$select={s}"))
            .unwrap_or_default();
        format!(
            "http://{host}/v1.0/users?$top={top}{select}&$skiptoken={}",
            skip + top
        )
    });
    page(value, next_link)
}

/// An `assignLicense` body, as the page describes it: `addLicenses`, a collection of
/// assignedLicense (`skuId`, and `disabledPlans` as service plan ids), and `removeLicenses`,
/// a collection of SKU ids; both required (empty when unused).
pub(super) struct AssignLicense {
    add: Vec<(String, Vec<String>)>,
    remove: Vec<String>,
}

pub(super) fn assign_license_body(body: &Value) -> Result<AssignLicense, String> {
    let strings = |v: &Value, what: &str| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("{what} must be a collection"))?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what} holds ids (strings)"))
            })
            .collect()
    };
    let add = body
        .get("addLicenses")
        .ok_or("The request is missing the required parameter 'addLicenses'.")?
        .as_array()
        .ok_or("addLicenses must be a collection of assignedLicense")?
        .iter()
        .map(|l| {
            let sku = l["skuId"]
                .as_str()
                .ok_or("assignedLicense.skuId is required")?
                .to_string();
            let disabled = match l.get("disabledPlans") {
                None | Some(Value::Null) => vec![],
                Some(v) => strings(v, "disabledPlans")?,
            };
            Ok((sku, disabled))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let remove = strings(
        body.get("removeLicenses")
            .ok_or("The request is missing the required parameter 'removeLicenses'.")?,
        "removeLicenses",
    )?;
    Ok(AssignLicense { add, remove })
}

/// A Graph `assignLicense` body as a domain change, in names.
fn change_of(
    em: &Emulator,
    org: &Organization,
    catalog: &Catalog,
    user: &str,
    body: &AssignLicense,
) -> Result<UserChange, (StatusCode, &'static str, String)> {
    let upn = em
        .user(org, user)
        .map(|u| u.upn.clone())
        .ok_or_else(|| (StatusCode::NOT_FOUND, "Request_ResourceNotFound",
            format!("Resource '{user}' does not exist or one of its queried reference-property objects are not present.")))?;
    let (add, remove) = licences_of(catalog, body)?;
    Ok(UserChange {
        user: upn,
        add,
        remove,
        plans_only: vec![],
    })
}

/// A request Graph refuses: status, code, message.
pub(super) type Refused = (StatusCode, &'static str, String);

/// An `assignLicense` body's licences, in names (a user's and a group's alike).
pub(super) fn licences_of(
    catalog: &Catalog,
    body: &AssignLicense,
) -> Result<(Vec<Licence>, Vec<String>), Refused> {
    let product = |sku: &str| {
        catalog
            .products()
            .find(|p| sku_id(&p.sku) == sku.to_lowercase())
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    format!("License {sku} does not correspond to a valid company License."),
                )
            })
    };
    let mut add = vec![];
    for (sku, disabled_plans) in &body.add {
        let p = product(sku)?;
        let disabled: Vec<String> = p
            .plans
            .iter()
            .filter(|plan| {
                disabled_plans
                    .iter()
                    .any(|d| d.to_lowercase() == plan_id(plan))
            })
            .cloned()
            .collect();
        add.push(Licence::new(&p.sku, &disabled));
    }
    let remove = body
        .remove
        .iter()
        .map(|s| product(s).map(|p| p.sku.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((add, remove))
}

/// A refused licence change, as Graph words it.
fn refusal(r: &Refusal, user: &str) -> (StatusCode, &'static str, String) {
    let bad = |m: String| (StatusCode::BAD_REQUEST, "Request_BadRequest", m);
    match r {
        Refusal::UsageLocationMissing { .. } => {
            bad("License assignment cannot be done for user with invalid usage location.".into())
        }
        Refusal::InsufficientSeats { product, .. } | Refusal::SelfServiceOnly { product } => {
            bad(format!(
                "License assignment failed because subscription {product} does not have any available licenses."
            ))
        }
        Refusal::ConflictingServices {
            plan, other_plan, ..
        } => bad(format!(
            "License assignment failed because service plans {plan},{other_plan} are mutually exclusive."
        )),
        Refusal::MissingDependency { plan, needs, .. } => bad(format!(
            "License assignment failed because service plan {plan} depends on the service plan(s) {}.",
            needs.join(",")
        )),
        Refusal::UserNotFound { .. } => (
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{user}' does not exist or one of its queried reference-property objects are not present."
            ),
        ),
        other => bad(other.message()),
    }
}

/// A `$batch` item's or a call's error body: Graph's error resource ("Microsoft Graph error
/// responses and resource types"): `code`, `message`, `innerError` with `request-id` and
/// `date`.
fn item_error(status: StatusCode, code: &str, message: &str) -> (u16, Value) {
    (
        status.as_u16(),
        json!({"error": {"code": code, "message": message,
            "innerError": {"request-id": crate::guid::guid("request", message),
                "date": "2026-01-01T00:00:00"}}}),
    )
}

pub async fn assign_license(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let body = match assign_license_body(&body) {
        Ok(b) => b,
        Err(m) => return graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", &m),
    };
    let answers = assign(&em, &headers, vec![(user, body)]).await;
    match answers {
        Err(r) => r,
        Ok(mut a) => {
            let (status, body, retry) = a.remove(0);
            let mut r = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                Json(body),
            )
                .into_response();
            if let Some((s, scope)) = retry {
                r.headers_mut().insert("Retry-After", s.into());
                if let Ok(v) = scope.parse() {
                    r.headers_mut().insert("x-ms-throttle-scope", v);
                }
            }
            r
        }
    }
}

/// One licence change's answer: status, body, and when throttled the seconds to wait and the
/// `x-ms-throttle-scope` to name.
type Answer = (u16, Value, Option<(u64, String)>);

/// Licence changes, each against the write budget, made together through the simulator.
async fn assign(
    em: &Emulator,
    headers: &HeaderMap,
    items: Vec<(String, AssignLicense)>,
) -> Result<Vec<Answer>, Response> {
    let tenant = em.tenant_of(headers, super::Service::Graph)?;
    let mut answers: Vec<Option<Answer>> = vec![None; items.len()];
    let app = em.options.client_id.clone().unwrap_or_default();
    let denied = em.faults.current().deny_licence_writes;
    let changes = with_users(em, &tenant, |org, catalog| {
        let mut changes = vec![];
        for (i, (user, body)) in items.iter().enumerate() {
            if denied {
                let (s, b) = item_error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                );
                answers[i] = Some((s, b, None));
                continue;
            }
            if let Err((wait, scope)) = em.faults.take_write(&tenant) {
                let (s, b) = item_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests. Please retry after the time specified in the Retry-After header.",
                );
                let scope = super::faults::throttle_scope(scope, &app, &tenant);
                answers[i] = Some((s, b, Some((wait, scope))));
                continue;
            }
            match change_of(em, org, catalog, user, body) {
                Ok(c) => changes.push((i, c)),
                Err((s, code, m)) => {
                    let (s, b) = item_error(s, code, &m);
                    answers[i] = Some((s, b, None));
                }
            }
        }
        changes
    })?;
    if !changes.is_empty() {
        let list: Vec<UserChange> = changes.iter().map(|(_, c)| c.clone()).collect();
        let results = em
            .backend
            .assign_licences(&tenant, &list)
            .await
            .map_err(|e| unknown_error(&e))?;
        let after: Vec<Value> = with_users(em, &tenant, |org, _| {
            let inherited = Inherited::of(org);
            changes
                .iter()
                .map(|(_, c)| {
                    org.user(&c.user)
                        .map(|u| graph_user(org, &inherited, u))
                        .unwrap_or(Value::Null)
                })
                .collect()
        })?;
        for (((i, _), result), user) in changes.into_iter().zip(results).zip(after) {
            answers[i] = Some(match result {
                Ok(()) => {
                    em.faults
                        .applied
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    (200, user, None)
                }
                Err(r) => {
                    let (s, code, m) = refusal(&r, &items[i].0);
                    let (s, b) = item_error(s, code, &m);
                    (s, b, None)
                }
            });
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| a.expect("every item answered"))
        .collect())
}

/// `POST /$batch`, as "Combine multiple HTTP requests using JSON batching" describes it:
/// `requests`, each with a string `id`, `method`, a `url` relative to the version (with or
/// without its leading `/`), optional `headers` and `body`; at most 20. The answer is
/// `responses`, each with its `id`, a numeric `status`, `headers` (an object of strings) and
/// `body`, in any order.
pub async fn batch(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Response {
    let Some(requests) = request["requests"].as_array() else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The batch request must hold a 'requests' collection.",
        );
    };
    if requests.len() > 20 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Maximum number of requests in a batch is 20.",
        );
    }
    let mut items = vec![];
    let mut unsupported = vec![];
    for r in requests {
        let id = match &r["id"] {
            Value::String(id) => id.clone(),
            _ => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Each batch request needs an 'id' (a string).",
                );
            }
        };
        let method = r["method"].as_str().unwrap_or_default();
        let url = r["url"].as_str().unwrap_or_default();
        let user = url
            .trim_start_matches('/')
            .strip_prefix("users/")
            .and_then(|p| p.strip_suffix("/assignLicense"));
        match (method, user, r.get("body")) {
            ("POST", Some(u), Some(body)) => match assign_license_body(body) {
                Ok(b) => items.push((id, u.to_string(), b)),
                Err(m) => unsupported.push((
                    id,
                    item_error(StatusCode::BAD_REQUEST, "Request_BadRequest", &m),
                )),
            },
            _ => unsupported.push((
                id,
                item_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("The emulator's $batch serves assignLicense only, not {method} {url}"),
                ),
            )),
        }
    }
    let ids: Vec<String> = items.iter().map(|(id, _, _)| id.clone()).collect();
    let answers = match assign(
        &em,
        &headers,
        items.into_iter().map(|(_, u, b)| (u, b)).collect(),
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut responses: Vec<Value> = ids
        .into_iter()
        .zip(answers)
        .map(|(id, (status, body, retry))| {
            let mut headers = json!({"Content-Type": "application/json"});
            if let Some((s, scope)) = retry {
                headers["Retry-After"] = json!(s.to_string());
                headers["x-ms-throttle-scope"] = json!(scope);
            }
            json!({"id": id, "status": status, "headers": headers, "body": body})
        })
        .collect();
    responses.extend(unsupported.into_iter().map(|(id, (status, body))| {
        json!({"id": id, "status": status, "headers": {"Content-Type": "application/json"}, "body": body})
    }));
    let mut reply = Json(json!({"responses": responses})).into_response();
    // Graph's warning before it throttles: the share of the limit used, from 0.8 on.
    let tenant = em
        .tenant_of(&headers, super::Service::Graph)
        .unwrap_or_default();
    if let Some(share) = em.faults.usage(&tenant).filter(|s| *s >= 0.8)
        && let Ok(v) = format!("{share:.2}").parse()
    {
        reply
            .headers_mut()
            .insert("x-ms-throttle-limit-percentage", v);
    }
    reply
}
