//! The resource API: `Subscription`, `LicenseAssignment` and `AddOn` in `seatkeeper.dev/v1alpha1`.
//!
//! Spec and status types are plain data (the planner reads specs and writes statuses); the
//! `CustomResource` derive adds the Kubernetes root objects and their CRDs. Doc comments here
//! are the `kubectl explain` text.

// The kube derive takes repeated `printcolumn(type_ = …)` arguments; they are not duplicates.
#![allow(clippy::duplicated_attributes)]

use crate::domain::BillingFrequency;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

pub use crate::planner::resources::*;

pub const GROUP: &str = "seatkeeper.dev";
pub const API_VERSION: &str = "seatkeeper.dev/v1alpha1";
/// The most seats (or add-on quantity) a resource may declare.
pub const MAX_SEATS: i32 = 1_000_000;
pub const FINALIZER: &str = "seatkeeper.dev/cleanup";

fn default_true() -> bool {
    true
}

/// A subscription of one product in one organization, with a declared total seat count.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "seatkeeper.dev",
    version = "v1alpha1",
    kind = "Subscription",
    namespaced,
    cel,
    status = "SubscriptionStatus",
    shortname = "seatsub",
    category = "seatkeeper",
    doc = "A subscription of one product in one organization, with a declared total seat count.",
    printcolumn(name = "Product", type_ = "string", json_path = ".spec.product"),
    printcolumn(name = "Seats", type_ = "integer", json_path = ".spec.seats"),
    printcolumn(
        name = "Purchased",
        type_ = "integer",
        json_path = ".status.seats.purchased"
    ),
    printcolumn(
        name = "Assigned",
        type_ = "integer",
        json_path = ".status.seats.assigned"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Blocked",
        type_ = "string",
        json_path = ".status.blockedReason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    /// The organization (tenant) that owns the subscription, named by its domain, e.g.
    /// `contoso.com`. Subscriptions are never shared between organizations. Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("organization is immutable"))]
    pub organization: String,
    /// The product (SKU part number from the catalog), e.g. `O365_BUSINESS_PREMIUM`. Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("product is immutable"))]
    pub product: String,
    /// The desired total number of seats (licences). A wish for 5 more seats on 100 is written
    /// as 105; 95 removes 5. Seats never go below the number assigned. At most 1,000,000; one
    /// reconcile raises seats by at most --max-seat-increase (default 100) unless the resource
    /// is annotated `seatkeeper.dev/allow-large-purchase: "true"`.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub seats: i32,
    /// Adopt this existing subscription instead of buying one. When absent, seatkeeper buys a
    /// subscription exactly once and records its id in status.subscriptionId. Only one
    /// resource manages a subscription: when several name it, the oldest owns it and the
    /// others are Blocked with DuplicateSubscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// How a newly bought subscription is billed. Used only when buying.
    #[serde(default)]
    pub billing_frequency: BillingFrequency,
    /// Whether the subscription renews at the end of its term. Turning it off lets the
    /// subscription end at the end of its term.
    #[serde(default = "default_true")]
    pub recurring_billing: bool,
    /// A Secret key holding a 25-character product key that pays for added seats of a prepaid
    /// subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_key: Option<ProductKeyRef>,
    /// Buy (convert) a trial so its seats can change. A trial's seats cannot change otherwise.
    #[serde(default)]
    pub convert_trial: bool,
    /// What deleting this resource does: `Orphan` leaves the subscription as it is, `Cancel`
    /// cancels it (or, after the cancellation window, turns recurring billing off).
    #[serde(default)]
    pub deletion_policy: SubscriptionDeletionPolicy,
}

/// Licences for a set of users, each with a set of products.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "seatkeeper.dev",
    version = "v1alpha1",
    kind = "LicenseAssignment",
    namespaced,
    cel,
    status = "LicenseAssignmentStatus",
    shortname = "lasg",
    category = "seatkeeper",
    doc = "Licences of one or more products for a set of users of one organization.",
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.desiredUsers"),
    printcolumn(name = "Assigned", type_ = "integer", json_path = ".status.assigned"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pending"),
    printcolumn(name = "Blocked", type_ = "integer", json_path = ".status.blocked"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LicenseAssignmentSpec {
    /// The organization (tenant) the users belong to, named by its domain. Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("organization is immutable"))]
    pub organization: String,
    /// User principal names (e.g. `alice@contoso.com`), each at most once. Dropping a user
    /// removes the licences this resource assigned to them (R19: mailbox data is deleted 30
    /// days later).
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "set"))]
    pub users: Vec<String>,
    /// The licences every listed user should hold, one entry per product.
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["product"]))]
    pub licenses: Vec<LicenseSpec>,
    /// `Add` keeps the users' other licences; `Replace` removes every other licence so the
    /// users hold exactly these (a plan change: users move only when there are free licences
    /// for every user still to move).
    #[serde(default)]
    pub mode: AssignmentMode,
    /// What deleting this resource does: `Unassign` removes the licences it assigned, `Retain`
    /// leaves them.
    #[serde(default)]
    pub deletion_policy: AssignmentDeletionPolicy,
}

