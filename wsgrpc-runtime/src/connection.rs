//! One WebSocket: a reader that dispatches envelopes to calls, and one
//! writer.
//!
//! The reader owns the table of open calls, so it needs no lock; each call
//! runs as its own task and hands its envelopes to the writer through a
//! queue bounded in bytes ([`outbox`](crate::outbox)). When the client stops
//! reading, the queue fills, the call tasks wait, and HTTP/2 flow control
//! pushes back on the backend.
//!
//! Here is the socket's loop; [`frames`] turns what the client sends into
//! what the calls do, [`validate`] checks a request before it becomes a
//! call, and [`calls`] keeps the table of open calls.

mod calls;
mod frames;
mod sessions;
mod validate;

pub(crate) use sessions::Sessions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::envelope::Protocol;
use crate::flow::{ByteWindow, Estimator, RequestWindows};
use crate::frame::ServerFrame;
use crate::json::JsonOptions;
use crate::metadata::Metadata;
use crate::metrics::Rejection;
use crate::outbox::{self, Framing, Inbox, Outbox, Outgoing, WriterEnd};
use crate::receive::{self, Unfinished};
use crate::session::{KeptBudget, Retained};
use crate::shared::Shared;

use calls::OpenCall;
use sessions::{Claim, Hold};

/// How long the writer may take to flush a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often a draining connection looks whether its unary calls are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Bytes of refusals and other answers of the socket's reader that may wait
/// for a client that does not read; past that the socket is closed.
const CONTROL_BYTES: usize = 256 << 10;
/// What a session keeps of what it sent, unacknowledged, before its writer
/// waits: twice the client's socket window, within these bounds.
const MIN_KEPT_BYTES: usize = 1 << 20;
const MAX_KEPT_BYTES: usize = 16 << 20;

/// What the upgrade made of a socket.
pub(crate) struct Upgraded {
    /// What the authenticator made of the upgrade request; sent to the
    /// backend with every call.
    pub(crate) identity: Metadata,
    pub(crate) protocol: Protocol,
    pub(crate) unfinished: Option<Arc<Unfinished>>,
    /// The `session` query parameter, where the client gave one.
    pub(crate) session_key: Option<String>,
    /// When the authenticator said the socket's token runs out.
    pub(crate) expires: Option<std::time::SystemTime>,
    /// Let in past its identity's number of sockets to take over one of
    /// its sessions: without that session, it closes at once.
    pub(crate) only_to_resume: bool,
}

/// How a socket's loop ended.
enum Ending {
    /// The client may be gone for now: a session's calls go on, waiting
    /// for a new socket; without one, the connection ends with this close
    /// frame, if any.
    Lost(Option<CloseFrame>),
    /// The connection ends, with this close frame if any.
    Close(Option<CloseFrame>),
}

