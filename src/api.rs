//! The resource API: `Subscription`, `LicenseAssignment` and `AddOn` in `seatkeeper.dev/v1alpha1`.
//!
//! Specs and statuses are the core's own types (`crate::planner::resources`: the planner reads
//! specs and writes statuses; their doc comments and CEL rules are the `kubectl explain` text
//! and the CRDs' validations); a spec here wraps its intent (`#[serde(transparent)]`, so the
//! schema and the wire form are the intent's), and the `CustomResource` derive adds the
//! Kubernetes root objects and their CRDs.

// The kube derive takes repeated `printcolumn(type_ = …)` arguments; they are not duplicates.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::planner::resources::*;

pub const GROUP: &str = "seatkeeper.dev";
pub const API_VERSION: &str = "seatkeeper.dev/v1alpha1";
/// The most seats (or add-on quantity) a resource may declare.
pub const MAX_SEATS: i32 = 1_000_000;
pub const FINALIZER: &str = "seatkeeper.dev/cleanup";

// SubscriptionSpec: the CRD's spec is the planner's SubscriptionIntent (its doc comments are the `kubectl explain` text).
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[serde(transparent)]
pub struct SubscriptionSpec(pub SubscriptionIntent);

// LicenseAssignmentSpec: the CRD's spec is the planner's AssignmentIntent (its doc comments are the `kubectl explain` text).
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[serde(transparent)]
pub struct LicenseAssignmentSpec(pub AssignmentIntent);

// AddOnSpec: the CRD's spec is the planner's AddOnIntent (its doc comments are the `kubectl explain` text).
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
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
#[serde(transparent)]
pub struct AddOnSpec(pub AddOnIntent);

/// The one place a [`Kind`] value becomes its resource type: `for_kind!(kind, K => expr)`
/// evaluates `expr` with `K` naming `Subscription`, `LicenseAssignment` or `AddOn`.
#[macro_export]
macro_rules! for_kind {
    ($kind:expr, $k:ident => $body:expr) => {
        match $kind {
            $crate::planner::Kind::Subscription => {
                type $k = $crate::api::Subscription;
                $body
            }
            $crate::planner::Kind::LicenseAssignment => {
                type $k = $crate::api::LicenseAssignment;
                $body
            }
            $crate::planner::Kind::AddOn => {
                type $k = $crate::api::AddOn;
                $body
            }
        }
    };
}

// A spec is its intent: reading `spec.seats` reads the planner's field, and the planner gets a
// copy of the very value the manifest declared.
macro_rules! spec_is_intent {
    ($($spec:ident => $intent:ident),*) => {$(
        impl std::ops::Deref for $spec {
            type Target = $intent;
            fn deref(&self) -> &$intent {
                &self.0
            }
        }
        impl std::ops::DerefMut for $spec {
            fn deref_mut(&mut self) -> &mut $intent {
                &mut self.0
            }
        }
        impl From<&$spec> for $intent {
            fn from(s: &$spec) -> Self {
                s.0.clone()
            }
        }
    )*};
}

spec_is_intent!(
    SubscriptionSpec => SubscriptionIntent,
    LicenseAssignmentSpec => AssignmentIntent,
    AddOnSpec => AddOnIntent
);

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
    ),
    // After AGE: scripts reading the columns by position keep working.
    printcolumn(name = "Shard", type_ = "string", json_path = ".status.shard")
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
    /// `Ready`, `Synced` and `Blocked` (`CredentialsInvalid`, `PermissionDenied`, …);
    /// `Reconciling` and `Stalled` for kstatus.
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
    /// The replica that reconciles this organization, when the controller runs sharded
    /// (`run --sharding`, the chart's `sharding.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
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
    /// What the free seats cost a month (available × the list price), in `currency`; absent
    /// when the price is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_monthly_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The earliest term end of its subscriptions still ahead (the next renewal, or the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_term_ends_at: Option<crate::domain::Instant>,
}
