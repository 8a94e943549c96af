//! The licensing service behind one trait.
//!
//! Shaped after the real vendor APIs so they fit later without touching the planner:
//! Microsoft Graph (`subscribedSkus` reads; `assignLicense` with `addLicenses` and
//! `removeLicenses` in one atomic call per user; JSON batches of at most 20; 429 with
//! Retry-After) and Partner Center (PATCH of a subscription's quantity, possibly answered 202;
//! trial conversions). Refusals are typed ([`Refusal`]), never strings to parse.

pub mod hooked;

use crate::domain::UserChange;
use crate::domain::{
    BillingFrequency, Catalog, Organization, Refusal, Subscription, TraditionalAddOn,
};
use std::future::Future;
use std::sync::Arc;

/// R12: one bulk licence operation takes at most this many users.
pub const MAX_BATCH: usize = 20;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The service will not make this change; the reason is the user's to act on.
    #[error("refused: {}", .0.message())]
    Refused(Refusal),
    /// Rate limited (Graph 429): try again after this many seconds.
    #[error("throttled: retry after {retry_after_seconds}s")]
    Throttled { retry_after_seconds: u64 },
    /// The service or its storage failed; the call may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// The service refused seatkeeper's credentials: nothing works until they are fixed.
    #[error("{0}")]
    CredentialsInvalid(String),
    /// Not the licensing service: the cluster seatkeeper runs in failed a call it needs (a
    /// status write, which holds its records, or a Secret read). Counted apart from the
    /// service's failures.
    #[error("{0}")]
    Cluster(String),
}

impl From<Refusal> for BackendError {
    fn from(r: Refusal) -> Self {
        BackendError::Refused(r)
    }
}

/// One organization as the service sees it, with the catalog that applies to it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub catalog: Arc<Catalog>,
    /// None: the service does not know this organization.
    pub organization: Option<Organization>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PurchaseRequest {
    pub product: String,
    /// Seats, or an add-on's quantity.
    pub seats: u32,
    pub billing_frequency: BillingFrequency,
    /// The commitment bought.
    pub term: crate::domain::Term,
    /// The catalog item chosen explicitly (`spec.offer`), when the product alone is ambiguous.
    pub offer: Option<String>,
    pub recurring_billing: bool,
    /// A retried purchase with the same key returns the first result instead of buying again.
    pub idempotency_key: String,
}

/// A seat change may be finished at once or accepted and finished later (Partner Center 202).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeatChange {
    Applied,
    Accepted,
}

/// R10: inside the window a cancellation cancels; after it, recurring billing is turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancellation {
    Canceled,
    RecurringBillingTurnedOff,
}

pub type Result<T> = std::result::Result<T, BackendError>;

