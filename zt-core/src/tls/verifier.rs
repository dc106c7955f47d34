//! rustls verifiers that check peers as X.509-SVIDs against the live snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::PeerRole;
use crate::id::SpiffeId;
use crate::identity::Identity;
use crate::matcher::IdMatcher;
use crate::verified::ChainDigest;

/// Why a verified peer was still refused: its ID is not one we talk to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer {id} is not authorized: expected {expected}")]
pub struct UnauthorizedPeer {
    /// The peer's verified SPIFFE ID.
    pub id: SpiffeId,
    /// What we would have accepted.
    pub expected: String,
}

/// Shared core of both verifiers.
struct SpiffeVerifier {
    identity: Identity,
    authorizer: IdMatcher,
    provider: Arc<CryptoProvider>,
    algorithms: WebPkiSupportedAlgorithms,
    role: PeerRole,
}

impl SpiffeVerifier {
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let Some(snapshot) = self.identity.snapshot() else {
            tracing::info!(role = %self.role, "peer refused: no identity loaded yet");
            return Err(super::no_identity_yet());
        };
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let now = UNIX_EPOCH + Duration::from_secs(now.as_secs());
        // A chain this snapshot verified before for this role (a reconnect) is
        // answered from its record, with the time checked again; see `verified`.
        let digest = ChainDigest::of(&self.provider, &chain);
        let verified = snapshot
            .verify_peer(&chain, digest.as_ref(), self.role, &self.provider, now)
            .map_err(|err| {
                // The exact reason, which the alert kind may not carry.
                tracing::info!(role = %self.role, error = %err, "peer SVID rejected");
                super::svid_rejection(err)
            })?;
        if !self.authorizer.matches(verified.id()) {
            let err = UnauthorizedPeer {
                id: verified.into_id(),
                expected: self.authorizer.to_string(),
            };
            tracing::debug!(role = %self.role, error = %err, "peer SVID not authorized");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(err)),
            )));
        }
        self.identity.verifications().record(
            self.role,
            &chain,
            &verified,
            snapshot.stamp(),
            digest,
        );
        Ok(())
    }
}

/// Verifies TLS clients as X.509-SVIDs (server side).
pub(crate) struct SpiffeClientVerifier {
    inner: SpiffeVerifier,
    /// Whether a client must present a certificate. When it need not, one it
    /// presents is verified exactly as when it must.
    mandatory: bool,
}

impl SpiffeClientVerifier {
    pub(crate) fn new(
        identity: Identity,
        authorizer: IdMatcher,
        provider: Arc<CryptoProvider>,
        mandatory: bool,
    ) -> Self {
        Self {
            inner: SpiffeVerifier {
                identity,
                authorizer,
                algorithms: provider.signature_verification_algorithms,
                provider,
                role: PeerRole::Client,
            },
            mandatory,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The trusted authorities change with every bundle rotation; hints are
        // optional (RFC 8446 §4.2.4) and clients with one SVID ignore them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner.verify(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algorithms.supported_schemes()
    }
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("authorizer", &self.inner.authorizer)
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

/// Verifies TLS servers as X.509-SVIDs and authorizes them by SPIFFE ID, ignoring the
/// server name (client side).
pub(crate) struct SpiffeServerVerifier {
    inner: SpiffeVerifier,
}

impl SpiffeServerVerifier {
    pub(crate) fn new(
        identity: Identity,
        authorizer: IdMatcher,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            inner: SpiffeVerifier {
                identity,
                authorizer,
                algorithms: provider.signature_verification_algorithms,
                provider,
                role: PeerRole::Server,
            },
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The SPIFFE ID authorizes the server; the name only routes the connection.
        self.inner.verify(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algorithms.supported_schemes()
    }
}

impl fmt::Debug for SpiffeServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeServerVerifier")
            .field("authorizer", &self.inner.authorizer)
            .finish_non_exhaustive()
    }
}
