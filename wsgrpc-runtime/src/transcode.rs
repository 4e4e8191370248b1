//! JSON ↔ protobuf for one message, and the pass-through codec that lets
//! tonic carry bytes the bridge has already encoded.

use std::fmt;

use bytes::{Buf, BufMut, Bytes};
use serde_json::value::RawValue;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::non_finite::Spelled;

/// A payload that is not a valid message of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeError {
    message: String,
}

impl TranscodeError {
    fn new(message: String) -> Self {
        Self { message }
    }
}

impl fmt::Display for TranscodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranscodeError {}

/// Decodes proto3 JSON into `M` and returns its protobuf encoding.
///
/// Errors name the offending field by its path (`items[2].count`), so a
/// client sees which part of its payload was wrong.
pub fn json_to_proto<M>(json: &str) -> Result<Bytes, TranscodeError>
where
    M: prost::Message + serde::de::DeserializeOwned,
{
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let message: M = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            TranscodeError::new(inner.to_string())
        } else {
            TranscodeError::new(format!("field `{path}`: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|err| TranscodeError::new(err.to_string()))?;
    Ok(message.encode_to_vec().into())
}

/// Decodes protobuf bytes as `M` and renders it as proto3 JSON.
pub fn proto_to_json<M>(proto: &[u8]) -> Result<Box<RawValue>, TranscodeError>
where
    M: prost::Message + Default + serde::Serialize,
{
    let message = M::decode(proto)
        .map_err(|err| TranscodeError::new(format!("backend sent an invalid message: {err}")))?;
    serde_json::value::to_raw_value(&Spelled(&message))
        .map_err(|err| TranscodeError::new(format!("message has no JSON form: {err}")))
}

/// A tonic codec for messages that are already protobuf bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Greeting {
        #[prost(string, tag = "1")]
        #[serde(default)]
        name: String,
        #[prost(int32, tag = "2")]
        #[serde(default)]
        count: i32,
    }

    #[test]
    fn round_trips_through_protobuf() {
        let proto = json_to_proto::<Greeting>(r#"{"name":"World","count":3}"#).unwrap();
        let json = proto_to_json::<Greeting>(&proto).unwrap();
        assert_eq!(json.get(), r#"{"name":"World","count":3}"#);
    }

    #[test]
    fn names_the_field_that_does_not_decode() {
        let err = json_to_proto::<Greeting>(r#"{"name":"x","count":"three"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("field `count`: invalid type"),
            "{err}"
        );
        let err = json_to_proto::<Greeting>(r#"{"nmae":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `nmae`"), "{err}");
        let err = json_to_proto::<Greeting>(r#"{"name":"x"} trailing"#).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn reports_bytes_that_are_not_the_message() {
        let err = proto_to_json::<Greeting>(&[0x0a, 0xff]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("backend sent an invalid message"),
            "{err}"
        );
    }
}
