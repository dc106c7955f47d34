//! The server side: authenticated connections for
//! `tonic::transport::Server::serve_with_incoming`, and the peer's identity in
//! every request.
//!
//! [`Incoming`] accepts connections from a listener and authenticates each client
//! with its X.509-SVID, as `zt_tower::Server` does (it is built on
//! [`zt_tower::Server::incoming`]):
//!
//! - **Handshakes never block accepts.** Each TLS handshake runs in a task of its
//!   own with a timeout ([`IncomingBuilder::handshake_timeout`]); at most
//!   [`IncomingBuilder::max_concurrent_handshakes`] run at once, and while they do,
//!   new connections wait in the kernel's backlog.
//! - **Silent clients are cut off.** A client must send the HTTP/2 preface within
//!   [`IncomingBuilder::header_read_timeout`] of its handshake; with
//!   [`server()`](crate::server()), streams, header lists and unanswered pings are
//!   bounded as on zt-tower's server.
//! - **HTTP/2 only.** ALPN offers `h2` alone; a client that offers ALPN without it
//!   fails the handshake instead of reaching a server that cannot answer it.
//! - **The peer travels with every request.** Each [`TlsConnection`]'s tonic
//!   `Connected` info is a [`ConnectInfo`] carrying the client's
//!   [`PeerIdentity`]; tonic puts it into every request's extensions, where
//!   [`peer`] and [`connect_info`] read it.
//! - **Connections end with the peer's SVID.** At the moment the client's
//!   certificate expires its connection is closed: reads see the end of the stream
//!   and writes fail, so tonic drops the connection and the client reconnects with
//!   its renewed SVID. tonic drives the HTTP/2 connection itself, so this close
//!   cannot be a graceful `GOAWAY`; calls still running at that moment fail with
//!   `UNAVAILABLE` (retryable). For graceful rotation well before expiry, set
//!   tonic's `Server::max_connection_age` below your SVID lifetime. Requests made
//!   after the expiry are refused in any case by [`Authorize`](crate::Authorize).
//!
//! ```
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let source = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! use zt_tonic::{AuthorizeLayer, Incoming, Policy, PolicyStore};
//!
//! let identity = source.identity();
//! let policy = PolicyStore::new(Policy::allow_patterns(["spiffe://example.org/web"])?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let incoming = Incoming::new(identity.clone(), listener)?;
//! assert!(incoming.local_addr().is_some());
//!
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! // zt_tonic::server(): tonic's server with zt-tower's HTTP/2 bounds.
//! let server = zt_tonic::server()
//!     .layer(AuthorizeLayer::new(identity, policy))
//!     .add_service(health)
//!     .serve_with_incoming(incoming);
//! # drop(server);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new()?.block_on(demo())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use zt_core::{Error, IdMatcher, Identity, PeerIdentity, Principal};
use zt_tower::{Listener, TlsIncoming};

/// Configures [`Incoming`]. Start from [`Incoming::builder`].
///
/// The TLS and handshake settings are zt-tower's server's, passed on to a
/// [`zt_tower::ServerBuilder`] and documented there with their defaults; ALPN is
/// always `h2` alone.
#[derive(Clone, Debug)]
pub struct IncomingBuilder {
    inner: zt_tower::ServerBuilder,
    preface_timeout: Duration,
}

// === impl IncomingBuilder ===

impl IncomingBuilder {
    /// Accepts only clients whose SPIFFE ID `matcher` matches, at the handshake,
    /// as [`ServerBuilder::authorize`](zt_tower::ServerBuilder::authorize); by
    /// default [`Authorize`](crate::Authorize) decides each call.
    #[must_use]
    pub fn authorize(mut self, matcher: IdMatcher) -> Self {
        self.inner = self.inner.authorize(matcher);
        self
    }

    /// Requests a client certificate without requiring one, as
    /// [`ServerBuilder::allow_anonymous`](zt_tower::ServerBuilder::allow_anonymous):
    /// a client that presents none is served as an anonymous peer, which
    /// [`Authorize`](crate::Authorize) lets through only where a policy rule with
    /// `from: {unauthenticated: true}` allows it; [`peer`] is `None` for it and
    /// [`is_anonymous`] `true`. A client whose certificate fails verification is
    /// refused at the handshake as without this call. Off by default.
    #[must_use]
    pub fn allow_anonymous(mut self) -> Self {
        self.inner = self.inner.allow_anonymous();
        self
    }

