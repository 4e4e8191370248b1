//! What a socket sends: a queue that every call of the socket writes
//! envelopes into, and the one task that frames them and writes the socket.
//!
//! The queue is bounded in bytes, not in envelopes: it holds at most about
//! one frame's worth. So a call that produces faster than the client reads
//! waits for room (and stops reading from the backend, whose HTTP/2 flow
//! control then pushes back), and an envelope of any other call, queued
//! behind a busy stream, goes out in the next frame at the latest.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::envelope::Protocol;
use crate::frame::Amount;
use crate::metrics::Metrics;
use crate::session::Retained;

/// Frames the writer hands to the socket before it flushes.
const MAX_FRAMES_PER_FLUSH: usize = 256;

/// v2: how many times the writer lets the socket's running calls go first
/// before it sends a frame that is not full.
const GATHER_TURNS: usize = 2;

/// One item on its way to the socket.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// One envelope's JSON text, counted against the queue's room.
    Envelope(String),
    /// An envelope the socket's reader sends (a refusal, the end of a call
    /// it cancelled, the settings), which must not wait for room; counted
    /// against the control budget instead.
    Control(String),
    /// An envelope about this socket alone (settings, resume, ack, pong):
    /// counted against the control budget, and never kept for a session.
    Socket(String),
    /// Credit for a call's requests; however often the call adds to it,
    /// it is queued once until the writer takes it.
    Credit(Arc<PendingCredit>),
    /// A WebSocket ping with this payload.
    Ping(Bytes),
    Close(CloseFrame),
}

/// Credit that the backend has freed for one call (or, without an id, for
/// the socket) and the client has not been sent yet.
#[derive(Debug)]
pub(crate) struct PendingCredit {
    id: Option<String>,
    /// Counted in bytes rather than messages.
    in_bytes: bool,
    amount: AtomicU64,
}

impl PendingCredit {
    pub(crate) fn new(id: Option<String>, in_bytes: bool) -> Arc<Self> {
        Arc::new(Self {
            id,
            in_bytes,
            amount: AtomicU64::new(0),
        })
    }

    /// The credit envelope for what is pending, if anything is.
    fn take(&self) -> Option<String> {
        let amount = self.amount.swap(0, Ordering::AcqRel);
        (amount > 0).then(|| {
            let grant = if self.in_bytes {
                Amount::Bytes(amount)
            } else {
                Amount::Messages(amount)
            };
            crate::flow::credit(self.id.as_deref(), grant)
        })
    }
}

/// The socket went away; nothing more can be sent.
#[derive(Debug)]
pub(crate) struct Closed;

/// Why the reader could not queue an envelope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ControlError {
    /// The socket went away.
    Closed,
    /// The client has left more than the control budget unread: it sends
    /// what makes the bridge answer and does not read the answers.
    Full,
}

/// Where a socket's calls put what they send; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<Outgoing>,
    budget: Arc<Semaphore>,
    capacity: usize,
    control: Arc<ControlBudget>,
    running: Arc<AtomicUsize>,
}

/// Bytes of control envelopes queued and not yet taken by the writer.
#[derive(Debug)]
struct ControlBudget {
    queued: AtomicUsize,
    limit: usize,
}

/// A call running on the socket, until it is dropped: before the call
/// sends its last envelope.
#[derive(Debug)]
pub(crate) struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the writer frames what it is given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framing {
    pub protocol: Protocol,
    /// v2: the most bytes the writer puts in one frame (a single envelope
    /// larger than this goes alone in its frame).
    pub batch_bytes: usize,
    /// v2: how long the writer waits for more envelopes before it sends a
    /// frame that is not full; zero sends what is ready at once.
    pub linger: Duration,
    /// Bytes of control envelopes (refusals, cancelled calls' ends) that
    /// may wait for a client that does not read.
    pub control_bytes: usize,
    /// How long one write may wait for a client that reads nothing before
    /// the writer gives the socket up; `None` for as long as it takes.
    pub write_stall: Option<Duration>,
}

