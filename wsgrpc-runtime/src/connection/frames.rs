//! What the client sends, turned into what the socket's calls do: each
//! text frame read into [`ClientFrame`]s, each frame dispatched, and every
//! refusal answered.

use tonic::{Code, Status};

use super::{Connection, SocketWindows};
use crate::envelope::{self, Envelope, FrameType, Protocol};
use crate::flow::{self, ByteWindow, ESTIMATE_PING, Estimator, RequestWindows};
use crate::frame::{
    Amount, ClientFrame, ClientSettings, MAX_ID_LEN, Refusal, Request, Response, ServerFrame,
    Settings, StatusFields, Unreadable,
};
use crate::metrics::Rejection;
use crate::outbox::{ControlError, Outgoing};
use crate::untrusted::{Untrusted, bounded_message};

/// Refusals logged at `info` per socket; the rest go to `debug` (and every
/// one is counted in `/metrics`), so that a client cannot flood the log.
const LOGGED_REFUSALS: u32 = 10;

/// A call refused before it started.
struct Refused<'a> {
    id: &'a str,
    method_echo: &'a str,
    status: Status,
}

impl Connection {
    /// v2: the bridge's limits, and the byte windows it offers.
    pub(super) fn settings(&self) -> String {
        let limits = &self.shared.config;
        ServerFrame::Settings(Settings {
            max_frame_bytes: limits.max_frame_size,
            max_calls_per_connection: limits.max_calls_per_connection,
            call_queue_messages: limits.call_queue_messages,
            window_bytes: limits.window_bytes,
            connection_window_bytes: limits.connection_window_bytes,
        })
        .to_json()
    }

    /// A text frame: one envelope in v1, an array of them in v2.
    pub(super) fn on_text(&mut self, text: &str) {
        match self.protocol {
            Protocol::V1 => match Envelope::parse(text) {
                Ok(envelope) => self.on_envelope(envelope),
                Err(err) => self.refuse_malformed(text, err),
            },
            Protocol::V2 => match envelope::parse_batch(text) {
                Ok(envelopes) => {
                    // A session counts every envelope but those about the
                    // socket, as the client does, the unreadable too.
                    let mut counted = 0;
                    for envelope in envelopes {
                        let kind = envelope
                            .as_ref()
                            .ok()
                            .and_then(|envelope| envelope.frame_type);
                        if ClientFrame::is_counted(kind) && self.is_counting() {
                            counted += 1;
                        }
                        match envelope {
                            Ok(envelope) => self.on_envelope(envelope),
                            Err((err, text)) => self.refuse_malformed(text, err),
                        }
                        if self.closing.is_some() {
                            return;
                        }
                    }
                    self.count_received(counted, text.len());
                }
                Err(err) => {
                    let message =
                        format!("malformed frame: a v2 frame is a JSON array of envelopes: {err}");
                    self.refuse_invalid(None, None, message);
                }
            },
        }
    }

    fn refuse_malformed(&mut self, text: &str, err: serde_json::Error) {
        self.heard_from = true;
        let id = salvage_id(text);
        let message = format!("malformed frame: {err}");
        self.refuse_invalid(id.as_deref(), None, message);
    }

    fn on_envelope(&mut self, envelope: Envelope<'_>) {
        let first = !std::mem::replace(&mut self.heard_from, true);
        let frame = match ClientFrame::read(envelope, self.protocol) {
            Ok(frame) => frame,
            Err(Unreadable { id, kind, message }) => {
                return self.refuse_invalid(id.as_deref(), kind, message);
            }
        };
        match frame {
            ClientFrame::Request(request) => self.open(&request),
            ClientFrame::Messages { id, payloads, end } => self.push(&id, &payloads, end),
            ClientFrame::End { id } => self.half_close(&id),
            ClientFrame::Cancel { id } => self.cancel(&id),
            ClientFrame::Credit { id, grant } => self.credit(id.as_deref(), grant),
            ClientFrame::Settings(settings) if first => self.take_settings(settings),
            ClientFrame::Settings(_) => {
                let message = "the client's `settings` must be its first envelope";
                self.refuse_invalid(None, Some(FrameType::Settings), message);
            }
            ClientFrame::Ping { data } => {
                self.send_about_socket(ServerFrame::Pong { data }.to_json())
            }
            ClientFrame::Pong => {}
            ClientFrame::Token { token } => self.refresh(&token),
            ClientFrame::Resume { received } => self.on_resume(received),
            ClientFrame::Ack { received } => self.on_ack(received),
        }
    }

