//! R08: what a seat change costs.

use super::Instant;
use super::tenant::{BillingFrequency, Subscription};
use jiff::{ToSpan, tz::TimeZone};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The currency of the catalog's list prices (the vendor's Dutch price list).
pub const CURRENCY: &str = "EUR";

/// An amount as people read it: the currency, thousands separated, two decimals
/// (`EUR 12,499,937.50`; negative amounts keep their sign: `EUR -22.00`).
pub fn money(amount: f64) -> String {
    let cents = (amount.abs() * 100.0).round() as u128;
    let (whole, frac) = (cents / 100, cents % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(d);
    }
    let sign = if amount < 0.0 && cents > 0 { "-" } else { "" };
    format!("{CURRENCY} {sign}{grouped}.{frac:02}")
}

/// The money side of a seat change or a purchase, shown before and after it is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostPreview {
    /// Seats before the change.
    pub from: u32,
    /// Seats after the change.
    pub to: u32,
    /// List price of one seat for one month; absent when the price is not known (a real
    /// tenant: the service charges what it charges), and so are the two amounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_price_per_seat: Option<f64>,
    /// Charged (or, when negative, credited) now, pro rata for the rest of the billing period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged_now: Option<f64>,
    /// What the subscription costs per month after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_monthly_amount: Option<f64>,
    /// When the current billing period ends (the next invoice).
    #[schemars(with = "Option<String>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ends_at: Option<Instant>,
    /// The currency of the amounts (ISO 4217), given with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

