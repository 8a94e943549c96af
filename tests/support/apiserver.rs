//! An in-process Kubernetes API server for tests: what seatkeeper and kubectl-style clients
//! use, with the documented semantics.
//!
//! - discovery (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`) for the types served;
//! - create / get / list / replace / patch / delete, namespaced and cluster-scoped;
//! - the `status` subresource: writes to the main resource ignore `status`, writes to
//!   `/status` change only `status`;
//! - merge, strategic-merge (treated as merge), JSON and apply patches (apply requires
//!   `fieldManager`, records the fields it set in `managedFields` as `fieldsV1`, and removes
//!   the fields that manager set before and no longer sends, as server-side apply does; lists
//!   are owned whole);
//! - metadata-only lists and watches (`Accept: …;as=PartialObjectMetadata…`), and a count of
//!   Secrets whose data was streamed by a list or watch;
//! - `resourceVersion` on every change, `409 Conflict` on a stale one;
//! - `metadata.generation` bumped only when something other than metadata and status changes;
//! - finalizers: delete sets `deletionTimestamp` and the object goes once they are removed;
//! - list and watch from a resourceVersion (older than the history: `410 Gone`), bookmarks
//!   when asked, `timeoutSeconds`; label selectors (`=`, `==`, `!=`, `k`, `!k`) and
//!   `metadata.name`/`metadata.namespace` field selectors;
//! - namespaced objects need their Namespace to exist; Secrets' `stringData` becomes `data`.
//!
//! Not implemented: schema validation of custom resources, strategic-merge list semantics,
//! shared field ownership between managers (a field is removed when its last applier drops
//! it, even if another manager also set it), authentication.

#![allow(dead_code, clippy::result_large_err)]

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Clone, Debug)]
struct Def {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
}