    fn open(&mut self, request: &Request<'_>) {
        let id = &*request.id;
        if self.open_call(id).is_some() {
            let message = format!("call `{id}` is still open; choose a new id");
            return self.refuse(
                Some(id),
                Some(FrameType::Request),
                Rejection::DuplicateId,
                Code::AlreadyExists,
                message,
            );
        }
        // From here on the client waits for a `response` frame on `id`.
        match self.prepare(request) {
            Ok((spec, first)) => self.start(spec, first, request.end),
            Err(status) => self.end_refused(Refused {
                id,
                method_echo: &request.method,
                status: *status,
            }),
        }
    }

    /// More request messages on an open call. On a socket with byte
    /// windows they count against its window whatever becomes of them, and
    /// what is not queued is given back at once.
    fn push(&mut self, id: &str, payloads: &[&serde_json::value::RawValue], end: bool) {
        let cost: u64 = payloads
            .iter()
            .map(|payload| flow::cost(payload.get().len()))
            .sum();
        if let Some(windows) = &self.windows
            && !windows.requests.receive(cost)
        {
            tracing::info!("closing a connection that sent past its window");
            self.shared.metrics.rejected(Rejection::Overrun);
            self.closing = Some("sent more than the socket's window");
            return;
        }
        if self.windows.is_some() {
            self.estimate(cost);
        }
        let queued = self.queue_messages(id, payloads, end);
        if let Some(windows) = &self.windows
            && cost > queued
        {
            windows.requests.give_back(cost - queued, &self.out);
        }
    }

    /// Queues a call's request messages; what they cost, as far as queued.
    fn queue_messages(
        &mut self,
        id: &str,
        payloads: &[&serde_json::value::RawValue],
        end: bool,
    ) -> u64 {
        let refused = Some(FrameType::Message);
        let in_bytes = self.windows.is_some();
        let protocol = self.protocol;
        let queue_messages = self.shared.config.call_queue_messages;
        let Some(call) = self.open_call(id) else {
            self.refuse_not_open(id, refused);
            return 0;
        };
        let route = call.route.clone();
        let Some(queue) = call.requests.as_ref() else {
            let message = if route.method.kind().client_streams() {
                format!("call `{id}` is half-closed; it takes no more messages")
            } else {
                format!("`{}` takes exactly one request message", route.full_name)
            };
            self.refuse(
                Some(id),
                refused,
                Rejection::NotAccepted,
                Code::FailedPrecondition,
                message,
            );
            return 0;
        };
        let (sender, window) = (queue.sender.clone(), queue.window.clone());
        if !in_bytes && payloads.len() > queue_messages {
            // Never within credit, which is at most the queue.
            let message = format!(
                "a `message` envelope holds more than {queue_messages} messages, the call's credit"
            );
            self.fail(id, Status::resource_exhausted(message));
            return 0;
        }
        let mut queued = 0;
        for payload in payloads {
            let json = payload.get();
            let cost = if in_bytes { flow::cost(json.len()) } else { 1 };
            if !window.receive(cost) {
                let message = match (protocol, in_bytes) {
                    (Protocol::V1, _) => format!(
                        "client sent more than {queue_messages} messages ahead of the backend"
                    ),
                    (_, false) => format!(
                        "client sent more messages than its credit allows (a queue of {queue_messages})"
                    ),
                    (_, true) => "client sent more bytes than the call's window allows".to_owned(),
                };
                self.fail(id, Status::resource_exhausted(message));
                return queued;
            }
            let message = match route.method.decode_request(json) {
                Ok(message) => message,
                Err(err) => {
                    let message =
                        format!("invalid request payload for `{}`: {err}", route.full_name);
                    self.fail(id, Status::invalid_argument(message));
                    return queued;
                }
            };
            // Never waits: what a client may send is bounded by its credit,
            // and a full queue must not stop the socket's other calls.
            if sender.send((message, cost)).is_err() {
                // The call is finishing; its final frame is on its way.
                return queued;
            }
            if in_bytes {
                queued += cost;
            }
        }
        if end {
            self.half_close(id);
        }
        queued
    }

