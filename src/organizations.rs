//! Organization resources in the shell: which namespaces may act for which organization (the
//! label binding, or a `namespaceSelector`), per-organization limits, and the backend each
//! organization is reached through.

use crate::api::{Cloud, Organization};
use crate::backend::microsoft::credential::Credential;
use crate::backend::microsoft::{self, Endpoints};
use crate::planner::Limits;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;
use std::time::Duration;

/// Whether a namespace with `labels` matches `selector` (matchLabels and matchExpressions).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The organization each namespace is bound to: its `seatkeeper.dev/organization` label, or
/// the Organization whose `namespaceSelector` selects it.
pub fn bindings(
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    organizations: &[Organization],
) -> BTreeMap<String, Option<String>> {
    namespaces
        .iter()
        .map(|(name, labels)| {
            let label = labels.get(crate::api::ORGANIZATION_LABEL).cloned();
            let selected = || {
                organizations.iter().find_map(|o| {
                    let s = o.spec.namespace_selector.as_ref()?;
                    selects(s, labels).then(|| o.spec.domain.clone())
                })
            };
            (name.clone(), label.or_else(selected))
        })
        .collect()
}

/// Per-organization overrides of the limits.
pub fn limits(organizations: &[Organization]) -> BTreeMap<String, Limits> {
    organizations
        .iter()
        .filter_map(|o| {
            let l = o.spec.limits.as_ref()?;
            Some((
                o.spec.domain.to_lowercase(),
                Limits {
                    max_removals: l.max_removals.map(|n| n as usize),
                    max_seat_increase: l.max_seat_increase,
                },
            ))
        })
        .collect()
}

/// The endpoints of a national cloud.
pub fn cloud_endpoints(cloud: Cloud) -> Endpoints {
    // (login, graph, Graph's application ID URI, Partner Center): the national clouds' own
    // (Graph's "National cloud deployments", Partner Center's "REST URLs" pages).
    let (login, graph, graph_id, partner_center) = match cloud {
        Cloud::Global => (
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
            "https://graph.microsoft.com",
            "https://api.partnercenter.microsoft.com",
        ),
        Cloud::USGovernment => (
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
            "https://graph.microsoft.us",
            "https://api.partnercenter.microsoft.com",
        ),
        Cloud::USGovernmentDoD => (
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
            "https://dod-graph.microsoft.us",
            "https://api.partnercenter.microsoft.com",
        ),
        Cloud::China => (
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            "https://partner.partnercenterapi.microsoftonline.cn",
        ),
    };
    Endpoints {
        login: login.into(),
        graph: graph.into(),
        partner_center: partner_center.into(),
        graph_scope: format!("{graph_id}/.default"),
        partner_center_scope: microsoft::PARTNER_CENTER_SCOPE.into(),
    }
}

