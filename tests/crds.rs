//! The CRDs in crds/ are exactly what the Rust types generate, and they validate as a user
//! would expect: examples round-trip, invalid manifests violate the schema.

use seatkeeper::cli::Object;
use serde_json::{Value, json};

#[test]
fn crds_folder_matches_the_rust_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The Helm chart ships the same files: Helm installs its crds/ folder (never upgrades it).
    for dir in [root.join("crds"), root.join("charts/seatkeeper/crds")] {
        for (file, yaml) in seatkeeper::crdgen::crds() {
            let path = dir.join(file);
            if std::env::var_os("UPDATE_CRDS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &yaml).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == yaml,
                "{} is stale: regenerate with `UPDATE_CRDS=1 cargo test --test crds`",
                path.display()
            );
        }
        let files = std::fs::read_dir(&dir).unwrap().count();
        let crds = seatkeeper::crdgen::crds().len();
        assert_eq!(
            files,
            crds,
            "{} holds exactly the {crds} CRDs",
            dir.display()
        );
    }
}

#[test]
fn every_field_is_documented_and_cel_rules_are_present() {
    fn walk(schema: &Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description").is_none()
                    && !matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                {
                    missing.push(p.clone());
                }
                walk(v, &p, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    let all = seatkeeper::crdgen::crds_yaml();
    for (_, yaml) in seatkeeper::crdgen::crds() {
        let crd: Value = serde_saphyr::from_str(&yaml).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut missing = vec![];
        walk(&schema["properties"]["spec"], "spec", &mut missing);
        assert!(
            missing.is_empty(),
            "{} fields without kubectl explain text: {missing:?}",
            crd["metadata"]["name"]
        );
    }
    assert!(
        all.contains("has(self.subscriptionRef)"),
        "AddOn cross-field rule"
    );
    assert!(
        all.contains("x-kubernetes-list-type: set"),
        "unique users and disabledPlans"
    );
    assert!(all.contains("- seatkeeper"), "category");
    for short in ["seatsub", "lasg", "addon"] {
        assert!(all.contains(&format!("- {short}")), "short name {short}");
    }
}

fn check(v: Value) -> Result<Object, String> {
    Object::from_value(&v, None)
}

#[test]
fn example_manifests_round_trip_through_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_saphyr::from_multiple::<Value>(&text).unwrap() {
            if doc["apiVersion"] != "seatkeeper.dev/v1alpha1" {
                continue;
            }
            let obj = check(doc.clone()).unwrap_or_else(|e| panic!("{e}"));
            let back = obj.to_value();
            assert_eq!(back["spec"]["organization"], doc["spec"]["organization"]);
            assert_eq!(
                Object::from_value(&back, None).unwrap().to_value(),
                back,
                "round-trip"
            );
            n += 1;
        }
    }
    assert!(n >= 3);
}

fn sub(spec: Value) -> Value {
    json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Subscription", "metadata": {"name": "s"}, "spec": spec})
}

