//! The Microsoft backend: a real Microsoft 365 tenant through Microsoft Graph (what the tenant
//! holds, licences) and, for tenants a CSP partner manages, Partner Center (seats, billing,
//! cancellation, purchases). Ids are mapped to the names our API uses from what the tenant
//! reports (`subscribedSkus`), never from a table.
//!
//! - [`wire`]: the services' request and response shapes;
//! - [`client`]: tokens, timeouts, throttling and retries.

pub mod client;
pub mod credential;
pub mod fleet;
mod mapping;
pub mod offers;
pub mod wire;

// The core under the names this crate was written with.
pub(crate) use seatkeeper_core::{backend, domain, guid};

use crate::backend::{
    Backend, BackendError, Cancellation, MAX_BATCH, PurchaseRequest, Result, SeatChange, Snapshot,
};
use crate::domain::{Catalog, Refusal, Subscription, TraditionalAddOn, UserChange};
use client::{Client, Scope};
use futures::StreamExt;
use mapping::Directory;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lowercase UPN → the last sign-in (`None`: never signed in).
pub type SignIns = std::collections::HashMap<String, Option<crate::domain::Instant>>;

/// Where the services are.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoints {
    /// `+ /{tenant}/oauth2/v2.0/token`
    pub login: String,
    /// `+ /v1.0/...`
    pub graph: String,
    /// `+ /v1/...`
    pub partner_center: String,
    /// The token scope for Graph: its application ID URI in the organization's cloud plus
    /// `/.default`, whatever `graph` points at (a proxy or the emulator does not change who
    /// the token is for).
    pub graph_scope: String,
    /// The token scope for Partner Center.
    pub partner_center_scope: String,
}

/// Graph's scope in the global cloud.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Partner Center's scope (its authentication page names this one for every version).
pub const PARTNER_CENTER_SCOPE: &str = "https://api.partnercenter.microsoft.com/.default";

impl Endpoints {
    /// The global cloud.
    pub fn global() -> Endpoints {
        Endpoints {
            login: "https://login.microsoftonline.com".into(),
            graph: "https://graph.microsoft.com".into(),
            partner_center: "https://api.partnercenter.microsoft.com".into(),
            graph_scope: GRAPH_SCOPE.into(),
            partner_center_scope: PARTNER_CENTER_SCOPE.into(),
        }
    }

    /// All three on one root (the emulator), for the global cloud's scopes.
    pub fn at(root: &str) -> Endpoints {
        let root = root.trim_end_matches('/').to_string();
        Endpoints {
            login: root.clone(),
            graph: root.clone(),
            partner_center: root,
            ..Endpoints::global()
        }
    }
}

/// How to reach one organization's tenant.
#[derive(Clone)]
pub struct Config {
    /// The organization's domain (what `spec.organization` names).
    pub organization: String,
    /// The directory (tenant) id: a GUID or a verified domain.
    pub tenant_id: String,
    pub endpoints: Endpoints,
    pub client_id: String,
    pub credential: credential::Credential,
    /// Partner Center's customer id, when a CSP partner manages the tenant.
    pub partner_center_customer: Option<String>,
    /// Every call gives up after this long.
    pub timeout: Duration,
    /// Graph's write budget, paced on this side so large runs are not throttled into a
    /// crawl: at most this many licence writes per window (Graph: 3,000 per 150 s per app and
    /// tenant). None: no pacing.
    pub write_budget: Option<(u32, Duration)>,
    /// The app's write budget across all its tenants, shared by every tenant's client of one
    /// app in this process (see [`fleet`]). None: not paced.
    pub app_budget: Option<Arc<fleet::AppBudget>>,
    /// Partner Center's pause for the whole partner (every customer of one partner app in
    /// this process). None: each tenant finds the limit alone.
    pub partner_pause: Option<Arc<fleet::PartnerPause>>,
}

/// Graph's documented write budget per app and tenant.
pub const GRAPH_WRITE_BUDGET: (u32, Duration) = (3_000, Duration::from_secs(150));

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("organization", &self.organization)
            .field("tenant_id", &self.tenant_id)
            .field("endpoints", &self.endpoints)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("partner_center_customer", &self.partner_center_customer)
            .finish()
    }
}