/// Serves one socket until either side closes it or the bridge shuts down.
///
/// The socket comes as its two halves, so that tests can stand channels in
/// for a real WebSocket.
pub(crate) async fn serve<W, R>(sink: W, mut incoming: R, shared: Arc<Shared>, upgraded: Upgraded)
where
    W: Sink<Message> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let Upgraded {
        identity,
        protocol,
        unfinished,
        session_key,
        expires,
        only_to_resume,
    } = upgraded;
    let framing = Framing {
        protocol,
        batch_bytes: shared.config.batch_bytes,
        linger: shared.config.batch_linger,
        control_bytes: CONTROL_BYTES,
        write_stall: shared.config.idle_timeout,
    };
    let kick = tokio_util::sync::CancellationToken::new();
    let grace = shared.config.session_grace;
    let session_key = session_key.filter(|key| {
        protocol == Protocol::V2 && grace.is_some() && crate::session::is_valid_key(key)
    });
    let mut resumed = false;
    let (mut connection, hold, resume) = match session_key {
        Some(key) => {
            let (claim, hold) = shared.sessions.claim(&key, &identity, kick.clone()).await;
            match claim {
                Claim::Resumed(connection) => {
                    resumed = true;
                    let mut connection = *connection;
                    let (told, resume) = tokio::sync::oneshot::channel();
                    connection.reattach(told);
                    let received = connection.session.as_ref().map(|session| session.received);
                    (connection, Some(hold), Some((received, None, Some(resume))))
                }
                Claim::Fresh { reason, registered } => {
                    let mut connection = Connection::new(&shared, identity, protocol, &framing);
                    if registered {
                        connection.session = Some(SessionState::new(shared.kept_budget.clone()));
                    }
                    (
                        connection,
                        registered.then_some(hold),
                        Some((None, Some(reason), None)),
                    )
                }
            }
        }
        None => (
            Connection::new(&shared, identity, protocol, &framing),
            None,
            None,
        ),
    };
    connection.token_expires = expires.map(instant_of);
    // However serve ends (a panic included), the socket lets go of its
    // session; a parked session is not the socket's and stays.
    let _holding = hold.clone().map(|hold| Holding(shared.clone(), hold));
    if only_to_resume && !resumed {
        tracing::info!("closing a socket past its identity's number that resumed nothing");
        shared.metrics.rejected(Rejection::TooManyForIdentity);
        let reason = "too many connections for this identity";
        let mut sink = sink;
        let close = Message::Close(Some(close_frame(close_code::POLICY, reason)));
        let _ = sink.send(close).await;
        return;
    }
    let mut start = outbox::Start::default();
    if protocol == Protocol::V2 {
        start.preamble.push(connection.settings());
        if let Some(token) = connection.token_frame() {
            start.preamble.push(token);
        }
    }
    if let Some((received, reason, resume)) = resume {
        start
            .preamble
            .push(ServerFrame::Resume { received, reason }.to_json());
        start.resume = resume;
    }
    let mut writer = tokio::spawn({
        let shared = shared.clone();
        let inbox = connection.inbox.clone();
        let retained = connection
            .session
            .as_ref()
            .map(|session| session.retained.clone());
        async move {
            let mut inbox = inbox.lock_owned().await;
            outbox::write(
                sink,
                &mut inbox,
                framing,
                &shared.metrics,
                retained.as_deref(),
                start,
            )
            .await
        }
    });

    let limits = &shared.config;
    let mut ping = limits.ping_interval.map(|every| {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut last_heard = Instant::now();
    let mut drain_deadline = None;
    let old_at = limits
        .max_connection_age
        .map(|age| Instant::now() + jittered(age));
    let ending = loop {
        let idle_deadline = limits.idle_timeout.map(|idle| last_heard + idle);
        let ack_due = connection
            .session
            .as_ref()
            .and_then(|session| session.ack_due);
        tokio::select! {
            frame = incoming.next() => {
                last_heard = Instant::now();
                if let (Some(Ok(_)), Some(unfinished)) = (&frame, &unfinished) {
                    unfinished.message_received();
                }
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        shared.metrics.bytes_received.inc_by(text.len() as u64);
                        connection.on_text(text.as_str());
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let message = "binary frames are not supported; send JSON envelopes as text frames";
                        connection.refuse(None, None, Rejection::Binary, Code::InvalidArgument, message);
                    }
                    Some(Ok(Message::Pong(payload))) => connection.on_pong(&payload),
                    Some(Ok(Message::Ping(_))) => {}
                    // A page that closes its socket itself (or goes away)
                    // is done with the session; any other close, or none,
                    // may be a network's doing.
                    Some(Ok(Message::Close(frame))) => {
                        let on_purpose = frame.as_ref().is_none_or(|frame| {
                            matches!(frame.code, close_code::NORMAL | close_code::AWAY)
                        });
                        break if on_purpose { Ending::Close(None) } else { Ending::Lost(None) };
                    }
                    None => break Ending::Lost(None),
                    Some(Err(err)) => match close_for_read_error(err, &shared) {
                        Some(frame) => break Ending::Close(Some(frame)),
                        None => break Ending::Lost(None),
                    },
                }
                if let Some(reason) = connection.closing {
                    break Ending::Close(Some(close_frame(close_code::POLICY, reason)));
                }
            }
            _ = tick(&mut ping) => {
                if connection.out.control(Outgoing::Ping(Default::default())).is_err() {
                    break Ending::Lost(None);
                }
            }
            _ = sleep_until(ack_due) => connection.acknowledge(),
            _ = sleep_until(connection.token_expires) => {
                tracing::debug!("closing a connection whose token ran out");
                connection.fail_all(Status::unauthenticated("the socket's token ran out"));
                break Ending::Close(Some(close_frame(close_code::POLICY, "token ran out")));
            }
            // The writer gave up on a client that reads nothing, or the
            // socket broke: nothing more can reach the client.
            ended = &mut writer => {
                if let Ok(WriterEnd::Stalled) = ended {
                    tracing::debug!("closing a connection whose client reads nothing");
                    shared.metrics.rejected(Rejection::Unread);
                }
                break Ending::Lost(None);
            }
            _ = sleep_until(idle_deadline) => {
                tracing::debug!("closing idle connection");
                break Ending::Lost(Some(close_frame(close_code::NORMAL, "idle timeout")));
            }
            _ = kick.cancelled() => {
                tracing::debug!("a new socket took the session over");
                break Ending::Lost(Some(close_frame(close_code::POLICY, "the session moved to another socket")));
            }
            _ = shared.shutdown.cancelled(), if drain_deadline.is_none() => {
                tracing::debug!("draining connection");
                connection.go_away(Drain::Shutdown);
                drain_deadline = Some(Instant::now() + limits.drain_timeout);
            }
            _ = sleep_until(old_at), if drain_deadline.is_none() => {
                tracing::debug!("draining a connection that reached its maximum age");
                connection.go_away(Drain::Age);
                drain_deadline = Some(Instant::now() + limits.drain_timeout);
            }
            // While draining, look every few milliseconds whether the last
            // call it waits for has ended.
            _ = tokio::time::sleep(DRAIN_POLL), if drain_deadline.is_some() => {
                if !connection.has_calls_to_finish() || drain_deadline.is_some_and(|at| Instant::now() >= at) {
                    let frame = match connection.draining {
                        Some(Drain::Age) => close_frame(close_code::NORMAL, "connection reached its maximum age"),
                        _ => close_frame(close_code::AWAY, "bridge is shutting down"),
                    };
                    break Ending::Close(Some(frame));
                }
            }
        }
    };

    // A session whose socket dropped keeps its calls for a new socket.
    let parkable = connection
        .session
        .as_ref()
        .is_some_and(|session| session.retained.is_active())
        && connection.draining.is_none();
    let close = match (ending, &hold, grace) {
        (Ending::Lost(_), Some(hold), Some(grace)) if parkable => {
            writer.abort();
            // Lets go of the queue, which the next socket's writer takes;
            // an aborted task ends at its next await, so this is quick. (A
            // writer that ended first, its socket broken, was awaited in
            // the loop already, and must not be polled again.)
            if !writer.is_finished()
                && tokio::time::timeout(CLOSE_GRACE, &mut writer)
                    .await
                    .is_err()
            {
                tracing::warn!("a session's writer did not stop; its session ends");
                shared.sessions.release(hold);
                connection.cancel_all();
                return;
            }
            shared
                .sessions
                .park(&shared, hold, Box::new(connection), grace);
            return;
        }
        (Ending::Lost(frame) | Ending::Close(frame), _, _) => frame,
    };
    if let Some(hold) = &hold {
        shared.sessions.release(hold);
    }
    if let Some(drain) = connection.draining {
        connection.fail_all(Status::unavailable(drain.reason()));
    } else {
        connection.cancel_all();
    }
    let closing = close.is_some();
    if let Some(frame) = close {
        let _ = connection.out.control(Outgoing::Close(frame));
    }
    drop(connection);
    let grace = Instant::now() + CLOSE_GRACE;
    // A writer stuck on a client that does not read would hold the socket
    // (and its descriptor) for as long as TCP keeps trying.
    if writer.is_finished() {
        // Already gone: nothing to wait for.
    } else if tokio::time::timeout_at(grace, &mut writer).await.is_err() {
        writer.abort();
    } else if closing {
        linger(&mut incoming, grace).await;
    }
}

