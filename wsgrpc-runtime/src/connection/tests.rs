//! The socket's state machine, driven through channels in place of a
//! WebSocket.
//!
//! Calls go to one of two backends that are not there: a port nobody listens
//! on, where every call fails with `Code::Unavailable`, or a listener that never
//! answers, where a call stays open until the client ends it.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, PollSender};
use tokio_util::task::TaskTracker;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::serve;
use super::validate::deadline;
use crate::access::{AllowedOrigins, Authenticator, UpgradeRequest};
use crate::config::BridgeConfig;
use crate::envelope::{Metadata, Protocol};
use crate::json::JsonRules;
use crate::metrics::Metrics;
use crate::service::{Method, MethodKind, Service, ServiceTable};
use crate::shared::Shared;

/// How long a test waits for a frame the bridge owes it.
const PATIENCE: Duration = Duration::from_secs(5);

const UNARY: &str = "test.Calls/Unary";
const SERVER_STREAM: &str = "test.Calls/Watch";
const CLIENT_STREAM: &str = "test.Calls/Collect";

/// Where the bridge's calls go.
#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    /// Refuses connections: calls fail with `Code::Unavailable`.
    Unreachable,
    /// Accepts connections and never answers: calls stay open.
    Silent,
}

/// The client's end of a socket that `serve` serves.
struct Client {
    protocol: Protocol,
    to_bridge: Option<mpsc::UnboundedSender<Result<Message, axum::Error>>>,
    from_bridge: mpsc::Receiver<Message>,
    /// Envelopes of a v2 frame not yet looked at.
    unread: VecDeque<Value>,
    served: JoinHandle<()>,
    /// Held so that the silent backend's port stays open.
    _listener: Option<TcpListener>,
}

impl Client {
    fn connect(protocol: Protocol, backend: Backend) -> Self {
        Self::connect_with(protocol, backend, None)
    }

    fn connect_with(
        protocol: Protocol,
        backend: Backend,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Self {
        Self::connect_configured(protocol, backend, BridgeConfig::default(), authenticator)
    }

    fn connect_configured(
        protocol: Protocol,
        backend: Backend,
        config: BridgeConfig,
        authenticator: Option<Arc<dyn Authenticator>>,
    ) -> Self {
        let (channel, listener) = backend_channel(backend);
        let shared = shared_with(channel, config, authenticator);
        Self {
            _listener: listener,
            ..Self::connect_to(&shared, protocol, None)
        }
    }

    /// A socket to a bridge whose state is `shared`, with a session key
    /// in its URL where `session_key` is one.
    fn connect_to(shared: &Arc<Shared>, protocol: Protocol, session_key: Option<&str>) -> Self {
        Self::connect_as(shared, protocol, session_key, Metadata::new())
    }

    /// As [`connect_to`](Self::connect_to), for a client the authenticator
    /// knows as `identity`.
    fn connect_as(
        shared: &Arc<Shared>,
        protocol: Protocol,
        session_key: Option<&str>,
        identity: Metadata,
    ) -> Self {
        let upgraded = super::Upgraded {
            identity,
            protocol,
            unfinished: None,
            session_key: session_key.map(str::to_owned),
            expires: None,
            only_to_resume: false,
        };
        Self::connect_upgraded(shared, upgraded)
    }

    /// A socket as the upgrade made it.
    fn connect_upgraded(shared: &Arc<Shared>, upgraded: super::Upgraded) -> Self {
        let protocol = upgraded.protocol;
        let (to_bridge, mut incoming) = mpsc::unbounded_channel();
        let (sink, from_bridge) = mpsc::channel(64);
        let served = tokio::spawn(serve(
            PollSender::new(sink),
            stream::poll_fn(move |cx| incoming.poll_recv(cx)),
            shared.clone(),
            upgraded,
        ));
        Self {
            protocol,
            to_bridge: Some(to_bridge),
            from_bridge,
            unread: VecDeque::new(),
            served,
            _listener: None,
        }
    }

    fn send_message(&self, message: Message) {
        let to_bridge = self.to_bridge.as_ref().expect("the socket is open");
        to_bridge.send(Ok(message)).expect("the bridge reads");
    }

    fn send_text(&self, text: &str) {
        self.send_message(Message::Text(text.into()));
    }

    /// One envelope, in a frame of its own: in v2 an array of one.
    fn send(&self, envelope: Value) {
        match self.protocol {
            Protocol::V1 => self.send_text(&envelope.to_string()),
            Protocol::V2 => self.send_text(&json!([envelope]).to_string()),
        }
    }

    /// The next frame but pings, which a browser answers by itself.
    async fn next_message(&mut self) -> Option<Message> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.from_bridge.recv())
                .await
                .expect("the bridge sends a frame in time");
            if !matches!(frame, Some(Message::Ping(_))) {
                return frame;
            }
        }
    }

    async fn next_frame(&mut self) -> Value {
        let frame = self
            .next_message()
            .await
            .expect("the bridge keeps the socket open");
        let Message::Text(text) = frame else {
            panic!("expected a text frame, got {frame:?}");
        };
        serde_json::from_str(text.as_str()).expect("the bridge sends JSON")
    }

    /// The next envelope the bridge sends, whatever frame it is in.
    async fn next(&mut self) -> Value {
        if let Some(envelope) = self.unread.pop_front() {
            return envelope;
        }
        let frame = self.next_frame().await;
        match self.protocol {
            Protocol::V1 => frame,
            Protocol::V2 => {
                let Value::Array(envelopes) = frame else {
                    panic!("a v2 frame is an array: {frame}");
                };
                self.unread.extend(envelopes);
                self.unread
                    .pop_front()
                    .expect("a v2 frame holds an envelope")
            }
        }
    }

    /// Reads past the v2 settings, which come first.
    async fn connected(protocol: Protocol, backend: Backend) -> Self {
        let mut client = Self::connect(protocol, backend);
        if protocol == Protocol::V2 {
            assert_eq!(client.next().await["type"], "settings");
        }
        client
    }

    /// Opens a call that stays open, on the silent backend.
    fn open(&self, id: &str, method: &str) {
        self.send(json!({"type": "request", "id": id, "method": method}));
    }
}

