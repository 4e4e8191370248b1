//! The direct writer against the general path (a `DynamicMessage`
//! serialized by prost-reflect): where it writes, it must write the same;
//! where the wire holds what it does not vouch for, it must decline.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumOptions, EnumValueDescriptorProto,
    FieldDescriptorProto, FileDescriptorProto, MessageOptions,
};
use serde_json::Value;

use super::{Layout, Unsupported};
use crate::json::testing::every_options;
use crate::json::{JsonOptions, JsonWriter, TranscodeError};

fn direct(
    descriptor: &MessageDescriptor,
    proto: &[u8],
    options: &JsonOptions,
) -> Result<String, Unsupported> {
    let mut out = Vec::new();
    Layout::new(descriptor).write(proto, options, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn general(descriptor: &MessageDescriptor, proto: &[u8], options: &JsonOptions) -> String {
    let mut out = Vec::new();
    crate::json::write_general(descriptor, proto, options, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The direct writer writes `proto` exactly as the general path does,
/// under every option.
fn assert_written_directly(descriptor: &MessageDescriptor, proto: &[u8]) {
    for options in every_options() {
        let ours = direct(descriptor, proto, &options)
            .unwrap_or_else(|_| panic!("declined {} with {options:?}", descriptor.full_name()));
        assert_eq!(ours, general(descriptor, proto, &options), "{options:?}");
    }
}

/// Asserts that the direct writer declines `proto`; what the writer as a
/// whole answers, the general path's.
fn written_after_declining(
    descriptor: &MessageDescriptor,
    proto: &[u8],
    options: &JsonOptions,
) -> Result<String, TranscodeError> {
    assert_eq!(
        direct(descriptor, proto, options),
        Err(Unsupported),
        "{options:?}"
    );
    let mut out = Vec::new();
    JsonWriter::new(descriptor).write(proto, options, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

/// The direct writer declines `proto`, and the writer as a whole still
/// writes what the general path does.
fn assert_declined(descriptor: &MessageDescriptor, proto: &[u8]) {
    for options in every_options() {
        assert_eq!(
            written_after_declining(descriptor, proto, &options).unwrap(),
            general(descriptor, proto, &options)
        );
    }
}

/// The direct writer declines `proto`, which the general path refuses as
/// malformed.
fn assert_refused(descriptor: &MessageDescriptor, proto: &[u8]) {
    for options in every_options() {
        let err = written_after_declining(descriptor, proto, &options).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("backend sent an invalid message"),
            "{err}"
        );
    }
}

/// The top-level records of `proto`: (field number, bytes of the record).
fn records(mut proto: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let mut records = Vec::new();
    while !proto.is_empty() {
        let before = proto;
        let (number, wire) = prost::encoding::decode_key(&mut proto).unwrap();
        super::skip(wire, &mut proto).unwrap();
        records.push((number, before[..before.len() - proto.len()].to_vec()));
    }
    records
}

/// `descriptor.proto` itself, as a message: strings, enums, bools, nested
/// and repeated messages, several levels deep.
fn descriptor_file() -> (MessageDescriptor, Vec<u8>) {
    let file = DescriptorPool::global()
        .get_file_by_name("google/protobuf/descriptor.proto")
        .unwrap()
        .file_descriptor_proto()
        .clone();
    (file.descriptor(), file.encode_to_vec())
}

#[test]
fn writes_a_large_proto2_message_as_the_general_path_does() {
    let (descriptor, proto) = descriptor_file();
    assert_written_directly(&descriptor, &proto);
}

#[test]
fn writes_proto3_scalars_enums_and_lists_as_the_general_path_does() {
    let field = prost_types::Field {
        kind: prost_types::field::Kind::TypeSint64 as i32,
        cardinality: 3,
        number: -7,
        name: "caf\u{e9} \"quoted\"\n\u{1}".into(),
        packed: true,
        json_name: "x".into(),
        options: vec![prost_types::Option {
            name: "o".into(),
            value: None,
        }],
        ..Default::default()
    };
    assert_written_directly(&field.descriptor(), &field.encode_to_vec());
    // Every field at its default, and an enum number the enum lacks.
    assert_written_directly(&field.descriptor(), &[]);
    let unknown_kind = prost_types::Field {
        kind: 99,
        ..Default::default()
    };
    assert_written_directly(&unknown_kind.descriptor(), &unknown_kind.encode_to_vec());
}

#[test]
fn writes_numbers_of_every_width_and_non_finite_floats() {
    let option = prost_types::UninterpretedOption {
        positive_int_value: Some(u64::MAX),
        negative_int_value: Some(i64::MIN),
        double_value: Some(f64::NAN),
        string_value: Some(b"\x00\xffbytes".to_vec()),
        ..Default::default()
    };
    assert_written_directly(&option.descriptor(), &option.encode_to_vec());
    for value in [f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e300, 0.1] {
        assert_written_directly(&value.descriptor(), &value.encode_to_vec());
    }
    for value in [f32::NAN, -1.5, 3.4e38] {
        assert_written_directly(&value.descriptor(), &value.encode_to_vec());
    }
}

#[test]
fn writes_wrappers_timestamps_durations_and_empty() {
    assert_written_directly(&5i64.descriptor(), &5i64.encode_to_vec());
    assert_written_directly(&u32::MAX.descriptor(), &u32::MAX.encode_to_vec());
    assert_written_directly(&true.descriptor(), &[]);
    assert_written_directly(
        &String::new().descriptor(),
        &"é\"".to_owned().encode_to_vec(),
    );
    assert_written_directly(
        &Vec::<u8>::new().descriptor(),
        &vec![1u8, 2, 3].encode_to_vec(),
    );
    assert_written_directly(&().descriptor(), &[]);
    let timestamp = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 120_000_000,
    };
    assert_written_directly(&timestamp.descriptor(), &timestamp.encode_to_vec());
    let duration = prost_types::Duration {
        seconds: -3,
        nanos: -500,
    };
    assert_written_directly(&duration.descriptor(), &duration.encode_to_vec());
}

#[test]
fn skips_unknown_fields() {
    let (descriptor, mut proto) = descriptor_file();
    prost::encoding::encode_key(999, prost::encoding::WireType::Varint, &mut proto);
    prost::encoding::encode_varint(7, &mut proto);
    assert_written_directly(&descriptor, &proto);
}

#[test]
fn declines_fields_out_of_order_and_singular_fields_sent_twice() {
    let (descriptor, proto) = descriptor_file();
    // Each field's records kept in order, the fields reversed.
    let mut reversed = records(&proto);
    reversed.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    assert_declined(&descriptor, &joined(&reversed));

    // `name` twice: the last one wins.
    let mut twice = proto.clone();
    prost_types::FileDescriptorProto {
        name: Some("other.proto".into()),
        ..Default::default()
    }
    .encode(&mut twice)
    .unwrap();
    assert_declined(&descriptor, &twice);

    // A repeated field whose records are not in one run.
    let field = prost_types::Field {
        options: vec![Default::default()],
        ..Default::default()
    };
    let mut split = field.encode_to_vec();
    split.extend(
        prost_types::Field {
            number: 1,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    split.extend(field.encode_to_vec());
    assert_declined(&field.descriptor(), &split);
}

#[test]
fn declines_timestamps_out_of_range_and_types_it_does_not_write() {
    let far = prost_types::Timestamp {
        seconds: 300_000_000_000,
        nanos: 0,
    };
    assert_eq!(
        direct(
            &far.descriptor(),
            &far.encode_to_vec(),
            &JsonOptions::canonical()
        ),
        Err(Unsupported)
    );
    let mut out = Vec::new();
    let err = JsonWriter::new(&far.descriptor())
        .write(&far.encode_to_vec(), &JsonOptions::canonical(), &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!(out.is_empty());

    let any = prost_types::Any::from_msg(&prost_types::Duration::default()).unwrap();
    assert_declined(&any.descriptor(), &any.encode_to_vec());
    // A Value's number that is not finite has no JSON form.
    let infinite = prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(f64::INFINITY)),
    };
    let proto = infinite.encode_to_vec();
    let canonical = JsonOptions::canonical();
    assert_eq!(
        direct(&infinite.descriptor(), &proto, &canonical),
        Err(Unsupported)
    );
    let mut out = Vec::new();
    let written = JsonWriter::new(&infinite.descriptor()).write(&proto, &canonical, &mut out);
    assert!(written.is_err());
}

#[test]
fn writes_struct_value_and_list_value() {
    let json = serde_json::json!({
        "z": [1.5, "two", true, null, {"nested": []}],
        "a": {"b": {"c": -0.25}},
        "": "",
    });
    let descriptor = prost_types::Struct::default().descriptor();
    let message = DynamicMessage::deserialize(descriptor.clone(), json.clone()).unwrap();
    let proto = message.encode_to_vec();
    assert_written_directly(&descriptor, &proto);
    let written = direct(&descriptor, &proto, &JsonOptions::canonical()).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), json);
    // A key sent twice: the last one wins.
    let mut twice = proto.clone();
    let again = DynamicMessage::deserialize(descriptor.clone(), serde_json::json!({"a": 1}));
    twice.extend(again.unwrap().encode_to_vec());
    assert_written_directly(&descriptor, &twice);
    let empty = prost_types::Value::default();
    assert_written_directly(&empty.descriptor(), &[]);
}

#[test]
fn writes_field_masks_in_camel_case() {
    let mask = prost_types::FieldMask {
        paths: vec!["user.display_name".into(), "a1_b".into(), "x".into()],
    };
    assert_written_directly(&mask.descriptor(), &mask.encode_to_vec());
    assert_eq!(
        direct(
            &mask.descriptor(),
            &mask.encode_to_vec(),
            &JsonOptions::canonical()
        )
        .unwrap(),
        r#""user.displayName,a1B,x""#
    );
    assert_written_directly(&mask.descriptor(), &[]);
    // Paths that do not go to camel case and back: the general path's.
    for odd in ["trailing_", "Upper", "a__b", "a_1", "caf\u{e9}"] {
        let mask = prost_types::FieldMask {
            paths: vec![odd.into()],
        };
        assert_eq!(
            direct(
                &mask.descriptor(),
                &mask.encode_to_vec(),
                &JsonOptions::canonical()
            ),
            Err(Unsupported),
            "{odd}"
        );
    }
}

/// Found by the differential test (`proptests`, then `fuzz/direct_json`):
/// a map entry replaced by a later one with the same key, whose message
/// value holds a string that is not UTF-8. Decoding reads the replaced
/// entry too and refuses the whole message; the direct writer wrote the
/// later entry and never looked at the first. It was found in the rich
/// fixture's `Maps.by_bool` (`map<bool, Money>`): `{true:
/// Money{currency_code: <not UTF-8>}}`, then `{true: Money{…}}`; here the
/// same in `test.Maps`.
#[test]
fn declines_maps_whose_replaced_entries_are_malformed() {
    let descriptor = maps();
    // `by_number` (2): map<int32, google.protobuf.Option>; Option.name (1)
    // is a string.
    let bad = [0x12, 0x07, 0x08, 0x01, 0x12, 0x03, 0x0a, 0x01, 0xff];
    let good = [0x12, 0x04, 0x08, 0x01, 0x12, 0x00];
    assert_refused(&descriptor, &[&bad[..], &good].concat());
    // Sent in the other order, the malformed one is the one written.
    assert_refused(&descriptor, &[&good[..], &bad].concat());
    // A well-formed entry replaced is no reason to decline.
    assert_written_directly(&descriptor, &[&good[..], &good].concat());

    // A Struct's key sent twice, the first with a Value holding a string
    // that is not UTF-8.
    let descriptor = prost_types::Struct::default().descriptor();
    let bad = [0x0a, 0x08, 0x0a, 0x01, b'k', 0x12, 0x03, 0x1a, 0x01, 0xff];
    let good = [0x0a, 0x03, 0x0a, 0x01, b'k'];
    assert_refused(&descriptor, &[&bad[..], &good].concat());
    assert_written_directly(&descriptor, &[&good[..], &good].concat());
    // As `fuzz/direct_json` found it, in `WellKnown.attributes`: the first
    // `"k"`'s Value holds a field number 0.
    let found = [
        0x0a, 0x08, 0x0a, 0x01, b'k', 0x12, 0x03, 0x00, 0x16, b'v', //
        0x0a, 0x08, 0x0a, 0x01, b'k', 0x12, 0x03, 0x1a, 0x01, b'v',
    ];
    assert_refused(&descriptor, &found);
}

/// Found beside the differential test (reading prost-reflect's writer for
/// its generator; `fuzz/direct_json` fails on the input): a mask whose
/// first path is empty, `0a 00 0a 01 61` (`["", "a"]`). The general path
/// puts a comma only after a path that wrote something, so it writes
/// `"a"`; the direct writer wrote `",a"`. Such a mask is the general
/// path's to write.
#[test]
fn declines_field_masks_with_an_empty_path() {
    let descriptor = prost_types::FieldMask::default().descriptor();
    for paths in [&["", "a"][..], &["", ""], &["a", ""], &[""]] {
        let mask = prost_types::FieldMask {
            paths: paths.iter().map(|path| path.to_string()).collect(),
        };
        assert_declined(&descriptor, &mask.encode_to_vec());
    }
    assert_eq!(
        general(
            &descriptor,
            &[0x0a, 0x00, 0x0a, 0x01, b'a'],
            &JsonOptions::canonical()
        ),
        r#""a""#
    );
}

#[test]
fn declines_malformed_bytes_which_the_general_path_reports() {
    let (descriptor, proto) = descriptor_file();
    for bad in [
        &proto[..proto.len() - 1],
        &[0x0a, 0x02, 0xff, 0xfe][..],
        &[0x0f][..],
    ] {
        assert_refused(&descriptor, bad);
    }
}

/// `test.Maps`, proto3: maps keyed by string, int32, bool and uint64, with
/// values that are strings, messages and enums; then scalars of the kinds
/// `google.protobuf` lacks in proto3.
fn maps() -> MessageDescriptor {
    let entry = |name: &str, key: Type, value: Type, type_name: Option<&str>| DescriptorProto {
        name: Some(name.into()),
        field: vec![
            scalar("key", 1, key, None, Label::Optional),
            scalar("value", 2, value, type_name, Label::Optional),
        ],
        options: Some(MessageOptions {
            map_entry: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let map = |name: &str, number, entry: &str| {
        scalar(
            name,
            number,
            Type::Message,
            Some(&format!(".test.Maps.{entry}")),
            Label::Repeated,
        )
    };
    let file = FileDescriptorProto {
        name: Some("maps.proto".into()),
        package: Some("test".into()),
        syntax: Some("proto3".into()),
        dependency: vec!["google/protobuf/type.proto".into()],
        message_type: vec![DescriptorProto {
            name: Some("Maps".into()),
            field: vec![
                map("by_name", 1, "ByNameEntry"),
                map("by_number", 2, "ByNumberEntry"),
                map("by_flag", 3, "ByFlagEntry"),
                map("by_big", 4, "ByBigEntry"),
                scalar("after", 5, Type::String, None, Label::Optional),
                scalar("ratio", 6, Type::Float, None, Label::Optional),
                scalar("scale", 7, Type::Double, None, Label::Optional),
                scalar("count", 8, Type::Uint32, None, Label::Optional),
                scalar("delta", 9, Type::Sint32, None, Label::Optional),
                scalar("span", 10, Type::Sint64, None, Label::Optional),
                scalar("mark", 11, Type::Fixed64, None, Label::Optional),
                scalar("offset", 12, Type::Sfixed32, None, Label::Optional),
                scalar("blob", 13, Type::Bytes, None, Label::Optional),
                scalar("flag", 14, Type::Bool, None, Label::Optional),
                scalar(
                    "syntax",
                    15,
                    Type::Enum,
                    Some(".google.protobuf.Syntax"),
                    Label::Optional,
                ),
            ],
            nested_type: vec![
                entry("ByNameEntry", Type::String, Type::String, None),
                entry(
                    "ByNumberEntry",
                    Type::Int32,
                    Type::Message,
                    Some(".google.protobuf.Option"),
                ),
                entry(
                    "ByFlagEntry",
                    Type::Bool,
                    Type::Enum,
                    Some(".google.protobuf.Syntax"),
                ),
                entry("ByBigEntry", Type::Uint64, Type::Int64, None),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut pool = DescriptorPool::global();
    pool.add_file_descriptor_proto(file).unwrap();
    pool.get_message_by_name("test.Maps").unwrap()
}

fn scalar(
    name: &str,
    number: i32,
    kind: Type,
    type_name: Option<&str>,
    label: Label,
) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(label as i32),
        r#type: Some(kind as i32),
        type_name: type_name.map(Into::into),
        ..Default::default()
    }
}

#[test]
fn leaves_out_proto3_scalars_sent_at_their_defaults() {
    use prost::encoding::{
        bool, bytes, double, fixed64, float, int32, sfixed32, sint32, sint64, uint32,
    };
    let descriptor = maps();
    for sign in [0, 1, -1] {
        let mut proto = Vec::new();
        float::encode(6, &(sign as f32 * 0.5), &mut proto);
        double::encode(7, &(sign as f64 * 1e-300), &mut proto);
        uint32::encode(8, &(sign as u32), &mut proto);
        sint32::encode(9, &sign, &mut proto);
        sint64::encode(10, &(i64::from(sign) << 40), &mut proto);
        fixed64::encode(11, &(sign as u64), &mut proto);
        sfixed32::encode(12, &sign, &mut proto);
        bytes::encode(13, &vec![0u8; sign.unsigned_abs() as usize], &mut proto);
        bool::encode(14, &(sign != 0), &mut proto);
        int32::encode(15, &sign.abs(), &mut proto);
        assert_written_directly(&descriptor, &proto);
    }
    // -0.0 counts as the default, as in the general path.
    let mut proto = Vec::new();
    double::encode(7, &-0.0, &mut proto);
    assert_written_directly(&descriptor, &proto);
    assert_eq!(
        direct(&descriptor, &proto, &JsonOptions::canonical()).unwrap(),
        "{}"
    );
}

#[test]
fn writes_maps_sorted_by_key_with_the_last_of_equal_keys() {
    let descriptor = maps();
    let json = serde_json::json!({
        "byName": {"b": "2", "a": "1", "": "empty"},
        "byNumber": {"-1": {"name": "minus"}, "10": {}, "2": {"name": "two"}},
        "byFlag": {"true": "SYNTAX_PROTO3", "false": "SYNTAX_PROTO2"},
        "byBig": {"18446744073709551615": "-5", "0": "0"},
        "after": "end",
    });
    let message = DynamicMessage::deserialize(descriptor.clone(), json).unwrap();
    let proto = message.encode_to_vec();
    for options in every_options() {
        let ours = direct(&descriptor, &proto, &options).expect("maps are written directly");
        let parsed: Value = serde_json::from_str(&ours).unwrap();
        let theirs: Value = serde_json::from_str(&general(&descriptor, &proto, &options)).unwrap();
        assert_eq!(parsed, theirs, "{options:?}");
    }
    let ours = direct(&descriptor, &proto, &JsonOptions::canonical()).unwrap();
    assert!(
        ours.starts_with(r#"{"byName":{"":"empty","a":"1","b":"2"},"byNumber":{"-1":"#),
        "{ours}"
    );

    // An entry sent again replaces the first, and entries may leave out a
    // key or a value at its default.
    let (by_name, rest): (Vec<_>, Vec<_>) = records(&proto)
        .into_iter()
        .partition(|(number, _)| *number == 1);
    let mut again = joined(&by_name);
    // {"a": "again"} and {"" : ""} as bare entries.
    again.extend([0x0a, 0x09, 0x0a, 0x01, b'a', 0x12, 0x04]);
    again.extend(b"gain");
    again.extend([0x0a, 0x00]);
    again.extend(joined(&rest));
    let ours: Value =
        serde_json::from_str(&direct(&descriptor, &again, &JsonOptions::canonical()).unwrap())
            .unwrap();
    assert_eq!(
        ours["byName"],
        serde_json::json!({"": "", "a": "gain", "b": "2"})
    );
    let theirs: Value =
        serde_json::from_str(&general(&descriptor, &again, &JsonOptions::canonical())).unwrap();
    assert_eq!(ours, theirs);
}

fn joined(records: &[(u32, Vec<u8>)]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|(_, record)| record.clone())
        .collect()
}

/// A proto3 message of one enum field, `level = 1`, whose enum gives the
/// number 2 three names.
fn aliased_enum() -> MessageDescriptor {
    let file = FileDescriptorProto {
        name: Some("aliases.proto".into()),
        package: Some("test".into()),
        syntax: Some("proto3".into()),
        message_type: vec![DescriptorProto {
            name: Some("Holder".into()),
            field: vec![scalar(
                "level",
                1,
                Type::Enum,
                Some(".test.Level"),
                Label::Optional,
            )],
            ..Default::default()
        }],
        enum_type: vec![EnumDescriptorProto {
            name: Some("Level".into()),
            value: vec![
                enum_value("ZERO", 0),
                enum_value("TWO", 2),
                enum_value("DEUX", 2),
                enum_value("ZWEI", 2),
            ],
            options: Some(EnumOptions {
                allow_alias: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    message_of(file, "test.Holder")
}

#[test]
fn writes_the_alias_the_general_path_writes() {
    let descriptor = aliased_enum();
    let prost_reflect::Kind::Enum(level) = descriptor.get_field(1).unwrap().kind() else {
        unreachable!("an enum field")
    };
    // The general path names a number by `get_value`, a binary search
    // among the values sorted by number (here it finds the first
    // declared); `values()` lists aliases in another order.
    let found = level.get_value(2).unwrap();
    let first_listed = level.values().find(|value| value.number() == 2).unwrap();
    assert_ne!(
        found.name(),
        first_listed.name(),
        "no longer a trap: the test needs other aliases"
    );
    // `level: 2`.
    assert_written_directly(&descriptor, &[0x08, 0x02]);
    assert_eq!(
        direct(&descriptor, &[0x08, 0x02], &JsonOptions::canonical()).unwrap(),
        format!(r#"{{"level":"{}"}}"#, found.name())
    );
}

/// A proto2 file: `enum Color { RED = 1; GREEN = 2; }`,
/// `message Inner { optional Color c = 1; }` and `message Paint { optional
/// Color one = 1; repeated Color many = 2; repeated Color packed = 3
/// [packed = true]; optional Inner inner = 5; map<string, Color> by_name =
/// 6; }`.
fn paint() -> MessageDescriptor {
    let color = Some(".paint.Color");
    let mut packed = scalar("packed", 3, Type::Enum, color, Label::Repeated);
    packed.options = Some(prost_types::FieldOptions {
        packed: Some(true),
        ..Default::default()
    });
    let file = FileDescriptorProto {
        name: Some("paint.proto".into()),
        package: Some("paint".into()),
        syntax: Some("proto2".into()),
        enum_type: vec![EnumDescriptorProto {
            name: Some("Color".into()),
            value: vec![enum_value("RED", 1), enum_value("GREEN", 2)],
            ..Default::default()
        }],
        message_type: vec![
            DescriptorProto {
                name: Some("Inner".into()),
                field: vec![scalar("c", 1, Type::Enum, color, Label::Optional)],
                ..Default::default()
            },
            DescriptorProto {
                name: Some("Paint".into()),
                field: vec![
                    scalar("one", 1, Type::Enum, color, Label::Optional),
                    scalar("many", 2, Type::Enum, color, Label::Repeated),
                    packed,
                    scalar(
                        "inner",
                        5,
                        Type::Message,
                        Some(".paint.Inner"),
                        Label::Optional,
                    ),
                    scalar(
                        "by_name",
                        6,
                        Type::Message,
                        Some(".paint.Paint.ByNameEntry"),
                        Label::Repeated,
                    ),
                ],
                nested_type: vec![DescriptorProto {
                    name: Some("ByNameEntry".into()),
                    field: vec![
                        scalar("key", 1, Type::String, None, Label::Optional),
                        scalar("value", 2, Type::Enum, color, Label::Optional),
                    ],
                    options: Some(MessageOptions {
                        map_entry: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    message_of(file, "paint.Paint")
}

#[test]
fn leaves_out_numbers_a_closed_enum_does_not_name_as_googles_parsers_do() {
    let descriptor = paint();
    // one = 7, many = [1, 9, 2], packed = [9, 2], inner { c = 9 }: what
    // Google's Python protobuf (json_format.MessageToJson) writes of these
    // bytes. A closed enum's unknown number is an unknown field to it.
    let proto = [
        0x08, 7, 0x10, 1, 0x10, 9, 0x10, 2, 0x1a, 2, 9, 2, 0x2a, 2, 0x08, 9,
    ];
    let google = r#"{"many":["RED","GREEN"],"packed":["GREEN"],"inner":{}}"#;
    let written = written_after_declining(&descriptor, &proto, &JsonOptions::canonical());
    assert_eq!(written.unwrap(), google);
    // by_name { "a": RED }, { "b": 9 }: a map loses the whole entry, as
    // protobuf's rules for closed enums say.
    let proto = [
        0x32, 5, 0x0a, 1, b'a', 0x10, 1, 0x32, 5, 0x0a, 1, b'b', 0x10, 9,
    ];
    let written = written_after_declining(&descriptor, &proto, &JsonOptions::canonical());
    assert_eq!(written.unwrap(), r#"{"byName":{"a":"RED"}}"#);
    // Numbers the enum names are written directly.
    assert_written_directly(&descriptor, &[0x08, 1, 0x10, 2, 0x1a, 1, 1]);
}

fn enum_value(name: &str, number: i32) -> EnumValueDescriptorProto {
    EnumValueDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        options: None,
    }
}

/// `name` of `file`, added to the global pool.
fn message_of(file: FileDescriptorProto, name: &str) -> MessageDescriptor {
    let mut pool = DescriptorPool::global();
    pool.add_file_descriptor_proto(file).unwrap();
    pool.get_message_by_name(name).unwrap()
}

#[test]
fn refuses_in_a_request_a_number_a_closed_enum_does_not_name() {
    let descriptor = paint();
    let read = |json: &str| crate::json::json_to_proto(&descriptor, json);
    // Google's Python protobuf (json_format.Parse) refuses both, and reads
    // the named ones.
    let err = read(r#"{"one": 9}"#).unwrap_err().to_string();
    assert!(
        err.contains("field `one`: 9 is not a value of the closed enum paint.Color"),
        "{err}"
    );
    let err = read(r#"{"inner": {"c": 1}, "many": [1, 9]}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `many[1]`"), "{err}");
    let err = read(r#"{"inner": {"c": 7}}"#).unwrap_err().to_string();
    assert!(err.contains("field `inner.c`"), "{err}");
    assert_eq!(&read(r#"{"one": 2}"#).unwrap()[..], [0x08, 2]);
    assert_eq!(&read(r#"{"one": "GREEN"}"#).unwrap()[..], [0x08, 2]);
}
