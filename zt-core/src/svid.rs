//! X.509-SVIDs: parsing our own, verifying a peer's.
//!
//! Verification applies every validator rule of the X509-SVID specification (§4, §5)
//! on top of RFC 5280 path validation done by rustls-webpki:
//!
//! - the leaf has exactly one URI SAN, a SPIFFE ID with a non-root path;
//! - the leaf is not a CA, its key usage sets `digitalSignature` and neither
//!   `keyCertSign` nor `cRLSign`;
//! - every intermediate is a CA whose key usage sets `keyCertSign`;
//! - the chain leads to an authority in the bundle of the **leaf's** trust domain, and
//!   of no other domain;
//! - every certificate is valid at the time of verification;
//! - an extended key usage, when present, allows the TLS role the peer plays.
//!
//! ```
//! # #[cfg(feature = "dev")] {
//! use zt_core::{BundleSet, PeerRole, SpiffeId, dev::DevCa};
//!
//! let ca = DevCa::new("example.org".parse()?)?;
//! let svid = ca.mint(&"spiffe://example.org/api".parse()?)?;
//! let bundles = BundleSet::new().with(ca.bundle());
//! let provider = zt_core::default_provider()?;
//!
//! let verified = zt_core::verify_peer_chain(
//!     svid.chain(), &bundles, PeerRole::Client, &provider, std::time::SystemTime::now())?;
//! assert_eq!(verified.id().as_str(), "spiffe://example.org/api");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::bundle::BundleSet;
use crate::error::{PeerRole, SvidError};
use crate::id::SpiffeId;
use crate::x509;

/// The largest PEM input (chain, key or combined file) zt reads, in bytes.
pub const MAX_SVID_PEM_BYTES: usize = 1024 * 1024;

/// The most certificates a presented chain may hold (leaf included).
pub const MAX_CHAIN_LEN: usize = 8;

/// An X.509-SVID with its private key: our own identity.
///
/// Cheap to clone. `Debug` never prints the key.
#[derive(Clone)]
pub struct X509Svid {
    inner: Arc<SvidInner>,
}

struct SvidInner {
    id: SpiffeId,
    leaf: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial_number: String,
}

// === impl X509Svid ===