#[test]
fn invalid_manifests_violate_the_schema() {
    let bad_seats = check(sub(
        json!({"organization": "contoso.com", "product": "SPB", "seats": -1}),
    ))
    .unwrap_err();
    assert!(bad_seats.contains("spec.seats"), "{bad_seats}");
    let missing = check(sub(json!({"organization": "contoso.com", "seats": 1}))).unwrap_err();
    assert!(missing.contains("spec.product: required"), "{missing}");
    let bad_enum = check(sub(
        json!({"organization": "c.com", "product": "SPB", "seats": 1, "deletionPolicy": "Delete"}),
    ))
    .unwrap_err();
    assert!(bad_enum.contains("spec.deletionPolicy"), "{bad_enum}");
    let unknown = check(sub(
        json!({"organization": "c.com", "product": "SPB", "seats": 1, "seat": 2}),
    ))
    .unwrap_err();
    assert!(unknown.contains("spec.seat: unknown field"), "{unknown}");

    let lasg = |spec: Value| json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "LicenseAssignment", "metadata": {"name": "a"}, "spec": spec});
    let dup = check(lasg(json!({"organization": "c.com", "users": ["a@c.com", "a@c.com"], "licenses": [{"product": "SPB"}]}))).unwrap_err();
    assert!(dup.contains("spec.users[1]: duplicate"), "{dup}");
    let none = check(lasg(
        json!({"organization": "c.com", "users": [], "licenses": [{"product": "SPB"}]}),
    ))
    .unwrap_err();
    assert!(
        none.contains("name the users, the groups, or choose the users with userSelector"),
        "{none}"
    );
    // Groups alone will do; a group is named once.
    assert!(
        check(lasg(
            json!({"organization": "c.com", "groups": ["sales"], "licenses": [{"product": "SPB"}]})
        ))
        .is_ok()
    );
    let twice = check(lasg(json!({"organization": "c.com", "groups": ["sales", "sales"], "licenses": [{"product": "SPB"}]}))).unwrap_err();
    assert!(twice.contains("spec.groups[1]: duplicate"), "{twice}");
    let selector = |s: Value| {
        check(lasg(
            json!({"organization": "c.com", "userSelector": s, "licenses": [{"product": "SPB"}]}),
        ))
    };
    assert!(selector(json!({"matchAttributes": {"department": "Sales"}})).is_ok());
    assert!(selector(json!({"memberOf": ["all-staff"]})).is_ok());
    let unknown = selector(json!({"matchAttributes": {"team": "Sales"}})).unwrap_err();
    assert!(
        unknown.contains("matchAttributes keys are department"),
        "{unknown}"
    );
    let empty = selector(json!({})).unwrap_err();
    assert!(
        empty.contains("an empty one would select everyone"),
        "{empty}"
    );
    let no_values =
        selector(json!({"matchExpressions": [{"key": "country", "operator": "In"}]})).unwrap_err();
    assert!(
        no_values.contains("In and NotIn need values"),
        "{no_values}"
    );
    let bad_key =
        selector(json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]})).unwrap_err();
    assert!(bad_key.contains("key"), "{bad_key}");
    let no_licence = check(lasg(
        json!({"organization": "c.com", "users": ["a@c.com"], "licenses": []}),
    ))
    .unwrap_err();
    assert!(no_licence.contains("spec.licenses"), "{no_licence}");
    let plans = check(lasg(json!({"organization": "c.com", "users": ["a@c.com"], "licenses": [{"product": "SPB", "disabledPlans": ["SWAY", "SWAY"]}]}))).unwrap_err();
    assert!(plans.contains("disabledPlans[1]: duplicate"), "{plans}");

    let addon = |spec: Value| json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "AddOn", "metadata": {"name": "x"}, "spec": spec});
    let no_ref = check(addon(json!({"organization": "c.com", "product": "ATP_ENTERPRISE", "type": "Traditional", "quantity": 1}))).unwrap_err();
    assert!(no_ref.contains("subscriptionRef is required"), "{no_ref}");
    let extra_ref = check(addon(json!({"organization": "c.com", "product": "ATP_ENTERPRISE", "type": "Standalone", "subscriptionRef": {"name": "s"}, "quantity": 1}))).unwrap_err();
    assert!(extra_ref.contains("subscriptionRef"), "{extra_ref}");
    assert!(check(addon(json!({"organization": "c.com", "product": "ATP_ENTERPRISE", "type": "Standalone", "quantity": 1}))).is_ok());
}

#[test]
fn organization_is_immutable() {
    let old = sub(json!({"organization": "contoso.com", "product": "SPB", "seats": 1}));
    let new = sub(json!({"organization": "fabrikam.com", "product": "SPB", "seats": 1}));
    let err = Object::from_value(&new, Some(&old)).unwrap_err();
    assert!(err.contains("organization is immutable"), "{err}");
}

fn crd_values() -> Vec<Value> {
    seatkeeper::crdgen::crds()
        .into_iter()
        .map(|(_, y)| serde_saphyr::from_str(&y).unwrap())
        .collect()
}

#[test]
fn kubectl_explain_text_has_no_mid_sentence_line_breaks() {
    fn walk(v: &Value, bad: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, x) in map {
                    match x {
                        Value::String(t) if k == "description" => {
                            let broken = t.split("\n\n").any(|p| {
                                p.split('\n')
                                    .skip(1)
                                    .any(|line| !line.trim_start().starts_with("- "))
                            });
                            if broken {
                                bad.push(t.clone());
                            }
                        }
                        _ => walk(x, bad),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, bad)),
            _ => {}
        }
    }
    let mut bad = vec![];
    crd_values().iter().for_each(|c| walk(c, &mut bad));
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn kubectl_scale_sets_seats_and_quantity_through_the_scale_subresource() {
    let crds = crd_values();
    let scale = |kind: &str| {
        let crd = crds
            .iter()
            .find(|c| c["spec"]["names"]["kind"] == kind)
            .unwrap();
        crd["spec"]["versions"][0]["subresources"]["scale"].clone()
    };
    assert_eq!(
        scale("Subscription"),
        json!({"specReplicasPath": ".spec.seats", "statusReplicasPath": ".status.seats.purchased"})
    );
    assert_eq!(
        scale("AddOn"),
        json!({"specReplicasPath": ".spec.quantity", "statusReplicasPath": ".status.quantity.purchased"})
    );
}

