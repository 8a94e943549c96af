//! The resource API: `Subscription`, `LicenseAssignment` and `AddOn` in `seatkeeper.dev/v1alpha1`.
//!
//! Spec and status types are plain data (the planner reads specs and writes statuses); the
//! `CustomResource` derive adds the Kubernetes root objects and their CRDs. Doc comments here
//! are the `kubectl explain` text.

// The kube derive takes repeated `printcolumn(type_ = …)` arguments; they are not duplicates.
#![allow(clippy::duplicated_attributes)]

use crate::domain::{BillingFrequency, Term};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
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
    scale(
        spec_replicas_path = ".spec.seats",
        status_replicas_path = ".status.seats.purchased"
    ),
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
#[x_kube(validation = Rule::new("!has(self.autoscale) || self.autoscale.maxSeats >= self.seats").message("autoscale.maxSeats must be at least seats"))]
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
    /// The commitment bought: `P1M` (a month, the default), `P1Y` or `P3Y`. Used only when
    /// buying; on Partner Center the offer must be sold with this term.
    #[serde(default)]
    pub term: Term,
    /// The exact Partner Center catalog item to buy (`productId:skuId:availabilityId`), for
    /// when the catalog holds more than one offer for the product (Blocked `OfferAmbiguous`
    /// lists them). Used only when buying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
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
    /// Follow demand: keep `headroom` free seats beyond the licences assigned (and those
    /// LicenseAssignments wait for), never fewer than `seats`, never more than `maxSeats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
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
    printcolumn(
        name = "Users Blocked",
        type_ = "integer",
        json_path = ".status.blocked"
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
    scale(
        spec_replicas_path = ".spec.quantity",
        status_replicas_path = ".status.quantity.purchased"
    ),
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
#[x_kube(validation = Rule::new("self.type == 'Traditional' ? has(self.subscriptionRef) : !has(self.subscriptionRef)").message("subscriptionRef is required when type is Traditional, and not allowed when Standalone"))]
#[x_kube(validation = Rule::new("!has(self.autoscale) || (self.type == 'Standalone' && self.autoscale.maxSeats >= self.quantity)").message("autoscale is for Standalone add-ons, with maxSeats at least quantity"))]
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
    /// The commitment bought (`P1M`, `P1Y`, `P3Y`), as a Subscription's.
    #[serde(default)]
    pub term: Term,
    /// The exact Partner Center catalog item to buy, as a Subscription's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// When seatkeeper buys the add-on, assign it once to everyone in the organization who
    /// holds no licence yet, as far as the rules and the free quantity allow (R25). Users who
    /// appear later are not touched; an adopted add-on (addOnId) is never auto-assigned.
    #[serde(default)]
    pub auto_assign: bool,
    /// What deleting this resource does: `Orphan` leaves the add-on, `Cancel` cancels it
    /// (traditional add-ons: only support can remove them).
    #[serde(default)]
    pub deletion_policy: SubscriptionDeletionPolicy,
    /// Standalone add-ons only: follow demand, as a Subscription's `autoscale` (with
    /// `quantity` as the floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
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
            term: s.term,
            offer: s.offer.clone(),
            recurring_billing: s.recurring_billing,
            product_key: s.product_key.clone(),
            convert_trial: s.convert_trial,
            deletion_policy: s.deletion_policy,
            autoscale: s.autoscale.clone(),
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
            term: s.term,
            offer: s.offer.clone(),
            auto_assign: s.auto_assign,
            deletion_policy: s.deletion_policy,
            autoscale: s.autoscale.clone(),
        }
    }
}

/// One tenant and how seatkeeper reaches it. Optional with the embedded backend (namespace
/// labels bind namespaces to organizations without it); required for the Microsoft backend.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "seatkeeper.dev",
    version = "v1alpha1",
    kind = "Organization",
    cel,
    status = "OrganizationStatus",
    shortname = "org",
    category = "seatkeeper",
    doc = "One tenant (organization) and how seatkeeper reaches its licensing services.",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "Backend", type_ = "string", json_path = ".status.backend"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.users"),
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
pub struct OrganizationSpec {
    /// The tenant's domain, e.g. `contoso.com`: what `spec.organization` of Subscriptions,
    /// LicenseAssignments and AddOns names. Immutable.
    #[schemars(length(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("domain is immutable"))]
    pub domain: String,
    /// The namespaces that may declare resources for this organization. Absent: namespaces
    /// labelled `seatkeeper.dev/organization=<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Per-organization overrides of the controller's flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<OrganizationLimits>,
    /// How seatkeeper reaches the tenant: exactly one of `embedded` or `microsoft`; absent:
    /// embedded.
    #[serde(default)]
    pub backend: OrganizationBackend,
}

