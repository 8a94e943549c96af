//! Properties of the planner and executor over random tenants and manifests (proptest):
//! - no licence is removed unless the declared state asks for it (R19);
//! - no plan assigns more licences than the pool holds (R07/R11), so the service never has
//!   to refuse one for lack of seats;
//! - convergence reaches a fixed point within the pass limit: planning again changes nothing.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use seatkeeper::api::{AssignmentIntent, AssignmentMode, LicenseAssignmentStatus};
use seatkeeper::backend::embedded::{Embedded, TenantFile};
use seatkeeper::clock::FixedClock;
use seatkeeper::domain::Instant;
use seatkeeper::executor::{DEFAULT_MAX_PASSES, NoLedger, converge, observe};
use seatkeeper::planner::{self, Declared, Desired, Meta, Op, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const PRODUCTS: [&str; 3] = ["ENTERPRISEPACK", "SPE_E3", "O365_BUSINESS_PREMIUM"];

#[derive(Clone, Debug)]
struct Case {
    /// Per user: has a usage location; index into PRODUCTS of the licence held at the start.
    users: Vec<(bool, Option<usize>)>,
    /// Per product: free seats on top of those in use at the start.
    spare: [u32; 3],
    /// Per LicenseAssignment: members (user indexes), product, Replace mode, age order.
    assignments: Vec<(BTreeSet<usize>, usize, bool, u8)>,
    /// Per product: a declared Subscription with this seat count, or none.
    subscriptions: [Option<u32>; 3],
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..30).prop_flat_map(|n| {
        (
            prop::collection::vec((prop::bool::weighted(0.9), prop::option::of(0usize..3)), n),
            [0u32..6, 0u32..6, 0u32..6],
            prop::collection::vec(
                (
                    prop::collection::btree_set(0..n, 0..=n),
                    0usize..3,
                    prop::bool::weighted(0.3),
                    any::<u8>(),
                ),
                1..5,
            ),
            [
                prop::option::of(0u32..40),
                prop::option::of(0u32..40),
                prop::option::of(0u32..40),
            ],
        )
            .prop_map(|(users, spare, assignments, subscriptions)| Case {
                users,
                spare,
                assignments,
                subscriptions,
            })
    })
}

fn now() -> Instant {
    "2026-11-21T09:00:00Z".parse().unwrap()
}

fn upn(i: usize) -> String {
    format!("u{i}@contoso.com")
}

fn tenant(c: &Case) -> TenantFile {
    let mut yaml = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n",
    );
    let mut held = [0u32; 3];
    for (i, (located, licence)) in c.users.iter().enumerate() {
        yaml += &format!("  - upn: {}\n", upn(i));
        if *located {
            yaml += "    usageLocation: NL\n";
        }
        if let Some(p) = licence {
            held[*p] += 1;
            yaml += &format!("    licenses: [{{product: {}}}]\n", PRODUCTS[*p]);
        }
    }
    yaml += "  subscriptions:\n";
    for (p, product) in PRODUCTS.iter().enumerate() {
        yaml += &format!(
            "  - {{id: sub-{p}, product: {product}, seats: {}}}\n",
            held[p] + c.spare[p]
        );
    }
    TenantFile::parse(&yaml, "tenant.yaml").unwrap()
}

fn desired(c: &Case) -> Desired {
    let mut d = Desired::default();
    for (p, seats) in c.subscriptions.iter().enumerate() {
        if let Some(seats) = seats {
            d.subscriptions.push(Declared {
                meta: Meta {
                    namespace: "default".into(),
                    name: format!("sub-{p}"),
                    created_at: now(),
                    uid: format!("uid-sub-{p}"),
                    ..Default::default()
                },
                spec: serde_json::from_value(serde_json::json!({
                    "organization": "contoso.com", "product": PRODUCTS[p],
                    "subscriptionId": format!("sub-{p}"), "seats": seats
                }))
                .unwrap(),
                status: Default::default(),
            });
        }
    }
    for (i, (members, p, replace, age)) in c.assignments.iter().enumerate() {
        let users: Vec<String> = members.iter().map(|u| upn(*u)).collect();
        if users.is_empty() {
            continue;
        }
        let spec: AssignmentIntent = serde_json::from_value(serde_json::json!({
            "organization": "contoso.com", "users": users,
            "licenses": [{"product": PRODUCTS[*p]}],
            "mode": if *replace { "Replace" } else { "Add" },
        }))
        .unwrap();
        d.assignments.push(Declared::<_, LicenseAssignmentStatus> {
            meta: Meta {
                namespace: "default".into(),
                name: format!("la-{i}"),
                created_at: now() - jiff::SignedDuration::from_secs(*age as i64),
                uid: format!("uid-la-{i}"),
                ..Default::default()
            },
            spec,
            status: Default::default(),
        });
    }
    d
}

