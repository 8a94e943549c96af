//! The planner: declared resources + observed tenant + clock → ordered actions and statuses.
//!
//! A pure function with no I/O and no Kubernetes types. `seatkeeper plan/apply` and the
//! controller both call [`plan`]; the executor applies what it returns.

mod add_ons;
mod assignments;
mod auto_assign;
mod autoscale;
pub mod conditions;
pub mod deletion;
mod groups;
pub mod records;
pub mod resources;
mod subscriptions;
#[cfg(test)]
mod tests;

pub use assignments::record_owned;
pub use auto_assign::{MAX_SKIPPED_LISTED, note_skipped, skipped};

use crate::domain::billing::CostPreview;
use crate::domain::{
    BillingFrequency, BlockReason, Catalog, Instant, Licence, Organization, Refusal, rules,
};
use resources::{
    AddOnStatus, AddOnType, LicenseAssignmentStatus, ORGANIZATION_LABEL, SubscriptionStatus,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::domain::UserChange;
pub use conditions::Block;
pub use resources::{AddOnIntent, AssignmentIntent, SubscriptionIntent};
pub use subscriptions::state_of;

/// The three kinds of resource. Their wire names are part of persisted purchase keys and
/// records: never rename one (a renamed kind would make a recorded purchase unrecognisable,
/// and buy again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Subscription,
    LicenseAssignment,
    AddOn,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Subscription, Kind::LicenseAssignment, Kind::AddOn];

    /// The wire name: the resource's `kind`, in purchase keys, records and actions.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Subscription => "Subscription",
            Kind::LicenseAssignment => "LicenseAssignment",
            Kind::AddOn => "AddOn",
        }
    }

    pub fn from_wire(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one declared resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn of(kind: Kind, meta: &Meta) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What the planner needs of a resource's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    /// Orders competing claims: the oldest resource wins.
    pub created_at: Instant,
    pub generation: Option<i64>,
    /// Stable identity of this incarnation of the resource (the uid in a cluster); part of
    /// every purchase's idempotency key.
    pub uid: String,
    /// The resource is being deleted: carry out its deletion policy.
    pub deleting: bool,
    /// What its annotations ask for.
    pub flags: Flags,
}

/// What a resource's `seatkeeper.dev/…` annotations ask for (each set by `"true"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `seatkeeper.dev/paused`: observe only, change nothing.
    pub paused: bool,
    /// `seatkeeper.dev/allow-bulk-removal`: no removal limit.
    pub allow_bulk_removal: bool,
    /// `seatkeeper.dev/acknowledge-downgrade`: a Replace may remove data-bearing plans, and a
    /// removal may leave a user with none (R28).
    pub acknowledge_downgrade: bool,
    /// `seatkeeper.dev/allow-large-purchase`: no purchase guard.
    pub allow_large_purchase: bool,
    /// `seatkeeper.dev/abandon-on-delete`: a deletion lets go without its deletion policy.
    pub abandon_on_delete: bool,
    /// `seatkeeper.dev/adopt-licences` (LicenseAssignment): the licences its users already
    /// hold directly, as declared, become its own, as if it had assigned them (what `export`
    /// writes: dropping a user later removes that licence).
    pub adopt_licences: bool,
}

/// A declared resource with the status it last reached (which carries what it owns).
#[derive(Clone, Debug, PartialEq)]
pub struct Declared<S, St> {
    pub meta: Meta,
    pub spec: S,
    pub status: St,
}

/// Everything declared: the three kinds, namespace bindings and the product keys in Secrets.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub subscriptions: Vec<Declared<SubscriptionIntent, SubscriptionStatus>>,
    pub assignments: Vec<Declared<AssignmentIntent, LicenseAssignmentStatus>>,
    pub add_ons: Vec<Declared<AddOnIntent, AddOnStatus>>,
    /// namespace → the organization it is bound to (`seatkeeper.dev/organization` label).
    pub namespaces: BTreeMap<String, Option<String>>,
    /// (namespace, secret, key) → value.
    pub secrets: BTreeMap<(String, String, String), String>,
    /// (namespace, secret) → why it was not read (outside the namespaces seatkeeper may read
    /// Secrets in).
    pub secrets_out_of_reach: BTreeMap<(String, String), String>,
}

