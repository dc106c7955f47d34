//! Soak: two zt-tower servers whose identities come from watched files, in two
//! layouts, and whose shared policy comes from a watched file, under a steady mixed
//! load while an SVID rotates every 2 s and the policy flips every 3 s.
//!
//! - Two workloads call them: `alice`, whom one policy lets `GET /toggle` and the
//!   other does not, and `bob`, whom neither does. Both may always `GET /ok`.
//! - Keep-alive clients (HTTP/1.1 and HTTP/2) send requests on one connection each;
//!   other clients open a new connection for every pair of requests.
//! - Rotations alternate between the servers: one reads a Kubernetes Secret volume
//!   (a `..data` swap), the other spiffe-helper's files, rewritten in place one
//!   after another or renamed over, in turn. Policy reloads alternate between a
//!   rename over the file and a rewrite in place.
//!
//! It must fail no request that the policy allows, and allow no request that the
//! policy in force denies. "In force" is read from [`PolicyStore::status`] right
//! before a request is sent and right after its answer: a store swaps the policy
//! and bumps the generation under one lock, so when both reads see the same
//! generation, that policy decided the request. A request that straddles a reload
//! may be decided by either policy, and is counted apart. File descriptors
//! (`/proc/self/fd`) and resident memory (`VmRSS`) are sampled after a warm-up and
//! must not grow beyond fixed bounds.
//!
//! `ZT_SOAK_SECS` sets the duration (default 60).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
#![cfg(target_os = "linux")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::pem::PemObject as _;
use zt_core::rustls::pki_types::{CertificateDer, ServerName};
use zt_core::tls::ClientConfigBuilder;
use zt_core::{
    BundleSet, FileLayout, FileSource, IdMatcher, IdentitySource, Policy, PolicyStore, StaticSource,
};
use zt_testkit::TempDir;
use zt_tower::{Authorize, Server};

const TRUST_DOMAIN: &str = "example.org";
const SERVER_ID: &str = "spiffe://example.org/api";
const ALICE: &str = "spiffe://example.org/alice";
const BOB: &str = "spiffe://example.org/bob";

const ROTATION_PERIOD: Duration = Duration::from_secs(2);
const RELOAD_PERIOD: Duration = Duration::from_secs(3);
/// Pause between two rounds of a keep-alive client, and of a new-connection client:
/// together about 400 requests and 25 handshakes a second, a fraction of two cores.
const KEEP_ALIVE_PAUSE: Duration = Duration::from_millis(20);
const NEW_CONNECTION_PAUSE: Duration = Duration::from_millis(80);
/// Any single request or handshake taking longer fails the soak.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Growth allowed after the warm-up.
const MAX_FD_GROWTH: i64 = 16;
const MAX_RSS_GROWTH_KIB: i64 = 32 * 1024;

fn soak_duration() -> Duration {
    let secs = std::env::var("ZT_SOAK_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .expect("ZT_SOAK_SECS is a number of seconds")
        })
        .unwrap_or(60);
    Duration::from_secs(secs.max(10))
}

// === the files ===

/// One server's credential files, in the layout of the issuer that writes them.
enum Credentials {
    /// A Kubernetes Secret volume: `tls.crt`, `tls.key` and `ca.crt` link through
    /// `..data` into a timestamped directory; an update writes a new directory and
    /// renames a new `..data` link over the old one.
    Kubernetes {
        dir: TempDir,
        current: Option<PathBuf>,
        swaps: u64,
    },
    /// spiffe-helper: `svid.pem`, `svid_key.pem`, `svid_bundle.pem`.
    Helper { dir: TempDir, rotations: u64 },
}

impl Credentials {
    fn kubernetes(chain: &str, key: &str, bundle: &str) -> Self {
        let mut this = Self::Kubernetes {
            dir: TempDir::new("kubernetes"),
            current: None,
            swaps: 0,
        };
        this.rotate(chain, key, bundle);
        if let Self::Kubernetes { dir, .. } = &this {
            for name in ["tls.crt", "tls.key", "ca.crt"] {
                std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
            }
        }
        this
    }

