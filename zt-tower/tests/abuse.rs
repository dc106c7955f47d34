//! An authenticated client abusing a zt server: HTTP/2 stream floods and rapid
//! resets, more streams than allowed, oversized headers, slowloris clients that
//! trickle or withhold their requests, and clients that stop reading large
//! responses. The server must stay responsive to a well-behaved client, refuse
//! what exceeds its limits, cut off idle abusers in bounded time, and keep its
//! memory bounded.
//!
//! Memory is the resident set of this test process (server and clients), read from
//! `/proc/self/status`; the tests that measure it run one at a time.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(target_os = "linux")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, MutexGuard, Semaphore};
use zt_core::{IdentitySource, StaticSource};
use zt_tower::{Policy, PolicyStore, Server, ServerBuilder};

use common::*;

fn allow_client() -> PolicyStore {
    PolicyStore::new(Policy::allow_patterns([CLIENT_ID]).unwrap())
}

/// Serializes the tests that measure this process's memory.
async fn measuring() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// A server with the app most abuse tests need: `/whoami`, `/slow` (held until
/// released, counting the handlers running) and `/large` (a body of `LARGE_BODY`
/// bytes made as it is sent, counting the bytes made).
struct Target {
    running: Running,
    _server: StaticSource,
    client: StaticSource,
    slow_running: Arc<AtomicUsize>,
    slow_release: Arc<Semaphore>,
    large_produced: Arc<AtomicU64>,
}

const LARGE_BODY: u64 = 1 << 30;

