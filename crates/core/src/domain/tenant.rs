//! The tenant model: organizations, their users and licences, and their subscriptions.
//!
//! These are also the shapes of the embedded backend's tenant file (CONTRACT §2), so the
//! serde attributes here are part of the contract: unknown keys are rejected.

use super::Instant;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// How a subscription was bought; decides who may change it (R04, R05, R09).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Channel {
    /// Bought directly by an admin; fully manageable.
    #[default]
    Direct,
    /// Bought through a cloud solution provider partner (R05).
    Reseller,
    /// Activated with a 25-character product key (R04).
    Prepaid,
    /// Bought by a user through self-service purchase (R09).
    SelfService,
}

/// How often a subscription is billed (R08).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BillingFrequency {
    #[default]
    Monthly,
    Annual,
}

/// The commitment a subscription is bought for: a month, a year or three years (new
/// commerce's term durations, as ISO 8601 periods).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Term {
    #[default]
    P1M,
    P1Y,
    P3Y,
}

impl Term {
    pub fn as_str(self) -> &'static str {
        match self {
            Term::P1M => "P1M",
            Term::P1Y => "P1Y",
            Term::P3Y => "P3Y",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditCheck {
    #[default]
    Cleared,
    Pending,
}

/// The lifecycle state the licensing service reports for a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionState {
    Pending,
    #[default]
    Active,
    Warning,
    Suspended,
    Canceled,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Organization {
    pub domain: String,
    #[serde(default)]
    pub payment_method_on_file: bool,
    /// How long a newly bought subscription takes to become active (R27); 0 is at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub activation_delay_minutes: u32,
    /// How long a seat change takes to finish (Partner Center answers 202 Accepted and finishes
    /// later); 0 is at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seat_change_delay_minutes: u32,
    /// The service may hold a purchase or a seat increase for a credit check and nothing it
    /// shows beforehand tells (Partner Center): a plan cannot promise such a change (R03).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub credit_check_by_service: bool,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Directory groups; a group with licences passes them on to its members (group-based
    /// licensing, which needs Microsoft Entra ID P1: [`Organization::group_licensing`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    /// Lookups kept beside the data (not part of the file).
    #[serde(skip)]
    cache: OrgCache,
}

/// A user index (lowercase UPN → position) and per-product licence counts, built on first use.
/// The index is checked on every hit, so a stale one only costs a scan; the counts are kept
/// exact by [`Organization::set_licences`], the one place the simulator changes licences.
/// The index is shared between copies (a snapshot is a copy): a copy's users are the same
/// until changed, and a changed position is caught by the check.
#[derive(Default)]
struct OrgCache {
    users: OnceLock<Arc<HashMap<String, usize>>>,
    consumed: Mutex<Option<HashMap<String, u32>>>,
}

impl Clone for OrgCache {
    fn clone(&self) -> Self {
        OrgCache {
            users: self.users.clone(),
            consumed: Mutex::new(self.consumed.lock().expect("cache lock").clone()),
        }
    }
}

impl PartialEq for OrgCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for OrgCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrgCache")
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Service plans that entitle a tenant to group-based licensing (Microsoft Entra ID P1, P2).
pub const GROUP_LICENSING_PLANS: &[&str] = &["AAD_PREMIUM", "AAD_PREMIUM_P2"];

/// Products that entitle a tenant to group-based licensing without an Entra plan of their
/// own: Office 365 E3 and E5.
pub const GROUP_LICENSING_PRODUCTS: &[&str] = &[
    "ENTERPRISEPACK",
    "ENTERPRISEPREMIUM",
    "ENTERPRISEPREMIUM_NOPSTNCONF",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct User {
    pub upn: String,
    #[serde(default)]
    pub guest: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// The directory's department (Graph's `department`): what `export --split-by
    /// department` groups by, and a `userSelector` may select on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The directory's other attributes a `userSelector` may select on (Graph's names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_type: Option<String>,
    /// A disabled account (Graph's `accountEnabled: false`) cannot sign in.
    #[serde(default = "enabled", skip_serializing_if = "is_enabled")]
    pub account_enabled: bool,
    /// When the user last signed in (Graph's `signInActivity.lastSignInDateTime`); absent:
    /// never, as far as the directory knows. What `seatkeeper report --inactive` measures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<Instant>,
    #[serde(default)]
    pub licenses: Vec<Licence>,
    /// Group licences the user is a member for but does not hold, and why (Graph's
    /// `licenseAssignmentStates` in state `Error`). Worked out by group processing on every
    /// read, never written to the tenant file.
    #[serde(skip)]
    pub license_errors: Vec<LicenceError>,
}

/// A directory group. Its licences are inherited by its direct members when seats allow
/// (group-based licensing); a member who cannot have one is in error instead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    /// The object id; a group without one is known by its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Members by user principal name.
    #[serde(default)]
    pub members: Vec<String>,
    /// Licences assigned to the group (product, disabled plans).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<Licence>,
    /// The service is still passing the group's licences to its members (Graph's
    /// `licenseProcessingState` other than `ProcessingComplete`); the simulator processes at
    /// once, so never in a tenant file.
    #[serde(skip)]
    pub processing: bool,
}

impl Group {
    /// How the service names the group in calls: its object id, else its name.
    pub fn key(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }

    pub fn licence(&self, product: &str) -> Option<&Licence> {
        self.licenses.iter().find(|l| l.product == product)
    }

    pub fn has_member(&self, upn: &str) -> bool {
        self.members.iter().any(|m| m.eq_ignore_ascii_case(upn))
    }
}

/// Why a member does not hold a licence of their group (Graph's `licenseAssignmentState`
/// errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum GroupLicenceError {
    /// No free seat of the product.
    CountViolation,
    /// A plan conflicts with one the user already has (R14).
    MutuallyExclusiveViolation,
    /// A plan needs one the user does not have.
    DependencyViolation,
    /// The user has no usage location, or the service is not offered there (R15).
    ProhibitedInUsageLocationViolation,
    UniquenessViolation,
    Other,
}

impl GroupLicenceError {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupLicenceError::CountViolation => "CountViolation",
            GroupLicenceError::MutuallyExclusiveViolation => "MutuallyExclusiveViolation",
            GroupLicenceError::DependencyViolation => "DependencyViolation",
            GroupLicenceError::ProhibitedInUsageLocationViolation => {
                "ProhibitedInUsageLocationViolation"
            }
            GroupLicenceError::UniquenessViolation => "UniquenessViolation",
            GroupLicenceError::Other => "Other",
        }
    }

    /// Graph's name → the error; an unknown name is `Other`.
    pub fn parse(name: &str) -> GroupLicenceError {
        [
            GroupLicenceError::CountViolation,
            GroupLicenceError::MutuallyExclusiveViolation,
            GroupLicenceError::DependencyViolation,
            GroupLicenceError::ProhibitedInUsageLocationViolation,
            GroupLicenceError::UniquenessViolation,
        ]
        .into_iter()
        .find(|e| e.as_str() == name)
        .unwrap_or(GroupLicenceError::Other)
    }

    /// The Blocked reason seatkeeper already uses for the same cause.
    pub fn reason(self) -> super::BlockReason {
        use super::BlockReason as R;
        match self {
            GroupLicenceError::CountViolation => R::InsufficientSeats,
            GroupLicenceError::MutuallyExclusiveViolation => R::ConflictingServices,
            GroupLicenceError::DependencyViolation => R::MissingDependency,
            GroupLicenceError::ProhibitedInUsageLocationViolation => R::UsageLocationMissing,
            GroupLicenceError::UniquenessViolation | GroupLicenceError::Other => {
                R::GroupLicenceFailed
            }
        }
    }

    /// What it means, in plain words.
    pub fn describe(self) -> &'static str {
        match self {
            GroupLicenceError::CountViolation => "no free seat of the product",
            GroupLicenceError::MutuallyExclusiveViolation => {
                "a service plan conflicts with a licence the user already has"
            }
            GroupLicenceError::DependencyViolation => {
                "a service plan needs another the user does not have"
            }
            GroupLicenceError::ProhibitedInUsageLocationViolation => {
                "the user has no usage location, or the product is not offered there"
            }
            GroupLicenceError::UniquenessViolation => {
                "the product may be held only once and the user already has it"
            }
            GroupLicenceError::Other => "the service could not assign it",
        }
    }
}

