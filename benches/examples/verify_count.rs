//! Runs N peer verifications of one kind of presented chain, for counting
//! instructions under `valgrind --tool=callgrind`: what a peer can make zt's
//! verifier spend before it has proven it holds any key.
//!
//! ```text
//! cargo build --release -p zt-benches --example verify_count
//! valgrind --tool=callgrind target/release/examples/verify_count mesh 1
//! valgrind --tool=callgrind target/release/examples/verify_count mesh 11
//! ```
//!
//! The difference of the two totals divided by 10 is the cost of one verification.
//! Kinds:
//! - `good`: an SVID of the trusted root (accepted);
//! - `mesh`: a leaf and 7 self-signed CA certificates all named like the trusted
//!   root, each of which could have issued the leaf and every other;
//! - `linear`: a leaf and 7 CA certificates whose names chain up to the trusted
//!   root's name, signed by unrelated keys;
//! - `unrelated`: a leaf and 7 CA certificates with unrelated names;
//! - `stranger`: a leaf of an authority the bundle does not hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use zt_core::{BundleSet, PeerRole, X509Bundle, verify_peer_chain};
use zt_testkit::ca::TestCa;

const TRUST_DOMAIN: &str = "example.org";

/// A leaf of `issuer`, alone.
fn leaf(issuer: &TestCa) -> CertificateDer<'static> {
    issuer.valid("spiffe://example.org/peer").leaf().clone()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "good".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let root = TestCa::named(TRUST_DOMAIN, "bench root");
    let bundles = BundleSet::new()
        .with(X509Bundle::new(TRUST_DOMAIN.parse().unwrap(), vec![root.cert().clone()]).unwrap());
    let chain: Vec<CertificateDer<'static>> = match kind.as_str() {
        "mesh" => {
            let cas: Vec<_> = (0..7)
                .map(|_| TestCa::named(TRUST_DOMAIN, "bench root"))
                .collect();
            let mut chain = vec![leaf(&cas[0])];
            chain.extend(cas.iter().map(|ca| ca.cert().clone()));
            chain
        }
        "linear" => {
            // Names chain up: leaf <- n0 <- n1 <- ... <- n6 <- "bench root", but
            // every signature is by an unrelated key.
            let names: Vec<String> = (0..7).map(|i| format!("bench intermediate {i}")).collect();
            let mut issuers = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let parent_name = names.get(i + 1).map_or("bench root", String::as_str);
                let fake_parent = TestCa::named(TRUST_DOMAIN, parent_name);
                issuers.push(fake_parent.intermediate_named(name));
            }
            let mut chain = vec![leaf(&issuers[0])];
            chain.extend(issuers.iter().map(|ca| ca.cert().clone()));
            chain
        }
        "unrelated" => {
            let cas: Vec<_> = (0..7)
                .map(|i| TestCa::named(TRUST_DOMAIN, &format!("unrelated {i}")))
                .collect();
            let mut chain = vec![leaf(&cas[0])];
            chain.extend(cas.iter().map(|ca| ca.cert().clone()));
            chain
        }
        "stranger" => vec![leaf(&TestCa::named(TRUST_DOMAIN, "stranger root"))],
        _ => vec![leaf(&root)],
    };
    let provider = zt_core::default_provider().unwrap();
    let now = SystemTime::now();
    let mut accepted = 0usize;
    for _ in 0..count {
        let result = verify_peer_chain(
            std::hint::black_box(&chain),
            &bundles,
            PeerRole::Client,
            &provider,
            now,
        );
        accepted += usize::from(result.is_ok());
    }
    println!("{count} {kind} verifications, {accepted} accepted");
}
