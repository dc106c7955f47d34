//! Helpers for the file source tests: credential directories in the layouts real
//! issuers write, a zt echo server over real TLS on 127.0.0.1, and a zt client that
//! reports which leaf the server presented.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zt_core::dev::{DevCa, SvidParams};
use zt_core::rustls::pki_types::pem::PemObject;
use zt_core::rustls::pki_types::{CertificateDer, ServerName};
use zt_core::tls::{ClientConfigBuilder, ServerConfigBuilder};
use zt_core::{
    BundleSet, IdMatcher, Identity, IdentitySource, SpiffeId, StaticSource, TrustDomain, X509Svid,
};

/// Upper bound for any wait; a bug fails the test instead of hanging it.
pub(crate) const BOUND: Duration = Duration::from_secs(10);

pub(crate) const TRUST_DOMAIN: &str = "example.org";
pub(crate) const SERVER_ID: &str = "spiffe://example.org/api";
pub(crate) const CLIENT_ID: &str = "spiffe://example.org/client";

pub(crate) fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

pub(crate) fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

pub(crate) fn new_ca() -> DevCa {
    DevCa::new(td(TRUST_DOMAIN)).unwrap()
}

pub(crate) use zt_testkit::TempDir;

/// An SVID as files hold it, with its leaf to recognise it in a handshake.
#[derive(Clone)]
pub(crate) struct Minted {
    pub(crate) chain: String,
    pub(crate) key: String,
    pub(crate) leaf: CertificateDer<'static>,
}

pub(crate) fn mint(ca: &DevCa, svid_id: &str) -> Minted {
    mint_with(ca, SvidParams::new(id(svid_id)))
}

pub(crate) fn mint_with(ca: &DevCa, params: SvidParams) -> Minted {
    let (chain, key) = ca.mint_pem(params).unwrap();
    let leaf = CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    Minted { chain, key, leaf }
}