/// The queue and its reading end, for [`write`].
pub(crate) fn outbox(framing: &Framing) -> (Outbox, Inbox) {
    let (queue, receiver) = mpsc::unbounded_channel();
    // About one frame queued while the writer writes the previous one.
    let capacity = framing.batch_bytes.clamp(4 << 10, Semaphore::MAX_PERMITS);
    let budget = Arc::new(Semaphore::new(capacity));
    let running = Arc::new(AtomicUsize::new(0));
    let control = Arc::new(ControlBudget {
        queued: AtomicUsize::new(0),
        limit: framing.control_bytes,
    });
    let outbox = Outbox {
        queue,
        budget: budget.clone(),
        capacity,
        control: control.clone(),
        running: running.clone(),
    };
    let inbox = Inbox {
        receiver,
        budget,
        capacity,
        control,
        held: None,
        running,
    };
    (outbox, inbox)
}

impl Outbox {
    /// Counts a call as running until the guard is dropped.
    pub(crate) fn running(&self) -> Running {
        self.running.fetch_add(1, Ordering::Relaxed);
        Running(self.running.clone())
    }

    /// Queues an envelope, waiting while the queue is full.
    pub(crate) async fn send(&self, envelope: String) -> Result<(), Closed> {
        let permits = self
            .budget
            .acquire_many(cost(envelope.len(), self.capacity))
            .await
            .map_err(|_| Closed)?;
        // The writer gives them back when it takes the envelope.
        permits.forget();
        self.queue
            .send(Outgoing::Envelope(envelope))
            .map_err(|_| Closed)
    }

    /// Queues an envelope of the socket's reader without waiting: the
    /// reader must go on reading (cancels, credit, the client's close)
    /// while calls wait for room.
    pub(crate) fn send_control(&self, envelope: String) -> Result<(), ControlError> {
        self.send_unwaiting(Outgoing::Control(envelope))
    }

    /// Queues an envelope about this socket alone (settings, resume, ack,
    /// pong) without waiting, as [`send_control`](Self::send_control).
    pub(crate) fn send_socket(&self, envelope: String) -> Result<(), ControlError> {
        self.send_unwaiting(Outgoing::Socket(envelope))
    }

    fn send_unwaiting(&self, item: Outgoing) -> Result<(), ControlError> {
        let (Outgoing::Control(envelope) | Outgoing::Socket(envelope)) = &item else {
            unreachable!("only control envelopes skip the queue's room");
        };
        let len = envelope.len();
        let queued = self.control.queued.fetch_add(len, Ordering::AcqRel);
        if queued + len > self.control.limit {
            self.control.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(ControlError::Full);
        }
        self.queue.send(item).map_err(|_| ControlError::Closed)
    }

    /// Adds `messages` to a call's pending credit, queuing it unless it is
    /// queued already; so a client that never reads its credit costs one
    /// queued item per call, not one per grant.
    pub(crate) fn send_credit(&self, credit: &Arc<PendingCredit>, amount: u64) {
        if credit.amount.fetch_add(amount, Ordering::AcqRel) == 0 {
            let _ = self.queue.send(Outgoing::Credit(credit.clone()));
        }
    }

    /// Queues a ping or a close, which take no room.
    pub(crate) fn control(&self, item: Outgoing) -> Result<(), Closed> {
        self.queue.send(item).map_err(|_| Closed)
    }
}

fn cost(len: usize, capacity: usize) -> u32 {
    // Never more than all of it, or a large envelope would wait forever.
    len.clamp(1, capacity) as u32
}

/// The reading end of an [`Outbox`].
pub(crate) struct Inbox {
    receiver: mpsc::UnboundedReceiver<Outgoing>,
    budget: Arc<Semaphore>,
    capacity: usize,
    control: Arc<ControlBudget>,
    /// Taken from the queue but left for the next frame.
    held: Option<Outgoing>,
    running: Arc<AtomicUsize>,
}

