//! zt-tonic's server has zt-tower's HTTP/2 bounds: a peer allowed any method cannot
//! open unbounded streams on one connection, and a client silent after its
//! handshake is disconnected. Raw HTTP/2 frames, because a conforming client
//! library would never send what these tests send.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use zt_core::rustls::pki_types::ServerName;
use zt_core::{IdMatcher, IdentitySource, StaticSource, tls};
use zt_tonic::{AuthorizeLayer, Incoming, PolicyStore};

use common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The header block of a gRPC call to `path` whose request body never comes:
/// literals without indexing, no Huffman coding.
fn grpc_call(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https
    for (index, value) in [
        (0x04_u8, path),
        (0x01, "localhost"),
        (0x0f, "application/grpc"),
    ] {
        // 0x0f: literal without indexing, name index 15 + 16 = 31 (content-type)
        if index == 0x0f {
            block.extend_from_slice(&[0x0f, 0x10]);
        } else {
            block.push(index);
        }
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

async fn read_frame<R: AsyncReadExt + Unpin>(
    io: &mut R,
) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0_u8; 9];
    io.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    io.read_exact(&mut payload).await?;
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    Ok((head[3], head[4], stream, payload))
}

async fn tls(
    addr: SocketAddr,
    client: &StaticSource,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = tls::ClientConfigBuilder::new(client.identity(), IdMatcher::exact(id(SERVER_ID)))
        .alpn_protocols(vec![b"h2".to_vec()])
        .build()
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Serves the greeter and health through `zt_tonic::server()` with a policy that
/// allows every method to the client.
async fn serve(
    header_read_timeout: Duration,
) -> (SocketAddr, StaticSource, tokio::task::JoinHandle<()>) {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = Incoming::builder(server.identity())
        .header_read_timeout(header_read_timeout)
        .build(listener)
        .unwrap();
    let policy = policy(
        r#"{"rules": [{"name": "all", "action": "allow", "from": {"ids": ["spiffe://example.org/web"]}}]}"#,
    );
    let layer = AuthorizeLayer::new(server.identity(), PolicyStore::new(policy));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let task = tokio::spawn(async move {
        let _keep = server;
        let _ = zt_tonic::server()
            .layer(layer)
            .add_service(health)
            .add_service(greeter::server())
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, client, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_shared_limit_are_refused_on_one_connection() {
    let (addr, client, _task) = serve(Duration::from_secs(30)).await;
    let mut io = tls(addr, &client).await;
    io.write_all(PREFACE).await.unwrap();
    io.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // The server's SETTINGS advertise the limit; acknowledging them puts it in force.
    let max_streams = loop {
        let (kind, flags, _, payload) = within("server SETTINGS", read_frame(&mut io))
            .await
            .unwrap();
        if kind == SETTINGS && flags & ACK == 0 {
            let max = payload
                .chunks(6)
                .find(|setting| setting[..2] == [0, 3])
                .map(|setting| u32::from_be_bytes(setting[2..6].try_into().unwrap()));
            io.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            break max;
        }
    };
    assert_eq!(
        max_streams,
        Some(zt_tower::server::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS),
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );

    // 1,000 calls whose request bodies never come: they stay open.
    let mut burst = Vec::new();
    for i in 0..1000_u32 {
        burst.extend(frame(
            HEADERS,
            END_HEADERS,
            2 * i + 1,
            &grpc_call("/grpc.health.v1.Health/Watch"),
        ));
    }
    io.write_all(&burst).await.unwrap();
    io.flush().await.unwrap();
    let mut refused = 0;
    while refused < 900 {
        let (kind, _, stream, payload) = within("refusals", read_frame(&mut io)).await.unwrap();
        match kind {
            RST_STREAM => {
                assert_eq!(
                    u32::from_be_bytes(payload[..4].try_into().unwrap()),
                    REFUSED_STREAM
                );
                assert!(stream > 199, "stream {stream} of the first 100 was refused");
                refused += 1;
            }
            GOAWAY => panic!("connection closed after {refused} refusals"),
            _ => {}
        }
    }
    assert_eq!(refused, 900);
}

#[tokio::test]
async fn a_client_silent_after_its_handshake_is_disconnected() {
    let (addr, client, _task) = serve(Duration::from_millis(300)).await;
    // The server sends its SETTINGS, waits for the preface, and closes the
    // connection once the header read timeout has passed.
    let mut io = tls(addr, &client).await;
    within("the server closes the silent connection", closed(&mut io)).await;

    // Half a preface is silence too.
    let mut io = tls(addr, &client).await;
    io.write_all(&PREFACE[..10]).await.unwrap();
    within("the server closes the stalled connection", closed(&mut io)).await;
}

/// Reads until the server closes `io` (end of stream or an error).
async fn closed<R: AsyncReadExt + Unpin>(io: &mut R) {
    let mut sink = [0_u8; 4096];
    while let Ok(n) = io.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_preface_in_time_is_served() {
    let (addr, client, _task) = serve(Duration::from_millis(300)).await;
    let connector =
        zt_tonic::Connector::new(client.identity(), IdMatcher::exact(id(SERVER_ID))).unwrap();
    let channel = within(
        "connect",
        connector.connect(format!("https://localhost:{}", addr.port())),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let reply = within("call", greeter::say_hello(&channel, "Ada"))
        .await
        .unwrap();
    assert!(reply.contains("Ada"), "{reply}");
}
