//! One connection's life after it is accepted: the handshake, the HTTP version,
//! serving, and the end — at the peer's SVID expiry, at the maximum age, when an
//! HTTP/1 request head does not arrive within the header-read timeout, or at
//! shutdown, first gracefully, then for good after the drain timeout.
//!
//! The deadlines and the shutdown are watched by a task of their own (the
//! watchdog), which tells the connection task through a [`Signal`], so serving
//! requests costs nothing for ends that almost never come.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use atomic_waker::AtomicWaker;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower_service::Service;
use tracing::Instrument;
use zt_core::Principal;

use super::accept::{Inner, Phase};
use super::detect::{HttpVersion, detect_version};
use super::govern::{GovernedIo, Governor};
use super::service::{ConnService, Exchanges};
use crate::BoxError;
use crate::metrics::{self, CloseReason, GaugeGuard};

/// One accepted connection, from handshake to close.
pub(super) struct Connection<S> {
    inner: Arc<Inner>,
    service: S,
    phase: watch::Receiver<Phase>,
    /// The listener's address, for the connection's span.
    local: Option<Arc<str>>,
}

impl<S, B> Connection<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(
        inner: Arc<Inner>,
        service: S,
        phase: watch::Receiver<Phase>,
        local: Option<Arc<str>>,
    ) -> Self {
        Self {
            inner,
            service,
            phase,
            local,
        }
    }

    /// Runs the connection in a span of its own, with OpenTelemetry's attribute
    /// names; the peer and the TLS parameters are recorded after the handshake.
    pub(super) async fn run<I, A>(self, io: I, addr: A, permit: OwnedSemaphorePermit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        A: fmt::Debug,
    {
        let span = tracing::info_span!(
            target: "zt::conn",
            "connection",
            "network.peer.address" = ?addr,
            "server.address" = self.local.as_deref(),
            "tls.protocol.version" = tracing::field::Empty,
            "tls.cipher" = tracing::field::Empty,
            "spiffe.id" = tracing::field::Empty,
        );
        self.run_in_span(io, addr, permit).instrument(span).await;
    }

    async fn run_in_span<I, A>(mut self, io: I, addr: A, permit: OwnedSemaphorePermit)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        A: fmt::Debug,
    {
        let inner = Arc::clone(&self.inner);
        let (tls, peer, addr) = tokio::select! {
            handshake = inner.handshake(io, addr) => match handshake {
                Some(authenticated) => authenticated,
                None => return,
            },
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => return,
        };
        drop(permit);
        let span = tracing::Span::current();
        if !span.is_disabled() {
            let conn = tls.get_ref().1;
            if let Some(verified) = peer.verified() {
                span.record("spiffe.id", tracing::field::display(verified.id()));
            }
            if let Some(version) = conn.protocol_version() {
                span.record("tls.protocol.version", tls_version(version));
            }
            if let Some(suite) = conn.negotiated_cipher_suite() {
                span.record("tls.cipher", tracing::field::debug(suite.suite()));
            }
        }
        tracing::debug!(?addr, peer = %peer, "connection established");
        let _open = GaugeGuard::connection();
        let closed = self.serve(tls, peer, addr).await;
        metrics::connection_closed(closed);
    }

    /// Serves an authenticated connection; says why it ended.
    async fn serve<I, A>(
        mut self,
        tls: tokio_rustls::server::TlsStream<I>,
        peer: Principal,
        addr: A,
    ) -> CloseReason
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        A: fmt::Debug,
    {
        let inner = Arc::clone(&self.inner);

        let now = Instant::now();
        // An anonymous peer has no SVID to expire: only the maximum age, or the
        // year a verified peer's connection is held at most, ends it.
        let (left, expiry_reason) = match &peer {
            Principal::Verified(verified) => (
                verified.time_left(SystemTime::now()),
                CloseReason::SvidExpired,
            ),
            _ => (ANONYMOUS_TIME_LEFT, CloseReason::MaxAge),
        };
        // Adding at most a year cannot overflow; were it to, closing now fails closed.
        let expiry = now.checked_add(left).unwrap_or(now);
        // An age too large for an `Instant` is no limit, rather than a panic.
        let (close_at, close_reason) = match inner
            .max_connection_age
            .and_then(|age| now.checked_add(age))
        {
            Some(aged) if aged < expiry => (aged, CloseReason::MaxAge),
            _ => (expiry, expiry_reason),
        };

        // Without a deadline of its own, a client that sends nothing after its
        // handshake (or half the HTTP/2 preface) would hold the connection until
        // its SVID expires.
        let detect = tokio::time::timeout(inner.header_read_timeout, detect_version(tls));
        let (version, io) = tokio::select! {
            result = detect => match result {
                Ok(Ok(Some(detected))) => detected,
                Ok(Ok(None)) => return CloseReason::PeerClosed,
                Ok(Err(err)) => {
                    tracing::debug!(?addr, peer = %peer, error = %err, "connection failed before its first request");
                    return CloseReason::Error;
                }
                Err(_) => {
                    tracing::debug!(
                        ?addr,
                        peer = %peer,
                        timeout = ?inner.header_read_timeout,
                        "client sent no request after the handshake; closing"
                    );
                    return CloseReason::Error;
                }
            },
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => return CloseReason::Shutdown,
        };

        if *self.phase.borrow_and_update() != Phase::Serving {
            return CloseReason::Shutdown;
        }
        let signal = Arc::new(Signal::default());
        // HTTP/1: the watchdog keeps the header-read deadline, from what the
        // service records of each exchange (hyper's own would arm a timer and
        // read once more for every request).
        let exchanges = match version {
            HttpVersion::Http1 => Some(Arc::new(Exchanges::new())),
            HttpVersion::Http2 => None,
        };
        let watchdog = tokio::spawn(watchdog(
            Arc::clone(&signal),
            self.phase,
            Deadlines {
                close_at,
                close_reason,
                drain_timeout: inner.drain_timeout,
                idle: exchanges
                    .clone()
                    .map(|exchanges| (exchanges, inner.header_read_timeout)),
            },
            peer.clone(),
        ));
        let _watchdog = AbortOnDrop(watchdog);
        // Governed upgrades: the connection's record of the upgrades it carries,
        // and an IO that a close reaches even once hyper handed it over to an
        // upgraded HTTP/1 stream.
        // Only a verified peer's upgrades are governed (an anonymous peer's are
        // refused: no SVID to follow).
        let governor = peer
            .verified()
            .filter(|_| inner.websockets)
            .map(|verified| Arc::new(Governor::new(Arc::clone(&signal), verified.clone())));
        let service = ConnService {
            inner: self.service,
            peer: peer.clone(),
            exchanges,
            governor: governor.clone(),
        };
        let ended_by = Arc::clone(&signal);
        let http = match version {
            HttpVersion::Http1 => &inner.http1,
            HttpVersion::Http2 => &inner.http2,
        };
        let ended = if governor.is_some() {
            let io = GovernedIo::new(io, Arc::clone(&signal));
            let conn = http.serve_connection_with_upgrades(TokioIo::new(io), service);
            let ended = Driven {
                conn,
                signal,
                registered: None,
                draining: false,
            }
            .await;
            // HTTP/1: hyper ends the connection once it hands the IO over to an
            // upgraded stream, which lives on in the application's task; the
            // connection, its watchdog and its governance last as long as it.
            if matches!(ended, Ended::Done(Ok(()))) && ended_by.upgraded.load(Ordering::Acquire) {
                ended_by.upgraded_stream_ends().await;
            }
            ended
        } else {
            let conn = http.serve_connection(TokioIo::new(io), service);
            Driven {
                conn,
                signal,
                registered: None,
                draining: false,
            }
            .await
        };
        if let Some(governor) = governor {
            governor.stop();
        }
        let closed = match ended {
            Ended::Done(Ok(())) => CloseReason::PeerClosed,
            Ended::Done(Err(err)) => {
                tracing::debug!(?addr, peer = %peer, error = %err, "connection ended with an error");
                CloseReason::Error
            }
            Ended::Closed => {
                tracing::debug!(?addr, peer = %peer, "connection closed");
                CloseReason::Error
            }
        };
        // A connection the watchdog drained or closed ended for the watchdog's reason.
        ended_by.why().unwrap_or(closed)
    }
}

