//! Per-request authorization on open connections: a policy change, an expired peer
//! SVID and a withdrawn CA each refuse the next request on the same keep-alive
//! connection, over HTTP/1.1 and HTTP/2. Plus dry-run, audit, the decision hook,
//! gRPC requests, logs and counters.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::routing::post;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, ServiceExt};
use zt_core::dev::SvidParams;
use zt_core::{BundleSet, Format, IdentitySource, PeerIdentity, PeerRole, X509Bundle};
use zt_tower::{AuthorizeLayer, Policy, PolicyStore, Refusal, Server};

use common::events::Capture;
use common::*;

const FORBIDDEN_BODY: &str = "forbidden\n";

fn allow_client() -> PolicyStore {
    PolicyStore::new(Policy::allow_patterns([CLIENT_ID]).unwrap())
}

async fn policy_change_denies_next_request_on_same_connection(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = allow_client();
    let layer = AuthorizeLayer::new(server.identity(), policy.clone());
    let metrics = layer.metrics().clone();
    let running = serve(
        Server::builder(server.identity()),
        whoami_router().layer(layer),
    )
    .await;

    let (mut conn, _closed) = OneConnection::open(running.addr, &client, version).await;
    let (status, body) = conn.get("/whoami").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));

    policy.store(Policy::deny_all());
    let (status, body) = conn.get("/whoami").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN_BODY)
    );
    assert!(
        !conn.is_closed(),
        "the refusal must not need a new connection"
    );
    let counts = metrics.counts();
    assert_eq!((counts.allowed, counts.denied), (1, 1));
}

#[tokio::test]
async fn policy_change_denies_next_request_on_same_connection_over_http1() {
    policy_change_denies_next_request_on_same_connection(Version::Http1).await;
}

#[tokio::test]
async fn policy_change_denies_next_request_on_same_connection_over_http2() {
    policy_change_denies_next_request_on_same_connection(Version::Http2).await;
}

/// Both policies hold one rule, rule 0, allowing every request: only its `from`
/// differs, so a selection of the client's rules kept from the first policy
/// would let the second policy's rule allow the client.
async fn policy_reload_giving_the_rule_to_another_peer_decides_next_request_on_same_connection(
    version: Version,
) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = allow_client();
    let layer = AuthorizeLayer::new(server.identity(), policy.clone());
    let running = serve(
        Server::builder(server.identity()),
        whoami_router().layer(layer),
    )
    .await;

    let (mut conn, _closed) = OneConnection::open(running.addr, &client, version).await;
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    policy.store(Policy::allow_patterns(["spiffe://example.org/other"]).unwrap());
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);

    policy.store(Policy::allow_patterns([CLIENT_ID]).unwrap());
    let (status, body) = conn.get("/whoami").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));
    assert!(!conn.is_closed(), "all three requests on one connection");
}

#[tokio::test]
async fn policy_reload_giving_the_rule_to_another_peer_denies_next_request_on_same_connection_over_http1()
 {
    policy_reload_giving_the_rule_to_another_peer_decides_next_request_on_same_connection(
        Version::Http1,
    )
    .await;
}

#[tokio::test]
async fn policy_reload_giving_the_rule_to_another_peer_denies_next_request_on_same_connection_over_http2()
 {
    policy_reload_giving_the_rule_to_another_peer_decides_next_request_on_same_connection(
        Version::Http2,
    )
    .await;
}

async fn expired_peer_svid_is_refused_on_open_connection(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity_with(
        &ca,
        SvidParams::new(id(CLIENT_ID)).ttl(Duration::from_secs(2)),
        BundleSet::new().with(ca.bundle()),
    );
    let not_after = client.identity().snapshot().unwrap().svid().not_after();
    let layer = AuthorizeLayer::new(server.identity(), allow_client());
    let metrics = layer.metrics().clone();
    let addr = serve_without_expiry_close(&server, whoami_router().layer(layer)).await;

    let (mut conn, _closed) = OneConnection::open(addr, &client, version).await;
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    // Wait for the certificate to really expire; bounded by TIMEOUT.
    within("client SVID expiry", async {
        while SystemTime::now() <= not_after {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (status, body) = conn.get("/whoami").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN_BODY)
    );
    assert_eq!(metrics.counts().untrusted_peer, 1);
}

#[tokio::test]
async fn expired_peer_svid_is_refused_on_open_connection_over_http1() {
    expired_peer_svid_is_refused_on_open_connection(Version::Http1).await;
}

#[tokio::test]
async fn expired_peer_svid_is_refused_on_open_connection_over_http2() {
    expired_peer_svid_is_refused_on_open_connection(Version::Http2).await;
}

async fn withdrawn_ca_refuses_next_request_on_same_connection(version: Version) {
    // The trust domain rotates its CA: both are trusted, the client's SVID is
    // from the old one, then the old one is removed from the bundle.
    let old_ca = new_ca();
    let new_ca = new_ca();
    let td = old_ca.trust_domain().clone();
    let both = X509Bundle::new(
        td.clone(),
        vec![old_ca.cert_der().clone(), new_ca.cert_der().clone()],
    )
    .unwrap();
    let server = identity_with(
        &new_ca,
        SvidParams::new(id(SERVER_ID)),
        BundleSet::new().with(both.clone()),
    );
    let client = identity_with(
        &old_ca,
        SvidParams::new(id(CLIENT_ID)),
        BundleSet::new().with(both),
    );
    let layer = AuthorizeLayer::new(server.identity(), allow_client());
    let metrics = layer.metrics().clone();
    let running = serve(
        Server::builder(server.identity()),
        whoami_router().layer(layer),
    )
    .await;

    let (mut conn, _closed) = OneConnection::open(running.addr, &client, version).await;
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    server
        .update(
            new_ca.mint(&id(SERVER_ID)).unwrap(),
            BundleSet::new().with(new_ca.bundle()),
        )
        .unwrap();
    let (status, body) = conn.get("/whoami").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN_BODY)
    );
    assert_eq!(metrics.counts().untrusted_peer, 1);
}