/// The Microsoft backend's configuration for an Organization; `secret` looks up a Secret's
/// key (namespace, name, key). Errors name the field.
pub fn microsoft_config(
    o: &Organization,
    secret: &dyn Fn(&str, &str, &str) -> Option<String>,
) -> Result<Option<microsoft::Config>, String> {
    let Some(m) = &o.spec.backend.microsoft else {
        return Ok(None);
    };
    let at = "spec.backend.microsoft";
    let mut endpoints = cloud_endpoints(m.cloud);
    if let Some(e) = &m.endpoints {
        let set = |target: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                *target = v.trim_end_matches('/').to_string();
            }
        };
        set(&mut endpoints.login, &e.login);
        set(&mut endpoints.graph, &e.graph);
        set(&mut endpoints.partner_center, &e.partner_center);
    }
    for (field, url) in [
        ("endpoints.login", &endpoints.login),
        ("endpoints.graph", &endpoints.graph),
        ("endpoints.partnerCenter", &endpoints.partner_center),
    ] {
        microsoft::client::check_endpoint(url).map_err(|e| format!("{at}.{field}: {e}"))?;
    }
    let c = &m.credentials;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let workload = c.workload_identity == Some(true);
    let client_id = c
        .client_id
        .clone()
        .or_else(|| workload.then(|| env("AZURE_CLIENT_ID")).flatten())
        .ok_or_else(|| format!("{at}.credentials.clientId: required"))?;
    let credential = match (&c.client_secret_ref, &c.certificate_ref) {
        (Some(r), _) => {
            Credential::Secret(secret(&r.namespace, &r.name, &r.key).ok_or_else(|| {
                format!(
                    "{at}.credentials.clientSecretRef: Secret {}/{} has no key {}",
                    r.namespace, r.name, r.key
                )
            })?)
        }
        (None, Some(r)) => {
            let field = |k: &str| {
                secret(&r.namespace, &r.name, k).ok_or_else(|| {
                    format!(
                        "{at}.credentials.certificateRef: Secret {}/{} has no key {k}",
                        r.namespace, r.name
                    )
                })
            };
            Credential::certificate(&field("tls.crt")?, &field("tls.key")?).map_err(|e| {
                format!(
                    "{at}.credentials.certificateRef: Secret {}/{}: {e}",
                    r.namespace, r.name
                )
            })?
        }
        (None, None) if workload => {
            let token_file = env("AZURE_FEDERATED_TOKEN_FILE").ok_or_else(|| {
                format!("{at}.credentials.workloadIdentity: AZURE_FEDERATED_TOKEN_FILE is not set (is the pod labelled for workload identity?)")
            })?;
            if let Some(host) = env("AZURE_AUTHORITY_HOST")
                && m.endpoints
                    .as_ref()
                    .and_then(|e| e.login.as_ref())
                    .is_none()
            {
                endpoints.login = host.trim_end_matches('/').to_string();
            }
            Credential::Federated {
                token_file: token_file.into(),
            }
        }
        _ => {
            return Err(format!(
                "{at}.credentials: choose one of clientSecretRef, certificateRef or workloadIdentity"
            ));
        }
    };
    let partner = m.partner_center.as_ref().filter(|p| p.enabled);
    Ok(Some(microsoft::Config {
        organization: o.spec.domain.clone(),
        tenant_id: m.tenant_id.clone(),
        endpoints,
        client_id,
        credential,
        partner_center_customer: partner
            .map(|p| p.customer_id.clone().unwrap_or_else(|| m.tenant_id.clone())),
        timeout: Duration::from_secs(30),
        write_budget: Some(microsoft::GRAPH_WRITE_BUDGET),
        app_budget: None,
        partner_pause: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_scopes_follow_the_cloud_not_the_endpoint_overrides() {
        let org: Organization = serde_json::from_value(json!({
            "metadata": {"name": "gov"},
            "spec": {"domain": "gov.example", "backend": {"microsoft": {
                "tenantId": "gov.example", "cloud": "USGovernment",
                "endpoints": {"graph": "http://127.0.0.1:9/", "partnerCenter": "http://127.0.0.1:9/"},
                "partnerCenter": {"enabled": true},
                "credentials": {"clientId": "app",
                    "clientSecretRef": {"namespace": "s", "name": "app", "key": "k"}}}}}
        }))
        .unwrap();
        let cfg = microsoft_config(&org, &|_, _, _| Some("x".into()))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.endpoints.graph, "http://127.0.0.1:9");
        assert_eq!(
            cfg.endpoints.graph_scope,
            "https://graph.microsoft.us/.default"
        );
        assert_eq!(
            cfg.endpoints.partner_center_scope,
            "https://api.partnercenter.microsoft.com/.default"
        );
        let china = cloud_endpoints(Cloud::China);
        assert_eq!(
            china.graph_scope,
            "https://microsoftgraph.chinacloudapi.cn/.default"
        );
        assert_eq!(
            china.partner_center,
            "https://partner.partnercenterapi.microsoftonline.cn"
        );
        assert_eq!(
            cloud_endpoints(Cloud::USGovernmentDoD).graph_scope,
            "https://dod-graph.microsoft.us/.default"
        );
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespace_selectors_match_like_kubernetes() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"team": "a"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "legacy", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(selects(&s, &labels(&[("team", "a"), ("env", "prod")])));
        assert!(!selects(&s, &labels(&[("team", "a"), ("env", "qa")])));
        assert!(!selects(
            &s,
            &labels(&[("team", "a"), ("env", "prod"), ("legacy", "1")])
        ));
        assert!(
            selects(&LabelSelector::default(), &labels(&[])),
            "empty selects all"
        );
    }

    #[test]
    fn a_label_binding_wins_over_a_selector() {
        let org: Organization = serde_json::from_value(json!({
            "apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Organization",
            "metadata": {"name": "contoso"},
            "spec": {"domain": "contoso.com", "namespaceSelector": {"matchLabels": {"team": "a"}}}
        }))
        .unwrap();
        let ns = BTreeMap::from([
            ("a".to_string(), labels(&[("team", "a")])),
            (
                "b".to_string(),
                labels(&[
                    ("team", "a"),
                    ("seatkeeper.dev/organization", "fabrikam.com"),
                ]),
            ),
            ("c".to_string(), labels(&[])),
        ]);
        let b = bindings(&ns, &[org]);
        assert_eq!(b["a"].as_deref(), Some("contoso.com"));
        assert_eq!(b["b"].as_deref(), Some("fabrikam.com"));
        assert_eq!(b["c"], None);
    }
}
