//! Applies plans through a backend until nothing is left to do.
//!
//! Each pass observes, plans, records what must survive a crash (purchase keys) through the
//! [`Ledger`], then calls the backend: purchases one by one, licence changes in batches of at
//! most 20 users. A refusal stops that resource and becomes its Blocked reason.

use crate::backend::{Backend, BackendError, MAX_BATCH, PurchaseRequest, SeatChange};
use crate::clock::Clock;
use crate::domain::billing::CostPreview;
use crate::domain::{DATA_RETENTION_DAYS, Instant, Refusal};
use crate::planner::conditions::Outcome;
use crate::planner::resources::{
    AddOnStatus, Conditions, LicenseAssignmentStatus, Removal, SubscriptionStatus, UserState,
};
use crate::planner::{
    self, Action, Block, Declared, Desired, Kind, ObjectRef, Observed, Op, Options, Plan,
    UserChange, record_owned,
};
use futures::StreamExt;
use jiff::ToSpan;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// Where resource statuses are kept between passes and runs: the tenant file for the CLI,
/// the status subresource in a cluster.
pub trait Ledger: Send {
    fn save(
        &mut self,
        desired: &Desired,
        point: SavePoint,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Why the executor saves. A ledger must keep every purchase in flight at `BeforeChanges`
/// (so a crash can never buy twice) and everything at `Final`; what it keeps in between is
/// its choice (the cluster writes each status once per convergence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavePoint {
    /// Before a pass calls the backend: purchase keys must be on record.
    BeforeChanges,
    /// After a pass's changes, with more passes to come.
    AfterPass,
    /// The run is over (converged, out of passes, or failed).
    Final,
}

/// A ledger that keeps nothing (`plan`, tests).
pub struct NoLedger;

impl Ledger for NoLedger {
    async fn save(&mut self, _: &Desired, _: SavePoint) -> Result<(), BackendError> {
        Ok(())
    }
}

/// An action and how it went.
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    pub action: Action,
    /// None: done. Some: refused, with the reason.
    pub refused: Option<Block>,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub executed: Vec<Executed>,
    /// The last plan: statuses as reached, and no actions when converged.
    pub plan: Plan,
    pub passes: usize,
    pub converged: bool,
    pub backend_reads: u64,
    pub backend_writes: u64,
}

pub const DEFAULT_MAX_PASSES: usize = 8;

pub async fn observe<B: Backend>(
    backend: &B,
    organizations: &[String],
) -> Result<Observed, BackendError> {
    let mut orgs = BTreeMap::new();
    let mut catalog = None;
    for o in organizations {
        let snap = backend.snapshot(o).await?;
        catalog.get_or_insert(snap.catalog);
        if let Some(org) = snap.organization {
            orgs.insert(o.clone(), org);
        }
    }
    let catalog = match catalog {
        Some(c) => c,
        None => backend.snapshot("").await?.catalog,
    };
    Ok(Observed {
        catalog,
        organizations: orgs,
    })
}

