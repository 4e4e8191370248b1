//! What the bridge sends: its settings, a call's answer or end, a refused
//! frame, credit and pongs, each a variant with only its own fields,
//! serialized under serde's `type` tag in the order clients have always
//! read them.

use std::borrow::Cow;

use serde::Serialize;
use tonic::Status;

use super::Amount;
use crate::envelope::{FrameType, code_name};
use crate::metadata::{self, Metadata};

/// One envelope from the bridge.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum ServerFrame<'a> {
    /// v2: the first envelope of a socket, what the client must stay
    /// within and what the bridge offers.
    Settings(Settings),
    /// A response message of a call, its end, or the status it failed with.
    Response(Response<'a>),
    /// A frame was refused; no call ends because of it.
    Error(Refusal<'a>),
    /// v2: the client may send more of a call's messages (or, without an
    /// id, of the socket's).
    Credit {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        #[serde(flatten)]
        amount: Amount,
    },
    /// v2: the answer to a client's `ping`.
    Pong { data: u64 },
    /// v2 sessions, after the settings: what the bridge received of the
    /// session before this socket, or `None` and why it cannot be resumed.
    Resume {
        received: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
    /// v2 sessions: the bridge has received this many envelopes.
    Ack { received: u64 },
    /// v2: the socket takes no new calls (the bridge is shutting down, or
    /// the socket is old); the client opens a new one for them while the
    /// calls in flight finish here.
    Goaway { reason: &'a str },
    /// v2: when the socket's token runs out; the client sends a fresh one
    /// before then.
    Token {
        #[serde(rename = "expiresInMs")]
        expires_in_ms: u64,
    },
}

/// The bridge's settings.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Settings {
    /// The largest frame the bridge reads; a larger one closes the socket.
    pub(crate) max_frame_bytes: usize,
    /// Calls open at once on the socket.
    pub(crate) max_calls_per_connection: usize,
    /// Request messages a streaming call may have queued ahead of the
    /// backend, where windows count messages.
    pub(crate) call_queue_messages: usize,
    /// Byte windows, offered: the request bytes a streaming call may send
    /// before credit.
    pub(crate) window_bytes: u64,
    /// Byte windows, offered: the request bytes the socket's calls
    /// together may send before credit.
    pub(crate) connection_window_bytes: u64,
}

/// A `response`: the call's single message, its end, or its failure.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Response<'a> {
    /// v1: the method as the client wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) method: Option<&'a str>,
    pub(crate) id: &'a str,
    /// The call is over; no further frames carry this id.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) end: bool,
    /// The bridge started nothing of the call (it was going away): the
    /// client may send it again on another socket.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) unprocessed: bool,
    /// The status the call failed with.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<StatusFields<'a>>,
    /// The backend's response headers, on the call's first envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) headers: Option<Metadata>,
    /// The backend's trailers, on the envelope that ends the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) trailers: Option<Metadata>,
}

/// An `error`: a frame refused, and why.
#[derive(Debug, Serialize)]
pub(crate) struct Refusal<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    #[serde(flatten)]
    pub(crate) status: StatusFields<'a>,
    /// v2: the type of the envelope refused, where it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refused: Option<FrameType>,
}

/// A gRPC status as envelopes carry it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusFields<'a> {
    /// The message, or the code's description where there is none: the
    /// original protocol's error text.
    pub(crate) error: Cow<'a, str>,
    pub(crate) code: i32,
    pub(crate) code_name: &'static str,
    /// `grpc-status-details-bin` (a serialized `google.rpc.Status`), base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<String>,
}

impl<'a> StatusFields<'a> {
    pub(crate) fn of(status: &'a Status) -> Self {
        let error = if status.message().is_empty() {
            Cow::Borrowed(status.code().description())
        } else {
            Cow::Borrowed(status.message())
        };
        Self {
            error,
            code: status.code() as i32,
            code_name: code_name(status.code()),
            details: (!status.details().is_empty())
                .then(|| metadata::encode_base64(status.details())),
        }
    }
}

impl ServerFrame<'_> {
    /// The frame's JSON text.
    pub(crate) fn to_json(&self) -> String {
        // Strings, numbers and maps of strings: serialization cannot fail.
        serde_json::to_string(self).expect("a frame serializes")
    }

    /// The frame with `payload`, JSON text the bridge wrote, as its
    /// payload, which comes first. (serde_json embeds written JSON only as
    /// a `RawValue`, which parses it again; members of a JSON object have
    /// no order.)
    pub(crate) fn to_json_with_payload(&self, payload: &str) -> String {
        let rest = self.to_json();
        let mut frame = String::with_capacity(payload.len() + rest.len() + 12);
        frame.push_str(r#"{"payload":"#);
        frame.push_str(payload);
        // Every frame has a `type`, so `rest` is more than `{}`.
        frame.push(',');
        frame.push_str(&rest[1..]);
        frame
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tonic::Code;

    use super::*;
    use crate::envelope::Envelope;

    #[test]
    fn each_kind_has_its_fields_in_the_order_clients_read() {
        let status = Status::with_details(Code::NotFound, "no such thing", vec![1, 2, 3].into());
        let failed = ServerFrame::Response(Response {
            method: Some("Get"),
            id: "7",
            end: true,
            status: Some(StatusFields::of(&status)),
            trailers: Some([("x-t".to_owned(), "1".to_owned())].into()),
            ..Response::default()
        });
        assert_eq!(
            failed.to_json(),
            r#"{"type":"response","method":"Get","id":"7","end":true,"error":"no such thing","code":5,"codeName":"NOT_FOUND","details":"AQID","trailers":{"x-t":"1"}}"#
        );
        let no_message = Status::new(Code::InvalidArgument, "");
        let refused = ServerFrame::Error(Refusal {
            id: None,
            status: StatusFields::of(&no_message),
            refused: Some(FrameType::Credit),
        });
        assert_eq!(
            refused.to_json(),
            r#"{"type":"error","error":"Client specified an invalid argument","code":3,"codeName":"INVALID_ARGUMENT","refused":"credit"}"#
        );
        let credit = ServerFrame::Credit {
            id: None,
            amount: Amount::Bytes(10),
        };
        assert_eq!(credit.to_json(), r#"{"type":"credit","bytes":10}"#);
    }

    #[test]
    fn a_written_payload_goes_in_whole_and_the_envelope_reads_back() {
        let frame = ServerFrame::Response(Response {
            id: "7",
            end: true,
            ..Response::default()
        });
        let payload = r#"{"message":"a \"quoted\" }"}"#;
        let text = frame.to_json_with_payload(payload);
        let parsed = Envelope::parse(&text).unwrap();
        assert_eq!(parsed.frame_type, Some(FrameType::Response));
        assert_eq!(parsed.id.as_deref(), Some("7"));
        assert!(parsed.end);
        assert_eq!(parsed.payload.unwrap().get(), payload);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["message"], Value::Null);
        assert_eq!(value["payload"], json!({"message": "a \"quoted\" }"}));
    }
}
