//! Reading manifests: files or folders of multi-document YAML (or JSON), kubectl style.

use super::schema::violation;
use crate::api::{AddOn, LicenseAssignment, Organization, Subscription};
use base64::Engine;
use kube::CustomResourceExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Bad input: names the file, the document and the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Where a document came from.
#[derive(Clone, Debug)]
pub struct Source {
    pub file: String,
    pub document: usize,
}

impl Source {
    pub fn err(&self, object: &str, message: impl std::fmt::Display) -> InputError {
        let object = if object.is_empty() {
            String::new()
        } else {
            format!(" ({object})")
        };
        InputError(format!(
            "{}: document {}{object}: {message}",
            self.file, self.document
        ))
    }
}

/// A seatkeeper object read from a manifest.
#[derive(Clone, Debug)]
pub enum Object {
    Subscription(Box<Subscription>),
    LicenseAssignment(Box<LicenseAssignment>),
    AddOn(Box<AddOn>),
}

/// `expr` on whichever object `obj` holds, bound to `o`.
macro_rules! on_object {
    ($obj:expr, $o:ident => $body:expr) => {
        match $obj {
            Object::Subscription($o) => $body,
            Object::LicenseAssignment($o) => $body,
            Object::AddOn($o) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Subscription(_) => "Subscription",
            Object::LicenseAssignment(_) => "LicenseAssignment",
            Object::AddOn(_) => "AddOn",
        }
    }

    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        on_object!(self, o => &o.metadata)
    }

    pub fn namespace(&self) -> String {
        self.meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }

    pub fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        on_object!(self, o => serde_json::to_value(o)).expect("objects serialize")
    }

    /// Read a full object (as stored or applied), checked against its CRD's schema and CEL rules.
    pub fn from_value(value: &Value, old: Option<&Value>) -> Result<Object, String> {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut v = value.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        let crd = match kind {
            "Subscription" => Subscription::crd(),
            "LicenseAssignment" => LicenseAssignment::crd(),
            "AddOn" => AddOn::crd(),
            other => return Err(format!("kind: unsupported kind {other:?}")),
        };
        if let Some(problem) = violation(&schema_of(&crd), &v, "") {
            return Err(problem);
        }
        // User principal names are not case-sensitive: two spellings are one user listed twice.
        if let Some(users) = v["spec"]["users"].as_array() {
            for (i, u) in users.iter().enumerate() {
                let Some(u) = u.as_str() else { continue };
                if let Some(first) = users[..i]
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|x| x.eq_ignore_ascii_case(u))
                {
                    return Err(format!(
                        "spec.users[{i}]: {u} is {first} again (user names are not case-sensitive)"
                    ));
                }
            }
        }
        let typed = |v: &Value| -> Result<Object, String> {
            let de = |e: serde_path_to_error::Error<serde_json::Error>| {
                format!("{}: {}", e.path(), e.inner())
            };
            Ok(match kind {
                "Subscription" => {
                    Object::Subscription(Box::new(serde_path_to_error::deserialize(v).map_err(de)?))
                }
                "LicenseAssignment" => Object::LicenseAssignment(Box::new(
                    serde_path_to_error::deserialize(v).map_err(de)?,
                )),
                _ => Object::AddOn(Box::new(serde_path_to_error::deserialize(v).map_err(de)?)),
            })
        };
        let obj = typed(&v)?;
        let cel = |e: kube::core::cel::ValidationErrors| format!("spec: {e}");
        let old = match old.map(typed) {
            Some(Ok(o)) => Some(o),
            _ => None,
        };
        match (&obj, old) {
            (Object::Subscription(o), Some(Object::Subscription(p))) => {
                o.validate_cel_update(&p).map_err(cel)?
            }
            (Object::LicenseAssignment(o), Some(Object::LicenseAssignment(p))) => {
                o.validate_cel_update(&p).map_err(cel)?
            }
            (Object::AddOn(o), Some(Object::AddOn(p))) => o.validate_cel_update(&p).map_err(cel)?,
            (Object::Subscription(o), _) => o.validate_cel().map_err(cel)?,
            (Object::LicenseAssignment(o), _) => o.validate_cel().map_err(cel)?,
            (Object::AddOn(o), _) => o.validate_cel().map_err(cel)?,
        }
        Ok(obj)
    }
}

/// The OpenAPI schema a CRD checks its objects with, as JSON.
fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    serde_json::to_value(
        &crd.spec.versions[0]
            .schema
            .as_ref()
            .expect("schema")
            .open_api_v3_schema,
    )
    .expect("schema")
}

