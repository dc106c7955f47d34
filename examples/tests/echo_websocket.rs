//! The echo-server example's WebSocket route, `/ws`, with real clients: a
//! WebSocket client (tokio-tungstenite) over HTTP/1.1 and over HTTP/2 extended
//! CONNECT, and curl asking for the upgrade. The route is under the policy like
//! every other, needs `--websockets`, and an open socket is closed when the
//! policy file changes to deny it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use zt_core::rustls::pki_types::ServerName;
use zt_core::{BundleSet, IdMatcher, IdentitySource, StaticSource, tls};

use common::*;

/// Allows the client's WebSocket upgrades to `/ws`.
fn policy_allowing_ws(id: &str) -> String {
    format!(
        r#"{{"rules": [{{"name": "ws", "action": "allow", "from": {{"ids": ["{id}"]}},
            "to": {{"paths": ["/ws"], "upgrades": ["websocket"]}}}}]}}"#
    )
}

/// The WebSocket handshake headers curl sends.
const CURL_UPGRADE: [&str; 9] = [
    "--http1.1",
    "-H",
    "Connection: Upgrade",
    "-H",
    "Upgrade: websocket",
    "-H",
    "Sec-WebSocket-Version: 13",
    "-H",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
];

fn client_source(pki: &Pki, svid_id: &str) -> StaticSource {
    StaticSource::new(
        pki.ca.mint(&id(svid_id)).unwrap(),
        BundleSet::new().with(pki.ca.bundle()),
    )
    .unwrap()
}

async fn tls(server: &EchoServer, client: &StaticSource, alpn: &[u8]) -> TlsStream<TcpStream> {
    let config = tls::ClientConfigBuilder::new(client.identity(), IdMatcher::exact(id(SERVER_ID)))
        .alpn_protocols(vec![alpn.to_vec()])
        .build()
        .unwrap();
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    within(
        "TLS handshake",
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .unwrap()
}

/// A WebSocket to `/ws` over HTTP/1.1.
async fn ws_http1(
    server: &EchoServer,
    client: &StaticSource,
) -> WebSocketStream<TlsStream<TcpStream>> {
    let tls = tls(server, client, b"http/1.1").await;
    let (ws, _) = within(
        "WebSocket handshake",
        tokio_tungstenite::client_async("wss://localhost/ws", tls),
    )
    .await
    .expect("WebSocket over HTTP/1.1");
    ws
}

/// A WebSocket to `/ws` over HTTP/2 extended CONNECT.
async fn ws_http2(
    server: &EchoServer,
    client: &StaticSource,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    let tls = tls(server, client, b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // The server's SETTINGS (extended CONNECT enabled) may come just after the
    // handshake; h2 refuses to send `:protocol` before them.
    let response = loop {
        let mut request = Request::connect("https://localhost/ws")
            .header("sec-websocket-version", "13")
            .body(Empty::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        within("connection ready", sender.ready()).await.unwrap();
        match within("extended CONNECT", sender.send_request(request)).await {
            Ok(response) => break response,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    assert_eq!(response.status(), StatusCode::OK);
    let upgraded = within("upgrade", hyper::upgrade::on(response))
        .await
        .unwrap();
    // The sender may go: the connection task keeps the stream alive.
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// Sends `text` on `ws` and returns the echo.
async fn echo<S>(ws: &mut WebSocketStream<S>, text: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
    match within("echo", ws.next()).await {
        Some(Ok(Message::Text(echoed))) => echoed.as_str().to_owned(),
        other => panic!("no echo: {other:?}"),
    }
}

#[tokio::test]
async fn websocket_echo_answers_allowed_peer_over_http1_and_http2() {
    let pki = Pki::new("ws-echo");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing_ws(CLIENT_ID));
    let server = EchoServer::start(&pki, &["--policy", s(&policy), "--websockets"]).await;
    let client = client_source(&pki, CLIENT_ID);

    let mut ws = ws_http1(&server, &client).await;
    assert_eq!(
        echo(&mut ws, "hello over HTTP/1.1").await,
        "hello over HTTP/1.1"
    );
    let mut ws = ws_http2(&server, &client).await;
    assert_eq!(
        echo(&mut ws, "hello over HTTP/2").await,
        "hello over HTTP/2"
    );
}

#[tokio::test]
async fn curl_upgrade_from_peer_the_policy_does_not_allow_gets_403() {
    let pki = Pki::new("ws-other");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing_ws(CLIENT_ID));
    let server = EchoServer::start(&pki, &["--policy", s(&policy), "--websockets"]).await;

    let Curl { status, output, .. } = curl(
        &server,
        &pki.other_client,
        &pki.bundle,
        "/ws",
        &CURL_UPGRADE,
    )
    .await;
    assert_eq!(status, "403", "{}", describe(&output));
}

#[tokio::test]
async fn curl_upgrade_without_websockets_flag_gets_501() {
    let pki = Pki::new("ws-off");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing_ws(CLIENT_ID));
    let server = EchoServer::start(&pki, &["--policy", s(&policy)]).await;

    let Curl { status, output, .. } =
        curl(&server, &pki.client, &pki.bundle, "/ws", &CURL_UPGRADE).await;
    assert_eq!(status, "501", "{}", describe(&output));
}

#[tokio::test]
async fn curl_upgrade_under_allow_shorthand_gets_403() {
    // `--allow` rules name no upgrade, so they admit none.
    let pki = Pki::new("ws-allow");
    let server = EchoServer::start(&pki, &["--allow", CLIENT_ID, "--websockets"]).await;

    let Curl { status, output, .. } =
        curl(&server, &pki.client, &pki.bundle, "/ws", &CURL_UPGRADE).await;
    assert_eq!(status, "403", "{}", describe(&output));
}

#[tokio::test]
async fn open_websocket_is_closed_when_the_policy_file_changes_to_deny() {
    let pki = Pki::new("ws-reload");
    let policy = pki
        .dir
        .write_atomic("policy.json", policy_allowing_ws(CLIENT_ID));
    let server = EchoServer::start(&pki, &["--policy", s(&policy), "--websockets"]).await;
    let client = client_source(&pki, CLIENT_ID);

    let mut h1 = ws_http1(&server, &client).await;
    let mut h2 = ws_http2(&server, &client).await;
    assert_eq!(echo(&mut h1, "before").await, "before");
    assert_eq!(echo(&mut h2, "before").await, "before");

    pki.dir
        .write_atomic("policy.json", policy_allowing_ws(OTHER_CLIENT_ID));
    // The file watcher's debounce plus the close: well within this bound.
    let bound = Duration::from_secs(5);
    let ended = |next: Option<Result<Message, _>>| {
        matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_))))
    };
    let next = tokio::time::timeout(bound, h1.next()).await;
    assert!(next.is_ok_and(ended), "the HTTP/1.1 WebSocket stayed open");
    let next = tokio::time::timeout(bound, h2.next()).await;
    assert!(next.is_ok_and(ended), "the HTTP/2 WebSocket stayed open");
}
