//! v2 flow control: credit per streaming call, in messages, both ways, in
//! the manner of HTTP/2's stream windows.
//!
//! Responses: the client grants a window on the `request` and tops it up
//! with `credit` envelopes as its reader takes messages; the call reads the
//! backend's stream only while it has credit, so a slow reader stops its
//! HTTP/2 stream (the backend feels the push-back) and nothing piles up in
//! the bridge or in the page. Requests: the bridge grants the client its
//! call queue (`callQueueMessages`) and gives credit back as the backend
//! takes messages from it.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::envelope::{Envelope, FrameType};
use crate::outbox::{Outbox, PendingCredit};

/// The largest window, as in HTTP/2: 2^31 - 1.
pub(crate) const MAX_WINDOW: u64 = (1 << 31) - 1;

fn max_permits() -> u64 {
    MAX_WINDOW.min(Semaphore::MAX_PERMITS as u64)
}

/// How many more stream responses the client of one call takes. The
/// connection grants, the call's task spends.
#[derive(Debug, Clone)]
pub(crate) struct ResponseWindow(Arc<Semaphore>);

impl ResponseWindow {
    pub(crate) fn new(messages: u64) -> Self {
        Self(Arc::new(Semaphore::new(
            messages.min(max_permits()) as usize
        )))
    }

    /// Adds `messages`, up to the largest window.
    pub(crate) fn grant(&self, messages: u64) {
        let room = max_permits().saturating_sub(self.0.available_permits() as u64);
        self.0.add_permits(messages.min(room) as usize);
    }

    /// Spends one credit if there is one, without waiting.
    pub(crate) fn try_spend(&self) -> bool {
        self.0.try_acquire().map(|permit| permit.forget()).is_ok()
    }

    /// Spends one credit, waiting for the client to grant one.
    pub(crate) async fn spend(&self) {
        // The semaphore is never closed, so acquiring only ever waits.
        if let Ok(permit) = self.0.acquire().await {
            permit.forget();
        }
    }
}

/// Counts the request messages the backend takes from a call's queue and
/// gives them back to the client as credit, half a queue at a time (as
/// HTTP/2 implementations send WINDOW_UPDATE), so that the client's window
/// never runs dry while the backend keeps up.
pub(crate) struct RequestCredit {
    pending: Arc<PendingCredit>,
    out: Outbox,
    taken: u64,
    every: u64,
}

impl RequestCredit {
    pub(crate) fn new(id: String, out: Outbox, queue: usize) -> Self {
        Self {
            pending: PendingCredit::new(id),
            out,
            taken: 0,
            every: (queue as u64 / 2).max(1),
        }
    }

    /// The backend took one message from the queue.
    pub(crate) fn took_one(&mut self) {
        self.taken += 1;
        if self.taken >= self.every {
            // Runs where the request body is polled, which cannot wait; the
            // outbox keeps one credit envelope per call at most, adding to
            // it while the client does not read.
            self.out.send_credit(&self.pending, self.taken);
            self.taken = 0;
        }
    }
}

/// `{"type":"credit","id":…,"messages":…}`.
pub(crate) fn credit(id: &str, messages: u64) -> String {
    Envelope {
        frame_type: Some(FrameType::Credit),
        id: Some(id.into()),
        messages: Some(messages),
        ..Envelope::default()
    }
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_is_spent_and_granted_and_never_overflows() {
        let window = ResponseWindow::new(2);
        assert!(window.try_spend());
        assert!(window.try_spend());
        assert!(!window.try_spend(), "the window is spent");
        window.grant(1);
        window.spend().await;
        window.grant(u64::MAX);
        window.grant(u64::MAX);
        assert_eq!(window.0.available_permits() as u64, max_permits());
    }

    #[test]
    fn credit_envelopes_name_the_call() {
        assert_eq!(
            credit("c\"1", 32),
            r#"{"type":"credit","id":"c\"1","messages":32}"#
        );
    }
}
