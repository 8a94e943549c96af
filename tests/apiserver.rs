//! The test API server against the documented Kubernetes API semantics it claims
//! (tests/support/apiserver.rs), through kube's client as seatkeeper uses it.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use seatkeeper::api::{Subscription, SubscriptionSpec};
use serde_json::json;
use support::apiserver::ApiServer;

async fn namespace(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

fn subscription(name: &str, seats: i32) -> Subscription {
    let spec: SubscriptionSpec = serde_json::from_value(json!({
        "organization": "contoso.com", "product": "ENTERPRISEPACK", "seats": seats
    }))
    .unwrap();
    Subscription::new(name, spec)
}

#[tokio::test]
async fn crud_resource_versions_conflicts_and_generation() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(&client, "team", json!({})).await;
    let api: Api<Subscription> = Api::namespaced(client.clone(), "team");
    let created = api
        .create(&PostParams::default(), &subscription("e3", 5))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let again = api
        .create(&PostParams::default(), &subscription("e3", 5))
        .await
        .unwrap_err();
    assert!(matches!(again, kube::Error::Api(s) if s.code == 409));

    // A spec change bumps generation; a metadata-only change does not.
    let mut changed = created.clone();
    changed.spec.seats = 7;
    let replaced = api
        .replace("e3", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    let labelled = api
        .patch(
            "e3",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gold"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));
    assert_ne!(
        labelled.metadata.resource_version,
        replaced.metadata.resource_version
    );

    // A write with a stale resourceVersion is a conflict.
    let stale = api
        .replace("e3", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert!(matches!(stale, kube::Error::Api(s) if s.code == 409));

    // A namespaced object needs its namespace.
    let elsewhere: Api<Subscription> = Api::namespaced(client.clone(), "nowhere");
    let err = elsewhere
        .create(&PostParams::default(), &subscription("x", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn status_subresource_is_separate_and_apply_records_the_manager() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(&client, "team", json!({})).await;
    let api: Api<Subscription> = Api::namespaced(client.clone(), "team");
    api.create(&PostParams::default(), &subscription("e3", 5))
        .await
        .unwrap();
    let body = json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Subscription",
        "status": {"blockedReason": "Trial", "conditions": []}});
    let after = api
        .patch_status(
            "e3",
            &PatchParams::apply("seatkeeper").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    assert_eq!(
        after.status.unwrap().blocked_reason.as_deref(),
        Some("Trial")
    );
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes never bump generation"
    );
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.manager.clone())
        .collect();
    assert_eq!(managers, vec!["seatkeeper".to_string()]);
    // A spec write ignores status; a status write ignores spec.
    let spec_write = api
        .patch(
            "e3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"seats": 9}, "status": {"blockedReason": "X"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        spec_write.status.unwrap().blocked_reason.as_deref(),
        Some("Trial")
    );
    let status_write = api
        .patch_status(
            "e3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"seats": 1}, "status": {"blockedReason": "Y"}})),
        )
        .await
        .unwrap();
    assert_eq!(status_write.spec.seats, 9);
    // Apply without a field manager is refused.
    let err = api
        .patch_status("e3", &PatchParams::default(), &Patch::Apply(&body))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
    assert_eq!(server.status_writes(), 2);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(&client, "team", json!({})).await;
    let api: Api<Subscription> = Api::namespaced(client.clone(), "team");
    let mut s = subscription("e3", 5);
    s.metadata.finalizers = Some(vec!["seatkeeper.dev/cleanup".into()]);
    api.create(&PostParams::default(), &s).await.unwrap();
    api.delete("e3", &DeleteParams::default()).await.unwrap();
    let held = api.get("e3").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    // JSON patch with a failing test changes nothing.
    let bad = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "other"},
        {"op": "remove", "path": "/metadata/finalizers/0"}]);
    let err = api
        .patch(
            "e3",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(bad).unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));
    let good = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "seatkeeper.dev/cleanup"},
        {"op": "remove", "path": "/metadata/finalizers/0"}]);
    api.patch(
        "e3",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(good).unwrap()),
    )
    .await
    .unwrap();
    assert!(api.get_opt("e3").await.unwrap().is_none());
}