/// The channel to `backend`, and the listener to hold while it is used.
pub(super) fn backend_channel(backend: Backend) -> (Channel, Option<TcpListener>) {
    match backend {
        Backend::Unreachable => {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port");
            // The listener is dropped: nothing listens on `addr` now.
            (channel_to(addr), None)
        }
        Backend::Silent => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            let addr = listener.local_addr().expect("a bound port");
            (channel_to(addr), Some(listener))
        }
    }
}

fn channel_to(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid uri")
        .connect_lazy()
}

/// A bridge's shared state with the test methods (`Unary`, `Watch`,
/// `Collect` of `test.Calls`), whose messages are `google.protobuf.Empty`.
pub(super) fn shared_with(
    channel: Channel,
    config: BridgeConfig,
    authenticator: Option<Arc<dyn Authenticator>>,
) -> Arc<Shared> {
    let empty = prost_reflect::ReflectMessage::descriptor(&());
    let method = |name: &'static str, kind| Method::new(name, kind, empty.clone(), empty.clone());
    let service = Service::new(
        "test.Calls",
        vec![
            method("Unary", MethodKind::Unary),
            method("Watch", MethodKind::ServerStreaming),
            method("Collect", MethodKind::ClientStreaming),
        ],
    );
    let services = ServiceTable::new();
    services.configure(JsonRules::default(), &[service]);
    let metrics = Metrics::default();
    let sessions = super::Sessions::new(metrics.sessions_parked.clone());
    Arc::new(Shared {
        services,
        channel,
        config,
        origins: AllowedOrigins::default(),
        receive_budget: crate::receive::ReceiveBudget::new(usize::MAX),
        kept_budget: crate::session::KeptBudget::new(usize::MAX),
        sockets_by_identity: std::sync::Mutex::default(),
        authenticator,
        metrics,
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
        open_connections: AtomicUsize::new(0),
        sessions,
    })
}

/// Asserts that `envelope` is a refusal of a frame: an `error` envelope
/// with `code`, which ends no call.
fn assert_refused(envelope: &Value, id: Option<&str>, code: Code) {
    assert_eq!(envelope["type"], "error", "{envelope}");
    assert_eq!(envelope["code"], code as i32, "{envelope}");
    assert_eq!(envelope.get("id").and_then(Value::as_str), id, "{envelope}");
    assert!(envelope.get("end").is_none(), "{envelope}");
}

/// Asserts that the error text of `envelope` mentions `words`.
fn assert_mentions(envelope: &Value, words: &str) {
    let error = envelope["error"].as_str().unwrap_or_default();
    assert!(error.contains(words), "{envelope}");
}

/// Asserts that `envelope` ends call `id` with `code`.
fn assert_ended(envelope: &Value, id: &str, code: Code) {
    assert_eq!(envelope["type"], "response", "{envelope}");
    assert_eq!(envelope["id"], id, "{envelope}");
    assert_eq!(envelope["code"], code as i32, "{envelope}");
    assert_eq!(envelope["end"], true, "{envelope}");
}

#[tokio::test]
async fn v1_sends_no_settings_and_answers_a_call_first() {
    let mut client = Client::connect(Protocol::V1, Backend::Unreachable);
    client.send(json!({"type": "request", "id": "1", "method": "Unary", "payload": {}}));
    let answer = client.next().await;
    assert_ended(&answer, "1", Code::Unavailable);
    // v1 echoes the method as the client spelt it.
    assert_eq!(answer["method"], "Unary");
}

#[tokio::test]
async fn v2_sends_its_settings_before_anything_else() {
    let mut client = Client::connect(Protocol::V2, Backend::Unreachable);
    let settings = client.next_frame().await;
    assert_eq!(
        settings,
        json!([{
            "type": "settings",
            "maxFrameBytes": 4 << 20,
            "maxCallsPerConnection": 100,
            "callQueueMessages": 64,
            "windowBytes": 256 << 10,
            "connectionWindowBytes": 1 << 20,
        }])
    );
    client.send(json!({"type": "request", "id": "1", "method": UNARY}));
    let answer = client.next().await;
    assert_ended(&answer, "1", Code::Unavailable);
    assert!(answer.get("method").is_none(), "{answer}");
}

