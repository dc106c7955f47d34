//! An mTLS HTTP server: accepts connections, authenticates each peer with its
//! X.509-SVID, and serves HTTP/1.1 and HTTP/2 with the peer's [`PeerIdentity`] in
//! every request's extensions.
//!
//! - **Handshakes never block accepts.** Each TLS handshake runs in its own task
//!   with a timeout ([`ServerBuilder::handshake_timeout`]). At most
//!   [`ServerBuilder::max_concurrent_handshakes`] run at once; while all slots are
//!   taken the server stops calling `accept`, so new connections wait in the
//!   kernel's listen backlog (and, once that is full, the kernel drops their SYNs and
//!   clients retry) instead of being accepted and dropped. A client that connects and
//!   sends nothing holds a slot until the handshake timeout, no longer; keep the
//!   limit well above the number of handshakes you expect at once.
//! - **Identity per connection, authorization per request.** The peer's
//!   [`PeerIdentity`] is built once per connection and inserted into every request;
//!   [`Authorize`](crate::Authorize) re-verifies it and decides each request.
//! - **Connections end with the peer's SVID.** A connection is closed gracefully
//!   when the peer's certificate expires ([`PeerIdentity::not_after`]) or, if set,
//!   when it reaches [`ServerBuilder::max_connection_age`]; in-flight requests get
//!   [`ServerBuilder::drain_timeout`] to finish.
//! - **Graceful shutdown.** [`Serve::with_graceful_shutdown`] stops accepting when
//!   the signal fires, lets in-flight requests finish for up to the drain timeout,
//!   then closes what is left.
//! - **Silent clients are cut off.** A client must send the first bytes of its
//!   first request within [`ServerBuilder::header_read_timeout`] of its handshake
//!   (they tell HTTP/1.1 from HTTP/2), and, over HTTP/1.1, every request head within
//!   the same timeout; an HTTP/2 client that stops answering pings is disconnected
//!   ([`ServerBuilder::http2_keep_alive_interval`]).
//! - **No tunnels, no protocol upgrades.** An upgraded stream (WebSocket, `CONNECT`)
//!   would leave per-request authorization and the SVID-expiry close behind, so the
//!   server answers `CONNECT` (HTTP/1.1 and HTTP/2) and every request with an
//!   `Upgrade` header with `501 Not Implemented` itself, without calling the
//!   application, and never switches protocols. HTTP/2 extended `CONNECT` is not
//!   enabled.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let source = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use zt_tower::{PeerIdentity, Server};
//!
//! let server = Server::builder(source.identity()).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let service = tower::service_fn(|req: Request<hyper::body::Incoming>| async move {
//!     let peer = req.extensions().get::<PeerIdentity>().map(|p| p.id().to_string());
//!     Ok::<_, Infallible>(Response::new(peer.unwrap_or_default()))
//! });
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(
//!     server
//!         .serve(listener, service)
//!         .with_graceful_shutdown(async { let _ = stopped.await; })
//!         .into_future(),
//! );
//! let _ = stop.send(());
//! assert!(serving.await?.is_ok(), "stopped cleanly");
//! # Ok(()) }
//! # tokio::runtime::Runtime::new()?.block_on(demo())?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod incoming;
mod listener;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower_service::Service;
use zt_core::{Error, IdMatcher, Identity, PeerIdentity, PeerRole, tls};

pub use incoming::{Accepted, TlsIncoming};
pub use listener::Listener;

use crate::BoxError;

/// Default for [`ServerBuilder::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServerBuilder::max_concurrent_handshakes`].
pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 1024;
/// Default for [`ServerBuilder::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServerBuilder::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ServerBuilder::http2_max_concurrent_streams`].
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default for [`ServerBuilder::max_header_list_size`].
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
/// Default for [`ServerBuilder::http2_keep_alive_interval`].
pub const DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// hyper refuses an HTTP/1 read buffer smaller than this.
const MIN_HTTP1_BUFFER: usize = 8192;
/// How long the accept loop pauses after an error that is not about one connection
/// (such as running out of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Configures a [`Server`]. Start from [`Server::builder`].
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    identity: Identity,
    tls: tls::ServerConfigBuilder,
    handshake_timeout: Duration,
    max_handshakes: usize,
    max_connection_age: Option<Duration>,
    drain_timeout: Duration,
    header_read_timeout: Duration,
    h2_max_streams: u32,
    max_header_list_size: u32,
    h2_keep_alive: Option<Duration>,
    alpn: Vec<Vec<u8>>,
}