/// Observe, plan and apply until the plan is empty or `max_passes` is reached.
pub async fn converge<B: Backend, L: Ledger>(
    backend: &B,
    ledger: &mut L,
    desired: &mut Desired,
    clock: &dyn Clock,
    options: &Options,
    max_passes: usize,
) -> Result<Report, BackendError> {
    let organizations = desired.organizations();
    let mut refused: BTreeMap<ObjectRef, Block> = BTreeMap::new();
    let mut refused_users: BTreeMap<(ObjectRef, String), Block> = BTreeMap::new();
    let mut executed = vec![];
    let (mut reads, mut writes) = (0u64, 0u64);
    for pass in 1..=max_passes.max(1) {
        let now = clock.now();
        let observed = observe(backend, &organizations).await?;
        reads += organizations.len() as u64;
        let mut plan = planner::plan(desired, &observed, now, options);
        overlay_refusals(desired, &mut plan, &refused, &refused_users, now);
        store_statuses(desired, &plan);
        if plan.actions.is_empty() || pass == max_passes.max(1) {
            ledger.save(desired, SavePoint::Final).await?;
            let converged = plan.actions.is_empty();
            return Ok(Report {
                executed,
                plan,
                passes: pass,
                converged,
                backend_reads: reads,
                backend_writes: writes,
            });
        }
        // Purchase keys and statuses are on record before any purchase is attempted.
        ledger.save(desired, SavePoint::BeforeChanges).await?;
        let actions = std::mem::take(&mut plan.actions);
        let mut changes: BTreeMap<String, Vec<(usize, UserChange)>> = BTreeMap::new();
        let mut unfinished: BTreeSet<(String, String)> = BTreeSet::new();
        for (i, action) in actions.iter().enumerate() {
            if let Op::AssignLicenses { users } = &action.op
                && !refused.contains_key(&action.resource())
            {
                for c in users {
                    changes
                        .entry(action.organization.clone())
                        .or_default()
                        .push((i, c.clone()));
                }
            }
        }
        // Purchases and increases first: bought seats are available at once (R02).
        let mut ops = Ops {
            refused: &mut refused,
            executed: &mut executed,
            writes: &mut writes,
            unfinished: &mut unfinished,
        };
        if let Err(e) = ops.apply(backend, clock, desired, &actions, false).await {
            ledger.save(desired, SavePoint::Final).await?;
            return Err(e);
        }
        // Licence changes next: they may use seats just bought, and may free seats.
        let mut batches: Vec<(String, Vec<(usize, UserChange)>)> = vec![];
        for (org, list) in changes {
            // Users waiting for seats of an unfinished (202) change are planned again next pass.
            let waiting = |c: &UserChange| {
                c.add
                    .iter()
                    .any(|l| unfinished.contains(&(org.clone(), l.product.clone())))
            };
            let list: Vec<(usize, UserChange)> = list
                .into_iter()
                .filter(|(i, c)| !refused.contains_key(&actions[*i].resource()) && !waiting(c))
                .collect();
            for chunk in list.chunks(MAX_BATCH) {
                batches.push((org.clone(), chunk.to_vec()));
            }
        }
        writes += batches.len() as u64;
        let mut calls = Vec::with_capacity(batches.len());
        for (org, chunk) in &batches {
            let batch: Vec<UserChange> = chunk.iter().map(|(_, c)| c.clone()).collect();
            calls.push(assign_batch(backend, clock, org.as_str(), batch));
        }
        let results: Vec<_> = futures::stream::iter(calls)
            .buffered(options.concurrency.max(1))
            .collect()
            .await;
        let assignment_index: BTreeMap<ObjectRef, usize> = desired
            .assignments
            .iter()
            .enumerate()
            .map(|(i, d)| (ObjectRef::of(Kind::LicenseAssignment, &d.meta), i))
            .collect();
        let mut done: BTreeMap<usize, Vec<UserChange>> = BTreeMap::new();
        let mut failure = None;
        for ((org, chunk), results) in batches.iter().zip(results) {
            // A failed call changed nothing we know of; the others are recorded before failing.
            let results = match results {
                Ok(r) => r,
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            };
            let before = observed.organizations.get(org);
            for ((i, change), result) in chunk.iter().zip(results) {
                let resource = actions[*i].resource();
                match result {
                    Ok(()) => {
                        let held: BTreeSet<&str> = before
                            .and_then(|o| o.user(&change.user))
                            .map(|u| u.licenses.iter().map(|l| l.product.as_str()).collect())
                            .unwrap_or_default();
                        let added: Vec<String> = change
                            .add
                            .iter()
                            .map(|l| l.product.clone())
                            .filter(|p| !held.contains(p.as_str()))
                            .collect();
                        if let Some(&a) = assignment_index.get(&resource) {
                            let status = &mut desired.assignments[a].status;
                            record_owned(&mut status.owned, change, &added);
                            record_removals(status, change, now);
                        }
                        record_auto_assigned(desired, &resource, &change.user, Ok(()));
                        done.entry(*i).or_default().push(change.clone());
                    }
                    Err(r) if resource.kind == Kind::AddOn => {
                        // R25 is best effort: a refused user is passed over, not a block.
                        record_auto_assigned(desired, &resource, &change.user, Err(&r));
                        let action = Action {
                            op: Op::AssignLicenses {
                                users: vec![change.clone()],
                            },
                            ..actions[*i].clone()
                        };
                        executed.push(Executed {
                            action,
                            refused: Some(Block::from(r)),
                        });
                    }
                    Err(r) => {
                        let block = Block::from(r);
                        refused_users
                            .insert((resource.clone(), change.user.clone()), block.clone());
                        refused.insert(resource, block.clone());
                        let action = Action {
                            op: Op::AssignLicenses {
                                users: vec![change.clone()],
                            },
                            ..actions[*i].clone()
                        };
                        executed.push(Executed {
                            action,
                            refused: Some(block),
                        });
                    }
                }
            }
        }
        if let Some(e) = failure {
            ledger.save(desired, SavePoint::Final).await?;
            return Err(e);
        }
        for (i, users) in done {
            executed.push(Executed {
                action: Action {
                    op: Op::AssignLicenses { users },
                    ..actions[i].clone()
                },
                refused: None,
            });
        }
        // Reductions and cancellations last, once this pass's removals have freed seats (R07).
        let mut ops = Ops {
            refused: &mut refused,
            executed: &mut executed,
            writes: &mut writes,
            unfinished: &mut unfinished,
        };
        if let Err(e) = ops.apply(backend, clock, desired, &actions, true).await {
            ledger.save(desired, SavePoint::Final).await?;
            return Err(e);
        }
        ledger.save(desired, SavePoint::AfterPass).await?;
    }
    unreachable!("the loop returns on its last pass")
}

