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

mod common;

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

// ---------------------------------------------------------------------------------
// Baseline and harness controls
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn zt_client_and_zt_server_authenticate_each_other() {
    let ca = TestCa::new(TD);
    let server_svid = ca.svid(SERVER_ID);
    let client_svid = ca.svid(CLIENT_ID);
    let server_identity = publisher(server_svid.clone(), ca.bundle_set());
    let client_identity = publisher(client_svid.clone(), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));

    let stream = connect_and_echo(server.addr, config)
        .await
        .expect("mutual handshake and echo");

    assert_eq!(&server_leaf(&stream), server_svid.leaf());
    let accepted = server.expect_accepted().await;
    assert_eq!(accepted.peer_chain.first(), Some(client_svid.leaf()));
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn zt_server_accepts_plain_client_presenting_valid_svid() {
    let ca = TestCa::new(TD);
    let client = ca.valid(CLIENT_ID);
    let accepted = zt_server_acceptance(&ca, ca.bundle_set(), &client).await;
    assert_eq!(accepted.peer_chain.first(), Some(client.leaf()));
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn zt_client_accepts_plain_server_presenting_valid_svid() {
    let ca = TestCa::new(TD);
    let server = ca.valid(SERVER_ID);
    let seen = zt_client_acceptance(&ca, ca.bundle_set(), &server).await;
    assert_eq!(&seen, server.leaf());
}

// ---------------------------------------------------------------------------------
// A zt server refuses a bad client
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let attempt = connect_and_echo(server.addr, plain_client_config(None, ALL_VERSIONS)).await;
    assert!(
        attempt.is_err(),
        "a client without a certificate must not exchange bytes"
    );
    let err = server.expect_refused().await;
    assert_eq!(err, rustls::Error::NoCertificatesPresented);
}

#[tokio::test]
async fn client_without_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoUriSan);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::NoUriSan);
}

#[tokio::test]
async fn client_with_two_uri_sans_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::TwoUriSans);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::MultipleUriSans(2));
}

#[tokio::test]
async fn client_with_non_spiffe_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NonSpiffeScheme);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(
        svid_error(&err),
        SvidError::InvalidSpiffeId(IdError::WrongScheme)
    );
}

#[tokio::test]
async fn client_with_root_spiffe_id_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::RootPath);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(
        svid_error(&err),
        SvidError::RootId(id("spiffe://example.org"))
    );
}

#[tokio::test]
async fn client_with_ca_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::CaLeaf);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::LeafIsCa);
}

#[tokio::test]
async fn client_leaf_with_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::KeyCertSign);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::LeafKeyCertSign);
}

#[tokio::test]
async fn client_leaf_with_crl_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::CrlSign);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::LeafCrlSign);
}

#[tokio::test]
async fn client_leaf_without_digital_signature_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoDigitalSignature);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::NoDigitalSignature);
}

#[tokio::test]
async fn client_leaf_without_key_usage_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoKeyUsage);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(svid_error(&err), SvidError::MissingKeyUsage);
}

#[tokio::test]
async fn client_with_expired_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::Expired);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_certificate_error(&err, &CertificateError::Expired);
}

#[tokio::test]
async fn client_with_not_yet_valid_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NotYetValid);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_certificate_error(&err, &CertificateError::NotValidYet);
}

