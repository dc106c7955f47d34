//! Reconnections: a chain the serving snapshot already verified is answered from
//! the snapshot's record, and is still refused wherever a first handshake would be.

use super::*;

#[tokio::test]
async fn reconnecting_client_is_refused_once_a_new_snapshot_withdraws_its_ca() {
    let ca = TestCa::new(TD);
    let new_ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    // The client trusts both CAs, so only the server's verdict is at stake.
    let both = X509Bundle::new(
        td(TD),
        vec![ca.root_cert().clone(), new_ca.root_cert().clone()],
    )
    .expect("bundle");
    let client_identity = publisher(ca.svid(CLIENT_ID), BundleSet::new().with(both));
    let mut server = TestServer::zt(&server_identity.identity()).await;
    let config = zt_client_config(client_identity.identity(), IdMatcher::any());
    connect_and_echo(server.addr, config.clone())
        .await
        .expect("first connection");
    server.expect_accepted().await;
    connect_and_echo(server.addr, config.clone())
        .await
        .expect("reconnection under the same snapshot");
    server.expect_accepted().await;

    server_identity
        .publish(new_ca.svid(SERVER_ID), new_ca.bundle_set())
        .expect("the new CA publishes");
    let attempt = connect_and_echo(server.addr, config).await;

    assert!(
        attempt.is_err(),
        "a withdrawn CA's client must not exchange bytes"
    );
    assert_eq!(
        rejection(&server.expect_refused().await),
        Rejection::UnknownIssuer
    );
}

#[tokio::test]
async fn reconnecting_client_is_still_authorized_by_each_config() {
    let ca = TestCa::new(TD);
    let server_identity = publisher(ca.svid(SERVER_ID), ca.bundle_set());
    let client_identity = publisher(ca.svid(CLIENT_ID), ca.bundle_set());
    let client = zt_client_config(client_identity.identity(), IdMatcher::any());
    let mut open = TestServer::zt(&server_identity.identity()).await;
    connect_and_echo(open.addr, client.clone())
        .await
        .expect("a config authorizing anyone accepts the client");
    open.expect_accepted().await;

    // The same identity, so the same snapshot's record, behind a stricter config.
    let strict = ServerConfigBuilder::new(server_identity.identity())
        .authorize(IdMatcher::exact(id("spiffe://example.org/frontend")))
        .build()
        .expect("server config");
    let mut strict = TestServer::start(strict, Some(server_identity.identity())).await;
    let attempt = connect_and_echo(strict.addr, client).await;

    assert!(
        attempt.is_err(),
        "an unauthorized client must not exchange bytes"
    );
    assert_eq!(
        unauthorized(&strict.expect_refused().await).id,
        id(CLIENT_ID)
    );
}
