//! Prometheus metrics. Labels are bounded: operations, failure categories, organizations and
//! products (never per-object names).

use crate::backend::hooked::Hook;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

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
        }
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