    fn helper(chain: &str, key: &str, bundle: &str) -> Self {
        let dir = TempDir::new("helper");
        std::fs::write(dir.join("svid.pem"), chain).unwrap();
        std::fs::write(dir.join("svid_key.pem"), key).unwrap();
        std::fs::write(dir.join("svid_bundle.pem"), bundle).unwrap();
        Self::Helper { dir, rotations: 0 }
    }

    fn layout(&self) -> FileLayout {
        match self {
            Self::Kubernetes { dir, .. } => FileLayout::kubernetes_tls(dir.path()),
            Self::Helper { dir, .. } => FileLayout::spiffe_helper(dir.path()),
        }
    }

    fn rotate(&mut self, chain: &str, key: &str, bundle: &str) {
        match self {
            Self::Kubernetes {
                dir,
                current,
                swaps,
            } => {
                *swaps += 1;
                let name = format!("..2026_01_01_00_00_00.{swaps}");
                let data = dir.join(&name);
                std::fs::create_dir(&data).unwrap();
                std::fs::write(data.join("tls.crt"), chain).unwrap();
                std::fs::write(data.join("tls.key"), key).unwrap();
                std::fs::write(data.join("ca.crt"), bundle).unwrap();
                let link = dir.join("..data_tmp");
                std::os::unix::fs::symlink(&name, &link).unwrap();
                std::fs::rename(&link, dir.join("..data")).unwrap();
                if let Some(old) = current.replace(data) {
                    std::fs::remove_dir_all(old).unwrap();
                }
            }
            Self::Helper { dir, rotations } => {
                *rotations += 1;
                for (name, contents) in [("svid.pem", chain), ("svid_key.pem", key)] {
                    let path = dir.join(name);
                    if rotations.is_multiple_of(2) {
                        std::fs::write(&path, contents).unwrap();
                    } else {
                        let staged = path.with_extension("new");
                        std::fs::write(&staged, contents).unwrap();
                        std::fs::rename(&staged, &path).unwrap();
                    }
                }
            }
        }
    }
}

/// Which policy a store holds, told by its rule count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flip {
    /// `ok-readers` and `alice-toggles`: alice may `GET /toggle`.
    Allow,
    /// `ok-readers` only.
    Deny,
}

impl Flip {
    fn document(self) -> String {
        let ok = format!(
            r#"{{"name": "ok-readers", "action": "allow", "from": {{"ids": ["{ALICE}", "{BOB}"]}}, "to": {{"methods": ["GET"], "paths": ["/ok"]}}}}"#
        );
        let toggle = format!(
            r#"{{"name": "alice-toggles", "action": "allow", "from": {{"ids": ["{ALICE}"]}}, "to": {{"methods": ["GET"], "paths": ["/toggle"]}}}}"#
        );
        match self {
            Self::Allow => format!("{{\"rules\": [{ok}, {toggle}]}}\n"),
            Self::Deny => format!("{{\"rules\": [{ok}]}}\n"),
        }
    }

    fn of_rule_count(rules: usize) -> Self {
        match rules {
            2 => Self::Allow,
            1 => Self::Deny,
            other => panic!("no policy of this test has {other} rules"),
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Allow => Self::Deny,
            Self::Deny => Self::Allow,
        }
    }
}

/// One server, its files and what was last written to them.
struct Served {
    credentials: Credentials,
    source: FileSource,
    addr: SocketAddr,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    rotations: u64,
    last_chain: String,
}

// === the clients ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Http1,
    Http2,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// One client connection; the leaf the server presented on it.
struct Connection {
    sender: Sender,
    served: CertificateDer<'static>,
}

/// A workload calling the server: its SVID and a TLS connector that accepts only
/// the server's SPIFFE ID.
struct Workload {
    id: &'static str,
    _source: StaticSource,
    connector: TlsConnector,
    alpn_h1: TlsConnector,
}

