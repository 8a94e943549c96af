//! Subscriptions: buy exactly once, convert trials, change seats and billing, carry out
//! deletion policies. Standalone add-ons share this path (R24); the rest of add-ons is in
//! `add_ons.rs`.

use super::conditions::{Block, Outcome};
use super::deletion;
use super::resources::{
    Autoscale, AutoscaleStatus, PendingPurchase, PurchaseState, SeatCounts,
    SubscriptionDeletionPolicy, SubscriptionStatus,
};
use super::{Kind, Managed, Meta, Op, Planner, purchase_key};
use crate::domain::BlockReason;
use crate::domain::billing::{CostPreview, cost_preview};
use crate::domain::rules::{
    cancellation_window_open, check_add_on_available, check_admin_may_change, check_cancellation,
    check_purchase_limit, check_reduction, check_reduction_window, check_seat_change,
    check_subscription_live, check_trial_conversion,
};
use crate::domain::{
    BillingFrequency, Organization, ProductKind, Refusal, Subscription, SubscriptionState,
};

/// A subscription-like thing to reconcile: a Subscription, or a standalone AddOn.
#[derive(Clone)]
pub(super) struct PurchaseInput<'a> {
    pub kind: Kind,
    pub meta: &'a Meta,
    pub organization: &'a str,
    pub product: &'a str,
    pub expect: ProductKind,
    pub seats: u32,
    pub adopt_id: Option<&'a str>,
    pub recorded_id: Option<&'a str>,
    pub pending: Option<&'a PendingPurchase>,
    pub billing_frequency: BillingFrequency,
    pub term: crate::domain::Term,
    pub offer: Option<&'a str>,
    pub recurring_billing: bool,
    pub product_key: Option<String>,
    /// Why the product key's Secret was not read (the namespace is out of seatkeeper's reach).
    pub product_key_unread: Option<&'a str>,
    pub convert_trial: bool,
    pub deletion: SubscriptionDeletionPolicy,
    /// `spec.autoscale`: `seats` is then the floor.
    pub autoscale: Option<&'a Autoscale>,
}

/// A seat reduction waits until this pass's licence removals are known (R07).
#[derive(Clone, Debug)]
pub(super) struct Decrease {
    pub kind: Kind,
    pub meta: Meta,
    pub organization: String,
    pub sub: Subscription,
    /// Some(add-on id) for a traditional add-on's quantity.
    pub add_on: Option<String>,
    pub product: String,
    pub to: u32,
}

#[derive(Clone, Debug, Default)]
pub(super) struct PurchaseResult {
    pub outcome: Outcome,
    pub bound: Option<Subscription>,
    pub recorded_id: Option<String>,
    pub purchase: Option<PendingPurchase>,
    pub decrease: Option<Decrease>,
    pub organization: String,
    pub product: String,
    /// Bound through its purchase key, not a recorded id: bought by this resource, and the
    /// record of it was lost or is only now written.
    pub found_by_key: bool,
    /// With `spec.autoscale`: the demand and the target this pass aimed at.
    pub autoscale: Option<AutoscaleStatus>,
}

/// The state a subscription reads in status.
pub fn state_of(sub: &Subscription) -> PurchaseState {
    match sub.status {
        SubscriptionState::Active if !sub.recurring_billing => PurchaseState::CancelAtTermEnd,
        SubscriptionState::Pending => PurchaseState::Pending,
        SubscriptionState::Active => PurchaseState::Active,
        SubscriptionState::Warning => PurchaseState::Warning,
        SubscriptionState::Suspended => PurchaseState::Suspended,
        SubscriptionState::Canceled => PurchaseState::Canceled,
    }
}

