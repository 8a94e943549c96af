//! R08: what a seat change costs.

use super::Instant;
use super::tenant::{BillingFrequency, Subscription};
use jiff::{ToSpan, tz::TimeZone};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The money side of a seat change, shown before and after it is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostPreview {
    /// Seats before the change.
    pub from: u32,
    /// Seats after the change.
    pub to: u32,
    /// List price of one seat for one month.
    pub monthly_price_per_seat: f64,
    /// Charged (or, when negative, credited) now, pro rata for the rest of the billing period.
    pub charged_now: f64,
    /// What the subscription costs per month after the change.
    pub new_monthly_amount: f64,
    /// When the current billing period ends (the next invoice).
    #[schemars(with = "Option<String>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ends_at: Option<Instant>,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// R08: seats added mid-period are charged pro rata for the rest of the period; the previous
/// charge is credited and the old count charged for the part already used, so the net charge
/// is the difference times the remaining fraction of the period.
pub fn cost_preview(sub: &Subscription, monthly_price: f64, to: u32, now: Instant) -> CostPreview {
    let step = match sub.billing_frequency {
        BillingFrequency::Monthly => 1.month(),
        BillingFrequency::Annual => 1.year(),
    };
    let months = match sub.billing_frequency {
        BillingFrequency::Monthly => 1.0,
        BillingFrequency::Annual => 12.0,
    };
    let (remaining, period_ends_at) = match sub.purchased_at {
        Some(start) => {
            let mut begin = start.to_zoned(TimeZone::UTC);
            let now_z = now.to_zoned(TimeZone::UTC);
            let mut end = begin.checked_add(step).expect("date in range");
            while end <= now_z {
                begin = end.clone();
                end = begin.checked_add(step).expect("date in range");
            }
            let total = (end.timestamp().as_second() - begin.timestamp().as_second()) as f64;
            let left = (end.timestamp().as_second() - now.as_second()) as f64;
            (left / total, Some(end.timestamp()))
        }
        None => (1.0, None),
    };
    let delta = to as f64 - sub.seats as f64;
    CostPreview {
        from: sub.seats,
        to,
        monthly_price_per_seat: monthly_price,
        charged_now: cents(delta * monthly_price * months * remaining),
        new_monthly_amount: cents(to as f64 * monthly_price),
        period_ends_at,
    }
}