/// Overrides of `--max-removals` and `--max-seat-increase` for one organization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationLimits {
    /// One reconcile of one resource removes licences from at most this many users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_removals: Option<u32>,
    /// One reconcile of one resource raises seats (or buys) by at most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_seat_increase: Option<u32>,
}

/// Exactly one backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.embedded) && has(self.microsoft))").message("choose one backend: embedded or microsoft"))]
pub struct OrganizationBackend {
    /// The simulator kept in the tenant file given by `--state` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedBackend>,
    /// A real Microsoft 365 tenant, through Microsoft Graph and (for tenants a CSP partner
    /// manages) Partner Center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub microsoft: Option<MicrosoftBackend>,
}

/// The embedded simulator: no settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EmbeddedBackend {}

/// A Microsoft 365 tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftBackend {
    /// The directory (tenant) id: a GUID or a verified domain.
    #[schemars(length(min = 1))]
    pub tenant_id: String,
    /// The national cloud: its endpoints are used unless `endpoints` overrides them.
    #[serde(default)]
    pub cloud: Cloud,
    /// Roots overriding the cloud's (tests, proxies, the emulator). Plain `http://` is
    /// accepted only for loopback addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<MicrosoftEndpoints>,
    /// Partner Center, for tenants a CSP partner manages: seats, purchases, cancellation.
    /// Without it seat changes are Blocked `SeatChangeNotSupported`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_center: Option<PartnerCenter>,
    /// The application seatkeeper signs in as.
    pub credentials: MicrosoftCredentials,
}

/// Microsoft's national clouds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Cloud {
    #[default]
    Global,
    USGovernment,
    USGovernmentDoD,
    China,
}

/// Service roots.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftEndpoints {
    /// The identity platform, e.g. `https://login.microsoftonline.com` (+ `/{tenantId}/oauth2/v2.0/token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Microsoft Graph, e.g. `https://graph.microsoft.com` (+ `/v1.0/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// Partner Center, e.g. `https://api.partnercenter.microsoft.com` (+ `/v1/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_center: Option<String>,
}

/// Partner Center access.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerCenter {
    /// Use Partner Center for seats, purchases, billing and cancellation.
    #[serde(default)]
    pub enabled: bool,
    /// The customer's tenant id in Partner Center (default: `tenantId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
}

/// How seatkeeper proves who it is: a client id with exactly one of a client secret, a
/// certificate or workload identity federation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.clientSecretRef) ? 1 : 0) + (has(self.certificateRef) ? 1 : 0) + (has(self.workloadIdentity) && self.workloadIdentity ? 1 : 0) == 1").message("choose exactly one of clientSecretRef, certificateRef or workloadIdentity"))]
pub struct MicrosoftCredentials {
    /// The application (client) id of the app registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A key of a Secret holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<NamespacedSecretKey>,
    /// A `kubernetes.io/tls` Secret holding the certificate (client assertion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_ref: Option<NamespacedSecret>,
    /// Sign in with the pod's federated service-account token (`AZURE_*` environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<bool>,
}

/// A key of a Secret in a named namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedSecretKey {
    /// The Secret's namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key within the Secret's data.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// A Secret in a named namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NamespacedSecret {
    /// The Secret's namespace.
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The tenant as last read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    /// The generation of the spec last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` and `Blocked` (`CredentialsInvalid`, `PermissionDenied`, …).
    #[serde(default)]
    pub conditions: Conditions,
    /// The reason of the Blocked condition while it is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// `embedded` or `microsoft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Each product the tenant holds: seats, assigned, available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<ProductCounts>,
    /// The tenant's subscriptions as last read (at most 100), with the ids a Subscription's
    /// `spec.subscriptionId` adopts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<TenantSubscription>,
    /// Directory users seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
    /// When the tenant was last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_read_at: Option<crate::domain::Instant>,
}

/// One subscription of a tenant, as the licensing service reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSubscription {
    /// Its id in the licensing service (a GUID on Microsoft's).
    pub id: String,
    /// The product (SKU part number).
    pub product: String,
    /// Seats bought (licences assigned are counted per product, under `products`).
    pub seats: i64,
    /// How it was bought: `Direct`, `Reseller`, `Prepaid` or `SelfService`.
    pub channel: crate::domain::Channel,
    /// Whether it is a trial.
    pub trial: bool,
    /// `Pending`, `Active`, `Warning`, `Suspended`, `CancelAtTermEnd` or `Canceled`.
    pub state: crate::planner::resources::PurchaseState,
    /// When its current term ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub term_ends_at: Option<crate::domain::Instant>,
}

/// One product's licences in a tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductCounts {
    /// The product (SKU part number).
    pub product: String,
    /// Seats over its usable subscriptions.
    pub seats: i64,
    /// Licences assigned.
    pub assigned: i64,
    /// Licences free to assign.
    pub available: i64,
}
