//! v2 sessions between a real WebSocket client and the real bridge: a
//! socket that drops mid-call, and a new one that resumes the session, with
//! every message delivered exactly once, both ways.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgrpc_tests::client::{Socket, next_v2_frame};
use wsgrpc_tests::{RunningBackend, RunningBridge, UserInQuery, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);
const SERVER_STREAM: &str = "wsgrpc.test.v1.TestService/ServerStream";
const CLIENT_STREAM: &str = "wsgrpc.test.v1.TestService/ClientStream";
const UNARY: &str = "wsgrpc.test.v1.TestService/Unary";
const KEY: &str = "c2Vzc2lvbi1rZXktZm9yLXRlc3Q";
/// Large enough that no test waits for credit.
const WIDE: u64 = 1 << 30;

/// One socket of a session: what it counted and what it kept, as the
/// client's end of the protocol does.
struct SessionClient {
    socket: Socket,
    /// Counted envelopes received from the bridge, over every socket.
    received: u64,
    /// Counted envelopes this client sent, in order, all kept (a test sends
    /// few enough).
    sent: Vec<Value>,
}

impl SessionClient {
    /// A socket of session `KEY`; the bridge's `resume` envelope.
    async fn open(url: &str) -> (Socket, Value) {
        Self::open_keyed(url, KEY).await
    }

    /// A socket of session `key`; the bridge's `resume` envelope.
    async fn open_keyed(url: &str, key: &str) -> (Socket, Value) {
        open_v2(format!("{url}?session={key}"))
            .await
            .unwrap_or_else(|status| panic!("refused with HTTP {status}"))
    }

    async fn start(url: &str) -> Self {
        Self::start_keyed(url, KEY).await
    }

    async fn start_keyed(url: &str, key: &str) -> Self {
        let (mut socket, resume) = Self::open_keyed(url, key).await;
        assert_eq!(resume["received"], Value::Null);
        send(
            &mut socket,
            json!([{"type": "settings", "connectionWindowBytes": WIDE}]),
        )
        .await;
        Self {
            socket,
            received: 0,
            sent: Vec::new(),
        }
    }

    /// Drops the socket without a close frame, as a network does, and
    /// resumes on a new one: says what it received, sends again what the
    /// bridge did not.
    async fn cut_and_resume(self, url: &str) -> Self {
        let Self {
            socket,
            received,
            sent,
        } = self;
        drop(socket);
        // The bridge may not have seen the old socket drop yet: then the
        // new socket takes the session over from it.
        let (mut socket, resume) = Self::open(url).await;
        assert!(
            resume["received"].is_u64(),
            "the session was not resumed: {resume}"
        );
        let bridge_received = resume["received"].as_u64().unwrap() as usize;
        let mut frame = vec![
            json!({"type": "settings", "connectionWindowBytes": WIDE}),
            json!({"type": "resume", "received": received}),
        ];
        frame.extend(sent[bridge_received..].iter().cloned());
        send(&mut socket, Value::from(frame)).await;
        Self {
            socket,
            received,
            sent,
        }
    }

    /// Sends counted envelopes in one frame, keeping them.
    async fn send(&mut self, envelopes: Vec<Value>) {
        self.sent.extend(envelopes.iter().cloned());
        send(&mut self.socket, Value::from(envelopes)).await;
    }