pub struct Microsoft {
    client: Client,
    cfg: Config,
    catalog: Arc<Catalog>,
    /// Names ↔ ids as the tenant last reported them.
    directory: Mutex<Option<Arc<Directory>>>,
    /// Seat changes Partner Center accepted (202) and has not finished: subscription id →
    /// seats asked for. Partner Center's reads do not show them, so they are remembered here
    /// (for the life of the process) and not asked for again.
    accepted: Mutex<std::collections::HashMap<String, u32>>,
    /// Partner Center's catalog products, read at most once a day.
    catalog_products: Mutex<Option<(std::time::Instant, Arc<Vec<wire::CatalogProduct>>)>>,
    /// Offers found, for a day: (product, term, billing, spec.offer) → catalog item.
    offers_found: Mutex<OffersFound>,
    /// Trial conversions Partner Center reported failed: trial id → how many times. The next
    /// attempt is a new call (a new request id), as the headers page asks after an answer.
    failed_conversions: Mutex<std::collections::HashMap<String, u32>>,
}

type OffersFound = std::collections::HashMap<
    (String, crate::domain::Term, String, Option<String>),
    (std::time::Instant, String),
>;

/// How long Partner Center's catalog is trusted before it is read again.
const CATALOG_FRESH: Duration = Duration::from_secs(24 * 3600);

/// What a purchase asks Partner Center for.
struct Checkout<'a> {
    product: &'a str,
    quantity: u32,
    billing: &'a str,
    term: crate::domain::Term,
    offer: Option<&'a str>,
    /// A traditional add-on's base subscription.
    parent: Option<&'a str>,
    key: &'a str,
}

/// How long after a 202 seatkeeper looks again (Partner Center gives no time).
/// Group member reads sent at once when the tenant is read.
const GROUP_READS_AT_ONCE: usize = 4;

const ACCEPTED_LOOK_AGAIN: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

