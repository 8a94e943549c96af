//! The resources' plain data, as the planner reads and writes it: what each resource declares
//! (its intent: the spec's fields the planner needs) and the status it reaches. No Kubernetes
//! types: `crate::api` wraps the specs into CustomResources and re-exports these types, so the
//! doc comments here are also `kubectl explain` text.

use crate::domain::billing::CostPreview;
use crate::domain::{BillingFrequency, Channel, Instant, Term, User, UserAttribute};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Namespace label binding a namespace to one organization (tenant isolation).
pub const ORGANIZATION_LABEL: &str = "seatkeeper.dev/organization";
/// Observe only, change nothing.
pub const PAUSED_ANNOTATION: &str = "seatkeeper.dev/paused";
/// Lets one reconcile remove licences from more than `--max-removals` users.
pub const ALLOW_BULK_REMOVAL_ANNOTATION: &str = "seatkeeper.dev/allow-bulk-removal";
/// Required before a Replace removes a data-bearing plan (R28).
pub const ACKNOWLEDGE_DOWNGRADE_ANNOTATION: &str = crate::domain::rules::ACKNOWLEDGE_DOWNGRADE;
/// Lets one reconcile raise seats by more than `--max-seat-increase`.
pub const ALLOW_LARGE_PURCHASE_ANNOTATION: &str = crate::domain::rules::ALLOW_LARGE_PURCHASE;
/// Lets a deleted resource go without carrying out its deletion policy: nothing is cancelled
/// or unassigned; what it bought or assigned stays, no longer managed.
pub const ABANDON_ON_DELETE_ANNOTATION: &str = "seatkeeper.dev/abandon-on-delete";
/// On a LicenseAssignment: the declared licences its users already hold directly become its
/// own (adopted), so that dropping a user or a product later removes them.
pub const ADOPT_LICENCES_ANNOTATION: &str = "seatkeeper.dev/adopt-licences";

fn default_true() -> bool {
    true
}

/// A subscription of one product in one organization, with a declared total seat count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!has(self.autoscale) || self.autoscale.maxSeats >= self.seats", "message": "autoscale.maxSeats must be at least seats"}]))]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionIntent {
    /// The organization (tenant) that owns the subscription, named by its domain, e.g.
    /// `contoso.com`. Subscriptions are never shared between organizations. Immutable.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "organization is immutable"}]))]
    pub organization: String,
    /// The product (SKU part number from the catalog), e.g. `O365_BUSINESS_PREMIUM`. Immutable.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "product is immutable"}]))]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "(has(self.users) && size(self.users) > 0) || (has(self.groups) && size(self.groups) > 0) || has(self.userSelector)", "message": "name the users, the groups, or choose the users with userSelector"}]))]