    /// The next frame's counted envelopes.
    async fn next(&mut self) -> Vec<Value> {
        let envelopes: Vec<Value> = next_v2_frame(&mut self.socket)
            .await
            .into_iter()
            .filter(|envelope| !matches!(envelope["type"].as_str(), Some("ack" | "pong")))
            .collect();
        self.received += envelopes.len() as u64;
        envelopes
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

async fn setup() -> (RunningBackend, RunningBridge) {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri()).session_grace(Some(Duration::from_secs(10)));
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    (backend, bridge)
}

#[tokio::test]
async fn a_stream_cut_three_times_arrives_whole_in_order_and_once() {
    let (_backend, bridge) = setup().await;
    let url = bridge.url();
    let mut client = SessionClient::start(&url).await;
    let count = 20_000;
    client
        .send(vec![
            json!({"type": "request", "method": SERVER_STREAM, "id": "s",
                           "windowBytes": WIDE, "payload": {"text": "t", "count": count}}),
        ])
        .await;
    let mut indexes = Vec::new();
    let mut cuts = 0;
    let mut ended = false;
    while !ended {
        for envelope in client.next().await {
            assert_eq!(envelope["id"], "s", "{envelope}");
            for payload in envelope["payloads"].as_array().into_iter().flatten() {
                indexes.push(payload["index"].as_u64().unwrap_or(0));
            }
            ended |= envelope["end"] == true;
            assert!(envelope.get("error").is_none(), "{envelope}");
        }
        if cuts < 3 && indexes.len() > (cuts + 1) * count as usize / 4 {
            client = client.cut_and_resume(&url).await;
            cuts += 1;
        }
    }
    assert_eq!(cuts, 3);
    let expected: Vec<u64> = (0..count).collect();
    assert_eq!(indexes.len(), expected.len(), "every message exactly once");
    assert!(indexes == expected, "in order");
}

#[tokio::test]
async fn a_client_stream_cut_twice_reaches_the_backend_exactly_once() {
    let (backend, bridge) = setup().await;
    let url = bridge.url();
    let mut client = SessionClient::start(&url).await;
    client
        .send(vec![
            json!({"type": "request", "method": CLIENT_STREAM, "id": "c"}),
        ])
        .await;
    let total = 6_000;
    for batch in 0..6 {
        let payloads: Vec<Value> = (0..total / 6).map(|_| json!({"big": 1})).collect();
        client
            .send(vec![
                json!({"type": "message", "id": "c", "payloads": payloads}),
            ])
            .await;
        if batch == 1 || batch == 3 {
            client = client.cut_and_resume(&url).await;
        }
    }
    client.send(vec![json!({"type": "end", "id": "c"})]).await;
    let end = loop {
        let envelopes = client.next().await;
        if let Some(end) = envelopes.into_iter().find(|e| e["end"] == true) {
            break end;
        }
    };
    assert_eq!(end["payload"]["sum"], total.to_string(), "{end}");
    assert_eq!(backend.backend.received(), total as u64);
}

#[tokio::test]
async fn a_unary_answer_that_came_while_the_socket_was_down_is_delivered() {
    let (_backend, bridge) = setup().await;
    let url = bridge.url();
    let mut client = SessionClient::start(&url).await;
    client
        .send(vec![json!({"type": "request", "method": UNARY, "id": "u",
                           "payload": {"text": "late", "delayMs": 200}})])
        .await;
    let mut client = client.cut_and_resume(&url).await;
    let envelopes = client.next().await;
    let answer = envelopes
        .iter()
        .find(|e| e["id"] == "u")
        .expect("the answer");
    assert_eq!(answer["payload"]["text"], "late", "{answer}");
    assert_eq!(answer["end"], true, "{answer}");
}

/// The JSON bytes of the payloads in `envelopes`.
fn payload_bytes(envelopes: &[Value]) -> usize {
    envelopes
        .iter()
        .flat_map(|envelope| envelope["payloads"].as_array().into_iter().flatten())
        .map(|payload| payload.to_string().len())
        .sum()
}

#[tokio::test]
async fn clients_that_never_acknowledge_hold_back_only_their_own_calls() {
    const BUDGET: usize = 1 << 20;
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri())
        .session_grace(Some(Duration::from_secs(10)))
        .max_session_kept_bytes(BUDGET);
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    let url = bridge.url();
    let text = "h".repeat(16 << 10);
    // Four sessions read streams of 16 KiB messages, as wide as the
    // protocol allows, and acknowledge nothing: alone, each could make the
    // bridge keep 16 MiB.
    let mut hoarded = 0;
    let mut hoarders = Vec::new();
    for n in 0..4 {
        let mut hoarder = SessionClient::start_keyed(&url, &format!("{KEY}-hoarder-{n}")).await;
        hoarder
            .send(vec![
                json!({"type": "request", "method": SERVER_STREAM, "id": "h",
                       "windowBytes": WIDE, "payload": {"text": text, "count": 2_000}}),
            ])
            .await;
        hoarders.push(hoarder);
    }
    for hoarder in &mut hoarders {
        while let Ok(envelopes) = tokio::time::timeout(QUIET, hoarder.next()).await {
            hoarded += payload_bytes(&envelopes);
        }
    }
    println!(
        "four sessions that acknowledge nothing got {hoarded} bytes, against a budget of {BUDGET}"
    );
    // The budget and, past it, a frame or so each: not 4 × 16 MiB.
    assert!(
        hoarded < BUDGET + 4 * (256 << 10),
        "the hoarders got {hoarded} bytes unacknowledged"
    );
    // A session that acknowledges what it reads goes on, a share at a time.
    let mut reader = SessionClient::start_keyed(&url, &format!("{KEY}-reader")).await;
    reader
        .send(vec![
            json!({"type": "request", "method": SERVER_STREAM, "id": "r",
                   "windowBytes": WIDE, "payload": {"text": text, "count": 200}}),
        ])
        .await;
    let mut messages = 0;
    let mut ended = false;
    while !ended {
        let envelopes = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("the reader's stream goes on");
        for envelope in &envelopes {
            messages += envelope["payloads"].as_array().map_or(0, Vec::len);
            ended |= envelope["end"] == true;
            assert!(envelope.get("error").is_none(), "{envelope}");
        }
        let ack = json!([{"type": "ack", "received": reader.received}]);
        send(&mut reader.socket, ack).await;
    }
    assert_eq!(messages, 200);
}

