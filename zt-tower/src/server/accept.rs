//! The accept loop and what it shares with every connection: the server's
//! [`Inner`] state, the TLS handshake, and the [`Phase`] that tells connections to
//! drain or close at shutdown.
//!
//! [`Server::serve`](super::Server::serve) and
//! [`Server::incoming`](super::Server::incoming) accept through the same
//! [`accept`] and [`Inner::handshake`], so both bound handshakes alike.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower_service::Service;
use zt_core::{AnonymousPeer, Identity, PeerIdentity, PeerRole, Principal, tls};

use super::connection::Connection;
use super::{Listener, Serve};
use crate::BoxError;
use crate::metrics::{self, GaugeGuard, Side};

/// How long the accept loop pauses after an error that is not about one connection
/// (such as running out of file descriptors), so it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What the server and every connection it accepted share.
pub(super) struct Inner {
    pub(super) acceptor: TlsAcceptor,
    pub(super) identity: Identity,
    /// Whether a client without a certificate is served as an anonymous peer.
    pub(super) anonymous: bool,
    pub(super) handshake_timeout: Duration,
    pub(super) max_handshakes: usize,
    pub(super) max_connection_age: Option<Duration>,
    pub(super) drain_timeout: Duration,
    pub(super) header_read_timeout: Duration,
    /// The version is told by the first bytes, which zt reads itself under a
    /// deadline: hyper-util's detection waits for them without one.
    pub(super) http1: auto::Builder<TokioExecutor>,
    pub(super) http2: auto::Builder<TokioExecutor>,
    /// Governed WebSocket upgrades are served (`ServerBuilder::websockets`).
    pub(super) websockets: bool,
}

/// What the accept loop tells the connections it spawned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Serving,
    /// Finish in-flight requests, take no new ones.
    Draining,
    /// The drain timeout passed: close now.
    Closing,
}

pub(super) async fn run<L, S, B, F>(serve: Serve<L, S>, signal: F) -> io::Result<()>
where
    L: Listener,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send,
{
    let Serve {
        server,
        mut listener,
        service,
    } = serve;
    let inner = server.inner;
    let (phase, _) = watch::channel(Phase::Serving);
    let handshakes = Arc::new(Semaphore::new(inner.max_handshakes));
    let mut signal = pin!(signal);
    let local = listener.local_addr().ok().map(|addr| {
        tracing::debug!(?addr, "serving");
        Arc::<str>::from(format!("{addr:?}"))
    });

    while let Some((io, addr, permit)) = accept(&mut listener, &handshakes, signal.as_mut()).await {
        let connection = Connection::new(
            Arc::clone(&inner),
            service.clone(),
            phase.subscribe(),
            local.clone(),
        );
        tokio::spawn(connection.run(io, addr, permit));
    }

    drop(listener);
    let open = phase.receiver_count();
    tracing::info!(
        open_connections = open,
        "shutting down: accepting no more connections"
    );
    phase.send_replace(Phase::Draining);
    if tokio::time::timeout(inner.drain_timeout, phase.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = phase.receiver_count(),
            drain_timeout = ?inner.drain_timeout,
            "connections still busy after the drain timeout; closing them"
        );
        phase.send_replace(Phase::Closing);
        phase.closed().await;
    }
    Ok(())
}

/// Waits for a free handshake slot, then accepts the next connection; `None` once
/// `signal` completes or the slots are closed.
pub(super) async fn accept<L: Listener>(
    listener: &mut L,
    handshakes: &Arc<Semaphore>,
    mut signal: Pin<&mut impl Future<Output = ()>>,
) -> Option<(L::Io, L::Addr, OwnedSemaphorePermit)> {
    loop {
        // Waiting for a slot before accepting leaves surplus connections in the
        // kernel's backlog rather than accepting them only to drop them.
        let permit = tokio::select! {
            biased;
            () = signal.as_mut() => return None,
            permit = Arc::clone(handshakes).acquire_owned() => permit.ok()?,
        };
        let accepted = tokio::select! {
            biased;
            () = signal.as_mut() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((io, addr)) => return Some((io, addr, permit)),
            Err(err) if is_connection_error(&err) => {
                tracing::debug!(error = %err, "connection failed before it was accepted");
            }
            Err(err) => {
                tracing::error!(error = %err, "accept failed; pausing before the next attempt");
                tokio::select! {
                    () = signal.as_mut() => return None,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// === impl Inner ===

impl Inner {
    /// Runs the TLS handshake on `io` within the handshake timeout and reads the
    /// peer's identity; `None`, with the reason logged, when either fails. `addr`,
    /// for the logs, is handed back.
    pub(super) async fn handshake<I, A>(
        &self,
        io: I,
        addr: A,
    ) -> Option<(TlsStream<I>, Principal, A)>
    where
        I: AsyncRead + AsyncWrite + Unpin,
        A: fmt::Debug,
    {
        let accept = self.acceptor.accept(io).into_fallible();
        let in_flight = GaugeGuard::handshake();
        let started = tokio::time::Instant::now();
        let tls = match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(tls)) => tls,
            Ok(Err((err, io))) => {
                drop(in_flight);
                metrics::handshake_rejected(Side::Server, Some(&err));
                match tls::Rejection::of(&err) {
                    Some(reason) => tracing::info!(?addr, %reason, "client certificate refused"),
                    None => tracing::debug!(?addr, error = %err, "TLS handshake failed"),
                }
                linger_close(io).await;
                return None;
            }
            Err(_) => {
                metrics::handshake_rejected(Side::Server, None);
                tracing::debug!(?addr, timeout = ?self.handshake_timeout, "TLS handshake timed out");
                return None;
            }
        };
        drop(in_flight);
        let conn = tls.get_ref().1;
        // Only a client that presented nothing at all is anonymous: a certificate
        // that failed verification ended the handshake above.
        if self.anonymous && conn.peer_certificates().is_none_or(<[_]>::is_empty) {
            metrics::handshake_duration(started.elapsed());
            return Some((tls, Principal::Anonymous(AnonymousPeer::new()), addr));
        }
        match PeerIdentity::from_connection(conn, PeerRole::Client, &self.identity) {
            Ok(peer) => {
                metrics::handshake_duration(started.elapsed());
                Some((tls, Principal::Verified(peer), addr))
            }
            Err(err) => {
                metrics::handshake_rejected(Side::Server, Some(&err));
                // The verifier accepted the chain, so this is not expected; fail closed.
                tracing::warn!(?addr, error = %err, "no usable peer identity after the handshake");
                None
            }
        }
    }
}

/// How long a refused client may take to read the alert and close.
const LINGER: Duration = Duration::from_millis(500);

/// Closes a connection whose handshake failed so that the client reads the alert.
///
/// A TLS 1.3 client learns that its certificate was refused only after it has sent
/// its Finished, often with a request behind it. Closing a socket with unread data
/// makes the kernel send a reset, which can overtake the alert, so the client would
/// report "connection reset" instead of the reason. Half-close, then discard what
/// the client still sends, for a short, bounded time.
async fn linger_close<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
