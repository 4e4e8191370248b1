//! Wire protocol v2 between a real WebSocket client and the real bridge:
//! the subprotocol, the settings, batches both ways, and v1 untouched.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgrpc_tests::client::{Socket, WsClient, next_v2_frame};
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// A client that offers v2 and v1, and the subprotocol the bridge chose.
async fn connect_v2(url: &str) -> Result<(Socket, Option<String>), String> {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "wsgrpc.v2, wsgrpc.v1".parse().unwrap(),
    );
    let (socket, response) = connect_async(request)
        .await
        .map_err(|err| err.to_string())?;
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|value| value.to_str().unwrap().to_owned());
    Ok((socket, chosen))
}

/// The next frame, or `None` when none comes within `wait`.
async fn frame_within(socket: &mut Socket, wait: Duration) -> Option<Vec<Value>> {
    tokio::time::timeout(wait, next_v2_frame(socket)).await.ok()
}

/// The messages of the `response` envelopes of call `id`, in order.
fn payloads_of<'a>(envelopes: &'a [Value], id: &str) -> Vec<&'a Value> {
    envelopes
        .iter()
        .filter(|e| e["id"] == id && e["type"] == "response")
        .flat_map(|e| e["payloads"].as_array().into_iter().flatten())
        .collect()
}

/// The credit the bridge granted call `id` in these envelopes.
fn credit_of(envelopes: &[Value], id: &str) -> u64 {
    envelopes
        .iter()
        .filter(|e| e["id"] == id && e["type"] == "credit")
        .map(|e| e["messages"].as_u64().expect("credit counts messages"))
        .sum()
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Envelopes until `count` of them have `end`, across frames.
async fn envelopes_until_ends(socket: &mut Socket, count: usize) -> (Vec<Value>, usize) {
    let (mut envelopes, mut frames) = (Vec::new(), 0);
    while envelopes
        .iter()
        .filter(|e: &&Value| e["end"] == true)
        .count()
        < count
    {
        envelopes.extend(next_v2_frame(socket).await);
        frames += 1;
    }
    (envelopes, frames)
}

async fn setup(
    builder: impl FnOnce(wsgrpc_runtime::BridgeBuilder) -> wsgrpc_runtime::BridgeBuilder,
) -> (RunningBackend, RunningBridge) {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(builder(test_bridge(&backend.uri())), ANY_PORT.into())
        .await
        .unwrap();
    (backend, bridge)
}

/// A bridge and a v2 socket to it, with the settings it sent first.
async fn open_v2(
    builder: impl FnOnce(wsgrpc_runtime::BridgeBuilder) -> wsgrpc_runtime::BridgeBuilder,
) -> (RunningBackend, RunningBridge, Socket, Vec<Value>) {
    let (backend, bridge) = setup(builder).await;
    let (mut socket, _) = connect_v2(&bridge.url()).await.unwrap();
    let settings = next_v2_frame(&mut socket).await;
    (backend, bridge, socket, settings)
}

#[tokio::test]
async fn the_bridge_picks_v2_and_sends_its_settings_first() {
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, chosen) = connect_v2(&bridge.url()).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("wsgrpc.v2"));
    let settings = next_v2_frame(&mut socket).await;
    assert_eq!(
        settings,
        [
            json!({"type": "settings", "maxFrameBytes": 65536, "maxCallsPerConnection": 4, "callQueueMessages": 64,
                   "windowBytes": 262_144, "connectionWindowBytes": 1_048_576})
        ]
    );
}

#[tokio::test]
async fn a_bridge_without_v2_answers_no_subprotocol_and_speaks_v1() {
    let (_backend, bridge) = setup(|b| b.protocol_v2(false)).await;
    // A client that insists on a subprotocol fails the handshake, as
    // browsers do; the TypeScript transport then connects again without.
    let err = connect_v2(&bridge.url()).await.unwrap_err();
    assert!(err.to_lowercase().contains("subprotocol"), "{err}");
    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(
            json!({"type": "request", "method": "SayHello", "id": "1", "payload": {"name": "v1"}}),
        )
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["method"], "SayHello");
    assert_eq!(frame["payload"]["message"], "Hello v1");
}

