//! Applies plans through a backend until nothing is left to do.
//!
//! Each pass observes, plans, records what must survive a crash (purchase keys) through the
//! [`Ledger`], then calls the backend: purchases one by one, licence changes in batches of at
//! most 20 users. A refusal stops that resource and becomes its Blocked reason.

use crate::backend::{Backend, BackendError, MAX_BATCH, PurchaseRequest, SeatChange};
use crate::clock::Clock;
use crate::domain::billing::CostPreview;
use crate::domain::{DATA_RETENTION_DAYS, Instant, Refusal};
use crate::planner::resources::{
    AddOnStatus, LicenseAssignmentStatus, Removal, SubscriptionStatus,
};
use crate::planner::{
    self, Action, Block, Declared, Desired, Kind, ObjectRef, Observed, Op, Options, Phase, Plan,
    Refusals, UserChange, record_owned,
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

    /// Changes the service has just confirmed or refused, as soon as each is known (not when
    /// the run ends): the cluster publishes their Events here, so a pass that fails or dies
    /// later loses none of them.
    fn confirmed(&mut self, _done: &[Executed]) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
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
    /// The licensing service as the last pass read it.
    pub observed: Observed,
    /// The last plan: statuses as reached, and no actions when converged.
    pub plan: Plan,
    pub passes: usize,
    pub converged: bool,
    pub backend_reads: u64,
    pub backend_writes: u64,
    /// Stopped early by an [`Interrupt`](crate::clock::Interrupt): what was done is on record,
    /// the rest was not started.
    pub interrupted: bool,
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
    let mut run = Run::default();
    let passes = max_passes.max(1);
    for number in 1..=passes {
        let now = clock.now();
        let observed = observe(backend, &organizations).await?;
        run.reads += organizations.len() as u64;
        let mut plan = planner::plan_with(desired, &observed, now, options, &run.refusals);
        store_statuses(desired, &mut plan);
        if plan.actions.is_empty() || number == passes {
            ledger.save(desired, SavePoint::Final).await?;
            backend.checkpoint().await?;
            return Ok(run.report(plan, number, observed));
        }
        // Purchase keys, statuses and the licences about to be assigned are on record before
        // any change is attempted: an interrupt or a crash never leaves a change made by
        // seatkeeper that its records do not name.
        claim_intended(desired, &plan.actions, &observed);
        ledger.save(desired, SavePoint::BeforeChanges).await?;
        let actions = std::mem::take(&mut plan.actions);
        let pass = Pass {
            backend,
            clock,
            options,
            observed: &observed,
            actions: &actions,
            now,
        };
        if let Err(e) = run.apply(&pass, desired, ledger).await {
            // What was done is on record before the error is reported.
            ledger.save(desired, SavePoint::Final).await?;
            backend.checkpoint().await?;
            return Err(e);
        }
        if options.interrupt.was_requested() {
            // Stopped early: everything done is on record, nothing else is started.
            ledger.save(desired, SavePoint::Final).await?;
            backend.checkpoint().await?;
            let mut report = run.report(plan, number, observed);
            report.interrupted = true;
            return Ok(report);
        }
        ledger.save(desired, SavePoint::AfterPass).await?;
    }
    unreachable!("the loop returns on its last pass")
}

/// What a run has done so far.
#[derive(Default)]
struct Run {
    refusals: Refusals,
    executed: Vec<Executed>,
    /// How many of `executed` the ledger has been told of.
    confirmed: usize,
    reads: u64,
    writes: u64,
}

/// One pass's plan and what it runs against.
struct Pass<'p, B> {
    backend: &'p B,
    clock: &'p dyn Clock,
    options: &'p Options,
    observed: &'p Observed,
    actions: &'p [Action],
    now: Instant,
}

/// The licence changes of one call, each with the index of its action.
struct Batch<'a> {
    organization: &'a str,
    actions: Vec<usize>,
    changes: Vec<UserChange>,
}

impl Run {
    fn report(self, plan: Plan, passes: usize, observed: Observed) -> Report {
        Report {
            executed: self.executed,
            observed,
            converged: plan.actions.is_empty(),
            plan,
            passes,
            backend_reads: self.reads,
            backend_writes: self.writes,
            interrupted: false,
        }
    }