/// Licences (user, product) the declared state asks to remove: other licences of users in a
/// Replace assignment.
fn removal_asked(d: &Desired, user: &str, product: &str) -> bool {
    d.assignments.iter().any(|a| {
        a.spec.mode == AssignmentMode::Replace
            && a.spec.users.iter().any(|u| u == user)
            && a.spec.licenses.iter().all(|l| l.product != product)
    })
}

/// Per product: licences added minus removed by a plan's licence actions.
fn net_adds(plan: &planner::Plan) -> BTreeMap<String, i64> {
    let mut net = BTreeMap::new();
    for a in &plan.actions {
        if let Op::AssignLicenses { users } = &a.op {
            for c in users {
                for l in &c.add {
                    *net.entry(l.product.clone()).or_default() += 1;
                }
                for p in &c.remove {
                    *net.entry(p.clone()).or_default() -= 1;
                }
            }
        }
    }
    net
}

fn run(c: &Case) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let backend = Embedded::new(tenant(c), None, clock.clone());
    let mut d = desired(c);
    let options = Options::default();
    let before = backend.tenant().organizations[0].clone();

    // The first plan never asks for more licences than the pool has free, counting the seats it
    // buys in the same plan.
    let observed = rt
        .block_on(observe(&backend, &["contoso.com".to_string()]))
        .unwrap();
    let plan = planner::plan(&d, &observed, now(), &options);
    let org = &observed.organizations["contoso.com"];
    for (product, added) in net_adds(&plan) {
        let mut pool = org.pool(&product, now()) as i64;
        for a in &plan.actions {
            if let Op::SetSeats { cost, .. } = &a.op
                && d.subscriptions
                    .iter()
                    .any(|s| s.meta.name == a.name && s.spec.product == product)
            {
                pool += cost.to as i64 - cost.from as i64;
            }
        }
        let free = pool - org.consumed(&product) as i64;
        prop_assert!(added <= free.max(0), "{product}: +{added} with {free} free");
    }

    let report = rt
        .block_on(converge(
            &backend,
            &mut NoLedger,
            &mut d,
            clock.as_ref(),
            &options,
            DEFAULT_MAX_PASSES,
        ))
        .unwrap();
    prop_assert!(
        report.converged,
        "not converged in {} passes",
        report.passes
    );
    for e in &report.executed {
        if let Some(b) = &e.refused {
            prop_assert!(
                b.reason != "InsufficientSeats",
                "the service refused a licence for lack of seats: {e:?}"
            );
        }
    }

    let after = backend.tenant().organizations[0].clone();
    for u in &before.users {
        for l in &u.licenses {
            let kept = after.user(&u.upn).unwrap().licence(&l.product).is_some();
            prop_assert!(
                kept || removal_asked(&d, &u.upn, &l.product),
                "{} lost {} without being asked",
                u.upn,
                l.product
            );
        }
    }
    for p in PRODUCTS {
        prop_assert!(
            after.consumed(p) <= after.pool(p, now()),
            "{p} over-assigned"
        );
    }

    // Fixed point: planning again changes nothing.
    let observed = rt
        .block_on(observe(&backend, &["contoso.com".to_string()]))
        .unwrap();
    let again = planner::plan(&d, &observed, now(), &options);
    prop_assert!(
        again.actions.is_empty(),
        "planned again: {:?}\nexecuted: {:?}\nstatuses: {:?} {:?}",
        again.actions,
        report.executed,
        again.subscriptions,
        again.assignments
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))), ..ProptestConfig::default() })]
    #[test]
    fn r19_r07_planner_never_removes_unasked_never_overassigns_and_reaches_a_fixed_point(c in case()) {
        run(&c)?;
    }
}

