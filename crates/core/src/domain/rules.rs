//! The vendor's licensing rules, each written once.
//!
//! Every check returns a typed [`Refusal`]: the embedded backend refuses with it, the planner
//! predicts it and turns it into a Blocked reason with a message that tells the user what to do.

use super::Instant;
use super::catalog::Catalog;
use super::reasons::BlockReason;
use super::tenant::{Channel, Licence, Organization, Subscription, SubscriptionState, User};
use serde::{Deserialize, Serialize};

/// Why the licensing service will not make a change. One variant per blocked reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason")]
pub enum Refusal {
    #[error("a credit check is pending")]
    CreditCheckPending { clears_at: Option<Instant> },
    #[error("no offer in the catalog")]
    OfferNotFound { product: String, detail: String },
    #[error("several offers in the catalog")]
    OfferAmbiguous {
        product: String,
        candidates: Vec<String>,
    },
    #[error("the subscription is prepaid with a product key")]
    Prepaid { removing: bool },
    #[error("the subscription is managed by a reseller")]
    ResellerManaged,
    #[error("the product key is not valid")]
    ProductKeyInvalid,
    #[error("the subscription is a trial")]
    Trial { payment_method_missing: bool },
    /// The service accepted a trial's conversion and then reported it failed.
    #[error("the trial's conversion failed")]
    TrialConversionFailed { id: String },
    #[error("seats are in use")]
    SeatsInUse { assigned: u32, requested: u32 },
    #[error("the subscription was bought through self-service purchase")]
    SelfServicePurchase,
    #[error("the subscription is not active yet")]
    NotActiveYet { activates_at: Option<Instant> },
    #[error("the subscription is canceled")]
    SubscriptionCanceled { id: String },
    #[error("the subscription is suspended")]
    SubscriptionSuspended { id: String },
    #[error("not enough free licences")]
    InsufficientSeats {
        product: String,
        needed: u32,
        available: u32,
    },
    #[error("conflicting service plans")]
    ConflictingServices {
        plan: String,
        product: String,
        other_plan: String,
        other_product: String,
        /// Further conflicting pairs of the same licence set, each as
        /// `PLAN (from PRODUCT) with PLAN (from PRODUCT)`: all are named at once.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        more: Vec<String>,
    },
    #[error("a service plan needs another plan")]
    MissingDependency {
        plan: String,
        product: String,
        needs: Vec<String>,
    },
    #[error("user not found")]
    UserNotFound { user: String },
    #[error("user has no usage location")]
    UsageLocationMissing { user: String },
    #[error("a downgrade needs acknowledging")]
    DowngradeNotAcknowledged { user: String, products: Vec<String> },
    #[error("a removal would leave the user without any data-bearing service")]
    DataLoss {
        user: String,
        products: Vec<String>,
        /// When the service deletes the data if the removal is made now (R19).
        deleted_on: Instant,
    },
    #[error("licences of this product come only from self-service purchases")]
    SelfServiceOnly { product: String },
    #[error("add-on not available")]
    NotAvailable { product: String, r#for: Vec<String> },
    #[error("a traditional add-on can only be removed by support")]
    RemovalRequiresSupport,
    #[error("the cancellation window has closed")]
    CancellationWindowClosed { term_ends_at: Option<Instant> },
    #[error("unknown product")]
    ProductUnknown { product: String },
    #[error("not found")]
    NotFound { what: String },
    #[error("a batch takes at most 20 users")]
    BatchTooLarge { size: usize },
    /// seatkeeper's own guard, not the service's: a purchase larger than one reconcile may make.
    #[error("the purchase is over the limit of one reconcile")]
    PurchaseLimitExceeded {
        product: String,
        from: u32,
        to: u32,
        limit: u32,
        /// None: the price is not known here.
        monthly_cost: Option<f64>,
    },
    /// Seats can be removed only within a window after they were added.
    #[error("the reduction window has closed")]
    ReductionWindowClosed { closed_at: Option<Instant> },
    /// Seats of a subscription the vendor bills directly change only in its admin center.
    #[error("seat changes are not supported here")]
    SeatChangeNotSupported { id: String },
    /// A licence inherited from a group cannot be removed from the user directly.
    #[error("the licence is inherited from a group")]
    LicenseAssignedByGroup { user: String, product: String },
    /// The application lacks a permission.
    #[error("permission denied")]
    PermissionDenied { permission: String },
    /// seatkeeper's own guard: another resource owns this subscription or add-on.
    #[error("another resource manages this subscription")]
    DuplicateSubscription { id: String, owner: String },
    /// The tenant lacks group-based licensing (Microsoft Entra ID P1).
    #[error("group-based licensing is not available")]
    GroupLicensingUnavailable { organization: String },
    /// The directory has no such group (or several of that name).
    #[error("group not found")]
    GroupNotFound { group: String, detail: String },
}

impl Refusal {
    /// The Blocked reason (CONTRACT §1) this refusal surfaces as.
    pub fn reason(&self) -> BlockReason {
        match self {
            Refusal::CreditCheckPending { .. } => BlockReason::CreditCheckPending,
            Refusal::Prepaid { .. } => BlockReason::Prepaid,
            Refusal::ProductKeyInvalid => BlockReason::Prepaid,
            Refusal::ResellerManaged => BlockReason::ResellerManaged,
            Refusal::Trial { .. } | Refusal::TrialConversionFailed { .. } => BlockReason::Trial,
            Refusal::SeatsInUse { .. } => BlockReason::SeatsInUse,
            Refusal::SelfServicePurchase => BlockReason::SelfServicePurchase,
            Refusal::NotActiveYet { .. } => BlockReason::NotActiveYet,
            Refusal::SubscriptionCanceled { .. } => BlockReason::SubscriptionCanceled,
            Refusal::SubscriptionSuspended { .. } => BlockReason::SubscriptionSuspended,
            Refusal::InsufficientSeats { .. } => BlockReason::InsufficientSeats,
            Refusal::ConflictingServices { .. } => BlockReason::ConflictingServices,
            Refusal::MissingDependency { .. } => BlockReason::MissingDependency,
            Refusal::UserNotFound { .. } => BlockReason::UserNotFound,
            Refusal::UsageLocationMissing { .. } => BlockReason::UsageLocationMissing,
            Refusal::SelfServiceOnly { .. } => BlockReason::SelfServiceOnly,
            Refusal::DowngradeNotAcknowledged { .. } | Refusal::DataLoss { .. } => {
                BlockReason::DowngradeNotAcknowledged
            }
            Refusal::NotAvailable { .. } => BlockReason::NotAvailable,
            Refusal::OfferNotFound { .. } => BlockReason::OfferNotFound,
            Refusal::OfferAmbiguous { .. } => BlockReason::OfferAmbiguous,
            Refusal::RemovalRequiresSupport => BlockReason::RemovalRequiresSupport,
            Refusal::CancellationWindowClosed { .. } => BlockReason::CancellationWindowClosed,
            Refusal::ProductUnknown { .. } => BlockReason::ProductUnknown,
            Refusal::NotFound { .. } => BlockReason::NotFound,
            Refusal::BatchTooLarge { .. } => BlockReason::BatchTooLarge,
            Refusal::PurchaseLimitExceeded { .. } => BlockReason::PurchaseLimitExceeded,
            Refusal::SeatChangeNotSupported { .. } => BlockReason::SeatChangeNotSupported,
            Refusal::ReductionWindowClosed { .. } => BlockReason::ReductionWindowClosed,
            Refusal::LicenseAssignedByGroup { .. } => BlockReason::LicenseAssignedByGroup,
            Refusal::PermissionDenied { .. } => BlockReason::PermissionDenied,
            Refusal::DuplicateSubscription { .. } => BlockReason::DuplicateSubscription,
            Refusal::GroupLicensingUnavailable { .. } => BlockReason::GroupLicensingUnavailable,
            Refusal::GroupNotFound { .. } => BlockReason::GroupNotFound,
        }
    }

