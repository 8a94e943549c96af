//! What the benchmarks share: the output line, a process's peak memory, a simple tenant.
//! Each benchmark uses some of it.
#![allow(dead_code)]

/// One figure per line: `SIZE FIGURE VALUE UNIT`.
pub fn figure(size: &str, name: &str, value: impl std::fmt::Display, unit: &str) {
    println!("{size} {name} {value} {unit}");
}

/// The sizes `BENCH_SIZES` asks for (else `default`), with their user counts; an unknown size
/// is an error naming the known ones.
pub fn sizes(default: &str) -> Vec<(String, usize)> {
    std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|size| (size.to_string(), users_of(size)))
        .collect()
}

/// A size's user count.
pub fn users_of(size: &str) -> usize {
    match size {
        "1k" => 1_000,
        "10k" => 10_000,
        "30k" => 30_000,
        "100k" => 100_000,
        other => panic!("unknown size {other} (1k, 10k, 30k, 100k)"),
    }
}

/// Peak resident memory (VmHWM) of a process (`"self"` or a pid), in MiB.
pub fn peak_rss_mib(process: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A tenant of `n` users (usage location NL, no licences) and one Office 365 E3 subscription
/// with a seat for each: every licence change the benchmark asks for can be made.
pub fn tenant_yaml(org: &str, n: usize) -> String {
    let mut y = format!("organizations:\n- domain: {org}\n  paymentMethodOnFile: true\n  users:\n");
    for i in 0..n {
        y += &format!("  - {{upn: u{i}@{org}, usageLocation: NL}}\n");
    }
    y += &format!("  subscriptions:\n  - {{id: sub-e3, product: ENTERPRISEPACK, seats: {n}}}\n");
    y
}

/// A kubeconfig in `dir` for the test API server at `url` (no credentials); its path.
pub fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"{url}\"}}}}]\nusers: [{{name: t, user: {{}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: t}}}}]\ncurrent-context: t\n"
        ),
    )
    .unwrap();
    path
}