/// Several Subscriptions (and standalone AddOns) naming the same existing subscriptions, with
/// random seats and ages, applied again and again (and once more after a restart that forgot
/// every status, in another order): each subscription's seat count changes at most once, so
/// it never moves back and forth.
#[derive(Clone, Debug)]
struct Claims {
    /// Per declared resource: which subscription (0..3) it names, its seats, its age, and
    /// whether it is a standalone AddOn (of ATP_ENTERPRISE, sub-2) rather than a Subscription.
    resources: Vec<(usize, u32, u8, bool)>,
    /// Users holding each product at the start.
    held: [u32; 3],
}

const CLAIMED: [(&str, &str); 3] = [
    ("sub-0", "SPB"),
    ("sub-1", "SPB"),
    ("sub-2", "ATP_ENTERPRISE"),
];

fn claims() -> impl Strategy<Value = Claims> {
    (
        prop::collection::vec((0usize..3, 0u32..30, any::<u8>(), any::<bool>()), 1..6),
        [0u32..6, 0u32..6, 0u32..6],
    )
        .prop_map(|(resources, held)| Claims { resources, held })
}

fn claims_tenant(c: &Claims) -> TenantFile {
    let mut yaml = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n  - {upn: nobody@contoso.com, usageLocation: NL}\n",
    );
    let mut n = 0;
    for (i, (_, product)) in CLAIMED.iter().enumerate() {
        for _ in 0..c.held[i] {
            yaml += &format!(
                "  - {{upn: {}, usageLocation: NL, licenses: [{{product: {product}}}]}}\n",
                upn(n)
            );
            n += 1;
        }
    }
    yaml += "  subscriptions:\n";
    for (i, (id, product)) in CLAIMED.iter().enumerate() {
        // Every subscription covers the licences in use on its own, with 3 to spare.
        let seats = c.held[i] + 3;
        yaml += &format!("  - {{id: {id}, product: {product}, seats: {seats}}}\n");
    }
    TenantFile::parse(&yaml, "tenant.yaml").unwrap()
}

fn claims_desired(c: &Claims) -> Desired {
    let mut d = Desired::default();
    for (i, (target, seats, age, standalone)) in c.resources.iter().enumerate() {
        let (id, product) = CLAIMED[*target];
        let meta = Meta {
            namespace: "default".into(),
            name: format!("r-{i}"),
            created_at: now() - jiff::SignedDuration::from_secs(*age as i64 % 4),
            uid: format!("uid-{i}"),
            ..Default::default()
        };
        if *standalone {
            d.add_ons.push(Declared {
                meta,
                spec: serde_json::from_value(serde_json::json!({
                    "organization": "contoso.com", "product": "ATP_ENTERPRISE",
                    "type": "Standalone", "addOnId": id, "quantity": seats
                }))
                .unwrap(),
                status: Default::default(),
            });
        } else {
            d.subscriptions.push(Declared {
                meta,
                spec: serde_json::from_value(serde_json::json!({
                    "organization": "contoso.com", "product": product,
                    "subscriptionId": id, "seats": seats
                }))
                .unwrap(),
                status: Default::default(),
            });
        }
    }
    d
}

