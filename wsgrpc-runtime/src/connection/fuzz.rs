//! Property-based fuzzing of the socket's state machine: random sequences
//! of client frames (v1 and v2 envelopes of every type on a few ids, known
//! and unknown methods, metadata of every size and case, payloads that
//! decode and that do not, garbage, binary frames) through [`serve`], over
//! channels in place of a WebSocket, against a backend that is not there
//! (calls fail `UNAVAILABLE`) or that never answers (calls stay open until
//! the client ends them).
//!
//! Whatever the client sends, the connection does not panic or hang, ends
//! every call it answered with exactly one `response` that has `end: true`,
//! sends no frame beyond its limits and does not close the socket of a
//! client that reads everything it is sent.
//!
//! A case opens a socket and sends its frames one at a time, each followed
//! by a sentinel (an `end` on an id never used) whose refusal says that the
//! connection has answered the frame: a request that was not refused then
//! is a call, which the connection owes one end, whatever rules it refuses
//! requests by. The client reads everything as soon as it is sent. Last,
//! the case cancels every id it used, waits until every call has ended and
//! closes the socket. The test command runs a few dozen cases; a long run:
//! `PROPTEST_CASES=5000 cargo test --release -p wsgrpc-runtime connection::fuzz`.
//! A failing case is saved under `wsgrpc-runtime/proptest-regressions/`
//! and replayed first on every later run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use base64::Engine as _;
use futures_util::stream;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::PollSender;
use tonic::transport::Channel;

use super::serve;
use super::tests::{Backend, backend_channel};
use crate::config::BridgeConfig;
use crate::envelope::{Envelope, FrameType, Metadata, Protocol, parse_batch};
use crate::flow::MAX_WINDOW;
use crate::frame::MAX_ID_LEN;
use crate::shared::Shared;

/// Cases: a few dozen, or `PROPTEST_CASES`. Each runs a socket, and a
/// failing one may wait out [`PATIENCE`], so a failure shrinks for at most
/// half a minute.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        max_shrink_iters: 256,
        max_shrink_time: 30_000,
        ..ProptestConfig::default()
    }
}

/// How long a case may take in all before it counts as a hang.
const CASE_PATIENCE: Duration = Duration::from_secs(20);
/// How long the connection may take to answer a frame, its calls to end
/// once the case cancelled them, and the socket to close once the client
/// closed it.
const PATIENCE: Duration = Duration::from_secs(3);

const UNARY: &str = "test.Calls/Unary";
const SERVER_STREAM: &str = "test.Calls/Watch";
const CLIENT_STREAM: &str = "test.Calls/Collect";
/// The id of the frame sent after each of a case's: its refusal says that
/// the connection has answered everything before it.
const SENTINEL: &str = "sentinel";
/// The most an error message the bridge writes may take: 1 KiB of text,
/// then `… (N bytes in all)` (see `bounded_message`).
const MAX_ERROR_BYTES: usize = (1 << 10) + 40;

/// Small limits, so that cases reach them: two calls per socket, four
/// queued requests per call, 2 KiB v2 frames.
fn limits() -> BridgeConfig {
    BridgeConfig {
        max_calls_per_connection: 2,
        call_queue_messages: 4,
        batch_bytes: 2 << 10,
        ..BridgeConfig::default()
    }
}

/// One frame a client sends.
#[derive(Clone)]
enum ClientFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping,
}

impl std::fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Long texts (a method of 256 KiB) would bury the failing case.
            Self::Text(text) if text.len() > 512 => {
                let mut head = 200;
                while !text.is_char_boundary(head) {
                    head -= 1;
                }
                let mut tail = text.len() - 200;
                while !text.is_char_boundary(tail) {
                    tail += 1;
                }
                let (head, tail) = (&text[..head], &text[tail..]);
                write!(f, "Text({head:?} … {tail:?}, {} bytes)", text.len())
            }
            Self::Text(text) => write!(f, "Text({text:?})"),
            Self::Binary(bytes) => write!(f, "Binary({bytes:?})"),
            Self::Ping => f.write_str("Ping"),
        }
    }
}

