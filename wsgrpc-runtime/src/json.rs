//! Proto3 JSON ⇄ protobuf for one message, driven by its descriptor.
//!
//! The mapping is prost-reflect's: it reads and writes every well-known type
//! in its JSON form (`Any` as the embedded message with `"@type"`, resolved
//! in the message's descriptor pool; `Struct` and `Value` with their
//! `null`s; `Timestamp` and `Duration` within their ranges) and spells NaN
//! and ±Infinity as strings. Because it needs only descriptors, the
//! generated tables and a bridge built from descriptors at run time share
//! it.

mod direct;
pub(crate) mod proto2;
#[doc(hidden)]
pub mod testing;
mod unique_keys;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::non_finite::Spelled;
use direct::Layout;

/// How the bridge writes a message, after protojson's `MarshalOptions`.
/// Reading accepts every spelling the proto3 JSON mapping allows, whatever
/// the options.
///
/// The default is canonical proto3 JSON: lowerCamelCase names, enums by
/// name, fields at their default values left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct JsonOptions {
    emit_defaults: bool,
    enum_numbers: bool,
    proto_field_names: bool,
}

impl JsonOptions {
    /// Canonical proto3 JSON.
    pub const fn canonical() -> Self {
        Self {
            emit_defaults: false,
            enum_numbers: false,
            proto_field_names: false,
        }
    }

    /// Also write fields that hold their default value (`"index": 0`),
    /// as protojson's `EmitUnpopulated` does. Fields with presence that
    /// are not set (message fields, `optional`, oneof members) stay out.
    pub const fn emit_defaults(mut self, yes: bool) -> Self {
        self.emit_defaults = yes;
        self
    }

    /// Write enums as their numbers rather than their names.
    pub const fn enum_numbers(mut self, yes: bool) -> Self {
        self.enum_numbers = yes;
        self
    }

    /// Write the names of fields as in the .proto (`currency_code`) rather
    /// than in lowerCamelCase (`currencyCode`).
    pub const fn proto_field_names(mut self, yes: bool) -> Self {
        self.proto_field_names = yes;
        self
    }

    /// Whether fields that hold their default value are written.
    pub const fn writes_defaults(&self) -> bool {
        self.emit_defaults
    }

    /// Whether enum values are written as numbers instead of names.
    pub const fn writes_enum_numbers(&self) -> bool {
        self.enum_numbers
    }

    /// Whether fields are written under their .proto names instead of
    /// lowerCamelCase.
    pub const fn writes_proto_field_names(&self) -> bool {
        self.proto_field_names
    }

    fn serialize_options(&self) -> SerializeOptions {
        SerializeOptions::new()
            .skip_default_fields(!self.emit_defaults)
            .use_enum_numbers(self.enum_numbers)
            .use_proto_field_name(self.proto_field_names)
    }
}

/// Which calls get which [`JsonOptions`]: clients that name methods in
/// full (`example.ExampleService/SayHello`, as generated clients do) and
/// clients that name them bare (`SayHello`, as the clients of the original
/// hand-written bridge do, which wrote every field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JsonRules {
    /// Calls that name the method in full. Default: canonical.
    pub full_name: JsonOptions,
    /// Calls that name the method bare. Default: canonical with fields at
    /// their defaults written.
    pub bare_name: JsonOptions,
}

impl Default for JsonRules {
    fn default() -> Self {
        Self {
            full_name: JsonOptions::canonical(),
            bare_name: JsonOptions::canonical().emit_defaults(true),
        }
    }
}

/// A payload that is not a valid message of the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeError {
    message: String,
}

impl TranscodeError {
    pub(crate) fn new(message: String) -> Self {
        Self { message }
    }
}

impl fmt::Display for TranscodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranscodeError {}

/// The largest invalid payload read a second time to name the wrong field.
const PATH_TRACKED_BYTES: usize = 64 << 10;

/// Reads proto3 JSON as a message of type `descriptor` and returns its
/// protobuf encoding.
///
/// Errors name the offending field by its path (`items[2].count`), so a
/// client sees which part of its payload was wrong; in a payload larger
/// than 64 KiB they give the line and column instead.
pub fn json_to_proto(descriptor: &MessageDescriptor, json: &str) -> Result<Bytes, TranscodeError> {
    read_request(descriptor, json, proto2::reaches(descriptor))
}