/// Writes `contents` to `path` in place: truncate, then write (what spiffe-helper does).
pub(crate) fn write_in_place(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

/// Writes `contents` next to `path` and renames it over `path` (an atomic writer).
pub(crate) fn write_renamed_over(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A directory as the Kubernetes atomic writer keeps it (Secret volumes,
/// csi-driver-spiffe): the files live in a timestamped directory, `..data` links to
/// it, and `tls.crt`, `tls.key`, `ca.crt` link through `..data`. An update writes a
/// new timestamped directory and renames a new `..data` link over the old one.
pub(crate) struct KubeDir {
    dir: TempDir,
    current: Option<PathBuf>,
    swaps: usize,
}

impl KubeDir {
    pub(crate) fn new(tag: &str, svid: &Minted, bundle_pem: &str) -> Self {
        let mut this = Self {
            dir: TempDir::new(tag),
            current: None,
            swaps: 0,
        };
        this.swap(svid, bundle_pem);
        for name in ["tls.crt", "tls.key", "ca.crt"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), this.dir.join(name)).unwrap();
        }
        this
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes a new set of files with one rename, as kubelet does.
    pub(crate) fn swap(&mut self, svid: &Minted, bundle_pem: &str) {
        self.swaps += 1;
        let name = format!("..2026_01_01_00_00_00.{}", self.swaps);
        let data = self.dir.join(&name);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &svid.chain).unwrap();
        std::fs::write(data.join("tls.key"), &svid.key).unwrap();
        std::fs::write(data.join("ca.crt"), bundle_pem).unwrap();
        let tmp_link = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp_link).unwrap();
        std::fs::rename(&tmp_link, self.dir.join("..data")).unwrap();
        if let Some(old) = self.current.replace(data) {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

/// A spiffe-helper directory: `svid.pem`, `svid_key.pem`, `svid_bundle.pem`.
pub(crate) struct HelperDir {
    pub(crate) dir: TempDir,
}

impl HelperDir {
    pub(crate) fn new(tag: &str, svid: &Minted, bundle_pem: &str) -> Self {
        let this = Self {
            dir: TempDir::new(tag),
        };
        this.write_all(svid, bundle_pem);
        this
    }

    pub(crate) fn chain(&self) -> PathBuf {
        self.dir.join("svid.pem")
    }

    pub(crate) fn key(&self) -> PathBuf {
        self.dir.join("svid_key.pem")
    }

    pub(crate) fn bundle(&self) -> PathBuf {
        self.dir.join("svid_bundle.pem")
    }

    /// Rewrites the three files in place, one after another, as spiffe-helper does.
    pub(crate) fn write_all(&self, svid: &Minted, bundle_pem: &str) {
        write_in_place(&self.chain(), &svid.chain);
        write_in_place(&self.key(), &svid.key);
        write_in_place(&self.bundle(), bundle_pem);
    }
}

/// A zt mTLS echo server on 127.0.0.1: echoes every line on every connection, until
/// dropped.
pub(crate) struct EchoServer {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    pub(crate) async fn start(identity: Identity) -> Self {
        let config = ServerConfigBuilder::new(identity).build().unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(BOUND, acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let mut lines = BufReader::new(tls);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match lines.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let stream = lines.get_mut();
                        if stream.write_all(line.as_bytes()).await.is_err()
                            || stream.flush().await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A zt client with an SVID of `ca`, trusting `bundles`, accepting any server of
/// the trust domain. Keeps its identity source alive.
pub(crate) struct Client {
    _source: StaticSource,
    pub(crate) connector: TlsConnector,
}

impl Client {
    pub(crate) fn new(ca: &DevCa, bundles: BundleSet) -> Self {
        Self::with_svid(ca.mint(&id(CLIENT_ID)).unwrap(), bundles)
    }

    /// A client presenting `svid`, trusting `bundles`.
    pub(crate) fn with_svid(svid: X509Svid, bundles: BundleSet) -> Self {
        let source = StaticSource::new(svid, bundles).unwrap();
        let config =
            ClientConfigBuilder::new(source.identity(), IdMatcher::trust_domain(td(TRUST_DOMAIN)))
                .build()
                .unwrap();
        Self {
            _source: source,
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A client of `ca` trusting only `ca`.
    pub(crate) fn of(ca: &DevCa) -> Self {
        Self::new(ca, BundleSet::new().with(ca.bundle()))
    }

    /// Connects and completes the handshake.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("api.example.org").unwrap();
        self.connector.connect(name, tcp).await
    }

    /// Connects, sends one line and reads its echo (which is where a TLS 1.3 client
    /// learns that the server refused its certificate), and returns the leaf the
    /// server presented.
    pub(crate) async fn served_leaf(
        &self,
        addr: SocketAddr,
    ) -> io::Result<CertificateDer<'static>> {
        let round_trip = async {
            let mut tls = BufReader::new(self.connect(addr).await?);
            echo(&mut tls, "ping").await?;
            let (_, conn) = tls.get_ref().get_ref();
            conn.peer_certificates()
                .and_then(|chain| chain.first())
                .cloned()
                .ok_or_else(|| io::Error::other("server presented no certificate"))
        };
        tokio::time::timeout(BOUND, round_trip)
            .await
            .unwrap_or_else(|_| Err(io::Error::other("round trip timed out")))
    }
}

/// Sends `message` as a line and checks that the same line comes back.
pub(crate) async fn echo(
    tls: &mut BufReader<TlsStream<TcpStream>>,
    message: &str,
) -> io::Result<()> {
    let stream = tls.get_mut();
    stream.write_all(format!("{message}\n").as_bytes()).await?;
    stream.flush().await?;
    let mut line = String::new();
    if tls.read_line(&mut line).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        ));
    }
    if line.trim_end() != message {
        return Err(io::Error::other(format!(
            "echo mismatch: sent {message:?}, got {line:?}"
        )));
    }
    Ok(())
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after [`BOUND`].
pub(crate) async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {BOUND:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Handshakes until the server presents `leaf`; panics after [`BOUND`].
pub(crate) async fn wait_until_served(
    client: &Client,
    addr: SocketAddr,
    leaf: &CertificateDer<'_>,
) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let served = client.served_leaf(addr).await;
        if served.as_ref().is_ok_and(|served| served == leaf) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {BOUND:?} waiting for the new SVID to be served; last: {served:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Write-only sysfs attributes: the kernel refuses to open them for reading with
/// EACCES, even for root.
pub(crate) const WRITE_ONLY_SYSFS: &[&str] = &[
    "/sys/bus/cpu/uevent",
    "/sys/bus/platform/uevent",
    "/sys/bus/pci/rescan",
    "/sys/kernel/mm/page_idle/bitmap",
];

/// Makes `path` unreadable for this process, or fails the test saying why it cannot.
///
/// `chmod 000` is the natural way, but root reads through it (CAP_DAC_OVERRIDE), and
/// tests often run as root. Then `path` becomes a symlink to a write-only sysfs
/// attribute: a regular file by `stat`, whose `open` for reading fails with EACCES
/// for root too, so zt's reader meets a real "permission denied" from the kernel.
pub(crate) fn make_unreadable(path: &Path) -> &'static str {
    use std::os::unix::fs::PermissionsExt as _;
    let denied = |p: &Path| matches!(std::fs::File::open(p), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if denied(path) {
        return "mode 000";
    }
    for attribute in WRITE_ONLY_SYSFS.iter().map(Path::new) {
        if std::fs::metadata(attribute).is_ok_and(|m| m.is_file()) && denied(attribute) {
            std::fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink(attribute, path).unwrap();
            return "symlink to a write-only sysfs attribute";
        }
    }
    panic!(
        "cannot make a file unreadable here: mode 000 does not stop this process (root) and \
         none of {WRITE_ONLY_SYSFS:?} refuses reads; this test needs one of them"
    );
}
