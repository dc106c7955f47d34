//! Per-request authorization: [`AuthorizeLayer`] and [`Authorize`].
//!
//! For every request, the middleware
//!
//! 1. takes the [`PeerIdentity`](crate::PeerIdentity) that
//!    [`Server`](crate::Server) put into the request's extensions — a request
//!    without one is refused and the setup error logged;
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
//! 5. runs the application's [`DecisionHook`], if any, on requests the policy
//!    allowed.
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

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use zt_core::{Identity, PolicyStore};

use crate::metrics::AuthzMetrics;
use decide::Shared;

mod decide;
mod future;
mod hook;
mod log;
mod shape;

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
        Self {
            shared: Arc::new(Shared::new(identity.clone(), policy.clone(), metrics)),
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
