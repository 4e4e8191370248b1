//! One WebSocket: a reader that dispatches envelopes to calls, and one
//! writer.
//!
//! The reader owns the table of open calls, so it needs no lock; each call
//! runs as its own task and hands its envelopes to the writer through a
//! queue bounded in bytes ([`outbox`](crate::outbox)). When the client stops
//! reading, the queue fills, the call tasks wait, and HTTP/2 flow control
//! pushes back on the backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, close_code};
use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt, stream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::call::{self, CallSpec, Deadline, Finish};
use crate::config::BridgeConfig;
use crate::envelope::{self, Envelope, FrameType, Metadata, Protocol, Settings, code_name};
use crate::flow::{MAX_WINDOW, RequestCredit, ResponseWindow};
use crate::metadata;
use crate::metrics::Rejection;
use crate::outbox::{self, ControlError, Framing, Outbox, Outgoing, WriterEnd};
use crate::receive::{self, Unfinished};
use crate::service::{ResolveError, Route};
use crate::shared::Shared;
use crate::untrusted::{Untrusted, bounded_message};

/// Longest id a client may choose.
const MAX_ID_LEN: usize = 256;
/// Longest method name a request may carry: v1 echoes it in every answer,
/// and no registered name comes near it.
const MAX_METHOD_LEN: usize = 1024;
/// How long the writer may take to flush a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often a draining connection looks whether its unary calls are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Bytes of refusals and other answers of the socket's reader that may wait
/// for a client that does not read; past that the socket is closed.
const CONTROL_BYTES: usize = 256 << 10;
/// Refusals logged at `info` per socket; the rest go to `debug` (and every
/// one is counted in `/metrics`), so that a client cannot flood the log.
const LOGGED_REFUSALS: u32 = 10;

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
        draining: false,
        unread: false,
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
                        connection.on_text(text.as_str()).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let message = "binary frames are not supported; send JSON envelopes as text frames";
                        connection.refuse(None, None, Rejection::Binary, Code::InvalidArgument, message).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(err)) => break close_for_read_error(err, &shared),
                }
                if connection.unread {
                    tracing::info!("closing a connection that does not read what it is sent");
                    shared.metrics.rejected(Rejection::Unread);
                    break Some(close_frame(close_code::POLICY, "too many answers left unread"));
                }
            }
            _ = tick(&mut ping) => {
                if connection.out.control(Outgoing::Ping).is_err() {
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
        connection
            .fail_all(Status::unavailable("bridge is shutting down"))
            .await;
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

/// A call the connection has started and not yet seen end.
struct OpenCall {
    route: Arc<Route>,
    method_echo: String,
    /// Further request messages; `None` once the client half-closed or
    /// where the method takes one request.
    requests: Option<RequestQueue>,
    /// v2: the stream responses the client takes, where it said.
    window: Option<ResponseWindow>,
    task: AbortHandle,
    finish: Finish,
}

/// Where further request messages of a client-streaming call go.
struct RequestQueue {
    sender: mpsc::Sender<Bytes>,
    /// Set before the queue is dropped by a half-close.
    half_closed: Arc<AtomicBool>,
}

impl RequestQueue {
    fn half_close(self) {
        self.half_closed.store(true, Ordering::Release);
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
    /// Shutting down: no new calls.
    draining: bool,
    /// The client has left more answers unread than the control budget
    /// holds; the socket is to be closed.
    unread: bool,
    refusals_logged: u32,
}

impl Connection {
    fn send_settings(&mut self) {
        let limits = &self.shared.config;
        let settings = Settings {
            max_frame_bytes: limits.max_frame_size,
            max_calls_per_connection: limits.max_calls_per_connection,
            call_queue_messages: limits.call_queue_messages,
        };
        let text = serde_json::to_string(&settings).expect("settings serialize");
        self.send(text);
    }

    /// A text frame: one envelope in v1, an array of them in v2.
    async fn on_text(&mut self, text: &str) {
        match self.protocol {
            Protocol::V1 => match Envelope::parse(text) {
                Ok(frame) => self.on_envelope(&frame).await,
                Err(err) => self.refuse_malformed(text, err).await,
            },
            Protocol::V2 => match envelope::parse_batch(text) {
                Ok(envelopes) => {
                    for envelope in envelopes {
                        match envelope {
                            Ok(frame) => self.on_envelope(&frame).await,
                            Err((err, text)) => self.refuse_malformed(text, err).await,
                        }
                    }
                }
                Err(err) => {
                    let message =
                        format!("malformed frame: a v2 frame is a JSON array of envelopes: {err}");
                    self.refuse_invalid(None, None, message).await;
                }
            },
        }
    }

    async fn refuse_malformed(&mut self, text: &str, err: serde_json::Error) {
        let id = salvage_id(text);
        let message = format!("malformed frame: {err}");
        self.refuse_invalid(id.as_deref(), None, message).await;
    }

    async fn on_envelope(&mut self, frame: &Envelope<'_>) {
        let kind = frame.frame_type;
        let Some(id) = frame.id.as_deref().filter(|id| !id.is_empty()) else {
            let message = "frame has no `id`";
            return self.refuse_invalid(None, kind, message).await;
        };
        if id.len() > MAX_ID_LEN {
            let message = format!("`id` is longer than {MAX_ID_LEN} bytes");
            return self.refuse_invalid(None, kind, message).await;
        }
        if frame
            .method
            .as_ref()
            .is_some_and(|m| m.len() > MAX_METHOD_LEN)
        {
            let message = format!("`method` is longer than {MAX_METHOD_LEN} bytes");
            return self.refuse_invalid(Some(id), kind, message).await;
        }
        let v2_only = [
            ("payloads", frame.payloads.is_some()),
            ("window", frame.window.is_some()),
            ("messages", frame.messages.is_some()),
        ];
        if self.protocol == Protocol::V1
            && let Some((field, _)) = v2_only.iter().find(|(_, present)| *present)
        {
            let message = format!(
                "malformed frame: unknown field `{field}` (a v2 field; this socket speaks v1)"
            );
            return self.refuse_invalid(Some(id), kind, message).await;
        }
        match kind {
            Some(FrameType::Request) => self.open(id, frame).await,
            Some(FrameType::Message) => self.push(id, frame).await,
            Some(FrameType::End) => self.half_close(id).await,
            Some(FrameType::Cancel) => self.cancel(id).await,
            Some(FrameType::Credit) if self.protocol == Protocol::V2 => {
                self.credit(id, frame).await;
            }
            Some(FrameType::Credit) => {
                let message = "`credit` is a v2 envelope; this socket speaks v1";
                self.refuse_invalid(Some(id), kind, message).await;
            }
            Some(other @ (FrameType::Response | FrameType::Error | FrameType::Settings)) => {
                let message = format!("clients do not send `{other:?}` frames").to_lowercase();
                self.refuse_invalid(Some(id), kind, message).await;
            }
            None => {
                let message = "frame has no `type`";
                self.refuse_invalid(Some(id), None, message).await;
            }
        }
    }

    async fn open(&mut self, id: &str, frame: &Envelope<'_>) {
        if self.open_call(id).is_some() {
            let message = format!("call `{id}` is still open; choose a new id");
            return self
                .refuse(
                    Some(id),
                    Some(FrameType::Request),
                    Rejection::DuplicateId,
                    Code::AlreadyExists,
                    message,
                )
                .await;
        }
        let method_echo = frame.method.as_deref().unwrap_or_default();
        // From here on the client waits for a `response` frame on `id`.
        match self.prepare(id, method_echo, frame) {
            Ok((spec, first)) => self.start(spec, first, frame.end),
            Err(status) => {
                let status = *status;
                self.end_refused(Refused {
                    id,
                    method_echo,
                    status,
                })
                .await;
            }
        }
    }

    /// Checks a request frame and turns it into a call, or says why not.
    fn prepare(
        &mut self,
        id: &str,
        method_echo: &str,
        frame: &Envelope<'_>,
    ) -> Result<(CallSpec, Option<Bytes>), Refusal> {
        if self.draining {
            return Err(refusal(Code::Unavailable, "bridge is shutting down".into()));
        }
        let route = self.resolve(method_echo)?;
        self.make_room()?;
        let metadata = self.call_metadata(&route, frame)?;
        let deadline = deadline(&self.shared.config, frame.timeout_ms)?;
        let window = response_window(&route, frame.window)?;
        let first = first_request(&route, frame)?;
        let spec = CallSpec {
            id: id.to_owned(),
            method_echo: method_echo.to_owned(),
            protocol: self.protocol,
            route,
            metadata,
            deadline,
            window,
        };
        Ok((spec, first))
    }

    /// The method a request names.
    fn resolve(&self, method_echo: &str) -> Result<Arc<Route>, Refusal> {
        self.shared
            .services
            .resolve(method_echo)
            .map_err(|err| match err {
                ResolveError::Unknown => refusal(
                    Code::Unimplemented,
                    format!("unknown method `{method_echo}`"),
                ),
                ResolveError::Ambiguous => refusal(
                    Code::Unimplemented,
                    format!(
                        "method name `{method_echo}` is ambiguous; use `package.Service/{method_echo}`"
                    ),
                ),
            })
    }

    /// Forgets calls that have ended, and refuses a call beyond the
    /// connection's limit.
    fn make_room(&mut self) -> Result<(), Refusal> {
        self.reap_finished();
        let limit = self.shared.config.max_calls_per_connection;
        if self.calls.len() >= limit {
            let message = format!("too many calls in flight on this connection (limit {limit})");
            return Err(refusal(Code::ResourceExhausted, message));
        }
        Ok(())
    }

    /// The gRPC metadata of a call: the client's, made canonical and
    /// allowed by the authenticator, and the connection's identity.
    fn call_metadata(&self, route: &Route, frame: &Envelope<'_>) -> Result<MetadataMap, Refusal> {
        let client_metadata = frame.metadata.clone().unwrap_or_default();
        let client_metadata =
            metadata::canonical(client_metadata, &self.shared.config.metadata_limits())
                .map_err(|err| Box::new(err.into_status()))?;
        if let Some(auth) = &self.shared.authenticator {
            if let Some(key) = client_metadata
                .keys()
                .find(|key| self.identity.contains_key(*key))
            {
                return Err(refusal(
                    Code::PermissionDenied,
                    format!("metadata key `{key}` is set by the bridge"),
                ));
            }
            auth.authorize_call(&self.identity, &route.full_name, &client_metadata)
                .map_err(Box::new)?;
        }
        let mut grpc_metadata = MetadataMap::new();
        metadata::to_grpc(&client_metadata, &mut grpc_metadata)
            .map_err(|err| Box::new(err.into_status()))?;
        metadata::to_grpc(&self.identity, &mut grpc_metadata).map_err(|_| {
            refusal(
                Code::Internal,
                "the authenticator's identity is not valid metadata".into(),
            )
        })?;
        Ok(grpc_metadata)
    }

    /// Spawns the call's task and remembers the call.
    fn start(&mut self, spec: CallSpec, first: Option<Bytes>, half_closed: bool) {
        let id = spec.id.clone();
        let route = spec.route.clone();
        let method_echo = spec.method_echo.clone();
        let window = spec.window.clone();
        let finish = Finish::default();
        let first = stream::iter(first);
        let (requests, task) = if route.method.kind().client_streams() && !half_closed {
            let queue = self.shared.config.call_queue_messages;
            let (sender, mut receiver) = mpsc::channel(queue);
            let mut credit = (self.protocol == Protocol::V2)
                .then(|| RequestCredit::new(id.clone(), self.out.clone(), queue));
            let queue = RequestQueue {
                sender,
                half_closed: Arc::default(),
            };
            let half_closed = queue.half_closed.clone();
            // The input ends only where the client half-closed it. A queue
            // dropped because the call was cancelled leaves it open, so
            // that the backend learns of the cancel by the stream's reset
            // rather than by a clean end of input that completes the call.
            let more = stream::poll_fn(move |cx| match receiver.poll_recv(cx) {
                Poll::Ready(None) if !half_closed.load(Ordering::Acquire) => Poll::Pending,
                polled => {
                    if let (Poll::Ready(Some(_)), Some(credit)) = (&polled, &mut credit) {
                        credit.took_one();
                    }
                    polled
                }
            });
            (
                Some(queue),
                self.spawn(spec, first.chain(more), finish.clone()),
            )
        } else {
            (None, self.spawn(spec, first, finish.clone()))
        };
        let call = OpenCall {
            route,
            method_echo,
            requests,
            window,
            task,
            finish,
        };
        self.calls.insert(id, call);
    }

    fn spawn(
        &self,
        spec: CallSpec,
        requests: impl futures_util::Stream<Item = Bytes> + Send + 'static,
        finish: Finish,
    ) -> AbortHandle {
        let span =
            tracing::info_span!("call", id = %Untrusted(&spec.id), method = %spec.route.full_name);
        span.in_scope(|| tracing::debug!("call opened"));
        let in_flight = self.shared.metrics.in_flight(&spec.route.full_name);
        let task = call::run(
            spec,
            requests,
            self.shared.clone(),
            self.out.clone(),
            finish,
            in_flight,
            self.out.running(),
        );
        tokio::spawn(task.instrument(span)).abort_handle()
    }

    /// One more request message on an open call, or in v2 several.
    async fn push(&mut self, id: &str, frame: &Envelope<'_>) {
        let refused = Some(FrameType::Message);
        let Some(call) = self.open_call(id) else {
            return self.refuse_not_open(id, refused).await;
        };
        let route = call.route.clone();
        let Some(requests) = call.requests.as_ref().map(|queue| queue.sender.clone()) else {
            let message = if route.method.kind().client_streams() {
                format!("call `{id}` is half-closed; it takes no more messages")
            } else {
                format!("`{}` takes exactly one request message", route.full_name)
            };
            return self
                .refuse(
                    Some(id),
                    refused,
                    Rejection::NotAccepted,
                    Code::FailedPrecondition,
                    message,
                )
                .await;
        };
        let malformed = match (frame.payload, &frame.payloads) {
            (Some(_), Some(_)) => Some("`message` frame has both `payload` and `payloads`"),
            (None, None) if frame.end => return self.half_close(id).await,
            (None, None) => Some("`message` frame has no `payload`"),
            _ => None,
        };
        if let Some(message) = malformed {
            return self.refuse_invalid(Some(id), refused, message).await;
        }
        let queue = self.shared.config.call_queue_messages;
        if frame
            .payloads
            .as_ref()
            .is_some_and(|payloads| payloads.len() > queue)
        {
            // Never within credit, which is at most the queue.
            let message =
                format!("a `message` envelope holds more than {queue} messages, the call's credit");
            return self.fail(id, Status::resource_exhausted(message)).await;
        }
        let payloads = frame.payload.iter().chain(frame.payloads.iter().flatten());
        for payload in payloads {
            let message = match route.method.decode_request(payload.get()) {
                Ok(message) => message,
                Err(err) => {
                    let message =
                        format!("invalid request payload for `{}`: {err}", route.full_name);
                    return self.fail(id, Status::invalid_argument(message)).await;
                }
            };
            // Never waits: a v2 client sends only what the bridge's credit
            // allows, which the queue always has room for, and a full
            // queue must not stop the socket's other calls.
            match requests.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let message = match self.protocol {
                        Protocol::V1 => {
                            format!("client sent more than {queue} messages ahead of the backend")
                        }
                        Protocol::V2 => format!(
                            "client sent more messages than its credit allows (a queue of {queue})"
                        ),
                    };
                    return self.fail(id, Status::resource_exhausted(message)).await;
                }
                // The call is finishing; its final frame is on its way.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        if frame.end {
            self.half_close(id).await;
        }
    }

    async fn half_close(&mut self, id: &str) {
        match self.open_call(id) {
            Some(call) => {
                if let Some(queue) = call.requests.take() {
                    queue.half_close();
                }
            }
            None => self.refuse_not_open(id, Some(FrameType::End)).await,
        }
    }

    /// v2: the client takes `messages` more stream responses of a call.
    async fn credit(&mut self, id: &str, frame: &Envelope<'_>) {
        let Some(messages) = frame.messages.filter(|n| (1..=MAX_WINDOW).contains(n)) else {
            let message = format!("`credit` needs `messages` from 1 to {MAX_WINDOW}");
            return self
                .refuse_invalid(Some(id), Some(FrameType::Credit), message)
                .await;
        };
        // Credit for a call that has ended crossed its end on the wire, and
        // a call without a window needs none: both are ignored.
        if let Some(window) = self.open_call(id).and_then(|call| call.window.as_ref()) {
            window.grant(messages);
        }
    }

    async fn cancel(&mut self, id: &str) {
        if self.open_call(id).is_none() {
            // A cancel that crossed the call's end on the wire. v2 ignores
            // it, as HTTP/2 ignores RST_STREAM on a closed stream.
            if self.protocol == Protocol::V2 {
                return;
            }
            return self.refuse_not_open(id, Some(FrameType::Cancel)).await;
        }
        self.fail(id, Status::cancelled("cancelled by the client"))
            .await;
    }

    /// Ends an open call with `status`, cancelling it at the backend.
    async fn fail(&mut self, id: &str, status: Status) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        // Dropping the task's future resets its HTTP/2 stream, which is how
        // the backend learns of the cancellation.
        call.task.abort();
        if call.finish.claim() {
            tracing::debug!(id = %Untrusted(id), method = %call.route.full_name, code = ?status.code(), "call ended by the bridge");
            self.shared
                .metrics
                .call_ended(&call.route.full_name, status.code());
            let echo = self.protocol.method_echo(&call.method_echo);
            let status = Status::new(status.code(), bounded_message(status.message()));
            let frame = call::error_frame(id, echo, &status, None);
            self.send(frame);
        }
    }

    /// Ends every open call with `status`, telling the client.
    async fn fail_all(&mut self, status: Status) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.fail(&id, status.clone()).await;
        }
    }

    async fn end_refused(&mut self, refused: Refused<'_>) {
        let Refused {
            id,
            method_echo,
            status,
        } = refused;
        let status = Status::with_details_and_metadata(
            status.code(),
            bounded_message(status.message()),
            status.details().to_vec().into(),
            status.metadata().clone(),
        );
        if self.log_refusal() {
            tracing::info!(id = %Untrusted(id), method = %Untrusted(method_echo), code = ?status.code(), message = %Untrusted(status.message()), "refused call");
        } else {
            tracing::debug!(id = %Untrusted(id), method = %Untrusted(method_echo), code = ?status.code(), message = %Untrusted(status.message()), "refused call");
        }
        let route = self.shared.services.resolve(method_echo);
        let method_label = match &route {
            Ok(route) => route.full_name.as_str(),
            Err(_) => "unknown",
        };
        self.shared.metrics.call_ended(method_label, status.code());
        let echo = self.protocol.method_echo(method_echo);
        let frame = call::error_frame(id, echo, &status, None);
        self.send(frame);
    }

    /// A frame that is refused without ending any call.
    /// `refused` is the type of the envelope refused, where it could be
    /// read; v2 tells the client.
    async fn refuse(
        &mut self,
        id: Option<&str>,
        refused: Option<FrameType>,
        reason: Rejection,
        code: Code,
        message: impl Into<String>,
    ) {
        let message = message.into();
        let message = bounded_message(&message).into_owned();
        if self.log_refusal() {
            tracing::info!(id = ?id.map(Untrusted), ?code, message = %Untrusted(&message), "refused frame");
        } else {
            tracing::debug!(id = ?id.map(Untrusted), ?code, message = %Untrusted(&message), "refused frame");
        }
        self.shared.metrics.rejected(reason);
        let frame = Envelope {
            frame_type: Some(FrameType::Error),
            id: id.map(Into::into),
            error: Some(message.into()),
            code: Some(code as i32),
            code_name: Some(code_name(code).into()),
            refused: refused.filter(|_| self.protocol == Protocol::V2),
            ..Envelope::default()
        };
        self.send(frame.to_json());
    }

    /// A frame that is not a valid envelope: `INVALID_ARGUMENT`.
    async fn refuse_invalid(
        &mut self,
        id: Option<&str>,
        refused: Option<FrameType>,
        message: impl Into<String>,
    ) {
        self.refuse(
            id,
            refused,
            Rejection::Malformed,
            Code::InvalidArgument,
            message,
        )
        .await;
    }

    async fn refuse_not_open(&mut self, id: &str, refused: Option<FrameType>) {
        let message = format!("no open call has id `{id}`");
        self.refuse(
            Some(id),
            refused,
            Rejection::NotOpen,
            Code::FailedPrecondition,
            message,
        )
        .await;
    }

    /// Queues an answer of the reader's without waiting for room.
    fn send(&mut self, envelope: String) {
        if self.out.send_control(envelope) == Err(ControlError::Full) {
            self.unread = true;
        }
    }

    /// Whether this refusal may be logged at `info`: the first few of a
    /// socket are, the rest only at `debug`.
    fn log_refusal(&mut self) -> bool {
        self.refusals_logged = self.refusals_logged.saturating_add(1);
        if self.refusals_logged == LOGGED_REFUSALS + 1 {
            tracing::info!("more refusals on this connection are logged at debug level only");
        }
        self.refusals_logged <= LOGGED_REFUSALS
    }

    /// The open call with this id, forgetting it if it has already ended.
    fn open_call(&mut self, id: &str) -> Option<&mut OpenCall> {
        if self
            .calls
            .get(id)
            .is_some_and(|call| call.finish.is_claimed())
        {
            self.calls.remove(id);
        }
        self.calls.get_mut(id)
    }

    fn reap_finished(&mut self) {
        if self.calls.len() >= self.shared.config.max_calls_per_connection {
            self.calls.retain(|_, call| !call.finish.is_claimed());
        }
    }

    /// Whether a unary or client-streaming call is still running; those are
    /// let finish when the bridge shuts down.
    fn has_unary_calls(&mut self) -> bool {
        self.calls.retain(|_, call| !call.finish.is_claimed());
        self.calls
            .values()
            .any(|call| !call.route.method.kind().server_streams())
    }

    /// Cancels every open call at the backend; the client is gone.
    fn cancel_all(&mut self) {
        for (_, call) in self.calls.drain() {
            call.task.abort();
            if call.finish.claim() {
                self.shared
                    .metrics
                    .call_ended(&call.route.full_name, Code::Cancelled);
            }
        }
    }
}