impl X509Svid {
    /// An SVID from a DER chain (leaf first) and its private key.
    ///
    /// Checks the leaf and intermediates against the X509-SVID rules that need no
    /// trust bundle. Whether the key matches the leaf needs a crypto provider and is
    /// checked by [`X509Svid::certified_key`]; path validation needs the bundle and is
    /// done when a snapshot is published.
    ///
    /// # Errors
    ///
    /// A [`SvidError`] naming the first rule the chain breaks.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let facts = inspect_chain(&chain)?;
        let leaf = chain.first().cloned().ok_or(SvidError::NoCertificate)?;
        // Parsed again rather than in `inspect_chain`, which also runs on every
        // handshake for the peer's chain, where nobody needs the serial number.
        let serial_number = x509::parse(&leaf)
            .map(|cert| x509::serial_hex(&cert))
            .map_err(|reason| SvidError::Malformed { index: 0, reason })?;
        Ok(Self {
            inner: Arc::new(SvidInner {
                id: facts.id,
                leaf,
                chain,
                key,
                not_before: unix_to_system(facts.not_before),
                not_after: unix_to_system(facts.not_after),
                serial_number,
            }),
        })
    }

    /// An SVID from a PEM chain (leaf first) and a PEM private key (PKCS#8, SEC1 or
    /// PKCS#1), as spiffe-helper and Kubernetes TLS secrets store them.
    ///
    /// # Errors
    ///
    /// When either input is empty, truncated, larger than [`MAX_SVID_PEM_BYTES`], or
    /// the chain is rejected as in [`X509Svid::from_der`].
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, SvidError> {
        let chain = certs_from_pem(chain_pem)?;
        let key = key_from_pem(key_pem)?;
        Self::from_der(chain, key)
    }

    /// An SVID from one PEM file holding the private key and the chain, in any order
    /// (as Kubernetes Pod Certificates write `credentialBundlePath`).
    ///
    /// # Errors
    ///
    /// As [`X509Svid::from_pem`]; also when the file holds more than one key.
    pub fn from_combined_pem(pem: &[u8]) -> Result<Self, SvidError> {
        let chain = certs_from_pem(pem)?;
        let key = key_from_pem(pem)?;
        Self::from_der(chain, key)
    }

    /// The SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.inner.id
    }

    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.inner.leaf
    }

    /// The private key. Secret: never log it.
    pub fn private_key(&self) -> &PrivateKeyDer<'static> {
        &self.inner.key
    }

    /// Start of the validity of the whole chain (the latest `notBefore`).
    pub fn not_before(&self) -> SystemTime {
        self.inner.not_before
    }

    /// End of the validity of the whole chain (the earliest `notAfter`).
    pub fn not_after(&self) -> SystemTime {
        self.inner.not_after
    }

    /// The leaf's serial number in upper-case hexadecimal, two digits a byte, as
    /// `openssl x509 -serial` prints it.
    pub fn serial_number(&self) -> &str {
        &self.inner.serial_number
    }

    /// Time left until [`X509Svid::not_after`], zero when expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.inner
            .not_after
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Loads the key with `provider` and checks that it matches the leaf.
    ///
    /// # Errors
    ///
    /// [`SvidError::UnusableKey`] when the provider cannot load the key, and
    /// [`SvidError::KeyMismatch`] when it is not the leaf's key or the match cannot be
    /// confirmed (zt fails closed where rustls would accept).
    pub fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, SvidError> {
        let signing_key = provider
            .key_provider
            .load_private_key(self.inner.key.clone_key())
            .map_err(|e| SvidError::UnusableKey(e.to_string()))?;
        let certified = CertifiedKey::new(self.inner.chain.clone(), signing_key);
        certified.keys_match().map_err(|_| SvidError::KeyMismatch)?;
        Ok(certified)
    }

    /// Verifies this SVID as a peer would: against `bundles`, at `now`, for either
    /// TLS role its extended key usage allows.
    ///
    /// # Errors
    ///
    /// As [`verify_peer_chain`].
    pub fn verify(
        &self,
        bundles: &BundleSet,
        provider: &CryptoProvider,
        now: SystemTime,
    ) -> Result<VerifiedPeer, SvidError> {
        verify_chain(self.chain(), bundles, None, provider, now)
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("id", &self.inner.id.as_str())
            .field("chain_len", &self.inner.chain.len())
            .field("not_after", &self.inner.not_after)
            .field("private_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What verification established about a peer's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPeer {
    id: SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl VerifiedPeer {
    /// The peer's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// When the first certificate of the verified chain expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When the last certificate of the verified chain became valid (the latest
    /// `notBefore` of the chain).
    pub(crate) fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Consumes the result, returning the SPIFFE ID.
    pub fn into_id(self) -> SpiffeId {
        self.id
    }
}

/// Verifies a peer's chain (leaf first) as an X.509-SVID for `role`.
///
/// Only the bundle of the leaf's own trust domain is consulted.
///
/// # Errors
///
/// A [`SvidError`] naming the first rule the chain breaks.
pub fn verify_peer_chain(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    role: PeerRole,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<VerifiedPeer, SvidError> {
    verify_chain(chain, bundles, Some(role), provider, now)
}

fn verify_chain(
    chain: &[CertificateDer<'_>],
    bundles: &BundleSet,
    role: Option<PeerRole>,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<VerifiedPeer, SvidError> {
    let facts = inspect_chain(chain)?;
    let td = facts.id.trust_domain();
    let bundle = bundles
        .get(td)
        .ok_or_else(|| SvidError::NoBundle(td.clone()))?;
    if bundle.is_empty() {
        return Err(SvidError::EmptyBundle(td.clone()));
    }
    let (leaf, intermediates) = chain.split_first().ok_or(SvidError::NoCertificate)?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| SvidError::Malformed {
        index: 0,
        reason: format!("{e:?}"),
    })?;
    let time = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let usage = match role {
        Some(PeerRole::Client) => EkuCheck::Role(webpki::KeyUsage::client_auth()),
        Some(PeerRole::Server) => EkuCheck::Role(webpki::KeyUsage::server_auth()),
        None => EkuCheck::AnyTlsRole,
    };
    // Only the anchors that can have issued the last presented certificate.
    let anchors = bundle.anchors_named(&facts.last_issuer);
    if anchors.is_empty() {
        return Err(SvidError::UnknownIssuer(td.clone()));
    }
    ee.verify_for_usage(
        provider.signature_verification_algorithms.all,
        anchors,
        intermediates,
        time,
        &usage,
        None,
        None,
    )
    .map_err(|e| map_webpki_error(e, &facts.id, role))?;
    // webpki checks the validity of the certificates on the path it builds; the rule
    // covers every presented certificate, so one that no path uses cannot leave
    // `not_after` in the past while the chain is accepted.
    let secs = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    if secs > facts.not_after {
        return Err(SvidError::Expired);
    }
    if secs < facts.not_before {
        return Err(SvidError::NotYetValid);
    }
    Ok(VerifiedPeer {
        not_before: unix_to_system(facts.not_before),
        not_after: unix_to_system(facts.not_after),
        id: facts.id,
    })
}

/// The EKU rule: the role's purpose when present (webpki's "required if present"),
/// or, for our own SVID, which plays both roles, any TLS purpose.
enum EkuCheck {
    Role(webpki::KeyUsage),
    AnyTlsRole,
}

impl webpki::ExtendedKeyUsageValidator for EkuCheck {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        match self {
            Self::Role(usage) => usage.validate(iter),
            Self::AnyTlsRole => {
                let mut present = false;
                for purpose in iter {
                    present = true;
                    let oid = purpose?.to_decoded_oid();
                    if oid == webpki::KeyUsage::SERVER_AUTH_REPR
                        || oid == webpki::KeyUsage::CLIENT_AUTH_REPR
                    {
                        return Ok(());
                    }
                }
                if present {
                    return Err(webpki::Error::RequiredEkuNotFoundContext(
                        webpki::RequiredEkuNotFoundContext {
                            required: webpki::KeyUsage::client_auth(),
                            present: Vec::new(),
                        },
                    ));
                }
                Ok(())
            }
        }
    }
}

#[allow(deprecated)] // webpki may still report the context-free variant
fn map_webpki_error(err: webpki::Error, id: &SpiffeId, role: Option<PeerRole>) -> SvidError {
    use webpki::Error as E;
    match err {
        E::CertExpired { .. } => SvidError::Expired,
        E::CertNotValidYet { .. } => SvidError::NotYetValid,
        // A candidate issuer whose signature does not verify (same subject, other
        // key: a rotated or foreign CA) means the same as finding none.
        E::UnknownIssuer | E::InvalidSignatureForPublicKey => {
            SvidError::UnknownIssuer(id.trust_domain().clone())
        }
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            SvidError::WrongUsage(role.unwrap_or(PeerRole::Client))
        }
        E::CaUsedAsEndEntity => SvidError::LeafIsCa,
        other => SvidError::Path(format!("{other:?}")),
    }
}

/// What the SVID rules that need no bundle established about a chain.
struct ChainFacts {
    id: SpiffeId,
    not_before: i64,
    not_after: i64,
    /// The issuer name (DER) of the last presented certificate: the subject of
    /// every trust anchor that can complete the path.
    last_issuer: Vec<u8>,
}

/// The SPIFFE ID and expiry of a chain that passes the SVID rules needing no bundle.
pub(crate) fn inspect_chain_facts(
    chain: &[CertificateDer<'_>],
) -> Result<(SpiffeId, SystemTime), SvidError> {
    let facts = inspect_chain(chain)?;
    Ok((facts.id, unix_to_system(facts.not_after)))
}

/// Applies the X509-SVID rules that need no trust bundle to a chain.
fn inspect_chain(chain: &[CertificateDer<'_>]) -> Result<ChainFacts, SvidError> {
    let Some((leaf_der, intermediates)) = chain.split_first() else {
        return Err(SvidError::NoCertificate);
    };
    if chain.len() > MAX_CHAIN_LEN {
        return Err(SvidError::ChainTooLong {
            len: chain.len(),
            limit: MAX_CHAIN_LEN,
        });
    }
    let leaf = x509::parse(leaf_der).map_err(|reason| SvidError::Malformed { index: 0, reason })?;
    let id = leaf_spiffe_id(&leaf)?;
    check_leaf_constraints(&leaf)?;
    let mut not_before = x509::not_before_unix(&leaf);
    let mut not_after = x509::not_after_unix(&leaf);
    let mut previous = leaf;
    let mut subjects: Vec<Vec<u8>> = Vec::with_capacity(intermediates.len());
    for (offset, der) in intermediates.iter().enumerate() {
        let index = offset + 1;
        let cert = x509::parse(der).map_err(|reason| SvidError::Malformed { index, reason })?;
        check_link(&previous, &cert, index, index == chain.len() - 1, &subjects)?;
        subjects.push(cert.subject().as_raw().to_vec());
        if !x509::is_ca(&cert).map_err(|reason| SvidError::Malformed { index, reason })? {
            return Err(SvidError::IntermediateNotCa { index });
        }
        let key_cert_sign = cert
            .key_usage()
            .map_err(|e| SvidError::Malformed {
                index,
                reason: e.to_string(),
            })?
            .is_some_and(|ku| ku.value.key_cert_sign());
        if !key_cert_sign {
            return Err(SvidError::IntermediateNoKeyCertSign { index });
        }
        not_before = not_before.max(x509::not_before_unix(&cert));
        not_after = not_after.min(x509::not_after_unix(&cert));
        previous = cert;
    }
    Ok(ChainFacts {
        id,
        not_before,
        not_after,
        last_issuer: previous.issuer().as_raw().to_vec(),
    })
}

/// Checks that `cert`, at `index`, is the issuer of `previous`, the certificate
/// before it, and adds nothing a path cannot use. With every presented
/// certificate on one path, path building has one candidate per step, so what a
/// peer presents bounds the work its verification costs (webpki alone would try
/// every ordering of same-named certificates).
fn check_link(
    previous: &X509Certificate<'_>,
    cert: &X509Certificate<'_>,
    index: usize,
    last: bool,
    subjects: &[Vec<u8>],
) -> Result<(), SvidError> {
    let unlinked = |reason| SvidError::UnlinkedChain { index, reason };
    let subject = cert.subject().as_raw();
    if previous.issuer().as_raw() != subject {
        return Err(unlinked(
            "its subject is not the previous certificate's issuer",
        ));
    }
    if let (Some(authority), Some(key_id)) = (authority_key_id(previous), subject_key_id(cert))
        && authority != key_id
    {
        return Err(unlinked(
            "its key identifier is not the previous certificate's authority key identifier",
        ));
    }
    if subjects.iter().any(|seen| seen.as_slice() == subject) {
        return Err(unlinked(
            "another presented certificate has the same subject",
        ));
    }
    // A root may be sent last; a self-issued certificate anywhere else is a loop.
    if !last && cert.issuer().as_raw() == subject {
        return Err(unlinked(
            "a self-issued certificate before the end of the chain",
        ));
    }
    Ok(())
}

fn authority_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => Some(aki.key_identifier.as_ref()?.0),
            _ => None,
        })
}

fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(ski) => Some(ski.0),
            _ => None,
        })
}