#[tokio::test]
async fn list_and_watch_from_a_resource_version_with_selectors_and_bookmarks() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(
        &client,
        "a",
        json!({"seatkeeper.dev/organization": "contoso.com"}),
    )
    .await;
    namespace(&client, "b", json!({})).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let bound = nss
        .list(&ListParams::default().labels("seatkeeper.dev/organization=contoso.com"))
        .await
        .unwrap();
    assert_eq!(bound.items.len(), 1);
    let unbound = nss
        .list(&ListParams::default().labels("!seatkeeper.dev/organization"))
        .await
        .unwrap();
    assert_eq!(unbound.items.len(), 1);
    let named = nss
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(named.items[0].metadata.name.as_deref(), Some("b"));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "a");
    let list = secrets.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "key"}, "stringData": {"k": "v"}}))
            .unwrap();
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(
        created.data.unwrap()["k"].0,
        b"v".to_vec(),
        "stringData becomes data"
    );
    let mut stream = secrets
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .timeout(5),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let first = stream.try_next().await.unwrap().unwrap();
    assert!(matches!(first, WatchEvent::Added(s) if s.metadata.name.as_deref() == Some("key")));
    let mut saw_bookmark = false;
    while let Some(ev) = stream.try_next().await.unwrap() {
        if let WatchEvent::Bookmark(_) = ev {
            saw_bookmark = true;
            break;
        }
    }
    assert!(saw_bookmark);

    // After compaction an old resourceVersion is gone (410).
    server.compact();
    let mut old = secrets
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match old.try_next().await {
        Ok(Some(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn leases_and_discovery() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(&client, "seatkeeper", json!({})).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "seatkeeper");
    let l: Lease = serde_json::from_value(
        json!({"metadata": {"name": "seatkeeper"}, "spec": {"holderIdentity": "a"}}),
    )
    .unwrap();
    let created = leases.create(&PostParams::default(), &l).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("seatkeeper", &PostParams::default(), &taken)
        .await
        .unwrap();
    // A second replace from the same read loses.
    let err = leases
        .replace("seatkeeper", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));

    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    assert!(groups.contains(&"seatkeeper.dev".to_string()), "{groups:?}");
    let sk = discovery
        .groups()
        .find(|g| g.name() == "seatkeeper.dev")
        .unwrap();
    let kinds: Vec<String> = sk
        .recommended_resources()
        .iter()
        .map(|(r, _)| r.kind.clone())
        .collect();
    assert!(kinds.contains(&"LicenseAssignment".to_string()));
}

#[tokio::test]
async fn server_side_apply_removes_fields_the_manager_stops_sending() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(&client, "team", json!({})).await;
    let api: Api<Subscription> = Api::namespaced(client.clone(), "team");
    api.create(&PostParams::default(), &subscription("e3", 5))
        .await
        .unwrap();
    let apply = |status: serde_json::Value| {
        let api = api.clone();
        async move {
            let body = json!({"apiVersion": "seatkeeper.dev/v1alpha1", "kind": "Subscription", "status": status});
            api.patch_status(
                "e3",
                &PatchParams::apply("seatkeeper").force(),
                &Patch::Apply(&body),
            )
            .await
            .unwrap()
        }
    };
    apply(json!({"blockedReason": "Trial", "subscriptionId": "sub-1", "seats": {"desired": 5, "purchased": 5, "assigned": 0, "available": 5}})).await;
    let after = apply(json!({"subscriptionId": "sub-1", "seats": {"desired": 5, "purchased": 5, "assigned": 1, "available": 4}})).await;
    let status = serde_json::to_value(after.status.unwrap()).unwrap();
    assert!(status.get("blockedReason").is_none(), "{status}");
    assert_eq!(status["seats"]["assigned"], 1);
    // A field another write set (not this manager's apply) stays.
    api.patch_status(
        "e3",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"trial": true}})),
    )
    .await
    .unwrap();
    let after = apply(json!({"subscriptionId": "sub-1"})).await;
    let status = serde_json::to_value(after.status.unwrap()).unwrap();
    assert_eq!(status["trial"], true);
    assert!(status.get("seats").is_none());
}

#[tokio::test]
async fn metadata_only_lists_carry_no_secret_data() {
    let server = ApiServer::start().await;
    let client = server.client();
    namespace(&client, "team", json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "k"}, "stringData": {"key": "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let meta = secrets.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(meta.items.len(), 1);
    assert_eq!(server.secret_data_streamed(), 0);
    let full = secrets.list(&ListParams::default()).await.unwrap();
    assert!(full.items[0].data.is_some());
    assert_eq!(server.secret_data_streamed(), 1);
}
