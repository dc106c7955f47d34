//! Fail closed before the first snapshot and after a withdrawal.

use super::*;

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
