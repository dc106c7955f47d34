//! Sources of connections the server accepts from.

use std::fmt;
use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A bound socket the [`Server`](crate::Server) accepts connections from: TCP or,
/// on Unix, a Unix domain socket. Implement it for other transports.
pub trait Listener: Send + 'static {
    /// A freshly accepted, not yet authenticated stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The address of a remote end.
    type Addr: fmt::Debug + Send + 'static;

    /// Accepts the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;

    /// The local address this listener is bound to.
    ///
    /// # Errors
    ///
    /// When the operating system cannot tell.
    fn local_addr(&self) -> io::Result<Self::Addr>;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        // Requests and responses are small and latency matters more than packet
        // count; Nagle's algorithm would hold back the last segment of each.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        tokio::net::UnixListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::UnixListener::local_addr(self)
    }
}