#[tokio::test]
async fn one_frame_opens_many_calls_and_a_bad_envelope_spoils_nothing_else() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    let method = "example.ExampleService/SayHello";
    send(
        &mut socket,
        json!([
            {"type": "request", "method": method, "id": "a", "payload": {"name": "A"}},
            {"type": "subscribe", "id": "bad"},
            {"type": "request", "method": method, "id": "b", "payload": {"name": "B"}},
            {"type": "message", "id": "nobody", "payload": {}},
            {"type": "request", "method": method, "id": "c", "payload": {"name": "C"}},
        ]),
    )
    .await;
    let mut envelopes = Vec::new();
    while envelopes.len() < 5 {
        envelopes.extend(next_v2_frame(&mut socket).await);
    }
    let by_id = |id: &str| {
        envelopes
            .iter()
            .find(|e| e["id"] == id)
            .unwrap_or_else(|| panic!("no envelope for {id} in {envelopes:?}"))
    };
    for (id, name) in [("a", "A"), ("b", "B"), ("c", "C")] {
        assert_eq!(
            by_id(id),
            &json!({"type": "response", "id": id, "payload": {"message": format!("Hello {name}")}, "end": true}),
            "v2 responses echo no method"
        );
    }
    assert_eq!(by_id("bad")["type"], "error");
    assert_eq!(by_id("bad")["codeName"], "INVALID_ARGUMENT");
    assert_eq!(by_id("nobody")["refused"], "message");
    assert_eq!(by_id("nobody")["codeName"], "FAILED_PRECONDITION");
}

#[tokio::test]
async fn a_fast_stream_arrives_in_order_in_runs_and_few_frames() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    let count = 20_000;
    send(
        &mut socket,
        json!([{"type": "request", "method": "example.ExampleService/StreamMessages", "id": "s",
                "payload": {"message": "m", "count": count}}]),
    )
    .await;
    let (envelopes, frames) = envelopes_until_ends(&mut socket, 1).await;
    let mut next_index = 0;
    for envelope in &envelopes {
        assert_eq!(envelope["id"], "s");
        assert!(envelope.get("method").is_none());
        for payload in envelope["payloads"].as_array().into_iter().flatten() {
            assert_eq!(payload["index"].as_i64().unwrap_or(0), next_index);
            next_index += 1;
        }
    }
    assert_eq!(next_index, count);
    let last = envelopes.last().unwrap();
    assert_eq!(last["end"], true);
    assert!(last.get("payload").is_none(), "no legacy end marker in v2");
    // The backend sends many messages per HTTP/2 DATA frame; the bridge
    // passes them on together.
    assert!(
        envelopes.len() < count as usize / 10 && frames <= envelopes.len(),
        "{} envelopes in {frames} frames for {count} messages",
        envelopes.len()
    );
}

#[tokio::test]
async fn a_cancel_after_the_end_is_ignored_quietly() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    send(
        &mut socket,
        json!([
            {"type": "cancel", "id": "gone"},
            {"type": "request", "method": "SayHello", "id": "h", "payload": {"name": "x"}},
        ]),
    )
    .await;
    let frame = next_v2_frame(&mut socket).await;
    assert_eq!(frame.len(), 1, "nothing but the answer: {frame:?}");
    assert_eq!(frame[0]["id"], "h");
}

#[tokio::test]
async fn a_frame_that_is_no_array_is_refused_and_the_socket_goes_on() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    send(
        &mut socket,
        json!({"type": "request", "method": "SayHello", "id": "1"}),
    )
    .await;
    let refused = next_v2_frame(&mut socket).await;
    assert_eq!(refused[0]["type"], "error");
    assert!(refused[0]["error"].as_str().unwrap().contains("JSON array"));
    send(
        &mut socket,
        json!([{"type": "request", "method": "SayHello", "id": "2", "payload": {"name": "y"}}]),
    )
    .await;
    assert_eq!(next_v2_frame(&mut socket).await[0]["id"], "2");
}