#[tokio::test]
async fn client_signed_by_unknown_ca_of_same_trust_domain_is_rejected() {
    let ca = TestCa::new(TD);
    let unknown = TestCa::new(TD);
    let client = unknown.valid(CLIENT_ID);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_signed_by_unknown_ca_named_like_the_trusted_ca_is_rejected() {
    // Path building finds the trusted root by name, then the leaf's signature does not
    // verify under the root's key; zt reports that as an unknown issuer.
    let ca = TestCa::new(TD);
    let impostor = TestCa::same_name_as(&ca);
    let client = impostor.valid(CLIENT_ID);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_claiming_trust_domain_other_than_its_signers_is_rejected() {
    // example.org's CA signs a partner.org ID; partner.org's bundle is trusted too, but
    // only partner.org's bundle may vouch for a partner.org ID.
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let client = ca.valid(PARTNER_CLIENT_ID);
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_server_refusal(&ca, bundles, &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_from_federated_ca_claiming_our_trust_domain_is_rejected() {
    // partner.org's CA, trusted for partner.org, signs an example.org ID.
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let client = partner.valid(CLIENT_ID);
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_server_refusal(&ca, bundles, &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_with_self_signed_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let client = self_signed_leaf(&LeafSpec::valid(CLIENT_ID));
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn client_with_server_only_eku_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::ServerAuthOnly);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(rejection(&err), Rejection::WrongUsage);
}

#[tokio::test]
async fn client_with_client_only_eku_is_accepted() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::ClientAuthOnly);
    let accepted = zt_server_acceptance(&ca, ca.bundle_set(), &client).await;
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn client_chain_through_intermediate_without_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let client = ca.intermediate_without_key_cert_sign().valid(CLIENT_ID);
    assert_eq!(client.chain.len(), 2);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &client).await;
    assert_eq!(
        svid_error(&err),
        SvidError::IntermediateNoKeyCertSign { index: 1 }
    );
}

#[tokio::test]
async fn client_chain_through_valid_intermediate_is_accepted() {
    // Control for the test above: the same construction with keyCertSign set.
    let ca = TestCa::new(TD);
    let client = ca.intermediate().valid(CLIENT_ID);
    let accepted = zt_server_acceptance(&ca, ca.bundle_set(), &client).await;
    assert_eq!(accepted.peer_chain, client.chain);
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn client_chain_through_dev_ca_intermediate_is_accepted() {
    let root = DevCa::new(td(TD)).expect("dev CA");
    let intermediate = root.intermediate().expect("dev intermediate");
    let bundles = || BundleSet::new().with(root.bundle());
    let client_svid = intermediate.mint(&id(CLIENT_ID)).expect("mint");
    assert_eq!(client_svid.chain().len(), 2, "leaf and intermediate");
    let server_identity = publisher(root.mint(&id(SERVER_ID)).expect("mint"), bundles());
    let client_identity = publisher(client_svid.clone(), bundles());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect("client with an intermediate in its chain is accepted");

    let accepted = server.expect_accepted().await;
    assert_eq!(accepted.peer_chain, client_svid.chain());
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

// ---------------------------------------------------------------------------------
// A zt client refuses a bad server
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn server_without_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NoUriSan);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::NoUriSan);
}

#[tokio::test]
async fn server_with_two_uri_sans_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::TwoUriSans);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::MultipleUriSans(2));
}

#[tokio::test]
async fn server_with_non_spiffe_uri_san_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NonSpiffeScheme);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(
        svid_error(&err),
        SvidError::InvalidSpiffeId(IdError::WrongScheme)
    );
}

#[tokio::test]
async fn server_with_root_spiffe_id_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::RootPath);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(
        svid_error(&err),
        SvidError::RootId(id("spiffe://example.org"))
    );
}

#[tokio::test]
async fn server_with_ca_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::CaLeaf);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::LeafIsCa);
}

#[tokio::test]
async fn server_leaf_with_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::KeyCertSign);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::LeafKeyCertSign);
}

#[tokio::test]
async fn server_leaf_with_crl_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::CrlSign);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::LeafCrlSign);
}

#[tokio::test]
async fn server_leaf_without_digital_signature_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NoDigitalSignature);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::NoDigitalSignature);
}

#[tokio::test]
async fn server_leaf_without_key_usage_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NoKeyUsage);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(svid_error(&err), SvidError::MissingKeyUsage);
}

#[tokio::test]
async fn server_with_expired_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::Expired);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_certificate_error(&err, &CertificateError::Expired);
}

#[tokio::test]
async fn server_with_not_yet_valid_svid_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::NotYetValid);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_certificate_error(&err, &CertificateError::NotValidYet);
}