#[tokio::test]
async fn withdrawn_ca_refuses_next_request_on_same_connection_over_http1() {
    withdrawn_ca_refuses_next_request_on_same_connection(Version::Http1).await;
}

#[tokio::test]
async fn withdrawn_ca_refuses_next_request_on_same_connection_over_http2() {
    withdrawn_ca_refuses_next_request_on_same_connection(Version::Http2).await;
}

#[tokio::test]
async fn other_valid_peer_is_denied_with_a_body_that_reveals_nothing() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let other = identity(&ca, OTHER_CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    let (status, body) = get_once(running.addr, &other, Version::Http1, "/whoami").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, FORBIDDEN_BODY);
}

#[tokio::test]
async fn every_decision_emits_an_event_with_peer_method_path_decision_rule_and_reason() {
    let (capture, _guard) = Capture::install();
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let other = identity(&ca, OTHER_CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    get_once(running.addr, &client, Version::Http1, "/whoami").await;
    get_once(running.addr, &other, Version::Http1, "/whoami").await;

    let events = capture.events();
    let decisions: Vec<_> = events
        .iter()
        .filter(|(_, fields)| fields.contains_key("decision"))
        .collect();
    assert_eq!(decisions.len(), 2, "{events:?}");
    let (level, allow) = decisions[0];
    assert_eq!(*level, tracing::Level::DEBUG);
    assert_eq!(allow["peer"], CLIENT_ID);
    assert_eq!(allow["method"], "GET");
    assert_eq!(allow["path"], "/whoami");
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["rule"], CLIENT_ID);
    assert_eq!(allow["reason"], format!("allowed by rule {CLIENT_ID}"));
    let (level, deny) = decisions[1];
    assert_eq!(*level, tracing::Level::INFO);
    assert_eq!(deny["peer"], OTHER_CLIENT_ID);
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["rule"], "default deny");
    assert_eq!(deny["reason"], "no allow rule matched (default deny)");
}

#[tokio::test]
async fn dry_run_policy_lets_denied_request_through_and_warns() {
    let (capture, _guard) = Capture::install();
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = Policy::parse(
        &format!(
            r#"{{"mode": "dry-run", "rules": [
                {{"name": "batch-only", "action": "allow", "from": {{"ids": ["{OTHER_CLIENT_ID}"]}}}}
            ]}}"#
        ),
        Format::Json,
    )
    .unwrap();
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy));
    let metrics = layer.metrics().clone();
    let running = serve(
        Server::builder(server.identity()),
        whoami_router().layer(layer),
    )
    .await;

    let (status, body) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));
    let counts = metrics.counts();
    assert_eq!(
        (counts.dry_run_denied, counts.allowed, counts.denied),
        (1, 0, 0)
    );
    let warned = capture.events().into_iter().any(|(level, fields)| {
        level == tracing::Level::WARN
            && fields.get("decision").map(String::as_str) == Some("dry_run_deny")
    });
    assert!(warned, "a dry-run denial must be logged as a warning");
}

#[tokio::test]
async fn audit_rule_is_counted_and_logged_without_changing_the_outcome() {
    let (capture, _guard) = Capture::install();
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = Policy::parse(
        &format!(
            r#"{{"rules": [
                {{"name": "web", "action": "allow", "from": {{"ids": ["{CLIENT_ID}"]}}}},
                {{"name": "watch-whoami", "action": "audit", "to": {{"paths": ["/whoami"]}}}}
            ]}}"#
        ),
        Format::Json,
    )
    .unwrap();
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy));
    let metrics = layer.metrics().clone();
    let running = serve(
        Server::builder(server.identity()),
        whoami_router().layer(layer),
    )
    .await;

    let (status, _) = get_once(running.addr, &client, Version::Http2, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    let counts = metrics.counts();
    assert_eq!((counts.allowed, counts.audited), (1, 1));
    let logged = capture
        .events()
        .into_iter()
        .any(|(_, fields)| fields.get("audit_rule").map(String::as_str) == Some("watch-whoami"));
    assert!(logged, "the matching audit rule must be logged");
}

