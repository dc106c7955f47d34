//! The per-connection hyper service around the user's tower service: it puts the
//! peer's identity into every request and refuses tunnels and protocol upgrades
//! before the application sees them, unless the server governs upgrades: then
//! an upgrade request carries an [`UpgradeTicket`] to the authorization, and a
//! response that switches protocols goes out only if the authorization approved
//! it (see `govern.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;
use zt_core::Principal;

use super::govern::{Governor, UpgradeTicket, switches};

/// The per-connection hyper service: puts the peer into each request, then calls a
/// clone of the user's tower service.
pub(super) struct ConnService<S> {
    pub(super) inner: S,
    pub(super) peer: Principal,
    /// HTTP/1: the exchanges, for the header-read deadline.
    pub(super) exchanges: Option<Arc<Exchanges>>,
    /// The connection's governed upgrades, on a server that allows them.
    pub(super) governor: Option<Arc<Governor>>,
}

/// An upgrade request on its way: what its response is checked against.
pub(super) struct PendingUpgrade {
    ticket: UpgradeTicket,
    governor: Arc<Governor>,
    connect: bool,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
    B: http_body::Body,
{
    type Response = Response<Tracked<Either<B, Empty<B::Data>>>>;
    type Error = S::Error;
    type Future = ConnFuture<S, B>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let exchange = self.exchanges.as_ref().map(Exchange::start);
        // A tunnel or a switched protocol would carry traffic no request-level
        // check sees: refused here, whatever the application does with it,
        // unless the server governs upgrades.
        let mut upgrade = None;
        let connect = request.method() == http::Method::CONNECT;
        if connect || request.headers().contains_key(http::header::UPGRADE) {
            let Some(governor) = &self.governor else {
                tracing::debug!(peer = %self.peer, method = request.method().as_str(), "tunnel or upgrade refused");
                crate::metrics::refusal("unsupported");
                return ConnFuture::Refused {
                    response: Some(not_implemented(exchange)),
                };
            };
            let ticket = UpgradeTicket::default();
            request.extensions_mut().insert(ticket.clone());
            upgrade = Some(Box::new(PendingUpgrade {
                ticket,
                governor: Arc::clone(governor),
                connect,
            }));
        }
        // The request's span, a child of the connection's; the authorization
        // records the deciding rule on it (`security_rule.name`).
        let span = tracing::info_span!(
            target: "zt::request",
            "request",
            "http.request.method" = request.method().as_str(),
            "spiffe.id" = self.peer.verified().map(|peer| tracing::field::display(peer.id())),
            "security_rule.name" = tracing::field::Empty,
        );
        // The verified identity, or the explicit mark of an anonymous peer: never
        // neither, which would read as a setup error.
        match &self.peer {
            Principal::Verified(peer) => {
                request.extensions_mut().insert(peer.clone());
            }
            Principal::Anonymous(anonymous) => {
                request.extensions_mut().insert(*anonymous);
            }
            _ => {}
        }
        ConnFuture::Served {
            span,
            exchange,
            upgrade,
            future: Oneshot::new(self.inner.clone(), request),
        }
    }
}

/// `501 Not Implemented`, the answer to tunnels and upgrades zt does not serve.
fn not_implemented<B: http_body::Body>(
    exchange: Option<Exchange>,
) -> Response<Tracked<Either<B, Empty<B::Data>>>> {
    let mut response = Response::new(Tracked {
        body: Either::Right(Empty::new()),
        exchange,
    });
    *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
    response
}

pin_project! {
    /// The response future of [`ConnService`].
    #[project = ConnFutureProj]
    pub(super) enum ConnFuture<S, B>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        B: http_body::Body,
    {
        Served {
            span: tracing::Span,
            exchange: Option<Exchange>,
            // Boxed: only upgrade requests have one, and every request's
            // future holds the field.
            upgrade: Option<Box<PendingUpgrade>>,
            #[pin]
            future: Oneshot<S, Request<Incoming>>,
        },
        Refused { response: Option<Response<Tracked<Either<B, Empty<B::Data>>>>> },
    }
}