// === impl ServerBuilder ===

impl ServerBuilder {
    fn new(identity: Identity) -> Self {
        Self {
            tls: tls::ServerConfigBuilder::new(identity.clone()),
            identity,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
            max_connection_age: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            h2_max_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            h2_keep_alive: Some(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// Accepts only clients whose SPIFFE ID `matcher` matches, at the handshake.
    /// By default any client with a valid SVID of a trusted trust domain completes
    /// the handshake and [`Authorize`](crate::Authorize) decides each request.
    #[must_use]
    pub fn authorize(mut self, matcher: IdMatcher) -> Self {
        self.tls = self.tls.authorize(matcher);
        self
    }

    /// Uses `provider` instead of the identity's crypto provider.
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        self.tls = self.tls.crypto_provider(provider);
        self
    }

    /// Offers TLS 1.3 only (the default offers TLS 1.3 and 1.2).
    #[must_use]
    pub fn tls13_only(mut self) -> Self {
        self.tls = self.tls.tls13_only();
        self
    }

    /// How long a client has to complete the TLS handshake (default 10 s).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How many TLS handshakes may run at once (default 1024, at least 1). While
    /// all are taken, new connections wait in the kernel's listen backlog.
    #[must_use]
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max.max(1);
        self
    }

    /// Closes connections gracefully once they are this old, even if the peer's
    /// SVID is still valid (default: only at the SVID's expiry).
    #[must_use]
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// How long in-flight requests may run once their connection is told to close:
    /// at shutdown, at the peer's SVID expiry, at the maximum age (default 10 s).
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long to wait for a request's headers (default 30 s).
    ///
    /// After the TLS handshake, the client has this long to send the bytes that
    /// tell HTTP/1.1 from HTTP/2 (the HTTP/2 connection preface), over either
    /// version. HTTP/1: each request head must then arrive within it, counted from
    /// when the connection is ready for the next request, so it is also the
    /// keep-alive idle timeout.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// HTTP/2: how many streams a client may open at once (default 100).
    #[must_use]
    pub fn http2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.h2_max_streams = max;
        self
    }

    /// The largest request head accepted, in bytes (default 16 KiB). HTTP/2
    /// advertises it as `SETTINGS_MAX_HEADER_LIST_SIZE`; HTTP/1 bounds its read
    /// buffer with it (hyper's minimum is 8 KiB).
    #[must_use]
    pub fn max_header_list_size(mut self, bytes: u32) -> Self {
        self.max_header_list_size = bytes;
        self
    }

    /// HTTP/2: how often to ping an idle client; a client that does not answer
    /// within the same interval is disconnected (default 20 s, `None` disables).
    #[must_use]
    pub fn http2_keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.h2_keep_alive = interval;
        self
    }

    /// The application protocols offered by ALPN, most preferred first (default
    /// `h2`, then `http/1.1`). A client that offers ALPN but none of these fails the
    /// handshake. [`Server::serve`] speaks only these two; a server that only feeds
    /// [`Server::incoming`] to another HTTP/2 stack (such as tonic) offers `h2` alone.
    #[must_use]
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = protocols;
        self
    }

    /// Builds the server.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the requested protocol versions.
    pub fn build(self) -> Result<Server, Error> {
        let config = self.tls.alpn_protocols(self.alpn).build()?;
        let mut http = auto::Builder::new(TokioExecutor::new());
        let h1_buffer = usize::try_from(self.max_header_list_size)
            .unwrap_or(usize::MAX)
            .max(MIN_HTTP1_BUFFER);
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(h1_buffer);
        let mut h2 = http.http2();
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_streams)
            .max_header_list_size(self.max_header_list_size)
            .keep_alive_interval(self.h2_keep_alive);
        if let Some(interval) = self.h2_keep_alive {
            h2.keep_alive_timeout(interval);
        }
        Ok(Server {
            inner: Arc::new(Inner {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                identity: self.identity,
                handshake_timeout: self.handshake_timeout,
                max_handshakes: self.max_handshakes,
                max_connection_age: self.max_connection_age,
                drain_timeout: self.drain_timeout,
                header_read_timeout: self.header_read_timeout,
                http1: http.clone().http1_only(),
                http2: http.http2_only(),
            }),
        })
    }
}