impl ClientFrame {
    fn message(&self) -> Message {
        match self {
            Self::Text(text) => Message::Text(text.as_str().into()),
            Self::Binary(bytes) => Message::Binary(bytes.clone().into()),
            Self::Ping => Message::Ping(Default::default()),
        }
    }
}

/// One case: a socket, its backend and what the client sends on it.
#[derive(Debug, Clone)]
struct Script {
    protocol: Protocol,
    backend: Backend,
    /// A runtime with two worker threads rather than one thread.
    multi_thread: bool,
    frames: Vec<ClientFrame>,
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(&["a", "b", "c"][..]).prop_map(str::to_owned),
        1 => Just("A".to_owned()),
        1 => Just(String::new()),
        1 => Just("i".repeat(MAX_ID_LEN + 1)),
        1 => "[\\x00-\\x1f\"\\\\é]{1,3}",
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(
            &[UNARY, "Unary", SERVER_STREAM, "Watch", CLIENT_STREAM, "Collect"][..]
        )
        .prop_map(str::to_owned),
        3 => prop::sample::select(
            &["test.Calls/Nope", "", "test.calls/unary", "/test.Calls/Unary", "Calls/Unary", "test.Calls/"][..]
        )
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[\\x00-\\x1f\u{2028}a-z./]{0,12}",
        // Long, within the budget of answers that may wait for a client
        // (longer ones: `long_methods_are_answered`).
        1 => ((16usize << 10)..(64 << 10)).prop_map(|n| "m".repeat(n)),
    ]
}

/// Request metadata: header names in any case, reserved ones, `-bin`
/// values that are base64 and that are not, too many and too large.
fn metadata() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        6 => "[xX]-[a-zA-Z0-9_.]{0,8}",
        2 => prop::sample::select(
            &["Grpc-Timeout", "TE", ":path", "Content-Type", "grpc-status", "HOST", "Connection"][..]
        )
        .prop_map(str::to_owned),
        2 => "[xX]-[a-z]{0,4}-[bB][iI][nN]",
        1 => "[ -~]{0,6}",
        1 => any::<String>(),
    ];
    let value = prop_oneof![
        6 => "[ -~]{0,16}",
        2 => prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
        1 => "[\\x00-\\x1f\\x7fé]{1,3}",
        1 => (8000usize..9000).prop_map(|n| "v".repeat(n)),
    ];
    prop_oneof![
        8 => prop::collection::vec((key.clone(), value.clone()), 0..5),
        1 => prop::collection::vec((key, value), 60..70),
    ]
    .prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key, Value::from(value)))
                .collect(),
        )
    })
}

/// A request payload for the test methods, whose messages are `Empty`:
/// some decode, most do not.
fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => Just(json!({})),
        1 => Just(json!({"unknownField": 1})),
        1 => Just(json!([])),
        1 => Just(json!(null)),
        1 => Just(json!("text")),
        1 => Just(json!(1.5)),
        1 => Just(json!({"a": {"b": [1, {"c": null}]}})),
    ]
}

