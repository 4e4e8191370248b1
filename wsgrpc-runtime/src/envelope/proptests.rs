//! Property-based fuzzing of what reads a client's frames: `Envelope::parse`
//! (v1), `parse_batch` (v2) and the `Untrusted` form in which the bridge
//! logs and quotes what a client wrote.
//!
//! Short runs inside `cargo test`; a long one:
//! `PROPTEST_CASES=100000 cargo test --release -p wsgrpc-runtime envelope::proptests`.
//! A failing case is saved under `wsgrpc-runtime/proptest-regressions/`
//! and replayed first on every later run.
//!
//! "Duplicated key" here means a key of the envelope itself or of its
//! `metadata`, the objects the bridge reads. A `payload` is the
//! transcoder's to read; `headers` and `trailers` are what the bridge
//! writes, and it ignores them on a client's frames (see
//! `headers_with_a_duplicated_key_parse`).

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{Envelope, parse_batch};
use crate::untrusted::{Untrusted, bounded_message};

/// The envelope's keys, as the bridge spells them.
const KEYS: &[&str] = &[
    "type",
    "method",
    "id",
    "payload",
    "payloads",
    "end",
    "error",
    "code",
    "codeName",
    "details",
    "metadata",
    "timeoutMs",
    "window",
    "messages",
    "headers",
    "trailers",
    "refused",
];

/// The values of `type`.
const TYPES: &[&str] = &[
    "request", "message", "end", "cancel", "response", "error", "settings", "credit",
];

/// Any key, biased toward the envelope's, misspelt ones included.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => prop::sample::select(&["Type", "ID", "timeout_ms", "code_name", "payload ", ""][..])
            .prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,8}",
        1 => any::<String>(),
    ]
}

/// Any JSON value, biased toward the envelope's keys and the values of its
/// fields.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(TYPES).prop_map(Value::from),
        Just(Value::from("test.Calls/Unary")),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A string as JSON, plain or with every character escaped as `\uXXXX`:
/// two spellings of the same key.
fn json_string(text: &str, escaped: bool) -> String {
    if !escaped {
        return Value::from(text).to_string();
    }
    let mut out = String::from("\"");
    for unit in text.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

/// An object's text, members in order, duplicates kept (which a `Value`
/// cannot hold).
fn object_text(members: &[(String, bool, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(key, escaped, value)| format!("{}:{value}", json_string(key, *escaped)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Metadata as JSON: an object of strings.
fn string_map() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-zA-Z-]{0,8}", any::<String>(), 0..4)
        .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k, v.into())).collect()))
}

/// The members of an envelope with every field of its type, some left
/// out or null, in any order, each key once (spelt plain or escaped).
fn well_typed() -> impl Strategy<Value = Vec<(String, bool, String)>> {
    let optional_string = || prop_oneof![Just(Value::Null), any::<String>().prop_map(Value::from)];
    let optional_u64 = || prop_oneof![Just(Value::Null), any::<u64>().prop_map(Value::from)];
    let fields: Vec<BoxedStrategy<(&'static str, Value)>> = vec![
        prop::sample::select(TYPES)
            .prop_map(|t| ("type", Value::from(t)))
            .boxed(),
        optional_string().prop_map(|v| ("method", v)).boxed(),
        optional_string().prop_map(|v| ("id", v)).boxed(),
        json_value().prop_map(|v| ("payload", v)).boxed(),
        prop_oneof![
            Just(Value::Null),
            prop::collection::vec(json_value(), 0..4).prop_map(Value::Array),
        ]
        .prop_map(|v| ("payloads", v))
        .boxed(),
        any::<bool>().prop_map(|v| ("end", v.into())).boxed(),
        optional_string().prop_map(|v| ("error", v)).boxed(),
        prop_oneof![Just(Value::Null), any::<i32>().prop_map(Value::from)]
            .prop_map(|v| ("code", v))
            .boxed(),
        optional_string().prop_map(|v| ("codeName", v)).boxed(),
        optional_string().prop_map(|v| ("details", v)).boxed(),
        prop_oneof![Just(Value::Null), string_map()]
            .prop_map(|v| ("metadata", v))
            .boxed(),
        optional_u64().prop_map(|v| ("timeoutMs", v)).boxed(),
        optional_u64().prop_map(|v| ("window", v)).boxed(),
        optional_u64().prop_map(|v| ("messages", v)).boxed(),
        string_map().prop_map(|v| ("headers", v)).boxed(),
        string_map().prop_map(|v| ("trailers", v)).boxed(),
    ];
    let fields: Vec<_> = fields
        .into_iter()
        .map(|field| (prop::option::weighted(0.4, field), any::<bool>()))
        .collect();
    fields.prop_shuffle().prop_map(|fields| {
        fields
            .into_iter()
            .filter_map(|(field, escaped)| {
                let (key, value) = field?;
                Some((key.to_owned(), escaped, value.to_string()))
            })
            .collect()
    })
}

