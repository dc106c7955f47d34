//! JWT-SVIDs through zt-tower's server and an axum router: the policy decides on
//! the mTLS peer and the token's subject together, an invalid token is 401 and
//! never reaches the handler, and a hyper client presents its token with
//! `BearerLayer`. Tokens and bundles are minted by an independent implementation
//! (PyJWT).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::Request as AxumRequest;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use zt_core::jwt::{JwtBundles, JwtPeer, JwtSvid, JwtValidator};
use zt_core::{Format, IdMatcher, IdentitySource, Policy, PolicyStore, StaticSource};
use zt_testkit::jwt::MintedJwts;
use zt_tower::bearer::BearerLayer;
use zt_tower::{AuthorizeLayer, Connector, Peer, Server};

use common::*;

const AUDIENCE: &str = "orders-api";
const GATEWAY_ID: &str = "spiffe://example.org/gateway";
const FRONTEND_ID: &str = "spiffe://example.org/frontend";

/// Orders for the frontend, through the gateway only; batch tokens never.
fn gateway_policy() -> PolicyStore {
    PolicyStore::new(
        Policy::parse(
            &format!(
                r#"{{"rules": [
                    {{"name": "gateway-for-frontend", "action": "allow",
                      "from": {{"ids": ["{GATEWAY_ID}"], "jwt": {{"ids": ["{FRONTEND_ID}"]}}}}}},
                    {{"name": "no-batch-tokens", "action": "deny",
                      "from": {{"jwt": {{"ids": ["spiffe://example.org/batch"]}}}}}}
                ]}}"#
            ),
            Format::Json,
        )
        .unwrap(),
    )
}

struct Setup {
    minted: MintedJwts,
    running: Running,
    ca: zt_core::dev::DevCa,
    served: Arc<AtomicUsize>,
    metrics: zt_tower::AuthzMetrics,
}

/// `/whoami` answers `PEER as JWT-SUBJECT`.
async fn setup() -> Setup {
    let minted = MintedJwts::mint(AUDIENCE);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let bundles = JwtBundles::default();
    bundles
        .load_files(&[(
            "example.org".parse().unwrap(),
            minted.bundle("example.org").to_owned(),
        )])
        .unwrap();
    let validator = JwtValidator::new(bundles, AUDIENCE).unwrap();
    let layer = AuthorizeLayer::new(server.identity(), gateway_policy()).jwt(validator);
    let metrics = layer.metrics().clone();
    let served = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&served);
    let app = Router::new()
        .route(
            "/whoami",
            get(move |Peer(peer): Peer, request: AxumRequest| {
                counted.fetch_add(1, Ordering::SeqCst);
                let jwt = request
                    .extensions()
                    .get::<JwtPeer>()
                    .map(|j| j.id().to_string());
                async move { format!("{} as {}", peer.id(), jwt.unwrap_or_default()) }
            }),
        )
        .layer(layer);
    let running = serve(Server::builder(server.identity()), app).await;
    Setup {
        minted,
        running,
        ca,
        served,
        metrics,
    }
}

fn whoami(version: Version, authorization: &[&str]) -> Request<Empty<Bytes>> {
    let mut request = match version {
        Version::Http1 => Request::get("/whoami").header(http::header::HOST, "localhost"),
        Version::Http2 => Request::get("https://localhost/whoami"),
    };
    for value in authorization {
        request = request.header(http::header::AUTHORIZATION, *value);
    }
    request.body(Empty::new()).unwrap()
}

async fn call(
    s: &Setup,
    client: &str,
    version: Version,
    authorization: &[&str],
) -> (StatusCode, http::HeaderMap) {
    let client = identity(&s.ca, client);
    let (conn, _closed) = OneConnection::open(s.running.addr, &client, version).await;
    let response = match conn {
        OneConnection::H1(mut sender) => sender.send_request(whoami(version, authorization)).await,
        OneConnection::H2(mut sender) => sender.send_request(whoami(version, authorization)).await,
    }
    .unwrap();
    (response.status(), response.headers().clone())
}

async fn gateway_with_a_frontend_token_is_allowed_and_the_handler_sees_both(version: Version) {
    let s = setup().await;
    let client = identity(&s.ca, GATEWAY_ID);
    let (mut conn, _closed) = OneConnection::open(s.running.addr, &client, version).await;
    let token = format!("Bearer {}", s.minted.token("valid_es256"));
    let response = match &mut conn {
        OneConnection::H1(sender) => sender.send_request(whoami(version, &[&token])).await,
        OneConnection::H2(sender) => sender.send_request(whoami(version, &[&token])).await,
    }
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("{GATEWAY_ID} as {FRONTEND_ID}"));
}

