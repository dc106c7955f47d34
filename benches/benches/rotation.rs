//! Rotation pickup: the time from the rename that puts new credential files in
//! place to the first TLS handshake in which a zt server presents the new SVID.
//!
//! Two layouts, 20 rotations each: a Kubernetes `..data` symlink swap and a combined
//! key-and-chain file renamed over the old one. A client handshakes back to back
//! over 127.0.0.1 after each rename, so the figure includes the debounce (50 ms by
//! default), reading and validating the files, and one handshake's resolution.
//!
//! `cargo bench -p zt-benches --bench rotation`

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::pem::PemObject;
use zt_core::rustls::pki_types::{CertificateDer, ServerName};
use zt_core::tls::{ClientConfigBuilder, ServerConfigBuilder};
use zt_core::{
    BundleSet, Error, FileLayout, FileSource, IdMatcher, Identity, IdentitySource, StaticSource,
};

const ROTATIONS: usize = 20;
/// Give up on one rotation after this long: the goal is 1 s.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Quiet time between rotations, so each one is measured on its own.
const SETTLE: Duration = Duration::from_millis(200);
const SERVER_ID: &str = "spiffe://example.org/api";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!(
            "rotation pickup: rename of new files -> first handshake presenting the new SVID \
             ({ROTATIONS} rotations per layout, debounce {:?})",
            zt_core::FileSourceBuilder::DEFAULT_DEBOUNCE
        );
        let kube = measure(Layout::KubernetesSwap).await?;
        report("kubernetes ..data symlink swap", &kube);
        let combined = measure(Layout::CombinedRename).await?;
        report("combined file renamed over", &combined);
        let met = [&kube, &combined].iter().all(|samples| {
            percentile(samples, 50) <= Duration::from_millis(200)
                && percentile(samples, 100) <= Duration::from_secs(1)
        });
        println!(
            "goal p50 <= 200 ms, max <= 1 s: {}",
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

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> io::Result<Self> {
        let path = std::env::temp_dir().join(format!("zt-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The files of one layout, and how to stage and commit a rotation.
struct Files {
    dir: Scratch,
    layout: Layout,
    generation: usize,
}

impl Files {
    fn new(layout: Layout, ca: &DevCa, chain: &str, key: &str) -> io::Result<Self> {
        let mut files = Self {
            dir: Scratch::new(match layout {
                Layout::KubernetesSwap => "kube",
                Layout::CombinedRename => "combined",
            })?,
            layout,
            generation: 0,
        };
        std::fs::write(files.dir.0.join("bundle.pem"), ca.bundle_pem())?;
        files.stage(ca, chain, key)?;
        files.commit()?;
        if let Layout::KubernetesSwap = layout {
            for name in ["tls.crt", "tls.key", "ca.crt"] {
                std::os::unix::fs::symlink(format!("..data/{name}"), files.dir.0.join(name))?;
            }
        }
        Ok(files)
    }

    fn layout(&self) -> FileLayout {
        match self.layout {
            Layout::KubernetesSwap => FileLayout::kubernetes_tls(&self.dir.0),
            Layout::CombinedRename => FileLayout::combined(
                self.dir.0.join("credential.pem"),
                self.dir.0.join("bundle.pem"),
            ),
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
                    self.dir.0.join("..data_tmp"),
                )
            }
            Layout::CombinedRename => {
                std::fs::write(self.dir.0.join("credential.tmp"), format!("{key}{chain}"))
            }
        }
    }

    /// The one rename that publishes the staged files.
    fn commit(&self) -> io::Result<()> {
        match self.layout {
            Layout::KubernetesSwap => {
                std::fs::rename(self.dir.0.join("..data_tmp"), self.dir.0.join("..data"))
            }
            Layout::CombinedRename => std::fs::rename(
                self.dir.0.join("credential.tmp"),
                self.dir.0.join("credential.pem"),
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
        self.dir
            .0
            .join(format!("..2026_01_01_00_00_00.{generation}"))
    }
}

async fn measure(layout: Layout) -> BenchResult<Vec<Duration>> {
    let ca = DevCa::new("example.org".parse()?)?;
    let (chain, key) = ca.mint_pem(SvidParams::new(SERVER_ID.parse()?))?;
    let mut files = Files::new(layout, &ca, &chain, &key)?;
    let source = FileSource::builder(files.layout()).start()?;
    tokio::time::timeout(GIVE_UP, source.identity().ready()).await?;
    let addr = serve(source.identity()).await?;
    let client = Client::new(&ca)?;

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
    drop(source);
    Ok(samples)
}

/// A zt server that completes handshakes and closes.
async fn serve(identity: Identity) -> BenchResult<SocketAddr> {
    let acceptor = TlsAcceptor::from(Arc::new(ServerConfigBuilder::new(identity).build()?));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    Ok(addr)
}

struct Client {
    _source: StaticSource,
    connector: TlsConnector,
}

impl Client {
    fn new(ca: &DevCa) -> Result<Self, Error> {
        let svid = ca.mint(&"spiffe://example.org/client".parse()?)?;
        let source = StaticSource::new(svid, BundleSet::new().with(ca.bundle()))?;
        let config = ClientConfigBuilder::new(source.identity(), IdMatcher::any()).build()?;
        Ok(Self {
            _source: source,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    async fn served_leaf(&self, addr: SocketAddr) -> BenchResult<CertificateDer<'static>> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = self
            .connector
            .connect(ServerName::try_from("api.example.org")?, tcp)
            .await?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .cloned()
            .ok_or_else(|| "the server presented no certificate".into())
    }
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = (sorted.len().saturating_sub(1) * p) / 100;
    sorted.get(index).copied().unwrap_or_default()
}

fn report(name: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<32} p50 {:7.1} ms   p90 {:7.1} ms   max {:7.1} ms   min {:7.1} ms",
        ms(percentile(samples, 50)),
        ms(percentile(samples, 90)),
        ms(percentile(samples, 100)),
        ms(percentile(samples, 0)),
    );
}
