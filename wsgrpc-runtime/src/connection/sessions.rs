//! The bridge's sessions, by key: which socket holds each, and the
//! connections of those whose socket dropped, waiting out their grace
//! period for a new socket to take them over.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Connection;
use crate::envelope::FrameType;
use crate::frame::ServerFrame;
use crate::metadata::Metadata;
use crate::session::Overacknowledged;
use crate::shared::Shared;

/// How long a new socket waits for the socket it takes a session over
/// from to let go of it (generous: on a loaded machine a socket's task may
/// wait its turn a while).
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// Every session of a bridge.
pub(crate) struct Sessions {
    table: Mutex<Table>,
    /// The newest socket waiting to claim each key: an older one gives up,
    /// as its client has moved on to the newer (a socket cut during its
    /// handshake would otherwise go on taking the session from the live
    /// one).
    newest_claim: Mutex<HashMap<String, u64>>,
    next_generation: AtomicU64,
}

/// The sessions by key, and the parked ones in the order they parked, so
/// that neither counting them nor finding the oldest looks at every
/// session (a bridge may hold tens of thousands, under one lock).
struct Table {
    entries: HashMap<String, Entry>,
    /// Key and generation of each session as it parked, oldest first. A
    /// session resumed or ended since is skipped when met, and the queue
    /// is compacted before such leftovers outnumber the parked.
    parked_order: VecDeque<(String, u64)>,
    /// Sessions parked now, also shown as a metric.
    parked: Gauge,
    /// Sessions parked now of each identity an authenticator named.
    parked_by_identity: HashMap<Metadata, usize>,
}

enum Entry {
    /// A socket holds the session; cancelling `kick` makes it let go.
    Live {
        identity: Metadata,
        generation: u64,
        kick: CancellationToken,
    },
    /// The session's socket dropped; its calls run on until a socket takes
    /// them over or the grace period ends.
    Parked {
        identity: Metadata,
        generation: u64,
        connection: Box<Connection>,
    },
}

/// What a socket with a session key gets.
pub(super) enum Claim {
    /// The session, taken over.
    Resumed(Box<Connection>),
    /// Nothing to resume, and why; `registered` where the socket starts a
    /// new session under the key (not where the key is another identity's).
    Fresh {
        reason: &'static str,
        registered: bool,
    },
}

/// What a socket gets for the key of another identity's session.
const ANOTHER_IDENTITY: Claim = Claim::Fresh {
    reason: "the session belongs to another identity",
    registered: false,
};

/// A socket's hold on a session: the key, and which socket.
#[derive(Debug, Clone)]
pub(super) struct Hold {
    pub(super) key: String,
    pub(super) generation: u64,
}

impl Sessions {
    /// No sessions yet; `parked` counts those waiting for a socket.
    pub(crate) fn new(parked: Gauge) -> Self {
        Self {
            table: Mutex::new(Table {
                entries: HashMap::new(),
                parked_order: VecDeque::new(),
                parked,
                parked_by_identity: HashMap::new(),
            }),
            newest_claim: Mutex::default(),
            next_generation: AtomicU64::default(),
        }
    }