impl Workload {
    fn new(ca: &DevCa, id: &'static str, ttl: Duration) -> Self {
        let svid = ca
            .mint_with(SvidParams::new(id.parse().unwrap()).ttl(ttl))
            .unwrap();
        let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle())).unwrap();
        let config = |alpn: &[&[u8]]| {
            let config = ClientConfigBuilder::new(
                source.identity(),
                IdMatcher::exact(SERVER_ID.parse().unwrap()),
            )
            .alpn_protocols(alpn.iter().map(|p| p.to_vec()).collect())
            .build()
            .unwrap();
            TlsConnector::from(Arc::new(config))
        };
        Self {
            id,
            connector: config(&[b"h2"]),
            alpn_h1: config(&[b"http/1.1"]),
            _source: source,
        }
    }

    async fn connect(&self, addr: SocketAddr, version: Version) -> Result<Connection, String> {
        let connector = match version {
            Version::Http1 => &self.alpn_h1,
            Version::Http2 => &self.connector,
        };
        let connect = async {
            let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let tls = connector
                .connect(ServerName::try_from("api.example.org").unwrap(), tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let served = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .cloned()
                .ok_or("no server certificate")?;
            let io = TokioIo::new(tls);
            let sender = match version {
                Version::Http1 => {
                    let (sender, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
                    tokio::spawn(conn);
                    Sender::H1(sender)
                }
                Version::Http2 => {
                    let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| e.to_string())?;
                    tokio::spawn(conn);
                    Sender::H2(sender)
                }
            };
            Ok(Connection { sender, served })
        };
        tokio::time::timeout(STEP_TIMEOUT, connect)
            .await
            .map_err(|_| "connecting timed out".to_owned())?
    }
}

impl Connection {
    async fn get(&mut self, path: &str) -> Result<StatusCode, String> {
        let send = async {
            let response = match &mut self.sender {
                Sender::H1(sender) => {
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let request = Request::get(path)
                        .header(http::header::HOST, "api.example.org")
                        .body(Empty::new())
                        .unwrap();
                    sender.send_request(request).await
                }
                Sender::H2(sender) => {
                    sender.ready().await.map_err(|e| e.to_string())?;
                    let request = Request::get(format!("https://api.example.org{path}"))
                        .body(Empty::new())
                        .unwrap();
                    sender.send_request(request).await
                }
            }
            .map_err(|e| e.to_string())?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok(status)
        };
        tokio::time::timeout(STEP_TIMEOUT, send)
            .await
            .map_err(|_| format!("GET {path} timed out"))?
    }
}

// === the tally ===

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    straddling: AtomicU64,
    handshakes: AtomicU64,
    failures: Mutex<Vec<String>>,
    served_leaves: Mutex<Vec<CertificateDer<'static>>>,
}

impl Tally {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }

    fn record_leaf(&self, leaf: &CertificateDer<'static>) {
        let mut leaves = self.served_leaves.lock().unwrap();
        if !leaves.contains(leaf) {
            leaves.push(leaf.clone());
        }
    }
}

/// Sends `GET /ok` and `GET /toggle` as `workload` and checks both answers.
async fn round(
    conn: &mut Connection,
    workload: &Workload,
    store: &PolicyStore,
    tally: &Tally,
) -> Result<(), String> {
    let status = conn.get("/ok").await?;
    tally.requests.fetch_add(1, Ordering::Relaxed);
    if status != StatusCode::OK {
        tally.fail(format!("{} GET /ok: {status}", workload.id));
    } else {
        tally.allowed.fetch_add(1, Ordering::Relaxed);
    }

    let before = store.status();
    let status = conn.get("/toggle").await?;
    let after = store.status();
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let allowed = match status {
        StatusCode::OK => true,
        StatusCode::FORBIDDEN => false,
        other => {
            tally.fail(format!("{} GET /toggle: {other}", workload.id));
            return Ok(());
        }
    };
    if allowed {
        tally.allowed.fetch_add(1, Ordering::Relaxed);
    } else {
        tally.denied.fetch_add(1, Ordering::Relaxed);
    }
    if before.generation() != after.generation() {
        tally.straddling.fetch_add(1, Ordering::Relaxed);
        if workload.id == BOB && allowed {
            tally.fail("bob was allowed GET /toggle across a reload".to_owned());
        }
        return Ok(());
    }
    let flip = Flip::of_rule_count(before.rule_count());
    let expected = workload.id == ALICE && flip == Flip::Allow;
    if allowed != expected {
        tally.fail(format!(
            "{} GET /toggle under policy generation {} ({flip:?}): {status}",
            workload.id,
            before.generation()
        ));
    }
    Ok(())
}