impl Planner<'_> {
    pub(super) fn plan_subscriptions(&mut self) -> Vec<PurchaseResult> {
        let desired = self.inp.desired;
        desired
            .subscriptions
            .iter()
            .map(|d| {
                let product_key = d.spec.product_key.as_ref().and_then(|r| {
                    let k = (
                        d.meta.namespace.clone(),
                        r.secret_ref.name.clone(),
                        r.secret_ref.key.clone(),
                    );
                    desired.secrets.get(&k).cloned()
                });
                self.plan_purchase(&PurchaseInput {
                    kind: Kind::Subscription,
                    meta: &d.meta,
                    organization: &d.spec.organization,
                    product: &d.spec.product,
                    expect: ProductKind::Base,
                    seats: d.spec.seats.max(0) as u32,
                    adopt_id: d.spec.subscription_id.as_deref(),
                    recorded_id: d.status.subscription_id.as_deref(),
                    pending: d.status.purchase.as_ref(),
                    billing_frequency: d.spec.billing_frequency,
                    term: d.spec.term,
                    offer: d.spec.offer.as_deref(),
                    recurring_billing: d.spec.recurring_billing,
                    product_key,
                    product_key_unread: d.spec.product_key.as_ref().and_then(|r| {
                        let k = (d.meta.namespace.clone(), r.secret_ref.name.clone());
                        desired.secrets_out_of_reach.get(&k).map(String::as_str)
                    }),
                    convert_trial: d.spec.convert_trial,
                    deletion: d.spec.deletion_policy,
                    autoscale: d.spec.autoscale.as_ref(),
                })
            })
            .collect()
    }

    pub(super) fn plan_purchase(&mut self, p: &PurchaseInput) -> PurchaseResult {
        let mut out = PurchaseResult {
            recorded_id: p.recorded_id.map(str::to_string),
            purchase: p.pending.cloned(),
            organization: p.organization.into(),
            product: p.product.into(),
            ..Default::default()
        };
        out.outcome.paused = p.meta.flags.paused;
        if let Err(block) = self.purchase_steps(p, &mut out) {
            self.decided.note_retry(block.retry_at);
            out.outcome.blocked = Some(block);
        }
        out
    }

    fn resolve<'o>(
        &self,
        p: &PurchaseInput,
        org: &'o Organization,
    ) -> Result<Option<&'o Subscription>, Block> {
        if let Some(id) = p.adopt_id {
            return match org.subscription(id) {
                Some(s) => Ok(Some(s)),
                None if self
                    .inp
                    .observed
                    .organizations
                    .values()
                    .any(|o| o.subscription(id).is_some()) =>
                {
                    Err(Block::new(
                        BlockReason::OrganizationMismatch,
                        format!(
                            "subscription {id} belongs to another organization, not {}: subscriptions are never shared",
                            p.organization
                        ),
                    ))
                }
                None => Err(Block::new(
                    BlockReason::SubscriptionNotFound,
                    format!(
                        "subscription {id} does not exist in {}{}",
                        p.organization,
                        did_you_mean(org, p.product)
                    ),
                )),
            };
        }
        if let Some(id) = p.recorded_id {
            return org.subscription(id).map(Some).ok_or_else(|| {
                Block::new(
 BlockReason::SubscriptionNotFound, format!("subscription {id}, bought earlier, no longer exists in the licensing service"))
            });
        }
        // A purchase whose record was lost (a crash before the status write) is still found:
        // its key is derived from the resource's identity.
        let key = p.pending.map_or_else(
            || purchase_key(p.kind, p.meta, p.organization),
            |pp| pp.key.clone(),
        );
        Ok(org
            .subscriptions
            .iter()
            .find(|s| s.purchase_key.as_deref() == Some(key.as_str())))
    }

    /// Gate → product → owner → binding → cancel, buy, or change what is there.
    fn purchase_steps(&mut self, p: &PurchaseInput, out: &mut PurchaseResult) -> Result<(), Block> {
        if p.meta.deleting {
            // Before the gate and the catalog: neither may hold up a deletion that needs
            // nothing of the service.
            return self.plan_purchase_deletion(p, out);
        }
        let org = self.inp.gate(p.meta, p.organization)?;
        let product = self.product_of_kind(p.product, p.expect)?;
        if let Some(id) = p.adopt_id.or(p.recorded_id) {
            let managed = Managed::Subscription(id.into());
            self.check_owner(p.kind, p.meta, p.organization, managed)?;
        }
        let bound = self.bind(p, org, out)?;
        let scaled;
        let p = match p.autoscale {
            Some(a) => {
                let status = self.autoscale_target(p, bound, a);
                let mut q = p.clone();
                q.seats = status.target as u32;
                out.autoscale = Some(status);
                scaled = q;
                &scaled
            }
            None => p,
        };
        match bound {
            None => self.plan_buy(p, org, product.monthly_price, out),
            Some(sub) => self.plan_changes(p, org, sub, product.monthly_price, out),
        }
    }

    /// The catalog's product, which must be of the kind the resource declares.
    pub(super) fn product_of_kind(
        &self,
        sku: &str,
        expect: ProductKind,
    ) -> Result<crate::domain::Product, Block> {
        match self.inp.observed.catalog.product(sku) {
            Some(x) if x.kind == expect => Ok(x.clone()),
            Some(_) => Err(Block::new(
                BlockReason::ProductUnknown,
                match expect {
                    ProductKind::Base => {
                        format!("{sku} is an add-on product: declare it with kind AddOn")
                    }
                    ProductKind::AddOn => {
                        format!("{sku} is not an add-on product: declare it with kind Subscription")
                    }
                },
            )),
            None => Err(Refusal::ProductUnknown {
                product: sku.into(),
            }
            .into()),
        }
    }

    /// The subscription this resource manages, if any, recorded in `out`.
    fn bind<'o>(
        &self,
        p: &PurchaseInput,
        org: &'o Organization,
        out: &mut PurchaseResult,
    ) -> Result<Option<&'o Subscription>, Block> {
        let bound = self.resolve(p, org)?;
        out.found_by_key = bound.is_some() && p.adopt_id.is_none() && p.recorded_id.is_none();
        if let Some(s) = bound {
            if s.product != p.product {
                return Err(Block::new(
                    BlockReason::ProductMismatch,
                    format!(
                        "subscription {} is of product {}, not {}",
                        s.id, s.product, p.product
                    ),
                ));
            }
            out.bound = Some(s.clone());
            out.recorded_id = Some(s.id.clone());
            out.purchase = None;
        }
        Ok(bound)
    }

    /// Buy exactly once: the key is recorded (in `out.purchase`) before the purchase is made.
    fn plan_buy(
        &mut self,
        p: &PurchaseInput,
        org: &Organization,
        monthly_price: Option<f64>,
        out: &mut PurchaseResult,
    ) -> Result<(), Block> {
        if p.seats == 0 {
            return Ok(());
        }
        if p.expect == ProductKind::AddOn {
            let catalog = self.inp.observed.catalog.clone();
            check_add_on_available(&catalog, org, p.product, None, self.inp.now)?;
        }
        self.check_purchase_guard(p.meta, p.organization, p.product, 0, p.seats, monthly_price)?;
        let pending = p.pending.cloned().unwrap_or(PendingPurchase {
            key: purchase_key(p.kind, p.meta, p.organization),
            started_at: self.inp.now,
        });
        out.outcome.progressing = Some(format!(
            "buying {} of {}",
            crate::domain::counted(p.seats, "seat", "seats"),
            p.product
        ));
        if !out.outcome.paused {
            let op = Op::Buy {
                product: p.product.into(),
                seats: p.seats,
                billing_frequency: p.billing_frequency,
                term: p.term,
                offer: p.offer.map(str::to_string),
                recurring_billing: p.recurring_billing,
                key: pending.key.clone(),
                cost: crate::domain::billing::purchase_cost(
                    p.seats,
                    monthly_price,
                    p.billing_frequency,
                    self.inp.now,
                ),
            };
            self.push(p.meta, p.kind, p.organization, op, false);
        }
        out.purchase = Some(pending);
        Ok(())
    }

    /// An existing subscription: convert a trial, change seats, turn recurring billing on or
    /// off, as the spec asks.
    fn plan_changes(
        &mut self,
        p: &PurchaseInput,
        org: &Organization,
        sub: &Subscription,
        monthly_price: Option<f64>,
        out: &mut PurchaseResult,
    ) -> Result<(), Block> {
        check_subscription_live(sub, self.inp.now)?;
        let mut view = sub.clone();
        let mut progress = vec![];
        let mut ops = vec![];
        if sub.trial && p.convert_trial {
            check_trial_conversion(org, sub, self.inp.now)?;
            view.trial = false;
            progress.push("buying the trial".to_string());
            ops.push(Op::ConvertTrial {
                subscription_id: sub.id.clone(),
            });
        }
        if let Some((note, op)) = self.plan_seats(p, org, &view, monthly_price, out)? {
            progress.push(note);
            ops.extend(op);
        }
        if p.recurring_billing != sub.recurring_billing {
            check_admin_may_change(&view, self.inp.now)?;
            progress.push(format!(
                "turning recurring billing {}",
                if p.recurring_billing { "on" } else { "off" }
            ));
            ops.push(Op::SetRecurringBilling {
                subscription_id: sub.id.clone(),
                enabled: p.recurring_billing,
            });
        }
        if !progress.is_empty() {
            out.outcome.progressing = Some(progress.join(", "));
        }
        if !out.outcome.paused {
            for op in ops {
                self.push(p.meta, p.kind, p.organization, op, false);
            }
        }
        Ok(())
    }

    /// R01: the seat count as declared. An increase is planned now (bought seats are there
    /// at once); a reduction waits for this pass's removals (R07); an accepted (202) change to
    /// the same count is not asked for again.
    fn plan_seats(
        &mut self,
        p: &PurchaseInput,
        org: &Organization,
        view: &Subscription,
        monthly_price: Option<f64>,
        out: &mut PurchaseResult,
    ) -> Result<Option<(String, Option<Op>)>, Block> {
        let key = p.product_key.as_deref();
        if let Some(change) = view
            .pending_seat_change
            .as_ref()
            .filter(|c| c.seats == p.seats)
        {
            self.decided.note_retry(Some(change.completes_at));
            let note = format!(
                "the service accepted the change to {} seats and finishes it by {}",
                change.seats, change.completes_at
            );
            return Ok(Some((note, None)));
        }
        if p.seats > view.seats {
            let consumed = self.pool(p.organization, p.product).consumed;
            check_seat_change(org, view, p.seats, consumed, key, self.inp.now).map_err(|r| {
                match (&r, p.product_key_unread) {
                    // The key was not read at all: say why, not that it is missing.
                    (Refusal::Prepaid { .. }, Some(why)) => Block::new(BlockReason::Prepaid, why),
                    _ => Block::from(r),
                }
            })?;
            self.check_purchase_guard(
                p.meta,
                p.organization,
                p.product,
                view.seats,
                p.seats,
                monthly_price,
            )?;
            if !out.outcome.paused && view.is_admin_manageable() {
                self.pool_mut(p.organization, p.product).seats += p.seats - view.seats;
            }
            let note = format!(
                "buying {} ({} → {})",
                crate::domain::counted(p.seats - view.seats, "seat", "seats"),
                view.seats,
                p.seats
            );
            let op = Op::SetSeats {
                subscription_id: view.id.clone(),
                cost: cost_preview(view, monthly_price, p.seats, self.inp.now),
                product_key: p.product_key.clone(),
            };
            return Ok(Some((note, Some(op))));
        }
        if p.seats < view.seats {
            if p.autoscale.is_some()
                && let Err(Refusal::ReductionWindowClosed { closed_at }) =
                    check_reduction_window(view, self.inp.now)
            {
                // Never attempted: an autoscaled reduction waits for the next chance.
                if let Some(a) = out.autoscale.as_mut() {
                    a.next_reduction_at = view.term_ends_at;
                    a.waiting = Some(format!(
                        "{} seat(s) above the target stay: seats could be removed only until {}; {}",
                        view.seats - p.seats,
                        closed_at.map_or_else(String::new, |t| t.to_string()),
                        view.term_ends_at.map_or_else(
                            || "no renewal date is known".to_string(),
                            |t| format!("the next chance is at renewal, {t}")
                        )
                    ));
                }
                return Ok(None);
            }
            // Everything but seats in use is known now; that waits for this pass's removals.
            check_seat_change(org, view, p.seats, 0, key, self.inp.now)?;
            out.decrease = Some(Decrease {
                kind: p.kind,
                meta: p.meta.clone(),
                organization: p.organization.into(),
                sub: view.clone(),
                add_on: None,
                product: p.product.into(),
                to: p.seats,
            });
            let note = format!(
                "removing {} ({} → {})",
                crate::domain::counted(view.seats - p.seats, "seat", "seats"),
                view.seats,
                p.seats
            );
            return Ok(Some((note, None)));
        }
        Ok(None)
    }

    /// The purchase guard (`--max-seat-increase`, `seatkeeper.dev/allow-large-purchase`).
    pub(super) fn check_purchase_guard(
        &self,
        meta: &Meta,
        organization: &str,
        product: &str,
        from: u32,
        to: u32,
        monthly_price: Option<f64>,
    ) -> Result<(), Block> {
        let allowed = meta.flags.allow_large_purchase;
        let limit = self.inp.options.max_seat_increase_for(organization);
        Ok(check_purchase_limit(
            product,
            from,
            to,
            limit,
            allowed,
            monthly_price,
        )?)
    }

    /// A deleted Subscription or standalone AddOn: gone at once when there is nothing to carry
    /// out (nothing on record, Orphan, or abandoned); with Cancel, what it recorded (id or
    /// purchase key) is cancelled, acting for its namespace as any change does.
    fn plan_purchase_deletion(
        &mut self,
        p: &PurchaseInput,
        out: &mut PurchaseResult,
    ) -> Result<(), Block> {
        let me = super::ObjectRef::of(p.kind, p.meta);
        // What it recorded, before what the spec names now (an adoption is recorded once
        // bound).
        let recorded = PurchaseInput {
            adopt_id: p.adopt_id.filter(|_| p.recorded_id.is_none()),
            ..p.clone()
        };
        let manages = p.recorded_id.is_some() || p.pending.is_some() || p.adopt_id.is_some();
        if deletion::of_purchase(p.meta, p.deletion, manages).is_some() {
            // A traditional add-on on this base still sees it, when it can be read.
            if manages
                && let Ok(org) = self.inp.gate(p.meta, p.organization)
                && let Ok(Some(s)) = self.resolve(&recorded, org)
            {
                out.bound = Some(s.clone());
                out.recorded_id = Some(s.id.clone());
            }
            self.decided.deleted.push(me);
            return Ok(());
        }
        let org = self
            .inp
            .gate(p.meta, p.organization)
            .map_err(deletion::blocked)?;
        if let Some(id) = p.recorded_id
            && self
                .check_owner(
                    p.kind,
                    p.meta,
                    p.organization,
                    Managed::Subscription(id.into()),
                )
                .is_err()
        {
            // An older resource manages it: not this one's to cancel.
            self.decided.deleted.push(me);
            return Ok(());
        }
        // Recorded but gone from the service: nothing left to cancel.
        let bound = self.resolve(&recorded, org).unwrap_or(None);
        if let Some(s) = bound {
            out.bound = Some(s.clone());
            out.recorded_id = Some(s.id.clone());
        }
        self.plan_cancel(p, bound, out).map_err(|b| {
            // CancellationWindowClosed: done already, the block only informs.
            if out.outcome.informational {
                b
            } else {
                deletion::blocked(b)
            }
        })
    }

    /// `deletionPolicy`: Orphan forgets; Cancel cancels, or turns recurring billing off once
    /// the cancellation window has closed (R10).
    fn plan_cancel(
        &mut self,
        p: &PurchaseInput,
        bound: Option<&Subscription>,
        out: &mut PurchaseResult,
    ) -> Result<(), Block> {
        let done = |me: &mut Self| {
            me.decided
                .deleted
                .push(super::ObjectRef::of(p.kind, p.meta))
        };
        let sub = match (p.deletion, bound) {
            (SubscriptionDeletionPolicy::Orphan, _) | (_, None) => {
                done(self);
                return Ok(());
            }
            (_, Some(sub)) => sub,
        };
        if sub.status == SubscriptionState::Canceled {
            done(self);
            return Ok(());
        }
        if !sub.recurring_billing && !cancellation_window_open(sub, self.inp.now) {
            done(self);
            out.outcome.informational = true;
            return Err(Refusal::CancellationWindowClosed {
                term_ends_at: sub.term_ends_at,
            }
            .into());
        }
        // Seats in use are counted after this pass's removals.
        let pool = self.pool(p.organization, p.product);
        check_cancellation(sub, pool.seats, pool.consumed, self.inp.now)?;
        out.outcome.progressing = Some(format!("cancelling subscription {}", sub.id));
        if !out.outcome.paused {
            self.push(
                p.meta,
                p.kind,
                p.organization,
                Op::Cancel {
                    subscription_id: sub.id.clone(),
                },
                true,
            );
        }
        Ok(())
    }

    /// Seat and quantity reductions, once this pass's licence removals are counted (R07).
    pub(super) fn plan_decrease(&mut self, out: &mut Outcome, d: &Decrease) {
        let pool = self.pool(&d.organization, &d.product);
        let from = match &d.add_on {
            Some(id) => d
                .sub
                .add_ons
                .iter()
                .find(|a| &a.id == id)
                .map_or(0, |a| a.quantity),
            None => d.sub.seats,
        };
        if let Err(r) = check_reduction(pool.seats, from, d.to, pool.consumed) {
            out.blocked = Some(r.into());
            return;
        }
        let after = pool.seats.saturating_sub(from - d.to);
        let price = self
            .inp
            .observed
            .catalog
            .product(&d.product)
            .and_then(|p| p.monthly_price);
        let mut billed = d.sub.clone();
        billed.seats = from;
        let cost: CostPreview = cost_preview(&billed, price, d.to, self.inp.now);
        let op = match &d.add_on {
            Some(id) => Op::SetAddOnQuantity {
                base_subscription_id: d.sub.id.clone(),
                add_on_id: id.clone(),
                cost,
            },
            None => Op::SetSeats {
                subscription_id: d.sub.id.clone(),
                cost,
                product_key: None,
            },
        };
        if !out.paused {
            self.pool_mut(&d.organization, &d.product).seats = after;
            self.push(&d.meta, d.kind, &d.organization, op, true);
        }
    }

    pub(super) fn subscription_status(
        &self,
        prev: &SubscriptionStatus,
        meta: &Meta,
        seats: i32,
        r: &PurchaseResult,
    ) -> SubscriptionStatus {
        let mut s = SubscriptionStatus {
            observed_generation: meta.generation,
            conditions: r
                .outcome
                .conditions(&prev.conditions, meta.generation, self.inp.now),
            blocked_reason: r.outcome.blocked_reason(),
            subscription_id: r.recorded_id.clone(),
            purchase: r.purchase.clone(),
            last_seat_change: prev.last_seat_change.clone(),
            autoscale: r.autoscale.clone(),
            ..Default::default()
        };
        if let Some(sub) = &r.bound {
            let pool = self.inp.observed_pool(&r.organization, &r.product);
            s.channel = Some(sub.channel);
            s.trial = Some(sub.trial);
            s.state = Some(state_of(sub));
            s.term_ends_at = sub.term_ends_at;
            s.seats = Some(SeatCounts {
                desired: r.autoscale.as_ref().map_or(seats as i64, |a| a.target),
                purchased: sub.seats as i64,
                assigned: pool.consumed as i64,
                available: pool.available() as i64,
            });
        }
        s
    }
}

/// The tenant's subscriptions of `product`, with their ids, for a `subscriptionId` that names
/// none: the ids are GUIDs on a real tenant, and nothing else in seatkeeper shows them.
fn did_you_mean(org: &Organization, product: &str) -> String {
    const SHOWN: usize = 5;
    let same: Vec<String> = org
        .subscriptions
        .iter()
        .filter(|s| s.product.eq_ignore_ascii_case(product))
        .map(|s| format!("{} ({} seats, {:?})", s.id, s.seats, state_of(s)))
        .collect();
    match same.len() {
        0 => {
            format!("; it has no subscription of {product}: remove spec.subscriptionId to buy one")
        }
        n => {
            let more = n.saturating_sub(SHOWN);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!(
                "; its subscriptions of {product}: {}{more}: set spec.subscriptionId to one of them",
                same[..n.min(SHOWN)].join(", ")
            )
        }
    }
}