impl<S, B> Future for ConnFuture<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    B: http_body::Body,
{
    type Output = Result<Response<Tracked<Either<B, Empty<B::Data>>>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnFutureProj::Served {
                span,
                exchange,
                upgrade,
                future,
            } => {
                let _entered = span.enter();
                let response = match std::task::ready!(future.poll(cx)) {
                    Ok(response) => response,
                    Err(err) => return Poll::Ready(Err(err)),
                };
                if let Some(pending) = upgrade.take()
                    && switches(response.status(), pending.connect)
                    && let Err(why) = pending.governor.commit(&pending.ticket)
                {
                    tracing::debug!(?why, "switching response refused");
                    crate::metrics::refusal("unsupported");
                    return Poll::Ready(Ok(not_implemented(exchange.take())));
                }
                Poll::Ready(Ok(response.map(|body| Tracked {
                    body: Either::Left(body),
                    exchange: exchange.take(),
                })))
            }
            ConnFutureProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: there is nothing more to give.
                None => Poll::Pending,
            },
        }
    }
}

pin_project! {
    /// Drives a tower service to readiness, then calls it once. The service and
    /// the request give way to the response future, so the future a connection
    /// holds per request is no larger than the larger of the two.
    #[project = OneshotProj]
    pub(super) enum Oneshot<S, R>
    where
        S: Service<R>,
    {
        NotReady { service: S, request: Option<R> },
        Called { #[pin] future: S::Future },
        Done,
    }
}

impl<S, R> Oneshot<S, R>
where
    S: Service<R>,
{
    fn new(service: S, request: R) -> Self {
        Self::NotReady {
            service,
            request: Some(request),
        }
    }
}

impl<S, R> Future for Oneshot<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                OneshotProj::NotReady { service, request } => {
                    if let Err(err) = std::task::ready!(service.poll_ready(cx)) {
                        self.set(Self::Done);
                        return Poll::Ready(Err(err));
                    }
                    // Taken in place: moving the whole state out would copy it.
                    let Some(request) = request.take() else {
                        self.set(Self::Done);
                        return Poll::Pending;
                    };
                    let future = service.call(request);
                    self.set(Self::Called { future });
                }
                OneshotProj::Called { future } => {
                    let output = std::task::ready!(future.poll(cx));
                    self.set(Self::Done);
                    return Poll::Ready(output);
                }
                // Polled after completion: there is nothing more to give.
                OneshotProj::Done => return Poll::Pending,
            }
        }
    }
}

/// An HTTP/1 connection's exchanges: how many requests are being served and when
/// the last one ended, which the connection's watchdog reads to keep the
/// header-read deadline. An exchange starts when hyper hands over a request (its
/// head has arrived) and ends when its response body is dropped (sent, or the
/// connection failed).
pub(super) struct Exchanges {
    origin: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds from `origin` to the end of the last exchange.
    last_done: AtomicU64,
}

// === impl Exchanges ===

impl Exchanges {
    pub(super) fn new() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
        }
    }

    /// When the connection was served from.
    pub(super) fn origin(&self) -> Instant {
        self.origin
    }

    /// Since when the connection has waited for a request head, or `None` while
    /// a request is being served.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        // Acquire pairs with the release in `Exchange::drop`: an exchange seen
        // ended has its end time stored.
        if self.in_flight.load(Ordering::Acquire) != 0 {
            return None;
        }
        let since = Duration::from_nanos(self.last_done.load(Ordering::Acquire));
        Some(self.origin.checked_add(since).unwrap_or(self.origin))
    }
}

/// One request being served; its exchange ends when this is dropped.
pub(super) struct Exchange(Arc<Exchanges>);

impl Exchange {
    fn start(exchanges: &Arc<Exchanges>) -> Self {
        exchanges.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(exchanges))
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let exchanges = &*self.0;
        let ended = u64::try_from(exchanges.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        exchanges.last_done.fetch_max(ended, Ordering::Release);
        exchanges.in_flight.fetch_sub(1, Ordering::Release);
    }
}

pin_project! {
    /// A response body that ends its request's exchange when dropped.
    pub(super) struct Tracked<B> {
        #[pin]
        body: B,
        exchange: Option<Exchange>,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
