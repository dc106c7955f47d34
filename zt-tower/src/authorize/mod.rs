//! Per-request authorization: [`AuthorizeLayer`] and [`Authorize`].
//!
//! For every request, the middleware
//!
//! 1. takes the [`PeerIdentity`](crate::PeerIdentity) that
//!    [`Server`](crate::Server) put into the request's extensions, or the
//!    [`AnonymousPeer`](crate::AnonymousPeer) it put there for a client without a
//!    certificate on a server that
//!    [allows them](crate::ServerBuilder::allow_anonymous) — a request with
//!    neither is refused and the setup error logged;
//! 2. re-verifies it against the serving identity snapshot
//!    ([`PeerIdentity::reverify`](crate::PeerIdentity::reverify): one atomic load
//!    when nothing changed), so a peer whose SVID expired or whose trust bundle
//!    was withdrawn is refused on a connection that is already open;
//! 3. builds the request's canonical view once ([`zt_core::Request`]: method,
//!    canonical path, canonical host, headers) and decides it with the policy in
//!    force in the [`PolicyStore`]. The content type decides nothing: a gRPC
//!    call is a request to a `/service/method` path like any other;
//! 4. passes the request on **in that canonical form**: a path or authority that
//!    was canonicalised (`/users/%61dmin` → `/users/admin`, `Host: ADMIN.internal.`
//!    → `admin.internal`) is rewritten before the inner service routes it, so the
//!    policy and the router read the same bytes by construction;
//! 5. puts the [`Decision`](zt_core::Decision) that let the request through into
//!    its extensions — handlers read it with the `Authorized` extractor (axum)
//!    or from the request's extensions (tonic), for resource-level checks that
//!    need to know which rule allowed them;
//! 6. runs the application's [`DecisionHook`], if any, on requests the policy
//!    allowed ([`DecisionHook::check_anonymous`] for anonymous peers), or its
//!    [`AsyncDecisionHook`] for checks that wait for I/O, with a deadline
//!    ([`AuthorizeLayer::async_hook`]).
//!
//! An anonymous peer skips step 2 (there is nothing to verify) and is decided
//! with [`Policy::decide_anonymous`](crate::Policy::decide_anonymous): only rules
//! with `from: {unauthenticated: true}` admit it, and a dry-run policy does not
//! let it through.
//!
//! Requests whose shape zt cannot decide on are refused before the policy:
//! `400 Bad Request` for a method with lower-case letters, a repeated `Host`, a
//! `Host` that disagrees with the HTTP/2 `:authority` or the absolute-form
//! target, or a malformed authority; `501 Not Implemented` for `CONNECT` and for
//! requests asking to switch protocols (`Upgrade`), whose tunnels would escape
//! per-request authorization.
//!
//! On a [`Server`](crate::Server) built with
//! [`websockets`](crate::ServerBuilder::websockets), a WebSocket upgrade is
//! decided instead: HTTP/1.1 `GET` with `Upgrade: websocket` and HTTP/2 extended
//! `CONNECT` with `:protocol websocket` are the same request to the policy, the
//! method `GET` with the upgrade `websocket`, and only an `allow` rule whose
//! `to.upgrades` names it admits it. A malformed upgrade (several protocols or
//! `Upgrade` headers, no `Connection: upgrade`, a method other than `GET`,
//! HTTP/1.0) is `400`; other protocols and plain `CONNECT` stay `501`. The server
//! then governs the upgraded stream: it closes it once the peer or the policy
//! would no longer allow the request (docs/security.md).
//!
//! A policy refusal is `403 Forbidden` with the body `forbidden` and nothing
//! else: the reason goes to the log, never to the peer. gRPC clients read a 403 as
//! `PERMISSION_DENIED`. In a dry-run policy a request the policy would deny is let
//! through and logged as a warning. Every decision emits a `tracing` event with
//! target `zt::authz` and fields `peer`, `method`, `path`, `decision`, `rule` and
//! `reason` (allowed: `DEBUG`; refused or audited: `INFO`; dry-run denials:
//! `WARN`; setup errors: `ERROR`), and is counted in [`AuthzMetrics`].
//!
//! Deciding and answering are separate: the decision path is the same for every
//! protocol and ends in a typed refusal, a [`Denial`]; the service's [`Answer`]
//! maps it to a response — [`HttpAnswer`] here, gRPC statuses in zt-tonic, which
//! uses this service with its own answer.
//!
//! ```
//! # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
//! # let ca = DevCa::new("example.org".parse()?)?;
//! # let source = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
//! # let client = ca.mint(&"spiffe://example.org/web".parse()?)?;
//! # let peer = zt_tower::PeerIdentity::from_chain(client.chain().to_vec(), zt_core::PeerRole::Client)?;
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt};
//! use zt_tower::{AuthorizeLayer, Policy, PolicyStore};
//!
//! let policy = PolicyStore::new(Policy::allow_patterns(["spiffe://example.org/web"])?);
//! let layer = AuthorizeLayer::new(source.identity(), policy);
//! let app = layer.layer(tower::service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::from("hello")))
//! }));
//!
//! let mut request = Request::new(String::new());
//! request.extensions_mut().insert(peer); // done by zt_tower::Server
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! let response = rt.block_on(app.clone().oneshot(request))?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // Without a verified peer, nothing passes.
//! let response = rt.block_on(app.oneshot(Request::new(String::new())))?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(layer.metrics().counts().no_identity, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use zt_core::{Identity, PolicyStore};

