//! The per-connection hyper service around the user's tower service: it puts the
//! peer's identity into every request and refuses tunnels and protocol upgrades
//! before the application sees them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower_service::Service;
use zt_core::PeerIdentity;

/// The per-connection hyper service: puts the peer into each request, then calls a
/// clone of the user's tower service.
pub(super) struct ConnService<S> {
    pub(super) inner: S,
    pub(super) peer: PeerIdentity,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
    B: http_body::Body,
{
    type Response = Response<Either<B, Empty<B::Data>>>;
    type Error = S::Error;
    type Future = ConnFuture<S, B>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // A tunnel or a switched protocol would carry traffic no request-level
        // check sees: refused here, whatever the application does with it.
        if request.method() == http::Method::CONNECT
            || request.headers().contains_key(http::header::UPGRADE)
        {
            tracing::debug!(peer = %self.peer.id(), method = request.method().as_str(), "tunnel or upgrade refused");
            crate::metrics::refusal("unsupported");
            let mut response = Response::new(Either::Right(Empty::new()));
            *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
            return ConnFuture::Refused {
                response: Some(response),
            };
        }
        // The request's span, a child of the connection's; the authorization
        // records the deciding rule on it (`security_rule.name`).
        let span = tracing::info_span!(
            target: "zt::request",
            "request",
            "http.request.method" = request.method().as_str(),
            "spiffe.id" = %self.peer.id(),
            "security_rule.name" = tracing::field::Empty,
        );
        request.extensions_mut().insert(self.peer.clone());
        ConnFuture::Served {
            span,
            future: Oneshot::new(self.inner.clone(), request),
        }
    }
}

pin_project! {
    /// The response future of [`ConnService`].
    #[project = ConnFutureProj]
    pub(super) enum ConnFuture<S, B>
    where
        S: Service<Request<Incoming>, Response = Response<B>>,
        B: http_body::Body,
    {
        Served { span: tracing::Span, #[pin] future: Oneshot<S, Request<Incoming>> },
        Refused { response: Option<Response<Either<B, Empty<B::Data>>>> },
    }
}

impl<S, B> Future for ConnFuture<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    B: http_body::Body,
{
    type Output = Result<Response<Either<B, Empty<B::Data>>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ConnFutureProj::Served { span, future } => {
                let _entered = span.enter();
                future
                    .poll(cx)
                    .map(|result| result.map(|response| response.map(Either::Left)))
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
