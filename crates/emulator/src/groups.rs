//! Microsoft Graph v1.0 groups, as the vendor's pages describe them: `GET /groups` (the group
//! resource type: `assignedLicenses` and `licenseProcessingState` only when `$select`ed; pages
//! of at most 999, no `$skip`), `GET /groups/{id}/members` (directory objects, each with its
//! `@odata.type`), `POST /groups/{id}/assignLicense` ("If successful, this method returns a
//! 202 Accepted response code and the target group object in the response body"; the same
//! body as a user's: `addLicenses`, `removeLicenses`), and `GET /groups/{id}/
//! membersWithLicenseErrors` (the members whose licences of the group are in error). Members
//! inherit a group's licences as the simulator processes its groups (the rules of
//! `domain::groups`, never the client's).

use super::{Emulator, graph_error};
use crate::backend::Backend;
use crate::domain::{Group, Organization};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// A group's object id: its own, or one made from its name (stable across runs).
pub(super) fn group_id(g: &Group) -> String {
    g.id.clone()
        .unwrap_or_else(|| crate::guid::guid("group", &g.name))
}

/// The group a path names, by object id.
fn find<'o>(org: &'o Organization, id: &str) -> Option<&'o Group> {
    org.groups
        .iter()
        .find(|g| group_id(g).eq_ignore_ascii_case(id))
}

/// The group resource with every property the emulator knows; `$select` picks among them
/// (Graph's default set otherwise, which has neither licence property).
fn graph_group(g: &Group) -> Value {
    json!({
        "id": group_id(g),
        "displayName": g.name,
        "securityEnabled": true,
        "mailEnabled": false,
        "groupTypes": [],
        "createdDateTime": "2026-01-01T00:00:00Z",
        "assignedLicenses": g.licenses.iter().map(|l| json!({
            "skuId": super::graph::sku_id(&l.product),
            "disabledPlans": l.disabled_plans.iter().map(|p| super::graph::plan_id(p)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        // Processing is finished by the time anyone reads (the simulator processes on write).
        "licenseProcessingState": {"state": "ProcessingComplete"},
    })
}

const GROUP_DEFAULT: &[&str] = &[
    "id",
    "displayName",
    "securityEnabled",
    "mailEnabled",
    "groupTypes",
];

fn selected(mut v: Value, select: Option<&String>, default: &[&str]) -> Value {
    let fields: Vec<&str> = match select {
        Some(s) => s.split(',').map(str::trim).collect(),
        None => default.to_vec(),
    };
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| k.starts_with('@') || fields.contains(&k.as_str()));
    }
    v
}

/// `$top` (1..=999, default 100) and the page's offset from `$skiptoken`.
fn paging(q: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let top: usize = q.get("$top").and_then(|t| t.parse().ok()).unwrap_or(100);
    if top == 0 || top > 999 {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "Invalid page size specified: '$top'. Must be between 1 and 999 inclusive.",
        ));
    }
    if q.contains_key("$skip") {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            "'$skip' is not supported on groups.",
        ));
    }
    let skip = q
        .get("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Ok((top, skip))
}

fn next_link(
    headers: &HeaderMap,
    path: &str,
    q: &HashMap<String, String>,
    top: usize,
    skip: usize,
    total: usize,
) -> Option<String> {
    (skip + top < total).then(|| {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let select = q
            .get("$select")
            .map(|s| format!("&$select={s}"))
            .unwrap_or_default();
        format!(
            "http://{host}/v1.0{path}?$top={top}{select}&$skiptoken={}",
            skip + top
        )
    })
}

fn page(value: Vec<Value>, next: Option<String>) -> Response {
    let mut body = json!({"value": value});
    if let Some(n) = next {
        body["@odata.nextLink"] = json!(n);
    }
    Json(body).into_response()
}

fn not_found(id: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

pub async fn list(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let tenant = match em.tenant_of(&headers, super::Service::Graph) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (top, skip) = match paging(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    em.charge_read(super::read_cost(1, &q));
    let read = em.backend.with_users(&tenant, |org, _| {
        let value: Vec<Value> = org
            .groups
            .iter()
            .skip(skip)
            .take(top)
            .map(|g| selected(graph_group(g), q.get("$select"), GROUP_DEFAULT))
            .collect();
        (value, org.groups.len())
    });
    match read {
        Ok(Some((value, total))) => {
            page(value, next_link(&headers, "/groups", &q, top, skip, total))
        }
        Ok(None) => not_found(&tenant),
        Err(e) => graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UnknownError",
            &e.to_string(),
        ),
    }
}

/// A member as a directory object: a user, with `@odata.type`.
fn member(upn: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.user",
        "id": super::graph::user_id(upn),
        "userPrincipalName": upn,
        "displayName": upn.split('@').next().unwrap_or(upn),
    })
}

pub async fn members(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    members_where(em, headers, id, q, false).await
}

