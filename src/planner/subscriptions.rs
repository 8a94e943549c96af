//! Subscriptions and add-ons: buy exactly once, convert trials, change seats and billing,
//! carry out deletion policies. Subscriptions and standalone add-ons share one path (R24).

use super::auto_assign::AutoAssign;
use super::conditions::{Block, Outcome};
use super::deletion;
use super::resources::{
    AddOnIntent, AddOnStatus, AddOnType, Autoscale, AutoscaleStatus, PendingPurchase,
    PurchaseState, SeatCounts, SubscriptionDeletionPolicy, SubscriptionStatus,
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
    kind: Kind,
    meta: Meta,
    organization: String,
    sub: Subscription,
    /// Some(add-on id) for a traditional add-on's quantity.
    add_on: Option<String>,
    product: String,
    to: u32,
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

pub(super) fn state_of(sub: &Subscription) -> PurchaseState {
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
        let desired = self.desired;
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
            self.note_retry(block.retry_at);
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
                    format!("subscription {id} does not exist in {}", p.organization),
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
        let org = self.gate(p.meta, p.organization)?;
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
    fn product_of_kind(
        &self,
        sku: &str,
        expect: ProductKind,
    ) -> Result<crate::domain::Product, Block> {
        match self.observed.catalog.product(sku) {
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
            let catalog = self.observed.catalog.clone();
            check_add_on_available(&catalog, org, p.product, None, self.now)?;
        }
        self.check_purchase_guard(p.meta, p.organization, p.product, 0, p.seats, monthly_price)?;
        let pending = p.pending.cloned().unwrap_or(PendingPurchase {
            key: purchase_key(p.kind, p.meta, p.organization),
            started_at: self.now,
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
        check_subscription_live(sub, self.now)?;
        let mut view = sub.clone();
        let mut progress = vec![];
        let mut ops = vec![];
        if sub.trial && p.convert_trial {
            check_trial_conversion(org, sub, self.now)?;
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
            check_admin_may_change(&view, self.now)?;
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
            self.note_retry(Some(change.completes_at));
            let note = format!(
                "the service accepted the change to {} seats and finishes it by {}",
                change.seats, change.completes_at
            );
            return Ok(Some((note, None)));
        }
        if p.seats > view.seats {
            let consumed = self.pool(p.organization, p.product).consumed;
            check_seat_change(org, view, p.seats, consumed, key, self.now).map_err(|r| {
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
                cost: cost_preview(view, monthly_price, p.seats, self.now),
                product_key: p.product_key.clone(),
            };
            return Ok(Some((note, Some(op))));
        }
        if p.seats < view.seats {
            if p.autoscale.is_some()
                && let Err(Refusal::ReductionWindowClosed { closed_at }) =
                    check_reduction_window(view, self.now)
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
            check_seat_change(org, view, p.seats, 0, key, self.now)?;
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
    fn check_purchase_guard(
        &self,
        meta: &Meta,
        organization: &str,
        product: &str,
        from: u32,
        to: u32,
        monthly_price: Option<f64>,
    ) -> Result<(), Block> {
        let allowed = meta.flags.allow_large_purchase;
        let limit = self.options.max_seat_increase_for(organization);
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
                && let Ok(org) = self.gate(p.meta, p.organization)
                && let Ok(Some(s)) = self.resolve(&recorded, org)
            {
                out.bound = Some(s.clone());
                out.recorded_id = Some(s.id.clone());
            }
            self.deleted.push(me);
            return Ok(());
        }
        let org = self
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
            self.deleted.push(me);
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
        let done = |me: &mut Self| me.deleted.push(super::ObjectRef::of(p.kind, p.meta));
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
        if !sub.recurring_billing && !cancellation_window_open(sub, self.now) {
            done(self);
            out.outcome.informational = true;
            return Err(Refusal::CancellationWindowClosed {
                term_ends_at: sub.term_ends_at,
            }
            .into());
        }
        // Seats in use are counted after this pass's removals.
        let pool = self.pool(p.organization, p.product);
        check_cancellation(sub, pool.seats, pool.consumed, self.now)?;
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
            .observed
            .catalog
            .product(&d.product)
            .and_then(|p| p.monthly_price);
        let mut billed = d.sub.clone();
        billed.seats = from;
        let cost: CostPreview = cost_preview(&billed, price, d.to, self.now);
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
                .conditions(&prev.conditions, meta.generation, self.now),
            blocked_reason: r.outcome.blocked_reason(),
            subscription_id: r.recorded_id.clone(),
            purchase: r.purchase.clone(),
            last_seat_change: prev.last_seat_change.clone(),
            autoscale: r.autoscale.clone(),
            ..Default::default()
        };
        if let Some(sub) = &r.bound {
            let pool = self.observed_pool(&r.organization, &r.product);
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

/// An AddOn's plan: a standalone add-on is a purchase of its own; a traditional one hangs off
/// a Subscription resource's subscription.
#[derive(Clone, Debug, Default)]
pub(super) struct AddOnResult {
    pub purchase: PurchaseResult,
    pub add_on_id: Option<String>,
    pub base_id: Option<String>,
    pub quantity: Option<(u32, SeatCounts)>,
    pub state: Option<PurchaseState>,
    pub auto_assign: AutoAssign,
}

type AddOnDecl = super::Declared<AddOnIntent, AddOnStatus>;

impl Planner<'_> {
    pub(super) fn plan_add_ons(&mut self, subs: &[PurchaseResult]) -> Vec<AddOnResult> {
        let desired = self.desired;
        desired
            .add_ons
            .iter()
            .map(|d| {
                let mut r = if d.spec.add_on_type == AddOnType::Standalone {
                    self.plan_standalone(d)
                } else {
                    let base = d.spec.subscription_ref.as_ref().and_then(|r| {
                        desired.subscriptions.iter().position(|s| {
                            s.meta.namespace == d.meta.namespace && s.meta.name == r.name
                        })
                    });
                    self.plan_traditional(d, base.and_then(|i| subs[i].bound.as_ref()))
                };
                r.auto_assign = AutoAssign::from_status(&d.status);
                // Found through its purchase key: this resource just bought it (R25 is due).
                r.auto_assign.due |= r.purchase.found_by_key && d.spec.auto_assign;
                let usable = match (&r.purchase.bound, d.spec.add_on_type) {
                    (Some(sub), AddOnType::Standalone) => sub.is_usable(self.now),
                    (_, AddOnType::Traditional) => r.add_on_id.is_some(),
                    _ => false,
                };
                if r.auto_assign.due
                    && usable
                    && r.purchase.outcome.blocked.is_none()
                    && !d.meta.deleting
                {
                    self.plan_auto_assign(d, &mut r.auto_assign, &mut r.purchase.outcome);
                }
                r
            })
            .collect()
    }

    fn plan_standalone(&mut self, d: &AddOnDecl) -> AddOnResult {
        let quantity = d.spec.quantity.max(0) as u32;
        let purchase = self.plan_purchase(&PurchaseInput {
            kind: Kind::AddOn,
            meta: &d.meta,
            organization: &d.spec.organization,
            product: &d.spec.product,
            expect: ProductKind::AddOn,
            seats: quantity,
            adopt_id: d.spec.add_on_id.as_deref(),
            recorded_id: d.status.add_on_id.as_deref(),
            pending: d.status.purchase.as_ref(),
            billing_frequency: d.spec.billing_frequency,
            term: d.spec.term,
            offer: d.spec.offer.as_deref(),
            recurring_billing: true,
            product_key: None,
            product_key_unread: None,
            convert_trial: false,
            deletion: d.spec.deletion_policy,
            autoscale: d.spec.autoscale.as_ref(),
        });
        let mut r = AddOnResult {
            add_on_id: purchase.recorded_id.clone(),
            ..Default::default()
        };
        if let Some(sub) = &purchase.bound {
            let pool = self.observed_pool(&d.spec.organization, &d.spec.product);
            r.state = Some(state_of(sub));
            let desired = purchase
                .autoscale
                .as_ref()
                .map_or(quantity, |a| a.target as u32);
            r.quantity = Some((sub.seats, counts(desired, sub.seats, pool)));
        }
        r.purchase = purchase;
        r
    }

    fn plan_traditional(&mut self, d: &AddOnDecl, base: Option<&Subscription>) -> AddOnResult {
        let mut r = AddOnResult {
            add_on_id: d.status.add_on_id.clone(),
            base_id: d.status.base_subscription_id.clone(),
            ..Default::default()
        };
        r.purchase.organization = d.spec.organization.clone();
        r.purchase.product = d.spec.product.clone();
        r.purchase.purchase = d.status.purchase.clone();
        r.purchase.outcome.paused = d.meta.flags.paused;
        if let Err(block) = self.traditional_steps(d, base, &mut r) {
            self.note_retry(block.retry_at);
            r.purchase.outcome.blocked = Some(block);
        }
        r
    }

    /// The add-on this resource manages on `base`: the one it adopts (spec.addOnId), the one it
    /// bought (status.addOnId), or the one its purchase key names (bought, record lost).
    fn traditional_record<'s>(
        &self,
        d: &AddOnDecl,
        base: &'s Subscription,
    ) -> Result<Option<&'s crate::domain::TraditionalAddOn>, Block> {
        if let Some(id) = &d.spec.add_on_id {
            let a = base.add_ons.iter().find(|a| &a.id == id).ok_or_else(|| {
                Block::new(
 BlockReason::AddOnNotFound,
                    format!(
                        "add-on {id} does not exist on the base subscription {}: check spec.addOnId and spec.subscriptionRef",
                        base.id
                    ),
                )
            })?;
            if a.product != d.spec.product {
                return Err(Block::new(
                    BlockReason::ProductMismatch,
                    format!(
                        "add-on {id} is of product {}, not {}",
                        a.product, d.spec.product
                    ),
                ));
            }
            return Ok(Some(a));
        }
        let key = match (&d.status.add_on_id, &d.status.purchase) {
            (Some(id), _) => return Ok(base.add_ons.iter().find(|a| &a.id == id)),
            (None, Some(pp)) => pp.key.clone(),
            (None, None) => purchase_key(Kind::AddOn, &d.meta, &d.spec.organization),
        };
        Ok(base
            .add_ons
            .iter()
            .find(|a| a.purchase_key.as_deref() == Some(key.as_str())))
    }

    /// Gate → product → owner → base → the add-on there → deletion, purchase or quantity.
    fn traditional_steps(
        &mut self,
        d: &AddOnDecl,
        base: Option<&Subscription>,
        r: &mut AddOnResult,
    ) -> Result<(), Block> {
        if !d.meta.deleting {
            return self.traditional_change(d, base, r);
        }
        // Nothing on record, Orphan, or abandoned: gone at once, whatever else blocks it.
        if deletion::of_add_on(d).is_some() {
            self.deleted
                .push(super::ObjectRef::of(Kind::AddOn, &d.meta));
            return Ok(());
        }
        self.traditional_change(d, base, r)
            .map_err(deletion::blocked)
    }

    /// Gate → product → owner → base → record → buy, change, or remove (when deleted).
    fn traditional_change(
        &mut self,
        d: &AddOnDecl,
        base: Option<&Subscription>,
        r: &mut AddOnResult,
    ) -> Result<(), Block> {
        let quantity = d.spec.quantity.max(0) as u32;
        let org = self.gate(&d.meta, &d.spec.organization)?;
        let product = self.product_of_kind(&d.spec.product, ProductKind::AddOn)?;
        if let Some(id) = d.spec.add_on_id.as_ref().or(d.status.add_on_id.as_ref()) {
            let managed = Managed::AddOn(id.clone());
            self.check_owner(Kind::AddOn, &d.meta, &d.spec.organization, managed)?;
        }
        let Some(base) = self.base_of(d, base)? else {
            return Ok(());
        };
        r.base_id = Some(base.id.clone());
        let record = self.traditional_record(d, base)?;
        if let Some(a) = record {
            let pool = self.observed_pool(&d.spec.organization, &d.spec.product);
            r.purchase.found_by_key = d.spec.add_on_id.is_none() && d.status.add_on_id.is_none();
            r.add_on_id = Some(a.id.clone());
            r.purchase.purchase = None;
            r.state = Some(state_of(base));
            r.quantity = Some((a.quantity, counts(quantity, a.quantity, pool)));
        }
        if !self.base_ready(d, base)? {
            return Ok(());
        }
        if d.meta.deleting {
            return self.delete_traditional(d, record);
        }
        match record {
            None if quantity == 0 => Ok(()),
            None => self.plan_buy_add_on(d, org, base, product.monthly_price, r),
            Some(a) if a.quantity == quantity => Ok(()),
            Some(_) if quantity == 0 => Err(Refusal::RemovalRequiresSupport.into()),
            Some(a) => self.plan_quantity(d, base, a, product.monthly_price, r),
        }
    }

    /// The base subscription the add-on belongs to. None: nothing is left to do (a deleted
    /// resource whose base is gone).
    fn base_of<'s>(
        &mut self,
        d: &AddOnDecl,
        base: Option<&'s Subscription>,
    ) -> Result<Option<&'s Subscription>, Block> {
        if base.is_some() {
            return Ok(base);
        }
        if d.meta.deleting {
            self.deleted
                .push(super::ObjectRef::of(Kind::AddOn, &d.meta));
            return Ok(None);
        }
        let name = d
            .spec
            .subscription_ref
            .as_ref()
            .map_or("", |r| r.name.as_str());
        Err(Block::new(
            BlockReason::BaseSubscriptionNotReady,
            format!(
                "the base Subscription {name} does not exist in namespace {} or has no subscription yet",
                d.meta.namespace
            ),
        ))
    }

    /// R22: a canceled base took its traditional add-ons with it; a base not active yet has
    /// none to change. False: nothing is left to do (a deleted resource, canceled base).
    fn base_ready(&mut self, d: &AddOnDecl, base: &Subscription) -> Result<bool, Block> {
        if base.status == SubscriptionState::Canceled {
            if d.meta.deleting {
                self.deleted
                    .push(super::ObjectRef::of(Kind::AddOn, &d.meta));
                return Ok(false);
            }
            return Err(Block::new(
                BlockReason::BaseSubscriptionCanceled,
                format!(
                    "the base subscription {} was canceled, which cancels its traditional add-ons (R22)",
                    base.id
                ),
            ));
        }
        if !d.meta.deleting && !base.is_usable(self.now) {
            return Err(Block::new(
                BlockReason::BaseSubscriptionNotReady,
                format!("the base subscription {} is not active yet", base.id),
            ));
        }
        Ok(true)
    }

    /// `deletionPolicy` of a traditional add-on: only support can remove one (R23).
    fn delete_traditional(
        &mut self,
        d: &AddOnDecl,
        record: Option<&crate::domain::TraditionalAddOn>,
    ) -> Result<(), Block> {
        if d.spec.deletion_policy == SubscriptionDeletionPolicy::Cancel && record.is_some() {
            return Err(Refusal::RemovalRequiresSupport.into());
        }
        self.deleted
            .push(super::ObjectRef::of(Kind::AddOn, &d.meta));
        Ok(())
    }

    /// Buy a traditional add-on exactly once; never a second one of a product the base has.
    fn plan_buy_add_on(
        &mut self,
        d: &AddOnDecl,
        org: &Organization,
        base: &Subscription,
        monthly_price: Option<f64>,
        r: &mut AddOnResult,
    ) -> Result<(), Block> {
        let quantity = d.spec.quantity.max(0) as u32;
        if let Some(a) = base.add_ons.iter().find(|a| a.product == d.spec.product) {
            // Buying a second one next to it is almost never meant: adopt it instead.
            return Err(Block::new(
                BlockReason::AddOnExists,
                format!(
                    "the base subscription {} already has add-on {} of {}: set spec.addOnId: {} to manage it instead of buying a second one",
                    base.id, a.id, a.product, a.id
                ),
            ));
        }
        let catalog = self.observed.catalog.clone();
        check_add_on_available(&catalog, org, &d.spec.product, Some(base), self.now)?;
        check_admin_may_change(base, self.now)?;
        self.check_purchase_guard(
            &d.meta,
            &d.spec.organization,
            &d.spec.product,
            0,
            quantity,
            monthly_price,
        )?;
        let pending = d.status.purchase.clone().unwrap_or(PendingPurchase {
            key: purchase_key(Kind::AddOn, &d.meta, &d.spec.organization),
            started_at: self.now,
        });
        r.purchase.outcome.progressing =
            Some(format!("buying {quantity} of add-on {}", d.spec.product));
        if !r.purchase.outcome.paused {
            let op = Op::BuyAddOn {
                base_subscription_id: base.id.clone(),
                product: d.spec.product.clone(),
                quantity,
                term: d.spec.term,
                offer: d.spec.offer.clone(),
                auto_assign: d.spec.auto_assign,
                key: pending.key.clone(),
            };
            self.push(&d.meta, Kind::AddOn, &d.spec.organization, op, false);
        }
        r.purchase.purchase = Some(pending);
        Ok(())
    }

    /// A traditional add-on's quantity: increases now, reductions after this pass's removals.
    fn plan_quantity(
        &mut self,
        d: &AddOnDecl,
        base: &Subscription,
        a: &crate::domain::TraditionalAddOn,
        monthly_price: Option<f64>,
        r: &mut AddOnResult,
    ) -> Result<(), Block> {
        let quantity = d.spec.quantity.max(0) as u32;
        check_admin_may_change(base, self.now)?;
        r.purchase.outcome.progressing =
            Some(format!("changing quantity {} → {quantity}", a.quantity));
        if quantity < a.quantity {
            r.purchase.decrease = Some(Decrease {
                kind: Kind::AddOn,
                meta: d.meta.clone(),
                organization: d.spec.organization.clone(),
                sub: base.clone(),
                add_on: Some(a.id.clone()),
                product: d.spec.product.clone(),
                to: quantity,
            });
            return Ok(());
        }
        self.check_purchase_guard(
            &d.meta,
            &d.spec.organization,
            &d.spec.product,
            a.quantity,
            quantity,
            monthly_price,
        )?;
        let mut billed = base.clone();
        billed.seats = a.quantity;
        let cost = cost_preview(&billed, monthly_price, quantity, self.now);
        if !r.purchase.outcome.paused {
            self.pool_mut(&d.spec.organization, &d.spec.product).seats += quantity - a.quantity;
            let op = Op::SetAddOnQuantity {
                base_subscription_id: base.id.clone(),
                add_on_id: a.id.clone(),
                cost,
            };
            self.push(&d.meta, Kind::AddOn, &d.spec.organization, op, false);
        }
        Ok(())
    }

    pub(super) fn add_on_status(
        &self,
        prev: &AddOnStatus,
        meta: &Meta,
        r: &AddOnResult,
    ) -> AddOnStatus {
        AddOnStatus {
            observed_generation: meta.generation,
            conditions: r
                .purchase
                .outcome
                .conditions(&prev.conditions, meta.generation, self.now),
            blocked_reason: r.purchase.outcome.blocked_reason(),
            add_on_id: r.add_on_id.clone(),
            base_subscription_id: r.base_id.clone(),
            state: r.state,
            quantity: r.quantity.as_ref().map(|(_, c)| c.clone()),
            last_seat_change: prev.last_seat_change.clone(),
            purchase: r.purchase.purchase.clone(),
            auto_assigned: r.auto_assign.assigned,
            auto_assign_due: r.auto_assign.due,
            auto_assign_skipped: r.auto_assign.skipped.clone(),
            autoscale: r.purchase.autoscale.clone(),
        }
    }
}

fn counts(desired: u32, purchased: u32, pool: super::Pool) -> SeatCounts {
    SeatCounts {
        desired: desired as i64,
        purchased: purchased as i64,
        assigned: pool.consumed as i64,
        available: pool.available() as i64,
    }
}
