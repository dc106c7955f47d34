//! Trust bundles: the CA certificates of one trust domain, and sets of them for
//! federation.
//!
//! A bundle vouches only for SVIDs of its own trust domain: a [`BundleSet`] keys
//! bundles by trust domain and never merges two domains' authorities, so a CA of
//! `partner.example` can never sign an SVID that claims `example.org`.
//!
//! Bundles are read from PEM or from the SPIFFE bundle format (a JWK Set whose
//! `x509-svid` entries carry the CA in `x5c`). An empty SPIFFE bundle is valid and
//! means every SVID of that domain is invalid.
//!
//! ```
//! use zt_core::{BundleSet, TrustDomain, X509Bundle};
//!
//! let td: TrustDomain = "example.org".parse()?;
//! let json = br#"{"keys": [], "spiffe_sequence": 7, "spiffe_refresh_hint": 300}"#;
//! let bundle = X509Bundle::from_spiffe_json(td.clone(), json)?;
//! assert!(bundle.is_empty());
//! assert_eq!(bundle.sequence(), Some(7));
//!
//! let set: BundleSet = [bundle].into_iter().collect();
//! assert!(set.get(&td).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::error::BundleError;
use crate::id::TrustDomain;
use crate::x509;

/// The largest bundle document (PEM or JSON) zt reads, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

/// The most authorities one bundle may hold.
pub const MAX_AUTHORITIES: usize = 20_000;

/// The X.509 authorities of one trust domain. Cheap to clone.
#[derive(Clone)]
pub struct X509Bundle {
    inner: Arc<BundleInner>,
}

struct BundleInner {
    trust_domain: TrustDomain,
    authorities: Vec<CertificateDer<'static>>,
    /// The anchors grouped by their subject's DER, so that verification hands
    /// webpki only the anchors that can have issued a presented chain's last
    /// certificate: path building never scans every anchor of a large bundle.
    by_subject: HashMap<Vec<u8>, Vec<TrustAnchor<'static>>>,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
}

// === impl X509Bundle ===

impl X509Bundle {
    /// A bundle of the given DER CA certificates.
    ///
    /// # Errors
    ///
    /// When a certificate does not parse, is not a CA certificate, or there are more
    /// than [`MAX_AUTHORITIES`].
    pub fn new(
        trust_domain: TrustDomain,
        authorities: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        Self::build(trust_domain, authorities, None, None)
    }

