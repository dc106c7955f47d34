//! Our own JWT-SVIDs, the tokens a client presents: [`JwtSvid`] and where the
//! current one comes from, [`JwtSvidSource`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::validate::{Audience, JwtError, MAX_JWT_BYTES, compact_parts, json_part};
use crate::id::SpiffeId;

/// A JWT-SVID to present: the token and what it says of itself.
///
/// The token comes from a source we trust (the Workload API, a file the SPIFFE
/// helper writes), so it is read, not verified: its signature is for the
/// receiver to check. `Debug` never prints the token.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSvid {
    token: Arc<str>,
    id: SpiffeId,
    audience: Arc<[String]>,
    expiry: SystemTime,
}

// === impl JwtSvid ===

impl JwtSvid {
    /// Reads `token`: a compact JWS whose claims have a SPIFFE ID in `sub`, an
    /// `aud` and an `exp`. Surrounding white space (a trailing newline in a file)
    /// is ignored.
    ///
    /// # Errors
    ///
    /// When the token is too large, not a compact JWS, or lacks one of those
    /// claims.
    pub fn parse(token: &str) -> Result<Self, JwtError> {
        let token = token.trim();
        if token.len() > MAX_JWT_BYTES {
            return Err(JwtError::TooLarge {
                size: token.len(),
                limit: MAX_JWT_BYTES,
            });
        }
        let [_header, claims, _signature] = compact_parts(token)?;
        let claims: Claims = json_part(claims, "claims")?;
        let id: SpiffeId = claims
            .sub
            .ok_or(JwtError::MissingClaim("sub"))?
            .parse()
            .map_err(JwtError::Subject)?;
        let audience = claims.aud.ok_or(JwtError::MissingClaim("aud"))?.into_list();
        let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
        Ok(Self {
            token: token.into(),
            id,
            audience,
            expiry: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }

    /// The token, to send as `Authorization: Bearer <token>`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Our SPIFFE ID, as the token names it (`sub`).
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The audiences the token is for (`aud`).
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// When the token expires (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expiry
    }
}

impl fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvid")
            .field("id", &self.id)
            .field("audience", &self.audience)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
}

/// Where a client's current JWT-SVID comes from: a token in memory
/// ([`JwtSvid`] itself), a watched file ([`JwtSvidFile`](super::JwtSvidFile), feature
/// `files`), the Workload API
/// ([`WorkloadJwtSvid`](crate::WorkloadJwtSvid), feature `workload-api`).
pub trait JwtSvidSource: Send + Sync {
    /// The token to present now; `None` while there is none that has not
    /// expired.
    fn current(&self) -> Option<JwtSvid>;
}

impl JwtSvidSource for JwtSvid {
    fn current(&self) -> Option<JwtSvid> {
        (!self.is_expired(SystemTime::now())).then(|| self.clone())
    }
}

impl<T: JwtSvidSource + ?Sized> JwtSvidSource for Arc<T> {
    fn current(&self) -> Option<JwtSvid> {
        (**self).current()
    }
}
