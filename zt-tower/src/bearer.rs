//! Presenting our JWT-SVID on outgoing requests (feature `jwt`): [`BearerLayer`]
//! adds `Authorization: Bearer <token>` with the current token of a
//! [`JwtSvidSource`] to every request of a hyper (or any tower) client.
//!
//! A request for which the source has no token that has not expired is not sent:
//! it fails with [`NoJwtSvid`], so a server never sees a call that silently lost
//! its caller's identity. A request that already carries an `Authorization`
//! header keeps it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{Layer, ServiceExt};
//! use zt_core::jwt::JwtSvid;
//! use zt_tower::bearer::BearerLayer;
//!
//! # let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9mcm9udGVuZCIsImF1ZCI6Im9yZGVycy1hcGkiLCJleHAiOjQxMDI0NDQ4MDB9.c2ln";
//! let svid = JwtSvid::parse(token)?; // from a file, the Workload API, …
//! let client = BearerLayer::new(svid).layer(tower::service_fn(|request: Request<String>| async move {
//!     let sent = request.headers()["authorization"].to_str().unwrap_or("").to_owned();
//!     Ok::<_, Infallible>(Response::new(sent))
//! }));
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! let response = rt.block_on(client.oneshot(Request::new(String::new()))).map_err(|e| e.to_string())?;
//! assert_eq!(response.body(), &format!("Bearer {token}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use zt_core::jwt::JwtSvidSource;

use crate::BoxError;

/// Adds our JWT-SVID to every request; see the [module docs](self).
#[derive(Clone)]
pub struct BearerLayer {
    source: Arc<dyn JwtSvidSource>,
}

// === impl BearerLayer ===

impl BearerLayer {
    /// Takes the token of each request from `source`.
    pub fn new(source: impl JwtSvidSource + 'static) -> Self {
        Self {
            source: Arc::new(source),
        }
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Bearer<S> {
        Bearer {
            inner,
            source: Arc::clone(&self.source),
        }
    }
}

impl fmt::Debug for BearerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerLayer").finish_non_exhaustive()
    }
}

/// Adds our JWT-SVID to every request; see the [module docs](self).
#[derive(Clone)]
pub struct Bearer<S> {
    inner: S,
    source: Arc<dyn JwtSvidSource>,
}

// === impl Bearer ===

impl<S> Bearer<S> {
    /// Wraps `inner`, taking tokens from `source`.
    pub fn new(inner: S, source: impl JwtSvidSource + 'static) -> Self {
        BearerLayer::new(source).layer(inner)
    }

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
}

impl<S> fmt::Debug for Bearer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer").finish_non_exhaustive()
    }
}

/// The request was not sent: there is no JWT-SVID to present.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("no JWT-SVID to present: the source has none that has not expired")]
pub struct NoJwtSvid(());

impl<S, B> Service<Request<B>> for Bearer<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !request.headers().contains_key(AUTHORIZATION) {
            let value = self
                .source
                .current()
                .and_then(|svid| HeaderValue::try_from(format!("Bearer {}", svid.token())).ok());
            let Some(mut value) = value else {
                return ResponseFuture::failed();
            };
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        ResponseFuture::sent(self.inner.call(request))
    }
}

pin_project! {
    /// The response future of [`Bearer`].
    pub struct ResponseFuture<F, R> {
        #[pin]
        state: State<F, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, R> {
        Sent { #[pin] future: F },
        Failed { #[pin] error: Ready<Result<R, BoxError>> },
    }
}

impl<F, R> ResponseFuture<F, R> {
    fn sent(future: F) -> Self {
        Self {
            state: State::Sent { future },
        }
    }

    fn failed() -> Self {
        Self {
            state: State::Failed {
                error: ready(Err(Box::new(NoJwtSvid(())))),
            },
        }
    }
}

impl<F, R, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { future } => future.poll(cx).map_err(Into::into),
            StateProj::Failed { error } => error.poll(cx),
        }
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Sent { .. } => "sent",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
