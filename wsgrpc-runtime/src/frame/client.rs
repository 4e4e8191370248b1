//! What a client sends: one variant per kind of envelope, holding only
//! what that kind may carry.
//!
//! An envelope is first read flat ([`Envelope`]), then checked into its
//! variant here: serde's internally tagged enums buffer their content, and
//! buffered content cannot lend out a payload's text, which the bridge
//! decodes straight from the received frame. Everything that makes a frame
//! unreadable as its kind — a field it cannot carry, one of v2 on a v1
//! socket, an id that is missing or too long — is found here, once; what
//! ends a call that was well formed (an unknown method, a deadline of zero)
//! is the connection's to decide.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::envelope::{Envelope, FrameType, Protocol};
use crate::flow::MAX_WINDOW;
use crate::json::JsonOptions;
use crate::metadata::Metadata;

/// Longest id a client may choose.
pub(crate) const MAX_ID_LEN: usize = 256;
/// Longest method name a request may carry: v1 echoes it in every answer,
/// and no registered name comes near it.
pub(crate) const MAX_METHOD_LEN: usize = 1024;

/// One envelope from a client.
#[derive(Debug)]
pub(crate) enum ClientFrame<'a> {
    /// Opens a call.
    Request(Request<'a>),
    /// More request messages of an open call, in order; `end` half-closes
    /// after them.
    Messages {
        id: Cow<'a, str>,
        payloads: Vec<&'a RawValue>,
        end: bool,
    },
    /// Half-close: the client sends no more messages.
    End { id: Cow<'a, str> },
    /// Cancels the call at the backend.
    Cancel { id: Cow<'a, str> },
    /// v2: the client takes more of a call's responses, or (bytes, without
    /// an id) of the socket's.
    Credit {
        id: Option<Cow<'a, str>>,
        grant: Amount,
    },
    /// v2: the client takes byte windows.
    Settings(ClientSettings),
    /// v2: answer at once with a `pong` carrying `data`.
    Ping { data: u64 },
    /// v2: the answer to a ping; the bridge sends none in envelopes, so it
    /// is ignored.
    Pong,
    /// v2 sessions: on a resumed socket, what the client received before.
    Resume { received: u64 },
    /// v2 sessions: the client has received this many envelopes.
    Ack { received: u64 },
    /// v2: a fresh token for the socket, before its own runs out.
    Token { token: Cow<'a, str> },
}

impl ClientFrame<'_> {
    /// Whether the envelope is one a session counts (and keeps until it is
    /// acknowledged): all but those about one socket.
    pub(crate) fn is_counted(kind: Option<FrameType>) -> bool {
        !matches!(
            kind,
            Some(
                FrameType::Settings
                    | FrameType::Resume
                    | FrameType::Ack
                    | FrameType::Ping
                    | FrameType::Pong
                    | FrameType::Token
            )
        )
    }
}

/// A `request` envelope: the call it opens.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) id: Cow<'a, str>,
    /// The method as the client named it; empty where it named none.
    pub(crate) method: Cow<'a, str>,
    pub(crate) payload: Option<&'a RawValue>,
    /// Half-closed at once: no `message` frames follow.
    pub(crate) end: bool,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) timeout_ms: Option<u64>,
    /// v2: the stream responses the client takes before it grants more.
    pub(crate) window: Option<Amount>,
}

/// How much a window or a credit is: messages, or bytes once the socket
/// counts in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Amount {
    Messages(u64),
    Bytes(u64),
}

/// The client's `settings`: it takes byte windows, and lets the bridge send
/// this many response bytes across the socket's calls before it grants more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientSettings {
    pub(crate) connection_window_bytes: u64,
    /// The JSON form the client reads, where it says: every response on
    /// the socket is written so, whatever the method's own options.
    pub(crate) json: Option<JsonOptions>,
}

/// Why an envelope was refused: what the refusal names and says.
#[derive(Debug)]
pub(crate) struct Unreadable<'a> {
    /// The id the envelope carried, where it was usable.
    pub(crate) id: Option<Cow<'a, str>>,
    /// The kind the envelope claimed, where it named one.
    pub(crate) kind: Option<FrameType>,
    pub(crate) message: String,
}

