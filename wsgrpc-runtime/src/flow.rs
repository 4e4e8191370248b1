//! v2 flow control, in the manner of HTTP/2's windows: the sender of a
//! call's messages sends no more than the receiver has granted, and the
//! receiver grants more with `credit` as it takes them.
//!
//! Windows count messages, or — once the client's `settings` asked for it
//! — bytes, per call and per socket, as HTTP/2 counts them. In bytes, a
//! sender may send while its windows are above zero, so a message larger
//! than a window still goes, alone.
//!
//! Responses: the client grants a window on the `request` and tops it up as
//! its reader takes messages; the call reads the backend's stream only while
//! it has credit, so a slow reader stops its HTTP/2 stream (the backend
//! feels the push-back) and nothing piles up in the bridge or in the page.
//! Requests: the bridge grants the client its window and gives credit back
//! as the backend takes messages, and grows the windows towards the path's
//! bandwidth-delay product ([`Estimator`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::frame::{Amount, ServerFrame};
use crate::outbox::{Outbox, PendingCredit};

/// The largest window, as in HTTP/2: 2^31 - 1.
pub(crate) const MAX_WINDOW: u64 = (1 << 31) - 1;

/// Byte windows are given back in this many parts: a client whose backend
/// keeps up then has at least three quarters of its window open. (Message
/// windows, small, go back in halves, as before.)
const CREDIT_PARTS: u64 = 4;

/// What a message costs a byte window beyond its JSON text: what it takes
/// queued, as HTTP/2 counts five bytes of prefix per gRPC message, so that
/// a window of empty messages holds few of them.
pub(crate) const MESSAGE_OVERHEAD: u64 = 16;

/// What one message with this JSON text costs a byte window.
pub(crate) fn cost(json_len: usize) -> u64 {
    json_len as u64 + MESSAGE_OVERHEAD
}

fn max_permits() -> u64 {
    MAX_WINDOW.min(Semaphore::MAX_PERMITS as u64)
}

/// How much more of a call's stream responses the client takes. The
/// connection grants, the call's task spends.
#[derive(Debug, Clone)]
pub(crate) enum ResponseWindow {
    /// Counted in messages.
    Messages(Arc<Semaphore>),
    /// Counted in bytes: the call's window, where the request gave one,
    /// and always the socket's.
    Bytes {
        call: Option<Arc<ByteWindow>>,
        socket: Arc<ByteWindow>,
    },
}

impl ResponseWindow {
    pub(crate) fn messages(messages: u64) -> Self {
        Self::Messages(Arc::new(Semaphore::new(
            messages.min(max_permits()) as usize
        )))
    }

    /// Adds what the client granted the call.
    pub(crate) fn grant(&self, amount: Amount) {
        match (self, amount) {
            (Self::Messages(window), Amount::Messages(messages)) => {
                let room = max_permits().saturating_sub(window.available_permits() as u64);
                window.add_permits(messages.min(room) as usize);
            }
            (
                Self::Bytes {
                    call: Some(window), ..
                },
                Amount::Bytes(bytes),
            ) => {
                window.grant(bytes);
            }
            // Credit in the other unit than the window's grants nothing.
            _ => {}
        }
    }

    /// Whether the next message may go now.
    pub(crate) fn is_open(&self) -> bool {
        match self {
            Self::Messages(window) => window.available_permits() > 0,
            Self::Bytes { call, socket } => {
                socket.is_open() && call.as_ref().is_none_or(|call| call.is_open())
            }
        }
    }

    /// Waits until the next message may go.
    pub(crate) async fn opened(&self) {
        match self {
            // The semaphore is never closed, so acquiring only ever waits.
            Self::Messages(window) => drop(window.acquire().await),
            Self::Bytes { call, socket } => loop {
                if let Some(call) = call {
                    call.opened().await;
                }
                socket.opened().await;
                if self.is_open() {
                    return;
                }
            },
        }
    }