fn no_flapping(c: &Claims) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let backend = Embedded::new(claims_tenant(c), None, clock.clone());
    let mut d = claims_desired(c);
    let mut changes: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    for apply in 0..4 {
        if apply == 3 {
            // A restart that lost every status, reading the resources in another order.
            d = claims_desired(c);
            d.subscriptions.reverse();
            d.add_ons.reverse();
        }
        let report = rt
            .block_on(converge(
                &backend,
                &mut NoLedger,
                &mut d,
                clock.as_ref(),
                &Options::default(),
                DEFAULT_MAX_PASSES,
            ))
            .unwrap();
        prop_assert!(report.converged, "apply {apply} did not converge");
        for e in report.executed.iter().filter(|e| e.refused.is_none()) {
            if let Op::SetSeats {
                subscription_id,
                cost,
                ..
            } = &e.action.op
            {
                prop_assert!(apply == 0, "apply {apply} changed seats again: {e:?}");
                changes
                    .entry(subscription_id.clone())
                    .or_default()
                    .push((cost.from, cost.to));
            }
        }
    }
    for (id, list) in &changes {
        prop_assert!(list.len() <= 1, "{id} moved back and forth: {list:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000), failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))), ..ProptestConfig::default() })]
    #[test]
    fn duplicate_subscription_claims_never_flap(c in claims()) {
        no_flapping(&c)?;
    }
}

/// Seat autoscaling over a random sequence of demand (users listed, one step a day).
#[derive(Clone, Debug)]
struct Demand {
    floor: u32,
    headroom: u32,
    max: u32,
    /// The reduction window closes after this many days; None: no window.
    window_days: Option<u8>,
    /// Users listed for SPB, day by day (some leave as others join).
    steps: Vec<BTreeSet<usize>>,
}

fn demand_case() -> impl Strategy<Value = Demand> {
    (
        0u32..5,
        0u32..4,
        0u32..25,
        prop::option::of(0u8..8),
        prop::collection::vec(prop::collection::btree_set(0usize..20, 0..20), 1..8),
    )
        .prop_map(|(floor, headroom, extra, window_days, steps)| Demand {
            floor,
            headroom,
            max: floor + extra,
            window_days,
            steps,
        })
}

fn autoscale_tenant(c: &Demand) -> TenantFile {
    let mut yaml = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n",
    );
    for i in 0..20 {
        yaml += &format!("  - {{upn: {}, usageLocation: NL}}\n", upn(i));
    }
    let window = c.window_days.map_or(String::new(), |d| {
        let end = now() + jiff::SignedDuration::from_hours(24 * d as i64 + 12);
        format!(", reductionWindowEndsAt: '{end}'")
    });
    yaml += &format!(
        "  subscriptions:\n  - {{id: sub-0, product: SPB, seats: {}, termEndsAt: '2027-11-01T00:00:00Z'{window}}}\n",
        c.floor
    );
    TenantFile::parse(&yaml, "tenant.yaml").unwrap()
}

fn autoscale_desired(c: &Demand, listed: &BTreeSet<usize>) -> Desired {
    let meta = |name: &str| Meta {
        namespace: "default".into(),
        name: name.into(),
        created_at: now(),
        uid: format!("uid-{name}"),
        ..Default::default()
    };
    let mut d = Desired::default();
    d.subscriptions.push(Declared {
        meta: meta("spb"),
        spec: serde_json::from_value(serde_json::json!({
            "organization": "contoso.com", "product": "SPB", "subscriptionId": "sub-0",
            "seats": c.floor, "autoscale": {"maxSeats": c.max, "headroom": c.headroom}
        }))
        .unwrap(),
        status: Default::default(),
    });
    // Users leave the company: losing their mailboxes is acknowledged (R28).
    let mut team = meta("team");
    team.flags.acknowledge_downgrade = true;
    d.assignments.push(Declared::<_, LicenseAssignmentStatus> {
        meta: team,
        spec: serde_json::from_value(serde_json::json!({
            "organization": "contoso.com", "users": listed.iter().map(|i| upn(*i)).collect::<Vec<_>>(),
            "licenses": [{"product": "SPB"}],
        }))
        .unwrap(),
        status: Default::default(),
    });
    d
}