#[tokio::test]
async fn malformed_json_is_refused_with_the_id_it_could_read() {
    let mut client = Client::connect(Protocol::V1, Backend::Unreachable);
    client.send_text("not json");
    assert_refused(&client.next().await, None, Code::InvalidArgument);
    client.send_text(r#"{"type":"request","id":"7","metod":"Unary"}"#);
    let refusal = client.next().await;
    assert_refused(&refusal, Some("7"), Code::InvalidArgument);
    assert_mentions(&refusal, "metod");
}

#[tokio::test]
async fn v2_refuses_a_frame_that_is_not_an_array_and_reads_on() {
    let mut client = Client::connected(Protocol::V2, Backend::Unreachable).await;
    client.send_text(r#"{"type":"request","id":"1","method":"Unary"}"#);
    assert_refused(&client.next().await, None, Code::InvalidArgument);
    client.send(json!({"type": "request", "id": "2", "method": "Nope"}));
    assert_ended(&client.next().await, "2", Code::Unimplemented);
}

#[tokio::test]
async fn v1_refuses_the_fields_and_envelopes_of_v2() {
    let mut client = Client::connect(Protocol::V1, Backend::Unreachable);
    client.send(json!({"type": "request", "id": "1", "method": UNARY, "window": 8}));
    let refusal = client.next().await;
    assert_refused(&refusal, Some("1"), Code::InvalidArgument);
    assert_mentions(&refusal, "window");
    client.send(json!({"type": "credit", "id": "1"}));
    assert_refused(&client.next().await, Some("1"), Code::InvalidArgument);
}

#[tokio::test]
async fn a_binary_frame_is_refused() {
    let mut client = Client::connect(Protocol::V1, Backend::Unreachable);
    client.send_message(Message::Binary(vec![1, 2, 3].into()));
    let refusal = client.next().await;
    assert_refused(&refusal, None, Code::InvalidArgument);
    assert_mentions(&refusal, "binary");
}

#[tokio::test]
async fn an_unknown_method_ends_the_call_unimplemented() {
    let mut client = Client::connect(Protocol::V1, Backend::Unreachable);
    client.send(json!({"type": "request", "id": "1", "method": "test.Calls/Nope"}));
    let answer = client.next().await;
    assert_ended(&answer, "1", Code::Unimplemented);
    assert_eq!(answer["method"], "test.Calls/Nope");
}

/// Lets every socket in and refuses every call with a status that has
/// details and a trailer.
struct RefuseCalls;

impl Authenticator for RefuseCalls {
    fn authenticate(&self, _request: &UpgradeRequest<'_>) -> Result<Metadata, tonic::Status> {
        Ok(Metadata::new())
    }

    fn authorize_call(
        &self,
        _identity: &Metadata,
        method: &str,
        _metadata: &Metadata,
    ) -> Result<(), tonic::Status> {
        let mut status = tonic::Status::with_details(
            Code::PermissionDenied,
            format!("{method} needs the admin role"),
            bytes::Bytes::from_static(b"\x08\x07"),
        );
        status
            .metadata_mut()
            .insert("x-required-role", "admin".parse().unwrap());
        Err(status)
    }
}

#[tokio::test]
async fn a_call_the_authenticator_refuses_ends_with_its_whole_status() {
    let mut client = Client::connect_with(
        Protocol::V1,
        Backend::Unreachable,
        Some(Arc::new(RefuseCalls)),
    );
    client.send(json!({"type": "request", "id": "1", "method": "test.Calls/Unary"}));
    let answer = client.next().await;
    assert_ended(&answer, "1", Code::PermissionDenied);
    assert_mentions(&answer, "test.Calls/Unary needs the admin role");
    // `-bin` values go unpadded, as gRPC metadata writes them.
    assert_eq!(answer["details"], "CAc", "{answer}");
    assert_eq!(answer["trailers"]["x-required-role"], "admin", "{answer}");
}

#[tokio::test]
async fn a_request_on_an_open_id_is_refused_and_the_open_call_goes_on() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("c", CLIENT_STREAM);
    client.open("c", UNARY);
    assert_refused(&client.next().await, Some("c"), Code::AlreadyExists);
    client.send(json!({"type": "cancel", "id": "c"}));
    let end = client.next().await;
    assert_ended(&end, "c", Code::Cancelled);
    // The end names the call that was open, not the refused request.
    assert_eq!(end["method"], CLIENT_STREAM);
}

#[tokio::test]
async fn v1_refuses_message_end_and_cancel_for_an_id_that_is_not_open() {
    let mut client = Client::connect(Protocol::V1, Backend::Unreachable);
    for frame in [
        json!({"type": "message", "id": "nope", "payload": {}}),
        json!({"type": "end", "id": "nope"}),
        json!({"type": "cancel", "id": "nope"}),
    ] {
        client.send(frame);
        let refusal = client.next().await;
        assert_refused(&refusal, Some("nope"), Code::FailedPrecondition);
        // v1 envelopes do not say what they refused.
        assert!(refusal.get("refused").is_none(), "{refusal}");
    }
}

#[tokio::test]
async fn v2_ignores_a_cancel_for_an_id_that_is_not_open_but_refuses_a_message() {
    let mut client = Client::connected(Protocol::V2, Backend::Unreachable).await;
    client.send(json!({"type": "cancel", "id": "gone"}));
    client.send(json!({"type": "message", "id": "gone", "payload": {}}));
    // The first answer is the message's: the cancel got none.
    let refusal = client.next().await;
    assert_refused(&refusal, Some("gone"), Code::FailedPrecondition);
    assert_eq!(refusal["refused"], "message");
}

#[tokio::test]
async fn messages_on_an_open_client_stream_are_taken() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("c", CLIENT_STREAM);
    client.send(json!({"type": "message", "id": "c", "payload": {}}));
    client.send(json!({"type": "message", "id": "c", "payload": {}}));
    // Frames are answered in order: had a message been refused, its
    // refusal would come before this one.
    client.open("c", CLIENT_STREAM);
    assert_refused(&client.next().await, Some("c"), Code::AlreadyExists);
}