/// A well-typed envelope with one of its members given a second time
/// (another spelling, maybe another value), somewhere.
fn with_a_duplicated_key() -> impl Strategy<Value = String> {
    (
        well_typed().prop_filter("a member to repeat", |members| !members.is_empty()),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut members, which, at, escaped, same_value)| {
            let (key, _, value) = members[which.index(members.len())].clone();
            let value = if same_value {
                value
            } else {
                // Another value of the field's type where it has one.
                match key.as_str() {
                    "type" => Value::from("cancel").to_string(),
                    "end" => Value::from(value != "true").to_string(),
                    _ => Value::Null.to_string(),
                }
            };
            let at = at.index(members.len() + 1);
            members.insert(at, (key, escaped, value));
            object_text(&members)
        })
}

/// A well-typed envelope whose `metadata` has a key given twice.
fn with_a_duplicated_metadata_key() -> impl Strategy<Value = String> {
    (
        well_typed(),
        "[a-zA-Z-]{1,8}",
        any::<String>(),
        any::<String>(),
        any::<bool>(),
        prop::collection::vec(("[a-z]{1,4}", any::<String>()), 0..3),
    )
        .prop_map(|(members, key, first, second, escaped, others)| {
            let mut metadata: Vec<(String, bool, String)> = others
                .into_iter()
                .filter(|(other, _)| *other != key)
                .map(|(k, v)| (k, false, Value::from(v).to_string()))
                .collect();
            metadata.insert(0, (key.clone(), false, Value::from(first).to_string()));
            metadata.push((key, escaped, Value::from(second).to_string()));
            let mut members: Vec<_> = members
                .into_iter()
                .filter(|(k, _, _)| k != "metadata")
                .collect();
            members.push(("metadata".to_owned(), false, object_text(&metadata)));
            object_text(&members)
        })
}

/// Text that is almost an envelope: a well-typed one cut short and
/// something inserted where it was cut.
fn mangled() -> impl Strategy<Value = String> {
    (
        well_typed(),
        any::<prop::sample::Index>(),
        prop_oneof!["[{}\\[\\],:\"\\\\]{0,3}", any::<String>()],
        any::<bool>(),
    )
        .prop_map(|(members, cut, insert, keep_rest)| {
            let text = object_text(&members);
            let chars: Vec<char> = text.chars().collect();
            let cut = cut.index(chars.len() + 1);
            let mut mangled: String = chars[..cut].iter().collect();
            mangled.push_str(&insert);
            if keep_rest {
                mangled.extend(&chars[cut..]);
            }
            mangled
        })
}

/// Strings as clients write them into the bridge's logs: control and
/// line-breaking characters, and long ones.
fn client_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[\\x00-\\x1f\\x7f\u{85}\u{2028}\u{2029}\u{202e}\u{feff}\u{300} a-zé]{0,200}",
        1 => prop::collection::vec(any::<char>(), 90..2000).prop_map(String::from_iter),
        1 => (0usize..5000, prop::sample::select(&["\n", "é", "\u{10ffff}", "a"][..]))
            .prop_map(|(n, unit)| unit.repeat(n)),
    ]
}

/// The most a log line shows of a client's string: 96 characters, each
/// escaped as at most `\u{10ffff}`, then `… (N bytes)`.
const MAX_SHOWN_BYTES: usize = 96 * 10 + 32;
/// The most an error message about a client's input takes: 1 KiB, then
/// `… (N bytes in all)`.
const MAX_MESSAGE_BYTES: usize = (1 << 10) + 40;