/// One envelope, as JSON: every type (those only the bridge sends too),
/// on a few ids, with the fields of its type mostly and any others now and
/// then; v2's fields now and then on v1, which refuses them.
fn envelope(protocol: Protocol) -> BoxedStrategy<Value> {
    let kind = prop_oneof![
        6 => Just("request"),
        3 => Just("message"),
        2 => Just("end"),
        2 => Just("cancel"),
        2 => Just("credit"),
        1 => prop::sample::select(&["response", "error", "settings", "ping", "pong", "Request"][..]),
    ];
    let v2_field = if protocol == Protocol::V2 { 0.4 } else { 0.03 };
    prop::option::weighted(0.95, kind)
        .prop_flat_map(move |kind| {
            let is = |name| if kind == Some(name) { 1.0 } else { 0.0 };
            let (request, message, credit) = (is("request"), is("message"), is("credit"));
            let count = || {
                prop_oneof![
                    3 => 0u64..8,
                    1 => Just(MAX_WINDOW),
                    1 => Just(MAX_WINDOW + 1),
                    1 => Just(u64::MAX),
                ]
            };
            let timeout_ms = prop_oneof![Just(0u64), 1u64..4, 4u64..40, Just(u64::MAX)];
            (
                Just(kind),
                prop::option::weighted(0.95, id()),
                prop::option::weighted(0.03 + 0.9 * request, method()),
                prop::option::weighted(0.1 + 0.7 * message + 0.4 * request, payload()),
                prop::option::weighted(
                    v2_field * (0.2 + message),
                    prop::collection::vec(payload(), 0..6),
                ),
                prop::option::weighted(0.3, any::<bool>()),
                prop::option::weighted(0.03 + 0.4 * request, metadata()),
                prop::option::weighted(0.03 + 0.2 * request, timeout_ms),
                prop::option::weighted(0.03 + v2_field * request, count()),
                prop::option::weighted(v2_field * 0.1 + 0.9 * credit, count()),
                // Byte windows: `bytes` on credit, `windowBytes` on
                // requests, `connectionWindowBytes`, `data` on pings.
                (
                    prop::option::weighted(v2_field * (0.05 + 0.5 * credit), count()),
                    prop::option::weighted(v2_field * (0.03 + 0.5 * request), count()),
                    prop::option::weighted(v2_field * 0.1, count()),
                    prop::option::weighted(v2_field * 0.3, count()),
                ),
                prop::option::weighted(0.03, Just(json!("unknown"))),
            )
        })
        .prop_map(
            |(
                kind,
                id,
                method,
                payload,
                payloads,
                end,
                metadata,
                timeout,
                window,
                messages,
                (bytes, window_bytes, connection_window_bytes, data),
                odd,
            )| {
                let mut envelope = Map::new();
                let mut set = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        envelope.insert(key.to_owned(), value);
                    }
                };
                set("type", kind.map(Value::from));
                set("id", id.map(Value::from));
                set("method", method.map(Value::from));
                set("payload", payload);
                set("payloads", payloads.map(Value::from));
                set("end", end.map(Value::from));
                set("metadata", metadata);
                set("timeoutMs", timeout.map(Value::from));
                set("window", window.map(Value::from));
                set("messages", messages.map(Value::from));
                set("bytes", bytes.map(Value::from));
                set("windowBytes", window_bytes.map(Value::from));
                set(
                    "connectionWindowBytes",
                    connection_window_bytes.map(Value::from),
                );
                set("data", data.map(Value::from));
                set("metod", odd);
                Value::Object(envelope)
            },
        )
        .boxed()
}

