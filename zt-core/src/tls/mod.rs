//! rustls configurations backed by the live identity.
//!
//! [`ServerConfigBuilder`] and [`ClientConfigBuilder`] build ordinary
//! `rustls::ServerConfig`s and `rustls::ClientConfig`s whose certificate resolver and
//! peer verifier read the serving [`Snapshot`](crate::Snapshot) on every handshake:
//! a rotated SVID is presented, and a rotated bundle trusted, from the next handshake
//! on, with no rebuild and no effect on open connections.
//!
//! Peers are verified as X.509-SVIDs (see [`crate::svid`](crate::verify_peer_chain))
//! and then authorized by SPIFFE ID with an [`IdMatcher`]. The client never checks a
//! hostname: the server name only routes the connection (SNI).
//!
//! **Session resumption is disabled** on both sides. rustls restores a resumed
//! session's peer certificate without calling the verifier again, so a resumed session
//! would let a peer skip verification after its SVID expired, its bundle was withdrawn
//! or it stopped being authorized. A full handshake costs one signature and one
//! verification more; trust that cannot outlive its evidence is worth that.
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use zt_core::{BundleSet, IdMatcher, IdentityPublisher, dev::DevCa, tls};
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let publisher = IdentityPublisher::new()?;
//! publisher.publish(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//!
//! let server = tls::ServerConfigBuilder::new(publisher.identity())
//!     .authorize(IdMatcher::trust_domain("example.org".parse()?))
//!     .build()?;
//! assert_eq!(server.send_tls13_tickets, 0);
//!
//! let client = tls::ClientConfigBuilder::new(publisher.identity(), "spiffe://example.org/api".parse::<IdMatcher>()?)
//!     .tls13_only()
//!     .build()?;
//! assert!(!client.enable_early_data);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod resolver;
mod verifier;

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

pub use verifier::UnauthorizedPeer;

use crate::{Error, IdMatcher, Identity};
use resolver::SvidResolver;
use verifier::{SpiffeClientVerifier, SpiffeServerVerifier};

static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Options both builders share.
#[derive(Clone, Debug)]
struct Common {
    identity: Identity,
    provider: Option<Arc<CryptoProvider>>,
    tls13_only: bool,
    alpn: Vec<Vec<u8>>,
}

impl Common {
    fn new(identity: Identity) -> Self {
        Self {
            identity,
            provider: None,
            tls13_only: false,
            alpn: Vec::new(),
        }
    }

    fn provider(&self) -> Arc<CryptoProvider> {
        self.provider
            .clone()
            .unwrap_or_else(|| Arc::clone(self.identity.crypto_provider()))
    }

    fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        if self.tls13_only {
            TLS13_ONLY
        } else {
            rustls::DEFAULT_VERSIONS
        }
    }
}

/// Builds a `rustls::ServerConfig` that presents our SVID and requires, verifies and
/// authorizes a client SVID.
#[derive(Clone, Debug)]
pub struct ServerConfigBuilder {
    common: Common,
    authorizer: IdMatcher,
}

impl ServerConfigBuilder {
    /// A server config for `identity`. By default every client with a valid SVID of
    /// a trusted trust domain is accepted at the handshake; narrow it with
    /// [`authorize`](Self::authorize), and authorize each request with a policy.
    pub fn new(identity: Identity) -> Self {
        Self {
            common: Common::new(identity),
            authorizer: IdMatcher::any(),
        }
    }

    /// Accepts only clients whose SPIFFE ID `matcher` matches.
    #[must_use]
    pub fn authorize(mut self, matcher: IdMatcher) -> Self {
        self.authorizer = matcher;
        self
    }

    /// Uses `provider` instead of the identity's crypto provider.
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.common.provider = Some(provider);
        self
    }

    /// Offers TLS 1.3 only (the default offers TLS 1.3 and 1.2).
    #[must_use]
    pub fn tls13_only(mut self) -> Self {
        self.common.tls13_only = true;
        self
    }

    /// ALPN protocols to offer, most preferred first (e.g. `h2`, `http/1.1`).
    #[must_use]
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.common.alpn = protocols;
        self
    }

    /// Builds the config.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the requested protocol versions.
    pub fn build(self) -> Result<ServerConfig, Error> {
        let provider = self.common.provider();
        let verifier = SpiffeClientVerifier::new(
            self.common.identity.clone(),
            self.authorizer,
            Arc::clone(&provider),
        );
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(self.common.versions())?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(SvidResolver::new(self.common.identity)));
        // No session IDs, no tickets: every connection runs the verifier.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = self.common.alpn;
        Ok(config)
    }
}