pub async fn members_with_licence_errors(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    members_where(em, headers, id, q, true).await
}

async fn members_where(
    em: Arc<Emulator>,
    headers: HeaderMap,
    id: String,
    q: HashMap<String, String>,
    in_error: bool,
) -> Response {
    let tenant = match em.tenant_of(&headers, super::Service::Graph) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (top, skip) = match paging(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // "groups/{id}/members: 3" resource units (throttling limits, identity and access).
    em.charge_read(super::read_cost(3, &q));
    let read = em.backend.with_users(&tenant, |org, _| {
        let g = find(org, &id)?;
        let key = g.key();
        let all: Vec<&str> = g
            .members
            .iter()
            .filter_map(|m| org.user(m))
            .filter(|u| !in_error || u.license_errors.iter().any(|e| e.group == key))
            .map(|u| u.upn.as_str())
            .collect();
        let value: Vec<Value> = all
            .iter()
            .skip(skip)
            .take(top)
            .map(|u| selected(member(u), q.get("$select"), &["id", "displayName"]))
            .collect();
        Some((value, all.len()))
    });
    let path = if in_error {
        format!("/groups/{id}/membersWithLicenseErrors")
    } else {
        format!("/groups/{id}/members")
    };
    match read {
        Ok(Some(Some((value, total)))) => {
            page(value, next_link(&headers, &path, &q, top, skip, total))
        }
        Ok(_) => not_found(&id),
        Err(e) => graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UnknownError",
            &e.to_string(),
        ),
    }
}

pub async fn assign_license(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let tenant = match em.tenant_of(&headers, super::Service::Graph) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let body = match super::graph::assign_license_body(&body) {
        Ok(b) => b,
        Err(m) => return graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", &m),
    };
    if em.faults.current().deny_licence_writes {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    if let Err((wait, scope)) = em.faults.take_write(&tenant) {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests. Please retry after the time specified in the Retry-After header.",
        );
        r.headers_mut().insert("Retry-After", wait.into());
        let app = em.options.client_id.clone().unwrap_or_default();
        if let Ok(v) = super::faults::throttle_scope(scope, &app, &tenant).parse() {
            r.headers_mut().insert("x-ms-throttle-scope", v);
        }
        return r;
    }
    let found = em.backend.with_users(&tenant, |org, catalog| {
        let g = find(org, &id)?;
        Some((
            g.key().to_string(),
            super::graph::licences_of(catalog, &body),
        ))
    });
    let (key, licences) = match found {
        Ok(Some(Some(x))) => x,
        Ok(_) => return not_found(&id),
        Err(e) => {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UnknownError",
                &e.to_string(),
            );
        }
    };
    let (add, remove) = match licences {
        Ok(l) => l,
        Err((s, code, m)) => return graph_error(s, code, &m),
    };
    if let Err(e) = em
        .backend
        .assign_group_licences(&tenant, &key, &add, &remove)
        .await
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &e.to_string(),
        );
    }
    let group = em
        .backend
        .with_users(&tenant, |org, _| find(org, &id).map(graph_group))
        .ok()
        .flatten()
        .flatten()
        .unwrap_or(Value::Null);
    (
        StatusCode::ACCEPTED,
        [("location", format!("https://graph.microsoft.com/v2/{id}/directoryObjects/{id}/Microsoft.DirectoryServices.Group"))],
        // As the page's example answers: the group's id, kind and creation.
        Json(selected(
            group,
            None,
            &["id", "createdDateTime", "groupTypes", "securityEnabled"],
        )),
    )
        .into_response()
}

/// lowercase member → (group id, products) of the groups with licences they belong to, in
/// the directory's order: which group a member's inherited licence comes from.
pub(super) struct Inherited(HashMap<String, Vec<(String, Vec<String>)>>);

impl Inherited {
    pub fn of(org: &Organization) -> Inherited {
        let mut of: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
        for g in org.groups.iter().filter(|g| !g.licenses.is_empty()) {
            let id = group_id(g);
            let products: Vec<String> = g.licenses.iter().map(|l| l.product.clone()).collect();
            for m in &g.members {
                of.entry(m.to_lowercase())
                    .or_default()
                    .push((id.clone(), products.clone()));
            }
        }
        Inherited(of)
    }

    /// The id of the group `upn` holds `product` through; a file without groups names one
    /// group for every inherited licence.
    pub fn group_of(&self, upn: &str, product: &str) -> String {
        self.0
            .get(&upn.to_lowercase())
            .and_then(|gs| gs.iter().find(|(_, ps)| ps.iter().any(|p| p == product)))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| crate::guid::guid("group", "licensing"))
    }

    /// A group's id from its key (an error names the group by key).
    pub fn id_of_key(org: &Organization, key: &str) -> String {
        org.groups
            .iter()
            .find(|g| g.key() == key)
            .map(group_id)
            .unwrap_or_else(|| key.to_string())
    }
}
