//! The JSON envelope, in both directions: one per WebSocket text frame in
//! wire protocol v1, a JSON array of them per frame in v2.
//!
//! The field names are those of the original hand-written bridge (`type`,
//! `method`, `id`, `payload`, `error`), so its clients keep working; the rest
//! (`end`, `code`, `codeName`, `metadata`, …) is what wire protocol v1 adds,
//! and `payloads`, `refused`, the `settings` envelope and flow control
//! (`window`, the `credit` envelope) what v2 adds.
//! docs/PROTOCOL.md describes every frame.
//!
//! This is the flat form of every envelope: the bridge reads what a client
//! sends through it and then checks it into its kind (`frame::ClientFrame`);
//! what the bridge sends is written from `frame::ServerFrame`. Not part of
//! the crate's API (hidden from its docs): the project's tests, benchmarks
//! and fuzz targets read and write the wire format through it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The legacy end-of-stream payload, `{"end":true}`.
///
/// Clients of the original protocol recognise the end of a stream by this
/// payload. It is ambiguous (a message may well be `{"end":true}`), so the
/// bridge also sets [`Envelope::end`], which is what this project's clients
/// read.
pub const LEGACY_END_PAYLOAD: &str = r#"{"end":true}"#;

pub use crate::metadata::Metadata;

/// The wire protocol a socket speaks, agreed on at the upgrade through
/// `Sec-WebSocket-Protocol`.
///
/// Non-exhaustive: later versions of the protocol will be variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// One envelope per frame: what a client that offers no subprotocol
    /// (every client of the original bridge) speaks.
    V1,
    /// Many envelopes per frame, a run of one call's messages in one
    /// envelope, and the bridge's settings first.
    V2,
}

impl Protocol {
    /// The subprotocol names, best first: the order the bridge picks in.
    pub const SUBPROTOCOLS: [&'static str; 2] = ["wsgrpc.v2", "wsgrpc.v1"];

    /// The protocol of a socket that agreed on `subprotocol` (none: v1).
    pub fn from_subprotocol(subprotocol: Option<&str>) -> Self {
        match subprotocol {
            Some("wsgrpc.v2") => Self::V2,
            _ => Self::V1,
        }
    }

    /// The `method` of the bridge's envelopes: v1 echoes the client's
    /// spelling; v2 clients know their calls by id.
    pub fn method_echo(self, method: &str) -> Option<&str> {
        (self == Self::V1).then_some(method)
    }
}

/// What an envelope is.
///
/// Non-exhaustive: each version of the protocol may add kinds of frame, as
/// v2 added `settings` and `credit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(rename_all = "lowercase")]
pub enum FrameType {
    /// Client → bridge: opens a call.
    Request,
    /// Client → bridge: one more request message on an open client- or
    /// bidi-streaming call.
    Message,
    /// Client → bridge: half-close; the client sends no more messages.
    End,
    /// Client → bridge: cancel the call at the backend.
    Cancel,
    /// Bridge → client: a response message, the end of a call, or the
    /// status a call failed with.
    Response,
    /// Bridge → client: a frame was refused; no call ends because of it.
    Error,
    /// Bridge → client, v2: the bridge's limits, the first envelope it sends.
    Settings,
    /// v2, both ways: the receiver takes `messages` (or `bytes`) more of
    /// the call's messages, or of the socket's, as HTTP/2's WINDOW_UPDATE
    /// grants bytes.
    Credit,
    /// v2 with byte windows, both ways: answer at once with `pong`.
    Ping,
    /// v2 with byte windows, both ways: the answer to `ping`.
    Pong,
    /// v2 sessions, both ways, first on a socket: what the sender received
    /// of the session before.
    Resume,
    /// v2 sessions, both ways: the sender has received `received`
    /// envelopes of the session.
    Ack,
    /// v2, bridge → client: the socket takes no new calls.
    Goaway,
    /// v2: client → bridge, a fresh `token`; bridge → client, when the
    /// socket's token runs out (`expiresInMs`).
    Token,
}

/// The JSON form a client reads (v2, on its `settings`): each flag off
/// where it is left out, so that `{}` asks for canonical proto3 JSON.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonForm {
    /// Fields at their default values written too.
    #[serde(default)]
    pub emit_defaults: bool,
    /// Enum values as numbers.
    #[serde(default)]
    pub enum_numbers: bool,
    /// Fields under their .proto names.
    #[serde(default)]
    pub proto_field_names: bool,
}

impl From<JsonForm> for crate::json::JsonOptions {
    fn from(form: JsonForm) -> Self {
        Self::canonical()
            .emit_defaults(form.emit_defaults)
            .enum_numbers(form.enum_numbers)
            .proto_field_names(form.proto_field_names)
    }
}

