//! The bridge between a real WebSocket client and a real tonic backend, on
//! generated code: every kind of call, cancellation, metadata, deadlines and
//! every kind of bad input.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use wsgrpc_tests::client::{NotText, WsClient};
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

struct Setup {
    backend: RunningBackend,
    bridge: RunningBridge,
}

impl Setup {
    async fn new() -> Self {
        let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
        let bridge = RunningBridge::start(test_bridge(&backend.uri()), ANY_PORT.into())
            .await
            .unwrap();
        Self { backend, bridge }
    }

    async fn client(&self) -> WsClient {
        WsClient::connect(&self.bridge.url()).await
    }

    /// Waits until the backend has seen `count` calls cancelled, at most 1 s.
    async fn backend_sees_cancelled(&self, count: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.backend.backend.cancelled() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "backend saw {} cancellations, expected {count}",
                self.backend.backend.cancelled()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn request(id: &str, method: &str, payload: Value) -> Value {
    json!({"type": "request", "id": id, "method": method, "payload": payload})
}

#[tokio::test]
async fn the_original_clients_frames_work_unchanged() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;

    client
        .send_text(
            r#"{"type":"request","method":"SayHello","id":"req_1","payload":{"name":"World"}}"#,
        )
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type":"response","method":"SayHello","id":"req_1","payload":{"message":"Hello World"},"end":true})
    );

    client
        .send(request(
            "req_2",
            "StreamMessages",
            json!({"message": "Hello from stream", "count": 2}),
        ))
        .await;
    assert_eq!(
        client.recv_call("req_2").await,
        [
            // A bare method name gets every field, defaults too, as the
            // original bridge wrote them: its page shows `[0]`.
            json!({"type":"response","method":"StreamMessages","id":"req_2","payload":{"message":"Hello from stream","index":0}}),
            json!({"type":"response","method":"StreamMessages","id":"req_2","payload":{"message":"Hello from stream","index":1}}),
            json!({"type":"response","method":"StreamMessages","id":"req_2","payload":{"end":true},"end":true}),
        ]
    );

    // Named in full, as generated clients do: canonical JSON, defaults out.
    client
        .send(request(
            "req_3",
            "example.ExampleService/StreamMessages",
            json!({"message": "m", "count": 1}),
        ))
        .await;
    assert_eq!(
        client.recv_call("req_3").await[0]["payload"],
        json!({"message": "m"})
    );
}

#[tokio::test]
async fn all_four_kinds_of_call() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;

    client
        .send(request(
            "u",
            "wsgrpc.test.v1.TestService/Unary",
            json!({"text": "one", "big": "9007199254740993"}),
        ))
        .await;
    let frames = client.recv_call("u").await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["payload"], json!({"text": "one"}));

    client
        .send(request(
            "s",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"text": "x", "count": 3}),
        ))
        .await;
    let frames = client.recv_call("s").await;
    let indexes: Vec<_> = frames
        .iter()
        .map(|f| f["payload"]["index"].clone())
        .collect();
    assert_eq!(indexes, [Value::Null, json!(1), json!(2), Value::Null]);
    assert_eq!(frames[3]["end"], true);

    client
        .send(json!({"type": "request", "id": "c", "method": "wsgrpc.test.v1.TestService/ClientStream", "payload": {"text": "a", "big": "1"}}))
        .await;
    client
        .send(json!({"type": "message", "id": "c", "payload": {"text": "b", "big": "9007199254740993"}}))
        .await;
    client
        .send(json!({"type": "message", "id": "c", "payload": {"text": "c"}}))
        .await;
    client.send(json!({"type": "end", "id": "c"})).await;
    let frames = client.recv_call("c").await;
    assert_eq!(
        frames,
        [
            json!({"type": "response", "method": "wsgrpc.test.v1.TestService/ClientStream", "id": "c",
                "payload": {"text": "a b c", "index": 3, "sum": "9007199254740994"}, "end": true})
        ]
    );

    // Bidi: each answer arrives before the next message is sent.
    client
        .send(json!({"type": "request", "id": "b", "method": "wsgrpc.test.v1.TestService/Bidi"}))
        .await;
    for text in ["ping", "pong"] {
        client
            .send(json!({"type": "message", "id": "b", "payload": {"text": text}}))
            .await;
        let frame = client.recv().await;
        assert_eq!(frame["id"], "b");
        assert_eq!(frame["payload"], json!({"text": text}));
        assert_eq!(frame.get("end"), None);
    }
    client
        .send(json!({"type": "message", "id": "b", "payload": {"text": "last", "count": 2}, "end": true}))
        .await;
    let frames = client.recv_call("b").await;
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1]["payload"], json!({"text": "last", "index": 1}));
    assert_eq!(frames[2]["end"], true);
    assert_eq!(frames[2]["payload"], json!({"end": true}));
    // Both half-closes reached the backend as END_STREAM.
    assert_eq!(setup.backend.backend.half_closed(), 2);
}