impl CostPreview {
    /// How much the monthly amount goes up (or, negative, down), when the price is known.
    pub fn monthly_change(&self) -> Option<f64> {
        Some(self.new_monthly_amount? - self.monthly_price_per_seat? * self.from as f64)
    }
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// R08: seats added mid-period are charged pro rata for the rest of the period; the previous
/// charge is credited and the old count charged for the part already used, so the net charge
/// is the difference times the remaining fraction of the period.
pub fn cost_preview(
    sub: &Subscription,
    monthly_price: Option<f64>,
    to: u32,
    now: Instant,
) -> CostPreview {
    let months = match sub.billing_frequency {
        BillingFrequency::Monthly => 1.0,
        BillingFrequency::Annual => 12.0,
    };
    let period = sub
        .purchased_at
        .and_then(|start| billing_period(start, sub.billing_frequency, now));
    let (remaining, period_ends_at) = match period {
        Some((begin, end)) => {
            let total = (end.as_second() - begin.as_second()) as f64;
            let left = (end.as_second() - now.as_second()) as f64;
            // Before the purchase (a clock set back): the whole first period is ahead.
            ((left / total).clamp(0.0, 1.0), Some(end))
        }
        None => (1.0, None),
    };
    let delta = to as f64 - sub.seats as f64;
    CostPreview {
        from: sub.seats,
        to,
        monthly_price_per_seat: monthly_price,
        charged_now: monthly_price.map(|p| cents(delta * p * months * remaining)),
        new_monthly_amount: monthly_price.map(|p| cents(to as f64 * p)),
        period_ends_at,
        currency: monthly_price.map(|_| CURRENCY.to_string()),
    }
}

/// What a new purchase of `seats` costs: its first billing period is charged when it is
/// bought (a month, or a year when billed annually), and the monthly amount is the seats at
/// list price.
pub fn purchase_cost(
    seats: u32,
    monthly_price: Option<f64>,
    billing_frequency: BillingFrequency,
    now: Instant,
) -> CostPreview {
    let new = Subscription {
        seats: 0,
        billing_frequency,
        purchased_at: Some(now),
        ..Default::default()
    };
    cost_preview(&new, monthly_price, seats, now)
}

/// When a billing period (term) that starts at `from` ends; None past the calendar's end.
pub fn period_after(from: Instant, frequency: BillingFrequency) -> Option<Instant> {
    let step = match frequency {
        BillingFrequency::Monthly => 1.month(),
        BillingFrequency::Annual => 1.year(),
    };
    Some(
        from.to_zoned(TimeZone::UTC)
            .checked_add(step)
            .ok()?
            .timestamp(),
    )
}

/// The billing period, counted from `start`, that holds `now` (the first one if `now` is
/// earlier); None when it would lie past the calendar's end.
fn billing_period(
    start: Instant,
    frequency: BillingFrequency,
    now: Instant,
) -> Option<(Instant, Instant)> {
    let (mut begin, mut end) = (start, period_after(start, frequency)?);
    while end <= now {
        (begin, end) = (end, period_after(end, frequency)?);
    }
    Some((begin, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Instant {
        s.parse().unwrap()
    }

    fn sub(purchased: &str) -> Subscription {
        Subscription {
            id: "sub-1".into(),
            product: "SPB".into(),
            seats: 10,
            purchased_at: Some(at(purchased)),
            ..Default::default()
        }
    }

    #[test]
    fn amounts_read_with_their_currency_and_thousands_separators() {
        assert_eq!(money(12_499_937.5), "EUR 12,499,937.50");
        assert_eq!(money(999.999), "EUR 1,000.00");
        assert_eq!(money(-22.0), "EUR -22.00");
        assert_eq!(money(0.004), "EUR 0.00");
        assert_eq!(money(100.0), "EUR 100.00");
    }

    #[test]
    fn r08_a_new_purchase_is_charged_its_first_period() {
        let now = at("2026-11-21T09:00:00Z");
        let monthly = purchase_cost(100, Some(36.0), BillingFrequency::Monthly, now);
        assert_eq!((monthly.from, monthly.to), (0, 100));
        assert_eq!(monthly.charged_now, Some(3600.0));
        assert_eq!(monthly.new_monthly_amount, Some(3600.0));
        assert_eq!(monthly.currency.as_deref(), Some("EUR"));
        assert_eq!(monthly.period_ends_at, Some(at("2026-12-21T09:00:00Z")));
        let annual = purchase_cost(10, Some(36.0), BillingFrequency::Annual, now);
        assert_eq!(annual.charged_now, Some(4320.0), "a year up front");
        let unknown = purchase_cost(10, None, BillingFrequency::Monthly, now);
        assert_eq!((unknown.charged_now, unknown.currency), (None, None));
    }

    #[test]
    fn r08_seats_added_mid_period_are_charged_pro_rata() {
        // Half of a 30-day period is left: 2 more seats at 10.00 cost 10.00 now.
        let c = cost_preview(
            &sub("2026-11-01T00:00:00Z"),
            Some(10.0),
            12,
            at("2026-11-16T00:00:00Z"),
        );
        assert_eq!(c.charged_now, Some(10.0));
        assert_eq!(c.new_monthly_amount, Some(120.0));
        assert_eq!(c.period_ends_at, Some(at("2026-12-01T00:00:00Z")));
    }

    #[test]
    fn r08_a_clock_before_the_purchase_never_charges_more_than_a_full_period() {
        let c = cost_preview(
            &sub("2026-11-01T00:00:00Z"),
            Some(10.0),
            12,
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(c.charged_now, Some(20.0));
    }

    #[test]
    fn extreme_dates_do_not_panic() {
        let late = at("9999-12-20T00:00:00Z");
        let c = cost_preview(&sub("9999-12-01T00:00:00Z"), Some(10.0), 12, late);
        assert_eq!(
            c.charged_now,
            Some(20.0),
            "no period end in the calendar: a full period"
        );
        assert_eq!(period_after(late, BillingFrequency::Monthly), None);
    }

    #[test]
    fn r08_an_unknown_price_gives_no_amounts_never_a_made_up_one() {
        let c = cost_preview(
            &sub("2026-11-01T00:00:00Z"),
            None,
            12,
            at("2026-11-16T00:00:00Z"),
        );
        assert_eq!((c.charged_now, c.new_monthly_amount), (None, None));
        assert_eq!(c.monthly_change(), None);
        assert_eq!((c.from, c.to), (10, 12), "the seats are still shown");
    }
}
