//! Per-call authorization of gRPC requests: [`AuthorizeLayer`] and [`Authorize`].
//!
//! The layer goes on the tonic server (`Server::builder().layer(...)`), so it sees
//! every call with its path, `/pkg.Service/Method`. For each call it
//!
//! 1. takes the client's [`PeerIdentity`] from the request (the
//!    [`ConnectInfo`] of a connection from
//!    [`Incoming`](crate::Incoming), or the identity `zt_tower::Server` inserted),
//!    or the mark of an anonymous client on a server that
//!    [allows them](crate::IncomingBuilder::allow_anonymous), whose calls only
//!    `from: {unauthenticated: true}` rules admit and which skip step 2;
//! 2. re-verifies it against the serving identity ([`PeerIdentity::reverify`]), so
//!    a client whose SVID expired or whose trust bundle was withdrawn is refused
//!    on an HTTP/2 connection that is already open;
//! 3. decides the call on its canonical view ([`zt_core::Request`]) with the
//!    policy in force in the [`PolicyStore`]: `grpc` rules match the path's
//!    `/service/method`, `paths` rules match the same path, and the content type
//!    decides nothing — tonic serves a method's path whatever the content type
//!    says. The call is passed on with its canonical path
//!    (`/pkg.Svc/%47et` is routed as `/pkg.Svc/Get`, the method it was decided as);
//! 4. puts the [`Decision`] that let the call through into its
//!    extensions, where a handler reads it ([`decision`](crate::decision())) for
//!    resource-level checks;
//! 5. runs the application's [`DecisionHook`], if any, on calls the policy
//!    allowed — or, for checks that wait for I/O, its
//!    [`AsyncDecisionHook`] with a deadline
//!    ([`AuthorizeLayer::async_hook`]); no answer in time, or a panic, refuses the
//!    call.
//!
//! It is `zt_tower::Authorize` underneath, with the same decision, the same
//! `tracing` events (target `zt::authz`) and the same [`AuthzMetrics`] counters;
//! only the answer to a refusal differs ([`GrpcAnswer`]). A refused call gets a
//! gRPC status, never a bare HTTP error, so every gRPC client reports it: a
//! *trailers-only* response — HTTP 200, `content-type: application/grpc`, no
//! body — with
//!
//! | refusal | `grpc-status` | `grpc-message` |
//! |---|---|---|
//! | no peer identity on the request (a setup error) | 16 `UNAUTHENTICATED` | `no verified peer identity` |
//! | the peer no longer verifies (SVID expired, bundle withdrawn) | 16 `UNAUTHENTICATED` | `peer identity no longer valid` |
//! | the policy denies the call (an anonymous client's included) | 7 `PERMISSION_DENIED` | `permission denied` |
//! | the decision hook refuses the call | 7 `PERMISSION_DENIED` | `permission denied` |
//! | a malformed or conflicting authority, a lower-case method | 3 `INVALID_ARGUMENT` | `malformed request` |
//! | `CONNECT` or `Upgrade` | 12 `UNIMPLEMENTED` | `not implemented` |
//! | a JWT-SVID that does not validate (with `jwt`) | 16 `UNAUTHENTICATED` | `invalid token` |
//!
//! The reason — which rule, why the peer no longer verifies — goes to the log,
//! never to the client.
//!
//! ```
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let source = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! # let client = ca.mint(&"spiffe://example.org/web".parse()?)?;
//! # let peer = zt_tonic::PeerIdentity::from_chain(client.chain().to_vec(), zt_core::PeerRole::Client)?;
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tonic::body::Body;
//! use tower::{Layer, ServiceExt};
//! use zt_tonic::{AuthorizeLayer, Policy, PolicyStore};
//!
//! let policy = Policy::parse(r#"{"rules": [{"name": "web-greets", "action": "allow",
//!     "from": {"ids": ["spiffe://example.org/web"]},
//!     "to": {"grpc": ["helloworld.Greeter/SayHello"]}}]}"#, zt_core::Format::Json)?;
//! let layer = AuthorizeLayer::new(source.identity(), PolicyStore::new(policy));
//! let service = layer.layer(tower::service_fn(|_req: Request<Body>| async {
//!     Ok::<_, Infallible>(Response::new(Body::empty()))
//! }));
//! let call = |path: &str| {
//!     let mut request = Request::post(path).body(Body::empty()).unwrap();
//!     request.extensions_mut().insert(peer.clone()); // done by the server
//!     request
//! };
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! let allowed = rt.block_on(service.clone().oneshot(call("/helloworld.Greeter/SayHello")))?;
//! assert!(allowed.headers().get("grpc-status").is_none());
//!
//! let denied = rt.block_on(service.oneshot(call("/helloworld.Greeter/Admin")))?;
//! assert_eq!(denied.status(), http::StatusCode::OK);
//! assert_eq!(denied.headers()["grpc-status"], "7");
//! assert_eq!(layer.metrics().counts().denied, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;
use zt_core::{Decision, Identity, PeerIdentity, PolicyStore, Principal};
use zt_tower::{Answer, AsyncDecisionHook, AuthzMetrics, DecisionHook, Denial, NoHook};

