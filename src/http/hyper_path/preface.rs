//! An HTTP/2 connection over TLS (ALPN `h2`) must send its preface within the head timeout: hyper
//! has no timer for it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::first_bytes::PREFACE;

/// An HTTP/2 connection (ALPN `h2`) whose client must send the preface within a deadline; past
/// the preface this is a plain pass-through, and the timer is gone.
pub(super) struct PrefaceWithin<I> {
    io: I,
    read: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> PrefaceWithin<I> {
    pub(super) fn new(io: I, within: Duration) -> PrefaceWithin<I> {
        PrefaceWithin {
            io,
            read: 0,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceWithin<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = &mut this.deadline else {
            return polled;
        };
        if polled.is_ready() {
            this.read += buf.filled().len() - before;
            if this.read >= PREFACE.len() {
                this.deadline = None;
            }
            return polled;
        }
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no HTTP/2 preface in time",
        )))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for PrefaceWithin<I> {
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