    fn half_close(&mut self, id: &str) {
        match self.open_call(id) {
            Some(call) => {
                if let Some(queue) = call.requests.take() {
                    queue.half_close();
                }
            }
            None => self.refuse_not_open(id, Some(FrameType::End)),
        }
    }

    /// v2: the client takes more of a call's stream responses, or of the
    /// socket's.
    fn credit(&mut self, id: Option<&str>, grant: Amount) {
        let Some(id) = id else {
            match &self.windows {
                Some(windows) => {
                    if let Amount::Bytes(bytes) = grant {
                        let available = windows.responses.grant(bytes);
                        // A session keeps what is unacknowledged: room for
                        // twice the window the client has grown to.
                        if let Some(session) = &self.session {
                            session.retained.raise_limit(super::kept_bytes(available));
                        }
                    }
                }
                None => {
                    let message = "a `credit` without `id` needs byte windows: send the client's `settings` first";
                    self.refuse_invalid(None, Some(FrameType::Credit), message);
                }
            }
            return;
        };
        // Credit for a call that has ended crossed its end on the wire, and
        // a call without a window needs none: both are ignored.
        if let Some(window) = self.open_call(id).and_then(|call| call.window.as_ref()) {
            window.grant(grant);
        }
    }

    /// The client takes byte windows: the bridge sends at most
    /// `connection_window_bytes` of stream responses before socket credit,
    /// and counts what the client sends in bytes from now on.
    fn take_settings(&mut self, settings: ClientSettings) {
        self.start_counting(settings.connection_window_bytes);
        self.json = settings.json;
        // A resumed session keeps the windows it had: what is in flight on
        // them is sent again, not anew.
        if self.windows.is_some() {
            return;
        }
        let limits = &self.shared.config;
        self.windows = Some(SocketWindows {
            responses: ByteWindow::new(settings.connection_window_bytes),
            requests: RequestWindows::new(
                limits.window_bytes,
                limits.connection_window_bytes,
                limits.max_window_bytes,
            ),
            estimator: Estimator::default(),
        });
    }

    /// A WebSocket pong: the answer to a round-trip ping grows the request
    /// windows where the path is their limit.
    pub(super) fn on_pong(&mut self, payload: &[u8]) {
        if payload != ESTIMATE_PING {
            return;
        }
        let Some(windows) = &mut self.windows else {
            return;
        };
        let now = tokio::time::Instant::now();
        let Some(wanted) = windows
            .estimator
            .answered(windows.requests.call_window(), now)
        else {
            return;
        };
        let grown = windows.requests.grow(wanted, &self.out);
        if grown == 0 {
            return;
        }
        tracing::debug!(
            window = windows.requests.call_window(),
            "request windows grown"
        );
        for call in self.calls.values() {
            if let Some(queue) = &call.requests {
                queue.window.grow(grown, &self.out);
            }
        }
    }

    /// Counts request bytes for the round-trip estimate, pinging when a
    /// new sample starts.
    fn estimate(&mut self, bytes: u64) {
        let Some(windows) = &mut self.windows else {
            return;
        };
        if windows
            .estimator
            .received(bytes, tokio::time::Instant::now())
        {
            let ping = Outgoing::Ping(bytes::Bytes::from_static(ESTIMATE_PING));
            let _ = self.out.control(ping);
        }
    }

    fn cancel(&mut self, id: &str) {
        if self.open_call(id).is_none() {
            // A cancel that crossed the call's end on the wire. v2 ignores
            // it, as HTTP/2 ignores RST_STREAM on a closed stream.
            if self.protocol == Protocol::V2 {
                return;
            }
            return self.refuse_not_open(id, Some(FrameType::Cancel));
        }
        self.fail(id, Status::cancelled("cancelled by the client"));
    }

    fn end_refused(&mut self, refused: Refused<'_>) {
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
        let frame = ServerFrame::Response(Response {
            method: self.protocol.method_echo(method_echo),
            id,
            end: true,
            // A request that crossed the bridge's `goaway` started nothing.
            unprocessed: self.draining.is_some() && self.protocol == Protocol::V2,
            status: Some(StatusFields::of(&status)),
            headers: None,
            trailers: crate::metadata::from_grpc(status.metadata()),
        });
        self.send(frame.to_json());
    }