    /// Uses `provider` instead of the identity's crypto provider, as
    /// [`ServerBuilder::crypto_provider`](zt_tower::ServerBuilder::crypto_provider).
    #[must_use]
    pub fn crypto_provider(
        mut self,
        provider: Arc<zt_core::rustls::crypto::CryptoProvider>,
    ) -> Self {
        self.inner = self.inner.crypto_provider(provider);
        self
    }

    /// Offers TLS 1.3 only, as [`ServerBuilder::tls13_only`](zt_tower::ServerBuilder::tls13_only).
    #[must_use]
    pub fn tls13_only(mut self) -> Self {
        self.inner = self.inner.tls13_only();
        self
    }

    /// How long a client has to complete the TLS handshake, as
    /// [`ServerBuilder::handshake_timeout`](zt_tower::ServerBuilder::handshake_timeout).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.handshake_timeout(timeout);
        self
    }

    /// How many TLS handshakes may run at once, as
    /// [`ServerBuilder::max_concurrent_handshakes`](zt_tower::ServerBuilder::max_concurrent_handshakes).
    #[must_use]
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.inner = self.inner.max_concurrent_handshakes(max);
        self
    }

    /// Starts accepting from `listener`. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the requested protocol versions.
    pub fn build<L: Listener>(self, listener: L) -> Result<Incoming<L::Io, L::Addr>, Error> {
        let server = self.inner.alpn_protocols(vec![b"h2".to_vec()]).build()?;
        let local_addr = listener.local_addr().ok().and_then(|a| socket_addr(&a));
        Ok(Incoming {
            inner: server.incoming(listener),
            local_addr,
            preface_timeout: self.preface_timeout,
        })
    }

    /// How long a client may take after its handshake to send the HTTP/2
    /// connection preface (default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`](zt_tower::server::DEFAULT_HEADER_READ_TIMEOUT),
    /// as zt-tower's): a client silent after its handshake, or stalled inside the
    /// preface, is disconnected instead of holding its connection until its SVID
    /// expires. Past the preface, idle HTTP/2 clients are bounded by the keep-alive
    /// pings of [`server()`](crate::server()).
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.preface_timeout = timeout;
        self
    }
}

/// Authenticated connections for `tonic::transport::Server::serve_with_incoming`;
/// see the [module docs](self).
///
/// A `Stream` of [`TlsConnection`]s that never yields an error: connections whose
/// handshake fails are dropped and logged, and accept errors are retried. When
/// tonic drops it (at shutdown), the listener closes and handshakes in progress
/// are abandoned.
pub struct Incoming<I, A> {
    inner: TlsIncoming<I, A>,
    local_addr: Option<SocketAddr>,
    preface_timeout: Duration,
}

// === impl Incoming ===

impl Incoming<(), ()> {
    /// A builder for connections presenting `identity`'s SVID and verifying
    /// clients against its bundles, both read live on every handshake.
    pub fn builder(identity: Identity) -> IncomingBuilder {
        IncomingBuilder {
            inner: zt_tower::Server::builder(identity),
            preface_timeout: zt_tower::server::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }

    /// Starts accepting from `listener` with the defaults of [`IncomingBuilder`].
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// When the identity's crypto provider does not support TLS 1.3 or 1.2.
    pub fn new<L: Listener>(
        identity: Identity,
        listener: L,
    ) -> Result<Incoming<L::Io, L::Addr>, Error> {
        Self::builder(identity).build(listener)
    }
}

impl<I, A> Incoming<I, A> {
    /// The address the listener is bound to, when it is a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
}

impl<I, A: Any> Stream for Incoming<I, A> {
    type Item = Result<TlsConnection<I>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let local_addr = this.local_addr;
        let preface_timeout = this.preface_timeout;
        this.inner.poll_accept(cx).map(|accepted| {
            accepted.map(|accepted| {
                let info = ConnectInfo {
                    peer: accepted.peer,
                    remote_addr: socket_addr(&accepted.addr),
                    local_addr,
                };
                Ok(TlsConnection::new(accepted.stream, info, preface_timeout))
            })
        })
    }
}

