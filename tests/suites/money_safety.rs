//! Money safety through the binary (ownership, the purchase guard, add-on adoption, R25,
//! names, empty input): `tests/money_safety.rs` runs it on the embedded simulator,
//! `tests/money_safety_on_microsoft.rs` on the Microsoft backend through the emulator.

use super::cli::*;
use crate::backend::MICROSOFT;

fn tenant_file(t: &Tenant) -> String {
    std::fs::read_to_string(t.dir.path().join("tenant.yaml")).unwrap()
}

#[test]
fn duplicate_subscription_never_flaps_across_applies() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 5, "")));
    let first = sub("first", "sub-1", "SPB", 7, "");
    assert_eq!(t.apply(&first).code, 0);
    // The second names the same subscription a day later.
    let both = first + &sub("second", "sub-1", "SPB", 9, "");
    for day in ["2026-11-22T09:00:00Z", "2026-11-23T09:00:00Z"] {
        let r = t.run("apply", &both, day);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert_eq!(r.blocked("second"), "DuplicateSubscription");
        assert!(r.ready("first"));
        assert!(r.tenant.contains("seats: 7"), "{}", r.tenant);
        let plan = t.run("plan", &both, day);
        assert!(plan.actions().is_empty(), "{:?}", plan.actions());
    }
}

#[test]
fn purchase_guard_blocks_large_increase_through_the_binary() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 5, "")));
    let before = t.apply(&sub("spb", "sub-1", "SPB", 5, "")).tenant;
    let big = sub("spb", "sub-1", "SPB", 150, "");
    let r = t.apply(&big);
    assert_eq!(r.code, 3);
    assert_eq!(r.blocked("spb"), "PurchaseLimitExceeded");
    assert_eq!(r.tenant, before, "nothing bought");
    let r = t.run_with("apply", &big, NOW, &["--max-seat-increase", "200"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.tenant.contains("seats: 150"));
    let annotated = sub("spb", "sub-1", "SPB", 400, "").replace(
        "metadata: {name: spb}",
        "metadata: {name: spb, annotations: {seatkeeper.dev/allow-large-purchase: \"true\"}}",
    );
    let r = t.apply(&annotated);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.tenant.contains("seats: 400"));
}

#[test]
fn seats_are_capped_at_one_million() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 5, "")));
    let before = tenant_file(&t);
    let r = t.apply(&sub("spb", "sub-1", "SPB", 2_000_000_000, ""));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("m.yaml") && r.stderr.contains("spec.seats"),
        "{}",
        r.stderr
    );
    assert_eq!(tenant_file(&t), before, "nothing changed");
}

#[test]
fn add_on_id_adopts_through_the_binary() {
    let t = Tenant::new(&tenant(
        &users(1, ""),
        &s(
            "sub-1",
            "EXCHANGESTANDARD",
            1,
            ", addOns: [{id: addon-1, product: EXCHANGEARCHIVE_ADDON, quantity: 2}]",
        ),
    ));
    let base = sub("base", "sub-1", "EXCHANGESTANDARD", 1, "");
    let plain = addon(
        "arch",
        "EXCHANGEARCHIVE_ADDON",
        "Traditional",
        ", subscriptionRef: {name: base}",
    );
    let r = t.apply(&(base.clone() + &plain));
    assert_eq!(r.blocked("arch"), "AddOnExists");
    assert_eq!(r.tenant.matches("EXCHANGEARCHIVE_ADDON").count(), 1);
    let adopt = plain
        .replace(
            "subscriptionRef: {name: base}",
            "subscriptionRef: {name: base}, addOnId: addon-1",
        )
        .replace("quantity: 2", "quantity: 4");
    let r = t.apply(&(base + &adopt));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.item("arch")["status"]["addOnId"], id("addon-1"));
    assert_eq!(
        r.tenant.matches("EXCHANGEARCHIVE_ADDON").count(),
        1,
        "not bought twice"
    );
    assert!(r.tenant.contains("quantity: 4"));
}

pub const BOOKINGS: &str = "catalog:\n  products:\n  - {sku: BOOKINGS, kind: AddOn, plans: [BOOK], addOnFor: [SPB], monthlyPrice: 1}\n";

/// BOOKINGS exists only in the tenant file's own catalog; a real tenant reports the products
/// it holds (and no catalog of the rest), so through the Microsoft backend it is unknown.
fn bookings_unknown_to_a_real_tenant(r: &Run) {
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown product BOOKINGS"),
        "{}",
        r.stderr
    );
}