impl Desired {
    /// Drops one resource from the declared state (its deletion completed before planning).
    pub fn forget(&mut self, r: &ObjectRef) {
        let other = |m: &Meta| m.namespace != r.namespace || m.name != r.name;
        match r.kind {
            Kind::Subscription => self.subscriptions.retain(|d| other(&d.meta)),
            Kind::LicenseAssignment => self.assignments.retain(|d| other(&d.meta)),
            Kind::AddOn => self.add_ons.retain(|d| other(&d.meta)),
        }
    }

    pub fn organizations(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self
            .subscriptions
            .iter()
            .map(|d| d.spec.organization.clone())
            .chain(self.assignments.iter().map(|d| d.spec.organization.clone()))
            .chain(self.add_ons.iter().map(|d| d.spec.organization.clone()))
            .collect();
        orgs.sort();
        orgs.dedup();
        orgs
    }
}

/// The licensing service as last observed.
#[derive(Clone, Debug)]
pub struct Observed {
    pub catalog: Arc<Catalog>,
    pub organizations: BTreeMap<String, Organization>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// One reconcile of one resource removes licences from at most this many users unless the
    /// resource allows bulk removal.
    pub max_removals: usize,
    /// Resources in namespaces without an organization binding are refused.
    pub require_namespace_binding: bool,
    /// How many licence batches the executor sends to the backend at once.
    pub concurrency: usize,
    /// The purchase guard: one reconcile of one resource raises seats (or an add-on's
    /// quantity, or buys) by at most this many unless the resource allows a large purchase.
    pub max_seat_increase: u32,
    /// Per-organization overrides (lowercase domain → limits).
    pub per_organization: BTreeMap<String, Limits>,
    /// The executor's stop request (Ctrl-C, SIGTERM): no call is started once it is set.
    pub interrupt: crate::clock::Interrupt,
}

/// An organization's own limits; None keeps the global one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_removals: Option<usize>,
    pub max_seat_increase: Option<u32>,
}

impl Options {
    /// `max_removals` for an organization.
    pub fn max_removals_for(&self, organization: &str) -> usize {
        self.limits_of(organization)
            .and_then(|l| l.max_removals)
            .unwrap_or(self.max_removals)
    }

    /// `max_seat_increase` for an organization.
    pub fn max_seat_increase_for(&self, organization: &str) -> u32 {
        self.limits_of(organization)
            .and_then(|l| l.max_seat_increase)
            .unwrap_or(self.max_seat_increase)
    }

    fn limits_of(&self, organization: &str) -> Option<&Limits> {
        self.per_organization.get(&organization.to_lowercase())
    }
}

/// `--max-seat-increase`'s default.
pub const DEFAULT_MAX_SEAT_INCREASE: u32 = 100;

impl Default for Options {
    fn default() -> Self {
        Options {
            max_removals: 20,
            require_namespace_binding: false,
            concurrency: 4,
            max_seat_increase: DEFAULT_MAX_SEAT_INCREASE,
            per_organization: BTreeMap::new(),
            interrupt: crate::clock::Interrupt::default(),
        }
    }
}

/// One change to make in the licensing service, on behalf of one resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub organization: String,
    #[serde(flatten)]
    pub op: Op,
    /// When in a pass it runs; the plan lists actions in this order.
    #[serde(skip)]
    pub phase: Phase,
    /// Why only the service can say whether this change will be accepted (R03 on Partner
    /// Center: a credit check it decides on arrival); `plan` shows the outcome as undecided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by_service: Option<String>,
}