/// An Organization document, checked against its CRD's schema and CEL rules.
pub fn organization_from_value(value: &Value) -> Result<Organization, String> {
    let schema = schema_of(&Organization::crd());
    let mut v = value.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
    }
    if let Some(problem) = violation(&schema, &v, "") {
        return Err(problem);
    }
    let org: Organization =
        serde_path_to_error::deserialize(&v).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    org.validate_cel().map_err(|e| format!("spec: {e}"))?;
    Ok(org)
}

/// Everything the manifests declare.
#[derive(Debug, Default)]
pub struct Manifests {
    pub objects: Vec<(Source, Object)>,
    /// namespace → its labels, for Namespace documents.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<(String, String, String), String>,
    /// Organization documents (cluster-scoped).
    pub organizations: Vec<(Source, Organization)>,
    /// Documents of other API groups, skipped: "kind namespace/name".
    pub skipped: Vec<String>,
}

impl Manifests {
    /// One line naming what was skipped, if anything was.
    pub fn skipped_note(&self) -> Option<String> {
        const SHOWN: usize = 5;
        let n = self.skipped.len();
        (n > 0).then(|| {
            let mut names = self.skipped[..n.min(SHOWN)].join(", ");
            if n > SHOWN {
                names += &format!(" and {} more", n - SHOWN);
            }
            let n = crate::domain::counted(n, "document", "documents");
            format!("note: skipped {n} seatkeeper does not read: {names}")
        })
    }
}

/// `-f -`: the manifests come from standard input.
const STDIN: &str = "-";

fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = vec![];
    for p in paths {
        if p.as_os_str() == STDIN {
            out.push(p.clone());
        } else if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| InputError(format!("{}: cannot read folder: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                // A folder kustomize reads: its own file is not a resource.
                .filter(|f| !is_kustomization(f))
                .filter(|f| {
                    f.is_file()
                        && matches!(
                            f.extension().and_then(|x| x.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            entries.sort();
            out.extend(entries);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(InputError(format!(
                "{}: no such file or folder",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// kustomize's own file in a folder (`kustomization.yaml`, `.yml` or `Kustomization`).
fn is_kustomization(f: &std::path::Path) -> bool {
    matches!(
        f.file_name().and_then(|n| n.to_str()),
        Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
    )
}

/// Read and check every document; the first problem stops everything. At least one
/// seatkeeper resource is required.
pub fn load(
    paths: &[PathBuf],
    recorded: &BTreeMap<(String, String, String), Value>,
) -> Result<Manifests, InputError> {
    let m = read(paths, recorded)?;
    if m.objects.is_empty() {
        let names: Vec<String> = paths
            .iter()
            .map(|p| {
                if p.as_os_str() == STDIN {
                    "standard input".to_string()
                } else {
                    p.display().to_string()
                }
            })
            .collect();
        return Err(InputError(format!(
            "no seatkeeper resources in {}: expected Subscription, LicenseAssignment or AddOn documents (apiVersion {})",
            names.join(", "),
            crate::api::API_VERSION
        )));
    }
    Ok(m)
}

/// Every document read and checked, without requiring any resource (Organization and Secret
/// documents alone, as `export` takes them).
pub fn read(
    paths: &[PathBuf],
    recorded: &BTreeMap<(String, String, String), Value>,
) -> Result<Manifests, InputError> {
    let mut m = Manifests::default();
    let mut seen: BTreeMap<(String, String, String), Source> = BTreeMap::new();
    for file in files(paths)? {
        let (name, text) = if file.as_os_str() == STDIN {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| InputError(format!("standard input: cannot read: {e}")))?;
            ("standard input".to_string(), text)
        } else {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file)
                .map_err(|e| InputError(format!("{name}: cannot read: {e}")))?;
            (name, text)
        };
        let docs: Vec<Value> =
            serde_saphyr::from_multiple_with_options(&text, crate::yaml::options()).map_err(
                |e| {
                    InputError(format!(
                        "{name}: not valid YAML: {}",
                        crate::yaml::syntax_error(&e)
                    ))
                },
            )?;
        let mut n = 0;
        for doc in docs {
            let items = match doc.get("kind").and_then(Value::as_str) {
                Some("List") => doc
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                _ => vec![doc],
            };
            for item in items {
                if item.is_null() {
                    continue;
                }
                n += 1;
                let src = Source {
                    file: name.clone(),
                    document: n,
                };
                read_document(&mut m, &mut seen, src, item, recorded)?;
            }
        }
    }
    Ok(m)
}

const LABEL_RULE: &str = "at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (RFC 1123)";
const SUBDOMAIN_RULE: &str = "at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (RFC 1123)";

/// A DNS-1123 label: what Kubernetes requires of a namespace name.
pub fn dns1123_label(s: &str) -> bool {
    s.len() <= 63 && dns1123_segment(s)
}

/// Lowercase letters, digits and '-', starting and ending with a letter or digit.
fn dns1123_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: what Kubernetes requires of most object names.
pub fn dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns1123_segment)
}

/// As the API server checks them: names are DNS-1123 subdomains (a Namespace's a DNS-1123
/// label), namespaces DNS-1123 labels.
fn check_names(
    src: &Source,
    kind: &str,
    label: &str,
    name: &str,
    namespace: &str,
) -> Result<(), InputError> {
    let (ok, rule) = if kind == "Namespace" {
        (dns1123_label(name), LABEL_RULE)
    } else {
        (dns1123_subdomain(name), SUBDOMAIN_RULE)
    };
    if !ok {
        return Err(src.err(
            kind,
            format!("metadata.name: {name:?} is not a valid name: {rule}"),
        ));
    }
    if !dns1123_label(namespace) {
        return Err(src.err(
            label,
            format!("metadata.namespace: {namespace:?} is not a valid namespace: {LABEL_RULE}"),
        ));
    }
    Ok(())
}

fn read_document(
    m: &mut Manifests,
    seen: &mut BTreeMap<(String, String, String), Source>,
    src: Source,
    doc: Value,
    recorded: &BTreeMap<(String, String, String), Value>,
) -> Result<(), InputError> {
    if !doc.is_object() {
        return Err(src.err("", "not an object"));
    }
    let api_version = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let meta = doc.get("metadata").cloned().unwrap_or(Value::Null);
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let label = format!("{kind} {namespace}/{name}");
    if kind.is_empty() {
        return Err(src.err("", "kind: required"));
    }
    if name.is_empty() {
        return Err(src.err(kind, "metadata.name: required"));
    }
    check_names(&src, kind, &label, &name, &namespace)?;
    match (api_version, kind) {
        ("v1", "Namespace") => {
            let labels: BTreeMap<String, String> = meta
                .get("labels")
                .and_then(Value::as_object)
                .map(|l| l.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            m.namespaces.insert(name.clone(), labels);
        }
        (crate::api::API_VERSION, "Organization") => {
            let org = organization_from_value(&doc).map_err(|e| src.err(&format!("Organization {name}"), e))?;
            if let Some((first, _)) = m.organizations.iter().find(|(_, o)| o.spec.domain.eq_ignore_ascii_case(&org.spec.domain)) {
                return Err(src.err(&format!("Organization {name}"), format!("spec.domain: {} is declared twice (first in {} document {})", org.spec.domain, first.file, first.document)));
            }
            m.organizations.push((src, org));
        }
        ("v1", "Secret") => {
            let mut put = |k: &str, v: String| m.secrets.insert((namespace.clone(), name.clone(), k.to_string()), v);
            if let Some(data) = doc.get("data").and_then(Value::as_object) {
                for (k, v) in data {
                    let raw = v.as_str().unwrap_or_default();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .map_err(|_| src.err(&label, format!("data.{k}: not valid base64")))?;
                    put(k, String::from_utf8_lossy(&bytes).trim().to_string());
                }
            }
            if let Some(data) = doc.get("stringData").and_then(Value::as_object) {
                for (k, v) in data {
                    put(k, v.as_str().unwrap_or_default().trim().to_string());
                }
            }
        }
        (crate::api::API_VERSION, "Subscription" | "LicenseAssignment" | "AddOn") => {
            let key = (kind.to_string(), namespace.clone(), name.clone());
            if let Some(first) = seen.get(&key) {
                return Err(src.err(&label, format!("declared twice (first in {} document {})", first.file, first.document)));
            }
            let mut doc = doc;
            doc["metadata"]["namespace"] = Value::String(namespace);
            let obj = Object::from_value(&doc, recorded.get(&key)).map_err(|e| src.err(&label, e))?;
            seen.insert(key, src.clone());
            m.objects.push((src, obj));
        }
        (_, "Subscription" | "LicenseAssignment" | "AddOn") => {
            return Err(src.err(&label, format!("apiVersion: must be {}, not {api_version:?}", crate::api::API_VERSION)));
        }
        // Another group's document in the same stream (kustomize or Helm output): skipped.
        (v, _) if !v.starts_with("seatkeeper.dev/") => {
            m.skipped.push(format!("{kind} {name}"));
        }
        _ => return Err(src.err(&label, format!("kind: {api_version}/{kind} is not something seatkeeper reads (Subscription, LicenseAssignment, AddOn, Organization, Namespace, Secret)"))),
    }
    Ok(())
}
