//! Authorization by SPIFFE ID, and what a refused server is (not) shown.

use super::*;

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
