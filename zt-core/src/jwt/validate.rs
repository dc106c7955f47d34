//! Validating a JWT-SVID as the JWT-SVID specification says (§3, §4): the
//! [`JwtValidator`], the verified [`JwtPeer`], and every reason for refusing a
//! token, [`JwtError`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::bundle::{JwtBundleSet, JwtBundles};
use crate::id::{IdError, SpiffeId, TrustDomain};

/// The longest token accepted, in bytes. A JWT-SVID signed with a 4096-bit RSA
/// key and a few audiences is under 2 KiB.
pub const MAX_JWT_BYTES: usize = 8 * 1024;

/// The most clock skew [`JwtValidator::leeway`] accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The clock skew allowed by default when checking `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Why a JWT-SVID was refused. Messages name what failed, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than [`MAX_JWT_BYTES`].
    #[error("token of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The token is not a compact JWS of three base64url parts, or its header
    /// or claims are not JSON objects of the expected shape.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm outside the JWT-SVID algorithms (RS, PS and
    /// ES with 256, 384 or 512 bits): `none`, HMAC, EdDSA, or unknown.
    #[error("algorithm {0} is not allowed for JWT-SVIDs")]
    UnsupportedAlgorithm(String),
    /// The header marks an extension as critical (`crit`), which zt does not
    /// understand (RFC 7515 §4.1.11).
    #[error("token has critical header extensions")]
    CriticalHeader,
    /// The header's `typ` is neither `JWT` nor `JOSE` (JWT-SVID §2.3).
    #[error("token type is neither JWT nor JOSE")]
    Type,
    /// The header names no key (`kid`).
    #[error("token header has no key ID")]
    MissingKeyId,
    /// A claim the JWT-SVID specification requires is absent: `sub`, `aud`, `exp`.
    #[error("token has no {0} claim")]
    MissingClaim(&'static str),
    /// `sub` is not a SPIFFE ID.
    #[error("token subject is not a SPIFFE ID: {0}")]
    Subject(IdError),
    /// No JWT bundle is trusted for the subject's trust domain.
    #[error("no JWT bundle for trust domain {0}")]
    UnknownTrustDomain(TrustDomain),
    /// The subject's trust domain has no key with the token's `kid`; a key of
    /// another trust domain never counts.
    #[error("no key {kid:?} in the JWT bundle of {trust_domain}")]
    UnknownKey {
        /// The subject's trust domain.
        trust_domain: TrustDomain,
        /// The key ID, cut to 64 characters.
        kid: String,
    },
    /// The key named by `kid` does not sign with the token's algorithm.
    #[error("key {kid:?} does not sign with {alg}")]
    AlgorithmMismatch {
        /// The key ID, cut to 64 characters.
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// The signature does not verify with the key.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// `aud` does not contain the audience this validator expects.
    #[error("token audience does not include {0:?}")]
    Audience(String),
    /// A validator with no JWT crypto backend: zt-core was built with neither
    /// `aws-lc-rs` nor `ring`.
    #[error("no crypto backend for JWT signatures: enable zt-core's aws-lc-rs or ring feature")]
    NoCryptoBackend,
}

/// The verified subject of a JWT-SVID: who the token says the original caller
/// is, vouched for by the subject trust domain's JWT bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtPeer {
    id: SpiffeId,
    audience: Arc<[String]>,
    expiry: SystemTime,
}

// === impl JwtPeer ===

impl JwtPeer {
    /// The token's subject (`sub`).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The token's audience (`aud`), the expected one among them.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// When the token expires (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }
}

impl fmt::Debug for JwtPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtPeer")
            .field("id", &self.id)
            .field("audience", &self.audience)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// Validates JWT-SVIDs for one audience against live [`JwtBundles`].
