#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
//! zt side by side with plain hyper + tokio-rustls and with nginx as an mTLS
//! sidecar, over real sockets on 127.0.0.1, with the load generator built in.
//!
//! ```text
//! cargo bench --bench compare                  # about 2 minutes on 2 cores
//! cargo bench --bench compare -- --quick       # one round of short windows, a smoke run
//! cargo bench --bench compare -- --instructions  # callgrind: instructions per request
//! cargo bench --bench compare -- --syscalls    # strace: system calls per request
//! ```
//!
//! Servers under test, each in a child process of its own (this binary run again
//! with `serve KIND DIR`), so that their CPU time and memory are read in isolation
//! from `/proc/PID`:
//!
//! - `plain`: hyper (auto HTTP/1.1 + HTTP/2) over tokio-rustls, a webpki client
//!   verifier with the CA as its only root, no resumption (as zt);
//! - `zt`: [`zt_tower::Server`] with [`zt_tower::AuthorizeLayer`]: the peer's
//!   identity re-verified on every request and decided by a 10,000-rule policy in
//!   which the client's rule is one of them;
//! - `sidecar`: nginx terminating mTLS (`ssl_verify_client on`, no session cache,
//!   no tickets) and proxying over loopback to a plaintext hyper server through a
//!   keep-alive upstream; its CPU and memory are nginx's master and worker plus
//!   the plaintext server's.
//!
//! All serve the same SVID and answer `GET /svc-5000/items` with `ok`. Loads, each
//! from one async hyper client on a single-threaded runtime in this process:
//! HTTP/1.1 keep-alive (16 connections, one request in flight on each), HTTP/2 (4
//! connections, 4 streams in flight on each), and a new TLS connection for every
//! HTTP/1.1 request (8 at once). Servers run on core 1 and the client on core 0
//! (`taskset`); the targets take turns, round after round, so drift in the
//! machine's load spreads over all of them.
//!
//! Server CPU is the sum over the server's threads of the first field of
//! `/proc/PID/task/TID/schedstat` (nanoseconds on CPU, user and kernel), read
//! just before and just after each measuring window. Client CPU is read the same
//! way from client processes of their own ([`zt_benches::client`]): hyper-util
//! over `zt_tower::Connector` and over plain tokio-rustls, both against the plain
//! server. The re-verification burst after a rotation is timed in this process
//! before the servers start ([`zt_benches::reverify`]). The output ends with
//! `ratio NAME VALUE` lines and a table of the goals; `benches/RESULTS.md` says
//! what each ratio means.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower::Layer;
use zt_benches::client::{ClientKind, ClientProcess, ClientWindow};
use zt_benches::counters::{Counter, count};
use zt_benches::nginx::{self, NGINX};
use zt_benches::plain_server_config;
use zt_benches::process::{Managed, context_switches, cpu_ns, page_faults, pinned, rss_kib};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::ServerName;
use zt_core::{
    BundleSet, Format, IdMatcher, IdentitySource, Policy, PolicyStore, SpiffeId, StaticSource,
    X509Bundle, X509Svid, tls,
};
use zt_testkit::TempDir;
use zt_testkit::policy::policy_json;
use zt_tower::{AuthorizeLayer, Server};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const TRUST_DOMAIN: &str = "example.org";
const SERVER_ID: &str = "spiffe://example.org/api";
/// One of the exact-ID rules of [`policy_json`]: `svc-5000` may `GET /svc-5000/*`.
const CLIENT_ID: &str = "spiffe://example.org/svc-5000";
const PATH: &str = "/svc-5000/items";
const POLICY_RULES: usize = 10_000;

const CLIENT_CORE: &str = "0";
const SERVER_CORE: &str = "1";

const H1_CONNECTIONS: usize = 16;
const H2_CONNECTIONS: usize = 4;
const H2_STREAMS_PER_CONNECTION: usize = 4;
const NEW_CONNECTION_WORKERS: usize = 8;
const IDLE_CONNECTIONS: usize = 500;
/// Distinct client chains behind the re-verified peers, and how many peers.
const REVERIFY_CHAINS: usize = 100;
const REVERIFY_PEERS: [usize; 3] = [100, 1_000, 10_000];

/// How long each measurement runs.
#[derive(Clone, Copy, Debug)]
struct Plan {
    rounds: usize,
    warmup: Duration,
    window: Duration,
    decision_batches: usize,
    /// CPU time to spend on each size of re-verification burst (at least one burst).
    reverify_min_cpu: Duration,
}

const FULL: Plan = Plan {
    rounds: 5,
    warmup: Duration::from_millis(300),
    window: Duration::from_millis(1500),
    decision_batches: 21,
    reverify_min_cpu: Duration::from_millis(500),
};