/// An add-on bought on top of subscriptions: traditional (attached to one base subscription)
/// or standalone (a subscription of its own).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "seatkeeper.dev",
    version = "v1alpha1",
    kind = "AddOn",
    namespaced,
    cel,
    status = "AddOnStatus",
    shortname = "addon",
    category = "seatkeeper",
    doc = "An add-on product bought for an organization, attached to a base subscription or standalone.",
    printcolumn(name = "Product", type_ = "string", json_path = ".spec.product"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Quantity", type_ = "integer", json_path = ".spec.quantity"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.type == 'Traditional' ? has(self.subscriptionRef) : !has(self.subscriptionRef)").message("subscriptionRef is required when type is Traditional, and not allowed when Standalone"))]
#[serde(rename_all = "camelCase")]
pub struct AddOnSpec {
    /// The organization (tenant), named by its domain. Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("organization is immutable"))]
    pub organization: String,
    /// The add-on product (SKU part number), e.g. `EXCHANGEARCHIVE_ADDON`. Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("product is immutable"))]
    pub product: String,
    /// `Traditional` add-ons belong to one base subscription (subscriptionRef) and can only be
    /// removed by support; `Standalone` add-ons are subscriptions of their own.
    #[serde(rename = "type")]
    pub add_on_type: AddOnType,
    /// The Subscription resource (same namespace) a traditional add-on is bought for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_ref: Option<SubscriptionRef>,
    /// Adopt this existing add-on instead of buying one: for `Traditional`, the id of an add-on
    /// of the base subscription; for `Standalone`, the id of its subscription. When absent,
    /// seatkeeper buys one exactly once and records its id in status.addOnId. Only one
    /// resource manages an add-on: when several name it, the oldest owns it and the others are
    /// Blocked with DuplicateSubscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_on_id: Option<String>,
    /// The desired quantity (licences of the add-on). At most 1,000,000; one reconcile raises
    /// it by at most --max-seat-increase (default 100) unless the resource is annotated
    /// `seatkeeper.dev/allow-large-purchase: "true"`.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub quantity: i32,
    /// How a newly bought standalone add-on is billed.
    #[serde(default)]
    pub billing_frequency: BillingFrequency,
    /// When seatkeeper buys the add-on, assign it once to everyone in the organization who
    /// holds no licence yet, as far as the rules and the free quantity allow (R25). Users who
    /// appear later are not touched; an adopted add-on (addOnId) is never auto-assigned.
    #[serde(default)]
    pub auto_assign: bool,
    /// What deleting this resource does: `Orphan` leaves the add-on, `Cancel` cancels it
    /// (traditional add-ons: only support can remove them).
    #[serde(default)]
    pub deletion_policy: SubscriptionDeletionPolicy,
}

// The one place specs become the planner's intents.

impl From<&SubscriptionSpec> for SubscriptionIntent {
    fn from(s: &SubscriptionSpec) -> Self {
        SubscriptionIntent {
            organization: s.organization.clone(),
            product: s.product.clone(),
            seats: s.seats,
            subscription_id: s.subscription_id.clone(),
            billing_frequency: s.billing_frequency,
            recurring_billing: s.recurring_billing,
            product_key: s.product_key.clone(),
            convert_trial: s.convert_trial,
            deletion_policy: s.deletion_policy,
        }
    }
}

impl From<&LicenseAssignmentSpec> for AssignmentIntent {
    fn from(s: &LicenseAssignmentSpec) -> Self {
        AssignmentIntent {
            organization: s.organization.clone(),
            users: s.users.clone(),
            licenses: s.licenses.clone(),
            mode: s.mode,
            deletion_policy: s.deletion_policy,
        }
    }
}

impl From<&AddOnSpec> for AddOnIntent {
    fn from(s: &AddOnSpec) -> Self {
        AddOnIntent {
            organization: s.organization.clone(),
            product: s.product.clone(),
            add_on_type: s.add_on_type,
            subscription_ref: s.subscription_ref.clone(),
            add_on_id: s.add_on_id.clone(),
            quantity: s.quantity,
            billing_frequency: s.billing_frequency,
            auto_assign: s.auto_assign,
            deletion_policy: s.deletion_policy,
        }
    }
}
