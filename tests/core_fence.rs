//! The core (licensing domain, rules, planner, executor, the backend trait) knows no
//! Kubernetes: it is its own crate (`crates/core`), which the compiler builds without kube,
//! k8s-openapi, serde_json or an HTTP client as long as its Cargo.toml names none of them.
//! These tests read that Cargo.toml and the core's sources, so the fence cannot erode
//! unnoticed.

use std::path::{Path, PathBuf};

const CORE: &[&str] = &[
    "crates/core/src/domain",
    "crates/core/src/planner",
    "crates/core/src/executor.rs",
    "crates/core/src/backend",
    "crates/core/src/clock.rs",
];

const FORBIDDEN: &[&str] = &[
    "kube::",
    "use kube",
    "k8s_openapi",
    "serde_json",
    "crate::api",
    "crate::cli",
    "crate::controller",
    "crate::intents",
    "embedded::",
];

fn sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            sources(&e.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
}

/// `file:line: text` of every line of code (not a comment) in `files` holding one of `bad`.
fn code_containing(files: &[PathBuf], bad: &[&str]) -> Vec<String> {
    let mut found = vec![];
    for f in files {
        for (n, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for b in bad.iter().filter(|b| code.contains(*b)) {
                found.push(format!("{}:{}: {b}", f.display(), n + 1));
            }
        }
    }
    found
}

#[test]
fn the_core_imports_no_kubernetes_no_json_and_no_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for c in CORE {
        sources(&root.join(c), &mut files);
    }
    assert!(files.len() >= 10, "the core's files were found: {files:?}");
    let found = code_containing(&files, FORBIDDEN);
    assert!(
        found.is_empty(),
        "the core reaches outside itself:\n{}",
        found.join("\n")
    );
}

/// The emulator reads the vendors' pages on its own: it never uses the Microsoft client's
/// types (`wire`), its credentials, its offers logic or its mapping, so a misreading in the
/// client cannot be confirmed by an emulator sharing it.
#[test]
fn the_emulator_has_its_own_reading_and_never_uses_the_microsoft_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    sources(&root.join("crates/emulator/src"), &mut files);
    assert!(
        files.len() >= 5,
        "the emulator's files were found: {files:?}"
    );
    let found = code_containing(&files, &["microsoft::", "seatkeeper_microsoft"]);
    assert!(found.is_empty(), "the emulator uses the client: {found:#?}");
    // The compiler holds the line: the emulator's crate does not depend on the client's.
    let deps = dependencies("crates/emulator/Cargo.toml");
    assert!(
        deps.contains(&"seatkeeper-embedded".to_string()),
        "{deps:?}"
    );
    assert!(
        !deps.contains(&"seatkeeper-microsoft".to_string()),
        "{deps:?}"
    );
}

/// The names of a crate's `[dependencies]`.
fn dependencies(manifest: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(manifest))
        .unwrap()
        .lines()
        .skip_while(|l| !l.starts_with("[dependencies]"))
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_string()))
        .collect()
}

/// The planner is the only author of status: the executor reports what happened as
/// `planner::records::Event`s and never names a status type or field itself.
#[test]
fn the_executor_writes_no_status_the_planners_records_do() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = code_containing(
        &[root.join("crates/core/src/executor.rs")],
        &[
            "SubscriptionStatus",
            "LicenseAssignmentStatus",
            "AddOnStatus",
            ".status.",
            ".status =",
        ],
    );
    assert!(found.is_empty(), "the executor touches status: {found:#?}");
}

/// The core crate's dependencies: no Kubernetes, no JSON, no HTTP.
#[test]
fn the_core_crate_depends_on_no_kubernetes_json_or_http() {
    let deps = dependencies("crates/core/Cargo.toml");
    assert!(
        deps.contains(&"serde".to_string()),
        "the dependencies were read: {deps:?}"
    );
    for bad in [
        "kube",
        "k8s-openapi",
        "serde_json",
        "reqwest",
        "hyper",
        "axum",
    ] {
        assert!(
            !deps.contains(&bad.to_string()),
            "the core depends on {bad}: {deps:?}"
        );
    }
}
