//! A connection's two time limits, kept apart: a request's head must be complete within the
//! header timeout of its first byte (and a new connection must send one that soon), while a
//! keep-alive connection with nothing to do stays open for the idle timeout.
//!
//! hyper's own header timer runs from the previous answer, so it is both limits at once: a
//! short one (against clients that send their headers a byte at a time) closes keep-alive
//! connections early, and each close is a chance for HTTP/1.1's keep-alive race (a client
//! sending on a connection as the server closes it). [`Timed`] wraps the connection's IO and
//! learns from the service ([`Phase`]) when a request's head is complete and when its answer
//! is complete ([`Answered`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Reading a request's head (or waiting for the first one): the header timeout applies.
const HEAD: u8 = 0;
/// Serving a request: the handler's own limits apply (body timeout, proxy timeout).
const BUSY: u8 = 1;
/// Answered, waiting for the next request: the idle timeout applies, from the last write.
const IDLE: u8 = 2;

/// Where a connection is in its request cycle, as its service sees it.
#[derive(Clone, Debug)]
pub struct Phase(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    phase: AtomicU8,
    /// The connection's task as of its last read: hyper does not read again after an answer
    /// until the socket has something, so the idle timer is started by waking it.
    reader: AtomicWaker,
}

impl Phase {
    /// A new connection: its first request's head is awaited.
    pub fn new() -> Self {
        Phase(Arc::new(Shared {
            phase: AtomicU8::new(HEAD),
            reader: AtomicWaker::new(),
        }))
    }

    /// A request's head is complete and its handler runs.
    pub fn serving(&self) {
        self.set(BUSY);
    }

    /// The answer is written (or dropped); the connection waits for the next request.
    fn answered(&self) {
        self.set(IDLE);
        self.0.reader.wake();
    }

    fn set(&self, phase: u8) {
        self.0.phase.store(phase, Ordering::Relaxed);
    }

    fn get(&self) -> u8 {
        self.0.phase.load(Ordering::Relaxed)
    }
}

impl Default for Phase {
    fn default() -> Self {
        Self::new()
    }
}

/// A connection's IO that ends the connection when the limit of its [`Phase`] passes: with an
/// error while a request's head is late, with an end of stream (a graceful close, TLS
/// `close_notify` included) when it has been idle too long.
pub struct Timed<I> {
    io: I,
    phase: Phase,
    /// The phase the timer is set for.
    armed: u8,
    header: Duration,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    last_write: Instant,
}

impl<I> std::fmt::Debug for Timed<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timed")
            .field("phase", &self.phase)
            .field("armed", &self.armed)
            .field("header", &self.header)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

impl<I> Timed<I> {
    /// Wraps `io`, shared with the connection's service through `phase`.
    pub fn new(io: I, phase: Phase, header: Duration, idle: Duration) -> Self {
        let now = Instant::now();
        Timed {
            io,
            armed: phase.get(),
            phase,
            header,
            idle,
            timer: Box::pin(tokio::time::sleep_until(now + header)),
            last_write: now,
        }
    }

    fn arm(&mut self, phase: u8) {
        self.armed = phase;
        let now = Instant::now();
        match phase {
            HEAD => self.timer.as_mut().reset(now + self.header),
            IDLE => {
                self.last_write = now;
                self.timer.as_mut().reset(now + self.idle);
            }
            _ => {}
        }
    }

    /// An answer written after the handler finished keeps the connection from being idle.
    fn wrote(&mut self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) && self.phase.get() == IDLE {
            self.last_write = Instant::now();
        }
    }

    /// Whether the current phase's limit has passed (registering for a wake-up if not).
    fn limit_passed(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // Idle counts from the last write: an answer still being written is not idle.
            let quiet_until = self.last_write + self.idle;
            if self.armed == IDLE && quiet_until > Instant::now() {
                self.timer.as_mut().reset(quiet_until);
                continue;
            }
            return true;
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Timed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let mut phase = this.phase.get();
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                // The first bytes after an answer start the next request's head.
                if phase == IDLE {
                    this.phase.set(HEAD);
                    phase = HEAD;
                }
                if phase != this.armed {
                    this.arm(phase);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Pending => {}
            other => return other,
        }
        if phase != this.armed {
            this.arm(phase);
        }
        if phase == BUSY {
            this.phase.0.reader.register(cx.waker());
            // The answer may have come since the phase was read.
            if this.phase.get() == BUSY {
                return Poll::Pending;
            }
            phase = this.phase.get();
            this.arm(phase);
        }
        if !this.limit_passed(cx) {
            return Poll::Pending;
        }
        if phase == IDLE {
            // An end of stream: hyper closes the connection as if the client had.
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the request's headers did not arrive in time",
        )))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Timed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
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

/// An answer's body that marks its connection answered once hyper is done with it (written in
/// full, or dropped): a connection is not idle while a streamed answer (a registered API's,
/// through the proxy) is still being written.
#[derive(Debug)]
pub struct Answered<B> {
    body: B,
    phase: Phase,
}

impl<B> Answered<B> {
    /// `body`, answering on the connection of `phase`.
    pub fn new(body: B, phase: Phase) -> Self {
        Answered { body, phase }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Answered<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Answered<B> {
    fn drop(&mut self) {
        self.phase.answered();
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Serves one connection as the listener does, answering every request with a body
    /// streamed in two parts `gap` apart.
    fn serve_streaming(
        io: tokio::io::DuplexStream,
        header: Duration,
        idle: Duration,
        gap: Duration,
    ) {
        let phase = Phase::new();
        let io = TokioIo::new(Timed::new(io, phase.clone(), header, idle));
        let service = hyper::service::service_fn(move |_req| {
            let phase = phase.clone();
            phase.serving();
            async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
                tokio::spawn(async move {
                    let _ = tx
                        .send(Ok(Frame::data(Bytes::from_static(b"first;"))))
                        .await;
                    tokio::time::sleep(gap).await;
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"last")))).await;
                });
                let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|frame| (frame, rx))
                });
                let body = Answered::new(StreamBody::new(Box::pin(frames)), phase);
                Ok::<_, Infallible>(hyper::Response::new(body))
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_streamed_answer_is_not_idle_time_and_the_idle_limit_follows_it() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (header, idle) = (Duration::from_secs(1), Duration::from_secs(2));
        serve_streaming(server, header, idle, Duration::from_secs(5));
        let start = Instant::now();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = String::from_utf8_lossy(&answer);
        // The whole answer, its gap longer than the idle limit notwithstanding.
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("first;") && answer.contains("last") && answer.ends_with("0\r\n\r\n"),
            "the streamed answer was cut: {answer}"
        );
        // Then the connection was closed at the idle limit after it, not before.
        let open_for = start.elapsed();
        assert!(
            open_for >= Duration::from_secs(7) && open_for < Duration::from_secs(8),
            "closed after {open_for:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_request_head_ends_the_connection_at_the_header_timeout() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        serve_streaming(
            server,
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::ZERO,
        );
        let start = Instant::now();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        let open_for = start.elapsed();
        assert!(
            open_for >= Duration::from_secs(1) && open_for < Duration::from_secs(2),
            "closed after {open_for:?}, not at the header timeout"
        );
    }
}
