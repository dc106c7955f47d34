//! Anonymous peers on a server that allows them (`ServerBuilder::allow_anonymous`):
//! over real connections with and without a client certificate, only the routes
//! a `from: {unauthenticated: true}` rule opens are reachable, a bad certificate
//! is still refused at the handshake, and the extractors tell anonymous peers
//! from verified ones.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use axum::Router;
use axum::routing::get;
use http::{Request, StatusCode};
use zt_core::{Format, IdentitySource, PeerIdentity};
use zt_tower::{
    AuthorizeLayer, Peer, PeerOrAnonymous, Policy, PolicyStore, Principal, Refusal, Server,
};

use common::*;

const FORBIDDEN_BODY: &str = "forbidden\n";

/// `/healthz` open to anonymous peers; `/whoami` to the client, as every route.
fn probes_policy() -> PolicyStore {
    policy(&format!(
        r#"{{"rules": [
            {{"name": "probes", "action": "allow", "from": {{"unauthenticated": true}},
              "to": {{"methods": ["GET"], "paths": ["/healthz"]}}}},
            {{"name": "web", "action": "allow", "from": {{"ids": ["{CLIENT_ID}"]}}}}
        ]}}"#
    ))
}

fn policy(json: &str) -> PolicyStore {
    PolicyStore::new(Policy::parse(json, Format::Json).unwrap())
}

fn app() -> Router {
    whoami_router()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/maybe",
            get(|peer: Option<Peer>| async move {
                peer.map_or_else(|| "none".to_owned(), |p| p.id().to_string())
            }),
        )
        .route(
            "/who",
            get(|PeerOrAnonymous(peer): PeerOrAnonymous| async move {
                match peer {
                    Principal::Verified(peer) => peer.id().to_string(),
                    _ => "anonymous".to_owned(),
                }
            }),
        )
}

/// A server that allows anonymous peers, serving [`app`] under `policy`.
async fn anonymous_server(
    policy: PolicyStore,
) -> (Running, zt_core::StaticSource, zt_core::dev::DevCa) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = serve(
        Server::builder(server.identity()).allow_anonymous(),
        authorized(app(), server.identity(), policy),
    )
    .await;
    (running, server, ca)
}

async fn anonymous_get(
    running: &Running,
    trusting: &zt_core::StaticSource,
    version: Version,
    path: &str,
) -> (StatusCode, String) {
    let (mut conn, _closed) = OneConnection::open_anonymous(running.addr, trusting, version).await;
    conn.get(path).await.unwrap()
}

/// `GET /healthz` over one raw TLS connection, reading until it closes. TLS 1.3
/// clients learn of a refused certificate on their first read: the error then
/// carries the server's alert.
async fn get_over_raw_tls(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tls = tls_connect(addr, config).await?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        Ok(answer)
    };
    within("TLS exchange", exchange).await
}

async fn healthz_is_open_and_whoami_forbidden_to_an_anonymous_peer(version: Version) {
    let (running, server, _ca) = anonymous_server(probes_policy()).await;
    let (mut conn, _closed) = OneConnection::open_anonymous(running.addr, &server, version).await;
    assert_eq!(
        conn.get("/healthz").await.unwrap(),
        (StatusCode::OK, "ok".to_owned())
    );
    assert_eq!(
        conn.get("/whoami").await.unwrap(),
        (StatusCode::FORBIDDEN, FORBIDDEN_BODY.to_owned())
    );
    // Still on the same connection: the refusal is per request.
    assert_eq!(conn.get("/healthz").await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn anonymous_request_to_healthz_is_allowed_and_to_whoami_forbidden_over_http1() {
    healthz_is_open_and_whoami_forbidden_to_an_anonymous_peer(Version::Http1).await;
}

#[tokio::test]
async fn anonymous_request_to_healthz_is_allowed_and_to_whoami_forbidden_over_http2() {
    healthz_is_open_and_whoami_forbidden_to_an_anonymous_peer(Version::Http2).await;
}

#[tokio::test]
async fn anonymous_request_that_only_starts_at_healthz_is_forbidden() {
    let (running, server, _ca) = anonymous_server(probes_policy()).await;
    for version in [Version::Http1, Version::Http2] {
        for path in [
            "/healthz/../whoami",
            "/healthz/%2e%2e/whoami",
            "/healthz/x",
            "//healthz/../whoami",
            "/healthz%2F..%2Fwhoami",
        ] {
            let (status, _) = anonymous_get(&running, &server, version, path).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{version:?} {path}");
        }
    }
}

#[tokio::test]
async fn anonymous_post_to_healthz_is_forbidden() {
    let (running, server, _ca) = anonymous_server(probes_policy()).await;
    let (mut conn, _closed) =
        OneConnection::open_anonymous(running.addr, &server, Version::Http2).await;
    let request = Request::post("https://localhost/healthz")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(conn.send(request).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn verified_client_does_not_get_the_anonymous_rules() {
    // The client is allowed nothing; the rule for anonymous peers is not a floor.
    let (running, server, ca) = anonymous_server(policy(
        r#"{"rules": [{"name": "probes", "action": "allow",
            "from": {"unauthenticated": true}, "to": {"paths": ["/healthz"]}}]}"#,
    ))
    .await;
    let client = identity(&ca, CLIENT_ID);
    let (status, _) = get_once(running.addr, &client, Version::Http1, "/healthz").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = anonymous_get(&running, &server, Version::Http1, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn policy_without_an_unauthenticated_rule_forbids_every_anonymous_request() {
    let (running, server, ca) = anonymous_server(policy(
        r#"{"rules": [
            {"name": "everyone", "action": "allow", "from": {"any": true}},
            {"name": "all-paths", "action": "allow", "to": {"paths": ["/**"]}},
            {"name": "not-evil", "action": "allow",
             "from": {"not_ids": ["spiffe://example.org/evil"]}}
        ]}"#,
    ))
    .await;
    for version in [Version::Http1, Version::Http2] {
        for path in ["/healthz", "/whoami", "/who", "/maybe", "/"] {
            let (status, body) = anonymous_get(&running, &server, version, path).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::FORBIDDEN, FORBIDDEN_BODY),
                "{version:?} {path}"
            );
        }
    }
    // The same policy lets the verified client through.
    let client = identity(&ca, CLIENT_ID);
    let (status, _) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn deny_rule_without_from_denies_an_anonymous_request() {
    let (running, server, _ca) = anonymous_server(policy(
        r#"{"rules": [
            {"name": "probes", "action": "allow", "from": {"unauthenticated": true},
             "to": {"paths": ["/healthz"]}},
            {"name": "maintenance", "action": "deny", "to": {"paths": ["/healthz"]}}
        ]}"#,
    ))
    .await;
    let (status, _) = anonymous_get(&running, &server, Version::Http2, "/healthz").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn dry_run_policy_does_not_open_routes_to_anonymous_peers() {
    let (running, server, _ca) = anonymous_server(policy(
        r#"{"mode": "dry-run", "rules": [
            {"name": "probes", "action": "allow", "from": {"unauthenticated": true},
             "to": {"paths": ["/healthz"]}}
        ]}"#,
    ))
    .await;
    let (status, _) = anonymous_get(&running, &server, Version::Http1, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = anonymous_get(&running, &server, Version::Http1, "/whoami").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn client_without_certificate_fails_the_handshake_when_anonymous_is_off() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let running = serve(
        Server::builder(server.identity()),
        authorized(app(), server.identity(), probes_policy()),
    )
    .await;
    let config = anonymous_client_config(&server, SERVER_ID, Version::Http1.alpn());
    match get_over_raw_tls(running.addr, config).await {
        Ok(answer) => panic!(
            "a client without a certificate was served: {:?}",
            String::from_utf8_lossy(&answer)
        ),
        Err(err) => assert!(format!("{err:?}").contains("AlertReceived"), "{err:?}"),
    }
}