#[tokio::test]
async fn a_message_that_looks_like_the_legacy_end_marker_is_still_a_message() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    client
        .send(request(
            "e",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 2, "markEnd": true}),
        ))
        .await;
    let frames = client.recv_call("e").await;
    assert_eq!(frames.len(), 3, "two messages and the end: {frames:?}");
    for message in &frames[..2] {
        assert_eq!(message["payload"], json!({"end": true}));
        assert_eq!(
            message.get("end"),
            None,
            "only the envelope says a call is over"
        );
    }
    assert_eq!(frames[2]["end"], true);
}

#[tokio::test]
async fn cancel_reaches_the_backend() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    client
        .send(request("h", "wsgrpc.test.v1.TestService/Hang", json!({})))
        .await;
    client
        .send(request(
            "s",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 1000000}),
        ))
        .await;
    // Streams of requests left open: a cancel must reach the backend as a
    // reset, never as a clean end of input that would let the call finish.
    for (id, method) in [("c", "ClientStream"), ("b", "Bidi")] {
        client
            .send(request(
                id,
                &format!("wsgrpc.test.v1.TestService/{method}"),
                json!({"text": "open"}),
            ))
            .await;
    }
    // Let every call reach the backend before cancelling them.
    while setup.backend.backend.active() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for id in ["h", "s", "c", "b"] {
        client.send(json!({"type": "cancel", "id": id})).await;
    }
    let hang = client.recv_call("h").await;
    assert_eq!(
        hang.last().unwrap(),
        &json!({"type": "response", "method": "wsgrpc.test.v1.TestService/Hang", "id": "h",
                "error": "cancelled by the client", "code": 1, "codeName": "CANCELLED", "end": true})
    );
    for id in ["s", "c", "b"] {
        let frames = client.recv_call(id).await;
        assert_eq!(frames.last().unwrap()["codeName"], "CANCELLED", "{id}");
    }
    setup.backend_sees_cancelled(4).await;
    assert_eq!(setup.backend.backend.half_closed(), 0);
}

#[tokio::test]
async fn closing_the_socket_cancels_its_calls() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    for id in ["a", "b"] {
        client
            .send(request(id, "wsgrpc.test.v1.TestService/Hang", json!({})))
            .await;
    }
    while setup.backend.backend.active() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.vanish();
    setup.backend_sees_cancelled(2).await;
}

#[tokio::test]
async fn metadata_goes_to_the_backend_and_headers_and_trailers_come_back() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    client
        .send(
            json!({"type": "request", "id": "m", "method": "wsgrpc.test.v1.TestService/Unary",
                     "payload": {"echoMetadata": true},
                     "metadata": {"authorization": "Bearer t0ken", "x-tenant": "blue"}}),
        )
        .await;
    let frame = client.recv().await;
    assert_eq!(
        frame["payload"]["metadata"]["authorization"],
        "Bearer t0ken"
    );
    assert_eq!(frame["payload"]["metadata"]["x-tenant"], "blue");
    assert_eq!(frame["headers"]["echo-authorization"], "Bearer t0ken");
    assert_eq!(frame["headers"].get("content-type"), None);

    client
        .send(request(
            "f",
            "wsgrpc.test.v1.TestService/Unary",
            json!({"failCode": 5, "failMessage": "no such user"}),
        ))
        .await;
    assert_eq!(
        client.recv().await,
        json!({"type": "response", "method": "wsgrpc.test.v1.TestService/Unary", "id": "f",
               "error": "no such user", "code": 5, "codeName": "NOT_FOUND", "end": true,
               "trailers": {"x-failed-by": "test-backend"}})
    );

    client
        .send(
            json!({"type": "request", "id": "r", "method": "wsgrpc.test.v1.TestService/Unary",
                     "metadata": {"grpc-timeout": "1S"}}),
        )
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["codeName"], "INVALID_ARGUMENT");
    assert_eq!(frame["error"], "metadata key `grpc-timeout` is reserved");
}