const DEFS: &[Def] = &[
    Def {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        status: true,
    },
    Def {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        status: false,
    },
    Def {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    Def {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    Def {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
    },
    Def {
        group: "seatkeeper.dev",
        version: "v1alpha1",
        plural: "organizations",
        kind: "Organization",
        namespaced: false,
        status: true,
    },
    Def {
        group: "seatkeeper.dev",
        version: "v1alpha1",
        plural: "subscriptions",
        kind: "Subscription",
        namespaced: true,
        status: true,
    },
    Def {
        group: "seatkeeper.dev",
        version: "v1alpha1",
        plural: "licenseassignments",
        kind: "LicenseAssignment",
        namespaced: true,
        status: true,
    },
    Def {
        group: "seatkeeper.dev",
        version: "v1alpha1",
        plural: "addons",
        kind: "AddOn",
        namespaced: true,
        status: true,
    },
];

impl Def {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    fn id(&self) -> String {
        format!("{}/{}", self.api_version(), self.plural)
    }
}

type Key = (String, String, String); // (resource id, namespace, name)

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    resource: String,
    namespace: String,
    type_: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Requests that changed something: (method, path).
    writes: Vec<(String, String)>,
    /// Status writes whose body contains this text fail with 500, this many times.
    fail_status: Option<(String, usize)>,
    /// History before this resourceVersion is gone.
    compacted: u64,
    /// Secrets served with their data by a list or watch.
    secret_data_streamed: std::sync::atomic::AtomicUsize,
    /// RBAC as the chart's least-privilege default: Secrets only in these namespaces (None:
    /// anywhere); other Secret requests are refused 403 and counted.
    secrets_only_in: Option<Vec<String>>,
    secret_requests_forbidden: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Change>,
}

pub struct ApiServer {
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl ApiServer {
    pub async fn start() -> ApiServer {
        let (tx, _) = broadcast::channel(100_000);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            tx,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        ApiServer {
            url,
            shared,
            stop: Some(stop),
        }
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Status writes so far (PUT or PATCH on `/status`).
    pub fn status_writes(&self) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .writes
            .iter()
            .filter(|(_, p)| p.ends_with("/status"))
            .count()
    }

    /// Secrets whose data a list or watch has sent so far.
    pub fn secret_data_streamed(&self) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .secret_data_streamed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, Secrets may be read only in `namespaces` (as a namespaced Role allows):
    /// a cluster-wide list or watch, or a request in another namespace, is refused 403.
    pub fn allow_secrets_only_in(&self, namespaces: &[&str]) {
        self.shared.inner.lock().unwrap().secrets_only_in =
            Some(namespaces.iter().map(|n| n.to_string()).collect());
    }

    /// Secret requests refused by [`Self::allow_secrets_only_in`] so far.
    pub fn secret_requests_forbidden(&self) -> usize {
        self.shared.inner.lock().unwrap().secret_requests_forbidden
    }

    /// Changing requests so far, on any path containing `needle`.
    pub fn writes_to(&self, needle: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .writes
            .iter()
            .filter(|(_, p)| p.contains(needle))
            .count()
    }

    /// The next `n` status writes whose body contains `needle` fail with 500: a crash between
    /// an action and its record.
    pub fn fail_status_writes(&self, needle: &str, n: usize) {
        self.shared.inner.lock().unwrap().fail_status = Some((needle.to_string(), n));
    }

    /// Objects of a resource (`seatkeeper.dev/v1alpha1/subscriptions`, `events.k8s.io/v1/events`).
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Forgets the change history, as etcd compaction does: watches from older
    /// resourceVersions get 410 Gone.
    pub fn compact(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .objects
            .get(&(
                resource.to_string(),
                namespace.to_string(),
                name.to_string(),
            ))
            .cloned()
    }
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code,
    });
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

struct Target {
    def: &'static Def,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// Parses `/api/v1/...` and `/apis/{g}/{v}/...` resource paths.
fn target(path: &str) -> Option<Result<Target, Response>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let find = |plural: &str| {
        DEFS.iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|d| d.namespaced) => {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let Some(def) = find(rest[0]) else {
        return Some(Err(status(
            404,
            "NotFound",
            format!("the server could not find the requested resource {path}"),
        )));
    };
    Some(Ok(Target {
        def,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    }))
}

fn discovery(path: &str) -> Option<Value> {
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = DEFS
            .iter()
            .filter(|d| d.group == group && d.version == version)
            .flat_map(|d| {
                let main = json!({
                    "name": d.plural, "singularName": d.kind.to_lowercase(), "namespaced": d.namespaced,
                    "kind": d.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                });
                let status = d.status.then(|| json!({
                    "name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced,
                    "kind": d.kind, "verbs": ["get", "patch", "update"],
                }));
                std::iter::once(main).chain(status)
            })
            .collect();
        json!({
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
            "resources": list,
        })
    };
    match path.trim_end_matches('/') {
        "/api" => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        "/apis" => {
            let mut groups: Vec<(&str, &str)> = DEFS
                .iter()
                .filter(|d| !d.group.is_empty())
                .map(|d| (d.group, d.version))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        "/api/v1" => Some(resources("", "v1")),
        p => {
            let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
            match segs.as_slice() {
                ["apis", g, v] if DEFS.iter().any(|d| d.group == *g && d.version == *v) => {
                    Some(resources(g, v))
                }
                _ => None,
            }
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

/// Everything but metadata and status: what bumps `generation`.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    let labels = obj["metadata"]["labels"].as_object();
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                get(k.trim()) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                get(k.trim()) == Some(v.trim())
            } else if let Some(k) = term.strip_prefix('!') {
                get(k.trim()).is_none()
            } else {
                get(term).is_some()
            }
        })
}

fn fields_match(obj: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            let (k, v, eq) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, true)
            } else {
                return true;
            };
            let actual = match k.trim() {
                "metadata.name" => obj["metadata"]["name"].as_str(),
                "metadata.namespace" => obj["metadata"]["namespace"].as_str(),
                _ => return true,
            };
            (actual == Some(v.trim())) == eq
        })
}