/// The order of a pass: bought seats are there at once (R02), so licence changes follow
/// purchases and increases; reductions and cancellations come last, once the pass's removals
/// have freed seats (R07).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Purchases, trial conversions, seat increases, billing changes.
    #[default]
    Buy,
    /// Licence changes, in batches.
    Licences,
    /// Group licences (members inherit them): after users' own changes, which may free seats.
    Groups,
    /// Seat and quantity reductions, cancellations.
    Reduce,
}

/// What the service refused earlier in a run: those resources (and users) stay Blocked and
/// change nothing more until the run ends.
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    pub resources: BTreeMap<ObjectRef, Block>,
    /// (resource, user as sent) → why that user's change was refused.
    pub users: BTreeMap<(ObjectRef, String), Block>,
}

impl Action {
    /// The same action on the same resource with another operation (the original's users
    /// are not copied along).
    pub fn with_op(&self, op: Op) -> Action {
        Action {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            organization: self.organization.clone(),
            op,
            phase: self.phase,
            decided_by_service: self.decided_by_service.clone(),
        }
    }

    pub fn resource(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Op {
    /// Buy a subscription (or standalone add-on) of `product`.
    #[serde(rename_all = "camelCase")]
    Buy {
        product: String,
        seats: u32,
        billing_frequency: BillingFrequency,
        term: crate::domain::Term,
        #[serde(skip_serializing_if = "Option::is_none")]
        offer: Option<String>,
        recurring_billing: bool,
        key: String,
        /// What the purchase costs at list price (R08: its first period is charged now).
        cost: CostPreview,
    },
    #[serde(rename_all = "camelCase")]
    ConvertTrial { subscription_id: String },
    /// Change a subscription's seats (R01), with what it costs (R08).
    #[serde(rename_all = "camelCase")]
    SetSeats {
        subscription_id: String,
        cost: CostPreview,
        #[serde(skip)]
        product_key: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SetRecurringBilling {
        subscription_id: String,
        enabled: bool,
    },
    #[serde(rename_all = "camelCase")]
    Cancel { subscription_id: String },
    /// Buy a traditional add-on on top of a base subscription.
    #[serde(rename_all = "camelCase")]
    BuyAddOn {
        base_subscription_id: String,
        product: String,
        quantity: u32,
        term: crate::domain::Term,
        #[serde(skip_serializing_if = "Option::is_none")]
        offer: Option<String>,
        auto_assign: bool,
        key: String,
        /// What the purchase costs at list price (R08: its first period is charged now).
        cost: CostPreview,
    },
    #[serde(rename_all = "camelCase")]
    SetAddOnQuantity {
        base_subscription_id: String,
        add_on_id: String,
        cost: CostPreview,
    },
    /// Assign, replace and remove licences; each user's change is one atomic operation.
    #[serde(rename_all = "camelCase")]
    AssignLicenses { users: Vec<UserChange> },
    /// Give a group licences (its members inherit them) or take them from it (from every
    /// member holding them only through it).
    #[serde(rename_all = "camelCase")]
    AssignGroupLicences {
        /// The group's object id (its name where it has none).
        group: String,
        /// As the resource names it.
        name: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        add: Vec<Licence>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        remove: Vec<String>,
        /// Members who take a new seat.
        members_gaining: u32,
        /// Members who lose a licence (R19 records each).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        members_losing: Vec<String>,
    },
}

/// What the planner decided: actions in the order to apply them, and every resource's status
/// (in the order of [`Desired`]).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub subscriptions: Vec<SubscriptionStatus>,
    pub assignments: Vec<LicenseAssignmentStatus>,
    pub add_ons: Vec<AddOnStatus>,
    /// Resources being deleted whose deletion policy is fully carried out.
    pub deleted: Vec<ObjectRef>,
    /// The earliest time something blocked may clear by itself (a credit check, an activation).
    pub requeue_at: Option<Instant>,
    /// The licences users hold as the tenant was read, counted against the LicenseAssignment
    /// whose claim each is (the oldest declaring it: a user declared twice counts once), for
    /// what each team's declarations cost (`seatkeeper report`).
    pub held: Vec<Held>,
}

/// Users holding `product` now under the claim of LicenseAssignment `assignment` (an index
/// into `Desired::assignments`): listed or selected users holding it directly or through a
/// group, and the members of its groups holding it through the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub assignment: usize,
    pub product: String,
    pub users: u32,
}

/// Plan one pass.
pub fn plan(desired: &Desired, observed: &Observed, now: Instant, options: &Options) -> Plan {
    plan_with(desired, observed, now, options, &Refusals::default())
}

/// Plan one pass of a run in which the service already refused `refusals`.
pub fn plan_with(
    desired: &Desired,
    observed: &Observed,
    now: Instant,
    options: &Options,
    refusals: &Refusals,
) -> Plan {
    let autoscaled = desired
        .subscriptions
        .iter()
        .any(|d| d.spec.autoscale.is_some())
        || desired.add_ons.iter().any(|d| d.spec.autoscale.is_some());
    let (plan, demand) = plan_once(desired, observed, now, options, refusals, None);
    if !autoscaled {
        return plan;
    }
    // Subscriptions are planned before licences, so autoscaling takes its demand from a
    // first plan: which licences the pass removes and which users want one (the assignment
    // rules decide who can have one; whether a seat is free does not change who wants one).
    plan_once(desired, observed, now, options, refusals, Some(demand)).0
}

/// One pass, in its steps, top to bottom. Each step plans what it owns and leaves the seats
/// as its actions would; the order matters: purchases come before licences (R02: seats
/// first), an add-on's auto-assignment before LicenseAssignments claim its seats, and
/// reductions (R07) after this pass's licence removals.
fn plan_once(
    desired: &Desired,
    observed: &Observed,
    now: Instant,
    options: &Options,
    refusals: &Refusals,
    first_demand: Option<autoscale::Demand>,
) -> (Plan, autoscale::Demand) {
    let inputs = Inputs::new(desired, observed, now, options, refusals, first_demand);
    // 1. Owners: one resource manages each subscription and add-on.
    let owners = inputs.owners();
    let mut planner = Planner::new(inputs, owners);
    // 2. Subscriptions (and standalone add-ons): adopt, buy, seats up, cancel.
    let mut subs = planner.plan_subscriptions();
    // 3. Traditional add-ons on their base, each followed by its auto-assignment (R25).
    let mut add_ons = planner.plan_add_ons(&subs);
    // 4. LicenseAssignments: claims, removals, licences within the seats left.
    let assignments = planner.plan_assignments();
    // 5. Reductions: seats down, counted after this pass's licence removals (R07).
    for r in subs
        .iter_mut()
        .chain(add_ons.iter_mut().map(|a| &mut a.purchase))
    {
        if let Some(d) = r.decrease.take() {
            planner.plan_decrease(&mut r.outcome, &d);
        }
    }
    // 6. Statuses: what the service refused earlier in the run, then each resource's status.
    let refused = |kind: Kind, meta: &Meta| refusals.resources.get(&ObjectRef::of(kind, meta));
    for (d, r) in desired.subscriptions.iter().zip(subs.iter_mut()) {
        if let Some(b) = refused(Kind::Subscription, &d.meta) {
            r.outcome.refused(b);
        }
    }
    for (d, r) in desired.add_ons.iter().zip(add_ons.iter_mut()) {
        if let Some(b) = refused(Kind::AddOn, &d.meta) {
            r.purchase.outcome.refused(b);
        }
    }
    let subscriptions = desired
        .subscriptions
        .iter()
        .zip(&subs)
        .map(|(d, r)| planner.subscription_status(&d.status, &d.meta, d.spec.seats, r))
        .collect();
    let add_ons = desired
        .add_ons
        .iter()
        .zip(&add_ons)
        .map(|(d, r)| planner.add_on_status(&d.status, &d.meta, r))
        .collect();
    let Planner {
        inp,
        decided,
        demand,
        ..
    } = planner;
    (
        decided.into_plan(inp.refusals, subscriptions, assignments, add_ons),
        demand,
    )
}

/// Seats of one product in one organization, as this pass will leave them.
#[derive(Clone, Copy, Debug, Default)]
struct Pool {
    seats: u32,
    consumed: u32,
}

impl Pool {
    fn available(&self) -> u32 {
        self.seats.saturating_sub(self.consumed)
    }
}

/// organization → product → seats and consumption.
type Pools = HashMap<String, HashMap<String, Pool>>;

/// The value of (organization, product) in a map by both, made on first use; looked up by
/// borrowed names, which are copied only the first time (these maps change once per user).
fn entry_of<'m, V: Default>(
    map: &'m mut HashMap<String, HashMap<String, V>>,
    organization: &str,
    product: &str,
) -> &'m mut V {
    if !map.contains_key(organization) {
        map.insert(organization.to_string(), HashMap::new());
    }
    let of_org = map.get_mut(organization).expect("inserted");
    if !of_org.contains_key(product) {
        of_org.insert(product.to_string(), V::default());
    }
    of_org.get_mut(product).expect("inserted")
}