/// Builds a `rustls::ClientConfig` that presents our SVID and authorizes the server by
/// SPIFFE ID instead of hostname.
#[derive(Clone, Debug)]
pub struct ClientConfigBuilder {
    common: Common,
    server: IdMatcher,
}

impl ClientConfigBuilder {
    /// A client config for `identity` that accepts servers `server` matches. There is
    /// no default: a client must say whom it expects to talk to.
    pub fn new(identity: Identity, server: IdMatcher) -> Self {
        Self {
            common: Common::new(identity),
            server,
        }
    }

    /// Uses `provider` instead of the identity's crypto provider.
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.common.provider = Some(provider);
        self
    }

    /// Offers TLS 1.3 only (the default offers TLS 1.3 and 1.2).
    #[must_use]
    pub fn tls13_only(mut self) -> Self {
        self.common.tls13_only = true;
        self
    }

    /// ALPN protocols to offer, most preferred first.
    #[must_use]
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.common.alpn = protocols;
        self
    }

    /// Builds the config.
    ///
    /// # Errors
    ///
    /// When the crypto provider does not support the requested protocol versions.
    pub fn build(self) -> Result<ClientConfig, Error> {
        let provider = self.common.provider();
        let verifier = SpiffeServerVerifier::new(
            self.common.identity.clone(),
            self.server,
            Arc::clone(&provider),
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(self.common.versions())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(SvidResolver::new(self.common.identity)));
        config.resumption = Resumption::disabled();
        config.enable_early_data = false;
        config.alpn_protocols = self.common.alpn;
        Ok(config)
    }
}

/// zt's reason for refusing a peer, dug out of a handshake error.
///
/// rustls wraps verifier errors in `rustls::Error::InvalidCertificate`, and tokio-rustls
/// wraps that in an `io::Error`; their `Display` shows the wrapping, not the reason.
/// This returns the reason (`leaf certificate has 2 URI SANs, …`, `peer … is not
/// authorized: expected …`), or `None` when `err` is not a certificate rejection.
///
/// ```
/// use zt_core::rustls::{CertificateError, Error};
/// let err = Error::InvalidCertificate(CertificateError::Expired);
/// assert_eq!(zt_core::tls::rejection_reason(&err).as_deref(), Some("certificate expired"));
/// ```
pub fn rejection_reason(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    Some(match certificate_error(err)? {
        rustls::CertificateError::Other(other) => other.0.to_string(),
        rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
            crate::SvidError::Expired.to_string()
        }
        rustls::CertificateError::NotValidYet
        | rustls::CertificateError::NotValidYetContext { .. } => {
            crate::SvidError::NotYetValid.to_string()
        }
        other => format!("{other:?}"),
    })
}

/// The typed SVID error behind a handshake failure, when zt's verifier refused the
/// peer's certificate (an expired or not-yet-valid chain included).
///
/// ```
/// use zt_core::rustls::{CertificateError, Error};
/// let err = Error::InvalidCertificate(CertificateError::Expired);
/// assert_eq!(zt_core::tls::svid_error(&err), Some(zt_core::SvidError::Expired));
/// ```
pub fn svid_error(err: &(dyn std::error::Error + 'static)) -> Option<crate::SvidError> {
    match certificate_error(err)? {
        rustls::CertificateError::Other(other) => {
            other.0.downcast_ref::<crate::SvidError>().cloned()
        }
        rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
            Some(crate::SvidError::Expired)
        }
        rustls::CertificateError::NotValidYet
        | rustls::CertificateError::NotValidYetContext { .. } => {
            Some(crate::SvidError::NotYetValid)
        }
        _ => None,
    }
}

/// The [`UnauthorizedPeer`] behind a handshake failure, when the peer was verified
/// but its SPIFFE ID was not one the config accepts.
pub fn unauthorized_peer(err: &(dyn std::error::Error + 'static)) -> Option<UnauthorizedPeer> {
    match certificate_error(err)? {
        rustls::CertificateError::Other(other) => {
            other.0.downcast_ref::<UnauthorizedPeer>().cloned()
        }
        _ => None,
    }
}

/// Digs the rustls certificate error out of an `io::Error` (tokio-rustls) or a
/// `rustls::Error`.
fn certificate_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::CertificateError> {
    let rustls_err = if let Some(io) = err.downcast_ref::<std::io::Error>() {
        io.get_ref()?.downcast_ref::<rustls::Error>()?
    } else {
        err.downcast_ref::<rustls::Error>()?
    };
    match rustls_err {
        rustls::Error::InvalidCertificate(cert_err) => Some(cert_err),
        _ => None,
    }
}
