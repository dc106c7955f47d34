//! Client CPU per request, measured in a process of its own: a hyper-util pooled
//! client over [`zt_tower::Connector`] (which re-verifies the server on every use
//! of a connection) or over plain tokio-rustls with a webpki server verifier.
//!
//! The bench binary runs itself as `client KIND DIR ADDR` ([`run`]); the parent
//! ([`ClientProcess`]) pins it to a core, waits until it has warmed its pool up,
//! and asks it for one measuring window: the child reads its own CPU time (all
//! threads, `/proc/self/task/*/schedstat`) and request count at `start` and at
//! `stop` and reports both. Both clients speak HTTP/1.1 on keep-alive connections
//! with [`WORKERS`] requests in flight, so after the warm-up no handshake runs.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use zt_benches::client::{ClientKind, ClientProcess};
//!
//! let dir = std::path::Path::new("/tmp/material"); // ca.pem, client.pem, client-key.pem
//! let exe = std::env::current_exe()?;
//! let addr = "127.0.0.1:8443".parse()?;
//! let mut client = ClientProcess::spawn(&exe, ClientKind::Zt, dir, addr, Some("0"))?;
//! let window = client.window(Duration::from_millis(300), Duration::from_secs(1))?;
//! println!("{:.2} µs CPU/request", window.cpu_ns_per_request() / 1e3);
//! # Ok(())
//! # }
//! ```

use std::error::Error;
use std::future::Future;
use std::io::{self, BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zt_core::{BundleSet, IdMatcher, IdentitySource, StaticSource, X509Bundle, X509Svid};

use crate::process::{Managed, cpu_ns, pinned};

type BoxError = Box<dyn Error + Send + Sync>;

/// Requests in flight, each on a pooled connection of its own.
pub const WORKERS: usize = 16;

/// The server's SPIFFE ID, which the zt client requires.
pub const SERVER_ID: &str = "spiffe://example.org/api";

/// The path requested; the server answers `ok`.
pub const PATH: &str = "/svc-5000/items";

/// Which client runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// `hyper_util` over `zt_tower::Connector`.
    Zt,
    /// `hyper_util` over tokio-rustls, webpki server verifier, the CA as only root.
    Plain,
}

impl ClientKind {
    /// The name on the command line.
    pub fn arg(self) -> &'static str {
        match self {
            Self::Zt => "zt",
            Self::Plain => "plain",
        }
    }

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zt => "zt client (hyper-util + Connector)",
            Self::Plain => "plain client (hyper-util + rustls)",
        }
    }
}

/// One measuring window of a client process.
#[derive(Clone, Copy, Debug)]
pub struct ClientWindow {
    /// Requests completed in the window.
    pub requests: u64,
    /// Requests that failed in the window.
    pub failed: u64,
    /// The client process's CPU time over the window, all threads.
    pub cpu_ns: u64,
    /// The window's length.
    pub elapsed: Duration,
}

impl ClientWindow {
    /// Client CPU per completed request (NaN without one).
    pub fn cpu_ns_per_request(&self) -> f64 {
        if self.requests == 0 {
            f64::NAN
        } else {
            self.cpu_ns as f64 / self.requests as f64
        }
    }
}

/// A client child process, ended on drop.
#[derive(Debug)]
pub struct ClientProcess {
    managed: Managed,
    stdout: BufReader<ChildStdout>,
}

impl ClientProcess {
    /// Starts `exe client KIND DIR ADDR` (on `core` when given); returns once its
    /// pool is warm.
    ///
    /// # Errors
    ///
    /// When it cannot start or reports no readiness.
    pub fn spawn(
        exe: &Path,
        kind: ClientKind,
        dir: &Path,
        addr: SocketAddr,
        core: Option<&str>,
    ) -> Result<Self, BoxError> {
        let mut child = pinned(exe, core)
            .args(["client", kind.arg()])
            .arg(dir)
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut this = Self {
            managed: Managed {
                child,
                stdin,
                nginx_workers: Vec::new(),
            },
            stdout,
        };
        let line = this.line()?;
        if line != "ready" {
            return Err(format!("client {} did not start: {line:?}", kind.arg()).into());
        }
        Ok(this)
    }

    fn line(&mut self) -> Result<String, BoxError> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_owned())
    }

    fn say(&mut self, what: &str) -> Result<(), BoxError> {
        let stdin = self.managed.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "{what}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Lets it run `warmup` longer, then measures it for `window`.
    ///
    /// # Errors
    ///
    /// When the process does not answer as expected.
    pub fn window(&mut self, warmup: Duration, window: Duration) -> Result<ClientWindow, BoxError> {
        std::thread::sleep(warmup);
        self.say("start")?;
        std::thread::sleep(window);
        self.say("stop")?;
        let line = self.line()?;
        let fields: Vec<u64> = line
            .strip_prefix("done ")
            .ok_or_else(|| format!("client answered {line:?}"))?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [requests, failed, cpu_ns, elapsed_ns] = fields[..] else {
            return Err(format!("client answered {line:?}").into());
        };
        Ok(ClientWindow {
            requests,
            failed,
            cpu_ns,
            elapsed: Duration::from_nanos(elapsed_ns),
        })
    }
}