///
/// A token is accepted only when all of these hold (JWT-SVID §3–§4):
///
/// - it is at most [`MAX_JWT_BYTES`], a compact JWS whose header has no `crit`,
///   a `typ` (if any) of `JWT` or `JOSE`, a `kid`, and an `alg` among `RS256`,
///   `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384` — never
///   `none`, never HMAC (`ES512` is allowed by the specification but not by the
///   signature library zt uses, so it is refused);
/// - `sub` is a SPIFFE ID, and the `kid` names a key in the JWT bundle of
///   **that ID's trust domain**, whose type signs with `alg`;
/// - the signature verifies with that key;
/// - `aud` contains the expected audience, `exp` is present and has not passed,
///   and `nbf`, if present, has (each with the leeway).
///
/// Signatures are verified by `jsonwebtoken`, on the crypto backend zt-core was
/// built with; zt adds the SPIFFE rules around it and writes no cryptography.
#[derive(Clone)]
pub struct JwtValidator {
    bundles: JwtBundles,
    audience: Arc<str>,
    leeway: Duration,
    /// For the digests of the record of verified tokens; `None`: no record.
    provider: Option<Arc<rustls::crypto::CryptoProvider>>,
}

/// The most distinct tokens one published bundle set remembers as verified.
/// An entry is about 200 bytes; tokens live minutes, bundles hours.
pub(crate) const MAX_VERIFIED_TOKENS: usize = 4096;

/// The tokens whose signatures verified against one published bundle set, by
/// the SHA-256 digest of the whole token: what the signature established (the
/// subject, every audience, `exp`, `nbf`), never the checks that depend on the
/// validator (audience) or the time, which every validation does again. At most
/// [`MAX_VERIFIED_TOKENS`], never evicted; failures are never kept.
#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

#[derive(Clone)]
struct Verified {
    peer: JwtPeer,
    not_before: Option<u64>,
}

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32]) -> Option<Verified> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], verified: Verified) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() < MAX_VERIFIED_TOKENS {
            entries.insert(digest, verified);
        }
    }
}

// === impl JwtValidator ===

impl JwtValidator {
    /// A validator of tokens for `audience`, with the keys in `bundles`.
    ///
    /// # Errors
    ///
    /// [`JwtError::NoCryptoBackend`] when no backend for signatures is available.
    pub fn new(bundles: JwtBundles, audience: impl Into<Arc<str>>) -> Result<Self, JwtError> {
        super::crypto_backend()?;
        Ok(Self {
            bundles,
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            provider: crate::provider::default_provider().ok(),
        })
    }

    /// Allows `leeway` of clock skew on `exp` and `nbf` (default
    /// [`DEFAULT_LEEWAY`], at most [`MAX_LEEWAY`]; more is cut to it).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// The audience a token must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The bundles tokens are checked against.
    pub fn bundles(&self) -> &JwtBundles {
        &self.bundles
    }

