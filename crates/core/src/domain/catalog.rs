//! The product catalog: SKUs, their service plans, conflicts, dependencies and list prices.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProductKind {
    #[default]
    Base,
    AddOn,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: ProductKind,
    #[serde(default)]
    pub plans: Vec<String>,
    /// R18: switched on for everyone automatically, never assigned.
    #[serde(default)]
    pub auto_plans: Vec<String>,
    /// R28: plans that hold user data; losing one is a downgrade.
    #[serde(default)]
    pub data_plans: Vec<String>,
    /// plan -> plans it needs (any of).
    #[serde(default)]
    pub requires: BTreeMap<String, Vec<String>>,
    /// AddOn only: the base SKUs it can be bought for (R21).
    #[serde(default)]
    pub add_on_for: Vec<String>,
    /// The list price of one seat for one month, when known (the vendor's Dutch price list
    /// for the built-in products; a tenant file's own). Unknown on a real tenant: what
    /// Partner Center charges the partner is not read, so no number is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_price: Option<f64>,
}

impl Product {
    /// Service plans a licence of this product turns on, given the plans turned off (R13, R18).
    pub fn enabled_plans<'a>(&'a self, disabled: &'a [String]) -> impl Iterator<Item = &'a str> {
        self.plans
            .iter()
            .filter(move |p| !disabled.contains(p) && !self.auto_plans.contains(p))
            .map(String::as_str)
    }
}

/// The tenant file's `catalog:` section: extends or overrides the built-in catalog by sku.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogOverrides {
    #[serde(default)]
    pub products: Vec<Product>,
    #[serde(default)]
    pub conflicts: Vec<[String; 2]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Catalog {
    products: BTreeMap<String, Product>,
    conflicts: Vec<[String; 2]>,
}