    /// Spends what a message sent costs: one, or its bytes.
    pub(crate) fn spend(&self, json_len: usize) {
        match self {
            Self::Messages(window) => {
                if let Ok(permit) = window.try_acquire() {
                    permit.forget();
                }
            }
            Self::Bytes { call, socket } => {
                let cost = cost(json_len);
                if let Some(call) = call {
                    call.spend(cost);
                }
                socket.spend(cost);
            }
        }
    }

    /// Whether what is sent is counted in bytes (and so says how many).
    pub(crate) fn in_bytes(&self) -> bool {
        matches!(self, Self::Bytes { .. })
    }
}

/// A window in bytes that a sender may take below zero by one message.
#[derive(Debug)]
pub(crate) struct ByteWindow {
    available: AtomicI64,
    granted: Notify,
}

impl ByteWindow {
    pub(crate) fn new(bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            available: AtomicI64::new(bytes.min(MAX_WINDOW) as i64),
            granted: Notify::new(),
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        self.available.load(Ordering::Acquire) > 0
    }

    pub(crate) fn spend(&self, bytes: u64) {
        self.available.fetch_sub(bytes as i64, Ordering::AcqRel);
    }

    /// Adds `bytes`, up to the largest window.
    /// Adds `bytes`, up to the largest window; what is available now.
    pub(crate) fn grant(&self, bytes: u64) -> i64 {
        let bytes = bytes.min(MAX_WINDOW) as i64;
        let grow = |available: i64| available.saturating_add(bytes).min(MAX_WINDOW as i64);
        let before = self
            .available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |available| {
                Some(grow(available))
            })
            .unwrap_or_else(|available| available);
        self.granted.notify_waiters();
        grow(before)
    }

    async fn opened(&self) {
        loop {
            let granted = self.granted.notified();
            if self.is_open() {
                return;
            }
            granted.await;
        }
    }
}

/// How the socket's request windows stand, in bytes: what the client may
/// still send, per socket here and per call in [`CallRequests`], and the
/// window each is sized to, which grows with the path.
#[derive(Debug)]
pub(crate) struct RequestWindows {
    /// What each call's window is sized to now.
    call_window: AtomicU64,
    /// What the socket's window is sized to now.
    socket_window: AtomicU64,
    max_call_window: u64,
    /// What the client may still send across calls before more credit.
    socket_left: AtomicI64,
    socket_credit: Arc<PendingCredit>,
    /// Taken by backends since the last socket credit.
    socket_taken: AtomicU64,
}

impl RequestWindows {
    pub(crate) fn new(call_window: u64, socket_window: u64, max_call_window: u64) -> Arc<Self> {
        let call_window = call_window.clamp(1, MAX_WINDOW);
        let socket_window = socket_window.clamp(1, MAX_WINDOW);
        Arc::new(Self {
            call_window: AtomicU64::new(call_window),
            socket_window: AtomicU64::new(socket_window),
            max_call_window: max_call_window.clamp(call_window, MAX_WINDOW),
            socket_left: AtomicI64::new(socket_window as i64),
            socket_credit: PendingCredit::new(None, true),
            socket_taken: AtomicU64::new(0),
        })
    }

    pub(crate) fn call_window(&self) -> u64 {
        self.call_window.load(Ordering::Acquire)
    }

    /// A message of `cost` bytes arrived: `false` if the client had no
    /// window left on the socket to send it.
    pub(crate) fn receive(&self, cost: u64) -> bool {
        self.socket_left.fetch_sub(cost as i64, Ordering::AcqRel) > 0
    }

    /// A backend took `cost` bytes, or they will never reach one (their
    /// call ended): gives the socket's window back, a quarter of it at a
    /// time.
    pub(crate) fn give_back(&self, cost: u64, out: &Outbox) {
        let taken = self.socket_taken.fetch_add(cost, Ordering::AcqRel) + cost;
        if taken * CREDIT_PARTS >= self.socket_window.load(Ordering::Acquire) {
            let taken = self.socket_taken.swap(0, Ordering::AcqRel);
            if taken > 0 {
                self.socket_left.fetch_add(taken as i64, Ordering::AcqRel);
                out.send_credit(&self.socket_credit, taken);
            }
        }
    }

