//! Federation: a partner trust domain is trusted only while its bundle is published.

use super::*;

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