    /// Validates `token` now, with the bundles in force.
    ///
    /// # Errors
    ///
    /// Why the token is refused; see [`JwtError`].
    pub fn validate(&self, token: &str) -> Result<JwtPeer, JwtError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(JwtError::TooLarge {
                size: token.len(),
                limit: MAX_JWT_BYTES,
            });
        }
        let published = self.bundles.current();
        let digest = self.digest(token);
        if let Some(verified) = digest.as_ref().and_then(|d| published.verified.get(d)) {
            return self.check_claims(verified);
        }
        let verified = self.verify(token, &published.set)?;
        if let Some(digest) = digest {
            published.verified.insert(digest, verified.clone());
        }
        Ok(verified.peer)
    }

    fn digest(&self, token: &str) -> Option<[u8; 32]> {
        let sha256 = crate::verified::sha256(self.provider.as_deref()?)?;
        sha256.hash(token.as_bytes()).as_ref().try_into().ok()
    }

    /// The checks a recorded token needs again: the audience of this validator,
    /// and the time, exactly as the signature library checks them.
    fn check_claims(&self, verified: Verified) -> Result<JwtPeer, JwtError> {
        if !verified.peer.audience.iter().any(|a| **a == *self.audience) {
            return Err(JwtError::Audience(self.audience.to_string()));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let leeway = self.leeway.as_secs();
        let exp = verified
            .peer
            .expiry
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if exp < now.saturating_sub(leeway) {
            return Err(JwtError::Expired);
        }
        if verified
            .not_before
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(verified.peer)
    }

    /// The whole validation: shape, key, signature and claims.
    fn verify(&self, token: &str, bundles: &JwtBundleSet) -> Result<Verified, JwtError> {
        let [header, claims, _signature] = compact_parts(token)?;
        let header: Header = json_part(header, "header")?;
        if header.crit.is_some() {
            return Err(JwtError::CriticalHeader);
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| t != "JWT" && t != "JOSE")
        {
            return Err(JwtError::Type);
        }
        let alg = algorithm(&header.alg)?;
        let kid = header.kid.ok_or(JwtError::MissingKeyId)?;
        let subject: Subject = json_part(claims, "claims")?;
        let sub = subject.sub.ok_or(JwtError::MissingClaim("sub"))?;
        let id: SpiffeId = sub.parse().map_err(JwtError::Subject)?;

        let bundle = bundles
            .get(id.trust_domain())
            .ok_or_else(|| JwtError::UnknownTrustDomain(id.trust_domain().clone()))?;
        let key = bundle.key(&kid).ok_or_else(|| JwtError::UnknownKey {
            trust_domain: id.trust_domain().clone(),
            kid: cut(&kid),
        })?;
        if !key.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmMismatch {
                kid: cut(&kid),
                alg: header.alg,
            });
        }

        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&*self.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.sub = Some(sub);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|err| self.error(err.kind()))?;
        let audience = data
            .claims
            .aud
            .ok_or(JwtError::MissingClaim("aud"))?
            .into_list();
        let exp = data.claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
        Ok(Verified {
            peer: JwtPeer {
                id,
                audience,
                expiry: UNIX_EPOCH + Duration::from_secs(exp),
            },
            not_before: data.claims.nbf,
        })
    }

    fn error(&self, kind: &ErrorKind) -> JwtError {
        match kind {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidAudience => JwtError::Audience(self.audience.to_string()),
            ErrorKind::MissingRequiredClaim(claim) => {
                JwtError::MissingClaim(match claim.as_str() {
                    "exp" => "exp",
                    "aud" => "aud",
                    _ => "sub",
                })
            }
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                JwtError::Malformed("algorithm does not fit the key")
            }
            // The subject was read before the signature was checked; a second
            // reading that disagrees is a malformed token.
            ErrorKind::InvalidSubject => JwtError::Malformed("subject is ambiguous"),
            _ => JwtError::Malformed("token does not decode"),
        }
    }
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

/// The JWT-SVID algorithms the signature library verifies.
fn algorithm(name: &str) -> Result<Algorithm, JwtError> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        _ => return Err(JwtError::UnsupportedAlgorithm(cut(name))),
    })
}

/// At most 64 characters of a value a peer chose, for errors and logs.
fn cut(value: &str) -> String {
    value.chars().take(64).collect()
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct Subject {
    #[serde(default)]
    sub: Option<String>,
}

/// Optional here, so that a missing claim is reported as missing by the
/// validation after the signature, not as a shape error.
#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(HashSet<String>),
}

impl Audience {
    /// The audiences, as a list.
    pub(super) fn into_list(self) -> Arc<[String]> {
        match self {
            Self::One(one) => Arc::new([one]),
            Self::Many(many) => many.into_iter().collect(),
        }
    }
}

/// The header, claims and signature of a compact JWS.
pub(super) fn compact_parts(token: &str) -> Result<[&str; 3], JwtError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => Ok([header, claims, signature]),
        _ => Err(JwtError::Malformed("not three dot-separated parts")),
    }
}

/// One base64url part of the token, read as the JSON object `T`.
pub(super) fn json_part<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, JwtError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| {
            JwtError::Malformed(if what == "header" {
                "header is not unpadded base64url"
            } else {
                "claims are not unpadded base64url"
            })
        })?;
    let crate::bundle::JsonObject(value) = serde_json::from_slice(&bytes).map_err(|_| {
        JwtError::Malformed(if what == "header" {
            "header is not a JSON object of the JWS shape"
        } else {
            "claims are not a JSON object of the JWT-SVID shape"
        })
    })?;
    Ok(value)
}
