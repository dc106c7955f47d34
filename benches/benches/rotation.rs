//! Rotation pickup under load: the time from the rename that puts new credential
//! files in place to the first TLS handshake in which a zt server presents the new
//! SVID, and the number of requests that failed meanwhile.
//!
//! Two layouts, 20 rotations each: a Kubernetes `..data` symlink swap and a combined
//! key-and-chain file renamed over the old one. The server is the full stack
//! ([`zt_tower::Server`] + [`zt_tower::AuthorizeLayer`]) on the watched files. While
//! the files rotate, clients keep it busy over 127.0.0.1: HTTP/1.1 keep-alive
//! connections (whose peer is re-verified on the first request after every
//! rotation) and clients opening a new connection for every request (which meet
//! each new SVID); every error or non-200 answer counts as a failed request. A
//! probe handshakes back to back after each rename, so the pickup time includes the
//! debounce (50 ms by default), reading and validating the files, and one
//! handshake's resolution.
//!
//! `cargo bench -p zt-benches --bench rotation`

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zt_testkit::TempDir;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tower::Layer;
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::pem::PemObject;
use zt_core::rustls::pki_types::{CertificateDer, ServerName};
use zt_core::tls::ClientConfigBuilder;
use zt_core::{
    BundleSet, Error, FileLayout, FileSource, IdMatcher, Identity, IdentitySource, StaticSource,
};
use zt_tower::{AuthorizeLayer, Policy, PolicyStore, Server};

const ROTATIONS: usize = 20;
/// Give up on one rotation after this long: the goal is 1 s.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Quiet time between rotations, so each one is measured on its own.
const SETTLE: Duration = Duration::from_millis(200);
const SERVER_ID: &str = "spiffe://example.org/api";
const CLIENT_ID: &str = "spiffe://example.org/client";
/// Load during the rotations: connections kept alive, and clients that open a
/// new connection for every request.
const KEEP_ALIVE_CLIENTS: usize = 4;
const NEW_CONNECTION_CLIENTS: usize = 2;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and timings
    // are not tests.
    if !std::env::args().any(|a| a == "--bench") {
        println!("rotation measures only under `cargo bench --bench rotation`");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "rotation pickup under load: rename of new files -> first handshake presenting \
             the new SVID ({ROTATIONS} rotations per layout, debounce {:?}; \
             {KEEP_ALIVE_CLIENTS} keep-alive and {NEW_CONNECTION_CLIENTS} new-connection \
             clients sending requests throughout)",
            zt_core::FileSourceBuilder::DEFAULT_DEBOUNCE
        );
        let kube = measure(Layout::KubernetesSwap).await?;
        report("kubernetes ..data symlink swap", &kube);
        let combined = measure(Layout::CombinedRename).await?;
        report("combined file renamed over", &combined);
        let met = [&kube, &combined].iter().all(|run| {
            percentile(&run.samples, 50) <= Duration::from_millis(200)
                && percentile(&run.samples, 100) <= Duration::from_secs(1)
                && run.failed == 0
        });
        println!(
            "goal p50 <= 200 ms, max <= 1 s, no failed request: {}",
            if met { "met" } else { "NOT met" }
        );
        Ok(())
    })
}

#[derive(Clone, Copy)]
enum Layout {
    KubernetesSwap,
    CombinedRename,
}

/// The files of one layout, and how to stage and commit a rotation.
struct Files {
    dir: TempDir,
    layout: Layout,
    generation: usize,
}

impl Files {
    fn new(layout: Layout, ca: &DevCa, chain: &str, key: &str) -> io::Result<Self> {
        let mut files = Self {
            dir: TempDir::try_new(match layout {
                Layout::KubernetesSwap => "kube",
                Layout::CombinedRename => "combined",
            })?,
            layout,
            generation: 0,
        };
        std::fs::write(files.dir.join("bundle.pem"), ca.bundle_pem())?;
        files.stage(ca, chain, key)?;
        files.commit()?;
        if let Layout::KubernetesSwap = layout {
            for name in ["tls.crt", "tls.key", "ca.crt"] {
                std::os::unix::fs::symlink(format!("..data/{name}"), files.dir.join(name))?;
            }
        }
        Ok(files)
    }

    fn layout(&self) -> FileLayout {
        match self.layout {
            Layout::KubernetesSwap => FileLayout::kubernetes_tls(self.dir.path()),
            Layout::CombinedRename => {
                FileLayout::combined(self.dir.join("credential.pem"), self.dir.join("bundle.pem"))
            }
        }
    }

    /// Writes the new files where the watcher does not look yet.
    fn stage(&mut self, ca: &DevCa, chain: &str, key: &str) -> io::Result<()> {
        self.generation += 1;
        match self.layout {
            Layout::KubernetesSwap => {
                let data = self.data_dir(self.generation);
                std::fs::create_dir(&data)?;
                std::fs::write(data.join("tls.crt"), chain)?;
                std::fs::write(data.join("tls.key"), key)?;
                std::fs::write(data.join("ca.crt"), ca.bundle_pem())?;
                std::os::unix::fs::symlink(
                    data.file_name().unwrap_or_default(),
                    self.dir.join("..data_tmp"),
                )
            }
            Layout::CombinedRename => {
                std::fs::write(self.dir.join("credential.tmp"), format!("{key}{chain}"))
            }
        }
    }

    /// The one rename that publishes the staged files.
    fn commit(&self) -> io::Result<()> {
        match self.layout {
            Layout::KubernetesSwap => {
                std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data"))
            }
            Layout::CombinedRename => std::fs::rename(
                self.dir.join("credential.tmp"),
                self.dir.join("credential.pem"),
            ),
        }
    }