    /// What the user should do about it, in plain words.
    // Long on purpose: one plain-words message per refusal, side by side.
    pub fn message(&self) -> String {
        let when = |t: &Option<Instant>| t.map(|t| format!(" (expected {t})")).unwrap_or_default();
        match self {
            Refusal::CreditCheckPending { clears_at } => format!(
                "a credit check on this subscription is pending{}: seats cannot be bought or removed until it clears; nothing is lost, the change is applied once it does",
                when(clears_at)
            ),
            Refusal::Prepaid { removing: true } => {
                "the subscription was activated with a product key (prepaid): its seats can never be removed; set seats back to the purchased count".into()
            }
            Refusal::Prepaid { removing: false } => {
                "the subscription was activated with a product key (prepaid): add a payment method to the billing account, or set spec.productKey to another 25-character key, to add seats".into()
            }
            Refusal::ProductKeyInvalid => {
                "the product key named by spec.productKey is not a 25-character key (letters and digits; dashes do not count): correct the Secret, or add a payment method to the billing account".into()
            }
            Refusal::ResellerManaged => {
                "the subscription was bought through a reseller: ask your partner to change seats".into()
            }
            Refusal::Trial { payment_method_missing: false } => {
                "the subscription is a trial: its seats cannot change until it is bought; set spec.convertTrial: true to buy it".into()
            }
            Refusal::Trial { payment_method_missing: true } => {
                "the trial cannot be bought because the billing account has no payment method: add a card, debit card or bank account first".into()
            }
            Refusal::TrialConversionFailed { id } => format!(
                "Partner Center reports the conversion of trial {id} to paid as failed (often the billing profile or payment method, or the offer no longer being available): look at the subscription in Partner Center; seatkeeper asks again, as a new request, on its next attempt"
            ),
            Refusal::SeatsInUse { assigned, requested } => format!(
                "{} assigned, more than the {} asked for: unassign {} first (seatkeeper never unassigns to make a reduction fit)",
                super::counted(*assigned, "licence is", "licences are"),
                super::counted(*requested, "seat", "seats"),
                super::counted(assigned - requested, "user", "users")
            ),
            Refusal::SelfServicePurchase => {
                "the subscription was bought by a user through self-service purchase: an admin must take it over before it can be managed".into()
            }
            Refusal::NotActiveYet { activates_at } => {
                format!("the subscription is not active yet{}: nothing can be assigned from it until it is", when(activates_at))
            }
            Refusal::SubscriptionCanceled { id } => {
                format!("subscription {id} is canceled: remove spec.subscriptionId to buy a new one")
            }
            Refusal::SubscriptionSuspended { id } => {
                format!("subscription {id} is suspended: settle the billing account to reactivate it")
            }
            Refusal::InsufficientSeats { product, needed, available } => format!(
                "{needed} {product} {} needed and {available} free: buy more seats (or free some) first",
                if *needed == 1 { "licence is" } else { "licences are" }
            ),
            Refusal::ConflictingServices { plan, product, other_plan, other_product, more } if more.is_empty() => format!(
                "{plan} (from {product}) conflicts with {other_plan} (from {other_product}): turn one of them off in disabledPlans"
            ),
            Refusal::ConflictingServices { plan, product, other_plan, other_product, more } => format!(
                "{plan} (from {product}) conflicts with {other_plan} (from {other_product}), and {}: turn one plan of each pair off in disabledPlans",
                more.join(", and ")
            ),
            Refusal::MissingDependency { plan, product, needs } => format!(
                "{plan} (from {product}) needs one of {} which the user does not have: assign a licence that includes it",
                needs.join(", ")
            ),
            Refusal::UserNotFound { user } => format!("user {user} does not exist in the organization's directory"),
            Refusal::UsageLocationMissing { user } => {
                format!("user {user} has no usage location: set one in the directory before a licence can be assigned")
            }
            Refusal::DowngradeNotAcknowledged { user, products } => format!(
                "moving {user} off {} loses data-bearing services (R28): back the data up, then annotate {ACKNOWLEDGE_DOWNGRADE}=\"true\"",
                products.join(", ")
            ),
            Refusal::DataLoss { user, products, deleted_on } => format!(
                "removing {} leaves {user} with no mailbox or other data-bearing service: its data would be deleted 30 days after the removal (on {}, R19); move the user to another licence or back the data up, then annotate {ACKNOWLEDGE_DOWNGRADE}=\"true\"",
                products.join(", "),
                deleted_on.strftime("%Y-%m-%d")
            ),
            Refusal::SelfServiceOnly { product } => format!(
                "{product} is only held through self-service purchases, which admins cannot assign from: take the subscription over or buy one"
            ),
            Refusal::OfferNotFound { product, detail } => format!(
                "Partner Center's catalog sells no offer for {product}: {detail}; check spec.term and billingFrequency, or name the catalog item in spec.offer (productId:skuId:availabilityId)"
            ),
            Refusal::OfferAmbiguous { product, candidates } => format!(
                "Partner Center's catalog sells several offers for {product}: {}; set spec.offer to the one to buy",
                candidates.join(", ")
            ),
            Refusal::NotAvailable { product, r#for } => format!(
                "add-on {product} is not available for this organization: it fits only {}",
                r#for.join(", ")
            ),
            Refusal::RemovalRequiresSupport => {
                "a traditional add-on cannot be removed by the customer: contact support, or keep a quantity of at least 1".into()
            }
            Refusal::CancellationWindowClosed { term_ends_at } => format!(
                "the cancellation window has closed: recurring billing was turned off instead, so the subscription ends at the end of its term{}",
                term_ends_at.map(|t| format!(" ({t})")).unwrap_or_default()
            ),
            Refusal::ProductUnknown { product } => format!("product {product} is not in the catalog"),
            Refusal::NotFound { what } => format!("{what} was not found"),
            Refusal::BatchTooLarge { size } => format!("a batch of {size} users is over the limit of 20"),
            Refusal::PurchaseLimitExceeded { product, from, to, limit, monthly_cost } => format!(
                "raising {product} from {from} to {to} adds {} seats, over the limit of {limit} per reconcile (--max-seat-increase), and would add {}: nothing was bought; if that is intended, annotate {ALLOW_LARGE_PURCHASE}=\"true\"",
                to - from,
                monthly_cost.map_or_else(
                    || "an amount the service decides (its price is not known here) each month".to_string(),
                    |c| format!("{} a month at list price", super::billing::money(c))
                )
            ),
            Refusal::ReductionWindowClosed { closed_at } => format!(
                "seats could be removed only {} (the reduction window has closed): set seats back to the purchased count; seats can be lowered again at the next renewal",
                closed_at.map_or_else(|| "shortly after they were added".to_string(), |t| format!("until {t}"))
            ),
            Refusal::SeatChangeNotSupported { id } => format!(
                "subscription {id} is billed directly by the vendor, so its seats can only be changed in the admin center; seatkeeper reads the new total at the next resync (assignments and everything else still work)"
            ),
            Refusal::LicenseAssignedByGroup { user, product } => format!(
                "{user} holds {product} through a group: seatkeeper never removes a group-inherited licence; change the group's membership instead"
            ),
            Refusal::GroupLicensingUnavailable { organization } => format!(
                "{organization} has no group-based licensing: it needs Microsoft Entra ID P1 or P2 (part of Microsoft 365 E3, E5 and Business Premium); choose the users with spec.users or spec.userSelector instead, which needs neither"
            ),
            Refusal::GroupNotFound { detail, .. } => detail.clone(),
            Refusal::PermissionDenied { permission } => format!(
                "the application lacks the permission {permission}: grant it (admin consent) in the app registration"
            ),
            Refusal::DuplicateSubscription { id, owner } => format!(
                "{id} is already managed by {owner}, the oldest resource naming it: only one resource may manage a subscription or add-on; nothing is changed here until this resource stops naming it or the other is deleted"
            ),
        }
    }

