//! Per-call application checks with the client's identity at hand, as tonic
//! interceptors.
//!
//! The policy decides which client may call which method; some checks need more:
//! the tenant in the request's metadata must be the caller's own, a method is
//! open only to IDs of a certain shape. [`interceptor`] turns a function of the
//! verified [`PeerIdentity`] and the call's `tonic::Request<()>` (metadata and
//! extensions; tonic interceptors never see the message) into a tonic
//! interceptor, for `FooServer::with_interceptor`, `InterceptedService` or
//! `tonic::service::InterceptorLayer`. A call without a peer identity, an
//! anonymous one included, is refused with `UNAUTHENTICATED` before the function
//! runs.
//!
//! ```
//! # let ca = zt_core::dev::DevCa::new("example.org".parse()?)?;
//! # let svid = ca.mint(&"spiffe://example.org/tenant/acme".parse()?)?;
//! # let acme = zt_tonic::PeerIdentity::from_chain(svid.chain().to_vec(), zt_core::PeerRole::Client)?;
//! use tonic::service::Interceptor;
//! use tonic::{Code, Request, Status};
//! use zt_tonic::PeerIdentity;
//!
//! // Only the tenant's own workload may name it in `x-tenant`.
//! let mut own_tenant = zt_tonic::interceptor(|peer: &PeerIdentity, request: &Request<()>| {
//!     let tenant = request.metadata().get("x-tenant").and_then(|v| v.to_str().ok());
//!     match tenant {
//!         Some(t) if peer.id().path() == format!("/tenant/{t}") => Ok(()),
//!         _ => Err(Status::permission_denied("not this tenant's workload")),
//!     }
//! });
//!
//! let call = |tenant: &str| {
//!     let mut request = Request::new(());
//!     request.metadata_mut().insert("x-tenant", tenant.parse().unwrap());
//!     request.extensions_mut().insert(acme.clone()); // done by the server
//!     request
//! };
//! assert!(own_tenant.call(call("acme")).is_ok());
//! assert_eq!(own_tenant.call(call("globex")).unwrap_err().code(), Code::PermissionDenied);
//! assert_eq!(own_tenant.call(Request::new(())).unwrap_err().code(), Code::Unauthenticated);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use tonic::service::Interceptor;
use tonic::{Request, Status};
use zt_core::PeerIdentity;

use crate::server::{is_anonymous, peer};

/// A per-call check with the client's verified identity. Implemented for
/// closures `FnMut(&PeerIdentity, &tonic::Request<()>) -> Result<(), Status>`.
pub trait PeerCheck {
    /// Lets the call through with `Ok(())`, or refuses it with the status.
    ///
    /// # Errors
    ///
    /// The status the client gets.
    fn check(&mut self, peer: &PeerIdentity, request: &Request<()>) -> Result<(), Status>;
}

impl<F> PeerCheck for F
where
    F: FnMut(&PeerIdentity, &Request<()>) -> Result<(), Status>,
{
    fn check(&mut self, peer: &PeerIdentity, request: &Request<()>) -> Result<(), Status> {
        self(peer, request)
    }
}

/// A tonic interceptor running `check` on every call with the client's
/// identity; see the [module docs](self).
pub fn interceptor<C: PeerCheck>(check: C) -> PeerInterceptor<C> {
    PeerInterceptor { check }
}

/// The tonic interceptor made by [`interceptor`].
#[derive(Clone)]
pub struct PeerInterceptor<C> {
    check: C,
}

// === impl PeerInterceptor ===

impl<C: PeerCheck> Interceptor for PeerInterceptor<C> {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(peer) = peer(&request) else {
            if is_anonymous(&request) {
                // The policy admitted an anonymous call to a service whose
                // checks need a verified peer: refused, not a setup error.
                tracing::info!(
                    target: "zt::authz",
                    peer = "anonymous",
                    decision = "deny",
                    rule = "interceptor",
                    "anonymous call refused: the interceptor checks verified peers only"
                );
                return Err(Status::unauthenticated("no verified peer identity"));
            }
            tracing::error!(
                target: "zt::authz",
                decision = "deny",
                "call carries no verified peer identity: serve it on zt_tonic::Incoming \
                 connections (or with zt_tower::Server)"
            );
            return Err(Status::unauthenticated("no verified peer identity"));
        };
        if let Err(status) = self.check.check(peer, &request) {
            tracing::info!(
                target: "zt::authz",
                peer = %peer.id(),
                decision = "deny",
                rule = "interceptor",
                code = ?status.code(),
                reason = status.message(),
                "call refused"
            );
            return Err(status);
        }
        Ok(request)
    }
}

impl<C> fmt::Debug for PeerInterceptor<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerInterceptor").finish_non_exhaustive()
    }
}