/// One frame of wire protocol v1.
///
/// Borrowing deserialization keeps the request payload a slice of the
/// received text: it is decoded once, straight into the request type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
// The derived code is `Envelope::serialize`/`deserialize`, called by the
// trait impls below, which read only JSON objects.
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope<'a> {
    /// What the frame is; a frame without one is refused.
    #[serde(rename = "type")]
    pub frame_type: Option<FrameType>,
    /// The method as the client named it; responses echo it unchanged.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'a, str>>,
    /// The call this frame belongs to, chosen by the client.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    /// One message of the call, as proto3 JSON, kept unparsed.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a RawValue>,
    /// v2: several messages of one call, in order, in one envelope.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<Vec<&'a RawValue>>,
    /// Client → bridge: half-close after this frame. Bridge → client: the
    /// call is over; no further frames carry this id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
    /// The original protocol's error text.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Cow<'a, str>>,
    /// The gRPC status code, 1–16 (absent on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The canonical name of `code`, e.g. `NOT_FOUND`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub code_name: Option<Cow<'a, str>>,
    /// `grpc-status-details-bin` (a serialized `google.rpc.Status`), base64.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Cow<'a, str>>,
    /// Client → bridge: request metadata for the backend.
    #[serde(
        default,
        deserialize_with = "unique_keys",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata: Option<Metadata>,
    /// Client → bridge: the call's deadline in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Client → bridge, v2, on `request`: how many stream responses the
    /// bridge may send before the client grants more with `credit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u64>,
    /// v2, on `credit`: how many more messages the receiver takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// v2 with byte windows: on `credit`, how many more bytes the receiver
    /// takes; on a bridge `response`, what its payloads count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// v2 with byte windows, on `request`: the response bytes the bridge
    /// may send on the call before `credit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_bytes: Option<u64>,
    /// v2, on the client's `settings`: the response bytes the bridge may
    /// send across the socket's calls before `credit` without an `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_window_bytes: Option<u64>,
    /// v2, on the client's `settings`: the JSON form every response on the
    /// socket is written in, whatever the bridge's own rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonForm>,
    /// v2, on `ping` and `pong`: the sender's number, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<u64>,
    /// v2 sessions, on `resume` and `ack`: the envelopes the sender has
    /// received of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u64>,
    /// v2, client → bridge on `token`: a fresh token for the socket.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
    /// Bridge → client: the backend's response headers, on the first frame
    /// of a call that has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Metadata>,
    /// Bridge → client: the backend's trailers, on the frame that ends a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailers: Option<Metadata>,
    /// Bridge → client, v2: the type of the envelope an `error` refuses.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub refused: Option<FrameType>,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Envelope::serialize(self, serializer)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    /// Only a JSON object is an envelope: serde would also read a struct
    /// from an array of its fields in order, which no client means to send.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<'a>(std::marker::PhantomData<Envelope<'a>>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ObjectOnly<'a> {
            type Value = Envelope<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an envelope, a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                Envelope::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(ObjectOnly(std::marker::PhantomData))
    }
}

/// Metadata whose keys are all different: a key given twice is refused
/// rather than one of the two winning unseen. (Keys that differ only in
/// case are caught later, when the keys are made canonical.)
fn unique_keys<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Metadata>, D::Error> {
    struct UniqueKeys(Metadata);

    impl<'de> Deserialize<'de> for UniqueKeys {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(UniqueKeysVisitor)
        }
    }

    struct UniqueKeysVisitor;

    impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
        type Value = UniqueKeys;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("metadata, an object of string values")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut metadata = Metadata::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if metadata.contains_key(&key) {
                    return Err(serde::de::Error::custom(format_args!(
                        "metadata key `{key}` is given twice"
                    )));
                }
                metadata.insert(key, value);
            }
            Ok(UniqueKeys(metadata))
        }
    }

    Ok(Option::<UniqueKeys>::deserialize(deserializer)?.map(|unique| unique.0))
}

/// A v2 envelope that could not be read, and its text.
pub type Unreadable<'a> = (serde_json::Error, &'a str);

/// The envelopes of a v2 frame, a JSON array, in order. Each is read on its
/// own, so that a bad one spoils nothing else of the frame; `Err` where the
/// frame itself is no array.
pub fn parse_batch(
    text: &str,
) -> Result<Vec<Result<Envelope<'_>, Unreadable<'_>>>, serde_json::Error> {
    // Reading the whole array at once is the common case and the fastest;
    // only a frame with a bad envelope is read a second time, piece by piece.
    if let Ok(envelopes) = serde_json::from_str::<Vec<Envelope<'_>>>(text) {
        return Ok(envelopes.into_iter().map(Ok).collect());
    }
    let pieces: Vec<&RawValue> = serde_json::from_str(text)?;
    Ok(pieces
        .into_iter()
        .map(|piece| Envelope::parse(piece.get()).map_err(|err| (err, piece.get())))
        .collect())
}

