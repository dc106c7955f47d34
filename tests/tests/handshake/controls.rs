//! Baseline and harness controls: valid peers are accepted both ways, so a refusal
//! elsewhere is never an artifact of the harness.

use super::*;

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
