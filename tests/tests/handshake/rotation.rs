//! Rotation: new SVIDs and bundles apply to the next handshake; open connections
//! keep working.

use super::*;

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
