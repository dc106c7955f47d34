//! TLS 1.3 only, and TLS 1.2 where the configs allow it.

use super::*;

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