impl Inner {
    fn record(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: &Key,
        type_: &'static str,
        object: Value,
    ) {
        let change = Change {
            rv: self.rv,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            type_,
            object,
        };
        self.history.push(change.clone());
        let _ = tx.send(change);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn namespace_terminating(&self, ns: &str) -> bool {
        self.objects
            .get(&("v1/namespaces".to_string(), String::new(), ns.to_string()))
            .is_some_and(|n| !n["metadata"]["deletionTimestamp"].is_null())
    }

    /// The namespace controller's part: a terminating namespace goes once it holds nothing.
    fn finish_namespace(&mut self, tx: &broadcast::Sender<Change>, ns: &str) {
        if ns.is_empty() || !self.namespace_terminating(ns) {
            return;
        }
        if self.objects.keys().any(|k| k.1 == ns) {
            return;
        }
        let key = ("v1/namespaces".to_string(), String::new(), ns.to_string());
        if let Some(mut n) = self.objects.remove(&key) {
            let rv = self.next_rv();
            n["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.record(tx, &key, "DELETED", n);
        }
    }

    /// `kubectl delete namespace`: it turns Terminating, everything in it is deleted (objects
    /// with finalizers wait for them), and it goes when empty.
    fn delete_namespace(&mut self, tx: &broadcast::Sender<Change>, ns: &str) -> Value {
        let key = ("v1/namespaces".to_string(), String::new(), ns.to_string());
        let mut n = self.objects[&key].clone();
        if n["metadata"]["deletionTimestamp"].is_null() {
            // Kept by its own finalizer (`kubernetes`) until empty, as a real namespace is.
            n["metadata"]["deletionTimestamp"] = json!(now());
            n["status"] = json!({"phase": "Terminating"});
            let rv = self.next_rv();
            n["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.objects.insert(key.clone(), n.clone());
            self.record(tx, &key, "MODIFIED", n.clone());
        }
        let inside: Vec<Key> = self.objects.keys().filter(|k| k.1 == ns).cloned().collect();
        for k in inside {
            let mut obj = self.objects[&k].clone();
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                self.store(tx, k, obj, "MODIFIED");
            }
        }
        self.finish_namespace(tx, ns);
        n
    }

    /// Stores an object (or removes it when it is being deleted and has no finalizers left).
    fn store(
        &mut self,
        tx: &broadcast::Sender<Change>,
        key: Key,
        mut obj: Value,
        type_: &'static str,
    ) -> Value {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let finalizers_left = obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !obj["metadata"]["deletionTimestamp"].is_null() && !finalizers_left {
            self.objects.remove(&key);
            self.record(tx, &key, "DELETED", obj.clone());
            self.finish_namespace(tx, &key.1);
            return obj;
        }
        self.objects.insert(key.clone(), obj.clone());
        self.record(tx, &key, type_, obj.clone());
        obj
    }
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    if method == Method::GET
        && let Some(d) = discovery(&path)
    {
        return ok(d);
    }
    if path.ends_with("/status") && method != Method::GET {
        let mut inner = shared.inner.lock().unwrap();
        if let Some((needle, n)) = inner.fail_status.as_mut()
            && *n > 0
            && String::from_utf8_lossy(&body).contains(needle.as_str())
        {
            *n -= 1;
            return status(500, "InternalError", "injected failure");
        }
    }
    let t = match target(&path) {
        Some(Ok(t)) => t,
        Some(Err(r)) => return r,
        None => return status(404, "NotFound", format!("no route {path}")),
    };
    if t.def.plural == "secrets" {
        let mut inner = shared.inner.lock().unwrap();
        let allowed = match (&inner.secrets_only_in, &t.namespace) {
            (None, _) => true,
            (Some(list), Some(ns)) => list.contains(ns),
            (Some(_), None) => false,
        };
        if !allowed {
            inner.secret_requests_forbidden += 1;
            return status(403, "Forbidden", "secrets is forbidden");
        }
    }
    if t.def.namespaced && t.namespace.is_none() && !(method == Method::GET && t.name.is_none()) {
        return status(404, "NotFound", "a namespace is required");
    }
    match (&method, &t.name) {
        (&Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(shared, &t, &query, metadata_only(&headers))
        }
        (&Method::GET, None) => list(&shared, &t, &query, metadata_only(&headers)),
        (&Method::GET, Some(name)) => {
            let inner = shared.inner.lock().unwrap();
            match inner.objects.get(&(
                t.def.id(),
                t.namespace.clone().unwrap_or_default(),
                name.clone(),
            )) {
                Some(o) => ok(o.clone()),
                None => status(
                    404,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.def.plural),
                ),
            }
        }
        (&Method::POST, None) => create(&shared, &t, &body, &path),
        (&Method::PUT, Some(name)) => {
            let Ok(obj) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            write(&shared, &t, name, &path, |_| Ok(obj))
        }
        (&Method::PATCH, Some(name)) => patch(&shared, &t, name, &path, &headers, &query, &body),
        (&Method::DELETE, Some(name)) => delete(&shared, &t, name, &path),
        _ => status(405, "MethodNotAllowed", format!("{method} {path}")),
    }
}

/// The client asked for metadata only (`PartialObjectMetadata`).
fn metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

/// An object as a list or watch serves it: whole, or its metadata only. Counts Secrets
/// whose data goes out.
fn served(inner: &Inner, object: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        return json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": object["metadata"].clone()});
    }
    if object["kind"] == "Secret" && !object["data"].is_null() {
        inner
            .secret_data_streamed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    object.clone()
}

fn list(
    shared: &Shared,
    t: &Target,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let inner = shared.inner.lock().unwrap();
    let labels = query.get("labelSelector").cloned().unwrap_or_default();
    let fields = query.get("fieldSelector").cloned().unwrap_or_default();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((r, ns, _), _)| *r == t.def.id() && t.namespace.as_ref().is_none_or(|n| n == ns))
        .map(|(_, v)| v.clone())
        .filter(|v| labels_match(v, &labels) && fields_match(v, &fields))
        .map(|v| served(&inner, &v, metadata_only))
        .collect();
    let (kind, api_version) = if metadata_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (format!("{}List", t.def.kind), t.def.api_version())
    };
    ok(json!({
        "kind": kind, "apiVersion": api_version,
        "metadata": {"resourceVersion": inner.rv.to_string()},
        "items": items,
    }))
}

