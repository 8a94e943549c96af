//! A backend wrapper that runs a hook before every call: a fixed latency (benchmarks, realistic
//! sandboxes) or counting calls by operation (metrics).

use super::{Backend, Cancellation, PurchaseRequest, Result, SeatChange, Snapshot};
use crate::domain::UserChange;
use crate::domain::{Refusal, Subscription, TraditionalAddOn};
use std::future::Future;
use std::time::Duration;

pub trait Hook: Send + Sync {
    /// Runs before each backend call; `operation` names it (`snapshot`, `assignLicenses`, …).
    fn before(&self, operation: &'static str) -> impl Future<Output = ()> + Send;
}

pub struct Hooked<B, H> {
    pub inner: B,
    pub hook: H,
}

/// Every call takes this long, like a remote service.
pub struct Latency(pub Duration);

impl Hook for Latency {
    async fn before(&self, _: &'static str) {
        tokio::time::sleep(self.0).await;
    }
}

impl<B: Backend, H: Hook> Backend for Hooked<B, H> {
    async fn snapshot(&self, organization: &str) -> Result<Snapshot> {
        self.hook.before("snapshot").await;
        self.inner.snapshot(organization).await
    }
    async fn buy_subscription(&self, o: &str, r: &PurchaseRequest) -> Result<Subscription> {
        self.hook.before("buySubscription").await;
        self.inner.buy_subscription(o, r).await
    }
    async fn convert_trial(&self, o: &str, id: &str) -> Result<()> {
        self.hook.before("convertTrial").await;
        self.inner.convert_trial(o, id).await
    }
    async fn set_seats(
        &self,
        o: &str,
        id: &str,
        seats: u32,
        key: Option<&str>,
    ) -> Result<SeatChange> {
        self.hook.before("setSeats").await;
        self.inner.set_seats(o, id, seats, key).await
    }
    async fn set_recurring_billing(&self, o: &str, id: &str, on: bool) -> Result<()> {
        self.hook.before("setRecurringBilling").await;
        self.inner.set_recurring_billing(o, id, on).await
    }
    async fn cancel(&self, o: &str, id: &str) -> Result<Cancellation> {
        self.hook.before("cancel").await;
        self.inner.cancel(o, id).await
    }
    async fn buy_add_on(
        &self,
        o: &str,
        base: &str,
        product: &str,
        quantity: u32,
        key: &str,
    ) -> Result<TraditionalAddOn> {
        self.hook.before("buyAddOn").await;
        self.inner.buy_add_on(o, base, product, quantity, key).await
    }
    async fn set_add_on_quantity(&self, o: &str, base: &str, id: &str, q: u32) -> Result<()> {
        self.hook.before("setAddOnQuantity").await;
        self.inner.set_add_on_quantity(o, base, id, q).await
    }
    async fn cancel_add_on(&self, o: &str, base: &str, id: &str) -> Result<()> {
        self.hook.before("cancelAddOn").await;
        self.inner.cancel_add_on(o, base, id).await
    }
    async fn assign_licences(
        &self,
        o: &str,
        changes: &[UserChange],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        self.hook.before("assignLicenses").await;
        self.inner.assign_licences(o, changes).await
    }
}