impl Target {
    async fn start(builder: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        let ca = new_ca();
        let server = identity(&ca, SERVER_ID);
        let client = identity(&ca, CLIENT_ID);
        let slow_running = Arc::new(AtomicUsize::new(0));
        let slow_release = Arc::new(Semaphore::new(0));
        let large_produced = Arc::new(AtomicU64::new(0));
        let app = {
            let (running, release) = (Arc::clone(&slow_running), Arc::clone(&slow_release));
            let produced = Arc::clone(&large_produced);
            Router::new()
                .route(
                    "/slow",
                    get(move || {
                        let (running, release) = (Arc::clone(&running), Arc::clone(&release));
                        async move {
                            running.fetch_add(1, Ordering::SeqCst);
                            let _permit = release.acquire().await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            "done"
                        }
                    }),
                )
                .route(
                    "/large",
                    get(move || {
                        let produced = Arc::clone(&produced);
                        async move { axum::body::Body::new(Generated::new(LARGE_BODY, produced)) }
                    }),
                )
                .merge(whoami_router())
        };
        let app = authorized(app, server.identity(), allow_client());
        let running = serve(builder(Server::builder(server.identity())), app).await;
        Self {
            running,
            _server: server,
            client,
            slow_running,
            slow_release,
            large_produced,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// A request on a fresh connection succeeds; returns how long it took.
    async fn served(&self, version: Version) -> Duration {
        let started = Instant::now();
        let (status, body) = get_once(self.addr(), &self.client, version, "/whoami").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, CLIENT_ID);
        started.elapsed()
    }
}

/// A response body of `len` bytes, made 64 KiB at a time only when polled.
struct Generated {
    left: u64,
    chunk: Bytes,
    produced: Arc<AtomicU64>,
}

impl Generated {
    fn new(len: u64, produced: Arc<AtomicU64>) -> Self {
        Self {
            left: len,
            chunk: Bytes::from(vec![b'z'; 64 * 1024]),
            produced,
        }
    }
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let len = this.left.min(this.chunk.len() as u64);
        this.left -= len;
        this.produced.fetch_add(len, Ordering::SeqCst);
        // A copy per chunk, as a real body would allocate: buffering shows in memory.
        let chunk = Bytes::copy_from_slice(&this.chunk[..len as usize]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// Waits until `value` stops changing for `quiet`; returns its final value.
async fn settled(value: impl Fn() -> u64, quiet: Duration) -> u64 {
    within("the value settles", async {
        let mut last = value();
        loop {
            tokio::time::sleep(quiet).await;
            let now = value();
            if now == last {
                return now;
            }
            last = now;
        }
    })
    .await
}

// === raw HTTP/2 frames ===

mod raw {
    //! Just enough HTTP/2 framing to send what a conforming client library would
    //! not: more streams than the server allows, and requests it never finishes.

    use super::*;

    pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const PING: u8 = 0x6;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const ACK: u8 = 0x1;
    pub(crate) const REFUSED_STREAM: u32 = 0x7;

    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).unwrap();
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&len.to_be_bytes()[1..]);
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// The header block of `GET https://localhost{path}`: static-table entries
    /// and literals without indexing, no Huffman coding.
    pub(crate) fn get(path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
        for (index, value) in [(0x04_u8, path), (0x01, "localhost")] {
            block.push(index); // literal, indexed name (:path, :authority)
            block.push(u8::try_from(value.len()).unwrap());
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    pub(crate) struct Frame {
        pub(crate) kind: u8,
        pub(crate) flags: u8,
        pub(crate) stream: u32,
        pub(crate) payload: Vec<u8>,
    }

    impl Frame {
        /// The error code of a RST_STREAM or GOAWAY frame.
        pub(crate) fn error_code(&self) -> u32 {
            let at = if self.kind == GOAWAY { 4 } else { 0 };
            u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
        }
    }

    pub(crate) async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<Frame> {
        let mut head = [0_u8; 9];
        io.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await?;
        Ok(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
            payload,
        })
    }

    /// Opens an HTTP/2 connection as `client`: preface, empty SETTINGS, and the
    /// acknowledgement of the server's SETTINGS, which puts its limits in force.
    pub(crate) async fn open(
        addr: SocketAddr,
        client: &StaticSource,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut tls = tls_connect(addr, client_config(client, SERVER_ID, &[b"h2"]))
            .await
            .unwrap();
        tls.write_all(PREFACE).await.unwrap();
        tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        loop {
            let frame = within("server SETTINGS", read_frame(&mut tls))
                .await
                .unwrap();
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                tls.write_all(&self::frame(SETTINGS, ACK, 0, &[]))
                    .await
                    .unwrap();
                tls.flush().await.unwrap();
                return tls;
            }
        }
    }
}

/// Waits until the server closes `io`: EOF or an error, after any frames.
async fn closed_by_server<R: AsyncRead + Unpin>(io: &mut R) {
    let mut sink = [0_u8; 4096];
    within("the server closes the connection", async {
        loop {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

// === HTTP/2 floods ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_beyond_max_concurrent_streams_are_refused() {
    let target = Target::start(|b| b).await;
    let mut tls = raw::open(target.addr(), &target.client).await;

    // 150 requests at once, 50 over the limit of 100, on held handlers.
    let mut burst = Vec::new();
    for i in 0..150_u32 {
        burst.extend(raw::frame(
            raw::HEADERS,
            raw::END_STREAM | raw::END_HEADERS,
            2 * i + 1,
            &raw::get("/slow"),
        ));
    }
    tls.write_all(&burst).await.unwrap();
    tls.flush().await.unwrap();

    let mut refused = 0;
    while refused < 50 {
        let frame = within("refusals", raw::read_frame(&mut tls)).await.unwrap();
        match frame.kind {
            raw::RST_STREAM => {
                assert_eq!(frame.error_code(), raw::REFUSED_STREAM);
                // The first 100 streams (1, 3, …, 199) run; the later ones are refused.
                assert!(frame.stream > 199, "stream {} refused", frame.stream);
                refused += 1;
            }
            raw::GOAWAY => panic!("connection closed: error {}", frame.error_code()),
            _ => {}
        }
    }
    let running = settled(
        || target.slow_running.load(Ordering::SeqCst) as u64,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(running, 100, "handlers running at once");
    assert_eq!(refused, 50);

    // Another client is served meanwhile.
    target.served(Version::Http2).await;
    target.slow_release.add_permits(1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_flood_leaves_other_clients_served_and_memory_bounded() {
    const ATTACKERS: usize = 4;
    const RESETS_PER_ATTACKER: usize = 25_000;
    let _serial = measuring().await;
    let target = Arc::new(Target::start(|b| b).await);
    target.served(Version::Http2).await;
    let rss_before = rss_kib();

    let sent = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let (target, sent) = (Arc::clone(&target), Arc::clone(&sent));
        attackers.push(tokio::spawn(async move {
            let tls = tls_connect(
                target.addr(),
                client_config(&target.client, SERVER_ID, &[b"h2"]),
            )
            .await
            .unwrap();
            let (mut h2, connection) = h2::client::handshake(tls).await.unwrap();
            let driver = tokio::spawn(connection);
            let mut outcome = Ok(());
            for _ in 0..RESETS_PER_ATTACKER {
                if let Err(err) = std::future::poll_fn(|cx| h2.poll_ready(cx)).await {
                    outcome = Err(err);
                    break;
                }
                let request = Request::get("https://localhost/whoami").body(()).unwrap();
                match h2.send_request(request, true) {
                    Ok((_response, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                    Err(err) => {
                        outcome = Err(err);
                        break;
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            drop(h2);
            let ended = within("attacker connection ends", driver).await.unwrap();
            (outcome, ended)
        }));
    }

    // A well-behaved client keeps being served while the flood runs.
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    while attackers.iter().any(|a| !a.is_finished()) {
        slowest = slowest.max(target.served(Version::Http2).await);
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut outcomes = Vec::new();
    for attacker in attackers {
        outcomes.push(attacker.await.unwrap());
    }
    let rss_after = rss_kib();
    eprintln!(
        "rapid reset: {} streams opened and reset by {ATTACKERS} connections; \
         outcomes {outcomes:?}; other client served {served} times, slowest {slowest:?}; \
         RSS {rss_before} KiB -> {rss_after} KiB",
        sent.load(Ordering::Relaxed)
    );
    assert!(served > 0);
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 64 * 1024,
        "RSS grew by {growth} KiB during the flood"
    );
    target.served(Version::Http2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_http2_streams_cost_bounded_memory_and_leave_other_clients_served() {
    const CONNECTIONS: usize = 20;
    const STREAMS: usize = 100;
    let _serial = measuring().await;
    let target = Target::start(|b| b).await;
    target.served(Version::Http2).await;
    let rss_before = rss_kib();

    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut tls = raw::open(target.addr(), &target.client).await;
        let mut burst = Vec::new();
        for i in 0..STREAMS as u32 {
            burst.extend(raw::frame(
                raw::HEADERS,
                raw::END_STREAM | raw::END_HEADERS,
                2 * i + 1,
                &raw::get("/slow"),
            ));
        }
        tls.write_all(&burst).await.unwrap();
        tls.flush().await.unwrap();
        held.push(tls);
    }
    let running = settled(
        || target.slow_running.load(Ordering::SeqCst) as u64,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(running, (CONNECTIONS * STREAMS) as u64);
    let latency = target.served(Version::Http2).await;
    let rss_held = rss_kib();
    eprintln!(
        "{running} requests in flight on {CONNECTIONS} connections: RSS {rss_before} KiB -> \
         {rss_held} KiB ({} KiB per request); another client served in {latency:?}",
        rss_held.saturating_sub(rss_before) / running
    );
    let growth = rss_held.saturating_sub(rss_before);
    assert!(
        growth < 64 * 1024,
        "{running} held requests took {growth} KiB"
    );
    target.slow_release.add_permits(CONNECTIONS * STREAMS);
    drop(held);
}

// === oversized headers ===

#[tokio::test]
async fn oversized_http1_request_head_is_refused_with_431() {
    let target = Target::start(|b| b).await;
    let mut tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let big = "a".repeat(32 * 1024);
    let request = format!("GET /whoami HTTP/1.1\r\nhost: localhost\r\nx-big: {big}\r\n\r\n");
    // The server may answer and close before it has read everything.
    let _ = tls.write_all(request.as_bytes()).await;
    let mut response = Vec::new();
    let _ = within("response", tls.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 431"),
        "unexpected answer: {response:?}"
    );
    target.served(Version::Http1).await;
}

#[tokio::test]
async fn oversized_http2_header_list_is_refused_with_431() {
    let target = Target::start(|b| b).await;
    let tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"h2"]),
    )
    .await
    .unwrap();
    let (h2, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = Request::get("https://localhost/whoami")
        .header("x-big", "a".repeat(32 * 1024))
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(request, true).unwrap();
    let response = within("response", response).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // The connection goes on serving requests of a reasonable size.
    let mut h2 = h2.ready().await.unwrap();
    let request = Request::get("https://localhost/whoami").body(()).unwrap();
    let (response, _) = h2.send_request(request, true).unwrap();
    let response = within("response", response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn huge_http2_header_block_ends_the_connection() {
    let _serial = measuring().await;
    let target = Target::start(|b| b).await;
    let rss_before = rss_kib();
    let tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"h2"]),
    )
    .await
    .unwrap();
    let (h2, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    // 16 MiB of headers: the block spans about a thousand CONTINUATION frames.
    let mut request = Request::get("https://localhost/whoami");
    for i in 0..256 {
        request = request.header(format!("x-big-{i}"), "a".repeat(64 * 1024));
    }
    let (response, _) = h2.send_request(request.body(()).unwrap(), true).unwrap();
    let response = within("response", response).await;
    let ended = within("the connection ends", driver).await.unwrap();
    let rss_after = rss_kib();
    eprintln!(
        "16 MiB header block: response {:?}, connection {ended:?}, RSS {rss_before} KiB -> \
         {rss_after} KiB",
        response.as_ref().map(http::Response::status)
    );
    assert!(
        !matches!(&response, Ok(r) if r.status().is_success()),
        "a 16 MiB header block was served"
    );
    let err = ended.expect_err("the server ends the connection");
    assert!(err.is_go_away() || err.is_io(), "{err:?}");
    assert!(rss_after.saturating_sub(rss_before) < 64 * 1024);
    target.served(Version::Http2).await;
}

// === slowloris ===

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The server must cut the connection off after `HEADER_READ_TIMEOUT`, give or
/// take scheduling, never before.
fn assert_cut_off_in_time(opened: Instant) {
    let after = opened.elapsed();
    assert!(
        after >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
        "closed after {after:?}, before the timeout"
    );
    assert!(
        after < HEADER_READ_TIMEOUT + Duration::from_secs(4),
        "closed only after {after:?}"
    );
}

#[tokio::test]
async fn http1_client_trickling_its_headers_is_cut_off_at_the_header_read_timeout() {
    let target = Target::start(|b| b.header_read_timeout(HEADER_READ_TIMEOUT)).await;
    let mut tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let opened = Instant::now();
    tls.write_all(b"GET /whoami HTTP/1.1\r\n").await.unwrap();
    // One header line every 100 ms, never the blank line that ends the head.
    let trickle = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("x-trickle-{i}: a\r\n");
            if tls.write_all(line.as_bytes()).await.is_err() || tls.flush().await.is_err() {
                return;
            }
            // A 408 answer, or nothing yet, means keep trickling; EOF ends it.
            let mut byte = [0_u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(1), tls.read(&mut byte)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                return;
            }
        }
    };
    within("the trickling client is cut off", trickle).await;
    assert_cut_off_in_time(opened);
    target.served(Version::Http1).await;
}

/// The next head on a keep-alive connection has the whole timeout from the end
/// of the previous response, however long the previous head took, and no more.
#[tokio::test]
async fn http1_connection_idle_after_a_slow_request_is_cut_off_at_the_header_read_timeout() {
    let target = Target::start(|b| b.header_read_timeout(HEADER_READ_TIMEOUT)).await;
    let mut tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /whoami HTTP/1.1\r\n").await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(HEADER_READ_TIMEOUT * 6 / 10).await;
    tls.write_all(b"\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let mut response = [0_u8; 4096];
    let read = within("the first response", tls.read(&mut response))
        .await
        .unwrap();
    assert!(
        response[..read].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&response[..read])
    );
    let answered = Instant::now();
    closed_by_server(&mut tls).await;
    assert_cut_off_in_time(answered);
}

/// The header-read timeout bounds waiting for a head, never serving: a handler
/// slower than it still answers on the same connection.
#[tokio::test]
async fn http1_request_served_longer_than_the_header_read_timeout_is_answered() {
    let target = Target::start(|b| b.header_read_timeout(HEADER_READ_TIMEOUT)).await;
    let mut tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /slow HTTP/1.1\r\n\r\n").await.unwrap();
    tls.flush().await.unwrap();
    within("the handler starts", async {
        while target.slow_running.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(HEADER_READ_TIMEOUT * 2).await;
    target.slow_release.add_permits(1);
    let mut response = [0_u8; 4096];
    let read = within("the slow response", tls.read(&mut response))
        .await
        .unwrap();
    assert!(
        response[..read].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&response[..read])
    );
    let answered = Instant::now();
    closed_by_server(&mut tls).await;
    assert_cut_off_in_time(answered);
}

#[tokio::test]
async fn client_silent_after_the_handshake_is_cut_off_at_the_header_read_timeout() {
    let target = Target::start(|b| b.header_read_timeout(HEADER_READ_TIMEOUT)).await;
    let mut tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    let opened = Instant::now();
    closed_by_server(&mut tls).await;
    assert_cut_off_in_time(opened);
}

#[tokio::test]
async fn client_stalled_inside_the_http2_preface_is_cut_off_at_the_header_read_timeout() {
    let target = Target::start(|b| b.header_read_timeout(HEADER_READ_TIMEOUT)).await;
    let mut tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, &[b"h2"]),
    )
    .await
    .unwrap();
    let opened = Instant::now();
    tls.write_all(&raw::PREFACE[..16]).await.unwrap();
    tls.flush().await.unwrap();
    closed_by_server(&mut tls).await;
    assert_cut_off_in_time(opened);
}

#[tokio::test]
async fn http2_client_that_never_answers_pings_is_disconnected() {
    const KEEP_ALIVE: Duration = Duration::from_secs(1);
    let target = Target::start(|b| b.http2_keep_alive_interval(Some(KEEP_ALIVE))).await;
    let mut tls = raw::open(target.addr(), &target.client).await;
    let opened = Instant::now();
    let mut pings = 0;
    let mut goaway = None;
    within("the server gives up on the client", async {
        while let Ok(frame) = raw::read_frame(&mut tls).await {
            match frame.kind {
                raw::PING if frame.flags & raw::ACK == 0 => pings += 1,
                raw::GOAWAY => goaway = Some(frame.error_code()),
                _ => {}
            }
        }
    })
    .await;
    let after = opened.elapsed();
    eprintln!("silent HTTP/2 client: {pings} ping(s), GOAWAY {goaway:?}, closed after {after:?}");
    assert!(pings >= 1, "the server never pinged");
    // A ping after an interval, and as long again for the answer.
    assert!(
        after >= KEEP_ALIVE * 2 - Duration::from_millis(100),
        "{after:?}"
    );
    assert!(after < KEEP_ALIVE * 2 + Duration::from_secs(4), "{after:?}");
}

// === clients that stop reading ===

/// Requests `/large` over `version`, reads the first bytes of the body, stops
/// reading, and returns how many body bytes the server made once that settled.
async fn large_response_to_a_stalled_reader(target: &Target, version: Version) -> u64 {
    let alpn: &[&[u8]] = match version {
        Version::Http1 => &[b"http/1.1"],
        Version::Http2 => &[b"h2"],
    };
    let tls = tls_connect(
        target.addr(),
        client_config(&target.client, SERVER_ID, alpn),
    )
    .await
    .unwrap();
    let _held: Box<dyn std::any::Any + Send> = match version {
        Version::Http1 => {
            let mut tls = tls;
            tls.write_all(b"GET /large HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut first = [0_u8; 1024];
            within("first bytes", tls.read_exact(&mut first))
                .await
                .unwrap();
            assert!(first.starts_with(b"HTTP/1.1 200"));
            Box::new(tls)
        }
        Version::Http2 => {
            let (h2, connection) = h2::client::handshake(tls).await.unwrap();
            tokio::spawn(connection);
            let mut h2 = h2.ready().await.unwrap();
            let request = Request::get("https://localhost/large").body(()).unwrap();
            let (response, _) = h2.send_request(request, true).unwrap();
            let response = within("response", response).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let mut body = response.into_body();
            // Read one frame without releasing flow-control capacity, then stop.
            within("first bytes", body.data()).await.unwrap().unwrap();
            Box::new((h2, body))
        }
    };
    let produced = settled(
        || target.large_produced.load(Ordering::SeqCst),
        Duration::from_millis(500),
    )
    .await;
    target.served(version).await;
    produced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_that_stops_reading_a_large_response_holds_bounded_server_buffers() {
    let _serial = measuring().await;
    let target = Target::start(|b| b).await;
    let rss_before = rss_kib();
    let produced = large_response_to_a_stalled_reader(&target, Version::Http1).await;
    let rss_after = rss_kib();
    eprintln!(
        "HTTP/1.1 stalled reader: {produced} of {LARGE_BODY} body bytes made; \
         RSS {rss_before} KiB -> {rss_after} KiB"
    );
    // Socket buffers on both ends and one chunk in flight, no more.
    assert!(
        produced < 32 << 20,
        "{produced} bytes made for a stalled reader"
    );
    assert!(rss_after.saturating_sub(rss_before) < 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_that_stops_reading_a_large_response_holds_bounded_server_buffers() {
    let _serial = measuring().await;
    let target = Target::start(|b| b).await;
    let rss_before = rss_kib();
    let produced = large_response_to_a_stalled_reader(&target, Version::Http2).await;
    let rss_after = rss_kib();
    eprintln!(
        "HTTP/2 stalled reader: {produced} of {LARGE_BODY} body bytes made; \
         RSS {rss_before} KiB -> {rss_after} KiB"
    );
    // The client's flow-control window (64 KiB) and hyper's send buffer.
    assert!(
        produced < 2 << 20,
        "{produced} bytes made for a stalled reader"
    );
    assert!(rss_after.saturating_sub(rss_before) < 64 * 1024);
}
