//! Organizations in the controller: the backend each organization is reached through (its
//! Microsoft tenant, built from its credentials and rebuilt when they change, or the default
//! backend), the namespaces its selector binds, its limits, and its status (the tenant as last
//! read, or why it cannot be read).

use super::metrics::Metrics;
use super::status::FIELD_MANAGER;
use crate::api::{
    API_VERSION, Organization, OrganizationStatus, ProductCounts, TenantSubscription,
};
use crate::backend::BackendError;
use crate::backend::hooked::Hooked;
use crate::backend::microsoft::Microsoft;
use crate::backend::microsoft::fleet::{AppBudget, PartnerPause};
use crate::domain::{BlockReason, Instant};
use crate::planner::conditions::{Block, Outcome};
use crate::planner::{Limits, Observed};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A Microsoft tenant's backend, with the calls counted.
pub type Tenant = Hooked<Microsoft, Metrics>;

/// The Microsoft tenants built so far, with what they were built from.
pub struct Tenants {
    built: tokio::sync::Mutex<BTreeMap<String, (String, Arc<Tenant>)>>,
    budgets: GraphBudgets,
    /// One budget per app registration (sign-in endpoint and client id), shared by all the
    /// tenants it serves.
    apps: std::sync::Mutex<BTreeMap<(String, String), App>>,
}

/// What the tenants of one app registration share: Graph's app-wide budget, Partner Center's
/// pause for the partner.
type App = (Arc<AppBudget>, Arc<PartnerPause>);

/// Graph's write budgets: per app and tenant, and per app across all its tenants.
#[derive(Clone, Copy, Debug)]
pub struct GraphBudgets {
    pub tenant: (u32, Duration),
    pub app: (u32, Duration),
}

impl Default for GraphBudgets {
    /// The documented ones: 3,000 per 150 s per app and tenant, 70,000 per 5 minutes per app.
    fn default() -> Self {
        GraphBudgets {
            tenant: crate::backend::microsoft::GRAPH_WRITE_BUDGET,
            app: crate::backend::microsoft::fleet::GRAPH_APP_WRITE_BUDGET,
        }
    }
}

impl GraphBudgets {
    /// Both budgets' counts divided by `factor` (benchmarks: a fleet that fits one machine).
    pub fn scaled(self, factor: u32) -> GraphBudgets {
        let f = factor.max(1);
        GraphBudgets {
            tenant: ((self.tenant.0 / f).max(1), self.tenant.1),
            app: ((self.app.0 / f).max(1), self.app.1),
        }
    }

    /// Both windows divided by `factor` (benchmarks compress time against the emulator).
    pub fn compressed(factor: u32) -> GraphBudgets {
        let d = GraphBudgets::default();
        let factor = factor.max(1);
        GraphBudgets {
            tenant: (d.tenant.0, d.tenant.1 / factor),
            app: (d.app.0, d.app.1 / factor),
        }
    }
}

/// The Organization declaring `domain`, if any.
pub fn organization_of(store: &Store<Organization>, domain: &str) -> Option<Arc<Organization>> {
    store
        .state()
        .into_iter()
        .find(|o| o.spec.domain.eq_ignore_ascii_case(domain))
}

/// Per-organization limits, from every Organization.
pub fn limits(store: &Store<Organization>) -> BTreeMap<String, Limits> {
    let all: Vec<Organization> = store.state().iter().map(|o| (**o).clone()).collect();
    crate::organizations::limits(&all)
}

impl Tenants {
    pub fn new(budgets: GraphBudgets) -> Tenants {
        Tenants {
            built: Default::default(),
            budgets,
            apps: Default::default(),
        }
    }