    /// One pass, in its phases: purchases and increases (bought seats are there at once,
    /// R02), licence changes (which may use them and free others), then reductions and
    /// cancellations (R07).
    async fn apply<B: Backend, L: Ledger>(
        &mut self,
        pass: &Pass<'_, B>,
        desired: &mut Desired,
        ledger: &mut L,
    ) -> Result<(), BackendError> {
        let mut unfinished = BTreeSet::new();
        self.purchase_side(pass, desired, Phase::Buy, &mut unfinished, ledger)
            .await?;
        if pass.options.interrupt.was_requested() {
            return Ok(());
        }
        let licences = self.licences(pass, desired, &unfinished).await;
        // What the batches did is told even when one of them failed.
        self.confirm(ledger).await;
        licences?;
        if pass.options.interrupt.was_requested() {
            return Ok(());
        }
        self.purchase_side(pass, desired, Phase::Reduce, &mut unfinished, ledger)
            .await
    }

    /// Tells the ledger of the changes it has not heard of yet.
    async fn confirm<L: Ledger>(&mut self, ledger: &mut L) {
        if self.confirmed < self.executed.len() {
            ledger.confirmed(&self.executed[self.confirmed..]).await;
            self.confirmed = self.executed.len();
        }
    }

    /// The actions of one purchase-side phase, in plan order; a refusal stops that resource
    /// for the rest of the run.
    async fn purchase_side<B: Backend>(
        &mut self,
        pass: &Pass<'_, B>,
        desired: &mut Desired,
        phase: Phase,
        unfinished: &mut BTreeSet<(String, String)>,
        ledger: &mut impl Ledger,
    ) -> Result<(), BackendError> {
        for action in pass.actions.iter().filter(|a| a.phase == phase) {
            let resource = action.resource();
            if self.refusals.resources.contains_key(&resource) {
                continue;
            }
            if pass.options.interrupt.requested() {
                return Ok(());
            }
            self.writes += 1;
            let refused = match apply_one(pass.backend, pass.clock, action).await {
                Ok(effect) => {
                    if let Effect::SeatChange(_, SeatChange::Accepted) = &effect
                        && let Some(product) = product_of(desired, &resource)
                    {
                        // Accepted, not finished: its seats are not there yet (R02 waits).
                        unfinished.insert((action.organization.clone(), product));
                    }
                    record(desired, &resource, effect);
                    None
                }
                Err(BackendError::Refused(r)) => {
                    let block = Block::from(r);
                    self.refusals.resources.insert(resource, block.clone());
                    Some(block)
                }
                Err(e) => return Err(e),
            };
            self.executed.push(Executed {
                action: action.clone(),
                refused,
            });
            self.confirm(ledger).await;
        }
        Ok(())
    }

