//! What seats cost and who uses them (`seatkeeper report`): per product, seats bought,
//! assigned and free, and what the free ones cost; per namespace (team), what its
//! LicenseAssignments hold; licensed accounts nobody uses; licences in error. A pure function
//! of one organization as read, the catalog's prices, the clock and the planner's showback: a
//! report reclaims nothing, it says which declaration to change.

use crate::domain::billing::CURRENCY;
use crate::domain::{Catalog, Instant, Organization, SubscriptionState};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole report (`-o json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub organizations: Vec<OrganizationReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationReport {
    pub domain: String,
    /// The currency of every amount below (ISO 4217); null when prices are not known (a real
    /// tenant: the service charges what it charges), and so are the amounts.
    pub currency: Option<String>,
    /// What the organization's subscriptions cost a month, and the part spent on free seats.
    pub monthly_cost: Option<f64>,
    pub free_monthly_cost: Option<f64>,
    pub products: Vec<ProductReport>,
    /// Showback: per namespace, the seats its LicenseAssignments hold and what they cost.
    pub namespaces: Vec<NamespaceReport>,
    /// Licences held that no declaration given names (assigned by hand, or by a resource
    /// not among the manifests): nobody's showback.
    pub undeclared: Undeclared,
    /// Licensed accounts that are disabled, or whose last sign-in is older than the
    /// threshold (or who never signed in).
    pub inactive_users: Vec<InactiveUser>,
    /// Since when a sign-in counts as recent (now minus `--inactive`).
    pub inactive_since: Instant,
    /// Whether last sign-ins could be read, and why not.
    pub sign_in_activity: SignInActivity,
    pub licence_errors: Vec<LicenceErrorReport>,
}

/// Per product: seats bought (subscriptions not canceled, and traditional add-ons), held,
/// free.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductReport {
    pub product: String,
    pub seats: u32,
    /// Users holding it (directly or through a group: one seat each).
    pub assigned: u32,
    pub free: u32,
    /// seats × the list price of a seat for a month; null when the price is not known.
    pub monthly_cost: Option<f64>,
    /// free × the list price: money spent on nothing.
    pub free_monthly_cost: Option<f64>,
    /// The earliest term end of its subscriptions still ahead.
    #[schemars(with = "Option<String>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_term_ends_at: Option<Instant>,
    /// Whether that subscription renews at its term end (recurring billing), or ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceReport {
    pub namespace: String,
    /// Licences held by users its LicenseAssignments claim (a seat each).
    pub seats: u32,
    pub monthly_cost: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Undeclared {
    pub seats: u32,
    pub monthly_cost: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InactiveUser {
    pub user: String,
    pub products: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sign_in_at: Option<Instant>,
    pub account_enabled: bool,
    /// What its licences cost a month.
    pub monthly_cost: Option<f64>,
    /// Why it is listed, in plain words.
    pub why: String,
    /// The LicenseAssignment whose claim holds the licence (`namespace/name`): the
    /// declaration to change to reclaim it; absent when none of those given names the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInActivity {
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A licence a user should have and does not: from a group (the service's error) or declared
/// directly (the resource's Blocked reason).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenceErrorReport {
    pub user: String,
    pub product: String,
    /// seatkeeper's reason (InsufficientSeats, ConflictingServices, …).
    pub reason: String,
    /// The group it comes from, for a group licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The LicenseAssignment declaring it (`namespace/name`), for a direct one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<String>,
    pub message: String,
}

/// What a report of one organization is made of, besides the organization itself.
pub struct Inputs<'a> {
    pub catalog: &'a Catalog,
    pub now: Instant,
    /// A sign-in older than this is inactive.
    pub inactive_after: jiff::SignedDuration,
    /// `Err(why)` when last sign-ins could not be read: only disabled accounts are listed.
    pub sign_ins: Result<(), String>,
    /// (namespace, product, users holding it under that namespace's claims).
    pub showback: Vec<(String, String, u32)>,
    /// Direct licences the declarations want and the users cannot have.
    pub direct_errors: Vec<LicenceErrorReport>,
    /// Lowercase UPN → the LicenseAssignment (`namespace/name`) whose claim holds its licence.
    pub declared_by: std::collections::HashMap<String, String>,
}

fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// Per product: seats, assigned, free, their costs and the next term end (also what the
/// Organization status shows).
pub fn products(org: &Organization, catalog: &Catalog, now: Instant) -> Vec<ProductReport> {
    let mut by: BTreeMap<String, ProductReport> = BTreeMap::new();
    fn slot<'m>(
        by: &'m mut BTreeMap<String, ProductReport>,
        product: &str,
    ) -> &'m mut ProductReport {
        by.entry(product.to_string())
            .or_insert_with(|| ProductReport {
                product: product.to_string(),
                ..Default::default()
            })
    }
    for s in &org.subscriptions {
        if s.status == SubscriptionState::Canceled {
            continue;
        }
        let p = slot(&mut by, &s.product);
        p.seats += s.seats;
        if let Some(end) = s.term_ends_at.filter(|e| *e > now)
            && p.next_term_ends_at.is_none_or(|n| end < n)
        {
            p.next_term_ends_at = Some(end);
            p.renews = Some(s.recurring_billing);
        }
        for a in &s.add_ons {
            slot(&mut by, &a.product).seats += a.quantity;
        }
    }
    for u in &org.users {
        for l in &u.licenses {
            slot(&mut by, &l.product);
        }
    }
    let mut out: Vec<ProductReport> = by.into_values().collect();
    for p in &mut out {
        p.assigned = org.consumed(&p.product);
        p.free = p.seats.saturating_sub(p.assigned);
        let price = catalog.product(&p.product).and_then(|c| c.monthly_price);
        p.monthly_cost = price.map(|x| cents(x * p.seats as f64));
        p.free_monthly_cost = price.map(|x| cents(x * p.free as f64));
    }
    out
}

/// One organization's report.
pub fn organization(org: &Organization, inp: &Inputs) -> OrganizationReport {
    let price = |product: &str| inp.catalog.product(product).and_then(|p| p.monthly_price);
    let products = products(org, inp.catalog, inp.now);
    let priced = inp.catalog.products().any(|p| p.monthly_price.is_some());
    let sum = |f: fn(&ProductReport) -> Option<f64>| -> Option<f64> {
        priced.then(|| cents(products.iter().filter_map(f).sum()))
    };
    let mut namespaces: BTreeMap<&str, NamespaceReport> = BTreeMap::new();
    for (ns, product, users) in &inp.showback {
        let n = namespaces
            .entry(ns.as_str())
            .or_insert_with(|| NamespaceReport {
                namespace: ns.clone(),
                monthly_cost: priced.then_some(0.0),
                ..Default::default()
            });
        n.seats += users;
        if let (Some(total), Some(p)) = (n.monthly_cost.as_mut(), price(product)) {
            *total = cents(*total + p * *users as f64);
        }
    }
    let mut undeclared = Undeclared {
        monthly_cost: priced.then_some(0.0),
        ..Default::default()
    };
    for p in &products {
        let declared: u32 = inp
            .showback
            .iter()
            .filter(|(_, product, _)| *product == p.product)
            .map(|(_, _, users)| users)
            .sum();
        let left = p.assigned.saturating_sub(declared);
        undeclared.seats += left;
        if let (Some(total), Some(x)) = (undeclared.monthly_cost.as_mut(), price(&p.product)) {
            *total = cents(*total + x * left as f64);
        }
    }
    let inactive_since = inp.now - inp.inactive_after;
    let mut inactive_users = vec![];
    for u in org.users.iter().filter(|u| !u.licenses.is_empty()) {
        let why = if !u.account_enabled {
            "the account is disabled".to_string()
        } else if inp.sign_ins.is_err() {
            continue;
        } else {
            match u.last_sign_in_at {
                None => "never signed in".to_string(),
                Some(at) if at < inactive_since => {
                    format!("no sign-in since {}", at.strftime("%Y-%m-%d"))
                }
                Some(_) => continue,
            }
        };
        let products: Vec<String> = u.licenses.iter().map(|l| l.product.clone()).collect();
        inactive_users.push(InactiveUser {
            user: u.upn.clone(),
            monthly_cost: priced.then(|| cents(products.iter().filter_map(|p| price(p)).sum())),
            products,
            last_sign_in_at: u.last_sign_in_at,
            account_enabled: u.account_enabled,
            why,
            declared_by: inp.declared_by.get(&u.upn.to_lowercase()).cloned(),
        });
    }
    let mut licence_errors: Vec<LicenceErrorReport> = vec![];
    for u in &org.users {
        for e in &u.license_errors {
            let group = org
                .groups
                .iter()
                .find(|g| g.key() == e.group)
                .map_or(e.group.clone(), |g| g.name.clone());
            licence_errors.push(LicenceErrorReport {
                user: u.upn.clone(),
                product: e.product.clone(),
                reason: e.error.reason().to_string(),
                group: Some(group),
                declared_by: None,
                message: format!("{} ({})", e.error.describe(), e.error.as_str()),
            });
        }
    }
    licence_errors.extend(inp.direct_errors.iter().cloned());
    OrganizationReport {
        domain: org.domain.clone(),
        currency: priced.then(|| CURRENCY.to_string()),
        monthly_cost: sum(|p| p.monthly_cost),
        free_monthly_cost: sum(|p| p.free_monthly_cost),
        products,
        namespaces: namespaces.into_values().collect(),
        undeclared,
        inactive_users,
        inactive_since,
        sign_in_activity: SignInActivity {
            available: inp.sign_ins.is_ok(),
            reason: inp.sign_ins.clone().err(),
        },
        licence_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tenant::{GroupLicenceError, LicenceError};
    use crate::domain::{Group, Licence, Subscription, User};

    fn at(s: &str) -> Instant {
        s.parse().unwrap()
    }

    fn user(upn: &str, products: &[&str], last: Option<&str>) -> User {
        User {
            upn: upn.into(),
            licenses: products.iter().map(|p| Licence::new(*p, &[])).collect(),
            last_sign_in_at: last.map(at),
            ..Default::default()
        }
    }

    fn org() -> Organization {
        let mut o = Organization::default();
        o.domain = "contoso.com".into();
        o.subscriptions = vec![
            Subscription {
                id: "s1".into(),
                product: "SPB".into(),
                seats: 5,
                term_ends_at: Some(at("2027-03-01T00:00:00Z")),
                ..Default::default()
            },
            Subscription {
                id: "s2".into(),
                product: "SPB".into(),
                seats: 2,
                recurring_billing: false,
                term_ends_at: Some(at("2027-01-01T00:00:00Z")),
                ..Default::default()
            },
            Subscription {
                id: "gone".into(),
                product: "SPE_E3".into(),
                seats: 9,
                status: SubscriptionState::Canceled,
                ..Default::default()
            },
        ];
        o.users = vec![
            user("ann@contoso.com", &["SPB"], Some("2026-11-30T08:00:00Z")),
            user("bob@contoso.com", &["SPB"], Some("2026-09-01T08:00:00Z")),
            user("cem@contoso.com", &["SPB"], None),
            User {
                account_enabled: false,
                ..user("dee@contoso.com", &["SPB"], Some("2026-11-30T08:00:00Z"))
            },
            user("eve@contoso.com", &[], None),
        ];
        o
    }

    fn inputs(catalog: &Catalog) -> Inputs<'_> {
        Inputs {
            catalog,
            now: at("2026-12-01T00:00:00Z"),
            inactive_after: jiff::SignedDuration::from_hours(24 * 30),
            sign_ins: Ok(()),
            showback: vec![
                ("sales".into(), "SPB".into(), 3),
                ("ops".into(), "SPB".into(), 1),
            ],
            direct_errors: vec![],
            declared_by: [("bob@contoso.com".to_string(), "sales/team".to_string())].into(),
        }
    }

    #[test]
    fn free_seats_are_counted_and_priced_per_product_with_the_next_term_end() {
        let catalog = Catalog::builtin();
        let r = organization(&org(), &inputs(&catalog));
        let spb = catalog.product("SPB").unwrap().monthly_price.unwrap();
        assert_eq!(r.currency.as_deref(), Some("EUR"));
        assert_eq!(r.products.len(), 1, "a canceled subscription buys nothing");
        let p = &r.products[0];
        assert_eq!((p.seats, p.assigned, p.free), (7, 4, 3));
        assert_eq!(p.free_monthly_cost, Some(cents(3.0 * spb)));
        assert_eq!(p.monthly_cost, Some(cents(7.0 * spb)));
        assert_eq!(p.next_term_ends_at, Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(p.renews, Some(false), "the earliest ends without renewing");
        assert_eq!(r.free_monthly_cost, p.free_monthly_cost);
    }

    #[test]
    fn showback_adds_up_per_namespace() {
        let catalog = Catalog::builtin();
        let r = organization(&org(), &inputs(&catalog));
        let spb = catalog.product("SPB").unwrap().monthly_price.unwrap();
        let ns: Vec<(&str, u32, Option<f64>)> = r
            .namespaces
            .iter()
            .map(|n| (n.namespace.as_str(), n.seats, n.monthly_cost))
            .collect();
        assert_eq!(
            ns,
            [
                ("ops", 1, Some(cents(spb))),
                ("sales", 3, Some(cents(3.0 * spb)))
            ]
        );
    }

    #[test]
    fn inactive_are_the_disabled_the_stale_and_those_never_signed_in_never_the_unlicensed() {
        let catalog = Catalog::builtin();
        let r = organization(&org(), &inputs(&catalog));
        let who: Vec<(&str, &str)> = r
            .inactive_users
            .iter()
            .map(|u| (u.user.as_str(), u.why.as_str()))
            .collect();
        assert_eq!(
            who,
            [
                ("bob@contoso.com", "no sign-in since 2026-09-01"),
                ("cem@contoso.com", "never signed in"),
                ("dee@contoso.com", "the account is disabled"),
            ]
        );
        assert_eq!(r.inactive_since, at("2026-11-01T00:00:00Z"));
        assert_eq!(
            r.inactive_users[0].declared_by.as_deref(),
            Some("sales/team")
        );
        assert_eq!(
            r.inactive_users[1].declared_by, None,
            "nobody's declaration"
        );
        // Without sign-in data, only what the directory itself says: disabled accounts.
        let mut inp = inputs(&catalog);
        inp.sign_ins = Err("needs AuditLog.Read.All".into());
        let r = organization(&org(), &inp);
        assert_eq!(r.inactive_users.len(), 1);
        assert_eq!(r.inactive_users[0].user, "dee@contoso.com");
        assert!(!r.sign_in_activity.available);
        assert_eq!(
            r.sign_in_activity.reason.as_deref(),
            Some("needs AuditLog.Read.All")
        );
    }

    #[test]
    fn unknown_prices_give_no_amounts_and_no_currency() {
        let catalog = Catalog::builtin().without_prices();
        let r = organization(&org(), &inputs(&catalog));
        assert_eq!(r.currency, None);
        assert_eq!(r.products[0].free_monthly_cost, None);
        assert_eq!(r.namespaces[0].monthly_cost, None);
        assert_eq!(r.inactive_users[0].monthly_cost, None);
        assert_eq!(r.products[0].free, 3, "seats are still counted");
    }

    #[test]
    fn group_licence_errors_are_listed_with_our_reason_and_the_group() {
        let catalog = Catalog::builtin();
        let mut o = org();
        o.groups.push(Group {
            id: Some("g1".into()),
            name: "Sales".into(),
            members: vec!["eve@contoso.com".into()],
            licenses: vec![Licence::new("SPB", &[])],
            processing: false,
        });
        o.users[4].license_errors.push(LicenceError {
            product: "SPB".into(),
            group: "g1".into(),
            error: GroupLicenceError::CountViolation,
        });
        let r = organization(&o, &inputs(&catalog));
        let e = &r.licence_errors[0];
        assert_eq!(
            (e.user.as_str(), e.reason.as_str(), e.group.as_deref()),
            ("eve@contoso.com", "InsufficientSeats", Some("Sales"))
        );
        assert!(e.message.contains("CountViolation"), "{}", e.message);
    }
}
