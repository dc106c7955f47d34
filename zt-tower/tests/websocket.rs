//! Governed WebSocket upgrades through the real stack: zt's server with
//! `websockets`, `Authorize`, an axum router with a WebSocket echo, and a real
//! WebSocket client (tokio-tungstenite) over HTTP/1.1 `Upgrade` and over HTTP/2
//! extended CONNECT (RFC 8441). Each attack tries to get an upgraded stream past
//! the policy, or to keep one open after it would no longer be allowed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::any;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use zt_core::dev::SvidParams;
use zt_core::{BundleSet, Format, IdentitySource, StaticSource, X509Bundle};
use zt_tower::{Policy, PolicyStore, Server};

use common::*;

/// How long a governed close may take once its cause is in place.
const CLOSE_BOUND: Duration = Duration::from_secs(3);

/// Allows the client's WebSocket upgrades to `/ws`, and `/whoami`.
const ALLOW_WS: &str = r#"
rules:
  - name: web-ws
    action: allow
    from: { ids: [spiffe://example.org/web] }
    to: { paths: [/ws], upgrades: [websocket] }
  - name: web-whoami
    action: allow
    from: { ids: [spiffe://example.org/web] }
    to: { methods: [GET], paths: [/whoami] }
"#;

/// `ALLOW_WS` and one more rule, for another peer: the client's upgrade stays allowed.
const ALLOW_WS_AND_BATCH: &str = r#"
rules:
  - name: web-ws
    action: allow
    from: { ids: [spiffe://example.org/web] }
    to: { paths: [/ws], upgrades: [websocket] }
  - name: web-whoami
    action: allow
    from: { ids: [spiffe://example.org/web] }
    to: { methods: [GET], paths: [/whoami] }
  - name: batch-whoami
    action: allow
    from: { ids: [spiffe://example.org/batch] }
    to: { methods: [GET], paths: [/whoami] }
"#;

/// `ALLOW_WS` with a deny rule on the WebSocket path, which names no upgrade.
const DENY_WS_PATH: &str = r#"
rules:
  - name: web-ws
    action: allow
    from: { ids: [spiffe://example.org/web] }
    to: { paths: [/ws], upgrades: [websocket] }
  - name: no-ws
    action: deny
    from: { any: true }
    to: { paths: [/ws] }
"#;

/// Allows `GET /ws` without naming the upgrade.
const ALLOW_WS_PATH_WITHOUT_UPGRADES: &str = r#"
rules:
  - name: web-ws-get
    action: allow
    from: { ids: [spiffe://example.org/web] }
    to: { methods: [GET], paths: [/ws] }
"#;

fn policy(yaml: &str) -> Policy {
    Policy::parse(yaml, Format::Yaml).unwrap()
}

/// The WebSocket echo: every text message back, unchanged.
async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if let AxumMessage::Text(_) = message
                && socket.send(message).await.is_err()
            {
                break;
            }
        }
    })
}

/// `/ws` (any method: HTTP/2 extended CONNECT arrives as `CONNECT`) and `/whoami`.
fn ws_router() -> Router {
    whoami_router().route("/ws", any(echo))
}

/// A server with governed upgrades for `ca`'s `SERVER_ID`, deciding with `store`.
async fn serve_ws(server: &StaticSource, store: &PolicyStore) -> Running {
    serve(
        Server::builder(server.identity()).websockets(),
        authorized(ws_router(), server.identity(), store.clone()),
    )
    .await
}

/// A WebSocket client stream over either HTTP version.
enum Ws {
    H1(Box<WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>),
    H2 {
        ws: Box<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>,
        // Keeps the HTTP/2 connection's sender alive while the stream is used.
        _sender: hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    },
}

/// Opens a WebSocket to `/ws` as `client`; the refusal's status otherwise.
async fn open_ws(
    addr: SocketAddr,
    client: &StaticSource,
    version: Version,
) -> Result<Ws, StatusCode> {
    match version {
        Version::Http1 => {
            let tls = tls_connect(addr, client_config(client, SERVER_ID, &[b"http/1.1"]))
                .await
                .unwrap();
            match within(
                "WebSocket handshake",
                tokio_tungstenite::client_async("wss://localhost/ws", tls),
            )
            .await
            {
                Ok((ws, _)) => Ok(Ws::H1(Box::new(ws))),
                Err(WsError::Http(response)) => Err(response.status()),
                Err(other) => panic!("WebSocket handshake failed: {other}"),
            }
        }
        Version::Http2 => {
            let tls = tls_connect(addr, client_config(client, SERVER_ID, &[b"h2"]))
                .await
                .unwrap();
            let (mut sender, conn) = within(
                "HTTP/2 handshake",
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)),
            )
            .await
            .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let response = extended_connect(&mut sender, "websocket").await;
            if response.status() != StatusCode::OK {
                return Err(response.status());
            }
            let upgraded = within("upgrade", hyper::upgrade::on(response))
                .await
                .unwrap();
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
            Ok(Ws::H2 {
                ws: Box::new(ws),
                _sender: sender,
            })
        }
    }
}

/// Sends an extended CONNECT for `/ws` with `:protocol` `protocol`. The server
/// advertises extended CONNECT in its SETTINGS, which may arrive just after the
/// handshake: the request is sent once they have.
async fn extended_connect(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    protocol: &'static str,
) -> http::Response<hyper::body::Incoming> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut request = Request::connect("https://localhost/ws")
            .header("sec-websocket-version", "13")
            .body(Empty::<Bytes>::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static(protocol));
        within("connection ready", sender.ready()).await.unwrap();
        match within("response", sender.send_request(request)).await {
            Ok(response) => return response,
            Err(err) if Instant::now() < deadline => {
                // Before the server's SETTINGS, h2 refuses to send `:protocol`.
                tracing::debug!(%err, "extended CONNECT not sent yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("extended CONNECT failed: {err}"),
        }
    }
}

impl Ws {
    /// Sends `text` and reads what comes back.
    async fn echo(&mut self, text: &str) -> Result<String, String> {
        let next = match self {
            Self::H1(ws) => {
                ws.send(Message::text(text))
                    .await
                    .map_err(|e| e.to_string())?;
                within("echo", ws.next()).await
            }
            Self::H2 { ws, .. } => {
                ws.send(Message::text(text))
                    .await
                    .map_err(|e| e.to_string())?;
                within("echo", ws.next()).await
            }
        };
        match next {
            Some(Ok(Message::Text(echoed))) => Ok(echoed.as_str().to_owned()),
            Some(Ok(other)) => Err(format!("unexpected message {other:?}")),
            Some(Err(err)) => Err(err.to_string()),
            None => Err("stream ended".to_owned()),
        }
    }

    /// Waits up to `bound` for the stream to end (closed or failed); says
    /// whether it did. Messages that arrive meanwhile are skipped.
    async fn ends_within(&mut self, bound: Duration) -> bool {
        let ended = async {
            loop {
                let next = match self {
                    Self::H1(ws) => ws.next().await,
                    Self::H2 { ws, .. } => ws.next().await,
                };
                match next {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(bound, ended).await.is_ok()
    }
}

async fn allowed_upgrade_echoes_text_messages(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    assert_eq!(ws.echo("hello").await.unwrap(), "hello");
    assert_eq!(ws.echo("zt ✓").await.unwrap(), "zt ✓");
}

#[tokio::test]
async fn allowed_upgrade_echoes_text_messages_over_http1() {
    allowed_upgrade_echoes_text_messages(Version::Http1).await;
}

#[tokio::test]
async fn allowed_upgrade_echoes_text_messages_over_http2_extended_connect() {
    allowed_upgrade_echoes_text_messages(Version::Http2).await;
}

async fn upgrade_from_peer_without_allow_rule_is_forbidden(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let other = identity(&ca, OTHER_CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let refused = open_ws(running.addr, &other, version).await.err();
    assert_eq!(refused, Some(StatusCode::FORBIDDEN));
}

#[tokio::test]
async fn upgrade_from_peer_without_allow_rule_is_forbidden_over_http1() {
    upgrade_from_peer_without_allow_rule_is_forbidden(Version::Http1).await;
}

#[tokio::test]
async fn upgrade_from_peer_without_allow_rule_is_forbidden_over_http2() {
    upgrade_from_peer_without_allow_rule_is_forbidden(Version::Http2).await;
}

async fn allow_rule_without_upgrades_does_not_admit_the_upgrade(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS_PATH_WITHOUT_UPGRADES));
    let running = serve_ws(&server, &store).await;

    let refused = open_ws(running.addr, &client, version).await.err();
    assert_eq!(refused, Some(StatusCode::FORBIDDEN));
}

#[tokio::test]
async fn allow_rule_without_upgrades_does_not_admit_the_upgrade_over_http1() {
    allow_rule_without_upgrades_does_not_admit_the_upgrade(Version::Http1).await;
}

#[tokio::test]
async fn allow_rule_without_upgrades_does_not_admit_the_upgrade_over_http2() {
    allow_rule_without_upgrades_does_not_admit_the_upgrade(Version::Http2).await;
}

async fn deny_rule_on_the_path_denies_the_upgrade(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(DENY_WS_PATH));
    let running = serve_ws(&server, &store).await;

    let refused = open_ws(running.addr, &client, version).await.err();
    assert_eq!(refused, Some(StatusCode::FORBIDDEN));
}

#[tokio::test]
async fn deny_rule_on_the_path_denies_the_upgrade_over_http1() {
    deny_rule_on_the_path_denies_the_upgrade(Version::Http1).await;
}

#[tokio::test]
async fn deny_rule_on_the_path_denies_the_upgrade_over_http2() {
    deny_rule_on_the_path_denies_the_upgrade(Version::Http2).await;
}

async fn upgrade_without_server_opt_in_is_not_implemented(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve(
        Server::builder(server.identity()),
        authorized(ws_router(), server.identity(), store),
    )
    .await;

    match version {
        Version::Http1 => {
            let refused = open_ws(running.addr, &client, version).await.err();
            assert_eq!(refused, Some(StatusCode::NOT_IMPLEMENTED));
        }
        Version::Http2 => {
            // Without the opt-in the server does not advertise extended CONNECT,
            // so a conforming client cannot even send it.
            let tls = tls_connect(running.addr, client_config(&client, SERVER_ID, &[b"h2"]))
                .await
                .unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            // A round trip, so the server's SETTINGS have arrived.
            let mut ping = Request::get("https://localhost/whoami")
                .body(Empty::<Bytes>::new())
                .unwrap();
            *ping.version_mut() = http::Version::HTTP_2;
            let response = within("GET", sender.send_request(ping)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let mut request = Request::connect("https://localhost/ws")
                .header("sec-websocket-version", "13")
                .body(Empty::<Bytes>::new())
                .unwrap();
            request
                .extensions_mut()
                .insert(hyper::ext::Protocol::from_static("websocket"));
            let sent = within("extended CONNECT", sender.send_request(request)).await;
            assert!(
                sent.is_err(),
                "extended CONNECT was sent: {:?}",
                sent.map(|r| r.status())
            );
        }
    }
}

#[tokio::test]
async fn upgrade_without_server_opt_in_is_not_implemented_over_http1() {
    upgrade_without_server_opt_in_is_not_implemented(Version::Http1).await;
}

#[tokio::test]
async fn extended_connect_without_server_opt_in_cannot_be_sent_over_http2() {
    upgrade_without_server_opt_in_is_not_implemented(Version::Http2).await;
}

async fn upgrade_answered_without_authorize_is_not_implemented(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    // The echo route with no Authorize in front: the server must not let its
    // switching response through.
    let running = serve(Server::builder(server.identity()).websockets(), ws_router()).await;

    let refused = open_ws(running.addr, &client, version).await.err();
    assert_eq!(refused, Some(StatusCode::NOT_IMPLEMENTED));
}

#[tokio::test]
async fn upgrade_answered_without_authorize_is_not_implemented_over_http1() {
    upgrade_answered_without_authorize_is_not_implemented(Version::Http1).await;
}

#[tokio::test]
async fn upgrade_answered_without_authorize_is_not_implemented_over_http2() {
    upgrade_answered_without_authorize_is_not_implemented(Version::Http2).await;
}

#[tokio::test]
async fn extended_connect_for_another_protocol_is_not_implemented() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let tls = tls_connect(running.addr, client_config(&client, SERVER_ID, &[b"h2"]))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = extended_connect(&mut sender, "connect-udp").await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
}

/// Sends `head` as raw HTTP/1.1 over TLS as `client`; the response's status line.
async fn raw_http1(addr: SocketAddr, client: &StaticSource, head: &str) -> String {
    let mut tls = tls_connect(addr, client_config(client, SERVER_ID, &[b"http/1.1"]))
        .await
        .unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0; 1024];
    let n = within("response", tls.read(&mut response)).await.unwrap();
    let response = String::from_utf8_lossy(&response[..n]).into_owned();
    response.lines().next().unwrap_or_default().to_owned()
}

const WS_HEADERS: &str =
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test]
async fn ambiguous_http1_upgrades_are_bad_requests() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let cases = [
        (
            "two protocols in one Upgrade",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n",
        ),
        (
            "two Upgrade headers",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: websocket\r\n",
        ),
        (
            "Upgrade without Connection: upgrade",
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n",
        ),
        (
            "a method other than GET",
            "POST /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n",
        ),
        (
            "HTTP/1.0",
            "GET /ws HTTP/1.0\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n",
        ),
    ];
    for (what, head) in cases {
        let status = raw_http1(running.addr, &client, &format!("{head}{WS_HEADERS}\r\n")).await;
        assert!(status.contains(" 400 "), "{what}: {status}");
    }
    // The well-formed request on the same server switches.
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n{WS_HEADERS}\r\n"
    );
    let status = raw_http1(running.addr, &client, &head).await;
    assert!(status.contains(" 101 "), "{status}");
}

#[tokio::test]
async fn http1_upgrade_to_another_protocol_is_not_implemented() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let head = "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n";
    let status = raw_http1(running.addr, &client, head).await;
    assert!(status.contains(" 501 "), "{status}");
}

async fn open_socket_is_closed_when_the_clients_svid_expires(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity_with(
        &ca,
        SvidParams::new(id(CLIENT_ID)).ttl(Duration::from_secs(3)),
        BundleSet::new().with(ca.bundle()),
    );
    let not_after = client.identity().snapshot().unwrap().svid().not_after();
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    assert_eq!(ws.echo("before expiry").await.unwrap(), "before expiry");
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    // The server's drain timeout (10 s) is far longer: only the governed close
    // ends the stream this soon.
    assert!(
        ws.ends_within(left + CLOSE_BOUND).await,
        "the WebSocket outlived the client's SVID"
    );
    assert!(
        SystemTime::now() > not_after,
        "closed before the SVID expired"
    );
}

#[tokio::test]
async fn open_socket_is_closed_when_the_clients_svid_expires_over_http1() {
    open_socket_is_closed_when_the_clients_svid_expires(Version::Http1).await;
}

#[tokio::test]
async fn open_socket_is_closed_when_the_clients_svid_expires_over_http2() {
    open_socket_is_closed_when_the_clients_svid_expires(Version::Http2).await;
}

async fn open_socket_is_closed_when_the_clients_ca_is_withdrawn(version: Version) {
    let old_ca = new_ca();
    let new_ca = new_ca();
    let both = X509Bundle::new(
        old_ca.trust_domain().clone(),
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
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    assert_eq!(ws.echo("trusted").await.unwrap(), "trusted");

    server
        .update(
            new_ca.mint(&id(SERVER_ID)).unwrap(),
            BundleSet::new().with(new_ca.bundle()),
        )
        .unwrap();
    assert!(
        ws.ends_within(CLOSE_BOUND).await,
        "the WebSocket outlived the withdrawal of the client's CA"
    );
}

#[tokio::test]
async fn open_socket_is_closed_when_the_clients_ca_is_withdrawn_over_http1() {
    open_socket_is_closed_when_the_clients_ca_is_withdrawn(Version::Http1).await;
}

#[tokio::test]
async fn open_socket_is_closed_when_the_clients_ca_is_withdrawn_over_http2() {
    open_socket_is_closed_when_the_clients_ca_is_withdrawn(Version::Http2).await;
}

async fn rotation_that_keeps_the_clients_ca_keeps_the_socket_open(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    server
        .update(
            ca.mint(&id(SERVER_ID)).unwrap(),
            BundleSet::new().with(ca.bundle()),
        )
        .unwrap();
    assert!(!ws.ends_within(Duration::from_millis(500)).await);
    assert_eq!(ws.echo("still here").await.unwrap(), "still here");
}

#[tokio::test]
async fn rotation_that_keeps_the_clients_ca_keeps_the_socket_open_over_http1() {
    rotation_that_keeps_the_clients_ca_keeps_the_socket_open(Version::Http1).await;
}

#[tokio::test]
async fn rotation_that_keeps_the_clients_ca_keeps_the_socket_open_over_http2() {
    rotation_that_keeps_the_clients_ca_keeps_the_socket_open(Version::Http2).await;
}

async fn open_socket_is_closed_when_the_policy_file_changes_to_deny(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let dir = zt_testkit::TempDir::new("ws-policy");
    let path = dir.write("policy.yaml", ALLOW_WS);
    let store = PolicyStore::new(Policy::load(&path).unwrap());
    let _watch = store.watch_file(&path).unwrap();
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    assert_eq!(ws.echo("allowed").await.unwrap(), "allowed");

    let mut changes = store.changes();
    dir.write_atomic("policy.yaml", DENY_WS_PATH);
    within("policy reload", changes.changed()).await;
    let reloaded = Instant::now();
    assert!(
        ws.ends_within(CLOSE_BOUND).await,
        "the WebSocket outlived the policy that denies it"
    );
    assert!(reloaded.elapsed() < CLOSE_BOUND);
}

#[tokio::test]
async fn open_socket_is_closed_when_the_policy_file_changes_to_deny_over_http1() {
    open_socket_is_closed_when_the_policy_file_changes_to_deny(Version::Http1).await;
}

#[tokio::test]
async fn open_socket_is_closed_when_the_policy_file_changes_to_deny_over_http2() {
    open_socket_is_closed_when_the_policy_file_changes_to_deny(Version::Http2).await;
}

async fn unrelated_policy_change_keeps_the_socket_open(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let dir = zt_testkit::TempDir::new("ws-policy");
    let path = dir.write("policy.yaml", ALLOW_WS);
    let store = PolicyStore::new(Policy::load(&path).unwrap());
    let _watch = store.watch_file(&path).unwrap();
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    let mut changes = store.changes();
    dir.write_atomic("policy.yaml", ALLOW_WS_AND_BATCH);
    within("policy reload", changes.changed()).await;
    assert_eq!(store.status().rule_count(), 3);
    assert!(!ws.ends_within(Duration::from_millis(500)).await);
    assert_eq!(ws.echo("still allowed").await.unwrap(), "still allowed");
}

#[tokio::test]
async fn unrelated_policy_change_keeps_the_socket_open_over_http1() {
    unrelated_policy_change_keeps_the_socket_open(Version::Http1).await;
}

#[tokio::test]
async fn unrelated_policy_change_keeps_the_socket_open_over_http2() {
    unrelated_policy_change_keeps_the_socket_open(Version::Http2).await;
}

#[tokio::test]
async fn policy_denying_the_upgrade_closes_every_stream_of_the_http2_connection() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, Version::Http2)
        .await
        .unwrap();
    let Ws::H2 {
        _sender: sender, ..
    } = &ws
    else {
        unreachable!("opened over HTTP/2")
    };
    let mut sender = sender.clone();
    store.store(policy(DENY_WS_PATH));
    assert!(ws.ends_within(CLOSE_BOUND).await);
    // Fail closed: the connection that carried the upgrade is gone as a whole.
    let request = Request::get("https://localhost/whoami")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(
        within("request", sender.send_request(request))
            .await
            .is_err()
    );
}

/// The value of the counter `name` with exactly `labels` in one snapshot.
#[cfg(feature = "metrics")]
fn counter(
    snapshot: &[(
        metrics_util::CompositeKey,
        metrics_util::debugging::DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    snapshot
        .iter()
        .filter(|(key, _)| key.key().name() == name)
        .filter(|(key, _)| {
            let mut have: Vec<(&str, &str)> =
                key.key().labels().map(|l| (l.key(), l.value())).collect();
            have.sort_unstable();
            let mut want = labels.to_vec();
            want.sort_unstable();
            have == want
        })
        .map(|(_, value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The test runs on a current-thread runtime, so the server's tasks record into
/// the recorder installed for this thread.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn upgrade_and_its_governed_close_are_counted() {
    use zt_tower::metrics::{SERVER_UPGRADES_CLOSED_TOTAL, SERVER_UPGRADES_TOTAL};

    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, Version::Http1)
        .await
        .unwrap();
    assert_eq!(ws.echo("counted").await.unwrap(), "counted");
    store.store(policy(DENY_WS_PATH));
    assert!(ws.ends_within(CLOSE_BOUND).await);

    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    assert_eq!(
        counter(
            &snapshot,
            SERVER_UPGRADES_TOTAL,
            &[("upgrade", "websocket")]
        ),
        1
    );
    assert_eq!(
        counter(
            &snapshot,
            SERVER_UPGRADES_CLOSED_TOTAL,
            &[("reason", "policy_denied")]
        ),
        1
    );
}

/// At the SVID's expiry the connection's watchdog starts draining it too; the
/// governed close still ends it at once, and is counted.
#[cfg(feature = "metrics")]
#[tokio::test]
async fn upgrade_closed_at_svid_expiry_is_counted_as_svid_expired() {
    use zt_tower::metrics::SERVER_UPGRADES_CLOSED_TOTAL;

    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity_with(
        &ca,
        SvidParams::new(id(CLIENT_ID)).ttl(Duration::from_secs(2)),
        BundleSet::new().with(ca.bundle()),
    );
    let store = PolicyStore::new(policy(ALLOW_WS));
    let running = serve_ws(&server, &store).await;

    let mut ws = open_ws(running.addr, &client, Version::Http1)
        .await
        .unwrap();
    assert!(ws.ends_within(Duration::from_secs(2) + CLOSE_BOUND).await);
    let snapshot: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    assert_eq!(
        counter(
            &snapshot,
            SERVER_UPGRADES_CLOSED_TOTAL,
            &[("reason", "svid_expired")]
        ),
        1
    );
}

async fn outer_layer_policy_change_closes_the_socket_of_a_nested_router(version: Version) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    // Two Authorize layers, each with its own policy store: the route's and the
    // whole app's. Both allow the upgrade; either may stop allowing it.
    let inner = PolicyStore::new(policy(ALLOW_WS));
    let outer = PolicyStore::new(policy(ALLOW_WS));
    let app = authorized(
        authorized(ws_router(), server.identity(), inner.clone()),
        server.identity(),
        outer.clone(),
    );
    let running = serve(Server::builder(server.identity()).websockets(), app).await;

    let mut ws = open_ws(running.addr, &client, version).await.unwrap();
    assert_eq!(ws.echo("both allow").await.unwrap(), "both allow");
    // A change of the inner store that still allows it keeps it open.
    inner.store(policy(ALLOW_WS_AND_BATCH));
    assert!(!ws.ends_within(Duration::from_millis(300)).await);
    outer.store(policy(DENY_WS_PATH));
    assert!(
        ws.ends_within(CLOSE_BOUND).await,
        "the WebSocket outlived the outer layer's denial"
    );
}

#[tokio::test]
async fn outer_layer_policy_change_closes_the_socket_of_a_nested_router_over_http1() {
    outer_layer_policy_change_closes_the_socket_of_a_nested_router(Version::Http1).await;
}

#[tokio::test]
async fn outer_layer_policy_change_closes_the_socket_of_a_nested_router_over_http2() {
    outer_layer_policy_change_closes_the_socket_of_a_nested_router(Version::Http2).await;
}

/// An anonymous peer has no SVID whose expiry or trust a watch could follow: a
/// server that governs upgrades and allows anonymous clients answers its
/// upgrade `501`, even when a policy rule would admit it.
#[tokio::test]
async fn anonymous_peer_gets_no_upgrade_even_when_a_rule_admits_it() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let store = PolicyStore::new(policy(
        r#"
rules:
  - name: anonymous-ws
    action: allow
    from: { unauthenticated: true }
    to: { paths: [/ws], upgrades: [websocket] }
"#,
    ));
    let running = serve(
        Server::builder(server.identity())
            .websockets()
            .allow_anonymous(),
        authorized(ws_router(), server.identity(), store),
    )
    .await;
    let tls = tls_connect(
        running.addr,
        anonymous_client_config(&server, SERVER_ID, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    match within(
        "WebSocket handshake",
        tokio_tungstenite::client_async("wss://localhost/ws", tls),
    )
    .await
    {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
        }
        Ok(_) => panic!("an anonymous peer's WebSocket was opened"),
        Err(other) => panic!("WebSocket handshake failed otherwise: {other}"),
    }
}

/// A WebSocket admitted on a JWT-SVID (the gateway on behalf of the frontend)
/// lives no longer than the token: its connection is closed at the token's
/// `exp`, though the peer's SVID and the policy still allow it.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn socket_admitted_on_a_jwt_svid_is_closed_when_the_token_expires() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use zt_core::jwt::{JwtBundles, JwtSvid, JwtValidator};
    use zt_testkit::jwt::MintedJwts;

    let minted = MintedJwts::mint("orders-api");
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let bundles = JwtBundles::default();
    bundles
        .load_files(&[(
            "example.org".parse().unwrap(),
            minted.bundle("example.org").to_owned(),
        )])
        .unwrap();
    let validator = JwtValidator::new(bundles, "orders-api").unwrap();
    let store = PolicyStore::new(policy(&format!(
        r#"
rules:
  - name: ws-for-frontend
    action: allow
    from: {{ ids: ["{CLIENT_ID}"], jwt: {{ ids: [spiffe://example.org/frontend] }} }}
    to: {{ paths: [/ws], upgrades: [websocket] }}
"#
    )));
    let running = serve(
        Server::builder(server.identity()).websockets(),
        ws_router().layer(zt_tower::AuthorizeLayer::new(server.identity(), store).jwt(validator)),
    )
    .await;

    let token = minted.token("short_lived");
    let expiry = JwtSvid::parse(token).unwrap().expiry();
    let tls = tls_connect(
        running.addr,
        client_config(&client, SERVER_ID, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let mut request = "wss://localhost/ws".into_client_request().unwrap();
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let (ws, _) = within(
        "WebSocket handshake",
        tokio_tungstenite::client_async(request, tls),
    )
    .await
    .unwrap();
    let mut ws = Ws::H1(Box::new(ws));
    assert_eq!(ws.echo("on behalf of").await.unwrap(), "on behalf of");
    let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        ws.ends_within(left + CLOSE_BOUND).await,
        "the WebSocket outlived the token it was admitted on"
    );
    assert!(
        SystemTime::now() >= expiry,
        "closed before the token expired"
    );
}