const SERVER_STREAM: &str = "wsgrpc.test.v1.TestService/ServerStream";
const CLIENT_STREAM: &str = "wsgrpc.test.v1.TestService/ClientStream";
/// Long enough for a stream that is not held back to run far ahead.
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_stream_sends_no_more_than_its_window_and_holds_the_backend_back() {
    let (backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    // About 110 bytes each: HTTP/2's stream window of 256 KiB holds some
    // 2,400 of them between the backend and the bridge.
    let text = "x".repeat(100);
    let count = 20_000;
    send(
        &mut socket,
        json!([{"type": "request", "method": SERVER_STREAM, "id": "s", "window": 100,
                "payload": {"text": text, "count": count}}]),
    )
    .await;
    let mut envelopes = Vec::new();
    while payloads_of(&envelopes, "s").len() < 100 {
        envelopes.extend(next_v2_frame(&mut socket).await);
    }
    assert_eq!(
        payloads_of(&envelopes, "s").len(),
        100,
        "exactly the window"
    );
    assert!(
        frame_within(&mut socket, QUIET).await.is_none(),
        "nothing past the window"
    );
    let held_back = backend.backend.sent();
    println!("the backend sent {held_back} of {count} while the client took 100");
    assert!(
        held_back < count as u64 / 2,
        "the backend sent {held_back} of {count} while the client took 100"
    );
    // A unary call on the same socket is not held up by the stalled stream.
    send(
        &mut socket,
        json!([{"type": "request", "method": "SayHello", "id": "u", "payload": {"name": "u"}}]),
    )
    .await;
    let answer = next_v2_frame(&mut socket).await;
    assert_eq!(answer[0]["id"], "u", "{answer:?}");
    assert_eq!(backend.backend.sent(), held_back, "still held back");

    send(
        &mut socket,
        json!([{"type": "credit", "id": "s", "messages": count}]),
    )
    .await;
    let (rest, _) = envelopes_until_ends(&mut socket, 1).await;
    envelopes.extend(rest);
    let payloads = payloads_of(&envelopes, "s");
    assert_eq!(payloads.len(), count as usize);
    for (index, payload) in payloads.iter().enumerate() {
        assert_eq!(payload["index"].as_u64().unwrap_or(0), index as u64);
    }
}

#[tokio::test]
async fn a_window_the_size_of_the_stream_still_sees_its_end() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    send(
        &mut socket,
        json!([{"type": "request", "method": SERVER_STREAM, "id": "s", "window": 3,
                "payload": {"text": "t", "count": 3}}]),
    )
    .await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 1).await;
    assert_eq!(payloads_of(&envelopes, "s").len(), 3);
}

#[tokio::test]
async fn credit_is_checked_and_credit_for_an_ended_call_is_ignored() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    send(
        &mut socket,
        json!([
            {"type": "credit", "id": "gone", "messages": 10},
            {"type": "credit", "id": "zero", "messages": 0},
            {"type": "request", "method": SERVER_STREAM, "id": "big", "window": 1u64 << 31},
        ]),
    )
    .await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 1).await;
    let mut envelopes = envelopes;
    while envelopes.len() < 2 {
        envelopes.extend(next_v2_frame(&mut socket).await);
    }
    assert_eq!(envelopes.len(), 2, "nothing for `gone`: {envelopes:?}");
    let zero = envelopes.iter().find(|e| e["id"] == "zero").unwrap();
    assert_eq!(zero["type"], "error");
    assert_eq!(zero["refused"], "credit");
    assert_eq!(zero["codeName"], "INVALID_ARGUMENT");
    let big = envelopes.iter().find(|e| e["id"] == "big").unwrap();
    assert_eq!(big["codeName"], "INVALID_ARGUMENT", "{big}");
    assert!(big["error"].as_str().unwrap().contains("window"), "{big}");
}

