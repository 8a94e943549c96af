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
            term: Default::default(),
            offer: None,
            recurring_billing: true,
            product_key: None,
            convert_trial: false,
            deletion_policy: Default::default(),
            autoscale: None,
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
            user_selector: None,
            groups: vec![],
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
fn r03_where_the_service_decides_credit_checks_a_plan_promises_no_spending() {
    // Partner Center runs its credit check when the increase arrives: the plan marks it.
    let mut o = observed(&[("s", "SPB", 5), ("t", "O365_BUSINESS_PREMIUM", 9)], &[]);
    o.organizations
        .get_mut("contoso.com")
        .unwrap()
        .credit_check_by_service = true;
    let d = Desired {
        subscriptions: vec![
            subscription("up", "s", "SPB", 7),
            subscription("down", "t", "O365_BUSINESS_PREMIUM", 8),
        ],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    let undecided: Vec<(&str, bool)> = p
        .actions
        .iter()
        .filter(|a| matches!(a.op, Op::SetSeats { .. }))
        .map(|a| (a.name.as_str(), a.decided_by_service.is_some()))
        .collect();
    assert_eq!(
        undecided,
        [("up", true), ("down", false)],
        "only spending waits on the service"
    );
    // The simulator knows its credit checks: nothing is undecided there.
    o.organizations
        .get_mut("contoso.com")
        .unwrap()
        .credit_check_by_service = false;
    let p = plan(&d, &o, now(), &Options::default());
    assert!(p.actions.iter().all(|a| a.decided_by_service.is_none()));
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

fn autoscaled(
    seats: i32,
    max_seats: i32,
    headroom: i32,
) -> Declared<SubscriptionIntent, SubscriptionStatus> {
    let mut d = subscription("spb", "s", "SPB", seats);
    d.spec.autoscale = Some(resources::Autoscale {
        max_seats,
        headroom,
    });
    d
}

fn seat_changes(p: &Plan) -> Vec<(u32, u32)> {
    p.actions
        .iter()
        .filter_map(|a| match &a.op {
            Op::SetSeats { cost, .. } => Some((cost.from, cost.to)),
            _ => None,
        })
        .collect()
}

/// 5 users hold all 5 seats; 3 new hires are listed.
fn onboarding() -> (
    Observed,
    Declared<AssignmentIntent, LicenseAssignmentStatus>,
) {
    let users: Vec<(String, bool)> = (0..8)
        .map(|i| (format!("u{i}@contoso.com"), i < 5))
        .collect();
    let list: Vec<(&str, &[&str])> = users
        .iter()
        .map(|(u, held)| (u.as_str(), if *held { &["SPB"][..] } else { &[][..] }))
        .collect();
    let o = observed(&[("s", "SPB", 5)], &list);
    let new: Vec<&str> = users[5..].iter().map(|(u, _)| u.as_str()).collect();
    (o, assignment("hires", 50, &new, "SPB", Add))
}

#[test]
fn autoscale_buys_demand_plus_headroom_and_assigns_in_the_same_plan() {
    let (o, la) = onboarding();
    let d = Desired {
        subscriptions: vec![autoscaled(5, 50, 2)],
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(seat_changes(&p), vec![(5, 10)], "3 new users + 2 headroom");
    assert_eq!(changes(&p).len(), 3, "all three assigned in the same plan");
    let s = &p.subscriptions[0];
    assert_eq!(s.seats.as_ref().unwrap().desired, 10);
    let a = s.autoscale.as_ref().unwrap();
    assert_eq!((a.demand, a.target), (8, 10));
}

#[test]
fn autoscale_max_seats_caps_and_waiting_users_are_told_the_cap() {
    let (o, la) = onboarding();
    let d = Desired {
        subscriptions: vec![autoscaled(5, 6, 2)],
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(seat_changes(&p), vec![(5, 6)]);
    assert_eq!(changes(&p).len(), 1);
    let s = &p.assignments[0];
    assert_eq!(
        s.pending, 3,
        "one about to be assigned, two waiting for a seat"
    );
    let waiting = s
        .users
        .iter()
        .find(|u| u.reason.as_deref() == Some("InsufficientSeats"));
    let msg = waiting.unwrap().message.clone().unwrap();
    assert!(msg.contains("maxSeats 6"), "{msg}");
}

#[test]
fn autoscale_counts_the_products_other_subscriptions() {
    let (mut o, la) = onboarding();
    let org = o.organizations.get_mut("contoso.com").unwrap();
    let mut other = org.subscriptions[0].clone();
    other.id = "other".into();
    other.seats = 10;
    org.subscriptions.push(other);
    let d = Desired {
        subscriptions: vec![autoscaled(5, 50, 2)],
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(
        seat_changes(&p).is_empty(),
        "15 seats cover 8 users + 2 headroom"
    );
    assert_eq!(changes(&p).len(), 3);
    assert_eq!(
        p.subscriptions[0].autoscale.as_ref().unwrap().target,
        5,
        "the floor"
    );
}

#[test]
fn autoscale_lowers_seats_only_inside_the_reduction_window() {
    let users: &[(&str, &[&str])] = &[("a@contoso.com", &["SPB"]), ("b@contoso.com", &["SPB"])];
    let mut o = observed(&[("s", "SPB", 10)], users);
    let term_end = now() + jiff::SignedDuration::from_hours(24 * 200);
    {
        let sub = &mut o
            .organizations
            .get_mut("contoso.com")
            .unwrap()
            .subscriptions[0];
        sub.reduction_window_ends_at = Some(now() + jiff::SignedDuration::from_hours(1));
        sub.term_ends_at = Some(term_end);
        sub.recurring_billing = true;
    }
    let d = Desired {
        subscriptions: vec![autoscaled(1, 50, 1)],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        seat_changes(&p),
        vec![(10, 3)],
        "inside the window: down to demand + headroom"
    );

    let later = now() + jiff::SignedDuration::from_hours(2);
    let p = plan(&d, &o, later, &Options::default());
    assert!(
        p.actions.is_empty(),
        "outside the window the reduction is never attempted: {:?}",
        p.actions
    );
    let s = &p.subscriptions[0];
    assert_eq!(
        s.blocked_reason, None,
        "an autoscaled reduction waits, it is not Blocked"
    );
    let a = s.autoscale.as_ref().unwrap();
    assert_eq!(a.target, 3);
    assert_eq!(a.next_reduction_at, Some(term_end));
    assert!(
        a.waiting
            .as_deref()
            .unwrap()
            .contains("7 seat(s) above the target")
    );
}

#[test]
fn explicit_reduction_after_the_window_is_blocked_reduction_window_closed() {
    let mut o = observed(&[("s", "SPB", 10)], &[]);
    o.organizations
        .get_mut("contoso.com")
        .unwrap()
        .subscriptions[0]
        .reduction_window_ends_at = Some(now() - jiff::SignedDuration::from_hours(1));
    let d = Desired {
        subscriptions: vec![subscription("spb", "s", "SPB", 8)],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(p.actions.is_empty());
    assert_eq!(
        p.subscriptions[0].blocked_reason.as_deref(),
        Some("ReductionWindowClosed")
    );
}

#[test]
fn autoscale_raises_through_the_purchase_guard() {
    let (o, la) = onboarding();
    let d = Desired {
        subscriptions: vec![autoscaled(5, 50, 20)],
        assignments: vec![la],
        ..Default::default()
    };
    let options = Options {
        max_seat_increase: 10,
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &options);
    assert!(
        seat_changes(&p).is_empty(),
        "23 more seats is over the limit of 10"
    );
    assert_eq!(
        p.subscriptions[0].blocked_reason.as_deref(),
        Some("PurchaseLimitExceeded")
    );
}

#[test]
fn autoscale_a_user_leaving_as_another_joins_buys_no_seat() {
    // a holds the licence through this resource; the list now names b instead (a leaves the
    // company: losing the mailbox is acknowledged, R28).
    let o = observed(
        &[("s", "SPB", 2)],
        &[("a@contoso.com", &["SPB"]), ("b@contoso.com", &[])],
    );
    let mut la = assignment("la", 50, &["b@contoso.com"], "SPB", Add);
    la.meta.flags.acknowledge_downgrade = true;
    la.status.owned = vec![resources::OwnedLicence {
        user: "a@contoso.com".into(),
        product: "SPB".into(),
    }];
    let d = Desired {
        subscriptions: vec![autoscaled(1, 50, 1)],
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(seat_changes(&p).is_empty(), "{:?}", p.actions);
    assert_eq!(p.subscriptions[0].autoscale.as_ref().unwrap().demand, 1);
    assert_eq!(changes(&p).len(), 2, "b assigned, a's licence removed");
}

#[test]
fn autoscale_buys_no_seat_for_a_user_who_cannot_be_licensed() {
    // c has no usage location: listed, but no licence can be assigned, so no seat is bought.
    let mut o = observed(
        &[("s", "SPB", 1)],
        &[
            ("a@contoso.com", &["SPB"]),
            ("b@contoso.com", &[]),
            ("c@contoso.com", &[]),
        ],
    );
    o.organizations.get_mut("contoso.com").unwrap().users[2].usage_location = None;
    let d = Desired {
        subscriptions: vec![autoscaled(1, 50, 0)],
        assignments: vec![assignment(
            "la",
            50,
            &["b@contoso.com", "c@contoso.com", "ghost@contoso.com"],
            "SPB",
            Add,
        )],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(seat_changes(&p), vec![(1, 2)], "a and b only");
    assert_eq!(p.subscriptions[0].autoscale.as_ref().unwrap().demand, 2);
    assert_eq!(changes(&p).len(), 1);
    // The resource's message names the blocked user once.
    let blocked = p.assignments[0]
        .conditions
        .0
        .iter()
        .find(|c| c.type_ == "Blocked")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(blocked.matches("c@contoso.com").count(), 1, "{blocked}");
}

#[test]
fn r19_ownership_records_a_whole_batch_of_users_at_once() {
    use resources::OwnedLicence;
    let owned = |user: &str, product: &str| OwnedLicence {
        user: user.into(),
        product: product.into(),
    };
    let mut list = vec![
        owned("Ann@contoso.com", "SPE_E3"),
        owned("bob@contoso.com", "SPE_E3"),
        owned("cy@contoso.com", "SPE_E3"),
    ];
    // Ann moves from E3 to E5 (her E3 removal matches whatever the case), Bob gains Visio,
    // Dee is new; an entry already on record is not doubled.
    let changes = [
        UserChange {
            user: "ann@contoso.com".into(),
            add: vec![Licence::new("SPE_E5", &[])],
            remove: vec!["SPE_E3".into()],
            plans_only: vec![],
        },
        UserChange {
            user: "bob@contoso.com".into(),
            add: vec![Licence::new("VISIOCLIENT", &[])],
            remove: vec![],
            plans_only: vec![],
        },
        UserChange {
            user: "dee@contoso.com".into(),
            add: vec![Licence::new("SPE_E3", &[])],
            remove: vec![],
            plans_only: vec![],
        },
        UserChange {
            user: "cy@contoso.com".into(),
            add: vec![Licence::new("SPE_E3", &[])],
            remove: vec![],
            plans_only: vec![],
        },
    ];
    let added = vec![
        vec!["SPE_E5".to_string()],
        vec!["VISIOCLIENT".to_string()],
        vec!["SPE_E3".to_string()],
        vec!["SPE_E3".to_string()],
    ];
    record_owned(&mut list, changes.iter().zip(&added));
    assert_eq!(
        list,
        vec![
            owned("ann@contoso.com", "SPE_E5"),
            owned("bob@contoso.com", "SPE_E3"),
            owned("bob@contoso.com", "VISIOCLIENT"),
            owned("cy@contoso.com", "SPE_E3"),
            owned("dee@contoso.com", "SPE_E3"),
        ]
    );
}

fn deleted(p: &Plan) -> Vec<String> {
    p.deleted.iter().map(|r| r.name.clone()).collect()
}

#[test]
fn deleting_what_bought_nothing_completes_whatever_blocks_it() {
    let o = observed(&[("s", "SPB", 2)], &[("a@contoso.com", &[])]);
    // An unknown product, never bought (Orphan by default; Cancel with nothing on record).
    let mut unknown = subscription("nope", "sub-x", "NOPE", 1);
    unknown.spec.subscription_id = None;
    unknown.meta.deleting = true;
    let mut cancel = unknown.clone();
    cancel.meta.name = "nope-cancel".into();
    cancel.spec.deletion_policy = resources::SubscriptionDeletionPolicy::Cancel;
    let mut la = assignment("la", 50, &["a@contoso.com"], "NOPE", Add);
    la.meta.deleting = true;
    let d = Desired {
        subscriptions: vec![unknown, cancel],
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(deleted(&p), ["nope", "nope-cancel", "la"]);
    assert_eq!(
        deletion::releasable(&d).len(),
        3,
        "the controller lets them go before asking the service anything"
    );
}

#[test]
fn deleting_in_a_namespace_that_may_not_act_waits_with_a_way_out() {
    let o = observed(&[("s", "SPB", 2)], &[]);
    let mut sub = subscription("bought", "s", "SPB", 2);
    sub.spec.deletion_policy = resources::SubscriptionDeletionPolicy::Cancel;
    sub.status.subscription_id = Some("s".into());
    sub.meta.deleting = true;
    let mut d = Desired {
        subscriptions: vec![sub],
        namespaces: BTreeMap::from([("team-a".to_string(), Some("fabrikam.com".to_string()))]),
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(p.deleted.is_empty() && p.actions.is_empty());
    assert_eq!(
        p.subscriptions[0].blocked_reason.as_deref(),
        Some("OrganizationNotPermitted")
    );
    let message = &p.subscriptions[0]
        .conditions
        .get("Blocked")
        .unwrap()
        .message;
    assert!(
        message.starts_with("deletion waits: ")
            && message.contains("seatkeeper.dev/abandon-on-delete"),
        "{message}"
    );
    // Abandoned: it goes, and nothing is cancelled.
    d.subscriptions[0].meta.flags.abandon_on_delete = true;
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(deleted(&p), ["bought"]);
    assert!(p.actions.is_empty());
}

#[test]
fn deleting_a_license_assignment_retain_or_unassign_of_what_it_owns() {
    let o = observed(
        &[("s", "SPB", 2), ("x", "EXCHANGESTANDARD", 2)],
        &[("a@contoso.com", &["SPB", "EXCHANGESTANDARD"])],
    );
    let mut la = assignment("la", 50, &["a@contoso.com"], "SPB", Add);
    la.meta.deleting = true;
    la.status.owned = vec![resources::OwnedLicence {
        user: "a@contoso.com".into(),
        product: "SPB".into(),
    }];
    la.spec.deletion_policy = resources::AssignmentDeletionPolicy::Retain;
    let mut d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(deleted(&p), ["la"], "Retain: gone at once");
    assert!(p.actions.is_empty());
    d.assignments[0].spec.deletion_policy = resources::AssignmentDeletionPolicy::Unassign;
    let p = plan(&d, &o, now(), &Options::default());
    assert!(p.deleted.is_empty(), "Unassign removes what it owns first");
    assert_eq!(changes(&p).len(), 1, "{:?}", p.actions);
}

#[test]
fn an_unknown_subscription_id_is_answered_with_the_tenants_subscriptions_of_that_product() {
    let o = observed(
        &[
            ("8f1c-spb", "SPB", 5),
            ("2d7e-spb", "SPB", 3),
            ("e3", "SPE_E3", 9),
        ],
        &[],
    );
    let d = Desired {
        subscriptions: vec![
            subscription("spb", "sub-premium", "SPB", 5),
            subscription("exchange", "sub-exchange", "EXCHANGESTANDARD", 1),
        ],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    let said = |i: usize| {
        let s = &p.subscriptions[i];
        assert_eq!(s.blocked_reason.as_deref(), Some("SubscriptionNotFound"));
        s.conditions.get("Blocked").unwrap().message.clone()
    };
    let spb = said(0);
    assert!(
        spb.contains("8f1c-spb (5 seats") && spb.contains("2d7e-spb (3 seats"),
        "{spb}"
    );
    assert!(!spb.contains("e3 ("), "only the same product: {spb}");
    assert!(spb.contains("set spec.subscriptionId"), "{spb}");
    let exchange = said(1);
    assert!(
        exchange.contains("no subscription of EXCHANGESTANDARD"),
        "{exchange}"
    );
    assert!(p.actions.is_empty(), "nothing bought: {:?}", p.actions);
}

#[test]
fn r19_adopt_licences_owns_what_users_hold_directly_and_nothing_else() {
    let mut o = observed(
        &[("s", "SPB", 5)],
        &[
            ("a@contoso.com", &["SPB"]),
            ("b@contoso.com", &["SPB"]),
            ("c@contoso.com", &[]),
        ],
    );
    // b's licence is inherited from a group: never adopted.
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.users[1].licenses[0].by_group = true;
    let mut la = assignment(
        "la",
        50,
        &["a@contoso.com", "b@contoso.com", "c@contoso.com"],
        "SPB",
        Add,
    );
    la.meta.flags.adopt_licences = true;
    let d = Desired {
        assignments: vec![la.clone()],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    let owned: Vec<&str> = p.assignments[0]
        .owned
        .iter()
        .map(|o| o.user.as_str())
        .collect();
    assert_eq!(owned, ["a@contoso.com"], "held directly: adopted");
    // c gets the licence assigned as any new one (owned once assigned, by the executor).
    assert_eq!(
        changes(&p),
        vec![("c@contoso.com".into(), vec!["SPB".into()], vec![])]
    );
    // Without the annotation nothing is adopted: dropping a would remove nothing.
    la.meta.flags.adopt_licences = false;
    let d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    assert!(
        plan(&d, &o, now(), &Options::default()).assignments[0]
            .owned
            .is_empty()
    );
}

/// Users u0… with a department each (`None`: none), all in NL, holding nothing.
fn directory(departments: &[Option<&str>], seats: u32) -> Observed {
    let users: Vec<(String, &[&str])> = (0..departments.len())
        .map(|i| (format!("u{i}@contoso.com"), &[][..]))
        .collect();
    let list: Vec<(&str, &[&str])> = users.iter().map(|(u, l)| (u.as_str(), *l)).collect();
    let mut o = observed(&[("s", "SPB", seats)], &list);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    for (u, d) in org.users.iter_mut().zip(departments) {
        u.department = d.map(String::from);
    }
    o
}

fn selecting(
    name: &str,
    users: &[&str],
    selector: resources::UserSelector,
) -> Declared<AssignmentIntent, LicenseAssignmentStatus> {
    let mut la = assignment(name, 50, users, "SPB", Add);
    la.spec.user_selector = Some(selector);
    la
}

/// `matchAttributes: {key: value}`.
fn attribute(key: &str, value: &str) -> resources::UserSelector {
    resources::UserSelector {
        match_attributes: BTreeMap::from([(key.to_string(), value.to_string())]),
        ..Default::default()
    }
}

/// `matchExpressions: [{key, operator, values}]`.
fn expression(
    key: crate::domain::UserAttribute,
    operator: resources::SelectorOperator,
    values: &[&str],
) -> resources::UserSelector {
    resources::UserSelector {
        match_expressions: vec![resources::AttributeRequirement {
            key,
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
        ..Default::default()
    }
}

fn assigned_users(p: &Plan) -> Vec<String> {
    let mut users: Vec<String> = changes(p)
        .into_iter()
        .filter(|(_, add, _)| !add.is_empty())
        .map(|(u, _, _)| u)
        .collect();
    users.sort();
    users
}

#[test]
fn user_selector_licenses_the_matching_users_with_the_listed_ones_and_counts_them() {
    let mut o = directory(
        &[Some("Sales"), Some("sales"), Some("R&D"), Some("Sales")],
        10,
    );
    // u1 is in Sales but disabled: left out, as the selector does not name accountEnabled.
    o.organizations.get_mut("contoso.com").unwrap().users[1].account_enabled = false;
    let d = Desired {
        assignments: vec![selecting(
            "sales",
            &["u2@contoso.com", "u3@contoso.com"],
            attribute("department", "Sales"),
        )],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        assigned_users(&p),
        ["u0@contoso.com", "u2@contoso.com", "u3@contoso.com"],
        "the union, each once"
    );
    let s = &p.assignments[0];
    assert_eq!(s.matched, Some(2), "u0 and u3 match");
    assert_eq!(s.desired_users, 3);
}

#[test]
fn user_selector_expressions_follow_the_label_selector_operators() {
    use crate::domain::User;
    use crate::domain::UserAttribute::Country;
    use resources::SelectorOperator::{DoesNotExist, Exists, In, NotIn};
    let user = |country: Option<&str>, guest: bool| User {
        upn: "a@contoso.com".into(),
        country: country.map(String::from),
        guest,
        ..Default::default()
    };
    let (nl, be, none) = (
        user(Some("NL"), false),
        user(Some("BE"), true),
        user(None, false),
    );
    let r#in = expression(Country, In, &["nl", "DE"]);
    assert!(r#in.matches(&nl) && !r#in.matches(&be) && !r#in.matches(&none));
    let not_in = expression(Country, NotIn, &["NL"]);
    assert!(!not_in.matches(&nl) && not_in.matches(&be) && not_in.matches(&none));
    let exists = expression(Country, Exists, &[]);
    assert!(exists.matches(&nl) && !exists.matches(&none));
    let absent = expression(Country, DoesNotExist, &[]);
    assert!(!absent.matches(&nl) && absent.matches(&none));
    let guests = attribute("userType", "Guest");
    assert!(guests.matches(&be) && !guests.matches(&nl));
    // Naming accountEnabled selects disabled accounts on purpose.
    let mut disabled = user(Some("NL"), false);
    disabled.account_enabled = false;
    assert!(
        !r#in.matches(&disabled),
        "disabled accounts are left out by default"
    );
    let offboard = attribute("accountEnabled", "false");
    assert!(offboard.matches(&disabled) && !offboard.matches(&nl));
}

#[test]
fn r19_a_user_who_stops_matching_loses_what_the_resource_assigned_within_the_removal_limit() {
    let mut o = directory(&[Some("Sales"), Some("Marketing")], 10);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    for u in &mut org.users {
        u.licenses = vec![Licence::new("SPB", &[])];
    }
    let mut la = selecting("sales", &[], attribute("department", "Sales"));
    la.meta.flags.acknowledge_downgrade = true;
    // Both were selected when it assigned them; u1 has moved to Marketing since.
    la.status.owned = ["u0@contoso.com", "u1@contoso.com"]
        .map(|u| resources::OwnedLicence {
            user: u.into(),
            product: "SPB".into(),
        })
        .to_vec();
    let d = Desired {
        assignments: vec![la.clone()],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        changes(&p),
        vec![("u1@contoso.com".into(), vec![], vec!["SPB".into()])],
        "u1 loses SPB; u0 keeps it"
    );
    // Past the removal limit nothing goes.
    let strict = Options {
        max_removals: 0,
        ..Options::default()
    };
    let p = plan(&d, &o, now(), &strict);
    assert!(changes(&p).is_empty());
    assert_eq!(
        p.assignments[0].blocked_reason.as_deref(),
        Some("RemovalLimitExceeded")
    );
}

#[test]
fn autoscale_buys_seats_for_the_users_a_selector_selects() {
    let o = directory(&[Some("Sales"), Some("Sales"), Some("Sales"), None], 1);
    let d = Desired {
        subscriptions: vec![autoscaled(1, 50, 1)],
        assignments: vec![selecting("sales", &[], attribute("department", "Sales"))],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        seat_changes(&p),
        vec![(1, 4)],
        "3 selected users + 1 headroom"
    );
    assert_eq!(assigned_users(&p).len(), 3, "assigned in the same plan");
}

/// u0… in group `sales` (object id g-sales), SPB with `seats`; group licences processed.
fn grouped(members: usize, seats: u32) -> Observed {
    let mut o = directory(&vec![Some("Sales"); members], seats);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.groups.push(crate::domain::Group {
        id: Some("g-sales".into()),
        name: "sales".into(),
        members: (0..members).map(|i| format!("u{i}@contoso.com")).collect(),
        licenses: vec![],
        processing: false,
    });
    o
}

fn for_group(group: &str) -> Declared<AssignmentIntent, LicenseAssignmentStatus> {
    let mut la = assignment("sales", 50, &[], "SPB", Add);
    la.spec.groups = vec![group.into()];
    la
}

/// (group, products added, products removed, members gaining, members losing).
type GroupOp = (String, Vec<String>, Vec<String>, u32, usize);

fn group_ops(p: &Plan) -> Vec<GroupOp> {
    p.actions
        .iter()
        .filter_map(|a| match &a.op {
            Op::AssignGroupLicences {
                group,
                add,
                remove,
                members_gaining,
                members_losing,
                ..
            } => Some((
                group.clone(),
                add.iter().map(|l| l.product.clone()).collect(),
                remove.clone(),
                *members_gaining,
                members_losing.len(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn group_licence_is_given_to_the_group_once_every_member_has_a_seat() {
    let o = grouped(3, 5);
    let d = Desired {
        assignments: vec![for_group("sales")],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        group_ops(&p),
        vec![("g-sales".into(), vec!["SPB".into()], vec![], 3, 0)]
    );
    assert_eq!(p.actions[0].phase, Phase::Groups);
    let g = &p.assignments[0].groups[0];
    assert_eq!((g.group.as_str(), g.members, g.licensed), ("sales", 3, 0));
    // By object id, the same group.
    let p = plan(
        &Desired {
            assignments: vec![for_group("g-sales")],
            ..Default::default()
        },
        &o,
        now(),
        &Options::default(),
    );
    assert_eq!(group_ops(&p).len(), 1);
}

#[test]
fn a_group_still_being_processed_changes_nothing_and_says_so() {
    let mut o = grouped(3, 5);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.groups[0].processing = true;
    let d = Desired {
        assignments: vec![for_group("sales")],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(
        group_ops(&p).is_empty(),
        "nothing decided from half-processed members"
    );
    let s = &p.assignments[0];
    assert_eq!(s.blocked_reason, None);
    let ready = s.conditions.get("Ready").unwrap();
    assert_eq!(ready.reason, "Reconciling");
    assert!(
        ready.message.contains("still processing group sales"),
        "{ready:?}"
    );
}

#[test]
fn r16_a_group_licence_waits_for_seats_for_all_members_and_autoscaling_buys_them() {
    let o = grouped(3, 2);
    let d = Desired {
        assignments: vec![for_group("sales")],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(group_ops(&p).is_empty(), "nobody left in CountViolation");
    let s = &p.assignments[0];
    assert_eq!(s.blocked_reason.as_deref(), Some("InsufficientSeats"));
    assert!(
        s.groups[0]
            .message
            .as_deref()
            .unwrap()
            .contains("3 members are without SPB"),
        "{:?}",
        s.groups[0]
    );
    let d = Desired {
        subscriptions: vec![autoscaled(2, 50, 0)],
        assignments: vec![for_group("sales")],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(seat_changes(&p), vec![(2, 3)], "a seat per member");
    assert_eq!(group_ops(&p).len(), 1, "assigned in the same plan");
}

#[test]
fn group_licensing_without_entra_p1_is_blocked_naming_it() {
    let mut o = grouped(2, 5);
    // Business Standard has no Entra ID P1.
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.subscriptions[0].product = "O365_BUSINESS_PREMIUM".into();
    let mut la = for_group("sales");
    la.spec.licenses[0].product = "O365_BUSINESS_PREMIUM".into();
    let d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(group_ops(&p).is_empty());
    let s = &p.assignments[0];
    assert_eq!(
        s.blocked_reason.as_deref(),
        Some("GroupLicensingUnavailable")
    );
    assert!(
        s.conditions
            .0
            .iter()
            .any(|c| c.message.contains("Microsoft Entra ID P1")),
        "{:?}",
        s.conditions
    );
}

#[test]
fn an_unknown_group_blocks_the_resource_and_removes_nothing() {
    let o = grouped(2, 5);
    let mut la = for_group("sales-team");
    la.status.owned_groups = vec![resources::OwnedGroupLicence {
        group: "g-sales".into(),
        product: "SPB".into(),
    }];
    let d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(group_ops(&p).is_empty());
    assert_eq!(
        p.assignments[0].blocked_reason.as_deref(),
        Some("GroupNotFound")
    );
}

/// The group holds SPB (given by the resource), every member inherits it.
fn licensed_group(
    members: usize,
) -> (
    Observed,
    Declared<AssignmentIntent, LicenseAssignmentStatus>,
) {
    let mut o = grouped(members, 10);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.groups[0].licenses = vec![Licence::new("SPB", &[])];
    crate::domain::groups::process(org, &Catalog::builtin(), now());
    let mut la = assignment("sales", 50, &["u0@contoso.com"], "SPB", Add);
    la.status.owned_groups = vec![resources::OwnedGroupLicence {
        group: "g-sales".into(),
        product: "SPB".into(),
    }];
    (o, la)
}

#[test]
fn r19_dropping_a_group_removes_its_licence_counting_every_member_against_the_removal_limit() {
    let (o, mut la) = licensed_group(3);
    la.meta.flags.acknowledge_downgrade = true;
    let d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    // u0 is also listed: SPB is assigned to u0 directly first, in the licence phase before
    // the group's goes (make-before-break; a direct and an inherited licence are one seat),
    // so two members lose it.
    assert_eq!(
        group_ops(&p),
        vec![("g-sales".into(), vec![], vec!["SPB".into()], 0, 2)]
    );
    assert_eq!(
        changes(&p),
        vec![("u0@contoso.com".into(), vec!["SPB".into()], vec![])]
    );
    let strict = Options {
        max_removals: 1,
        ..Options::default()
    };
    let p = plan(&d, &o, now(), &strict);
    assert!(group_ops(&p).is_empty(), "2 members over a limit of 1");
    assert_eq!(
        p.assignments[0].blocked_reason.as_deref(),
        Some("RemovalLimitExceeded")
    );
}

#[test]
fn r28_a_group_removal_leaving_members_without_data_waits_for_an_acknowledgement() {
    let (o, la) = licensed_group(2);
    let d = Desired {
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(group_ops(&p).is_empty());
    let s = &p.assignments[0];
    assert_eq!(
        s.blocked_reason.as_deref(),
        Some("DowngradeNotAcknowledged")
    );
    assert!(
        s.conditions
            .0
            .iter()
            .any(|c| c.message.contains("group sales")),
        "{:?}",
        s.conditions
    );
}

#[test]
fn members_in_count_violation_are_blocked_per_group_and_count_as_autoscale_demand() {
    let mut o = grouped(3, 2);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.groups[0].licenses = vec![Licence::new("SPB", &[])];
    crate::domain::groups::process(org, &Catalog::builtin(), now());
    let mut la = for_group("sales");
    la.status.owned_groups = vec![resources::OwnedGroupLicence {
        group: "g-sales".into(),
        product: "SPB".into(),
    }];
    let d = Desired {
        assignments: vec![la.clone()],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    let g = &p.assignments[0].groups[0];
    assert_eq!((g.members, g.licensed, g.blocked), (3, 2, 1));
    assert_eq!(g.errors[0].user, "u2@contoso.com");
    assert_eq!(g.errors[0].reason.as_deref(), Some("InsufficientSeats"));
    assert!(
        g.errors[0]
            .message
            .as_deref()
            .unwrap()
            .contains("CountViolation")
    );
    assert_eq!(
        p.assignments[0].blocked_reason.as_deref(),
        Some("InsufficientSeats")
    );
    let d = Desired {
        subscriptions: vec![autoscaled(2, 50, 0)],
        assignments: vec![la],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(
        seat_changes(&p),
        vec![(2, 3)],
        "the member in error gets a seat"
    );
}

#[test]
fn member_of_selects_the_members_of_a_group_for_direct_licences() {
    let mut o = grouped(2, 10);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    org.users.push(User {
        upn: "outsider@contoso.com".into(),
        usage_location: Some("NL".into()),
        department: Some("Sales".into()),
        ..Default::default()
    });
    let mut sel = attribute("department", "Sales");
    sel.member_of = vec!["sales".into()];
    let d = Desired {
        assignments: vec![selecting("sales", &[], sel.clone())],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(assigned_users(&p), ["u0@contoso.com", "u1@contoso.com"]);
    assert!(
        group_ops(&p).is_empty(),
        "direct licences, no group licence"
    );
    // An unknown group selects nobody and removes nothing.
    sel.member_of = vec!["nobody".into()];
    let d = Desired {
        assignments: vec![selecting("sales", &[], sel)],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert!(changes(&p).is_empty());
    assert_eq!(
        p.assignments[0].blocked_reason.as_deref(),
        Some("GroupNotFound")
    );
}

/// (assignment index, product, users): the showback `seatkeeper report` sums per namespace.
fn held(p: &Plan) -> Vec<(usize, &str, u32)> {
    p.held
        .iter()
        .map(|h| (h.assignment, h.product.as_str(), h.users))
        .collect()
}

#[test]
fn showback_counts_a_licence_held_now_once_against_the_oldest_claim() {
    let o = observed(
        &[("s", "SPB", 10)],
        &[
            ("a@contoso.com", &["SPB"]),
            ("b@contoso.com", &["SPB"]),
            ("c@contoso.com", &["SPB"]),
            ("d@contoso.com", &[]),
            ("e@contoso.com", &["SPB"]),
        ],
    );
    let d = Desired {
        assignments: vec![
            assignment(
                "new",
                10,
                &["B@contoso.com", "c@contoso.com", "d@contoso.com"],
                "SPB",
                Add,
            ),
            assignment("old", 100, &["a@contoso.com", "b@contoso.com"], "SPB", Add),
        ],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    // b is claimed by the older resource; d holds nothing yet; e is nobody's.
    assert_eq!(held(&p), vec![(0, "SPB", 1), (1, "SPB", 2)]);
}

#[test]
fn showback_counts_the_members_holding_a_group_licence_against_the_group_s_resource() {
    let mut o = grouped(3, 5);
    let org = o.organizations.get_mut("contoso.com").unwrap();
    for u in &mut org.users {
        let mut l = Licence::new("SPB", &[]);
        l.by_group = true;
        u.licenses.push(l);
    }
    org.groups[0].licenses = vec![Licence::new("SPB", &[])];
    let d = Desired {
        assignments: vec![for_group("sales")],
        ..Default::default()
    };
    let p = plan(&d, &o, now(), &Options::default());
    assert_eq!(held(&p), vec![(0, "SPB", 3)]);
}
