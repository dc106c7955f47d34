//! Server CPU per request: zt (`Server` + `AuthorizeLayer`) against plain hyper +
//! tokio-rustls with the same TLS configuration, over real sockets on 127.0.0.1.
//!
//! The server runs on one thread of its own; its CPU time is read from
//! `/proc/self/task/<tid>/schedstat` (nanoseconds on CPU), so the client's work is
//! not counted. Keep-alive connections, small responses: the per-request cost
//! that zt adds is what shows. Linux only.
//!
//! ```text
//! cargo bench -p zt-tower --bench e2e
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::Layer;
use zt_core::dev::DevCa;
use zt_core::rustls::pki_types::ServerName;
use zt_core::{BundleSet, IdMatcher, Identity, IdentitySource, StaticSource, tls};
use zt_tower::{AuthorizeLayer, Policy, PolicyStore, Server};

const CONNECTIONS: usize = 8;
const WARMUP: usize = 2_000;
const REQUESTS: usize = 40_000;
const ROUNDS: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    Zt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

/// CPU nanoseconds the thread `tid` of this process has run.
fn thread_cpu_ns(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

/// Starts a server of `kind` on a thread of its own; returns its address and tid.
fn start_server(kind: Kind, server: Identity) -> (SocketAddr, String) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let tid = std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((listener.local_addr().unwrap(), tid)).unwrap();
            match kind {
                Kind::Plain => serve_plain(listener, server).await,
                Kind::Zt => serve_zt(listener, server).await,
            }
        });
    });
    rx.recv().unwrap()
}

async fn serve_plain(listener: TcpListener, identity: Identity) {
    let config = tls::ServerConfigBuilder::new(identity)
        .alpn_protocols(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .build()
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn serve_zt(listener: TcpListener, identity: Identity) {
    let policy = PolicyStore::new(Policy::allow_patterns(["spiffe://example.org/web"]).unwrap());
    let handler = tower::service_fn(|req: Request<Incoming>| async move {
        assert!(req.extensions().get::<zt_tower::PeerIdentity>().is_some());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let app = AuthorizeLayer::new(identity.clone(), policy).layer(handler);
    Server::builder(identity)
        .build()
        .unwrap()
        .serve(listener, app)
        .await
        .unwrap();
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn connect(addr: SocketAddr, client: &StaticSource, proto: Proto) -> Sender {
    let alpn = match proto {
        Proto::Http1 => b"http/1.1".to_vec(),
        Proto::Http2 => b"h2".to_vec(),
    };
    let config = tls::ClientConfigBuilder::new(
        client.identity(),
        IdMatcher::exact("spiffe://example.org/api".parse().unwrap()),
    )
    .alpn_protocols(vec![alpn])
    .build()
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    match proto {
        Proto::Http1 => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        }
        Proto::Http2 => {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        }
    }
}

async fn requests(sender: &mut Sender, n: usize) {
    for _ in 0..n {
        let response = match sender {
            Sender::H1(s) => {
                s.ready().await.unwrap();
                let request = Request::get("/v1/items/42")
                    .header("host", "localhost")
                    .body(Empty::new())
                    .unwrap();
                s.send_request(request).await.unwrap()
            }
            Sender::H2(s) => {
                s.ready().await.unwrap();
                let request = Request::get("https://localhost/v1/items/42")
                    .body(Empty::new())
                    .unwrap();
                s.send_request(request).await.unwrap()
            }
        };
        assert!(response.status().is_success());
        response.into_body().collect().await.unwrap();
    }
}

/// Server CPU ns per request for one round.
fn round(kind: Kind, proto: Proto, server: &StaticSource, client: &Arc<StaticSource>) -> f64 {
    let (addr, tid) = start_server(kind, server.identity());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut senders = Vec::new();
        for _ in 0..CONNECTIONS {
            senders.push(connect(addr, client, proto).await);
        }
        let run = |senders: Vec<Sender>, per: usize| async move {
            let tasks: Vec<_> = senders
                .into_iter()
                .map(|mut s| {
                    tokio::spawn(async move {
                        requests(&mut s, per).await;
                        s
                    })
                })
                .collect();
            let mut back = Vec::new();
            for task in tasks {
                back.push(task.await.unwrap());
            }
            back
        };
        let senders = run(senders, WARMUP / CONNECTIONS).await;
        let cpu = thread_cpu_ns(&tid);
        let started = Instant::now();
        let _senders = run(senders, REQUESTS / CONNECTIONS).await;
        let elapsed = started.elapsed();
        let cpu = thread_cpu_ns(&tid) - cpu;
        let per = cpu as f64 / REQUESTS as f64;
        eprintln!(
            "  {kind:?} {proto:?}: {per:.0} ns server CPU/request, {:.0} requests/s",
            REQUESTS as f64 / elapsed.as_secs_f64()
        );
        per
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs benches with `--test`: a quick smoke run is enough.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let ca = DevCa::new("example.org".parse().unwrap()).unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let server = StaticSource::new(
        ca.mint(&"spiffe://example.org/api".parse().unwrap())
            .unwrap(),
        bundles.clone(),
    )
    .unwrap();
    let client = Arc::new(
        StaticSource::new(
            ca.mint(&"spiffe://example.org/web".parse().unwrap())
                .unwrap(),
            bundles,
        )
        .unwrap(),
    );

    for proto in [Proto::Http1, Proto::Http2] {
        let mut plain = Vec::new();
        let mut zt = Vec::new();
        for _ in 0..ROUNDS {
            plain.push(round(Kind::Plain, proto, &server, &client));
            zt.push(round(Kind::Zt, proto, &server, &client));
        }
        let (plain, zt) = (median(plain), median(zt));
        println!(
            "{proto:?}: plain hyper+rustls {plain:.0} ns/request, zt {zt:.0} ns/request, ratio {:.3}",
            zt / plain
        );
    }
}