impl Inbox {
    /// The next item; `None` when the queue is closed, or at `deadline`.
    async fn recv(&mut self, deadline: Option<Instant>) -> Option<Outgoing> {
        if let Some(item) = self.held.take() {
            return Some(item);
        }
        let item = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.receiver.recv())
                .await
                .ok()
                .flatten(),
            None => self.receiver.recv().await,
        };
        item.map(|item| self.released(item))
    }

    fn try_recv(&mut self) -> Option<Outgoing> {
        match self.held.take() {
            Some(item) => Some(item),
            None => self
                .receiver
                .try_recv()
                .ok()
                .map(|item| self.released(item)),
        }
    }

    /// Whether calls are still running, whose envelopes may be about to
    /// come.
    fn calls_running(&self) -> bool {
        self.running.load(Ordering::Relaxed) > 0
    }

    fn hold(&mut self, item: Outgoing) {
        self.held = Some(item);
    }

    fn released(&self, item: Outgoing) -> Outgoing {
        match &item {
            Outgoing::Envelope(text) => {
                self.budget
                    .add_permits(cost(text.len(), self.capacity) as usize);
            }
            Outgoing::Control(text) | Outgoing::Socket(text) => {
                self.control.queued.fetch_sub(text.len(), Ordering::AcqRel);
            }
            Outgoing::Credit(_) | Outgoing::Ping(_) | Outgoing::Close(_) => {}
        }
        item
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Calls waiting for room learn that the socket is gone.
        self.budget.close();
    }
}

/// What a writer sends before it takes anything from the queue.
#[derive(Debug, Default)]
pub(crate) struct Start {
    /// Envelopes about the socket (the settings; a session's `resume`),
    /// sent first in one frame.
    pub(crate) preamble: Vec<String>,
    /// A resumed session: the writer waits for what the client received,
    /// sends again what came after, and only then the queue.
    pub(crate) resume: Option<tokio::sync::oneshot::Receiver<u64>>,
}

/// The one task that writes to the socket: it takes everything that is
/// ready before it flushes, so a burst costs one flush; in v2 it also puts
/// everything ready, across calls, into as few frames as the cap allows.
/// With a session, it keeps what it sends until the client acknowledges
/// it, and waits while too much is kept.
pub(crate) async fn write<S>(
    mut sink: S,
    inbox: &mut Inbox,
    framing: Framing,
    metrics: &Metrics,
    session: Option<&Retained>,
    start: Start,
) -> WriterEnd
where
    S: Sink<Message> + Unpin,
{
    if let Err(end) = send_start(&mut sink, &framing, metrics, session, start).await {
        return end;
    }
    loop {
        if let Some(session) = session {
            session.room().await;
        }
        let Some(first) = inbox.recv(None).await else {
            break;
        };
        let mut frames = 0;
        let mut next = Some(first);
        // Bounded, so that a fast stream cannot postpone the flush (and the
        // client's first frame) indefinitely.
        while let Some(item) = next.take() {
            let message = match item {
                Outgoing::Socket(text) if framing.protocol == Protocol::V2 => {
                    let first = Counted(text);
                    Message::Text(batch(first, inbox, &framing, session).await.into())
                }
                Outgoing::Envelope(text) | Outgoing::Control(text)
                    if framing.protocol == Protocol::V2 =>
                {
                    let first = Counted::of(text, session);
                    Message::Text(batch(first, inbox, &framing, session).await.into())
                }
                Outgoing::Envelope(text) | Outgoing::Control(text) | Outgoing::Socket(text) => {
                    Message::Text(text.into())
                }
                Outgoing::Credit(credit) => match credit.take() {
                    Some(text) if framing.protocol == Protocol::V2 => {
                        let first = Counted::of(text, session);
                        Message::Text(batch(first, inbox, &framing, session).await.into())
                    }
                    Some(text) => Message::Text(text.into()),
                    None => {
                        next = inbox.try_recv();
                        continue;
                    }
                },
                Outgoing::Ping(payload) => Message::Ping(payload),
                Outgoing::Close(frame) => {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return WriterEnd::Done;
                }
            };
            if let Message::Text(text) = &message {
                metrics.bytes_sent.inc_by(text.len() as u64);
            }
            if let Err(end) = within(framing.write_stall, sink.feed(message)).await {
                return end;
            }
            frames += 1;
            // With a session, a frame at a time while there is room: what
            // it keeps goes past its limit by one frame at most.
            if frames < MAX_FRAMES_PER_FLUSH && session.is_none_or(Retained::has_room) {
                next = inbox.try_recv();
            }
        }
        if let Err(end) = within(framing.write_stall, sink.flush()).await {
            return end;
        }
    }
    let _ = sink.close().await;
    WriterEnd::Done
}

