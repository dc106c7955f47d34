#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Handshake-level tests of zt-core's rustls configs over real TCP sockets on
//! 127.0.0.1.
//!
//! Every bad peer is presented by a plain rustls endpoint (zt's publisher refuses to
//! publish a bad SVID) to a zt endpoint, in both directions: a zt server refusing a
//! client, a zt client refusing a server. Each test asserts that the handshake fails
//! and, from the zt side's rustls error, why. The `*_is_accepted` controls run the
//! same harness with a valid certificate, so a refusal is never an artifact of the
//! harness.

#[path = "../common/mod.rs"]
mod common;

mod anonymous;
mod authorization;
mod client_verifies_server;
mod controls;
mod fail_closed;
mod federation;
mod peer_identity;
mod reconnection;
mod resumption;
mod rotation;
mod server_verifies_client;
mod versions;

use std::time::{Duration, SystemTime};

use rustls::{AlertDescription, CertificateError, HandshakeKind, ProtocolVersion};
use zt_core::dev::DevCa;
use zt_core::tls::{ClientConfigBuilder, Rejection, ServerConfigBuilder, UnauthorizedPeer};
use zt_core::{BundleSet, IdError, IdMatcher, IdentityPublisher, PeerRole, SvidError, X509Bundle};

use common::{
    ALL_VERSIONS, Accepted, Credential, Defect, LeafSpec, TLS12_ONLY, TLS13_ONLY, TestCa,
    TestCaExt as _, TestServer, connect, connect_and_echo, der_contains, echo, id, into_tls_error,
    plain_client_config, plain_server_config, provider, publisher, recording_server_config,
    rejection, self_signed_leaf, server_leaf, svid_error, td, unauthorized, zt_client_config,
};

const TD: &str = "example.org";
const PARTNER_TD: &str = "partner.org";
const SERVER_ID: &str = "spiffe://example.org/server";
const CLIENT_ID: &str = "spiffe://example.org/client";
const PARTNER_CLIENT_ID: &str = "spiffe://partner.org/client";

// ---------------------------------------------------------------------------------
// Harnesses
// ---------------------------------------------------------------------------------

/// A zt server of example.org (SVID issued by `ca`, trusting `bundles`, authorizing
/// any ID) meets a plain rustls client that presents `client`. Asserts the client
/// cannot exchange a byte and returns the error the zt server's handshake failed with.
async fn zt_server_refusal(ca: &TestCa, bundles: BundleSet, client: &Credential) -> rustls::Error {
    let server_identity = publisher(ca.svid(SERVER_ID), bundles);
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let attempt =
        connect_and_echo(server.addr, plain_client_config(Some(client), ALL_VERSIONS)).await;
    assert!(
        attempt.is_err(),
        "a refused client must not be able to exchange bytes"
    );
    server.expect_refused().await
}

/// As [`zt_server_refusal`], for a client that must be accepted; returns what the
/// server learned.
async fn zt_server_acceptance(ca: &TestCa, bundles: BundleSet, client: &Credential) -> Accepted {
    let server_identity = publisher(ca.svid(SERVER_ID), bundles);
    let mut server = TestServer::zt(&server_identity.identity()).await;
    connect_and_echo(server.addr, plain_client_config(Some(client), ALL_VERSIONS))
        .await
        .expect("client should be accepted and get its bytes echoed");
    server.expect_accepted().await
}

/// A zt client of example.org (SVID issued by `ca`, trusting `bundles`, authorizing
/// any server ID so that only SVID verification is at stake) meets a plain rustls
/// server that presents `server`. Returns the zt client's handshake error.
async fn zt_client_refusal(ca: &TestCa, bundles: BundleSet, server: &Credential) -> rustls::Error {
    let client_identity = publisher(ca.svid(CLIENT_ID), bundles);
    let server = TestServer::start(plain_server_config(server, ALL_VERSIONS), None).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::any());
    match connect(server.addr, config).await {
        Ok(stream) => panic!(
            "zt client should have refused the server, but connected to {:?}",
            server_leaf(&stream)
        ),
        Err(err) => into_tls_error(err),
    }
}

/// As [`zt_client_refusal`], for a server that must be accepted; returns the leaf the
/// zt client saw.
async fn zt_client_acceptance(
    ca: &TestCa,
    bundles: BundleSet,
    server: &Credential,
) -> rustls::pki_types::CertificateDer<'static> {
    let client_identity = publisher(ca.svid(CLIENT_ID), bundles);
    let server = TestServer::start(plain_server_config(server, ALL_VERSIONS), None).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::any());
    let stream = connect_and_echo(server.addr, config)
        .await
        .expect("zt client should accept the server and get its bytes echoed");
    server_leaf(&stream)
}

#[track_caller]
fn assert_certificate_error(err: &rustls::Error, expected: &CertificateError) {
    match err {
        rustls::Error::InvalidCertificate(actual) if actual == expected => {}
        _ => panic!("expected InvalidCertificate({expected:?}), got {err:?}"),
    }
}

/// Connects twice with `config` (one echo each, so TLS 1.3 tickets are read) and
/// returns the kinds of both handshakes as the client saw them.
async fn two_handshakes(
    addr: std::net::SocketAddr,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> [Option<HandshakeKind>; 2] {
    let first = connect_and_echo(addr, config.clone())
        .await
        .expect("first connection");
    let first_kind = first.get_ref().1.handshake_kind();
    drop(first);
    let second = connect_and_echo(addr, config.clone())
        .await
        .expect("second connection");
    [first_kind, second.get_ref().1.handshake_kind()]
}

/// Precondition of the resumption tests: against a plain rustls server with default
/// session handling, a plain client built like the one under test does resume. So a
/// `Full` second handshake with zt is zt's doing, not the test's.
async fn assert_plain_client_resumes_against_plain_server(
    versions: &[&'static rustls::SupportedProtocolVersion],
) {
    let ca = TestCa::new(TD);
    let server = TestServer::start(plain_server_config(&ca.valid(SERVER_ID), versions), None).await;
    let config = plain_client_config(Some(&ca.valid(CLIENT_ID)), versions);
    let kinds = two_handshakes(server.addr, &config).await;
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)],
        "precondition: plain rustls client and server resume sessions"
    );
}

/// The mesh chain: a leaf and seven self-signed authorities that all carry the
/// trusted root's name, each of which could have issued the leaf and every other.
fn mesh_credential(ca: &TestCa, id: &str) -> Credential {
    let impostors: Vec<TestCa> = (0..7).map(|_| TestCa::same_name_as(ca)).collect();
    let mut credential = impostors[0].issue(&LeafSpec::valid(id));
    credential
        .chain
        .extend(impostors.iter().map(|impostor| impostor.cert().clone()));
    credential
}
