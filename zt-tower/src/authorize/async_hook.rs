//! [`AsyncDecisionHook`] and the middleware that runs it, [`AsyncAuthorize`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;
use zt_core::Principal;

use super::decide::{Decided, Passed, Shared};
use super::{Answer, Denial, HttpAnswer, Refusal, log};
use crate::metrics::AuthzMetrics;

/// An application check that must `.await` — a tenant lookup, an external
/// authorizer — run after the policy allowed a request, with the verified peer
/// at hand.
///
/// Implemented for closures `FnMut(Principal, Request<B>) -> impl
/// Future<Output = Result<Request<B>, Refusal>>`. The peer is a
/// [`Principal`]: a verified peer, or — on a server that
/// [allows them](crate::ServerBuilder::allow_anonymous) — an anonymous one the
/// policy admitted, which the hook must tell apart. The
/// [`Decision`](zt_core::Decision) that let the request through is in its
/// extensions.
///
/// The policy decides first, exactly as without a hook; only a request it let
/// through reaches the hook. The hook fails closed: a refusal, no answer within
/// the deadline, and a panic all refuse the request ([`Denial::Hook`]), and the
/// inner service never sees it. The hook gets the request by value, so it can
/// add extensions for the handler, and hands it back; it must not change the
/// method or the target the policy decided on — a request that comes back
/// changed is refused.
///
/// ```
/// # use zt_core::{BundleSet, IdentitySource, StaticSource, dev::DevCa};
/// # let ca = DevCa::new("example.org".parse()?)?;
/// # let source = StaticSource::new(ca.mint(&"spiffe://example.org/api".parse()?)?, BundleSet::new().with(ca.bundle()))?;
/// # let client = ca.mint(&"spiffe://example.org/tenant/acme".parse()?)?;
/// # let peer = zt_tower::PeerIdentity::from_chain(client.chain().to_vec(), zt_core::PeerRole::Client)?;
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use http::{Request, Response, StatusCode};
/// use tower::{Layer, ServiceExt};
/// use zt_tower::{AuthorizeLayer, PeerIdentity, Policy, PolicyStore, Refusal};
/// use zt_core::Principal;
///
/// // Stands in for a lookup in a tenant directory.
/// async fn owns(peer: &PeerIdentity, path: &str) -> bool {
///     path.starts_with(&format!("/tenants/{}/", peer.id().path().trim_start_matches("/tenant/")))
/// }
///
/// let policy = PolicyStore::new(Policy::allow_patterns(["spiffe://example.org/tenant/*"])?);
/// let layer = AuthorizeLayer::new(source.identity(), policy).async_hook(
///     |peer: Principal, request: Request<String>| async move {
///         match peer.verified() {
///             Some(peer) if owns(peer, request.uri().path()).await => Ok(request),
///             _ => Err(Refusal::new("not this tenant's resource")),
///         }
///     },
///     Duration::from_millis(250),
/// );
/// let app = layer.layer(tower::service_fn(|_req: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("hello")))
/// }));
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// let request = |path: &str| {
///     let mut request = Request::get(path).body(String::new()).unwrap();
///     request.extensions_mut().insert(peer.clone()); // done by zt_tower::Server
///     request
/// };
/// let own = rt.block_on(app.clone().oneshot(request("/tenants/acme/orders")))?;
/// assert_eq!(own.status(), StatusCode::OK);
/// let other = rt.block_on(app.oneshot(request("/tenants/globex/orders")))?;
/// assert_eq!(other.status(), StatusCode::FORBIDDEN);
/// assert_eq!(layer.metrics().counts().hook_denied, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AsyncDecisionHook<B> {
    /// The check in progress.
    type Future: Future<Output = Result<Request<B>, Refusal>>;

    /// Starts checking `request` from `peer`. The future hands the request back
    /// to let it through, or refuses it: `403 Forbidden` from zt-tower,
    /// `PERMISSION_DENIED` from zt-tonic ([`Denial::Hook`]).
    fn check(&mut self, peer: Principal, request: Request<B>) -> Self::Future;
}