    /// Claims the session `key` for a socket of `identity`, taking it over
    /// from a socket that dropped or still holds it. `kick` is the new
    /// socket's, for whoever takes the session from it in turn.
    pub(super) async fn claim(
        &self,
        key: &str,
        identity: &Metadata,
        kick: CancellationToken,
    ) -> (Claim, Hold) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let hold = Hold {
            key: key.to_owned(),
            generation,
        };
        // Another identity's socket must not become the newest claim: an
        // owner's socket waiting to take the session over would give up.
        if self
            .lock()
            .entries
            .get(key)
            .is_some_and(|entry| entry.identity() != identity)
        {
            return (ANOTHER_IDENTITY, hold);
        }
        self.newest_claims().insert(key.to_owned(), generation);
        let give_up = Instant::now() + TAKEOVER_WAIT;
        let claim = loop {
            if self.newest_claims().get(key) != Some(&generation) {
                break Claim::Fresh {
                    reason: "a newer socket claimed the session",
                    registered: false,
                };
            }
            if let Some(claim) = self.try_claim(key, identity, generation, &kick) {
                break claim;
            }
            if Instant::now() >= give_up {
                tracing::info!("a session's socket did not let go of it in time");
                break Claim::Fresh {
                    reason: "the session's socket did not let go of it",
                    registered: false,
                };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let mut newest = self.newest_claims();
        if newest.get(key) == Some(&generation) {
            newest.remove(key);
        }
        drop(newest);
        (claim, hold)
    }

    fn newest_claims(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.newest_claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One look at the session: `None` while another socket still holds
    /// it (and has been asked to let go).
    fn try_claim(
        &self,
        key: &str,
        identity: &Metadata,
        generation: u64,
        kick: &CancellationToken,
    ) -> Option<Claim> {
        let mut table = self.lock();
        let live = Entry::Live {
            identity: identity.clone(),
            generation,
            kick: kick.clone(),
        };
        match table.entries.get(key) {
            None => {
                table.insert(key.to_owned(), live);
                let reason = "the bridge has no session with this key: its grace period ran \
                              out, the bridge restarted, or this is another bridge";
                Some(Claim::Fresh {
                    reason,
                    registered: true,
                })
            }
            Some(entry) if entry.identity() != identity => Some(ANOTHER_IDENTITY),
            Some(Entry::Live { kick, .. }) => {
                // Its socket may be half open (a laptop that slept): ask it
                // to let go, and look again.
                kick.cancel();
                None
            }
            Some(Entry::Parked { .. }) => match table.insert(key.to_owned(), live) {
                Some(Entry::Parked { connection, .. }) => Some(Claim::Resumed(connection)),
                _ => None,
            },
        }
    }

    /// The socket holding the session dropped: its calls wait for a new
    /// socket for `grace`. A session beyond the bridge's number of
    /// sockets ends the one that waited longest.
    pub(super) fn park(
        &self,
        shared: &Arc<Shared>,
        hold: &Hold,
        connection: Box<Connection>,
        grace: Duration,
    ) {
        let mut table = self.lock();
        let ours = matches!(
            table.entries.get(&hold.key),
            Some(Entry::Live { generation, .. }) if *generation == hold.generation
        );
        if !ours {
            drop(table);
            connection.end();
            return;
        }
        let identity = connection.identity.clone();
        let parked_of_identity = table.parked_by_identity.get(&identity).copied();
        if !identity.is_empty()
            && parked_of_identity.unwrap_or(0) >= shared.config.max_connections_per_identity
        {
            table.remove(&hold.key);
            drop(table);
            tracing::info!("a session ended: its identity has parked as many as it may");
            shared
                .metrics
                .rejected(crate::metrics::Rejection::TooManyForIdentity);
            connection.end();
            return;
        }
        table.insert(
            hold.key.clone(),
            Entry::Parked {
                identity,
                generation: hold.generation,
                connection,
            },
        );
        let evicted = table.evict_beyond(shared.config.max_connections);
        drop(table);
        if let Some(connection) = evicted {
            connection.end();
        }
        tracing::debug!("session waits for a new socket");
        let shared = shared.clone();
        let hold = hold.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            shared.sessions.expire(&hold);
        });
    }

    /// The socket that held the session ended it.
    pub(super) fn release(&self, hold: &Hold) {
        let mut table = self.lock();
        if matches!(
            table.entries.get(&hold.key),
            Some(Entry::Live { generation, .. }) if *generation == hold.generation
        ) {
            table.remove(&hold.key);
        }
    }

    /// The grace period of a parked session is over: its calls end.
    fn expire(&self, hold: &Hold) {
        let mut table = self.lock();
        let expired = matches!(
            table.entries.get(&hold.key),
            Some(Entry::Parked { generation, .. }) if *generation == hold.generation
        );
        if !expired {
            return;
        }
        let Some(Entry::Parked { connection, .. }) = table.remove(&hold.key) else {
            return;
        };
        drop(table);
        tracing::debug!("session ended: no socket took it over in time");
        connection.end();
    }