fn r25_tenant() -> String {
    let users = "  - {upn: a@contoso.com, usageLocation: NL, licenses: [{product: SPB}]}\n  - {upn: b@contoso.com, usageLocation: NL}\n  - {upn: c@contoso.com, usageLocation: NL}\n  - {upn: d@contoso.com}\n";
    BOOKINGS.to_string() + &tenant(users, &s("sub-1", "SPB", 1, ""))
}

#[test]
fn r25_autoassign_standalone_addon() {
    let t = Tenant::new(&r25_tenant());
    let m = addon("book", "BOOKINGS", "Standalone", ", autoAssign: true")
        .replace("quantity: 2", "quantity: 5");
    let plan = t.run("plan", &m, NOW);
    if MICROSOFT {
        return bookings_unknown_to_a_real_tenant(&plan);
    }
    assert_eq!(
        plan.actions(),
        vec!["buy", "assignLicenses"],
        "plan predicts it"
    );
    assert!(
        !plan.tenant.contains("BOOKINGS, seats"),
        "plan changes nothing"
    );
    let r = t.apply(&m);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let status = &r.item("book")["status"];
    assert_eq!(status["autoAssigned"], 2, "b and c");
    assert_eq!(status["autoAssignSkipped"][0]["user"], "d@contoso.com");
    assert_eq!(
        status["autoAssignSkipped"][0]["reason"],
        "UsageLocationMissing"
    );
    assert_eq!(
        r.tenant.matches("product: BOOKINGS").count(),
        3,
        "the subscription and 2 licences"
    );
    // A user who appears later is not touched: it happens once, at the purchase.
    let text = tenant_file(&t).replace(
        "  - {upn: d@contoso.com}",
        "  - {upn: d@contoso.com}\n  - {upn: e@contoso.com, usageLocation: NL}",
    );
    std::fs::write(t.dir.path().join("tenant.yaml"), text).unwrap();
    let r = t.apply(&m);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.tenant.matches("product: BOOKINGS").count(), 3);
}

#[test]
fn r25_autoassign_traditional_addon_is_visible_in_plan_and_stops_at_the_quantity() {
    let mut users = String::new();
    for i in 0..45 {
        users += &format!("  - {{upn: n{i}@contoso.com, usageLocation: NL}}\n");
    }
    let t = Tenant::new(&(BOOKINGS.to_string() + &tenant(&users, &s("sub-1", "SPB", 1, ""))));
    let m = sub("base", "sub-1", "SPB", 1, "")
        + &addon(
            "book",
            "BOOKINGS",
            "Traditional",
            ", subscriptionRef: {name: base}, autoAssign: true",
        )
        .replace("quantity: 2", "quantity: 40");
    let plan = t.run("plan", &m, NOW);
    if MICROSOFT {
        return bookings_unknown_to_a_real_tenant(&plan);
    }
    assert_eq!(plan.actions(), vec!["buyAddOn", "assignLicenses"]);
    assert_eq!(
        plan.out["actions"][1]["users"].as_array().unwrap().len(),
        40,
        "as many as the quantity allows"
    );
    let r = t.apply(&m);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.item("book")["status"]["autoAssigned"], 40);
    assert_eq!(
        r.item("book")["status"]["autoAssignSkipped"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn kubernetes_names_are_checked_like_the_api_server() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 5, "")));
    let before = tenant_file(&t);
    let bad_name =
        sub("spb", "sub-1", "SPB", 6, "").replace("{name: spb}", "{name: \"Business Standard!\"}");
    let bad_ns = sub("spb", "sub-1", "SPB", 6, "")
        .replace("{name: spb}", "{name: spb, namespace: \"Contoso NS\"}");
    for (m, field) in [(bad_name, "metadata.name"), (bad_ns, "metadata.namespace")] {
        let r = t.apply(&m);
        assert_eq!(r.code, 1, "{m}");
        assert!(
            r.stderr.contains("m.yaml") && r.stderr.contains(field),
            "{}",
            r.stderr
        );
        assert_eq!(tenant_file(&t), before);
    }
}

#[test]
fn input_without_seatkeeper_resources_is_an_error() {
    let t = Tenant::new(&tenant(&users(1, ""), &s("sub-1", "SPB", 5, "")));
    for m in [
        "",
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
    ] {
        let r = t.apply(m);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains("no seatkeeper resources in"),
            "{}",
            r.stderr
        );
    }
    let empty = t.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
        .args(["apply", "-f", empty.to_str().unwrap(), "--state"])
        .arg(t.dir.path().join("tenant.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no seatkeeper resources in"));
}