impl Microsoft {
    /// How many times Partner Center reported trial `id`'s conversion failed.
    fn conversion_failures(&self, id: &str) -> u32 {
        self.failed_conversions
            .lock()
            .expect("conversions lock")
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    pub fn new(cfg: Config) -> std::result::Result<Microsoft, String> {
        Ok(Microsoft {
            client: Client::new(&cfg)?,
            // The products' rules, not their prices: what the partner pays is Partner
            // Center's, which is not read, so no made-up number is shown.
            catalog: Arc::new(Catalog::builtin().without_prices()),
            directory: Mutex::new(None),
            accepted: Mutex::new(std::collections::HashMap::new()),
            catalog_products: Mutex::new(None),
            failed_conversions: Mutex::new(std::collections::HashMap::new()),
            offers_found: Mutex::new(std::collections::HashMap::new()),
            cfg,
        })
    }

    fn check_organization(&self, organization: &str) -> Result<()> {
        if organization.eq_ignore_ascii_case(&self.cfg.organization) {
            return Ok(());
        }
        Err(Refusal::NotFound {
            what: format!(
                "organization {organization} (this backend manages {})",
                self.cfg.organization
            ),
        }
        .into())
    }

    fn graph(&self, path: &str) -> String {
        format!(
            "{}/v1.0{path}",
            self.cfg.endpoints.graph.trim_end_matches('/')
        )
    }

    fn customer(&self) -> Option<String> {
        let c = self.cfg.partner_center_customer.as_ref()?;
        Some(format!(
            "{}/v1/customers/{c}",
            self.cfg.endpoints.partner_center.trim_end_matches('/')
        ))
    }

    /// The directory as last read, reading it when there is none yet.
    async fn directory(&self) -> Result<Arc<Directory>> {
        if let Some(d) = self.directory.lock().expect("directory lock").clone() {
            return Ok(d);
        }
        self.read().await
    }

    /// Reads the tenant: products, subscriptions, users (and Partner Center's view).
    async fn read(&self) -> Result<Arc<Directory>> {
        let skus = self
            .client
            .all::<wire::SubscribedSku>(Scope::Graph, &self.graph("/subscribedSkus"))
            .await?;
        let subs = self
            .client
            .all::<wire::CompanySubscription>(Scope::Graph, &self.graph("/directory/subscriptions"))
            .await?;
        let select = "id,userPrincipalName,userType,usageLocation,department,jobTitle,companyName,officeLocation,country,employeeType,accountEnabled,assignedLicenses,licenseAssignmentStates";
        let users_url = self.graph(&format!("/users?$select={select}&$top=999"));
        let mut users = mapping::Users::new(&skus);
        self.client
            .each_page::<wire::User>(Scope::Graph, &users_url, |page| users.add(page))
            .await?;
        // Groups, then each group's members (3 resource units a page; a few at a time):
        // group licences and `userSelector.memberOf` need them.
        let groups = self
            .client
            .all::<wire::Group>(
                Scope::Graph,
                &self.graph("/groups?$select=id,displayName,assignedLicenses,licenseProcessingState&$top=999"),
            )
            .await?;
        let mut reads = vec![];
        for g in &groups {
            reads.push(self.members(&g.id));
        }
        let members: Vec<Result<Vec<wire::Member>>> = futures::stream::iter(reads)
            .buffered(GROUP_READS_AT_ONCE)
            .collect()
            .await;
        for (g, m) in groups.into_iter().zip(members) {
            users.add_group(g, m?);
        }
        let pc = match self.customer() {
            Some(c) => {
                let url = format!("{c}/subscriptions");
                let items: wire::Items<wire::PcSubscription> =
                    self.client.get(Scope::PartnerCenter, &url).await?;
                Some(items.items)
            }
            None => None,
        };
        let directory = Arc::new(Directory::of(
            &self.cfg.organization,
            &self.catalog,
            skus,
            subs,
            users,
            pc,
        ));
        *self.directory.lock().expect("directory lock") = Some(directory.clone());
        Ok(directory)
    }

    /// Each user's last sign-in (`signInActivity`, which Graph returns only to an app with
    /// AuditLog.Read.All, in a tenant with Microsoft Entra ID P1 or P2): lowercase UPN → the
    /// last sign-in, `None` for never. `Ok(Err(why))` when Graph refuses it: the report says
    /// the column is unavailable and why, and goes on. Read only for `seatkeeper report`.
    pub async fn sign_ins(&self) -> Result<std::result::Result<SignIns, String>> {
        let url = self.graph("/users?$select=id,userPrincipalName,signInActivity&$top=999");
        let mut out = SignIns::new();
        let read = self
            .client
            .each_page::<wire::User>(Scope::Graph, &url, |page| {
                for u in page {
                    out.insert(
                        u.user_principal_name.to_lowercase(),
                        u.sign_in_activity.as_ref().and_then(mapping::last_sign_in),
                    );
                }
            })
            .await;
        match read {
            Ok(()) => Ok(Ok(out)),
            Err(BackendError::Refused(Refusal::PermissionDenied { .. })) => Ok(Err(
                "Graph refused signInActivity: it needs the application permission \
                 AuditLog.Read.All (admin consent) and a tenant with Microsoft Entra ID P1 or P2"
                    .into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// A group's direct members (users and others; `add_group` keeps the users).
    async fn members(&self, group: &str) -> Result<Vec<wire::Member>> {
        let url = self.graph(&format!(
            "/groups/{group}/members?$select=id,userPrincipalName&$top=999"
        ));
        self.client.all::<wire::Member>(Scope::Graph, &url).await
    }

    /// Partner Center's copy of a subscription this partner sold; without Partner Center (or
    /// for one the vendor bills directly) seats cannot change here.
    async fn pc_subscription(
        &self,
        id: &str,
        correlation: Option<&str>,
    ) -> Result<(String, wire::PcSubscription)> {
        let not_supported = || Refusal::SeatChangeNotSupported { id: id.into() }.into();
        let Some(customer) = self.customer() else {
            return Err(not_supported());
        };
        let url = format!("{customer}/subscriptions/{id}");
        match self
            .client
            .get_in(Scope::PartnerCenter, &url, correlation)
            .await
        {
            Ok(s) => Ok((url, s)),
            Err(BackendError::Refused(Refusal::NotFound { .. })) => Err(not_supported()),
            Err(e) => Err(e),
        }
    }

    async fn patch_subscription(
        &self,
        id: &str,
        change: impl FnOnce(&mut wire::PcSubscription),
    ) -> Result<u16> {
        // The read and the PATCH are one operation.
        let operation = client::fresh_id("operation");
        let (url, mut sub) = self.pc_subscription(id, Some(&operation)).await?;
        change(&mut sub);
        let body = serde_json::to_value(&sub).expect("subscriptions serialize");
        // A subscription's seats, billing or state change none of the ids a licence batch
        // maps (users, products, plans): the directory stays (snapshots read afresh anyway),
        // so the batches after a seat increase do not read every user again first.
        self.client
            .patch(Scope::PartnerCenter, &url, &body, Some(&operation))
            .await
    }

    /// Changes made: the next read must see them.
    fn forget(&self) {
        *self.directory.lock().expect("directory lock") = None;
    }

    /// The catalog item to buy (see [`offers`] for the route), found at most once a day.
    async fn offer(&self, customer: &str, o: &Checkout<'_>, operation: &str) -> Result<String> {
        let cache_key = (
            o.product.to_string(),
            o.term,
            o.billing.to_string(),
            o.offer.map(str::to_string),
        );
        if let Some((at, item)) = self
            .offers_found
            .lock()
            .expect("offers lock")
            .get(&cache_key)
            && at.elapsed() < CATALOG_FRESH
        {
            return Ok(item.clone());
        }
        let directory = self.directory().await?;
        let name = directory
            .catalog
            .product(o.product)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let w = offers::Wanted {
            part: o.product,
            name: &name,
            term: o.term,
            billing: o.billing,
            offer: o.offer,
        };
        let owned = directory
            .owned_offers
            .get(o.product)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (product, sku) = if let Some(named) = offers::named_product_and_sku(&w, owned)? {
            named
        } else {
            if name.is_empty() {
                return Err(offers::not_found(
                    &w,
                    "its product name is not known here, so no catalog title can be matched; set spec.offer",
                )
                .into());
            }
            let products = self.catalog_products(customer, operation).await?;
            let found = offers::products_named(&products, &name);
            let product = match found.as_slice() {
                [one] => one.id.clone(),
                [] => {
                    return Err(offers::not_found(
                        &w,
                        &format!("no catalog product is titled \"{name}\""),
                    )
                    .into());
                }
                many => {
                    let ids = many
                        .iter()
                        .map(|p| format!("{} ({})", p.id, p.title))
                        .collect();
                    return Err(offers::ambiguous(&w, ids).into());
                }
            };
            let url = format!("{customer}/products/{product}/skus");
            let skus: wire::Items<wire::CatalogSku> = self
                .client
                .get_in(Scope::PartnerCenter, &url, Some(operation))
                .await?;
            let sku = offers::sku_named(&w, &product, &skus.items)?.id.clone();
            (product, sku)
        };
        let url = format!("{customer}/products/{product}/skus/{sku}/availabilities");
        let all: wire::Items<wire::Availability> = self
            .client
            .get_in(Scope::PartnerCenter, &url, Some(operation))
            .await?;
        let item = offers::availability(&w, &all.items)?;
        self.offers_found
            .lock()
            .expect("offers lock")
            .insert(cache_key, (std::time::Instant::now(), item.clone()));
        Ok(item)
    }

    /// The customer's catalog products (new commerce's online services), read once a day.
    async fn catalog_products(
        &self,
        customer: &str,
        operation: &str,
    ) -> Result<Arc<Vec<wire::CatalogProduct>>> {
        if let Some((at, p)) = self.catalog_products.lock().expect("catalog lock").as_ref()
            && at.elapsed() < CATALOG_FRESH
        {
            return Ok(p.clone());
        }
        let url = format!("{customer}/products?targetView=OnlineServices");
        let items: wire::Items<wire::CatalogProduct> = self
            .client
            .get_in(Scope::PartnerCenter, &url, Some(operation))
            .await?;
        let products = Arc::new(items.items);
        *self.catalog_products.lock().expect("catalog lock") =
            Some((std::time::Instant::now(), products.clone()));
        Ok(products)
    }

    /// The subscription an order of this purchase made, when the customer's orders list it:
    /// its line item carries the purchase's name (`friendlyName`).
    async fn ordered(&self, customer: &str, name: &str, operation: &str) -> Result<Option<String>> {
        let url = format!("{customer}/orders");
        let orders: wire::Items<wire::Order> = self
            .client
            .get_in(Scope::PartnerCenter, &url, Some(operation))
            .await?;
        Ok(orders
            .items
            .iter()
            .flat_map(|o| &o.line_items)
            .filter(|l| l.friendly_name.as_deref() == Some(name))
            .find_map(|l| l.subscription_id.clone()))
    }

    /// Buys through a cart, exactly once, whatever is lost on the way: the catalog item comes
    /// from the catalog ([`Self::offer`]); the cart's line item carries a name made from the
    /// purchase key, which the order's line item repeats; each call's MS-RequestId is stable
    /// for the purchase. Before anything, the customer's orders are searched for that name (a
    /// purchase whose reply was lost); a cart that shows `Ordered` is never checked out again
    /// (its order may take up to 15 minutes to be listed: the purchase waits and looks again);
    /// a checkout whose reply is lost is looked for in the orders, never repeated blindly.
    async fn checkout(&self, o: &Checkout<'_>) -> Result<String> {
        let Some(customer) = self.customer() else {
            return Err(Refusal::SeatChangeNotSupported {
                id: format!("a new {}", o.product),
            }
            .into());
        };
        let key = o.key;
        // Each call its own request id, stable for this purchase (a retry after a crash or a
        // lost reply sends the same ones); one correlation id for the whole purchase.
        let operation = crate::guid::guid("purchase", key);
        let cart_request = crate::guid::guid("cart", key);
        let checkout_request = crate::guid::guid("checkout", key);
        let name = format!("seatkeeper {}", crate::guid::guid("purchase-name", key));
        if let Some(id) = self.ordered(&customer, &name, &operation).await? {
            self.forget();
            return Ok(id);
        }
        let item = self.offer(&customer, o, &operation).await?;
        let mut line = json!({"id": 0, "catalogItemId": item, "quantity": o.quantity,
            "billingCycle": o.billing, "termDuration": o.term.as_str(), "friendlyName": name});
        if let Some(p) = o.parent {
            line["provisioningContext"] = json!({"ParentSubscriptionId": p});
        }
        let cart = json!({"lineItems": [line]});
        let url = format!("{customer}/carts");
        let created: wire::Cart = self
            .client
            .post(
                Scope::PartnerCenter,
                &url,
                &cart,
                client::CallIds {
                    request: Some(&cart_request),
                    correlation: Some(&operation),
                    once: false,
                },
            )
            .await?;
        let waiting = || {
            BackendError::Unavailable(format!(
                "the purchase of {} was checked out but its order is not listed yet (Partner Center lists orders up to 15 minutes late); seatkeeper looks again and never checks out twice",
                o.product
            ))
        };
        if created
            .status
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("active"))
        {
            return Err(waiting());
        }
        let cart_id = created.id.unwrap_or_default();
        let url = format!("{customer}/carts/{cart_id}/checkout");
        let result: Result<wire::CartCheckoutResult> = self
            .client
            .post(
                Scope::PartnerCenter,
                &url,
                &json!({}),
                client::CallIds {
                    request: Some(&checkout_request),
                    correlation: Some(&operation),
                    // A lost reply is looked for in the orders, not sent again.
                    once: true,
                },
            )
            .await;
        self.forget();
        let result = match result {
            Ok(r) => r,
            // The reply was lost: the order tells whether it went through.
            Err(BackendError::Unavailable(_)) => {
                return match self.ordered(&customer, &name, &operation).await {
                    Ok(Some(id)) => Ok(id),
                    _ => Err(BackendError::Unavailable(format!(
                        "the checkout of {} did not answer; if it went through, its order is listed within 15 minutes: seatkeeper looks at the orders and the cart's state again, and never checks out a cart twice",
                        o.product
                    ))),
                };
            }
            Err(e) => return Err(e),
        };
        result
            .orders
            .iter()
            .flat_map(|o| &o.line_items)
            .find_map(|l| l.subscription_id.clone())
            .ok_or_else(|| BackendError::Unavailable("the order holds no subscription yet".into()))
    }
}

impl Backend for Microsoft {
    async fn snapshot(&self, organization: &str) -> Result<Snapshot> {
        if organization.is_empty() {
            return Ok(Snapshot {
                catalog: self.catalog.clone(),
                organization: None,
            });
        }
        self.check_organization(organization)?;
        let d = self.read().await?;
        let mut organization = d.organization.clone();
        let mut accepted = self.accepted.lock().expect("accepted lock");
        accepted.retain(|id, seats| {
            let Some(sub) = organization.subscriptions.iter_mut().find(|s| &s.id == id) else {
                return false;
            };
            if sub.seats == *seats {
                return false; // finished
            }
            sub.pending_seat_change = Some(crate::domain::PendingSeatChange {
                seats: *seats,
                completes_at: jiff::Timestamp::now() + ACCEPTED_LOOK_AGAIN,
            });
            true
        });
        Ok(Snapshot {
            catalog: d.catalog.clone(),
            organization: Some(organization),
        })
    }

    async fn buy_subscription(
        &self,
        organization: &str,
        r: &PurchaseRequest,
    ) -> Result<Subscription> {
        self.check_organization(organization)?;
        let billing = mapping::billing_cycle(r.billing_frequency);
        let id = self
            .checkout(&Checkout {
                product: &r.product,
                quantity: r.seats,
                billing,
                term: r.term,
                offer: r.offer.as_deref(),
                parent: None,
                key: &r.idempotency_key,
            })
            .await?;
        // A fresh subscription may not be readable at once (replication lag): look again.
        for wait in [0, 250, 500, 1000, 2000] {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Some(s) = self.read().await?.organization.subscription(&id) {
                return Ok(s.clone());
            }
        }
        // Bought, not readable yet: its id is what the purchase record needs.
        Ok(Subscription {
            id,
            product: r.product.clone(),
            seats: r.seats,
            ..Default::default()
        })
    }

    async fn convert_trial(&self, organization: &str, id: &str) -> Result<()> {
        self.check_organization(organization)?;
        // A new commerce trial becomes paid through a transition ("Transition a new commerce
        // subscription"; the legacy conversions call does not apply to new commerce and
        // needs App+User credentials). One trial converts once: the request id is a function
        // of the trial, so a retry after a lost reply is the same call, not a second one.
        let operation = crate::guid::guid("conversion-operation", id);
        let (url, trial) = self.pc_subscription(id, Some(&operation)).await?;
        let eligible: wire::Items<wire::TransitionEligibility> = self
            .client
            .get_in(
                Scope::PartnerCenter,
                &format!("{url}/transitionEligibilities?eligibilityType=immediate"),
                Some(&operation),
            )
            .await?;
        let body = offers::trial_to_paid(&trial, &eligible.items)?;
        // A retry after a lost reply is the same call (the same id); after an answer that
        // said the transition failed, the next attempt is a new call.
        let failures = self.conversion_failures(id);
        let request = crate::guid::guid("conversion", &format!("{id}#{failures}"));
        let ids = client::CallIds {
            request: Some(&request),
            correlation: Some(&operation),
            once: false,
        };
        let answer: serde_json::Value = self
            .client
            .post(
                Scope::PartnerCenter,
                &format!("{url}/transitions"),
                &serde_json::to_value(&body).expect("transitions serialize"),
                ids,
            )
            .await?;
        if offers::transition_failed(&answer) {
            *self
                .failed_conversions
                .lock()
                .expect("conversions lock")
                .entry(id.to_string())
                .or_default() += 1;
            return Err(Refusal::TrialConversionFailed { id: id.to_string() }.into());
        }
        self.forget();
        Ok(())
    }

    async fn set_seats(
        &self,
        organization: &str,
        id: &str,
        seats: u32,
        _product_key: Option<&str>,
    ) -> Result<SeatChange> {
        self.check_organization(organization)?;
        let status = self.patch_subscription(id, |s| s.quantity = seats).await?;
        let mut accepted = self.accepted.lock().expect("accepted lock");
        accepted.remove(id);
        Ok(if status == 202 {
            accepted.insert(id.to_string(), seats);
            SeatChange::Accepted
        } else {
            SeatChange::Applied
        })
    }

    async fn set_recurring_billing(&self, organization: &str, id: &str, on: bool) -> Result<()> {
        self.check_organization(organization)?;
        self.patch_subscription(id, |s| s.auto_renew_enabled = on)
            .await?;
        Ok(())
    }

    async fn cancel(&self, organization: &str, id: &str) -> Result<Cancellation> {
        self.check_organization(organization)?;
        match self
            .patch_subscription(id, |s| s.status = "deleted".into())
            .await
        {
            Ok(_) => Ok(Cancellation::Canceled),
            Err(BackendError::Refused(Refusal::CancellationWindowClosed { .. })) => {
                // R10: after the window, recurring billing is turned off instead.
                self.patch_subscription(id, |s| s.auto_renew_enabled = false)
                    .await?;
                Ok(Cancellation::RecurringBillingTurnedOff)
            }
            Err(e) => Err(e),
        }
    }

    async fn buy_add_on(
        &self,
        organization: &str,
        base: &str,
        r: &PurchaseRequest,
    ) -> Result<TraditionalAddOn> {
        let (product, quantity, key) = (r.product.as_str(), r.seats, r.idempotency_key.as_str());
        self.check_organization(organization)?;
        let id = self
            .checkout(&Checkout {
                product,
                quantity,
                billing: "monthly",
                term: r.term,
                offer: r.offer.as_deref(),
                parent: Some(base),
                key,
            })
            .await?;
        Ok(TraditionalAddOn {
            id,
            product: product.into(),
            quantity,
            purchase_key: Some(key.into()),
        })
    }

    async fn set_add_on_quantity(
        &self,
        organization: &str,
        _base: &str,
        id: &str,
        quantity: u32,
    ) -> Result<()> {
        self.check_organization(organization)?;
        self.patch_subscription(id, |s| s.quantity = quantity)
            .await?;
        Ok(())
    }

    async fn cancel_add_on(&self, _organization: &str, _base: &str, _id: &str) -> Result<()> {
        // R23: only support removes a traditional add-on.
        Err(Refusal::RemovalRequiresSupport.into())
    }

    async fn assign_group_licences(
        &self,
        organization: &str,
        group: &str,
        add: &[crate::domain::Licence],
        remove: &[String],
    ) -> Result<()> {
        self.check_organization(organization)?;
        let d = self.directory().await?;
        let body = d.group_assign_request(add, remove)?;
        let body = serde_json::to_value(body).expect("requests serialize");
        // 202 Accepted with the group: the service processes its members afterwards. The
        // same call again leaves the same licences, so it may be repeated.
        let request = client::fresh_id("group-licences");
        let _: serde_json::Value = self
            .client
            .post(
                Scope::Graph,
                &self.graph(&format!("/groups/{group}/assignLicense")),
                &body,
                client::CallIds {
                    request: Some(&request),
                    correlation: None,
                    once: false,
                },
            )
            .await?;
        Ok(())
    }

    async fn assign_licences(
        &self,
        organization: &str,
        changes: &[UserChange],
    ) -> Result<Vec<std::result::Result<(), Refusal>>> {
        self.check_organization(organization)?;
        if changes.len() > MAX_BATCH {
            return Err(Refusal::BatchTooLarge {
                size: changes.len(),
            }
            .into());
        }
        let d = self.directory().await?;
        let mut results: Vec<Option<std::result::Result<(), Refusal>>> = vec![None; changes.len()];
        let mut requests = vec![];
        for (i, c) in changes.iter().enumerate() {
            match d.assign_request(c) {
                Ok((user_id, body)) => requests.push(wire::BatchItem {
                    id: i.to_string(),
                    method: "POST".into(),
                    url: format!("/users/{user_id}/assignLicense"),
                    headers: [("Content-Type".to_string(), "application/json".to_string())].into(),
                    body: Some(serde_json::to_value(body).expect("requests serialize")),
                    depends_on: vec![],
                }),
                Err(r) => results[i] = Some(Err(r)),
            }
        }
        let answers = self.client.batch(&self.graph("/$batch"), requests).await?;
        for (i, answer) in answers {
            results[i] = Some(answer.map_err(|e| d.refusal(&changes[i], &e)));
        }
        // Licence changes leave the directory's ids (users, products, plans) as they were:
        // the next batch uses them again instead of reading every user once more (which made
        // a run's reads grow with users × batches). Snapshots always read afresh.
        Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
    }
}
