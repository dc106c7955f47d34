//! What zt-core records through the `metrics` facade, read back from a
//! `DebuggingRecorder` installed for the test's thread. A snapshot resets what it
//! reads, so each test takes one, at its end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::metrics::{
    IDENTITY_BUNDLE_AUTHORITIES, IDENTITY_GENERATION, IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS,
    IDENTITY_UPDATES_TOTAL, PEER_REVERIFY_FAILURES_TOTAL, POLICY_GENERATION, POLICY_RELOADS_TOTAL,
    POLICY_RULES,
};
use zt_core::{
    BundleSet, IdentitySource, PeerIdentity, PeerRole, Policy, PolicyStore, SpiffeId, StaticSource,
};

/// One snapshot: each series as `name{k=v,...}` (labels sorted) and its value.
fn recorded(recorder: &DebuggingRecorder) -> BTreeMap<String, DebugValue> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let mut labels: Vec<_> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (
                format!("{}{{{}}}", key.key().name(), labels.join(",")),
                value,
            )
        })
        .collect()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn gauge(seen: &BTreeMap<String, DebugValue>, series: &str) -> f64 {
    match seen.get(series) {
        Some(DebugValue::Gauge(v)) => v.0,
        other => panic!("{series}: {other:?} in {seen:?}"),
    }
}

fn counter(seen: &BTreeMap<String, DebugValue>, series: &str) -> u64 {
    match seen.get(series) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{series}: {other:?} in {seen:?}"),
    }
}

#[test]
fn identity_gauges_follow_a_rotation_and_keep_it_after_a_rejected_candidate() {
    let recorder = DebuggingRecorder::new();
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let rotated = ca
        .mint_with(SvidParams::new(id("spiffe://example.org/api")).ttl(Duration::from_secs(7200)))
        .unwrap();
    let rotated_not_after = rotated
        .not_after()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let stranger = DevCa::new("example.org".parse().unwrap()).unwrap();
    metrics::with_local_recorder(&recorder, || {
        let source = StaticSource::new(
            ca.mint(&id("spiffe://example.org/api")).unwrap(),
            bundles.clone(),
        )
        .unwrap();
        source.update(rotated, bundles.clone()).unwrap();
        // Signed by a CA our bundle does not hold: rejected, the rotation stays.
        let bad = stranger.mint(&id("spiffe://example.org/api")).unwrap();
        source.update(bad, bundles.clone()).unwrap_err();
        assert_eq!(source.identity().generation(), 2);
    });

    let seen = recorded(&recorder);
    assert_eq!(gauge(&seen, &format!("{IDENTITY_GENERATION}{{}}")), 2.0);
    assert_eq!(
        gauge(
            &seen,
            &format!("{IDENTITY_SVID_EXPIRY_TIMESTAMP_SECONDS}{{}}")
        ),
        rotated_not_after
    );
    let authorities = format!("{IDENTITY_BUNDLE_AUTHORITIES}{{trust_domain=example.org}}");
    assert_eq!(gauge(&seen, &authorities), 1.0);
    let ok = format!("{IDENTITY_UPDATES_TOTAL}{{result=ok,source=static}}");
    let rejected = format!("{IDENTITY_UPDATES_TOTAL}{{result=rejected,source=static}}");
    assert_eq!((counter(&seen, &ok), counter(&seen, &rejected)), (2, 1));
}

#[test]
fn policy_gauges_follow_stores_and_rejected_reloads_are_counted() {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let store = PolicyStore::new(
            Policy::allow_patterns(["spiffe://example.org/a", "spiffe://example.org/b"]).unwrap(),
        );
        store.store(Policy::allow_patterns(["spiffe://example.org/a"]).unwrap());
        let missing = std::env::temp_dir().join("zt-metrics-test-no-such-policy.json");
        store.reload_from(&missing).unwrap_err();
        assert_eq!(store.status().generation(), 2);
    });

    let seen = recorded(&recorder);
    assert_eq!(gauge(&seen, &format!("{POLICY_GENERATION}{{}}")), 2.0);
    assert_eq!(gauge(&seen, &format!("{POLICY_RULES}{{}}")), 1.0);
    let ok = format!("{POLICY_RELOADS_TOTAL}{{result=ok}}");
    let rejected = format!("{POLICY_RELOADS_TOTAL}{{result=rejected}}");
    assert_eq!((counter(&seen, &ok), counter(&seen, &rejected)), (1, 1));
}

#[test]
fn a_peer_of_another_authority_is_counted_by_reason_not_by_id() {
    let recorder = DebuggingRecorder::new();
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let other = DevCa::new("example.org".parse().unwrap()).unwrap();
    let server = StaticSource::new(
        ca.mint(&id("spiffe://example.org/api")).unwrap(),
        BundleSet::new().with(ca.bundle()),
    )
    .unwrap();
    let svid = other.mint(&id("spiffe://example.org/web")).unwrap();
    let peer = PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client).unwrap();
    metrics::with_local_recorder(&recorder, || {
        peer.reverify(&server.identity(), SystemTime::now())
            .unwrap_err();
    });

    let seen = recorded(&recorder);
    let series = format!("{PEER_REVERIFY_FAILURES_TOTAL}{{reason=unknown_authority}}");
    assert_eq!(counter(&seen, &series), 1, "{seen:?}");
}
