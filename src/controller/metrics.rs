//! Prometheus metrics. Labels are bounded: operations, failure categories, organizations,
//! products, namespaces, kinds and Blocked reasons (never per-object or per-user names).

use crate::backend::hooked::Hook;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Category {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Pool {
    pub organization: String,
    pub product: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Priced {
    pub organization: String,
    pub product: String,
    pub currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Team {
    pub organization: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TeamCost {
    pub organization: String,
    pub namespace: String,
    pub currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Blocked {
    pub organization: String,
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Org {
    pub organization: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Owned {
    pub organization: String,
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Shard {
    pub shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Service {
    pub service: String,
}

type Money = Gauge<f64, AtomicU64>;

/// A namespace's showback: (namespace, seats, the monthly cost with its currency, if priced).
pub type TeamFigures = (String, i64, Option<(String, f64)>);

/// One organization's figures after a reconcile, set at once (a label set that is gone since
/// the last one is removed, so a resource no longer Blocked leaves no stale series).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// (product, currency, monthly cost of the seats, of the free seats).
    pub costs: Vec<(String, String, f64, f64)>,
    /// (namespace, seats its LicenseAssignments hold, their monthly cost with its currency).
    pub namespaces: Vec<TeamFigures>,
    /// (kind, reason, resources Blocked for it).
    pub blocked: Vec<(String, String, i64)>,
    /// Since when (Unix seconds) the oldest Blocked condition has been True.
    pub oldest_blocked_since: Option<f64>,
}

#[derive(Default)]
struct Shown {
    costs: Vec<Priced>,
    teams: Vec<Team>,
    team_costs: Vec<TeamCost>,
    blocked: Vec<Blocked>,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Counter,
    pub failures: Family<Category, Counter>,
    pub duration: Histogram,
    pub backend_calls: Family<Operation, Counter>,
    pub status_writes: Counter,
    pub seats_purchased: Family<Pool, Gauge>,
    pub seats_assigned: Family<Pool, Gauge>,
    pub seats_available: Family<Pool, Gauge>,
    pub monthly_cost: Family<Priced, Money>,
    pub free_seats_monthly_cost: Family<Priced, Money>,
    pub namespace_seats: Family<Team, Gauge>,
    pub namespace_monthly_cost: Family<TeamCost, Money>,
    pub blocked_resources: Family<Blocked, Gauge>,
    pub oldest_blocked_since: Family<Org, Money>,
    pub service_requests: Family<Service, Counter>,
    pub service_throttled: Family<Service, Counter>,
    pub token_failures: Counter,
    /// 1 for each organization this replica owns (sharded runs).
    pub organization_shard: Family<Owned, Gauge>,
    pub shard_organizations: Family<Shard, Gauge>,
    pub shards_live: Gauge,
    pub shard_handovers: Counter,
    shown: Arc<Mutex<HashMap<String, Shown>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("seatkeeper");
        let reconciles = Counter::default();
        let failures = Family::<Category, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let backend_calls = Family::<Operation, Counter>::default();
        let status_writes = Counter::default();
        let seats_purchased = Family::<Pool, Gauge>::default();
        let seats_assigned = Family::<Pool, Gauge>::default();
        let seats_available = Family::<Pool, Gauge>::default();
        let monthly_cost = Family::<Priced, Money>::default();
        let free_seats_monthly_cost = Family::<Priced, Money>::default();
        let namespace_seats = Family::<Team, Gauge>::default();
        let namespace_monthly_cost = Family::<TeamCost, Money>::default();
        let blocked_resources = Family::<Blocked, Gauge>::default();
        let oldest_blocked_since = Family::<Org, Money>::default();
        let service_requests = Family::<Service, Counter>::default();
        let service_throttled = Family::<Service, Counter>::default();
        let token_failures = Counter::default();
        let organization_shard = Family::<Owned, Gauge>::default();
        let shard_organizations = Family::<Shard, Gauge>::default();
        let shards_live = Gauge::default();
        let shard_handovers = Counter::default();
        registry.register(
            "organization_shard",
            "1 for each organization this replica reconciles, labelled with its shard (sharded runs)",
            organization_shard.clone(),
        );
        registry.register(
            "shard_organizations",
            "Organizations this replica's shard owns (sharded runs)",
            shard_organizations.clone(),
        );
        registry.register(
            "shards_live",
            "Replicas whose shard Lease is current, as this replica sees them (sharded runs)",
            shards_live.clone(),
        );
        registry.register(
            "shard_handovers",
            "Organizations this replica let go to another shard after finishing its pass",
            shard_handovers.clone(),
        );
        registry.register(
            "monthly_cost",
            "What an organization's seats of a product cost a month, at list price (only where prices are known)",
            monthly_cost.clone(),
        );
        registry.register(
            "free_seats_monthly_cost",
            "What the free (unassigned) seats of a product cost a month: money spent on nothing",
            free_seats_monthly_cost.clone(),
        );
        registry.register(
            "namespace_seats",
            "Licences held by users a namespace's LicenseAssignments claim (showback)",
            namespace_seats.clone(),
        );
        registry.register(
            "namespace_monthly_cost",
            "What the licences a namespace's LicenseAssignments hold cost a month",
            namespace_monthly_cost.clone(),
        );
        registry.register(
            "blocked_resources",
            "Resources Blocked, per organization, kind and reason",
            blocked_resources.clone(),
        );
        registry.register(
            "oldest_blocked_since_timestamp_seconds",
            "When the organization's oldest Blocked condition became True (Unix time; its age is time() minus this)",
            oldest_blocked_since.clone(),
        );
        registry.register(
            "service_requests",
            "Requests answered by Microsoft's services (graph, partner_center), any status",
            service_requests.clone(),
        );
        registry.register(
            "service_throttled",
            "Answers 429 (throttled) from Microsoft's services, whole requests or $batch items",
            service_throttled.clone(),
        );
        registry.register(
            "token_failures",
            "Token requests the identity platform refused (bad or expired credentials, no consent)",
            token_failures.clone(),
        );
        registry.register(
            "reconciles",
            "Organization reconciles run",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by category (backend, credentials, kubernetes, throttled)",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long one organization reconcile took",
            duration.clone(),
        );
        registry.register(
            "backend_calls",
            "Calls to the licensing backend by operation",
            backend_calls.clone(),
        );
        registry.register(
            "status_writes",
            "Status subresource writes",
            status_writes.clone(),
        );
        registry.register(
            "seats_purchased",
            "Seats bought, per organization and product (declared subscriptions)",
            seats_purchased.clone(),
        );
        registry.register(
            "seats_assigned",
            "Licences assigned, per organization and product",
            seats_assigned.clone(),
        );
        registry.register(
            "seats_available",
            "Seats free to assign, per organization and product",
            seats_available.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            failures,
            duration,
            backend_calls,
            status_writes,
            seats_purchased,
            seats_assigned,
            seats_available,
            monthly_cost,
            free_seats_monthly_cost,
            namespace_seats,
            namespace_monthly_cost,
            blocked_resources,
            oldest_blocked_since,
            service_requests,
            service_throttled,
            token_failures,
            organization_shard,
            shard_organizations,
            shards_live,
            shard_handovers,
            shown: Arc::default(),
        }
    }

    /// One organization's figures after a reconcile; series it no longer has are removed.
    pub fn set_organization(&self, organization: &str, f: &Figures) {
        let org = || organization.to_string();
        let mut now = Shown::default();
        for (product, currency, monthly, free) in &f.costs {
            let l = Priced {
                organization: org(),
                product: product.clone(),
                currency: currency.clone(),
            };
            self.monthly_cost.get_or_create(&l).set(*monthly);
            self.free_seats_monthly_cost.get_or_create(&l).set(*free);
            now.costs.push(l);
        }
        for (namespace, seats, cost) in &f.namespaces {
            let l = Team {
                organization: org(),
                namespace: namespace.clone(),
            };
            self.namespace_seats.get_or_create(&l).set(*seats);
            now.teams.push(l);
            if let Some((currency, amount)) = cost {
                let l = TeamCost {
                    organization: org(),
                    namespace: namespace.clone(),
                    currency: currency.clone(),
                };
                self.namespace_monthly_cost.get_or_create(&l).set(*amount);
                now.team_costs.push(l);
            }
        }
        for (kind, reason, n) in &f.blocked {
            let l = Blocked {
                organization: org(),
                kind: kind.clone(),
                reason: reason.clone(),
            };
            self.blocked_resources.get_or_create(&l).set(*n);
            now.blocked.push(l);
        }
        let o = Org {
            organization: org(),
        };
        match f.oldest_blocked_since {
            Some(at) => {
                self.oldest_blocked_since.get_or_create(&o).set(at);
            }
            None => {
                self.oldest_blocked_since.remove(&o);
            }
        }
        let mut shown = self.shown.lock().expect("metrics lock");
        if let Some(before) = shown.get(organization) {
            for l in before.costs.iter().filter(|l| !now.costs.contains(l)) {
                self.monthly_cost.remove(l);
                self.free_seats_monthly_cost.remove(l);
            }
            for l in before.teams.iter().filter(|l| !now.teams.contains(l)) {
                self.namespace_seats.remove(l);
            }
            for l in before
                .team_costs
                .iter()
                .filter(|l| !now.team_costs.contains(l))
            {
                self.namespace_monthly_cost.remove(l);
            }
            for l in before.blocked.iter().filter(|l| !now.blocked.contains(l)) {
                self.blocked_resources.remove(l);
            }
        }
        shown.insert(organization.to_string(), now);
    }

    /// The Microsoft client's process-wide counts, into the counters (they only grow).
    fn sync_service_counts(&self) {
        // One scrape at a time: read-then-add must not count twice.
        let _one = self.shown.lock().expect("metrics lock");
        let s = &crate::backend::microsoft::client::STATS;
        let up = |c: &Counter, total: &AtomicU64| {
            let total = total.load(Ordering::Relaxed);
            c.inc_by(total.saturating_sub(c.get()));
        };
        for (service, requests, throttled) in [
            ("graph", &s.graph_requests, &s.graph_throttled),
            (
                "partner_center",
                &s.partner_center_requests,
                &s.partner_center_throttled,
            ),
        ] {
            let l = Service {
                service: service.into(),
            };
            up(&self.service_requests.get_or_create(&l), requests);
            up(&self.service_throttled.get_or_create(&l), throttled);
        }
        up(&self.token_failures, &s.token_failures);
    }

    pub fn fail(&self, category: &str) {
        self.failures
            .get_or_create(&Category {
                category: category.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        self.sync_service_counts();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
}

/// Counts backend calls by operation.
impl Hook for Metrics {
    async fn before(&self, operation: &'static str) -> crate::backend::Result<()> {
        self.backend_calls
            .get_or_create(&Operation {
                operation: operation.into(),
            })
            .inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(blocked: &[(&str, &str, i64)]) -> Figures {
        Figures {
            costs: vec![("SPB".into(), "EUR".into(), 154.0, 66.0)],
            namespaces: vec![("sales".into(), 2, Some(("EUR".into(), 44.0)))],
            blocked: blocked
                .iter()
                .map(|(k, r, n)| (k.to_string(), r.to_string(), *n))
                .collect(),
            oldest_blocked_since: (!blocked.is_empty()).then_some(1_790_000_000.0),
        }
    }

    #[test]
    fn cost_showback_and_blocked_series_follow_the_organization_and_leave_no_stale_ones() {
        let m = Metrics::new();
        m.set_organization(
            "contoso.com",
            &figures(&[("LicenseAssignment", "InsufficientSeats", 2)]),
        );
        let text = m.encode();
        for line in [
            r#"seatkeeper_free_seats_monthly_cost{organization="contoso.com",product="SPB",currency="EUR"} 66.0"#,
            r#"seatkeeper_monthly_cost{organization="contoso.com",product="SPB",currency="EUR"} 154.0"#,
            r#"seatkeeper_namespace_seats{organization="contoso.com",namespace="sales"} 2"#,
            r#"seatkeeper_namespace_monthly_cost{organization="contoso.com",namespace="sales",currency="EUR"} 44.0"#,
            r#"seatkeeper_blocked_resources{organization="contoso.com",kind="LicenseAssignment",reason="InsufficientSeats"} 2"#,
            r#"seatkeeper_oldest_blocked_since_timestamp_seconds{organization="contoso.com"} 1790000000.0"#,
            r#"seatkeeper_service_requests_total{service="graph"}"#,
            r#"seatkeeper_service_throttled_total{service="partner_center"}"#,
            "seatkeeper_token_failures_total ",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // Nothing Blocked any more: its series go, the others stay.
        m.set_organization("contoso.com", &figures(&[]));
        let text = m.encode();
        assert!(!text.contains("reason=\"InsufficientSeats\""), "{text}");
        assert!(
            !text.contains("seatkeeper_oldest_blocked_since_timestamp_seconds{"),
            "{text}"
        );
        assert!(text.contains("namespace=\"sales\""));
    }

    /// Every `seatkeeper_…` name in the chart's alerts and dashboard is a series the
    /// controller exports (as scraped: counters end in `_total`, the histogram's series in
    /// `_bucket`, `_sum`, `_count`).
    #[test]
    fn the_chart_s_alerts_and_dashboard_name_only_exported_metrics() {
        // Families print only once they hold a series: one of each.
        let m = Metrics::new();
        m.set_organization("contoso.com", &figures(&[("Subscription", "Prepaid", 1)]));
        m.fail("backend");
        m.backend_calls
            .get_or_create(&Operation {
                operation: "snapshot".into(),
            })
            .inc();
        let pool = Pool {
            organization: "contoso.com".into(),
            product: "SPB".into(),
        };
        for g in [&m.seats_purchased, &m.seats_assigned, &m.seats_available] {
            g.get_or_create(&pool).set(1);
        }
        let text = m.encode();
        let mut exported = std::collections::BTreeSet::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').unwrap();
            match kind {
                "counter" => {
                    exported.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        exported.insert(format!("{name}{s}"));
                    }
                }
                _ => {
                    exported.insert(name.to_string());
                }
            }
        }
        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/seatkeeper");
        for file in [
            "templates/prometheusrule.yaml",
            "dashboards/seatkeeper.json",
        ] {
            let body = std::fs::read_to_string(format!("{chart}/{file}")).unwrap();
            if file.ends_with(".json") {
                serde_json::from_str::<serde_json::Value>(&body).expect("the dashboard is JSON");
            }
            let mut named = 0;
            for (i, _) in body.match_indices("seatkeeper_") {
                let name: String = body[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                named += 1;
                assert!(
                    exported.contains(&name),
                    "{file} names {name}, which the controller does not export ({exported:?})"
                );
            }
            assert!(named >= 5, "{file} names the metrics");
        }
    }
}