/// What a resource manages in the licensing service; each has one owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Managed {
    /// A subscription: adopted or bought by a Subscription or a standalone AddOn.
    Subscription(String),
    /// A traditional add-on, adopted or bought by a Traditional AddOn.
    AddOn(String),
}

/// (lowercase organization, what is managed) → the oldest resource naming it.
type Owners = HashMap<(String, Managed), ObjectRef>;

/// What a pass plans from; nothing changes it during the pass.
struct Inputs<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    now: Instant,
    options: &'a Options,
    /// What the service refused earlier in this run.
    refusals: &'a Refusals,
    /// (organization, product) → seats and consumption as observed, for status.
    observed_pools: Pools,
    /// What a first plan of this pass found its licence changes remove and want: what
    /// autoscaling plans with (none in the first plan).
    first_demand: Option<autoscale::Demand>,
}

/// Seats and licences as the pass leaves them: each step plans against them and updates them
/// with what its actions change.
struct Seats {
    /// (organization, product) → seats and consumption.
    pools: Pools,
    /// The licences a user holds once this plan's earlier licence changes are made, so that
    /// later changes are checked against them, by observed user (see `user_key`).
    licences: HashMap<usize, Vec<Licence>>,
}

/// What the pass decides, added to by each step.
#[derive(Default)]
struct Decided {
    actions: Vec<Action>,
    /// Resources being deleted whose deletion policy is fully carried out.
    deleted: Vec<ObjectRef>,
    /// The earliest time something blocked may clear by itself.
    requeue_at: Option<Instant>,
    /// Licences held now, by the LicenseAssignment whose claim they are (showback).
    held: Vec<Held>,
}