#[serde(rename_all = "camelCase")]
pub struct AssignmentIntent {
    /// The organization (tenant) the users belong to, named by its domain. Immutable.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "organization is immutable"}]))]
    pub organization: String,
    /// User principal names (e.g. `alice@contoso.com`), each at most once. Dropping a user
    /// removes the licences this resource assigned to them (R19: mailbox data is deleted 30
    /// days later). Optional with `userSelector`; both together license the union.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub users: Vec<String>,
    /// Users chosen by their directory attributes instead of (or besides) listing them,
    /// re-evaluated on every read of the tenant: a user who comes to match gets the licences,
    /// a user who stops matching loses those this resource assigned (within the removal limit,
    /// R19 and R28). Disabled accounts are left out unless the selector names `accountEnabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_selector: Option<UserSelector>,
    /// Directory groups (display names or object ids, each at most once) given the licences
    /// themselves: group-based licensing, which needs Microsoft Entra ID P1 (otherwise the
    /// resource is Blocked with GroupLicensingUnavailable). Members inherit the licences
    /// while the group has them; a group's licence is assigned once there are free seats for
    /// every member who needs one. Dropping a group removes the licences this resource gave
    /// it, from every member holding them only through it (counted by members against the
    /// removal limit; R19, R28).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub groups: Vec<String>,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.type == 'Traditional' ? has(self.subscriptionRef) : !has(self.subscriptionRef)", "message": "subscriptionRef is required when type is Traditional, and not allowed when Standalone"}, {"rule": "!has(self.autoscale) || (self.type == 'Standalone' && self.autoscale.maxSeats >= self.quantity)", "message": "autoscale is for Standalone add-ons, with maxSeats at least quantity"}]))]
#[serde(rename_all = "camelCase")]
pub struct AddOnIntent {
    /// The organization (tenant), named by its domain. Immutable.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "organization is immutable"}]))]
    pub organization: String,
    /// The add-on product (SKU part number), e.g. `EXCHANGEARCHIVE_ADDON`. Immutable.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "product is immutable"}]))]
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

/// Users chosen by directory attributes, in the shape of a Kubernetes label selector: a user
/// matches when every `matchAttributes` entry and every `matchExpressions` requirement holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "(has(self.matchAttributes) && size(self.matchAttributes) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0) || (has(self.memberOf) && size(self.memberOf) > 0)", "message": "a userSelector needs matchAttributes, matchExpressions or memberOf (an empty one would select everyone)"}]))]
pub struct UserSelector {
    /// Attribute → value, each to be equal (case-insensitively), e.g. `{department: Sales}`.
    /// Attributes: department, jobTitle, companyName, officeLocation, country, usageLocation,
    /// userType (`Member` or `Guest`), accountEnabled (`"true"` or `"false"`), employeeType.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(k, k in ['department', 'jobTitle', 'companyName', 'officeLocation', 'country', 'usageLocation', 'userType', 'accountEnabled', 'employeeType'])", "message": "matchAttributes keys are department, jobTitle, companyName, officeLocation, country, usageLocation, userType, accountEnabled or employeeType"}]))]
    pub match_attributes: BTreeMap<String, String>,
    /// Requirements on attributes: `In` and `NotIn` a list of values, `Exists` and
    /// `DoesNotExist` (no values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<AttributeRequirement>,
    /// Only members of at least one of these groups (display names or object ids; direct
    /// members). The group's licences are not involved: the users are licensed directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub member_of: Vec<String>,
}

/// One requirement of a `userSelector`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.operator == 'In' || self.operator == 'NotIn' ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)", "message": "In and NotIn need values; Exists and DoesNotExist take none"}]))]
pub struct AttributeRequirement {
    /// The attribute (as in matchAttributes).
    pub key: UserAttribute,
    /// `In`, `NotIn` (the attribute's value is, or is not, one of `values`), `Exists` or
    /// `DoesNotExist` (the user has, or has no, value for the attribute).
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn` (compared case-insensitively).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl UserSelector {
    /// Whether a user is selected. Attribute names were checked when the manifest was read;
    /// an unknown one here matches nobody.
    pub fn matches(&self, user: &User) -> bool {
        let names_enabled = self.match_attributes.contains_key("accountEnabled")
            || self
                .match_expressions
                .iter()
                .any(|r| r.key == UserAttribute::AccountEnabled);
        if !names_enabled && !user.account_enabled {
            return false;
        }
        let equal = |a: Option<&str>, v: &str| a.is_some_and(|a| a.eq_ignore_ascii_case(v));
        self.match_attributes
            .iter()
            .all(|(k, v)| UserAttribute::parse(k).is_some_and(|a| equal(user.attribute(a), v)))
            && self.match_expressions.iter().all(|r| {
                let value = user.attribute(r.key).filter(|v| !v.is_empty());
                let listed = || r.values.iter().any(|v| equal(value, v));
                match r.operator {
                    SelectorOperator::In => listed(),
                    SelectorOperator::NotIn => !listed(),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// Seats that follow demand, within limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscale {
    /// Never more seats than this.
    #[schemars(range(min = 0, max = 1_000_000))]
    pub max_seats: i32,
    /// Free seats to keep beyond demand, so a new user never waits for one.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub headroom: i32,
}

/// Why autoscaling chose its target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscaleStatus {
    /// Licences of the product assigned in the organization, plus those LicenseAssignments
    /// wait for.
    pub demand: i64,
    /// The seat count autoscaling aims at: min(maxSeats, max(seats, demand + headroom -
    /// the product's other seats)).
    pub target: i64,
    /// A reduction outside the reduction window waits until then (the next renewal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_reduction_at: Option<Instant>,
    /// Why seats above the target stay for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// Points at the key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductKeyRef {
    /// The Secret and key holding the product key.
    pub secret_ref: SecretKeySelector,
}

/// A key of a Secret in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// What deleting a Subscription or AddOn does to the purchase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SubscriptionDeletionPolicy {
    /// Leave the subscription as it is; seatkeeper forgets it.
    #[default]
    Orphan,
    /// Cancel it (after the cancellation window: turn recurring billing off).
    Cancel,
}

/// One product to license, optionally with some of its service plans turned off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseSpec {
    /// The product (SKU part number), e.g. `ENTERPRISEPACK`.
    #[schemars(length(min = 1))]
    pub product: String,
    /// Service plans of the product to turn off for these users, e.g. `SWAY`. Each at most once.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub disabled_plans: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AssignmentMode {
    /// Add these licences; keep any others the users hold.
    #[default]
    Add,
    /// Hold exactly these licences; remove the others (make-before-break).
    Replace,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AssignmentDeletionPolicy {
    /// Remove the licences this resource assigned.
    #[default]
    Unassign,
    /// Leave the licences assigned.
    Retain,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AddOnType {
    /// Attached to one base subscription.
    #[default]
    Traditional,
    /// A subscription of its own, with its own end date.
    Standalone,
}

/// Names a Subscription resource in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionRef {
    /// Name of the Subscription resource.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A condition in the shape of metav1.Condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Synced` or `Blocked`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, e.g. `CreditCheckPending`.
    pub reason: String,
    /// What happened, and what to do about it, in plain words.
    pub message: String,
    /// When the status last changed.
    #[schemars(with = "String")]
    pub last_transition_time: Instant,
    /// The generation of the spec this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The conditions every status carries: a list-map keyed by `type`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Conditions(
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub Vec<Condition>,
);

impl Conditions {
    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == type_)
    }