/// The client process: `args` = `KIND DIR ADDR`. `DIR` holds `ca.pem`,
/// `client.pem` and `client-key.pem`.
///
/// # Errors
///
/// Bad arguments or material, or a client that cannot warm up.
pub fn run(args: &[String]) -> Result<(), BoxError> {
    let [kind, dir, addr] = args else {
        return Err("client KIND DIR ADDR".into());
    };
    let dir = Path::new(dir);
    let addr: SocketAddr = addr.parse()?;
    let ca = X509Bundle::from_pem("example.org".parse()?, &std::fs::read(dir.join("ca.pem"))?)?;
    let svid = X509Svid::from_pem(
        &std::fs::read(dir.join("client.pem"))?,
        &std::fs::read(dir.join("client-key.pem"))?,
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let uri: Uri = format!("https://127.0.0.1:{}{PATH}", addr.port()).parse()?;
    match kind.as_str() {
        "zt" => {
            let source = StaticSource::new(svid, BundleSet::new().with(ca))?;
            let connector = zt_tower::Connector::builder(
                source.identity(),
                IdMatcher::exact(SERVER_ID.parse()?),
            )
            .alpn_protocols(vec![b"http/1.1".to_vec()])
            .build()?;
            runtime.block_on(load(connector, uri))
        }
        "plain" => {
            let provider = zt_core::default_provider()?;
            let mut roots = RootCertStore::empty();
            for authority in ca.authorities() {
                roots.add(authority.clone())?;
            }
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_client_auth_cert(svid.chain().to_vec(), svid.private_key().clone_key())?;
            config.resumption = rustls::client::Resumption::disabled();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = PlainConnector {
                tls: TlsConnector::from(Arc::new(config)),
                addr,
            };
            runtime.block_on(load(connector, uri))
        }
        other => Err(format!("unknown client kind {other}").into()),
    }
}

/// Runs [`WORKERS`] request loops through one pooled client, answering the
/// parent's `start` and `stop` on another thread.
async fn load<C: Connect + Clone + Send + Sync + 'static>(
    connector: C,
    uri: Uri,
) -> Result<(), BoxError> {
    let client: Client<C, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector.clone());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Open the pool's connections and run the first requests before `ready`.
    let mut warm = Vec::new();
    for _ in 0..WORKERS {
        let client = client.clone();
        let uri = uri.clone();
        warm.push(tokio::spawn(async move { get(&client, uri).await }));
    }
    for task in warm {
        task.await??;
    }
    println!("ready");
    for _ in 0..WORKERS {
        let (client, uri, ok, failed) = (client.clone(), uri.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                match get(&client, uri.clone()).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    let control = std::thread::spawn(move || control(&ok, &failed));
    while !control.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control.join().map_err(|_| "control thread panicked")?
}

/// Answers `start` and `stop` from the parent; ends at `stop` or end of input.
fn control(ok: &AtomicU64, failed: &AtomicU64) -> Result<(), BoxError> {
    let me = [std::process::id()];
    let mut lines = io::stdin().lock().lines();
    let mut start = None;
    while let Some(line) = lines.next().transpose()? {
        match line.trim() {
            "start" => {
                start = Some((
                    std::time::Instant::now(),
                    cpu_ns(&me),
                    ok.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                ));
            }
            "stop" => {
                let (started, cpu, requests, fails) = start.ok_or("stop before start")?;
                let cpu = cpu_ns(&me).saturating_sub(cpu);
                let requests = ok.load(Ordering::Relaxed) - requests;
                let fails = failed.load(Ordering::Relaxed) - fails;
                let elapsed = started.elapsed().as_nanos();
                println!("done {requests} {fails} {cpu} {elapsed}");
                return Ok(());
            }
            other => return Err(format!("unknown command {other:?}").into()),
        }
    }
    Ok(())
}

async fn get<C: Connect + Clone + Send + Sync + 'static>(
    client: &Client<C, Empty<Bytes>>,
    uri: Uri,
) -> Result<(), BoxError> {
    let response = client.get(uri).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() || body != "ok" {
        return Err(format!("unexpected response {status}").into());
    }
    Ok(())
}

/// Dials the server at `addr` and runs a plain rustls handshake with it.
#[derive(Clone)]
struct PlainConnector {
    tls: TlsConnector,
    addr: SocketAddr,
}

impl tower_service::Service<Uri> for PlainConnector {
    type Response = PlainStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<PlainStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let (tls, addr) = (self.tls.clone(), self.addr);
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let tls = tls.connect(ServerName::try_from("localhost")?, tcp).await?;
            Ok(PlainStream(TokioIo::new(tls)))
        })
    }
}

/// A plain TLS connection for hyper-util's pool.
struct PlainStream(TokioIo<TlsStream<TcpStream>>);

impl Connection for PlainStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for PlainStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for PlainStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}