fn autoscale_follows_demand(c: &Demand) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let backend = Embedded::new(autoscale_tenant(c), None, clock.clone());
    let mut d = autoscale_desired(c, &BTreeSet::new());
    let seats = |b: &Embedded| b.tenant().organizations[0].subscriptions[0].seats;
    for (day, listed) in c.steps.iter().enumerate() {
        let at = now() + jiff::SignedDuration::from_hours(24 * day as i64);
        clock.set(at);
        let window_open = c
            .window_days
            .is_none_or(|w| at < now() + jiff::SignedDuration::from_hours(24 * w as i64 + 12));
        // The new day's list, keeping what the resources recorded in status.
        let next = autoscale_desired(c, listed);
        d.assignments[0].spec = next.assignments[0].spec.clone();
        let before = seats(&backend);
        let run = |d: &mut Desired| {
            rt.block_on(converge(
                &backend,
                &mut NoLedger,
                d,
                clock.as_ref(),
                &Options::default(),
                DEFAULT_MAX_PASSES,
            ))
            .unwrap()
        };
        let report = run(&mut d);
        prop_assert!(report.converged, "day {day} did not converge");
        let after = seats(&backend);
        let org = backend.tenant().organizations[0].clone();
        let holding = org.consumed("SPB");
        let target = c.max.min(c.floor.max(listed.len() as u32 + c.headroom));
        let moves: Vec<(u32, u32)> = report
            .executed
            .iter()
            .filter(|e| e.refused.is_none())
            .filter_map(|e| match &e.action.op {
                Op::SetSeats { cost, .. } => Some((cost.from, cost.to)),
                _ => None,
            })
            .collect();
        prop_assert!(
            moves.iter().all(|(f, t)| t > f) || moves.iter().all(|(f, t)| t < f),
            "day {day}: seats moved up and down in one apply: {moves:?}"
        );
        for e in &report.executed {
            prop_assert!(e.refused.is_none(), "day {day}: the service refused {e:?}");
        }
        if after > before {
            prop_assert!(
                target > before,
                "day {day}: raised {before}→{after}, target {target}"
            );
        }
        if after < before {
            prop_assert!(
                window_open && target < before,
                "day {day}: lowered {before}→{after} (target {target}, window open {window_open})"
            );
        }
        if window_open || target >= before {
            prop_assert_eq!(
                after,
                target,
                "day {}: demand {:?} holding {}",
                day,
                listed,
                holding
            );
        } else {
            prop_assert_eq!(
                after,
                before,
                "day {}: a waiting reduction changed seats",
                day
            );
            let status = d.subscriptions[0]
                .status
                .autoscale
                .clone()
                .unwrap_or_default();
            prop_assert!(status.next_reduction_at.is_some(), "day {day}: {status:?}");
        }
        let status = &d.subscriptions[0].status;
        prop_assert_eq!(
            &status.blocked_reason,
            &None,
            "day {}: autoscaling is never Blocked here",
            day
        );
        prop_assert!(holding <= after && holding as usize <= listed.len());
        prop_assert!(after <= c.max.max(c.floor));
        // Stable: the same demand again changes nothing.
        let again = run(&mut d);
        prop_assert!(
            again.executed.is_empty(),
            "day {day}: acted again on the same demand: {:?}",
            again.executed
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300), failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))), ..ProptestConfig::default() })]
    #[test]
    fn autoscale_follows_demand_within_limits_and_the_window_without_flapping(c in demand_case()) {
        autoscale_follows_demand(&c)?;
    }
}

/// One step of a local session on one tenant file: `apply` of one of two declarations or a
/// `delete` of every LicenseAssignment, perhaps interrupted (as by Ctrl-C) at the executor's
/// n-th look before a call.
#[derive(Clone, Debug)]
struct Step {
    verb: u8,
    interrupt_at: Option<u64>,
}

const SESSION_USERS: usize = 60;

fn session_team(name: &str, users: std::ops::Range<usize>) -> String {
    let members: Vec<String> = users.map(|i| format!("u{i}@contoso.com")).collect();
    format!(
        "---\napiVersion: seatkeeper.dev/v1alpha1\nkind: LicenseAssignment\nmetadata: {{name: {name}, annotations: {{seatkeeper.dev/acknowledge-downgrade: \"true\", seatkeeper.dev/allow-bulk-removal: \"true\"}}}}\nspec: {{organization: contoso.com, users: [{}], licenses: [{{product: EXCHANGESTANDARD}}], deletionPolicy: Unassign}}\n",
        members.join(", ")
    )
}

/// (declaration A, declaration B, every LicenseAssignment)
fn session_manifests() -> [String; 3] {
    let essentials = "apiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: essentials}\nspec: {organization: contoso.com, product: O365_BUSINESS_ESSENTIALS, seats: 10}\n";
    [
        format!(
            "{essentials}{}{}",
            session_team("team-0", 0..20),
            session_team("team-1", 20..40)
        ),
        format!(
            "{essentials}{}{}",
            session_team("team-0", 0..10),
            session_team("team-2", 40..60)
        ),
        format!(
            "{}{}{}",
            session_team("team-0", 0..20),
            session_team("team-1", 20..40),
            session_team("team-2", 40..60)
        ),
    ]
}

