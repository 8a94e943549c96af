//! The request and response shapes of Microsoft Graph v1.0, the identity platform's token
//! endpoint and Partner Center v1, as the Microsoft client reads and writes them. The emulator
//! does not use them (it has its own reading of the pages). The fixtures in
//! `tests/fixtures/microsoft/` are the vendors' own examples: the tests below parse each with
//! these types, and a conformance test holds the emulator's answers to their shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Identity platform: POST {login}/{tenant}/oauth2/v2.0/token
// ---------------------------------------------------------------------------------------------

/// A successful token reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub token_type: String,
    pub expires_in: u64,
    pub access_token: String,
}

/// A refused token request (`AADSTS…` in the description).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenError {
    pub error: String,
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u64>,
    #[serde(default)]
    pub trace_id: String,
    #[serde(default)]
    pub correlation_id: String,
}

// ---------------------------------------------------------------------------------------------
// Graph v1.0
// ---------------------------------------------------------------------------------------------

/// A page of a Graph collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    #[serde(
        rename = "@odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_link: Option<String>,
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
}

/// `GET /subscribedSkus`: one product the organization holds, all its subscriptions together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    pub sku_id: String,
    pub sku_part_number: String,
    pub applies_to: String,
    pub capability_status: String,
    pub consumed_units: u32,
    pub prepaid_units: LicenseUnits,
    #[serde(default)]
    pub service_plans: Vec<ServicePlanInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscription_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseUnits {
    pub enabled: u32,
    #[serde(default)]
    pub warning: u32,
    #[serde(default)]
    pub suspended: u32,
    #[serde(default)]
    pub locked_out: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlanInfo {
    pub service_plan_id: String,
    pub service_plan_name: String,
    #[serde(default)]
    pub provisioning_status: String,
    #[serde(default)]
    pub applies_to: String,
}

/// `GET /directory/subscriptions`: one subscription (a companySubscription).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanySubscription {
    pub id: String,
    #[serde(default)]
    pub commerce_subscription_id: String,
    pub sku_id: String,
    pub sku_part_number: String,
    pub status: String,
    pub total_licenses: u32,
    #[serde(default)]
    pub is_trial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_lifecycle_date_time: Option<String>,
    /// `User`: bought by a user (self-service purchase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The partner tenant that sold it, when a partner did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_tenant_id: Option<String>,
}

/// `GET /users?$select=id,userPrincipalName,userType,usageLocation,department,jobTitle,companyName,officeLocation,country,employeeType,accountEnabled,assignedLicenses,licenseAssignmentStates`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    /// `Member` or `Guest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_location: Option<String>,
    /// Returned only when `$select` names it (as the other directory attributes below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_type: Option<String>,
    /// `false` for a disabled account; absent when not selected (taken as enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(default)]
    pub assigned_licenses: Vec<AssignedLicense>,
    #[serde(default)]
    pub license_assignment_states: Vec<LicenseAssignmentState>,
    /// Returned only when `$select`ed, and only to an app with AuditLog.Read.All (the
    /// signInActivity resource type); null for a user who never signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_activity: Option<SignInActivity>,
}

