//! The planner as a pure function: declared intents + an observed tenant + a clock, no
//! backend, no I/O. Named after the rules they guard.

use super::*;
use crate::domain::{Catalog, Organization, Subscription, User};
use std::collections::BTreeMap;
use std::sync::Arc;

fn now() -> Instant {
    "2026-11-21T09:00:00Z".parse().unwrap()
}

fn meta(name: &str, age_secs: i64) -> Meta {
    Meta {
        namespace: "team-a".into(),
        name: name.into(),
        created_at: now() - jiff::SignedDuration::from_secs(age_secs),
        uid: format!("uid-{name}"),
        ..Default::default()
    }
}

fn observed(subs: &[(&str, &str, u32)], users: &[(&str, &[&str])]) -> Observed {
    let mut org = Organization::default();
    org.domain = "contoso.com".into();
    org.payment_method_on_file = true;
    org.subscriptions = subs
        .iter()
        .map(|(id, product, seats)| Subscription {
            id: id.to_string(),
            product: product.to_string(),
            seats: *seats,
            ..Default::default()
        })
        .collect();
    org.users = users
        .iter()
        .map(|(upn, products)| User {
            upn: upn.to_string(),
            usage_location: Some("NL".into()),
            licenses: products.iter().map(|p| Licence::new(*p, &[])).collect(),
            ..Default::default()
        })
        .collect();
    Observed {
        catalog: Arc::new(Catalog::builtin()),
        organizations: BTreeMap::from([("contoso.com".to_string(), org)]),
    }
}

fn subscription(
    name: &str,
    id: &str,
    product: &str,
    seats: i32,
) -> Declared<SubscriptionIntent, SubscriptionStatus> {
    Declared {
        meta: meta(name, 100),
        spec: SubscriptionIntent {
            organization: "contoso.com".into(),
            product: product.into(),
            seats,
            subscription_id: Some(id.into()),
            billing_frequency: Default::default(),
            recurring_billing: true,
            product_key: None,
            convert_trial: false,
            deletion_policy: Default::default(),
        },
        status: Default::default(),
    }
}

fn assignment(
    name: &str,
    age: i64,
    users: &[&str],
    product: &str,
    mode: resources::AssignmentMode,
) -> Declared<AssignmentIntent, LicenseAssignmentStatus> {
    Declared {
        meta: meta(name, age),
        spec: AssignmentIntent {
            organization: "contoso.com".into(),
            users: users.iter().map(|u| u.to_string()).collect(),
            licenses: vec![resources::LicenseSpec {
                product: product.into(),
                disabled_plans: vec![],
            }],
            mode,
            deletion_policy: Default::default(),
        },
        status: Default::default(),
    }
}

fn changes(plan: &Plan) -> Vec<(String, Vec<String>, Vec<String>)> {
    plan.actions
        .iter()
        .flat_map(|a| match &a.op {
            Op::AssignLicenses { users } => users
                .iter()
                .map(|c| {
                    let add = c.add.iter().map(|l| l.product.clone()).collect();
                    (c.user.clone(), add, c.remove.clone())
                })
                .collect(),
            _ => vec![],
        })
        .collect()
}

use resources::AssignmentMode::{Add, Replace};

#[test]
fn r02_bought_seats_are_assignable_in_the_same_plan() {
    let o = observed(
        &[("s", "SPB", 1)],
        &[("a@contoso.com", &[]), ("b@contoso.com", &[])],
    );
    let d = Desired {
        subscriptions: vec![subscription("spb", "s", "SPB", 2)],
        assignments: vec![assignment(
            "la",
            50,
            &["a@contoso.com", "b@contoso.com"],
            "SPB",
            Add,
        )],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(p.actions[0].phase, Phase::Buy);
    assert_eq!(
        changes(&p).len(),
        2,
        "both users, with the seat bought first"
    );
}

#[test]
fn r16_users_wait_pending_without_free_seats() {
    let o = observed(
        &[("s", "SPB", 1)],
        &[("a@contoso.com", &[]), ("b@contoso.com", &[])],
    );
    let d = Desired {
        assignments: vec![assignment(
            "la",
            50,
            &["a@contoso.com", "b@contoso.com"],
            "SPB",
            Add,
        )],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(changes(&p).len(), 1);
    let s = &p.assignments[0];
    assert_eq!(
        (s.pending, s.blocked),
        (2, 0),
        "one waits to be assigned, one for a seat"
    );
    assert_eq!(s.users[1].reason.as_deref(), Some("InsufficientSeats"));
}

#[test]
fn r19_add_mode_never_removes_a_licence_it_did_not_assign() {
    let o = observed(
        &[("s", "SPB", 2), ("e", "EXCHANGESTANDARD", 2)],
        &[("a@contoso.com", &["EXCHANGESTANDARD"])],
    );
    let d = Desired {
        assignments: vec![assignment("la", 50, &["a@contoso.com"], "SPB", Add)],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    let c = changes(&p);
    assert_eq!(
        c,
        vec![("a@contoso.com".into(), vec!["SPB".into()], vec![])]
    );
}

#[test]
fn r20_unassigning_never_lowers_seats() {
    let o = observed(&[("s", "SPB", 3)], &[("a@contoso.com", &["SPB"])]);
    let mut la = assignment("la", 50, &["b@contoso.com"], "SPB", Add);
    la.status.owned = vec![resources::OwnedLicence {
        user: "a@contoso.com".into(),
        product: "SPB".into(),
    }];
    let d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a.op, Op::SetSeats { .. }))
    );
}