fn leaf_spiffe_id(leaf: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = leaf
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed {
            index: 0,
            reason: e.to_string(),
        })?;
    let mut uris = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let first = uris.next().ok_or(SvidError::NoUriSan)?;
    let more = uris.count();
    if more > 0 {
        return Err(SvidError::MultipleUriSans(more + 1));
    }
    let id: SpiffeId = first.parse().map_err(SvidError::InvalidSpiffeId)?;
    if id.is_root() {
        return Err(SvidError::RootId(id));
    }
    Ok(id)
}

fn check_leaf_constraints(leaf: &X509Certificate<'_>) -> Result<(), SvidError> {
    let malformed = |reason: String| SvidError::Malformed { index: 0, reason };
    if x509::is_ca(leaf).map_err(malformed)? {
        return Err(SvidError::LeafIsCa);
    }
    let ku = leaf
        .key_usage()
        .map_err(|e| malformed(e.to_string()))?
        .ok_or(SvidError::MissingKeyUsage)?;
    if ku.value.key_cert_sign() {
        return Err(SvidError::LeafKeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(SvidError::LeafCrlSign);
    }
    if !ku.value.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }
    Ok(())
}

pub(crate) fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    check_pem_size(pem)?;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SvidError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(SvidError::NoCertificate);
    }
    Ok(certs)
}

pub(crate) fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, SvidError> {
    check_pem_size(pem)?;
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| SvidError::Pem(e.to_string()))?;
        if let Some(key) = PrivateKeyDer::from_pem(kind, der) {
            keys.push(key);
        }
    }
    let mut keys = keys.into_iter();
    let key = keys.next().ok_or(SvidError::NoPrivateKey)?;
    if keys.next().is_some() {
        return Err(SvidError::MultiplePrivateKeys);
    }
    Ok(key)
}

fn check_pem_size(pem: &[u8]) -> Result<(), SvidError> {
    if pem.len() > MAX_SVID_PEM_BYTES {
        return Err(SvidError::TooLarge {
            size: pem.len(),
            limit: MAX_SVID_PEM_BYTES,
        });
    }
    Ok(())
}

fn unix_to_system(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}
