//! The direct writer against the general path on random descriptors: a
//! random file (proto2 or proto3; nested, recursive and mutually recursive
//! messages; enums open and closed, with aliases; every scalar, packed and
//! unpacked; maps of every key type; oneofs, proto3 `optional`, proto2
//! defaults; `json_name`; the well-known types), and of one of its messages
//! valid messages, the same mutated, and arbitrary bytes. Where the direct
//! writer writes, the general path must write the same JSON.
//!
//! Short runs inside `cargo test`; a long one:
//! `PROPTEST_CASES=20000 cargo test --release -p wsgrpc-runtime json::direct::descriptor_proptests`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use prost_reflect::{DescriptorPool, MessageDescriptor};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumOptions, EnumValueDescriptorProto,
    FieldDescriptorProto, FieldOptions, FileDescriptorProto, MessageOptions, OneofDescriptorProto,
};

use super::proptests::{DEPTH, assert_same, encode, message, mutate, mutation};
use crate::json::JsonWriter;
use crate::json::testing::every_options;

/// The generated file's name in its pool.
const FILE: &str = "random.proto";

/// Messages of the generated types nest this much at most: each level
/// multiplies the strategies a case builds by its message fields.
const NESTING: u32 = 3;

/// The well-known types a field may hold, and their files.
const WELL_KNOWN: &[(&str, &str, Type)] = &[
    (
        "google.protobuf.Timestamp",
        "google/protobuf/timestamp.proto",
        Type::Message,
    ),
    (
        "google.protobuf.Duration",
        "google/protobuf/duration.proto",
        Type::Message,
    ),
    (
        "google.protobuf.Struct",
        "google/protobuf/struct.proto",
        Type::Message,
    ),
    (
        "google.protobuf.Value",
        "google/protobuf/struct.proto",
        Type::Message,
    ),
    (
        "google.protobuf.ListValue",
        "google/protobuf/struct.proto",
        Type::Message,
    ),
    (
        "google.protobuf.NullValue",
        "google/protobuf/struct.proto",
        Type::Enum,
    ),
    (
        "google.protobuf.Any",
        "google/protobuf/any.proto",
        Type::Message,
    ),
    (
        "google.protobuf.FieldMask",
        "google/protobuf/field_mask.proto",
        Type::Message,
    ),
    (
        "google.protobuf.Empty",
        "google/protobuf/empty.proto",
        Type::Message,
    ),
    (
        "google.protobuf.DoubleValue",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.FloatValue",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.Int64Value",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.UInt64Value",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.Int32Value",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.UInt32Value",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.BoolValue",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.StringValue",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
    (
        "google.protobuf.BytesValue",
        "google/protobuf/wrappers.proto",
        Type::Message,
    ),
];

const SCALARS: [Type; 15] = [
    Type::Double,
    Type::Float,
    Type::Int32,
    Type::Int64,
    Type::Uint32,
    Type::Uint64,
    Type::Sint32,
    Type::Sint64,
    Type::Fixed32,
    Type::Fixed64,
    Type::Sfixed32,
    Type::Sfixed64,
    Type::Bool,
    Type::String,
    Type::Bytes,
];

/// A file before names are made unique and references resolved.
#[derive(Debug, Clone)]
struct FileShape {
    proto3: bool,
    package: String,
    messages: Vec<MessageShape>,
    enums: Vec<EnumShape>,
}

#[derive(Debug, Clone)]
struct MessageShape {
    name: String,
    fields: Vec<FieldShape>,
    nested: Vec<MessageShape>,
    enums: Vec<EnumShape>,
    /// Real oneofs; those no field picks are left out.
    oneofs: usize,
}

#[derive(Debug, Clone)]
struct EnumShape {
    name: String,
    /// The values' numbers; in proto3 the first is made zero.
    numbers: Vec<i32>,
}

#[derive(Debug, Clone)]
struct FieldShape {
    name: String,
    number: i32,
    json_name: Option<String>,
    target: Target,
    cardinality: Cardinality,
    /// Which default a proto2 field with one gets.
    default: Index,
}

/// What a field (or a map's value) holds.
#[derive(Debug, Clone)]
enum Target {
    Scalar(Type),
    /// One of the file's enums; an `int32` where it has none.
    Enum(Index),
    /// One of the file's messages, itself included.
    Message(Index),
    WellKnown(Index),
}

#[derive(Debug, Clone)]
enum Cardinality {
    /// Proto3 without presence; proto2 `optional`.
    Singular,
    /// Proto3 `optional`; proto2 `optional`, possibly with a default.
    Optional {
        with_default: bool,
    },
    /// Proto2 `required`; proto3 has none, there it is `Singular`.
    Required,
    /// `packed` set or left to the syntax's default.
    Repeated {
        packed: Option<bool>,
    },
    Map {
        key: Type,
    },
    Oneof(Index),
}

fn file_shape() -> impl Strategy<Value = FileShape> {
    (
        any::<bool>(),
        "[a-z][a-z0-9]{0,4}(\\.[a-z][a-z0-9]{0,4}){0,2}",
        vec(message_shape(true), 1..=4),
        vec(enum_shape(), 0..3),
    )
        .prop_map(|(proto3, package, messages, enums)| FileShape {
            proto3,
            package,
            messages,
            enums,
        })
}

fn message_shape(with_nested: bool) -> BoxedStrategy<MessageShape> {
    let nested = if with_nested {
        vec(message_shape(false), 0..2).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (
        "[A-Z][a-zA-Z0-9]{0,5}",
        vec(field_shape(), 0..8),
        nested,
        vec(enum_shape(), 0..2),
        0..3usize,
    )
        .prop_map(|(name, fields, nested, enums, oneofs)| MessageShape {
            name,
            fields,
            nested,
            enums,
            oneofs,
        })
        .boxed()
}

fn enum_shape() -> impl Strategy<Value = EnumShape> {
    // Small numbers collide often: aliases.
    let number = prop_oneof![3 => -2..6i32, 1 => any::<i32>()];
    ("[A-Z][a-zA-Z0-9]{0,5}", vec(number, 1..5))
        .prop_map(|(name, numbers)| EnumShape { name, numbers })
}

fn field_shape() -> impl Strategy<Value = FieldShape> {
    // Unique in their message: later duplicates are left out.
    let number = prop_oneof![
        1..16i32,
        16..2048,
        1..19_000,
        20_000..=536_870_911,
        Just(536_870_911),
    ];
    let json_name = proptest::option::weighted(
        0.2,
        prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,5}", "[a-z\"\\\\é $]{1,4}"],
    );
    (
        "[a-zA-Z][a-zA-Z0-9]{0,5}",
        number,
        json_name,
        target(),
        cardinality(),
        any::<Index>(),
    )
        .prop_map(
            |(name, number, json_name, target, cardinality, default)| FieldShape {
                name,
                number,
                json_name,
                target,
                cardinality,
                default,
            },
        )
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        10 => select(SCALARS.to_vec()).prop_map(Target::Scalar),
        3 => any::<Index>().prop_map(Target::Enum),
        3 => any::<Index>().prop_map(Target::Message),
        3 => any::<Index>().prop_map(Target::WellKnown),
    ]
}

