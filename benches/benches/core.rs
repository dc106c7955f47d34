//! Criterion benchmarks of zt-core's per-handshake and per-request work, each beside
//! the plain-rustls or bare-data-structure floor it is compared with.
//!
//! ```text
//! cargo bench -p zt-benches --bench core
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConnection, ServerConnection};
use x509_parser::prelude::FromDer;
use zt_benches::{handshake_in_memory, plain_pair, zt_pair};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::{BundleSet, PeerRole, SpiffeId, verify_peer_chain};

fn spiffe_id_parse(c: &mut Criterion) {
    c.bench_function("spiffe_id_parse", |b| {
        b.iter(|| SpiffeId::new(black_box("spiffe://example.org/ns/prod/sa/billing-api")))
    });
}

fn peer_verification(c: &mut Criterion) {
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let svid = ca
        .mint(&"spiffe://example.org/ns/prod/sa/api".parse().unwrap())
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let provider = zt_core::default_provider().unwrap();
    let anchors = vec![
        webpki::anchor_from_trusted_cert(ca.cert_der())
            .unwrap()
            .to_owned(),
    ];
    let mut group = c.benchmark_group("peer_verification");
    // The floor: what parsing and webpki path validation alone cost.
    group.bench_function("x509_parser_parse_leaf", |b| {
        b.iter(|| {
            x509_parser::certificate::X509Certificate::from_der(black_box(svid.leaf()))
                .unwrap()
                .1
                .validity()
                .not_after
                .timestamp()
        })
    });
    group.bench_function("webpki_path_validation", |b| {
        b.iter(|| {
            let ee = webpki::EndEntityCert::try_from(black_box(svid.leaf())).unwrap();
            ee.verify_for_usage(
                provider.signature_verification_algorithms.all,
                &anchors,
                &[],
                UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
            .unwrap()
        })
    });
    group.bench_function("zt_verify_peer_svid", |b| {
        b.iter(|| {
            verify_peer_chain(
                black_box(svid.chain()),
                &bundles,
                PeerRole::Client,
                &provider,
                SystemTime::now(),
            )
            .unwrap()
        })
    });
    group.finish();
}

fn handshakes(c: &mut Criterion) {
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    // The plain webpki client checks the DNS name, so the server SVID carries one too.
    let mut params = SvidParams::new("spiffe://example.org/server".parse().unwrap());
    params.dns_names.push("localhost".to_owned());
    let server = ca.mint_with(params).unwrap();
    let client = ca
        .mint(&"spiffe://example.org/client".parse().unwrap())
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut group = c.benchmark_group("mtls_handshake_tls13_p256");
    for (label, pair) in [
        ("plain_rustls", plain_pair(&ca, &server, &client)),
        ("zt", zt_pair(&ca, &server, &client)),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut client = ClientConnection::new(pair.client.clone(), name.clone()).unwrap();
                let mut server = ServerConnection::new(pair.server.clone()).unwrap();
                handshake_in_memory(&mut client, &mut server).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, spiffe_id_parse, peer_verification, handshakes);
criterion_main!(benches);