/// `signInActivity`: the last sign-in attempts (interactive, non-interactive) and the last
/// successful one (recorded since December 2023), each a DateTimeOffset in UTC.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInActivity {
    #[serde(default)]
    pub last_sign_in_date_time: Option<String>,
    #[serde(default)]
    pub last_non_interactive_sign_in_date_time: Option<String>,
    #[serde(default)]
    pub last_successful_sign_in_date_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedLicense {
    pub sku_id: String,
    #[serde(default)]
    pub disabled_plans: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseAssignmentState {
    pub sku_id: String,
    #[serde(default)]
    pub disabled_plans: Vec<String>,
    /// The group the licence is inherited from; null for a direct assignment.
    #[serde(default)]
    pub assigned_by_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A group as `GET /groups?$select=id,displayName,assignedLicenses` returns it (the group
/// resource type; `assignedLicenses` only when selected).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub assigned_licenses: Vec<AssignedLicense>,
    /// `{state: QueuedForProcessing | ProcessingInProgress | ProcessingComplete}`.
    #[serde(default)]
    pub license_processing_state: Option<LicenseProcessingState>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenseProcessingState {
    #[serde(default)]
    pub state: Option<String>,
}

/// One member of `GET /groups/{id}/members`: a directory object, a user when its
/// `@odata.type` says so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    pub id: String,
    #[serde(default)]
    pub user_principal_name: Option<String>,
}

/// `POST /users/{id}/assignLicense`: one user's adds and removes, atomic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignLicense {
    pub add_licenses: Vec<AssignedLicense>,
    pub remove_licenses: Vec<String>,
}

/// `POST /$batch`: at most 20 requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub requests: Vec<BatchItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    pub id: String,
    pub method: String,
    /// Relative to the version root, e.g. `/users/{id}/assignLicense`.
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub responses: Vec<BatchItemResponse>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchItemResponse {
    pub id: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// Graph's error envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphError {
    pub error: GraphErrorBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_error: Option<Value>,
}

// ---------------------------------------------------------------------------------------------
// Partner Center v1
// ---------------------------------------------------------------------------------------------

/// A Partner Center collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Items<T> {
    pub total_count: usize,
    pub items: Vec<T>,
}

/// A customer's subscription in Partner Center.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PcSubscription {
    pub id: String,
    pub offer_id: String,
    #[serde(default)]
    pub offer_name: String,
    pub quantity: u32,
    /// `active`, `pending`, `suspended`, `expired`, `disabled` or `deleted`.
    pub status: String,
    #[serde(default)]
    pub auto_renew_enabled: bool,
    /// `monthly` or `annual`.
    #[serde(default)]
    pub billing_cycle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment_end_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_allowed_until_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refundable_quantity: Option<RefundableQuantity>,
    #[serde(default)]
    pub is_trial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundableQuantity {
    pub total_quantity: u32,
    #[serde(default)]
    pub details: Vec<RefundableDetail>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundableDetail {
    pub quantity: u32,
    pub allowed_until_date_time: String,
}

/// Partner Center's error envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PcError {
    pub code: u32,
    pub description: String,
    #[serde(default)]
    pub data: Vec<String>,
    #[serde(default)]
    pub source: String,
}

/// `POST /customers/{customer}/carts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub line_items: Vec<CartLineItem>,
    /// `Active` until it is checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartLineItem {
    pub id: u32,
    pub catalog_item_id: String,
    pub quantity: u32,
    #[serde(default)]
    pub billing_cycle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_duration: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provisioning_context: BTreeMap<String, String>,
    /// The partner's name for the subscription it creates: the order's line item carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

/// `POST /customers/{customer}/carts/{cart}/checkout`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartCheckoutResult {
    #[serde(default)]
    pub orders: Vec<Order>,
    /// Absent from the page's example when nothing failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order_errors: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub line_items: Vec<OrderLineItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineItem {
    #[serde(default)]
    pub line_item_number: u32,
    pub offer_id: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

/// `GET /customers/{customer}/products?targetView=OnlineServices` ("Get a list of products
/// (by customer)"): a catalog product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogProduct {
    pub id: String,
    #[serde(default)]
    pub title: String,
}

/// `GET /customers/{customer}/products/{product}/skus`: one SKU of a product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogSku {
    pub id: String,
    pub product_id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub is_trial: bool,
    #[serde(default)]
    pub supported_billing_cycles: Vec<String>,
}

/// `GET /customers/{customer}/products/{product}/skus/{sku}/availabilities`: what can be
/// bought, and for which terms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub id: String,
    pub product_id: String,
    pub sku_id: String,
    pub catalog_item_id: String,
    #[serde(default)]
    pub is_purchasable: bool,
    #[serde(default)]
    pub terms: Vec<AvailabilityTerm>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityTerm {
    /// `P1M`, `P1Y`, `P3Y`.
    pub duration: String,
    #[serde(default)]
    pub description: String,
    /// Present on some terms (`Monthly`, `Annual`); absent means any the SKU supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_cycle: Option<String>,
}