#[tokio::test]
async fn server_signed_by_unknown_ca_of_same_trust_domain_is_rejected() {
    let ca = TestCa::new(TD);
    let unknown = TestCa::new(TD);
    let server = unknown.valid(SERVER_ID);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_signed_by_unknown_ca_named_like_the_trusted_ca_is_rejected() {
    let ca = TestCa::new(TD);
    let impostor = TestCa::same_name_as(&ca);
    let server = impostor.valid(SERVER_ID);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_claiming_trust_domain_other_than_its_signers_is_rejected() {
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let server = ca.valid("spiffe://partner.org/server");
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_client_refusal(&ca, bundles, &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_from_federated_ca_claiming_our_trust_domain_is_rejected() {
    let ca = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let server = partner.valid(SERVER_ID);
    let bundles = BundleSet::new().with(ca.bundle()).with(partner.bundle());
    let err = zt_client_refusal(&ca, bundles, &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_with_self_signed_leaf_is_rejected() {
    let ca = TestCa::new(TD);
    let server = self_signed_leaf(&LeafSpec::valid(SERVER_ID));
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn server_with_client_only_eku_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::ClientAuthOnly);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(rejection(&err), Rejection::WrongUsage);
}

#[tokio::test]
async fn server_with_server_only_eku_is_accepted() {
    let ca = TestCa::new(TD);
    let server = ca.defective(SERVER_ID, Defect::ServerAuthOnly);
    let seen = zt_client_acceptance(&ca, ca.bundle_set(), &server).await;
    assert_eq!(&seen, server.leaf());
}

#[tokio::test]
async fn server_chain_through_intermediate_without_key_cert_sign_is_rejected() {
    let ca = TestCa::new(TD);
    let server = ca.intermediate_without_key_cert_sign().valid(SERVER_ID);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &server).await;
    assert_eq!(
        svid_error(&err),
        SvidError::IntermediateNoKeyCertSign { index: 1 }
    );
}

#[tokio::test]
async fn server_chain_through_valid_intermediate_is_accepted() {
    let ca = TestCa::new(TD);
    let server = ca.intermediate().valid(SERVER_ID);
    let seen = zt_client_acceptance(&ca, ca.bundle_set(), &server).await;
    assert_eq!(&seen, server.leaf());
}

#[tokio::test]
async fn server_chain_through_dev_ca_intermediate_is_accepted() {
    let root = DevCa::new(td(TD)).expect("dev CA");
    let intermediate = root.intermediate().expect("dev intermediate");
    let bundles = || BundleSet::new().with(root.bundle());
    let server_svid = intermediate.mint(&id(SERVER_ID)).expect("mint");
    let server_identity = publisher(server_svid.clone(), bundles());
    let client_identity = publisher(root.mint(&id(CLIENT_ID)).expect("mint"), bundles());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    let stream = connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect("server with an intermediate in its chain is accepted");

    assert_eq!(
        stream.get_ref().1.peer_certificates(),
        Some(server_svid.chain())
    );
    server.expect_accepted().await;
}

// ---------------------------------------------------------------------------------
// Authorization by SPIFFE ID
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn client_not_matched_by_server_authorizer_is_refused_as_unauthorized() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let client_identity = publisher(ca.svid("spiffe://example.org/batch"), ca.bundle_set());
    let config = ServerConfigBuilder::new(server_identity.identity())
        .authorize(IdMatcher::exact(id("spiffe://example.org/frontend")))
        .build()
        .expect("server config");
    let mut server = TestServer::start(config, Some(server_identity.identity())).await;

    let attempt = connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await;

    assert!(
        attempt.is_err(),
        "unauthorized client must not exchange bytes"
    );
    let err = server.expect_refused().await;
    assert_eq!(
        unauthorized(&err),
        &UnauthorizedPeer {
            id: id("spiffe://example.org/batch"),
            expected: "spiffe://example.org/frontend".to_owned(),
        }
    );
}

#[tokio::test]
async fn client_matched_by_server_authorizer_is_accepted() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let client_identity = publisher(ca.svid("spiffe://example.org/frontend"), ca.bundle_set());
    let config = ServerConfigBuilder::new(server_identity.identity())
        .authorize(IdMatcher::exact(id("spiffe://example.org/frontend")))
        .build()
        .expect("server config");
    let mut server = TestServer::start(config, Some(server_identity.identity())).await;

    connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect("authorized client is accepted");

    let accepted = server.expect_accepted().await;
    assert_eq!(
        accepted.peer.expect("peer identity").id(),
        &id("spiffe://example.org/frontend")
    );
}

#[tokio::test]
async fn zt_client_refuses_valid_server_with_unexpected_id() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid("spiffe://example.org/other"), ca.bundle_set());
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let server = TestServer::zt(&server_identity.identity()).await;
    let matcher: IdMatcher = "spiffe://example.org/api".parse().expect("pattern");

    let err = connect(
        server.addr,
        zt_client_config(client_identity.identity(), matcher),
    )
    .await
    .expect_err("zt client must refuse spiffe://example.org/other");

    assert_eq!(
        unauthorized(&into_tls_error(err)),
        &UnauthorizedPeer {
            id: id("spiffe://example.org/other"),
            expected: "spiffe://example.org/api".to_owned(),
        }
    );
}