impl<B, F, Fut> AsyncDecisionHook<B> for F
where
    F: FnMut(Principal, Request<B>) -> Fut,
    Fut: Future<Output = Result<Request<B>, Refusal>>,
{
    type Future = Fut;

    fn check(&mut self, peer: Principal, request: Request<B>) -> Fut {
        self(peer, request)
    }
}

/// Applies [`AsyncAuthorize`] to a service: made with
/// [`AuthorizeLayer::async_hook`](super::AuthorizeLayer::async_hook).
pub struct AsyncAuthorizeLayer<H, A = HttpAnswer> {
    shared: Arc<Shared>,
    hook: H,
    deadline: Duration,
    answer: PhantomData<fn() -> A>,
}

// === impl AsyncAuthorizeLayer ===

impl<H, A> AsyncAuthorizeLayer<H, A> {
    pub(super) fn new(shared: Arc<Shared>, hook: H, deadline: Duration) -> Self {
        Self {
            shared,
            hook,
            deadline,
            answer: PhantomData,
        }
    }

    /// Answers refusals with `A2` instead, as
    /// [`AuthorizeLayer::answer`](super::AuthorizeLayer::answer).
    pub fn answer<A2>(self) -> AsyncAuthorizeLayer<H, A2> {
        AsyncAuthorizeLayer::new(self.shared, self.hook, self.deadline)
    }

    /// The time the hook has to answer before the request is refused.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The decision counters of every service this layer makes.
    pub fn metrics(&self) -> &AuthzMetrics {
        &self.shared.metrics
    }
}

impl<H: Clone, A> Clone for AsyncAuthorizeLayer<H, A> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.shared), self.hook.clone(), self.deadline)
    }
}

impl<S, H: Clone, A> Layer<S> for AsyncAuthorizeLayer<H, A> {
    type Service = AsyncAuthorize<S, H, A>;

    fn layer(&self, inner: S) -> AsyncAuthorize<S, H, A> {
        AsyncAuthorize {
            inner,
            layer: self.clone(),
        }
    }
}

impl<H: fmt::Debug, A> fmt::Debug for AsyncAuthorizeLayer<H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncAuthorizeLayer")
            .field("metrics", &self.shared.metrics)
            .field("hook", &self.hook)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// [`Authorize`](super::Authorize) with an [`AsyncDecisionHook`]: the same
/// decision path, then the hook, with a deadline, on requests the policy
/// allowed; see [`AsyncDecisionHook`].
pub struct AsyncAuthorize<S, H, A = HttpAnswer> {
    inner: S,
    layer: AsyncAuthorizeLayer<H, A>,
}

// === impl AsyncAuthorize ===

impl<S, H, A> AsyncAuthorize<S, H, A> {
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
        self.layer.metrics()
    }

    fn refused<F, C>(
        &self,
        denial: Denial,
        decided: Option<&Decided>,
    ) -> AsyncResponseFuture<S, F, C, A> {
        self.layer.shared.record(Err(denial), decided);
        AsyncResponseFuture {
            state: State::Refused {
                denial: Some(denial),
            },
            pending: None,
            answer: PhantomData,
        }
    }
}

impl<S: Clone, H: Clone, A> Clone for AsyncAuthorize<S, H, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, H: fmt::Debug, A> fmt::Debug for AsyncAuthorize<S, H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncAuthorize")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S, H, A, ReqBody, ResBody> Service<Request<ReqBody>> for AsyncAuthorize<S, H, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    H: AsyncDecisionHook<ReqBody>,
    A: Answer<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AsyncResponseFuture<S, S::Future, H::Future, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let mut decided = None;
        let (passed, decided) = match self.layer.shared.decide(&mut request, &mut decided) {
            Ok(passed) => match decided {
                Some(decided) => (passed, decided),
                // The policy decided whenever a request passes; fail closed all the same.
                None => return self.refused(Denial::NoIdentity, None),
            },
            Err(denial) => return self.refused(denial, decided.as_ref()),
        };
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let check = self.layer.hook.check(decided.peer.clone(), request);
        let deadline = self.layer.deadline;
        // The service that was polled ready goes with the request; its clone
        // stays for the next one.
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        AsyncResponseFuture {
            state: State::Checking {
                check,
                deadline: tokio::time::sleep(deadline),
                inner: Some(inner),
            },
            pending: Some(Pending {
                shared: Arc::clone(&self.layer.shared),
                decided,
                passed,
                method,
                uri,
                deadline,
            }),
            answer: PhantomData,
        }
    }
}