/// How long a socket goes without a frame before its stream is taken to
/// be held back.
const QUIET: Duration = Duration::from_millis(500);

/// A v2 socket of `user` and session `key`: the socket and the bridge's
/// `resume` envelope, or the HTTP status that refused it.
async fn open_as(url: &str, user: &str, key: &str) -> Result<(Socket, Value), u16> {
    open_v2(format!("{url}?user={user}&session={key}")).await
}

/// A v2 socket at `url` (with its query): the socket and the bridge's
/// `resume` envelope, or the HTTP status that refused it.
async fn open_v2(url: String) -> Result<(Socket, Value), u16> {
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "wsgrpc.v2".parse().unwrap());
    match connect_async(request).await {
        Ok((mut socket, _)) => {
            let first = next_v2_frame(&mut socket).await;
            assert_eq!(first[0]["type"], "settings", "{first:?}");
            assert_eq!(first[1]["type"], "resume", "{first:?}");
            Ok((socket, first[1].clone()))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(err) => panic!("{err}"),
    }
}

#[tokio::test]
async fn at_its_identitys_limit_a_client_still_takes_its_session_over_from_a_half_open_socket() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri())
        .authenticator(UserInQuery)
        .max_connections_per_identity(1);
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    let url = bridge.url();
    let other_key = "b3RoZXItc2Vzc2lvbi1rZXk";

    let (mut first, _) = open_as(&url, "alice", KEY).await.unwrap();
    send(
        &mut first,
        json!([
            {"type": "settings", "connectionWindowBytes": WIDE},
            {"type": "request", "id": "c", "method": CLIENT_STREAM, "window": 64},
        ]),
    )
    .await;
    // Alice has her one socket: no other session, but anyone else.
    assert_eq!(open_as(&url, "alice", other_key).await.err(), Some(429));
    assert!(open_as(&url, "bob", other_key).await.is_ok());

    // Her socket is half open (a laptop that slept): a new one takes the
    // session over from it, past the limit for as long as the old one
    // lets go.
    let (_second, resume) = open_as(&url, "alice", KEY).await.unwrap();
    assert!(resume["received"].is_u64(), "not resumed: {resume}");
    // The old socket ends (its calls went with the session).
    loop {
        match first.next().await {
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    assert_eq!(open_as(&url, "alice", other_key).await.err(), Some(429));
}
