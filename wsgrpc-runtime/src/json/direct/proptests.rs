//! The direct writer against the general path on random messages of the
//! rich fixture (`proto/fixtures`: every scalar, maps of every key type,
//! oneofs, the well-known types) and of the test service: valid ones,
//! encoded as prost-reflect encodes them or with their packed fields sent
//! unpacked, and the same bytes mutated. Where the direct writer writes,
//! the general path must write the same JSON (`json::testing::same_json`).
//!
//! Short runs inside `cargo test`; a long one:
//! `PROPTEST_CASES=20000 cargo test --release -p wsgrpc-runtime json::direct::proptests`,
//! or the fuzz target `direct_json`. A failing case is saved under
//! `wsgrpc-runtime/proptest-regressions/` and replayed first on every
//! later run.

use std::collections::HashMap;
use std::sync::LazyLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use prost::encoding::{WireType, decode_key, encode_key, encode_varint};
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage as _, Value,
};

use super::{length_delimited, skip};
use crate::json::JsonWriter;
use crate::json::testing::{Compared, compare, every_options};

/// The messages a case starts from. `Order` holds all of the rich
/// fixture, but rarely every part at once; the others reach their own
/// parts more often.
const ROOTS: &[&str] = &[
    "rich.shop.v1.Order",
    "rich.shop.v1.Scalars",
    "rich.shop.v1.WellKnown",
    "rich.shop.v1.Maps",
    "wsgrpc.test.v1.TestResponse",
];

/// Field mask paths of snake_case names, which go to lowerCamelCase and
/// back.
const SNAKE_CASE_PATH: &str = concat!(
    "[a-z][a-z0-9]{0,3}(_[a-z][a-z0-9]{0,2}){0,2}",
    "(\\.[a-z][a-z0-9]{0,3}(_[a-z][a-z0-9]{0,2}){0,2}){0,2}",
);

/// Messages nest this deep at most (`Struct`s and `Value`s would go on).
pub(super) const DEPTH: u32 = 4;

static WRITERS: LazyLock<Vec<JsonWriter>> = LazyLock::new(|| {
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let pool = protox::Compiler::new([format!("{proto}/fixtures"), proto.to_owned()])
        .and_then(|mut compiler| {
            compiler.open_files(["rich/shop/v1/shop.proto", "wsgrpc/test/v1/test.proto"])?;
            Ok(compiler.descriptor_pool())
        })
        .expect("the fixtures compile");
    ROOTS
        .iter()
        .map(|name| JsonWriter::new(&pool.get_message_by_name(name).expect("a root")))
        .collect()
});

/// One root's writer and the encoding of a valid message of its type;
/// with `odd`, one whose values may also have no JSON form (a timestamp
/// out of range, a `Value` that is not finite, a field mask that does not
/// go to lowerCamelCase and back).
fn encoded(odd: bool) -> impl Strategy<Value = (usize, Vec<u8>)> {
    let roots = WRITERS.iter().enumerate().map(move |(root, writer)| {
        let message = message(writer.descriptor(), 0, odd);
        (message, any::<bool>()).prop_map(move |(message, unpack)| (root, encode(&message, unpack)))
    });
    proptest::strategy::Union::new(roots)
}

/// A message of type `descriptor` (odd, or only valid). `Any` is left
/// out: the direct writer declines it wherever it is.
pub(super) fn message(
    descriptor: &MessageDescriptor,
    depth: u32,
    odd: bool,
) -> BoxedStrategy<DynamicMessage> {
    let descriptor = descriptor.clone();
    match descriptor.full_name() {
        "google.protobuf.Timestamp" => {
            let seconds = sometimes(odd, -62_135_596_800i64..=253_402_300_799, any::<i64>());
            let nanos = sometimes(odd, 0..1_000_000_000i32, any::<i32>());
            return fixed_fields(descriptor, (seconds, nanos));
        }
        "google.protobuf.Duration" => {
            // Valid: seconds and nanos of one sign.
            let valid = (0..=315_576_000_000i64, 0..1_000_000_000i32, any::<bool>()).prop_map(
                |(seconds, nanos, negative)| match negative {
                    true => (-seconds, -nanos),
                    false => (seconds, nanos),
                },
            );
            let any = (any::<i64>(), any::<i32>());
            return fixed_fields(descriptor, sometimes(odd, valid, any));
        }
        "google.protobuf.FieldMask" => {
            let odd_path = prop_oneof![Just(String::new()), "[a-zA-Z0-9_.]{1,4}", any::<String>()];
            let path = sometimes(odd, SNAKE_CASE_PATH, odd_path);
            let field = descriptor.get_field(1).expect("FieldMask.paths");
            return vec(path, 0..4)
                .prop_map(move |paths| {
                    let mut mask = DynamicMessage::new(descriptor.clone());
                    let paths = paths.into_iter().map(Value::String).collect();
                    mask.set_field(&field, Value::List(paths));
                    mask
                })
                .boxed();
        }
        _ => {}
    }
    let fields: Vec<_> = descriptor
        .fields()
        .filter_map(|field| {
            let value = if field.full_name() == "google.protobuf.Value.number_value" {
                // Not finite, it has no JSON form.
                let finite = double().prop_filter("finite", |value| value.is_finite());
                sometimes(odd, finite, double())
                    .prop_map(Value::F64)
                    .boxed()
            } else {
                field_value(&field, depth, odd)?
            };
            Some(
                proptest::option::weighted(0.6, value)
                    .prop_map(move |value| (field.clone(), value)),
            )
        })
        .collect();
    fields
        .prop_map(move |values| {
            let mut message = DynamicMessage::new(descriptor.clone());
            // Of a oneof, the last member set stays.
            for (field, value) in values {
                if let Some(value) = value {
                    message.set_field(&field, value);
                }
            }
            message
        })
        .boxed()
}