#[tokio::test]
async fn a_deadline_ends_the_call_and_cancels_it_at_the_backend() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    let started = tokio::time::Instant::now();
    client
        .send(json!({"type": "request", "id": "d", "method": "wsgrpc.test.v1.TestService/Hang", "timeoutMs": 200}))
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["codeName"], "DEADLINE_EXCEEDED", "{frame}");
    assert_eq!(frame["end"], true);
    assert!(started.elapsed() >= Duration::from_millis(200));
    setup.backend_sees_cancelled(1).await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_frame_and_disturbs_no_other_call() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    // A slow stream that must survive everything below.
    client
        .send(request(
            "keep",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 3, "delayMs": 300}),
        ))
        .await;

    let mut kept = Vec::new();
    let refusals: [(&str, Value); 7] = [
        (
            "{not json",
            json!({"type": "error", "code": 3, "codeName": "INVALID_ARGUMENT"}),
        ),
        (
            r#"{"type":"subscribe","id":"x1"}"#,
            json!({"type": "error", "id": "x1", "code": 3}),
        ),
        (
            r#"{"type":"request","method":"SayHello"}"#,
            json!({"type": "error", "code": 3}),
        ),
        (
            r#"{"type":"message","id":"nope","payload":{}}"#,
            json!({"type": "error", "id": "nope", "code": 9}),
        ),
        (
            r#"{"type":"cancel","id":"nope"}"#,
            json!({"type": "error", "id": "nope", "code": 9}),
        ),
        (
            r#"{"type":"request","id":"keep","method":"SayHello"}"#,
            json!({"type": "error", "id": "keep", "code": 6, "codeName": "ALREADY_EXISTS"}),
        ),
        (
            r#"{"type":"message","id":"keep","payload":{}}"#,
            json!({"type": "error", "id": "keep", "code": 9}),
        ),
    ];
    for (text, expected) in refusals {
        client.send_text(text).await;
        let frame = recv_other(&mut client, "keep", &mut kept).await;
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&frame[key], value, "{text} → {frame}");
        }
        assert!(
            frame["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{frame}"
        );
        assert_eq!(
            frame.get("end"),
            None,
            "a refused frame ends no call: {frame}"
        );
    }

    client.send_binary(vec![1, 2, 3]).await;
    let frame = recv_other(&mut client, "keep", &mut kept).await;
    assert_eq!(frame["type"], "error");
    assert!(frame["error"].as_str().unwrap().contains("binary frames"));

    client.send(request("u1", "NoSuchMethod", json!({}))).await;
    let frame = recv_other(&mut client, "keep", &mut kept).await;
    assert_eq!(
        frame,
        json!({"type": "response", "method": "NoSuchMethod", "id": "u1",
               "error": "unknown method `NoSuchMethod`", "code": 12, "codeName": "UNIMPLEMENTED", "end": true})
    );

    client
        .send(request("p1", "SayHello", json!({"name": 42})))
        .await;
    let frame = recv_other(&mut client, "keep", &mut kept).await;
    assert_eq!(frame["codeName"], "INVALID_ARGUMENT");
    assert_eq!(frame["end"], true);
    assert!(
        frame["error"].as_str().unwrap().contains("field `name`"),
        "{frame}"
    );

    client
        .send(request("p2", "SayHello", json!({"nmae": "typo"})))
        .await;
    let frame = recv_other(&mut client, "keep", &mut kept).await;
    assert!(
        frame["error"]
            .as_str()
            .unwrap()
            .contains("unrecognized field name 'nmae'"),
        "{frame}"
    );

    // The stream went on through all of it.
    if kept.last().is_none_or(|frame| frame["end"] != true) {
        kept.extend(client.recv_call("keep").await);
    }
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert_eq!(kept[3]["end"], true);
    assert_eq!(kept[3].get("error"), None);
}

#[tokio::test]
async fn too_many_calls_in_flight_is_resource_exhausted_for_that_call_only() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    for id in ["1", "2", "3", "4"] {
        client
            .send(request(id, "wsgrpc.test.v1.TestService/Hang", json!({})))
            .await;
    }
    client
        .send(request("5", "wsgrpc.test.v1.TestService/Unary", json!({})))
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["id"], "5");
    assert_eq!(frame["codeName"], "RESOURCE_EXHAUSTED");

    // Ending one call makes room again.
    client.send(json!({"type": "cancel", "id": "1"})).await;
    assert_eq!(client.recv().await["codeName"], "CANCELLED");
    client
        .send(request(
            "6",
            "wsgrpc.test.v1.TestService/Unary",
            json!({"text": "room"}),
        ))
        .await;
    assert_eq!(client.recv().await["payload"]["text"], "room");
}