#[tokio::test]
async fn decision_hook_refuses_a_request_the_policy_allowed() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let layer = AuthorizeLayer::new(server.identity(), allow_client()).hook(
        |_peer: &PeerIdentity, request: &mut Request<axum::body::Body>| {
            if request.uri().path() == "/whoami" {
                Err(Refusal::new("whoami is closed today"))
            } else {
                Ok(())
            }
        },
    );
    let metrics = layer.metrics().clone();
    let running = serve(
        Server::builder(server.identity()),
        whoami_router().layer(layer),
    )
    .await;

    let (status, body) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::FORBIDDEN, FORBIDDEN_BODY)
    );
    let counts = metrics.counts();
    assert_eq!((counts.hook_denied, counts.allowed), (1, 0));
}

#[tokio::test]
async fn grpc_rules_decide_by_path_whatever_the_content_type() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let policy = Policy::parse(
        &format!(
            r#"{{"rules": [
                {{"name": "web-catalog", "action": "allow", "from": {{"ids": ["{CLIENT_ID}"]}},
                  "to": {{"grpc": ["shop.Catalog/*"]}}}},
                {{"name": "no-delete", "action": "deny", "from": {{"any": true}},
                  "to": {{"grpc": ["shop.Catalog/Delete"]}}}}
            ]}}"#
        ),
        Format::Json,
    )
    .unwrap();
    let app = axum::Router::new()
        .route("/shop.Catalog/Get", post(|| async { "item" }))
        .route("/shop.Catalog/Delete", post(|| async { "deleted" }));
    let app = authorized(app, server.identity(), PolicyStore::new(policy));
    let running = serve(Server::builder(server.identity()), app).await;

    let (mut conn, _closed) = OneConnection::open(running.addr, &client, Version::Http2).await;
    for content_type in [Some("application/grpc+proto"), Some("text/plain"), None] {
        for (path, expected) in [
            ("/shop.Catalog/Get", StatusCode::OK),
            ("/shop.Catalog/Delete", StatusCode::FORBIDDEN),
            ("/shop.Catalog/%44elete", StatusCode::FORBIDDEN),
        ] {
            let mut request = Request::post(format!("https://localhost{path}"));
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let status = conn.send(request.body(Empty::new()).unwrap()).await;
            assert_eq!(status, expected, "{path} as {content_type:?}");
        }
    }
}

#[tokio::test]
async fn request_without_peer_identity_is_refused_and_logged_as_setup_error() {
    let (capture, _guard) = Capture::install();
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let layer = AuthorizeLayer::new(server.identity(), allow_client());
    let service = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"secret"))))
    }));

    let response = service
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, FORBIDDEN_BODY);
    assert_eq!(layer.metrics().counts().no_identity, 1);
    let logged = capture.events().into_iter().any(|(level, fields)| {
        level == tracing::Level::ERROR && fields["message"].contains("zt_tower::Server")
    });
    assert!(logged, "the setup error must be logged with its fix");
}

#[tokio::test]
async fn peer_identity_is_reverified_once_per_snapshot_generation() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client_svid = ca.mint(&id(CLIENT_ID)).unwrap();
    let peer = PeerIdentity::from_chain(client_svid.chain().to_vec(), PeerRole::Client).unwrap();
    let layer = AuthorizeLayer::new(server.identity(), allow_client());
    let service = layer.layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));

    for _ in 0..3 {
        let mut request = Request::new(Full::new(Bytes::new()));
        request.extensions_mut().insert(peer.clone());
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(peer.is_verified_under(&server.identity().snapshot().unwrap()));
}

#[tokio::test]
async fn anonymous_decisions_are_logged_with_peer_anonymous() {
    let (capture, _guard) = Capture::install();
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let policy = PolicyStore::new(
        Policy::parse(
            r#"{"rules": [{"name": "probes", "action": "allow",
                "from": {"unauthenticated": true}, "to": {"paths": ["/healthz"]}}]}"#,
            Format::Json,
        )
        .unwrap(),
    );
    let app = authorized(whoami_router(), server.identity(), policy);
    let running = serve(Server::builder(server.identity()).allow_anonymous(), app).await;
    let (mut conn, _closed) =
        OneConnection::open_anonymous(running.addr, &server, Version::Http1).await;
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);

    let events = capture.events();
    let decisions: Vec<_> = events
        .iter()
        .filter(|(_, fields)| fields.contains_key("decision"))
        .collect();
    assert_eq!(decisions.len(), 1, "{events:?}");
    let (level, deny) = decisions[0];
    assert_eq!(*level, tracing::Level::INFO);
    assert_eq!(deny["peer"], "anonymous");
    assert_eq!(deny["path"], "/whoami");
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["rule"], "default deny");
}