fn session_check(dir: &std::path::Path, after: &str) -> Result<TenantFile, TestCaseError> {
    let t = TenantFile::load(&dir.join("tenant.yaml"))
        .map_err(|e| TestCaseError::fail(format!("after {after}: tenant file lost: {e}")))?;
    let bought = t.organizations[0]
        .subscriptions
        .iter()
        .filter(|s| s.product == "O365_BUSINESS_ESSENTIALS")
        .count();
    prop_assert!(bought <= 1, "after {after}: bought {bought} times");
    let owned: BTreeSet<(String, String)> = t
        .resources
        .iter()
        .flat_map(|r| r.status["owned"].as_array().cloned().unwrap_or_default())
        .map(|o| {
            (
                o["user"].as_str().unwrap_or_default().to_lowercase(),
                o["product"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for u in &t.organizations[0].users {
        for l in &u.licenses {
            prop_assert!(
                owned.contains(&(u.upn.to_lowercase(), l.product.clone())),
                "after {after}: {} holds {} and no record says seatkeeper assigned it",
                u.upn,
                l.product
            );
        }
    }
    Ok(t)
}

fn session(steps: &[Step]) -> Result<(), TestCaseError> {
    use seatkeeper::clock::Interrupt;
    let dir = tempfile::tempdir().unwrap();
    let users: String = (0..SESSION_USERS)
        .map(|i| format!("  - {{upn: u{i}@contoso.com, usageLocation: NL}}\n"))
        .collect();
    std::fs::write(
        dir.path().join("tenant.yaml"),
        format!("organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n{users}  subscriptions:\n  - {{id: sub-ex, product: EXCHANGESTANDARD, seats: {SESSION_USERS}, purchasedAt: '2026-11-01T00:00:00Z'}}\n"),
    )
    .unwrap();
    let names = ["a.yaml", "b.yaml", "all.yaml"];
    for (name, text) in names.iter().zip(session_manifests()) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let state = dir.path().join("tenant.yaml");
    let run = |verb: &str, file: &str, interrupt: Interrupt| {
        let file = dir.path().join(file);
        let argv = [
            "seatkeeper",
            verb,
            "-f",
            file.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--now",
            "2026-11-21T09:00:00Z",
            "-o",
            "json",
        ];
        seatkeeper::cli::main_with(&argv, interrupt)
    };
    for (i, step) in steps.iter().enumerate() {
        let (verb, file) = match step.verb {
            0 => ("apply", names[0]),
            1 => ("apply", names[1]),
            _ => ("delete", names[2]),
        };
        let interrupt = step
            .interrupt_at
            .map_or_else(Interrupt::default, Interrupt::after_looks);
        let code = run(verb, file, interrupt);
        let after = format!(
            "step {i} ({verb} {file}, interrupted at {:?})",
            step.interrupt_at
        );
        prop_assert!([0, 3, 130].contains(&code), "{after}: exit {code}");
        session_check(dir.path(), &after)?;
    }
    // Uninterrupted, the session ends where it would have without interrupts.
    prop_assert_eq!(run("apply", names[0], Interrupt::default()), 0);
    prop_assert_eq!(run("delete", names[2], Interrupt::default()), 0);
    let t = session_check(dir.path(), "the final delete")?;
    let held: usize = t.organizations[0]
        .users
        .iter()
        .map(|u| u.licenses.len())
        .sum();
    prop_assert_eq!(
        held,
        0,
        "every licence seatkeeper assigned was found and removed"
    );
    Ok(())
}

fn step() -> impl Strategy<Value = Step> {
    (0u8..3, prop::option::weighted(0.6, 1u64..5))
        .prop_map(|(verb, interrupt_at)| Step { verb, interrupt_at })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))), ..ProptestConfig::default() })]
    #[test]
    fn interleaved_applies_deletes_and_interrupts_lose_no_record_and_buy_once(steps in prop::collection::vec(step(), 1..6)) {
        session(&steps)?;
    }
}

/// A directory changing under a `userSelector` (department Sales): users join and leave
/// Sales, accounts are disabled and enabled again, day by day.
#[derive(Clone, Debug)]
struct Directory {
    /// Per user: holds SPB from elsewhere at the start (not this resource's to remove).
    held_elsewhere: Vec<bool>,
    /// Per day, per user: (in Sales, account enabled).
    days: Vec<Vec<(bool, bool)>>,
    /// Losing a mailbox is acknowledged (R28).
    acknowledged: bool,
}