/// After the bridge's close frame: waits (within `until`) for the client's
/// answering close, reading what it still sends. Dropping a socket whose
/// client is still sending resets the connection, and a reset can discard
/// the close frame, and its code, before the client reads it.
async fn linger<R>(incoming: &mut R, until: Instant)
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let _ = tokio::time::timeout_at(until, async {
        loop {
            match incoming.next().await {
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => {}
                // What is unread cannot be read past (a frame too large,
                // say): give the client the rest of the time to take the
                // close frame.
                Some(Err(_)) => std::future::pending::<()>().await,
            }
        }
    })
    .await;
}

/// The close frame for a socket whose client broke the WebSocket protocol,
/// with the code RFC 6455 gives (section 7.4.1).
fn close_for_read_error(err: axum::Error, shared: &Shared) -> Option<CloseFrame> {
    let inner = err.into_inner();
    if receive::is_budget_spent(&*inner) {
        tracing::info!("closing a connection that holds too much in unfinished frames");
        shared.metrics.rejected(Rejection::ReceiveBudget);
        return Some(close_frame(
            close_code::POLICY,
            "the bridge holds too much in unfinished frames",
        ));
    }
    let (code, reason, rejection) = match inner.downcast_ref::<tungstenite::Error>() {
        // The connection went away without a close frame: a network's
        // doing, not the client's fault.
        Some(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => {
            tracing::debug!("connection reset without a close frame");
            return None;
        }
        Some(tungstenite::Error::Capacity(_)) => {
            (close_code::SIZE, "frame too large", Rejection::Oversized)
        }
        Some(tungstenite::Error::Utf8(_)) => (
            close_code::INVALID,
            "text frame is not valid UTF-8",
            Rejection::Malformed,
        ),
        Some(tungstenite::Error::Protocol(_)) => (
            close_code::PROTOCOL,
            "WebSocket protocol error",
            Rejection::Malformed,
        ),
        _ => {
            tracing::debug!(error = %inner, "connection read failed");
            return None;
        }
    };
    tracing::debug!(error = %inner, code, "closing connection: {reason}");
    shared.metrics.rejected(rejection);
    Some(close_frame(code, reason))
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct Connection {
    shared: Arc<Shared>,
    /// The writer's end of `out`: a socket's writer holds it while it
    /// writes, and a session's next socket takes it over.
    inbox: Arc<tokio::sync::Mutex<Inbox>>,
    /// v2 sessions: counting and keeping, where the socket has a session.
    session: Option<SessionState>,
    /// What the authenticator made of the upgrade request; sent to the
    /// backend with every call.
    identity: Metadata,
    protocol: Protocol,
    calls: HashMap<String, OpenCall>,
    out: Outbox,
    /// v2: byte windows, once the client's settings asked for them.
    windows: Option<SocketWindows>,
    /// v2: the JSON form the client's settings asked for, which every call
    /// opened after them writes instead of its method's.
    json: Option<JsonOptions>,
    /// Whether an envelope has come yet: the client's settings must be the
    /// first.
    heard_from: bool,
    /// Shutting down, or too old: no new calls.
    draining: Option<Drain>,
    /// When the socket's token runs out, unless the client sends a fresh
    /// one.
    token_expires: Option<Instant>,
    /// How many fresh tokens the authenticator will check for this socket.
    token_checks: TokenChecks,
    /// Why the socket is to be closed with 1008: the client left more
    /// answers unread than the control budget holds, or sent past its
    /// socket's window.
    closing: Option<&'static str>,
    refusals_logged: u32,
}

/// A client refreshes its token once a token lifetime, and again after a
/// refusal; checking one may cost the authenticator a signature. So the
/// fresh tokens of a socket are checked at most [`TokenChecks::BURST`] at
/// once and then one a second: a client that sends them faster is refused
/// without a check (a bucket of checks, filled at that rate).
struct TokenChecks {
    left: f64,
    at: Instant,
}

impl TokenChecks {
    const BURST: f64 = 8.0;
    const PER_SECOND: f64 = 1.0;

    fn new(now: Instant) -> Self {
        Self {
            left: Self::BURST,
            at: now,
        }
    }

    /// Whether a token that came `now` may be checked.
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * Self::PER_SECOND;
        self.left = (self.left + earned).min(Self::BURST);
        self.at = now;
        if self.left < 1.0 {
            return false;
        }
        self.left -= 1.0;
        true
    }
}

impl Connection {
    fn new(
        shared: &Arc<Shared>,
        identity: Metadata,
        protocol: Protocol,
        framing: &Framing,
    ) -> Self {
        let (out, inbox) = outbox::outbox(framing);
        Self {
            shared: shared.clone(),
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            session: None,
            identity,
            protocol,
            calls: HashMap::new(),
            out,
            windows: None,
            json: None,
            heard_from: false,
            draining: None,
            token_expires: None,
            token_checks: TokenChecks::new(Instant::now()),
            closing: None,
            refusals_logged: 0,
        }
    }

    /// Ends the connection's calls: the session is over.
    fn end(mut self: Box<Self>) {
        self.cancel_all();
    }
}

/// What a session keeps unacknowledged before its writer waits, for a
/// client whose socket window has reached `window` bytes.
fn kept_bytes(window: i64) -> usize {
    usize::try_from(window.saturating_mul(2))
        .unwrap_or(0)
        .clamp(MIN_KEPT_BYTES, MAX_KEPT_BYTES)
}

/// A socket's hold on its session, let go when the socket's task ends.
struct Holding(Arc<Shared>, Hold);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.sessions.release(&self.1);
    }
}

