//! An mTLS connector for hyper clients: presents our SVID and authorizes the server
//! by SPIFFE ID, never by hostname.
//!
//! [`Connector`] is a `tower::Service<Uri>` for
//! `hyper_util::client::legacy::Client`. It dials TCP, runs the TLS handshake with a
//! config from [`zt_core::tls::ClientConfigBuilder`] (which reads the live identity
//! on every handshake, so rotations apply to the next connection without a
//! rebuild), and exposes the server's [`PeerIdentity`] on the connection: the client
//! copies it into every response's extensions. Only `https` URIs are dialed; the host
//! only routes the connection.
//!
//! **The server is re-verified on every use of the connection**, as zt servers
//! re-verify their clients on every request: before each read and write,
//! [`ZtStream`] checks the server's [`PeerIdentity`] against the client's current
//! snapshot (one atomic load and a clock read while nothing changed). A server
//! whose SVID expired or whose trust domain's bundle no longer vouches for it gets
//! its connection failed with [`ServerNoLongerTrusted`] before another byte is
//! sent: a pooled connection carries no request to it, and the client dials anew
//! (and verifies the server anew) for the next one.
//!
//! ```
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let source = StaticSource::new(ca.mint(&"spiffe://example.org/web".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use zt_tower::{Connector, IdMatcher};
//!
//! let connector = Connector::new(source.identity(), IdMatcher::exact("spiffe://example.org/api".parse()?))?;
//! let client: Client<_, String> = Client::builder(TokioExecutor::new()).build(connector.clone());
//! // let response = client.get("https://api.internal:8443/".parse()?).await?;
//! // let server: Option<&zt_tower::PeerIdentity> = response.extensions().get();
//! # let _ = client;
//!
//! // zt never sends plaintext.
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let refused = rt.block_on(connector.connect(&"http://api.internal/".parse()?));
//! assert!(matches!(refused, Err(zt_tower::ConnectError::Uri { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zt_core::{Error, IdMatcher, Identity, PeerIdentity, PeerRole, SpiffeId, SvidError, tls};

use crate::metrics::{self, Side};

/// Default for [`ConnectorBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URI cannot be dialed.
    #[error("cannot dial {uri}: {reason}")]
    Uri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TCP connection failed.
    #[error("TCP connection failed: {0}")]
    Tcp(#[source] io::Error),
    /// zt refused the server's certificate: not a valid SVID of a trusted trust
    /// domain, or not an ID the connector accepts.
    #[error("server certificate refused: {0}")]
    ServerRefused(#[source] tls::Rejection),
    /// The server refused our certificate with a TLS alert during the handshake
    /// (with TLS 1.3 the refusal usually arrives on the first read instead: see
    /// [`ClientError`]).
    #[error("{0}")]
    RefusedByServer(#[source] tls::RefusedByPeer),
    /// The TLS handshake failed for another reason (the server does not speak
    /// TLS, or the connection broke).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The server's identity could not be read after the handshake.
    #[error("server identity unusable: {0}")]
    PeerIdentity(#[from] SvidError),
    /// Dialing and the handshake took longer than the connect timeout.
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
}

/// The server of an open connection no longer verifies: its SVID expired, or the
/// client's current bundle no longer vouches for it. The connection is failed
/// with this error (inside an [`io::Error`] of kind `PermissionDenied`) before
/// anything more is sent or read on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("server {server} no longer verifies: {reason}")]
pub struct ServerNoLongerTrusted {
    /// The server's SPIFFE ID.
    pub server: SpiffeId,
    /// Why it no longer verifies.
    #[source]
    pub reason: SvidError,
}

/// Configures a [`Connector`]. Start from [`Connector::builder`].
#[derive(Clone, Debug)]
pub struct ConnectorBuilder {
    tls: tls::ClientConfigBuilder,
    identity: Identity,
    timeout: Duration,
}

// === impl ConnectorBuilder ===

impl ConnectorBuilder {
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

    /// Bounds dialing plus the TLS handshake (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The application protocols offered by ALPN, most preferred first (default
    /// `h2`, then `http/1.1`). A client that speaks only HTTP/2, such as a gRPC
    /// channel, offers `h2` alone, so that a server without it fails the handshake
    /// instead of answering in HTTP/1.1.
    #[must_use]
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.tls = self.tls.alpn_protocols(protocols);
        self
    }

    /// Builds the connector; by default it offers HTTP/2 and HTTP/1.1 by ALPN.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the protocol versions.
    pub fn build(self) -> Result<Connector, Error> {
        let config: ClientConfig = self.tls.build()?;
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(config)),
            identity: self.identity,
            timeout: self.timeout,
        })
    }
}

/// Dials `https` URIs with mutual TLS for `hyper_util::client::legacy::Client`.
/// Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    identity: Identity,
    timeout: Duration,
}

// === impl Connector ===