fn directory_case() -> impl Strategy<Value = Directory> {
    (1usize..12).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::bool::weighted(0.2), n),
            prop::collection::vec(
                prop::collection::vec((any::<bool>(), prop::bool::weighted(0.8)), n),
                1..6,
            ),
            any::<bool>(),
        )
            .prop_map(|(held_elsewhere, days, acknowledged)| Directory {
                held_elsewhere,
                days,
                acknowledged,
            })
    })
}

fn selector_follows_the_directory(c: &Directory) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = c.held_elsewhere.len();
    let mut yaml = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n",
    );
    for (i, held) in c.held_elsewhere.iter().enumerate() {
        let licence = if *held {
            ", licenses: [{product: SPB}]"
        } else {
            ""
        };
        yaml += &format!("  - {{upn: {}, usageLocation: NL{licence}}}\n", upn(i));
    }
    yaml += &format!("  subscriptions:\n  - {{id: sub-0, product: SPB, seats: {n}}}\n");
    let mut tenant = TenantFile::parse(&yaml, "tenant.yaml").unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let mut meta = Meta {
        namespace: "default".into(),
        name: "sales".into(),
        created_at: now(),
        uid: "uid-sales".into(),
        ..Default::default()
    };
    meta.flags.acknowledge_downgrade = c.acknowledged;
    let mut d = Desired::default();
    d.assignments.push(Declared::<_, LicenseAssignmentStatus> {
        meta,
        spec: serde_json::from_value(serde_json::json!({
            "organization": "contoso.com",
            "userSelector": {"matchAttributes": {"department": "Sales"}},
            "licenses": [{"product": "SPB"}],
        }))
        .unwrap(),
        status: Default::default(),
    });
    for (day, directory) in c.days.iter().enumerate() {
        clock.set(now() + jiff::SignedDuration::from_hours(24 * day as i64));
        for (u, (sales, enabled)) in tenant.organizations[0].users.iter_mut().zip(directory) {
            u.department = sales.then(|| "Sales".to_string());
            u.account_enabled = *enabled;
        }
        let before = tenant.clone();
        let backend = Embedded::new(tenant, None, clock.clone());
        let report = rt
            .block_on(converge(
                &backend,
                &mut NoLedger,
                &mut d,
                &*clock,
                &Options::default(),
                DEFAULT_MAX_PASSES,
            ))
            .unwrap();
        prop_assert!(report.converged, "day {day}");
        tenant = backend.tenant();
        for (i, (was, now_)) in before.organizations[0]
            .users
            .iter()
            .zip(&tenant.organizations[0].users)
            .enumerate()
        {
            let (sales, enabled) = directory[i];
            let wanted = sales && enabled;
            let had = was.licence("SPB").is_some();
            let has = now_.licence("SPB").is_some();
            // What the declaration wants, the user has (seats are there for everyone).
            prop_assert!(
                !wanted || has,
                "day {day}: {} wanted and unlicensed",
                upn(i)
            );
            // What it assigned and no longer wants goes (within the removal limit, acknowledged).
            if c.acknowledged && !wanted && !c.held_elsewhere[i] {
                prop_assert!(
                    !has,
                    "day {day}: {} kept a licence no longer wanted",
                    upn(i)
                );
            }
            if had && !has {
                prop_assert!(!wanted, "day {day}: {} lost a licence still wanted", upn(i));
                prop_assert!(
                    !c.held_elsewhere[i],
                    "day {day}: {} lost a licence this resource never assigned",
                    upn(i)
                );
                prop_assert!(
                    c.acknowledged,
                    "day {day}: {} lost their mailbox without the acknowledgement (R28)",
                    upn(i)
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200), failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))), ..ProptestConfig::default() })]
    #[test]
    fn a_user_selector_follows_the_directory_and_removes_only_what_it_may(c in directory_case()) {
        selector_follows_the_directory(&c)?;
    }
}

/// A group's membership changing day by day under a LicenseAssignment naming the group (SPB,
/// group-based licensing), and on one day, perhaps, the declaration dropping the group.
#[derive(Clone, Debug)]
struct Membership {
    /// Per user: holds SPB directly from the start (not the group's).
    held_directly: Vec<bool>,
    /// Per day, per user: a member of the group.
    days: Vec<Vec<bool>>,
    /// The day the spec stops naming the group, if any.
    dropped_on: Option<usize>,
    acknowledged: bool,
}