    pub fn is_true(&self, type_: &str) -> bool {
        self.get(type_).is_some_and(|c| c.status == "True")
    }

    /// Set a condition, keeping `lastTransitionTime` unless its status flips.
    pub fn set(&mut self, mut c: Condition) {
        match self.0.iter_mut().find(|x| x.type_ == c.type_) {
            Some(old) => {
                if old.status == c.status {
                    c.last_transition_time = old.last_transition_time;
                }
                *old = c;
            }
            None => self.0.push(c),
        }
    }

    /// Equal but for timestamps: what decides whether a status write is needed.
    pub fn same_ignoring_time(&self, other: &Conditions) -> bool {
        let key = |c: &Condition| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
                c.observed_generation,
            )
        };
        let mut a: Vec<_> = self.0.iter().map(key).collect();
        let mut b: Vec<_> = other.0.iter().map(key).collect();
        a.sort();
        b.sort();
        a == b
    }
}

/// Seat counts of a subscription or add-on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatCounts {
    /// Seats asked for in spec.
    pub desired: i64,
    /// Seats bought.
    pub purchased: i64,
    /// Licences of the product assigned to users (across the organization's pool).
    pub assigned: i64,
    /// Licences of the product still free to assign (across the pool).
    pub available: i64,
}

/// A purchase started but not yet confirmed: retried with the same key, it cannot buy twice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingPurchase {
    /// The idempotency key sent with the purchase.
    pub key: String,
    /// When the purchase was started.
    #[schemars(with = "String")]
    pub started_at: Instant,
}

/// The lifecycle state of a subscription or add-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PurchaseState {
    Pending,
    Active,
    Warning,
    Suspended,
    CancelAtTermEnd,
    Canceled,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    /// The generation of the spec last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` and `Blocked`; `Reconciling` and `Stalled` for kstatus.
    #[serde(default)]
    pub conditions: Conditions,
    /// The reason of the Blocked condition while it is True; empty otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// The id of the subscription in the licensing service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// How the subscription was bought: `Direct`, `Reseller`, `Prepaid` or `SelfService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Whether the subscription is a trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<bool>,
    /// `Pending`, `Active`, `Warning`, `Suspended`, `CancelAtTermEnd` or `Canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PurchaseState>,
    /// When the current term ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub term_ends_at: Option<Instant>,
    /// Seats desired, purchased, assigned and available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<SeatCounts>,
    /// The cost of the last seat change seatkeeper made (R08).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seat_change: Option<CostPreview>,
    /// A purchase in flight (recorded before the backend is called).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase: Option<PendingPurchase>,
    /// With `spec.autoscale`: the demand and the target it sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleStatus>,
}