/// Text that is no envelope, or almost one.
fn garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just("not json".to_owned()),
        Just(r#"{"type":"request","id":"a","method":"test.Calls/Unary""#.to_owned()),
        Just(r#"{"type":"cancel","id":"a","id":"b"}"#.to_owned()),
        Just(r#"{"type":"request","id":"b","metadata":{"x-a":"1","x-a":"2"}}"#.to_owned()),
        Just(r#"[1,"two",null,{"type":"cancel","id":"c"},["request"]]"#.to_owned()),
        Just("[]".to_owned()),
    ]
}

fn frame(protocol: Protocol) -> impl Strategy<Value = ClientFrame> {
    let envelopes = match protocol {
        // An envelope per frame; an array is refused.
        Protocol::V1 => prop_oneof![
            12 => envelope(protocol).prop_map(|envelope| envelope.to_string()),
            1 => prop::collection::vec(envelope(protocol), 1..3).prop_map(|all| Value::from(all).to_string()),
        ]
        .boxed(),
        // An array of envelopes per frame; an object alone is refused.
        Protocol::V2 => prop_oneof![
            12 => prop::collection::vec(envelope(protocol), 1..4).prop_map(|all| Value::from(all).to_string()),
            1 => envelope(protocol).prop_map(|envelope| envelope.to_string()),
        ]
        .boxed(),
    };
    prop_oneof![
        14 => envelopes.prop_map(ClientFrame::Text),
        1 => garbage().prop_map(ClientFrame::Text),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(ClientFrame::Binary),
        1 => Just(ClientFrame::Ping),
    ]
}

/// A call's frames in order: a request (mostly of the client-streaming
/// method), messages on it (v2: some in one envelope), and its end or its
/// cancel, so that cases reach the call's queue and its half-close.
fn stream_run(protocol: Protocol) -> impl Strategy<Value = Vec<ClientFrame>> {
    let method = prop_oneof![
        4 => Just(CLIENT_STREAM),
        1 => prop::sample::select(&["Collect", UNARY, SERVER_STREAM][..]),
    ];
    let last = prop_oneof![Just(None), Just(Some("end")), Just(Some("cancel"))];
    (
        prop::sample::select(&["a", "b", "c"][..]),
        method,
        // Mostly messages that decode, so that the queue fills.
        prop::collection::vec(
            (
                prop_oneof![6 => Just(json!({})), 1 => payload()],
                any::<bool>(),
            ),
            0..8,
        ),
        last,
    )
        .prop_map(move |(id, method, messages, last)| {
            let mut frames = vec![alone(
                protocol,
                json!({"type": "request", "id": id, "method": method}),
            )];
            let mut together = Vec::new();
            for (payload, alone_in_its_frame) in messages {
                if protocol == Protocol::V1 || alone_in_its_frame {
                    let message = json!({"type": "message", "id": id, "payload": payload});
                    frames.push(alone(protocol, message));
                } else {
                    together.push(payload);
                }
            }
            if !together.is_empty() {
                let message = json!({"type": "message", "id": id, "payloads": together});
                frames.push(alone(protocol, message));
            }
            if let Some(last) = last {
                frames.push(alone(protocol, json!({"type": last, "id": id})));
            }
            frames
        })
}

fn script() -> impl Strategy<Value = Script> {
    (
        prop_oneof![Just(Protocol::V1), Just(Protocol::V2)],
        prop_oneof![Just(Backend::Unreachable), Just(Backend::Silent)],
        any::<bool>(),
    )
        .prop_flat_map(|(protocol, backend, multi_thread)| {
            let part = prop_oneof![
                6 => frame(protocol).prop_map(|frame| vec![frame]),
                1 => stream_run(protocol),
            ];
            // v2: half the sockets take byte windows first.
            let settings = match protocol {
                Protocol::V2 => any::<bool>().boxed(),
                _ => Just(false).boxed(),
            };
            (prop::collection::vec(part, 1..14), settings).prop_map(move |(parts, bytes)| {
                let settings = json!({"type": "settings", "connectionWindowBytes": 1 << 20});
                let first = bytes.then(|| alone(protocol, settings));
                Script {
                    protocol,
                    backend,
                    multi_thread,
                    frames: first
                        .into_iter()
                        .chain(parts.into_iter().flatten())
                        .collect(),
                }
            })
        })
}

/// A bridge's shared state with the test methods and the small limits.
fn shared(channel: Channel) -> Arc<Shared> {
    super::tests::shared_with(channel, limits(), None)
}

/// The ids of the requests in a frame, as the connection reads them:
/// each is answered by a refusal of the frame that names its id (v2: and
/// says it refused a `request`), or becomes a call that one `response`
/// with `end` ends.
fn requests_in(protocol: Protocol, frame: &ClientFrame) -> Vec<String> {
    let ClientFrame::Text(text) = frame else {
        return Vec::new();
    };
    let envelopes: Vec<Envelope<'_>> = match protocol {
        Protocol::V1 => Envelope::parse(text).into_iter().collect(),
        Protocol::V2 => parse_batch(text)
            .map(|all| all.into_iter().filter_map(Result::ok).collect())
            .unwrap_or_default(),
    };
    envelopes
        .into_iter()
        .filter(|envelope| envelope.frame_type == Some(FrameType::Request))
        .filter_map(|envelope| envelope.id.map(|id| id.into_owned()))
        // Refused without naming the id.
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
        .collect()
}

/// What a case has seen of the calls on one id.
#[derive(Debug, Default)]
struct Calls {
    /// Calls the connection has opened or refused as calls, each of which
    /// it owes one end.
    owed: usize,
    /// `response` envelopes with `end: true`.
    ended: usize,
}

/// What a case has sent and received.
#[derive(Debug)]
struct Book {
    protocol: Protocol,
    config: BridgeConfig,
    calls: BTreeMap<String, Calls>,
    /// The requests of the frame being answered, by id, that no refusal
    /// has named yet: until its sentinel's refusal comes, every refusal
    /// the connection sends is of that frame.
    window: BTreeMap<String, usize>,
    frames: usize,
    /// Refusals of sentinels seen.
    sentinels: usize,
}

impl Book {
    fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            config: limits(),
            calls: BTreeMap::new(),
            window: BTreeMap::new(),
            frames: 0,
            sentinels: 0,
        }
    }

    /// A frame goes out, with a sentinel after it.
    fn sent(&mut self, frame: &ClientFrame) {
        for id in requests_in(self.protocol, frame) {
            *self.window.entry(id).or_default() += 1;
        }
    }

    /// Every answer of the last frame is in: its requests that were not
    /// refused are calls.
    fn close_window(&mut self) {
        for (id, calls) in std::mem::take(&mut self.window) {
            self.calls.entry(id).or_default().owed += calls;
        }
    }

    fn all_ended(&self) -> bool {
        self.window.is_empty() && self.calls.values().all(|calls| calls.ended == calls.owed)
    }

    /// Checks a frame the bridge sent.
    fn received(&mut self, message: Message) -> Result<(), String> {
        let text = match message {
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Close(frame) => {
                return Err(format!(
                    "the bridge closed the socket of a client that reads everything: {frame:?}"
                ));
            }
            Message::Binary(bytes) => return Err(format!("a binary frame: {bytes:?}")),
        };
        let text = text.as_str();
        self.frames += 1;
        let max = self.config.max_envelope_bytes();
        if text.len() > max {
            return Err(format!(
                "a frame of {} bytes; the limit is {max}",
                text.len()
            ));
        }
        let frame: Value = serde_json::from_str(text)
            .map_err(|err| format!("a frame that is not JSON ({err}): {text}"))?;
        let envelopes = match (self.protocol, frame) {
            (Protocol::V1, envelope @ Value::Object(_)) => vec![envelope],
            (Protocol::V2, Value::Array(envelopes)) if !envelopes.is_empty() => {
                if envelopes.len() > 1 && text.len() > self.config.batch_bytes {
                    return Err(format!(
                        "a v2 frame of {} envelopes takes {} bytes; the limit is {}",
                        envelopes.len(),
                        text.len(),
                        self.config.batch_bytes
                    ));
                }
                envelopes
            }
            (_, frame) => return Err(format!("not a {:?} frame: {frame}", self.protocol)),
        };
        for (n, envelope) in envelopes.iter().enumerate() {
            self.envelope(envelope, self.frames == 1 && n == 0)?;
        }
        Ok(())
    }

    fn envelope(&mut self, envelope: &Value, first: bool) -> Result<(), String> {
        let kind = envelope["type"].as_str().unwrap_or_default();
        if self.protocol == Protocol::V2 && first && kind != "settings" {
            return Err(format!(
                "a v2 socket starts with {envelope}, not the settings"
            ));
        }
        if let Some(error) = envelope["error"].as_str()
            && error.len() > MAX_ERROR_BYTES
        {
            return Err(format!("an error message of {} bytes", error.len()));
        }
        let id = envelope["id"].as_str();
        match kind {
            "settings" | "credit" | "pong" => Ok(()),
            "error" => {
                if envelope.get("end").is_some() {
                    return Err(format!("a refusal that ends a call: {envelope}"));
                }
                if id == Some(SENTINEL) {
                    self.sentinels += 1;
                    return Ok(());
                }
                // A request of the frame refused: no call. (v1 frames hold
                // one envelope; v2 says what it refused.)
                let request = match self.protocol {
                    Protocol::V1 => true,
                    Protocol::V2 => envelope["refused"] == "request",
                };
                if let Some(id) = id
                    && request
                    && let Some(requests) = self.window.get_mut(id)
                {
                    *requests -= 1;
                    if *requests == 0 {
                        self.window.remove(id);
                    }
                }
                Ok(())
            }
            "response" if envelope["end"] == true => {
                let id = id.ok_or_else(|| format!("an end without an id: {envelope}"))?;
                let pending = self.window.get(id).copied().unwrap_or_default();
                let calls = self.calls.entry(id.to_owned()).or_default();
                calls.ended += 1;
                if calls.ended > calls.owed + pending {
                    return Err(format!(
                        "call `{id}` ended once more than it was opened ({calls:?}): {envelope}"
                    ));
                }
                Ok(())
            }
            "response" => Ok(()),
            _ => Err(format!("an envelope of an unknown type: {envelope}")),
        }
    }
}

