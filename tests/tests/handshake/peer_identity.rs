//! `PeerIdentity` from a connection, and its re-verification.

use super::*;

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
