//! JWT-SVIDs (feature `jwt`): workload identity that travels in the request,
//! for calls that reach a service through a proxy, a gateway or a queue, where
//! the mTLS peer is the intermediary and not the original caller.
//!
//! - [`JwtBundle`]: a trust domain's JWT authorities, the `jwt-svid` keys of its
//!   SPIFFE bundle; [`JwtBundleSet`] holds one per trust domain (federation).
//! - [`JwtBundles`]: the set in force, replaced as a whole and read with one
//!   atomic load; [`JwtBundles::watch_files`] keeps it in step with bundle files
//!   (feature `files`), keeping the last good bundle of a domain whose file does
//!   not load.
//! - [`JwtValidator`]: validates a token for one audience exactly as the
//!   JWT-SVID specification says, and yields the verified [`JwtPeer`].
//! - [`JwtSvid`]: a token of our own to present; [`JwtSvidSource`] gives the
//!   current one: in memory, from a watched file ([`JwtSvidFile`]), or from the
//!   Workload API (`WorkloadJwtSvid`, which also streams JWT bundles into
//!   [`JwtBundles`] with `WorkloadJwtBundles`).
//!
//! zt-tower's `AuthorizeLayer::jwt` validates the `Authorization: Bearer` token of
//! every request and decides the policy on the mTLS peer **and** the token's
//! subject (`from: {jwt: {...}}`).
//!
//! ```
//! use zt_core::jwt::{JwtBundle, JwtBundleSet, JwtBundles, JwtError, JwtValidator};
//!
//! let bundle = JwtBundle::from_spiffe_json("example.org".parse()?, br#"{"keys": [{
//!     "use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256",
//!     "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
//!     "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps"}]}"#)?;
//! let bundles = JwtBundles::new(JwtBundleSet::new().with(bundle));
//! let validator = JwtValidator::new(bundles, "orders-api")?;
//!
//! // An unsigned token is never accepted.
//! let unsigned = "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.\
//!     eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9mcm9udGVuZCIsImF1ZCI6Im9yZGVycy1hcGkiLCJleHAiOjQxMDI0NDQ4MDB9.";
//! assert!(matches!(validator.validate(unsigned), Err(JwtError::UnsupportedAlgorithm(_))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bundle;
mod svid;
mod validate;
#[cfg(feature = "files")]
mod watch;

pub use bundle::{JwtBundle, JwtBundleSet, JwtBundles, MAX_JWT_AUTHORITIES, MIN_RSA_BITS};
pub use svid::{JwtSvid, JwtSvidSource};
pub use validate::{DEFAULT_LEEWAY, JwtError, JwtPeer, JwtValidator, MAX_JWT_BYTES, MAX_LEEWAY};
#[cfg(feature = "files")]
pub use watch::{JwtBundleFileError, JwtBundleWatch, JwtSvidFile};

/// Makes sure `jsonwebtoken` has a crypto backend: exactly one of its backends
/// is chosen by zt-core's provider features; with both, aws-lc-rs is installed
/// as its default, so that no signature check can find none.
fn crypto_backend() -> Result<(), JwtError> {
    use jsonwebtoken::crypto::CryptoProvider;
    if CryptoProvider::try_get_default().is_some() {
        return Ok(());
    }
    #[cfg(feature = "aws-lc-rs")]
    {
        // Another thread may have installed one meanwhile; either will do.
        let _ = CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    }
    CryptoProvider::try_get_default()
        .map(drop)
        .ok_or(JwtError::NoCryptoBackend)
}