#[tokio::test]
async fn v2_takes_several_payloads_in_one_message() {
    let mut client = Client::connected(Protocol::V2, Backend::Silent).await;
    client.open("c", CLIENT_STREAM);
    client.send(json!({"type": "message", "id": "c", "payloads": [{}, {}, {}]}));
    client.open("c", CLIENT_STREAM);
    assert_refused(&client.next().await, Some("c"), Code::AlreadyExists);
}

#[tokio::test]
async fn v2_ends_a_call_sent_more_payloads_than_its_queue() {
    let mut client = Client::connected(Protocol::V2, Backend::Silent).await;
    client.open("c", CLIENT_STREAM);
    let payloads = vec![json!({}); BridgeConfig::default().call_queue_messages + 1];
    client.send(json!({"type": "message", "id": "c", "payloads": payloads}));
    assert_ended(&client.next().await, "c", Code::ResourceExhausted);
}

#[tokio::test]
async fn a_message_that_does_not_decode_ends_the_call() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("c", CLIENT_STREAM);
    client.send(json!({"type": "message", "id": "c", "payload": {"unknownField": 1}}));
    assert_ended(&client.next().await, "c", Code::InvalidArgument);
    client.send(json!({"type": "message", "id": "c", "payload": {}}));
    assert_refused(&client.next().await, Some("c"), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_half_closed_call_stays_open_and_takes_no_more_messages() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("c", CLIENT_STREAM);
    client.send(json!({"type": "end", "id": "c"}));
    client.send(json!({"type": "message", "id": "c", "payload": {}}));
    let refusal = client.next().await;
    assert_refused(&refusal, Some("c"), Code::FailedPrecondition);
    assert_mentions(&refusal, "half-closed");
    client.send(json!({"type": "cancel", "id": "c"}));
    assert_ended(&client.next().await, "c", Code::Cancelled);
}

#[tokio::test]
async fn end_on_the_last_message_half_closes() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("c", CLIENT_STREAM);
    client.send(json!({"type": "message", "id": "c", "payload": {}, "end": true}));
    client.send(json!({"type": "message", "id": "c", "payload": {}}));
    let refusal = client.next().await;
    assert_refused(&refusal, Some("c"), Code::FailedPrecondition);
    assert_mentions(&refusal, "half-closed");
}

#[tokio::test]
async fn a_unary_call_takes_no_message_frames() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.send(json!({"type": "request", "id": "u", "method": UNARY, "payload": {}}));
    client.send(json!({"type": "message", "id": "u", "payload": {}}));
    let refusal = client.next().await;
    assert_refused(&refusal, Some("u"), Code::FailedPrecondition);
    assert_mentions(&refusal, "exactly one");
}

#[tokio::test]
async fn cancel_ends_the_call_cancelled_and_frees_its_id() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("w", SERVER_STREAM);
    client.send(json!({"type": "cancel", "id": "w"}));
    let end = client.next().await;
    assert_ended(&end, "w", Code::Cancelled);
    assert_eq!(end["error"], "cancelled by the client");
    client.send(json!({"type": "cancel", "id": "w"}));
    assert_refused(&client.next().await, Some("w"), Code::FailedPrecondition);
    // The id is free for a new call.
    client.open("w", SERVER_STREAM);
    client.open("w", SERVER_STREAM);
    assert_refused(&client.next().await, Some("w"), Code::AlreadyExists);
}

#[tokio::test]
async fn closing_the_socket_ends_the_connection() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.open("w", SERVER_STREAM);
    client.to_bridge = None;
    tokio::time::timeout(PATIENCE, &mut client.served)
        .await
        .expect("the connection ends in time")
        .expect("the connection does not panic");
    // The open call is cancelled without a word: the client is gone.
    assert!(client.from_bridge.recv().await.is_none());
}

#[tokio::test]
async fn a_timeout_of_zero_ends_the_call_invalid_argument() {
    let mut client = Client::connect(Protocol::V1, Backend::Silent);
    client.send(json!({"type": "request", "id": "t", "method": UNARY, "timeoutMs": 0}));
    let end = client.next().await;
    assert_ended(&end, "t", Code::InvalidArgument);
    assert_mentions(&end, "timeoutMs");
}

#[tokio::test]
async fn v2_ends_a_call_whose_window_is_too_large() {
    let mut client = Client::connected(Protocol::V2, Backend::Silent).await;
    let window = 1u64 << 31;
    client.send(json!({"type": "request", "id": "w", "method": SERVER_STREAM, "window": window}));
    let end = client.next().await;
    assert_ended(&end, "w", Code::InvalidArgument);
    assert_mentions(&end, "window");
}

/// A v2 client on the silent backend that took byte windows of `call` and
/// `socket` bytes for its requests.
async fn with_byte_windows(call: u64, socket: u64) -> Client {
    let config = BridgeConfig {
        window_bytes: call,
        connection_window_bytes: socket,
        ..BridgeConfig::default()
    };
    let mut client = Client::connect_configured(Protocol::V2, Backend::Silent, config, None);
    let settings = client.next().await;
    assert_eq!(settings["windowBytes"], call, "{settings}");
    assert_eq!(settings["connectionWindowBytes"], socket, "{settings}");
    client.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    client
}

