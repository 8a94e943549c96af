//! Microsoft Graph v1.0: `subscribedSkus`, `directory/subscriptions`, `users` (paged),
//! `users/{id}/assignLicense` and `$batch` of at most 20, per item, with Graph's messages.

use super::{Emulator, graph_error};
use crate::backend::Backend;
use crate::backend::microsoft::{ids, wire};
use crate::domain::{
    Catalog, Channel, Licence, Organization, Refusal, SubscriptionState, User, UserChange,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
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

fn sku_id(product: &str) -> String {
    ids::guid("sku", product)
}

fn plan_id(plan: &str) -> String {
    ids::guid("plan", plan)
}

pub(super) fn user_id(upn: &str) -> String {
    ids::guid("user", upn)
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
    let value: Vec<wire::SubscribedSku> = products
        .iter()
        .map(|p| {
            let mut units = wire::LicenseUnits::default();
            for s in org.subscriptions.iter().filter(|s| &s.product == p) {
                match s.status {
                    SubscriptionState::Active | SubscriptionState::Pending => {
                        units.enabled += s.seats
                    }
                    SubscriptionState::Warning => units.warning += s.seats,
                    SubscriptionState::Suspended => units.suspended += s.seats,
                    SubscriptionState::Canceled => {}
                }
            }
            for a in org
                .subscriptions
                .iter()
                .flat_map(|s| &s.add_ons)
                .filter(|a| &a.product == p)
            {
                units.enabled += a.quantity;
            }
            wire::SubscribedSku {
                sku_id: sku_id(p),
                sku_part_number: p.clone(),
                applies_to: "User".into(),
                capability_status: if units.enabled + units.warning > 0 {
                    "Enabled"
                } else {
                    "Suspended"
                }
                .into(),
                consumed_units: org.consumed(p),
                prepaid_units: units,
                service_plans: catalog
                    .product(p)
                    .map(|x| {
                        x.plans
                            .iter()
                            .map(|plan| wire::ServicePlanInfo {
                                service_plan_id: plan_id(plan),
                                service_plan_name: plan.clone(),
                                provisioning_status: "Success".into(),
                                applies_to: "User".into(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                subscription_ids: vec![],
            }
        })
        .collect();
    Json(wire::Page {
        next_link: None,
        value,
    })
    .into_response()
}

/// The partner that sells the tenant's `Direct` subscriptions through Partner Center, and one
/// that sold its `Reseller` ones.
pub fn partner_tenant(ours: bool) -> String {
    ids::guid(
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
    let mut value = vec![];
    for s in org.subscriptions.iter().filter(|s| !em.lagging(&s.id)) {
        let (owner_type, owner_tenant) = match s.channel {
            Channel::SelfService => (Some("User".to_string()), None),
            Channel::Reseller => (Some("Company".into()), Some(partner_tenant(false))),
            Channel::Direct => (Some("Company".into()), Some(partner_tenant(true))),
            Channel::Prepaid => (Some("Company".into()), None),
        };
        let id = ids::subscription_id(&s.id);
        value.push(wire::CompanySubscription {
            id: ids::guid("companySubscription", &s.id),
            commerce_subscription_id: id.clone(),
            sku_id: sku_id(&s.product),
            sku_part_number: s.product.clone(),
            status: status(s.status).into(),
            total_licenses: s.seats,
            is_trial: s.trial,
            created_date_time: s.purchased_at.map(|t| t.to_string()),
            next_lifecycle_date_time: s.term_ends_at.map(|t| t.to_string()),
            owner_type,
            owner_id: None,
            owner_tenant_id: owner_tenant.clone(),
        });
        for a in &s.add_ons {
            value.push(wire::CompanySubscription {
                id: ids::guid("companySubscription", &a.id),
                commerce_subscription_id: ids::subscription_id(&a.id),
                sku_id: sku_id(&a.product),
                sku_part_number: a.product.clone(),
                status: status(s.status).into(),
                total_licenses: a.quantity,
                is_trial: false,
                created_date_time: None,
                next_lifecycle_date_time: s.term_ends_at.map(|t| t.to_string()),
                owner_type: Some("Company".into()),
                owner_id: None,
                owner_tenant_id: owner_tenant.clone(),
            });
        }
    }
    Json(wire::Page {
        next_link: None,
        value,
    })
    .into_response()
}

fn graph_user(u: &User) -> wire::User {
    let licences: Vec<wire::AssignedLicense> = u
        .licenses
        .iter()
        .map(|l| wire::AssignedLicense {
            sku_id: sku_id(&l.product),
            disabled_plans: l.disabled_plans.iter().map(|p| plan_id(p)).collect(),
        })
        .collect();
    wire::User {
        id: user_id(&u.upn),
        user_principal_name: u.upn.clone(),
        user_type: Some(if u.guest { "Guest" } else { "Member" }.into()),
        usage_location: u.usage_location.clone(),
        license_assignment_states: licences
            .iter()
            .zip(&u.licenses)
            .map(|(l, held)| wire::LicenseAssignmentState {
                sku_id: l.sku_id.clone(),
                disabled_plans: l.disabled_plans.clone(),
                assigned_by_group: held.by_group.then(|| ids::guid("group", "licensing")),
                state: Some("Active".into()),
                error: Some("None".into()),
            })
            .collect(),
        assigned_licenses: licences,
    }
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
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page = with_users(&em, &tenant, |org, _| {
        let value: Vec<wire::User> = org
            .users
            .iter()
            .skip(skip)
            .take(top)
            .map(graph_user)
            .collect();
        (value, org.users.len())
    });
    let (value, total) = match page {
        Ok(p) => p,
        Err(r) => return r,
    };
    em.remember_user_ids(value.iter().map(|u| (&u.id, &u.user_principal_name)));
    let next_link = (skip + top < total).then(|| {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!(
            "http://{host}/v1.0/users?$top={top}&$skiptoken={}",
            skip + top
        )
    });
    Json(wire::Page { next_link, value }).into_response()
}

/// A Graph `assignLicense` body as a domain change, in names.
fn change_of(
    em: &Emulator,
    org: &Organization,
    catalog: &Catalog,
    user: &str,
    body: &wire::AssignLicense,
) -> Result<UserChange, (StatusCode, &'static str, String)> {
    let upn = em
        .user(org, user)
        .map(|u| u.upn.clone())
        .ok_or_else(|| (StatusCode::NOT_FOUND, "Request_ResourceNotFound",
            format!("Resource '{user}' does not exist or one of its queried reference-property objects are not present.")))?;
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
    for l in &body.add_licenses {
        let p = product(&l.sku_id)?;
        let disabled: Vec<String> = p
            .plans
            .iter()
            .filter(|plan| {
                l.disabled_plans
                    .iter()
                    .any(|d| d.to_lowercase() == plan_id(plan))
            })
            .cloned()
            .collect();
        add.push(Licence::new(&p.sku, &disabled));
    }
    let remove = body
        .remove_licenses
        .iter()
        .map(|s| product(s).map(|p| p.sku.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UserChange {
        user: upn,
        add,
        remove,
        plans_only: vec![],
    })
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

fn item_error(status: StatusCode, code: &str, message: &str) -> (u16, Value) {
    (
        status.as_u16(),
        json!({"error": {"code": code, "message": message}}),
    )
}

pub async fn assign_license(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Json(body): Json<wire::AssignLicense>,
) -> Response {
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
            if let Some(s) = retry {
                r.headers_mut().insert("Retry-After", s.into());
            }
            r
        }
    }
}

/// Licence changes, each against the write budget, made together through the simulator.
async fn assign(
    em: &Emulator,
    headers: &HeaderMap,
    items: Vec<(String, wire::AssignLicense)>,
) -> Result<Vec<(u16, Value, Option<u64>)>, Response> {
    let tenant = em.tenant_of(headers, super::Service::Graph)?;
    let mut answers: Vec<Option<(u16, Value, Option<u64>)>> = vec![None; items.len()];
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
            if let Err(wait) = em.faults.take_write() {
                let (s, b) = item_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests. Please retry after the time specified in the Retry-After header.",
                );
                answers[i] = Some((s, b, Some(wait)));
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
            changes
                .iter()
                .map(|(_, c)| serde_json::to_value(org.user(&c.user).map(graph_user)))
                .map(|v| v.unwrap_or(Value::Null))
                .collect()
        })?;
        for (((i, _), result), user) in changes.into_iter().zip(results).zip(after) {
            answers[i] = Some(match result {
                Ok(()) => (200, user, None),
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

pub async fn batch(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Json(request): Json<wire::BatchRequest>,
) -> Response {
    if request.requests.len() > 20 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Maximum number of requests in a batch is 20.",
        );
    }
    let mut items = vec![];
    let mut unsupported = vec![];
    for r in &request.requests {
        let path = r.url.trim_start_matches('/');
        let user = path
            .strip_prefix("users/")
            .and_then(|p| p.strip_suffix("/assignLicense"));
        match (r.method.as_str(), user, &r.body) {
            ("POST", Some(u), Some(body)) => {
                match serde_json::from_value::<wire::AssignLicense>(body.clone()) {
                    Ok(b) => items.push((r.id.clone(), u.to_string(), b)),
                    Err(e) => unsupported.push((
                        r.id.clone(),
                        item_error(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                    )),
                }
            }
            _ => unsupported.push((
                r.id.clone(),
                item_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!(
                        "The emulator's $batch serves assignLicense only, not {} {}",
                        r.method, r.url
                    ),
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
    let mut responses: Vec<wire::BatchItemResponse> = ids
        .into_iter()
        .zip(answers)
        .map(|(id, (status, body, retry))| {
            let mut headers =
                BTreeMap::from([("Content-Type".to_string(), "application/json".to_string())]);
            if let Some(s) = retry {
                headers.insert("Retry-After".into(), s.to_string());
            }
            wire::BatchItemResponse {
                id,
                status,
                headers,
                body: Some(body),
            }
        })
        .collect();
    responses.extend(
        unsupported
            .into_iter()
            .map(|(id, (status, body))| wire::BatchItemResponse {
                id,
                status,
                headers: BTreeMap::new(),
                body: Some(body),
            }),
    );
    let mut reply = Json(wire::BatchResponse { responses }).into_response();
    // Graph's warning before it throttles: the share of the limit used, from 0.8 on.
    if let Some(share) = em.faults.usage().filter(|s| *s >= 0.8)
        && let Ok(v) = format!("{share:.2}").parse()
    {
        reply
            .headers_mut()
            .insert("x-ms-throttle-limit-percentage", v);
    }
    reply
}
