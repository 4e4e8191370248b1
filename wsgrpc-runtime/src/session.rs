//! What a v2 session keeps so that a new socket can take over from one that
//! dropped: the envelopes the bridge sent that the client has not
//! acknowledged, in order, and how many the bridge has received.
//!
//! Both sides count the envelopes they receive, all but those about one
//! socket (settings, resume, ack, ping, pong); so "received N" says exactly
//! which to send again. docs/PROTOCOL.md, "Sessions".

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The shortest and longest session key a client may choose: 16 random
/// bytes are 22 characters of base64url.
const KEY_LEN: std::ops::RangeInclusive<usize> = 22..=64;

/// Whether `key` may name a session: 22 to 64 characters of base64url.
pub(crate) fn is_valid_key(key: &str) -> bool {
    KEY_LEN.contains(&key.len())
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// What the sessions of a bridge keep together, against a bound: past it, a
/// session that keeps more than [`FAIR_SHARE`] waits for its client's
/// acknowledgements before its writer sends more. A client that never
/// acknowledges so holds back its own session, and others only down to
/// their fair share, however many sessions it opens.
#[derive(Debug)]
pub(crate) struct KeptBudget {
    bytes: AtomicUsize,
    limit: usize,
    /// Told when acknowledgements free bytes while over the bound.
    room: Notify,
}

/// What a session may keep whatever the others keep.
pub(crate) const FAIR_SHARE: usize = 64 << 10;

impl KeptBudget {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicUsize::new(0),
            limit,
            room: Notify::new(),
        })
    }

    fn add(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    fn remove(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        if before > self.limit {
            self.room.notify_waiters();
        }
    }

    fn is_over(&self) -> bool {
        self.bytes.load(Ordering::Acquire) > self.limit
    }

    /// What every session keeps together.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

/// The envelopes the bridge sent on a session and the client has not
/// acknowledged, shared by the socket's writer (which keeps them as it
/// writes) and its reader (which drops them as acknowledgements come).
#[derive(Debug)]
pub(crate) struct Retained {
    inner: Mutex<Kept>,
    /// Told when acknowledgements make room.
    room: Notify,
    /// Past this many bytes kept, the writer waits for acknowledgements.
    limit: AtomicUsize,
    /// What every session of the bridge keeps.
    budget: Arc<KeptBudget>,
}

#[derive(Debug, Default)]
struct Kept {
    /// Counting has begun: the client took byte windows on a socket with a
    /// session key.
    active: bool,
    /// The number of the first envelope in `envelopes`, counting from 1.
    first: u64,
    envelopes: VecDeque<String>,
    bytes: usize,
}

impl Kept {
    /// How many envelopes have been sent on the session.
    fn sent(&self) -> u64 {
        self.first + self.envelopes.len() as u64 - 1
    }
}

/// An acknowledgement of more than was sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overacknowledged {
    pub(crate) sent: u64,
}

impl Retained {
    pub(crate) fn new(limit: usize, budget: Arc<KeptBudget>) -> Self {
        Self {
            inner: Mutex::new(Kept {
                first: 1,
                ..Kept::default()
            }),
            room: Notify::new(),
            limit: AtomicUsize::new(limit),
            budget,
        }
    }

    /// Counting begins with the next envelope the writer keeps; past
    /// `limit` bytes kept, the writer waits.
    pub(crate) fn activate(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
        self.lock().active = true;
        self.room.notify_waiters();
    }