impl<'a> Envelope<'a> {
    /// Parses one text frame.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Serializes the frame to its JSON text.
    pub fn to_json(&self) -> String {
        // An envelope holds only strings, numbers, maps and raw JSON that was
        // valid when it was produced, so serialization cannot fail.
        serde_json::to_string(self).expect("envelope serializes")
    }
}

/// The canonical name of a gRPC status code (`NOT_FOUND` for 5).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_request_frame() {
        let text =
            r#"{"type":"request","method":"SayHello","id":"req_1","payload":{"name":"World"}}"#;
        let frame = Envelope::parse(text).unwrap();
        assert_eq!(frame.frame_type, Some(FrameType::Request));
        assert_eq!(frame.method.as_deref(), Some("SayHello"));
        assert_eq!(frame.id.as_deref(), Some("req_1"));
        assert_eq!(frame.payload.unwrap().get(), r#"{"name":"World"}"#);
    }

    #[test]
    fn rejects_unknown_fields_and_types() {
        assert!(Envelope::parse(r#"{"type":"request","id":"1","paylod":{}}"#).is_err());
        assert!(Envelope::parse(r#"{"type":"subscribe","id":"1"}"#).is_err());
        assert!(Envelope::parse(r#"{"type":"request","id":1}"#).is_err());
    }

    #[test]
    fn serializes_only_what_is_set() {
        let payload = RawValue::from_string(LEGACY_END_PAYLOAD.into()).unwrap();
        let frame = Envelope {
            frame_type: Some(FrameType::Response),
            method: Some("StreamMessages".into()),
            id: Some("req_2".into()),
            payload: Some(&payload),
            end: true,
            ..Envelope::default()
        };
        assert_eq!(
            frame.to_json(),
            r#"{"type":"response","method":"StreamMessages","id":"req_2","payload":{"end":true},"end":true}"#
        );
    }

    #[test]
    fn a_batch_reads_each_envelope_on_its_own() {
        let text = r#"[{"type":"cancel","id":"1"},{"type":"nope","id":"2"},{"type":"message","id":"3","payloads":[{},{"a":1}]}]"#;
        let envelopes = parse_batch(text).unwrap();
        assert_eq!(envelopes.len(), 3);
        assert_eq!(
            envelopes[0].as_ref().unwrap().frame_type,
            Some(FrameType::Cancel)
        );
        let (_, bad) = envelopes[1].as_ref().unwrap_err();
        assert_eq!(*bad, r#"{"type":"nope","id":"2"}"#);
        let payloads = envelopes[2].as_ref().unwrap().payloads.as_ref().unwrap();
        assert_eq!(payloads[1].get(), r#"{"a":1}"#);
        assert!(parse_batch(r#"{"type":"cancel","id":"1"}"#).is_err());
        assert!(parse_batch("[1,").is_err());
    }

    #[test]
    fn only_an_object_is_an_envelope() {
        let array = r#"["request","SayHello","1",{}]"#;
        assert!(Envelope::parse(array).is_err());
        let frame = format!("[{array}]");
        let batch = parse_batch(&frame).unwrap();
        assert!(batch[0].is_err(), "an array inside a v2 frame too");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        assert!(Envelope::parse(r#"{"type":"request","id":"1","id":"2"}"#).is_err());
        let twice = r#"{"type":"request","id":"1","metadata":{"x-a":"1","x-a":"2"}}"#;
        let err = Envelope::parse(twice).unwrap_err().to_string();
        assert!(err.contains("`x-a` is given twice"), "{err}");
        let null = Envelope::parse(r#"{"type":"request","id":"1","metadata":null}"#).unwrap();
        assert_eq!(null.metadata, None);
    }

    #[test]
    fn clients_cannot_send_what_only_the_bridge_writes() {
        assert!(Envelope::parse(r#"{"type":"error","id":"1","refused":"message"}"#).is_err());
    }

    #[test]
    fn the_subprotocol_picks_the_protocol() {
        assert_eq!(Protocol::from_subprotocol(Some("wsgrpc.v2")), Protocol::V2);
        assert_eq!(Protocol::from_subprotocol(Some("wsgrpc.v1")), Protocol::V1);
        assert_eq!(Protocol::from_subprotocol(None), Protocol::V1);
    }

    #[test]
    fn names_every_code_as_tonic_describes_it() {
        // tonic's `Debug` is the name in CamelCase: `NotFound` → `NOT_FOUND`.
        for n in 0..=16 {
            let code = tonic::Code::from_i32(n);
            let camel = format!("{code:?}");
            let mut expected = String::new();
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    expected.push('_');
                }
                expected.push(c.to_ascii_uppercase());
            }
            assert_eq!(code_name(code), expected, "code {n}");
        }
    }
}

#[cfg(test)]
mod proptests;
