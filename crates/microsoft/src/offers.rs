//! Which Partner Center catalog item a purchase buys. Partner Center sells availabilities
//! (`productId:skuId:availabilityId`), not Graph part numbers, and no Partner Center page names
//! a field holding a part number. The route, in order, never guessing:
//!
//! 1. `spec.offer`, when given: that catalog item, if the customer's catalog sells it for the
//!    term and billing cycle asked;
//! 2. a product the customer already has: Partner Center's subscription (joined to Graph's by
//!    `commerceSubscriptionId`) names its `offerId` (`productId:skuId[:availabilityId]`);
//! 3. otherwise the product's name as the licensing service-plan reference prints it (SPE_E3 →
//!    "Microsoft 365 E3"), equal to a catalog product's title as a whole, never a substring
//!    ("Microsoft 365 E3 (no Teams)" is another product), and then to its SKU's title when the
//!    product has several.
//!
//! Then the availabilities of that SKU that are purchasable and offer the term (and the billing
//! cycle, where a term names one): exactly one is bought; none is `OfferNotFound`, several
//! `OfferAmbiguous`, each naming the candidates and how to choose.

use super::wire::{self, Availability, CatalogProduct, CatalogSku};
use crate::domain::{Refusal, Term};

/// What the declaration asks for.
pub struct Wanted<'a> {
    /// The Graph part number, e.g. `SPE_E3`.
    pub part: &'a str,
    /// Its product name (the service-plan reference), e.g. `Microsoft 365 E3`.
    pub name: &'a str,
    pub term: Term,
    /// `monthly` or `annual`.
    pub billing: &'a str,
    pub offer: Option<&'a str>,
}

/// `productId:skuId` of a catalog item or offer id (`P:S` or `P:S:A`).
pub fn product_and_sku(offer: &str) -> Option<(&str, &str)> {
    let mut parts = offer.split(':');
    let (p, s) = (parts.next()?, parts.next()?);
    (!p.is_empty() && !s.is_empty()).then_some((p, s))
}

/// Steps 1 and 2: the product and SKU named by `spec.offer`, else by the offers of the
/// customer's own subscriptions of the product (when they name one product and SKU; several
/// are `OfferAmbiguous`); None: go by the product's name.
pub fn named_product_and_sku(
    w: &Wanted,
    owned: &[String],
) -> Result<Option<(String, String)>, Refusal> {
    let split = |offer: &str| {
        product_and_sku(offer)
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .ok_or_else(|| {
                not_found(
                    w,
                    &format!("{offer} is not a catalog item id (productId:skuId:availabilityId)"),
                )
            })
    };
    if let Some(offer) = w.offer {
        return split(offer).map(Some);
    }
    let mut pairs: Vec<(String, String)> = owned.iter().filter_map(|o| split(o).ok()).collect();
    pairs.sort();
    pairs.dedup();
    match pairs.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(ambiguous(
            w,
            many.iter()
                .map(|(p, s)| format!("{p}:{s} (a subscription the customer has)"))
                .collect(),
        )),
    }
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Step 3: the catalog products titled exactly as the product is named.
pub fn products_named<'p>(products: &'p [CatalogProduct], name: &str) -> Vec<&'p CatalogProduct> {
    products.iter().filter(|p| same(&p.title, name)).collect()
}

/// A product's SKU for `name`: its only non-trial SKU, or the one titled `name`.
pub fn sku_named<'s>(
    w: &Wanted,
    product: &str,
    skus: &'s [CatalogSku],
) -> Result<&'s CatalogSku, Refusal> {
    let paid: Vec<&CatalogSku> = skus.iter().filter(|s| !s.is_trial).collect();
    if let [only] = paid.as_slice() {
        return Ok(only);
    }
    let titled: Vec<&CatalogSku> = paid
        .iter()
        .copied()
        .filter(|s| same(&s.title, w.name))
        .collect();
    match titled.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found(
            w,
            &format!("catalog product {product} has no SKU titled \"{}\"", w.name),
        )),
        many => Err(ambiguous(
            w,
            many.iter()
                .map(|s| format!("{}:{} ({})", s.product_id, s.id, s.title))
                .collect(),
        )),
    }
}

