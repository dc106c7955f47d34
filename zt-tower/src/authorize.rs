//! Per-request authorization: [`AuthorizeLayer`] and [`Authorize`].
//!
//! For every request, the middleware
//!
//! 1. takes the [`PeerIdentity`] that [`Server`](crate::Server) put into the request's
//!    extensions — a request without one is refused and the setup error logged;
//! 2. re-verifies it against the serving identity snapshot
//!    ([`PeerIdentity::reverify`]: one atomic load when nothing changed), so a peer
//!    whose SVID expired or whose trust bundle was withdrawn is refused on a
//!    connection that is already open;
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
//! A policy refusal is `403 Forbidden` with the body `forbidden` and nothing
//! else: the reason goes to the log, never to the peer. gRPC clients read a 403 as
//! `PERMISSION_DENIED`. In a dry-run policy a request the policy would deny is let
//! through and logged as a warning. Every decision emits a `tracing` event with
//! target `zt::authz` and fields `peer`, `method`, `path`, `decision`, `rule` and
//! `reason` (allowed: `DEBUG`; refused or audited: `INFO`; dry-run denials:
//! `WARN`; setup errors: `ERROR`), and is counted in [`AuthzMetrics`].
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

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::header::{CONTENT_TYPE, HOST, UPGRADE};
use http::uri::{Authority as UriAuthority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use zt_core::policy::{Authority, canonical_path};
use zt_core::{Decision, Headers, Identity, PeerIdentity, PolicyStore, Verdict};

use crate::metrics::{AuthzMetrics, Outcome};

/// The body of every refusal. It says nothing about why.
const FORBIDDEN_BODY: &str = "forbidden\n";

/// An application check that runs after the policy allowed a request, with the
/// verified peer at hand: tenant ownership, request-specific rules, anything the
/// policy cannot express.
///
/// Implemented for closures `FnMut(&PeerIdentity, &mut Request<B>) -> Result<(),
/// Refusal>`. It may add extensions to the request for the handler. For checks
/// that must `.await`, add tower-http's `AsyncRequireAuthorization` behind
/// [`Authorize`] and read the [`PeerIdentity`] from the extensions there.
///
/// ```
/// use http::Request;
/// use zt_tower::{PeerIdentity, Refusal};
///
/// // Only the tenant's own workload may touch /tenants/<name>/…
/// let hook = |peer: &PeerIdentity, request: &mut Request<String>| {
///     let tenant = request.uri().path().strip_prefix("/tenants/").and_then(|p| p.split('/').next());
///     match tenant {
///         Some(t) if peer.id().path() != format!("/tenant/{t}") => Err(Refusal::new("not this tenant's workload")),
///         _ => Ok(()),
///     }
/// };
/// let layer = zt_tower::AuthorizeLayer::new(
/// #   zt_core::IdentityPublisher::new()?.identity(),
/// #   zt_tower::PolicyStore::new(zt_tower::Policy::deny_all()),
/// # ).hook(hook);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait DecisionHook<B> {
    /// Lets the request through with `Ok(())`, or refuses it with `403 Forbidden`.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] whose reason is logged, never sent to the peer.
    fn check(&mut self, peer: &PeerIdentity, request: &mut Request<B>) -> Result<(), Refusal>;
}

impl<B, F> DecisionHook<B> for F
where
    F: FnMut(&PeerIdentity, &mut Request<B>) -> Result<(), Refusal>,
{
    fn check(&mut self, peer: &PeerIdentity, request: &mut Request<B>) -> Result<(), Refusal> {
        self(peer, request)
    }
}

/// The hook that refuses nothing: the policy alone decides.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHook;

impl<B> DecisionHook<B> for NoHook {
    fn check(&mut self, _peer: &PeerIdentity, _request: &mut Request<B>) -> Result<(), Refusal> {
        Ok(())
    }
}

/// A [`DecisionHook`]'s refusal, with the reason to log.
#[derive(Clone, Debug)]
pub struct Refusal {
    reason: Cow<'static, str>,
}

// === impl Refusal ===

