//! One backend per organization: organizations declared with a Microsoft backend go to their
//! own tenant; every other organization to the default backend (the embedded simulator).

use super::microsoft::Microsoft;
use super::{Backend, Cancellation, PurchaseRequest, Result, SeatChange, Snapshot};
use crate::domain::{Refusal, Subscription, TraditionalAddOn, UserChange};
use std::collections::BTreeMap;

pub struct Routed<D, M = Microsoft> {
    pub default: D,
    /// lowercase domain → its tenant.
    pub microsoft: BTreeMap<String, M>,
}

impl<D, M> Routed<D, M> {
    pub fn new(default: D) -> Routed<D, M> {
        Routed {
            default,
            microsoft: BTreeMap::new(),
        }
    }
}

/// Calls the organization's backend.
macro_rules! route {
    ($self:ident, $org:expr, $method:ident ( $($arg:expr),* )) => {
        match $self.microsoft.get(&$org.to_lowercase()) {
            Some(m) => m.$method($org, $($arg),*).await,
            None => $self.default.$method($org, $($arg),*).await,
        }
    };
}

impl<D: Backend, M: Backend> Backend for Routed<D, M> {
    async fn checkpoint(&self) -> Result<()> {
        self.default.checkpoint().await?;
        for m in self.microsoft.values() {
            m.checkpoint().await?;
        }
        Ok(())
    }
    async fn snapshot(&self, organization: &str) -> Result<Snapshot> {
        route!(self, organization, snapshot())
    }
    async fn buy_subscription(&self, o: &str, r: &PurchaseRequest) -> Result<Subscription> {
        route!(self, o, buy_subscription(r))
    }
    async fn convert_trial(&self, o: &str, id: &str) -> Result<()> {
        route!(self, o, convert_trial(id))
    }
    async fn set_seats(
        &self,
        o: &str,
        id: &str,
        seats: u32,
        key: Option<&str>,
    ) -> Result<SeatChange> {
        route!(self, o, set_seats(id, seats, key))
    }
    async fn set_recurring_billing(&self, o: &str, id: &str, on: bool) -> Result<()> {
        route!(self, o, set_recurring_billing(id, on))
    }
    async fn cancel(&self, o: &str, id: &str) -> Result<Cancellation> {
        route!(self, o, cancel(id))
    }
    async fn buy_add_on(
        &self,
        o: &str,
        base: &str,
        r: &PurchaseRequest,
    ) -> Result<TraditionalAddOn> {
        route!(self, o, buy_add_on(base, r))
    }
    async fn set_add_on_quantity(&self, o: &str, base: &str, id: &str, q: u32) -> Result<()> {
        route!(self, o, set_add_on_quantity(base, id, q))
    }
    async fn cancel_add_on(&self, o: &str, base: &str, id: &str) -> Result<()> {
        route!(self, o, cancel_add_on(base, id))
    }
    async fn assign_licences(
        &self,
        o: &str,
        changes: &[UserChange],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        route!(self, o, assign_licences(changes))
    }
}