// === process resources ===

fn open_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as i64
}

fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

// === the soak ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_through_rotations_and_policy_reloads_never_fails_or_wrongly_allows() {
    let duration = soak_duration();
    let warm_up = (duration / 4).min(Duration::from_secs(10));
    let ca = DevCa::new(TRUST_DOMAIN.parse().unwrap()).unwrap();
    let bundle = ca.bundle_pem();
    let mint = || {
        ca.mint_pem(SvidParams::new(SERVER_ID.parse().unwrap()))
            .unwrap()
    };

    // The servers: identities and the policy from watched files.
    let policy_dir = TempDir::new("policy");
    let policy_path = policy_dir.join("policy.json");
    std::fs::write(&policy_path, Flip::Allow.document()).unwrap();
    let store = PolicyStore::new(Policy::load(&policy_path).unwrap());
    let _policy_watch = store.watch_file(&policy_path).unwrap();
    let mut servers = Vec::new();
    for layout in 0..2 {
        let (chain, key) = mint();
        let credentials = if layout == 0 {
            Credentials::kubernetes(&chain, &key, &bundle)
        } else {
            Credentials::helper(&chain, &key, &bundle)
        };
        let source = FileSource::builder(credentials.layout()).start().unwrap();
        let identity = source.identity();
        tokio::time::timeout(STEP_TIMEOUT, identity.ready())
            .await
            .unwrap();
        let app = Authorize::new(
            tower::service_fn(|_request: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(String::from("ok")))
            }),
            identity.clone(),
            store.clone(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder(identity.clone()).build().unwrap();
        let serving = tokio::spawn(server.serve(listener, app).into_future());
        servers.push(Served {
            credentials,
            source,
            addr,
            serving,
            rotations: 0,
            last_chain: chain,
        });
    }
    let addrs = [servers[0].addr, servers[1].addr];

    let ttl = duration + Duration::from_secs(3600);
    let workloads = Arc::new([Workload::new(&ca, ALICE, ttl), Workload::new(&ca, BOB, ttl)]);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();

    // Keep-alive clients: both workloads over both versions, one connection each,
    // spread over both servers.
    for (w, version, server) in [
        (0, Version::Http1, 0),
        (0, Version::Http2, 1),
        (1, Version::Http1, 1),
        (1, Version::Http2, 0),
    ] {
        let addr = addrs[server];
        let (workloads, store, tally, stop) = (
            Arc::clone(&workloads),
            store.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let workload = &workloads[w];
            let mut conn = match workload.connect(addr, version).await {
                Ok(conn) => conn,
                Err(err) => {
                    return tally.fail(format!("{} keep-alive connect: {err}", workload.id));
                }
            };
            tally.handshakes.fetch_add(1, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                if let Err(err) = round(&mut conn, workload, &store, &tally).await {
                    return tally.fail(format!("{} keep-alive {version:?}: {err}", workload.id));
                }
                tokio::time::sleep(KEEP_ALIVE_PAUSE).await;
            }
        }));
    }

    // New-connection clients: a fresh handshake for every round.
    for w in 0..2 {
        let (workloads, store, tally, stop) = (
            Arc::clone(&workloads),
            store.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            let workload = &workloads[w];
            let mut n = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                // Every server over every version, in turn.
                let version = if n.is_multiple_of(2) {
                    Version::Http1
                } else {
                    Version::Http2
                };
                let addr = addrs[usize::from(n % 4 >= 2)];
                n += 1;
                let mut conn = match workload.connect(addr, version).await {
                    Ok(conn) => conn,
                    Err(err) => {
                        tally.fail(format!("{} new connection: {err}", workload.id));
                        continue;
                    }
                };
                tally.handshakes.fetch_add(1, Ordering::Relaxed);
                tally.record_leaf(&conn.served);
                if let Err(err) = round(&mut conn, workload, &store, &tally).await {
                    tally.fail(format!("{} new connection {version:?}: {err}", workload.id));
                }
                drop(conn);
                tokio::time::sleep(NEW_CONNECTION_PAUSE).await;
            }
        }));
    }

    // Rotations, reloads and resource samples until the end.
    let started = Instant::now();
    let mut next_rotation = started + ROTATION_PERIOD;
    let mut next_reload = started + RELOAD_PERIOD;
    let mut rotations = 0_u64;
    let mut reloads = 0_u64;
    let mut flip = Flip::Allow;
    let mut baseline: Option<(i64, i64)> = None;
    let mut peak = (0_i64, 0_i64);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= next_rotation {
            next_rotation += ROTATION_PERIOD;
            let (chain, key) = mint();
            let served = &mut servers[usize::try_from(rotations % 2).unwrap()];
            served.credentials.rotate(&chain, &key, &bundle);
            served.rotations += 1;
            served.last_chain = chain;
            rotations += 1;
        }
        if now >= next_reload {
            next_reload += RELOAD_PERIOD;
            flip = flip.other();
            if reloads.is_multiple_of(2) {
                let staged = policy_dir.join("policy.json.new");
                std::fs::write(&staged, flip.document()).unwrap();
                std::fs::rename(&staged, &policy_path).unwrap();
            } else {
                std::fs::write(&policy_path, flip.document()).unwrap();
            }
            reloads += 1;
        }
        if started.elapsed() >= warm_up {
            let sample = (open_fds(), rss_kib());
            let base = *baseline.get_or_insert(sample);
            peak = (peak.0.max(sample.0 - base.0), peak.1.max(sample.1 - base.1));
        }
    }
    let end = (open_fds(), rss_kib());
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(STEP_TIMEOUT * 2, client)
            .await
            .expect("a client stops")
            .unwrap();
    }

    // The last rotation of each server and the last reload were picked up.
    for served in &servers {
        let last_leaf = CertificateDer::from_pem_slice(served.last_chain.as_bytes()).unwrap();
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let conn = workloads[0]
                .connect(served.addr, Version::Http2)
                .await
                .unwrap();
            if conn.served == last_leaf {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the last rotation was not picked up: {:?}",
                served.source.identity().status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Flip::of_rule_count(store.status().rule_count()) != flip {
        assert!(
            Instant::now() < deadline,
            "the last reload was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = baseline.expect("samples after the warm-up");
    let failures = tally.failures.lock().unwrap().clone();
    let generations: Vec<_> = servers
        .iter()
        .map(|s| s.source.identity().generation())
        .collect();
    eprintln!(
        "soak {duration:?} (warm-up {warm_up:?}): {} requests ({} allowed, {} denied, {} across a \
         reload), {} handshakes; {rotations} rotations -> identity generations {generations:?}, {} distinct \
         SVIDs served to new connections; {reloads} policy writes -> policy generation {}; \
         fds {} -> {} (peak +{}), VmRSS {} KiB -> {} KiB (peak +{} KiB); failures: {failures:?}",
        tally.requests.load(Ordering::Relaxed),
        tally.allowed.load(Ordering::Relaxed),
        tally.denied.load(Ordering::Relaxed),
        tally.straddling.load(Ordering::Relaxed),
        tally.handshakes.load(Ordering::Relaxed),
        tally.served_leaves.lock().unwrap().len(),
        store.status().generation(),
        base.0,
        end.0,
        peak.0,
        base.1,
        end.1,
        peak.1,
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(tally.denied.load(Ordering::Relaxed) > 0);
    assert!(tally.allowed.load(Ordering::Relaxed) > 0);
    // Every rotation and every policy write was published exactly once.
    for served in &servers {
        assert_eq!(served.source.identity().generation(), served.rotations + 1);
    }
    // The store starts at generation 1 and the watch's first read stores the file
    // once more (it cannot know the store already holds it).
    assert_eq!(store.status().generation(), reloads + 2);
    assert!(
        end.0 - base.0 <= MAX_FD_GROWTH,
        "open files grew from {} to {}",
        base.0,
        end.0
    );
    assert!(
        end.1 - base.1 <= MAX_RSS_GROWTH_KIB,
        "VmRSS grew from {} KiB to {} KiB",
        base.1,
        end.1
    );
    for served in servers {
        served.serving.abort();
    }
}