/// What the future needs to finish the decision once the hook answered.
struct Pending {
    shared: Arc<Shared>,
    decided: Decided,
    passed: Passed,
    /// What the policy decided on, to log a refusal and to tell a hook that
    /// changed the request.
    method: Method,
    uri: Uri,
    deadline: Duration,
}

pin_project! {
    /// The response future of [`AsyncAuthorize`]: the hook's
    /// check, then the inner service's response, or the answer `A` gives to the
    /// refusal.
    pub struct AsyncResponseFuture<S, F, C, A> {
        #[pin]
        state: State<S, F, C>,
        pending: Option<Pending>,
        answer: PhantomData<fn() -> A>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, C> {
        Checking { #[pin] check: C, #[pin] deadline: Sleep, inner: Option<S> },
        Calling { #[pin] future: F },
        Refused { denial: Option<Denial> },
    }
}

// === impl AsyncResponseFuture ===

impl<S, F, C, A, B, ResBody, E> Future for AsyncResponseFuture<S, F, C, A>
where
    C: Future<Output = Result<Request<B>, Refusal>>,
    S: Service<Request<B>, Response = Response<ResBody>, Error = E, Future = F>,
    F: Future<Output = Result<Response<ResBody>, E>>,
    A: Answer<ResBody>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Calling { future } => return future.poll(cx),
                StateProj::Refused { denial } => {
                    return match denial.take() {
                        Some(denial) => Poll::Ready(Ok(A::refusal(denial))),
                        // Polled after completion: there is nothing more to give.
                        None => Poll::Pending,
                    };
                }
                StateProj::Checking {
                    mut check,
                    deadline,
                    inner,
                } => {
                    // A panicking hook refuses the request; the panic does not
                    // take the connection down with it.
                    let checked = match catch_unwind(AssertUnwindSafe(|| check.as_mut().poll(cx))) {
                        Ok(Poll::Ready(checked)) => checked,
                        Ok(Poll::Pending) => match deadline.poll(cx) {
                            Poll::Ready(()) => Err(Refusal::new(format!(
                                "decision hook did not answer within {:?}",
                                this.pending
                                    .as_ref()
                                    .map(|p| p.deadline)
                                    .unwrap_or_default()
                            ))),
                            Poll::Pending => return Poll::Pending,
                        },
                        Err(_) => Err(Refusal::new("decision hook panicked")),
                    };
                    finish(checked, inner.take(), this.pending.take())
                }
            };
            this.state.set(next);
        }
    }
}

/// Counts the decision and turns the hook's answer into the next state.
fn finish<S, F, C, B>(
    checked: Result<Request<B>, Refusal>,
    inner: Option<S>,
    pending: Option<Pending>,
) -> State<S, F, C>
where
    S: Service<Request<B>, Future = F>,
{
    let refused = |denial| State::Refused {
        denial: Some(denial),
    };
    // Both are there until the hook answers, the only time this runs.
    let (Some(mut inner), Some(pending)) = (inner, pending) else {
        return refused(Denial::Hook);
    };
    let Pending {
        shared,
        decided,
        passed,
        method,
        uri,
        ..
    } = pending;
    let request = match checked {
        Ok(request) if request.method() == method && *request.uri() == uri => Ok(request),
        Ok(_) => Err(Refusal::new(
            "decision hook changed the method or target the policy decided on",
        )),
        Err(refusal) => Err(refusal),
    };
    match request {
        Ok(request) => {
            shared.record(Ok(passed), Some(&decided));
            State::Calling {
                future: inner.call(request),
            }
        }
        Err(refusal) => {
            log::hook_refused(&decided.peer, &method, &uri, &refusal);
            shared.record(Err(Denial::Hook), Some(&decided));
            refused(Denial::Hook)
        }
    }
}

impl<S, F, C, A> fmt::Debug for AsyncResponseFuture<S, F, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "checking",
            State::Calling { .. } => "calling",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("AsyncResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
