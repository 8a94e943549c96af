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