/// How long an anonymous peer's connection lasts without a maximum age: the
/// most a verified peer's is held (`PeerIdentity::time_left`).
const ANONYMOUS_TIME_LEFT: Duration = Duration::from_secs(365 * 24 * 3600);

/// OpenTelemetry's `tls.protocol.version` value.
fn tls_version(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "1.3",
        rustls::ProtocolVersion::TLSv1_2 => "1.2",
        _ => "other",
    }
}

/// What a connection's watchdog tells the connection task. The task reads it with
/// one atomic load per poll, so serving requests costs nothing for deadlines and
/// shutdown that almost never come.
#[derive(Default)]
pub(super) struct Signal {
    pub(super) state: AtomicU8,
    /// The connection task's waker.
    waker: AtomicWaker,
    /// Why the watchdog raised the state: one of the `WHY_*` values.
    why: AtomicU8,
    /// Set once the connection carries a governed upgrade: from then on its IO
    /// registers the wakers of whoever reads and writes it (HTTP/1: the
    /// application's task, which owns the upgraded stream), so that a close
    /// reaches them.
    pub(super) upgraded: AtomicBool,
    pub(super) io_read: AtomicWaker,
    pub(super) io_write: AtomicWaker,
    /// The connection's IO was dropped: an HTTP/1 upgraded stream ended.
    pub(super) io_gone: AtomicBool,
}