/// Argo CD's custom health check (`gitops/argocd/health.lua`), run by a Lua 5.4 interpreter on
/// statuses seatkeeper wrote: `apply -o json` of the example manifests (Ready and Blocked
/// resources), a seat change the service finishes later (Progressing), a paused resource, and
/// one whose status is for an older generation.
#[test]
fn argo_cd_health_check_reads_real_statuses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("gitops/argocd/health.lua")).unwrap();
    let health = |obj: &Value| -> (String, String) {
        let lua = mlua::Lua::new();
        use mlua::LuaSerdeExt;
        let value = lua.to_value(obj).unwrap();
        lua.globals().set("obj", value).unwrap();
        let hs: mlua::Table = lua.load(&script).eval().unwrap();
        (hs.get("status").unwrap(), hs.get("message").unwrap())
    };
    let applied = |tenant: &str, manifests: &std::path::Path| -> Vec<Value> {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("tenant.yaml");
        std::fs::write(&state, tenant).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_seatkeeper"))
            .args(["apply", "-f"])
            .arg(manifests)
            .arg("--state")
            .arg(&state)
            .args(["--now", "2026-11-21T09:00:00Z", "-o", "json"])
            .output()
            .unwrap();
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        list["items"].as_array().unwrap().clone()
    };
    let tenant = std::fs::read_to_string(root.join("examples/tenant.yaml")).unwrap();
    let items = applied(&tenant, &root.join("examples/manifests"));
    let mut seen = std::collections::BTreeSet::new();
    for item in &items {
        let conditions = item["status"]["conditions"].as_array().unwrap();
        let is = |t: &str| {
            conditions
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True")
        };
        let (status, message) = health(item);
        let expected = if is("Ready") {
            "Healthy"
        } else if is("Blocked") {
            "Degraded"
        } else {
            "Progressing"
        };
        assert_eq!(status, expected, "{}: {message}", item["metadata"]["name"]);
        if status == "Degraded" {
            let reason = item["status"]["blockedReason"].as_str().unwrap();
            assert!(message.starts_with(reason), "{message}");
        }
        seen.insert(status);
    }
    assert!(
        seen.contains("Healthy") && seen.contains("Degraded"),
        "{seen:?}"
    );
    // Partner Center finishes a seat change later (202): the resource is on its way.
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.yaml");
    std::fs::write(&m, "apiVersion: seatkeeper.dev/v1alpha1\nkind: Subscription\nmetadata: {name: spb}\nspec: {organization: contoso.com, product: SPB, subscriptionId: sub-1, seats: 3}\n").unwrap();
    let later = "organizations:\n- domain: contoso.com\n  paymentMethodOnFile: true\n  seatChangeDelayMinutes: 30\n  users: []\n  subscriptions:\n  - {id: sub-1, product: SPB, seats: 2}\n";
    let items = applied(later, &m);
    let (status, message) = health(&items[0]);
    assert_eq!(status, "Progressing", "{message}: {:#}", items[0]["status"]);
    // Paused: Suspended, whatever its status says.
    let mut paused = items[0].clone();
    paused["metadata"]["annotations"] = serde_json::json!({"seatkeeper.dev/paused": "true"});
    assert_eq!(health(&paused).0, "Suspended");
    // A Ready status of an older generation: Progressing until seatkeeper has seen the new one.
    let mut ready = items.clone();
    let mut stale = ready.remove(0);
    stale["status"]["conditions"] = serde_json::json!([{"type": "Ready", "status": "True"}]);
    stale["status"]["observedGeneration"] = serde_json::json!(1);
    stale["metadata"]["generation"] = serde_json::json!(2);
    assert_eq!(health(&stale).0, "Progressing");
    // Not reconciled at all yet.
    let fresh = serde_json::json!({"metadata": {"name": "new"}, "spec": {}});
    assert_eq!(health(&fresh).0, "Progressing");
    // The argocd-cm snippet carries this very script for every kind.
    let cm = std::fs::read_to_string(root.join("gitops/argocd/argocd-cm.yaml")).unwrap();
    let cm: Value = serde_saphyr::from_str(&cm).unwrap();
    for kind in ["Subscription", "LicenseAssignment", "AddOn", "Organization"] {
        let key = format!("resource.customizations.health.seatkeeper.dev_{kind}");
        assert_eq!(cm["data"][&key].as_str(), Some(script.as_str()), "{key}");
    }
}