    fn clean_up(&self) -> io::Result<()> {
        match self.layout {
            Layout::KubernetesSwap if self.generation > 1 => {
                std::fs::remove_dir_all(self.data_dir(self.generation - 1))
            }
            _ => Ok(()),
        }
    }

    fn data_dir(&self, generation: usize) -> PathBuf {
        self.dir.join(format!("..2026_01_01_00_00_00.{generation}"))
    }
}

/// The outcome of one layout's rotations.
struct Run {
    samples: Vec<Duration>,
    requests: u64,
    failed: u64,
}

async fn measure(layout: Layout) -> BenchResult<Run> {
    let ca = DevCa::new("example.org".parse()?)?;
    let (chain, key) = ca.mint_pem(SvidParams::new(SERVER_ID.parse()?))?;
    let mut files = Files::new(layout, &ca, &chain, &key)?;
    let source = FileSource::builder(files.layout()).start()?;
    tokio::time::timeout(GIVE_UP, source.identity().ready()).await?;
    let addr = serve(source.identity()).await?;
    let client = Arc::new(Client::new(&ca)?);
    let load = Load::start(&client, addr);

    let mut samples = Vec::with_capacity(ROTATIONS);
    for _ in 0..ROTATIONS {
        let (chain, key) = ca.mint_pem(SvidParams::new(SERVER_ID.parse()?))?;
        let leaf = CertificateDer::from_pem_slice(chain.as_bytes())?;
        files.stage(&ca, &chain, &key)?;
        let renamed = Instant::now();
        files.commit()?;
        loop {
            if client.served_leaf(addr).await? == leaf {
                samples.push(renamed.elapsed());
                break;
            }
            if renamed.elapsed() > GIVE_UP {
                return Err(format!("the new SVID was not served within {GIVE_UP:?}").into());
            }
        }
        files.clean_up()?;
        tokio::time::sleep(SETTLE).await;
    }
    let (requests, failed) = load.stop().await;
    drop(source);
    Ok(Run {
        samples,
        requests,
        failed,
    })
}

/// The full zt stack on `identity`: the server and per-request authorization.
async fn serve(identity: Identity) -> BenchResult<SocketAddr> {
    let policy = PolicyStore::new(Policy::allow_patterns([CLIENT_ID])?);
    let app = AuthorizeLayer::new(identity.clone(), policy).layer(tower::service_fn(
        |_request: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        },
    ));
    let server = Server::builder(identity).build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = server.serve(listener, app).await {
            eprintln!("server stopped: {err}");
        }
    });
    Ok(addr)
}

/// Clients sending requests until stopped, counting the ones that fail.
struct Load {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &Arc<Client>, addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for keep_alive in
            (0..KEEP_ALIVE_CLIENTS + NEW_CONNECTION_CLIENTS).map(|i| i < KEEP_ALIVE_CLIENTS)
        {
            let (client, stop) = (Arc::clone(client), Arc::clone(&stop));
            let (requests, failed) = (Arc::clone(&requests), Arc::clone(&failed));
            tasks.push(tokio::spawn(async move {
                let mut sender = None;
                while !stop.load(Ordering::Relaxed) {
                    let result = client.request(addr, &mut sender).await;
                    requests.fetch_add(1, Ordering::Relaxed);
                    if let Err(err) = result {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("  first failed request: {err}");
                        }
                        sender = None;
                    }
                    if !keep_alive {
                        sender = None;
                    }
                }
            }));
        }
        Self {
            stop,
            requests,
            failed,
            tasks,
        }
    }

    /// Stops the clients; returns the requests sent and how many failed.
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            if task.await.is_err() {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        (
            self.requests.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

struct Client {
    _source: StaticSource,
    connector: TlsConnector,
}

impl Client {
    fn new(ca: &DevCa) -> Result<Self, Error> {
        let svid = ca.mint(&CLIENT_ID.parse()?)?;
        let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle()))?;
        let config = ClientConfigBuilder::new(source.identity(), IdMatcher::any())
            .alpn_protocols(vec![b"http/1.1".to_vec()])
            .build()?;
        Ok(Self {
            _source: source,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn handshake(
        &self,
        addr: SocketAddr,
    ) -> BenchResult<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(self
            .connector
            .connect(ServerName::try_from("api.example.org")?, tcp)
            .await?)
    }

    async fn served_leaf(&self, addr: SocketAddr) -> BenchResult<CertificateDer<'static>> {
        let tls = self.handshake(addr).await?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .cloned()
            .ok_or_else(|| "the server presented no certificate".into())
    }

    /// One request on `sender`, connecting first when there is none.
    async fn request(&self, addr: SocketAddr, sender: &mut Option<Sender>) -> BenchResult<()> {
        let ready = match sender {
            Some(ready) => ready,
            None => {
                let tls = self.handshake(addr).await?;
                let (ready, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender.insert(ready)
            }
        };
        ready.ready().await?;
        let request = Request::get("/items")
            .header("host", "api.example.org")
            .body(Empty::new())?;
        let response = tokio::time::timeout(GIVE_UP, ready.send_request(request)).await??;
        let status = response.status();
        response.into_body().collect().await?;
        if !status.is_success() {
            return Err(format!("status {status}").into());
        }
        Ok(())
    }
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = (sorted.len().saturating_sub(1) * p) / 100;
    sorted.get(index).copied().unwrap_or_default()
}

fn report(name: &str, run: &Run) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let samples = &run.samples;
    println!(
        "{name:<32} p50 {:7.1} ms   p90 {:7.1} ms   max {:7.1} ms   min {:7.1} ms   \
         {} requests, {} failed",
        ms(percentile(samples, 50)),
        ms(percentile(samples, 90)),
        ms(percentile(samples, 100)),
        ms(percentile(samples, 0)),
        run.requests,
        run.failed,
    );
}
