//! Validates a manifest against its CRD's own OpenAPI schema and CEL rules, so the CLI
//! refuses exactly what `kubectl apply` would, from the same single definition.

use serde_json::Value;

/// The first violation, as `path: what is wrong`.
// Long on purpose: the schema keywords, checked one after another as the API server does.
pub fn violation(schema: &Value, value: &Value, path: &str) -> Option<String> {
    let at = |p: &str| {
        if p.is_empty() {
            "(root)".to_string()
        } else {
            p.to_string()
        }
    };
    if value.is_null() {
        return None;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            // A number too large for an integer (or with a fraction): say which are allowed.
            if t == "integer" && value.is_number() {
                let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
                return Some(match (bound("minimum"), bound("maximum")) {
                    (Some(lo), Some(hi)) => format!(
                        "{}: must be a whole number from {lo} to {hi}, not {value}",
                        at(path)
                    ),
                    _ => format!("{}: must be a whole number, not {value}", at(path)),
                });
            }
            return Some(format!("{}: must be of type {t}", at(path)));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let names: Vec<String> = options
            .iter()
            .map(|o| o.as_str().map_or(o.to_string(), str::to_string))
            .collect();
        return Some(format!(
            "{}: must be one of {}, not {value}",
            at(path),
            names.join(", ")
        ));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Some(format!("{}: must be at least {min}, not {n}", at(path)));
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n > max
    {
        return Some(format!("{}: must be at most {max}, not {n}", at(path)));
    }
    if let (Some(min), Some(s)) = (
        schema.get("minLength").and_then(Value::as_u64),
        value.as_str(),
    ) && (s.chars().count() as u64) < min
    {
        return Some(format!("{}: must not be empty", at(path)));
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            return Some(format!(
                "{}: must list at least {min} item{}",
                at(path),
                if min == 1 { "" } else { "s" }
            ));
        }
        match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => {
                for (i, x) in items.iter().enumerate() {
                    if items[..i].contains(x) {
                        return Some(format!("{path}[{i}]: duplicate value {x}"));
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let key = |x: &Value| {
                    keys.iter()
                        .map(|k| x.get(*k).cloned().unwrap_or(Value::Null))
                        .collect::<Vec<_>>()
                };
                for (i, x) in items.iter().enumerate() {
                    if items[..i].iter().any(|y| key(y) == key(x)) {
                        return Some(format!(
                            "{path}[{i}]: duplicate entry for {}",
                            keys.join(", ")
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, x) in items.iter().enumerate() {
                if let Some(v) = violation(item_schema, x, &format!("{path}[{i}]")) {
                    return Some(v);
                }
            }
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        // An unknown field first: `seat: 7` is a misspelt `seats`, not a missing one.
        if let Some(props) = props
            && schema.get("x-kubernetes-preserve-unknown-fields").is_none()
        {
            for k in obj.keys() {
                if props.contains_key(k)
                    || (path.is_empty() && matches!(k.as_str(), "metadata" | "apiVersion" | "kind"))
                {
                    continue;
                }
                let near = props.keys().find(|p| {
                    let (a, b) = (p.to_lowercase(), k.to_lowercase());
                    a.starts_with(&b) || b.starts_with(&a)
                });
                return Some(match near {
                    Some(p) => format!("{}: unknown field (did you mean {p}?)", join(path, k)),
                    None => format!("{}: unknown field", join(path, k)),
                });
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if obj.get(r).is_none_or(Value::is_null) {
                    return Some(format!("{}: required", join(path, r)));
                }
            }
        }
        if let Some(props) = props {
            for (k, v) in obj {
                match props.get(k) {
                    Some(s) => {
                        if let Some(x) = violation(s, v, &join(path, k)) {
                            return Some(x);
                        }
                    }
                    None if schema.get("x-kubernetes-preserve-unknown-fields").is_none()
                        && !(path.is_empty()
                            && matches!(k.as_str(), "metadata" | "apiVersion" | "kind")) =>
                    {
                        return Some(format!("{}: unknown field", join(path, k)));
                    }
                    None => {}
                }
            }
        }
    }
    None
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
