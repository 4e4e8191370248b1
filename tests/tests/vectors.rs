//! Runs the wire protocol's test vectors (docs/protocol-vectors.json)
//! against the real bridge and backend. The TypeScript tests run the same
//! file.

use std::collections::VecDeque;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgrpc_runtime::BridgeBuilder;
use wsgrpc_tests::client::{NotText, WsClient};
use wsgrpc_tests::{RunningBackend, RunningBridge, descriptor_set_bridge, test_bridge};

const VECTORS: &str = include_str!("../../docs/protocol-vectors.json");

/// Whether `actual` is the frame `expected` describes (PROTOCOL.md, "Test
/// vectors"): the same keys with equal values, but `headers`, `trailers`
/// and `details` are looked at only when expected, and a string `~text`
/// matches any string containing `text`.
fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            let optional = ["headers", "trailers", "details"];
            expected
                .iter()
                .all(|(key, value)| actual.get(key).is_some_and(|a| matches(value, a)))
                && actual
                    .keys()
                    .all(|key| expected.contains_key(key) || optional.contains(&key.as_str()))
        }
        (Value::String(expected), Value::String(actual)) => match expected.strip_prefix('~') {
            Some(part) => actual.contains(part),
            None => expected == actual,
        },
        (Value::Array(expected), Value::Array(actual)) => {
            expected.len() == actual.len()
                && expected.iter().zip(actual).all(|(e, a)| matches(e, a))
        }
        _ => expected == actual,
    }
}

/// A v2 envelope as the vectors expect it: a run of `payloads` becomes one
/// envelope per message (the headers on the first), then the end, if it
/// has one, so that a case does not depend on how messages were batched.
fn one_message_each(envelope: Value) -> Vec<Value> {
    let Some(payloads) = envelope.get("payloads").and_then(Value::as_array) else {
        return vec![envelope];
    };
    let id = &envelope["id"];
    let mut envelopes: Vec<Value> = payloads
        .iter()
        .map(|payload| json!({"type": "response", "id": id, "payload": payload}))
        .collect();
    if let (Some(first), Some(headers)) = (envelopes.first_mut(), envelope.get("headers")) {
        first["headers"] = headers.clone();
    }
    if envelope["end"] == true {
        let mut end = json!({"type": "response", "id": id, "end": true});
        if let Some(trailers) = envelope.get("trailers") {
            end["trailers"] = trailers.clone();
        }
        envelopes.push(end);
    }
    envelopes
}

/// The next envelope a case expects: a v1 frame, or one of a v2 frame's.
async fn next_envelope(
    client: &mut WsClient,
    v2: bool,
    pending: &mut VecDeque<Value>,
) -> Result<Value, NotText> {
    if !v2 {
        return client.next().await;
    }
    while pending.is_empty() {
        let frame = client.next().await?;
        let envelopes = frame.as_array().expect("a v2 frame is an array").clone();
        pending.extend(envelopes.into_iter().flat_map(one_message_each));
    }
    Ok(pending.pop_front().expect("not empty"))
}

#[test]
fn the_matcher_follows_the_rules() {
    let frame = json!({"type": "response", "id": "1", "error": "unknown field `x`", "trailers": {"a": "b"}});
    assert!(matches(
        &json!({"type": "response", "id": "1", "error": "~field `x`"}),
        &frame
    ));
    assert!(
        !matches(&json!({"type": "response", "id": "1"}), &frame),
        "error is not optional"
    );
    assert!(!matches(
        &json!({"type": "response", "id": "1", "error": "~nope"}),
        &frame
    ));
    assert!(!matches(
        &json!({"type": "response", "id": "1", "error": "~x", "trailers": {}}),
        &frame
    ));
}

#[tokio::test]
async fn every_vector_holds_for_the_generated_bridge() {
    let backend = RunningBackend::start(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    every_vector_holds(test_bridge(&backend.uri())).await;
}

/// The services loaded at run time from protoc's descriptors, as
/// wsgrpc-bridge serves them, pass the same vectors.
#[tokio::test]
async fn every_vector_holds_for_a_bridge_from_a_descriptor_set() {
    let backend = RunningBackend::start(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    every_vector_holds(descriptor_set_bridge(&backend.uri())).await;
}

async fn every_vector_holds(builder: BridgeBuilder) {
    let vectors: Value = serde_json::from_str(VECTORS).expect("the vectors are JSON");
    let cases = vectors["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 20, "the vectors cover the protocol");

    let bridge = RunningBridge::start(builder, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let v2 = case["protocol"] == "v2";
        let mut pending = VecDeque::new();
        let mut client = if v2 {
            let mut request = bridge.url().into_client_request().unwrap();
            let offer = "wsgrpc.v2, wsgrpc.v1".parse().unwrap();
            request
                .headers_mut()
                .insert("sec-websocket-protocol", offer);
            let mut client = WsClient::connect_with(request).await;
            let settings = next_envelope(&mut client, true, &mut pending)
                .await
                .unwrap();
            assert_eq!(settings["type"], "settings", "case `{name}`");
            client
        } else {
            WsClient::connect(&bridge.url()).await
        };
        for step in case["steps"].as_array().unwrap() {
            if let Some(frame) = step.get("send") {
                client.send(frame.clone()).await;
            } else if let Some(text) = step.get("sendText") {
                client.send_text(text.as_str().unwrap()).await;
            } else if let Some(bytes) = step.get("sendBinary") {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(bytes.as_str().unwrap())
                    .unwrap();
                client.send_binary(bytes).await;
            } else if let Some(size) = step.get("sendLarge") {
                let name = "x".repeat(size.as_u64().unwrap() as usize);
                client
                    .send(json!({"type": "request", "id": "large", "method": "SayHello", "payload": {"name": name}}))
                    .await;
            } else if let Some(expected) = step.get("expect") {
                let actual = next_envelope(&mut client, v2, &mut pending)
                    .await
                    .unwrap_or_else(|other| panic!("case `{name}`: got {other:?}"));
                assert!(
                    matches(expected, &actual),
                    "case `{name}`:\n expected {expected}\n received {actual}"
                );
            } else if let Some(code) = step.get("expectClose") {
                match client.next().await {
                    Err(NotText::Closed(Some(frame))) => {
                        assert_eq!(
                            u64::from(u16::from(frame.code)),
                            code.as_u64().unwrap(),
                            "case `{name}`"
                        );
                    }
                    other => panic!("case `{name}`: expected close {code}, got {other:?}"),
                }
            } else {
                panic!("case `{name}`: unknown step {step}");
            }
        }
        client.close().await;
    }
}
