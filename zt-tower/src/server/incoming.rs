//! Authenticated connections for servers that serve them themselves.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use zt_core::Principal;

use super::Listener;
use super::accept::{Inner, accept};

/// The connections of a listener, each with its peer authenticated by its
/// X.509-SVID. Made by [`Server::incoming`](crate::Server::incoming).
///
/// An accept task takes connections from the listener and hands each to a
/// handshake task of its own, so a slow or silent client never holds up the
/// others; at most the server's maximum number of handshakes run at once, and
/// while they do, new connections wait in the kernel's backlog. A connection
/// whose handshake fails or times out is dropped and logged. Connections that
/// completed their handshake and were not taken yet count against the same
/// maximum, so a consumer that stops taking them stops the accepting too.
///
/// Dropping `TlsIncoming` closes the listener and abandons handshakes in progress.
pub struct TlsIncoming<I, A> {
    connections: mpsc::Receiver<Accepted<I, A>>,
    accept_task: tokio::task::JoinHandle<()>,
}

/// A connection whose handshake completed: the TLS stream, the client (verified,
/// or anonymous on a server that [allows them](crate::ServerBuilder::allow_anonymous))
/// and its address.
#[non_exhaustive]
pub struct Accepted<I, A> {
    /// The TLS stream, past the handshake.
    pub stream: TlsStream<I>,
    /// The client's verified identity, or that it presented no certificate.
    pub peer: Principal,
    /// The client's address, as the listener reported it.
    pub addr: A,
}

// === impl TlsIncoming ===

impl<I, A> TlsIncoming<I, A>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    A: fmt::Debug + Send + 'static,
{
    pub(super) fn start<L>(inner: Arc<Inner>, mut listener: L) -> Self
    where
        L: Listener<Io = I, Addr = A>,
    {
        let slots = inner.max_handshakes;
        // Every connection in the channel still holds its handshake slot, so the
        // slots bound the channel; its capacity never makes a sender wait.
        let (tx, connections) = mpsc::channel(slots);
        let accept_task = tokio::spawn(async move {
            let handshakes = Arc::new(Semaphore::new(slots));
            if let Ok(addr) = listener.local_addr() {
                tracing::debug!(?addr, "accepting");
            }
            // Dropping `TlsIncoming` aborts this task; that is its only way to stop.
            let mut never = std::pin::pin!(std::future::pending::<()>());
            while let Some((io, addr, permit)) =
                accept(&mut listener, &handshakes, never.as_mut()).await
            {
                let inner = Arc::clone(&inner);
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        authenticated = inner.handshake(io, addr) => {
                            if let Some((stream, peer, addr)) = authenticated {
                                tracing::debug!(?addr, %peer, "connection established");
                                // Fails only once `TlsIncoming` is gone: nothing left to do.
                                let _ = tx.send(Accepted { stream, peer, addr }).await;
                            }
                        }
                        () = tx.closed() => {}
                    }
                    drop(permit);
                });
            }
        });
        Self {
            connections,
            accept_task,
        }
    }
}

impl<I, A> TlsIncoming<I, A> {
    /// The next authenticated connection; `None` only if accepting stopped for
    /// good.
    pub async fn accept(&mut self) -> Option<Accepted<I, A>> {
        self.connections.recv().await
    }

    /// Polls for the next authenticated connection, as [`accept`](Self::accept)
    /// waits for it; for `Stream` implementations.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Accepted<I, A>>> {
        self.connections.poll_recv(cx)
    }
}

impl<I, A> Drop for TlsIncoming<I, A> {
    fn drop(&mut self) {
        // The accept task owns the listener: aborting it closes the socket.
        // Handshake tasks notice the closed channel and stop.
        self.accept_task.abort();
    }
}

impl<I, A> fmt::Debug for TlsIncoming<I, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIncoming")
            .field("ready", &self.connections.len())
            .finish_non_exhaustive()
    }
}

// === impl Accepted ===

impl<I, A: fmt::Debug> fmt::Debug for Accepted<I, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("peer", &self.peer)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