    /// A subscription-level reason may clear by itself with time.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Refusal::CreditCheckPending { clears_at } => *clears_at,
            Refusal::NotActiveYet { activates_at } => *activates_at,
            _ => None,
        }
    }
}

/// The annotation that lets one reconcile buy more than the purchase guard allows.
pub const ALLOW_LARGE_PURCHASE: &str = "seatkeeper.dev/allow-large-purchase";

/// The purchase guard: one reconcile of one resource raises seats (or buys) by at most
/// `limit` unless the resource allows a large purchase. `from` is 0 for a new purchase.
pub fn check_purchase_limit(
    product: &str,
    from: u32,
    to: u32,
    limit: u32,
    allowed: bool,
    monthly_price: Option<f64>,
) -> Result<(), Refusal> {
    let increase = to.saturating_sub(from);
    if increase <= limit || allowed {
        return Ok(());
    }
    Err(Refusal::PurchaseLimitExceeded {
        product: product.into(),
        from,
        to,
        limit,
        monthly_cost: monthly_price.map(|p| ((increase as f64) * p * 100.0).round() / 100.0),
    })
}

/// The subscription can be managed at all right now (state, activation).
pub fn check_subscription_live(sub: &Subscription, now: Instant) -> Result<(), Refusal> {
    match sub.status {
        SubscriptionState::Canceled => Err(Refusal::SubscriptionCanceled { id: sub.id.clone() }),
        SubscriptionState::Suspended => Err(Refusal::SubscriptionSuspended { id: sub.id.clone() }),
        _ if !sub.is_usable(now) => Err(Refusal::NotActiveYet {
            activates_at: sub.activates_at,
        }),
        _ => Ok(()),
    }
}