/// The state a pass's steps share (see `plan_once` for the steps themselves).
struct Planner<'a> {
    inp: Inputs<'a>,
    /// Step 1's result: one owner per subscription and per add-on.
    owners: Owners,
    seats: Seats,
    /// (organization, product) → why autoscaling (steps 2 and 3) stopped short of demand,
    /// for the LicenseAssignments left waiting (step 4).
    autoscale_caps: HashMap<(String, String), String>,
    /// What this pass's licence changes remove and want, recorded as step 4 plans them.
    demand: autoscale::Demand,
    decided: Decided,
}

impl<'a> Inputs<'a> {
    fn new(
        desired: &'a Desired,
        observed: &'a Observed,
        now: Instant,
        options: &'a Options,
        refusals: &'a Refusals,
        first_demand: Option<autoscale::Demand>,
    ) -> Self {
        let mut pools: Pools = HashMap::new();
        for (domain, org) in &observed.organizations {
            let of_org = pools.entry(domain.clone()).or_default();
            for p in observed.catalog.products() {
                let seats = org.pool(&p.sku, now);
                let consumed = org.consumed(&p.sku);
                of_org.insert(p.sku.clone(), Pool { seats, consumed });
            }
            for u in &org.users {
                for l in &u.licenses {
                    if !of_org.contains_key(&l.product) {
                        of_org.insert(l.product.clone(), Pool::default());
                        of_org.get_mut(&l.product).expect("inserted").consumed =
                            org.consumed(&l.product);
                    }
                }
            }
        }
        Inputs {
            desired,
            observed,
            now,
            options,
            refusals,
            observed_pools: pools,
            first_demand,
        }
    }

