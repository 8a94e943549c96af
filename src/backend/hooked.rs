//! A backend wrapper that runs a hook around every call: a fixed latency (benchmarks,
//! realistic sandboxes), counting calls by operation (metrics), or faults (tests: throttling
//! before a call, a reply lost after the service made the change).

use super::{Backend, Cancellation, PurchaseRequest, Result, SeatChange, Snapshot};
use crate::domain::{Refusal, Subscription, TraditionalAddOn, UserChange};
use std::future::Future;
use std::time::Duration;

pub trait Hook: Send + Sync {
    /// Runs before each backend call; `operation` names it (`snapshot`, `assignLicenses`, …).
    /// An error stops the call before it reaches the service.
    fn before(&self, operation: &'static str) -> impl Future<Output = Result<()>> + Send;
    /// Runs after a call the service carried out; an error stands for a lost reply.
    fn after(&self, _operation: &'static str) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
    /// A call went through, changing `items` things (users for `assignLicenses`, else 1):
    /// for a progress display.
    fn done(&self, _operation: &'static str, _items: usize) {}
}

pub struct Hooked<B, H> {
    pub inner: B,
    pub hook: H,
}

/// Every call takes this long, like a remote service.
pub struct Latency(pub Duration);

impl Hook for Latency {
    async fn before(&self, _: &'static str) -> Result<()> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

impl<B, H: Hook> Hooked<B, H> {
    async fn around<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.around_n(operation, 1, call).await
    }

    /// `around` for a call changing `items` things.
    async fn around_n<T>(
        &self,
        operation: &'static str,
        items: usize,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.hook.before(operation).await?;
        let out = call.await?;
        self.hook.after(operation).await?;
        self.hook.done(operation, items);
        Ok(out)
    }
}

impl<B: Backend, H: Hook> Backend for Hooked<B, H> {
    async fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint().await
    }
    async fn snapshot(&self, organization: &str) -> Result<Snapshot> {
        self.around("snapshot", self.inner.snapshot(organization))
            .await
    }
    async fn buy_subscription(&self, o: &str, r: &PurchaseRequest) -> Result<Subscription> {
        self.around("buySubscription", self.inner.buy_subscription(o, r))
            .await
    }
    async fn convert_trial(&self, o: &str, id: &str) -> Result<()> {
        self.around("convertTrial", self.inner.convert_trial(o, id))
            .await
    }
    async fn set_seats(
        &self,
        o: &str,
        id: &str,
        seats: u32,
        key: Option<&str>,
    ) -> Result<SeatChange> {
        self.around("setSeats", self.inner.set_seats(o, id, seats, key))
            .await
    }
    async fn set_recurring_billing(&self, o: &str, id: &str, on: bool) -> Result<()> {
        let call = self.inner.set_recurring_billing(o, id, on);
        self.around("setRecurringBilling", call).await
    }
    async fn cancel(&self, o: &str, id: &str) -> Result<Cancellation> {
        self.around("cancel", self.inner.cancel(o, id)).await
    }
    async fn buy_add_on(
        &self,
        o: &str,
        base: &str,
        r: &PurchaseRequest,
    ) -> Result<TraditionalAddOn> {
        let call = self.inner.buy_add_on(o, base, r);
        self.around("buyAddOn", call).await
    }
    async fn set_add_on_quantity(&self, o: &str, base: &str, id: &str, q: u32) -> Result<()> {
        let call = self.inner.set_add_on_quantity(o, base, id, q);
        self.around("setAddOnQuantity", call).await
    }
    async fn cancel_add_on(&self, o: &str, base: &str, id: &str) -> Result<()> {
        self.around("cancelAddOn", self.inner.cancel_add_on(o, base, id))
            .await
    }
    async fn assign_licences(
        &self,
        o: &str,
        changes: &[UserChange],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        let call = self.inner.assign_licences(o, changes);
        self.around_n("assignLicenses", changes.len(), call).await
    }
}