/// Who may change this subscription's seats or billing (R03, R05, R06, R09).
pub fn check_admin_may_change(sub: &Subscription, now: Instant) -> Result<(), Refusal> {
    check_subscription_live(sub, now)?;
    if sub.credit_check_pending(now) {
        return Err(Refusal::CreditCheckPending {
            clears_at: sub.credit_check_clears_at,
        });
    }
    check_channel(sub)?;
    if sub.trial {
        return Err(Refusal::Trial {
            payment_method_missing: false,
        });
    }
    Ok(())
}

/// R03 where it cannot be read: on a service that decides credit checks when the order or the
/// seat increase arrives (Partner Center), a change that spends money is the service's to
/// accept; `None` where the outcome is known beforehand (the simulator, or a change that
/// spends nothing).
pub fn decided_by_service(org: &Organization, spends: bool) -> Option<String> {
    (org.credit_check_by_service && spends).then(|| {
        "Partner Center decides when the change arrives: it may hold an order or a seat increase for a credit check, and nothing it shows beforehand tells (apply reports CreditCheckPending if it does)".to_string()
    })
}

/// R05, R09: subscriptions bought through a reseller or by a user (self-service) are not the
/// admin's to change, convert or cancel.
pub fn check_channel(sub: &Subscription) -> Result<(), Refusal> {
    match sub.channel {
        Channel::Reseller => Err(Refusal::ResellerManaged),
        Channel::SelfService => Err(Refusal::SelfServicePurchase),
        _ => Ok(()),
    }
}

/// R10, R07: may `sub` be cancelled? `pool` is its product's assignable seats now (this
/// subscription's included), `assigned` the licences of it in use: what is left after the
/// cancellation must still cover them.
pub fn check_cancellation(
    sub: &Subscription,
    pool: u32,
    assigned: u32,
    now: Instant,
) -> Result<(), Refusal> {
    check_subscription_live(sub, now)?;
    check_channel(sub)?;
    check_seats_cover_assigned(pool.saturating_sub(sub.pool_seats(now)), assigned)
}

/// R01–R07: may the seat count of `sub` become `seats`? `consumed` is the pool's seats in use;
/// `product_key` pays for added seats of a prepaid subscription (R04).
pub fn check_seat_change(
    org: &Organization,
    sub: &Subscription,
    seats: u32,
    consumed: u32,
    product_key: Option<&str>,
    now: Instant,
) -> Result<(), Refusal> {
    if seats == sub.seats {
        return Ok(());
    }
    check_admin_may_change(sub, now)?;
    if sub.channel == Channel::Prepaid {
        if seats < sub.seats {
            return Err(Refusal::Prepaid { removing: true });
        }
        match product_key {
            Some(key) if !product_key_valid(key) => return Err(Refusal::ProductKeyInvalid),
            None if !org.payment_method_on_file => {
                return Err(Refusal::Prepaid { removing: false });
            }
            _ => {}
        }
    }
    if seats < sub.seats {
        check_reduction_window(sub, now)?;
        let pool = org.pool(&sub.product, now);
        check_reduction(pool, sub.seats, seats, consumed)?;
    }
    Ok(())
}

/// Seats can be removed only until the subscription's reduction window closes (Partner
/// Center: the refundable quantity's `allowedUntilDateTime`); without one, at any time.
pub fn check_reduction_window(sub: &Subscription, now: Instant) -> Result<(), Refusal> {
    match sub.reduction_window_ends_at {
        Some(end) if now >= end => Err(Refusal::ReductionWindowClosed {
            closed_at: Some(end),
        }),
        _ => Ok(()),
    }
}

/// R04: a product key has 25 letters and digits (grouped by dashes: `ABCDE-FGHIJ-…`).
pub fn product_key_valid(key: &str) -> bool {
    key.chars().filter(|c| c.is_ascii_alphanumeric()).count() == 25
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// R07 for one reduction: `pool` is the product's assignable seats now; the subscription (or
/// add-on) in it goes from `from` to `to`; `assigned` licences must still fit.
pub fn check_reduction(pool: u32, from: u32, to: u32, assigned: u32) -> Result<(), Refusal> {
    check_seats_cover_assigned(pool.saturating_sub(from.saturating_sub(to)), assigned)
}

/// R07: a product's pool can never shrink below the licences of it that are assigned.
pub fn check_seats_cover_assigned(pool_after: u32, assigned: u32) -> Result<(), Refusal> {
    if assigned > pool_after {
        return Err(Refusal::SeatsInUse {
            assigned,
            requested: pool_after,
        });
    }
    Ok(())
}

/// R06: a trial can be bought only with a payment method on file.
pub fn check_trial_conversion(
    org: &Organization,
    sub: &Subscription,
    now: Instant,
) -> Result<(), Refusal> {
    check_subscription_live(sub, now)?;
    check_channel(sub)?;
    if !org.payment_method_on_file {
        return Err(Refusal::Trial {
            payment_method_missing: true,
        });
    }
    Ok(())
}

/// R21: the add-on fits `base` (traditional) or one of the organization's active
/// subscriptions and add-ons (standalone).
pub fn check_add_on_available(
    catalog: &Catalog,
    org: &Organization,
    product: &str,
    base: Option<&Subscription>,
    now: Instant,
) -> Result<(), Refusal> {
    let p = catalog
        .product(product)
        .ok_or_else(|| Refusal::ProductUnknown {
            product: product.into(),
        })?;
    let fits = |s: &Subscription| p.add_on_for.contains(&s.product) || s.product == product;
    let ok = match base {
        Some(b) => p.add_on_for.contains(&b.product),
        None => org
            .subscriptions
            .iter()
            .filter(|s| s.is_usable(now))
            .any(|s| fits(s) || s.add_ons.iter().any(|a| a.product == product)),
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::NotAvailable {
            product: product.into(),
            r#for: p.add_on_for.clone(),
        })
    }
}