#[tokio::test]
async fn zt_client_accepts_expected_server_id_although_server_name_is_not_in_certificate() {
    let ca = TestCa::new(TD);
    let server_svid = ca.svid("spiffe://example.org/api");
    assert!(
        !der_contains(server_svid.leaf(), b"localhost"),
        "the server certificate must not name the host the client dials"
    );
    let server_identity = publisher(server_svid.clone(), ca.bundle_set());
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let matcher: IdMatcher = "spiffe://example.org/api".parse().expect("pattern");

    let stream = connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), matcher),
    )
    .await
    .expect("server spiffe://example.org/api is accepted for server name localhost");

    assert_eq!(&server_leaf(&stream), server_svid.leaf());
    server.expect_accepted().await;
}

/// A zt client expecting `spiffe://example.org/api` meets a plain server (offering
/// `versions`, asking for an optional client certificate) that is
/// `spiffe://example.org/other`. Control first: a zt client that does expect `other`
/// presents its SVID to the same server.
async fn refused_server_is_not_shown_the_client_svid(
    versions: &[&'static rustls::SupportedProtocolVersion],
) {
    let ca = TestCa::new(TD);
    let (config, seen) = recording_server_config(&ca.valid("spiffe://example.org/other"), versions);
    let server = TestServer::start(config, None).await;
    let client_svid = ca.svid(CLIENT_ID);
    let client_identity = publisher(client_svid.clone(), ca.bundle_set());

    let expects_other = zt_client_config(
        client_identity.identity(),
        IdMatcher::exact(id("spiffe://example.org/other")),
    );
    connect_and_echo(server.addr, expects_other)
        .await
        .expect("control: zt client accepts the server it expects");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![client_svid.leaf().clone()],
        "control: the server is shown the SVID of a client that accepted it"
    );

    let expects_api = zt_client_config(
        client_identity.identity(),
        IdMatcher::exact(id("spiffe://example.org/api")),
    );
    let err = connect(server.addr, expects_api)
        .await
        .expect_err("zt client refuses spiffe://example.org/other");
    unauthorized(&into_tls_error(err));
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a refused server must not be shown the client's SVID"
    );
}

#[tokio::test]
async fn zt_client_does_not_present_its_svid_to_a_refused_tls13_server() {
    refused_server_is_not_shown_the_client_svid(TLS13_ONLY).await;
}

#[tokio::test]
async fn zt_client_does_not_present_its_svid_to_a_refused_tls12_server() {
    refused_server_is_not_shown_the_client_svid(TLS12_ONLY).await;
}

// ---------------------------------------------------------------------------------
// Federation
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn federated_client_is_accepted_only_while_its_bundle_is_published() {
    let ours = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let both = || BundleSet::new().with(ours.bundle()).with(partner.bundle());
    let server_svid = ours.svid(SERVER_ID);
    let server_identity = publisher(server_svid.clone(), both());
    let client_identity = publisher(partner.svid(PARTNER_CLIENT_ID), both());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));

    connect_and_echo(server.addr, config.clone())
        .await
        .expect("partner.org client is accepted while partner.org's bundle is published");
    let accepted = server.expect_accepted().await;
    assert_eq!(
        accepted.peer.expect("peer identity").id(),
        &id(PARTNER_CLIENT_ID)
    );

    server_identity
        .publish(server_svid, ours.bundle_set())
        .expect("same SVID, bundle set without partner.org");

    let attempt = connect_and_echo(server.addr, config).await;
    assert!(attempt.is_err(), "partner.org client must be refused now");
    let err = server.expect_refused().await;
    assert_eq!(svid_error(&err), SvidError::NoBundle(td(PARTNER_TD)));
}

#[tokio::test]
async fn federated_client_is_rejected_while_its_bundle_is_empty() {
    // An empty SPIFFE bundle for a domain means every SVID of that domain is invalid.
    let ours = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let bundles = BundleSet::new()
        .with(ours.bundle())
        .with(X509Bundle::empty(td(PARTNER_TD)));
    let client = partner.valid(PARTNER_CLIENT_ID);
    let err = zt_server_refusal(&ours, bundles, &client).await;
    assert_eq!(svid_error(&err), SvidError::EmptyBundle(td(PARTNER_TD)));
}