const WHY_NONE: u8 = 0;
const WHY_EXPIRED: u8 = 1;
const WHY_MAX_AGE: u8 = 2;
const WHY_SHUTDOWN: u8 = 3;
const WHY_UNTRUSTED: u8 = 4;
const WHY_POLICY: u8 = 5;

const SERVE: u8 = 0;
const DRAIN: u8 = 1;
pub(super) const CLOSE: u8 = 2;

impl Signal {
    pub(super) fn raise(&self, state: u8) {
        self.state.fetch_max(state, Ordering::AcqRel);
        self.waker.wake();
        if state == CLOSE {
            self.io_read.wake();
            self.io_write.wake();
        }
    }

    /// Closes the connection now; says whether it was not closing already.
    pub(super) fn close(&self) -> bool {
        let before = self.state.fetch_max(CLOSE, Ordering::AcqRel);
        self.waker.wake();
        self.io_read.wake();
        self.io_write.wake();
        before < CLOSE
    }

    /// Wakes the connection task.
    pub(super) fn wake_task(&self) {
        self.waker.wake();
    }

    /// Records why the connection ends; the first reason stays.
    pub(super) fn ended_by(&self, why: CloseReason) {
        let why = match why {
            CloseReason::SvidExpired => WHY_EXPIRED,
            CloseReason::MaxAge => WHY_MAX_AGE,
            CloseReason::UntrustedPeer => WHY_UNTRUSTED,
            CloseReason::PolicyDenied => WHY_POLICY,
            _ => WHY_SHUTDOWN,
        };
        let _ = self
            .why
            .compare_exchange(WHY_NONE, why, Ordering::AcqRel, Ordering::Acquire);
    }

    fn why(&self) -> Option<CloseReason> {
        match self.why.load(Ordering::Acquire) {
            WHY_EXPIRED => Some(CloseReason::SvidExpired),
            WHY_MAX_AGE => Some(CloseReason::MaxAge),
            WHY_SHUTDOWN => Some(CloseReason::Shutdown),
            WHY_UNTRUSTED => Some(CloseReason::UntrustedPeer),
            WHY_POLICY => Some(CloseReason::PolicyDenied),
            _ => None,
        }
    }