/// One user's result of an add-on's one-time auto-assignment (R25): once any result is in,
/// the assignment has run and is not planned again.
fn record_auto_assigned(
    desired: &mut Desired,
    r: &ObjectRef,
    user: &str,
    result: Result<(), &Refusal>,
) {
    let Some(d) = (r.kind == Kind::AddOn)
        .then(|| find(&mut desired.add_ons, r))
        .flatten()
    else {
        return;
    };
    let status = &mut d.status;
    status.auto_assign_due = false;
    let assigned = status.auto_assigned.get_or_insert(0);
    match result {
        Ok(()) => *assigned += 1,
        Err(refusal) => planner::note_skipped(
            &mut status.auto_assign_skipped,
            planner::skipped(user, refusal),
        ),
    }
}

fn record_removals(status: &mut LicenseAssignmentStatus, change: &UserChange, now: Instant) {
    for p in &change.remove {
        status.removals.push(Removal {
            user: change.user.clone(),
            product: p.clone(),
            removed_at: now,
            data_retained_until: now + (DATA_RETENTION_DAYS * 24).hours(),
        });
    }
}

/// The purchase-side actions of one pass and the run's bookkeeping they update.
struct Ops<'a> {
    refused: &'a mut BTreeMap<ObjectRef, Block>,
    executed: &'a mut Vec<Executed>,
    writes: &'a mut u64,
    unfinished: &'a mut BTreeSet<(String, String)>,
}

