//! Whether a connection is doing anything: the clock behind `HTTP_IDLE_TIMEOUT_MS`.
//!
//! hyper bounds the wait for a request head (`header_read_timeout`), but once a request is read
//! nothing bounds a client that stops reading its answer or stops sending its body: the write
//! or the read just waits, holding the connection (and, for the dashboard's stream, one of its
//! few places) for ever. [`Watched`] stamps the time of every byte moved on the socket;
//! [`Activity::stalled`] resolves when neither a byte nor a request being handled has been seen
//! for the idle timeout, and the connection is then dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// One connection's signs of life, shared by its socket wrapper, its request handler and its
/// watchdog (all in the connection's task; atomics because the task moves between threads).
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// When a byte last moved, in milliseconds since `start`.
    last_ms: AtomicU64,
    /// Requests being handled (0 or 1: HTTP/1.1 handles one at a time per connection).
    busy: AtomicUsize,
    /// Whether the request being handled waits for its body, which the client still owes: a
    /// request timeout then is the client's doing (408), not the service's (503).
    body_pending: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            body_pending: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Marks a request as being handled until the guard is dropped: a handler that thinks
    /// for a while moves no byte, and the request timeout, not this one, bounds it.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.body_pending.store(false, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    pub(crate) fn set_body_pending(&self, pending: bool) {
        self.body_pending.store(pending, Ordering::Relaxed);
    }

    pub(crate) fn body_pending(&self) -> bool {
        self.body_pending.load(Ordering::Relaxed)
    }

    /// Resolves once the connection has gone `idle` without a byte moved and without a request
    /// in hand.
    pub(crate) async fn stalled(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if deadline <= Instant::now() {
                if self.busy.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // A handler at work counts as life; the idle clock restarts from now.
                self.touch();
                continue;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The guard of [`Activity::busy`].
pub(crate) struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket that reports each byte it moves to its connection's [`Activity`].
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
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