/// An mTLS HTTP/1.1 and HTTP/2 server for any tower service. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    acceptor: TlsAcceptor,
    identity: Identity,
    handshake_timeout: Duration,
    max_handshakes: usize,
    max_connection_age: Option<Duration>,
    drain_timeout: Duration,
    header_read_timeout: Duration,
    /// The version is told by the first bytes, which zt reads itself under a
    /// deadline: hyper-util's detection waits for them without one.
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

// === impl Server ===

impl Server {
    /// A builder for a server presenting `identity`'s SVID and verifying clients
    /// against its bundles, both read live on every handshake.
    pub fn builder(identity: Identity) -> ServerBuilder {
        ServerBuilder::new(identity)
    }

    /// The connections of `listener`, authenticated, for a server that serves
    /// them itself (zt-tonic feeds them to tonic). Handshakes run as they do in
    /// [`serve`](Self::serve): each in a task of its own, with the handshake timeout
    /// and at most the configured number at once. The HTTP settings and the
    /// connection deadlines of the builder do not apply.
    ///
    /// Must be called within a tokio runtime.
    pub fn incoming<L: Listener>(&self, listener: L) -> TlsIncoming<L::Io, L::Addr> {
        TlsIncoming::start(Arc::clone(&self.inner), listener)
    }

    /// Serves `service` on connections from `listener` until the returned future
    /// is dropped, or, with [`Serve::with_graceful_shutdown`], until a signal.
    ///
    /// `service` is any `tower::Service` for `http::Request<hyper::body::Incoming>`,
    /// `axum::Router` included; it is cloned for every request.
    pub fn serve<L, S>(&self, listener: L, service: S) -> Serve<L, S> {
        Serve {
            server: self.clone(),
            listener,
            service,
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("handshake_timeout", &self.inner.handshake_timeout)
            .field("max_concurrent_handshakes", &self.inner.max_handshakes)
            .field("max_connection_age", &self.inner.max_connection_age)
            .field("drain_timeout", &self.inner.drain_timeout)
            .finish_non_exhaustive()
    }
}

/// A server serving a service on a listener; `.await` it (it is an
/// [`IntoFuture`]) or add a shutdown signal with
/// [`with_graceful_shutdown`](Self::with_graceful_shutdown).
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L, S> {
    server: Server,
    listener: L,
    service: S,
}

impl<L, S> Serve<L, S> {
    /// Serves until `signal` completes, then stops accepting, lets in-flight
    /// requests finish for up to the drain timeout and closes what is left.
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<L, S, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

impl<L, S> fmt::Debug for Serve<L, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl<L, S, B> IntoFuture for Serve<L, S>
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self, std::future::pending()))
    }
}

/// A [`Serve`] with a shutdown signal; `.await` it.
#[must_use = "a server does nothing until awaited"]
pub struct WithGracefulShutdown<L, S, F> {
    serve: Serve<L, S>,
    signal: F,
}

impl<L, S, F> fmt::Debug for WithGracefulShutdown<L, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

impl<L, S, B, F> IntoFuture for WithGracefulShutdown<L, S, F>
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve, self.signal))
    }
}

/// What the accept loop tells the connections it spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish in-flight requests, take no new ones.
    Draining,
    /// The drain timeout passed: close now.
    Closing,
}

async fn run<L, S, B, F>(serve: Serve<L, S>, signal: F) -> io::Result<()>
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send,
{
    let Serve {
        server,
        mut listener,
        service,
    } = serve;
    let inner = server.inner;
    let (phase, _) = watch::channel(Phase::Serving);
    let handshakes = Arc::new(Semaphore::new(inner.max_handshakes));
    let mut signal = pin!(signal);
    if let Ok(addr) = listener.local_addr() {
        tracing::debug!(?addr, "serving");
    }

    while let Some((io, addr, permit)) = accept(&mut listener, &handshakes, signal.as_mut()).await {
        let connection = Connection {
            inner: Arc::clone(&inner),
            service: service.clone(),
            phase: phase.subscribe(),
        };
        tokio::spawn(connection.run(io, addr, permit));
    }

    drop(listener);
    let open = phase.receiver_count();
    tracing::info!(
        open_connections = open,
        "shutting down: accepting no more connections"
    );
    phase.send_replace(Phase::Draining);
    if tokio::time::timeout(inner.drain_timeout, phase.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = phase.receiver_count(),
            drain_timeout = ?inner.drain_timeout,
            "connections still busy after the drain timeout; closing them"
        );
        phase.send_replace(Phase::Closing);
        phase.closed().await;
    }
    Ok(())
}