impl Refusal {
    /// A refusal for `reason`, which is logged, never sent to the peer.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// Why the request was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Why [`Authorize`] refused a request, for integrations that answer refusals
/// in their own protocol (zt-tonic answers with a gRPC status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The request carried no verified peer identity: a server setup error.
    NoIdentity,
    /// The peer no longer verifies: its SVID expired or today's bundle no longer
    /// vouches for it.
    UntrustedPeer,
    /// The policy denied the request.
    Policy,
    /// The policy allowed the request and the [`DecisionHook`] refused it.
    Hook,
    /// The request's shape cannot be decided on: a method with lower-case
    /// letters, a repeated `Host`, a `Host` that disagrees with the
    /// `:authority` or the absolute-form target, or a malformed authority.
    Malformed,
    /// The request asks for a tunnel or a protocol switch (`CONNECT`,
    /// `Upgrade`), which would escape per-request authorization.
    Unsupported,
}

/// What every clone of the service shares: one reference count per clone.
struct Shared {
    identity: Identity,
    policy: PolicyStore,
    metrics: AuthzMetrics,
}

/// Applies [`Authorize`] to a service.
#[derive(Clone)]
pub struct AuthorizeLayer<H = NoHook> {
    shared: Arc<Shared>,
    hook: H,
}

// === impl AuthorizeLayer ===

impl AuthorizeLayer {
    /// Re-verifies peers against `identity` and decides requests with the policy
    /// in force in `policy`.
    pub fn new(identity: Identity, policy: PolicyStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                identity,
                policy,
                metrics: AuthzMetrics::default(),
            }),
            hook: NoHook,
        }
    }
}

impl<H> AuthorizeLayer<H> {
    /// Runs `hook` on every request the policy allowed.
    pub fn hook<H2>(self, hook: H2) -> AuthorizeLayer<H2> {
        AuthorizeLayer {
            shared: self.shared,
            hook,
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
            shared: Arc::new(Shared {
                identity: identity.clone(),
                policy: policy.clone(),
                metrics,
            }),
            hook: self.hook,
        }
    }

    /// The decision counters of every service this layer makes.
    pub fn metrics(&self) -> &AuthzMetrics {
        &self.shared.metrics
    }
}

impl<S, H: Clone> Layer<S> for AuthorizeLayer<H> {
    type Service = Authorize<S, H>;

    fn layer(&self, inner: S) -> Authorize<S, H> {
        Authorize {
            inner,
            shared: Arc::clone(&self.shared),
            hook: self.hook.clone(),
        }
    }
}

impl<H: fmt::Debug> fmt::Debug for AuthorizeLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("metrics", &self.shared.metrics)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

/// Authorizes every request before it reaches the inner service; see the
/// [module docs](self).
#[derive(Clone)]
pub struct Authorize<S, H = NoHook> {
    inner: S,
    shared: Arc<Shared>,
    hook: H,
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
        authorize(&self.shared, &mut self.hook, request)
    }
}

impl<S, H: fmt::Debug> fmt::Debug for Authorize<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("metrics", &self.shared.metrics)
            .field("hook", &self.hook)
            .finish_non_exhaustive()
    }
}

impl<S, H, ReqBody, ResBody> Service<Request<ReqBody>> for Authorize<S, H>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    H: DecisionHook<ReqBody>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match authorize(&self.shared, &mut self.hook, &mut request) {
            Ok(()) => ResponseFuture::allowed(self.inner.call(request)),
            Err(denial) => ResponseFuture::refused(denial),
        }
    }
}

