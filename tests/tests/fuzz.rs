//! Property-based fuzzing of what parses client input: the envelope parser
//! and the generated proto3 JSON decoders. Whatever a client sends, they
//! answer with a value or an error, never a panic.
//!
//! proptest runs on the stable toolchain. The test command runs a short
//! pass; a long one: `PROPTEST_CASES=200000 cargo test --release -p wsgrpc-tests --test fuzz`.
//! A failing input is saved under `tests/proptest-regressions/` and replayed
//! on every later run.

use proptest::prelude::*;
use serde_json::{Map, Value};
use wsgrpc_runtime::envelope::Envelope;
use wsgrpc_runtime::json_to_proto;
use wsgrpc_tests::rich::shop::v1 as shop;
use wsgrpc_tests::test_v1;

/// Any JSON value, biased toward the shapes the decoders look at: the
/// field names they know, numbers at the edges of their ranges, strings
/// that look like numbers, enums, timestamps and base64.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_owned()),
        Just("id".to_owned()),
        Just("payload".to_owned()),
        Just("state".to_owned()),
        Just("lines".to_owned()),
        Just("totalsByCurrency".to_owned()),
        Just("scalars".to_owned()),
        Just("fInt64".to_owned()),
        Just("f_uint64".to_owned()),
        Just("fBytes".to_owned()),
        Just("fDouble".to_owned()),
        Just("wellKnown".to_owned()),
        Just("createdAt".to_owned()),
        Just("ttl".to_owned()),
        Just("mask".to_owned()),
        Just("attributes".to_owned()),
        Just("cardToken".to_owned()),
        Just("voucher".to_owned()),
        Just("end".to_owned()),
        "[a-zA-Z_]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("9223372036854775808".to_owned()),
            Just("-9223372036854775809".to_owned()),
            Just("1e400".to_owned()),
            Just("NaN".to_owned()),
            Just("STATE_OPEN".to_owned()),
            Just("1972-01-01T10:00:20.021Z".to_owned()),
            Just("9999-12-31T23:59:60Z".to_owned()),
            Just("-315576000001s".to_owned()),
            Just("AAEC+g==".to_owned()),
            Just("a.b_c,dE".to_owned()),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_parses_or_is_refused(text in any::<String>()) {
        let _ = Envelope::parse(&text);
    }

    #[test]
    fn any_json_parses_or_is_refused_as_an_envelope(value in json_value()) {
        let _ = Envelope::parse(&value.to_string());
    }

    #[test]
    fn any_json_decodes_or_is_refused_by_generated_decoders(value in json_value()) {
        let text = value.to_string();
        let _ = json_to_proto::<shop::Order>(&text);
        let _ = json_to_proto::<shop::WellKnown>(&text);
        let _ = json_to_proto::<test_v1::TestRequest>(&text);
    }

    #[test]
    fn mangled_frames_are_refused_without_panic(
        cut in 0usize..120,
        insert in any::<String>(),
    ) {
        let frame = r#"{"type":"request","method":"rich.shop.v1.Shop/GetOrder","id":"r1","payload":{"id":"o","readMask":"lines,note"},"metadata":{"a":"b"},"timeoutMs":5}"#;
        let mut text: String = frame.chars().take(cut).collect();
        text.push_str(&insert);
        text.extend(frame.chars().skip(cut));
        if let Ok(envelope) = Envelope::parse(&text) {
            if let Some(payload) = envelope.payload {
                let _ = json_to_proto::<shop::GetOrderRequest>(payload.get());
            }
        }
    }
}