/// A `message` envelope in a frame of its own whose payloads are empty
/// messages `{ … }` padded to `lens` bytes of JSON.
fn send_padded(client: &Client, id: &str, lens: &[usize]) {
    let payloads: Vec<String> = lens
        .iter()
        .map(|len| format!("{{{}}}", " ".repeat(len - 2)))
        .collect();
    let payloads = payloads.join(",");
    client.send_text(&format!(
        r#"[{{"type":"message","id":"{id}","payloads":[{payloads}]}}]"#
    ));
}

#[tokio::test]
async fn a_call_may_go_below_zero_by_one_message_and_no_further() {
    // 100 bytes: 60 + 16 leaves 24, so the next message may go, and takes
    // the window below zero; the one after it ends the call.
    let mut client = with_byte_windows(100, 1 << 20).await;
    client.open("c", CLIENT_STREAM);
    send_padded(&client, "c", &[60]);
    send_padded(&client, "c", &[60]);
    // The socket and its other calls go on: a second call has its own window.
    client.open("d", CLIENT_STREAM);
    send_padded(&client, "d", &[60]);
    send_padded(&client, "c", &[60]);
    client.send(json!({"type": "ping", "data": 1}));
    // Credit comes as the backend's connection takes messages: not counted.
    let mut answers = Vec::new();
    while answers.last() != Some(&json!({"type": "pong", "data": 1})) {
        let answer = client.next().await;
        if answer["type"] != "credit" {
            answers.push(answer);
        }
    }
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_ended(&answers[0], "c", Code::ResourceExhausted);
    assert_mentions(&answers[0], "window");
}

#[tokio::test]
async fn a_client_past_the_sockets_window_is_closed_with_1008() {
    let client = with_byte_windows(1 << 20, 100).await;
    for id in ["a", "b", "c"] {
        client.open(id, CLIENT_STREAM);
        send_padded(&client, id, &[60]);
    }
    let mut client = client;
    let close = client.next_message().await;
    let Some(Message::Close(Some(frame))) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(frame.code, 1008);
    assert!(frame.reason.contains("window"), "{}", frame.reason);
}

#[tokio::test]
async fn messages_for_no_open_call_count_and_are_given_back() {
    // What the bridge does not queue goes back to the socket's window at
    // once, so a client whose messages cross their call's end on the wire
    // loses nothing of its window.
    let mut client = with_byte_windows(1 << 20, 200).await;
    send_padded(&client, "gone", &[90, 90]);
    let refusal = client.next().await;
    assert_refused(&refusal, Some("gone"), Code::FailedPrecondition);
    let credit = client.next().await;
    assert_eq!(credit, json!({"type": "credit", "bytes": 212}));
}

#[tokio::test]
async fn byte_windows_are_asked_for_first_and_only_then_counted_in_bytes() {
    let mut client = Client::connected(Protocol::V2, Backend::Silent).await;
    client.send(json!({"type": "credit", "bytes": 10}));
    let refusal = client.next().await;
    assert_refused(&refusal, None, Code::InvalidArgument);
    assert_mentions(&refusal, "settings");
    client.send(json!({"type": "request", "id": "w", "method": SERVER_STREAM, "windowBytes": 10}));
    let end = client.next().await;
    assert_ended(&end, "w", Code::InvalidArgument);
    assert_mentions(&end, "settings");
    client.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    let refusal = client.next().await;
    assert_refused(&refusal, None, Code::InvalidArgument);
    assert_mentions(&refusal, "first envelope");
}

const SESSION: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// A bridge's shared state on the silent backend, and the listener that
/// keeps it silent.
fn silent_bridge() -> (Arc<Shared>, Option<TcpListener>) {
    let (channel, listener) = backend_channel(Backend::Silent);
    (
        shared_with(channel, BridgeConfig::default(), None),
        listener,
    )
}

/// Opens a socket of session `SESSION` and takes byte windows; the
/// bridge's `resume` envelope.
async fn session_socket(shared: &Arc<Shared>, identity: Metadata) -> (Client, Value) {
    keyed_session_socket(shared, SESSION, identity).await
}

/// `session_socket` for the session `key`.
async fn keyed_session_socket(
    shared: &Arc<Shared>,
    key: &str,
    identity: Metadata,
) -> (Client, Value) {
    let mut client = Client::connect_as(shared, Protocol::V2, Some(key), identity);
    assert_eq!(client.next().await["type"], "settings");
    let resume = client.next().await;
    assert_eq!(resume["type"], "resume", "{resume}");
    (client, resume)
}

/// Drops the client's socket without a close frame, and waits until the
/// bridge parked its session.
async fn drop_socket(client: Client, shared: &Shared) {
    drop(client.to_bridge);
    tokio::time::timeout(PATIENCE, client.served)
        .await
        .expect("the socket ends in time")
        .unwrap();
    assert_eq!(shared.sessions.parked(), 1, "the session waits");
}

/// Opens a socket of session `key` with a client stream open, and drops
/// the socket without a close frame; returns once the bridge is done with
/// it (the session parked, or ended).
async fn open_a_call_and_drop(shared: &Arc<Shared>, key: &str, identity: Metadata) {
    let (client, _) = keyed_session_socket(shared, key, identity).await;
    client.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    client.open("s", CLIENT_STREAM);
    drop(client.to_bridge);
    tokio::time::timeout(PATIENCE, client.served)
        .await
        .expect("the socket ends in time")
        .unwrap();
}

