//! `POST /{tenant}/oauth2/v2.0/token`: client credentials, with a secret or a client assertion.

use super::Emulator;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

fn refuse(status: StatusCode, error: &str, code: u64, description: &str) -> Response {
    let id = crate::guid::guid("trace", description);
    // The client credentials page's error response: the description ends with the trace id,
    // the correlation id and the time, each on its own line.
    let at = "2026-01-01 00:00:00Z";
    let body = json!({"error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {id}\r\nCorrelation ID: {id}\r\nTimestamp: {at}"),
        "error_codes": [code], "timestamp": at, "trace_id": id, "correlation_id": id});
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
    if em
        .faults
        .current()
        .revoked_consent
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&tenant))
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            65001,
            &format!(
                "The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
                get("client_id")
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
        let apps: Vec<crate::backend::embedded::Application> = em
            .backend
            .tenant()
            .applications
            .into_iter()
            .filter(|a| a.client_id == get("client_id"))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A federated (workload identity) token is for Entra's token exchange audience; a
        // client assertion is for this token URL, signed with a registered certificate.
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
            .is_some_and(|c| !c["aud"].as_str().is_some_and(|a| a.contains("/oauth2/")));
        let checked = if federated {
            let credentials: Vec<_> = apps
                .iter()
                .flat_map(|a| a.federated_credentials.clone())
                .collect();
            super::assertion::verify_federated(assertion, &credentials, now)
        } else {
            let certificates: Vec<String> =
                apps.iter().flat_map(|a| a.certificates.clone()).collect();
            super::assertion::verify(assertion, get("client_id"), &tenant, &certificates, now)
        };
        if let Err(r) = checked {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                r.code,
                &r.description,
            );
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
    let token = crate::guid::guid("token", &format!("{tenant}{:?}", std::time::Instant::now()));
    em.tokens.lock().expect("token lock").insert(
        token.clone(),
        (
            tenant.to_lowercase(),
            std::time::Instant::now() + dies,
            service,
        ),
    );
    axum::Json(
        // The client credentials page's successful response, member for member.
        json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": token}),
    )
    .into_response()
}