#[test]
fn r26_replace_moves_nobody_until_everyone_can_move() {
    let users: &[(&str, &[&str])] = &[
        ("a@contoso.com", &["O365_BUSINESS_PREMIUM"]),
        ("b@contoso.com", &["O365_BUSINESS_PREMIUM"]),
    ];
    let o = observed(
        &[("bs", "O365_BUSINESS_PREMIUM", 2), ("spb", "SPB", 1)],
        users,
    );
    let d = Desired {
        assignments: vec![assignment(
            "move",
            50,
            &["a@contoso.com", "b@contoso.com"],
            "SPB",
            Replace,
        )],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(
        changes(&p).is_empty(),
        "1 free licence for 2 users: nobody moves"
    );
    assert_eq!(p.assignments[0].pending, 2);
    let o = observed(
        &[("bs", "O365_BUSINESS_PREMIUM", 2), ("spb", "SPB", 2)],
        users,
    );
    let p = plan(&d, &o, now(), &Options::default());
    let moved = changes(&p);
    assert_eq!(moved.len(), 2);
    assert!(
        moved
            .iter()
            .all(|(_, add, remove)| add == &["SPB"] && remove == &["O365_BUSINESS_PREMIUM"]),
        "each user's add and remove in one change (make-before-break)"
    );
}

#[test]
fn r29_users_may_hold_different_plans() {
    let o = observed(
        &[("s", "SPB", 1), ("e", "SPE_E3", 1)],
        &[("a@contoso.com", &[]), ("b@contoso.com", &[])],
    );
    let d = Desired {
        assignments: vec![
            assignment("a", 50, &["a@contoso.com"], "SPB", Add),
            assignment("b", 40, &["b@contoso.com"], "SPE_E3", Add),
        ],
        ..Default::default()
    };
    assert_eq!(changes(&plan(&d, &o, now(), &Options::default())).len(), 2);
}

#[test]
fn duplicate_assignment_the_older_claim_wins() {
    let o = observed(&[("s", "SPB", 2)], &[("a@contoso.com", &[])]);
    let mut younger = assignment("younger", 10, &["a@contoso.com"], "SPB", Add);
    younger.spec.licenses[0].disabled_plans = vec!["SWAY".into()];
    let d = Desired {
        assignments: vec![
            younger,
            assignment("older", 50, &["a@contoso.com"], "SPB", Add),
        ],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        p.assignments[0].blocked_reason.as_deref(),
        Some("DuplicateAssignment")
    );
    assert_eq!(changes(&p).len(), 1);
}

#[test]
fn refusals_met_earlier_in_a_run_keep_the_resource_blocked_and_changing_nothing() {
    let o = observed(&[("s", "SPB", 5)], &[]);
    let d = Desired {
        subscriptions: vec![subscription("spb", "s", "SPB", 7)],
        ..Default::default()
    };
    let mut refusals = Refusals::default();
    let block = Block::from(Refusal::CreditCheckPending { clears_at: None });
    refusals.resources.insert(
        ObjectRef::of(Kind::Subscription, &d.subscriptions[0].meta),
        block,
    );
    let p = plan_with(&d, &o, now(), &Options::default(), &refusals);
    assert!(p.actions.is_empty());
    assert_eq!(
        p.subscriptions[0].blocked_reason.as_deref(),
        Some("CreditCheckPending")
    );
}

#[test]
fn purchase_keys_keep_their_wire_format() {
    // Keys written by earlier versions must still be recognised: never change this format.
    let m = meta("new", 0);
    assert_eq!(
        purchase_key(Kind::Subscription, &m, "contoso.com"),
        "seatkeeper:contoso.com:Subscription:team-a/new:uid-new"
    );
    assert_eq!(
        purchase_key(Kind::AddOn, &m, "contoso.com"),
        "seatkeeper:contoso.com:AddOn:team-a/new:uid-new"
    );
}