impl Catalog {
    pub fn product(&self, sku: &str) -> Option<&Product> {
        self.products.get(sku)
    }

    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    /// R14: the plan that `plan` cannot be held together with, if any of `others`.
    pub fn conflict<'o>(
        &self,
        plan: &str,
        others: &[(&'o str, &'o str)],
    ) -> Option<(&'o str, &'o str)> {
        // Most plans conflict with nothing: their partners are found once, not per other plan.
        let partners: Vec<&str> = self
            .conflicts
            .iter()
            .filter_map(|[a, b]| match () {
                _ if a == plan => Some(b.as_str()),
                _ if b == plan => Some(a.as_str()),
                _ => None,
            })
            .collect();
        if partners.is_empty() {
            return None;
        }
        others
            .iter()
            .find(|(other, _)| partners.contains(other))
            .copied()
    }

    /// The built-in catalog, extended or overridden by the tenant file's section.
    /// The same catalog with no prices: for a real tenant, whose prices seatkeeper does not
    /// know (it never shows a made-up number).
    pub fn without_prices(mut self) -> Catalog {
        for p in self.products.values_mut() {
            p.monthly_price = None;
        }
        self
    }

    pub fn with_overrides(overrides: Option<&CatalogOverrides>) -> Catalog {
        match overrides {
            Some(o) => Catalog::builtin().extended(o),
            None => Catalog::builtin(),
        }
    }

    /// This catalog with `o`'s products (replacing those of the same SKU) and conflicts.
    pub fn extended(&self, o: &CatalogOverrides) -> Catalog {
        let mut catalog = self.clone();
        for p in &o.products {
            catalog.products.insert(p.sku.clone(), p.clone());
        }
        for c in &o.conflicts {
            if !catalog.conflicts.contains(c) {
                catalog.conflicts.push(c.clone());
            }
        }
        catalog
    }

    // Long on purpose: the built-in catalog is data, one product after another.
    pub fn builtin() -> Catalog {
        fn s(v: &[&str]) -> Vec<String> {
            v.iter().map(|x| x.to_string()).collect()
        }
        let exchange = ["EXCHANGE_S_STANDARD", "EXCHANGE_S_ENTERPRISE"];
        let base = |sku: &str, name: &str, plans: &[&str], data: &[&str], price: f64| Product {
            sku: sku.into(),
            name: name.into(),
            kind: ProductKind::Base,
            plans: s(plans),
            auto_plans: if plans.contains(&"SWAY") {
                s(&["SWAY"])
            } else {
                vec![]
            },
            data_plans: s(data),
            requires: BTreeMap::new(),
            add_on_for: vec![],
            monthly_price: Some(price),
        };
        let add_on = |sku: &str,
                      name: &str,
                      plan: &str,
                      needs: &[&str],
                      data: &[&str],
                      r#for: &[&str],
                      price: f64| Product {
            sku: sku.into(),
            name: name.into(),
            kind: ProductKind::AddOn,
            plans: s(&[plan]),
            auto_plans: vec![],
            data_plans: s(data),
            requires: BTreeMap::from([(plan.to_string(), s(needs))]),
            add_on_for: s(r#for),
            monthly_price: Some(price),
        };
        let mut spb = base(
            "SPB",
            "Microsoft 365 Business Premium",
            &[
                "EXCHANGE_S_STANDARD",
                "SHAREPOINTSTANDARD",
                "TEAMS1",
                "OFFICESUBSCRIPTION",
                "SWAY",
                "INTUNE_A",
                "AAD_PREMIUM",
                "EXCHANGE_S_ARCHIVE_ADDON",
            ],
            &[
                "EXCHANGE_S_STANDARD",
                "SHAREPOINTSTANDARD",
                "EXCHANGE_S_ARCHIVE_ADDON",
            ],
            22.00,
        );
        spb.requires
            .insert("EXCHANGE_S_ARCHIVE_ADDON".into(), s(&exchange));
        let products = vec![
            base(
                "O365_BUSINESS_ESSENTIALS",
                "Microsoft 365 Business Basic",
                &[
                    "EXCHANGE_S_STANDARD",
                    "SHAREPOINTSTANDARD",
                    "TEAMS1",
                    "SWAY",
                ],
                &["EXCHANGE_S_STANDARD", "SHAREPOINTSTANDARD"],
                6.00,
            ),
            base(
                "O365_BUSINESS_PREMIUM",
                "Microsoft 365 Business Standard",
                &[
                    "EXCHANGE_S_STANDARD",
                    "SHAREPOINTSTANDARD",
                    "TEAMS1",
                    "OFFICESUBSCRIPTION",
                    "SWAY",
                ],
                &["EXCHANGE_S_STANDARD", "SHAREPOINTSTANDARD"],
                12.50,
            ),
            spb,
            base(
                "ENTERPRISEPACK",
                "Office 365 E3",
                &[
                    "EXCHANGE_S_ENTERPRISE",
                    "SHAREPOINTENTERPRISE",
                    "TEAMS1",
                    "OFFICESUBSCRIPTION",
                    "SWAY",
                    "RMS_S_ENTERPRISE",
                ],
                &["EXCHANGE_S_ENTERPRISE", "SHAREPOINTENTERPRISE"],
                23.00,
            ),
            base(
                "SPE_E3",
                "Microsoft 365 E3",
                &[
                    "EXCHANGE_S_ENTERPRISE",
                    "SHAREPOINTENTERPRISE",
                    "TEAMS1",
                    "OFFICESUBSCRIPTION",
                    "SWAY",
                    "RMS_S_ENTERPRISE",
                    "INTUNE_A",
                    "AAD_PREMIUM",
                ],
                &["EXCHANGE_S_ENTERPRISE", "SHAREPOINTENTERPRISE"],
                36.00,
            ),
            base(
                "EXCHANGESTANDARD",
                "Exchange Online (Plan 1)",
                &["EXCHANGE_S_STANDARD"],
                &["EXCHANGE_S_STANDARD"],
                4.00,
            ),
            add_on(
                "EXCHANGEARCHIVE_ADDON",
                "Exchange Online Archiving",
                "EXCHANGE_S_ARCHIVE_ADDON",
                &exchange,
                &["EXCHANGE_S_ARCHIVE_ADDON"],
                &[
                    "O365_BUSINESS_ESSENTIALS",
                    "O365_BUSINESS_PREMIUM",
                    "ENTERPRISEPACK",
                    "EXCHANGESTANDARD",
                ],
                3.00,
            ),
            add_on(
                "ATP_ENTERPRISE",
                "Microsoft Defender for Office 365 (Plan 1)",
                "ATP_ENTERPRISE",
                &exchange,
                &[],
                &[
                    "O365_BUSINESS_ESSENTIALS",
                    "O365_BUSINESS_PREMIUM",
                    "ENTERPRISEPACK",
                    "SPE_E3",
                    "EXCHANGESTANDARD",
                ],
                2.00,
            ),
            add_on(
                "MCOMEETADV",
                "Microsoft 365 Audio Conferencing",
                "MCOMEETADV",
                &["TEAMS1"],
                &[],
                &[
                    "O365_BUSINESS_ESSENTIALS",
                    "O365_BUSINESS_PREMIUM",
                    "SPB",
                    "ENTERPRISEPACK",
                    "SPE_E3",
                ],
                4.00,
            ),
        ];
        Catalog {
            products: products.into_iter().map(|p| (p.sku.clone(), p)).collect(),
            conflicts: vec![
                ["EXCHANGE_S_STANDARD".into(), "EXCHANGE_S_ENTERPRISE".into()],
                ["SHAREPOINTSTANDARD".into(), "SHAREPOINTENTERPRISE".into()],
            ],
        }
    }
}