    /// Sizes the windows to `call_window` bytes per call (and twice that
    /// for the socket, at least its first size), where that is larger;
    /// what the socket's window grew by, it is granted at once. Returns
    /// how much each call's window grew.
    pub(crate) fn grow(&self, call_window: u64, out: &Outbox) -> u64 {
        let call_window = call_window.min(self.max_call_window);
        let before = self.call_window.fetch_max(call_window, Ordering::AcqRel);
        if call_window <= before {
            return 0;
        }
        let socket_window = call_window.saturating_mul(2).min(MAX_WINDOW);
        let socket_before = self
            .socket_window
            .fetch_max(socket_window, Ordering::AcqRel);
        if socket_window > socket_before {
            let grown = socket_window - socket_before;
            self.socket_left.fetch_add(grown as i64, Ordering::AcqRel);
            out.send_credit(&self.socket_credit, grown);
        }
        call_window - before
    }
}

/// What one client- or bidi-streaming call's client may still send, and
/// the credit that gives it more as the backend takes messages.
pub(crate) struct CallRequests {
    /// Messages or bytes the client may still send on the call.
    left: Arc<AtomicI64>,
    pending: Arc<PendingCredit>,
    out: Outbox,
    /// Taken since the last credit.
    taken: u64,
    /// Messages: half the queue; bytes: the socket's windows, whose size
    /// says when to give credit.
    unit: CreditUnit,
}

enum CreditUnit {
    Messages {
        every: u64,
    },
    Bytes(Arc<RequestWindows>),
    /// v1: messages, given back without a word; the client keeps within
    /// the queue by itself.
    Silent,
}

/// The reader's side of [`CallRequests`]: counts what arrives.
#[derive(Debug, Clone)]
pub(crate) struct CallWindow {
    left: Arc<AtomicI64>,
    pending: Arc<PendingCredit>,
}

impl CallWindow {
    /// A message of `cost` (one, or its bytes) arrived: `false` if the
    /// client had no credit left to send it.
    pub(crate) fn receive(&self, cost: u64) -> bool {
        self.left.fetch_sub(cost as i64, Ordering::AcqRel) > 0
    }

    /// Grants `bytes` more at once (the window grew).
    pub(crate) fn grow(&self, bytes: u64, out: &Outbox) {
        self.left.fetch_add(bytes as i64, Ordering::AcqRel);
        out.send_credit(&self.pending, bytes);
    }
}

impl CallRequests {
    /// In messages: the client may send the call's queue, `queue`.
    pub(crate) fn messages(id: String, out: Outbox, queue: usize) -> (Self, CallWindow) {
        Self::with(
            PendingCredit::new(Some(id), false),
            out,
            queue as u64,
            CreditUnit::Messages {
                every: (queue as u64 / 2).max(1),
            },
        )
    }

    /// v1: the client may have the call's queue, `queue`, waiting.
    pub(crate) fn silent(out: Outbox, queue: usize) -> (Self, CallWindow) {
        Self::with(
            PendingCredit::new(None, false),
            out,
            queue as u64,
            CreditUnit::Silent,
        )
    }

    /// In bytes: the client may send the call's window as it is sized now.
    pub(crate) fn bytes(
        id: String,
        out: Outbox,
        windows: Arc<RequestWindows>,
        first: u64,
    ) -> (Self, CallWindow) {
        let requests = Self::with(
            PendingCredit::new(Some(id), true),
            out,
            first,
            CreditUnit::Bytes(windows.clone()),
        );
        // A window that grew since the settings: the call gets the rest now.
        let grown = windows.call_window().saturating_sub(first);
        if grown > 0 {
            requests.1.grow(grown, &requests.0.out);
        }
        requests
    }

    fn with(
        pending: Arc<PendingCredit>,
        out: Outbox,
        window: u64,
        unit: CreditUnit,
    ) -> (Self, CallWindow) {
        let left = Arc::new(AtomicI64::new(window as i64));
        let window = CallWindow {
            left: left.clone(),
            pending: pending.clone(),
        };
        let requests = Self {
            left,
            pending,
            out,
            taken: 0,
            unit,
        };
        (requests, window)
    }

