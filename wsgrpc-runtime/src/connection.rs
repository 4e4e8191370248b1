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
mod validate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, close_code};
use futures_util::{Sink, Stream, StreamExt};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::envelope::Protocol;
use crate::flow::{ByteWindow, Estimator, RequestWindows};
use crate::metadata::Metadata;
use crate::metrics::Rejection;
use crate::outbox::{self, Framing, Outbox, Outgoing, WriterEnd};
use crate::receive::{self, Unfinished};
use crate::shared::Shared;

use calls::OpenCall;

/// How long the writer may take to flush a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often a draining connection looks whether its unary calls are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Bytes of refusals and other answers of the socket's reader that may wait
/// for a client that does not read; past that the socket is closed.
const CONTROL_BYTES: usize = 256 << 10;

/// Serves one socket until either side closes it or the bridge shuts down.
///
/// The socket comes as its two halves, so that tests can stand channels in
/// for a real WebSocket.
pub(crate) async fn serve<W, R>(
    sink: W,
    mut incoming: R,
    shared: Arc<Shared>,
    identity: Metadata,
    protocol: Protocol,
    unfinished: Option<Arc<Unfinished>>,
) where
    W: Sink<Message> + Send + Unpin + 'static,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let framing = Framing {
        protocol,
        batch_bytes: shared.config.batch_bytes,
        linger: shared.config.batch_linger,
        control_bytes: CONTROL_BYTES,
        write_stall: shared.config.idle_timeout,
    };
    let (out, inbox) = outbox::outbox(&framing);
    let mut writer = tokio::spawn({
        let shared = shared.clone();
        async move { outbox::write(sink, inbox, framing, &shared.metrics).await }
    });
    let mut connection = Connection {
        shared: shared.clone(),
        identity,
        protocol,
        calls: HashMap::new(),
        out,
        windows: None,
        heard_from: false,
        draining: false,
        closing: None,
        refusals_logged: 0,
    };
    if protocol == Protocol::V2 {
        connection.send_settings();
    }

    let limits = &shared.config;
    let mut ping = limits.ping_interval.map(|every| {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut last_heard = Instant::now();
    let mut drain_deadline = None;
    let close = loop {
        let idle_deadline = limits.idle_timeout.map(|idle| last_heard + idle);
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
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(err)) => break close_for_read_error(err, &shared),
                }
                if let Some(reason) = connection.closing {
                    break Some(close_frame(close_code::POLICY, reason));
                }
            }
            _ = tick(&mut ping) => {
                if connection.out.control(Outgoing::Ping(Default::default())).is_err() {
                    break None;
                }
            }
            // The writer gave up on a client that reads nothing, or the
            // socket broke: nothing more can reach the client.
            ended = &mut writer => {
                if let Ok(WriterEnd::Stalled) = ended {
                    tracing::debug!("closing a connection whose client reads nothing");
                    shared.metrics.rejected(Rejection::Unread);
                }
                break None;
            }
            _ = sleep_until(idle_deadline) => {
                tracing::debug!("closing idle connection");
                break Some(close_frame(close_code::NORMAL, "idle timeout"));
            }
            _ = shared.shutdown.cancelled(), if drain_deadline.is_none() => {
                tracing::debug!("draining connection");
                connection.draining = true;
                drain_deadline = Some(Instant::now() + limits.drain_timeout);
            }
            // While draining, look every few milliseconds whether the last
            // unary call has ended.
            _ = tokio::time::sleep(DRAIN_POLL), if drain_deadline.is_some() => {
                if !connection.has_unary_calls() || drain_deadline.is_some_and(|at| Instant::now() >= at) {
                    break Some(close_frame(close_code::AWAY, "bridge is shutting down"));
                }
            }
        }
    };

    if connection.draining {
        connection.fail_all(Status::unavailable("bridge is shutting down"));
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
    /// What the authenticator made of the upgrade request; sent to the
    /// backend with every call.
    identity: Metadata,
    protocol: Protocol,
    calls: HashMap<String, OpenCall>,
    out: Outbox,
    /// v2: byte windows, once the client's settings asked for them.
    windows: Option<SocketWindows>,
    /// Whether an envelope has come yet: the client's settings must be the
    /// first.
    heard_from: bool,
    /// Shutting down: no new calls.
    draining: bool,
    /// Why the socket is to be closed with 1008: the client left more
    /// answers unread than the control budget holds, or sent past its
    /// socket's window.
    closing: Option<&'static str>,
    refusals_logged: u32,
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