/// The one availability to buy.
pub fn availability(w: &Wanted, all: &[Availability]) -> Result<String, Refusal> {
    let sells = |a: &&Availability| {
        a.is_purchasable
            && a.terms.iter().any(|t| {
                t.duration == w.term.as_str()
                    && t.billing_cycle
                        .as_deref()
                        .is_none_or(|b| same(b, w.billing))
            })
    };
    if let Some(offer) = w.offer {
        return match all
            .iter()
            .filter(sells)
            .find(|a| same(&a.catalog_item_id, offer))
        {
            Some(a) => Ok(a.catalog_item_id.clone()),
            None => Err(not_found(
                w,
                &format!(
                    "spec.offer {offer} is not sold to this customer for term {} billed {}",
                    w.term.as_str(),
                    w.billing
                ),
            )),
        };
    }
    let matching: Vec<&Availability> = all.iter().filter(sells).collect();
    match matching.as_slice() {
        [one] => Ok(one.catalog_item_id.clone()),
        [] => {
            let offered: Vec<String> = all
                .iter()
                .filter(|a| a.is_purchasable)
                .flat_map(|a| a.terms.iter().map(|t| t.duration.clone()))
                .collect();
            Err(not_found(
                w,
                &format!(
                    "nothing is sold for term {} billed {} (terms offered: {})",
                    w.term.as_str(),
                    w.billing,
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered.join(", ")
                    }
                ),
            ))
        }
        many => Err(ambiguous(
            w,
            many.iter()
                .map(|a| {
                    let terms: Vec<&str> = a.terms.iter().map(|t| t.description.as_str()).collect();
                    format!("{} ({})", a.catalog_item_id, terms.join("; "))
                })
                .collect(),
        )),
    }
}

pub fn not_found(w: &Wanted, why: &str) -> Refusal {
    Refusal::OfferNotFound {
        product: w.part.to_string(),
        detail: why.to_string(),
    }
}

pub fn ambiguous(w: &Wanted, candidates: Vec<String>) -> Refusal {
    Refusal::OfferAmbiguous {
        product: w.part.to_string(),
        candidates,
    }
}

