//! Runs the wire protocol's test vectors (docs/protocol-vectors.json)
//! against the real bridge and backend. The TypeScript tests run the same
//! file.

use base64::Engine as _;
use serde_json::{Value, json};
use wsgrpc_tests::client::{NotText, WsClient};
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

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
async fn every_vector_holds() {
    let vectors: Value = serde_json::from_str(VECTORS).expect("the vectors are JSON");
    let cases = vectors["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 20, "the vectors cover the protocol");

    let backend = RunningBackend::start(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let bridge = RunningBridge::start(test_bridge(&backend.uri()), ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut client = WsClient::connect(&bridge.url()).await;
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
                let actual = client.recv().await;
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