// ---------------------------------------------------------------------------------
// Rotation
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn server_presents_rotated_svid_on_next_handshake_while_open_connection_keeps_working() {
    let ca = TestCa::new(TD);
    let old_svid = ca.svid(SERVER_ID);
    let new_svid = ca.svid(SERVER_ID);
    assert_ne!(old_svid.leaf(), new_svid.leaf());
    let server_identity = publisher(old_svid.clone(), ca.bundle_set());
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));
    let mut before = connect_and_echo(server.addr, config.clone())
        .await
        .expect("connection before rotation");
    assert_eq!(&server_leaf(&before), old_svid.leaf());
    server.expect_accepted().await;

    let snapshot = server_identity
        .publish(new_svid.clone(), ca.bundle_set())
        .expect("rotated SVID publishes");
    assert_eq!(snapshot.generation(), 2);

    let after = connect_and_echo(server.addr, config)
        .await
        .expect("connection after rotation");
    assert_eq!(&server_leaf(&after), new_svid.leaf());
    server.expect_accepted().await;
    echo(&mut before)
        .await
        .expect("connection opened before the rotation still exchanges bytes");
}

#[tokio::test]
async fn client_presents_rotated_svid_on_next_handshake_while_open_connection_keeps_working() {
    let ca = TestCa::new(TD);
    let old_svid = ca.svid(CLIENT_ID);
    let new_svid = ca.svid(CLIENT_ID);
    assert_ne!(old_svid.leaf(), new_svid.leaf());
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let client_identity = publisher(old_svid.clone(), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));
    let mut before = connect_and_echo(server.addr, config.clone())
        .await
        .expect("connection before rotation");
    assert_eq!(
        server.expect_accepted().await.peer_chain.first(),
        Some(old_svid.leaf())
    );

    client_identity
        .publish(new_svid.clone(), ca.bundle_set())
        .expect("rotated SVID publishes");

    connect_and_echo(server.addr, config)
        .await
        .expect("connection after rotation");
    assert_eq!(
        server.expect_accepted().await.peer_chain.first(),
        Some(new_svid.leaf())
    );
    echo(&mut before)
        .await
        .expect("connection opened before the rotation still exchanges bytes");
}

#[tokio::test]
async fn server_trusts_rotated_bundle_on_next_handshake_while_open_connection_keeps_working() {
    let old_ca = TestCa::new(TD);
    let new_ca = TestCa::new(TD);
    // Clients trust both CAs, so only the server's trust is under test.
    let client_bundles = || {
        let both = X509Bundle::new(
            td(TD),
            vec![old_ca.root_cert().clone(), new_ca.root_cert().clone()],
        )
        .expect("bundle");
        BundleSet::new().with(both)
    };
    let old_client = publisher(old_ca.svid(CLIENT_ID), client_bundles());
    let new_client = publisher(new_ca.svid(CLIENT_ID), client_bundles());
    let old_config = zt_client_config(old_client.identity(), IdMatcher::exact(id(SERVER_ID)));
    let new_config = zt_client_config(new_client.identity(), IdMatcher::exact(id(SERVER_ID)));
    let server_identity = publisher(old_ca.svid(SERVER_ID), old_ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    let mut before = connect_and_echo(server.addr, old_config.clone())
        .await
        .expect("old-CA client is accepted before the rotation");
    server.expect_accepted().await;
    assert!(
        connect_and_echo(server.addr, new_config.clone())
            .await
            .is_err()
    );
    let err = server.expect_refused().await;
    assert_eq!(
        rejection(&err),
        Rejection::UnknownIssuer,
        "precondition: new-CA client is refused before the rotation"
    );

    server_identity
        .publish(new_ca.svid(SERVER_ID), new_ca.bundle_set())
        .expect("new CA's SVID and bundle publish");

    connect_and_echo(server.addr, new_config)
        .await
        .expect("new-CA client is accepted after the rotation");
    server.expect_accepted().await;
    assert!(connect_and_echo(server.addr, old_config).await.is_err());
    let err = server.expect_refused().await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
    echo(&mut before)
        .await
        .expect("connection opened before the rotation still exchanges bytes");
}

#[tokio::test]
async fn client_trusts_rotated_bundle_on_next_handshake() {
    let old_ca = TestCa::new(TD);
    let new_ca = TestCa::new(TD);
    let both = X509Bundle::new(
        td(TD),
        vec![old_ca.root_cert().clone(), new_ca.root_cert().clone()],
    )
    .expect("bundle");
    // The server already moved to the new CA and still accepts old-CA clients.
    let server_svid = new_ca.svid(SERVER_ID);
    let server_identity = publisher(server_svid.clone(), BundleSet::new().with(both.clone()));
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let client_svid = old_ca.svid(CLIENT_ID);
    let client_identity = publisher(client_svid.clone(), old_ca.bundle_set());
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));

    let err = connect(server.addr, config.clone())
        .await
        .expect_err("client trusting only the old CA refuses the new server SVID");
    assert_eq!(rejection(&into_tls_error(err)), Rejection::UnknownIssuer);
    server.expect_refused().await;

    client_identity
        .publish(client_svid, BundleSet::new().with(both))
        .expect("bundle with both CAs publishes");

    let stream = connect_and_echo(server.addr, config)
        .await
        .expect("client trusts the new CA from the next handshake");
    assert_eq!(&server_leaf(&stream), server_svid.leaf());
    server.expect_accepted().await;
}

