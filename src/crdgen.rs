//! The CRDs, generated from the Rust types: `seatkeeper crds` prints them, `crds/` holds them.

use crate::api::{AddOn, LicenseAssignment, Organization, Subscription};
use kube::CustomResourceExt;

/// The file name in `crds/` and the YAML of each CRD, in a fixed order.
pub fn crds() -> Vec<(&'static str, String)> {
    let yaml = |crd| {
        let mut v = serde_json::to_value(&crd).expect("a CRD always serializes");
        rewrap_descriptions(&mut v);
        serde_saphyr::to_string(&v).expect("a CRD always serializes")
    };
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

/// `kubectl explain` shows descriptions as written: the doc comments' line breaks are joined
/// into sentences, keeping paragraphs (blank lines) and list items (`- `).
fn rewrap_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                match x {
                    serde_json::Value::String(text) if k == "description" => *text = rewrap(text),
                    _ => rewrap_descriptions(x),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(rewrap_descriptions),
        _ => {}
    }
}

fn rewrap(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut out = String::new();
            for line in paragraph.lines().map(str::trim_end) {
                if out.is_empty() {
                    out.push_str(line);
                } else if line.trim_start().starts_with("- ") {
                    out.push('\n');
                    out.push_str(line);
                } else {
                    out.push(' ');
                    out.push_str(line.trim_start());
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptions_are_rewrapped_keeping_paragraphs_and_list_items() {
        let text = "One sentence\nbroken in two.\n\nA list:\n- first\n- second";
        assert_eq!(
            super::rewrap(text),
            "One sentence broken in two.\n\nA list:\n- first\n- second"
        );
    }
}