    /// One owner per subscription and add-on: of the resources naming it (to adopt, or as
    /// bought before), the oldest by creation time, then namespace/name. Resources their
    /// namespace may not act for do not take part.
    fn owners(&self) -> Owners {
        let d = self.desired;
        let mut claims: Vec<(&Meta, Kind, &str, Managed)> = vec![];
        for s in &d.subscriptions {
            if let Some(id) = s
                .spec
                .subscription_id
                .as_ref()
                .or(s.status.subscription_id.as_ref())
            {
                let m = Managed::Subscription(id.clone());
                claims.push((&s.meta, Kind::Subscription, &s.spec.organization, m));
            }
        }
        for a in &d.add_ons {
            if let Some(id) = a.spec.add_on_id.as_ref().or(a.status.add_on_id.as_ref()) {
                let m = match a.spec.add_on_type {
                    AddOnType::Standalone => Managed::Subscription(id.clone()),
                    AddOnType::Traditional => Managed::AddOn(id.clone()),
                };
                claims.push((&a.meta, Kind::AddOn, &a.spec.organization, m));
            }
        }
        claims.retain(|(meta, _, org, _)| self.gate(meta, org).is_ok());
        claims.sort_by(|a, b| {
            (a.0.created_at, &a.0.namespace, &a.0.name, a.1).cmp(&(
                b.0.created_at,
                &b.0.namespace,
                &b.0.name,
                b.1,
            ))
        });
        let mut owners = Owners::new();
        for (meta, kind, org, managed) in claims {
            owners
                .entry((org.to_lowercase(), managed))
                .or_insert_with(|| ObjectRef::of(kind, meta));
        }
        owners
    }

    /// Tenant isolation and existence: the organization this resource may act on.
    fn gate(&self, meta: &Meta, organization: &str) -> Result<&'a Organization, Block> {
        match self
            .desired
            .namespaces
            .get(&meta.namespace)
            .cloned()
            .flatten()
        {
            Some(bound) if bound != organization => {
                return Err(Block::new(
                    BlockReason::OrganizationNotPermitted,
                    format!(
                        "namespace {} is bound to organization {bound}; this resource names {organization}: move it to a namespace bound to {organization}",
                        meta.namespace
                    ),
                ));
            }
            None if self.options.require_namespace_binding => {
                return Err(Block::new(
                    BlockReason::OrganizationNotPermitted,
                    format!(
                        "namespace {} is not bound to an organization: label it {}={organization}",
                        meta.namespace, ORGANIZATION_LABEL
                    ),
                ));
            }
            _ => {}
        }
        self.observed.organizations.get(organization).ok_or_else(|| {
            Block::new(
                BlockReason::OrganizationNotFound,
                format!("organization {organization} is not known to the licensing backend: check spec.organization"),
            )
        })
    }

    fn observed_pool(&self, org: &str, product: &str) -> Pool {
        self.observed_pools
            .get(org)
            .and_then(|o| o.get(product))
            .copied()
            .unwrap_or_default()
    }
}

