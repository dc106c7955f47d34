//! JWT authorities: the `jwt-svid` keys of a trust domain's SPIFFE bundle
//! ([`JwtBundle`]), the bundles of every trusted domain ([`JwtBundleSet`]), and the
//! live set that validators read and sources replace ([`JwtBundles`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::watch;

use super::validate::VerifiedTokens;
use crate::bundle::{JsonObject, Jwk, read_jwk_set};
use crate::error::BundleError;
use crate::id::TrustDomain;

/// The smallest RSA modulus accepted, in bits (NIST SP 800-57: 2048 bits through 2030).
pub const MIN_RSA_BITS: usize = 2048;

/// The most `jwt-svid` keys one bundle may hold.
pub const MAX_JWT_AUTHORITIES: usize = 256;

const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One JWT authority: a public key and the algorithms it may sign with.
#[derive(Clone)]
pub(crate) struct JwtKey {
    pub(crate) decoding: DecodingKey,
    /// The JWT-SVID algorithms (JWT-SVID §3) this key's type allows, narrowed to
    /// its `alg` when the bundle names one.
    pub(crate) algorithms: Box<[Algorithm]>,
}

/// The JWT authorities of one trust domain: the `jwt-svid` keys of its SPIFFE
/// bundle, by key ID.
#[derive(Clone)]
pub struct JwtBundle {
    trust_domain: TrustDomain,
    keys: Arc<HashMap<String, JwtKey>>,
    sequence: Option<u64>,
}

// === impl JwtBundle ===

impl JwtBundle {
    /// A bundle with no keys: no JWT-SVID of `trust_domain` validates.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            keys: Arc::default(),
            sequence: None,
        }
    }

    /// Reads the `jwt-svid` entries of a SPIFFE bundle document (SPIFFE Trust
    /// Domain and Bundle §4; JWT-SVID §6): the format SPIRE serves, spiffe-helper
    /// writes, and the Workload API's `FetchJWTBundles` carries.
    ///
    /// Entries whose `use` is not `jwt-svid` (X.509 authorities among them) and
    /// entries whose `kty` is neither `EC` nor `RSA` are ignored, as the bundle
    /// format says. A `jwt-svid` entry must have a `kid` unique in the bundle and be
    /// a P-256 or P-384 key (`ES256`, `ES384`) or an RSA key of at least
    /// [`MIN_RSA_BITS`] bits (`RS*`, `PS*`); an `alg` member narrows it to that
    /// algorithm. `keys: []` yields an empty bundle.
    ///
    /// # Errors
    ///
    /// When the document is not a bundle ([`BundleError::Json`],
    /// [`BundleError::TooLarge`]) or a `jwt-svid` entry is not a key zt can verify
    /// with ([`BundleError::JwtKey`]); a bundle with one bad key is refused whole.
    pub fn from_spiffe_json(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        let doc = read_jwk_set(json)?;
        let mut keys = HashMap::new();
        for (index, JsonObject(jwk)) in doc.keys.iter().enumerate() {
            if jwk.use_.as_deref() != Some("jwt-svid") {
                continue;
            }
            let Some((kid, key)) = jwt_key(jwk).map_err(|reason| BundleError::JwtKey {
                index,
                reason: reason.into(),
            })?
            else {
                continue;
            };
            if keys.len() >= MAX_JWT_AUTHORITIES {
                return Err(BundleError::TooManyAuthorities {
                    len: doc.keys.len(),
                    limit: MAX_JWT_AUTHORITIES,
                });
            }
            if keys.insert(kid, key).is_some() {
                return Err(BundleError::JwtKey {
                    index,
                    reason: "kid repeats an earlier key's".into(),
                });
            }
        }
        Ok(Self {
            trust_domain,
            keys: Arc::new(keys),
            sequence: doc.spiffe_sequence,
        })
    }

    /// The trust domain whose JWT-SVIDs these keys sign.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The key IDs, in no particular order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys the bundle holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the bundle holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The document's `spiffe_sequence`, when it has one.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    pub(crate) fn key(&self, kid: &str) -> Option<&JwtKey> {
        self.keys.get(kid)
    }
}

impl fmt::Debug for JwtBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.key_ids().collect();
        kids.sort_unstable();
        f.debug_struct("JwtBundle")
            .field("trust_domain", &self.trust_domain)
            .field("key_ids", &kids)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// A `jwt-svid` entry as a key: `Ok(None)` for a key type the bundle format says to