    /// The backend took one message that cost `cost` bytes; credit goes
    /// back in parts of a window (as HTTP/2 implementations send
    /// WINDOW_UPDATE), so a client whose backend keeps up never runs dry.
    /// Runs where the request body is polled, which cannot wait; the outbox
    /// keeps one credit envelope per call at most, adding to it while the
    /// client does not read.
    pub(crate) fn took(&mut self, cost: u64) {
        let (taken, every) = match &self.unit {
            CreditUnit::Silent => {
                self.left.fetch_add(1, Ordering::AcqRel);
                return;
            }
            CreditUnit::Messages { every } => (1, *every),
            CreditUnit::Bytes(windows) => {
                windows.give_back(cost, &self.out);
                (cost, windows.call_window() / CREDIT_PARTS)
            }
        };
        self.taken += taken;
        if self.taken >= every.max(1) {
            self.left.fetch_add(self.taken as i64, Ordering::AcqRel);
            self.out.send_credit(&self.pending, self.taken);
            self.taken = 0;
        }
    }
}

/// Estimates the path's bandwidth-delay product from the bytes of requests
/// that arrive within one round trip, as HTTP/2 implementations do (gRPC's
/// "BDP estimator"): a ping goes out with the first bytes after the last
/// answer, and when its pong comes back, the bytes counted in between are
/// what the path carried in one round trip. When they come near the window
/// (half of it) and the bandwidth they show is the best yet, the window was
/// what held the client back: it doubles. (Without the second condition,
/// bytes queued on the way, which lengthen the measured round trip, would
/// make every sample look full.)
#[derive(Debug, Default)]
pub(crate) struct Estimator {
    /// When the ping that is out was sent.
    sent: Option<Instant>,
    /// Bytes received since then.
    sample: u64,
    /// The best bandwidth a grown window was sized to, bytes per second.
    best_bandwidth: f64,
    /// Until then no ping: one round trip at the least, so that a client
    /// that sends a little at a time costs few pings; half of one after a
    /// window grew.
    quiet_until: Option<Instant>,
}

/// The payload of the bridge's round-trip pings; keepalive pings are empty.
pub(crate) const ESTIMATE_PING: &[u8] = b"bdp";

impl Estimator {
    /// Bytes of requests arrived; `true` when a ping should go out now.
    pub(crate) fn received(&mut self, bytes: u64, now: Instant) -> bool {
        self.sample += bytes;
        if self.sent.is_some() || self.quiet_until.is_some_and(|until| now < until) {
            return false;
        }
        self.sent = Some(now);
        self.sample = bytes;
        true
    }

    /// The pong came back: the window each call should have now, where it
    /// should grow from `window`.
    pub(crate) fn answered(&mut self, window: u64, now: Instant) -> Option<u64> {
        let sent = self.sent.take()?;
        let round_trip = now.saturating_duration_since(sent);
        let round_trip_or_1ms = round_trip.max(Duration::from_millis(1));
        self.quiet_until = Some(now + round_trip_or_1ms);
        let sample = std::mem::take(&mut self.sample);
        let bandwidth = sample as f64 / round_trip.as_secs_f64().max(1e-6);
        // Half the window counts as near it: credit goes back in parts, once
        // a backend took the bytes, so a client held by its window often
        // has little more than half of it on the way in a round trip.
        if sample * 2 < window || bandwidth <= self.best_bandwidth {
            return None;
        }
        self.best_bandwidth = bandwidth;
        // The grown window's bytes arrive a round trip from now: the next
        // sample starts half-way, so that it holds them.
        self.quiet_until = Some(now + round_trip_or_1ms / 2);
        Some(sample.saturating_mul(2).max(window * 2))
    }
}