/// Decides `request`; `Ok` lets it through, in canonical form. Logs and counts
/// the outcome.
fn authorize<B, H: DecisionHook<B>>(
    shared: &Shared,
    hook: &mut H,
    request: &mut Request<B>,
) -> Result<(), Denial> {
    let metrics = &shared.metrics;
    let Some(peer) = request.extensions().get::<PeerIdentity>().cloned() else {
        metrics.record(Outcome::NoIdentity);
        tracing::error!(
            target: "zt::authz",
            method = request.method().as_str(),
            path = request.uri().path(),
            decision = "deny",
            "request carries no verified peer identity: serve the application with \
             zt_tower::Server (or zt_tonic's incoming connections), which puts the peer's \
             identity into every request"
        );
        return Err(Denial::NoIdentity);
    };

    if let Err(err) = peer.reverify(&shared.identity, SystemTime::now()) {
        metrics.record(Outcome::UntrustedPeer);
        tracing::warn!(
            target: "zt::authz",
            peer = %peer.id(),
            method = request.method().as_str(),
            path = request.uri().path(),
            decision = "deny",
            rule = "peer verification",
            reason = %err,
            "peer no longer verifies"
        );
        return Err(Denial::UntrustedPeer);
    }

    let (decision, rewrite) = {
        let method = request.method().as_str();
        let path = request.uri().path();
        let shape = match Shape::of(request) {
            Ok(shape) => shape,
            Err((denial, why)) => {
                metrics.record(Outcome::Malformed);
                tracing::info!(
                    target: "zt::authz",
                    peer = %peer.id(),
                    method,
                    path,
                    decision = "deny",
                    rule = "request shape",
                    reason = why,
                    "request refused before the policy"
                );
                return Err(denial);
            }
        };
        let headers = HeaderView(request.headers());
        // The canonical spelling, made only for an authority written otherwise.
        let canonical_authority = shape
            .authority
            .as_ref()
            .filter(|_| shape.rewrite_authority)
            .map(ToString::to_string);
        let mut view = zt_core::Request::from_canonical(method, shape.path).with_headers(&headers);
        if let Some(authority) = shape.authority {
            view = view.with_authority(authority);
        }
        let decision = shared.policy.decide(peer.id(), &view);
        log_decision(&peer, method, path, &decision, metrics);
        if !decision.is_allowed() {
            return Err(Denial::Policy);
        }
        (decision, Rewrite::of(request, &view, canonical_authority))
    };
    // The application routes and serves what the policy decided on.
    if let Some(rewrite) = rewrite
        && let Err(why) = rewrite.apply(request)
    {
        metrics.record(Outcome::Malformed);
        tracing::warn!(
            target: "zt::authz",
            peer = %peer.id(),
            method = request.method().as_str(),
            path = request.uri().path(),
            decision = "deny",
            rule = "request shape",
            reason = why,
            "request could not be passed on in canonical form"
        );
        return Err(Denial::Malformed);
    }

    if let Err(refusal) = hook.check(&peer, request) {
        metrics.record(Outcome::HookDenied);
        tracing::info!(
            target: "zt::authz",
            peer = %peer.id(),
            method = request.method().as_str(),
            path = request.uri().path(),
            decision = "deny",
            rule = "decision hook",
            reason = %refusal,
            "request refused"
        );
        return Err(Denial::Hook);
    }
    metrics.record(if decision.verdict() == Verdict::Allow {
        Outcome::Allowed
    } else {
        Outcome::DryRunDenied
    });
    Ok(())
}

/// What the policy needs of a request beyond its method and headers, in
/// canonical form: the one place zt-tower reads a request's shape.
struct Shape<'a> {
    path: Result<std::borrow::Cow<'a, str>, zt_core::policy::AmbiguousPath>,
    authority: Option<Authority<'a>>,
    /// The target's authority or the `Host` header is not written canonically.
    rewrite_authority: bool,
}

impl<'a> Shape<'a> {
    fn of<B>(request: &'a Request<B>) -> Result<Self, (Denial, &'static str)> {
        let method = request.method();
        if method == Method::CONNECT {
            return Err((Denial::Unsupported, "CONNECT tunnels are not served"));
        }
        if request.headers().contains_key(UPGRADE) {
            return Err((Denial::Unsupported, "protocol upgrades are not served"));
        }
        if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
            return Err((Denial::Malformed, "method has lower-case letters"));
        }
        let malformed = |why| (Denial::Malformed, why);
        let mut hosts = request.headers().get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (None, _) => None,
            (Some(host), None) => Some(
                host.to_str()
                    .ok()
                    .and_then(|host| Authority::parse(host).ok())
                    .ok_or(malformed("malformed Host header"))?,
            ),
            (Some(_), Some(_)) => return Err(malformed("repeated Host header")),
        };
        let target = match request.uri().authority() {
            Some(authority) => Some(
                Authority::parse(authority.as_str())
                    .map_err(|_| malformed("malformed request authority"))?,
            ),
            None => None,
        };
        let rewrite_authority = [&target, &host]
            .into_iter()
            .flatten()
            .any(|authority| !authority.is_canonical());
        let authority = match (target, host) {
            (Some(target), Some(host)) if target != host => {
                return Err(malformed(
                    "Host header disagrees with the request authority",
                ));
            }
            (Some(authority), _) | (None, Some(authority)) => Some(authority),
            (None, None) => None,
        };
        Ok(Self {
            path: canonical_path(request.uri().path()),
            authority,
            rewrite_authority,
        })
    }
}

/// The changes that bring an allowed request into the canonical form it was
/// decided in.
struct Rewrite {
    path: Option<String>,
    authority: Option<String>,
}