use crate::metrics::AuthzMetrics;
use decide::Shared;

mod async_hook;
mod decide;
mod future;
mod hook;
#[cfg(feature = "jwt")]
mod jwt;
mod log;
mod shape;

pub use async_hook::{AsyncAuthorize, AsyncAuthorizeLayer, AsyncDecisionHook, AsyncResponseFuture};
pub use decide::Denial;
pub use future::{Answer, HttpAnswer, ResponseFuture};
pub use hook::{DecisionHook, NoHook, Refusal};
pub(crate) use shape::HeaderView;

/// Applies [`Authorize`] to a service; refusals are answered with `A`.
pub struct AuthorizeLayer<H = NoHook, A = HttpAnswer> {
    shared: Arc<Shared>,
    hook: H,
    answer: PhantomData<fn() -> A>,
}

// === impl AuthorizeLayer ===

impl AuthorizeLayer {
    /// Re-verifies peers against `identity` and decides requests with the policy
    /// in force in `policy`.
    pub fn new(identity: Identity, policy: PolicyStore) -> Self {
        Self {
            shared: Arc::new(Shared::new(identity, policy, AuthzMetrics::default())),
            hook: NoHook,
            answer: PhantomData,
        }
    }
}

impl<A> AuthorizeLayer<NoHook, A> {
    /// Runs `hook` on every request the policy allowed, and refuses the request
    /// when the hook refuses it, does not answer within `deadline`, or panics;
    /// see [`AsyncDecisionHook`]. Needs a tokio runtime with its timer enabled.
    pub fn async_hook<H2>(self, hook: H2, deadline: Duration) -> AsyncAuthorizeLayer<H2, A> {
        AsyncAuthorizeLayer::new(self.shared, hook, deadline)
    }
}

impl<H, A> AuthorizeLayer<H, A> {
    /// Runs `hook` on every request the policy allowed.
    pub fn hook<H2>(self, hook: H2) -> AuthorizeLayer<H2, A> {
        AuthorizeLayer {
            shared: self.shared,
            hook,
            answer: PhantomData,
        }
    }

    /// Answers refusals with `A2` instead, for a front end that speaks another
    /// protocol over the same decision (zt-tonic answers with gRPC statuses).
    pub fn answer<A2>(self) -> AuthorizeLayer<H, A2> {
        AuthorizeLayer {
            shared: self.shared,
            hook: self.hook,
            answer: PhantomData,
        }
    }

    /// Counts decisions in `metrics` instead of counters of its own, e.g. to sum
    /// several layers.
    #[must_use]
    pub fn with_metrics(self, metrics: AuthzMetrics) -> Self {
        let Shared {
            identity, policy, ..
        } = &*self.shared;
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
        let mut shared = Shared::new(identity.clone(), policy.clone(), metrics);
        #[cfg(feature = "jwt")]
        {
            shared.jwt = self.shared.jwt.clone();
        }
        Self {
            shared: Arc::new(shared),
            hook: self.hook,
            answer: PhantomData,
        }
    }