    /// Ends every parked session: the bridge is shutting down.
    pub(crate) fn end_all(&self) {
        let parked: Vec<Box<Connection>> = {
            let mut table = self.lock();
            let keys: Vec<String> = table
                .entries
                .iter()
                .filter(|(_, entry)| matches!(entry, Entry::Parked { .. }))
                .map(|(key, _)| key.clone())
                .collect();
            keys.into_iter()
                .filter_map(|key| match table.remove(&key) {
                    Some(Entry::Parked { connection, .. }) => Some(connection),
                    _ => None,
                })
                .collect()
        };
        for connection in parked {
            connection.end();
        }
    }

    /// Whether `identity` has a session under `key`, held by a socket or
    /// parked.
    pub(crate) fn is_held_by(&self, key: &str, identity: &Metadata) -> bool {
        self.lock()
            .entries
            .get(key)
            .is_some_and(|entry| entry.identity() == identity)
    }

    /// Sessions waiting for a socket.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.lock().parked_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Table {
    /// Puts `entry` under `key`, returning what was there.
    fn insert(&mut self, key: String, entry: Entry) -> Option<Entry> {
        if let Entry::Parked {
            generation,
            identity,
            ..
        } = &entry
        {
            self.parked_order.push_back((key.clone(), *generation));
            self.parked.inc();
            if !identity.is_empty() {
                *self.parked_by_identity.entry(identity.clone()).or_default() += 1;
            }
        }
        let old = self.entries.insert(key, entry);
        self.left(old.as_ref());
        old
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let old = self.entries.remove(key);
        self.left(old.as_ref());
        old
    }

    /// Accounts for an entry taken out of the table.
    fn left(&mut self, entry: Option<&Entry>) {
        let Some(Entry::Parked { identity, .. }) = entry else {
            return;
        };
        self.parked.dec();
        if let Some(parked) = self.parked_by_identity.get_mut(identity) {
            *parked -= 1;
            if *parked == 0 {
                self.parked_by_identity.remove(identity);
            }
        }
        if self.parked_order.len() > 2 * self.parked_count() + 64 {
            let entries = &self.entries;
            self.parked_order
                .retain(|(key, generation)| is_parked(entries, key, *generation));
        }
    }

    fn parked_count(&self) -> usize {
        usize::try_from(self.parked.get()).unwrap_or(0)
    }

    /// Takes out the session that has waited longest, where more than
    /// `limit` wait.
    fn evict_beyond(&mut self, limit: usize) -> Option<Box<Connection>> {
        if self.parked_count() <= limit {
            return None;
        }
        while let Some((key, generation)) = self.parked_order.pop_front() {
            if is_parked(&self.entries, &key, generation)
                && let Some(Entry::Parked { connection, .. }) = self.remove(&key)
            {
                return Some(connection);
            }
        }
        None
    }
}

fn is_parked(entries: &HashMap<String, Entry>, key: &str, generation: u64) -> bool {
    matches!(
        entries.get(key),
        Some(Entry::Parked { generation: parked, .. }) if *parked == generation
    )
}

impl Entry {
    fn identity(&self) -> &Metadata {
        match self {
            Self::Live { identity, .. } | Self::Parked { identity, .. } => identity,
        }
    }
}

/// What a connection does for its session: count what arrives, acknowledge
/// it, and take over from a socket that dropped.
impl Connection {
    /// A new socket takes the session over: what was about the old socket
    /// starts again; the writer waits for the client's `resume`.
    pub(super) fn reattach(&mut self, told: tokio::sync::oneshot::Sender<u64>) {
        self.heard_from = false;
        self.closing = None;
        self.refusals_logged = 0;
        if let Some(windows) = &mut self.windows {
            windows.estimator = crate::flow::Estimator::default();
        }
        if let Some(session) = &mut self.session {
            session.resume = Some(told);
            session.unacknowledged_bytes = 0;
            // The client learns what the bridge received from `resume`.
            session.acknowledged = session.received;
            session.ack_due = None;
        }
    }