/// Why a socket takes no new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// The bridge is shutting down.
    Shutdown,
    /// The socket reached `max_connection_age`.
    Age,
}

impl Drain {
    /// What a call refused or ended for it is told.
    fn reason(self) -> &'static str {
        match self {
            Self::Shutdown => "bridge is shutting down",
            Self::Age => "the socket reached its maximum age; open a new one",
        }
    }
}

impl Connection {
    /// Takes no new calls: a v2 client is told with `goaway`, opens a new
    /// socket for them and lets the calls in flight finish on this one.
    fn go_away(&mut self, drain: Drain) {
        self.draining = Some(drain);
        if self.protocol == Protocol::V2 {
            let goaway = ServerFrame::Goaway {
                reason: drain.reason(),
            };
            self.send_about_socket(goaway.to_json());
        }
    }

    /// Whether a call this draining socket waits for is still running: in
    /// v2, whose client heard `goaway`, any; in v1, unary and
    /// client-streaming calls (streams would keep a shutdown waiting).
    fn has_calls_to_finish(&mut self) -> bool {
        match self.protocol {
            Protocol::V1 => self.has_unary_calls(),
            _ => self.has_calls(),
        }
    }
}

/// The monotonic time of a wall-clock time, now or later.
fn instant_of(at: std::time::SystemTime) -> Instant {
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

/// `age`, give or take a tenth, so that sockets opened together do not all
/// go away together.
fn jittered(age: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh random seed each time is randomness enough here.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let tenth = age / 10;
    let offset = tenth.mul_f64((random % 2001) as f64 / 1000.0);
    age - tenth + offset
}

/// Where a socket has a session: how many envelopes the client sent that
/// the bridge has received and acknowledged, and what the bridge keeps.
struct SessionState {
    retained: Arc<Retained>,
    /// Counted envelopes received from the client.
    received: u64,
    /// What the last `ack` said.
    acknowledged: u64,
    /// Bytes of frames received since.
    unacknowledged_bytes: usize,
    /// When the next `ack` is due, where one is.
    ack_due: Option<Instant>,
    /// A resumed socket's writer waits here for what the client received.
    resume: Option<tokio::sync::oneshot::Sender<u64>>,
}

impl SessionState {
    fn new(budget: Arc<KeptBudget>) -> Self {
        Self {
            retained: Arc::new(Retained::new(MIN_KEPT_BYTES, budget)),
            received: 0,
            acknowledged: 0,
            unacknowledged_bytes: 0,
            ack_due: None,
            resume: None,
        }
    }
}

/// A socket's byte windows, both ways.
struct SocketWindows {
    /// What the client takes of stream responses across calls.
    responses: Arc<ByteWindow>,
    /// What the client may send of requests, per socket and per call.
    requests: Arc<RequestWindows>,
    /// Sizes the request windows to the path.
    estimator: Estimator,
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