/// `GET …/subscriptions/{id}/transitionEligibilities?eligibilityType=immediate` ("Transition a
/// new commerce subscription"): what the subscription may become now. A new commerce trial is
/// converted to paid this way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionEligibility {
    pub catalog_item_id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub quantity: u32,
    #[serde(default)]
    pub eligibilities: Vec<TransitionEligibilityDetail>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransitionEligibilityDetail {
    pub is_eligible: bool,
    /// `transition_only` or `transition_with_license_transfer`.
    pub transition_type: String,
}

/// `POST …/subscriptions/{id}/transitions`: the body (`toCatalogItemId`, `quantity` and
/// `transitionType` required). The answer is the same object with `Events`, whose status
/// (`Started`, `Completed`, `Failed`) is read from the JSON as it comes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_catalog_item_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_subscription_id: Option<String>,
    pub to_catalog_item_id: String,
    /// Only when the seats go into another, existing subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_subscription_id: Option<String>,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_cycle: Option<String>,
    pub transition_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/microsoft/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn subscribed_skus_documented_example_parses() {
        let page: Page<SubscribedSku> =
            serde_json::from_str(&fixture("subscribedSkus.json")).unwrap();
        assert_eq!(page.value.len(), 2);
        let e5 = &page.value[0];
        assert_eq!(e5.sku_part_number, "ENTERPRISEPREMIUM");
        assert_eq!(e5.prepaid_units.enabled, 25);
        assert_eq!(e5.consumed_units, 14);
        assert_eq!(e5.service_plans[0].service_plan_name, "ADALLOM_S_O365");
        assert_eq!(page.value[1].capability_status, "Suspended");
    }

    #[test]
    fn partner_center_catalog_documented_examples_parse() {
        let products: Items<CatalogProduct> =
            serde_json::from_str(&fixture("pcProducts.json")).unwrap();
        assert_eq!(products.items[0].title, "Microsoft 365 Business Basic");
        let skus: Items<CatalogSku> = serde_json::from_str(&fixture("pcSkus.json")).unwrap();
        assert_eq!(skus.items[0].product_id, "CFQ7TTC0LH18");
        assert_eq!(
            skus.items[0].supported_billing_cycles,
            ["annual", "monthly"]
        );
        let a: Availability = serde_json::from_str(&fixture("pcAvailabilities.json")).unwrap();
        assert_eq!(a.catalog_item_id, "CFQ7TTC0LH18:0001:CFQ7TTC0K971");
        assert!(a.is_purchasable);
        assert_eq!(a.terms[0].duration, "P1Y");
        assert_eq!(a.terms[0].billing_cycle.as_deref(), Some("Annual"));
        let all: Items<Availability> =
            serde_json::from_str(&fixture("pcAvailabilitiesCollection.json")).unwrap();
        assert_eq!(all.items[0].terms[0].billing_cycle, None);
    }

    #[test]
    fn partner_center_cart_checkout_and_orders_documented_examples_parse() {
        let cart: Cart = serde_json::from_str(&fixture("pcCart.json")).unwrap();
        assert_eq!(cart.status.as_deref(), Some("Active"));
        assert_eq!(cart.line_items[0].term_duration.as_deref(), Some("P1M"));
        let done: CartCheckoutResult =
            serde_json::from_str(&fixture("pcCheckoutResult.json")).unwrap();
        let line = &done.orders[0].line_items[0];
        assert_eq!(line.offer_id, "CFQ7TTC0LH0Z:0001:CFQ7TTC0K18P");
        assert!(line.subscription_id.is_some());
        assert!(line.friendly_name.is_some());
        let orders: Items<Order> = serde_json::from_str(&fixture("pcOrders.json")).unwrap();
        assert_eq!(orders.items[0].status, "pending");
    }

    #[test]
    fn directory_subscriptions_documented_example_parses() {
        let page: Page<CompanySubscription> =
            serde_json::from_str(&fixture("directorySubscriptions.json")).unwrap();
        let s = &page.value[0];
        assert_eq!(s.total_licenses, 25);
        assert_eq!(s.owner_type.as_deref(), Some("User"));
        assert_eq!(
            s.commerce_subscription_id,
            "f9c1ea2d-2c6e-4717-8c3b-7130812d70ba"
        );
    }

    #[test]
    fn assign_license_documented_request_parses() {
        let r: AssignLicense = serde_json::from_str(&fixture("assignLicense.json")).unwrap();
        assert_eq!(
            r.add_licenses[0].sku_id,
            "45715bb8-13f9-4bf6-927f-ef96c102d394"
        );
        assert_eq!(
            r.remove_licenses,
            vec!["bea13e0c-3828-4daa-a392-28af7ff61a0f"]
        );
    }

    #[test]
    fn partner_center_add_on_subscription_documented_example_parses() {
        let s: PcSubscription = serde_json::from_str(&fixture("pcAddOnSubscription.json")).unwrap();
        assert_eq!(s.quantity, 2);
        assert_eq!(s.status, "active");
        assert!(s.auto_renew_enabled);
        assert_eq!(
            s.parent_subscription_id.as_deref(),
            Some("1C2B75C1-74A5-472A-A729-7F8CEFC477F9")
        );
    }

    #[test]
    fn graph_users_page_and_licence_states_documented_examples_parse() {
        // The paging page prints the link alone; a page without `value` is an empty page.
        let page: Page<User> = serde_json::from_str(&fixture("usersPage.json")).unwrap();
        assert!(page.value.is_empty());
        assert!(
            page.next_link
                .as_deref()
                .is_some_and(|l| l.contains("$skiptoken="))
        );
        // The licence-state example (an Azure AD Graph print-out of the same facts): a state
        // assigned by a group names the group, a direct one has null.
        let v: Value = serde_json::from_str(&fixture("userLicenseAssignmentStates.json")).unwrap();
        let states: Vec<LicenseAssignmentState> =
            serde_json::from_value(v["value"][0]["licenseAssignmentState"].clone()).unwrap();
        assert_eq!(states[0].assigned_by_group, None);
        assert!(states[1].assigned_by_group.is_some());
    }

    #[test]
    fn graph_sign_in_activity_documented_example_parses() {
        let page: Page<User> = serde_json::from_str(&fixture("usersSignInActivity.json")).unwrap();
        let adele = page.value[0].sign_in_activity.as_ref().unwrap();
        assert_eq!(
            adele.last_sign_in_date_time.as_deref(),
            Some("2021-06-17T16:41:33Z")
        );
        let last: Vec<String> = page
            .value
            .iter()
            .map(|u| {
                crate::mapping::last_sign_in(u.sign_in_activity.as_ref().unwrap())
                    .unwrap()
                    .to_string()
            })
            .collect();
        // Adele never signed in non-interactively (Graph's year 1); Alex's later one counts.
        assert_eq!(last, ["2021-06-17T16:41:33Z", "2021-07-29T17:53:42Z"]);
    }

    #[test]
    fn graph_group_licensing_documented_examples_parse() {
        let request: AssignLicense =
            serde_json::from_str(&fixture("groupAssignLicenseRequest.json")).unwrap();
        assert_eq!(request.add_licenses.len(), 2);
        assert_eq!(request.add_licenses[0].disabled_plans.len(), 2);
        assert!(request.remove_licenses.is_empty());
        // What the client sends for a group is the same shape, key for key.
        let sent = serde_json::to_value(&request).unwrap();
        let documented: Value =
            serde_json::from_str(&fixture("groupAssignLicenseRequest.json")).unwrap();
        assert_eq!(sent, documented);
        let groups: Page<Group> = serde_json::from_str(&fixture("groupsPage.json")).unwrap();
        assert_eq!(groups.value[0].display_name.as_deref(), Some("Golf Assist"));
        assert!(groups.value[0].assigned_licenses.is_empty(), "not selected");
        let licensed: Page<Group> = serde_json::from_value({
            let mut v: Value = serde_json::from_str(&fixture("groupLicenses.json")).unwrap();
            v["value"][0]["id"] = Value::from("g");
            v
        })
        .unwrap();
        assert_eq!(
            licensed.value[0].assigned_licenses[1].sku_id,
            "b05e124f-c7cc-45a0-a6aa-8cf78c946968"
        );
        let members: Page<Member> = serde_json::from_str(&fixture("groupMembers.json")).unwrap();
        assert_eq!(members.value[0].id, "id-value");
        assert_eq!(members.value[0].odata_type, None);
    }

    #[test]
    fn graph_batch_documented_request_and_response_parse() {
        let request: BatchRequest = serde_json::from_str(&fixture("batchRequest.json")).unwrap();
        assert!(request.requests.iter().all(|r| !r.id.is_empty()));
        assert!(request.requests.iter().any(|r| r.body.is_some()));
        let response: BatchResponse = serde_json::from_str(&fixture("batchResponse.json")).unwrap();
        assert_eq!(response.responses[0].id, "1");
        assert_eq!(response.responses[0].status, 200);
        assert!(response.responses[0].headers.contains_key("Content-Type"));
        assert!(response.responses.iter().any(|r| r.status >= 400));
    }

    #[test]
    fn graph_error_documented_bodies_parse() {
        let e: GraphError = serde_json::from_str(&fixture("graphError.json")).unwrap();
        assert_eq!(e.error.code, "badRequest");
        assert!(e.error.inner_error.is_some());
        let e: GraphError = serde_json::from_str(&fixture("graphThrottled.json")).unwrap();
        assert_eq!(e.error.code, "TooManyRequests");
    }

    #[test]
    fn token_documented_reply_and_errors_parse() {
        let t: Token = serde_json::from_str(&fixture("tokenReply.json")).unwrap();
        assert_eq!(t.token_type, "Bearer");
        assert_eq!(t.expires_in, 3599);
        for name in ["tokenError.json", "tokenErrorReference.json"] {
            let e: TokenError = serde_json::from_str(&fixture(name)).unwrap();
            assert!(e.error_description.starts_with("AADSTS"), "{name}");
            assert!(!e.error_codes.is_empty(), "{name}");
        }
    }

    #[test]
    fn partner_center_patch_request_documented_example_parses() {
        let s: PcSubscription = serde_json::from_str(&fixture("pcPatchRequest.json")).unwrap();
        assert_eq!(s.quantity, 1);
        assert_eq!(s.status, "active");
        assert_eq!(s.term_duration.as_deref(), Some("P1Y"));
    }

    #[test]
    fn partner_center_transition_documented_examples_parse() {
        let e: Items<TransitionEligibility> =
            serde_json::from_str(&fixture("pcTransitionEligibilities.json")).unwrap();
        assert_eq!(e.items[0].catalog_item_id, "CFQ7TTC0KZCR:0001:CFQ7TTC0K71H");
        assert!(e.items[0].eligibilities[0].is_eligible);
        assert_eq!(
            e.items[0].eligibilities[0].transition_type,
            "transition_only"
        );
        let t: Transition = serde_json::from_str(&fixture("pcTransitionRequest.json")).unwrap();
        assert_eq!(t.quantity, 2);
        // What the client sends has the example's members, no others.
        let sent = serde_json::to_value(&t).unwrap();
        let documented: Value = serde_json::from_str(&fixture("pcTransitionRequest.json")).unwrap();
        assert_eq!(sent, documented);
        let answer: Transition = serde_json::from_str(&fixture("pcTransition.json")).unwrap();
        assert_eq!(answer.to_catalog_item_id, t.to_catalog_item_id);
    }
}
