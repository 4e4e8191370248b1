//! One WebSocket: a reader that dispatches frames to calls, and one writer.
//!
//! The reader owns the table of open calls, so it needs no lock; each call
//! runs as its own task and hands its frames to the writer through a bounded
//! queue. When the client stops reading, the queue fills, the call tasks
//! wait, and HTTP/2 flow control pushes back on the backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::bridge::Shared;
use crate::call::{self, CallSpec, Finish, Outbox};
use crate::envelope::{Envelope, FrameType, code_name};
use crate::metadata;
use crate::service::{ResolveError, Route};

/// Longest id a client may choose.
const MAX_ID_LEN: usize = 256;
/// Frames queued for the writer before call tasks wait.
const OUTBOX_FRAMES: usize = 128;
/// How long the writer may take to flush a close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub(crate) async fn serve(socket: WebSocket, shared: Arc<Shared>) {
    let (sink, mut incoming) = socket.split();
    let (out, outgoing) = mpsc::channel(OUTBOX_FRAMES);
    let writer = tokio::spawn(write_frames(sink, outgoing));
    let mut connection = Connection {
        shared: shared.clone(),
        calls: HashMap::new(),
        out,
    };

    let limits = &shared.limits;
    let mut ping = limits.ping_interval.map(|every| {
        let mut interval = tokio::time::interval_at(Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut last_heard = Instant::now();
    let close = loop {
        let idle_deadline = limits.idle_timeout.map(|idle| last_heard + idle);
        tokio::select! {
            frame = incoming.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => connection.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        connection
                            .refuse(None, Code::InvalidArgument, "binary frames are not supported; send JSON envelopes as text frames")
                            .await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(err)) => break close_for_read_error(err),
                }
            }
            _ = tick(&mut ping) => {
                if connection.out.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
            _ = sleep_until(idle_deadline) => {
                tracing::debug!("closing idle connection");
                break Some(close_frame(close_code::NORMAL, "idle timeout"));
            }
        }
    };

    connection.cancel_all();
    if let Some(frame) = close {
        let _ = connection.out.send(Message::Close(Some(frame))).await;
    }
    drop(connection);
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
}

/// The one task that writes to the socket. It takes every frame that is
/// already waiting before it flushes, so a burst costs one flush.
async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::Receiver<Message>,
) {
    while let Some(first) = outgoing.recv().await {
        let closing = matches!(first, Message::Close(_));
        if sink.feed(first).await.is_err() {
            return;
        }
        while let Ok(next) = outgoing.try_recv() {
            if sink.feed(next).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() || closing {
            return;
        }
    }
    let _ = sink.close().await;
}

fn close_for_read_error(err: axum::Error) -> Option<CloseFrame> {
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(capacity)) => {
            tracing::info!(%capacity, "closing connection: frame too large");
            Some(close_frame(close_code::SIZE, "frame too large"))
        }
        _ => {
            tracing::debug!(error = %inner, "connection read failed");
            None
        }
    }
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
    requests: Option<mpsc::Sender<Bytes>>,
    task: AbortHandle,
    finish: Finish,
}

struct Connection {
    shared: Arc<Shared>,
    calls: HashMap<String, OpenCall>,
    out: Outbox,
}