/// The preamble, and for a resumed session what the client missed.
async fn send_start<S>(
    sink: &mut S,
    framing: &Framing,
    metrics: &Metrics,
    session: Option<&Retained>,
    start: Start,
) -> Result<(), WriterEnd>
where
    S: Sink<Message> + Unpin,
{
    if !start.preamble.is_empty() {
        let preamble = format!("[{}]", start.preamble.join(","));
        send_frames(sink, framing, metrics, vec![preamble]).await?;
    }
    let (Some(resume), Some(session)) = (start.resume, session) else {
        return Ok(());
    };
    // The socket closes before the client says: nothing to send again.
    let received = resume.await.map_err(|_| WriterEnd::Done)?;
    let again = session.since(received).map_err(|_| WriterEnd::Broken)?;
    let mut frames = Vec::new();
    let mut frame = String::new();
    for envelope in again {
        if !frame.is_empty() && frame.len() + envelope.len() + 2 > framing.batch_bytes {
            frame.push(']');
            frames.push(std::mem::take(&mut frame));
        }
        frame.push(if frame.is_empty() { '[' } else { ',' });
        frame.push_str(&envelope);
    }
    if !frame.is_empty() {
        frame.push(']');
        frames.push(frame);
    }
    send_frames(sink, framing, metrics, frames).await
}

async fn send_frames<S>(
    sink: &mut S,
    framing: &Framing,
    metrics: &Metrics,
    frames: Vec<String>,
) -> Result<(), WriterEnd>
where
    S: Sink<Message> + Unpin,
{
    for frame in frames {
        metrics.bytes_sent.inc_by(frame.len() as u64);
        within(framing.write_stall, sink.feed(Message::Text(frame.into()))).await?;
    }
    within(framing.write_stall, sink.flush()).await
}

/// The first envelope of a frame, kept for the session where the session
/// counts it (an envelope about the socket alone is not).
struct Counted(String);

impl Counted {
    /// A counted envelope, kept.
    fn of(text: String, session: Option<&Retained>) -> Self {
        if let Some(session) = session {
            session.keep(&text);
        }
        Self(text)
    }
}

/// Why the writer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterEnd {
    /// It wrote the close frame, or every sender has gone.
    Done,
    /// The client read nothing for the whole write stall.
    Stalled,
    /// The socket failed.
    Broken,
}

/// Whether a write succeeded within `stall`. A client that reads nothing
/// (while it goes on sending, pings say, so that it never looks idle) would
/// otherwise hold the writer, and what waits for it, for good.
async fn within<E>(
    stall: Option<Duration>,
    write: impl Future<Output = Result<(), E>>,
) -> Result<(), WriterEnd> {
    let written = match stall {
        Some(stall) => tokio::time::timeout(stall, write)
            .await
            .map_err(|_| WriterEnd::Stalled)?,
        None => write.await,
    };
    written.map_err(|_| WriterEnd::Broken)
}

