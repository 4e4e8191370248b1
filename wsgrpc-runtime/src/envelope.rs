//! The JSON envelope: one per WebSocket text frame, in both directions.
//!
//! The field names are those of the original hand-written bridge (`type`,
//! `method`, `id`, `payload`, `error`), so its clients keep working; the rest
//! (`end`, `code`, `codeName`, `metadata`, …) is what wire protocol v1 adds.
//! docs/PROTOCOL.md describes every frame.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The legacy end-of-stream payload, `{"end":true}`.
///
/// Clients of the original protocol recognise the end of a stream by this
/// payload. It is ambiguous (a message may well be `{"end":true}`), so the
/// bridge also sets [`Envelope::end`], which is what this project's clients
/// read.
pub const LEGACY_END_PAYLOAD: &str = r#"{"end":true}"#;

/// Metadata as it travels in an envelope: lower-case keys, string values.
///
/// Keys ending in `-bin` carry base64 (standard alphabet, padding optional),
/// as in the gRPC HTTP/2 mapping. Repeated keys are joined with `", "`.
pub type Metadata = BTreeMap<String, String>;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// One frame of wire protocol v1.
///
/// Borrowing deserialization keeps the request payload a slice of the
/// received text: it is decoded once, straight into the request type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub frame_type: Option<FrameType>,
    /// The method as the client named it; responses echo it unchanged.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'a, str>>,
    /// The call this frame belongs to, chosen by the client.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<&'a RawValue>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Client → bridge: the call's deadline in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bridge → client: the backend's response headers, on the first frame
    /// of a call that has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Metadata>,
    /// Bridge → client: the backend's trailers, on the frame that ends a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trailers: Option<Metadata>,
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
    fn names_every_code() {
        for n in 0..=16 {
            let name = code_name(tonic::Code::from_i32(n));
            assert!(name.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
    }
}