/// Before a licence is added: the user exists and has a usage location.
pub fn check_user_assignable(org: &Organization, upn: &str) -> Result<(), Refusal> {
    let user = org
        .user(upn)
        .ok_or_else(|| Refusal::UserNotFound { user: upn.into() })?;
    if user.usage_location.as_deref().is_none_or(str::is_empty) {
        return Err(Refusal::UsageLocationMissing { user: upn.into() });
    }
    Ok(())
}

/// R14 and dependencies: the licences a user would hold together are compatible.
pub fn check_licence_set(catalog: &Catalog, licences: &[Licence]) -> Result<(), Refusal> {
    // (plan, product), borrowed: checked for each of a large tenant's users.
    let mut enabled: Vec<(&str, &str)> = Vec::new();
    let mut conflicts: Vec<[&str; 4]> = Vec::new();
    for l in licences {
        let p = catalog
            .product(&l.product)
            .ok_or_else(|| Refusal::ProductUnknown {
                product: l.product.clone(),
            })?;
        for plan in p.enabled_plans(&l.disabled_plans) {
            if let Some((other_plan, other_product)) = catalog.conflict(plan, &enabled) {
                // Every pair at once, not one per attempt.
                conflicts.push([other_plan, other_product, plan, l.product.as_str()]);
            }
            enabled.push((plan, &l.product));
        }
    }
    if let Some(([plan, product, other_plan, other_product], rest)) = conflicts.split_first() {
        return Err(Refusal::ConflictingServices {
            plan: (*plan).into(),
            product: (*product).into(),
            other_plan: (*other_plan).into(),
            other_product: (*other_product).into(),
            more: rest
                .iter()
                .map(|[a, ap, b, bp]| format!("{a} (from {ap}) with {b} (from {bp})"))
                .collect(),
        });
    }
    for l in licences {
        let p = catalog.product(&l.product).expect("checked above");
        for plan in p.enabled_plans(&l.disabled_plans) {
            if let Some(needs) = p.requires.get(plan)
                && !needs
                    .iter()
                    .any(|n| enabled.iter().any(|(e, _)| *e == n.as_str()))
            {
                return Err(Refusal::MissingDependency {
                    plan: plan.into(),
                    product: l.product.clone(),
                    needs: needs.clone(),
                });
            }
        }
    }
    Ok(())
}

/// One user's licence change as the service checks it, before seats (R13–R15, R17, R09; a
/// licence inherited from a group is neither removed nor changed directly):
/// the user exists and, for a new licence, has a usage location; the licences held afterwards
/// are compatible; no new licence comes only from self-service purchases. Returns what the
/// user holds afterwards and the products that take a new seat.
pub fn check_user_change(
    org: &Organization,
    catalog: &Catalog,
    user: &User,
    add: &[Licence],
    remove: &[String],
    now: Instant,
) -> Result<UserChangeCheck, Refusal> {
    let new_products: Vec<String> = add
        .iter()
        .filter(|l| user.licence(&l.product).is_none())
        .map(|l| l.product.clone())
        .collect();
    if !new_products.is_empty() {
        check_user_assignable(org, &user.upn)?;
    }
    // Assigning it directly as well, with the same plans, is allowed (both are one seat).
    if let Some(l) = user.licenses.iter().find(|l| {
        l.by_group
            && (remove.contains(&l.product)
                || add
                    .iter()
                    .any(|a| a.product == l.product && !a.same_plans(l)))
    }) {
        return Err(Refusal::LicenseAssignedByGroup {
            user: user.upn.clone(),
            product: l.product.clone(),
        });
    }
    let after = licences_after(user, add, remove);
    check_licence_set(catalog, &after)?;
    if let Some(p) = new_products.iter().find(|p| org.self_service_only(p, now)) {
        return Err(Refusal::SelfServiceOnly { product: p.clone() });
    }
    Ok(UserChangeCheck {
        after,
        new_products,
    })
}

/// What [`check_user_change`] found acceptable.
#[derive(Clone, Debug, PartialEq)]
pub struct UserChangeCheck {
    pub after: Vec<Licence>,
    pub new_products: Vec<String>,
}

/// R16: a new licence needs a free seat of its product.
pub fn check_free_seats(product: &str, needed: u32, available: u32) -> Result<(), Refusal> {
    if needed > available {
        return Err(Refusal::InsufficientSeats {
            product: product.into(),
            needed: needed - available,
            available,
        });
    }
    Ok(())
}

/// The annotation that acknowledges a downgrade (R28).
pub const ACKNOWLEDGE_DOWNGRADE: &str = "seatkeeper.dev/acknowledge-downgrade";

/// R28: a change that leaves the user with fewer data-bearing plans (and removes licences)
/// loses data unless it is acknowledged, after a backup.
pub fn check_downgrade(
    catalog: &Catalog,
    user: &User,
    after: &[Licence],
    remove: &[String],
    acknowledged: bool,
) -> Result<(), Refusal> {
    if remove.is_empty()
        || acknowledged
        || data_plans_enabled(catalog, after) >= data_plans_enabled(catalog, &user.licenses)
    {
        return Ok(());
    }
    Err(Refusal::DowngradeNotAcknowledged {
        user: user.upn.clone(),
        products: remove.to_vec(),
    })
}

