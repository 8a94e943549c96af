//! Namespaces and Secrets, watched once for all three kinds and as metadata only: no Secret
//! data is streamed or cached (a product key is read with a GET when a plan needs it).
//! Namespace labels (the organization binding) are kept in a small index; a change to a
//! namespace or to a Secret a Subscription names re-plans the organizations it concerns.

use super::apihealth::ApiHealth;
use super::kinds::Managed;
use crate::api::{AddOn, LicenseAssignment, Organization, Subscription};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;

/// Namespace metadata, by name.
pub type Namespaces = Store<PartialObjectMeta<Namespace>>;

/// Where the controller may read Secrets (`run --secret-namespaces`): anywhere (None), or only
/// in the namespaces listed, which is what the chart's least-privilege RBAC allows.
#[derive(Clone, Debug, Default)]
pub struct SecretNamespaces(pub Option<Vec<String>>);

impl SecretNamespaces {
    pub fn allows(&self, namespace: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == namespace))
    }

    /// Why the Secret `namespace/name`, named by `field`, is not read.
    pub fn refusal(&self, field: &str, namespace: &str, name: &str) -> String {
        format!(
            "{field}: Secret {namespace}/{name} is in a namespace seatkeeper may not read Secrets in (it reads them only in {}): keep the Secret in one of those, or add {namespace} to the chart's secrets.namespaces (seatkeeper run --secret-namespaces)",
            self.0.as_deref().unwrap_or_default().join(", ")
        )
    }
}

/// Sends reconcile requests to the three kinds' controllers.
pub struct Triggers {
    subscriptions: UnboundedSender<ObjectRef<Subscription>>,
    assignments: UnboundedSender<ObjectRef<LicenseAssignment>>,
    add_ons: UnboundedSender<ObjectRef<AddOn>>,
    organizations: UnboundedSender<ObjectRef<Organization>>,
}

/// What each controller listens to.
pub struct Receivers {
    pub subscriptions: UnboundedReceiver<ObjectRef<Subscription>>,
    pub assignments: UnboundedReceiver<ObjectRef<LicenseAssignment>>,
    pub add_ons: UnboundedReceiver<ObjectRef<AddOn>>,
    pub organizations: UnboundedReceiver<ObjectRef<Organization>>,
}

impl Triggers {
    /// Another sender of Organization reconciles (a shard claiming an organization).
    pub fn organizations(&self) -> UnboundedSender<ObjectRef<Organization>> {
        self.organizations.clone()
    }
}

pub fn triggers() -> (Triggers, Receivers) {
    let (s_tx, s_rx) = unbounded();
    let (l_tx, l_rx) = unbounded();
    let (a_tx, a_rx) = unbounded();
    let (o_tx, o_rx) = unbounded();
    (
        Triggers {
            subscriptions: s_tx,
            assignments: l_tx,
            add_ons: a_tx,
            organizations: o_tx,
        },
        Receivers {
            subscriptions: s_rx,
            assignments: l_rx,
            add_ons: a_rx,
            organizations: o_rx,
        },
    )
}

/// The namespace index and the stream that keeps it (poll it to keep it current).
pub fn namespaces(
    client: kube::Client,
    lister: super::listed::Lister,
) -> (
    Namespaces,
    impl Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>>,
) {
    let (store, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client),
            watcher::Config::default().any_semantic(),
        ),
    )
    .default_backoff()
    .inspect_ok(move |e| lister.note(e))
    .touched_objects();
    (store, stream)
}

/// A namespace's labels, from the index.
pub fn labels(
    namespaces: &Namespaces,
    namespace: &str,
) -> std::collections::BTreeMap<String, String> {
    namespaces
        .get(&ObjectRef::new(namespace))
        .map(|n| n.labels().clone())
        .unwrap_or_default()
}

/// The organization a namespace is bound to, from the index.
pub fn binding(namespaces: &Namespaces, namespace: &str) -> Option<String> {
    namespaces
        .get(&ObjectRef::new(namespace))
        .and_then(|n| n.labels().get(crate::api::ORGANIZATION_LABEL).cloned())
}

