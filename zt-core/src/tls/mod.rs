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

use crate::error::{Error, SvidError};
use crate::identity::Identity;
use crate::matcher::IdMatcher;
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
/// authorizes a client SVID (or, with [`allow_anonymous`](Self::allow_anonymous),
/// verifies and authorizes one when the client presents it).
#[derive(Clone, Debug)]
pub struct ServerConfigBuilder {
    common: Common,
    authorizer: IdMatcher,
    anonymous: bool,
}

impl ServerConfigBuilder {
    /// A server config for `identity`. By default every client with a valid SVID of
    /// a trusted trust domain is accepted at the handshake; narrow it with
    /// [`authorize`](Self::authorize), and authorize each request with a policy.
    pub fn new(identity: Identity) -> Self {
        Self {
            common: Common::new(identity),
            authorizer: IdMatcher::any(),
            anonymous: false,
        }
    }

    /// Accepts only clients whose SPIFFE ID `matcher` matches.
    #[must_use]
    pub fn authorize(mut self, matcher: IdMatcher) -> Self {
        self.authorizer = matcher;
        self
    }

    /// Requests a client certificate without requiring one: a client that
    /// presents none completes the handshake as an anonymous peer (its
    /// connection has no `peer_certificates`). A client that presents one is
    /// verified and authorized exactly as without this call, and one that fails
    /// is refused at the handshake with the same alert: never let in as
    /// anonymous. Off by default.
    ///
    /// Whoever serves such a config must tell the two apart and authorize
    /// anonymous requests on purpose (zt-tower's server marks them with
    /// [`AnonymousPeer`](crate::AnonymousPeer); its policy admits them only with
    /// `from: {unauthenticated: true}` rules).
    #[must_use]
    pub fn allow_anonymous(mut self) -> Self {
        self.anonymous = true;
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
            !self.anonymous,
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

/// Why zt refused a handshake, read from the handshake's error on the side that
/// refused: one place that knows how zt's verifiers and resolvers report.
///
/// rustls lets a verifier choose the TLS alert only through the kind of its
/// `CertificateError`, and only `CertificateError::Other` can carry a typed
/// reason. zt picks, for each refusal, the alert that tells the peer most and the
/// most precise local reason that alert allows:
///
/// | refusal | alert the peer receives | local reason |
/// |---|---|---|
/// | chain not signed by an authority of the leaf's trust domain | `unknown_ca` | [`Rejection::UnknownIssuer`] (the trust domain is in the verifier's log event) |
/// | no bundle, or an empty one, for the leaf's trust domain (not federated, or revoked) | `certificate_unknown` | [`Rejection::Svid`] `NoBundle` / `EmptyBundle`, naming the domain |
/// | a certificate expired / not yet valid | `certificate_expired` | [`Rejection::Svid`] `Expired` / `NotYetValid` |
/// | extended key usage without `clientAuth`/`serverAuth` | `unsupported_certificate` | [`Rejection::WrongUsage`] |
/// | a certificate that is not valid DER | `bad_certificate` | [`Rejection::Malformed`] |
/// | any other X509-SVID rule (URI SANs, `cA`, key usage, chain length, …) | `certificate_unknown` | [`Rejection::Svid`] with the exact rule |
/// | a valid SVID whose ID the config does not accept | `certificate_unknown` | [`Rejection::Unauthorized`] |
/// | our own identity has no snapshot (not ready, or withdrawn) | `handshake_failure` | [`Rejection::NoIdentityYet`] |
///
/// The verifier logs every refusal with its precise reason (target `zt_core::tls`).
///
/// ```
/// use zt_core::rustls::{CertificateError, Error};
/// use zt_core::tls::Rejection;
///
/// let err = Error::InvalidCertificate(CertificateError::UnknownIssuer);
/// assert_eq!(Rejection::of(&err), Some(Rejection::UnknownIssuer));
/// assert_eq!(Rejection::of(&err).unwrap().to_string(), "certificate is not signed by a trusted authority of its trust domain");
/// let err = Error::InvalidCertificate(CertificateError::Expired);
/// assert_eq!(Rejection::of(&err), Some(Rejection::Svid(zt_core::SvidError::Expired)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The peer's chain does not lead to an authority of its trust domain.
    #[error("certificate is not signed by a trusted authority of its trust domain")]
    UnknownIssuer,
    /// The peer's extended key usage does not allow its TLS role.
    #[error("extended key usage does not allow the peer's TLS role")]
    WrongUsage,
    /// A certificate of the peer's chain is not valid DER X.509.
    #[error("certificate is malformed")]
    Malformed,
    /// The peer's chain breaks an X509-SVID rule, or is expired or not yet valid.
    #[error("{0}")]
    Svid(SvidError),
    /// The peer's SVID is valid but its ID is not one the config accepts.
    #[error("{0}")]
    Unauthorized(UnauthorizedPeer),
    /// Our identity has no serving snapshot yet (or it was withdrawn): every
    /// handshake fails closed.
    #[error("{0}")]
    NoIdentityYet(NoIdentityYet),
}

/// Our identity has no serving snapshot: nothing to present, no bundle to verify
/// with. Every handshake fails closed until one is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no identity loaded yet (or it was withdrawn): refusing every handshake")]
pub struct NoIdentityYet;

// === impl Rejection ===

impl Rejection {
    /// zt's reason behind a handshake error: a `rustls::Error`, or the `io::Error`
    /// tokio-rustls wraps it in. `None` for errors zt did not raise (I/O, protocol,
    /// or an alert the peer sent).
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let rustls_err = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
            None => err.downcast_ref::<rustls::Error>()?,
        };
        use rustls::CertificateError as C;
        let cert_err = match rustls_err {
            rustls::Error::InvalidCertificate(cert_err) => cert_err,
            rustls::Error::Other(other) => {
                return other
                    .0
                    .downcast_ref::<NoIdentityYet>()
                    .map(|e| Self::NoIdentityYet(*e));
            }
            _ => return None,
        };
        Some(match cert_err {
            C::UnknownIssuer => Self::UnknownIssuer,
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => Self::WrongUsage,
            C::BadEncoding => Self::Malformed,
            C::Expired | C::ExpiredContext { .. } => Self::Svid(SvidError::Expired),
            C::NotValidYet | C::NotValidYetContext { .. } => Self::Svid(SvidError::NotYetValid),
            C::Other(other) => {
                if let Some(svid) = other.0.downcast_ref::<SvidError>() {
                    Self::Svid(svid.clone())
                } else if let Some(unauthorized) = other.0.downcast_ref::<UnauthorizedPeer>() {
                    Self::Unauthorized(unauthorized.clone())
                } else {
                    return None;
                }
            }
            _ => return None,
        })
    }

    /// The typed SVID rule behind the refusal, when there is one.
    pub fn svid_error(&self) -> Option<&SvidError> {
        match self {
            Self::Svid(err) => Some(err),
            _ => None,
        }
    }
}