const QUICK: Plan = Plan {
    rounds: 1,
    warmup: Duration::from_millis(100),
    window: Duration::from_millis(300),
    decision_batches: 3,
    reverify_min_cpu: Duration::from_millis(50),
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let kind = args.get(2).ok_or("serve KIND DIR")?;
        let dir = args.get(3).ok_or("serve KIND DIR")?;
        return serve(kind, Path::new(dir));
    }
    if args.get(1).map(String::as_str) == Some("client") {
        return zt_benches::client::run(args.get(2..).unwrap_or_default());
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and timings
    // are not tests.
    if !args.iter().any(|a| a == "--bench") {
        println!("compare measures only under `cargo bench --bench compare`");
        return Ok(());
    }
    if args.iter().any(|a| a == "--instructions") {
        return counted(Counter::Instructions);
    }
    if args.iter().any(|a| a == "--syscalls") {
        return counted(Counter::Syscalls);
    }
    let plan = if args.iter().any(|a| a == "--quick") {
        QUICK
    } else {
        FULL
    };
    harness(plan)
}

// ---------------------------------------------------------------------------
// Servers under test (child processes)
// ---------------------------------------------------------------------------

/// The material every server loads from `dir`: the CA, and the server's SVID.
struct Material {
    ca: X509Bundle,
    server: X509Svid,
}

impl Material {
    fn write(dir: &Path, ca: &DevCa) -> Result<()> {
        let mut params = SvidParams::new(SERVER_ID.parse()?);
        params.dns_names.push("localhost".to_owned());
        let (chain, key) = ca.mint_pem(params)?;
        std::fs::write(dir.join("ca.pem"), ca.bundle_pem())?;
        std::fs::write(dir.join("server.pem"), chain)?;
        std::fs::write(dir.join("server-key.pem"), key)?;
        let (chain, key) = ca.mint_pem(SvidParams::new(CLIENT_ID.parse()?))?;
        std::fs::write(dir.join("client.pem"), chain)?;
        std::fs::write(dir.join("client-key.pem"), key)?;
        Ok(())
    }

    fn load(dir: &Path) -> Result<Self> {
        let ca = X509Bundle::from_pem(TRUST_DOMAIN.parse()?, &std::fs::read(dir.join("ca.pem"))?)?;
        let server = X509Svid::from_pem(
            &std::fs::read(dir.join("server.pem"))?,
            &std::fs::read(dir.join("server-key.pem"))?,
        )?;
        Ok(Self { ca, server })
    }
}

/// Runs the server `kind` until the parent closes our stdin.
fn serve(kind: &str, dir: &Path) -> Result<()> {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let material = Material::load(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        match kind {
            "plain" => serve_plain(listener, material).await,
            "zt" => serve_zt(listener, material).await,
            "backend" => serve_backend(listener).await,
            other => Err(format!("unknown server kind {other}").into()),
        }
    })
}

async fn ok<B>(_request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

async fn serve_plain(listener: TcpListener, material: Material) -> Result<()> {
    let ca = material
        .ca
        .authorities()
        .first()
        .ok_or("empty CA bundle")?
        .clone();
    let mut config = plain_server_config(&ca, &material.server, rustls::DEFAULT_VERSIONS);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let http = auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = http
                .serve_connection(TokioIo::new(tls), hyper::service::service_fn(ok))
                .await;
        });
    }
}

async fn serve_zt(listener: TcpListener, material: Material) -> Result<()> {
    let source = StaticSource::new(material.server, BundleSet::new().with(material.ca))?;
    let policy = Policy::parse(&policy_json(POLICY_RULES), Format::Json)?;
    let policy = PolicyStore::new(policy);
    let app = AuthorizeLayer::new(source.identity(), policy).layer(tower::service_fn(ok));
    Server::builder(source.identity())
        .build()?
        .serve(listener, app)
        .await?;
    Ok(())
}

async fn serve_backend(listener: TcpListener) -> Result<()> {
    let http = auto::Builder::new(TokioExecutor::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let http = http.clone();
        tokio::spawn(async move {
            let _ = http
                .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(ok))
                .await;
        });
    }
}

// ---------------------------------------------------------------------------
// Processes: start, pin, read CPU and memory
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Plain,
    Zt,
    Sidecar,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain hyper+rustls",
            Self::Zt => "zt (Server+Authorize)",
            Self::Sidecar => "nginx sidecar+hyper",
        }
    }
}

/// A running server under test: the processes whose CPU and memory count, and
/// the address clients connect to.
struct ServerUnderTest {
    target: Target,
    addr: SocketAddr,
    pids: Vec<u32>,
    /// Kept for their `Drop`, which ends the processes.
    _children: Vec<Managed>,
}