    /// A bundle with no authorities: every SVID of `trust_domain` is invalid.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            inner: Arc::new(BundleInner {
                trust_domain,
                authorities: Vec::new(),
                by_subject: HashMap::new(),
                sequence: None,
                refresh_hint: None,
            }),
        }
    }

    /// Reads PEM `CERTIFICATE` blocks. Text outside the blocks is ignored.
    ///
    /// # Errors
    ///
    /// When the PEM is malformed or truncated, holds no certificate (an empty or
    /// half-written file must not revoke a trust domain by accident), or a certificate
    /// is rejected as in [`X509Bundle::new`].
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        check_size(pem.len())?;
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(BundleError::NoCertificate);
        }
        Self::new(trust_domain, certs)
    }

    /// Reads a SPIFFE bundle document (SPIFFE Trust Domain and Bundle §4, X509-SVID §6).
    ///
    /// Entries whose `use` is not `x509-svid`, whose `kty` is unknown, or whose `x5c`
    /// is missing or empty are ignored; of `x5c` only the first certificate counts.
    /// `keys: []` yields an empty bundle.
    ///
    /// # Errors
    ///
    /// When the document is not UTF-8 JSON of the bundle shape (an object whose
    /// required `keys` is an array of JWK objects), an `x5c` value is not base64, or a
    /// certificate is rejected as in [`X509Bundle::new`].
    pub fn from_spiffe_json(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let doc = read_jwk_set(json)?;
        let mut authorities = Vec::new();
        for (index, JsonObject(key)) in doc.keys.iter().enumerate() {
            let x509_use = key.use_.as_deref() == Some("x509-svid");
            let known_kty = matches!(key.kty.as_deref(), Some("EC" | "RSA" | "OKP"));
            let Some(first) = key.x5c.as_ref().and_then(|x5c| x5c.first()) else {
                continue;
            };
            if !x509_use || !known_kty {
                continue;
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(first)
                .map_err(|_| BundleError::Base64 { index })?;
            authorities.push(CertificateDer::from(der));
        }
        let refresh_hint = doc
            .spiffe_refresh_hint
            .and_then(|secs| u64::try_from(secs).ok())
            .map(Duration::from_secs);
        Self::build(trust_domain, authorities, doc.spiffe_sequence, refresh_hint)
    }

    /// Reads PEM or a SPIFFE bundle document, whichever `data` holds: a document
    /// whose first non-blank byte is `{` is JSON.
    ///
    /// # Errors
    ///
    /// As [`X509Bundle::from_pem`] or [`X509Bundle::from_spiffe_json`].
    pub fn from_pem_or_json(trust_domain: TrustDomain, data: &[u8]) -> Result<Self, BundleError> {
        match data.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::from_spiffe_json(trust_domain, data),
            _ => Self::from_pem(trust_domain, data),
        }
    }

    fn build(
        trust_domain: TrustDomain,
        authorities: Vec<CertificateDer<'static>>,
        sequence: Option<u64>,
        refresh_hint: Option<Duration>,
    ) -> Result<Self, BundleError> {
        if authorities.len() > MAX_AUTHORITIES {
            return Err(BundleError::TooManyAuthorities {
                len: authorities.len(),
                limit: MAX_AUTHORITIES,
            });
        }
        let mut by_subject: HashMap<Vec<u8>, Vec<TrustAnchor<'static>>> = HashMap::new();
        for (index, der) in authorities.iter().enumerate() {
            let cert =
                x509::parse(der).map_err(|reason| BundleError::Malformed { index, reason })?;
            if !x509::is_ca(&cert).map_err(|reason| BundleError::Malformed { index, reason })? {
                return Err(BundleError::NotCa { index });
            }
            let anchor = webpki::anchor_from_trusted_cert(der)
                .map_err(|e| BundleError::Malformed {
                    index,
                    reason: format!("{e:?}"),
                })?
                .to_owned();
            by_subject
                .entry(cert.subject().as_raw().to_vec())
                .or_default()
                .push(anchor);
        }
        Ok(Self {
            inner: Arc::new(BundleInner {
                trust_domain,
                authorities,
                by_subject,
                sequence,
                refresh_hint,
            }),
        })
    }

    /// The trust domain this bundle vouches for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.inner.trust_domain
    }

    /// The CA certificates, DER.
    pub fn authorities(&self) -> &[CertificateDer<'static>] {
        &self.inner.authorities
    }

    /// `true` when the bundle has no authority (every SVID of the domain is invalid).
    pub fn is_empty(&self) -> bool {
        self.inner.authorities.is_empty()
    }

    /// Number of authorities.
    pub fn len(&self) -> usize {
        self.inner.authorities.len()
    }

    /// `spiffe_sequence` of a SPIFFE bundle document, if it had one.
    pub fn sequence(&self) -> Option<u64> {
        self.inner.sequence
    }

    /// `spiffe_refresh_hint` of a SPIFFE bundle document, if it had one.
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.inner.refresh_hint
    }

    /// The anchors whose subject is `subject` (a Name's DER): the only ones that
    /// can have issued a certificate naming it as its issuer.
    pub(crate) fn anchors_named(&self, subject: &[u8]) -> &[TrustAnchor<'static>] {
        self.inner
            .by_subject
            .get(subject)
            .map_or(&[][..], Vec::as_slice)
    }

    /// `true` when both bundles hold the same authorities for the same domain.
    pub fn same_authorities(&self, other: &Self) -> bool {
        self.inner.trust_domain == other.inner.trust_domain
            && self.inner.authorities == other.inner.authorities
    }
}

impl fmt::Debug for X509Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Bundle")
            .field("trust_domain", &self.inner.trust_domain.as_str())
            .field("authorities", &self.inner.authorities.len())
            .field("sequence", &self.inner.sequence)
            .finish_non_exhaustive()
    }
}

