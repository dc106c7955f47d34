//! The zt server over real sockets: identity on every request, handshakes that
//! cannot stall the accept loop, connections that end with the peer's SVID, and
//! graceful shutdown.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::routing::get;
use http::StatusCode;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use zt_core::dev::SvidParams;
use zt_core::{BundleSet, IdentitySource, X509Bundle};
use zt_tower::{Policy, PolicyStore, Server};

use common::*;

fn allow_client() -> PolicyStore {
    PolicyStore::new(Policy::allow_patterns([CLIENT_ID]).unwrap())
}

#[tokio::test]
async fn request_carries_peer_identity_over_http1() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    let (status, body) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, CLIENT_ID);
}

#[tokio::test]
async fn request_carries_peer_identity_over_http2() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    let (status, body) = get_once(running.addr, &client, Version::Http2, "/whoami").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, CLIENT_ID);
}

#[tokio::test]
async fn client_svid_of_untrusted_ca_is_refused_at_handshake() {
    let ca = new_ca();
    let rogue_ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    // Same trust domain, other CA: the server's bundle does not vouch for it. The
    // client trusts both CAs so that it accepts the server.
    let both = X509Bundle::new(
        ca.trust_domain().clone(),
        vec![ca.cert_der().clone(), rogue_ca.cert_der().clone()],
    )
    .unwrap();
    let rogue = identity_with(
        &rogue_ca,
        SvidParams::new(id(CLIENT_ID)),
        BundleSet::new().with(both),
    );
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    // With TLS 1.3 the client finishes its side before the server verifies the
    // client certificate; the refusal arrives as an alert on the first read.
    let config = client_config(&rogue, SERVER_ID, &[b"http/1.1"]);
    let outcome = async {
        let mut tls = tls_connect(running.addr, config).await?;
        tls.write_all(b"GET /whoami HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map(|_| buf)
    };
    match within("refused handshake", outcome).await {
        Ok(buf) => panic!(
            "server answered a client it cannot verify: {:?}",
            String::from_utf8_lossy(&buf)
        ),
        Err(err) => assert!(
            err.to_string().contains("alert"),
            "expected a TLS alert, got {err}"
        ),
    }
}

#[tokio::test]
async fn plaintext_http_request_gets_no_response() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    let mut tcp = TcpStream::connect(running.addr).await.unwrap();
    tcp.write_all(b"GET /whoami HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = within("server closes", tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/"),
        "a plaintext request got an HTTP answer: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn handshake_flood_does_not_delay_a_good_client() {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(
        Server::builder(server.identity()).handshake_timeout(HANDSHAKE_TIMEOUT),
        app,
    )
    .await;

    // 200 clients that connect and never send a ClientHello. They are ahead of the
    // good client in the listen queue, so the server must get past all of them.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        stalled.push(TcpStream::connect(running.addr).await.unwrap());
    }

    let started = Instant::now();
    let (status, body) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, CLIENT_ID);
    // Handshakes that wait on each other would make this at least one timeout.
    assert!(
        elapsed < HANDSHAKE_TIMEOUT,
        "good client took {elapsed:?}, handshake timeout is {HANDSHAKE_TIMEOUT:?}"
    );
    drop(stalled);
}

#[tokio::test]
async fn full_handshake_slots_leave_new_connections_waiting_until_a_slot_frees() {
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(
        Server::builder(server.identity())
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .max_concurrent_handshakes(4),
        app,
    )
    .await;

    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(TcpStream::connect(running.addr).await.unwrap());
    }
    let started = Instant::now();
    let (status, _) = get_once(running.addr, &client, Version::Http1, "/whoami").await;
    let elapsed = started.elapsed();
    // The good client was neither refused nor let past the limit: it waited in
    // the backlog until the stalled handshakes timed out.
    assert_eq!(status, StatusCode::OK);
    assert!(
        elapsed >= HANDSHAKE_TIMEOUT - Duration::from_millis(100),
        "served after {elapsed:?}, before any slot could free"
    );
    assert!(
        elapsed < HANDSHAKE_TIMEOUT * 4,
        "served after {elapsed:?}, long after slots freed at {HANDSHAKE_TIMEOUT:?}"
    );
    drop(stalled);
}