#[tokio::test]
async fn a_new_socket_resumes_the_session_and_gets_again_what_it_missed() {
    let (shared, _listener) = silent_bridge();
    let (mut first, resume) = session_socket(&shared, Metadata::new()).await;
    assert_eq!(
        resume["received"],
        Value::Null,
        "nothing to resume: {resume}"
    );
    assert!(resume["reason"].as_str().unwrap().contains("no session"));
    first.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    first.send(json!({"type": "request", "id": "u1", "method": "no.Such/Method"}));
    let lost = first.next().await;
    assert_ended(&lost, "u1", Code::Unimplemented);
    first.open("s", CLIENT_STREAM);
    drop_socket(first, &shared).await;

    // The client says it received nothing: the answer to u1 comes again,
    // and the open call goes on.
    let (mut second, resume) = session_socket(&shared, Metadata::new()).await;
    assert_eq!(resume["received"], 2, "two envelopes came: {resume}");
    assert_eq!(shared.sessions.parked(), 0);
    second.send_text(
        &json!([
            {"type": "settings", "connectionWindowBytes": 1 << 20},
            {"type": "resume", "received": 0},
        ])
        .to_string(),
    );
    assert_eq!(second.next().await, lost);
    second.send(json!({"type": "request", "id": "s", "method": CLIENT_STREAM}));
    let duplicate = second.next().await;
    assert_eq!(
        duplicate["type"], "error",
        "the call is still open: {duplicate}"
    );
    assert_eq!(duplicate["code"], Code::AlreadyExists as i32);
    second.send(json!({"type": "cancel", "id": "s"}));
    assert_ended(&second.next().await, "s", Code::Cancelled);
}

#[tokio::test]
async fn past_its_socket_limit_the_bridge_ends_the_session_that_waited_longest() {
    let (channel, _listener) = backend_channel(Backend::Silent);
    let config = BridgeConfig {
        max_connections: 2,
        ..BridgeConfig::default()
    };
    let shared = shared_with(channel, config, None);
    let keys = ["A", "B", "C"].map(|letter| letter.repeat(22));
    for (index, key) in keys.iter().enumerate() {
        open_a_call_and_drop(&shared, key, Metadata::new()).await;
        assert_eq!(shared.sessions.parked(), (index + 1).min(2));
    }
    assert!(
        shared.metrics.render().contains("wsgrpc_sessions_parked 2"),
        "{}",
        shared.metrics.render()
    );

    let (first, resume) = keyed_session_socket(&shared, &keys[0], Metadata::new()).await;
    assert_eq!(
        resume["received"],
        Value::Null,
        "the first to park was ended: {resume}"
    );
    let mut resumed = vec![first];
    for key in &keys[1..] {
        let (client, resume) = keyed_session_socket(&shared, key, Metadata::new()).await;
        assert_eq!(resume["received"], 1, "{key} resumes: {resume}");
        resumed.push(client);
    }
    assert_eq!(shared.sessions.parked(), 0);
    assert!(shared.metrics.render().contains("wsgrpc_sessions_parked 0"));
}