/// What the watches act on: the cluster, the objects cached, and a way to plan an
/// organization again (the controller's context).
pub trait Watched: Send + Sync {
    fn client(&self) -> &kube::Client;
    fn api(&self) -> &Arc<ApiHealth>;
    fn secret_namespaces(&self) -> &SecretNamespaces;
    fn subscriptions(&self) -> &Store<Subscription>;
    fn assignments(&self) -> &Store<LicenseAssignment>;
    fn add_ons(&self) -> &Store<AddOn>;
    fn organizations(&self) -> &Store<Organization>;
    /// Plan `organization` again even though none of its objects changed.
    fn force(&self, organization: &str);
}

/// Runs until the streams end: every namespace or Secret change re-plans what depends on it.
pub async fn run(
    ctx: Arc<impl Watched>,
    namespaces: impl Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>>,
    triggers: Triggers,
) {
    let health = ctx.api().clone();
    let namespaces = namespaces.filter_map(move |r| {
        let r = r
            .map_err(|e| health.watch_failed("watching namespaces", &e))
            .ok();
        async move { r }
    });
    // One watch for the cluster, or one per namespace seatkeeper may read Secrets in.
    let apis = match &ctx.secret_namespaces().0 {
        None => vec![Api::<PartialObjectMeta<Secret>>::all(ctx.client().clone())],
        Some(list) => list
            .iter()
            .map(|ns| Api::namespaced(ctx.client().clone(), ns))
            .collect(),
    };
    let secrets = futures::stream::select_all(apis.into_iter().map(|api| {
        let health = ctx.api().clone();
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .touched_objects()
            .filter_map(move |r| {
                let r = r
                    .map_err(|e| health.watch_failed("watching secrets", &e))
                    .ok();
                async move { r }
            })
            .boxed()
    }));
    let namespaces = namespaces.map(|n| Change::Namespace(n.name_any()));
    let secrets = secrets.map(|s| Change::Secret(s.namespace().unwrap_or_default(), s.name_any()));
    let mut changes = std::pin::pin!(futures::stream::select(namespaces, secrets));
    while let Some(change) = changes.next().await {
        let hit = |o: &dyn HasPlace| change.concerns(o);
        send(&*ctx, ctx.subscriptions(), &triggers.subscriptions, &hit);
        send(&*ctx, ctx.assignments(), &triggers.assignments, &hit);
        send(&*ctx, ctx.add_ons(), &triggers.add_ons, &hit);
        if let Change::Secret(ns, name) = &change {
            // An Organization's credentials: its tenant is rebuilt with them.
            for o in ctx.organizations().state() {
                let uses = o
                    .spec
                    .backend
                    .microsoft
                    .as_ref()
                    .and_then(|m| m.credentials.client_secret_ref.as_ref())
                    .is_some_and(|r| &r.namespace == ns && &r.name == name);
                if uses {
                    ctx.force(&o.spec.domain);
                    let _ = triggers
                        .organizations
                        .unbounded_send(ObjectRef::from_obj(&*o));
                }
            }
        }
    }
}

enum Change {
    Namespace(String),
    /// (namespace, name)
    Secret(String, String),
}

/// Where an object lives and which Secret it reads.
trait HasPlace {
    fn namespace_name(&self) -> Option<String>;
    fn secret_name(&self) -> Option<&str>;
}

impl<K: Managed> HasPlace for K {
    fn namespace_name(&self) -> Option<String> {
        self.meta().namespace.clone()
    }
    fn secret_name(&self) -> Option<&str> {
        self.secret().map(|(name, _)| name)
    }
}

impl Change {
    fn concerns(&self, o: &dyn HasPlace) -> bool {
        match self {
            Change::Namespace(ns) => o.namespace_name().as_deref() == Some(ns),
            Change::Secret(ns, name) => {
                o.namespace_name().as_deref() == Some(ns) && o.secret_name() == Some(name)
            }
        }
    }
}

/// Forces the organizations of the objects `hit` selects and asks for one reconcile each.
fn send<K: Managed>(
    ctx: &impl Watched,
    store: &Store<K>,
    tx: &UnboundedSender<ObjectRef<K>>,
    hit: &dyn Fn(&dyn HasPlace) -> bool,
) {
    let mut orgs = std::collections::HashSet::new();
    for o in store.state() {
        if hit(&*o) && orgs.insert(o.organization().to_lowercase()) {
            ctx.force(o.organization());
            let _ = tx.unbounded_send(ObjectRef::from_obj(&*o));
        }
    }
}