use crate::server::ConnectInfo;

/// The response future of [`Authorize`]: zt-tower's, answering with
/// [`GrpcAnswer`].
pub type ResponseFuture<F> = zt_tower::authorize::ResponseFuture<F, GrpcAnswer>;

/// The response future of [`AsyncAuthorize`]: zt-tower's, answering with
/// [`GrpcAnswer`].
pub type AsyncResponseFuture<S, F, C> =
    zt_tower::authorize::AsyncResponseFuture<S, F, C, GrpcAnswer>;

/// Answers refusals with gRPC statuses, as the table in the [module docs](self)
/// says.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcAnswer;

impl<B: Default> Answer<B> for GrpcAnswer {
    fn refusal(denial: Denial) -> Response<B> {
        status(denial).into_http()
    }
}

/// The status a refusal is answered with. The messages are the same for every
/// refusal of a kind: the reason is logged, never sent.
fn status(denial: Denial) -> Status {
    match denial {
        Denial::NoIdentity => Status::unauthenticated("no verified peer identity"),
        Denial::UntrustedPeer => Status::unauthenticated("peer identity no longer valid"),
        Denial::Malformed => Status::invalid_argument("malformed request"),
        Denial::Unsupported => Status::unimplemented("not implemented"),
        Denial::InvalidToken => Status::unauthenticated("invalid token"),
        _ => Status::permission_denied("permission denied"),
    }
}

/// Applies [`Authorize`] to a tonic server's services; see the
/// [module docs](self).
#[derive(Clone)]
pub struct AuthorizeLayer<H = NoHook> {
    inner: zt_tower::AuthorizeLayer<H, GrpcAnswer>,
}

// === impl AuthorizeLayer ===

impl AuthorizeLayer {
    /// Re-verifies clients against `identity` and decides calls with the policy
    /// in force in `policy`.
    pub fn new(identity: Identity, policy: PolicyStore) -> Self {
        Self {
            inner: zt_tower::AuthorizeLayer::new(identity, policy).answer(),
        }
    }
}

impl AuthorizeLayer<NoHook> {
    /// Runs `hook` on every call the policy allowed, and refuses the call with
    /// `PERMISSION_DENIED` when the hook refuses it, does not answer within
    /// `deadline`, or panics; see
    /// [`AsyncDecisionHook`].
    pub fn async_hook<H>(self, hook: H, deadline: Duration) -> AsyncAuthorizeLayer<H> {
        AsyncAuthorizeLayer {
            inner: self.inner.async_hook(hook, deadline),
        }
    }
}