    /// The backend for `org`: None for the default backend. Rebuilt when the Organization or
    /// its credentials Secret changed; errors are the credentials' (named field, no secret).
    pub async fn backend(
        &self,
        client: &kube::Client,
        metrics: &Metrics,
        readable: &super::watches::SecretNamespaces,
        org: Option<&Organization>,
    ) -> Result<Option<Arc<Tenant>>, BackendError> {
        let Some(o) = org.filter(|o| o.spec.backend.microsoft.is_some()) else {
            return Ok(None);
        };
        let credentials = &o
            .spec
            .backend
            .microsoft
            .as_ref()
            .expect("checked")
            .credentials;
        let secret_ref = credentials
            .client_secret_ref
            .as_ref()
            .map(|r| ("clientSecretRef", r.namespace.clone(), r.name.clone()))
            .or_else(|| {
                let r = credentials.certificate_ref.as_ref()?;
                Some(("certificateRef", r.namespace.clone(), r.name.clone()))
            });
        if let Some((field, ns, name)) = &secret_ref
            && !readable.allows(ns)
        {
            let field = format!("spec.backend.microsoft.credentials.{field}");
            return Err(BackendError::CredentialsInvalid(
                readable.refusal(&field, ns, name),
            ));
        }
        let secret_ref = secret_ref.map(|(_, ns, name)| (ns, name));
        let mut fingerprint = o.metadata.resource_version.clone().unwrap_or_default();
        let mut data: BTreeMap<String, String> = BTreeMap::new();
        if let Some((ns, name)) = &secret_ref {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            let found = api.get_opt(name).await.map_err(|e| {
                let e = super::apihealth::describe(&e);
                BackendError::Cluster(format!("kubernetes: {e}"))
            })?;
            if let Some(s) = found {
                fingerprint += &format!(
                    "/{}",
                    s.metadata.resource_version.clone().unwrap_or_default()
                );
                for (k, v) in s.data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).trim().to_string());
                }
            }
        }
        let secret = secret_ref.map(|(ns, name)| (ns, name, data));
        self.build(o, fingerprint, secret.as_ref(), metrics).await
    }

    /// Drops what was built for `domain` (its shard handed it over): its tokens and the
    /// tenant it read go with it.
    pub async fn forget(&self, domain: &str) {
        self.built.lock().await.remove(&domain.to_lowercase());
    }

    async fn build(
        &self,
        o: &Organization,
        fingerprint: String,
        secret: Option<&(String, String, BTreeMap<String, String>)>,
        metrics: &Metrics,
    ) -> Result<Option<Arc<Tenant>>, BackendError> {
        let domain = o.spec.domain.to_lowercase();
        let mut built = self.built.lock().await;
        if let Some((f, t)) = built.get(&domain)
            && *f == fingerprint
        {
            return Ok(Some(t.clone()));
        }
        let lookup = |ns: &str, name: &str, key: &str| {
            secret
                .filter(|(n, m, _)| n == ns && m == name)
                .and_then(|(_, _, data)| data.get(key).cloned())
        };
        let mut config = crate::organizations::microsoft_config(o, &lookup)
            .map_err(BackendError::CredentialsInvalid)?
            .expect("a Microsoft backend");
        config.write_budget = Some(self.budgets.tenant);
        let app = (config.endpoints.login.clone(), config.client_id.clone());
        let (budget, pause) = self
            .apps
            .lock()
            .expect("apps lock")
            .entry(app)
            .or_insert_with(|| {
                (
                    Arc::new(AppBudget::new(self.budgets.app)),
                    Arc::new(PartnerPause::default()),
                )
            })
            .clone();
        config.app_budget = Some(budget);
        config.partner_pause = Some(pause);
        let tenant = Arc::new(Hooked {
            inner: Microsoft::new(config).map_err(BackendError::CredentialsInvalid)?,
            hook: metrics.clone(),
        });
        built.insert(domain, (fingerprint, tenant.clone()));
        Ok(Some(tenant))
    }
}

