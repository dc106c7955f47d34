//! Files and the store: loading by extension, refusals that name the file, and
//! `PolicyStore` swaps.

use super::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use zt_core::policy::MAX_POLICY_BYTES;
use zt_core::{Mode, PolicyStore};
use zt_testkit::TempDir;

use crate::formats::{SAME_JSON, SAME_TOML, SAME_YAML};

const ALLOW_A: &str =
    "rules:\n  - name: a\n    action: allow\n    from: { ids: [spiffe://example.org/a] }\n";
const ALLOW_B: &str =
    "rules:\n  - name: b\n    action: allow\n    from: { ids: [spiffe://example.org/b] }\n";

#[test]
fn load_picks_the_format_from_the_extension() {
    let dir = TempDir::new("policy");
    let peer = id("spiffe://example.org/frontend/web");
    for (name, text) in [
        ("p.yaml", SAME_YAML),
        ("p.yml", SAME_YAML),
        ("p.toml", SAME_TOML),
        ("p.json", SAME_JSON),
    ] {
        let policy = Policy::load(dir.write(name, text)).unwrap();
        assert_eq!(policy.rule_count(), 5, "{name}");
        assert!(
            policy.decide(&peer, &get("/v1/items/1")).is_allowed(),
            "{name}"
        );
    }
}

#[test]
fn load_refuses_an_unknown_extension() {
    let dir = TempDir::new("policy");
    let path = dir.write("policy.txt", ALLOW_A);
    let err = Policy::load(&path).unwrap_err();
    assert!(
        matches!(&err, PolicyError::UnknownFormat { path: p } if *p == path),
        "{err:?}"
    );
}

#[test]
fn load_errors_name_the_file() {
    let dir = TempDir::new("policy");
    let path = dir.write("bad.yaml", "rules:\n  - name: r\n    action: allow\n");
    let err = Policy::load(&path).unwrap_err();
    let PolicyError::Invalid {
        path: Some(reported),
        location: Some(location),
        ..
    } = &err
    else {
        panic!("expected an invalid-policy error with path and location, got {err:?}");
    };
    assert_eq!(reported, &path);
    assert_eq!(location.line, 2);
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

#[test]
fn load_refuses_a_missing_file() {
    let dir = TempDir::new("policy");
    let err = Policy::load(dir.join("absent.json")).unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }), "{err:?}");
}

#[test]
fn load_refuses_a_file_over_the_size_limit() {
    let dir = TempDir::new("policy");
    let mut big = String::from("{\"rules\": []}");
    big.push_str(&" ".repeat(MAX_POLICY_BYTES));
    let err = Policy::load(dir.write("big.json", big)).unwrap_err();
    assert!(
        matches!(err, PolicyError::TooLarge { limit, .. } if limit == MAX_POLICY_BYTES),
        "{err:?}"
    );
}

#[test]
fn load_refuses_a_file_that_is_not_utf8() {
    let dir = TempDir::new("policy");
    let err = Policy::load(dir.write("bin.json", b"{\"rules\": [\xff]}")).unwrap_err();
    assert!(err.to_string().contains("not valid UTF-8"), "{err}");
}

/// Waits, bounded, for the next change notification.
async fn next_change(changes: &mut zt_core::policy::PolicyChanges) {
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("no change notification within 5 s")
        .then_some(())
        .expect("store gone");
}

#[tokio::test]
async fn reload_of_a_good_file_swaps_the_policy_and_notifies() {
    let dir = TempDir::new("policy");
    let path = dir.write("policy.yaml", ALLOW_A);
    let store = PolicyStore::new(Policy::load(&path).unwrap());
    let mut changes = store.changes();
    let (a, b) = (id("spiffe://example.org/a"), id("spiffe://example.org/b"));
    assert!(store.decide(&a, &get("/")).is_allowed());
    assert_eq!(store.status().generation(), 1);

    dir.write("policy.yaml", ALLOW_B);
    store.reload_from(&path).unwrap();
    next_change(&mut changes).await;

    let status = changes.status();
    assert_eq!(status.generation(), 2);
    assert_eq!(status.last_error(), None);
    assert!(!store.decide(&a, &get("/")).is_allowed());
    assert!(store.load().decide(&b, &get("/")).is_allowed());
}

