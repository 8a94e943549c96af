//! What the services report, in the domain's words; and the services' refusals as typed
//! refusals. Ids map to names through what this tenant reports (`subscribedSkus`, users).

use super::wire;
use crate::backend::BackendError;
use crate::domain::catalog::CatalogOverrides;
use crate::domain::{
    BillingFrequency, Catalog, Channel, Group, GroupLicenceError, Licence, LicenceError,
    Organization, Product, Refusal, Subscription, SubscriptionState, TraditionalAddOn, User,
    UserChange,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// One `$batch` item that failed: its status and the service's words.
#[derive(Clone, Debug)]
pub struct ItemError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// The tenant as last read, with the ids behind its names.
pub struct Directory {
    pub catalog: Arc<Catalog>,
    pub organization: Organization,
    /// lowercase UPN → user id.
    users: HashMap<String, String>,
    /// product → skuId.
    skus: HashMap<String, String>,
    /// (product, plan name) → servicePlanId.
    plans: HashMap<(String, String), String>,
    /// product → the Partner Center offer ids (`productId:skuId[:availabilityId]`) of the
    /// customer's subscriptions of it, joined through Graph's `commerceSubscriptionId`.
    pub owned_offers: HashMap<String, Vec<String>>,
}

/// The service's users in the domain's words, mapped page by page as they arrive: a large
/// tenant's raw pages (ids, GUIDs, assignment states) are never all held at once.
pub struct Users {
    /// lowercase skuId → product.
    sku_name: HashMap<String, String>,
    /// lowercase servicePlanId → plan name.
    plan_name: HashMap<String, String>,
    users: Vec<User>,
    /// lowercase UPN → user id.
    ids: HashMap<String, String>,
    /// user id → UPN: group members come as ids.
    upns: HashMap<String, String>,
    groups: Vec<Group>,
}

impl Users {
    /// A reader that names licences after this tenant's `subscribedSkus`.
    pub fn new(skus: &[wire::SubscribedSku]) -> Users {
        Users {
            sku_name: skus
                .iter()
                .map(|s| (s.sku_id.to_lowercase(), s.sku_part_number.clone()))
                .collect(),
            plan_name: skus
                .iter()
                .flat_map(|s| &s.service_plans)
                .map(|p| {
                    (
                        p.service_plan_id.to_lowercase(),
                        p.service_plan_name.clone(),
                    )
                })
                .collect(),
            users: vec![],
            ids: HashMap::new(),
            upns: HashMap::new(),
            groups: vec![],
        }
    }

    /// One group with its members (`GET /groups/{id}/members` pages), after the users.
    pub fn add_group(&mut self, g: wire::Group, members: Vec<wire::Member>) {
        let licenses = g
            .assigned_licenses
            .iter()
            .filter_map(|l| {
                let product = self.sku_name.get(&l.sku_id.to_lowercase())?;
                let disabled: Vec<String> = l
                    .disabled_plans
                    .iter()
                    .filter_map(|p| self.plan_name.get(&p.to_lowercase()).cloned())
                    .collect();
                Some(Licence::new(product, &disabled))
            })
            .collect();
        let members = members
            .into_iter()
            .filter(|m| {
                m.odata_type
                    .as_deref()
                    .is_none_or(|t| t == "#microsoft.graph.user")
            })
            .filter_map(|m| {
                m.user_principal_name
                    .or_else(|| self.upns.get(&m.id.to_lowercase()).cloned())
            })
            .collect();
        let processing = g
            .license_processing_state
            .and_then(|p| p.state)
            .is_some_and(|s| s != "ProcessingComplete");
        self.groups.push(Group {
            name: g.display_name.unwrap_or_else(|| g.id.clone()),
            id: Some(g.id),
            members,
            licenses,
            processing,
        });
    }

    /// One page of `GET /users`.
    pub fn add(&mut self, page: Vec<wire::User>) {
        self.users.reserve(page.len());
        for u in page {
            self.users.push(user(&u, &self.sku_name, &self.plan_name));
            self.upns
                .insert(u.id.to_lowercase(), u.user_principal_name.clone());
            self.ids.insert(u.user_principal_name.to_lowercase(), u.id);
        }
    }
}

impl Directory {
    /// The directory of whole answers (the unit tests' way in).
    #[cfg(test)]
    pub fn new(
        domain: &str,
        builtin: &Catalog,
        skus: Vec<wire::SubscribedSku>,
        subs: Vec<wire::CompanySubscription>,
        users: Vec<wire::User>,
        pc: Option<Vec<wire::PcSubscription>>,
    ) -> Directory {
        let mut read = Users::new(&skus);
        read.add(users);
        Directory::of(domain, builtin, skus, subs, read, pc)
    }

    /// The directory of what was read, the users already mapped.
    pub fn of(
        domain: &str,
        builtin: &Catalog,
        skus: Vec<wire::SubscribedSku>,
        subs: Vec<wire::CompanySubscription>,
        users: Users,
        pc: Option<Vec<wire::PcSubscription>>,
    ) -> Directory {
        let catalog = Arc::new(catalog_of(builtin, &skus));
        let mut organization = Organization::default();
        organization.domain = domain.to_string();
        // Not reported; the service refuses a change that needs one.
        organization.payment_method_on_file = true;
        organization.users = users.users;
        organization.groups = users.groups;
        // Partner Center runs its credit checks when an order or a seat increase arrives, and
        // nothing it shows beforehand tells (R03).
        organization.credit_check_by_service = pc.is_some();
        organization.subscriptions = subscriptions(&subs, pc.as_deref());
        let mut owned_offers: HashMap<String, Vec<String>> = HashMap::new();
        for s in &subs {
            let sold = pc.as_deref().and_then(|pc| {
                pc.iter()
                    .find(|p| p.id.eq_ignore_ascii_case(&s.commerce_subscription_id))
            });
            if let Some(p) = sold.filter(|p| p.offer_id.contains(':')) {
                let offers = owned_offers.entry(s.sku_part_number.clone()).or_default();
                if !offers.contains(&p.offer_id) {
                    offers.push(p.offer_id.clone());
                }
            }
        }
        Directory {
            owned_offers,
            catalog,
            organization,
            users: users.ids,
            skus: skus
                .iter()
                .map(|s| (s.sku_part_number.clone(), s.sku_id.clone()))
                .collect(),
            plans: skus
                .iter()
                .flat_map(|s| {
                    s.service_plans.iter().map(move |p| {
                        let key = (s.sku_part_number.clone(), p.service_plan_name.clone());
                        (key, p.service_plan_id.clone())
                    })
                })
                .collect(),
        }
    }

    /// One user's change as an `assignLicense` request, in this tenant's ids.
    pub fn assign_request(
        &self,
        change: &UserChange,
    ) -> Result<(String, wire::AssignLicense), Refusal> {
        let user_id =
            self.users
                .get(&change.user.to_lowercase())
                .ok_or_else(|| Refusal::UserNotFound {
                    user: change.user.clone(),
                })?;
        Ok((user_id.clone(), self.licence_body(change)?))
    }

    /// Adds and removes by skuId and servicePlanId.
    fn licence_body(&self, change: &UserChange) -> Result<wire::AssignLicense, Refusal> {
        let sku = |product: &str| {
            self.skus
                .get(product)
                .cloned()
                .ok_or_else(|| Refusal::ProductUnknown {
                    product: product.to_string(),
                })
        };
        let mut add = vec![];
        for l in &change.add {
            let disabled = l
                .disabled_plans
                .iter()
                .map(|p| {
                    self.plans
                        .get(&(l.product.clone(), p.clone()))
                        .cloned()
                        .ok_or_else(|| Refusal::NotFound {
                            what: format!("service plan {p} of {}", l.product),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            add.push(wire::AssignedLicense {
                sku_id: sku(&l.product)?,
                disabled_plans: disabled,
            });
        }
        let remove = change
            .remove
            .iter()
            .map(|p| sku(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(wire::AssignLicense {
            add_licenses: add,
            remove_licenses: remove,
        })
    }

    /// `POST /groups/{id}/assignLicense`'s body (the same shape as a user's).
    pub fn group_assign_request(
        &self,
        add: &[Licence],
        remove: &[String],
    ) -> Result<wire::AssignLicense, Refusal> {
        let change = UserChange {
            user: String::new(),
            add: add.to_vec(),
            remove: remove.to_vec(),
            plans_only: vec![],
        };
        self.licence_body(&change)
    }

    /// A `$batch` item's refusal, in the domain's words.
    pub fn refusal(&self, change: &UserChange, e: &ItemError) -> Refusal {
        let m = e.message.to_lowercase();
        let product = change
            .add
            .first()
            .map(|l| l.product.clone())
            .unwrap_or_default();
        if e.status == 404 || m.contains("does not exist") {
            Refusal::UserNotFound {
                user: change.user.clone(),
            }
        } else if m.contains("usage location") {
            Refusal::UsageLocationMissing {
                user: change.user.clone(),
            }
        } else if m.contains("available licenses") {
            Refusal::InsufficientSeats {
                product,
                needed: 1,
                available: 0,
            }
        } else if m.contains("mutually exclusive") {
            let plans: Vec<String> =
                plans_named(&e.message, "service plans ", " are mutually exclusive")
                    .iter()
                    .map(|p| self.plan_name(p))
                    .collect();
            let of = |plan: &str| self.product_with_plan(plan);
            let (a, b) = (
                plans.first().cloned().unwrap_or_default(),
                plans.get(1).cloned().unwrap_or_default(),
            );
            Refusal::ConflictingServices {
                product: of(&a),
                other_product: of(&b),
                plan: a,
                other_plan: b,
                more: vec![],
            }
        } else if m.contains("depends on") {
            let names = |before: &str, after: &str| -> Vec<String> {
                plans_named(&e.message, before, after)
                    .iter()
                    .map(|p| self.plan_name(p))
                    .collect()
            };
            Refusal::MissingDependency {
                plan: names("service plan ", " depends").join(", "),
                product,
                needs: names("service plan(s) ", "."),
            }
        } else if m.contains("inherited from a group") {
            Refusal::LicenseAssignedByGroup {
                user: change.user.clone(),
                product: change.remove.join(", "),
            }
        } else if m.contains("valid company license") || m.contains("invalid license") {
            Refusal::ProductUnknown { product }
        } else if e.status == 403 {
            Refusal::PermissionDenied {
                permission: permission_in(&e.message),
            }
        } else {
            Refusal::NotFound {
                what: format!(
                    "a licence change for {} ({}: {})",
                    change.user, e.code, e.message
                ),
            }
        }
    }

    /// A service plan's name from its id (Graph's messages name plans by id), or the text as
    /// it is when it is a name already.
    fn plan_name(&self, plan: &str) -> String {
        let plan = plan.trim().trim_matches(|c| c == '\'' || c == '"');
        self.plans
            .iter()
            .find(|(_, id)| id.eq_ignore_ascii_case(plan))
            .map(|((_, name), _)| name.clone())
            .unwrap_or_else(|| plan.to_string())
    }

    fn product_with_plan(&self, plan: &str) -> String {
        self.plans
            .keys()
            .find(|(_, p)| p == plan)
            .map(|(product, _)| product.clone())
            .unwrap_or_default()
    }
}

/// The built-in catalog (plans, conflicts, dependencies, prices the planner predicts with),
/// with every product this tenant holds that it does not know, from what the tenant reports.
fn catalog_of(builtin: &Catalog, skus: &[wire::SubscribedSku]) -> Catalog {
    let unknown = skus
        .iter()
        .filter(|s| builtin.product(&s.sku_part_number).is_none() && s.applies_to == "User")
        .map(|s| Product {
            sku: s.sku_part_number.clone(),
            name: s.sku_part_number.clone(),
            plans: s
                .service_plans
                .iter()
                .filter(|p| p.applies_to != "Company")
                .map(|p| p.service_plan_name.clone())
                .collect(),
            ..Default::default()
        })
        .collect();
    builtin.extended(&CatalogOverrides {
        products: unknown,
        conflicts: vec![],
    })
}

fn user(
    u: &wire::User,
    sku_name: &HashMap<String, String>,
    plan_name: &HashMap<String, String>,
) -> User {
    // (sku, disabled plans, inherited from a group); a group licence in state Error is not
    // held: it is the member's error (licenseAssignmentState `state`, `error`).
    let mut license_errors = vec![];
    let states: Vec<(&String, &Vec<String>, bool)> = if u.license_assignment_states.is_empty() {
        u.assigned_licenses
            .iter()
            .map(|l| (&l.sku_id, &l.disabled_plans, false))
            .collect()
    } else {
        u.license_assignment_states
            .iter()
            .filter(|l| {
                if l.state.as_deref() != Some("Error") {
                    return true;
                }
                if let (Some(group), Some(product)) =
                    (&l.assigned_by_group, sku_name.get(&l.sku_id.to_lowercase()))
                {
                    license_errors.push(LicenceError {
                        product: product.clone(),
                        group: group.clone(),
                        error: GroupLicenceError::parse(l.error.as_deref().unwrap_or("Other")),
                    });
                }
                false
            })
            .map(|l| (&l.sku_id, &l.disabled_plans, l.assigned_by_group.is_some()))
            .collect()
    };
    // Sized to what the user holds: a growing vector would keep room for four licences.
    let mut licenses: Vec<Licence> = Vec::with_capacity(states.len());
    for (sku, disabled, by_group) in states {
        let Some(product) = sku_name.get(&sku.to_lowercase()) else {
            continue;
        };
        let disabled: Vec<String> = disabled
            .iter()
            .filter_map(|p| plan_name.get(&p.to_lowercase()).cloned())
            .collect();
        match licenses.iter_mut().find(|l| &l.product == product) {
            // Held directly and through a group: it can be removed directly.
            Some(l) => l.by_group &= by_group,
            None => {
                let mut l = Licence::new(product, &disabled);
                l.by_group = by_group;
                licenses.push(l);
            }
        }
    }
    User {
        upn: u.user_principal_name.clone(),
        guest: u.user_type.as_deref() == Some("Guest"),
        usage_location: u.usage_location.clone().filter(|l| !l.is_empty()),
        department: u.department.clone().filter(|d| !d.is_empty()),
        job_title: u.job_title.clone().filter(|d| !d.is_empty()),
        company_name: u.company_name.clone().filter(|d| !d.is_empty()),
        office_location: u.office_location.clone().filter(|d| !d.is_empty()),
        country: u.country.clone().filter(|d| !d.is_empty()),
        employee_type: u.employee_type.clone().filter(|d| !d.is_empty()),
        account_enabled: u.account_enabled.unwrap_or(true),
        last_sign_in_at: u.sign_in_activity.as_ref().and_then(last_sign_in),
        licenses,
        license_errors,
    }
}

/// The last time the account was used: the last successful sign-in where Graph records it,
/// else the later of the last interactive and non-interactive attempts (Microsoft's advice
/// for finding inactive accounts reads both).
pub fn last_sign_in(a: &wire::SignInActivity) -> Option<crate::domain::Instant> {
    // "0001-01-01T00:00:00Z" is Graph's never (the user-list page's example).
    let at = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| s.parse::<crate::domain::Instant>().ok())
            .filter(|t| t.as_second() > 0)
    };
    at(&a.last_successful_sign_in_date_time).or_else(|| {
        [
            at(&a.last_sign_in_date_time),
            at(&a.last_non_interactive_sign_in_date_time),
        ]
        .into_iter()
        .flatten()
        .max()
    })
}

/// Graph's subscriptions, with Partner Center's view of those this partner sold: who sold it
/// (channel), billing, term, and traditional add-ons under their base.
fn subscriptions(
    subs: &[wire::CompanySubscription],
    pc: Option<&[wire::PcSubscription]>,
) -> Vec<Subscription> {
    let sold = |id: &str| pc.and_then(|pc| pc.iter().find(|p| p.id.eq_ignore_ascii_case(id)));
    let mut out: Vec<Subscription> = vec![];
    let mut add_ons: Vec<(String, TraditionalAddOn)> = vec![];
    for s in subs {
        let id = if s.commerce_subscription_id.is_empty() {
            s.id.clone()
        } else {
            s.commerce_subscription_id.to_lowercase()
        };
        let p = sold(&id);
        if let Some(parent) = p.and_then(|p| p.parent_subscription_id.as_ref()) {
            add_ons.push((
                parent.to_lowercase(),
                TraditionalAddOn {
                    id: id.clone(),
                    product: s.sku_part_number.clone(),
                    quantity: s.total_licenses,
                    purchase_key: None,
                },
            ));
            continue;
        }
        let channel = if s.owner_type.as_deref() == Some("User") {
            Channel::SelfService
        } else if p.is_none() && s.owner_tenant_id.is_some() && pc.is_some() {
            // Sold by a partner, but not this one.
            Channel::Reseller
        } else {
            Channel::Direct
        };
        let mut sub = Subscription {
            id,
            product: s.sku_part_number.clone(),
            seats: s.total_licenses,
            channel,
            trial: s.is_trial,
            status: state(&s.status),
            term_ends_at: s
                .next_lifecycle_date_time
                .as_deref()
                .and_then(|t| t.parse().ok()),
            purchased_at: s.created_date_time.as_deref().and_then(|t| t.parse().ok()),
            ..Default::default()
        };
        if let Some(p) = p {
            sub.recurring_billing = p.auto_renew_enabled;
            sub.billing_frequency = if p.billing_cycle == "annual" {
                BillingFrequency::Annual
            } else {
                BillingFrequency::Monthly
            };
            sub.cancellation_window_ends_at = p
                .cancellation_allowed_until_date
                .as_deref()
                .and_then(|t| t.parse().ok());
            // Seats can be removed until the last refundable quantity expires.
            sub.reduction_window_ends_at = p.refundable_quantity.as_ref().and_then(|r| {
                r.details
                    .iter()
                    .filter_map(|d| d.allowed_until_date_time.parse().ok())
                    .max()
            });
            if p.status == "pending" {
                sub.status = SubscriptionState::Pending;
            }
        } else {
            sub.recurring_billing = true;
        }
        out.push(sub);
    }
    for (parent, a) in add_ons {
        if let Some(base) = out.iter_mut().find(|s| s.id == parent) {
            base.add_ons.push(a);
        }
    }
    out
}

fn state(status: &str) -> SubscriptionState {
    match status {
        "Warning" => SubscriptionState::Warning,
        "Suspended" | "LockedOut" => SubscriptionState::Suspended,
        "Deleted" => SubscriptionState::Canceled,
        _ => SubscriptionState::Active,
    }
}

pub fn billing_cycle(f: BillingFrequency) -> &'static str {
    match f {
        BillingFrequency::Monthly => "monthly",
        BillingFrequency::Annual => "annual",
    }
}

/// Graph's error envelope: (code, message).
pub fn graph_error(body: Option<&Value>) -> (String, String) {
    let e = body.and_then(|b| b.get("error"));
    let text = |k: &str| {
        e.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("code"), text("message"))
}

/// The permission an "insufficient privileges" message names, or the one licence changes need.
pub fn permission_in(message: &str) -> String {
    message
        .split(|c: char| c.is_whitespace() || c == ',' || c == '\'')
        .find(|w| w.ends_with(".All") || w.ends_with(".ReadWrite"))
        .unwrap_or("LicenseAssignment.ReadWrite.All")
        .to_string()
}

/// Partner Center's error codes as refusals.
pub fn pc_refusal(body: Option<&Value>, status: u16) -> BackendError {
    let code = body
        .and_then(|b| b.get("code"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let description = body
        .and_then(|b| b.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let refusal = match code {
        800023 | 800025 | 900121 | 800069 | 800073 | 800074 | 800075 => {
            Refusal::CreditCheckPending { clears_at: None }
        }
        800090 if description.contains("assigned") => Refusal::SeatsInUse {
            assigned: number_in(&description, "assigned").unwrap_or(0),
            requested: number_in(&description, "requested").unwrap_or(0),
        },
        // Not about seats in use: the refundable quantity has expired.
        800090 => Refusal::ReductionWindowClosed {
            closed_at: description
                .split_whitespace()
                .find_map(|w| w.trim_end_matches('.').parse().ok()),
        },
        900117 => Refusal::CancellationWindowClosed { term_ends_at: None },
        800027 => Refusal::Trial {
            payment_method_missing: false,
        },
        // "Invalid offer ID": the catalog item is not sold (here, or for this term).
        800004 => Refusal::OfferNotFound {
            product: String::new(),
            detail: description.clone(),
        },
        800029 | 800017 => Refusal::NotAvailable {
            product: description.clone(),
            r#for: vec![],
        },
        800091 => Refusal::SubscriptionSuspended { id: String::new() },
        _ => {
            return BackendError::Unavailable(format!(
                "Partner Center answered HTTP {status}: {code} {description}"
            ));
        }
    };
    BackendError::Refused(refusal)
}

/// The number after `word` in a description ("… 4 assigned …").
fn number_in(text: &str, word: &str) -> Option<u32> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_matches(|c: char| !c.is_alphanumeric()) == word)
        .and_then(|w| w[0].parse().ok())
}

/// The comma-separated names between `before` and `after` in a message.
fn plans_named(message: &str, before: &str, after: &str) -> Vec<String> {
    let Some(start) = message.find(before) else {
        return vec![];
    };
    let rest = &message[start + before.len()..];
    let end = rest.find(after).unwrap_or(rest.len());
    rest[..end]
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The products of Graph's documented subscribedSkus example.
    fn documented_skus() -> Vec<wire::SubscribedSku> {
        let page: wire::Page<wire::SubscribedSku> = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../../tests/fixtures/microsoft/subscribedSkus.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        page.value
    }

    #[test]
    fn graph_users_map_to_domain_users_by_the_tenants_own_ids() {
        let skus = documented_skus();
        let user: wire::User = serde_json::from_value(serde_json::json!({
            "id": "u1", "userPrincipalName": "Alice@contoso.com", "userType": "Guest",
            "usageLocation": "NL",
            "licenseAssignmentStates": [{"skuId": "C7DF2760-2c81-4ef7-b578-5b5392b571df",
                "disabledPlans": ["8c098270-9dd4-4350-9b30-ba4703f3b36b"], "assignedByGroup": null}]
        }))
        .unwrap();
        let d = Directory::new(
            "contoso.com",
            &Catalog::builtin(),
            skus,
            vec![],
            vec![user],
            None,
        );
        let u = &d.organization.users[0];
        assert!(u.guest);
        assert_eq!(u.licenses[0].product, "ENTERPRISEPREMIUM");
        assert_eq!(u.licenses[0].disabled_plans, vec!["ADALLOM_S_O365"]);
        assert!(
            d.catalog.product("ENTERPRISEPREMIUM").is_some(),
            "learned from the tenant"
        );
        let change = UserChange {
            user: "alice@contoso.com".into(),
            add: vec![],
            remove: vec!["ENTERPRISEPREMIUM".into()],
            plans_only: vec![],
        };
        let (id, body) = d.assign_request(&change).unwrap();
        assert_eq!(id, "u1");
        assert_eq!(
            body.remove_licenses,
            vec!["c7df2760-2c81-4ef7-b578-5b5392b571df"]
        );
    }

    #[test]
    fn graph_groups_map_members_by_id_and_a_group_in_processing_is_marked() {
        let skus = documented_skus();
        let mut read = Users::new(&skus);
        read.add(vec![
            serde_json::from_value(
                serde_json::json!({"id": "u1", "userPrincipalName": "alice@contoso.com"}),
            )
            .unwrap(),
        ]);
        let group = |state: serde_json::Value| -> wire::Group {
            serde_json::from_value(serde_json::json!({
                "id": "g1", "displayName": "Sales",
                "assignedLicenses": [{"skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df", "disabledPlans": []}],
                "licenseProcessingState": state
            }))
            .unwrap()
        };
        let members: Vec<wire::Member> = serde_json::from_value(serde_json::json!([
            {"@odata.type": "#microsoft.graph.user", "id": "U1"},
            {"@odata.type": "#microsoft.graph.group", "id": "nested"}
        ]))
        .unwrap();
        read.add_group(
            group(serde_json::json!({"state": "QueuedForProcessing"})),
            members.clone(),
        );
        read.add_group(
            group(serde_json::json!({"state": "ProcessingComplete"})),
            members.clone(),
        );
        read.add_group(group(serde_json::Value::Null), members);
        let d = Directory::of("contoso.com", &Catalog::builtin(), skus, vec![], read, None);
        let g = &d.organization.groups;
        assert_eq!(
            g[0].members,
            vec!["alice@contoso.com"],
            "users only, by their UPN"
        );
        assert_eq!(g[0].licenses[0].product, "ENTERPRISEPREMIUM");
        assert_eq!(
            g.iter().map(|g| g.processing).collect::<Vec<_>>(),
            vec![true, false, false]
        );
    }

    /// The directory of the documented subscribedSkus example, and a change of one user.
    fn documented() -> (Directory, UserChange) {
        let skus = documented_skus();
        let d = Directory::new(
            "contoso.com",
            &Catalog::builtin(),
            skus,
            vec![],
            vec![],
            None,
        );
        let change = UserChange {
            user: "alice@contoso.com".into(),
            add: vec![Licence::new("ENTERPRISEPREMIUM", &[])],
            remove: vec![],
            plans_only: vec![],
        };
        (d, change)
    }

    fn refusal_of(status: u16, message: &str) -> Refusal {
        let (d, change) = documented();
        let e = ItemError {
            status,
            code: "Request_BadRequest".into(),
            message: message.into(),
        };
        d.refusal(&change, &e)
    }

    #[test]
    fn graph_licence_refusals_are_read_from_graphs_own_messages() {
        // The messages Graph's assignLicense answers with (its error texts, widely reported).
        let cases = [
            (
                400,
                "License assignment cannot be done for user with invalid usage location.",
                "UsageLocationMissing",
            ),
            (
                400,
                "Subscription with SKU c7df2760-2c81-4ef7-b578-5b5392b571df does not have any available licenses.",
                "InsufficientSeats",
            ),
            (
                400,
                "User license is inherited from a group membership and it cannot be removed directly from the user.",
                "LicenseAssignedByGroup",
            ),
            (
                400,
                "License 11111111-2222-3333-4444-555555555555 does not correspond to a valid company License.",
                "ProductUnknown",
            ),
            (
                404,
                "Resource 'u1' does not exist or one of its queried reference-property objects are not present.",
                "UserNotFound",
            ),
            (
                403,
                "Insufficient privileges to complete the operation.",
                "PermissionDenied",
            ),
        ];
        for (status, message, reason) in cases {
            assert_eq!(
                refusal_of(status, message).reason().as_str(),
                reason,
                "{message}"
            );
        }
    }

    #[test]
    fn graph_names_plans_by_id_and_the_refusal_names_them_by_name() {
        // ADALLOM_S_O365 is 8c098270-… in the documented example; ids in Graph's messages.
        let r = refusal_of(
            400,
            "License assignment failed because service plans 8c098270-9dd4-4350-9b30-ba4703f3b36b,8c098270-9dd4-4350-9b30-ba4703f3b36b are mutually exclusive.",
        );
        assert_eq!(r.reason().as_str(), "ConflictingServices");
        assert!(r.message().contains("ADALLOM_S_O365"), "{}", r.message());
        let r = refusal_of(
            400,
            "License assignment failed because service plan 8c098270-9dd4-4350-9b30-ba4703f3b36b depends on the service plan(s) 8c098270-9dd4-4350-9b30-ba4703f3b36b.",
        );
        assert_eq!(r.reason().as_str(), "MissingDependency");
        assert!(r.message().contains("ADALLOM_S_O365"), "{}", r.message());
    }

    #[test]
    fn partner_center_codes_become_refusals() {
        let err = |code: u64| {
            pc_refusal(
                Some(&serde_json::json!({"code": code, "description": "x"})),
                400,
            )
        };
        let reason = |e: BackendError| match e {
            BackendError::Refused(r) => r.reason().as_str().to_string(),
            other => format!("{other}"),
        };
        assert_eq!(reason(err(900117)), "CancellationWindowClosed");
        assert_eq!(reason(err(800023)), "CreditCheckPending");
        let decrease = |d: &str| {
            reason(pc_refusal(
                Some(&serde_json::json!({"code": 800090, "description": d})),
                400,
            ))
        };
        assert_eq!(
            decrease("The quantity cannot be decreased: 4 assigned, 2 requested."),
            "SeatsInUse"
        );
        assert_eq!(
            decrease(
                "The quantity cannot be decreased: the refundable quantity expired at 2026-11-21T09:00:00Z."
            ),
            "ReductionWindowClosed"
        );
        assert!(matches!(err(1), BackendError::Unavailable(_)));
    }
}
