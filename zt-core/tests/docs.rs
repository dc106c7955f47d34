//! The log events docs/operations.md names are the ones zt-core emits: each
//! `zt_core` row's message appears, as written, in a `tracing` call of the source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_documented_zt_core_log_event_is_emitted_with_that_text() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/operations.md")).unwrap();
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let code: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut checked = 0;
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix("| `zt_core` `") else {
            continue;
        };
        let Some((message, _)) = rest.split_once('`') else {
            continue;
        };
        assert!(
            code.contains(&format!("\"{message}")),
            "docs/operations.md names the event {message:?}, which zt-core never logs"
        );
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} documented events found");
}