/// The transition that makes a new commerce trial paid: to the same product and SKU (the
/// trial's `offerId` is `productId:skuId:availabilityId`; the paid availability shares the
/// first two), eligible now as `transition_only` (the licences stay where they are: Graph
/// knows trial and paid as one SKU), for the trial's seats. None or several candidates: the
/// trial is left as it is and the Subscription says why, never a guess.
pub fn trial_to_paid(
    trial: &wire::PcSubscription,
    eligible: &[wire::TransitionEligibility],
) -> Result<wire::Transition, Refusal> {
    let same_sku = |item: &str| {
        let mut a = item.split(':');
        let mut b = trial.offer_id.split(':');
        a.next() == b.next() && a.next() == b.next() && !item.eq_ignore_ascii_case(&trial.offer_id)
    };
    let candidates: Vec<&wire::TransitionEligibility> = eligible
        .iter()
        .filter(|e| same_sku(&e.catalog_item_id))
        .filter(|e| {
            e.eligibilities
                .iter()
                .any(|d| d.is_eligible && d.transition_type == "transition_only")
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(wire::Transition {
            from_catalog_item_id: Some(trial.offer_id.clone()),
            from_subscription_id: Some(trial.id.clone()),
            to_catalog_item_id: one.catalog_item_id.clone(),
            to_subscription_id: None,
            quantity: trial.quantity,
            term_duration: None,
            billing_cycle: None,
            transition_type: "transition_only".into(),
        }),
        [] => Err(Refusal::OfferNotFound {
            product: trial.offer_name.clone(),
            detail: format!(
                "Partner Center offers no paid version of trial {} ({}) to convert to now",
                trial.id, trial.offer_id
            ),
        }),
        many => Err(Refusal::OfferAmbiguous {
            product: trial.offer_name.clone(),
            candidates: many.iter().map(|e| e.catalog_item_id.clone()).collect(),
        }),
    }
}

/// Whether a transition's answer reports it failed (an event with status `Failed`; the
/// page's examples pad statuses and spell the member `Events`).
pub fn transition_failed(answer: &serde_json::Value) -> bool {
    answer
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.eq_ignore_ascii_case("events"))
        .filter_map(|(_, v)| v.as_array())
        .flatten()
        .any(|e| {
            e["status"]
                .as_str()
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("failed"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::AvailabilityTerm;

    fn wanted(term: Term, offer: Option<&'static str>) -> Wanted<'static> {
        Wanted {
            part: "SPE_E3",
            name: "Microsoft 365 E3",
            term,
            billing: "monthly",
            offer,
        }
    }

    fn product(id: &str, title: &str) -> CatalogProduct {
        CatalogProduct {
            id: id.into(),
            title: title.into(),
        }
    }

    fn avail(item: &str, terms: &[(&str, Option<&str>)]) -> Availability {
        let (p, s) = product_and_sku(item).unwrap();
        Availability {
            id: item.rsplit(':').next().unwrap().into(),
            product_id: p.into(),
            sku_id: s.into(),
            catalog_item_id: item.into(),
            is_purchasable: true,
            terms: terms
                .iter()
                .map(|(d, b)| AvailabilityTerm {
                    duration: d.to_string(),
                    description: format!("{d} commitment"),
                    billing_cycle: b.map(str::to_string),
                })
                .collect(),
        }
    }

    #[test]
    fn a_product_name_matches_a_catalog_title_as_a_whole_never_a_substring() {
        let catalog = [
            product("CFQ7TTC0LFLZ", "Microsoft 365 E3"),
            product("CFQ7TTC0MKD5", "Microsoft 365 E3 (no Teams)"),
            product("CFQ7TTC0LH18", "Microsoft 365 Business Basic"),
        ];
        let found = products_named(&catalog, " microsoft 365 e3 ");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "CFQ7TTC0LFLZ");
        assert!(products_named(&catalog, "Microsoft 365").is_empty());
    }

    #[test]
    fn spec_offer_wins_then_the_customers_own_subscription_never_a_pick_among_several() {
        let owned = [
            "CFQ7TTC0LFLZ:0002:AAA".to_string(),
            "CFQ7TTC0LFLZ:0002:BBB".to_string(),
        ];
        let w = wanted(Term::P1M, None);
        assert_eq!(
            named_product_and_sku(&w, &owned).unwrap(),
            Some(("CFQ7TTC0LFLZ".into(), "0002".into())),
            "two availabilities of one product and SKU name that SKU"
        );
        let two = [
            "CFQ7TTC0LFLZ:0002:AAA".to_string(),
            "CFQ7TTC0MKD5:0001:CCC".to_string(),
        ];
        let r = named_product_and_sku(&w, &two).unwrap_err();
        assert_eq!(r.reason().as_str(), "OfferAmbiguous");
        assert!(r.message().contains("CFQ7TTC0MKD5:0001"), "{}", r.message());
        let chosen = wanted(Term::P1M, Some("CFQ7TTC0MKD5:0001:CCC"));
        assert_eq!(
            named_product_and_sku(&chosen, &two).unwrap(),
            Some(("CFQ7TTC0MKD5".into(), "0001".into()))
        );
        assert_eq!(named_product_and_sku(&w, &[]).unwrap(), None);
        let bad = wanted(Term::P1M, Some("SPE_E3"));
        assert_eq!(
            named_product_and_sku(&bad, &[])
                .unwrap_err()
                .reason()
                .as_str(),
            "OfferNotFound"
        );
    }

    #[test]
    fn exactly_one_availability_for_the_term_is_bought() {
        let all = [
            avail("CFQ7TTC0LFLZ:0002:AAA", &[("P1M", Some("Monthly"))]),
            avail(
                "CFQ7TTC0LFLZ:0002:BBB",
                &[("P1Y", Some("Annual")), ("P1Y", Some("Monthly"))],
            ),
        ];
        assert_eq!(
            availability(&wanted(Term::P1M, None), &all).unwrap(),
            "CFQ7TTC0LFLZ:0002:AAA"
        );
        assert_eq!(
            availability(&wanted(Term::P1Y, None), &all).unwrap(),
            "CFQ7TTC0LFLZ:0002:BBB"
        );
    }

    #[test]
    fn no_availability_is_offer_not_found_naming_the_terms_offered() {
        let all = [avail("CFQ7TTC0LFLZ:0002:AAA", &[("P1M", Some("Monthly"))])];
        let r = availability(&wanted(Term::P3Y, None), &all).unwrap_err();
        assert_eq!(r.reason().as_str(), "OfferNotFound");
        assert!(
            r.message().contains("P3Y") && r.message().contains("P1M"),
            "{}",
            r.message()
        );
    }

    #[test]
    fn several_availabilities_are_offer_ambiguous_and_spec_offer_chooses() {
        let all = [
            avail("CFQ7TTC0LFLZ:0002:AAA", &[("P1M", None)]),
            avail("CFQ7TTC0LFLZ:0002:CCC", &[("P1M", None)]),
        ];
        let r = availability(&wanted(Term::P1M, None), &all).unwrap_err();
        assert_eq!(r.reason().as_str(), "OfferAmbiguous");
        let m = r.message();
        assert!(
            m.contains("CFQ7TTC0LFLZ:0002:AAA") && m.contains("CFQ7TTC0LFLZ:0002:CCC"),
            "{m}"
        );
        assert!(m.contains("spec.offer"), "{m}");
        let chosen = wanted(Term::P1M, Some("CFQ7TTC0LFLZ:0002:CCC"));
        assert_eq!(
            availability(&chosen, &all).unwrap(),
            "CFQ7TTC0LFLZ:0002:CCC"
        );
        let unknown = wanted(Term::P1M, Some("CFQ7TTC0LFLZ:0002:ZZZ"));
        assert_eq!(
            availability(&unknown, &all).unwrap_err().reason().as_str(),
            "OfferNotFound"
        );
    }

    fn documented_eligibilities() -> Vec<wire::TransitionEligibility> {
        let text = std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/microsoft/pcTransitionEligibilities.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        serde_json::from_str::<wire::Items<wire::TransitionEligibility>>(&text)
            .unwrap()
            .items
    }

    fn trial(offer: &str) -> wire::PcSubscription {
        serde_json::from_value(serde_json::json!({"id": "t-1", "offerId": offer,
            "offerName": "Microsoft 365 E5", "quantity": 25, "status": "active", "isTrial": true}))
        .unwrap()
    }

    #[test]
    fn r06_a_trial_becomes_the_paid_availability_of_its_own_sku() {
        let t = offers_trial_to_paid("CFQ7TTC0KZCR:0001:TRIAL").unwrap();
        assert_eq!(t.to_catalog_item_id, "CFQ7TTC0KZCR:0001:CFQ7TTC0K71H");
        assert_eq!(t.transition_type, "transition_only");
        assert_eq!(t.quantity, 25, "every trial seat is bought");
        assert_eq!(t.from_subscription_id.as_deref(), Some("t-1"));
    }

    #[test]
    fn r06_no_paid_version_eligible_now_is_offer_not_found_never_an_upgrade() {
        // Business Premium's only item is an ineligible licence transfer; another product's
        // eligible item is an upgrade, not this trial's paid version.
        let err = offers_trial_to_paid("CFQ7TTC0L4M3:0001:TRIAL").unwrap_err();
        assert!(matches!(err, Refusal::OfferNotFound { .. }), "{err:?}");
        assert!(
            err.message().contains("no paid version"),
            "{}",
            err.message()
        );
    }

    fn offers_trial_to_paid(offer: &str) -> Result<wire::Transition, Refusal> {
        trial_to_paid(&trial(offer), &documented_eligibilities())
    }

    #[test]
    fn a_transition_reports_failure_only_through_a_failed_event() {
        let started: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../../tests/fixtures/microsoft/pcTransition.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(
            !transition_failed(&started),
            "Started (padded) is not a failure"
        );
        let failed = serde_json::json!({"events": [{"name": "Conversion", "status": "Failed"}]});
        assert!(transition_failed(&failed));
    }
}
