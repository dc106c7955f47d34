//! Telling HTTP/1.1 from HTTP/2 by the first bytes a client sends.
//!
//! zt reads them itself, under the header read timeout, instead of leaving it to
//! hyper-util's detection, which waits for them without a deadline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HttpVersion {
    Http1,
    Http2,
}

/// Reads the first bytes of `io`, as many as it takes to tell the HTTP/2 preface
/// from anything else, and hands them back in front of the rest. `None` when the
/// client closed the connection first.
pub(super) async fn detect_version<I>(mut io: I) -> io::Result<Option<(HttpVersion, Prefixed<I>)>>
where
    I: AsyncRead + Unpin,
{
    let mut buf = [0_u8; H2_PREFACE.len()];
    let mut filled = 0;
    let version = loop {
        let Some(unfilled) = buf.get_mut(filled..) else {
            break HttpVersion::Http2;
        };
        if unfilled.is_empty() {
            break HttpVersion::Http2;
        }
        let read = std::future::poll_fn(|cx| {
            let mut unfilled = ReadBuf::new(&mut *unfilled);
            Pin::new(&mut io)
                .poll_read(cx, &mut unfilled)
                .map_ok(|()| unfilled.filled().len())
        })
        .await?;
        if read == 0 {
            return Ok(None);
        }
        filled += read;
        let seen = buf.get(..filled).unwrap_or_default();
        if !H2_PREFACE.starts_with(seen) {
            break HttpVersion::Http1;
        }
    };
    let prefix = Bytes::copy_from_slice(buf.get(..filled).unwrap_or_default());
    Ok(Some((version, Prefixed { prefix, io })))
}

/// A stream with bytes already read from it put back in front.
pub(super) struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