/// ignore.
fn jwt_key(jwk: &Jwk) -> Result<Option<(String, JwtKey)>, &'static str> {
    let kid = match jwk.kid.as_deref() {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err("jwt-svid key has no kid"),
    };
    let (decoding, algorithms): (DecodingKey, &[Algorithm]) = match jwk.kty.as_deref() {
        Some("EC") => {
            let (Some(x), Some(y)) = (jwk.x.as_deref(), jwk.y.as_deref()) else {
                return Err("EC key without x and y");
            };
            let (algorithm, size) = match jwk.crv.as_deref() {
                Some("P-256") => (&[Algorithm::ES256][..], 32),
                Some("P-384") => (&[Algorithm::ES384][..], 48),
                _ => return Err("EC key on a curve other than P-256 or P-384"),
            };
            if decoded_len(x)? != size || decoded_len(y)? != size {
                return Err("EC key coordinates do not fit its curve");
            }
            let key = DecodingKey::from_ec_components(x, y)
                .map_err(|_| "EC key coordinates do not decode")?;
            (key, algorithm)
        }
        Some("RSA") => {
            let (Some(n), Some(e)) = (jwk.n.as_deref(), jwk.e.as_deref()) else {
                return Err("RSA key without n and e");
            };
            let modulus = decode(n)?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant.saturating_mul(8) < MIN_RSA_BITS {
                return Err("RSA key shorter than 2048 bits");
            }
            let key = DecodingKey::from_rsa_components(n, e)
                .map_err(|_| "RSA key components do not decode")?;
            (key, RSA_ALGORITHMS)
        }
        _ => return Ok(None),
    };
    let algorithms: Box<[Algorithm]> = match jwk.alg.as_deref() {
        None => algorithms.into(),
        Some(name) => {
            let named = name
                .parse::<Algorithm>()
                .ok()
                .filter(|alg| algorithms.contains(alg))
                .ok_or("alg is not a JWT-SVID algorithm of this key's type")?;
            Box::new([named])
        }
    };
    Ok(Some((
        kid,
        JwtKey {
            decoding,
            algorithms,
        },
    )))
}

fn decode(value: &str) -> Result<Vec<u8>, &'static str> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| "key member is not unpadded base64url")
}

fn decoded_len(value: &str) -> Result<usize, &'static str> {
    decode(value).map(|bytes| bytes.len())
}

/// The JWT bundles of several trust domains, one per domain, for federation.
#[derive(Clone, Debug, Default)]
pub struct JwtBundleSet {
    bundles: HashMap<TrustDomain, JwtBundle>,
}

// === impl JwtBundleSet ===

impl JwtBundleSet {
    /// An empty set: no JWT-SVID validates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bundle`, replacing (never merging with) the bundle of the same trust
    /// domain. Returns the replaced bundle.
    pub fn insert(&mut self, bundle: JwtBundle) -> Option<JwtBundle> {
        self.bundles.insert(bundle.trust_domain().clone(), bundle)
    }

    /// Adds `bundle` and returns the set, for chaining.
    #[must_use]
    pub fn with(mut self, bundle: JwtBundle) -> Self {
        self.insert(bundle);
        self
    }

    /// The bundle of `trust_domain`.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&JwtBundle> {
        self.bundles.get(trust_domain)
    }

    /// Every bundle, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &JwtBundle> {
        self.bundles.values()
    }

    /// How many trust domains the set holds.
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the set holds no trust domain.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl FromIterator<JwtBundle> for JwtBundleSet {
    fn from_iter<I: IntoIterator<Item = JwtBundle>>(iter: I) -> Self {
        let mut set = Self::new();
        for bundle in iter {
            set.insert(bundle);
        }
        set
    }
}

/// The JWT bundles in force, shared by every validator: a [`JwtBundleSet`]
/// replaced as a whole ([`publish`](Self::publish)), read with one atomic load.
///
/// Each published set keeps its own record of the tokens whose signatures
/// verified against it, so a token seen again costs a digest and the claim
/// checks, not a signature verification; the record goes with the set.
#[derive(Clone)]
pub struct JwtBundles {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Published>,
    changes: watch::Sender<u64>,
}

/// A published set, with its own record of the tokens that verified against it:
/// a new set starts with an empty record by construction.
pub(crate) struct Published {
    pub(crate) set: JwtBundleSet,
    pub(crate) verified: VerifiedTokens,
}

impl Published {
    fn new(set: JwtBundleSet) -> Self {
        Self {
            set,
            verified: VerifiedTokens::default(),
        }
    }
}

fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// === impl JwtBundles ===

impl JwtBundles {
    /// Live bundles starting with `set`.
    pub fn new(set: JwtBundleSet) -> Self {
        let (changes, _) = watch::channel(next_generation());
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Published::new(set)),
                changes,
            }),
        }
    }

    /// Replaces the bundles in force; the next validation uses `set`, and no
    /// token verified against the previous set counts as verified against it.
    pub fn publish(&self, set: JwtBundleSet) {
        self.shared.current.store(Arc::new(Published::new(set)));
        self.shared.changes.send_replace(next_generation());
    }

    /// The bundles in force.
    pub fn load(&self) -> JwtBundleSet {
        self.shared.current.load().set.clone()
    }

    pub(crate) fn current(&self) -> Arc<Published> {
        self.shared.current.load_full()
    }

    /// A receiver that sees every [`publish`](Self::publish) (its value is a
    /// number that changes with each).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}

impl Default for JwtBundles {
    fn default() -> Self {
        Self::new(JwtBundleSet::new())
    }
}

impl fmt::Debug for JwtBundles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtBundles")
            .field("set", &self.shared.current.load().set)
            .finish_non_exhaustive()
    }
}