    /// Counts the envelopes of a frame the session counts, acknowledging
    /// them when enough have come, or soon.
    pub(super) fn count_received(&mut self, counted: u64, frame_bytes: usize) {
        let Some(session) = &mut self.session else {
            return;
        };
        if counted == 0 || !session.retained.is_active() {
            return;
        }
        session.received += counted;
        session.unacknowledged_bytes += frame_bytes;
        if session.received - session.acknowledged >= ACK_EVERY_ENVELOPES
            || session.unacknowledged_bytes >= ACK_EVERY_BYTES
        {
            self.acknowledge();
        } else if session.ack_due.is_none() {
            session.ack_due = Some(Instant::now() + ACK_DELAY);
        }
    }

    /// Tells the client what the bridge has received.
    pub(super) fn acknowledge(&mut self) {
        let Some(session) = &mut self.session else {
            return;
        };
        session.ack_due = None;
        session.unacknowledged_bytes = 0;
        if session.received == session.acknowledged {
            return;
        }
        session.acknowledged = session.received;
        let ack = ServerFrame::Ack {
            received: session.received,
        };
        self.send_about_socket(ack.to_json());
    }

    /// The client's `ack`: what it no longer needs kept.
    pub(super) fn on_ack(&mut self, received: u64) {
        let Some(session) = &self.session else {
            let message = "`ack` needs a session";
            return self.refuse_invalid(None, Some(FrameType::Ack), message);
        };
        if let Err(Overacknowledged { sent }) = session.retained.acknowledge(received) {
            let message = format!("`ack` of {received} envelopes; the bridge sent {sent}");
            self.refuse_invalid(None, Some(FrameType::Ack), message);
        }
    }

    /// The client's `resume`: the writer sends again what it missed.
    pub(super) fn on_resume(&mut self, received: u64) {
        let told = self
            .session
            .as_mut()
            .and_then(|session| session.resume.take());
        match told {
            Some(told) => {
                let _ = told.send(received);
            }
            None => {
                let message = "`resume` only follows a bridge's `resume` with a number";
                self.refuse_invalid(None, Some(FrameType::Resume), message);
            }
        }
    }

    /// The client took byte windows: a session starts counting.
    pub(super) fn start_counting(&mut self, connection_window_bytes: u64) {
        if let Some(session) = &self.session {
            let window = i64::try_from(connection_window_bytes).unwrap_or(i64::MAX);
            session.retained.activate(super::kept_bytes(window));
        }
    }
}

/// A session acknowledges once this many envelopes, or bytes of frames,
/// came since its last acknowledgement, and otherwise this long after the
/// first that came.
const ACK_EVERY_ENVELOPES: u64 = 256;
const ACK_EVERY_BYTES: usize = 64 << 10;
const ACK_DELAY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Metadata {
        Metadata::from([("x-user".to_owned(), name.to_owned())])
    }

    fn holds_the_key(claim: &Claim) -> bool {
        matches!(
            claim,
            Claim::Fresh {
                registered: true,
                ..
            }
        )
    }

    /// Alice's new socket waits for her old one to let go of the session
    /// when mallory, who has learnt the key, claims it too: mallory is
    /// refused, and alice's claim goes on.
    #[tokio::test(start_paused = true)]
    async fn another_identity_cannot_cut_in_on_a_takeover() {
        let sessions = Arc::new(Sessions::new(Gauge::default()));
        let key = "K".repeat(22);
        let old_kick = CancellationToken::new();
        let (claim, old) = sessions.claim(&key, &user("alice"), old_kick.clone()).await;
        assert!(holds_the_key(&claim));

        let taking_over = tokio::spawn({
            let (sessions, key) = (sessions.clone(), key.clone());
            async move {
                let (claim, _) = sessions
                    .claim(&key, &user("alice"), CancellationToken::new())
                    .await;
                claim
            }
        });
        // The new socket has asked the old one to let go.
        while !old_kick.is_cancelled() {
            tokio::task::yield_now().await;
        }
        let (claim, _) = sessions
            .claim(&key, &user("mallory"), CancellationToken::new())
            .await;
        let Claim::Fresh { reason, registered } = claim else {
            panic!("mallory resumed alice's session");
        };
        assert_eq!(reason, "the session belongs to another identity");
        assert!(!registered);

        // The old socket lets go (here it ends the session): alice's new
        // socket holds the key.
        sessions.release(&old);
        let claim = taking_over.await.unwrap();
        assert!(holds_the_key(&claim), "alice's new socket was cut off");
    }
}