fn check_size(size: usize) -> Result<(), BundleError> {
    if size > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge {
            size,
            limit: MAX_BUNDLE_BYTES,
        });
    }
    Ok(())
}

/// A SPIFFE bundle document of at most [`MAX_BUNDLE_BYTES`], read as a JWK Set:
/// the one reader of both the X.509 and the JWT authorities of a bundle.
pub(crate) fn read_jwk_set(json: &[u8]) -> Result<JwkSet, BundleError> {
    check_size(json.len())?;
    // JSON text is UTF-8 (RFC 8259 §8.1), but serde_json skips validating the
    // strings of members it ignores; check the whole document first.
    let json = std::str::from_utf8(json).map_err(|e| BundleError::Json(e.to_string()))?;
    let JsonObject(doc): JsonObject<JwkSet> =
        serde_json::from_str(json).map_err(|e| BundleError::Json(json_error(&e)))?;
    Ok(doc)
}

#[derive(serde::Deserialize)]
pub(crate) struct JwkSet {
    pub(crate) keys: Vec<JsonObject<Jwk>>,
    #[serde(default)]
    pub(crate) spiffe_sequence: Option<u64>,
    #[serde(default)]
    pub(crate) spiffe_refresh_hint: Option<i64>,
}

/// The members of a JWK that zt reads; others are ignored.
#[derive(serde::Deserialize)]
pub(crate) struct Jwk {
    #[serde(default)]
    pub(crate) kty: Option<String>,
    #[serde(default, rename = "use")]
    pub(crate) use_: Option<String>,
    #[serde(default)]
    pub(crate) x5c: Option<Vec<String>>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) alg: Option<String>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) crv: Option<String>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) x: Option<String>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) y: Option<String>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) n: Option<String>,
    #[cfg(feature = "jwt")]
    #[serde(default)]
    pub(crate) e: Option<String>,
}

/// `T` read from a JSON object only: derived `Deserialize` also reads a struct from an
/// array of its field values, and `[[]]` is neither a JWK Set nor a JWK.
pub(crate) struct JsonObject<T>(pub(crate) T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Self)
    }
}

struct ObjectVisitor<T>(PhantomData<fn() -> T>);

impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

/// Bundles of several trust domains, one per domain, for federation.
#[derive(Clone, Default)]
pub struct BundleSet {
    bundles: HashMap<TrustDomain, X509Bundle>,
}

// === impl BundleSet ===

impl BundleSet {
    /// An empty set: no trust domain is trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bundle`, replacing (never merging with) the bundle of the same trust
    /// domain. Returns the replaced bundle.
    pub fn insert(&mut self, bundle: X509Bundle) -> Option<X509Bundle> {
        self.bundles.insert(bundle.trust_domain().clone(), bundle)
    }

    /// Adds `bundle` and returns the set, for chaining.
    #[must_use]
    pub fn with(mut self, bundle: X509Bundle) -> Self {
        self.insert(bundle);
        self
    }

    /// Removes the bundle of `trust_domain`: its SVIDs are no longer trusted.
    pub fn remove(&mut self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        self.bundles.remove(trust_domain)
    }

    /// The bundle of `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&X509Bundle> {
        self.bundles.get(trust_domain)
    }

    /// Iterates over the bundles in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &X509Bundle> {
        self.bundles.values()
    }

    /// Number of trust domains.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// `true` when no trust domain is trusted.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl FromIterator<X509Bundle> for BundleSet {
    fn from_iter<I: IntoIterator<Item = X509Bundle>>(iter: I) -> Self {
        let mut set = Self::new();
        for bundle in iter {
            set.insert(bundle);
        }
        set
    }
}

impl fmt::Debug for BundleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut domains: Vec<_> = self.bundles.values().collect();
        domains.sort_by(|a, b| a.trust_domain().cmp(b.trust_domain()));
        f.debug_list().entries(domains).finish()
    }
}

/// What is wrong with a bundle document, without a word of its content: a file
/// of secrets pointed at by mistake must not end up in logs and status pages.
fn json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "not a SPIFFE bundle document (unexpected field, value or type)",
        Category::Eof => "cut short",
    };
    format!("{what} at line {} column {}", err.line(), err.column())
}