/// One group licence a member does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenceError {
    pub product: String,
    /// The group's key ([`Group::key`]).
    pub group: String,
    pub error: GroupLicenceError,
}

fn enabled() -> bool {
    true
}

fn is_enabled(v: &bool) -> bool {
    *v
}

impl Default for User {
    fn default() -> Self {
        User {
            upn: String::new(),
            guest: false,
            usage_location: None,
            department: None,
            job_title: None,
            company_name: None,
            office_location: None,
            country: None,
            employee_type: None,
            account_enabled: true,
            last_sign_in_at: None,
            licenses: vec![],
            license_errors: vec![],
        }
    }
}

/// A directory attribute of a user, as Graph names it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum UserAttribute {
    Department,
    JobTitle,
    CompanyName,
    OfficeLocation,
    Country,
    UsageLocation,
    /// `Member` or `Guest`.
    UserType,
    /// `"true"` or `"false"`.
    AccountEnabled,
    EmployeeType,
}

impl UserAttribute {
    pub const ALL: [UserAttribute; 9] = [
        UserAttribute::Department,
        UserAttribute::JobTitle,
        UserAttribute::CompanyName,
        UserAttribute::OfficeLocation,
        UserAttribute::Country,
        UserAttribute::UsageLocation,
        UserAttribute::UserType,
        UserAttribute::AccountEnabled,
        UserAttribute::EmployeeType,
    ];