#[tokio::test]
async fn an_oversized_frame_closes_with_1009() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    let huge = "x".repeat(100 * 1024);
    client
        .send(request("big", "SayHello", json!({"name": huge})))
        .await;
    match client.next().await {
        Err(NotText::Closed(Some(frame))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test]
async fn ids_can_be_reused_once_their_call_has_ended() {
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    for round in 0..20 {
        client
            .send(request(
                "same",
                "SayHello",
                json!({"name": round.to_string()}),
            ))
            .await;
        let frame = client.recv().await;
        assert_eq!(
            frame["payload"]["message"],
            format!("Hello {round}"),
            "{frame}"
        );
    }
}

#[tokio::test]
async fn the_bridge_outlives_its_backend() {
    // A port that nothing listens on yet: the backend is down at start.
    let backend_addr: SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let bridge = RunningBridge::start(
        test_bridge(&format!("http://{backend_addr}")),
        ANY_PORT.into(),
    )
    .await
    .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(request("0", "SayHello", json!({"name": "early"})))
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["codeName"], "UNAVAILABLE", "{frame}");
    assert!(!frame["error"].as_str().unwrap().is_empty());

    let backend = RunningBackend::start(backend_addr).await.unwrap();
    assert!(
        eventually_answers(&mut client, "up").await,
        "calls succeed once the backend is up"
    );

    // Killed in the middle of a stream.
    client
        .send(request(
            "s",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 1000, "delayMs": 10}),
        ))
        .await;
    assert_eq!(client.recv().await["id"], "s");
    backend.kill();
    let frames = client.recv_call("s").await;
    let last = frames.last().unwrap();
    assert_eq!(last["codeName"], "UNAVAILABLE", "{last}");
    client
        .send(request("1", "SayHello", json!({"name": "b"})))
        .await;
    assert_eq!(client.recv().await["codeName"], "UNAVAILABLE");

    // Back again, without restarting the bridge or reconnecting.
    let _backend = RunningBackend::start(backend_addr).await.unwrap();
    assert!(
        eventually_answers(&mut client, "again").await,
        "calls succeed once the backend is back"
    );
}

/// Whether SayHello succeeds within five seconds of retrying.
async fn eventually_answers(client: &mut WsClient, name: &str) -> bool {
    for attempt in 0..50 {
        let id = format!("{name}{attempt}");
        client
            .send(request(&id, "SayHello", json!({"name": name})))
            .await;
        let frame = client.recv().await;
        if frame["payload"]["message"] == format!("Hello {name}") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_foreign_origin_cannot_open_a_socket() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri()).allowed_origins(Default::default());
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();

    let mut foreign = bridge.url().into_client_request().unwrap();
    foreign
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(foreign).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 403),
        other => panic!("expected HTTP 403, got {other}"),
    }

    let mut same = bridge.url().into_client_request().unwrap();
    let origin = format!("http://{}", bridge.addr);
    same.headers_mut().insert("origin", origin.parse().unwrap());
    assert!(tokio_tungstenite::connect_async(same).await.is_ok());
}

/// The next frame that is not a response of call `id`; those are kept.
async fn recv_other(client: &mut WsClient, id: &str, kept: &mut Vec<Value>) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["id"] == id && frame["type"] == "response" {
            kept.push(frame);
        } else {
            return frame;
        }
    }
}

/// A log that the test reads back: what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_pages_trace_context_reaches_the_backend_and_the_bridges_span() {
    // On the test's one thread, the bridge's tasks log to this subscriber.
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("wsgrpc_runtime=debug")
        .with_ansi(false)
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let setup = Setup::new().await;
    let mut client = setup.client().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    client
        .send(
            json!({"type": "request", "id": "t", "method": "wsgrpc.test.v1.TestService/Unary",
                     "payload": {"echoMetadata": true}, "metadata": {"traceparent": traceparent}}),
        )
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["payload"]["metadata"]["traceparent"], traceparent);
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let opened = log
        .lines()
        .find(|line| line.contains("call opened"))
        .expect("the call's span logged");
    assert!(opened.contains(&format!("trace_id={trace}")), "{opened}");
}