    /// Licence changes in batches of at most 20 users, several batches at once; each user's
    /// result is recorded before a failed call is reported.
    async fn licences<B: Backend>(
        &mut self,
        pass: &Pass<'_, B>,
        desired: &mut Desired,
        unfinished: &BTreeSet<(String, String)>,
    ) -> Result<(), BackendError> {
        let batches = self.batches(pass.actions, unfinished);
        self.writes += batches.len() as u64;
        // Built in a loop, not a closure: the futures stay plainly `Send`.
        let mut calls = Vec::with_capacity(batches.len());
        for b in &batches {
            calls.push(assign_batch(
                pass.backend,
                pass.clock,
                &pass.options.interrupt,
                b.organization,
                &b.changes,
            ));
        }
        let results: Vec<_> = futures::stream::iter(calls)
            .buffered(pass.options.concurrency.max(1))
            .collect()
            .await;
        let mut done: BTreeMap<usize, Vec<UserChange>> = BTreeMap::new();
        let mut failure = None;
        for (b, results) in batches.into_iter().zip(results) {
            // A failed call changed nothing we know of; the others are recorded first.
            match results {
                // Not sent (interrupted): the licences claimed for it are not seatkeeper's.
                Ok(None) => {
                    for (i, change) in b.actions.into_iter().zip(&b.changes) {
                        unclaim(desired, &pass.actions[i], change, pass.observed);
                    }
                }
                Ok(Some(results)) => {
                    for ((i, change), result) in b.actions.into_iter().zip(b.changes).zip(results) {
                        match result {
                            Ok(()) => done.entry(i).or_default().push(change),
                            Err(r) => self.refused_user(
                                desired,
                                pass.observed,
                                &pass.actions[i],
                                change,
                                r,
                            ),
                        }
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        // Recorded per action, not per user: one lookup of its resource and one sort of what
        // it owns, however many users it changed.
        for (i, changes) in &done {
            let action = &pass.actions[*i];
            let before = pass.observed.organizations.get(&action.organization);
            record_licensed(desired, action, changes, before, pass.now);
        }
        for (i, users) in done {
            self.executed.push(Executed {
                action: pass.actions[i].with_op(Op::AssignLicenses { users }),
                refused: None,
            });
        }
        // What the other batches did is reported with the failure, not lost with it.
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The pass's licence changes by organization, in batches of at most [`MAX_BATCH`]; users
    /// waiting for seats of an unfinished (202) change are planned again next pass.
    fn batches<'a>(
        &self,
        actions: &'a [Action],
        unfinished: &BTreeSet<(String, String)>,
    ) -> Vec<Batch<'a>> {
        let mut by_organization: BTreeMap<&str, Vec<Batch<'a>>> = BTreeMap::new();
        for (i, action) in actions.iter().enumerate() {
            let Op::AssignLicenses { users } = &action.op else {
                continue;
            };
            if self.refusals.resources.contains_key(&action.resource()) {
                continue;
            }
            let org = action.organization.as_str();
            let waiting = |c: &UserChange| {
                c.add.iter().any(|l| {
                    unfinished
                        .iter()
                        .any(|(o, product)| o == org && *product == l.product)
                })
            };
            let batches = by_organization.entry(org).or_default();
            for c in users.iter().filter(|c| !waiting(c)) {
                match batches.last_mut() {
                    Some(b) if b.changes.len() < MAX_BATCH => {
                        b.actions.push(i);
                        b.changes.push(c.clone());
                    }
                    _ => batches.push(Batch {
                        organization: org,
                        actions: vec![i],
                        changes: vec![c.clone()],
                    }),
                }
            }
        }
        by_organization.into_values().flatten().collect()
    }

    /// The service refused one user's change: an add-on's auto-assignment passes the user
    /// over (R25 is best effort); a LicenseAssignment is Blocked for the rest of the run.
    fn refused_user(
        &mut self,
        desired: &mut Desired,
        observed: &Observed,
        action: &Action,
        change: UserChange,
        refusal: Refusal,
    ) {
        let resource = action.resource();
        let block = Block::from(&refusal);
        unclaim(desired, action, &change, observed);
        if resource.kind == Kind::AddOn {
            record_auto_assigned(desired, &resource, &change.user, Err(&refusal));
        } else {
            self.refusals
                .users
                .insert((resource.clone(), change.user.clone()), block.clone());
            self.refusals.resources.insert(resource, block.clone());
        }
        self.executed.push(Executed {
            action: action.with_op(Op::AssignLicenses {
                users: vec![change],
            }),
            refused: Some(block),
        });
    }
}

/// Users' changes of one action went through: the LicenseAssignment owns the licences they
/// newly assigned and records their removals (R19); an add-on counts its auto-assignments.
fn record_licensed(
    desired: &mut Desired,
    action: &Action,
    changes: &[UserChange],
    before: Option<&crate::domain::Organization>,
    now: Instant,
) {
    let resource = action.resource();
    if resource.kind == Kind::AddOn {
        for change in changes {
            record_auto_assigned(desired, &resource, &change.user, Ok(()));
        }
        return;
    }
    let Some(d) = find(&mut desired.assignments, &resource) else {
        return;
    };
    let added: Vec<Vec<String>> = changes.iter().map(|c| newly_added(c, before)).collect();
    record_owned(&mut d.status.owned, changes.iter().zip(&added));
    for change in changes {
        record_removals(&mut d.status, change, now);
    }
}

/// The products a change gives its user that the user did not hold when the pass read the
/// tenant: the licences a LicenseAssignment owns once the change is made.
fn newly_added(change: &UserChange, before: Option<&crate::domain::Organization>) -> Vec<String> {
    let user = before.and_then(|o| o.user(&change.user));
    change
        .add
        .iter()
        .filter(|l| user.is_none_or(|u| u.licence(&l.product).is_none()))
        .map(|l| l.product.clone())
        .collect()
}

/// Before a pass changes anything, each LicenseAssignment's records already own the licences
/// it is about to assign (as a purchase's key is recorded before the purchase): a run stopped
/// or killed half-way leaves no licence seatkeeper assigned that its records do not name, so
/// a later `delete` or a dropped user still finds it. A claim whose change is refused or never
/// sent is withdrawn ([`unclaim`]); one whose outcome is unknown (a lost reply) stays, and
/// only ever names a licence the resource asked for.
fn claim_intended(desired: &mut Desired, actions: &[Action], observed: &Observed) {
    for action in actions {
        let (Op::AssignLicenses { users }, Kind::LicenseAssignment) = (&action.op, action.kind)
        else {
            continue;
        };
        let Some(d) = find(&mut desired.assignments, &action.resource()) else {
            continue;
        };
        let before = observed.organizations.get(&action.organization);
        let owned = &mut d.status.owned;
        let len = owned.len();
        for change in users {
            owned.extend(newly_added(change, before).into_iter().map(|product| {
                crate::planner::resources::OwnedLicence {
                    user: change.user.clone(),
                    product,
                }
            }));
        }
        if owned.len() != len {
            owned.sort();
            owned.dedup();
        }
    }
}

/// A claimed change was refused or not sent: its new licences are not the resource's.
fn unclaim(desired: &mut Desired, action: &Action, change: &UserChange, observed: &Observed) {
    if action.kind != Kind::LicenseAssignment {
        return;
    }
    let added = newly_added(change, observed.organizations.get(&action.organization));
    if added.is_empty() {
        return;
    }
    if let Some(d) = find(&mut desired.assignments, &action.resource()) {
        d.status
            .owned
            .retain(|o| !(o.user.eq_ignore_ascii_case(&change.user) && added.contains(&o.product)));
    }
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

/// One batch's call; `None` when a stop was requested before it was sent.
async fn assign_batch<B: Backend>(
    backend: &B,
    clock: &dyn Clock,
    interrupt: &crate::clock::Interrupt,
    org: &str,
    batch: &[UserChange],
) -> Result<Option<Vec<Result<(), Refusal>>>, BackendError> {
    if interrupt.requested() {
        return Ok(None);
    }
    retrying(clock, || backend.assign_licences(org, batch))
        .await
        .map(Some)
}

/// One purchase-side action.
// Long on purpose: one arm per backend operation, each a single call.
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
            term,
            offer,
            recurring_billing,
            key,
        } => {
            let request = PurchaseRequest {
                product: product.clone(),
                seats: *seats,
                billing_frequency: *billing_frequency,
                term: *term,
                offer: offer.clone(),
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
            term,
            offer,
            key,
            ..
        } => {
            let request = PurchaseRequest {
                product: product.clone(),
                seats: *quantity,
                billing_frequency: crate::domain::BillingFrequency::Monthly,
                term: *term,
                offer: offer.clone(),
                recurring_billing: true,
                idempotency_key: key.clone(),
            };
            let a = retrying(clock, || {
                backend.buy_add_on(org, base_subscription_id, &request)
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

/// The plan's statuses become the resources' statuses (ownership and ids are carried through).
/// The plan's statuses move into the declared state (not copied: at 100k users a copy is tens
/// of megabytes); the plan keeps empty ones. The statuses reached are `desired`'s.
fn store_statuses(desired: &mut Desired, plan: &mut Plan) {
    for (d, s) in desired
        .subscriptions
        .iter_mut()
        .zip(&mut plan.subscriptions)
    {
        d.status = std::mem::take(s);
    }
    for (d, s) in desired.assignments.iter_mut().zip(&mut plan.assignments) {
        d.status = std::mem::take(s);
    }
    for (d, s) in desired.add_ons.iter_mut().zip(&mut plan.add_ons) {
        d.status = std::mem::take(s);
    }
}

impl From<&Refusal> for Block {
    fn from(r: &Refusal) -> Block {
        Block::from(r.clone())
    }
}
