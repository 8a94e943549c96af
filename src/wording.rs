//! How an action reads for people: one line per action, with the money involved. Used by the
//! command line's output and the cluster's Events alike; the planner itself has no words.

use crate::domain::counted;
use crate::planner::Op;
use std::collections::BTreeMap;

/// One line for people: what this action does, with the money involved.
// Long on purpose: one sentence per operation, side by side.
pub fn describe(op: &Op) -> String {
    use crate::domain::billing::money;
    let charged = |x: Option<f64>| match x {
        None => "price unknown".to_string(),
        Some(x) if x < 0.0 => format!("{} credited", money(-x)),
        Some(x) => format!("{} charged", money(x)),
    };
    // The subscription's whole monthly amount afterwards, not the change (the verdict says
    // the change).
    let monthly = |x: Option<f64>| {
        x.map_or_else(
            || "price unknown".to_string(),
            |x| format!("{} a month in total", money(x)),
        )
    };
    match op {
        Op::Buy {
            product,
            seats,
            billing_frequency,
            term,
            cost,
            ..
        } => format!(
            "buy {product} with {}, billed {billing_frequency:?}, term {}: {} now (the first {}), {}",
            counted(*seats, "seat", "seats"),
            term.as_str(),
            charged(cost.charged_now),
            match billing_frequency {
                crate::domain::BillingFrequency::Monthly => "month",
                crate::domain::BillingFrequency::Annual => "year",
            },
            monthly(cost.new_monthly_amount)
        ),
        Op::ConvertTrial { subscription_id } => format!("buy trial {subscription_id}"),
        Op::SetSeats {
            subscription_id,
            cost,
            ..
        } => format!(
            "seats {} → {} on {subscription_id}: {} now (pro rata), {} from then on",
            cost.from,
            cost.to,
            charged(cost.charged_now),
            monthly(cost.new_monthly_amount)
        ),
        Op::SetRecurringBilling {
            subscription_id,
            enabled,
        } => format!(
            "turn recurring billing {} on {subscription_id}",
            if *enabled { "on" } else { "off" }
        ),
        Op::Cancel { subscription_id } => format!("cancel {subscription_id}"),
        Op::BuyAddOn {
            base_subscription_id,
            product,
            quantity,
            term,
            cost,
            ..
        } => format!(
            "buy {quantity} × {product} on {base_subscription_id}, term {}: {} now (pro rata with its base), {}",
            term.as_str(),
            charged(cost.charged_now),
            monthly(cost.new_monthly_amount)
        ),
        Op::SetAddOnQuantity {
            add_on_id, cost, ..
        } => format!(
            "quantity {} → {} on add-on {add_on_id}: {} now (pro rata), {} from then on",
            cost.from,
            cost.to,
            charged(cost.charged_now),
            monthly(cost.new_monthly_amount)
        ),
        Op::AssignGroupLicences {
            name,
            add,
            remove,
            members_gaining,
            members_losing,
            ..
        } => {
            let mut parts = vec![];
            for l in add {
                let plans = if l.disabled_plans.is_empty() {
                    String::new()
                } else {
                    format!(" without {}", l.disabled_plans.join(", "))
                };
                parts.push(format!("assign {}{plans} to group {name}", l.product));
            }
            if *members_gaining > 0 {
                parts.push(format!(
                    "{} take a seat",
                    counted(
                        *members_gaining,
                        "member who has no licence yet will",
                        "members who have no licence yet will"
                    )
                ));
            }
            for p in remove {
                parts.push(format!(
                    "remove {p} from group {name}: {} lose it (mailbox data kept 30 days)",
                    counted(members_losing.len(), "member", "members")
                ));
            }
            parts.join("; ")
        }
        Op::AssignLicenses { users } => {
            // Each kind of change, counted per product: how it reads, and its products.
            type Products<'u> = Box<dyn Iterator<Item = &'u str> + 'u>;
            type Reads = fn(&str, &str) -> String;
            let kinds: [(Reads, Products); 3] = [
                (
                    |p, n| format!("assign {p} to {n}"),
                    Box::new(users.iter().flat_map(|u| {
                        u.add
                            .iter()
                            .map(|l| l.product.as_str())
                            .filter(|p| !u.plans_only.iter().any(|x| x == p))
                    })),
                ),
                (
                    |p, n| format!("change the plans of {p} for {n}"),
                    Box::new(
                        users
                            .iter()
                            .flat_map(|u| u.plans_only.iter().map(String::as_str)),
                    ),
                ),
                (
                    |p, n| format!("remove {p} from {n} (mailbox data kept 30 days)"),
                    Box::new(
                        users
                            .iter()
                            .flat_map(|u| u.remove.iter().map(String::as_str)),
                    ),
                ),
            ];
            let mut parts = vec![];
            for (reads, products) in kinds {
                let tally = products.fold(BTreeMap::<&str, usize>::new(), |mut m, p| {
                    *m.entry(p).or_default() += 1;
                    m
                });
                for (p, n) in tally {
                    parts.push(reads(p, &counted(n, "user", "users")));
                }
            }
            const SHOWN: usize = 5;
            let names: Vec<&str> = users.iter().map(|u| u.user.as_str()).take(SHOWN).collect();
            let more = match users.len().saturating_sub(SHOWN) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            format!("{}: {}{more}", parts.join(", "), names.join(", "))
        }
    }
}