impl Rewrite {
    /// `None` when the request is canonical already, the common case.
    /// `canonical_authority` is the authority's canonical form when the request
    /// spells it otherwise.
    fn of<B>(
        request: &Request<B>,
        view: &zt_core::Request<'_>,
        canonical_authority: Option<String>,
    ) -> Option<Self> {
        let path = view
            .path()
            .ok()
            .filter(|canonical| *canonical != request.uri().path())
            .map(str::to_owned);
        let authority = canonical_authority;
        (path.is_some() || authority.is_some()).then_some(Self { path, authority })
    }

    fn apply<B>(self, request: &mut Request<B>) -> Result<(), &'static str> {
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        if let Some(path) = self.path {
            let path_and_query = match parts.path_and_query.as_ref().and_then(PathAndQuery::query) {
                Some(query) => format!("{path}?{query}"),
                None => path,
            };
            parts.path_and_query = Some(
                PathAndQuery::try_from(path_and_query)
                    .map_err(|_| "canonical path is not a valid URI path")?,
            );
        }
        if let Some(authority) = self.authority {
            if parts.authority.is_some() {
                parts.authority = Some(
                    UriAuthority::try_from(authority.as_str())
                        .map_err(|_| "canonical authority is not a valid URI authority")?,
                );
            }
            if request.headers().contains_key(HOST) {
                let value = HeaderValue::try_from(authority)
                    .map_err(|_| "canonical authority is not a valid header value")?;
                request.headers_mut().insert(HOST, value);
            }
        }
        *request.uri_mut() = Uri::from_parts(parts).map_err(|_| "canonical URI is invalid")?;
        Ok(())
    }
}

fn log_decision(
    peer: &PeerIdentity,
    method: &str,
    path: &str,
    decision: &Decision,
    metrics: &AuthzMetrics,
) {
    let rule = decision.rule().unwrap_or("default deny");
    if decision.audit_rules().len() > 0 {
        metrics.record_audit();
        for audit in decision.audit_rules() {
            tracing::info!(
                target: "zt::authz",
                peer = %peer.id(),
                method,
                path,
                decision = decision.verdict().as_str(),
                rule,
                reason = %decision.reason(),
                audit_rule = audit,
                "audit rule matched"
            );
        }
    }
    match (decision.verdict(), decision.dry_run()) {
        (Verdict::Allow, _) => tracing::debug!(
            target: "zt::authz",
            peer = %peer.id(),
            method,
            path,
            decision = "allow",
            rule,
            reason = %decision.reason(),
            "request allowed"
        ),
        (Verdict::Deny, true) => tracing::warn!(
            target: "zt::authz",
            peer = %peer.id(),
            method,
            path,
            decision = "dry_run_deny",
            rule,
            reason = %decision.reason(),
            "policy would deny this request; let through because the policy is in dry-run mode"
        ),
        (Verdict::Deny, false) => {
            metrics.record(Outcome::Denied);
            tracing::info!(
                target: "zt::authz",
                peer = %peer.id(),
                method,
                path,
                decision = "deny",
                rule,
                reason = %decision.reason(),
                "request denied"
            );
        }
    }
}

/// The request's headers as the policy reads them.
struct HeaderView<'a>(&'a HeaderMap);

impl Headers for HeaderView<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }

    fn count(&self, name: &str) -> usize {
        self.0.get_all(name).iter().count()
    }

    fn all(&self, name: &str) -> Vec<Option<&str>> {
        self.0
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect()
    }
}

/// The response to a refusal: what kind of refusal, never why.
fn refusal<B: From<&'static str>>(denial: Denial) -> Response<B> {
    let (status, body) = match denial {
        Denial::Malformed => (StatusCode::BAD_REQUEST, "bad request\n"),
        Denial::Unsupported => (StatusCode::NOT_IMPLEMENTED, "not implemented\n"),
        _ => (StatusCode::FORBIDDEN, FORBIDDEN_BODY),
    };
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    response
}

pin_project! {
    /// The response future of [`Authorize`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Allowed { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn allowed(future: F) -> Self {
        Self {
            state: State::Allowed { future },
        }
    }

    fn refused(denial: Denial) -> Self
    where
        B: From<&'static str>,
    {
        Self {
            state: State::Refused {
                response: Some(refusal(denial)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Allowed { future } => future.poll(cx),
            StateProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: there is nothing more to give.
                None => Poll::Pending,
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Allowed { .. } => "allowed",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
