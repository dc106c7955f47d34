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
//! - **No certificate, no entry — unless asked.** A client without a certificate
//!   fails the handshake. [`ServerBuilder::allow_anonymous`] lets it in as an
//!   anonymous peer: its requests carry an [`AnonymousPeer`](crate::AnonymousPeer)
//!   instead of a [`PeerIdentity`], and reach only what policy rules for anonymous
//!   peers allow. A certificate that fails verification is refused either way.
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
//!
//! [`PeerIdentity`]: crate::PeerIdentity
//! [`PeerIdentity::not_after`]: crate::PeerIdentity::not_after

mod accept;
mod builder;
mod connection;
mod detect;
mod govern;
mod incoming;
mod listener;
mod service;

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tower_service::Service;
use zt_core::Identity;

pub use builder::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL, DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_CONCURRENT_HANDSHAKES, DEFAULT_MAX_HEADER_LIST_SIZE, ServerBuilder,
};
pub(crate) use govern::{Approved, OwnedView, UpgradeTicket};
pub use incoming::{Accepted, TlsIncoming};
pub use listener::Listener;

use crate::BoxError;
use accept::{Inner, run};

/// An mTLS HTTP/1.1 and HTTP/2 server for any tower service. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
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