impl<'a> ClientFrame<'a> {
    /// Checks an envelope read from a socket that speaks `protocol` into the
    /// frame it is.
    pub(crate) fn read(envelope: Envelope<'a>, protocol: Protocol) -> Result<Self, Unreadable<'a>> {
        let kind = envelope.frame_type;
        let refuse = |id: Option<Cow<'a, str>>, message: String| Unreadable { id, kind, message };
        let id = match envelope.id.clone() {
            Some(id) if id.len() > MAX_ID_LEN => {
                return Err(refuse(
                    None,
                    format!("`id` is longer than {MAX_ID_LEN} bytes"),
                ));
            }
            Some(id) if id.is_empty() => None,
            id => id,
        };
        let without_id = matches!(
            kind,
            Some(
                FrameType::Settings
                    | FrameType::Ping
                    | FrameType::Pong
                    | FrameType::Resume
                    | FrameType::Ack
                    | FrameType::Token
            )
        ) || (kind == Some(FrameType::Credit) && envelope.bytes.is_some());
        if id.is_none() && !without_id {
            return Err(refuse(None, "frame has no `id`".to_owned()));
        }
        if envelope
            .method
            .as_ref()
            .is_some_and(|method| method.len() > MAX_METHOD_LEN)
        {
            let message = format!("`method` is longer than {MAX_METHOD_LEN} bytes");
            return Err(refuse(id, message));
        }
        if protocol == Protocol::V1
            && let Some(field) = v2_field(&envelope)
        {
            let message = format!(
                "malformed frame: unknown field `{field}` (a v2 field; this socket speaks v1)"
            );
            return Err(refuse(id, message));
        }
        let Some(kind) = kind else {
            return Err(refuse(id, "frame has no `type`".to_owned()));
        };
        if let Some(field) = foreign_field(&envelope, kind) {
            let name = format!("{kind:?}").to_lowercase();
            return Err(refuse(
                id,
                format!("a `{name}` envelope carries no `{field}`"),
            ));
        }
        let v2_kind = matches!(
            kind,
            FrameType::Credit
                | FrameType::Settings
                | FrameType::Ping
                | FrameType::Pong
                | FrameType::Resume
                | FrameType::Ack
                | FrameType::Token
        );
        if protocol == Protocol::V1 && v2_kind {
            let name = format!("{kind:?}").to_lowercase();
            return Err(refuse(
                id,
                format!("`{name}` is a v2 envelope; this socket speaks v1"),
            ));
        }
        let with_id = |id: Option<Cow<'a, str>>| id.expect("checked above");
        Ok(match kind {
            FrameType::Request => {
                let window = match (envelope.window, envelope.window_bytes) {
                    (Some(_), Some(_)) => {
                        let message = "a `request` has `window` or `windowBytes`, not both";
                        return Err(refuse(id, message.to_owned()));
                    }
                    (Some(messages), None) => Some(Amount::Messages(messages)),
                    (None, Some(bytes)) => Some(Amount::Bytes(bytes)),
                    (None, None) => None,
                };
                Self::Request(Request {
                    id: with_id(id),
                    method: envelope.method.unwrap_or_default(),
                    payload: envelope.payload,
                    end: envelope.end,
                    metadata: envelope.metadata,
                    timeout_ms: envelope.timeout_ms,
                    window,
                })
            }
            FrameType::Message => {
                let payloads = match (envelope.payload, envelope.payloads) {
                    (Some(_), Some(_)) => {
                        let message = "`message` frame has both `payload` and `payloads`";
                        return Err(refuse(id, message.to_owned()));
                    }
                    (Some(payload), None) => vec![payload],
                    (None, Some(payloads)) => payloads,
                    (None, None) if envelope.end => return Ok(Self::End { id: with_id(id) }),
                    (None, None) => {
                        return Err(refuse(id, "`message` frame has no `payload`".to_owned()));
                    }
                };
                Self::Messages {
                    id: with_id(id),
                    payloads,
                    end: envelope.end,
                }
            }
            FrameType::End => Self::End { id: with_id(id) },
            FrameType::Cancel => Self::Cancel { id: with_id(id) },
            FrameType::Credit => {
                let grant = match (envelope.messages, envelope.bytes) {
                    (Some(messages), None) => Amount::Messages(messages),
                    (None, Some(bytes)) => Amount::Bytes(bytes),
                    _ => None.ok_or_else(|| {
                        let message = format!(
                            "`credit` needs `messages` or `bytes` (one of them) from 1 to {MAX_WINDOW}"
                        );
                        refuse(id.clone(), message)
                    })?,
                };
                let (Amount::Messages(amount) | Amount::Bytes(amount)) = grant;
                if !(1..=MAX_WINDOW).contains(&amount) {
                    let message =
                        format!("`credit` needs `messages` or `bytes` from 1 to {MAX_WINDOW}");
                    return Err(refuse(id, message));
                }
                Self::Credit { id, grant }
            }
            FrameType::Settings => {
                let Some(bytes) = envelope
                    .connection_window_bytes
                    .filter(|bytes| (1..=MAX_WINDOW).contains(bytes))
                else {
                    let message = format!(
                        "a client's `settings` needs `connectionWindowBytes` from 1 to {MAX_WINDOW}"
                    );
                    return Err(refuse(id, message));
                };
                Self::Settings(ClientSettings {
                    connection_window_bytes: bytes,
                    json: envelope.json.map(JsonOptions::from),
                })
            }
            FrameType::Ping => match envelope.data {
                Some(data) => Self::Ping { data },
                None => return Err(refuse(id, "`ping` needs `data`, a number".to_owned())),
            },
            FrameType::Pong => Self::Pong,
            FrameType::Resume | FrameType::Ack => {
                let Some(received) = envelope.received else {
                    let name = format!("{kind:?}").to_lowercase();
                    return Err(refuse(id, format!("`{name}` needs `received`, a number")));
                };
                if kind == FrameType::Resume {
                    Self::Resume { received }
                } else {
                    Self::Ack { received }
                }
            }
            FrameType::Token => match envelope.token {
                Some(token) => Self::Token { token },
                None => return Err(refuse(id, "`token` needs `token`, a string".to_owned())),
            },
            other @ (FrameType::Response | FrameType::Error | FrameType::Goaway) => {
                let message = format!("clients do not send `{other:?}` frames").to_lowercase();
                return Err(refuse(id, message));
            }
        })
    }
}

/// The first field of v2 that an envelope carries, if any.
fn v2_field(envelope: &Envelope<'_>) -> Option<&'static str> {
    [
        ("payloads", envelope.payloads.is_some()),
        ("window", envelope.window.is_some()),
        ("messages", envelope.messages.is_some()),
        ("bytes", envelope.bytes.is_some()),
        ("windowBytes", envelope.window_bytes.is_some()),
        (
            "connectionWindowBytes",
            envelope.connection_window_bytes.is_some(),
        ),
        ("data", envelope.data.is_some()),
        ("received", envelope.received.is_some()),
        ("token", envelope.token.is_some()),
        ("json", envelope.json.is_some()),
    ]
    .into_iter()
    .find_map(|(field, present)| present.then_some(field))
}

/// The first field an envelope of this kind cannot carry, if any. (`method`
/// may come on any: the original clients repeat it.)
fn foreign_field(envelope: &Envelope<'_>, kind: FrameType) -> Option<&'static str> {
    let is_request = kind == FrameType::Request;
    let carries_messages = matches!(kind, FrameType::Request | FrameType::Message);
    [
        ("payload", envelope.payload.is_some() && !carries_messages),
        (
            "payloads",
            envelope.payloads.is_some() && kind != FrameType::Message,
        ),
        (
            "end",
            envelope.end && !carries_messages && kind != FrameType::End,
        ),
        ("metadata", envelope.metadata.is_some() && !is_request),
        ("timeoutMs", envelope.timeout_ms.is_some() && !is_request),
        ("window", envelope.window.is_some() && !is_request),
        (
            "windowBytes",
            envelope.window_bytes.is_some() && !is_request,
        ),
        (
            "messages",
            envelope.messages.is_some() && kind != FrameType::Credit,
        ),
        (
            "bytes",
            envelope.bytes.is_some() && kind != FrameType::Credit,
        ),
        (
            "connectionWindowBytes",
            envelope.connection_window_bytes.is_some() && kind != FrameType::Settings,
        ),
        (
            "json",
            envelope.json.is_some() && kind != FrameType::Settings,
        ),
        (
            "data",
            envelope.data.is_some() && !matches!(kind, FrameType::Ping | FrameType::Pong),
        ),
        (
            "received",
            envelope.received.is_some() && !matches!(kind, FrameType::Resume | FrameType::Ack),
        ),
        (
            "token",
            envelope.token.is_some() && kind != FrameType::Token,
        ),
        ("error", envelope.error.is_some()),
        ("code", envelope.code.is_some()),
        ("codeName", envelope.code_name.is_some()),
        ("details", envelope.details.is_some()),
        ("headers", envelope.headers.is_some()),
        ("trailers", envelope.trailers.is_some()),
    ]
    .into_iter()
    .find_map(|(field, present)| present.then_some(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, protocol: Protocol) -> Result<ClientFrame<'_>, String> {
        let envelope = Envelope::parse(text).expect("an envelope");
        ClientFrame::read(envelope, protocol).map_err(|unreadable| unreadable.message)
    }

    fn refusal(text: &str, protocol: Protocol) -> String {
        read(text, protocol).expect_err("refused")
    }

    /// Each text is refused on a socket of `protocol` with these words.
    fn assert_refusals(protocol: Protocol, cases: &[(&str, &str)]) {
        for (text, words) in cases {
            let message = refusal(text, protocol);
            assert!(message.contains(words), "{text}: {message}");
        }
    }

    #[test]
    fn each_kind_becomes_its_variant() {
        let frame = read(
            r#"{"type":"request","id":"1","method":"a.B/C","payload":{"x":1},"windowBytes":4096,"end":true}"#,
            Protocol::V2,
        )
        .unwrap();
        let ClientFrame::Request(request) = frame else {
            panic!("{frame:?}")
        };
        assert_eq!((&*request.id, &*request.method), ("1", "a.B/C"));
        assert_eq!(request.payload.map(RawValue::get), Some(r#"{"x":1}"#));
        assert_eq!(request.window, Some(Amount::Bytes(4096)));
        assert!(request.end);

        let frame = read(
            r#"{"type":"message","id":"1","payloads":[1,2]}"#,
            Protocol::V2,
        )
        .unwrap();
        assert!(
            matches!(frame, ClientFrame::Messages { ref payloads, end: false, .. } if payloads.len() == 2)
        );
        let frame = read(r#"{"type":"message","id":"1","end":true}"#, Protocol::V2).unwrap();
        assert!(matches!(frame, ClientFrame::End { .. }), "{frame:?}");
        let frame = read(r#"{"type":"credit","bytes":10}"#, Protocol::V2).unwrap();
        assert!(matches!(
            frame,
            ClientFrame::Credit {
                id: None,
                grant: Amount::Bytes(10)
            }
        ));
        let frame = read(r#"{"type":"credit","id":"1","messages":3}"#, Protocol::V2).unwrap();
        assert!(matches!(
            frame,
            ClientFrame::Credit {
                id: Some(_),
                grant: Amount::Messages(3)
            }
        ));
        let frame = read(
            r#"{"type":"settings","connectionWindowBytes":65536}"#,
            Protocol::V2,
        )
        .unwrap();
        assert!(matches!(
            frame,
            ClientFrame::Settings(ClientSettings {
                connection_window_bytes: 65536,
                json: None,
            })
        ));
        let frame = read(
            r#"{"type":"settings","connectionWindowBytes":1,"json":{"emitDefaults":true}}"#,
            Protocol::V2,
        )
        .unwrap();
        let ClientFrame::Settings(ClientSettings {
            json: Some(json), ..
        }) = frame
        else {
            panic!("settings with a JSON form: {frame:?}");
        };
        assert_eq!(json, JsonOptions::canonical().emit_defaults(true));
        let frame = read(r#"{"type":"ping","data":7}"#, Protocol::V2).unwrap();
        assert!(matches!(frame, ClientFrame::Ping { data: 7 }));
    }

    #[test]
    fn a_field_that_does_not_go_with_the_kind_is_refused() {
        assert_refusals(
            Protocol::V2,
            &[
                (
                    r#"{"type":"cancel","id":"1","payload":{}}"#,
                    "`cancel` envelope carries no `payload`",
                ),
                (
                    r#"{"type":"ping","data":1,"json":{}}"#,
                    "`ping` envelope carries no `json`",
                ),
                (
                    r#"{"type":"end","id":"1","metadata":{}}"#,
                    "`end` envelope carries no `metadata`",
                ),
                (
                    r#"{"type":"message","id":"1","payload":{},"window":3}"#,
                    "`message` envelope carries no `window`",
                ),
                (
                    r#"{"type":"request","id":"1","messages":3}"#,
                    "`request` envelope carries no `messages`",
                ),
                (
                    r#"{"type":"request","id":"1","code":3}"#,
                    "`request` envelope carries no `code`",
                ),
                (
                    r#"{"type":"request","id":"1","window":3,"windowBytes":3}"#,
                    "not both",
                ),
                (
                    r#"{"type":"message","id":"1","payload":{},"payloads":[]}"#,
                    "both `payload` and `payloads`",
                ),
                (r#"{"type":"message","id":"1"}"#, "no `payload`"),
                (
                    r#"{"type":"credit","id":"1","messages":1,"bytes":1}"#,
                    "one of them",
                ),
                (r#"{"type":"credit","id":"1","bytes":0}"#, "from 1 to"),
                (r#"{"type":"credit","messages":4}"#, "no `id`"),
                (r#"{"type":"settings"}"#, "`connectionWindowBytes`"),
                (r#"{"type":"ping"}"#, "needs `data`"),
                (
                    r#"{"type":"response","id":"1"}"#,
                    "clients do not send `response`",
                ),
                (r#"{"id":"1"}"#, "no `type`"),
            ],
        );
    }

    #[test]
    fn v1_refuses_what_v2_adds() {
        assert_refusals(
            Protocol::V1,
            &[
                (
                    r#"{"type":"message","id":"1","payloads":[]}"#,
                    "`payloads` (a v2 field",
                ),
                (
                    r#"{"type":"request","id":"1","windowBytes":1}"#,
                    "`windowBytes` (a v2 field",
                ),
                (r#"{"type":"credit","id":"1"}"#, "`credit` is a v2 envelope"),
                (
                    r#"{"type":"settings","id":"1"}"#,
                    "`settings` is a v2 envelope",
                ),
                (r#"{"type":"ping","id":"1"}"#, "`ping` is a v2 envelope"),
            ],
        );
    }

    #[test]
    fn ids_and_methods_are_bounded() {
        let long_id = format!(
            r#"{{"type":"cancel","id":"{}"}}"#,
            "i".repeat(MAX_ID_LEN + 1)
        );
        let envelope = Envelope::parse(&long_id).unwrap();
        let unreadable = ClientFrame::read(envelope, Protocol::V2).unwrap_err();
        assert!(unreadable.id.is_none(), "an id too long is not echoed");
        let long_method = format!(
            r#"{{"type":"request","id":"1","method":"{}"}}"#,
            "m".repeat(MAX_METHOD_LEN + 1)
        );
        assert!(refusal(&long_method, Protocol::V2).contains("`method` is longer"));
        assert!(refusal(r#"{"type":"cancel","id":""}"#, Protocol::V2).contains("no `id`"));
    }
}