#[tokio::test]
async fn v1_refuses_credit_and_windows() {
    let (_backend, bridge) = setup(|b| b).await;
    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(json!({"type": "credit", "id": "1", "messages": 1}))
        .await;
    assert_eq!(client.recv().await["codeName"], "INVALID_ARGUMENT");
    client
        .send(json!({"type": "request", "method": SERVER_STREAM, "id": "2", "window": 1}))
        .await;
    let refused = client.recv().await;
    assert!(
        refused["error"].as_str().unwrap().contains("`window`"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_client_stream_sends_within_its_credit_and_gets_more_as_the_backend_takes() {
    let (_backend, _bridge, mut socket, settings) = open_v2(|b| b).await;
    let queue = settings[0]["callQueueMessages"].as_u64().unwrap();
    send(
        &mut socket,
        json!([{"type": "request", "method": CLIENT_STREAM, "id": "c"}]),
    )
    .await;
    // The whole initial window, then more as credit comes, five times over.
    let mut granted = queue;
    let mut sent = 0u64;
    while sent < 5 * queue {
        let batch: Vec<Value> = (sent..granted)
            .map(|n| json!({"text": n.to_string(), "big": 1}))
            .collect();
        sent = granted;
        send(
            &mut socket,
            json!([{"type": "message", "id": "c", "payloads": batch}]),
        )
        .await;
        granted += credit_of(&next_v2_frame(&mut socket).await, "c");
    }
    send(&mut socket, json!([{"type": "end", "id": "c"}])).await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 1).await;
    let end = envelopes.iter().find(|e| e["end"] == true).unwrap();
    assert_eq!(end["payload"]["sum"], sent.to_string(), "{end}");
}

#[tokio::test]
async fn a_client_stream_past_its_credit_fails_alone() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    // A backend that takes a message every 100 ms; 500 at once is past
    // the queue of 64.
    let messages: Vec<Value> = (0..500)
        .map(|n| json!({"text": n.to_string(), "delayMs": 100}))
        .collect();
    send(
        &mut socket,
        json!([
            {"type": "request", "method": CLIENT_STREAM, "id": "c"},
            {"type": "message", "id": "c", "payloads": messages},
            {"type": "request", "method": "SayHello", "id": "u", "payload": {"name": "u"}},
        ]),
    )
    .await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 2).await;
    let failed = envelopes
        .iter()
        .find(|e| e["id"] == "c" && e["end"] == true);
    assert_eq!(failed.unwrap()["codeName"], "RESOURCE_EXHAUSTED");
    let answered = envelopes.iter().find(|e| e["id"] == "u").unwrap();
    assert_eq!(answered["payload"]["message"], "Hello u");
}