impl<I, A> fmt::Debug for Incoming<I, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// The address of a TCP listener or connection; `None` for other transports.
fn socket_addr<A: Any>(addr: &A) -> Option<SocketAddr> {
    (addr as &dyn Any).downcast_ref::<SocketAddr>().copied()
}

/// What tonic learns about a connection and puts into every request's
/// extensions: the client's verified identity (or that it is anonymous) and,
/// over TCP, the addresses.
///
/// Read it with [`connect_info`], or the identity alone with [`peer`].
#[derive(Clone, Debug)]
pub struct ConnectInfo {
    peer: Principal,
    remote_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
}

// === impl ConnectInfo ===

impl ConnectInfo {
    /// The client's verified identity, as of the handshake; `None` for an
    /// anonymous client (see [`IncomingBuilder::allow_anonymous`]). Per-request
    /// re-verification is [`Authorize`](crate::Authorize)'s job.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.verified()
    }

    /// The client: verified, or anonymous.
    pub fn principal(&self) -> &Principal {
        &self.peer
    }

    /// The client's address, over TCP.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The server's address, over TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
}

/// The verified identity of the client that sent `request`: from the
/// [`ConnectInfo`] of a connection from [`Incoming`], or, for services served by
/// `zt_tower::Server`, from the [`PeerIdentity`] it puts into every request.
/// `None` when the request came through neither, or from an anonymous client
/// (see [`is_anonymous`]).
///
/// ```
/// # let ca = zt_core::dev::DevCa::new("example.org".parse()?)?;
/// # let svid = ca.mint(&"spiffe://example.org/web".parse()?)?;
/// # let identity = zt_tonic::PeerIdentity::from_chain(svid.chain().to_vec(), zt_core::PeerRole::Client)?;
/// let mut request = tonic::Request::new(());
/// assert!(zt_tonic::peer(&request).is_none());
///
/// request.extensions_mut().insert(identity); // done by zt-tonic or zt-tower
/// assert_eq!(zt_tonic::peer(&request).map(|p| p.id().as_str()), Some("spiffe://example.org/web"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn peer<T>(request: &tonic::Request<T>) -> Option<&PeerIdentity> {
    peer_in(request.extensions())
}

/// Whether `request` came from an anonymous client, one that presented no
/// certificate to a server that [allows them](IncomingBuilder::allow_anonymous):
/// marked so by [`Incoming`] or `zt_tower::Server`, never inferred from a
/// missing identity.
///
/// ```
/// let mut request = tonic::Request::new(());
/// assert!(!zt_tonic::is_anonymous(&request));
///
/// request.extensions_mut().insert(zt_core::AnonymousPeer::new()); // done by zt-tonic or zt-tower
/// assert!(zt_tonic::is_anonymous(&request));
/// assert!(zt_tonic::peer(&request).is_none());
/// ```
pub fn is_anonymous<T>(request: &tonic::Request<T>) -> bool {
    anonymous_in(request.extensions())
}

/// The [`ConnectInfo`] of the connection `request` arrived on, when it came
/// from [`Incoming`].
pub fn connect_info<T>(request: &tonic::Request<T>) -> Option<&ConnectInfo> {
    request.extensions().get::<ConnectInfo>()
}

/// The peer in request extensions, which tonic and http share.
pub(crate) fn peer_in(extensions: &http::Extensions) -> Option<&PeerIdentity> {
    match extensions.get::<ConnectInfo>() {
        Some(info) => info.peer(),
        None => extensions.get::<PeerIdentity>(),
    }
}

/// Whether the request extensions mark an anonymous client.
pub(crate) fn anonymous_in(extensions: &http::Extensions) -> bool {
    match extensions.get::<ConnectInfo>() {
        Some(info) => info.principal().is_anonymous(),
        None => {
            extensions.get::<PeerIdentity>().is_none()
                && extensions.get::<zt_core::AnonymousPeer>().is_some()
        }
    }
}

/// One authenticated connection from [`Incoming`]: the TLS stream, which closes
/// itself when the client's SVID expires, and its [`ConnectInfo`] for tonic.
pub struct TlsConnection<I> {
    stream: TlsStream<I>,
    info: ConnectInfo,
    /// Fires at the client's SVID expiry. Boxed: a connection is moved around
    /// before it is polled, and `Sleep` must stay pinned.
    expiry: Pin<Box<Sleep>>,
    expired: bool,
    /// Until the client has sent the HTTP/2 preface: the deadline for it, and how
    /// many bytes have arrived.
    preface: Option<(Pin<Box<Sleep>>, usize)>,
}

