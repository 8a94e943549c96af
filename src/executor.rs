//! Applies plans through a backend until nothing is left to do.
//!
//! Each pass observes, plans, records what must survive a crash (purchase keys) through the
//! [`Ledger`], then calls the backend: purchases one by one, licence changes in batches of at
//! most 20 users. A refusal stops that resource and becomes its Blocked reason.

use crate::api::{LicenseAssignmentStatus, Removal, UserState};
use crate::backend::{Backend, BackendError, MAX_BATCH, PurchaseRequest};
use crate::clock::Clock;
use crate::domain::{DATA_RETENTION_DAYS, Instant, Refusal};
use crate::planner::conditions::Outcome;
use crate::planner::{
    self, Action, Block, Desired, Kind, ObjectRef, Observed, Op, Options, Plan, UserChange,
    record_owned,
};
use jiff::ToSpan;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// Where resource statuses are kept between passes and runs: the tenant file for the CLI,
/// the status subresource in a cluster.
pub trait Ledger: Send {
    fn save(&mut self, desired: &Desired) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// A ledger that keeps nothing (`plan`, tests).
pub struct NoLedger;

impl Ledger for NoLedger {
    async fn save(&mut self, _: &Desired) -> Result<(), BackendError> {
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
            ledger.save(desired).await?;
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
        ledger.save(desired).await?;
        let actions = std::mem::take(&mut plan.actions);
        let mut changes: BTreeMap<String, Vec<(usize, UserChange)>> = BTreeMap::new();
        for (i, action) in actions.iter().enumerate() {
            if refused.contains_key(&action.resource()) {
                continue;
            }
            if let Op::AssignLicenses { users } = &action.op {
                for c in users {
                    changes
                        .entry(action.organization.clone())
                        .or_default()
                        .push((i, c.clone()));
                }
                continue;
            }
            writes += 1;
            let outcome = apply_one(backend, desired, action, now).await;
            match outcome {
                Ok(()) => executed.push(Executed {
                    action: action.clone(),
                    refused: None,
                }),
                Err(BackendError::Refused(r)) => {
                    let block = Block::from(r);
                    refused.insert(action.resource(), block.clone());
                    executed.push(Executed {
                        action: action.clone(),
                        refused: Some(block),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        // Licence changes after purchases: bought seats are available at once (R02).
        let mut done: BTreeMap<usize, Vec<UserChange>> = BTreeMap::new();
        for (org, list) in changes {
            let before = &observed.organizations.get(&org);
            for chunk in list.chunks(MAX_BATCH) {
                let live: Vec<&(usize, UserChange)> = chunk
                    .iter()
                    .filter(|(i, _)| !refused.contains_key(&actions[*i].resource()))
                    .collect();
                if live.is_empty() {
                    continue;
                }
                let batch: Vec<UserChange> = live.iter().map(|(_, c)| c.clone()).collect();
                writes += 1;
                let results = backend.assign_licences(&org, &batch).await?;
                for ((i, change), result) in live.iter().zip(results) {
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
                            if let Some(d) = desired.assignments.iter_mut().find(|d| {
                                d.meta.namespace == resource.namespace
                                    && d.meta.name == resource.name
                            }) {
                                record_owned(&mut d.status.owned, change, &added);
                                record_removals(&mut d.status, change, now);
                            }
                            done.entry(*i).or_default().push(change.clone());
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
        ledger.save(desired).await?;
    }
    unreachable!("the loop returns on its last pass")
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

/// One purchase-side action; its result is written into the resource's status at once.
async fn apply_one<B: Backend>(
    backend: &B,
    desired: &mut Desired,
    action: &Action,
    now: Instant,
) -> Result<(), BackendError> {
    let org = action.organization.as_str();
    let (ns, name) = (action.namespace.as_str(), action.name.as_str());
    match &action.op {
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
            let sub = backend.buy_subscription(org, &request).await?;
            match action.kind {
                Kind::Subscription => {
                    if let Some(d) = desired
                        .subscriptions
                        .iter_mut()
                        .find(|d| d.meta.namespace == ns && d.meta.name == name)
                    {
                        d.status.subscription_id = Some(sub.id);
                        d.status.purchase = None;
                    }
                }
                _ => {
                    if let Some(d) = desired
                        .add_ons
                        .iter_mut()
                        .find(|d| d.meta.namespace == ns && d.meta.name == name)
                    {
                        d.status.add_on_id = Some(sub.id);
                        d.status.purchase = None;
                    }
                }
            }
        }
        Op::ConvertTrial { subscription_id } => backend.convert_trial(org, subscription_id).await?,
        Op::SetSeats {
            subscription_id,
            cost,
            product_key,
        } => {
            backend
                .set_seats(org, subscription_id, cost.to, product_key.as_deref())
                .await?;
            match action.kind {
                Kind::Subscription => {
                    if let Some(d) = desired
                        .subscriptions
                        .iter_mut()
                        .find(|d| d.meta.namespace == ns && d.meta.name == name)
                    {
                        d.status.last_seat_change = Some(cost.clone());
                    }
                }
                _ => {
                    if let Some(d) = desired
                        .add_ons
                        .iter_mut()
                        .find(|d| d.meta.namespace == ns && d.meta.name == name)
                    {
                        d.status.last_seat_change = Some(cost.clone());
                    }
                }
            }
        }
        Op::SetRecurringBilling {
            subscription_id,
            enabled,
        } => {
            backend
                .set_recurring_billing(org, subscription_id, *enabled)
                .await?
        }
        Op::Cancel { subscription_id } => {
            backend.cancel(org, subscription_id).await?;
        }
        Op::BuyAddOn {
            base_subscription_id,
            product,
            quantity,
            auto_assign,
            key,
        } => {
            let a = backend
                .buy_add_on(
                    org,
                    base_subscription_id,
                    product,
                    *quantity,
                    *auto_assign,
                    key,
                )
                .await?;
            if let Some(d) = desired
                .add_ons
                .iter_mut()
                .find(|d| d.meta.namespace == ns && d.meta.name == name)
            {
                d.status.add_on_id = Some(a.id);
                d.status.base_subscription_id = Some(base_subscription_id.clone());
                d.status.purchase = None;
            }
        }
        Op::SetAddOnQuantity {
            base_subscription_id,
            add_on_id,
            cost,
        } => {
            backend
                .set_add_on_quantity(org, base_subscription_id, add_on_id, cost.to)
                .await?;
            if let Some(d) = desired
                .add_ons
                .iter_mut()
                .find(|d| d.meta.namespace == ns && d.meta.name == name)
            {
                d.status.last_seat_change = Some(cost.clone());
            }
        }
        Op::AssignLicenses { .. } => unreachable!("licence changes are batched"),
    }
    let _ = now;
    Ok(())
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
    let blocked = |kind: Kind, meta: &planner::Meta| {
        refused
            .get(&ObjectRef {
                kind,
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
            })
            .cloned()
    };
    for (d, s) in desired
        .subscriptions
        .iter()
        .zip(plan.subscriptions.iter_mut())
    {
        if let Some(b) = blocked(Kind::Subscription, &d.meta) {
            s.blocked_reason = Some(b.reason.clone());
            s.conditions = Outcome {
                blocked: Some(b),
                ..Default::default()
            }
            .conditions(&s.conditions, d.meta.generation, now);
        }
    }
    for (d, s) in desired.add_ons.iter().zip(plan.add_ons.iter_mut()) {
        if let Some(b) = blocked(Kind::AddOn, &d.meta) {
            s.blocked_reason = Some(b.reason.clone());
            s.conditions = Outcome {
                blocked: Some(b),
                ..Default::default()
            }
            .conditions(&s.conditions, d.meta.generation, now);
        }
    }
    for (d, s) in desired.assignments.iter().zip(plan.assignments.iter_mut()) {
        let Some(b) = blocked(Kind::LicenseAssignment, &d.meta) else {
            continue;
        };
        let r = ObjectRef {
            kind: Kind::LicenseAssignment,
            namespace: d.meta.namespace.clone(),
            name: d.meta.name.clone(),
        };
        for u in s.users.iter_mut() {
            if let Some(ub) = refused_users.get(&(r.clone(), u.user.clone())) {
                u.state = UserState::Blocked;
                u.reason = Some(ub.reason.clone());
                u.message = Some(ub.message.clone());
            }
        }
        s.assigned = s
            .users
            .iter()
            .filter(|u| u.state == UserState::Assigned)
            .count() as i64;
        s.pending = s
            .users
            .iter()
            .filter(|u| u.state == UserState::Pending)
            .count() as i64;
        s.blocked = s
            .users
            .iter()
            .filter(|u| u.state == UserState::Blocked)
            .count() as i64;
        s.blocked_reason = Some(b.reason.clone());
        s.conditions = Outcome {
            blocked: Some(b),
            ..Default::default()
        }
        .conditions(&s.conditions, d.meta.generation, now);
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