fn cardinality() -> impl Strategy<Value = Cardinality> {
    let map_key = select(
        SCALARS
            .iter()
            .copied()
            .filter(|kind| !matches!(kind, Type::Double | Type::Float | Type::Bytes))
            .collect::<Vec<_>>(),
    );
    prop_oneof![
        4 => Just(Cardinality::Singular),
        2 => any::<bool>().prop_map(|with_default| Cardinality::Optional { with_default }),
        1 => Just(Cardinality::Required),
        3 => proptest::option::of(any::<bool>())
            .prop_map(|packed| Cardinality::Repeated { packed }),
        2 => map_key.prop_map(|key| Cardinality::Map { key }),
        2 => any::<Index>().prop_map(Cardinality::Oneof),
    ]
}

/// Makes the names unique where protobuf needs them to be: a suffix of
/// its own to every message, enum and field (and the map entries and
/// JSON names derived from them), as random stems may repeat.
fn name_uniquely(file: &mut FileShape) {
    let mut counter = 0;
    let mut unique = |stem: &mut String, tag: &str| {
        *stem = format!("{stem}_{tag}{counter}");
        counter += 1;
    };
    fn message(shape: &mut MessageShape, unique: &mut impl FnMut(&mut String, &str)) {
        unique(&mut shape.name, "M");
        for (index, field) in shape.fields.iter_mut().enumerate() {
            field.name = format!("{}_f{index}", field.name);
        }
        for nested in &mut shape.nested {
            message(nested, unique);
        }
        for enumeration in &mut shape.enums {
            unique(&mut enumeration.name, "E");
        }
    }
    for shape in &mut file.messages {
        message(shape, &mut unique);
    }
    for enumeration in &mut file.enums {
        unique(&mut enumeration.name, "E");
    }
}