fn watch(
    shared: Arc<Shared>,
    t: &Target,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let resource = t.def.id();
    let namespace = t.namespace.clone();
    let labels = query.get("labelSelector").cloned().unwrap_or_default();
    let fields = query.get("fieldSelector").cloned().unwrap_or_default();
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(300);
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|s| s.parse().ok())
        .filter(|rv| *rv > 0);
    let matches = {
        let (resource, namespace) = (resource.clone(), namespace.clone());
        move |c: &Change| {
            c.resource == resource
                && namespace.as_ref().is_none_or(|n| *n == c.namespace)
                && labels_match(&c.object, &labels)
                && fields_match(&c.object, &fields)
        }
    };
    let (backlog, mut rx, current) = {
        let inner = shared.inner.lock().unwrap();
        let rx = shared.tx.subscribe();
        let backlog: Vec<Change> = match from {
            Some(rv) => {
                if rv < inner.compacted {
                    // As the real server does: 200, then one ERROR event carrying the 410.
                    let e = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                        "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                        "message": format!("too old resource version: {rv} ({})", inner.compacted)}});
                    let mut line = serde_json::to_vec(&e).unwrap();
                    line.push(b'\n');
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(line))
                        .unwrap();
                }
                inner
                    .history
                    .iter()
                    .filter(|c| c.rv > rv && matches(c))
                    .cloned()
                    .collect()
            }
            // No resourceVersion: the current state as ADDED, then changes.
            None => inner
                .objects
                .iter()
                .map(|((r, ns, _), o)| Change {
                    rv: inner.rv,
                    resource: r.clone(),
                    namespace: ns.clone(),
                    type_: "ADDED",
                    object: o.clone(),
                })
                .filter(|c| matches(c))
                .collect(),
        };
        (backlog, rx, inner.rv)
    };
    let def = t.def;
    let stream = async_stream(move |yield_: tokio::sync::mpsc::Sender<Bytes>| async move {
        let line = |type_: &str, object: &Value| {
            let object = if type_ == "BOOKMARK" {
                object.clone()
            } else {
                served(&shared.inner.lock().unwrap(), object, metadata_only)
            };
            let mut s = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap();
            s.push(b'\n');
            Bytes::from(s)
        };
        let mut last = current;
        for c in backlog {
            last = last.max(c.rv);
            if yield_.send(line(c.type_, &c.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let b = json!({"kind": def.kind, "apiVersion": def.api_version(),
                        "metadata": {"resourceVersion": last.to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"}}});
                    if yield_.send(line("BOOKMARK", &b)).await.is_err() { return; }
                }
                msg = rx.recv() => match msg {
                    Ok(c) => {
                        if c.rv > last && matches(&c) {
                            last = c.rv;
                            if yield_.send(line(c.type_, &c.object)).await.is_err() { return; }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// A stream fed by a task through a channel.
fn async_stream<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    )
}

fn create(shared: &Shared, t: &Target, body: &[u8], path: &str) -> Response {
    let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "body is not JSON");
    };
    let mut inner = shared.inner.lock().unwrap();
    let ns = t.namespace.clone().unwrap_or_default();
    if t.def.namespaced
        && !inner
            .objects
            .contains_key(&("v1/namespaces".to_string(), String::new(), ns.clone()))
    {
        return status(404, "NotFound", format!("namespaces \"{ns}\" not found"));
    }
    if t.def.namespaced && inner.namespace_terminating(&ns) {
        return status(
            403,
            "Forbidden",
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
    }
    let name = match obj["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match obj["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                inner.uid += 1;
                format!("{prefix}{:05x}", inner.uid)
            }
            None => return status(422, "Invalid", "metadata.name: Required value"),
        },
    };
    let key = (t.def.id(), ns.clone(), name.clone());
    if inner.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.def.plural),
        );
    }
    inner.uid += 1;
    let uid = format!("00000000-0000-4000-8000-{:012x}", inner.uid);
    obj["apiVersion"] = json!(t.def.api_version());
    obj["kind"] = json!(t.def.kind);
    let m = obj["metadata"].as_object_mut().cloned().unwrap_or_default();
    let mut m = Value::Object(m);
    m["name"] = json!(name);
    if t.def.namespaced {
        m["namespace"] = json!(ns);
    }
    m["uid"] = json!(uid);
    m["creationTimestamp"] = json!(now());
    m["generation"] = json!(1);
    if let Some(o) = m.as_object_mut() {
        o.remove("deletionTimestamp");
        o.remove("resourceVersion");
    }
    obj["metadata"] = m;
    if t.def.kind == "Secret" {
        secret_string_data(&mut obj);
    }
    if t.def.status && t.def.group == "seatkeeper.dev" {
        // Custom resources with a status subresource ignore status on create.
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    inner.writes.push(("POST".into(), path.into()));
    let stored = inner.store(&shared.tx, key, obj, "ADDED");
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

fn secret_string_data(obj: &mut Value) {
    use base64::Engine;
    if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
        for (k, v) in sd {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
            obj["data"][k] = json!(encoded);
        }
        obj.as_object_mut().unwrap().remove("stringData");
    }
}

/// Replace or patch: `change` turns the current object into the requested one.
fn write(
    shared: &Shared,
    t: &Target,
    name: &str,
    path: &str,
    change: impl FnOnce(&Value) -> Result<Value, Response>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let key = (
        t.def.id(),
        t.namespace.clone().unwrap_or_default(),
        name.to_string(),
    );
    let Some(current) = inner.objects.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.def.plural),
        );
    };
    let on_status = t.subresource.as_deref() == Some("status");
    let requested = match change(&current) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(rv) = requested["metadata"]["resourceVersion"].as_str()
        && rv
            != current["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
    {
        return status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                t.def.plural
            ),
        );
    }
    let mut next = current.clone();
    if on_status {
        next["status"] = requested["status"].clone();
    } else {
        for (k, v) in requested.as_object().cloned().unwrap_or_default() {
            if k == "metadata" || (k == "status" && t.def.status) {
                continue;
            }
            next[k.as_str()] = v;
        }
        if let Some(o) = next.as_object_mut() {
            for k in current
                .as_object()
                .map(|c| c.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if k != "metadata"
                    && k != "status"
                    && k != "apiVersion"
                    && k != "kind"
                    && requested.get(&k).is_none()
                {
                    o.remove(&k);
                }
            }
        }
        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
            match requested["metadata"].get(field) {
                Some(v) if !v.is_null() => next["metadata"][field] = v.clone(),
                _ => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if spec_part(&next) != spec_part(&current) {
            let g = current["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            next["metadata"]["generation"] = json!(g);
        }
        if t.def.kind == "Secret" {
            secret_string_data(&mut next);
        }
    }
    if let Some(mf) = requested["metadata"].get("managedFields") {
        next["metadata"]["managedFields"] = mf.clone();
    }
    if next == current {
        // A no-op write changes nothing, not even the resourceVersion.
        return ok(current);
    }
    inner.writes.push(("WRITE".into(), path.into()));
    ok(inner.store(&shared.tx, key, next, "MODIFIED"))
}

fn patch(
    shared: &Shared,
    t: &Target,
    name: &str,
    path: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "patch is not JSON");
    };
    let manager = query.get("fieldManager").cloned();
    let subresource = t.subresource.clone();
    write(shared, t, name, path, |current| {
        let mut doc = current.clone();
        match content_type.as_str() {
            "application/json-patch+json" => {
                // As the API server's JSON patch library does: testing a missing path against
                // null succeeds.
                let mut raw = patch.as_array().cloned().unwrap_or_default();
                raw.retain(|op| {
                    !(op["op"] == "test"
                        && op["value"].is_null()
                        && op["path"]
                            .as_str()
                            .is_some_and(|p| doc.pointer(p).is_none()))
                });
                let ops: json_patch::Patch = serde_json::from_value(Value::Array(raw))
                    .map_err(|e| status(400, "BadRequest", e.to_string()))?;
                json_patch::patch(&mut doc, &ops)
                    .map_err(|e| status(422, "Invalid", e.to_string()))?;
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                json_patch::merge(&mut doc, &patch);
            }
            "application/apply-patch+yaml" => {
                let Some(manager) = manager else {
                    return Err(status(
                        400,
                        "BadRequest",
                        "fieldManager is required for apply patch",
                    ));
                };
                let mut fields: Vec<Value> = current["metadata"]["managedFields"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mine = |f: &Value| {
                    f["manager"] == manager.as_str()
                        && f["subresource"].as_str() == subresource.as_deref()
                };
                // Server-side apply: fields this manager applied before and no longer applies
                // are removed; then the applied configuration is merged in.
                let owned = patch_fields(&patch);
                if let Some(before) = fields.iter().find(|f| mine(f)) {
                    remove_dropped(&mut doc, &before["fieldsV1"], &owned);
                }
                json_patch::merge(&mut doc, &patch);
                fields.retain(|f| !mine(f));
                let mut entry = json!({"manager": manager, "operation": "Apply",
                    "apiVersion": t.def.api_version(), "fieldsType": "FieldsV1",
                    "fieldsV1": owned});
                if let Some(s) = &subresource {
                    entry["subresource"] = json!(s);
                }
                fields.push(entry);
                doc["metadata"]["managedFields"] = json!(fields);
            }
            other => {
                return Err(status(
                    415,
                    "UnsupportedMediaType",
                    format!("unsupported patch type {other}"),
                ));
            }
        }
        // Apply and merge patches carry no precondition unless they name a resourceVersion.
        if patch["metadata"]["resourceVersion"].is_null() {
            doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        }
        Ok(doc)
    })
}