/// [`json_to_proto`], told whether `descriptor` reaches proto2 types
/// (`proto2::reaches`).
pub(crate) fn read_request(
    descriptor: &MessageDescriptor,
    json: &str,
    proto2: bool,
) -> Result<Bytes, TranscodeError> {
    // Tracking the path costs on every field, so it is done only once a
    // payload has been found wrong, to say where; and only in a small one,
    // so that a client cannot make the bridge read a large payload twice.
    let finish = |message: DynamicMessage| {
        let scanned =
            unique_keys::check(json).map_err(|err| TranscodeError::new(err.to_string()))?;
        if scanned.edge_numbers {
            refuse_past_64_bits(descriptor, json)?;
        }
        if let Some(err) = proto2
            .then(|| proto2::refusal(&message, String::new()))
            .flatten()
        {
            return Err(TranscodeError::new(err));
        }
        Ok(message.encode_to_vec().into())
    };
    match read(descriptor, json, None) {
        Ok(message) => finish(message),
        Err(err) if json.len() > PATH_TRACKED_BYTES => Err(TranscodeError::new(err.to_string())),
        Err(_) => {
            let mut track = serde_path_to_error::Track::new();
            let err = match read(descriptor, json, Some(&mut track)) {
                Ok(message) => return finish(message),
                Err(err) => err,
            };
            let path = track.path().to_string();
            Err(if path == "." {
                TranscodeError::new(err.to_string())
            } else {
                TranscodeError::new(format!("field `{path}`: {err}"))
            })
        }
    }
}

/// prost-reflect checks a number for a 64-bit integer field against
/// `u64::MAX as f64` (or `i64::MAX as f64`, `i64::MIN as f64`), which are
/// 2^64 and ±2^63: so a number past the range that serde_json, holding it
/// as an `f64`, rounds to one of those passes, and is sent as the nearest
/// value in range. Google's parsers refuse it. Here `json` is read again
/// with each such number one step further from zero, where a 64-bit
/// integer field refuses it and a float field takes it as well.
fn refuse_past_64_bits(descriptor: &MessageDescriptor, json: &str) -> Result<(), TranscodeError> {
    fn step_out(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(number) => {
                if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                    && unique_keys::is_at_64_bit_edge(float)
                    && let Some(further) =
                        serde_json::Number::from_f64(f64::from_bits(float.to_bits() + 1))
                {
                    *number = further;
                }
            }
            serde_json::Value::Array(values) => values.iter_mut().for_each(step_out),
            serde_json::Value::Object(members) => members.values_mut().for_each(step_out),
            _ => {}
        }
    }
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|err| TranscodeError::new(err.to_string()))?;
    step_out(&mut value);
    let mut track = serde_path_to_error::Track::new();
    let stepped = serde_path_to_error::Deserializer::new(value, &mut track);
    match DynamicMessage::deserialize_with_options(
        descriptor.clone(),
        stepped,
        &DeserializeOptions::new(),
    ) {
        Ok(_) => Ok(()),
        Err(err) => Err(TranscodeError::new(format!(
            "field `{}`: {err} (a 64-bit integer field holds no number this large)",
            track.path()
        ))),
    }
}

/// Reads one message and makes sure nothing follows it.
fn read(
    descriptor: &MessageDescriptor,
    json: &str,
    track: Option<&mut serde_path_to_error::Track>,
) -> Result<DynamicMessage, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let options = DeserializeOptions::new();
    let message = match track {
        Some(track) => DynamicMessage::deserialize_with_options(
            descriptor.clone(),
            serde_path_to_error::Deserializer::new(&mut deserializer, track),
            &options,
        )?,
        None => DynamicMessage::deserialize_with_options(
            descriptor.clone(),
            &mut deserializer,
            &options,
        )?,
    };
    deserializer.end()?;
    Ok(message)
}

/// Decodes protobuf bytes as a message of type `descriptor` and writes it
/// as proto3 JSON.
///
/// To write many messages of one type, make a [`JsonWriter`] once.
pub fn proto_to_json(
    descriptor: &MessageDescriptor,
    proto: &[u8],
    options: &JsonOptions,
) -> Result<Box<RawValue>, TranscodeError> {
    JsonWriter::new(descriptor).to_json(proto, options)
}

