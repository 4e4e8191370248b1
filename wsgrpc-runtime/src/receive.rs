//! A process-wide budget for what sockets have received and not yet made
//! into messages: the unfinished frames that a WebSocket library buffers
//! whole before it hands them over.
//!
//! Each socket's own buffer is bounded by the frame limit, but many sockets
//! that each send most of a large frame and then stall would together hold
//! memory in proportion to their number. So every connection's reads are
//! counted, below hyper and the WebSocket library, against one budget; a
//! message (or an HTTP request) received gives its bytes back. Past the
//! budget, a read fails for a socket that holds at least [`SMALL`] in an
//! unfinished frame of its own, which the bridge then closes with 1008;
//! sockets that send messages of ordinary size are never the ones cut off,
//! and the sockets that hold the memory are the ones that lose it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket holding less than this in unfinished frames is never refused:
/// a read buffer's worth, and every ordinary message.
pub(crate) const SMALL: usize = 256 << 10;

/// What every connection's unfinished frames may hold together.
#[derive(Debug)]
pub(crate) struct ReceiveBudget {
    limit: usize,
    held: AtomicUsize,
}

impl ReceiveBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: AtomicUsize::new(0),
        })
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// One connection's share of the budget: what it has read and not yet
/// seen become a message.
#[derive(Debug)]
pub(crate) struct Unfinished {
    budget: Arc<ReceiveBudget>,
    held: AtomicUsize,
}

impl Unfinished {
    pub(crate) fn new(budget: Arc<ReceiveBudget>) -> Arc<Self> {
        Arc::new(Self {
            budget,
            held: AtomicUsize::new(0),
        })
    }

    /// A message has arrived: what was read before it is no longer held.
    /// (A read may have brought the start of the next frame too; it is
    /// given back a little early, which errs by one read.)
    pub(crate) fn message_received(&self) {
        let held = self.held.swap(0, Ordering::AcqRel);
        self.budget.held.fetch_sub(held, Ordering::AcqRel);
    }

    /// Counts `bytes` read; `Err` where the budget is spent and this
    /// connection holds a large share of it.
    fn read(&self, bytes: usize) -> Result<(), BudgetSpent> {
        let held = self.held.fetch_add(bytes, Ordering::AcqRel) + bytes;
        let total = self.budget.held.fetch_add(bytes, Ordering::AcqRel) + bytes;
        if total > self.budget.limit && held >= SMALL {
            return Err(BudgetSpent);
        }
        Ok(())
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.budget
            .held
            .fetch_sub(*self.held.get_mut(), Ordering::AcqRel);
    }
}

/// The error a connection's read fails with when the budget is spent.
#[derive(Debug)]
pub(crate) struct BudgetSpent;

impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bridge's budget for unfinished frames is spent")
    }
}

impl std::error::Error for BudgetSpent {}

/// Whether `err` is, at its root, a read refused by the budget.
pub(crate) fn is_budget_spent(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if err.is::<BudgetSpent>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<BudgetSpent>())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// A connection whose reads are counted against the budget.
pub(crate) struct Counted<T> {
    inner: T,
    unfinished: Arc<Unfinished>,
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T, unfinished: Arc<Unfinished>) -> Self {
        Self { inner, unfinished }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled().len() - before;
            if self.unfinished.read(read).is_err() {
                return Poll::Ready(Err(io::Error::other(BudgetSpent)));
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_holder_is_refused_and_messages_give_back() {
        let budget = ReceiveBudget::new(1 << 20);
        let big = Unfinished::new(budget.clone());
        let small = Unfinished::new(budget.clone());
        assert!(big.read(900 << 10).is_ok());
        // Past the budget, but holding little: an ordinary message goes on.
        assert!(small.read(200 << 10).is_ok());
        assert!(big.read(1).is_err(), "the large holder is cut off");
        small.message_received();
        assert_eq!(budget.held(), (900 << 10) + 1);
        drop(big);
        assert_eq!(budget.held(), 0, "a closed connection gives all back");
        assert!(small.read(900 << 10).is_ok());
    }

    #[test]
    fn the_refusal_is_found_through_the_errors_around_it() {
        let io = io::Error::other(BudgetSpent);
        assert!(is_budget_spent(&io));
        let other = io::Error::other("reset");
        assert!(!is_budget_spent(&other));
    }
}