impl Decided {
    fn note_retry(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.requeue_at = Some(self.requeue_at.map_or(at, |r| r.min(at)));
        }
    }

    /// The plan: actions the service refused earlier in the run are left out, the rest in
    /// their phases' order (the order of planning within a phase).
    fn into_plan(
        mut self,
        refusals: &Refusals,
        subscriptions: Vec<SubscriptionStatus>,
        assignments: Vec<LicenseAssignmentStatus>,
        add_ons: Vec<AddOnStatus>,
    ) -> Plan {
        let refused = &refusals.resources;
        self.actions
            .retain(|a| !refused.contains_key(&a.resource()));
        self.actions.sort_by_key(|a| a.phase);
        Plan {
            actions: self.actions,
            subscriptions,
            assignments,
            add_ons,
            deleted: self.deleted,
            requeue_at: self.requeue_at,
            held: self.held,
        }
    }
}

impl<'a> Planner<'a> {
    fn new(inp: Inputs<'a>, owners: Owners) -> Self {
        Planner {
            seats: Seats {
                pools: inp.observed_pools.clone(),
                licences: HashMap::new(),
            },
            inp,
            owners,
            autoscale_caps: HashMap::new(),
            demand: autoscale::Demand::default(),
            decided: Decided::default(),
        }
    }

    /// Another, older resource manages this subscription or add-on: this one changes nothing.
    fn check_owner(
        &self,
        kind: Kind,
        meta: &Meta,
        organization: &str,
        managed: Managed,
    ) -> Result<(), Block> {
        let id = match &managed {
            Managed::Subscription(id) => format!("subscription {id}"),
            Managed::AddOn(id) => format!("add-on {id}"),
        };
        match self.owners.get(&(organization.to_lowercase(), managed)) {
            Some(owner) if *owner != ObjectRef::of(kind, meta) => {
                Err(Refusal::DuplicateSubscription {
                    id,
                    owner: owner.to_string(),
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    fn pool(&self, org: &str, product: &str) -> Pool {
        self.seats
            .pools
            .get(org)
            .and_then(|o| o.get(product))
            .copied()
            .unwrap_or_default()
    }

    fn pool_mut(&mut self, org: &str, product: &str) -> &mut Pool {
        entry_of(&mut self.seats.pools, org, product)
    }

    /// Plans an action; `late` ones free seats and run last in the pass.
    fn push(&mut self, meta: &Meta, kind: Kind, organization: &str, op: Op, late: bool) {
        let phase = match (&op, late) {
            (_, true) => Phase::Reduce,
            (Op::AssignLicenses { .. }, _) => Phase::Licences,
            (Op::AssignGroupLicences { .. }, _) => Phase::Groups,
            _ => Phase::Buy,
        };
        let spends = match &op {
            Op::Buy { .. } | Op::BuyAddOn { .. } | Op::ConvertTrial { .. } => true,
            Op::SetSeats { cost, .. } | Op::SetAddOnQuantity { cost, .. } => cost.to > cost.from,
            _ => false,
        };
        let decided_by_service = self
            .inp
            .observed
            .organizations
            .get(organization)
            .and_then(|org| rules::decided_by_service(org, spends));
        self.decided.actions.push(Action {
            kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            organization: organization.to_string(),
            op,
            phase,
            decided_by_service,
        });
    }
}

impl From<Refusal> for Block {
    fn from(r: Refusal) -> Block {
        Block {
            reason: r.reason(),
            message: r.message(),
            retry_at: r.retry_at(),
        }
    }
}

/// The idempotency key of a resource's purchase: stable across retries and restarts, new for
/// a new incarnation of the resource.
pub fn purchase_key(kind: Kind, meta: &Meta, organization: &str) -> String {
    format!(
        "seatkeeper:{organization}:{}:{}/{}:{}",
        kind.as_str(),
        meta.namespace,
        meta.name,
        meta.uid
    )
}