impl<H> AuthorizeLayer<H> {
    /// Runs `hook` on every call the policy allowed; a refusal is
    /// `PERMISSION_DENIED`. For checks written against a `tonic::Request`, see
    /// [`interceptor()`](crate::interceptor()).
    pub fn hook<H2>(self, hook: H2) -> AuthorizeLayer<H2> {
        AuthorizeLayer {
            inner: self.inner.hook(hook),
        }
    }

    /// Reads the JWT-SVID of every call from the `authorization: Bearer` metadata
    /// and validates it before the policy (feature `jwt`); see
    /// `zt_tower::AuthorizeLayer::jwt`. A call whose token does not validate is
    /// `UNAUTHENTICATED`; a valid token's subject is decided by `from.jwt` rules
    /// with the mTLS peer, and the handler reads it as a
    /// [`JwtPeer`](zt_core::jwt::JwtPeer) in the request's extensions.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn jwt(self, validator: zt_core::jwt::JwtValidator) -> Self {
        Self {
            inner: self.inner.jwt(validator),
        }
    }

    /// As [`jwt`](Self::jwt), reading the token from the metadata `header`
    /// instead: the token itself, or `Bearer <token>`.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn jwt_header(
        self,
        validator: zt_core::jwt::JwtValidator,
        header: http::header::HeaderName,
    ) -> Self {
        Self {
            inner: self.inner.jwt_header(validator, header),
        }
    }

    /// Counts decisions in `metrics` instead of counters of its own, e.g. to sum
    /// them with a `zt_tower::AuthorizeLayer`'s.
    #[must_use]
    pub fn with_metrics(self, metrics: AuthzMetrics) -> Self {
        Self {
            inner: self.inner.with_metrics(metrics),
        }
    }

    /// The decision counters of every service this layer makes.
    pub fn metrics(&self) -> &AuthzMetrics {
        self.inner.metrics()
    }
}

impl<S, H: Clone> Layer<S> for AuthorizeLayer<H> {
    type Service = Authorize<S, H>;

    fn layer(&self, inner: S) -> Authorize<S, H> {
        Authorize {
            inner: self.inner.layer(inner),
        }
    }
}

impl<H: fmt::Debug> fmt::Debug for AuthorizeLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Authorizes every gRPC call before it reaches the inner service; see the
/// [module docs](self).
#[derive(Clone)]
pub struct Authorize<S, H = NoHook> {
    inner: zt_tower::Authorize<S, H, GrpcAnswer>,
}

// === impl Authorize ===

impl<S> Authorize<S> {
    /// Wraps `inner`; see [`AuthorizeLayer::new`].
    pub fn new(inner: S, identity: Identity, policy: PolicyStore) -> Self {
        AuthorizeLayer::new(identity, policy).layer(inner)
    }

    /// A layer with the same arguments.
    pub fn layer(identity: Identity, policy: PolicyStore) -> AuthorizeLayer {
        AuthorizeLayer::new(identity, policy)
    }
}

impl<S, H> Authorize<S, H> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }

    /// The decision counters.
    pub fn metrics(&self) -> &AuthzMetrics {
        self.inner.metrics()
    }
}

impl<S, H: fmt::Debug> fmt::Debug for Authorize<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, H, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, H>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    H: DecisionHook<ReqBody>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        peer_from_connect_info(&mut request);
        self.inner.call(request)
    }
}

/// The [`Decision`] that let `request` through, put into its extensions by
/// [`AuthorizeLayer`]: which rule allowed the call, which
/// audit rules matched, whether a dry-run policy let a denial through. `None`
/// when no authorization layer is in front of the service.
pub fn decision<T>(request: &tonic::Request<T>) -> Option<&Decision> {
    request.extensions().get::<Decision>()
}

