//! `POST /{tenant}/oauth2/v2.0/token`: client credentials, with a secret or a client assertion.

use super::Emulator;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

fn refuse(status: StatusCode, error: &str, code: u64, description: &str) -> Response {
    let id = crate::backend::microsoft::ids::guid("trace", description);
    let body = json!({"error": error, "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code], "timestamp": "2026-01-01 00:00:00Z", "trace_id": id, "correlation_id": id});
    (status, axum::Json(body)).into_response()
}

pub async fn issue(
    State(em): State<Arc<Emulator>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(service) = super::Service::of_scope(get("scope")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {} is not valid.",
                get("scope")
            ),
        );
    };
    if !em.knows(&tenant) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID."
            ),
        );
    }
    if let Some(id) = &em.options.client_id
        && get("client_id") != id
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    let secret = get("client_secret");
    let assertion = get("client_assertion");
    if secret.is_empty() && assertion.is_empty() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
        );
    }
    if !assertion.is_empty() {
        // A federated (workload identity) token names its own issuer and audience; the
        // emulator trusts any issuer (no federated credential is registered here).
        let federated = assertion
            .split('.')
            .nth(1)
            .and_then(|p| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|c| c["aud"] == "api://AzureADTokenExchange");
        if !federated {
            let certificates: Vec<String> = em
                .backend
                .tenant()
                .applications
                .iter()
                .filter(|a| a.client_id == get("client_id"))
                .flat_map(|a| a.certificates.clone())
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if let Err(r) =
                super::assertion::verify(assertion, get("client_id"), &tenant, &certificates, now)
            {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    r.code,
                    &r.description,
                );
            }
        }
    }
    if let Some(expected) = &em.options.client_secret
        && !secret.is_empty()
        && secret != expected
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    let lifetime = em.options.token_lifetime.max(1);
    let dies = em
        .faults
        .current()
        .tokens_die_after
        .unwrap_or(std::time::Duration::from_secs(lifetime));
    let token = crate::backend::microsoft::ids::guid(
        "token",
        &format!("{tenant}{:?}", std::time::Instant::now()),
    );
    em.tokens.lock().expect("token lock").insert(
        token.clone(),
        (
            tenant.to_lowercase(),
            std::time::Instant::now() + dies,
            service,
        ),
    );
    axum::Json(
        json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
        "access_token": token}),
    )
    .into_response()
}
