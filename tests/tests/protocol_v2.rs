//! Wire protocol v2 between a real WebSocket client and the real bridge:
//! the subprotocol, the settings, batches both ways, and v1 untouched.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use wsgrpc_tests::client::{FRAME_TIMEOUT, WsClient};
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

/// The next text frame, which in v2 is an array of envelopes.
async fn next_frame(socket: &mut Socket) -> Vec<Value> {
    loop {
        let message = tokio::time::timeout(FRAME_TIMEOUT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("reads a frame");
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("the bridge sends JSON");
                return frame.as_array().expect("a v2 frame is an array").clone();
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
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
        envelopes.extend(next_frame(socket).await);
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

#[tokio::test]
async fn the_bridge_picks_v2_and_sends_its_settings_first() {
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, chosen) = connect_v2(&bridge.url()).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("wsgrpc.v2"));
    let settings = next_frame(&mut socket).await;
    assert_eq!(
        settings,
        [
            json!({"type": "settings", "maxFrameBytes": 65536, "maxCallsPerConnection": 4, "callQueueMessages": 64})
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
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, _) = connect_v2(&bridge.url()).await.unwrap();
    next_frame(&mut socket).await;
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
        envelopes.extend(next_frame(&mut socket).await);
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
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, _) = connect_v2(&bridge.url()).await.unwrap();
    next_frame(&mut socket).await;
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
async fn a_client_stream_larger_than_the_queue_goes_in_one_envelope() {
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, _) = connect_v2(&bridge.url()).await.unwrap();
    next_frame(&mut socket).await;
    let messages: Vec<Value> = (0..500)
        .map(|n| json!({"message": n.to_string()}))
        .collect();
    send(
        &mut socket,
        json!([
            {"type": "request", "method": "example.ExampleService/CollectMessages", "id": "c"},
            {"type": "message", "id": "c", "payloads": messages, "end": true},
        ]),
    )
    .await;
    let (envelopes, _) = envelopes_until_ends(&mut socket, 1).await;
    let end = envelopes.iter().find(|e| e["end"] == true).unwrap();
    assert_eq!(end["payload"]["count"], 500, "{end}");
}

#[tokio::test]
async fn a_cancel_after_the_end_is_ignored_quietly() {
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, _) = connect_v2(&bridge.url()).await.unwrap();
    next_frame(&mut socket).await;
    send(
        &mut socket,
        json!([
            {"type": "cancel", "id": "gone"},
            {"type": "request", "method": "SayHello", "id": "h", "payload": {"name": "x"}},
        ]),
    )
    .await;
    let frame = next_frame(&mut socket).await;
    assert_eq!(frame.len(), 1, "nothing but the answer: {frame:?}");
    assert_eq!(frame[0]["id"], "h");
}

#[tokio::test]
async fn a_frame_that_is_no_array_is_refused_and_the_socket_goes_on() {
    let (_backend, bridge) = setup(|b| b).await;
    let (mut socket, _) = connect_v2(&bridge.url()).await.unwrap();
    next_frame(&mut socket).await;
    send(
        &mut socket,
        json!({"type": "request", "method": "SayHello", "id": "1"}),
    )
    .await;
    let refused = next_frame(&mut socket).await;
    assert_eq!(refused[0]["type"], "error");
    assert!(refused[0]["error"].as_str().unwrap().contains("JSON array"));
    send(
        &mut socket,
        json!([{"type": "request", "method": "SayHello", "id": "2", "payload": {"name": "y"}}]),
    )
    .await;
    assert_eq!(next_frame(&mut socket).await[0]["id"], "2");
}