/// The full names (`.package.Name`) fields refer to.
#[derive(Default)]
struct Names {
    messages: Vec<String>,
    /// With their values' names.
    enums: Vec<(String, Vec<String>)>,
}

impl Names {
    fn collect(file: &FileShape) -> Self {
        let mut names = Self::default();
        let scope = format!(".{}", file.package);
        names.add_enums(&scope, &file.enums);
        for shape in &file.messages {
            names.add_message(&scope, shape);
        }
        names
    }

    fn add_message(&mut self, scope: &str, shape: &MessageShape) {
        let name = format!("{scope}.{}", shape.name);
        self.add_enums(&name, &shape.enums);
        for nested in &shape.nested {
            self.add_message(&name, nested);
        }
        self.messages.push(name);
    }

    fn add_enums(&mut self, scope: &str, enums: &[EnumShape]) {
        for shape in enums {
            let values = (0..shape.numbers.len())
                .map(|index| value_name(shape, index))
                .collect();
            self.enums.push((format!("{scope}.{}", shape.name), values));
        }
    }
}

/// Enum values are scoped beside their enum: unique by the enum's name.
fn value_name(shape: &EnumShape, index: usize) -> String {
    format!("{}_V{index}", shape.name.to_uppercase())
}

/// The file descriptor a shape describes.
fn file_proto(mut shape: FileShape) -> FileDescriptorProto {
    name_uniquely(&mut shape);
    let names = Names::collect(&shape);
    let mut dependencies = Vec::new();
    let scope = format!(".{}", shape.package);
    let message_type = shape
        .messages
        .iter()
        .map(|message| message_proto(&shape, &names, &scope, message, &mut dependencies))
        .collect();
    dependencies.sort();
    dependencies.dedup();
    FileDescriptorProto {
        name: Some(FILE.to_owned()),
        package: Some(shape.package.clone()),
        dependency: dependencies,
        message_type,
        enum_type: shape
            .enums
            .iter()
            .map(|enumeration| enum_proto(shape.proto3, enumeration))
            .collect(),
        syntax: Some(if shape.proto3 { "proto3" } else { "proto2" }.to_owned()),
        ..Default::default()
    }
}