#[tokio::test]
async fn reload_of_a_bad_file_keeps_the_current_policy() {
    let dir = TempDir::new("policy");
    let path = dir.write("policy.yaml", ALLOW_A);
    let store = PolicyStore::new(Policy::load(&path).unwrap());
    let mut changes = store.changes();
    let a = id("spiffe://example.org/a");

    // A half-written file, then one with a bad rule: neither may replace it.
    for bad in [
        "rules:\n  - name: a\n    action: allow\n    from: { ids: [spiffe://exa",
        "rules:\n  - name: a\n    action: allow\n",
    ] {
        dir.write("policy.yaml", bad);
        let err = store.reload_from(&path).unwrap_err();
        next_change(&mut changes).await;
        let status = changes.status();
        assert_eq!(status.generation(), 1, "{bad}");
        assert_eq!(status.last_error(), Some(err.to_string().as_str()));
        assert!(store.decide(&a, &get("/")).is_allowed(), "{bad}");
    }

    dir.write("policy.yaml", ALLOW_B);
    store.reload_from(&path).unwrap();
    next_change(&mut changes).await;
    assert_eq!(changes.status().generation(), 2);
    assert_eq!(changes.status().last_error(), None);
}

#[tokio::test]
async fn store_of_a_policy_built_in_code_notifies_every_clone() {
    let store = PolicyStore::new(Policy::deny_all());
    let clone = store.clone();
    let mut changes = clone.changes();
    store.store(Policy::allow_patterns(["spiffe://example.org/**"]).unwrap());
    next_change(&mut changes).await;
    assert_eq!(changes.status().rule_count(), 1);
    assert!(
        clone
            .decide(&id("spiffe://example.org/a"), &get("/"))
            .is_allowed()
    );
    let held = clone.load_full();
    store.store(Policy::deny_all());
    assert_eq!(held.rule_count(), 1, "a loaded policy is immutable");
}

#[test]
fn store_reports_dry_run_mode() {
    let store = PolicyStore::new(yaml("mode: dry-run\nrules: []\n"));
    assert_eq!(store.status().mode(), Mode::DryRun);
    let decision = store.decide(&id("spiffe://example.org/a"), &get("/"));
    assert!(decision.is_allowed() && decision.dry_run());
}

#[test]
fn tempdir_helper_cleans_up() {
    let path: PathBuf;
    {
        let dir = TempDir::new("policy");
        path = dir.write("x.json", "{}");
        assert!(Path::new(&path).exists());
    }
    assert!(!path.exists());
}

#[test]
fn a_peers_rules_selected_under_one_store_are_never_used_by_another() {
    // Each store's one rule is rule 0 and matches every request: only `from`
    // tells them apart, so a selection lent across stores would change the
    // outcome.
    let a = PolicyStore::new(yaml(ALLOW_A));
    let b = PolicyStore::new(yaml(ALLOW_B));
    let peer = connection(&id("spiffe://example.org/a"));
    let request = get("/x");
    for _ in 0..2 {
        assert_eq!(a.decide_peer(&peer, &request).rule(), Some("a"));
        let decision = b.decide_peer(&peer, &request);
        assert!(!decision.is_allowed(), "{decision}");
        assert_eq!(decision.rule(), None);
    }
}

#[test]
fn a_stored_policy_decides_the_next_request_of_a_peer_that_was_decided_before() {
    let store = PolicyStore::new(yaml(ALLOW_A));
    let peer = connection(&id("spiffe://example.org/a"));
    let request = get("/x");
    assert!(store.decide_peer(&peer, &request).is_allowed());
    // Rule 0 again, for another peer.
    store.store(yaml(ALLOW_B));
    assert!(!store.decide_peer(&peer, &request).is_allowed());
    store.store(yaml(ALLOW_A));
    assert_eq!(store.decide_peer(&peer, &request).rule(), Some("a"));
}