#[tokio::test]
async fn connection_is_closed_when_peer_svid_expires() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity_with(
        &ca,
        SvidParams::new(id(CLIENT_ID)).ttl(Duration::from_secs(3)),
        BundleSet::new().with(ca.bundle()),
    );
    let not_after = client.identity().snapshot().unwrap().svid().not_after();
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(Server::builder(server.identity()), app).await;

    let (mut conn, closed) = OneConnection::open(running.addr, &client, Version::Http1).await;
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK);

    within("connection closed at expiry", closed).await.unwrap();
    let now = SystemTime::now();
    assert!(
        now + Duration::from_millis(50) >= not_after,
        "closed {:?} before the SVID expired",
        not_after.duration_since(now).unwrap_or_default()
    );
    assert!(
        now.duration_since(not_after).unwrap_or_default() < Duration::from_secs(5),
        "closed long after expiry"
    );
    assert!(conn.is_closed());
}

#[tokio::test]
async fn connection_is_closed_at_max_connection_age() {
    const MAX_AGE: Duration = Duration::from_secs(1);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let running = serve(
        Server::builder(server.identity()).max_connection_age(MAX_AGE),
        app,
    )
    .await;

    let opened = Instant::now();
    let (mut conn, closed) = OneConnection::open(running.addr, &client, Version::Http2).await;
    let (status, _) = conn.get("/whoami").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    within("connection closed at max age", closed)
        .await
        .unwrap();
    let age = opened.elapsed();
    assert!(
        age >= MAX_AGE - Duration::from_millis(50),
        "closed after {age:?}"
    );
    assert!(
        age < MAX_AGE + Duration::from_secs(5),
        "closed after {age:?}"
    );
}

/// A route whose handler reports that it started, then waits for a release.
fn slow_router(started: mpsc::Sender<()>, release: Arc<Notify>) -> axum::Router {
    whoami_router().route(
        "/slow",
        get(move || {
            let started = started.clone();
            let release = Arc::clone(&release);
            async move {
                let _ = started.send(()).await;
                release.notified().await;
                "done"
            }
        }),
    )
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_request_finish() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let (started_tx, mut started) = mpsc::channel(1);
    let release = Arc::new(Notify::new());
    let app = authorized(
        slow_router(started_tx, Arc::clone(&release)),
        server.identity(),
        allow_client(),
    );
    let mut running = serve(
        Server::builder(server.identity()).drain_timeout(Duration::from_secs(15)),
        app,
    )
    .await;

    let (mut conn, _closed) = OneConnection::open(running.addr, &client, Version::Http1).await;
    let in_flight = tokio::spawn(async move { conn.get("/slow").await });
    within("handler started", started.recv()).await.unwrap();

    running.shutdown();
    // New connections are refused once the listener is closed.
    within("listener closed", async {
        while TcpStream::connect(running.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        !running.task.is_finished(),
        "server stopped with a request in flight"
    );

    release.notify_one();
    let (status, body) = within("in-flight response", in_flight)
        .await
        .unwrap()
        .expect("in-flight request finished");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "done");
    within("server stopped", &mut running.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_closes_requests_still_running_after_drain_timeout() {
    const DRAIN: Duration = Duration::from_millis(300);
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let (started_tx, mut started) = mpsc::channel(1);
    // Never released.
    let release = Arc::new(Notify::new());
    let app = authorized(
        slow_router(started_tx, release),
        server.identity(),
        allow_client(),
    );
    let mut running = serve(Server::builder(server.identity()).drain_timeout(DRAIN), app).await;

    let (mut conn, _closed) = OneConnection::open(running.addr, &client, Version::Http2).await;
    let in_flight = tokio::spawn(async move { conn.get("/slow").await });
    within("handler started", started.recv()).await.unwrap();

    let stopping = Instant::now();
    running.shutdown();
    within("server stopped", &mut running.task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stopping.elapsed() >= DRAIN,
        "stopped before the drain timeout"
    );
    let outcome = within("in-flight request ends", in_flight).await.unwrap();
    assert!(
        outcome.is_err(),
        "request outlived the drain timeout: {outcome:?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn serves_over_unix_socket() {
    let ca = new_ca();
    let server = identity(&ca, SERVER_ID);
    let client = identity(&ca, CLIENT_ID);
    let app = authorized(whoami_router(), server.identity(), allow_client());
    let dir = zt_testkit::TempDir::new("unix");
    let path = dir.join("api.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let serving = tokio::spawn(
        Server::builder(server.identity())
            .build()
            .unwrap()
            .serve(listener, app)
            .into_future(),
    );

    let unix = tokio::net::UnixStream::connect(&path).await.unwrap();
    let tls = within(
        "TLS handshake",
        tokio_rustls::TlsConnector::from(client_config(&client, SERVER_ID, &[b"http/1.1"]))
            .connect("localhost".try_into().unwrap(), unix),
    )
    .await
    .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/whoami")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = within("response", sender.send_request(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, CLIENT_ID);
    serving.abort();
}
