//! Applies plans through a backend until nothing is left to do.
//!
//! Each pass observes, plans, records what must survive a crash (purchase keys) through the
//! [`Ledger`], then calls the backend: purchases one by one, licence changes in batches of at
//! most 20 users. A refusal stops that resource and becomes its Blocked reason.

use crate::backend::{Backend, BackendError, MAX_BATCH, PurchaseRequest, SeatChange};
use crate::clock::Clock;
use crate::domain::billing::CostPreview;
use crate::domain::{Instant, Refusal};
use crate::planner::records::{self, Event};
use crate::planner::{
    self, Action, Block, Desired, Kind, ObjectRef, Observed, Op, Options, Phase, Plan, Refusals,
    UserChange,
};
use futures::StreamExt;
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
        records::take_planned(desired, &mut plan);
        if plan.actions.is_empty() || number == passes {
            ledger.save(desired, SavePoint::Final).await?;
            backend.checkpoint().await?;
            return Ok(run.report(plan, number, observed));
        }
        // Purchase keys, statuses and the licences about to be assigned are on record before
        // any change is attempted: an interrupt or a crash never leaves a change made by
        // seatkeeper that its records do not name.
        records::record(
            desired,
            Event::Claiming {
                actions: &plan.actions,
                observed: &observed,
            },
        );
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
        self.purchase_side(pass, desired, Phase::Groups, &mut unfinished, ledger)
            .await?;
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
                    match effect {
                        Effect::Nothing => {}
                        Effect::GroupLicensed => {
                            let licensed = Event::GroupLicensed {
                                action,
                                now: pass.now,
                            };
                            records::record(desired, licensed);
                        }
                        Effect::Bought { id, base } => {
                            let bought = Event::Bought {
                                resource: &resource,
                                id,
                                base,
                            };
                            records::record(desired, bought);
                        }
                        Effect::SeatChange(cost, _) => {
                            let changed = Event::SeatsChanged {
                                resource: &resource,
                                cost,
                            };
                            records::record(desired, changed);
                        }
                    }
                    None
                }
                Err(BackendError::Refused(r)) => {
                    let block = Block::from(r);
                    let not_made = Event::GroupNotMade {
                        action,
                        observed: pass.observed,
                    };
                    records::record(desired, not_made);
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
                        let not_sent = Event::NotMade {
                            action: &pass.actions[i],
                            change,
                            observed: pass.observed,
                        };
                        records::record(desired, not_sent);
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
            let licensed = Event::Licensed {
                action,
                changes,
                before,
                now: pass.now,
            };
            records::record(desired, licensed);
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
        let refused = Event::NotMade {
            action,
            change: &change,
            observed,
        };
        records::record(desired, refused);
        if resource.kind == Kind::AddOn {
            let passed_over = Event::AutoAssignRefused {
                resource: &resource,
                user: &change.user,
                refusal: &refusal,
            };
            records::record(desired, passed_over);
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

/// What a purchase-side action changed, to be recorded in its resource's status.
enum Effect {
    Nothing,
    /// A group's licences changed.
    GroupLicensed,
    Bought {
        id: String,
        base: Option<String>,
    },
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
            ..
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
        Op::AssignGroupLicences {
            group, add, remove, ..
        } => {
            retrying(clock, || {
                backend.assign_group_licences(org, group, add, remove)
            })
            .await?;
            Effect::GroupLicensed
        }
        Op::AssignLicenses { .. } => unreachable!("licence changes are batched"),
    })
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

impl From<&Refusal> for Block {
    fn from(r: &Refusal) -> Block {
        Block::from(r.clone())
    }
}