/// `valid`; with `odd`, one time in ten `other` instead.
fn sometimes<T: std::fmt::Debug + 'static>(
    odd: bool,
    valid: impl Strategy<Value = T> + 'static,
    other: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if odd {
        prop_oneof![9 => valid, 1 => other].boxed()
    } else {
        valid.boxed()
    }
}

/// `Timestamp` or `Duration`: an `int64` and an `int32`.
fn fixed_fields(
    descriptor: MessageDescriptor,
    fields: impl Strategy<Value = (i64, i32)> + 'static,
) -> BoxedStrategy<DynamicMessage> {
    fields
        .prop_map(move |(seconds, nanos)| {
            let mut message = DynamicMessage::new(descriptor.clone());
            message.set_field_by_number(1, Value::I64(seconds));
            message.set_field_by_number(2, Value::I32(nanos));
            message
        })
        .boxed()
}

/// Any value of `field`, none where it holds messages too deep.
fn field_value(field: &FieldDescriptor, depth: u32, odd: bool) -> Option<BoxedStrategy<Value>> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!("a map's entry is a message")
        };
        let key = map_key(&entry.map_entry_key_field().kind());
        let value = single(&entry.map_entry_value_field().kind(), depth, odd)?;
        let entries = vec((key, value), 0..4);
        Some(
            entries
                .prop_map(|entries| Value::Map(entries.into_iter().collect::<HashMap<_, _>>()))
                .boxed(),
        )
    } else if field.is_list() {
        let element = single(&field.kind(), depth, odd)?;
        Some(vec(element, 0..4).prop_map(Value::List).boxed())
    } else {
        single(&field.kind(), depth, odd)
    }
}

fn single(kind: &Kind, depth: u32, odd: bool) -> Option<BoxedStrategy<Value>> {
    Some(match kind {
        Kind::Double => double().prop_map(Value::F64).boxed(),
        Kind::Float => double().prop_map(|value| Value::F32(value as f32)).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            int().prop_map(|v| Value::I32(v as i32)).boxed()
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => int().prop_map(Value::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => int().prop_map(|v| Value::U32(v as u32)).boxed(),
        Kind::Uint64 | Kind::Fixed64 => int().prop_map(|v| Value::U64(v as u64)).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::String => text().prop_map(Value::String).boxed(),
        Kind::Bytes => vec(any::<u8>(), 0..6)
            .prop_map(|bytes| Value::Bytes(bytes.into()))
            .boxed(),
        Kind::Enum(enumeration) => enum_number(enumeration.clone())
            .prop_map(Value::EnumNumber)
            .boxed(),
        Kind::Message(message) if depth < DEPTH && message.full_name() != "google.protobuf.Any" => {
            self::message(message, depth + 1, odd)
                .prop_map(Value::Message)
                .boxed()
        }
        Kind::Message(_) => return None,
    })
}

fn map_key(kind: &Kind) -> BoxedStrategy<MapKey> {
    single(kind, DEPTH, false)
        .expect("a scalar")
        .prop_map(|key| key.into_map_key().expect("a key's kind"))
        .boxed()
}

/// Integers near zero, at the edges of every width, and anywhere; cast to
/// the field's width.
fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        -3i64..3,
        select(vec![
            i64::MIN,
            i64::MAX,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::from(u32::MAX),
            -1 << 53,
            1 << 53,
        ]),
        any::<i64>(),
    ]
}

/// Every kind of float: zeros of both signs, subnormals, NaN, infinities,
/// the largest `f32`, and anything.
fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        select(vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::from(f32::MAX),
            f64::from(f32::MIN_POSITIVE),
            0.1,
            1e21,
        ]),
        any::<f64>(),
        (-1000i32..1000).prop_map(|n| f64::from(n) / 8.0),
    ]
}

/// Text with what JSON escapes (quotes, backslashes, controls), and any
/// Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[\\x00-\\x7f]{0,5}", any::<String>()]
}