    /// A frame that is refused without ending any call.
    /// `refused` is the type of the envelope refused, where it could be
    /// read; v2 tells the client.
    pub(super) fn refuse(
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
        let status = Status::new(code, message);
        let frame = ServerFrame::Error(Refusal {
            id,
            status: StatusFields::of(&status),
            refused: refused.filter(|_| self.protocol == Protocol::V2),
        });
        self.send(frame.to_json());
    }

    /// A frame that is not a valid envelope: `INVALID_ARGUMENT`.
    pub(super) fn refuse_invalid(
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
        );
    }

    fn refuse_not_open(&mut self, id: &str, refused: Option<FrameType>) {
        let message = format!("no open call has id `{id}`");
        self.refuse(
            Some(id),
            refused,
            Rejection::NotOpen,
            Code::FailedPrecondition,
            message,
        );
    }

    /// A fresh token: checked as the authenticator checks an upgrade's
    /// `Authorization: Bearer`, it must name the socket's identity; then
    /// the socket lives on until it runs out.
    fn refresh(&mut self, token: &str) {
        let refused = Some(FrameType::Token);
        let Some(auth) = self.shared.authenticator.clone() else {
            let message = "the bridge authenticates no one: it takes no `token`";
            return self.refuse(
                None,
                refused,
                Rejection::Malformed,
                Code::FailedPrecondition,
                message,
            );
        };
        if !self.token_checks.take(tokio::time::Instant::now()) {
            let message = "fresh tokens come too fast: at most one a second is checked";
            return self.refuse(
                None,
                refused,
                Rejection::Unauthenticated,
                Code::ResourceExhausted,
                message,
            );
        }
        let mut headers = axum::http::HeaderMap::new();
        let Ok(bearer) = axum::http::HeaderValue::try_from(format!("Bearer {token}")) else {
            let message = "a `token` is printable ASCII";
            return self.refuse_invalid(None, refused, message);
        };
        headers.insert(axum::http::header::AUTHORIZATION, bearer);
        let uri = axum::http::Uri::from_static("/");
        let request = crate::access::UpgradeRequest {
            headers: &headers,
            uri: &uri,
        };
        let identity = match auth.authenticate(&request) {
            Ok(identity) => identity
                .into_iter()
                .map(|(key, value)| (key.to_ascii_lowercase(), value))
                .collect::<crate::metadata::Metadata>(),
            Err(status) => {
                let code = crate::access::refusal_code(&status);
                let message = format!("the token was refused: {}", status.message());
                return self.refuse(None, refused, Rejection::Unauthenticated, code, message);
            }
        };
        if identity != self.identity {
            let message = "the token names another identity than the socket's";
            return self.refuse(
                None,
                refused,
                Rejection::Unauthenticated,
                Code::PermissionDenied,
                message,
            );
        }
        self.token_expires = auth.expires(&request).map(super::instant_of);
        if let Some(token) = self.token_frame() {
            self.send_about_socket(token);
        }
    }

    /// `{"type":"token","expiresInMs":…}`, where the socket's token runs
    /// out.
    pub(super) fn token_frame(&self) -> Option<String> {
        let left = self
            .token_expires?
            .saturating_duration_since(tokio::time::Instant::now());
        let expires_in_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        Some(ServerFrame::Token { expires_in_ms }.to_json())
    }

    /// Whether a session counts what arrives now.
    fn is_counting(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.retained.is_active())
    }

    /// Queues an envelope about this socket alone (pong, ack, goaway,
    /// token) without waiting for room, as [`send`](Self::send) does.
    pub(super) fn send_about_socket(&mut self, envelope: String) {
        if self.out.send_socket(envelope).is_err() {
            self.closing.get_or_insert("too many answers left unread");
        }
    }

    /// Queues an answer of the reader's without waiting for room.
    pub(super) fn send(&mut self, envelope: String) {
        if self.out.send_control(envelope) == Err(ControlError::Full) && self.closing.is_none() {
            tracing::info!("closing a connection that does not read what it is sent");
            self.shared.metrics.rejected(Rejection::Unread);
            self.closing = Some("too many answers left unread");
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
