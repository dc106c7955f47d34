//! A zt server that allows anonymous clients (`ServerConfigBuilder::allow_anonymous`):
//! a client that presents no certificate completes the handshake with no peer
//! chain; a client that presents a bad one is refused exactly as by a server
//! that requires one, never let in as anonymous.

use super::*;

/// A zt server of example.org that allows anonymous clients.
async fn anonymous_zt_server(identity: &zt_core::Identity) -> TestServer {
    let config = ServerConfigBuilder::new(identity.clone())
        .allow_anonymous()
        .build()
        .expect("zt server config");
    TestServer::start(config, Some(identity.clone())).await
}

/// The error each server, requiring or only requesting a certificate, refuses
/// `client` with; both must refuse it.
async fn refusals(ca: &TestCa, client: &Credential) -> (rustls::Error, rustls::Error) {
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let identity = server_identity.identity();
    let mut required = TestServer::zt(&identity).await;
    let mut optional = anonymous_zt_server(&identity).await;
    let mut errors = Vec::new();
    for server in [&mut required, &mut optional] {
        let attempt =
            connect_and_echo(server.addr, plain_client_config(Some(client), ALL_VERSIONS)).await;
        assert!(
            attempt.is_err(),
            "a refused client must not be able to exchange bytes"
        );
        errors.push(server.expect_refused().await);
    }
    let optional = errors.pop().unwrap();
    let required = errors.pop().unwrap();
    (required, optional)
}

#[tokio::test]
async fn client_without_certificate_completes_the_handshake_as_anonymous() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let mut server = anonymous_zt_server(&server_identity.identity()).await;
    for versions in [TLS13_ONLY, TLS12_ONLY] {
        connect_and_echo(server.addr, plain_client_config(None, versions))
            .await
            .expect("an anonymous client should be served");
        let accepted = server.expect_accepted().await;
        assert!(accepted.peer_chain.is_empty());
        assert_eq!(accepted.peer.unwrap_err(), SvidError::NoCertificate);
    }
}

#[tokio::test]
async fn client_with_valid_svid_is_still_verified_when_anonymous_is_allowed() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let mut server = anonymous_zt_server(&server_identity.identity()).await;
    connect_and_echo(
        server.addr,
        plain_client_config(Some(&ca.valid(CLIENT_ID)), ALL_VERSIONS),
    )
    .await
    .expect("client should be accepted");
    let accepted = server.expect_accepted().await;
    assert_eq!(accepted.peer.unwrap().id().as_str(), CLIENT_ID);
}

#[tokio::test]
async fn client_with_expired_svid_is_refused_as_when_a_certificate_is_required() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::Expired);
    let (required, optional) = refusals(&ca, &client).await;
    assert_certificate_error(&optional, &CertificateError::Expired);
    assert_eq!(optional, required);
}

#[tokio::test]
async fn client_signed_by_unknown_ca_is_refused_as_when_a_certificate_is_required() {
    let ca = TestCa::new(TD);
    let client = TestCa::new(TD).valid(CLIENT_ID);
    let (required, optional) = refusals(&ca, &client).await;
    assert_eq!(rejection(&optional), Rejection::UnknownIssuer);
    assert_eq!(rejection(&optional), rejection(&required));
}

#[tokio::test]
async fn client_claiming_another_trust_domain_is_refused_as_when_a_certificate_is_required() {
    let ca = TestCa::new(TD);
    let client = ca.valid(PARTNER_CLIENT_ID);
    let (required, optional) = refusals(&ca, &client).await;
    assert_eq!(svid_error(&optional), SvidError::NoBundle(td(PARTNER_TD)));
    assert_eq!(svid_error(&optional), svid_error(&required));
}

#[tokio::test]
async fn client_with_defective_svid_is_refused_as_when_a_certificate_is_required() {
    let ca = TestCa::new(TD);
    let client = ca.defective(CLIENT_ID, Defect::NoUriSan);
    let (required, optional) = refusals(&ca, &client).await;
    assert_eq!(svid_error(&optional), SvidError::NoUriSan);
    assert_eq!(svid_error(&optional), svid_error(&required));
}

#[tokio::test]
async fn client_outside_the_authorizer_is_refused_when_anonymous_is_allowed() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let config = ServerConfigBuilder::new(server_identity.identity())
        .authorize(IdMatcher::exact(id("spiffe://example.org/other")))
        .allow_anonymous()
        .build()
        .unwrap();
    let mut server = TestServer::start(config, Some(server_identity.identity())).await;
    let attempt = connect_and_echo(
        server.addr,
        plain_client_config(Some(&ca.valid(CLIENT_ID)), ALL_VERSIONS),
    )
    .await;
    assert!(attempt.is_err());
    let err = server.expect_refused().await;
    assert_eq!(unauthorized(&err).id.as_str(), CLIENT_ID);
}