// === impl TlsConnection ===

impl<I> TlsConnection<I> {
    fn new(stream: TlsStream<I>, info: ConnectInfo, preface_timeout: Duration) -> Self {
        // An anonymous client has no SVID to expire: tonic's `max_connection_age`
        // bounds its connection.
        let left = info.peer.verified().map_or(ANONYMOUS_TIME_LEFT, |peer| {
            peer.time_left(SystemTime::now())
        });
        let expiry = Box::pin(tokio::time::sleep(left));
        Self {
            stream,
            info,
            expiry,
            expired: false,
            preface: Some((Box::pin(tokio::time::sleep(preface_timeout)), 0)),
        }
    }

    /// The connection's [`ConnectInfo`].
    pub fn info(&self) -> &ConnectInfo {
        &self.info
    }

    /// The TLS stream.
    pub fn get_ref(&self) -> &TlsStream<I> {
        &self.stream
    }

    /// Whether the client's SVID has expired, as of the last read; the connection
    /// is then closed.
    fn check_expiry(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.expired && self.expiry.as_mut().poll(cx).is_ready() {
            self.expired = true;
            tracing::debug!(
                peer = %self.info.peer,
                remote_addr = ?self.info.remote_addr,
                "peer SVID expired; closing the connection"
            );
        }
        self.expired
    }
}

impl<I> fmt::Debug for TlsConnection<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnection")
            .field("info", &self.info)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl<I> Connected for TlsConnection<I> {
    type ConnectInfo = ConnectInfo;

    fn connect_info(&self) -> ConnectInfo {
        self.info.clone()
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConnection<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The HTTP/2 server always has a read pending, so the expiry timer wakes
        // the connection task even when it is idle. Returning nothing is the end of
        // the stream.
        if this.check_expiry(cx) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some((deadline, seen)) = &mut this.preface {
            match &read {
                Poll::Ready(Ok(())) => {
                    *seen = seen.saturating_add(buf.filled().len().saturating_sub(before));
                    if *seen >= HTTP2_PREFACE_LEN {
                        this.preface = None;
                    }
                }
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    tracing::debug!(
                        peer = %this.info.peer,
                        remote_addr = ?this.info.remote_addr,
                        "client sent no HTTP/2 preface in time; closing"
                    );
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the header read timeout",
                    )));
                }
                _ => {}
            }
        }
        read
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConnection<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Still passed on after expiry: it sends TLS close_notify.
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// How long an anonymous client's connection lasts at most: as long as the
/// longest a verified client's is held (`PeerIdentity::time_left`).
const ANONYMOUS_TIME_LEFT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The length of the HTTP/2 connection preface (RFC 9113 §3.4).
const HTTP2_PREFACE_LEN: usize = 24;

/// A tonic server with the HTTP/2 bounds zt-tower's server has, from the same
/// defaults (`zt_tower::server::DEFAULT_*`): at most
/// [`DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS`](zt_tower::server::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS)
/// concurrent streams per connection (advertised in SETTINGS; more are refused
/// with `REFUSED_STREAM`), header lists of at most
/// [`DEFAULT_MAX_HEADER_LIST_SIZE`](zt_tower::server::DEFAULT_MAX_HEADER_LIST_SIZE)
/// bytes, and a keep-alive ping every
/// [`DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL`](zt_tower::server::DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL)
/// that a client must answer within as long. With [`Incoming`], which bounds the
/// time to the HTTP/2 preface, this is zt-tower's server for tonic. Start from it
/// instead of `tonic::transport::Server::builder()`; every bound can still be
/// changed with tonic's own methods, and `max_connection_age` set below the SVID
/// lifetime for graceful rotation.
///
/// ```
/// let server = zt_tonic::server();
/// # let _ = server;
/// ```
#[must_use]
pub fn server() -> tonic::transport::Server {
    use zt_tower::server::{
        DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL, DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        DEFAULT_MAX_HEADER_LIST_SIZE,
    };
    tonic::transport::Server::builder()
        .max_concurrent_streams(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(DEFAULT_MAX_HEADER_LIST_SIZE)
        .http2_keepalive_interval(Some(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL))
}

fn expired_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "peer SVID expired")
}