/// One entry per user: its state and, when Pending or Blocked, why and what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The user principal name.
    pub user: String,
    /// `Assigned`, `Pending` or `Blocked`.
    pub state: UserState,
    /// Why the user is Pending or Blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UserState {
    Assigned,
    Pending,
    Blocked,
}

/// A licence this resource removed (R19: the mailbox data is deleted 30 days later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    pub user: String,
    pub product: String,
    #[schemars(with = "String")]
    pub removed_at: Instant,
    /// Until when the user's mailbox data can still be recovered.
    #[schemars(with = "String")]
    pub data_retained_until: Instant,
}

/// A licence this resource assigned, and therefore may remove.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct OwnedLicence {
    pub user: String,
    pub product: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseAssignmentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` and `Blocked`; `Reconciling` and `Stalled` for kstatus.
    #[serde(default)]
    pub conditions: Conditions,
    /// The reason of the Blocked condition while it is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// Users listed in spec, and those its userSelector selects.
    #[serde(default)]
    pub desired_users: i64,
    /// Users its userSelector selects, as the tenant was last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<i64>,
    /// Users holding every declared licence.
    #[serde(default)]
    pub assigned: i64,
    /// Users waiting (e.g. for free licences).
    #[serde(default)]
    pub pending: i64,
    /// Users that cannot be licensed until something outside the spec changes.
    #[serde(default)]
    pub blocked: i64,
    /// The listed users, in spec order, each with its state.
    #[serde(default)]
    pub users: Vec<UserStatus>,
    /// Licences this resource removed, with the date their mailbox data is deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removals: Vec<Removal>,
    /// Licences this resource assigned (and so may remove).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned: Vec<OwnedLicence>,
    /// Each group in spec.groups: its members, how many hold every declared licence, how many
    /// are in error (and the first of them, with the reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
    /// Group licences this resource assigned (and so may remove), by the group's object id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_groups: Vec<OwnedGroupLicence>,
}

/// One group of spec.groups as the tenant was last read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// As named in spec.groups.
    pub group: String,
    /// Direct members (users).
    pub members: i64,
    /// Members holding every declared licence.
    pub licensed: i64,
    /// Members the service could not give a licence of the group (in error), or, while the
    /// whole group is Blocked, every member still without one.
    pub blocked: i64,
    /// The reason the group's licences are not (all) there, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first members in error (at most 10), each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<UserStatus>,
}

/// A group licence a LicenseAssignment assigned.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedGroupLicence {
    /// The group's object id (its name where it has none).
    pub group: String,
    /// The product (SKU part number) the group was given.
    pub product: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddOnStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced` and `Blocked`; `Reconciling` and `Stalled` for kstatus.
    #[serde(default)]
    pub conditions: Conditions,
    /// The reason of the Blocked condition while it is True.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// The add-on's id (a standalone add-on's subscription id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_on_id: Option<String>,
    /// The base subscription a traditional add-on belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_subscription_id: Option<String>,
    /// `Pending`, `Active`, `Warning`, `Suspended`, `CancelAtTermEnd` or `Canceled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PurchaseState>,
    /// Quantity desired, purchased, assigned and available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<SeatCounts>,
    /// The cost of the last quantity change seatkeeper made (R08).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seat_change: Option<CostPreview>,
    /// A purchase in flight (recorded before the backend is called).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase: Option<PendingPurchase>,
    /// Users who got the add-on from its one-time auto-assignment at the purchase (R25);
    /// absent until that has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assigned: Option<i64>,
    /// The add-on was bought with autoAssign and its one-time auto-assignment has not run yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_assign_due: bool,
    /// Users without a licence whom the auto-assignment could not give the add-on, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_assign_skipped: Vec<UserStatus>,
    /// With `spec.autoscale`: the demand and the target it sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleStatus>,
}