// ---------------------------------------------------------------------------------
// Fail closed before the first snapshot
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn zt_server_with_nothing_published_refuses_handshakes() {
    let ca = TestCa::new(TD);
    let server_identity = IdentityPublisher::with_provider(provider());
    assert!(!server_identity.identity().status().is_ready());
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    let err = connect(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect_err("a server without an SVID cannot complete a handshake");

    assert!(
        matches!(into_tls_error(err), rustls::Error::AlertReceived(_)),
        "client is told by an alert"
    );
    let err = server.expect_refused().await;
    assert!(
        matches!(err, rustls::Error::General(_)),
        "server has no certificate to present, got {err:?}"
    );
}

#[tokio::test]
async fn zt_client_with_nothing_published_cannot_connect() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let client_identity = IdentityPublisher::with_provider(provider());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    let err = connect(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect_err("a client without a trust bundle trusts no server");

    // The fail-closed refusal is typed, not a string.
    assert_eq!(
        rejection(&into_tls_error(err)),
        Rejection::NoIdentityYet(zt_core::tls::NoIdentityYet)
    );
    server.expect_refused().await;
}

#[tokio::test]
async fn zt_server_refuses_handshakes_after_identity_is_withdrawn() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));
    connect_and_echo(server.addr, config.clone())
        .await
        .expect("accepted before the withdrawal");
    server.expect_accepted().await;

    server_identity.withdraw("test withdrawal");

    assert!(connect(server.addr, config).await.is_err());
    let err = server.expect_refused().await;
    assert!(
        matches!(err, rustls::Error::General(_)),
        "server has no certificate to present, got {err:?}"
    );
}

// ---------------------------------------------------------------------------------
// Session resumption is disabled
// ---------------------------------------------------------------------------------

/// A plain client with rustls' default resumption connects twice to a zt server: both
/// handshakes must be full. Then the server stops trusting the client's CA: the next
/// attempt must fail (there is no session it could resume to skip verification).
async fn plain_resuming_client_against_zt_server(
    versions: &[&'static rustls::SupportedProtocolVersion],
) {
    assert_plain_client_resumes_against_plain_server(versions).await;

    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = plain_client_config(Some(&ca.valid(CLIENT_ID)), versions);

    let kinds = two_handshakes(server.addr, &config).await;
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Full)],
        "zt server must not let a client resume"
    );
    for _ in 0..2 {
        let accepted = server.expect_accepted().await;
        assert_eq!(accepted.handshake_kind, Some(HandshakeKind::Full));
    }

    let new_ca = TestCa::new(TD);
    server_identity
        .publish(new_ca.svid(SERVER_ID), new_ca.bundle_set())
        .expect("server moves to a new CA");

    let attempt = connect_and_echo(server.addr, config).await;
    assert!(
        attempt.is_err(),
        "client no longer trusted must not get in, resumption or not"
    );
    let err = server.expect_refused().await;
    assert_eq!(rejection(&err), Rejection::UnknownIssuer);
}

#[tokio::test]
async fn plain_client_cannot_resume_tls13_session_with_zt_server() {
    plain_resuming_client_against_zt_server(TLS13_ONLY).await;
}

#[tokio::test]
async fn plain_client_cannot_resume_tls12_session_with_zt_server() {
    plain_resuming_client_against_zt_server(TLS12_ONLY).await;
}

