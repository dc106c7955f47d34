//! The metrics table of docs/operations.md names exactly the metrics zt records:
//! every name constant of zt-core and zt-tower has a row, and every row names one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn operations_md_lists_exactly_the_metrics_zt_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/operations.md")).unwrap();
    let section = doc
        .split_once("\n## Metrics\n")
        .and_then(|(_, rest)| rest.split_once("\n## ").map(|(section, _)| section))
        .expect("docs/operations.md has a Metrics section");
    let documented: BTreeSet<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `zt_"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| format!("zt_{name}")))
        .collect();
    let recorded: BTreeSet<String> = zt_core::metrics::NAMES
        .iter()
        .chain(zt_tower::metrics::NAMES)
        .map(|n| (*n).to_owned())
        .collect();
    assert_eq!(documented, recorded);
}

#[test]
fn every_name_constant_is_in_a_names_list() {
    // The constants are listed by hand in NAMES: a new one left out of the list
    // would escape the test above, so count the constants in the source too.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, names) in [
        ("../zt-core/src/metrics.rs", zt_core::metrics::NAMES),
        ("src/metrics.rs", zt_tower::metrics::NAMES),
    ] {
        let source = std::fs::read_to_string(root.join(file)).unwrap();
        let constants = source
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": &str ="))
            .count();
        assert_eq!(constants, names.len(), "{file}");
    }
}
