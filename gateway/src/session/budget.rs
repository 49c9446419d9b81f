//! The read budget of a socket before its `hello` is accepted
//! (`gateway.max_hello_bytes`): the socket under the WebSocket codec
//! delivers at most that many bytes (plus a frame header) until the session
//! lifts the budget, so an unauthenticated client cannot make the gateway
//! buffer a 16 MiB frame, or hash a 16 MiB token.
//!
//! Hand-written because the codec cannot help: tokio-tungstenite 0.30 fixes
//! its size limits when the socket is wrapped and offers no way to change
//! them after `hello`; the limits that hold for a session's whole life stay
//! in `WebSocketConfig`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most a WebSocket frame header takes (2 + 8 length + 4 mask bytes).
const MAX_FRAME_HEADER: usize = 14;

/// Marks the read error a spent budget produces, so the session can tell
/// it from a broken connection and close with 1009.
#[derive(Debug, thiserror::Error)]
#[error("more than the pre-hello budget was sent before hello")]
pub struct HelloTooLarge;

/// Bytes left to read before `hello`; shared by the socket and its session.
#[derive(Debug, Clone)]
pub struct ReadBudget(Arc<AtomicUsize>);

impl ReadBudget {
    /// No limit: the state after [`ReadBudget::lift`].
    const LIFTED: usize = usize::MAX;

    /// A budget for a hello of at most `hello_bytes` of payload.
    pub fn new(hello_bytes: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(
            hello_bytes.saturating_add(MAX_FRAME_HEADER),
        )))
    }

    /// `hello` was accepted: reads are unlimited from now on.
    pub fn lift(&self) {
        self.0.store(Self::LIFTED, Ordering::Relaxed);
    }

    /// Whether a read failed for want of budget.
    pub fn is_spent(error: &io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.is::<HelloTooLarge>())
    }
}

/// What a socket holds until its `hello` is accepted: its read budget and
/// its place among the unauthenticated sockets.
pub struct PreHello {
    /// Lifted at `hello`.
    pub budget: ReadBudget,
    /// Given back at `hello` (or when the socket ends before it).
    pub slot: Option<crate::limits::Slot>,
}

impl PreHello {
    /// `hello` was accepted: unlimited reads, and the place given back.
    pub fn accepted(self) {
        self.budget.lift();
    }
}

/// A socket whose reads draw on a [`ReadBudget`].
#[derive(Debug)]
pub struct Budgeted<S> {
    io: S,
    budget: ReadBudget,
}

impl<S> Budgeted<S> {
    /// Wraps `io`; its reads draw on `budget` until it is lifted.
    pub fn new(io: S, budget: ReadBudget) -> Self {
        Self { io, budget }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let left = self.budget.0.load(Ordering::Relaxed);
        if left == ReadBudget::LIFTED {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                HelloTooLarge,
            )));
        }
        // Read no further than the budget, into the caller's buffer (zeroed
        // first, which keeps this safe; only pre-hello reads pay for it).
        let room = buf.remaining().min(left);
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut limited);
        let read = limited.filled().len();
        if let Poll::Ready(Ok(())) = &polled {
            buf.advance(read);
            // Only the session lifts; a concurrent lift wins (the update
            // leaves LIFTED alone).
            let _ = self
                .budget
                .0
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                    (now != ReadBudget::LIFTED).then(|| now.saturating_sub(read))
                });
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_stop_at_the_budget_until_it_is_lifted() {
        let (mut peer, io) = tokio::io::duplex(1 << 16);
        let budget = ReadBudget::new(10);
        let mut socket = Budgeted::new(io, budget.clone());
        peer.write_all(&[7u8; 100]).await.unwrap();
        let mut got = vec![0u8; 100];
        let n = socket.read(&mut got).await.unwrap();
        assert_eq!(n, 10 + MAX_FRAME_HEADER, "capped at the budget");
        let err = socket.read(&mut got).await.unwrap_err();
        assert!(ReadBudget::is_spent(&err), "{err}");
        budget.lift();
        let n = socket.read(&mut got).await.unwrap();
        assert_eq!(n, 100 - 10 - MAX_FRAME_HEADER, "the rest once lifted");
    }
}