#[tokio::test]
async fn client_with_untrusted_certificate_is_refused_at_the_handshake_when_anonymous_is_on() {
    let (running, _server, ca) = anonymous_server(probes_policy()).await;
    // A valid SVID of a trust domain the server does not trust; the client
    // trusts the server, so only the server can end the handshake.
    let stranger_ca = zt_core::dev::DevCa::new("evil.org".parse().unwrap()).unwrap();
    let stranger = identity_with(
        &stranger_ca,
        zt_core::dev::SvidParams::new(id("spiffe://evil.org/web")),
        zt_core::BundleSet::new()
            .with(stranger_ca.bundle())
            .with(ca.bundle()),
    );
    let config = client_config(&stranger, SERVER_ID, Version::Http1.alpn());
    match get_over_raw_tls(running.addr, config).await {
        Ok(answer) => panic!(
            "a client with an untrusted certificate was served: {:?}",
            String::from_utf8_lossy(&answer)
        ),
        Err(err) => {
            // The server refused its certificate: not served as anonymous.
            let shown = format!("{err:?}");
            assert!(shown.contains("AlertReceived"), "{shown}");
        }
    }
}

#[tokio::test]
async fn peer_extractor_refuses_an_anonymous_request_the_policy_admits() {
    let (running, server, _ca) = anonymous_server(policy(
        r#"{"rules": [{"name": "open", "action": "allow",
            "from": {"unauthenticated": true}}]}"#,
    ))
    .await;
    let (status, body) = anonymous_get(&running, &server, Version::Http1, "/whoami").await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "forbidden: this route needs a client certificate"
        )
    );
    let (status, body) = anonymous_get(&running, &server, Version::Http2, "/maybe").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "none"));
    let (status, body) = anonymous_get(&running, &server, Version::Http2, "/who").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
}

#[tokio::test]
async fn peer_or_anonymous_shows_a_verified_client_as_verified() {
    let (running, _server, ca) = anonymous_server(probes_policy()).await;
    let client = identity(&ca, CLIENT_ID);
    let (status, body) = get_once(running.addr, &client, Version::Http2, "/who").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));
    let (status, body) = get_once(running.addr, &client, Version::Http1, "/maybe").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, CLIENT_ID));
}

#[tokio::test]
async fn decision_hook_refuses_an_anonymous_request_unless_it_admits_anonymous_peers() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let hook =
        |_peer: &PeerIdentity, _request: &mut Request<axum::body::Body>| Ok::<_, Refusal>(());
    let app = app().layer(AuthorizeLayer::new(server.identity(), probes_policy()).hook(hook));
    let running = serve(Server::builder(server.identity()).allow_anonymous(), app).await;

    let (status, _) = anonymous_get(&running, &server, Version::Http1, "/healthz").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let client = identity(&ca, CLIENT_ID);
    let (status, _) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
}
