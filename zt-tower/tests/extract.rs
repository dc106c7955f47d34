//! The axum extractor: a handler served by zt gets the verified peer; the same app
//! served by plain axum is told how to fix its setup.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use zt_core::IdentitySource;
use zt_tower::{Peer, Policy, PolicyStore, Server};

use common::*;

fn app() -> Router {
    Router::new()
        .route(
            "/whoami",
            get(|Peer(peer): Peer| async move { peer.id().to_string() }),
        )
        .route(
            "/maybe",
            get(|peer: Option<Peer>| async move {
                peer.map_or_else(|| "anonymous".to_owned(), |p| p.id().to_string())
            }),
        )
}

/// Serves `app` with plain axum (no TLS, no zt) and GETs `path` from it.
async fn get_from_plain_axum(path: &str) -> (StatusCode, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(axum::serve(listener, app()).into_future());
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = within(
        "plain axum response",
        client.request(
            Request::get(format!("http://{addr}{path}"))
                .body(Empty::new())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serving.abort();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn handler_gets_peer_id_through_zt_server() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = PolicyStore::new(Policy::allow_patterns([CLIENT_ID]).unwrap());
    let running = serve(
        Server::builder(server.identity()),
        authorized(app(), server.identity(), policy),
    )
    .await;

    let (status, body) = get_once(running.addr, &client, Version::Http2, "/whoami").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));
    let (status, body) = get_once(running.addr, &client, Version::Http1, "/maybe").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));
}

#[tokio::test]
async fn plain_axum_without_zt_server_rejection_says_to_serve_through_zt_server() {
    let (status, body) = get_from_plain_axum("/whoami").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.contains("serve the application with zt_tower::Server"),
        "rejection does not say how to fix the setup: {body}"
    );
}

#[tokio::test]
async fn optional_peer_is_none_without_zt_server() {
    let (status, body) = get_from_plain_axum("/maybe").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}