impl Ops<'_> {
    /// Applies the actions that free seats (`late`) or the others, in plan order; a refusal
    /// stops that resource for the rest of the run.
    async fn apply<B: Backend>(
        &mut self,
        backend: &B,
        clock: &dyn Clock,
        desired: &mut Desired,
        actions: &[Action],
        late: bool,
    ) -> Result<(), BackendError> {
        for action in actions {
            let resource = action.resource();
            if matches!(action.op, Op::AssignLicenses { .. })
                || action.op.frees_seats() != late
                || self.refused.contains_key(&resource)
            {
                continue;
            }
            *self.writes += 1;
            match apply_one(backend, clock, action).await {
                Ok(effect) => {
                    if let Effect::SeatChange(_, SeatChange::Accepted) = &effect
                        && let Some(product) = product_of(desired, &resource)
                    {
                        // Accepted, not finished: its seats are not there yet (R02 waits).
                        self.unfinished
                            .insert((action.organization.clone(), product));
                    }
                    record(desired, &resource, effect);
                    self.executed.push(Executed {
                        action: action.clone(),
                        refused: None,
                    });
                }
                Err(BackendError::Refused(r)) => {
                    let block = Block::from(r);
                    self.refused.insert(resource, block.clone());
                    self.executed.push(Executed {
                        action: action.clone(),
                        refused: Some(block),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What a purchase-side action changed, to be written into its resource's status.
enum Effect {
    Nothing,
    Bought { id: String, base: Option<String> },
    SeatChange(CostPreview, SeatChange),
}

/// A backend may ask to slow down (Graph 429): wait its Retry-After, a few times, then give up.
pub const MAX_THROTTLED_RETRIES: u32 = 5;

async fn retrying<T, F, Fut>(clock: &dyn Clock, mut call: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(BackendError::Throttled {
                retry_after_seconds,
            }) if tries < MAX_THROTTLED_RETRIES => {
                tries += 1;
                tracing::debug!(retry_after_seconds, "backend throttled; waiting");
                clock.sleep(retry_after_seconds.max(1)).await;
            }
            result => return result,
        }
    }
}

async fn assign_batch<B: Backend>(
    backend: &B,
    clock: &dyn Clock,
    org: &str,
    batch: Vec<UserChange>,
) -> Result<Vec<Result<(), Refusal>>, BackendError> {
    retrying(clock, || backend.assign_licences(org, &batch)).await
}

/// One purchase-side action.
async fn apply_one<B: Backend>(
    backend: &B,
    clock: &dyn Clock,
    action: &Action,
) -> Result<Effect, BackendError> {
    let org = action.organization.as_str();
    Ok(match &action.op {
        Op::Buy {
            product,
            seats,
            billing_frequency,
            recurring_billing,
            key,
        } => {
            let request = PurchaseRequest {
                product: product.clone(),
                seats: *seats,
                billing_frequency: *billing_frequency,
                recurring_billing: *recurring_billing,
                idempotency_key: key.clone(),
            };
            let sub = retrying(clock, || backend.buy_subscription(org, &request)).await?;
            Effect::Bought {
                id: sub.id,
                base: None,
            }
        }
        Op::ConvertTrial { subscription_id } => {
            retrying(clock, || backend.convert_trial(org, subscription_id)).await?;
            Effect::Nothing
        }
        Op::SetSeats {
            subscription_id,
            cost,
            product_key,
        } => {
            let key = product_key.as_deref();
            let change = retrying(clock, || {
                backend.set_seats(org, subscription_id, cost.to, key)
            })
            .await?;
            Effect::SeatChange(cost.clone(), change)
        }
        Op::SetRecurringBilling {
            subscription_id,
            enabled,
        } => {
            retrying(clock, || {
                backend.set_recurring_billing(org, subscription_id, *enabled)
            })
            .await?;
            Effect::Nothing
        }
        Op::Cancel { subscription_id } => {
            retrying(clock, || backend.cancel(org, subscription_id)).await?;
            Effect::Nothing
        }
        Op::BuyAddOn {
            base_subscription_id,
            product,
            quantity,
            key,
            ..
        } => {
            let a = retrying(clock, || {
                backend.buy_add_on(org, base_subscription_id, product, *quantity, key)
            })
            .await?;
            Effect::Bought {
                id: a.id,
                base: Some(base_subscription_id.clone()),
            }
        }
        Op::SetAddOnQuantity {
            base_subscription_id,
            add_on_id,
            cost,
        } => {
            retrying(clock, || {
                backend.set_add_on_quantity(org, base_subscription_id, add_on_id, cost.to)
            })
            .await?;
            Effect::SeatChange(cost.clone(), SeatChange::Applied)
        }
        Op::AssignLicenses { .. } => unreachable!("licence changes are batched"),
    })
}

fn find<'a, S, St>(
    list: &'a mut [Declared<S, St>],
    r: &ObjectRef,
) -> Option<&'a mut Declared<S, St>> {
    list.iter_mut()
        .find(|d| d.meta.namespace == r.namespace && d.meta.name == r.name)
}

/// The resource's product, when an action on it changes seats.
fn product_of(desired: &Desired, r: &ObjectRef) -> Option<String> {
    match r.kind {
        Kind::Subscription => desired
            .subscriptions
            .iter()
            .find(|d| d.meta.namespace == r.namespace && d.meta.name == r.name)
            .map(|d| d.spec.product.clone()),
        Kind::AddOn => desired
            .add_ons
            .iter()
            .find(|d| d.meta.namespace == r.namespace && d.meta.name == r.name)
            .map(|d| d.spec.product.clone()),
        Kind::LicenseAssignment => None,
    }
}

/// Writes an action's effect into the status of a Subscription or an AddOn.
trait PurchaseStatus {
    fn bought(&mut self, id: String, base: Option<String>);
    fn changed(&mut self, cost: CostPreview);
}

impl PurchaseStatus for SubscriptionStatus {
    fn bought(&mut self, id: String, _: Option<String>) {
        self.subscription_id = Some(id);
        self.purchase = None;
    }
    fn changed(&mut self, cost: CostPreview) {
        self.last_seat_change = Some(cost);
    }
}

impl PurchaseStatus for AddOnStatus {
    fn bought(&mut self, id: String, base: Option<String>) {
        self.add_on_id = Some(id);
        if base.is_some() {
            self.base_subscription_id = base;
        }
        self.purchase = None;
    }
    fn changed(&mut self, cost: CostPreview) {
        self.last_seat_change = Some(cost);
    }
}

fn record(desired: &mut Desired, r: &ObjectRef, effect: Effect) {
    if let (Effect::Bought { .. }, Some(d)) = (&effect, find(&mut desired.add_ons, r))
        && r.kind == Kind::AddOn
        && d.spec.auto_assign
        && d.spec.add_on_id.is_none()
    {
        // R25: assigned once, at the purchase; planned in the next pass like any licence change.
        d.status.auto_assign_due = true;
    }
    let status: &mut dyn PurchaseStatus = match r.kind {
        Kind::Subscription => match find(&mut desired.subscriptions, r) {
            Some(d) => &mut d.status,
            None => return,
        },
        Kind::AddOn => match find(&mut desired.add_ons, r) {
            Some(d) => &mut d.status,
            None => return,
        },
        Kind::LicenseAssignment => return,
    };
    match effect {
        Effect::Nothing => {}
        Effect::Bought { id, base } => status.bought(id, base),
        Effect::SeatChange(cost, _) => status.changed(cost),
    }
}

/// Marks a status Blocked with the reason met in this run.
fn mark_blocked(
    reason: &mut Option<String>,
    conditions: &mut Conditions,
    block: &Block,
    generation: Option<i64>,
    now: Instant,
) {
    *reason = Some(block.reason.to_string());
    *conditions = Outcome {
        blocked: Some(block.clone()),
        ..Default::default()
    }
    .conditions(conditions, generation, now);
}

/// Refusals met earlier in this run stay visible until the run ends.
fn overlay_refusals(
    desired: &Desired,
    plan: &mut Plan,
    refused: &BTreeMap<ObjectRef, Block>,
    refused_users: &BTreeMap<(ObjectRef, String), Block>,
    now: Instant,
) {
    if refused.is_empty() {
        return;
    }
    plan.actions
        .retain(|a| !refused.contains_key(&a.resource()));
    let blocked = |kind: Kind, meta: &planner::Meta| refused.get(&ObjectRef::of(kind, meta));
    for (d, s) in desired
        .subscriptions
        .iter()
        .zip(plan.subscriptions.iter_mut())
    {
        if let Some(b) = blocked(Kind::Subscription, &d.meta) {
            mark_blocked(
                &mut s.blocked_reason,
                &mut s.conditions,
                b,
                d.meta.generation,
                now,
            );
        }
    }
    for (d, s) in desired.add_ons.iter().zip(plan.add_ons.iter_mut()) {
        if let Some(b) = blocked(Kind::AddOn, &d.meta) {
            mark_blocked(
                &mut s.blocked_reason,
                &mut s.conditions,
                b,
                d.meta.generation,
                now,
            );
        }
    }
    for (d, s) in desired.assignments.iter().zip(plan.assignments.iter_mut()) {
        let Some(b) = blocked(Kind::LicenseAssignment, &d.meta) else {
            continue;
        };
        let r = ObjectRef::of(Kind::LicenseAssignment, &d.meta);
        for u in s.users.iter_mut() {
            if let Some(ub) = refused_users.get(&(r.clone(), u.user.clone())) {
                u.state = UserState::Blocked;
                u.reason = Some(ub.reason.to_string());
                u.message = Some(ub.message.clone());
            }
        }
        let count = |state: UserState| s.users.iter().filter(|u| u.state == state).count() as i64;
        (s.assigned, s.pending, s.blocked) = (
            count(UserState::Assigned),
            count(UserState::Pending),
            count(UserState::Blocked),
        );
        mark_blocked(
            &mut s.blocked_reason,
            &mut s.conditions,
            b,
            d.meta.generation,
            now,
        );
    }
}

/// The plan's statuses become the resources' statuses (ownership and ids are carried through).
fn store_statuses(desired: &mut Desired, plan: &Plan) {
    for (d, s) in desired.subscriptions.iter_mut().zip(&plan.subscriptions) {
        d.status = s.clone();
    }
    for (d, s) in desired.assignments.iter_mut().zip(&plan.assignments) {
        d.status = s.clone();
    }
    for (d, s) in desired.add_ons.iter_mut().zip(&plan.add_ons) {
        d.status = s.clone();
    }
}

impl From<&Refusal> for Block {
    fn from(r: &Refusal) -> Block {
        Block::from(r.clone())
    }
}
