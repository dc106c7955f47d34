//! The axum extractors for the peer and the decision that let the request
//! through (feature `axum`).
//!
//! [`Authorized`] takes the [`Decision`] that [`AuthorizeLayer`](crate::AuthorizeLayer)
//! put into the extensions of every request it let through: which rule allowed
//! it, which audit rules matched, whether a dry-run policy let a denial through.
//! It is there for handlers that check further at the level of the resource.
//! Without the layer in front of the route it is refused like [`Peer`].
//!
//! [`Peer`] takes the [`PeerIdentity`] that [`Server`](crate::Server) put into the
//! request's extensions. `Option<Peer>` never rejects. A plain `Peer` on a request
//! without one is a server setup error: it is refused with `500 Internal Server
//! Error` and a message that says how to fix the setup. On a server that
//! [allows anonymous peers](crate::ServerBuilder::allow_anonymous), a request from
//! one carries an [`AnonymousPeer`] instead: `Peer` refuses it with `403
//! Forbidden`, `Option<Peer>` is `None`, and [`PeerOrAnonymous`] tells the two
//! apart.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//! use zt_tower::Peer;
//!
//! async fn whoami(Peer(peer): Peer) -> String {
//!     peer.id().to_string()
//! }
//!
//! let app: Router = Router::new().route("/whoami", get(whoami));
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! // Not served by zt_tower::Server: no peer, and the rejection says so.
//! let response = rt.block_on(app.oneshot(Request::get("/whoami").body(Body::empty())?))?;
//! assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Deref;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;
use zt_core::{AnonymousPeer, Decision, PeerIdentity, Principal};

/// The verified identity of the client that sent the request.
#[derive(Clone, Debug)]
pub struct Peer(pub PeerIdentity);

// === impl Peer ===

impl Deref for Peer {
    type Target = PeerIdentity;

    fn deref(&self) -> &PeerIdentity {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = PeerRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, PeerRejection> {
        if let Some(peer) = parts.extensions.get::<PeerIdentity>() {
            return Ok(Peer(peer.clone()));
        }
        if parts.extensions.get::<AnonymousPeer>().is_some() {
            return Err(PeerRejection::Anonymous);
        }
        Err(PeerRejection::Missing(MissingPeer(())))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<PeerIdentity>().cloned().map(Peer))
    }
}

/// Who sent the request: a verified peer, or an anonymous one on a server that
/// [allows them](crate::ServerBuilder::allow_anonymous). `Option<PeerOrAnonymous>`
/// never rejects.
///
/// ```
/// use axum::{Router, routing::get};
/// use zt_tower::{PeerOrAnonymous, Principal};
///
/// async fn hello(PeerOrAnonymous(peer): PeerOrAnonymous) -> String {
///     match peer {
///         Principal::Verified(peer) => format!("hello {}", peer.id()),
///         _ => "hello stranger".to_owned(),
///     }
/// }
///
/// let app: Router = Router::new().route("/hello", get(hello));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct PeerOrAnonymous(pub Principal);

// === impl PeerOrAnonymous ===

impl PeerOrAnonymous {
    fn from_extensions(extensions: &http::Extensions) -> Option<Self> {
        if let Some(peer) = extensions.get::<PeerIdentity>() {
            return Some(Self(Principal::Verified(peer.clone())));
        }
        extensions
            .get::<AnonymousPeer>()
            .map(|anonymous| Self(Principal::Anonymous(*anonymous)))
    }
}

impl Deref for PeerOrAnonymous {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerOrAnonymous {
    type Rejection = MissingPeer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, MissingPeer> {
        Self::from_extensions(&parts.extensions).ok_or(MissingPeer(()))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for PeerOrAnonymous {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_extensions(&parts.extensions))
    }
}

/// Rejection of [`Peer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRejection {
    /// The request carries no peer at all: a setup error, answered `500`.
    #[error(transparent)]
    Missing(#[from] MissingPeer),
    /// The request comes from an anonymous peer, which a handler that takes a
    /// [`Peer`] does not serve: answered `403 Forbidden`. The policy admitted it
    /// to this route; take an `Option<Peer>` or a [`PeerOrAnonymous`] to serve it.
    #[error("forbidden: this route needs a client certificate")]
    Anonymous,
}

impl IntoResponse for PeerRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Missing(missing) => missing.into_response(),
            Self::Anonymous => {
                tracing::warn!(
                    target: "zt::authz",
                    peer = "anonymous",
                    "the policy admitted an anonymous peer to a handler that needs a verified \
                     one (zt_tower::Peer); refused"
                );
                (StatusCode::FORBIDDEN, self.to_string()).into_response()
            }
        }
    }
}

/// Rejection of [`Peer`] and [`PeerOrAnonymous`]: the request carries no peer,
/// because the application is not served by [`Server`](crate::Server).
#[derive(Debug, thiserror::Error)]
#[error(
    "no verified peer identity on this request: serve the application with zt_tower::Server, \
     which authenticates every connection with mutual TLS and puts the peer's identity \
     into each request"
)]
pub struct MissingPeer(());

impl IntoResponse for MissingPeer {
    fn into_response(self) -> Response {
        tracing::error!(target: "zt::authz", "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// The [`Decision`] that let the request through, put into its extensions by
/// [`Authorize`](crate::Authorize); see the [module docs](self).
///
/// ```
/// use zt_tower::extract::Authorized;
///
/// async fn orders(Authorized(decision): Authorized) -> String {
///     // Only the `orders-admin` rule grants the full view.
///     if decision.rule() == Some("orders-admin") { "all orders".into() } else { "your orders".into() }
/// }
/// # let _ = axum::Router::<()>::new().route("/orders", axum::routing::get(orders));
/// ```
#[derive(Clone, Debug)]
pub struct Authorized(pub Decision);

// === impl Authorized ===

impl Deref for Authorized {
    type Target = Decision;

    fn deref(&self) -> &Decision {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authorized {
    type Rejection = MissingDecision;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, MissingDecision> {
        parts
            .extensions
            .get::<Decision>()
            .cloned()
            .map(Authorized)
            .ok_or(MissingDecision(()))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authorized {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Decision>().cloned().map(Authorized))
    }
}

/// Rejection of [`Authorized`]: the request did not pass through
/// [`Authorize`](crate::Authorize).
#[derive(Debug, thiserror::Error)]
#[error(
    "no authorization decision on this request: layer zt_tower::AuthorizeLayer over the \
     routes that read it, so that every request is decided before it reaches them"
)]
pub struct MissingDecision(());

impl IntoResponse for MissingDecision {
    fn into_response(self) -> Response {
        tracing::error!(target: "zt::authz", "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