/// A zt client connects twice to a plain rustls server that offers resumption (session
/// IDs, TLS 1.3 tickets): both handshakes must be full.
async fn zt_client_against_resuming_plain_server(
    versions: &[&'static rustls::SupportedProtocolVersion],
) {
    assert_plain_client_resumes_against_plain_server(versions).await;

    let ca = TestCa::new(TD);
    let server = TestServer::start(plain_server_config(&ca.valid(SERVER_ID), versions), None).await;
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let config = zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)));

    let kinds = two_handshakes(server.addr, &config).await;
    assert_eq!(
        kinds,
        [Some(HandshakeKind::Full), Some(HandshakeKind::Full)],
        "zt client must not resume"
    );
}

#[tokio::test]
async fn zt_client_does_not_resume_tls13_session_offered_by_server() {
    zt_client_against_resuming_plain_server(TLS13_ONLY).await;
}

#[tokio::test]
async fn zt_client_does_not_resume_tls12_session_offered_by_server() {
    zt_client_against_resuming_plain_server(TLS12_ONLY).await;
}

// ---------------------------------------------------------------------------------
// PeerIdentity
// ---------------------------------------------------------------------------------

/// A zt server (SVID from `ca`, trusting `bundles`) accepts a zt client holding
/// `client_svid`; returns the server's publisher and what it learned.
async fn accept_zt_client(
    ca: &TestCa,
    bundles: BundleSet,
    client_svid: zt_core::X509Svid,
    client_bundles: BundleSet,
) -> (IdentityPublisher, Accepted) {
    let server_identity = publisher(ca.svid(SERVER_ID), bundles);
    let client_identity = publisher(client_svid, client_bundles);
    let mut server = TestServer::zt(&server_identity.identity()).await;
    connect_and_echo(
        server.addr,
        zt_client_config(client_identity.identity(), IdMatcher::exact(id(SERVER_ID))),
    )
    .await
    .expect("client accepted");
    let accepted = server.expect_accepted().await;
    (server_identity, accepted)
}

#[tokio::test]
async fn peer_identity_from_connection_names_the_client_and_reverifies() {
    let ca = TestCa::new(TD);
    let client_svid = ca.svid(CLIENT_ID);
    let (server_identity, accepted) =
        accept_zt_client(&ca, ca.bundle_set(), client_svid.clone(), ca.bundle_set()).await;

    assert_eq!(accepted.generation_before, 1);
    let peer = accepted.peer.expect("peer identity from the connection");
    assert_eq!(peer.id(), &id(CLIENT_ID));
    assert_eq!(peer.role(), PeerRole::Client);
    assert_eq!(peer.leaf(), Some(client_svid.leaf()));
    assert!(peer.is_verified_under(&server_identity.identity().snapshot().unwrap()));
    assert_eq!(
        peer.reverify(&server_identity.identity(), SystemTime::now()),
        Ok(())
    );
}

#[tokio::test]
async fn peer_identity_reverify_fails_after_bundle_without_clients_ca() {
    let ca = TestCa::new(TD);
    let (server_identity, accepted) =
        accept_zt_client(&ca, ca.bundle_set(), ca.svid(CLIENT_ID), ca.bundle_set()).await;
    let peer = accepted.peer.expect("peer identity");
    let identity = server_identity.identity();
    assert_eq!(peer.reverify(&identity, SystemTime::now()), Ok(()));

    let new_ca = TestCa::new(TD);
    server_identity
        .publish(new_ca.svid(SERVER_ID), new_ca.bundle_set())
        .expect("server moves to a new CA");

    assert_eq!(
        peer.reverify(&identity, SystemTime::now()),
        Err(SvidError::UnknownIssuer(td(TD)))
    );
}

#[tokio::test]
async fn peer_identity_reverify_fails_after_clients_trust_domain_is_unpublished() {
    let ours = TestCa::new(TD);
    let partner = TestCa::new(PARTNER_TD);
    let both = || BundleSet::new().with(ours.bundle()).with(partner.bundle());
    let (server_identity, accepted) =
        accept_zt_client(&ours, both(), partner.svid(PARTNER_CLIENT_ID), both()).await;
    let peer = accepted.peer.expect("peer identity");
    let identity = server_identity.identity();
    assert_eq!(peer.reverify(&identity, SystemTime::now()), Ok(()));
    let server_svid = identity.snapshot().expect("snapshot").svid().clone();

    server_identity
        .publish(server_svid, ours.bundle_set())
        .expect("same SVID, bundle set without partner.org");

    assert_eq!(
        peer.reverify(&identity, SystemTime::now()),
        Err(SvidError::NoBundle(td(PARTNER_TD)))
    );
}

