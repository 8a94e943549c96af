//! The CRDs, generated from the Rust types: `seatkeeper crds` prints them, `crds/` holds them.

use crate::api::{AddOn, LicenseAssignment, Organization, Subscription};
use kube::CustomResourceExt;

/// The file name in `crds/` and the YAML of each CRD, in a fixed order.
pub fn crds() -> Vec<(&'static str, String)> {
    let yaml = |crd| serde_saphyr::to_string(&crd).expect("a CRD always serializes");
    vec![
        (
            "subscriptions.seatkeeper.dev.yaml",
            yaml(Subscription::crd()),
        ),
        (
            "licenseassignments.seatkeeper.dev.yaml",
            yaml(LicenseAssignment::crd()),
        ),
        ("addons.seatkeeper.dev.yaml", yaml(AddOn::crd())),
        (
            "organizations.seatkeeper.dev.yaml",
            yaml(Organization::crd()),
        ),
    ]
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> String {
    crds()
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect()
}