    /// Reads the JWT-SVID of every request from `Authorization: Bearer <token>`
    /// and validates it with `validator` (feature `jwt`), before the policy:
    ///
    /// - a request whose token does not validate — bad signature, unknown key,
    ///   another audience, expired, malformed — or whose `Authorization` header
    ///   is repeated is refused ([`Denial::InvalidToken`]: `401 Unauthorized`,
    ///   gRPC `UNAUTHENTICATED`) and never reaches the policy or the handler;
    /// - a valid token's subject is decided by `from.jwt` rules together with
    ///   the mTLS peer, and the [`JwtPeer`](zt_core::jwt::JwtPeer) is put into
    ///   the request's extensions for the handler;
    /// - a request without a token (or with another `Authorization` scheme)
    ///   carries no subject: `allow` rules with `from.jwt` do not admit it.
    ///
    /// The token is validated again on every request, against the JWT bundles
    /// in force then.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn jwt(self, validator: zt_core::jwt::JwtValidator) -> Self {
        self.jwt_header(validator, http::header::AUTHORIZATION)
    }

    /// As [`jwt`](Self::jwt), reading the token from `header` instead: the
    /// token itself, or `Bearer <token>`.
    #[cfg(feature = "jwt")]
    #[must_use]
    pub fn jwt_header(
        self,
        validator: zt_core::jwt::JwtValidator,
        header: http::header::HeaderName,
    ) -> Self {
        let Shared {
            identity,
            policy,
            metrics,
            ..
        } = &*self.shared;
        let mut shared = Shared::new(identity.clone(), policy.clone(), metrics.clone());
        shared.jwt = Some(jwt::JwtCheck::new(validator, header));
        Self {
            shared: Arc::new(shared),
            hook: self.hook,
            answer: PhantomData,
        }
    }

    /// The decision counters of every service this layer makes.
    pub fn metrics(&self) -> &AuthzMetrics {
        &self.shared.metrics
    }
}

impl<H: Clone, A> Clone for AuthorizeLayer<H, A> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            hook: self.hook.clone(),
            answer: PhantomData,
        }
    }
}

impl<S, H: Clone, A> Layer<S> for AuthorizeLayer<H, A> {
    type Service = Authorize<S, H, A>;

    fn layer(&self, inner: S) -> Authorize<S, H, A> {
        Authorize {
            inner,
            shared: Arc::clone(&self.shared),
            hook: self.hook.clone(),
            answer: PhantomData,
        }
    }
}

impl<H: fmt::Debug, A> fmt::Debug for AuthorizeLayer<H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("metrics", &self.shared.metrics)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

/// Authorizes every request before it reaches the inner service, and answers
/// refusals with `A`; see the [module docs](self).
pub struct Authorize<S, H = NoHook, A = HttpAnswer> {
    inner: S,
    shared: Arc<Shared>,
    hook: H,
    answer: PhantomData<fn() -> A>,
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

impl<S, H, A> Authorize<S, H, A> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The decision counters.
    pub fn metrics(&self) -> &AuthzMetrics {
        &self.shared.metrics
    }

    /// Decides `request` as [`call`](Service::call) does — re-verification,
    /// policy, hook, with the same log events and counters — without calling the
    /// inner service, for integrations that answer refusals in their own protocol.
    ///
    /// # Errors
    ///
    /// Why the request is refused.
    pub fn check<B>(&mut self, request: &mut Request<B>) -> Result<(), Denial>
    where
        H: DecisionHook<B>,
    {
        self.shared.authorize(&mut self.hook, request)
    }
}

impl<S: Clone, H: Clone, A> Clone for Authorize<S, H, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            hook: self.hook.clone(),
            answer: PhantomData,
        }
    }
}

impl<S, H: fmt::Debug, A> fmt::Debug for Authorize<S, H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("metrics", &self.shared.metrics)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl<S, H, A, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, H, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    H: DecisionHook<ReqBody>,
    A: Answer<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.shared.authorize(&mut self.hook, &mut request) {
            Ok(()) => ResponseFuture::allowed(self.inner.call(request)),
            Err(denial) => ResponseFuture::refused(denial),
        }
    }
}
