//! What a v2 session keeps so that a new socket can take over from one that
//! dropped: the envelopes the bridge sent that the client has not
//! acknowledged, in order, and how many the bridge has received.
//!
//! Both sides count the envelopes they receive, all but those about one
//! socket (settings, resume, ack, ping, pong); so "received N" says exactly
//! which to send again. docs/PROTOCOL.md, "Sessions".

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Kept {
                first: 1,
                ..Kept::default()
            }),
            room: Notify::new(),
            limit: AtomicUsize::new(limit),
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
        }
    }

    /// The client has received the first `received` envelopes: forget them.
    pub(crate) fn acknowledge(&self, received: u64) -> Result<(), Overacknowledged> {
        let mut kept = self.lock();
        if received > kept.sent() {
            return Err(Overacknowledged { sent: kept.sent() });
        }
        while kept.first <= received {
            let Some(envelope) = kept.envelopes.pop_front() else {
                break;
            };
            kept.bytes -= envelope.len();
            kept.first += 1;
        }
        drop(kept);
        self.room.notify_waiters();
        Ok(())
    }

    /// What to send again to a client that received the first `received`:
    /// every envelope after those, in order.
    pub(crate) fn since(&self, received: u64) -> Result<Vec<String>, Overacknowledged> {
        self.acknowledge(received)?;
        Ok(self.lock().envelopes.iter().cloned().collect())
    }

    /// Waits while more than the limit is kept.
    pub(crate) async fn room(&self) {
        loop {
            let room = self.room.notified();
            if self.lock().bytes <= self.limit.load(Ordering::Acquire) {
                return;
            }
            room.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing that holds the lock can panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let retained = Retained::new(1 << 20);
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
        let retained = std::sync::Arc::new(Retained::new(1 << 20));
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
}