    /// Graph's (and the manifests') name of the attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            UserAttribute::Department => "department",
            UserAttribute::JobTitle => "jobTitle",
            UserAttribute::CompanyName => "companyName",
            UserAttribute::OfficeLocation => "officeLocation",
            UserAttribute::Country => "country",
            UserAttribute::UsageLocation => "usageLocation",
            UserAttribute::UserType => "userType",
            UserAttribute::AccountEnabled => "accountEnabled",
            UserAttribute::EmployeeType => "employeeType",
        }
    }

    pub fn parse(name: &str) -> Option<UserAttribute> {
        UserAttribute::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl User {
    pub fn licence(&self, product: &str) -> Option<&Licence> {
        self.licenses.iter().find(|l| l.product == product)
    }

    /// The value of one directory attribute, if the user has one.
    pub fn attribute(&self, a: UserAttribute) -> Option<&str> {
        match a {
            UserAttribute::Department => self.department.as_deref(),
            UserAttribute::JobTitle => self.job_title.as_deref(),
            UserAttribute::CompanyName => self.company_name.as_deref(),
            UserAttribute::OfficeLocation => self.office_location.as_deref(),
            UserAttribute::Country => self.country.as_deref(),
            UserAttribute::UsageLocation => self.usage_location.as_deref(),
            UserAttribute::UserType => Some(if self.guest { "Guest" } else { "Member" }),
            UserAttribute::AccountEnabled => Some(if self.account_enabled {
                "true"
            } else {
                "false"
            }),
            UserAttribute::EmployeeType => self.employee_type.as_deref(),
        }
    }
}

/// A licence a user holds: a product with some of its service plans turned off (R13).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Licence {
    pub product: String,
    #[serde(default)]
    pub disabled_plans: Vec<String>,
    /// Inherited from a group (group-based licensing): never removed from the user directly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_group: bool,
}

impl Licence {
    pub fn new(product: impl Into<String>, disabled_plans: &[String]) -> Self {
        let mut disabled_plans = disabled_plans.to_vec();
        disabled_plans.sort();
        disabled_plans.dedup();
        Licence {
            product: product.into(),
            disabled_plans,
            by_group: false,
        }
    }