impl Connection {
    async fn on_text(&mut self, text: &str) {
        let frame = match Envelope::parse(text) {
            Ok(frame) => frame,
            Err(err) => {
                let id = salvage_id(text);
                tracing::info!(error = %err, "refused malformed frame");
                self.refuse(
                    id.as_deref(),
                    Code::InvalidArgument,
                    format!("malformed frame: {err}"),
                )
                .await;
                return;
            }
        };
        let Some(id) = frame.id.as_deref().filter(|id| !id.is_empty()) else {
            self.refuse(None, Code::InvalidArgument, "frame has no `id`")
                .await;
            return;
        };
        if id.len() > MAX_ID_LEN {
            self.refuse(
                None,
                Code::InvalidArgument,
                format!("`id` is longer than {MAX_ID_LEN} bytes"),
            )
            .await;
            return;
        }
        match frame.frame_type {
            Some(FrameType::Request) => self.open(id, &frame).await,
            Some(FrameType::Message) => self.push(id, &frame).await,
            Some(FrameType::End) => self.half_close(id).await,
            Some(FrameType::Cancel) => self.cancel(id).await,
            Some(other @ (FrameType::Response | FrameType::Error)) => {
                let message = format!("clients do not send `{other:?}` frames").to_lowercase();
                self.refuse(Some(id), Code::InvalidArgument, message).await;
            }
            None => {
                self.refuse(Some(id), Code::InvalidArgument, "frame has no `type`")
                    .await
            }
        }
    }

    async fn open(&mut self, id: &str, frame: &Envelope<'_>) {
        if self.open_call(id).is_some() {
            let message = format!("call `{id}` is still open; choose a new id");
            self.refuse(Some(id), Code::AlreadyExists, message).await;
            return;
        }
        let method_echo = frame.method.as_deref().unwrap_or_default();
        // From here on the client waits for a `response` frame on `id`.
        let refused = |code: Code, message: String| Refused {
            id,
            method_echo,
            status: Status::new(code, message),
        };
        let route = match self.shared.registry.resolve(method_echo) {
            Ok(route) => route.clone(),
            Err(ResolveError::Unknown) => {
                return self
                    .end_refused(refused(
                        Code::Unimplemented,
                        format!("unknown method `{method_echo}`"),
                    ))
                    .await;
            }
            Err(ResolveError::Ambiguous) => {
                let message = format!(
                    "method name `{method_echo}` is ambiguous; use its full name `package.Service/{method_echo}`"
                );
                return self
                    .end_refused(refused(Code::Unimplemented, message))
                    .await;
            }
        };
        self.reap_finished();
        if self.calls.len() >= self.shared.limits.max_calls_per_connection {
            let message = format!(
                "too many calls in flight on this connection (limit {})",
                self.shared.limits.max_calls_per_connection
            );
            return self
                .end_refused(refused(Code::ResourceExhausted, message))
                .await;
        }

        let mut grpc_metadata = MetadataMap::new();
        if let Some(client_metadata) = &frame.metadata {
            if let Err(message) = metadata::to_grpc(client_metadata, &mut grpc_metadata) {
                return self
                    .end_refused(refused(Code::InvalidArgument, message))
                    .await;
            }
        }
        let timeout = match frame.timeout_ms {
            Some(0) => {
                return self
                    .end_refused(refused(
                        Code::InvalidArgument,
                        "`timeoutMs` must be positive".into(),
                    ))
                    .await;
            }
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        };

        let kind = route.method.kind();
        let first = match frame.payload {
            Some(payload) => Some(payload.get()),
            // A call that takes one request always sends one: the empty message.
            None if !kind.client_streams() => Some("{}"),
            None => None,
        };
        let first = match first
            .map(|json| route.method.decode_request(json))
            .transpose()
        {
            Ok(first) => first,
            Err(err) => {
                let message = format!("invalid request payload for `{}`: {err}", route.full_name);
                return self
                    .end_refused(refused(Code::InvalidArgument, message))
                    .await;
            }
        };

        let spec = CallSpec {
            id: id.to_owned(),
            method_echo: method_echo.to_owned(),
            route: route.clone(),
            metadata: grpc_metadata,
            timeout,
        };
        let finish = Finish::default();
        let first = stream::iter(first);
        let (requests, task) = if kind.client_streams() && !frame.end {
            let (sender, receiver) = mpsc::channel(self.shared.limits.call_queue_messages);
            let more = tokio_stream_from(receiver);
            let task = self.spawn(spec, first.chain(more), finish.clone());
            (Some(sender), task)
        } else {
            (None, self.spawn(spec, first, finish.clone()))
        };
        self.calls.insert(
            id.to_owned(),
            OpenCall {
                route,
                method_echo: method_echo.to_owned(),
                requests,
                task,
                finish,
            },
        );
    }