proptest! {

    /// Any text is an envelope or an error, never a panic; what parses as
    /// an envelope is a JSON object, and as a v2 frame a JSON array.
    #[test]
    fn any_text_parses_or_is_refused(text in prop_oneof![any::<String>(), mangled()]) {
        let json = serde_json::from_str::<Value>(&text).ok();
        if Envelope::parse(&text).is_ok() {
            prop_assert!(json.as_ref().is_some_and(Value::is_object), "{text}");
        }
        if parse_batch(&text).is_ok() {
            prop_assert!(json.as_ref().is_some_and(Value::is_array), "{text}");
        }
        let _ = parse_batch(&format!("[{text}]"));
    }

    /// Only an object is an envelope, and only an array is a v2 frame,
    /// whose elements parse on their own as they do in the frame.
    #[test]
    fn only_an_object_is_an_envelope(value in json_value()) {
        let text = value.to_string();
        if !value.is_object() {
            prop_assert!(Envelope::parse(&text).is_err(), "{text}");
        }
        match (&value, parse_batch(&text)) {
            (Value::Array(elements), Ok(batch)) => {
                prop_assert_eq!(batch.len(), elements.len());
                for (element, parsed) in elements.iter().zip(&batch) {
                    let alone = element.to_string();
                    prop_assert_eq!(parsed.is_ok(), Envelope::parse(&alone).is_ok(), "{}", alone);
                    if !element.is_object() {
                        prop_assert!(parsed.is_err(), "{alone}");
                    }
                    if let Err((_, piece)) = parsed {
                        prop_assert_eq!(*piece, alone.as_str());
                    }
                }
            }
            (Value::Array(_), Err(err)) => {
                return Err(TestCaseError::fail(format!("{text}: {err}")));
            }
            (_, batch) => prop_assert!(batch.is_err(), "{text}"),
        }
    }

    /// An object of the envelope's fields, each of its type, parses, in
    /// whatever order and spelling of its keys, alone and in a batch; it
    /// serializes to a frame that parses back the same.
    #[test]
    fn a_well_typed_envelope_parses(members in well_typed()) {
        let text = object_text(&members);
        let envelope = Envelope::parse(&text);
        prop_assert!(envelope.is_ok(), "{text}: {envelope:?}");
        let json = envelope.unwrap().to_json();
        let again = Envelope::parse(&json);
        prop_assert!(again.is_ok(), "{json}: {again:?}");
        prop_assert_eq!(again.unwrap().to_json(), json);
        let frame = format!("[{text},{text}]");
        let batch = parse_batch(&frame);
        prop_assert!(matches!(&batch, Ok(b) if b.len() == 2 && b.iter().all(Result::is_ok)), "{text}");
    }

    /// A key given twice is refused, whichever it is, however spelt,
    /// wherever it is: alone, and in a batch without spoiling the rest.
    #[test]
    fn a_duplicated_key_never_parses(
        text in prop_oneof![with_a_duplicated_key(), with_a_duplicated_metadata_key()],
    ) {
        prop_assert!(Envelope::parse(&text).is_err(), "{text}");
        let frame = format!(r#"[{{"type":"cancel","id":"1"}},{text},{{"type":"end","id":"2"}}]"#);
        let batch = parse_batch(&frame);
        prop_assert!(batch.is_ok(), "{frame}");
        let batch = batch.unwrap();
        prop_assert_eq!(batch.len(), 3);
        prop_assert!(batch[0].is_ok() && batch[2].is_ok(), "{frame}");
        prop_assert!(batch[1].is_err(), "{frame}");
    }

    /// What the bridge logs of a client's string takes one line, and a
    /// bounded one; an error message that quotes it is bounded too.
    #[test]
    fn untrusted_strings_show_on_one_bounded_line(text in client_string()) {
        let shown = Untrusted(&text).to_string();
        prop_assert!(!shown.contains(['\n', '\r']), "{shown:?}");
        prop_assert!(
            !shown.chars().any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')),
            "{shown:?}"
        );
        prop_assert!(shown.len() <= MAX_SHOWN_BYTES, "{} bytes: {shown:?}", shown.len());
        if text.chars().count() > 96 {
            let suffix = format!("… ({} bytes)", text.len());
            prop_assert!(shown.ends_with(&suffix), "{shown:?}");
        }
        let debug = format!("{:?}", Untrusted(&text));
        prop_assert_eq!(debug, format!("\"{shown}\""));

        let message = bounded_message(&text);
        prop_assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes", message.len());
        if text.len() <= 1 << 10 {
            prop_assert_eq!(&*message, text.as_str());
        } else {
            let kept = message.split_once("… (").map_or("", |(kept, _)| kept);
            prop_assert!(!kept.is_empty() && text.starts_with(kept));
        }
    }
}

/// `headers` and `trailers` are maps without the check for keys given
/// twice: a client's envelope with one given twice parses, the last value
/// winning. Harmless today (the bridge ignores both on a client's frames),
/// but it is the one place where a duplicated key goes unrefused.
#[test]
#[ignore = "headers and trailers keep the last of a duplicated key; the bridge ignores them on client frames"]
fn headers_with_a_duplicated_key_parse() {
    for field in ["headers", "trailers"] {
        let text = format!(r#"{{"type":"request","id":"1","{field}":{{"a":"1","a":"2"}}}}"#);
        assert!(Envelope::parse(&text).is_err(), "{text}");
    }
}