/// The Organization's status: the tenant as this run read it, or why it could not be read.
pub fn status_of(
    o: &Organization,
    observed: Option<&Observed>,
    failure: Option<&BackendError>,
    now: Instant,
) -> OrganizationStatus {
    let prev = o.status.clone().unwrap_or_default();
    let backend = if o.spec.backend.microsoft.is_some() {
        "microsoft"
    } else {
        "embedded"
    };
    let mut outcome = Outcome::default();
    if let Some(e) = failure {
        let reason = match e {
            BackendError::CredentialsInvalid(_) => BlockReason::CredentialsInvalid,
            BackendError::Refused(r) => r.reason(),
            _ => BlockReason::NotFound,
        };
        outcome.blocked = Some(Block::new(reason, e.to_string()));
    }
    let generation = o.metadata.generation;
    let mut status = OrganizationStatus {
        observed_generation: generation,
        conditions: outcome.conditions(&prev.conditions, generation, now),
        blocked_reason: outcome.blocked_reason(),
        backend: Some(backend.into()),
        products: prev.products.clone(),
        subscriptions: prev.subscriptions.clone(),
        users: prev.users,
        last_read_at: prev.last_read_at,
        shard: prev.shard.clone(),
    };
    let org = observed.and_then(|obs| {
        obs.organizations
            .iter()
            .find(|(d, _)| d.eq_ignore_ascii_case(&o.spec.domain))
            .map(|(_, org)| (obs, org))
    });
    if let Some((obs, org)) = org {
        let figures = crate::report::products(org, &obs.catalog, now);
        status.products = obs
            .catalog
            .products()
            .filter_map(|p| {
                let seats = org.pool(&p.sku, now);
                let assigned = org.consumed(&p.sku);
                let available = seats.saturating_sub(assigned);
                let free_monthly_cost = p
                    .monthly_price
                    .map(|x| (x * available as f64 * 100.0).round() / 100.0);
                (seats > 0 || assigned > 0).then(|| ProductCounts {
                    product: p.sku.clone(),
                    seats: seats as i64,
                    assigned: assigned as i64,
                    available: available as i64,
                    currency: free_monthly_cost
                        .map(|_| crate::domain::billing::CURRENCY.to_string()),
                    free_monthly_cost,
                    next_term_ends_at: figures
                        .iter()
                        .find(|f| f.product == p.sku)
                        .and_then(|f| f.next_term_ends_at),
                })
            })
            .collect();
        status.subscriptions = tenant_subscriptions(org);
        status.users = Some(org.users.len() as i64);
        status.last_read_at = Some(now);
    }
    status
}

/// How many of a tenant's subscriptions its Organization's status lists.
const SUBSCRIPTIONS_LISTED: usize = 100;

/// The tenant's subscriptions for the Organization's status, by product and id.
fn tenant_subscriptions(org: &crate::domain::Organization) -> Vec<TenantSubscription> {
    let mut listed: Vec<TenantSubscription> = org
        .subscriptions
        .iter()
        .map(|s| TenantSubscription {
            id: s.id.clone(),
            product: s.product.clone(),
            seats: s.seats as i64,
            channel: s.channel,
            trial: s.trial,
            state: crate::planner::state_of(s),
            term_ends_at: s.term_ends_at,
        })
        .collect();
    listed.sort_by(|a, b| (&a.product, &a.id).cmp(&(&b.product, &b.id)));
    listed.truncate(SUBSCRIPTIONS_LISTED);
    listed
}

/// Writes an Organization's status when it changed (the read time alone is refreshed at most
/// once per `refresh`, so idle resyncs stay quiet).
pub async fn write_status(
    client: &kube::Client,
    o: &Organization,
    status: &OrganizationStatus,
    refresh: Duration,
) -> Result<bool, kube::Error> {
    let prev = o.status.clone().unwrap_or_default();
    let same = |a: &OrganizationStatus, b: &OrganizationStatus| {
        a.conditions.same_ignoring_time(&b.conditions)
            && a.products == b.products
            && a.subscriptions == b.subscriptions
            && a.users == b.users
            && a.backend == b.backend
            && a.blocked_reason == b.blocked_reason
            && a.observed_generation == b.observed_generation
            && a.shard == b.shard
    };
    let stale = match (prev.last_read_at, status.last_read_at) {
        (Some(a), Some(b)) => b.duration_since(a).unsigned_abs() >= refresh,
        (None, Some(_)) => true,
        _ => false,
    };
    if same(&prev, status) && !stale {
        return Ok(false);
    }
    let name = o.metadata.name.clone().unwrap_or_default();
    let body = json!({"apiVersion": API_VERSION, "kind": "Organization", "status": status});
    Api::<Organization>::all(client.clone())
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    Ok(true)
}
