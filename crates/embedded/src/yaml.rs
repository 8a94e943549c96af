//! YAML reading for the operator's own files (tenant file, manifests).

/// Parser options for trusted local files, which may hold hundreds of thousands of users: the
/// parser's default node budget (250k nodes) is meant for untrusted input and would refuse a
/// large tenant. The byte limits stay as they are.
pub fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 100_000_000,
            max_events: 200_000_000,
        },
    }
}

/// A YAML syntax error in one line: where it is and what is wrong, without the parser's own
/// "error:" prefix and source excerpt (the file is named by the caller).
pub fn syntax_error(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // The parser's advice to its programmer is no use to a reader of the file.
    let first = first.replace(
        "multiple YAML documents detected; use from_str_multiple or from_str_multiple_with_options",
        "several YAML documents (separated by ---) where one is expected",
    );
    match first.find("duplicate mapping key: ") {
        Some(at) => {
            let rest = &first[at + "duplicate mapping key: ".len()..];
            let key = rest
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(rest);
            format!("{}the key {key} appears twice in one mapping", &first[..at])
        }
        None => first,
    }
}

/// A type mismatch in plain words: no Rust type names (`expected u32`, `struct TenantFile`).
pub fn plain(message: &str) -> String {
    const WORDS: [(&str, &str); 16] = [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping (key: value)"),
        ("expected a boolean", "expected true or false"),
        ("invalid type: integer", "got the number"),
        ("invalid type: string", "got the text"),
        ("invalid type: sequence", "got a list"),
        ("invalid type: map", "got a mapping"),
        ("invalid type: boolean", "got"),
    ];
    let mut out = message.to_string();
    for (from, to) in WORDS {
        out = out.replace(from, to);
    }
    // "expected struct TenantFile" / "struct Subscription with 3 elements"
    while let Some(at) = out.find("struct ") {
        let end = out[at + 7..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |e| at + 7 + e);
        out.replace_range(at..end, "a mapping (key: value)");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn syntax_errors_are_told_without_the_parsers_advice_to_programmers() {
        let two = serde_saphyr::from_str::<serde_json::Value>("a: 1\n---\nb: 2\n").unwrap_err();
        let told = super::syntax_error(&two);
        assert!(told.contains("several YAML documents"), "{told}");
        assert!(!told.contains("from_str"), "{told}");
        let dup = serde_saphyr::from_str::<serde_json::Value>("a: 1\na: 2\n").unwrap_err();
        let told = super::syntax_error(&dup);
        assert!(told.contains("the key a appears twice"), "{told}");
        assert!(!told.contains("DuplicateKeyPolicy"), "{told}");
    }

    #[test]
    fn type_errors_are_told_without_rust_type_names() {
        assert_eq!(
            super::plain("invalid type: string \"lots\", expected u32"),
            "got the text \"lots\", expected a whole number"
        );
        assert_eq!(
            super::plain("invalid type: integer `5`, expected struct TenantFile"),
            "got the number `5`, expected a mapping (key: value)"
        );
    }
}