/// Why a request does not become a call: the status that ends it (an
/// authenticator's, with its details and trailers, or the bridge's own).
/// Boxed, as tonic's `Status` is large.
type Refusal = Box<Status>;

fn refusal(code: Code, message: String) -> Refusal {
    Box::new(Status::new(code, message))
}

/// The sooner of the client's deadline and the bridge's limit, if any.
fn deadline(limits: &BridgeConfig, timeout_ms: Option<u64>) -> Result<Option<Deadline>, Refusal> {
    let client_deadline = match timeout_ms {
        Some(0) => {
            return Err(refusal(
                Code::InvalidArgument,
                "`timeoutMs` must be positive".into(),
            ));
        }
        Some(ms) => Some(Deadline {
            after: Duration::from_millis(ms),
            bridge_limit: false,
        }),
        None => None,
    };
    let bridge_deadline = limits.max_call_duration.map(|after| Deadline {
        after,
        bridge_limit: true,
    });
    Ok(match (client_deadline, bridge_deadline) {
        (Some(client), Some(bridge)) if bridge.after < client.after => Some(bridge),
        (Some(client), _) => Some(client),
        (None, bridge) => bridge,
    })
}

/// v2: the stream responses the client said it takes at first.
fn response_window(route: &Route, window: Option<u64>) -> Result<Option<ResponseWindow>, Refusal> {
    match window {
        Some(window) if window > MAX_WINDOW => {
            let message = format!("`window` is larger than {MAX_WINDOW}");
            Err(refusal(Code::InvalidArgument, message))
        }
        Some(window) if route.method.kind().server_streams() => {
            Ok(Some(ResponseWindow::new(window)))
        }
        // A call with one response needs no window.
        Some(_) | None => Ok(None),
    }
}

/// The request message that comes with the request frame, as protobuf.
fn first_request(route: &Route, frame: &Envelope<'_>) -> Result<Option<Bytes>, Refusal> {
    let first = match frame.payload {
        Some(payload) => Some(payload.get()),
        // A call that takes one request always sends one: the empty message.
        None if !route.method.kind().client_streams() => Some("{}"),
        None => None,
    };
    first
        .map(|json| route.method.decode_request(json))
        .transpose()
        .map_err(|err| {
            refusal(
                Code::InvalidArgument,
                format!("invalid request payload for `{}`: {err}", route.full_name),
            )
        })
}

/// A call refused before it started.
struct Refused<'a> {
    id: &'a str,
    method_echo: &'a str,
    status: Status,
}

/// The id of a frame that did not parse as an envelope, where it has one,
/// so that the refusal can name the call it concerns.
fn salvage_id(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct JustTheId {
        id: String,
    }
    serde_json::from_str::<JustTheId>(text)
        .ok()
        .map(|frame| frame.id)
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