#[tokio::test]
async fn a_client_stream_into_a_slow_backend_holds_up_no_other_call() {
    let (_backend, _bridge, mut socket, settings) = open_v2(|b| b).await;
    let queue = settings[0]["callQueueMessages"].as_u64().unwrap();
    // A whole queue for a backend that takes 50 ms a message: some 3 s.
    let messages: Vec<Value> = (0..queue)
        .map(|n| json!({"text": n.to_string(), "delayMs": 50}))
        .collect();
    send(
        &mut socket,
        json!([
            {"type": "request", "method": CLIENT_STREAM, "id": "c"},
            {"type": "message", "id": "c", "payloads": messages, "end": true},
            {"type": "request", "method": "SayHello", "id": "u", "payload": {"name": "u"}},
        ]),
    )
    .await;
    let mut order = Vec::new();
    while order.len() < 2 {
        for envelope in next_v2_frame(&mut socket).await {
            if envelope["end"] == true {
                order.push(envelope["id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(order, ["u", "c"], "the unary call was answered first");
}

/// What a message costs a byte window: its JSON and 16.
fn cost(payload: &Value) -> u64 {
    payload.to_string().len() as u64 + 16
}

/// The bytes the bridge says the `response` envelopes of call `id` count.
fn bytes_of(envelopes: &[Value], id: &str) -> u64 {
    envelopes
        .iter()
        .filter(|e| e["id"] == id && e["type"] == "response")
        .filter_map(|e| e["bytes"].as_u64())
        .sum()
}

/// A v2 socket that took byte windows, letting the bridge send
/// `socket_window` bytes of stream responses.
async fn open_with_byte_windows(
    builder: impl FnOnce(wsgrpc_runtime::BridgeBuilder) -> wsgrpc_runtime::BridgeBuilder,
    socket_window: u64,
) -> (RunningBackend, RunningBridge, Socket, Vec<Value>) {
    let (backend, bridge, mut socket, settings) = open_v2(builder).await;
    assert!(
        settings[0]["windowBytes"].as_u64().is_some(),
        "{settings:?}"
    );
    send(
        &mut socket,
        json!([{"type": "settings", "connectionWindowBytes": socket_window}]),
    )
    .await;
    (backend, bridge, socket, settings)
}

/// Frames until none comes for a while.
async fn envelopes_until_quiet(socket: &mut Socket) -> Vec<Value> {
    let mut envelopes = Vec::new();
    while let Some(frame) = frame_within(socket, QUIET).await {
        envelopes.extend(frame);
    }
    envelopes
}

#[tokio::test]
async fn a_stream_in_bytes_sends_its_window_and_one_message_more_and_says_what_it_sent() {
    let (_backend, _bridge, mut socket, _) = open_with_byte_windows(|b| b, 1 << 30).await;
    let text = "x".repeat(100);
    let count = 2_000;
    send(
        &mut socket,
        json!([{"type": "request", "method": SERVER_STREAM, "id": "s", "windowBytes": 5_000,
                "payload": {"text": text, "count": count}}]),
    )
    .await;
    let envelopes = envelopes_until_quiet(&mut socket).await;
    let payloads = payloads_of(&envelopes, "s");
    let sent: u64 = payloads.iter().map(|payload| cost(payload)).sum();
    assert_eq!(
        bytes_of(&envelopes, "s"),
        sent,
        "`bytes` counts each message"
    );
    let last = cost(payloads.last().unwrap());
    assert!(
        sent >= 5_000 && sent - last < 5_000,
        "the window, and the one message that took it below zero: {sent}"
    );

    // Credit for what was read lets as much again go.
    send(
        &mut socket,
        json!([{"type": "credit", "id": "s", "bytes": sent}]),
    )
    .await;
    let more = envelopes_until_quiet(&mut socket).await;
    let more_sent = bytes_of(&more, "s");
    assert!(
        more_sent >= sent && more_sent < sent + 2 * last,
        "{more_sent} after {sent}"
    );

    send(
        &mut socket,
        json!([{"type": "credit", "id": "s", "bytes": 1u64 << 30}]),
    )
    .await;
    let (rest, _) = envelopes_until_ends(&mut socket, 1).await;
    let all: Vec<Value> = [envelopes, more, rest].concat();
    let payloads = payloads_of(&all, "s");
    assert_eq!(payloads.len(), count as usize);
    for (index, payload) in payloads.iter().enumerate() {
        assert_eq!(payload["index"].as_u64().unwrap_or(0), index as u64);
    }
}

#[tokio::test]
async fn the_sockets_window_holds_back_every_stream_on_it() {
    let (_backend, _bridge, mut socket, _) = open_with_byte_windows(|b| b, 6_000).await;
    let text = "y".repeat(200);
    let open = |id: &str| {
        json!({"type": "request", "method": SERVER_STREAM, "id": id,
               "payload": {"text": text, "count": 500}})
    };
    send(&mut socket, json!([open("a"), open("b")])).await;
    let envelopes = envelopes_until_quiet(&mut socket).await;
    let sent = bytes_of(&envelopes, "a") + bytes_of(&envelopes, "b");
    assert!(
        (6_000..6_000 + 2 * 300).contains(&sent),
        "the socket's window, and a message of each call at most: {sent}"
    );
    // Credit without an id opens the socket's window for both.
    send(
        &mut socket,
        json!([{"type": "credit", "bytes": 1u64 << 30}]),
    )
    .await;
    let (rest, _) = envelopes_until_ends(&mut socket, 2).await;
    let all: Vec<Value> = [envelopes, rest].concat();
    assert_eq!(payloads_of(&all, "a").len(), 500);
    assert_eq!(payloads_of(&all, "b").len(), 500);
}

#[tokio::test]
async fn a_client_stream_in_bytes_gets_credit_in_bytes_and_its_window_grows() {
    let (_backend, _bridge, mut socket, settings) = open_with_byte_windows(|b| b, 1 << 20).await;
    let first_window = settings[0]["windowBytes"].as_u64().unwrap();
    let socket_window = settings[0]["connectionWindowBytes"].as_u64().unwrap();
    send(
        &mut socket,
        json!([{"type": "request", "method": CLIENT_STREAM, "id": "c"}]),
    )
    .await;
    // Padded with a field the backend ignores without `failCode`.
    let payload = json!({"failMessage": "z".repeat(1_000), "big": 1});
    let each = cost(&payload);
    // Send what both windows allow, in frames within the test bridge's
    // 64 KiB, before reading anything: so the bridge's round-trip ping is
    // answered (the socket answers it when it reads) only after the whole
    // window arrived, as over a long path. Then read the credit.
    let (mut call_left, mut socket_left) = (first_window as i64, socket_window as i64);
    let (mut sent, mut widest) = (0u64, first_window as i64);
    while sent < 20 << 20 {
        while call_left > 0 && socket_left > 0 {
            let mut batch = Vec::new();
            while call_left > 0 && socket_left > 0 && batch.len() < 55 {
                batch.push(payload.clone());
                call_left -= each as i64;
                socket_left -= each as i64;
            }
            sent += each * batch.len() as u64;
            send(
                &mut socket,
                json!([{"type": "message", "id": "c", "payloads": batch}]),
            )
            .await;
        }
        let credit = next_v2_frame(&mut socket).await;
        for envelope in credit {
            assert_eq!(envelope["type"], "credit", "{envelope}");
            assert!(
                envelope.get("messages").is_none(),
                "credit in bytes: {envelope}"
            );
            let bytes = envelope["bytes"].as_i64().unwrap();
            match envelope["id"].as_str() {
                Some("c") => call_left += bytes,
                None => socket_left += bytes,
                Some(other) => panic!("credit for {other}"),
            }
        }
        widest = widest.max(call_left);
    }
    assert!(
        widest > first_window as i64,
        "the window grew past its first {first_window} bytes (widest {widest})"
    );
    send(&mut socket, json!([{"type": "end", "id": "c"}])).await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 1).await;
    let end = envelopes.iter().find(|e| e["end"] == true).unwrap();
    assert_eq!(end["payload"]["sum"], (sent / each).to_string(), "{end}");
}

/// The first message of a stream of two from StreamMessages, whose index
/// is 0, on a socket whose settings carry `json` (or none).
async fn first_message_with(
    builder: impl FnOnce(wsgrpc_runtime::BridgeBuilder) -> wsgrpc_runtime::BridgeBuilder,
    json: Option<Value>,
) -> Value {
    let (_backend, _bridge, mut socket, _) = open_v2(builder).await;
    let mut settings = json!({"type": "settings", "connectionWindowBytes": 1 << 20});
    if let Some(json) = json {
        settings["json"] = json;
    }
    send(
        &mut socket,
        json!([settings, {"type": "request", "method": "example.ExampleService/StreamMessages",
                          "id": "s", "payload": {"message": "m", "count": 2}, "windowBytes": 4096}]),
    )
    .await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 1).await;
    payloads_of(&envelopes, "s")[0].clone()
}

#[tokio::test]
async fn the_json_form_a_client_asks_for_in_its_settings_is_what_it_reads() {
    // The bridge's own rule leaves fields at their defaults out.
    assert_eq!(
        first_message_with(|b| b, None).await,
        json!({"message": "m"})
    );
    assert_eq!(
        first_message_with(|b| b, Some(json!({"emitDefaults": true}))).await,
        json!({"message": "m", "index": 0})
    );
    // Whatever the bridge's rule, `{}` is canonical proto3 JSON.
    let writes_defaults = |b: wsgrpc_runtime::BridgeBuilder| {
        b.json_options(wsgrpc_runtime::JsonOptions::canonical().emit_defaults(true))
    };
    assert_eq!(
        first_message_with(writes_defaults, None).await,
        json!({"message": "m", "index": 0})
    );
    assert_eq!(
        first_message_with(writes_defaults, Some(json!({}))).await,
        json!({"message": "m"})
    );
}

#[tokio::test]
async fn a_json_form_with_an_unknown_flag_or_off_settings_is_refused() {
    let (_backend, _bridge, mut socket, _) = open_v2(|b| b).await;
    send(
        &mut socket,
        json!([{"type": "settings", "connectionWindowBytes": 65536, "json": {"emitDefault": true}},
               {"type": "ping", "data": 1, "json": {}}]),
    )
    .await;
    let envelopes = envelopes_until_quiet(&mut socket).await;
    let errors: Vec<&Value> = envelopes.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(errors.len(), 2, "{envelopes:?}");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("emitDefault"),
        "{errors:?}"
    );
    assert!(
        errors[1]["error"].as_str().unwrap().contains("no `json`"),
        "{errors:?}"
    );
}