/// Waits for a free handshake slot, then accepts the next connection; `None` once
/// `signal` completes or the slots are closed.
async fn accept<L: Listener>(
    listener: &mut L,
    handshakes: &Arc<Semaphore>,
    mut signal: Pin<&mut impl Future<Output = ()>>,
) -> Option<(L::Io, L::Addr, OwnedSemaphorePermit)> {
    loop {
        // Waiting for a slot before accepting leaves surplus connections in the
        // kernel's backlog rather than accepting them only to drop them.
        let permit = tokio::select! {
            biased;
            () = signal.as_mut() => return None,
            permit = Arc::clone(handshakes).acquire_owned() => permit.ok()?,
        };
        let accepted = tokio::select! {
            biased;
            () = signal.as_mut() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((io, addr)) => return Some((io, addr, permit)),
            Err(err) if is_connection_error(&err) => {
                tracing::debug!(error = %err, "connection failed before it was accepted");
            }
            Err(err) => {
                tracing::error!(error = %err, "accept failed; pausing before the next attempt");
                tokio::select! {
                    () = signal.as_mut() => return None,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// === impl Inner ===

impl Inner {
    /// Runs the TLS handshake on `io` within the handshake timeout and reads the
    /// peer's identity; `None`, with the reason logged, when either fails. `addr`,
    /// for the logs, is handed back.
    async fn handshake<I, A>(&self, io: I, addr: A) -> Option<(TlsStream<I>, PeerIdentity, A)>
    where
        I: AsyncRead + AsyncWrite + Unpin,
        A: fmt::Debug,
    {
        let accept = self.acceptor.accept(io).into_fallible();
        let tls = match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(tls)) => tls,
            Ok(Err((err, io))) => {
                match tls::Rejection::of(&err) {
                    Some(reason) => tracing::info!(?addr, %reason, "client certificate refused"),
                    None => tracing::debug!(?addr, error = %err, "TLS handshake failed"),
                }
                linger_close(io).await;
                return None;
            }
            Err(_) => {
                tracing::debug!(?addr, timeout = ?self.handshake_timeout, "TLS handshake timed out");
                return None;
            }
        };
        match PeerIdentity::from_connection(tls.get_ref().1, PeerRole::Client, &self.identity) {
            Ok(peer) => Some((tls, peer, addr)),
            Err(err) => {
                // The verifier accepted the chain, so this is not expected; fail closed.
                tracing::warn!(?addr, error = %err, "no usable peer identity after the handshake");
                None
            }
        }
    }
}

/// How long a refused client may take to read the alert and close.
const LINGER: Duration = Duration::from_millis(500);

/// Closes a connection whose handshake failed so that the client reads the alert.
///
/// A TLS 1.3 client learns that its certificate was refused only after it has sent
/// its Finished, often with a request behind it. Closing a socket with unread data
/// makes the kernel send a reset, which can overtake the alert, so the client would
/// report "connection reset" instead of the reason. Half-close, then discard what
/// the client still sends, for a short, bounded time.
async fn linger_close<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// One accepted connection, from handshake to close.
struct Connection<S> {
    inner: Arc<Inner>,
    service: S,
    phase: watch::Receiver<Phase>,
}

impl<S, B> Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn run<I, A>(mut self, io: I, addr: A, permit: OwnedSemaphorePermit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        A: fmt::Debug,
    {
        let inner = Arc::clone(&self.inner);
        let (tls, peer, addr) = tokio::select! {
            handshake = inner.handshake(io, addr) => match handshake {
                Some(authenticated) => authenticated,
                None => return,
            },
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => return,
        };
        drop(permit);
        tracing::debug!(?addr, peer = %peer.id(), "connection established");

        let now = Instant::now();
        let expiry = instant_at(peer.not_after(), now);
        let (close_at, close_reason) = match inner.max_connection_age {
            Some(age) if now + age < expiry => (now + age, "maximum connection age reached"),
            _ => (expiry, "peer SVID expired"),
        };

        // Without a deadline of its own, a client that sends nothing after its
        // handshake (or half the HTTP/2 preface) would hold the connection until
        // its SVID expires.
        let detect = tokio::time::timeout(inner.header_read_timeout, detect_version(tls));
        let (version, io) = tokio::select! {
            result = detect => match result {
                Ok(Ok(Some(detected))) => detected,
                Ok(Ok(None)) => return,
                Ok(Err(err)) => {
                    tracing::debug!(?addr, peer = %peer.id(), error = %err, "connection failed before its first request");
                    return;
                }
                Err(_) => {
                    tracing::debug!(
                        ?addr,
                        peer = %peer.id(),
                        timeout = ?inner.header_read_timeout,
                        "client sent no request after the handshake; closing"
                    );
                    return;
                }
            },
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => return,
        };

        if *self.phase.borrow_and_update() != Phase::Serving {
            return;
        }
        let signal = Arc::new(Signal::default());
        let watchdog = tokio::spawn(watchdog(
            Arc::clone(&signal),
            self.phase,
            close_at,
            close_reason,
            inner.drain_timeout,
            peer.clone(),
        ));
        let _watchdog = AbortOnDrop(watchdog);
        let service = ConnService {
            inner: self.service,
            peer: peer.clone(),
        };
        let http = match version {
            HttpVersion::Http1 => &inner.http1,
            HttpVersion::Http2 => &inner.http2,
        };
        let conn = http.serve_connection(TokioIo::new(io), service);
        let ended = Driven {
            conn,
            signal,
            registered: None,
            draining: false,
        }
        .await;
        match ended {
            Ended::Done(Ok(())) => {}
            Ended::Done(Err(err)) => {
                tracing::debug!(?addr, peer = %peer.id(), error = %err, "connection ended with an error");
            }
            Ended::Closed => {
                tracing::debug!(?addr, peer = %peer.id(), "connection closed");
            }
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpVersion {
    Http1,
    Http2,
}

/// Reads the first bytes of `io`, as many as it takes to tell the HTTP/2 preface
/// from anything else, and hands them back in front of the rest. `None` when the
/// client closed the connection first.
async fn detect_version<I>(mut io: I) -> io::Result<Option<(HttpVersion, Prefixed<I>)>>
where
    I: AsyncRead + Unpin,
{
    let mut buf = [0_u8; H2_PREFACE.len()];
    let mut filled = 0;
    let version = loop {
        let Some(unfilled) = buf.get_mut(filled..) else {
            break HttpVersion::Http2;
        };
        if unfilled.is_empty() {
            break HttpVersion::Http2;
        }
        let read = std::future::poll_fn(|cx| {
            let mut unfilled = ReadBuf::new(&mut *unfilled);
            Pin::new(&mut io)
                .poll_read(cx, &mut unfilled)
                .map_ok(|()| unfilled.filled().len())
        })
        .await?;
        if read == 0 {
            return Ok(None);
        }
        filled += read;
        let seen = buf.get(..filled).unwrap_or_default();
        if !H2_PREFACE.starts_with(seen) {
            break HttpVersion::Http1;
        }
    };
    let prefix = Bytes::copy_from_slice(buf.get(..filled).unwrap_or_default());
    Ok(Some((version, Prefixed { prefix, io })))
}

/// A stream with bytes already read from it put back in front.
struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// What a connection's watchdog tells the connection task. The task reads it with
/// one atomic load per poll, so serving requests costs nothing for deadlines and
/// shutdown that almost never come.
#[derive(Default)]
struct Signal {
    state: AtomicU8,
    waker: AtomicWaker,
}

const SERVE: u8 = 0;
const DRAIN: u8 = 1;
const CLOSE: u8 = 2;

impl Signal {
    fn raise(&self, state: u8) {
        self.state.fetch_max(state, Ordering::AcqRel);
        self.waker.wake();
    }
}

/// Waits for what ends a connection — its deadline (peer SVID expiry or maximum
/// age) or the server's shutdown — and tells the connection task to drain, then,
/// after the drain timeout, to close.
async fn watchdog(
    signal: Arc<Signal>,
    mut phase: watch::Receiver<Phase>,
    close_at: Instant,
    close_reason: &'static str,
    drain_timeout: Duration,
    peer: PeerIdentity,
) {
    tokio::select! {
        () = tokio::time::sleep_until(close_at) => {
            tracing::debug!(peer = %peer.id(), reason = close_reason, "draining connection");
        }
        changed = phase.wait_for(|phase| *phase != Phase::Serving) => {
            if !matches!(changed.as_deref(), Ok(Phase::Draining)) {
                signal.raise(CLOSE);
                return;
            }
        }
    }
    signal.raise(DRAIN);
    tokio::select! {
        () = tokio::time::sleep(drain_timeout) => {
            tracing::debug!(peer = %peer.id(), ?drain_timeout, "drain timeout passed; closing connection");
        }
        _ = phase.wait_for(|phase| *phase == Phase::Closing) => {}
    }
    signal.raise(CLOSE);
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a driven connection ended.
enum Ended<E> {
    /// hyper finished the connection.
    Done(Result<(), E>),
    /// The watchdog closed it.
    Closed,
}

pin_project! {
    /// Drives a hyper connection, starting its graceful shutdown or dropping it as
    /// the watchdog says.
    struct Driven<C> {
        #[pin]
        conn: C,
        signal: Arc<Signal>,
        // The waker last given to `signal`: the connection task's waker rarely
        // changes, so most polls skip registering it again (two atomic
        // read-modify-writes each).
        registered: Option<Waker>,
        draining: bool,
    }
}

impl<I, S, B> Future for Driven<auto::Connection<'_, I, S, TokioExecutor>>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    type Output = Ended<BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut state = this.signal.state.load(Ordering::Acquire);
        // The watchdog takes the registered waker when it raises the state, so
        // while the state is still SERVE the waker registered last is in place;
        // only a new waker or a raised state needs registering. Registered before
        // the state is read again, so a raise in between still wakes us.
        let current = this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if state != SERVE || !current {
            this.signal.waker.register(cx.waker());
            if !current {
                *this.registered = Some(cx.waker().clone());
            }
            state = this.signal.state.load(Ordering::Acquire);
        }
        match state {
            SERVE => {}
            DRAIN => {
                if !*this.draining {
                    *this.draining = true;
                    this.conn.as_mut().graceful_shutdown();
                }
            }
            _ => return Poll::Ready(Ended::Closed),
        }
        this.conn.poll(cx).map(Ended::Done)
    }
}

/// The monotonic instant at which wall-clock time `at` is reached, as seen `now`.
fn instant_at(at: SystemTime, now: Instant) -> Instant {
    match at.duration_since(SystemTime::now()) {
        // A deadline beyond what `Instant` can hold is as good as never.
        Ok(left) => now
            .checked_add(left)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
        Err(_) => now,
    }
}

/// The per-connection hyper service: puts the peer into each request, then calls a
/// clone of the user's tower service.
struct ConnService<S> {
    inner: S,
    peer: PeerIdentity,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
    B: http_body::Body,
{
    type Response = Response<Either<B, Empty<B::Data>>>;
    type Error = S::Error;
    type Future = ConnFuture<S, B>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // A tunnel or a switched protocol would carry traffic no request-level
        // check sees: refused here, whatever the application does with it.
        if request.method() == http::Method::CONNECT
            || request.headers().contains_key(http::header::UPGRADE)
        {
            tracing::debug!(peer = %self.peer.id(), method = request.method().as_str(), "tunnel or upgrade refused");
            let mut response = Response::new(Either::Right(Empty::new()));
            *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
            return ConnFuture::Refused {
                response: Some(response),
            };
        }
        request.extensions_mut().insert(self.peer.clone());
        ConnFuture::Served {
            future: Oneshot {
                service: self.inner.clone(),
                request: Some(request),
                future: None,
            },
        }
    }
}

pin_project! {
    /// The response future of [`ConnService`].
    #[project = ConnFutureProj]
    enum ConnFuture<S, B>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        B: http_body::Body,
    {
        Served { #[pin] future: Oneshot<S, Request<Incoming>> },
        Refused { response: Option<Response<Either<B, Empty<B::Data>>>> },
    }
}

impl<S, B> Future for ConnFuture<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    B: http_body::Body,
{
    type Output = Result<Response<Either<B, Empty<B::Data>>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnFutureProj::Served { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(Either::Left))),
            ConnFutureProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: there is nothing more to give.
                None => Poll::Pending,
            },
        }
    }
}

pin_project! {
    /// Drives a tower service to readiness, then calls it once.
    struct Oneshot<S, R>
    where
        S: Service<R>,
    {
        service: S,
        request: Option<R>,
        #[pin]
        future: Option<S::Future>,
    }
}

impl<S, R> Future for Oneshot<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(future) = this.future.as_mut().as_pin_mut() {
            return future.poll(cx);
        }
        if let Err(err) = std::task::ready!(this.service.poll_ready(cx)) {
            return Poll::Ready(Err(err));
        }
        let Some(request) = this.request.take() else {
            // Only reachable if polled again after an error; nothing left to do.
            return Poll::Pending;
        };
        this.future.set(Some(this.service.call(request)));
        match this.future.as_pin_mut() {
            Some(future) => future.poll(cx),
            None => Poll::Pending,
        }
    }
}