/// Writes protobuf-encoded messages of one type as proto3 JSON.
///
/// It writes straight from the protobuf bytes where it can (see
/// `direct`), and decodes into a [`DynamicMessage`] where it cannot; the
/// JSON is the same either way.
#[derive(Clone)]
pub struct JsonWriter {
    descriptor: MessageDescriptor,
    layout: Arc<Layout>,
}

impl JsonWriter {
    /// A writer of messages of type `descriptor`, and of every type they
    /// hold.
    pub fn new(descriptor: &MessageDescriptor) -> Self {
        Self {
            descriptor: descriptor.clone(),
            layout: Arc::new(Layout::new(descriptor)),
        }
    }

    /// The message type it writes.
    pub fn descriptor(&self) -> &MessageDescriptor {
        &self.descriptor
    }

    /// Appends the JSON of `proto` to `out`. On error, `out` is as it was.
    pub fn write(
        &self,
        proto: &[u8],
        options: &JsonOptions,
        out: &mut Vec<u8>,
    ) -> Result<(), TranscodeError> {
        let start = out.len();
        if self.layout.write(proto, options, out).is_ok() {
            return Ok(());
        }
        out.truncate(start);
        write_general(&self.descriptor, proto, options, out)
    }

    /// The JSON of `proto`, on its own.
    pub fn to_json(
        &self,
        proto: &[u8],
        options: &JsonOptions,
    ) -> Result<Box<RawValue>, TranscodeError> {
        RawValue::from_string(self.to_text(proto, options)?)
            .map_err(|err| TranscodeError::new(format!("written JSON does not parse: {err}")))
    }

    /// The JSON of `proto` as text, without the second look that a
    /// `RawValue` takes.
    pub fn to_text(&self, proto: &[u8], options: &JsonOptions) -> Result<String, TranscodeError> {
        let mut out = Vec::with_capacity(proto.len() * 2 + 16);
        self.write(proto, options, &mut out)?;
        String::from_utf8(out)
            .map_err(|err| TranscodeError::new(format!("JSON is not UTF-8: {err}")))
    }
}

impl fmt::Debug for JsonWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonWriter")
            .field(&self.descriptor.full_name())
            .finish()
    }
}

/// The general way: decodes `proto` into a [`DynamicMessage`] and has
/// prost-reflect write that. On error, `out` is as it was.
fn write_general(
    descriptor: &MessageDescriptor,
    proto: &[u8],
    options: &JsonOptions,
    out: &mut Vec<u8>,
) -> Result<(), TranscodeError> {
    let start = out.len();
    let mut message = DynamicMessage::decode(descriptor.clone(), proto)
        .map_err(|err| TranscodeError::new(format!("backend sent an invalid message: {err}")))?;
    proto2::drop_unknown_closed_enum_values(&mut message);
    let written = Spelled(&Written {
        message: &message,
        options: options.serialize_options(),
    });
    serde_json::to_writer(&mut *out, &written).map_err(|err| {
        out.truncate(start);
        TranscodeError::new(format!("message has no JSON form: {err}"))
    })
}

struct Written<'a> {
    message: &'a DynamicMessage,
    options: SerializeOptions,
}

impl Serialize for Written<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.message
            .serialize_with_options(serializer, &self.options)
    }
}

#[cfg(test)]
mod tests {
    use prost_reflect::ReflectMessage;

    use super::*;

