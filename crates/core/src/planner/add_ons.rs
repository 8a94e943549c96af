//! Add-ons: a standalone add-on is a purchase of its own, planned through the subscriptions'
//! path (R24); a traditional one hangs off a Subscription resource's subscription (R21–R23,
//! R25's auto-assignment).

use super::auto_assign::AutoAssign;
use super::conditions::Block;
use super::deletion;
use super::resources::{
    AddOnIntent, AddOnStatus, AddOnType, PendingPurchase, PurchaseState, SeatCounts,
    SubscriptionDeletionPolicy,
};
use super::subscriptions::{Decrease, PurchaseInput, PurchaseResult, state_of};
use super::{Kind, Managed, Meta, Op, Planner, purchase_key};
use crate::domain::BlockReason;
use crate::domain::billing::cost_preview;
use crate::domain::rules::{check_add_on_available, check_admin_may_change};
use crate::domain::{Organization, ProductKind, Refusal, Subscription, SubscriptionState};

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
        let desired = self.inp.desired;
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
                    (Some(sub), AddOnType::Standalone) => sub.is_usable(self.inp.now),
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
            let pool = self
                .inp
                .observed_pool(&d.spec.organization, &d.spec.product);
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
            self.decided.note_retry(block.retry_at);
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
            self.decided
                .deleted
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
        let org = self.inp.gate(&d.meta, &d.spec.organization)?;
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
            let pool = self
                .inp
                .observed_pool(&d.spec.organization, &d.spec.product);
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
            self.decided
                .deleted
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
                self.decided
                    .deleted
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
        if !d.meta.deleting && !base.is_usable(self.inp.now) {
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
        self.decided
            .deleted
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
        let catalog = self.inp.observed.catalog.clone();
        check_add_on_available(&catalog, org, &d.spec.product, Some(base), self.inp.now)?;
        check_admin_may_change(base, self.inp.now)?;
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
            started_at: self.inp.now,
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
                // Billed with its base: pro rata for the rest of the base's period (R08).
                cost: cost_preview(
                    &Subscription {
                        seats: 0,
                        ..base.clone()
                    },
                    monthly_price,
                    quantity,
                    self.inp.now,
                ),
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
        check_admin_may_change(base, self.inp.now)?;
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
        let cost = cost_preview(&billed, monthly_price, quantity, self.inp.now);
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
            conditions: r.purchase.outcome.conditions(
                &prev.conditions,
                meta.generation,
                self.inp.now,
            ),
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