/// A credit envelope: `{"type":"credit","id":…,"messages":…}`, or with
/// `bytes`, and without `id` for the socket.
pub(crate) fn credit(id: Option<&str>, amount: Amount) -> String {
    ServerFrame::Credit { id, amount }.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_window_is_spent_and_granted_and_never_overflows() {
        let window = ResponseWindow::messages(2);
        window.spend(10);
        window.spend(10);
        assert!(!window.is_open(), "the window is spent");
        window.grant(Amount::Messages(1));
        window.opened().await;
        window.grant(Amount::Bytes(100));
        window.grant(Amount::Messages(u64::MAX));
        window.grant(Amount::Messages(u64::MAX));
        let ResponseWindow::Messages(semaphore) = window else {
            unreachable!()
        };
        assert_eq!(semaphore.available_permits() as u64, max_permits());
    }

    #[tokio::test]
    async fn a_byte_window_lets_one_message_take_it_below_zero() {
        let socket = ByteWindow::new(1 << 20);
        let window = ResponseWindow::Bytes {
            call: Some(ByteWindow::new(100)),
            socket: socket.clone(),
        };
        assert!(window.is_open());
        window.spend(1000);
        assert!(!window.is_open(), "a large message went and closed it");
        window.grant(Amount::Messages(5));
        assert!(!window.is_open(), "credit in messages grants no bytes");
        // 100 - (1000 + 16): a window of zero is closed too.
        window.grant(Amount::Bytes(900 + MESSAGE_OVERHEAD));
        assert!(!window.is_open(), "at zero");
        window.grant(Amount::Bytes(1));
        window.opened().await;

        // The socket's window holds back every call on it.
        socket.spend(2 << 20);
        assert!(!window.is_open());
        let waiting = tokio::spawn({
            let window = window.clone();
            async move { window.opened().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        socket.grant(2 << 20);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("granted")
            .unwrap();
    }

    #[test]
    fn the_estimator_doubles_a_window_the_path_fills() {
        let start = Instant::now();
        let mut estimator = Estimator::default();
        assert!(estimator.received(1000, start), "the first bytes ping");
        assert!(!estimator.received(100_000, start), "one ping at a time");
        let rtt = Duration::from_millis(50);
        let grown = estimator.answered(150_000, start + rtt);
        assert_eq!(
            grown,
            Some(300_000),
            "101,000 bytes in a round trip fill 2/3 of 150,000"
        );
        assert!(
            !estimator.received(10, start + rtt),
            "quiet for half a round trip after it grew"
        );
        assert!(estimator.received(10, start + rtt * 3));
        assert_eq!(
            estimator.answered(150_000, start + rtt * 4),
            None,
            "a trickle grows nothing"
        );
        assert_eq!(
            estimator.answered(150_000, start + rtt * 5),
            None,
            "no ping was out"
        );
        // A full sample over a round trip made longer by queued bytes shows
        // no more bandwidth than before: the window stays.
        assert!(estimator.received(300_000, start + rtt * 6));
        assert_eq!(estimator.answered(300_000, start + rtt * 10), None);
        assert!(estimator.received(300_000, start + rtt * 20));
        assert_eq!(estimator.answered(300_000, start + rtt * 21), Some(600_000));
        assert!(
            estimator.received(10, start + rtt * 21 + rtt / 2),
            "half a round trip later, the next sample"
        );
        // Half the window in a round trip, at a better bandwidth, is near it.
        estimator.received(319_990, start + rtt * 21 + rtt / 2);
        assert_eq!(
            estimator.answered(600_000, start + rtt * 22 + rtt / 2),
            Some(1_200_000)
        );
        assert!(estimator.received(10, start + rtt * 23));
        assert_eq!(
            estimator.answered(1_200_000, start + rtt * 24),
            None,
            "a trickle grows nothing"
        );
        assert!(
            !estimator.received(10, start + rtt * 24 + rtt / 2),
            "and then it is quiet for a whole round trip"
        );
    }

    #[test]
    fn credit_envelopes_name_the_call_or_the_socket() {
        assert_eq!(
            credit(Some("c\"1"), Amount::Messages(32)),
            r#"{"type":"credit","id":"c\"1","messages":32}"#
        );
        assert_eq!(
            credit(None, Amount::Bytes(4096)),
            r#"{"type":"credit","bytes":4096}"#
        );
    }
}
