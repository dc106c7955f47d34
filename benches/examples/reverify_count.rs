//! Re-verifies N open connections' peers after a bundle rotation, for counting
//! instructions under `valgrind --tool=callgrind`: what the first request on
//! every connection costs once a new snapshot serves.
//!
//! ```text
//! cargo build --release -p zt-benches --example reverify_count
//! valgrind --tool=callgrind --toggle-collect='*reverify_count::burst*' \
//!     target/release/examples/reverify_count 10000 100
//! ```
//!
//! Builds C distinct client chains (one CA) and N `PeerIdentity`s over them,
//! round robin; re-verifies every peer once; publishes a new snapshot (same CA,
//! new generation); then re-verifies every peer once more inside `burst`, the
//! only function `--toggle-collect` counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::SystemTime;

use zt_core::dev::DevCa;
use zt_core::{BundleSet, Identity, IdentityPublisher, PeerIdentity, PeerRole};

/// Re-verifies every peer once; returns how many verified.
#[inline(never)]
fn reverify_all(peers: &[PeerIdentity], identity: &Identity, now: SystemTime) -> usize {
    peers
        .iter()
        .filter(|peer| std::hint::black_box(peer).reverify(identity, now).is_ok())
        .count()
}

/// The re-verification after the rotation: the part callgrind counts.
#[inline(never)]
fn burst(peers: &[PeerIdentity], identity: &Identity, now: SystemTime) -> usize {
    reverify_all(peers, identity, now)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let distinct: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100)
        .max(1);

    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let bundles = || BundleSet::new().with(ca.bundle());
    let server = "spiffe://example.org/server".parse().unwrap();
    let publisher = IdentityPublisher::new().unwrap();
    publisher
        .publish(ca.mint(&server).unwrap(), bundles())
        .unwrap();
    let identity = publisher.identity();

    let chains: Vec<_> = (0..distinct)
        .map(|i| {
            let id = format!("spiffe://example.org/client/{i}").parse().unwrap();
            ca.mint(&id).unwrap().chain().to_vec()
        })
        .collect();
    let peers: Vec<_> = (0..count)
        .map(|i| PeerIdentity::from_chain(chains[i % distinct].clone(), PeerRole::Client).unwrap())
        .collect();
    let now = SystemTime::now();
    let before = reverify_all(&peers, &identity, now);

    // A rotation: same CA, our SVID renewed, a new generation.
    publisher
        .publish(ca.mint(&server).unwrap(), bundles())
        .unwrap();
    let after = burst(&peers, &identity, now);

    println!(
        "{count} peers over {distinct} chains: {before} verified before the rotation, {after} after (generation {})",
        identity.generation()
    );
}