/// On connections from `Incoming` the peer arrives in tonic's connect info; the
/// decision, the hook and the handlers read it as a `PeerIdentity`, or as the
/// mark of an anonymous peer.
fn peer_from_connect_info<B>(request: &mut Request<B>) {
    let principal = request
        .extensions()
        .get::<ConnectInfo>()
        .map(|info| info.principal().clone());
    match principal {
        Some(Principal::Verified(peer)) => {
            request.extensions_mut().insert::<PeerIdentity>(peer);
        }
        Some(Principal::Anonymous(anonymous)) => {
            request.extensions_mut().insert(anonymous);
        }
        _ => {}
    }
}

/// Applies [`AsyncAuthorize`] to a tonic server's services: made with
/// [`AuthorizeLayer::async_hook`].
#[derive(Clone)]
pub struct AsyncAuthorizeLayer<H> {
    inner: zt_tower::AsyncAuthorizeLayer<H, GrpcAnswer>,
}

// === impl AsyncAuthorizeLayer ===

impl<H> AsyncAuthorizeLayer<H> {
    /// The decision counters of every service this layer makes.
    pub fn metrics(&self) -> &AuthzMetrics {
        self.inner.metrics()
    }
}

impl<S, H: Clone> Layer<S> for AsyncAuthorizeLayer<H> {
    type Service = AsyncAuthorize<S, H>;

    fn layer(&self, inner: S) -> AsyncAuthorize<S, H> {
        AsyncAuthorize {
            inner: self.inner.layer(inner),
        }
    }
}

impl<H: fmt::Debug> fmt::Debug for AsyncAuthorizeLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncAuthorizeLayer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// [`Authorize`] with an [`AsyncDecisionHook`] run
/// after the policy allowed a call; see [`AuthorizeLayer::async_hook`].
#[derive(Clone)]
pub struct AsyncAuthorize<S, H> {
    inner: zt_tower::AsyncAuthorize<S, H, GrpcAnswer>,
}

// === impl AsyncAuthorize ===

impl<S, H> AsyncAuthorize<S, H> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }

    /// The decision counters.
    pub fn metrics(&self) -> &AuthzMetrics {
        self.inner.metrics()
    }
}

impl<S, H: fmt::Debug> fmt::Debug for AsyncAuthorize<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncAuthorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, H, ReqBody, ResBody> Service<Request<ReqBody>> for AsyncAuthorize<S, H>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    H: AsyncDecisionHook<ReqBody>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AsyncResponseFuture<S, S::Future, H::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        peer_from_connect_info(&mut request);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    /// The table in the module docs, refusal by refusal.
    #[test]
    fn each_denial_has_its_grpc_status_in_a_trailers_only_response() {
        let table = [
            (
                Denial::NoIdentity,
                Code::Unauthenticated,
                "no verified peer identity",
            ),
            (
                Denial::UntrustedPeer,
                Code::Unauthenticated,
                "peer identity no longer valid",
            ),
            (Denial::Policy, Code::PermissionDenied, "permission denied"),
            (Denial::Hook, Code::PermissionDenied, "permission denied"),
            (
                Denial::Malformed,
                Code::InvalidArgument,
                "malformed request",
            ),
            (Denial::Unsupported, Code::Unimplemented, "not implemented"),
            (Denial::InvalidToken, Code::Unauthenticated, "invalid token"),
        ];
        for (denial, code, message) in table {
            let response: Response<String> = GrpcAnswer::refusal(denial);
            assert_eq!(response.status(), http::StatusCode::OK, "{denial:?}");
            assert_eq!(
                response.headers().get(http::header::CONTENT_TYPE),
                Some(&http::HeaderValue::from_static("application/grpc")),
                "{denial:?}"
            );
            let status = Status::from_header_map(response.headers());
            assert_eq!(status.as_ref().map(Status::code), Some(code), "{denial:?}");
            assert_eq!(
                status.as_ref().map(Status::message),
                Some(message),
                "{denial:?}"
            );
            assert!(response.body().is_empty(), "{denial:?}");
        }
    }
}