    /// Lets the writer keep up to `limit` bytes, where that is more.
    pub(crate) fn raise_limit(&self, limit: usize) {
        if self.limit.fetch_max(limit, Ordering::AcqRel) < limit {
            self.room.notify_waiters();
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.lock().active
    }

    /// The writer sent `envelope`, a counted one: keep it until the client
    /// acknowledges it.
    pub(crate) fn keep(&self, envelope: &str) {
        let mut kept = self.lock();
        if kept.active {
            kept.bytes += envelope.len();
            kept.envelopes.push_back(envelope.to_owned());
            self.budget.add(envelope.len());
        }
    }

    /// The client has received the first `received` envelopes: forget them.
    pub(crate) fn acknowledge(&self, received: u64) -> Result<(), Overacknowledged> {
        let mut kept = self.lock();
        if received > kept.sent() {
            return Err(Overacknowledged { sent: kept.sent() });
        }
        let before = kept.bytes;
        while kept.first <= received {
            let Some(envelope) = kept.envelopes.pop_front() else {
                break;
            };
            kept.bytes -= envelope.len();
            kept.first += 1;
        }
        let freed = before - kept.bytes;
        drop(kept);
        self.budget.remove(freed);
        self.room.notify_waiters();
        Ok(())
    }

    /// What to send again to a client that received the first `received`:
    /// every envelope after those, in order.
    pub(crate) fn since(&self, received: u64) -> Result<Vec<String>, Overacknowledged> {
        self.acknowledge(received)?;
        Ok(self.lock().envelopes.iter().cloned().collect())
    }

    /// Waits while more than the limit is kept, or, while the bridge's
    /// sessions together keep more than their bound, more than a fair share.
    pub(crate) async fn room(&self) {
        loop {
            let room = self.room.notified();
            let shared_room = self.budget.room.notified();
            if self.has_room() {
                return;
            }
            tokio::select! {
                () = room => {}
                () = shared_room => {}
            }
        }
    }

    /// Whether the writer may send more now: what [`room`](Self::room)
    /// waits for.
    pub(crate) fn has_room(&self) -> bool {
        let bytes = self.lock().bytes;
        bytes <= self.limit.load(Ordering::Acquire)
            && (bytes <= FAIR_SHARE || !self.budget.is_over())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing that holds the lock can panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Retained {
    fn drop(&mut self) {
        let bytes = self.lock().bytes;
        self.budget.remove(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unbounded() -> Arc<KeptBudget> {
        KeptBudget::new(usize::MAX)
    }

    #[test]
    fn keys_are_22_to_64_characters_of_base64url() {
        assert!(is_valid_key("AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(is_valid_key(&"a-_Z9".repeat(12)[..60]));
        assert!(!is_valid_key("short"));
        assert!(!is_valid_key(&"a".repeat(65)));
        assert!(!is_valid_key("AAAAAAAAAAAAAAAAAAAAA+"));
        assert!(!is_valid_key("AAAAAAAAAAAAAAAAAAAAA="));
    }

    #[test]
    fn kept_envelopes_go_as_they_are_acknowledged_and_the_rest_is_sent_again() {
        let retained = Retained::new(1 << 20, unbounded());
        retained.keep("ignored: not yet active");
        retained.activate(1 << 20);
        for n in 1..=5 {
            retained.keep(&format!("e{n}"));
        }
        assert_eq!(retained.acknowledge(2), Ok(()));
        assert_eq!(retained.since(3).unwrap(), ["e4", "e5"]);
        assert_eq!(retained.acknowledge(6), Err(Overacknowledged { sent: 5 }));
        assert_eq!(retained.since(5).unwrap(), Vec::<String>::new());
        retained.keep("e6");
        assert_eq!(
            retained.since(4).unwrap(),
            ["e6"],
            "an old count is no error"
        );
    }

    #[tokio::test]
    async fn the_writer_waits_while_too_much_is_kept() {
        let retained = std::sync::Arc::new(Retained::new(1 << 20, unbounded()));
        retained.activate(4);
        retained.keep("12345");
        let waiting = tokio::spawn({
            let retained = retained.clone();
            async move { retained.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        retained.acknowledge(1).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room made")
            .unwrap();
    }

    #[tokio::test]
    async fn past_the_bridges_bound_a_session_keeps_no_more_than_its_fair_share() {
        let budget = KeptBudget::new(100 << 10);
        let hoarder = Arc::new(Retained::new(16 << 20, budget.clone()));
        let modest = Arc::new(Retained::new(16 << 20, budget.clone()));
        hoarder.activate(16 << 20);
        modest.activate(16 << 20);
        let big = "x".repeat(80 << 10);
        hoarder.keep(&big);
        // Under the bound, a session keeps up to its own limit.
        tokio::time::timeout(std::time::Duration::from_secs(1), hoarder.room())
            .await
            .expect("room under the bound");
        hoarder.keep(&big);
        assert!(budget.is_over());
        let waiting = tokio::spawn({
            let hoarder = hoarder.clone();
            async move { hoarder.room().await }
        });
        // The others keep their fair share still.
        modest.keep(&"y".repeat(FAIR_SHARE));
        tokio::time::timeout(std::time::Duration::from_secs(1), modest.room())
            .await
            .expect("a fair share goes on");
        modest.keep("z");
        let modest_waits = tokio::spawn({
            let modest = modest.clone();
            async move { modest.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the hoarder waits");
        assert!(!modest_waits.is_finished(), "past its share, so does it");
        // The hoarder's client acknowledges: both go on.
        hoarder.acknowledge(2).unwrap();
        for task in [waiting, modest_waits] {
            tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .expect("room made")
                .unwrap();
        }
        // What a session kept goes from the bound with it.
        drop(modest);
        assert_eq!(budget.bytes(), 0);
    }
}
