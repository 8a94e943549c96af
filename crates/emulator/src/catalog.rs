//! Partner Center's product catalog as the emulator serves it, written from Partner Center's
//! pages ("Get a list of products / SKUs / availabilities (by customer)", their JSON examples)
//! and the simulated tenant's catalog, not from the client's types. Each product of the
//! tenant's catalog is one catalog product titled with the product's name (the licensing
//! service-plan reference's, e.g. "Microsoft 365 E3"), with one SKU `0001` of the same title
//! and two availabilities: `M` (terms P1M billed monthly, P1Y billed annually or monthly) and
//! `T` (P3Y billed annually). A catalog item id is `productId:skuId:availabilityId`.

use super::{Emulator, Service, pc_error};
use crate::backend::Backend;
use crate::domain::Catalog;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

pub const SKU: &str = "0001";

/// The availability a new commerce trial is bought as (not for sale here: trials are made in
/// the tenant file); its paid version is availability `M` of the same SKU.
pub const TRIAL: &str = "TRL";

/// A catalog product id for a part number: 12 characters as Partner Center's (`CFQ7TTC0…`),
/// stable, derived here (not the client's ids).
pub fn product_id(part: &str) -> String {
    let h = part.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b.to_ascii_uppercase() as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let alphabet = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let tail: String = (0..4)
        .map(|i| alphabet[((h >> (i * 6)) % alphabet.len() as u64) as usize] as char)
        .collect();
    format!("CFQ7TTC0{tail}")
}

/// The catalog item of `part`'s availability `availability` (`M` or `T`).
pub fn item(part: &str, availability: &str) -> String {
    format!("{}:{SKU}:{availability}", product_id(part))
}

/// The terms an availability sells: (duration, billing cycle, description).
fn terms(availability: &str) -> &'static [(&'static str, &'static str, &'static str)] {
    match availability {
        "M" => &[
            ("P1M", "Monthly", "One-Month commitment for monthly billing"),
            ("P1Y", "Annual", "One-Year commitment for yearly billing"),
            ("P1Y", "Monthly", "One-Year commitment for monthly billing"),
        ],
        "T" => &[("P3Y", "Annual", "Three-Year commitment for yearly billing")],
        _ => &[],
    }
}

/// The part number and availability a catalog item names, when it is one of this catalog's
/// and sells `term` billed `billing`; otherwise Partner Center's words for the refusal.
pub fn resolve(
    catalog: &Catalog,
    catalog_item: &str,
    term: &str,
    billing: &str,
) -> Result<String, String> {
    let mut parts = catalog_item.split(':');
    let (Some(p), Some(s), Some(a)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("Invalid offer ID: {catalog_item}."));
    };
    let part = catalog
        .products()
        .map(|x| x.sku.clone())
        .find(|part| product_id(part) == p && s == SKU)
        .ok_or_else(|| format!("Invalid offer ID: {catalog_item}."))?;
    let sold = terms(a)
        .iter()
        .any(|(d, b, _)| *d == term && b.eq_ignore_ascii_case(billing));
    if !sold {
        return Err(format!(
            "The offer {catalog_item} is not available for term {term} billed {billing}."
        ));
    }
    Ok(part)
}

fn title(catalog: &Catalog, part: &str) -> String {
    catalog
        .product(part)
        .map(|p| p.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| part.to_string())
}

fn collection(items: Vec<Value>, uri: String) -> Value {
    json!({"totalCount": items.len(), "items": items,
        "links": {"self": {"uri": uri, "method": "GET", "headers": []}},
        "attributes": {"objectType": "Collection"}})
}

async fn catalog_of(
    em: &Emulator,
    headers: &HeaderMap,
    customer: &str,
) -> Result<Arc<Catalog>, Response> {
    em.tenant_of(headers, Service::PartnerCenter)?;
    let snap = em
        .backend
        .snapshot(customer)
        .await
        .map_err(|e| pc_error(StatusCode::INTERNAL_SERVER_ERROR, 500, &e.to_string()))?;
    if snap.organization.is_none() {
        return Err(pc_error(
            StatusCode::NOT_FOUND,
            600039,
            &format!("Customer {customer} was not found."),
        ));
    }
    Ok(snap.catalog)
}

/// `GET /customers/{customer}/products?targetView=OnlineServices`.
pub async fn products(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path(c): Path<String>,
) -> Response {
    let catalog = match catalog_of(&em, &headers, &c).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let items = catalog
        .products()
        .map(|p| {
            let id = product_id(&p.sku);
            json!({"id": id, "title": title(&catalog, &p.sku), "description": "",
                "productType": {"id": "OnlineServicesNCE", "displayName": "OnlineServicesNCE"},
                "isMicrosoftProduct": true, "publisherName": "Microsoft Corporation",
                "links": {"skus": {"uri": format!("/customers/{c}/products/{id}/skus"), "method": "GET", "headers": []}}})
        })
        .collect();
    Json(collection(
        items,
        format!("/customers/{c}/products?targetView=OnlineServices"),
    ))
    .into_response()
}

fn part_of(catalog: &Catalog, product: &str) -> Option<String> {
    catalog
        .products()
        .map(|p| p.sku.clone())
        .find(|part| product_id(part) == product)
}

/// `GET /customers/{customer}/products/{product}/skus`.
pub async fn skus(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, product)): Path<(String, String)>,
) -> Response {
    let catalog = match catalog_of(&em, &headers, &c).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let Some(part) = part_of(&catalog, &product) else {
        return pc_error(
            StatusCode::NOT_FOUND,
            400013,
            &format!("Product {product} was not found."),
        );
    };
    let sku = json!({"id": SKU, "productId": product, "title": title(&catalog, &part),
        "description": "", "minimumQuantity": 1, "maximumQuantity": 300, "isTrial": false,
        "supportedBillingCycles": ["annual", "monthly"], "purchasePrerequisites": [],
        "inventoryVariables": [], "provisioningVariables": [], "actions": [],
        "dynamicAttributes": {"isAddon": false}});
    Json(collection(
        vec![sku],
        format!("/customers/{c}/products/{product}/skus"),
    ))
    .into_response()
}

/// `GET /customers/{customer}/products/{product}/skus/{sku}/availabilities`.
pub async fn availabilities(
    State(em): State<Arc<Emulator>>,
    headers: HeaderMap,
    Path((c, product, sku)): Path<(String, String, String)>,
) -> Response {
    let catalog = match catalog_of(&em, &headers, &c).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    if part_of(&catalog, &product).is_none() || sku != SKU {
        return pc_error(
            StatusCode::NOT_FOUND,
            400013,
            &format!("SKU {product}:{sku} was not found."),
        );
    }
    let items = ["M", "T"]
        .iter()
        .map(|a| {
            let terms: Vec<Value> = terms(a)
                .iter()
                .map(|(d, b, text)| json!({"duration": d, "description": text, "billingCycle": b,
                    "cancellationPolicies": [{"refundOptions": [{"sequenceId": 0, "type": "Full", "expiresAfter": "P7D"}]}]}))
                .collect();
            json!({"id": a, "productId": product, "skuId": sku,
                "catalogItemId": format!("{product}:{sku}:{a}"),
                "defaultCurrency": {"code": "EUR", "symbol": "€"}, "segment": "commercial",
                "country": "NL", "isPurchasable": true, "isRenewable": true, "terms": terms})
        })
        .collect();
    Json(collection(
        items,
        format!("/customers/{c}/products/{product}/skus/{sku}/availabilities"),
    ))
    .into_response()
}