impl Connector {
    /// A connector presenting `identity`'s SVID and accepting servers `server`
    /// matches, with the defaults of [`ConnectorBuilder`].
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the protocol versions.
    pub fn new(identity: Identity, server: IdMatcher) -> Result<Self, Error> {
        Self::builder(identity, server).build()
    }

    /// A builder for a connector presenting `identity`'s SVID and accepting
    /// servers `server` matches.
    pub fn builder(identity: Identity, server: IdMatcher) -> ConnectorBuilder {
        ConnectorBuilder {
            tls: tls::ClientConfigBuilder::new(identity.clone(), server)
                .alpn_protocols(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
            identity,
            timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Dials `uri` and completes the handshake.
    ///
    /// # Errors
    ///
    /// See [`ConnectError`].
    pub async fn connect(&self, uri: &Uri) -> Result<ZtStream, ConnectError> {
        let (host, port) = target(uri)?;
        let server_name = server_name(&host, uri)?;
        // A timeout counts as a failed handshake only once TCP is connected.
        let mut dialed = false;
        let connect = async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(ConnectError::Tcp)?;
            dialed = true;
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "could not set TCP_NODELAY");
            }
            let tls = self.tls.connect(server_name, tcp).await.map_err(|err| {
                metrics::handshake_rejected(Side::Client, Some(&err));
                if let Some(reason) = tls::Rejection::of(&err) {
                    ConnectError::ServerRefused(reason)
                } else if let Some(refused) = tls::RefusedByPeer::of(&err) {
                    ConnectError::RefusedByServer(refused)
                } else {
                    ConnectError::Handshake(err)
                }
            })?;
            let peer =
                PeerIdentity::from_connection(tls.get_ref().1, PeerRole::Server, &self.identity)
                    .inspect_err(|err| metrics::handshake_rejected(Side::Client, Some(err)))?;
            Ok(ZtStream {
                io: TokioIo::new(tls),
                peer,
                identity: self.identity.clone(),
                untrusted: None,
            })
        };
        let connected = tokio::time::timeout(self.timeout, connect).await;
        if connected.is_err() && dialed {
            metrics::handshake_rejected(Side::Client, None);
        }
        connected.map_err(|_| ConnectError::Timeout(self.timeout))?
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("connect_timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = ZtStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<ZtStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&uri).await })
    }
}

fn target(uri: &Uri) -> Result<(String, u16), ConnectError> {
    let refuse = |reason| ConnectError::Uri {
        uri: uri.to_string(),
        reason,
    };
    match uri.scheme_str() {
        Some("https") => {}
        Some(_) => {
            return Err(refuse(
                "only https URIs are dialed; zt never sends plaintext",
            ));
        }
        None => return Err(refuse("no scheme; use an https URI")),
    }
    let host = uri.host().ok_or_else(|| refuse("no host"))?;
    // `Uri::host` keeps the brackets of an IPv6 literal; the resolver wants them off.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok((host.to_owned(), uri.port_u16().unwrap_or(443)))
}

fn server_name(host: &str, uri: &Uri) -> Result<ServerName<'static>, ConnectError> {
    // The name is for SNI and routing only; the server is authorized by SPIFFE ID.
    ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::Uri {
        uri: uri.to_string(),
        reason: "host is neither a DNS name nor an IP address",
    })
}

/// An established mTLS connection, with the server's verified identity, which is
/// re-verified before every read and write (see the [module docs](self)).
pub struct ZtStream {
    io: TokioIo<TlsStream<TcpStream>>,
    peer: PeerIdentity,
    /// The client's identity, whose current bundles the server must verify under.
    identity: Identity,
    /// Set once the server stopped verifying; the connection stays failed.
    untrusted: Option<ServerNoLongerTrusted>,
}

// === impl ZtStream ===

impl ZtStream {
    /// The server's verified identity.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.io.inner().get_ref().1.alpn_protocol()
    }

    /// The TLS stream, for use outside hyper.
    pub fn into_inner(self) -> TlsStream<TcpStream> {
        self.io.into_inner()
    }
}

impl ZtStream {
    /// Fails closed once the server no longer verifies under today's snapshot.
    fn check(&mut self) -> io::Result<()> {
        if self.untrusted.is_none()
            && let Err(reason) = self.peer.reverify(&self.identity, SystemTime::now())
        {
            let err = ServerNoLongerTrusted {
                server: self.peer.id().clone(),
                reason,
            };
            tracing::warn!(server = %err.server, reason = %err.reason, "server no longer verifies; failing its connection");
            self.untrusted = Some(err);
        }
        match &self.untrusted {
            Some(err) => Err(io::Error::new(io::ErrorKind::PermissionDenied, err.clone())),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for ZtStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZtStream")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connection for ZtStream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.peer.clone());
        if self.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for ZtStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            // With TLS 1.3 the server judges our certificate after our handshake
            // completed: its refusal is the first thing we read. Say so in zt's words.
            Poll::Ready(Err(err)) => Poll::Ready(Err(match tls::RefusedByPeer::of(&err) {
                Some(refused) => io::Error::new(io::ErrorKind::PermissionDenied, refused),
                None => err,
            })),
            other => other,
        }
    }
}