/// Whether processes can be pinned to cores: two or more cores and `taskset`.
fn pin_self() -> bool {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores >= 2
        && Command::new("taskset")
            .args([
                "-a",
                "-p",
                "-c",
                CLIENT_CORE,
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

/// Starts this binary as the server `kind`; returns it once it listens.
fn spawn_ours(kind: &str, dir: &Path, pin: bool) -> Result<(Managed, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut child = pinned(&exe, pin.then_some(SERVER_CORE))
        .args(["serve", kind])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| format!("server {kind} did not start: {line:?}"))?
        .parse()?;
    Ok((
        Managed {
            child,
            stdin,
            nginx_workers: Vec::new(),
        },
        addr,
    ))
}

fn start(target: Target, dir: &Path, pin: bool) -> Result<ServerUnderTest> {
    match target {
        Target::Plain | Target::Zt => {
            let kind = if target == Target::Plain {
                "plain"
            } else {
                "zt"
            };
            let (child, addr) = spawn_ours(kind, dir, pin)?;
            Ok(ServerUnderTest {
                target,
                addr,
                pids: vec![child.child.id()],
                _children: vec![child],
            })
        }
        Target::Sidecar => {
            let (backend, backend_addr) = spawn_ours("backend", dir, pin)?;
            let (nginx, addr) = nginx::start(dir, backend_addr, pin.then_some(SERVER_CORE))?;
            let mut pids = vec![nginx.child.id()];
            pids.extend(&nginx.nginx_workers);
            pids.push(backend.child.id());
            Ok(ServerUnderTest {
                target,
                addr,
                pids,
                _children: vec![nginx, backend],
            })
        }
    }
}

// ---------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Http1,
    Http2,
    NewConnection,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1 keep-alive",
            Self::Http2 => "HTTP/2",
            Self::NewConnection => "new connection/request",
        }
    }
}

struct Client {
    h1: TlsConnector,
    h2: TlsConnector,
    _source: StaticSource,
}