/// R28 widened: whatever the mode or the reason (a user or product dropped, a deletion that
/// unassigns), a removal that leaves a user holding no data-bearing plan at all deletes their
/// mailbox and files 30 days later (R19): it needs the same acknowledgement as a downgrade.
pub fn check_data_kept(
    catalog: &Catalog,
    user: &User,
    after: &[Licence],
    remove: &[String],
    acknowledged: bool,
    now: Instant,
) -> Result<(), Refusal> {
    if remove.is_empty()
        || acknowledged
        || data_plans_enabled(catalog, after) > 0
        || data_plans_enabled(catalog, &user.licenses) == 0
    {
        return Ok(());
    }
    Err(Refusal::DataLoss {
        user: user.upn.clone(),
        products: remove.to_vec(),
        deleted_on: now + jiff::SignedDuration::from_hours(24 * crate::domain::DATA_RETENTION_DAYS),
    })
}

/// R28: how many data-bearing plans a set of licences turns on.
pub fn data_plans_enabled(catalog: &Catalog, licences: &[Licence]) -> usize {
    let mut plans: Vec<&str> = licences
        .iter()
        .filter_map(|l| catalog.product(&l.product).map(|p| (l, p)))
        .flat_map(|(l, p)| {
            p.enabled_plans(&l.disabled_plans)
                .filter(|pl| p.data_plans.iter().any(|d| d == pl))
        })
        .collect();
    plans.sort();
    plans.dedup();
    plans.len()
}

/// What a user holds after one atomic change: `remove` products dropped, `add` licences
/// added or (same product) their disabled plans replaced (R13, R15).
pub fn licences_after(user: &User, add: &[Licence], remove: &[String]) -> Vec<Licence> {
    // Sized up front: the result is kept as the user's licences, 100k times over in a large
    // tenant, where a grown vector's spare room would add up.
    let mut out = Vec::with_capacity(user.licenses.len() + add.len());
    out.extend(
        user.licenses
            .iter()
            .filter(|l| !remove.contains(&l.product) && !add.iter().any(|a| a.product == l.product))
            .cloned(),
    );
    out.extend(add.iter().cloned());
    out
}

/// R10: cancelling inside the window cancels; after it, recurring billing is turned off.
pub fn cancellation_window_open(sub: &Subscription, now: Instant) -> bool {
    sub.cancellation_window_ends_at.is_none_or(|end| now < end)
}