impl Write for ZtStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }
}

/// Why a request through a zt client failed, in zt's words.
///
/// hyper-util's client and tonic report a failed connection as `client error
/// (Connect)` or `transport error`, with zt's reason buried in the source chain.
/// `ClientError` finds it and leads with it: the server's certificate refused by
/// zt and why, the server refusing ours (its alert and what it means), a server
/// that no longer verifies on a pooled connection, a timeout. The original error
/// stays available as the [source](std::error::Error::source).
///
/// Over HTTP/2, h2 keeps only the kind and text of an I/O error that ends a
/// connection: a refusal that arrives there (the server's alert after a TLS 1.3
/// handshake, a pooled server that no longer verifies) keeps zt's text in the
/// Display, but its [kind](ClientError::kind) is [`ClientErrorKind::Other`].
///
/// ```
/// # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
/// # let ca = DevCa::new("example.org".parse()?)?;
/// # let source = StaticSource::new(ca.mint(&"spiffe://example.org/web".parse()?)?, BundleSet::new().with(ca.bundle()))?;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use zt_tower::{ClientError, ClientErrorKind, Connector, IdMatcher};
///
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # rt.block_on(async {
/// let connector = Connector::new(source.identity(), IdMatcher::exact("spiffe://example.org/api".parse()?))?;
/// let client: Client<_, String> = Client::builder(TokioExecutor::new()).build(connector);
/// // Nothing listens on port 1.
/// let err = client.get("https://127.0.0.1:1/".parse()?).await.map_err(ClientError::from).unwrap_err();
/// assert_eq!(err.kind(), ClientErrorKind::Connect);
/// assert!(err.to_string().starts_with("TCP connection failed"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ClientError {
    kind: ClientErrorKind,
    message: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// What kind of failure a [`ClientError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientErrorKind {
    /// zt refused the server's certificate: not a valid SVID of a trusted trust
    /// domain, or not an ID the connector accepts ([`ConnectError::ServerRefused`]).
    ServerRefused,
    /// The server refused our certificate ([`tls::RefusedByPeer`]).
    RefusedByServer,
    /// The server of a pooled connection no longer verifies
    /// ([`ServerNoLongerTrusted`]).
    ServerNoLongerTrusted,
    /// Connecting took longer than the connect timeout.
    Timeout,
    /// The URI cannot be dialed, the TCP connection failed, or the handshake
    /// broke for a reason zt did not raise.
    Connect,
    /// Anything else: an HTTP or gRPC error after the connection was up.
    Other,
}

impl ClientError {
    /// Classifies `err` by the zt error in its source chain.
    pub fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let source = err.into();
        let (kind, message) = classify(&*source);
        Self {
            kind,
            message,
            source,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ClientErrorKind {
        self.kind
    }

    /// The original error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync> {
        self.source
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl From<hyper_util::client::legacy::Error> for ClientError {
    fn from(err: hyper_util::client::legacy::Error) -> Self {
        Self::new(err)
    }
}

/// The errors of `err`'s source chain, each `io::Error`'s inner error included
/// (`io::Error::source` skips it).
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    let mut next = Some(err);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<io::Error>() {
            Some(io_err) => match io_err.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => None,
            },
            None => current.source(),
        };
        Some(current)
    })
}

fn classify(err: &(dyn std::error::Error + 'static)) -> (ClientErrorKind, String) {
    let mut innermost = err.to_string();
    for cause in chain(err) {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            let kind = match connect {
                ConnectError::ServerRefused(_) => ClientErrorKind::ServerRefused,
                ConnectError::RefusedByServer(_) => ClientErrorKind::RefusedByServer,
                ConnectError::Timeout(_) => ClientErrorKind::Timeout,
                _ => ClientErrorKind::Connect,
            };
            let mut message = connect.to_string();
            if let ConnectError::Tcp(io) | ConnectError::Handshake(io) = connect {
                // The TCP or TLS error's own causes, without repeating them.
                for inner in chain(io).skip(1) {
                    let text = inner.to_string();
                    if !message.contains(&text) {
                        message.push_str(": ");
                        message.push_str(&text);
                    }
                }
            }
            return (kind, message);
        }
        if let Some(refused) = cause.downcast_ref::<tls::RefusedByPeer>() {
            return (ClientErrorKind::RefusedByServer, refused.to_string());
        }
        if let Some(refused) = tls::RefusedByPeer::of(cause) {
            return (ClientErrorKind::RefusedByServer, refused.to_string());
        }
        if let Some(gone) = cause.downcast_ref::<ServerNoLongerTrusted>() {
            return (ClientErrorKind::ServerNoLongerTrusted, gone.to_string());
        }
        innermost = cause.to_string();
    }
    let outer = err.to_string();
    let message = if innermost == outer {
        outer
    } else {
        format!("{outer}: {innermost}")
    };
    (ClientErrorKind::Other, message)
}