#[tokio::test]
async fn an_identity_parks_no_more_sessions_than_its_limit_and_spares_the_others() {
    let (channel, _listener) = backend_channel(Backend::Silent);
    let config = BridgeConfig {
        max_connections_per_identity: 2,
        ..BridgeConfig::default()
    };
    let shared = shared_with(channel, config, None);
    let user = |name: &str| Metadata::from([("x-user".to_owned(), name.to_owned())]);
    let parks = [
        ("A", user("mallory"), 1),
        ("B", user("mallory"), 2),
        ("C", user("alice"), 3),
        // Past mallory's limit: this one ends, and no one else's.
        ("D", user("mallory"), 3),
    ];
    for (letter, identity, parked) in &parks {
        open_a_call_and_drop(&shared, &letter.repeat(22), identity.clone()).await;
        assert_eq!(shared.sessions.parked(), *parked, "after {letter}");
    }
    assert!(
        shared
            .metrics
            .render()
            .contains(r#"wsgrpc_rejected_total{reason="too_many_for_identity"} 1"#),
        "{}",
        shared.metrics.render()
    );
    for (letter, identity, _) in &parks {
        let (_client, resume) =
            keyed_session_socket(&shared, &letter.repeat(22), identity.clone()).await;
        if *letter == "D" {
            assert_eq!(resume["received"], Value::Null, "D was ended: {resume}");
        } else {
            assert_eq!(resume["received"], 1, "{letter} resumes: {resume}");
        }
    }
}

#[tokio::test]
async fn a_socket_let_in_past_its_identitys_limit_that_resumes_nothing_is_closed() {
    let (shared, _listener) = silent_bridge();
    let upgraded = super::Upgraded {
        identity: [("x-user".to_owned(), "alice".to_owned())].into(),
        protocol: Protocol::V2,
        unfinished: None,
        // A session that is no longer there.
        session_key: Some(SESSION.to_owned()),
        expires: None,
        only_to_resume: true,
    };
    let mut client = Client::connect_upgraded(&shared, upgraded);
    let close = client.next_message().await;
    let Some(Message::Close(Some(frame))) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(frame.code, 1008);
    assert_eq!(frame.reason, "too many connections for this identity");
    // It holds no session under the key.
    assert!(
        !shared
            .sessions
            .is_held_by(SESSION, &[("x-user".to_owned(), "alice".to_owned())].into())
    );
}

#[tokio::test]
async fn another_identity_cannot_resume_a_session() {
    let (shared, _listener) = silent_bridge();
    let alice: Metadata = [("x-user".to_owned(), "alice".to_owned())].into();
    let mallory: Metadata = [("x-user".to_owned(), "mallory".to_owned())].into();
    let (first, _) = session_socket(&shared, alice.clone()).await;
    first.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    first.open("s", CLIENT_STREAM);
    drop_socket(first, &shared).await;

    let (_, resume) = session_socket(&shared, mallory).await;
    assert_eq!(resume["received"], Value::Null);
    assert!(
        resume["reason"]
            .as_str()
            .unwrap()
            .contains("another identity"),
        "{resume}"
    );
    assert_eq!(
        shared.sessions.parked(),
        1,
        "alice's session still waits for alice"
    );
    let (_, resume) = session_socket(&shared, alice).await;
    assert_eq!(resume["received"], 1, "{resume}");
}

#[tokio::test]
async fn a_page_that_closes_its_socket_ends_its_session() {
    let (shared, _listener) = silent_bridge();
    let (first, _) = session_socket(&shared, Metadata::new()).await;
    first.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    first.open("s", CLIENT_STREAM);
    first.send_message(Message::Close(Some(axum::extract::ws::CloseFrame {
        code: 1000,
        reason: "done".into(),
    })));
    tokio::time::timeout(PATIENCE, first.served)
        .await
        .expect("the socket ends in time")
        .unwrap();
    assert_eq!(shared.sessions.parked(), 0);
    let (_, resume) = session_socket(&shared, Metadata::new()).await;
    assert_eq!(resume["received"], Value::Null, "{resume}");
}

#[tokio::test]
async fn a_session_acknowledges_what_it_received_and_forgets_what_the_client_did() {
    let (shared, _listener) = silent_bridge();
    let (mut client, _) = session_socket(&shared, Metadata::new()).await;
    client.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    client.send(json!({"type": "request", "id": "u1", "method": "no.Such/Method"}));
    assert_ended(&client.next().await, "u1", Code::Unimplemented);
    // Within 100 ms, the bridge says what it received.
    assert_eq!(client.next().await, json!({"type": "ack", "received": 1}));
    client.send(json!({"type": "ack", "received": 5}));
    let refusal = client.next().await;
    assert_refused(&refusal, None, Code::InvalidArgument);
    assert_mentions(&refusal, "sent 1");
    client.send(json!({"type": "ack", "received": 1}));
    client.send(json!({"type": "resume", "received": 1}));
    let refusal = client.next().await;
    assert_mentions(&refusal, "`resume` only follows");
}

#[tokio::test]
async fn an_old_socket_says_goaway_and_closes_when_its_calls_end() {
    let config = BridgeConfig {
        max_connection_age: Some(Duration::from_millis(50)),
        ..BridgeConfig::default()
    };
    let mut client = Client::connect_configured(Protocol::V2, Backend::Silent, config, None);
    assert_eq!(client.next().await["type"], "settings");
    client.open("s", SERVER_STREAM);
    let goaway = client.next().await;
    assert_eq!(goaway["type"], "goaway", "{goaway}");
    assert!(goaway["reason"].as_str().unwrap().contains("maximum age"));
    // No new call on this socket; the one in flight goes on.
    client.open("late", UNARY);
    let refused = client.next().await;
    assert_ended(&refused, "late", Code::Unavailable);
    assert_eq!(
        refused["unprocessed"], true,
        "safe to send again: {refused}"
    );
    client.send(json!({"type": "cancel", "id": "s"}));
    assert_ended(&client.next().await, "s", Code::Cancelled);
    let close = client.next_message().await;
    let Some(Message::Close(Some(frame))) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(frame.code, 1000);
}

/// Tokens that run out: `long` in a minute, `mallory` another user's.
struct ExpiringTokens;

impl Authenticator for ExpiringTokens {
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, tonic::Status> {
        let user = match request.bearer_token() {
            Some("long") => "alice",
            Some("mallory") => "mallory",
            _ => return Err(tonic::Status::unauthenticated("unknown token")),
        };
        Ok([("x-user".to_owned(), user.to_owned())].into())
    }

    fn expires(&self, _request: &UpgradeRequest<'_>) -> Option<std::time::SystemTime> {
        Some(std::time::SystemTime::now() + Duration::from_secs(60))
    }
}

/// A socket of alice's whose token runs out in `ms`.
async fn expiring_socket(ms: u64) -> (Client, Option<TcpListener>) {
    let (channel, listener) = backend_channel(Backend::Silent);
    let shared = shared_with(
        channel,
        BridgeConfig::default(),
        Some(Arc::new(ExpiringTokens)),
    );
    let upgraded = super::Upgraded {
        identity: [("x-user".to_owned(), "alice".to_owned())].into(),
        protocol: Protocol::V2,
        unfinished: None,
        session_key: None,
        expires: Some(std::time::SystemTime::now() + Duration::from_millis(ms)),
        only_to_resume: false,
    };
    let mut client = Client::connect_upgraded(&shared, upgraded);
    assert_eq!(client.next().await["type"], "settings");
    let token = client.next().await;
    assert_eq!(token["type"], "token", "{token}");
    assert!(token["expiresInMs"].as_u64().unwrap() <= ms, "{token}");
    (client, listener)
}

#[tokio::test]
async fn a_fresh_token_of_the_same_user_keeps_the_socket_open() {
    let (mut client, _listener) = expiring_socket(300).await;
    client.open("s", SERVER_STREAM);
    client.send(json!({"type": "token", "token": "mallory"}));
    let refused = client.next().await;
    assert_refused(&refused, None, Code::PermissionDenied);
    assert_eq!(refused["refused"], "token");
    client.send(json!({"type": "token", "token": "guess"}));
    assert_refused(&client.next().await, None, Code::Unauthenticated);
    client.send(json!({"type": "token", "token": "long"}));
    let renewed = client.next().await;
    assert_eq!(renewed["type"], "token", "{renewed}");
    assert!(
        renewed["expiresInMs"].as_u64().unwrap() > 50_000,
        "{renewed}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.send(json!({"type": "cancel", "id": "s"}));
    assert_ended(&client.next().await, "s", Code::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn fresh_tokens_past_a_burst_are_refused_unchecked_until_time_lets_more_in() {
    let (mut client, _listener) = expiring_socket(60_000).await;
    let checked = |answer: &Value| answer["type"] == "token";
    let mut answers = Vec::new();
    for _ in 0..10 {
        client.send(json!({"type": "token", "token": "long"}));
        answers.push(client.next().await);
    }
    assert!(answers[..8].iter().all(checked), "{answers:?}");
    for refused in &answers[8..] {
        assert_refused(refused, None, Code::ResourceExhausted);
        assert_eq!(refused["refused"], "token");
    }
    // One a second after that.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    client.send(json!({"type": "token", "token": "long"}));
    assert!(checked(&client.next().await));
    client.send(json!({"type": "token", "token": "long"}));
    assert_refused(&client.next().await, None, Code::ResourceExhausted);
}

#[tokio::test]
async fn a_token_that_runs_out_ends_the_sockets_calls_unauthenticated() {
    let (mut client, _listener) = expiring_socket(100).await;
    client.open("s", SERVER_STREAM);
    assert_ended(&client.next().await, "s", Code::Unauthenticated);
    let close = client.next_message().await;
    let Some(Message::Close(Some(frame))) = close else {
        panic!("expected a close frame, got {close:?}");
    };
    assert_eq!(frame.code, 1008);
}

#[tokio::test]
async fn a_resume_past_what_the_bridge_sent_ends_that_socket_and_spares_the_session() {
    let (shared, _listener) = silent_bridge();
    let (first, _) = session_socket(&shared, Metadata::new()).await;
    first.send(json!({"type": "settings", "connectionWindowBytes": 1 << 20}));
    first.open("s", CLIENT_STREAM);
    drop_socket(first, &shared).await;

    // A client that claims to have received what was never sent.
    let (liar, resume) = session_socket(&shared, Metadata::new()).await;
    assert_eq!(resume["received"], 1, "{resume}");
    liar.send_text(
        &json!([
            {"type": "settings", "connectionWindowBytes": 1 << 20},
            {"type": "resume", "received": 1_000_000},
        ])
        .to_string(),
    );
    tokio::time::timeout(PATIENCE, liar.served)
        .await
        .expect("the socket ends in time")
        .unwrap();
    assert_eq!(shared.sessions.parked(), 1, "the session waits again");

    let (mut honest, resume) = session_socket(&shared, Metadata::new()).await;
    assert_eq!(resume["received"], 1, "{resume}");
    honest.send_text(
        &json!([
            {"type": "settings", "connectionWindowBytes": 1 << 20},
            {"type": "resume", "received": 0},
        ])
        .to_string(),
    );
    honest.send(json!({"type": "cancel", "id": "s"}));
    assert_ended(&honest.next().await, "s", Code::Cancelled);
}

#[tokio::test]
async fn a_ping_flood_that_is_never_read_closes_only_its_own_socket() {
    let (shared, _listener) = silent_bridge();
    let mut flooder = Client::connect_to(&shared, Protocol::V2, None);
    let pings: Vec<Value> = (0..1_000)
        .map(|n| json!({"type": "ping", "data": n}))
        .collect();
    let frame = Value::from(pings).to_string();
    // The flooder reads nothing meanwhile: its pongs pile up in the bridge.
    for _ in 0..40 {
        flooder.send_text(&frame);
    }
    let mut bystander = Client::connect_to(&shared, Protocol::V2, None);
    assert_eq!(bystander.next().await["type"], "settings");
    bystander.send(json!({"type": "request", "id": "u", "method": "no.Such/Method"}));
    assert_ended(&bystander.next().await, "u", Code::Unimplemented);
    let close = loop {
        match flooder.next_message().await {
            Some(Message::Close(frame)) => break frame,
            Some(_) => {}
            None => panic!("the socket ended without a close frame"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, 1008);
    assert!(close.reason.contains("unread"), "{}", close.reason);
}

#[test]
fn the_sooner_of_the_client_deadline_and_the_bridge_limit_applies() {
    let limits = |max_call_duration| BridgeConfig {
        max_call_duration,
        ..BridgeConfig::default()
    };
    let second = Some(Duration::from_secs(1));
    let bridge = deadline(&limits(second), Some(5_000)).unwrap().unwrap();
    assert_eq!(bridge.after, Duration::from_secs(1));
    assert!(bridge.bridge_limit);
    let client = deadline(&limits(second), Some(500)).unwrap().unwrap();
    assert_eq!(client.after, Duration::from_millis(500));
    assert!(!client.bridge_limit);
    assert!(deadline(&limits(None), None).unwrap().is_none());
    assert!(
        deadline(&limits(second), None)
            .unwrap()
            .unwrap()
            .bridge_limit
    );
}
