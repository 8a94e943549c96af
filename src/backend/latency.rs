//! A backend wrapper that adds a fixed delay to every call: how a remote licensing service
//! behaves (benchmarks, and sandboxes that want realistic pacing).

use super::{Backend, Cancellation, PurchaseRequest, Result, SeatChange, Snapshot};
use crate::domain::{Refusal, Subscription, TraditionalAddOn};
use crate::planner::UserChange;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct WithLatency<B> {
    pub inner: B,
    pub latency: Duration,
    calls: AtomicU64,
}

impl<B> WithLatency<B> {
    pub fn new(inner: B, latency: Duration) -> Self {
        WithLatency {
            inner,
            latency,
            calls: AtomicU64::new(0),
        }
    }

    /// Calls made so far, reads included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    async fn wait(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
    }
}

impl<B: Backend> Backend for WithLatency<B> {
    async fn snapshot(&self, organization: &str) -> Result<Snapshot> {
        self.wait().await;
        self.inner.snapshot(organization).await
    }
    async fn buy_subscription(&self, o: &str, r: &PurchaseRequest) -> Result<Subscription> {
        self.wait().await;
        self.inner.buy_subscription(o, r).await
    }
    async fn convert_trial(&self, o: &str, id: &str) -> Result<()> {
        self.wait().await;
        self.inner.convert_trial(o, id).await
    }
    async fn set_seats(
        &self,
        o: &str,
        id: &str,
        seats: u32,
        key: Option<&str>,
    ) -> Result<SeatChange> {
        self.wait().await;
        self.inner.set_seats(o, id, seats, key).await
    }
    async fn set_recurring_billing(&self, o: &str, id: &str, on: bool) -> Result<()> {
        self.wait().await;
        self.inner.set_recurring_billing(o, id, on).await
    }
    async fn cancel(&self, o: &str, id: &str) -> Result<Cancellation> {
        self.wait().await;
        self.inner.cancel(o, id).await
    }
    async fn buy_add_on(
        &self,
        o: &str,
        base: &str,
        product: &str,
        quantity: u32,
        auto_assign: bool,
        key: &str,
    ) -> Result<TraditionalAddOn> {
        self.wait().await;
        self.inner
            .buy_add_on(o, base, product, quantity, auto_assign, key)
            .await
    }
    async fn set_add_on_quantity(&self, o: &str, base: &str, id: &str, q: u32) -> Result<()> {
        self.wait().await;
        self.inner.set_add_on_quantity(o, base, id, q).await
    }
    async fn cancel_add_on(&self, o: &str, base: &str, id: &str) -> Result<()> {
        self.wait().await;
        self.inner.cancel_add_on(o, base, id).await
    }
    async fn assign_licences(
        &self,
        o: &str,
        changes: &[UserChange],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        self.wait().await;
        self.inner.assign_licences(o, changes).await
    }
}