    /// Same product with the same plans turned off, in any order.
    pub fn same_plans(&self, other: &Licence) -> bool {
        if self.product != other.product || self.disabled_plans.len() != other.disabled_plans.len()
        {
            return false;
        }
        if self.disabled_plans.is_sorted() && other.disabled_plans.is_sorted() {
            // Licence::new sorts: the common case needs no copies.
            return self.disabled_plans == other.disabled_plans;
        }
        let mut a = self.disabled_plans.clone();
        let mut b = other.disabled_plans.clone();
        a.sort();
        b.sort();
        self.product == other.product && a == b
    }
}

/// One user's atomic licence change: make-before-break.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserChange {
    pub user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<Licence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Products in `add` the user already holds: only their disabled plans change (shown as
    /// such, not as new licences; the service call is the same).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plans_only: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    pub id: String,
    pub product: String,
    pub seats: u32,
    #[serde(default)]
    pub channel: Channel,
    #[serde(default)]
    pub trial: bool,
    #[serde(default)]
    pub credit_check: CreditCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_check_clears_at: Option<Instant>,
    #[serde(default)]
    pub status: SubscriptionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activates_at: Option<Instant>,
    #[serde(default)]
    pub billing_frequency: BillingFrequency,
    #[serde(default = "yes")]
    pub recurring_billing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchased_at: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_ends_at: Option<Instant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_window_ends_at: Option<Instant>,
    /// Seats can be removed only until then (Partner Center's refundable quantity); absent:
    /// at any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduction_window_ends_at: Option<Instant>,
    /// Traditional add-ons bought on top of this subscription (R22, R23).
    #[serde(default)]
    pub add_ons: Vec<TraditionalAddOn>,
    /// The idempotency key of the purchase that created it; a retried purchase with the same
    /// key returns this subscription instead of buying again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_key: Option<String>,
    /// A seat change the service accepted but has not finished yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_seat_change: Option<PendingSeatChange>,
}

/// A seat change answered 202 Accepted: `seats` takes effect at `completesAt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingSeatChange {
    pub seats: u32,
    pub completes_at: Instant,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraditionalAddOn {
    pub id: String,
    pub product: String,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchase_key: Option<String>,
}

impl Subscription {
    /// Seats can be assigned from it now: active (or in its grace period) and activated (R27).
    pub fn is_usable(&self, now: Instant) -> bool {
        matches!(
            self.status,
            SubscriptionState::Active | SubscriptionState::Warning
        ) && self.activates_at.is_none_or(|at| at <= now)
    }

    /// Seats that can be counted on: an accepted but unfinished reduction counts already, an
    /// accepted increase only once it has finished.
    pub fn assignable_seats(&self) -> u32 {
        self.pending_seat_change
            .as_ref()
            .map_or(self.seats, |p| p.seats.min(self.seats))
    }

    /// R11: the seats it adds to its product's assignable pool (none unless it is usable and
    /// an admin may assign from it).
    pub fn pool_seats(&self, now: Instant) -> u32 {
        if self.is_usable(now) && self.is_admin_manageable() {
            self.assignable_seats()
        } else {
            0
        }
    }

    /// An admin may assign licences from it (R09: not a self-service purchase).
    pub fn is_admin_manageable(&self) -> bool {
        self.channel != Channel::SelfService
    }

    pub fn credit_check_pending(&self, now: Instant) -> bool {
        self.credit_check == CreditCheck::Pending
            && self.credit_check_clears_at.is_none_or(|at| at > now)
    }
}

impl Organization {
    pub fn user(&self, upn: &str) -> Option<&User> {
        self.user_position(upn).map(|i| &self.users[i])
    }