fn enum_proto(proto3: bool, shape: &EnumShape) -> EnumDescriptorProto {
    let mut numbers = shape.numbers.clone();
    if proto3 {
        numbers[0] = 0;
    }
    let mut distinct = numbers.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let aliased = distinct.len() < numbers.len();
    EnumDescriptorProto {
        name: Some(shape.name.clone()),
        value: numbers
            .iter()
            .enumerate()
            .map(|(index, &number)| EnumValueDescriptorProto {
                name: Some(value_name(shape, index)),
                number: Some(number),
                options: None,
            })
            .collect(),
        options: aliased.then(|| EnumOptions {
            allow_alias: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn message_proto(
    file: &FileShape,
    names: &Names,
    scope: &str,
    shape: &MessageShape,
    dependencies: &mut Vec<String>,
) -> DescriptorProto {
    let name = format!("{scope}.{}", shape.name);
    let mut message = DescriptorProto {
        name: Some(shape.name.clone()),
        nested_type: shape
            .nested
            .iter()
            .map(|nested| message_proto(file, names, &name, nested, dependencies))
            .collect(),
        enum_type: shape
            .enums
            .iter()
            .map(|enumeration| enum_proto(file.proto3, enumeration))
            .collect(),
        ..Default::default()
    };
    // Real oneofs first, in the order fields first pick them, then the
    // synthetic ones of proto3 `optional`.
    let mut oneofs: Vec<usize> = Vec::new();
    let mut proto3_optional: Vec<usize> = Vec::new();
    let mut numbers = Vec::new();
    for field in &shape.fields {
        if numbers.contains(&field.number) {
            continue;
        }
        numbers.push(field.number);
        let (kind, type_name) = resolve(&field.target, names, dependencies);
        let mut proto = FieldDescriptorProto {
            name: Some(field.name.clone()),
            number: Some(field.number),
            label: Some(Label::Optional as i32),
            r#type: Some(kind as i32),
            type_name: type_name.clone(),
            json_name: field.json_name.clone(),
            ..Default::default()
        };
        match field.cardinality {
            Cardinality::Singular => {}
            Cardinality::Optional { .. } if file.proto3 => {
                proto.proto3_optional = Some(true);
                proto3_optional.push(message.field.len());
            }
            Cardinality::Optional { with_default } => {
                if with_default {
                    proto.default_value =
                        default_text(kind, type_name.as_deref(), names, field.default);
                }
            }
            Cardinality::Required => {
                if !file.proto3 {
                    proto.label = Some(Label::Required as i32);
                }
            }
            Cardinality::Repeated { packed } => {
                proto.label = Some(Label::Repeated as i32);
                let packable = !matches!(kind, Type::Message | Type::String | Type::Bytes);
                if let (Some(packed), true) = (packed, packable) {
                    proto.options = Some(FieldOptions {
                        packed: Some(packed),
                        ..Default::default()
                    });
                }
            }
            Cardinality::Map { key } => {
                let entry = map_entry(&field.name, key, proto.clone());
                proto.label = Some(Label::Repeated as i32);
                proto.r#type = Some(Type::Message as i32);
                proto.type_name = Some(format!("{name}.{}", entry.name()));
                message.nested_type.push(entry);
            }
            Cardinality::Oneof(pick) => {
                if shape.oneofs > 0 {
                    let oneof = pick.index(shape.oneofs);
                    let position = oneofs
                        .iter()
                        .position(|&other| other == oneof)
                        .unwrap_or_else(|| {
                            oneofs.push(oneof);
                            oneofs.len() - 1
                        });
                    proto.oneof_index = Some(position as i32);
                }
            }
        }
        message.field.push(proto);
    }
    let real = oneofs.iter().map(|oneof| format!("choice_o{oneof}"));
    let synthetic: Vec<String> = proto3_optional
        .iter()
        .enumerate()
        .map(|(offset, &field)| {
            let field = &mut message.field[field];
            field.oneof_index = Some((oneofs.len() + offset) as i32);
            format!("_{}", field.name())
        })
        .collect();
    message.oneof_decl = real
        .chain(synthetic)
        .map(|name| OneofDescriptorProto {
            name: Some(name),
            options: None,
        })
        .collect();
    message
}

/// The synthetic `XxxEntry` type of a map field; `value` is the field as
/// if it held one value.
fn map_entry(field_name: &str, key: Type, mut value: FieldDescriptorProto) -> DescriptorProto {
    let mut entry_name = String::new();
    let mut upper = true;
    for char in field_name.chars() {
        if char == '_' {
            upper = true;
        } else if std::mem::take(&mut upper) {
            entry_name.extend(char.to_uppercase());
        } else {
            entry_name.push(char);
        }
    }
    entry_name.push_str("Entry");
    value.name = Some("value".to_owned());
    value.number = Some(2);
    value.json_name = None;
    value.options = None;
    let key = FieldDescriptorProto {
        name: Some("key".to_owned()),
        number: Some(1),
        label: Some(Label::Optional as i32),
        r#type: Some(key as i32),
        ..Default::default()
    };
    DescriptorProto {
        name: Some(entry_name),
        field: vec![key, value],
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A target's type, and its type's full name where it has one.
fn resolve(
    target: &Target,
    names: &Names,
    dependencies: &mut Vec<String>,
) -> (Type, Option<String>) {
    match target {
        Target::Scalar(kind) => (*kind, None),
        Target::Enum(_) if names.enums.is_empty() => (Type::Int32, None),
        Target::Enum(pick) => (Type::Enum, Some(pick.get(&names.enums).0.clone())),
        Target::Message(pick) => (Type::Message, Some(pick.get(&names.messages).clone())),
        Target::WellKnown(pick) => {
            let (name, file, kind) = pick.get(WELL_KNOWN);
            dependencies.push((*file).to_owned());
            (*kind, Some(format!(".{name}")))
        }
    }
}

/// A proto2 default of a field of `kind`, as `default_value` spells it.
fn default_text(kind: Type, type_name: Option<&str>, names: &Names, pick: Index) -> Option<String> {
    let texts: &[&str] = match kind {
        Type::Double | Type::Float => &["0", "-0", "1.5", "inf", "-inf", "nan", "1e10"],
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            &["0", "-1", "7", "2147483647", "-2147483648"]
        }
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
            &["0", "-1", "9007199254740993", "-9223372036854775808"]
        }
        Type::Uint32 | Type::Fixed32 => &["0", "1", "4294967295"],
        Type::Uint64 | Type::Fixed64 => &["0", "1", "18446744073709551615"],
        Type::Bool => &["true", "false"],
        Type::String => &["", "hi", "a\"b", "é"],
        Type::Bytes => &["", "ab", "\\001\\377"],
        Type::Enum => {
            let (_, values) = names
                .enums
                .iter()
                .find(|(name, _)| Some(name.as_str()) == type_name)?;
            return Some(pick.get(values).clone());
        }
        _ => return None,
    };
    Some(pick.get(texts).to_string())
}

/// A random file built into a pool with the well-known types, and one of
/// its messages; files prost-reflect refuses are rejected.
fn root() -> impl Strategy<Value = MessageDescriptor> {
    (file_shape(), any::<Index>()).prop_filter_map(
        "prost-reflect refuses the file",
        |(shape, pick)| {
            let mut pool = DescriptorPool::global();
            pool.add_file_descriptor_proto(file_proto(shape)).ok()?;
            let messages: Vec<_> = pool
                .all_messages()
                .filter(|message| message.parent_file().name() == FILE && !message.is_map_entry())
                .collect();
            Some(pick.get(&messages).clone())
        },
    )
}

/// A root and the encoding of a message of its type (odd, or only
/// valid), with its packed fields sent unpacked or not.
fn encoded(odd: bool) -> impl Strategy<Value = (MessageDescriptor, Vec<u8>)> {
    root().prop_flat_map(move |descriptor| {
        let message = message(&descriptor, DEPTH - NESTING, odd);
        (message, any::<bool>())
            .prop_map(move |(message, unpack)| (descriptor.clone(), encode(&message, unpack)))
    })
}

// Cases per property: proptest's default (256), or `PROPTEST_CASES`.
proptest! {
    #[test]
    fn valid_messages_of_random_types_are_written_as_the_general_path_writes_them(
        (descriptor, proto) in encoded(false),
    ) {
        prop_assert_eq!(assert_same(&JsonWriter::new(&descriptor), &proto)?, every_options().len());
    }

    #[test]
    fn mutated_messages_of_random_types_are_written_as_the_general_path_writes_them_or_declined(
        (descriptor, mut proto) in encoded(true),
        mutations in vec(mutation(), 1..4),
    ) {
        for mutation in &mutations {
            mutate(&mut proto, mutation);
        }
        assert_same(&JsonWriter::new(&descriptor), &proto)?;
    }

    #[test]
    fn arbitrary_bytes_as_random_types_are_written_as_the_general_path_writes_them_or_declined(
        descriptor in root(),
        proto in vec(any::<u8>(), 0..64),
    ) {
        assert_same(&JsonWriter::new(&descriptor), &proto)?;
    }
}
