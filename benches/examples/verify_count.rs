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

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use zt_core::{BundleSet, PeerRole, X509Bundle, verify_peer_chain};

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(3600)).into();
    params
}

fn leaf_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names.push(SanType::URI(
        "spiffe://example.org/peer".to_owned().try_into().unwrap(),
    ));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + Duration::from_secs(600)).into();
    params
}

/// A CA named `name`, signed by `parent` (self-signed without one).
fn ca(
    name: &str,
    parent: Option<&Issuer<'static, KeyPair>>,
) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let params = ca_params(name);
    let der = match parent {
        Some(parent) => params.signed_by(&key, parent).unwrap(),
        None => params.self_signed(&key).unwrap(),
    }
    .der()
    .clone();
    (der, Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    leaf_params().signed_by(&key, issuer).unwrap().der().clone()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "good".to_owned());
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    let (root_der, root) = ca("bench root", None);
    let bundles = BundleSet::new()
        .with(X509Bundle::new("example.org".parse().unwrap(), vec![root_der]).unwrap());
    let chain: Vec<CertificateDer<'static>> = match kind.as_str() {
        "mesh" => {
            let cas: Vec<_> = (0..7).map(|_| ca("bench root", None)).collect();
            let mut chain = vec![leaf(&cas[0].1)];
            chain.extend(cas.iter().map(|(der, _)| der.clone()));
            chain
        }
        "linear" => {
            // Names chain up: leaf <- n0 <- n1 <- ... <- n6 <- "bench root", but
            // every signature is by an unrelated key.
            let names: Vec<String> = (0..7).map(|i| format!("bench intermediate {i}")).collect();
            let mut issuers = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let parent_name = names.get(i + 1).map_or("bench root", String::as_str);
                let (_, fake_parent) = ca(parent_name, None);
                issuers.push(ca(name, Some(&fake_parent)));
            }
            let mut chain = vec![leaf(&issuers[0].1)];
            chain.extend(issuers.iter().map(|(der, _)| der.clone()));
            chain
        }
        "unrelated" => {
            let cas: Vec<_> = (0..7)
                .map(|i| ca(&format!("unrelated {i}"), None))
                .collect();
            let mut chain = vec![leaf(&cas[0].1)];
            chain.extend(cas.iter().map(|(der, _)| der.clone()));
            chain
        }
        "stranger" => {
            let (_, stranger) = ca("stranger root", None);
            vec![leaf(&stranger)]
        }
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