/// The peer ended the handshake with a TLS alert: what it says about our side.
///
/// With TLS 1.3 a client finishes its handshake before the server has judged the
/// client's certificate, so a server's refusal reaches the client on its first read,
/// not from `connect`; both carry this. The meanings are those of a zt peer's
/// alerts (see [`Rejection`]); other peers use them alike.
///
/// ```
/// use zt_core::rustls::{AlertDescription, Error};
/// use zt_core::tls::RefusedByPeer;
///
/// let err = std::io::Error::other(Error::AlertReceived(AlertDescription::UnknownCA));
/// let refused = RefusedByPeer::of(&err).unwrap();
/// assert_eq!(refused.alert, AlertDescription::UnknownCA);
/// assert!(refused.to_string().starts_with("the peer refused our certificate (TLS alert unknown_ca)"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_alert(*alert))]
pub struct RefusedByPeer {
    /// The alert the peer sent.
    pub alert: rustls::AlertDescription,
}

impl RefusedByPeer {
    /// The alert behind a handshake or read error: a `rustls::Error`, or the
    /// `io::Error` tokio-rustls wraps it in. `None` when the peer sent no alert.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let rustls_err = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
            None => err.downcast_ref::<rustls::Error>()?,
        };
        match rustls_err {
            rustls::Error::AlertReceived(alert) => Some(Self { alert: *alert }),
            _ => None,
        }
    }
}

fn describe_alert(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    const CERT: &str = "our certificate";
    const HANDSHAKE: &str = "the handshake";
    let (name, what, why) = match alert {
        A::UnknownCA => (
            "unknown_ca",
            CERT,
            "it does not trust the authority that issued our SVID (is our trust \
             domain's bundle, with this authority, among its bundles?)",
        ),
        A::CertificateUnknown => (
            "certificate_unknown",
            CERT,
            "it does not accept our SVID (our ID is not one it authorizes, our trust \
             domain has no bundle there, or an X509-SVID rule fails)",
        ),
        A::CertificateExpired => (
            "certificate_expired",
            CERT,
            "it finds our SVID expired or not yet valid (rotation, clocks)",
        ),
        A::UnsupportedCertificate => (
            "unsupported_certificate",
            CERT,
            "its extended key usage does not allow our TLS role",
        ),
        A::BadCertificate => (
            "bad_certificate",
            CERT,
            "it is malformed or does not fit our key",
        ),
        A::CertificateRequired => (
            "certificate_required",
            CERT,
            "it requires one and we sent none",
        ),
        A::AccessDenied => ("access_denied", CERT, "its policy refuses our ID"),
        A::HandshakeFailure => (
            "handshake_failure",
            HANDSHAKE,
            "no common parameters, or it has no identity of its own yet",
        ),
        A::ProtocolVersion => ("protocol_version", HANDSHAKE, "no common TLS version"),
        A::NoApplicationProtocol => (
            "no_application_protocol",
            HANDSHAKE,
            "no common application protocol (ALPN)",
        ),
        other => return format!("the peer ended the handshake with TLS alert {other:?}"),
    };
    format!("the peer refused {what} (TLS alert {name}): {why}")
}

/// The rustls error a verifier returns for `err`: the closest TLS alert, with the
/// typed reason where the alert's kind can carry it (see [`Rejection`]).
pub(crate) fn svid_rejection(err: SvidError) -> rustls::Error {
    use rustls::CertificateError as C;
    let cert_err = match err {
        SvidError::UnknownIssuer(_) => C::UnknownIssuer,
        SvidError::Expired => C::Expired,
        SvidError::NotYetValid => C::NotValidYet,
        SvidError::WrongUsage(_) => C::InvalidPurpose,
        SvidError::Malformed { .. } => C::BadEncoding,
        other => C::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(cert_err)
}

/// The rustls error for a handshake while our identity has no snapshot.
pub(crate) fn no_identity_yet() -> rustls::Error {
    rustls::Error::Other(rustls::OtherError(Arc::new(NoIdentityYet)))
}