/// The rules as pure functions, one test (or a few) per rule, named after it.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tenant::{CreditCheck, SubscriptionState, TraditionalAddOn};

    fn now() -> Instant {
        "2026-11-21T09:00:00Z".parse().unwrap()
    }

    fn sub(id: &str, product: &str, seats: u32) -> Subscription {
        Subscription {
            id: id.into(),
            product: product.into(),
            seats,
            ..Default::default()
        }
    }

    fn user(upn: &str, products: &[&str]) -> User {
        User {
            upn: upn.into(),
            usage_location: Some("NL".into()),
            licenses: products.iter().map(|p| Licence::new(*p, &[])).collect(),
            ..Default::default()
        }
    }

    fn org(subs: Vec<Subscription>, users: Vec<User>) -> Organization {
        let mut o = Organization::default();
        o.domain = "contoso.com".into();
        o.payment_method_on_file = true;
        o.subscriptions = subs;
        o.users = users;
        o
    }

    fn reason<T>(r: Result<T, Refusal>) -> BlockReason {
        r.err().expect("refused").reason()
    }

    #[test]
    fn r01_seats_are_a_total_a_change_to_the_same_count_is_none() {
        let o = org(vec![sub("s", "SPB", 10)], vec![]);
        assert!(check_seat_change(&o, &o.subscriptions[0], 10, 0, None, now()).is_ok());
        assert!(check_seat_change(&o, &o.subscriptions[0], 15, 0, None, now()).is_ok());
    }

    #[test]
    fn r03_a_pending_credit_check_blocks_until_it_clears() {
        let mut s = sub("s", "SPB", 10);
        s.credit_check = CreditCheck::Pending;
        s.credit_check_clears_at = Some(now() + jiff::SignedDuration::from_hours(48));
        let o = org(vec![s.clone()], vec![]);
        let r = check_seat_change(&o, &s, 12, 0, None, now());
        assert_eq!(reason(r), BlockReason::CreditCheckPending);
        let later = now() + jiff::SignedDuration::from_hours(49);
        assert!(check_seat_change(&o, &s, 12, 0, None, later).is_ok());
    }

    #[test]
    fn r04_prepaid_seats_never_go_down_and_go_up_with_a_valid_key_or_payment_method() {
        let mut s = sub("s", "SPB", 5);
        s.channel = Channel::Prepaid;
        let mut o = org(vec![s.clone()], vec![]);
        assert_eq!(
            reason(check_seat_change(&o, &s, 4, 0, None, now())),
            BlockReason::Prepaid
        );
        o.payment_method_on_file = false;
        assert_eq!(
            reason(check_seat_change(&o, &s, 6, 0, None, now())),
            BlockReason::Prepaid
        );
        let bad = check_seat_change(&o, &s, 6, 0, Some("SHORT"), now());
        assert_eq!(bad.err(), Some(Refusal::ProductKeyInvalid));
        let key = Some("ABCDE-FGHIJ-KLMNO-PQRST-UVWXY");
        assert!(check_seat_change(&o, &s, 6, 0, key, now()).is_ok());
    }

    #[test]
    fn r05_reseller_and_r09_self_service_subscriptions_are_not_the_admins() {
        let mut s = sub("s", "SPB", 5);
        s.channel = Channel::Reseller;
        assert_eq!(reason(check_channel(&s)), BlockReason::ResellerManaged);
        s.channel = Channel::SelfService;
        assert_eq!(reason(check_channel(&s)), BlockReason::SelfServicePurchase);
    }

    #[test]
    fn r06_a_trial_changes_seats_only_once_bought_with_a_payment_method() {
        let mut s = sub("s", "SPB", 25);
        s.trial = true;
        let mut o = org(vec![s.clone()], vec![]);
        assert_eq!(
            reason(check_seat_change(&o, &s, 30, 0, None, now())),
            BlockReason::Trial
        );
        assert!(check_trial_conversion(&o, &s, now()).is_ok());
        o.payment_method_on_file = false;
        assert_eq!(
            reason(check_trial_conversion(&o, &s, now())),
            BlockReason::Trial
        );
    }

    #[test]
    fn r07_cannot_reduce_below_assigned() {
        let o = org(vec![sub("s", "SPB", 5)], vec![]);
        let r = check_seat_change(&o, &o.subscriptions[0], 3, 4, None, now());
        assert_eq!(
            r.err(),
            Some(Refusal::SeatsInUse {
                assigned: 4,
                requested: 3
            })
        );
        assert!(
            check_reduction(13, 8, 5, 10).is_ok(),
            "5 + 5 seats cover 10"
        );
        assert_eq!(
            reason(check_reduction(13, 8, 4, 10)),
            BlockReason::SeatsInUse
        );
    }

    #[test]
    fn r07_cannot_cancel_a_subscription_whose_licences_are_in_use() {
        let s = sub("s", "SPB", 5);
        assert_eq!(
            reason(check_cancellation(&s, 5, 2, now())),
            BlockReason::SeatsInUse
        );
        assert!(
            check_cancellation(&s, 10, 5, now()).is_ok(),
            "another subscription covers them"
        );
    }

    #[test]
    fn reductions_only_within_the_reduction_window() {
        let mut s = sub("s", "SPB", 10);
        s.reduction_window_ends_at = Some(now() + jiff::SignedDuration::from_hours(1));
        let o = org(vec![s.clone()], vec![]);
        assert!(check_seat_change(&o, &s, 8, 0, None, now()).is_ok());
        let later = now() + jiff::SignedDuration::from_hours(2);
        let r = check_seat_change(&o, &s, 8, 0, None, later);
        assert_eq!(reason(r), BlockReason::ReductionWindowClosed);
        assert!(
            check_seat_change(&o, &s, 12, 0, None, later).is_ok(),
            "raising is not limited"
        );
    }

    #[test]
    fn r10_cancelling_after_the_window_turns_recurring_billing_off_instead() {
        let mut s = sub("s", "SPB", 5);
        s.cancellation_window_ends_at = Some(now() + jiff::SignedDuration::from_hours(1));
        assert!(cancellation_window_open(&s, now()));
        s.cancellation_window_ends_at = Some(now() - jiff::SignedDuration::from_hours(1));
        assert!(!cancellation_window_open(&s, now()));
    }

    #[test]
    fn r11_the_pool_sums_active_manageable_subscriptions() {
        let mut self_service = sub("c", "SPB", 7);
        self_service.channel = Channel::SelfService;
        let mut canceled = sub("d", "SPB", 9);
        canceled.status = SubscriptionState::Canceled;
        let o = org(
            vec![
                sub("a", "SPB", 5),
                sub("b", "SPB", 8),
                self_service,
                canceled,
            ],
            vec![],
        );
        assert_eq!(o.pool("SPB", now()), 13);
    }

    #[test]
    fn r13_r14_conflicting_plans_are_refused_and_turning_one_off_resolves_it() {
        let catalog = Catalog::builtin();
        let both = [
            Licence::new("EXCHANGESTANDARD", &[]),
            Licence::new("ENTERPRISEPACK", &[]),
        ];
        let r = check_licence_set(&catalog, &both);
        assert_eq!(reason(r), BlockReason::ConflictingServices);
        let off = [
            Licence::new("EXCHANGESTANDARD", &[]),
            Licence::new("ENTERPRISEPACK", &["EXCHANGE_S_ENTERPRISE".to_string()]),
        ];
        assert!(check_licence_set(&catalog, &off).is_ok());
    }

    #[test]
    fn a_plan_that_needs_another_is_refused_without_it() {
        let catalog = Catalog::builtin();
        let alone = [Licence::new("EXCHANGEARCHIVE_ADDON", &[])];
        assert_eq!(
            reason(check_licence_set(&catalog, &alone)),
            BlockReason::MissingDependency
        );
        let with = [
            Licence::new("EXCHANGESTANDARD", &[]),
            Licence::new("EXCHANGEARCHIVE_ADDON", &[]),
        ];
        assert!(check_licence_set(&catalog, &with).is_ok());
    }

    #[test]
    fn r15_replace_removes_and_add_keeps_other_licences() {
        let u = user("a@contoso.com", &["SPB", "EXCHANGESTANDARD"]);
        let add = [Licence::new("SPE_E3", &[])];
        let kept = licences_after(&u, &add, &[]);
        assert_eq!(kept.len(), 3);
        let replaced = licences_after(&u, &add, &["SPB".into(), "EXCHANGESTANDARD".into()]);
        assert_eq!(replaced, add.to_vec());
    }

    #[test]
    fn r16_a_new_licence_needs_a_free_seat() {
        assert!(check_free_seats("SPB", 2, 2).is_ok());
        let r = check_free_seats("SPB", 3, 1);
        assert_eq!(
            r.err(),
            Some(Refusal::InsufficientSeats {
                product: "SPB".into(),
                needed: 2,
                available: 1
            })
        );
    }

    #[test]
    fn r17_guests_are_licensed_like_members_and_need_a_usage_location() {
        let mut guest = user("pat@fabrikam.example", &[]);
        guest.guest = true;
        let mut nowhere = user("x@contoso.com", &[]);
        nowhere.usage_location = None;
        let o = org(
            vec![sub("s", "SPB", 5)],
            vec![guest.clone(), nowhere.clone()],
        );
        let add = [Licence::new("SPB", &[])];
        let catalog = Catalog::builtin();
        assert!(check_user_change(&o, &catalog, &guest, &add, &[], now()).is_ok());
        let r = check_user_change(&o, &catalog, &nowhere, &add, &[], now());
        assert_eq!(reason(r), BlockReason::UsageLocationMissing);
    }

    #[test]
    fn r18_automatic_plans_are_never_enabled_by_assignment() {
        let catalog = Catalog::builtin();
        let p = catalog.product("O365_BUSINESS_PREMIUM").unwrap();
        assert!(p.plans.iter().any(|x| x == "SWAY"));
        assert!(!p.enabled_plans(&[]).any(|x| x == "SWAY"));
    }

    #[test]
    fn r21_add_ons_fit_only_their_base_products() {
        let catalog = Catalog::builtin();
        let o = org(vec![sub("s", "EXCHANGESTANDARD", 1)], vec![]);
        let r =
            check_add_on_available(&catalog, &o, "MCOMEETADV", Some(&o.subscriptions[0]), now());
        assert_eq!(reason(r), BlockReason::NotAvailable);
        let base = Some(&o.subscriptions[0]);
        assert!(check_add_on_available(&catalog, &o, "EXCHANGEARCHIVE_ADDON", base, now()).is_ok());
    }

    #[test]
    fn r22_a_canceled_base_cannot_be_managed() {
        let mut s = sub("s", "SPB", 5);
        s.status = SubscriptionState::Canceled;
        s.add_ons.push(TraditionalAddOn {
            id: "a".into(),
            product: "MCOMEETADV".into(),
            quantity: 2,
            purchase_key: None,
        });
        assert_eq!(
            reason(check_admin_may_change(&s, now())),
            BlockReason::SubscriptionCanceled
        );
        let o = org(vec![s], vec![]);
        assert_eq!(o.pool("MCOMEETADV", now()), 0, "its add-ons went with it");
    }

    #[test]
    fn r27_a_subscription_not_active_yet_gives_no_licences() {
        let mut s = sub("s", "SPB", 5);
        s.activates_at = Some(now() + jiff::SignedDuration::from_hours(1));
        assert_eq!(
            reason(check_subscription_live(&s, now())),
            BlockReason::NotActiveYet
        );
        let o = org(vec![s], vec![]);
        assert_eq!(o.pool("SPB", now()), 0);
    }

    #[test]
    fn r28_a_downgrade_needs_acknowledging() {
        let catalog = Catalog::builtin();
        let u = user("a@contoso.com", &["ENTERPRISEPACK"]);
        let after = [Licence::new("EXCHANGESTANDARD", &[])];
        let remove = ["ENTERPRISEPACK".to_string()];
        let r = check_downgrade(&catalog, &u, &after, &remove, false);
        assert_eq!(reason(r), BlockReason::DowngradeNotAcknowledged);
        assert!(check_downgrade(&catalog, &u, &after, &remove, true).is_ok());
    }

    #[test]
    fn r28_a_removal_leaving_no_data_bearing_plan_needs_acknowledging() {
        let catalog = Catalog::builtin();
        let u = user("frank@contoso.com", &["ENTERPRISEPACK"]);
        let remove = ["ENTERPRISEPACK".to_string()];
        let r = check_data_kept(&catalog, &u, &[], &remove, false, now());
        assert_eq!(reason(r.clone()), BlockReason::DowngradeNotAcknowledged);
        let text = r.unwrap_err().message();
        assert!(text.contains("frank@contoso.com with no mailbox"), "{text}");
        assert!(
            text.contains("30 days after the removal (on 2026-"),
            "{text}"
        );
        assert!(text.contains("acknowledge-downgrade"), "{text}");
        assert!(check_data_kept(&catalog, &u, &[], &remove, true, now()).is_ok());
        // Another data-bearing licence is kept: nothing is lost.
        let both = user("g@contoso.com", &["ENTERPRISEPACK", "EXCHANGESTANDARD"]);
        let after = [Licence::new("EXCHANGESTANDARD", &[])];
        assert!(check_data_kept(&catalog, &both, &after, &remove, false, now()).is_ok());
        // A licence without data plans (Defender) goes freely.
        let visio = user("v@contoso.com", &["ATP_ENTERPRISE"]);
        let remove = ["ATP_ENTERPRISE".to_string()];
        assert!(check_data_kept(&catalog, &visio, &[], &remove, false, now()).is_ok());
    }

    #[test]
    fn purchase_guard_counts_the_increase_and_names_the_monthly_cost() {
        assert!(check_purchase_limit("SPB", 5, 105, 100, false, Some(22.0)).is_ok());
        let r = check_purchase_limit("SPB", 5, 106, 100, false, Some(22.0));
        assert!(
            r.as_ref()
                .unwrap_err()
                .message()
                .contains("would add EUR 2,222.00 a month at list price")
        );
        assert_eq!(reason(r), BlockReason::PurchaseLimitExceeded);
        assert!(check_purchase_limit("SPB", 5, 106, 100, true, Some(22.0)).is_ok());
        // A real tenant's price is not known: the guard holds all the same, without a number.
        let unknown = check_purchase_limit("SPB", 5, 106, 100, false, None).unwrap_err();
        assert!(
            unknown.message().contains("price is not known"),
            "{}",
            unknown.message()
        );
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    #[test]
    fn a_licence_inherited_from_a_group_is_never_removed_directly() {
        let mut held = Licence::new("SPB", &[]);
        held.by_group = true;
        let user = User {
            upn: "a@contoso.com".into(),
            usage_location: Some("NL".into()),
            licenses: vec![held],
            ..Default::default()
        };
        let mut org = Organization::default();
        org.users = vec![user.clone()];
        let r = check_user_change(
            &org,
            &Catalog::builtin(),
            &user,
            &[],
            &["SPB".into()],
            "2026-11-21T09:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            r.err().map(|e| e.reason()),
            Some(BlockReason::LicenseAssignedByGroup)
        );
    }
}
