//! Answering a refusal: the front end's [`Answer`], zt-tower's [`HttpAnswer`],
//! and the [`ResponseFuture`] every front end shares.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::Denial;

/// How a front end answers a refused request in its protocol.
///
/// The decision is made once, whatever the protocol; an answer only maps its
/// [`Denial`] to a response, and says what kind of refusal it was, never why: the
/// reason is logged. zt-tower answers with HTTP statuses ([`HttpAnswer`]),
/// zt-tonic with gRPC statuses.
pub trait Answer<B> {
    /// The response to a request refused for `denial`.
    fn refusal(denial: Denial) -> Response<B>;
}

/// Answers refusals with HTTP statuses and a `text/plain` body naming the kind of
/// refusal: `400 Bad Request` for a malformed request, `501 Not Implemented` for
/// `CONNECT` and `Upgrade` zt does not govern, `401 Unauthorized` with
/// `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3) for a JWT-SVID
/// that does not validate, `403 Forbidden` with the body `forbidden` for
/// everything else. gRPC clients read a 403 as `PERMISSION_DENIED`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpAnswer;

impl<B: From<&'static str>> Answer<B> for HttpAnswer {
    fn refusal(denial: Denial) -> Response<B> {
        let (status, body) = match denial {
            Denial::Malformed => (StatusCode::BAD_REQUEST, "bad request\n"),
            Denial::Unsupported => (StatusCode::NOT_IMPLEMENTED, "not implemented\n"),
            Denial::InvalidToken => (StatusCode::UNAUTHORIZED, "unauthorized\n"),
            // It says nothing about why.
            _ => (StatusCode::FORBIDDEN, "forbidden\n"),
        };
        let mut response = Response::new(B::from(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if denial == Denial::InvalidToken {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

pin_project! {
    /// The response future of [`Authorize`](super::Authorize): the inner
    /// service's response, or the answer `A` gives to the refusal.
    pub struct ResponseFuture<F, A> {
        #[pin]
        state: State<F>,
        answer: PhantomData<fn() -> A>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Allowed { #[pin] future: F },
        Refused { denial: Option<Denial> },
    }
}

// === impl ResponseFuture ===

impl<F, A> ResponseFuture<F, A> {
    pub(super) fn allowed(future: F) -> Self {
        Self {
            state: State::Allowed { future },
            answer: PhantomData,
        }
    }

    pub(super) fn refused(denial: Denial) -> Self {
        Self {
            state: State::Refused {
                denial: Some(denial),
            },
            answer: PhantomData,
        }
    }
}

impl<F, A, B, E> Future for ResponseFuture<F, A>
where
    F: Future<Output = Result<Response<B>, E>>,
    A: Answer<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Allowed { future } => future.poll(cx),
            StateProj::Refused { denial } => match denial.take() {
                Some(denial) => Poll::Ready(Ok(A::refusal(denial))),
                // Polled after completion: there is nothing more to give.
                None => Poll::Pending,
            },
        }
    }
}

impl<F, A> fmt::Debug for ResponseFuture<F, A> {
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::{Ready, ready};
    use std::pin::pin;
    use std::task::Waker;

    use super::*;

    /// Each refusal's HTTP answer, chosen on purpose: the kind of refusal, never
    /// the reason.
    #[test]
    fn each_denial_has_its_http_status_and_body() {
        let table = [
            (Denial::NoIdentity, StatusCode::FORBIDDEN, "forbidden\n"),
            (Denial::UntrustedPeer, StatusCode::FORBIDDEN, "forbidden\n"),
            (Denial::Policy, StatusCode::FORBIDDEN, "forbidden\n"),
            (Denial::Hook, StatusCode::FORBIDDEN, "forbidden\n"),
            (Denial::Malformed, StatusCode::BAD_REQUEST, "bad request\n"),
            (
                Denial::InvalidToken,
                StatusCode::UNAUTHORIZED,
                "unauthorized\n",
            ),
            (
                Denial::Unsupported,
                StatusCode::NOT_IMPLEMENTED,
                "not implemented\n",
            ),
        ];
        for (denial, status, body) in table {
            let response: Response<String> = HttpAnswer::refusal(denial);
            assert_eq!(response.status(), status, "{denial:?}");
            assert_eq!(response.body(), body, "{denial:?}");
            assert_eq!(
                response.headers().get(CONTENT_TYPE),
                Some(&HeaderValue::from_static("text/plain")),
                "{denial:?}"
            );
        }
    }

    #[test]
    fn refused_future_answers_once_and_then_stays_pending() {
        type Inner = Ready<Result<Response<String>, Infallible>>;
        let mut future = pin!(ResponseFuture::<Inner, HttpAnswer>::refused(Denial::Policy));
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => assert_eq!(response.status(), StatusCode::FORBIDDEN),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => unreachable!("a refusal is answered at once"),
        }
        assert!(future.as_mut().poll(&mut cx).is_pending());
    }

    #[test]
    fn allowed_future_is_the_inner_response() {
        let inner = ready(Ok::<_, Infallible>(Response::new(String::from("hello"))));
        let mut future = pin!(ResponseFuture::<_, HttpAnswer>::allowed(inner));
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => assert_eq!(response.body(), "hello"),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => unreachable!("the inner future is ready"),
        }
    }
}