pub trait Backend: Send + Sync {
    fn snapshot(&self, organization: &str) -> impl Future<Output = Result<Snapshot>> + Send;
    fn buy_subscription(
        &self,
        organization: &str,
        request: &PurchaseRequest,
    ) -> impl Future<Output = Result<Subscription>> + Send;
    fn convert_trial(
        &self,
        organization: &str,
        subscription_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn set_seats(
        &self,
        organization: &str,
        subscription_id: &str,
        seats: u32,
        product_key: Option<&str>,
    ) -> impl Future<Output = Result<SeatChange>> + Send;
    fn set_recurring_billing(
        &self,
        organization: &str,
        subscription_id: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    fn cancel(
        &self,
        organization: &str,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Cancellation>> + Send;
    /// Buy a traditional add-on. R25's auto-assignment is not the service's job here: the
    /// planner plans it as ordinary licence changes, so `plan` shows it.
    /// Buys a traditional add-on on a base subscription: the request's product, `seats` as
    /// its quantity, term and offer; billing follows the base.
    fn buy_add_on(
        &self,
        organization: &str,
        base_subscription_id: &str,
        request: &PurchaseRequest,
    ) -> impl Future<Output = Result<TraditionalAddOn>> + Send;
    fn set_add_on_quantity(
        &self,
        organization: &str,
        base_subscription_id: &str,
        add_on_id: &str,
        quantity: u32,
    ) -> impl Future<Output = Result<()>> + Send;
    fn cancel_add_on(
        &self,
        organization: &str,
        base_subscription_id: &str,
        add_on_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Make the changes acknowledged so far part of the service's main store (the embedded
    /// backend folds its journal into the tenant file). Called when a run ends; every change
    /// is durable before it is acknowledged whether or not this runs.
    fn checkpoint(&self) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }
    /// Give a group licences and take others from it (Graph's group `assignLicense`); its
    /// members inherit what it holds as the service processes the group.
    fn assign_group_licences(
        &self,
        organization: &str,
        group: &str,
        add: &[crate::domain::Licence],
        remove: &[String],
    ) -> impl Future<Output = Result<()>> + Send;
    /// At most [`MAX_BATCH`] users; each user's adds and removes are one atomic operation.
    /// The outer error fails the whole call; the inner results are per user, in order.
    fn assign_licences(
        &self,
        organization: &str,
        changes: &[UserChange],
    ) -> impl Future<Output = Result<Vec<std::result::Result<(), Refusal>>>> + Send;
}

/// Every [`Backend`] operation but `checkpoint`, each handed to `$dispatch!(self, organization,
/// "operationName", items, method(arguments))`: the one list of operations for a backend that
/// wraps others ([`hooked::Hooked`], the binary's `Routed`, `Arc<B>`). Adding an operation to
/// the trait means adding it here once, not to each wrapper.
#[macro_export]
macro_rules! forward_operations {
    ($dispatch:ident) => {
        async fn snapshot(&self, o: &str) -> $crate::backend::Result<$crate::backend::Snapshot> {
            $dispatch!(self, o, "snapshot", 1, snapshot())
        }
        async fn buy_subscription(
            &self,
            o: &str,
            r: &$crate::backend::PurchaseRequest,
        ) -> $crate::backend::Result<$crate::domain::Subscription> {
            $dispatch!(self, o, "buySubscription", 1, buy_subscription(r))
        }
        async fn convert_trial(&self, o: &str, id: &str) -> $crate::backend::Result<()> {
            $dispatch!(self, o, "convertTrial", 1, convert_trial(id))
        }
        async fn set_seats(
            &self,
            o: &str,
            id: &str,
            seats: u32,
            key: Option<&str>,
        ) -> $crate::backend::Result<$crate::backend::SeatChange> {
            $dispatch!(self, o, "setSeats", 1, set_seats(id, seats, key))
        }
        async fn set_recurring_billing(
            &self,
            o: &str,
            id: &str,
            on: bool,
        ) -> $crate::backend::Result<()> {
            $dispatch!(
                self,
                o,
                "setRecurringBilling",
                1,
                set_recurring_billing(id, on)
            )
        }
        async fn cancel(
            &self,
            o: &str,
            id: &str,
        ) -> $crate::backend::Result<$crate::backend::Cancellation> {
            $dispatch!(self, o, "cancel", 1, cancel(id))
        }
        async fn buy_add_on(
            &self,
            o: &str,
            base: &str,
            r: &$crate::backend::PurchaseRequest,
        ) -> $crate::backend::Result<$crate::domain::TraditionalAddOn> {
            $dispatch!(self, o, "buyAddOn", 1, buy_add_on(base, r))
        }
        async fn set_add_on_quantity(
            &self,
            o: &str,
            base: &str,
            id: &str,
            q: u32,
        ) -> $crate::backend::Result<()> {
            $dispatch!(
                self,
                o,
                "setAddOnQuantity",
                1,
                set_add_on_quantity(base, id, q)
            )
        }
        async fn cancel_add_on(
            &self,
            o: &str,
            base: &str,
            id: &str,
        ) -> $crate::backend::Result<()> {
            $dispatch!(self, o, "cancelAddOn", 1, cancel_add_on(base, id))
        }
        async fn assign_group_licences(
            &self,
            o: &str,
            group: &str,
            add: &[$crate::domain::Licence],
            remove: &[String],
        ) -> $crate::backend::Result<()> {
            $dispatch!(
                self,
                o,
                "assignGroupLicenses",
                1,
                assign_group_licences(group, add, remove)
            )
        }
        async fn assign_licences(
            &self,
            o: &str,
            changes: &[$crate::domain::UserChange],
        ) -> $crate::backend::Result<Vec<std::result::Result<(), $crate::domain::Refusal>>> {
            $dispatch!(
                self,
                o,
                "assignLicenses",
                changes.len(),
                assign_licences(changes)
            )
        }
    };
}

/// A shared backend is a backend (a test's hook may hold the backend it wraps).
impl<B: Backend> Backend for Arc<B> {
    async fn checkpoint(&self) -> Result<()> {
        (**self).checkpoint().await
    }
    crate::forward_operations!(to_shared);
}

macro_rules! to_shared {
    ($s:ident, $o:ident, $op:literal, $items:expr, $m:ident($($a:expr),*)) => {
        (**$s).$m($o $(, $a)*).await
    };
}
use to_shared;
