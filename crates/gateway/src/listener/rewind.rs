//! A stream that yields some bytes already read from it before reading on.
//!
//! The lean HTTP/1.1 server path reads a request head itself before it
//! knows whether it will serve it; when it hands the connection to hyper
//! (a request with a body, an upgrade, anything it does not serve), hyper
//! must see those bytes first, as if it had read them. The wrapper also
//! lives on while hyper parks the connection, so bytes hyper never asked
//! for are not lost.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, with `prefix` read first.
pub(super) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(super) fn new(inner: S) -> Self {
        Rewind {
            prefix: Bytes::new(),
            inner,
        }
    }

    /// Put `bytes` (read from this stream) back in front of what is unread.
    pub(super) fn rewind(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix.is_empty(), "rewound twice without a read");
        self.prefix = bytes;
    }

    /// Bytes put back and not read again yet.
    pub(super) fn take_prefix(&mut self) -> Bytes {
        std::mem::take(&mut self.prefix)
    }

    pub(super) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(super) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn yields_the_prefix_first_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world")
            .await
            .unwrap();
        drop(a);
        let mut r = Rewind::new(b);
        r.rewind(Bytes::from_static(b"hello"));
        assert!(r.has_prefix());
        // A small read takes part of the prefix; the rest stays first.
        let mut two = [0u8; 2];
        r.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"llo world");
        assert!(!r.has_prefix());
    }
}