/// The text of one envelope in a frame of its own.
fn alone(protocol: Protocol, envelope: Value) -> ClientFrame {
    ClientFrame::Text(match protocol {
        Protocol::V1 => envelope.to_string(),
        Protocol::V2 => json!([envelope]).to_string(),
    })
}

/// What the bridge sends, as the client reads it.
struct Inbox {
    seen: mpsc::UnboundedReceiver<Message>,
}

impl Inbox {
    /// Reads and checks frames until `done` holds, for up to [`PATIENCE`].
    async fn until(
        &mut self,
        book: &mut Book,
        what: &str,
        done: impl Fn(&Book) -> bool,
    ) -> Result<(), String> {
        let until = Instant::now() + PATIENCE;
        while !done(book) {
            match tokio::time::timeout_at(until, self.seen.recv()).await {
                Ok(Some(message)) => book.received(message)?,
                Ok(None) => return Err(format!("the socket closed before {what}: {book:?}")),
                Err(_) => return Err(format!("no {what} in time: {book:?}")),
            }
        }
        Ok(())
    }
}

/// Runs one case; `Err` says what went wrong.
async fn run(script: Script) -> Result<(), String> {
    let Script {
        protocol,
        backend: kind,
        frames,
        ..
    } = script;
    let (channel, _listener) = backend_channel(kind);
    // The bridge reads a frame before the client can send the next.
    let (to_bridge, mut incoming) = mpsc::channel(1);
    let (sink, mut from_bridge) = mpsc::channel(64);
    let served = tokio::spawn(serve(
        PollSender::new(sink),
        stream::poll_fn(move |cx| incoming.poll_recv(cx)),
        shared(channel),
        super::Upgraded {
            identity: Metadata::new(),
            protocol,
            unfinished: None,
            session_key: None,
            expires: None,
            only_to_resume: false,
        },
    ));
    // The client reads everything as soon as it is sent.
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = from_bridge.recv().await {
            if seen_tx.send(message).is_err() {
                break;
            }
        }
    });
    let mut inbox = Inbox { seen };
    let mut book = Book::new(protocol);
    let send = |frame: ClientFrame| {
        let to_bridge = to_bridge.clone();
        async move {
            to_bridge
                .send(Ok::<_, axum::Error>(frame.message()))
                .await
                .map_err(|_| "the bridge stopped reading".to_owned())
        }
    };
    let sentinel = || alone(protocol, json!({"type": "end", "id": SENTINEL}));
    // Each frame, then a sentinel, whose refusal comes after every answer
    // of the connection's reader to the frame.
    for (sent, frame) in frames.into_iter().enumerate() {
        book.sent(&frame);
        send(frame).await?;
        send(sentinel()).await?;
        let answered = |book: &Book| book.sentinels > sent;
        inbox
            .until(&mut book, "the answers to a frame", answered)
            .await?;
        book.close_window();
    }
    // Ends every call still open; then waits for every end.
    let ids: Vec<String> = book.calls.keys().cloned().collect();
    for id in ids {
        send(alone(protocol, json!({"type": "cancel", "id": id}))).await?;
    }
    send(sentinel()).await?;
    let sentinels = book.sentinels;
    let ended = |book: &Book| book.sentinels > sentinels && book.all_ended();
    inbox
        .until(&mut book, "the end of every call", ended)
        .await?;
    // The client closes the socket; nothing more ends a call.
    drop(to_bridge);
    let until = Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(until, inbox.seen.recv()).await {
            Ok(Some(message)) => book.received(message)?,
            Ok(None) => break,
            Err(_) => return Err("the bridge did not close the socket".to_owned()),
        }
    }
    match tokio::time::timeout_at(until, served).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(format!("the connection panicked: {err}")),
        Err(_) => Err("the connection did not end".to_owned()),
    }
}

