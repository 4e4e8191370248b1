//! Property-based fuzzing of what parses client input: the envelope parser
//! and the proto3 JSON decoders, driven by the generated descriptors. Whatever a client sends, they
//! answer with a value or an error, never a panic.
//!
//! proptest runs on the stable toolchain. The test command runs a short
//! pass; a long one: `PROPTEST_CASES=200000 cargo test --release -p wsgrpc-tests --test fuzz`.
//! A failing input is saved under `tests/proptest-regressions/` and replayed
//! on every later run.

use proptest::prelude::*;
use serde_json::{Map, Value};
use wsgrpc_runtime::envelope::Envelope;
use wsgrpc_runtime::{JsonOptions, TranscodeError, json};
use wsgrpc_tests::rich_message;

/// The bridge's decoder for a message of the rich fixture.
fn json_to_proto(message: &str, text: &str) -> Result<bytes::Bytes, TranscodeError> {
    json::json_to_proto(&rich_message(message), text)
}

/// The bridge's encoder for a message of the rich fixture.
fn proto_to_json(
    message: &str,
    proto: &[u8],
) -> Result<Box<serde_json::value::RawValue>, TranscodeError> {
    json::proto_to_json(&rich_message(message), proto, &JsonOptions::canonical())
}

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
        let _ = json_to_proto("rich.shop.v1.Order", &text);
        let _ = json_to_proto("rich.shop.v1.WellKnown", &text);
        let _ = json_to_proto("rich.shop.v1.Maps", &text);
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
        if let Ok(envelope) = Envelope::parse(&text)
            && let Some(payload) = envelope.payload
        {
            let _ = json_to_proto("rich.shop.v1.GetOrderRequest", payload.get());
        }
    }
}

// Inputs that coverage-guided fuzzing (`scripts/fuzz`, fuzz/) turned up,
// each as it reached the decoders.

/// proto3 JSON writes non-finite floats as "NaN", "Infinity", "-Infinity";
/// pbjson wrote `null`, which came back as an error in a list and as 0 in
/// a field. The wrappers too: prost-reflect writes them as plain floats.
#[test]
fn non_finite_floats_come_back_as_they_went() {
    for (input, expected) in [
        (r#"{"rDouble":["NaN"]}"#, r#"{"rDouble":["NaN"]}"#),
        (r#"{"fDouble":"Infinity"}"#, r#"{"fDouble":"Infinity"}"#),
        (r#"{"fFloat":"-Infinity"}"#, r#"{"fFloat":"-Infinity"}"#),
    ] {
        let proto = json_to_proto("rich.shop.v1.Scalars", input).unwrap();
        let json = proto_to_json("rich.shop.v1.Scalars", &proto).unwrap();
        assert_eq!(json.get(), expected, "{input}");
        assert_eq!(json_to_proto("rich.shop.v1.Scalars", json.get()), Ok(proto));
    }
    // Out of a float's range is an error, as in the reference, not Infinity.
    let err = json_to_proto("rich.shop.v1.Scalars", r#"{"fFloat":1e39}"#).unwrap_err();
    assert!(err.to_string().starts_with("field `fFloat`"), "{err}");
}

/// pbjson-types stripped one `-` and parsed the rest as a signed number, so
/// a second sign got through: seconds and nanos of opposite signs, which the
/// bridge forwarded and could not render back.
#[test]
fn a_duration_with_two_minus_signs_is_refused() {
    let err = json_to_proto("rich.shop.v1.WellKnown", r#"{"ttl":"--5.5s"}"#).unwrap_err();
    assert!(err.to_string().starts_with("field `ttl`"), "{err}");
}

/// The same path negated i64::MIN: a panic where overflow checks are on
/// (debug builds, this test), i64::MIN seconds where they are off.
#[test]
fn a_duration_that_overflows_is_refused_without_panic() {
    let err = json_to_proto(
        "rich.shop.v1.WellKnown",
        r#"{"ttl":"--9223372036854775808s"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("field `ttl`"), "{err}");
}

/// serde_json parses some numbers (long, or with an exponent) one ULP off
/// unless its `float_roundtrip` feature is on: the backend got another
/// double than the client wrote, and the bridge's JSON of it did not come
/// back the same.
#[test]
fn numbers_decode_to_the_nearest_double() {
    use prost::Message;
    let proto = json_to_proto(
        "rich.shop.v1.Scalars",
        r#"{"fDouble":6.666666666666667e38}"#,
    )
    .unwrap();
    let scalars = wsgrpc_tests::rich::shop::v1::Scalars::decode(proto).unwrap();
    assert_eq!(scalars.f_double, 6.666666666666667e38);

    let input = r#"{"attributes":{"":666666666666666666666666666666666666666}}"#;
    let proto = json_to_proto("rich.shop.v1.WellKnown", input).unwrap();
    let json = proto_to_json("rich.shop.v1.WellKnown", &proto).unwrap();
    assert_eq!(
        json_to_proto("rich.shop.v1.WellKnown", json.get()),
        Ok(proto)
    );
}

/// A backend's Duration of i64::MIN seconds (or i32::MIN nanos) overflowed
/// `abs` in the range check: a panic where overflow checks are on.
#[test]
fn a_response_duration_of_i64_min_is_refused_without_panic() {
    let seconds = b"\x12\x0b\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01";
    let nanos = b"\x12\x0b\x10\x80\x80\x80\x80\xf8\xff\xff\xff\xff\x01";
    for proto in [&seconds[..], &nanos[..]] {
        let err = proto_to_json("rich.shop.v1.WellKnown", proto).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}

/// pbjson-types wrote a Timestamp before year 0 or after 9999 with a signed
/// or five-digit year ("-2225-…"), which is not RFC 3339 and which it did
/// not read back, and read years 0 and 9999 with offsets that took them out
/// of range. proto3 JSON has Timestamps from 0001-01-01 to 9999-12-31 only.
#[test]
fn timestamps_outside_years_1_to_9999_are_refused() {
    // createdAt { seconds: -69252277504 }, as found.
    let proto = b"\x0a\x0b\x08\x80\xb6\xf8\x81\xfe\xfd\xff\xff\xff\x01";
    assert!(proto_to_json("rich.shop.v1.WellKnown", proto).is_err());
    for input in [
        r#"{"createdAt":"0000-01-01T00:00:00+01:00"}"#,
        r#"{"createdAt":"9999-12-31T23:59:59-01:00"}"#,
    ] {
        let err = json_to_proto("rich.shop.v1.WellKnown", input).unwrap_err();
        assert!(err.to_string().starts_with("field `createdAt`"), "{err}");
    }
}