    pub(crate) fn user_position(&self, upn: &str) -> Option<usize> {
        let index = self.cache.users.get_or_init(|| {
            Arc::new(
                self.users
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (u.upn.to_lowercase(), i))
                    .collect(),
            )
        });
        index
            .get(super::lowercase(upn).as_ref())
            .copied()
            .filter(|&i| {
                self.users
                    .get(i)
                    .is_some_and(|u| u.upn.eq_ignore_ascii_case(upn))
            })
            .or_else(|| {
                self.users
                    .iter()
                    .position(|u| u.upn.eq_ignore_ascii_case(upn))
            })
    }

    /// Replace a user's licences (keeps the licence counts exact). False: no such user.
    pub fn set_licences(&mut self, upn: &str, licences: Vec<Licence>) -> bool {
        let Some(i) = self.user_position(upn) else {
            return false;
        };
        if let Some(counts) = self.cache.consumed.get_mut().expect("cache lock").as_mut() {
            for l in &self.users[i].licenses {
                *counts.entry(l.product.clone()).or_default() -= 1;
            }
            for l in &licences {
                *counts.entry(l.product.clone()).or_default() += 1;
            }
        }
        self.users[i].licenses = licences;
        true
    }

    /// A group by object id (any case) or, failing that, by its name; Err: what to tell.
    pub fn group(&self, name_or_id: &str) -> std::result::Result<&Group, String> {
        if let Some(g) = self.groups.iter().find(|g| {
            g.id.as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(name_or_id))
        }) {
            return Ok(g);
        }
        let mut named = self.groups.iter().filter(|g| g.name == name_or_id);
        match (named.next(), named.next()) {
            (Some(g), None) => Ok(g),
            (Some(_), Some(_)) => Err(format!(
                "more than one group in {} is named {name_or_id}: name it by its object id",
                self.domain
            )),
            (None, _) => Err(format!(
                "no group named {name_or_id} (nor with that object id) in {}",
                self.domain
            )),
        }
    }

    /// Group-based licensing is available: the tenant holds a usable subscription whose
    /// product includes Microsoft Entra ID P1 or P2 (their service plans `AAD_PREMIUM`,
    /// `AAD_PREMIUM_P2`), as Microsoft 365 E3/E5 and Business Premium do, or Office 365 E3
    /// or above (Microsoft Entra's "group-based licensing" prerequisites).
    pub fn group_licensing(&self, catalog: &super::Catalog, now: Instant) -> bool {
        self.subscriptions.iter().any(|s| {
            s.is_usable(now)
                && (GROUP_LICENSING_PRODUCTS.contains(&s.product.as_str())
                    || catalog.product(&s.product).is_some_and(|p| {
                        p.plans
                            .iter()
                            .any(|plan| GROUP_LICENSING_PLANS.contains(&plan.as_str()))
                    }))
        })
    }

    /// Replace what a user's group licences are in error for (group processing's).
    pub fn set_licence_errors(&mut self, upn: &str, errors: Vec<LicenceError>) -> bool {
        let Some(i) = self.user_position(upn) else {
            return false;
        };
        self.users[i].license_errors = errors;
        true
    }

    pub fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.id == id)
    }

    /// R11: the assignable pool of a product, summed over active, admin-manageable subscriptions.
    pub fn pool(&self, product: &str, now: Instant) -> u32 {
        self.subscriptions
            .iter()
            .filter(|s| s.product == product)
            .map(|s| s.pool_seats(now))
            .chain(
                self.subscriptions
                    .iter()
                    .filter(|s| s.is_usable(now))
                    .flat_map(|s| {
                        s.add_ons
                            .iter()
                            .filter(|a| a.product == product)
                            .map(|a| a.quantity)
                    }),
            )
            .sum()
    }

    /// Licences of a product held by users: the seats in use.
    pub fn consumed(&self, product: &str) -> u32 {
        let mut cache = self.cache.consumed.lock().expect("cache lock");
        let counts = cache.get_or_insert_with(|| {
            let mut counts: HashMap<String, u32> = HashMap::new();
            for u in &self.users {
                for l in &u.licenses {
                    *counts.entry(l.product.clone()).or_default() += 1;
                }
            }
            counts
        });
        counts.get(product).copied().unwrap_or(0)
    }

    /// R09: the product is only held through self-service purchases.
    pub fn self_service_only(&self, product: &str, now: Instant) -> bool {
        let usable = |s: &&Subscription| s.product == product && s.is_usable(now);
        self.subscriptions
            .iter()
            .filter(usable)
            .all(|s| !s.is_admin_manageable())
            && self.subscriptions.iter().any(|s| usable(&s))
    }
}
