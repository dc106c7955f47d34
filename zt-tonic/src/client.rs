//! The client side: tonic channels over mutual TLS that authorize the server by
//! SPIFFE ID, never by hostname.
//!
//! [`Connector`] dials for `tonic::transport::Endpoint::connect_with_connector`:
//! TCP, then a TLS handshake presenting our SVID and accepting only a server whose
//! SVID verifies against our bundles and whose SPIFFE ID the matcher accepts. It
//! is `zt_tower::Connector` offering HTTP/2 alone by ALPN, as gRPC needs. It
//! reads the live identity on every handshake, so a rotated SVID or bundle is used
//! from the next connection on — a channel reconnects with it whenever its
//! connection closes (a server closes it at our SVID's expiry).
//!
//! [`endpoint`] makes the tonic `Endpoint` to dial: it takes an `https://` URI
//! and keeps `https` as the calls' `:scheme`, but gives tonic a connection URI
//! its own TLS leaves alone, so the channel works whether or not some crate in the
//! application turned on one of tonic's TLS features.
//!
//! ```
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let source = StaticSource::new(ca.mint(&"spiffe://example.org/web".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! use std::time::Duration;
//! use zt_tonic::{Connector, IdMatcher};
//! # let rt = tokio::runtime::Runtime::new()?;
//! # let _runtime = rt.enter();
//!
//! let connector = Connector::new(source.identity(), IdMatcher::exact("spiffe://example.org/api".parse()?))?;
//! let endpoint = zt_tonic::endpoint("https://api.internal:8443")?.timeout(Duration::from_secs(5));
//! let channel = endpoint.connect_with_connector_lazy(connector.clone());
//! // let mut client = GreeterClient::new(channel);
//! # let _ = channel;
//!
//! // zt never sends plaintext.
//! assert!(zt_tonic::endpoint("http://api.internal:8080").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http::uri::{PathAndQuery, Scheme};
use tonic::transport::{Channel, Endpoint};
use zt_core::{Error, IdMatcher, Identity};
use zt_tower::{ConnectError, ZtStream};

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The URI cannot be dialed.
    #[error("cannot dial {uri}: {reason}")]
    Uri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Connecting failed: the source chain holds a [`ConnectError`] when the TCP
    /// connection or the TLS handshake failed.
    #[error("connecting failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A tonic endpoint for `uri`, an `https://host[:port]` URI, to be dialed with a
/// [`Connector`]; configure timeouts, keepalive and the rest on it as usual.
///
/// # Errors
///
/// When `uri` is not a valid `https` URI with a host.
pub fn endpoint(uri: impl AsRef<str>) -> Result<Endpoint, ChannelError> {
    let given = uri.as_ref();
    let refuse = |reason| ChannelError::Uri {
        uri: given.to_owned(),
        reason,
    };
    let uri: Uri = given.parse().map_err(|_| refuse("not a valid URI"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(_) => {
            return Err(refuse(
                "only https URIs are dialed; zt never sends plaintext",
            ));
        }
        None => return Err(refuse("no scheme; use an https URI")),
    }
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(refuse("no host"));
    };
    // tonic wraps an `https` connection URI in its own TLS when any of its TLS
    // features is on anywhere in the build, and fails for want of a TLS config.
    // The connection URI is therefore `http`; the connector speaks mTLS
    // whatever the scheme, and the origin keeps `https` in every call.
    let dial = Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|_| refuse("not a valid URI"))?;
    let origin = Uri::builder()
        .scheme(Scheme::HTTPS)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|_| refuse("not a valid URI"))?;
    Ok(Endpoint::from(dial).origin(origin))
}

/// Configures a [`Connector`]. Start from [`Connector::builder`].
///
/// The settings are zt-tower's connector's, passed on to a
/// [`zt_tower::ConnectorBuilder`] and documented there with their defaults; ALPN
/// is always `h2` alone, as gRPC needs.
#[derive(Clone, Debug)]
pub struct ConnectorBuilder {
    inner: zt_tower::ConnectorBuilder,
}

// === impl ConnectorBuilder ===

impl ConnectorBuilder {
    /// Uses `provider` instead of the identity's crypto provider, as
    /// [`ConnectorBuilder::crypto_provider`](zt_tower::ConnectorBuilder::crypto_provider).
    #[must_use]
    pub fn crypto_provider(
        mut self,
        provider: Arc<zt_core::rustls::crypto::CryptoProvider>,
    ) -> Self {
        self.inner = self.inner.crypto_provider(provider);
        self
    }

    /// Offers TLS 1.3 only, as [`ConnectorBuilder::tls13_only`](zt_tower::ConnectorBuilder::tls13_only).
    #[must_use]
    pub fn tls13_only(mut self) -> Self {
        self.inner = self.inner.tls13_only();
        self
    }

    /// Bounds dialing plus the TLS handshake, as
    /// [`ConnectorBuilder::connect_timeout`](zt_tower::ConnectorBuilder::connect_timeout).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.connect_timeout(timeout);
        self
    }

    /// Builds the connector.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the protocol versions.
    pub fn build(self) -> Result<Connector, Error> {
        let inner = self.inner.alpn_protocols(vec![b"h2".to_vec()]).build()?;
        Ok(Connector { inner })
    }
}

/// Dials gRPC servers with mutual TLS for
/// `tonic::transport::Endpoint::connect_with_connector`; see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    inner: zt_tower::Connector,
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
            inner: zt_tower::Connector::builder(identity, server),
        }
    }

    /// Connects a channel to `uri` (`https://host[:port]`) now; see [`endpoint`]
    /// to configure the channel first.
    ///
    /// # Errors
    ///
    /// An invalid URI, or the first connection failed.
    pub async fn connect(&self, uri: impl AsRef<str>) -> Result<Channel, ChannelError> {
        Ok(endpoint(uri)?.connect_with_connector(self.clone()).await?)
    }

    /// A channel to `uri` that connects on its first call.
    ///
    /// # Errors
    ///
    /// An invalid URI.
    pub fn connect_lazy(&self, uri: impl AsRef<str>) -> Result<Channel, ChannelError> {
        Ok(endpoint(uri)?.connect_with_connector_lazy(self.clone()))
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("inner", &self.inner)
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
        let inner = self.inner.clone();
        Box::pin(async move {
            // Always mTLS: the scheme only tells tonic whether to add its own TLS.
            let shown = uri.to_string();
            let mut parts = uri.into_parts();
            parts.scheme = Some(Scheme::HTTPS);
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            let uri = Uri::from_parts(parts).map_err(|_| ConnectError::Uri {
                uri: shown,
                reason: "not a URI with a host",
            })?;
            inner.connect(&uri).await
        })
    }
}