/// The fields an applied configuration sets, in the `fieldsV1` shape (`{"f:status":
/// {"f:seats": {}}}`); lists are atomic (owned whole), as for list-maps we send in full.
fn patch_fields(v: &Value) -> Value {
    match v.as_object() {
        Some(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind"))
                .map(|(k, v)| (format!("f:{k}"), patch_fields(v)))
                .collect(),
        ),
        None => json!({}),
    }
}

/// Removes from `doc` the fields owned `before` that `now` no longer holds.
fn remove_dropped(doc: &mut Value, before: &Value, now: &Value) {
    let (Some(before), Some(obj)) = (before.as_object(), doc.as_object_mut()) else {
        return;
    };
    for (f, sub) in before {
        let Some(k) = f.strip_prefix("f:") else {
            continue;
        };
        match now.get(f) {
            None => {
                obj.remove(k);
            }
            Some(next) if sub.as_object().is_some_and(|m| !m.is_empty()) => {
                if let Some(child) = obj.get_mut(k) {
                    remove_dropped(child, sub, next);
                }
            }
            Some(_) => {}
        }
    }
}

fn delete(shared: &Shared, t: &Target, name: &str, path: &str) -> Response {
    let mut inner = shared.inner.lock().unwrap();
    let key = (
        t.def.id(),
        t.namespace.clone().unwrap_or_default(),
        name.to_string(),
    );
    let Some(mut obj) = inner.objects.get(&key).cloned() else {
        return status(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.def.plural),
        );
    };
    inner.writes.push(("DELETE".into(), path.into()));
    if t.def.plural == "namespaces" {
        let stored = inner.delete_namespace(&shared.tx, name);
        return (StatusCode::ACCEPTED, axum::Json(stored)).into_response();
    }
    let finalizers = obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if finalizers {
        if obj["metadata"]["deletionTimestamp"].is_null() {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            let stored = inner.store(&shared.tx, key, obj, "MODIFIED");
            return (StatusCode::ACCEPTED, axum::Json(stored)).into_response();
        }
        return (StatusCode::ACCEPTED, axum::Json(obj)).into_response();
    }
    obj["metadata"]["deletionTimestamp"] = json!(now());
    let stored = inner.store(&shared.tx, key, obj, "DELETED");
    ok(stored)
}

/// A TCP path to the test API server that can be cut: an outage as a client sees it (open
/// connections and watches break, new ones are closed at once), and its end.
pub struct Outage {
    pub url: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Outage {
    pub async fn start(server: &ApiServer) -> Outage {
        let target = server.url.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (cut, watching) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watching.borrow() {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                let mut cut = watching.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Outage { url, cut }
    }

    /// Cuts every connection and refuses new ones (true), or lets them through again (false).
    pub fn set(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}
