//! Session resumption is disabled, in both roles and both TLS versions.

use super::*;

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