impl Client {
    fn new(ca: &DevCa) -> Result<Self> {
        let svid = ca.mint(&CLIENT_ID.parse()?)?;
        let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle()))?;
        let connector = |alpn: &[u8]| -> Result<TlsConnector> {
            let config = tls::ClientConfigBuilder::new(
                source.identity(),
                IdMatcher::exact(SERVER_ID.parse()?),
            )
            .alpn_protocols(vec![alpn.to_vec()])
            .build()?;
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(Self {
            h1: connector(b"http/1.1")?,
            h2: connector(b"h2")?,
            _source: source,
        })
    }

    async fn tls(&self, addr: SocketAddr, h2: bool) -> Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let connector = if h2 { &self.h2 } else { &self.h1 };
        Ok(connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?)
    }

    async fn open(&self, addr: SocketAddr, h2: bool) -> Result<Sender> {
        let tls = self.tls(addr, h2).await?;
        if h2 {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await?;
            tokio::spawn(conn);
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    /// Another handle on the same HTTP/2 connection.
    fn share(&self) -> Option<Self> {
        match self {
            Self::H2(sender) => Some(Self::H2(sender.clone())),
            Self::H1(_) => None,
        }
    }

    async fn get(&mut self) -> Result<()> {
        let response = match self {
            Self::H1(sender) => {
                sender.ready().await?;
                let request = Request::get(PATH)
                    .header("host", "localhost")
                    .body(Empty::new())?;
                sender.send_request(request).await?
            }
            Self::H2(sender) => {
                sender.ready().await?;
                let request = Request::get(format!("https://localhost{PATH}")).body(Empty::new())?;
                sender.send_request(request).await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() || body != "ok" {
            return Err(format!("unexpected response {status}").into());
        }
        Ok(())
    }
}

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

#[derive(Default)]
struct Counts {
    ok: u64,
    failed: u64,
    latencies_ns: Vec<u64>,
}

impl Counts {
    fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies_ns.extend(other.latencies_ns);
    }

    fn record(&mut self, phase: &AtomicU8, started: Instant, result: &Result<()>) {
        // A request counts when it completes inside the window, as its server
        // CPU mostly does.
        if phase.load(Ordering::Relaxed) != MEASURING {
            return;
        }
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latencies_ns
                    .push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
            Err(_) => self.failed += 1,
        }
    }
}

async fn keep_alive_worker(mut sender: Sender, phase: Arc<AtomicU8>) -> Counts {
    let mut counts = Counts::default();
    while phase.load(Ordering::Relaxed) != STOPPED {
        let started = Instant::now();
        let result = sender.get().await;
        counts.record(&phase, started, &result);
        if let Err(err) = result {
            eprintln!("  request failed, closing the connection: {err}");
            break;
        }
    }
    counts
}

async fn new_connection_worker(
    client: Arc<Client>,
    addr: SocketAddr,
    phase: Arc<AtomicU8>,
) -> Counts {
    let mut counts = Counts::default();
    while phase.load(Ordering::Relaxed) != STOPPED {
        let started = Instant::now();
        let result = async {
            let mut sender = client.open(addr, false).await?;
            sender.get().await
        }
        .await;
        if let Err(err) = &result
            && counts.failed == 0
        {
            eprintln!("  request failed: {err}");
        }
        counts.record(&phase, started, &result);
    }
    counts
}

/// One measuring window of one target under one load.
struct Sample {
    round: usize,
    cpu_ns_per_request: f64,
    /// The load generator's CPU time over the window's: near 1 means the client
    /// bounds the throughput.
    client_busy: f64,
    /// Page faults of the server processes per request.
    faults_per_request: f64,
    /// Context switches of the server processes per request.
    switches_per_request: f64,
    requests_per_s: f64,
    /// The 99th percentile of the window's latencies, in ns.
    p99_ns: f64,
    counts: Counts,
}

async fn measure(
    server: &ServerUnderTest,
    client: &Arc<Client>,
    mode: Mode,
    plan: Plan,
) -> Result<Sample> {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let mut workers = Vec::new();
    match mode {
        Mode::Http1 => {
            for _ in 0..H1_CONNECTIONS {
                let sender = client.open(server.addr, false).await?;
                workers.push(tokio::spawn(keep_alive_worker(sender, phase.clone())));
            }
        }
        Mode::Http2 => {
            for _ in 0..H2_CONNECTIONS {
                let sender = client.open(server.addr, true).await?;
                for _ in 0..H2_STREAMS_PER_CONNECTION {
                    let shared = sender.share().ok_or("not an HTTP/2 connection")?;
                    workers.push(tokio::spawn(keep_alive_worker(shared, phase.clone())));
                }
            }
        }
        Mode::NewConnection => {
            for _ in 0..NEW_CONNECTION_WORKERS {
                workers.push(tokio::spawn(new_connection_worker(
                    client.clone(),
                    server.addr,
                    phase.clone(),
                )));
            }
        }
    }
    tokio::time::sleep(plan.warmup).await;
    let me = [std::process::id()];
    let faults_before = page_faults(&server.pids);
    let switches_before = context_switches(&server.pids);
    let cpu_before = cpu_ns(&server.pids);
    let client_before = cpu_ns(&me);
    let started = Instant::now();
    phase.store(MEASURING, Ordering::Relaxed);
    tokio::time::sleep(plan.window).await;
    phase.store(STOPPED, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu = cpu_ns(&server.pids).saturating_sub(cpu_before);
    let client_cpu = cpu_ns(&me).saturating_sub(client_before);
    let faults = page_faults(&server.pids).saturating_sub(faults_before);
    let switches = context_switches(&server.pids).saturating_sub(switches_before);
    let mut counts = Counts::default();
    for worker in workers {
        counts.merge(worker.await?);
    }
    // A window without a completed request (the client got no CPU) says nothing.
    let requests = if counts.ok == 0 {
        f64::NAN
    } else {
        counts.ok as f64
    };
    Ok(Sample {
        round: 0,
        cpu_ns_per_request: cpu as f64 / requests,
        client_busy: client_cpu as f64 / elapsed.as_nanos() as f64,
        faults_per_request: faults as f64 / requests,
        switches_per_request: switches as f64 / requests,
        requests_per_s: counts.ok as f64 / elapsed.as_secs_f64(),
        p99_ns: {
            let mut sorted = counts.latencies_ns.clone();
            sorted.sort_unstable();
            percentile_ms(&sorted, 99) * 1e6
        },
        counts,
    })
}

/// Resident memory per idle TLS connection (HTTP/1.1, after one request each).
async fn memory_per_connection(server: &ServerUnderTest, client: &Client) -> Result<f64> {
    // Warm up lazily built state (first handshake, first request) first.
    let mut warm = client.open(server.addr, false).await?;
    for _ in 0..20 {
        warm.get().await?;
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(&server.pids);
    let mut held = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut sender = client.open(server.addr, false).await?;
        sender.get().await?;
        held.push(sender);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(&server.pids);
    drop(held);
    Ok(after.saturating_sub(before) as f64 / IDLE_CONNECTIONS as f64)
}

// ---------------------------------------------------------------------------
// Policy decisions
// ---------------------------------------------------------------------------

struct Decisions {
    ns_10: f64,
    ns_10k: f64,
    floor_ns: f64,
}

/// Decision time at 10 and at 10,000 rules for the same kind of peer (an
/// exact-ID rule, a deny rule on another path, a wildcard pattern rule of its
/// trust domain), in alternating batches; the median batch of each.
fn decisions(batches: usize) -> Result<Decisions> {
    const PER_BATCH: u32 = 200_000;
    let small = PolicyStore::new(Policy::parse(&policy_json(10), Format::Json)?);
    let large = PolicyStore::new(Policy::parse(&policy_json(POLICY_RULES), Format::Json)?);
    let peer: SpiffeId = "spiffe://example.org/svc-0".parse()?;
    let request = zt_core::Request::new("GET", "/svc-0/items");
    if !small.decide(&peer, &request).is_allowed() || !large.decide(&peer, &request).is_allowed() {
        return Err("the benchmark peer is not allowed".into());
    }
    let table: HashMap<SpiffeId, u32> = (0..POLICY_RULES as u32)
        .map(|i| {
            let id = format!("spiffe://example.org/svc-{i}").parse().unwrap();
            (id, i)
        })
        .collect();
    let floor = ArcSwap::from_pointee(table);
    let time = |f: &dyn Fn()| {
        let started = Instant::now();
        for _ in 0..PER_BATCH {
            f();
        }
        started.elapsed().as_nanos() as f64 / f64::from(PER_BATCH)
    };
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..batches {
        a.push(time(&|| {
            black_box(small.decide(black_box(&peer), black_box(&request)));
        }));
        b.push(time(&|| {
            black_box(large.decide(black_box(&peer), black_box(&request)));
        }));
        c.push(time(&|| {
            black_box(floor.load().get(black_box(&peer)).copied());
        }));
    }
    Ok(Decisions {
        ns_10: median(&a),
        ns_10k: median(&b),
        floor_ns: median(&c),
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile_ms(sorted_ns: &[u64], p: usize) -> f64 {
    let index = (sorted_ns.len().saturating_sub(1) * p) / 100;
    sorted_ns.get(index).copied().unwrap_or(0) as f64 / 1e6
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

fn harness(plan: Plan) -> Result<()> {
    let pin = pin_self();
    let nginx = Path::new(NGINX).exists().then(nginx::version).flatten();
    println!(
        "compare: {} rounds, {:?} windows after {:?} warm-up; {}",
        plan.rounds,
        plan.window,
        plan.warmup,
        if pin {
            "client pinned to core 0, servers to core 1"
        } else {
            "NOT pinned (fewer than 2 cores or no taskset): client and servers share cores"
        }
    );
    match &nginx {
        Some(version) => println!("sidecar: nginx {version}"),
        None => println!("skip: nginx not installed (apt-get install nginx)"),
    }

    let decisions = decisions(plan.decision_batches)?;
    println!(
        "policy decision (PolicyStore::decide): {:.1} ns at 10 rules, {:.1} ns at {POLICY_RULES} \
         rules; floor ArcSwap load + HashMap get {:.1} ns",
        decisions.ns_10, decisions.ns_10k, decisions.floor_ns
    );

    // Before any server runs: this process alone on its core.
    let bursts =
        zt_benches::reverify::bursts(REVERIFY_CHAINS, &REVERIFY_PEERS, plan.reverify_min_cpu)?;
    for burst in &bursts {
        println!(
            "reverify burst after a rotation: {:>6} peers over {} chains {:10.0} µs CPU \
             ({:.0} µs wall, mean of {})",
            burst.peers, burst.chains, burst.cpu_us, burst.wall_us, burst.repeats
        );
    }

    let scratch = TempDir::try_new("compare")?;
    let ca = DevCa::new(TRUST_DOMAIN.parse()?)?;
    Material::write(scratch.path(), &ca)?;
    let client = Arc::new(Client::new(&ca)?);

    let mut targets = vec![Target::Plain, Target::Zt];
    if nginx.is_some() {
        targets.push(Target::Sidecar);
    }
    let mut servers = Vec::new();
    for &target in &targets {
        match start(target, scratch.path(), pin) {
            Ok(server) => servers.push(server),
            Err(err) if target == Target::Sidecar => {
                println!("skip: nginx did not start ({err}); the sidecar ratios are omitted");
            }
            Err(err) => return Err(err),
        }
    }
    targets.retain(|target| servers.iter().any(|server| server.target == *target));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(async {
        let mut memory = Vec::new();
        for server in &servers {
            let kib = memory_per_connection(server, &client).await?;
            println!(
                "  {:<24} {kib:6.1} KiB resident per idle TLS connection ({IDLE_CONNECTIONS} open)",
                server.target.name()
            );
            memory.push((server.target, kib));
        }
        let modes = [Mode::Http1, Mode::Http2, Mode::NewConnection];
        let mut samples: Vec<(Target, Mode, Sample)> = Vec::new();
        let mut clients: Vec<(ClientKind, usize, ClientWindow)> = Vec::new();
        for round in 0..plan.rounds {
            for &mode in &modes {
                // Rotate the order every round so no target always runs first.
                for i in 0..servers.len() {
                    let server = &servers[(i + round) % servers.len()];
                    let sample = measure(server, &client, mode, plan).await?;
                    eprintln!(
                        "  round {} {:<24} {:<24} {:7.2} µs CPU/request {:8.0} requests/s, {:5.2} page faults/request, {:5.2} context switches/request, client {:3.0}% busy{}",
                        round + 1,
                        server.target.name(),
                        mode.name(),
                        sample.cpu_ns_per_request / 1e3,
                        sample.requests_per_s,
                        sample.faults_per_request,
                        sample.switches_per_request,
                        sample.client_busy * 100.0,
                        if sample.counts.failed > 0 {
                            format!(" ({} FAILED)", sample.counts.failed)
                        } else {
                            String::new()
                        }
                    );
                    samples.push((server.target, mode, Sample { round, ..sample }));
                }
            }
            // Client CPU: each client in a process of its own against the plain server.
            let plain = servers.iter().find(|s| s.target == Target::Plain);
            let plain = plain.ok_or("no plain server")?;
            let kinds = [ClientKind::Plain, ClientKind::Zt];
            for i in 0..kinds.len() {
                let kind = kinds[(i + round) % kinds.len()];
                let exe = std::env::current_exe()?;
                let core = pin.then_some(CLIENT_CORE);
                let mut process =
                    ClientProcess::spawn(&exe, kind, scratch.path(), plain.addr, core)?;
                let window = process.window(plan.warmup, plan.window)?;
                eprintln!(
                    "  round {} {:<36} {:7.2} µs client CPU/request {:8.0} requests/s{}",
                    round + 1,
                    kind.name(),
                    window.cpu_ns_per_request() / 1e3,
                    window.requests as f64 / window.elapsed.as_secs_f64(),
                    if window.failed > 0 {
                        format!(" ({} FAILED)", window.failed)
                    } else {
                        String::new()
                    }
                );
                clients.push((kind, round, window));
            }
        }
        Ok::<_, BoxError>((memory, samples, clients))
    })?;
    drop(servers);
    let (memory, samples, clients) = results;
    report(&targets, &decisions, &memory, samples, &clients, &bursts);
    Ok(())
}

struct Summary {
    cpu_us: f64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
}

fn summarize(samples: &[(Target, Mode, Sample)], target: Target, mode: Mode) -> Option<Summary> {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|(t, m, _)| *t == target && *m == mode)
        .map(|(_, _, s)| s)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let cpu: Vec<f64> = mine
        .iter()
        .map(|s| s.cpu_ns_per_request)
        .filter(|cpu| cpu.is_finite())
        .collect();
    let rps: Vec<f64> = mine.iter().map(|s| s.requests_per_s).collect();
    let mut latencies: Vec<u64> = mine
        .iter()
        .flat_map(|s| s.counts.latencies_ns.iter().copied())
        .collect();
    latencies.sort_unstable();
    Some(Summary {
        cpu_us: median(&cpu) / 1e3,
        rps: median(&rps),
        p50_ms: percentile_ms(&latencies, 50),
        p99_ms: percentile_ms(&latencies, 99),
        failed: mine.iter().map(|s| s.counts.failed).sum(),
    })
}

/// The median over rounds of `a`'s `metric` (server CPU per request, p99) over
/// `b`'s in the same round: the windows of one round run one after the other, so
/// slow drift in the machine's load cancels out of each ratio.
fn paired_ratio(
    samples: &[(Target, Mode, Sample)],
    a: Target,
    b: Target,
    mode: Mode,
    metric: fn(&Sample) -> f64,
) -> Option<f64> {
    let value = |target: Target, round: usize| {
        samples
            .iter()
            .find(|(t, m, s)| *t == target && *m == mode && s.round == round)
            .map(|(_, _, s)| metric(s))
    };
    let rounds = samples.iter().map(|(_, _, s)| s.round).max()?;
    let ratios: Vec<f64> = (0..=rounds)
        .filter_map(|round| Some(value(a, round)? / value(b, round)?))
        .filter(|ratio| ratio.is_finite())
        .collect();
    (!ratios.is_empty()).then(|| median(&ratios))
}

/// The median over rounds of the zt client's CPU per request over the plain
/// client's in the same round.
fn client_ratio(clients: &[(ClientKind, usize, ClientWindow)]) -> Option<f64> {
    let cpu = |kind: ClientKind, round: usize| {
        clients
            .iter()
            .find(|(k, r, _)| *k == kind && *r == round)
            .map(|(_, _, w)| w.cpu_ns_per_request())
    };
    let rounds = clients.iter().map(|(_, r, _)| *r).max()?;
    let ratios: Vec<f64> = (0..=rounds)
        .filter_map(|round| Some(cpu(ClientKind::Zt, round)? / cpu(ClientKind::Plain, round)?))
        .filter(|ratio| ratio.is_finite())
        .collect();
    (!ratios.is_empty()).then(|| median(&ratios))
}

fn report(
    targets: &[Target],
    decisions: &Decisions,
    memory: &[(Target, f64)],
    samples: Vec<(Target, Mode, Sample)>,
    clients: &[(ClientKind, usize, ClientWindow)],
    bursts: &[zt_benches::reverify::Burst],
) {
    println!();
    println!("| server | load | server CPU µs/request | requests/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let modes = [Mode::Http1, Mode::Http2, Mode::NewConnection];
    for mode in modes {
        for &target in targets {
            if let Some(s) = summarize(&samples, target, mode) {
                println!(
                    "| {} | {} | {:.2} | {:.0} | {:.3} | {:.3} | {} |",
                    target.name(),
                    mode.name(),
                    s.cpu_us,
                    s.rps,
                    s.p50_ms,
                    s.p99_ms,
                    s.failed
                );
            }
        }
    }
    println!();
    println!("| server | resident KiB per idle TLS connection |");
    println!("|---|---:|");
    for (target, kib) in memory {
        println!("| {} | {kib:.1} |", target.name());
    }
    println!();

    for kind in [ClientKind::Plain, ClientKind::Zt] {
        let cpu: Vec<f64> = clients
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, _, w)| w.cpu_ns_per_request())
            .filter(|cpu| cpu.is_finite())
            .collect();
        let failed: u64 = clients
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, _, w)| w.failed)
            .sum();
        println!(
            "{}: {:.2} µs client CPU/request against the plain server (HTTP/1.1, {} in flight), {failed} failed",
            kind.name(),
            median(&cpu) / 1e3,
            zt_benches::client::WORKERS,
        );
    }
    let burst = |peers| bursts.iter().find(|b| b.peers == peers).map(|b| b.cpu_us);
    println!(
        "policy decision: {:.1} ns at 10 rules, {:.1} ns at {POLICY_RULES} rules",
        decisions.ns_10, decisions.ns_10k
    );

    let rps = |target, mode| summarize(&samples, target, mode).map(|s| s.rps);
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let cpu = |s: &Sample| s.cpu_ns_per_request;
    let cpu_ratio = |a, b, mode| paired_ratio(&samples, a, b, mode, cpu);
    let worst = |other: Target| {
        let h1 = cpu_ratio(Target::Zt, other, Mode::Http1);
        let h2 = cpu_ratio(Target::Zt, other, Mode::Http2);
        Some(h1?.max(h2?))
    };
    for mode in [Mode::Http1, Mode::Http2] {
        if let Some(r) = cpu_ratio(Target::Zt, Target::Sidecar, mode) {
            println!("zt/sidecar server CPU per request, {}: {r:.3}", mode.name());
        }
    }
    if let Some(r) = ratio(
        rps(Target::Zt, Mode::NewConnection),
        rps(Target::Plain, Mode::NewConnection),
    ) {
        println!(
            "zt/plain new-connection requests/s as measured (client-bound on one core): {r:.3}"
        );
    }
    let mem = |target| {
        memory
            .iter()
            .find(|(t, _)| *t == target)
            .map(|&(_, kib)| kib)
    };
    println!();
    let measured = [
        // Server handshake capacity: handshakes per CPU-second, zt over plain.
        (
            "handshake_zt_vs_rustls",
            cpu_ratio(Target::Plain, Target::Zt, Mode::NewConnection),
        ),
        (
            "cpu_per_req_zt_vs_plain_h1",
            cpu_ratio(Target::Zt, Target::Plain, Mode::Http1),
        ),
        (
            "cpu_per_req_zt_vs_plain_h2",
            cpu_ratio(Target::Zt, Target::Plain, Mode::Http2),
        ),
        ("cpu_per_req_zt_vs_plain", worst(Target::Plain)),
        ("cpu_per_req_zt_vs_sidecar", worst(Target::Sidecar)),
        (
            "p99_zt_vs_plain",
            paired_ratio(&samples, Target::Zt, Target::Plain, Mode::Http1, |s| {
                s.p99_ns
            }),
        ),
        (
            "mem_per_conn_zt_vs_plain",
            ratio(mem(Target::Zt), mem(Target::Plain)),
        ),
        ("client_cpu_per_req_zt_vs_plain", client_ratio(clients)),
        (
            "decision_10k_vs_10",
            Some(decisions.ns_10k / decisions.ns_10),
        ),
        (
            "reverify_burst_10k_vs_100_conns",
            ratio(burst(10_000), burst(100)),
        ),
    ];
    let measured: Vec<(&str, f64)> = measured
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
    zt_benches::goals::report(&measured);
}

// ---------------------------------------------------------------------------
// Instruction counts (callgrind)
// ---------------------------------------------------------------------------

/// Requests per connection (keep-alive) and connections (new connection per
/// request) for the short and the long run; the difference of the two runs'
/// instruction totals over the difference of their request counts is the cost
/// of one request, with start-up, policy compilation, warm-up and connection
/// set-up cancelled out.
const COUNTED: [(Mode, usize, usize); 3] = [
    (Mode::Http1, 2_000, 6_000),
    (Mode::Http2, 2_000, 6_000),
    (Mode::NewConnection, 40, 200),
];

/// `--instructions`: user-space instructions each server executes per request,
/// counted by `valgrind --tool=callgrind`, which a busy machine does not
/// disturb. `--syscalls`: system calls per request, counted by `strace -c`.
/// Set `ZT_CALLGRIND_DIR` to keep the profiles (for `callgrind_annotate`).
fn counted(counter: Counter) -> Result<()> {
    let scratch = TempDir::try_new("compare")?;
    let keep = std::env::var_os("ZT_CALLGRIND_DIR").map(PathBuf::from);
    let out_dir = keep.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    std::fs::create_dir_all(&out_dir)?;
    let ca = DevCa::new(TRUST_DOMAIN.parse()?)?;
    Material::write(scratch.path(), &ca)?;
    let client = Arc::new(Client::new(&ca)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let what = match counter {
        Counter::Instructions => "instructions",
        Counter::Syscalls => "syscalls",
    };
    let exe = std::env::current_exe()?;
    println!("{what} per request (server process; callgrind counts user space only):");
    for (mode, short, long) in COUNTED {
        let mut per_request = Vec::new();
        for kind in ["plain", "zt"] {
            let mut totals = Vec::new();
            for requests in [short, long] {
                let file = out_dir.join(format!("{what}.{kind}.{mode:?}.{requests}"));
                let total = count(counter, &exe, kind, scratch.path(), &file, |addr| {
                    runtime.block_on(drive(&client, addr, mode, requests))
                })?;
                if keep.is_none() {
                    let _ = std::fs::remove_file(&file);
                }
                totals.push(total);
            }
            let per = (totals[1] as f64 - totals[0] as f64) / (long - short) as f64;
            println!("  {kind:<6} {:<24} {per:10.0}", mode.name());
            per_request.push(per);
        }
        println!(
            "{what} zt/plain {:<24} {:.3}",
            mode.name(),
            per_request[1] / per_request[0]
        );
    }
    Ok(())
}

/// Sends exactly `requests` requests in `mode`, spread evenly over the workers.
async fn drive(client: &Arc<Client>, addr: SocketAddr, mode: Mode, requests: usize) -> Result<()> {
    let mut workers = Vec::new();
    match mode {
        Mode::Http1 | Mode::Http2 => {
            let (connections, streams) = if mode == Mode::Http1 {
                (H1_CONNECTIONS, 1)
            } else {
                (H2_CONNECTIONS, H2_STREAMS_PER_CONNECTION)
            };
            let each = requests / (connections * streams);
            for _ in 0..connections {
                let sender = client.open(addr, mode == Mode::Http2).await?;
                for _ in 1..streams {
                    let mut shared = sender.share().ok_or("not an HTTP/2 connection")?;
                    workers.push(tokio::spawn(async move {
                        for _ in 0..each {
                            shared.get().await?;
                        }
                        Ok::<_, BoxError>(())
                    }));
                }
                let mut sender = sender;
                workers.push(tokio::spawn(async move {
                    for _ in 0..each {
                        sender.get().await?;
                    }
                    Ok(())
                }));
            }
        }
        Mode::NewConnection => {
            let each = requests / NEW_CONNECTION_WORKERS;
            for _ in 0..NEW_CONNECTION_WORKERS {
                let client = client.clone();
                workers.push(tokio::spawn(async move {
                    for _ in 0..each {
                        client.open(addr, false).await?.get().await?;
                    }
                    Ok(())
                }));
            }
        }
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}