/// A v2 frame: `first` and whatever else is ready (or arrives within the
/// linger), as a JSON array of at most `batch_bytes`.
async fn batch(
    first: Counted,
    inbox: &mut Inbox,
    framing: &Framing,
    session: Option<&Retained>,
) -> String {
    let Counted(first) = first;
    let mut frame = String::with_capacity(framing.batch_bytes.min(first.len() * 8 + 2));
    frame.push('[');
    frame.push_str(&first);
    drop(first);
    let linger_until = Instant::now() + framing.linger;
    let mut turns = 0;
    loop {
        let item = match inbox.try_recv() {
            Some(item) => item,
            // Calls whose answers came in with this one's (32 unary calls
            // answered by one HTTP/2 read) may be ready to run: letting
            // them run first puts their envelopes in this frame. It costs
            // no timer, and a call alone on its socket is never held.
            None if turns < GATHER_TURNS && inbox.calls_running() => {
                turns += 1;
                tokio::task::yield_now().await;
                continue;
            }
            None if framing.linger.is_zero() => break,
            None => match inbox.recv(Some(linger_until)).await {
                Some(item) => item,
                None => break,
            },
        };
        let item = match item {
            Outgoing::Credit(credit) => match credit.take() {
                Some(text) => Outgoing::Control(text),
                None => continue,
            },
            other => other,
        };
        match item {
            Outgoing::Socket(text) if frame.len() + text.len() + 2 <= framing.batch_bytes => {
                frame.push(',');
                frame.push_str(&text);
            }
            Outgoing::Envelope(text) | Outgoing::Control(text)
                if frame.len() + text.len() + 2 <= framing.batch_bytes =>
            {
                if let Some(session) = session {
                    session.keep(&text);
                }
                frame.push(',');
                frame.push_str(&text);
            }
            other => {
                inbox.hold(other);
                break;
            }
        }
    }
    frame.push(']');
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes as a socket without a session does.
    async fn write_plainly<S>(sink: S, inbox: &mut Inbox, framing: Framing) -> WriterEnd
    where
        S: Sink<Message> + Unpin,
    {
        write(
            sink,
            inbox,
            framing,
            &Metrics::default(),
            None,
            Start::default(),
        )
        .await
    }

    fn framing(protocol: Protocol, batch_bytes: usize) -> Framing {
        Framing {
            protocol,
            batch_bytes,
            linger: Duration::ZERO,
            control_bytes: 1 << 10,
            write_stall: None,
        }
    }

    async fn frames_written(framing: Framing, envelopes: &[&str]) -> Vec<String> {
        let (outbox, mut inbox) = outbox(&framing);
        // Sends until the queue is full, then waits for the writer: on the
        // test's one thread, each frame holds what was queued before it.
        let envelopes: Vec<String> = envelopes.iter().map(|e| (*e).to_owned()).collect();
        tokio::spawn(async move {
            for envelope in envelopes {
                outbox.send(envelope).await.unwrap();
            }
        });
        tokio::task::yield_now().await;
        let mut written = Vec::new();
        write_plainly(&mut written, &mut inbox, framing).await;
        written
            .into_iter()
            .filter_map(|message| match message {
                Message::Text(text) => Some(text.as_str().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn v1_writes_a_frame_per_envelope() {
        let frames =
            frames_written(framing(Protocol::V1, 1 << 16), &["{\"a\":1}", "{\"b\":2}"]).await;
        assert_eq!(frames, ["{\"a\":1}", "{\"b\":2}"]);
    }

    #[tokio::test]
    async fn v2_puts_what_is_ready_into_one_array() {
        let frames = frames_written(
            framing(Protocol::V2, 1 << 16),
            &["{\"a\":1}", "{\"b\":2}", "{}"],
        )
        .await;
        assert_eq!(frames, ["[{\"a\":1},{\"b\":2},{}]"]);
    }

    #[tokio::test]
    async fn v2_frames_stay_within_the_cap() {
        let envelope = format!("{{\"x\":\"{}\"}}", "y".repeat(3000));
        let envelopes = vec![envelope.as_str(); 7];
        let frames = frames_written(framing(Protocol::V2, 10_000), &envelopes).await;
        assert_eq!(frames.len(), 3, "3 + 3 + 1 envelopes");
        for frame in &frames {
            assert!(frame.len() <= 10_000);
            let parsed: Vec<serde_json::Value> = serde_json::from_str(frame).unwrap();
            assert!(!parsed.is_empty());
        }
        // An envelope larger than the cap still goes, alone.
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(20_000));
        let frames = frames_written(framing(Protocol::V2, 10_000), &["{}", &big, "{}"]).await;
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].len(), big.len() + 2);
    }

    #[tokio::test]
    async fn v2_lets_the_calls_still_running_add_to_a_frame() {
        let framing = framing(Protocol::V2, 1 << 16);
        let (outbox, mut inbox) = outbox(&framing);
        let (first, second) = (outbox.running(), outbox.running());
        let (wake_second, woken) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(async move {
            let mut written = Vec::new();
            write_plainly(&mut written, &mut inbox, framing).await;
            written
        });
        // The first call's envelope wakes the writer before the second call
        // runs; the writer gives it a turn before it sends.
        tokio::spawn({
            let outbox = outbox.clone();
            async move {
                // The writer and the second call wait first.
                tokio::task::yield_now().await;
                outbox.send("{\"a\":1}".into()).await.unwrap();
                drop(first);
                wake_second.send(()).unwrap();
            }
        });
        tokio::spawn(async move {
            woken.await.unwrap();
            outbox.send("{\"b\":2}".into()).await.unwrap();
            drop(second);
        });
        let frames: Vec<_> = writer
            .await
            .unwrap()
            .into_iter()
            .filter_map(|message| match message {
                Message::Text(text) => Some(text.as_str().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(frames, ["[{\"a\":1},{\"b\":2}]"]);
    }

    #[tokio::test]
    async fn control_envelopes_never_wait_and_stay_within_their_budget() {
        let framing = framing(Protocol::V2, 4096);
        let (outbox, mut inbox) = outbox(&framing);
        // The metered queue is full: a call waits, the reader does not.
        outbox.send("x".repeat(4096)).await.unwrap();
        let refusal = "r".repeat(400);
        assert_eq!(outbox.send_control(refusal.clone()), Ok(()));
        assert_eq!(outbox.send_control(refusal.clone()), Ok(()));
        assert_eq!(
            outbox.send_control(refusal.clone()),
            Err(ControlError::Full),
            "1 KiB of control envelopes at most"
        );
        // What the writer takes makes room again.
        assert!(matches!(inbox.try_recv(), Some(Outgoing::Envelope(_))));
        assert!(matches!(inbox.try_recv(), Some(Outgoing::Control(_))));
        assert_eq!(outbox.send_control(refusal), Ok(()));
    }

    #[tokio::test]
    async fn credit_is_queued_once_however_often_it_grows() {
        let framing = framing(Protocol::V2, 1 << 16);
        let (outbox, mut inbox) = outbox(&framing);
        let credit = PendingCredit::new(Some("c1".into()), false);
        for _ in 0..10_000 {
            outbox.send_credit(&credit, 32);
        }
        let Some(Outgoing::Credit(queued)) = inbox.try_recv() else {
            panic!("one credit item");
        };
        assert!(inbox.try_recv().is_none(), "and only one");
        assert_eq!(
            queued.take().unwrap(),
            r#"{"type":"credit","id":"c1","messages":320000}"#
        );
        assert_eq!(queued.take(), None);
        outbox.send_credit(&credit, 5);
        assert!(matches!(inbox.try_recv(), Some(Outgoing::Credit(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_gives_up_on_a_client_that_reads_nothing() {
        let framing = Framing {
            write_stall: Some(Duration::from_secs(90)),
            ..framing(Protocol::V2, 4096)
        };
        let (outbox, mut inbox) = outbox(&framing);
        outbox.send("{}".into()).await.unwrap();
        // A socket whose every write waits forever.
        let stuck = futures_util::sink::unfold((), |(), _: Message| {
            std::future::pending::<Result<(), std::io::Error>>()
        });
        let started = Instant::now();
        let end = write_plainly(Box::pin(stuck), &mut inbox, framing).await;
        assert_eq!(end, WriterEnd::Stalled);
        assert_eq!(started.elapsed(), Duration::from_secs(90));
    }

    #[tokio::test]
    async fn a_full_queue_makes_senders_wait_until_the_writer_takes() {
        let framing = framing(Protocol::V2, 4096);
        let (outbox, mut inbox) = outbox(&framing);
        let chunk = "x".repeat(3000);
        outbox.send(chunk.clone()).await.unwrap();
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(chunk).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no room for a second envelope");
        assert!(matches!(inbox.try_recv(), Some(Outgoing::Envelope(_))));
        waiting.await.unwrap().unwrap();
        drop(inbox);
        assert!(
            outbox.send("{}".into()).await.is_err(),
            "the writer is gone"
        );
    }
}