    fn spawn(
        &self,
        spec: CallSpec,
        requests: impl futures_util::Stream<Item = Bytes> + Send + 'static,
        finish: Finish,
    ) -> AbortHandle {
        tracing::debug!(id = %spec.id, method = %spec.route.full_name, "call opened");
        let channel = self.shared.channel.clone();
        tokio::spawn(call::run(spec, requests, channel, self.out.clone(), finish)).abort_handle()
    }

    /// One more request message on an open call.
    async fn push(&mut self, id: &str, frame: &Envelope<'_>) {
        let Some(call) = self.open_call(id) else {
            return self.refuse_not_open(id).await;
        };
        let route = call.route.clone();
        let Some(requests) = call.requests.clone() else {
            let message = if route.method.kind().client_streams() {
                format!("call `{id}` is half-closed; it takes no more messages")
            } else {
                format!("`{}` takes exactly one request message", route.full_name)
            };
            return self
                .refuse(Some(id), Code::FailedPrecondition, message)
                .await;
        };
        let Some(payload) = frame.payload else {
            if frame.end {
                return self.half_close(id).await;
            }
            return self
                .refuse(
                    Some(id),
                    Code::InvalidArgument,
                    "`message` frame has no `payload`",
                )
                .await;
        };
        let message = match route.method.decode_request(payload.get()) {
            Ok(message) => message,
            Err(err) => {
                let message = format!("invalid request payload for `{}`: {err}", route.full_name);
                return self.fail(id, Status::invalid_argument(message)).await;
            }
        };
        match requests.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let message = format!(
                    "client sent more than {} messages ahead of the backend",
                    self.shared.limits.call_queue_messages
                );
                return self.fail(id, Status::resource_exhausted(message)).await;
            }
            // The call is finishing; its final frame is on its way.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        if frame.end {
            self.half_close(id).await;
        }
    }

    async fn half_close(&mut self, id: &str) {
        match self.open_call(id) {
            Some(call) => call.requests = None,
            None => self.refuse_not_open(id).await,
        }
    }

    async fn cancel(&mut self, id: &str) {
        if self.open_call(id).is_none() {
            return self.refuse_not_open(id).await;
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
            tracing::debug!(id, method = %call.route.full_name, code = ?status.code(), "call ended by the bridge");
            self.send(call::error_frame(id, &call.method_echo, &status, None))
                .await;
        }
    }

    async fn end_refused(&mut self, refused: Refused<'_>) {
        let Refused {
            id,
            method_echo,
            status,
        } = refused;
        tracing::info!(id, method = method_echo, code = ?status.code(), message = status.message(), "refused call");
        self.send(call::error_frame(id, method_echo, &status, None))
            .await;
    }

    /// A frame that is refused without ending any call.
    async fn refuse(&mut self, id: Option<&str>, code: Code, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(id, ?code, %message, "refused frame");
        let frame = Envelope {
            frame_type: Some(FrameType::Error),
            id: id.map(Into::into),
            error: Some(message.into()),
            code: Some(code as i32),
            code_name: Some(code_name(code).into()),
            ..Envelope::default()
        };
        self.send(Message::Text(frame.to_json().into())).await;
    }

    async fn refuse_not_open(&mut self, id: &str) {
        let message = format!("no open call has id `{id}`");
        self.refuse(Some(id), Code::FailedPrecondition, message)
            .await;
    }

    async fn send(&self, frame: Message) {
        let _ = self.out.send(frame).await;
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
        if self.calls.len() >= self.shared.limits.max_calls_per_connection {
            self.calls.retain(|_, call| !call.finish.is_claimed());
        }
    }

    fn cancel_all(&mut self) {
        for (_, call) in self.calls.drain() {
            call.task.abort();
        }
    }
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

fn tokio_stream_from(
    mut receiver: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Bytes> {
    stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
