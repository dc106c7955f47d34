//! Runs N policy decisions at 10 or 10,000 rules, for counting instructions under
//! `valgrind --tool=callgrind` (repeatable on a busy machine):
//!
//! ```text
//! cargo build --release -p zt-benches --example decision_count
//! valgrind --tool=callgrind target/release/examples/decision_count 10000 1000
//! valgrind --tool=callgrind target/release/examples/decision_count 10000 101000
//! ```
//!
//! The difference of the two totals divided by 100,000 is the cost of one
//! decision (`PolicyStore::decide`: an `exact-ID` rule that allows, a deny rule on
//! another path, and a wildcard pattern rule of the peer's trust domain).
//!
//! With a third argument `view`, each iteration also builds the request's
//! canonical view (`Request::new`, which canonicalises the path), as
//! `zt_tower::Authorize` does once per request. With `peer` instead, each
//! decision is `PolicyStore::decide_peer` for one connection's `PeerIdentity`,
//! as `zt_tower::Authorize` decides: the peer's rules are selected on the first
//! decision and reused by the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use zt_core::dev::DevCa;
use zt_core::{Format, PeerIdentity, PeerRole, Policy, PolicyStore, Request, SpiffeId};
use zt_testkit::policy::policy_json;

fn main() {
    let mut args = std::env::args().skip(1);
    let rules: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let store = PolicyStore::new(Policy::parse(&policy_json(rules), Format::Json).unwrap());
    let peer: SpiffeId = "spiffe://example.org/svc-0".parse().unwrap();
    let mode = args.next();
    let view = mode.as_deref() == Some("view");
    let connection = (mode.as_deref() == Some("peer")).then(|| {
        let ca = DevCa::new(peer.trust_domain().clone()).unwrap();
        let svid = ca.mint(&peer).unwrap();
        PeerIdentity::from_chain(svid.chain().to_vec(), PeerRole::Client).unwrap()
    });
    let request = Request::new("GET", "/svc-0/items");
    let mut allowed = 0usize;
    for _ in 0..count {
        let decision = if let Some(connection) = &connection {
            store.decide_peer(black_box(connection), black_box(&request))
        } else if view {
            let request = Request::new(black_box("GET"), black_box("/svc-0/items"));
            store.decide(black_box(&peer), &request)
        } else {
            store.decide(black_box(&peer), black_box(&request))
        };
        allowed += usize::from(decision.is_allowed());
    }
    assert_eq!(allowed, count);
    println!("{count} decisions at {rules} rules");
}