#[tokio::test]
async fn gateway_with_a_frontend_token_is_allowed_and_the_handler_sees_both_over_http1() {
    gateway_with_a_frontend_token_is_allowed_and_the_handler_sees_both(Version::Http1).await;
}

#[tokio::test]
async fn gateway_with_a_frontend_token_is_allowed_and_the_handler_sees_both_over_http2() {
    gateway_with_a_frontend_token_is_allowed_and_the_handler_sees_both(Version::Http2).await;
}

#[tokio::test]
async fn gateway_with_a_batch_token_is_denied() {
    let s = setup().await;
    let token = format!("Bearer {}", s.minted.token("valid_batch"));
    let (status, _) = call(&s, GATEWAY_ID, Version::Http1, &[&token]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn frontend_directly_with_its_own_token_is_denied() {
    let s = setup().await;
    let token = format!("Bearer {}", s.minted.token("valid_es256"));
    let (status, _) = call(&s, FRONTEND_ID, Version::Http2, &[&token]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn gateway_without_a_token_is_denied() {
    let s = setup().await;
    let (status, _) = call(&s, GATEWAY_ID, Version::Http1, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Each invalid token is refused before the policy with 401 and the RFC 6750
/// challenge, whatever the policy would have said; the handler never runs.
#[tokio::test]
async fn invalid_tokens_are_unauthorized_and_never_reach_the_handler() {
    let s = setup().await;
    let cases = [
        "alg_none",
        "hs256_with_public_key",
        "wrong_audience",
        "expired",
        "tampered_payload",
        "unknown_kid",
        "kid_from_other_domain",
        "malformed_json",
    ];
    for name in cases {
        let token = format!("Bearer {}", s.minted.token(name));
        let (status, headers) = call(&s, GATEWAY_ID, Version::Http1, &[&token]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            headers.get(http::header::WWW_AUTHENTICATE).unwrap(),
            "Bearer error=\"invalid_token\"",
            "{name}"
        );
    }
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
    assert_eq!(s.metrics.counts().invalid_token, cases.len() as u64);
}

/// Two tokens on one request: which one a proxy or the application would read
/// is a guess, so neither counts.
#[tokio::test]
async fn repeated_authorization_header_is_unauthorized() {
    let s = setup().await;
    let good = format!("Bearer {}", s.minted.token("valid_es256"));
    let batch = format!("Bearer {}", s.minted.token("valid_batch"));
    let (status, _) = call(&s, GATEWAY_ID, Version::Http2, &[&good, &batch]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&s, GATEWAY_ID, Version::Http1, &[&good, &good]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}

/// The scheme is case-insensitive (RFC 6750); another scheme carries no
/// JWT-SVID, so the rule that asks for one does not admit the request.
#[tokio::test]
async fn bearer_scheme_in_any_case_is_read_and_other_schemes_carry_no_token() {
    let s = setup().await;
    let token = s.minted.token("valid_es256");
    let (status, _) = call(
        &s,
        GATEWAY_ID,
        Version::Http1,
        &[&format!("bEaReR {token}")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&s, GATEWAY_ID, Version::Http1, &[&format!("Basic {token}")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// A hyper client with zt's connector presents its SVID and, through
/// `BearerLayer`, its JWT-SVID.
#[tokio::test]
async fn hyper_client_presents_its_token_with_bearer_layer() {
    let s = setup().await;
    let gateway: StaticSource = identity(&s.ca, GATEWAY_ID);
    let connector = Connector::new(gateway.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let svid = JwtSvid::parse(s.minted.token("valid_es256")).unwrap();
    let client = BearerLayer::new(svid).layer(client);
    let uri = format!("https://localhost:{}/whoami", s.running.addr.port());
    let response = within(
        "response",
        client.oneshot(Request::get(uri).body(Empty::new()).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, format!("{GATEWAY_ID} as {FRONTEND_ID}"));
}

/// A client whose token source has nothing valid does not send the request at
/// all: the server never sees a call that lost its caller.
#[tokio::test]
async fn bearer_layer_refuses_to_send_with_an_expired_token() {
    let s = setup().await;
    let gateway: StaticSource = identity(&s.ca, GATEWAY_ID);
    let connector = Connector::new(gateway.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let expired = JwtSvid::parse(s.minted.token("expired")).unwrap();
    let client = BearerLayer::new(expired).layer(client);
    let uri = format!("https://localhost:{}/whoami", s.running.addr.port());
    let err = client
        .oneshot(Request::get(uri).body(Empty::new()).unwrap())
        .await
        .unwrap_err();
    assert!(err.is::<zt_tower::bearer::NoJwtSvid>(), "{err}");
    assert_eq!(s.served.load(Ordering::SeqCst), 0);
}