fn membership_case() -> impl Strategy<Value = Membership> {
    (1usize..10, 1usize..5).prop_flat_map(|(n, days)| {
        (
            prop::collection::vec(prop::bool::weighted(0.2), n),
            prop::collection::vec(prop::collection::vec(any::<bool>(), n), days),
            prop::option::of(0..days),
            any::<bool>(),
        )
            .prop_map(
                |(held_directly, days, dropped_on, acknowledged)| Membership {
                    held_directly,
                    days,
                    dropped_on,
                    acknowledged,
                },
            )
    })
}

fn group_follows_its_members(c: &Membership) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = c.held_directly.len();
    let mut yaml = String::from(
        "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  users:\n",
    );
    for (i, held) in c.held_directly.iter().enumerate() {
        let licence = if *held {
            ", licenses: [{product: SPB}]"
        } else {
            ""
        };
        yaml += &format!("  - {{upn: {}, usageLocation: NL{licence}}}\n", upn(i));
    }
    yaml += &format!(
        "  subscriptions:\n  - {{id: sub-0, product: SPB, seats: {n}}}\n  groups:\n  - {{name: sales, members: []}}\n"
    );
    let mut tenant = TenantFile::parse(&yaml, "tenant.yaml").unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let mut meta = Meta {
        namespace: "default".into(),
        name: "sales".into(),
        created_at: now(),
        uid: "uid-sales".into(),
        ..Default::default()
    };
    meta.flags.acknowledge_downgrade = c.acknowledged;
    let mut d = Desired::default();
    d.assignments.push(Declared::<_, LicenseAssignmentStatus> {
        meta,
        spec: serde_json::from_value(serde_json::json!({
            "organization": "contoso.com",
            "groups": ["sales"],
            "licenses": [{"product": "SPB"}],
        }))
        .unwrap(),
        status: Default::default(),
    });
    let mut dropped = false;
    for (day, members) in c.days.iter().enumerate() {
        clock.set(now() + jiff::SignedDuration::from_hours(24 * day as i64));
        if c.dropped_on == Some(day) {
            d.assignments[0].spec.groups.clear();
            d.assignments[0].spec.users = vec![upn(0)];
            dropped = true;
        }
        tenant.organizations[0].groups[0].members =
            (0..n).filter(|&i| members[i]).map(upn).collect();
        let before = Embedded::new(tenant.clone(), None, clock.clone()).tenant();
        let backend = Embedded::new(tenant, None, clock.clone());
        let report = rt
            .block_on(converge(
                &backend,
                &mut NoLedger,
                &mut d,
                &*clock,
                &Options::default(),
                DEFAULT_MAX_PASSES,
            ))
            .unwrap();
        tenant = backend.tenant();
        let group_holds = !tenant.organizations[0].groups[0].licenses.is_empty();
        // Dropped without the acknowledgement: Blocked, the group keeps its licence (R28).
        let kept_back = dropped && !c.acknowledged && group_holds;
        prop_assert!(report.converged || kept_back, "day {day}");
        prop_assert_eq!(group_holds, !dropped || kept_back, "day {}", day);
        for (i, (was, now_)) in before.organizations[0]
            .users
            .iter()
            .zip(&tenant.organizations[0].users)
            .enumerate()
        {
            let has = now_.licence("SPB").is_some();
            let directly = c.held_directly[i] || (dropped && i == 0);
            // Members hold the group's licence (a seat for everyone); nobody else gets one.
            prop_assert_eq!(
                has,
                directly || (members[i] && group_holds),
                "day {}: {}",
                day,
                upn(i)
            );
            // A licence held directly is never taken by a group's processing.
            if c.held_directly[i] {
                prop_assert!(has, "day {day}: {} lost a direct licence", upn(i));
            }
            // A licence lost through the declaration's change needed the acknowledgement.
            if was.licence("SPB").is_some() && !has && members[i] {
                prop_assert!(
                    c.acknowledged,
                    "day {day}: {} lost it unacknowledged",
                    upn(i)
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100), failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))), ..ProptestConfig::default() })]
    #[test]
    fn a_group_licence_follows_the_members_and_is_taken_only_as_declared(c in membership_case()) {
        group_follows_its_members(&c)?;
    }
}