    /// The connection task's wait, once hyper handed an HTTP/1 connection's IO
    /// over to an upgraded stream: until the stream is dropped, or the
    /// watchdog or governance closes it.
    fn upgraded_stream_ends(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            self.waker.register(cx.waker());
            if self.io_gone.load(Ordering::Acquire) || self.state.load(Ordering::Acquire) == CLOSE {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// What the watchdog waits for besides the shutdown.
struct Deadlines {
    /// Peer SVID expiry or maximum age, whichever comes first, and which.
    close_at: Instant,
    close_reason: CloseReason,
    drain_timeout: Duration,
    /// HTTP/1: the connection's exchanges and the header-read timeout.
    idle: Option<(Arc<Exchanges>, Duration)>,
}

/// Waits for what ends a connection — its deadline (peer SVID expiry or maximum
/// age), an HTTP/1 request head that did not arrive within the header-read
/// timeout, or the server's shutdown — and tells the connection task to drain,
/// then, after the drain timeout, to close.
async fn watchdog(
    signal: Arc<Signal>,
    mut phase: watch::Receiver<Phase>,
    deadlines: Deadlines,
    peer: Principal,
) {
    let Deadlines {
        close_at,
        close_reason,
        drain_timeout,
        idle,
    } = deadlines;
    tokio::select! {
        () = head_overdue(idle.as_ref(), &signal.upgraded) => {
            tracing::debug!(
                peer = %peer,
                timeout = ?idle.as_ref().map(|(_, timeout)| *timeout),
                "client sent no complete request head within the header read timeout; closing"
            );
            signal.raise(CLOSE);
            return;
        }
        () = tokio::time::sleep_until(close_at) => {
            let reason = match close_reason {
                CloseReason::MaxAge => "maximum connection age reached",
                _ => "peer SVID expired",
            };
            tracing::debug!(peer = %peer, reason, "draining connection");
            signal.ended_by(close_reason);
        }
        changed = phase.wait_for(|phase| *phase != Phase::Serving) => {
            signal.ended_by(CloseReason::Shutdown);
            if !matches!(changed.as_deref(), Ok(Phase::Draining)) {
                signal.raise(CLOSE);
                return;
            }
        }
    }
    signal.raise(DRAIN);
    tokio::select! {
        () = tokio::time::sleep(drain_timeout) => {
            tracing::debug!(peer = %peer, ?drain_timeout, "drain timeout passed; closing connection");
        }
        _ = phase.wait_for(|phase| *phase == Phase::Closing) => {}
    }
    signal.raise(CLOSE);
}

/// Returns once an HTTP/1 connection has waited longer than the timeout for a
/// request head: since it was served, or since its last exchange ended, with no
/// request in flight. Never returns for HTTP/2 (`None`), nor once the
/// connection was upgraded (`upgraded`): it reads no more request heads. Wakes
/// at most once per timeout while requests come in time.
async fn head_overdue(idle: Option<&(Arc<Exchanges>, Duration)>, upgraded: &AtomicBool) {
    let Some((exchanges, timeout)) = idle else {
        return std::future::pending().await;
    };
    // A timeout too large for an `Instant` is no limit, rather than a panic.
    let Some(mut check_at) = exchanges.origin().checked_add(*timeout) else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep_until(check_at).await;
        if upgraded.load(Ordering::Acquire) {
            return std::future::pending().await;
        }
        let now = Instant::now();
        let next = match exchanges.idle_since() {
            Some(since) => since.checked_add(*timeout),
            // A request is being served: its head arrived.
            None => now.checked_add(*timeout),
        };
        match next {
            Some(due) if due <= now => return,
            Some(due) => check_at = due,
            None => return std::future::pending().await,
        }
    }
}

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a driven connection ended.
enum Ended<E> {
    /// hyper finished the connection.
    Done(Result<(), E>),
    /// The watchdog closed it.
    Closed,
}

pin_project! {
    /// Drives a hyper connection, starting its graceful shutdown or dropping it as
    /// the watchdog says.
    struct Driven<C> {
        #[pin]
        conn: C,
        signal: Arc<Signal>,
        // The waker last given to `signal`: the connection task's waker rarely
        // changes, so most polls skip registering it again (two atomic
        // read-modify-writes each).
        registered: Option<Waker>,
        draining: bool,
    }
}

/// A hyper connection the watchdog can drain: served with or without upgrades.
trait Drain: Future<Output = Result<(), BoxError>> {
    fn drain(self: Pin<&mut Self>);
}

impl<I, S, B> Drain for auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Drain for auto::UpgradeableConnection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<C: Drain> Future for Driven<C> {
    type Output = Ended<BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut state = this.signal.state.load(Ordering::Acquire);
        // The watchdog takes the registered waker when it raises the state, so
        // while the state is still SERVE the waker registered last is in place;
        // only a new waker or a raised state needs registering. Registered before
        // the state is read again, so a raise in between still wakes us.
        let current = this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if state != SERVE || !current {
            this.signal.waker.register(cx.waker());
            if !current {
                *this.registered = Some(cx.waker().clone());
            }
            state = this.signal.state.load(Ordering::Acquire);
        }
        match state {
            SERVE => {}
            DRAIN => {
                if !*this.draining {
                    *this.draining = true;
                    this.conn.as_mut().drain();
                }
            }
            _ => return Poll::Ready(Ended::Closed),
        }
        this.conn.poll(cx).map(Ended::Done)
    }
}