/// Runs one case on a runtime of its own, within [`CASE_PATIENCE`].
fn run_case(script: Script) -> Result<(), String> {
    let runtime = if script.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("a runtime");
    runtime.block_on(async {
        tokio::time::timeout(CASE_PATIENCE, run(script))
            .await
            .unwrap_or_else(|_| Err("the case hung".to_owned()))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_client_frames_end_every_call_once_within_limits(script in script()) {
        run_case(script).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: (config().cases / 4).max(1), ..config() })]

    /// A request whose method name is long, up to what a frame may hold,
    /// is answered (refused, or ended `UNIMPLEMENTED`), within bounded
    /// answers, and the socket of a client that reads them stays open.
    #[test]
    fn long_methods_are_answered(
        protocol in prop_oneof![Just(Protocol::V1), Just(Protocol::V2)],
        length in prop_oneof![(1usize << 10)..(250 << 10), (250usize << 10)..(512 << 10)],
        id in prop::sample::select(&["a", "b"][..]),
    ) {
        let method = "m".repeat(length);
        let request = json!({"type": "request", "id": id, "method": method});
        let script = Script {
            protocol,
            backend: Backend::Unreachable,
            multi_thread: false,
            frames: vec![alone(protocol, request)],
        };
        run_case(script).map_err(TestCaseError::fail)?;
    }
}

/// Found by the properties above, before the connection refused methods
/// longer than `MAX_METHOD_LEN`: a v1 request whose method is unknown and
/// longer than the answers that may wait for a client (256 KiB, of a frame
/// that may hold 4 MiB) was not answered. The answer echoed the method
/// whole, was more than the budget of the reader's answers
/// (`CONTROL_BYTES`) holds on its own, and the bridge closed the socket
/// (1008, "too many answers left unread") of a client that reads
/// everything. v2 echoes no method.
#[test]
fn a_long_unknown_method_is_answered_without_closing_the_socket() {
    let method = "m".repeat(256 << 10);
    let request = json!({"type": "request", "id": "a", "method": method});
    let script = Script {
        protocol: Protocol::V1,
        backend: Backend::Unreachable,
        multi_thread: false,
        frames: vec![alone(Protocol::V1, request)],
    };
    if let Err(err) = run_case(script) {
        panic!("{err}");
    }
}
