//! [`ServerBuilder`]: the server's settings and their defaults, turned into the
//! TLS acceptor and the hyper connection builders a [`Server`] runs with.
//!
//! The defaults live here as `DEFAULT_*` constants, public so that other servers
//! (zt-tonic's) can apply the same bounds.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;
use zt_core::{Error, IdMatcher, Identity, tls};

use super::Server;
use super::accept::Inner;

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
    anonymous: bool,
    websockets: bool,
}

// === impl ServerBuilder ===

impl ServerBuilder {
    pub(super) fn new(identity: Identity) -> Self {
        Self {
            tls: tls::ServerConfigBuilder::new(identity.clone())
                .alpn_protocols(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
            identity,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
            max_connection_age: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            h2_max_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
            h2_keep_alive: Some(DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL),
            anonymous: false,
            websockets: false,
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

    /// Requests a client certificate without requiring one. Off by default: every
    /// client must present a valid SVID.
    ///
    /// A client that presents no certificate is served as an anonymous peer: its
    /// requests carry an [`AnonymousPeer`](crate::AnonymousPeer) instead of a
    /// [`PeerIdentity`](crate::PeerIdentity), the `Peer` (feature `axum`)
    /// extractor refuses them, and [`Authorize`](crate::Authorize) lets one
    /// through only when a policy rule with `from: {unauthenticated: true}`
    /// allows it (see `docs/policy.md`); a policy without such a rule refuses
    /// every anonymous request. A client that presents a certificate is verified
    /// as without this call and, when it fails, refused at the handshake with
    /// the same alert, never served as anonymous.
    ///
    /// Meant for clients that cannot hold an SVID, such as the kubelet's HTTP
    /// probes, on routes the policy opens to them alone.
    #[must_use]
    pub fn allow_anonymous(mut self) -> Self {
        self.tls = self.tls.allow_anonymous();
        self.anonymous = true;
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

    /// Serves governed WebSocket upgrades: HTTP/1.1 `Upgrade: websocket` and
    /// HTTP/2 extended `CONNECT` with `:protocol websocket` (RFC 8441, which
    /// this also advertises in `SETTINGS_ENABLE_CONNECT_PROTOCOL`).
    ///
    /// By default every `CONNECT` and every `Upgrade` is refused with `501 Not
    /// Implemented` before the application sees it, because the stream it would
    /// open carries traffic no per-request check sees. With this setting:
    ///
    /// - [`Authorize`](crate::Authorize) decides an upgrade request like any
    ///   other, as the `GET` that asks for the upgrade whichever HTTP version
    ///   carried it, and only an `allow` rule whose `to.upgrades` names
    ///   `websocket` admits it (docs/policy.md). Any other protocol and plain
    ///   `CONNECT` are still refused (`501`); a malformed upgrade (several
    ///   protocols, `Upgrade` without `Connection: upgrade`, a method other than
    ///   `GET`) is `400`.
    /// - A response that switches protocols goes out only if `Authorize`
    ///   allowed the request: any other switching response is replaced by `501`.
    /// - The upgraded stream is governed: the peer is re-verified and the request
    ///   decided again whenever the identity's snapshot or the policy changes,
    ///   and at the peer's SVID expiry. The first failure closes the connection
    ///   at once — on HTTP/2, with every stream of that peer on it
    ///   (docs/security.md).
    #[must_use]
    pub fn websockets(mut self) -> Self {
        self.websockets = true;
        self
    }

    /// The application protocols offered by ALPN, most preferred first (default
    /// `h2`, then `http/1.1`). A client that offers ALPN but none of these fails the
    /// handshake. [`Server::serve`] speaks only these two; a server that only feeds
    /// [`Server::incoming`] to another HTTP/2 stack (such as tonic) offers `h2` alone.
    #[must_use]
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.tls = self.tls.alpn_protocols(protocols);
        self
    }

    /// Builds the server.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the requested protocol versions.
    pub fn build(self) -> Result<Server, Error> {
        let config = self.tls.build()?;
        let mut http = auto::Builder::new(TokioExecutor::new());
        let h1_buffer = usize::try_from(self.max_header_list_size)
            .unwrap_or(usize::MAX)
            .max(MIN_HTTP1_BUFFER);
        http.http1()
            .timer(TokioTimer::new())
            // zt keeps the header-read deadline per connection (connection.rs):
            // hyper's would arm a timer and read once more for every request.
            .header_read_timeout(None)
            .max_buf_size(h1_buffer);
        let mut h2 = http.http2();
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_streams)
            .max_header_list_size(self.max_header_list_size)
            .keep_alive_interval(self.h2_keep_alive);
        if let Some(interval) = self.h2_keep_alive {
            h2.keep_alive_timeout(interval);
        }
        if self.websockets {
            h2.enable_connect_protocol();
        }
        Ok(Server {
            inner: Arc::new(Inner {
                acceptor: TlsAcceptor::from(Arc::new(config)),
                identity: self.identity,
                anonymous: self.anonymous,
                handshake_timeout: self.handshake_timeout,
                max_handshakes: self.max_handshakes,
                max_connection_age: self.max_connection_age,
                drain_timeout: self.drain_timeout,
                header_read_timeout: self.header_read_timeout,
                http1: http.clone().http1_only(),
                http2: http.http2_only(),
                websockets: self.websockets,
            }),
        })
    }
}