/// An enum's values, and numbers it lacks where it is open: in a closed
/// (proto2) enum, such a number is an unknown field, which mutated bytes
/// reach.
fn enum_number(enumeration: EnumDescriptor) -> BoxedStrategy<i32> {
    let numbers: Vec<i32> = enumeration.values().map(|value| value.number()).collect();
    if enumeration.parent_file().syntax() == prost_reflect::Syntax::Proto2 {
        return select(numbers).boxed();
    }
    prop_oneof![3 => select(numbers), 1 => any::<i32>()].boxed()
}

/// `message` encoded as prost-reflect encodes it, or with its packed
/// fields sent unpacked.
pub(super) fn encode(message: &DynamicMessage, unpack: bool) -> Vec<u8> {
    let proto = prost::Message::encode_to_vec(message);
    if unpack {
        unpacked(&message.descriptor(), &proto)
    } else {
        proto
    }
}

/// `proto` with every packed repeated field sent as one record an
/// element, as proto2 encoders do, at every depth.
fn unpacked(descriptor: &MessageDescriptor, mut proto: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(proto.len());
    while !proto.is_empty() {
        let start = proto;
        let (number, wire) = decode_key(&mut proto).expect("a valid key");
        let field = descriptor.get_field(number);
        match (field, wire) {
            (Some(field), WireType::LengthDelimited) => {
                let content = length_delimited(&mut proto).expect("a valid length");
                match field.kind() {
                    Kind::Message(inner) => {
                        let inner = unpacked(&inner, content);
                        encode_key(number, wire, &mut out);
                        encode_varint(inner.len() as u64, &mut out);
                        out.extend_from_slice(&inner);
                    }
                    Kind::String | Kind::Bytes => {
                        out.extend_from_slice(&start[..start.len() - proto.len()]);
                    }
                    scalar => unpack_elements(number, &scalar, content, &mut out),
                }
            }
            _ => {
                skip(wire, &mut proto).expect("a valid record");
                out.extend_from_slice(&start[..start.len() - proto.len()]);
            }
        }
    }
    out
}

/// The elements of a packed run, each as a record of its own.
fn unpack_elements(number: u32, kind: &Kind, mut packed: &[u8], out: &mut Vec<u8>) {
    let wire = match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => WireType::SixtyFourBit,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => WireType::ThirtyTwoBit,
        _ => WireType::Varint,
    };
    while !packed.is_empty() {
        let start = packed;
        skip(wire, &mut packed).expect("an element");
        encode_key(number, wire, out);
        out.extend_from_slice(&start[..start.len() - packed.len()]);
    }
}

/// One change to an encoded message.
#[derive(Debug, Clone)]
pub(super) enum Mutation {
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// Sends the bytes between two places twice: often a record or a run
    /// of them, sent again.
    Repeat(Index, Index),
}

pub(super) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Repeat(a, b)),
    ]
}

pub(super) fn mutate(proto: &mut Vec<u8>, mutation: &Mutation) {
    if proto.is_empty() {
        if let Mutation::Set(_, byte) | Mutation::Insert(_, byte) = mutation {
            proto.push(*byte);
        }
        return;
    }
    let len = proto.len();
    match mutation {
        Mutation::Set(at, byte) => proto[at.index(len)] = *byte,
        Mutation::Insert(at, byte) => proto.insert(at.index(len + 1), *byte),
        Mutation::Remove(at) => drop(proto.remove(at.index(len))),
        Mutation::Truncate(at) => proto.truncate(at.index(len)),
        Mutation::Repeat(a, b) => {
            let (a, b) = (a.index(len + 1), b.index(len + 1));
            let (start, end) = (a.min(b), a.max(b));
            let again = proto[start..end].to_vec();
            proto.splice(end..end, again);
        }
    }
}

/// Writes `proto` both ways under every option; the number of options
/// under which the direct writer wrote.
pub(super) fn assert_same(writer: &JsonWriter, proto: &[u8]) -> Result<usize, TestCaseError> {
    let mut written = 0;
    for options in every_options() {
        match compare(writer, proto, &options) {
            Ok(Compared::Same) => written += 1,
            Ok(Compared::Declined) => {}
            Err(difference) => {
                return Err(TestCaseError::fail(format!(
                    "{} {options:?}, {proto:02x?}: {difference}",
                    writer.descriptor().full_name()
                )));
            }
        }
    }
    Ok(written)
}

// Cases per property: proptest's default (256), or `PROPTEST_CASES`.
proptest! {
    #[test]
    fn valid_messages_are_written_as_the_general_path_writes_them(
        (root, proto) in encoded(false),
    ) {
        // Valid messages sent as mainstream encoders send them are the
        // direct writer's to write, all of them.
        prop_assert_eq!(assert_same(&WRITERS[root], &proto)?, every_options().len());
    }

    #[test]
    fn mutated_messages_are_written_as_the_general_path_writes_them_or_declined(
        (root, mut proto) in encoded(true),
        mutations in vec(mutation(), 1..4),
    ) {
        for mutation in &mutations {
            mutate(&mut proto, mutation);
        }
        assert_same(&WRITERS[root], &proto)?;
    }
}
