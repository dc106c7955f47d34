//! The mTLS connector with hyper's client against a zt server: the right server ID
//! is reached and its identity exposed; any other ID is refused before a request
//! is sent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::error::Error as _;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use zt_core::IdentitySource;
use zt_tower::{ConnectError, Connector, IdMatcher, PeerIdentity, Policy, PolicyStore, Server};

use common::*;

fn client_for(connector: Connector) -> Client<Connector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(connector)
}

fn url(running: &Running, path: &str) -> Uri {
    format!("https://localhost:{}{path}", running.addr.port())
        .parse()
        .unwrap()
}

async fn zt_server() -> (Running, zt_core::dev::DevCa) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let policy = PolicyStore::new(Policy::allow_patterns([CLIENT_ID]).unwrap());
    let running = serve(
        Server::builder(server.identity()),
        authorized(whoami_router(), server.identity(), policy),
    )
    .await;
    (running, ca)
}

/// The connector's error inside a hyper client error.
fn connect_error(err: &hyper_util::client::legacy::Error) -> &ConnectError {
    let mut source = err.source();
    while let Some(err) = source {
        if let Some(connect) = err.downcast_ref::<ConnectError>() {
            return connect;
        }
        source = err.source();
    }
    panic!("no ConnectError in {err:?}")
}

#[tokio::test]
async fn connector_reaches_server_with_expected_id_and_exposes_its_identity() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();

    let response = within(
        "response",
        client_for(connector).get(url(&running, "/whoami")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.version(),
        http::Version::HTTP_2,
        "ALPN should pick h2"
    );
    let server = response
        .extensions()
        .get::<PeerIdentity>()
        .expect("server identity");
    assert_eq!(server.id().as_str(), SERVER_ID);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, CLIENT_ID);
}

#[tokio::test]
async fn connector_refuses_server_with_another_id() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(
        client.identity(),
        IdMatcher::exact(id("spiffe://example.org/billing")),
    )
    .unwrap();

    let err = within(
        "refusal",
        client_for(connector).get(url(&running, "/whoami")),
    )
    .await
    .expect_err("server with another ID was accepted");
    match connect_error(&err) {
        ConnectError::ServerRefused(reason) => assert!(
            reason.contains("not authorized") && reason.contains(SERVER_ID),
            "unclear reason: {reason}"
        ),
        other => panic!("expected ServerRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn connector_refuses_plaintext_http_uri() {
    let (running, ca) = zt_server().await;
    let client = identity(&ca, CLIENT_ID);
    let connector = Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let uri: Uri = format!("http://localhost:{}/whoami", running.addr.port())
        .parse()
        .unwrap();

    let err = within("refusal", client_for(connector).get(uri))
        .await
        .expect_err("plaintext URI was dialed");
    assert!(
        matches!(connect_error(&err), ConnectError::Uri { .. }),
        "{err:?}"
    );
}
