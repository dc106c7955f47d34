//! Presenting our JWT-SVID on outgoing calls (feature `jwt`):
//! [`bearer_interceptor`] adds `authorization: Bearer <token>` with the current
//! token of a [`JwtSvidSource`] to every call of a tonic client.
//!
//! A call for which the source has no token that has not expired is not sent:
//! it fails with `UNAUTHENTICATED` on the client, so a server never sees a call
//! that silently lost its caller's identity.
//!
//! ```
//! use tonic::service::Interceptor;
//! use zt_core::jwt::JwtSvid;
//!
//! # let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9mcm9udGVuZCIsImF1ZCI6Im9yZGVycy1hcGkiLCJleHAiOjQxMDI0NDQ4MDB9.c2ln";
//! let mut bearer = zt_tonic::bearer_interceptor(JwtSvid::parse(token)?);
//! let call = bearer.call(tonic::Request::new(()))?;
//! assert_eq!(call.metadata().get("authorization").unwrap(), &format!("Bearer {token}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use zt_core::jwt::JwtSvidSource;

/// A tonic interceptor that adds our JWT-SVID to every call; see the
/// [module docs](self).
#[derive(Clone)]
pub struct BearerInterceptor {
    source: Arc<dyn JwtSvidSource>,
}

/// Adds the current token of `source` to every call.
pub fn bearer_interceptor(source: impl JwtSvidSource + 'static) -> BearerInterceptor {
    BearerInterceptor {
        source: Arc::new(source),
    }
}

impl Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let svid = self
            .source
            .current()
            .ok_or_else(|| Status::unauthenticated("no JWT-SVID to present"))?;
        let value = MetadataValue::try_from(format!("Bearer {}", svid.token()))
            .map_err(|_| Status::unauthenticated("JWT-SVID is not a valid metadata value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

impl fmt::Debug for BearerInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerInterceptor").finish_non_exhaustive()
    }
}