    #[test]
    fn numbers_past_64_bits_are_refused_as_googles_parsers_refuse_them() {
        // uint64 positive_int_value, int64 negative_int_value, double double_value.
        let option = prost_reflect::DescriptorPool::global()
            .get_message_by_name("google.protobuf.UninterpretedOption")
            .unwrap();
        let read = |json: &str| json_to_proto(&option, json);
        for past in [
            r#"{"positiveIntValue": 18446744073709551616}"#,
            r#"{"positiveIntValue": 1.8446744073709552e19}"#,
            r#"{"negativeIntValue": 9.223372036854776e18}"#,
            r#"{"negativeIntValue": -9223372036854775809}"#,
        ] {
            let err = read(past).unwrap_err().to_string();
            assert!(err.contains("IntValue`"), "{past}: {err}");
        }
        let written = |json: &str| {
            let proto = read(json).unwrap();
            DynamicMessage::decode(option.clone(), proto).unwrap()
        };
        let edges = written(
            r#"{"positiveIntValue": 18446744073709551615, "negativeIntValue": -9223372036854775808, "doubleValue": 18446744073709551616}"#,
        );
        assert_eq!(
            edges
                .get_field_by_name("positive_int_value")
                .unwrap()
                .as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(
            edges
                .get_field_by_name("negative_int_value")
                .unwrap()
                .as_i64(),
            Some(i64::MIN)
        );
        assert_eq!(
            edges.get_field_by_name("double_value").unwrap().as_f64(),
            Some(18_446_744_073_709_551_616.0)
        );
    }

    /// `google.protobuf.Field`: scalars, an enum, a repeated message.
    fn field() -> MessageDescriptor {
        prost_types::Field::default().descriptor()
    }

    fn written(descriptor: &MessageDescriptor, proto: &[u8], options: JsonOptions) -> String {
        proto_to_json(descriptor, proto, &options)
            .unwrap()
            .get()
            .to_owned()
    }

    #[test]
    fn round_trips_through_protobuf() {
        let json = r#"{"kind":"TYPE_INT64","number":3,"name":"count","jsonName":"count"}"#;
        let proto = json_to_proto(&field(), json).unwrap();
        let message = prost_types::Field::decode(proto.clone()).unwrap();
        assert_eq!((message.number, message.name.as_str()), (3, "count"));
        let back: serde_json::Value =
            serde_json::from_str(&written(&field(), &proto, JsonOptions::canonical())).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
    }

    #[test]
    fn options_write_defaults_enum_numbers_and_proto_names() {
        let proto = prost_types::Field {
            kind: prost_types::field::Kind::TypeString as i32,
            json_name: "n".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(
            written(&field(), &proto, JsonOptions::canonical()),
            r#"{"kind":"TYPE_STRING","jsonName":"n"}"#
        );
        let every = written(
            &field(),
            &proto,
            JsonOptions::canonical()
                .emit_defaults(true)
                .enum_numbers(true)
                .proto_field_names(true),
        );
        let every: serde_json::Value = serde_json::from_str(&every).unwrap();
        assert_eq!(every["kind"], 9);
        assert_eq!(every["json_name"], "n");
        assert_eq!(every["number"], 0);
        assert_eq!(every["cardinality"], 0);
        assert_eq!(every["options"], serde_json::json!([]));
    }

    #[test]
    fn names_the_field_that_does_not_decode() {
        let err = json_to_proto(&field(), r#"{"name":"x","number":"three"}"#).unwrap_err();
        assert!(err.to_string().starts_with("field `number`: "), "{err}");
        let err = json_to_proto(&field(), r#"{"options":[{"value":{"@type":5}}]}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("field `options[0].value"),
            "{err}"
        );
        let err = json_to_proto(&field(), r#"{"nmae":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
        let err = json_to_proto(&field(), r#"{"name":"x"} trailing"#).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn reports_bytes_that_are_not_the_message() {
        let err = proto_to_json(&field(), &[0x0a, 0xff], &JsonOptions::canonical()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("backend sent an invalid message"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_wrappers_are_spelled_out() {
        let double = 0f64.descriptor();
        for (value, text) in [
            (f64::NAN, r#""NaN""#),
            (f64::INFINITY, r#""Infinity""#),
            (f64::NEG_INFINITY, r#""-Infinity""#),
        ] {
            let proto = value.encode_to_vec();
            assert_eq!(written(&double, &proto, JsonOptions::canonical()), text);
            let back = json_to_proto(&double, text).unwrap();
            assert_eq!(f64::decode(back).unwrap().to_bits(), value.to_bits());
        }
        let float = 0f32.descriptor();
        let proto = f32::NEG_INFINITY.encode_to_vec();
        assert_eq!(
            written(&float, &proto, JsonOptions::canonical()),
            r#""-Infinity""#
        );
    }
}