#[tokio::test]
async fn peer_identity_reverify_fails_with_expired_once_peer_svid_expires() {
    let ca = TestCa::new(TD);
    let client_svid = ca.svid(CLIENT_ID);
    let (server_identity, accepted) =
        accept_zt_client(&ca, ca.bundle_set(), client_svid.clone(), ca.bundle_set()).await;
    let peer = accepted.peer.expect("peer identity");
    let identity = server_identity.identity();
    assert_eq!(peer.not_after(), client_svid.not_after());

    let just_before = peer.not_after() - Duration::from_secs(1);
    assert_eq!(peer.reverify(&identity, just_before), Ok(()));
    let just_after = peer.not_after() + Duration::from_secs(1);
    assert_eq!(
        peer.reverify(&identity, just_after),
        Err(SvidError::Expired)
    );
}

#[tokio::test]
async fn peer_identity_reverify_fails_after_identity_is_withdrawn() {
    let ca = TestCa::new(TD);
    let (server_identity, accepted) =
        accept_zt_client(&ca, ca.bundle_set(), ca.svid(CLIENT_ID), ca.bundle_set()).await;
    let peer = accepted.peer.expect("peer identity");
    let identity = server_identity.identity();
    assert_eq!(peer.reverify(&identity, SystemTime::now()), Ok(()));

    server_identity.withdraw("test withdrawal");

    assert_eq!(
        peer.reverify(&identity, SystemTime::now()),
        Err(SvidError::NoBundle(td(TD)))
    );
}

// ---------------------------------------------------------------------------------
// TLS 1.3 only
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn tls12_only_client_cannot_connect_to_tls13_only_server() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let config = ServerConfigBuilder::new(server_identity.identity())
        .tls13_only()
        .build()
        .expect("server config");
    let mut server = TestServer::start(config, Some(server_identity.identity())).await;

    let err = connect(
        server.addr,
        plain_client_config(Some(&ca.valid(CLIENT_ID)), TLS12_ONLY),
    )
    .await
    .expect_err("TLS 1.2 is not offered");

    assert_eq!(
        into_tls_error(err),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
    );
    let err = server.expect_refused().await;
    assert!(
        matches!(err, rustls::Error::PeerIncompatible(_)),
        "server refuses the protocol version, got {err:?}"
    );
}

#[tokio::test]
async fn tls12_only_client_can_connect_to_default_server() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let mut server = TestServer::zt(&server_identity.identity()).await;

    let stream = connect_and_echo(
        server.addr,
        plain_client_config(Some(&ca.valid(CLIENT_ID)), TLS12_ONLY),
    )
    .await
    .expect("TLS 1.2 is offered by default");

    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    let accepted = server.expect_accepted().await;
    assert_eq!(accepted.protocol_version, Some(ProtocolVersion::TLSv1_2));
    assert_eq!(accepted.peer.expect("peer identity").id(), &id(CLIENT_ID));
}

#[tokio::test]
async fn tls13_only_zt_client_cannot_connect_to_tls12_only_server() {
    let ca = TestCa::new(TD);
    let server =
        TestServer::start(plain_server_config(&ca.valid(SERVER_ID), TLS12_ONLY), None).await;
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let config =
        ClientConfigBuilder::new(client_identity.identity(), IdMatcher::exact(id(SERVER_ID)))
            .tls13_only()
            .build()
            .expect("client config");

    let err = connect(server.addr, std::sync::Arc::new(config))
        .await
        .expect_err("TLS 1.3 is not offered by the server");

    assert_eq!(
        into_tls_error(err),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
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

#[tokio::test]
async fn zt_server_refuses_a_mesh_of_same_named_authorities_before_path_building() {
    let ca = TestCa::new(TD);
    let err = zt_server_refusal(&ca, ca.bundle_set(), &mesh_credential(&ca, CLIENT_ID)).await;
    assert!(
        matches!(svid_error(&err), SvidError::UnlinkedChain { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn zt_client_refuses_a_server_presenting_a_mesh_of_same_named_authorities() {
    let ca = TestCa::new(TD);
    let err = zt_client_refusal(&ca, ca.bundle_set(), &mesh_credential(&ca, SERVER_ID)).await;
    assert!(
        matches!(svid_error(&err), SvidError::UnlinkedChain { .. }),
        "{err:?}"
    );
}
