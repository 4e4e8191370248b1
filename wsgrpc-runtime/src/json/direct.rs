//! Proto3 JSON written straight from the protobuf bytes, without building a
//! message first.
//!
//! Decoding into a `DynamicMessage` and serializing that costs several
//! allocations per field; a stream of small messages spends most of the
//! bridge's time there. This writer walks the wire format once, guided by a
//! [`Layout`] flattened from the descriptors when a method is set up, and
//! writes each field as it meets it.
//!
//! It does so only where its output is certain to be the general path's:
//! fields in ascending order, each singular field once, each repeated field
//! in one run — what every mainstream encoder writes. Anything else (fields
//! out of order, a singular field sent twice, extensions, groups, `Any`,
//! malformed bytes) makes it answer [`Unsupported`], and the
//! caller goes the general way, which also gives invalid input its error.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message as _;
use prost::encoding::{WireType, decode_key, decode_varint};
use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde::Serializer as _;

use super::JsonOptions;
use crate::non_finite::spelled as non_finite;

/// Deeper than this, the general path decides (and refuses past its own
/// recursion limit).
const MAX_DEPTH: usize = 64;

/// The input is not one the direct writer vouches for; write it the general
/// way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unsupported;

impl From<prost::DecodeError> for Unsupported {
    fn from(_: prost::DecodeError) -> Self {
        Self
    }
}

impl From<serde_json::Error> for Unsupported {
    fn from(_: serde_json::Error) -> Self {
        Self
    }
}

/// What the writer needs to know of a message type and of every type it
/// reaches, flattened from their descriptors.
#[derive(Debug)]
pub(super) struct Layout {
    /// The root first; fields refer to the others by index.
    messages: Vec<MessageLayout>,
    enums: Vec<EnumLayout>,
}

#[derive(Debug)]
struct MessageLayout {
    /// In field-number order, the order the general path writes in.
    fields: Vec<FieldLayout>,
    well_known: Option<WellKnown>,
    /// Extensions of this type exist in the pool, so an unknown number may
    /// be one of them.
    extendable: bool,
}

#[derive(Debug)]
struct FieldLayout {
    number: u32,
    /// `"jsonName":` and `"proto_name":`, escaped.
    keys: [Box<[u8]>; 2],
    value: ValueKind,
    shape: Shape,
    /// The field's oneof, where it has one.
    oneof: Option<u32>,
}

#[derive(Debug)]
enum Shape {
    /// Written when set; without presence, only when not at its default.
    Singular {
        presence: bool,
    },
    List,
    Map {
        key: ValueKind,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
    Enum(usize),
    Message(usize),
    /// Groups: only the general path writes them.
    Group,
}

#[derive(Debug)]
enum WellKnown {
    /// `google.protobuf.*Value`: the value of field 1, bare.
    Wrapper(ValueKind),
    Timestamp,
    Duration,
    Empty,
    /// `Struct`, `Value` and `ListValue`: JSON itself.
    Struct,
    Value,
    ListValue,
    FieldMask,
    /// `Any`, whose type is known only from its URL.
    Any,
}

#[derive(Debug)]
struct EnumLayout {
    /// `"NAME"` by number, sorted by number; of aliases, the general
    /// path's choice.
    names: Vec<(i32, Box<[u8]>)>,
    /// `google.protobuf.NullValue`, which is written as `null`.
    null: bool,
    /// A proto2 enum: a number it does not name is an unknown field to
    /// Google's parsers, which the general path leaves out as they do.
    closed: bool,
    default: i32,
}

impl Layout {
    pub(super) fn new(root: &MessageDescriptor) -> Self {
        let mut builder = Builder::default();
        builder.message(root);
        Self {
            messages: builder.messages,
            enums: builder.enums,
        }
    }

    /// Appends `proto`, a message of the root type, to `out` as JSON. On
    /// [`Unsupported`], `out` holds a partial write: truncate it.
    pub(super) fn write(
        &self,
        proto: &[u8],
        options: &JsonOptions,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        Writer {
            layout: self,
            key: usize::from(options.proto_field_names),
            enum_numbers: options.enum_numbers,
            emit_defaults: options.emit_defaults,
        }
        .message(0, proto, 0, out)
    }
}

#[derive(Default)]
struct Builder {
    messages: Vec<MessageLayout>,
    enums: Vec<EnumLayout>,
    message_index: HashMap<String, usize>,
    enum_index: HashMap<String, usize>,
}

impl Builder {
    fn message(&mut self, descriptor: &MessageDescriptor) -> usize {
        if let Some(&index) = self.message_index.get(descriptor.full_name()) {
            return index;
        }
        let index = self.messages.len();
        self.message_index
            .insert(descriptor.full_name().to_owned(), index);
        self.messages.push(MessageLayout {
            fields: Vec::new(),
            well_known: None,
            extendable: descriptor.extensions().len() > 0,
        });
        let well_known = well_known(descriptor);
        let fields = if well_known.is_some() {
            Vec::new()
        } else {
            // `fields()` is in number order.
            descriptor
                .fields()
                .map(|field| self.field(&field))
                .collect()
        };
        let layout = &mut self.messages[index];
        layout.fields = fields;
        layout.well_known = well_known;
        index
    }

    fn field(&mut self, field: &FieldDescriptor) -> FieldLayout {
        let (value, shape) = match field.kind() {
            Kind::Message(entry) if field.is_map() => {
                let key = self.value(&entry.map_entry_key_field());
                (
                    self.value(&entry.map_entry_value_field()),
                    Shape::Map { key },
                )
            }
            _ if field.is_list() => (self.value(field), Shape::List),
            _ => (
                self.value(field),
                Shape::Singular {
                    presence: field.supports_presence(),
                },
            ),
        };
        let oneof = field.containing_oneof().and_then(|oneof| {
            let mut oneofs = field.parent_message().oneofs();
            oneofs.position(|other| other.name() == oneof.name())
        });
        FieldLayout {
            number: field.number(),
            keys: [key(field.json_name()), key(field.name())],
            value,
            shape,
            oneof: oneof.map(|position| position as u32),
        }
    }

    fn value(&mut self, field: &FieldDescriptor) -> ValueKind {
        if field.is_group() {
            return ValueKind::Group;
        }
        match field.kind() {
            Kind::Double => ValueKind::Double,
            Kind::Float => ValueKind::Float,
            Kind::Int32 => ValueKind::Int32,
            Kind::Int64 => ValueKind::Int64,
            Kind::Uint32 => ValueKind::Uint32,
            Kind::Uint64 => ValueKind::Uint64,
            Kind::Sint32 => ValueKind::Sint32,
            Kind::Sint64 => ValueKind::Sint64,
            Kind::Fixed32 => ValueKind::Fixed32,
            Kind::Fixed64 => ValueKind::Fixed64,
            Kind::Sfixed32 => ValueKind::Sfixed32,
            Kind::Sfixed64 => ValueKind::Sfixed64,
            Kind::Bool => ValueKind::Bool,
            Kind::String => ValueKind::String,
            Kind::Bytes => ValueKind::Bytes,
            Kind::Enum(descriptor) => ValueKind::Enum(self.enumeration(&descriptor)),
            Kind::Message(descriptor) => ValueKind::Message(self.message(&descriptor)),
        }
    }

    fn enumeration(&mut self, descriptor: &EnumDescriptor) -> usize {
        if let Some(&index) = self.enum_index.get(descriptor.full_name()) {
            return index;
        }
        let mut numbers: Vec<i32> = descriptor.values().map(|value| value.number()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        // Of aliases, the name `get_value` finds, as the general path
        // does; `values()` does not list aliases in declared order.
        let names = numbers
            .into_iter()
            .map(|number| {
                let value = descriptor
                    .get_value(number)
                    .expect("a value of this number");
                (number, quoted(value.name()))
            })
            .collect();
        let index = self.enums.len();
        self.enum_index
            .insert(descriptor.full_name().to_owned(), index);
        self.enums.push(EnumLayout {
            names,
            null: descriptor.full_name() == "google.protobuf.NullValue",
            closed: descriptor.parent_file().syntax() == prost_reflect::Syntax::Proto2,
            default: descriptor.default_value().number(),
        });
        index
    }
}

fn well_known(descriptor: &MessageDescriptor) -> Option<WellKnown> {
    let wrapped = |kind| Some(WellKnown::Wrapper(kind));
    match descriptor.full_name() {
        "google.protobuf.DoubleValue" => wrapped(ValueKind::Double),
        "google.protobuf.FloatValue" => wrapped(ValueKind::Float),
        "google.protobuf.Int64Value" => wrapped(ValueKind::Int64),
        "google.protobuf.UInt64Value" => wrapped(ValueKind::Uint64),
        "google.protobuf.Int32Value" => wrapped(ValueKind::Int32),
        "google.protobuf.UInt32Value" => wrapped(ValueKind::Uint32),
        "google.protobuf.BoolValue" => wrapped(ValueKind::Bool),
        "google.protobuf.StringValue" => wrapped(ValueKind::String),
        "google.protobuf.BytesValue" => wrapped(ValueKind::Bytes),
        "google.protobuf.Timestamp" => Some(WellKnown::Timestamp),
        "google.protobuf.Duration" => Some(WellKnown::Duration),
        "google.protobuf.Empty" => Some(WellKnown::Empty),
        "google.protobuf.Struct" => Some(WellKnown::Struct),
        "google.protobuf.Value" => Some(WellKnown::Value),
        "google.protobuf.ListValue" => Some(WellKnown::ListValue),
        "google.protobuf.FieldMask" => Some(WellKnown::FieldMask),
        "google.protobuf.Any" => Some(WellKnown::Any),
        _ => None,
    }
}

/// `text` as a JSON string.
fn quoted(text: &str) -> Box<[u8]> {
    serde_json::to_vec(text)
        .expect("a string serializes")
        .into_boxed_slice()
}

/// `"name":`.
fn key(name: &str) -> Box<[u8]> {
    let mut key = quoted(name).into_vec();
    key.push(b':');
    key.into_boxed_slice()
}

/// One value as read from the wire.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Signed(i64),
    Unsigned(u64),
    Float(f32),
    Double(f64),
    Bool(bool),
    String(&'a str),
    Bytes(&'a [u8]),
    Enum(i32),
    Message(&'a [u8]),
}

impl Scalar<'_> {
    /// Whether a field without presence holding this is left out.
    fn is_default(&self, enum_default: i32) -> bool {
        match *self {
            Self::Signed(value) => value == 0,
            Self::Unsigned(value) => value == 0,
            Self::Float(value) => value == 0.0,
            Self::Double(value) => value == 0.0,
            Self::Bool(value) => !value,
            Self::String(value) => value.is_empty(),
            Self::Bytes(value) => value.is_empty(),
            Self::Enum(value) => value == enum_default,
            Self::Message(_) => false,
        }
    }
}

impl ValueKind {
    fn wire_type(self) -> Option<WireType> {
        Some(match self {
            Self::Int32
            | Self::Int64
            | Self::Uint32
            | Self::Uint64
            | Self::Sint32
            | Self::Sint64
            | Self::Bool
            | Self::Enum(_) => WireType::Varint,
            Self::Fixed32 | Self::Sfixed32 | Self::Float => WireType::ThirtyTwoBit,
            Self::Fixed64 | Self::Sfixed64 | Self::Double => WireType::SixtyFourBit,
            Self::String | Self::Bytes | Self::Message(_) => WireType::LengthDelimited,
            Self::Group => return None,
        })
    }

    /// Reads one value of this kind, sent with `wire`.
    fn read<'a>(self, wire: WireType, input: &mut &'a [u8]) -> Result<Scalar<'a>, Unsupported> {
        if self.wire_type() != Some(wire) {
            return Err(Unsupported);
        }
        // Truncating casts are protobuf's: an int32 travels sign-extended
        // to 64 bits, and a uint32 sent as 64 bits keeps its low half.
        Ok(match self {
            Self::Int32 => Scalar::Signed(i64::from(decode_varint(input)? as i32)),
            Self::Int64 => Scalar::Signed(decode_varint(input)? as i64),
            Self::Uint32 => Scalar::Unsigned(u64::from(decode_varint(input)? as u32)),
            Self::Uint64 => Scalar::Unsigned(decode_varint(input)?),
            Self::Sint32 => {
                let value = decode_varint(input)? as u32;
                Scalar::Signed(i64::from((value >> 1) as i32 ^ -((value & 1) as i32)))
            }
            Self::Sint64 => {
                let value = decode_varint(input)?;
                Scalar::Signed((value >> 1) as i64 ^ -((value & 1) as i64))
            }
            Self::Bool => Scalar::Bool(decode_varint(input)? != 0),
            Self::Enum(_) => Scalar::Enum(decode_varint(input)? as i32),
            Self::Fixed32 => Scalar::Unsigned(u64::from(u32::from_le_bytes(take(input)?))),
            Self::Sfixed32 => Scalar::Signed(i64::from(i32::from_le_bytes(take(input)?))),
            Self::Float => Scalar::Float(f32::from_le_bytes(take(input)?)),
            Self::Fixed64 => Scalar::Unsigned(u64::from_le_bytes(take(input)?)),
            Self::Sfixed64 => Scalar::Signed(i64::from_le_bytes(take(input)?)),
            Self::Double => Scalar::Double(f64::from_le_bytes(take(input)?)),
            Self::String => Scalar::String(
                std::str::from_utf8(length_delimited(input)?).map_err(|_| Unsupported)?,
            ),
            Self::Bytes => Scalar::Bytes(length_delimited(input)?),
            Self::Message(_) => Scalar::Message(length_delimited(input)?),
            Self::Group => return Err(Unsupported),
        })
    }

    /// A value of this kind at its default; `enum_default` for an enum.
    fn default_value(self, enum_default: i32) -> Result<Scalar<'static>, Unsupported> {
        Ok(match self {
            Self::Int32
            | Self::Int64
            | Self::Sint32
            | Self::Sint64
            | Self::Sfixed32
            | Self::Sfixed64 => Scalar::Signed(0),
            Self::Uint32 | Self::Uint64 | Self::Fixed32 | Self::Fixed64 => Scalar::Unsigned(0),
            Self::Float => Scalar::Float(0.0),
            Self::Double => Scalar::Double(0.0),
            Self::Bool => Scalar::Bool(false),
            Self::String => Scalar::String(""),
            Self::Bytes => Scalar::Bytes(&[]),
            Self::Enum(_) => Scalar::Enum(enum_default),
            Self::Message(_) => Scalar::Message(&[]),
            Self::Group => return Err(Unsupported),
        })
    }

    /// Whether proto3 JSON writes this kind as a string even when it is a
    /// number, as it does 64-bit integers.
    fn is_quoted_number(self) -> bool {
        matches!(
            self,
            Self::Int64 | Self::Uint64 | Self::Sint64 | Self::Fixed64 | Self::Sfixed64
        )
    }

    fn is_packable(self) -> bool {
        !matches!(
            self,
            Self::String | Self::Bytes | Self::Message(_) | Self::Group
        )
    }
}

fn take<const N: usize>(input: &mut &[u8]) -> Result<[u8; N], Unsupported> {
    let (head, rest) = input.split_first_chunk::<N>().ok_or(Unsupported)?;
    *input = rest;
    Ok(*head)
}

fn length_delimited<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], Unsupported> {
    let length = usize::try_from(decode_varint(input)?).map_err(|_| Unsupported)?;
    if length > input.len() {
        return Err(Unsupported);
    }
    let (head, rest) = input.split_at(length);
    *input = rest;
    Ok(head)
}

/// Passes over a field this writer does not write.
fn skip(wire: WireType, input: &mut &[u8]) -> Result<(), Unsupported> {
    match wire {
        WireType::Varint => drop(decode_varint(input)?),
        WireType::ThirtyTwoBit => drop(take::<4>(input)?),
        WireType::SixtyFourBit => drop(take::<8>(input)?),
        WireType::LengthDelimited => drop(length_delimited(input)?),
        WireType::StartGroup | WireType::EndGroup => return Err(Unsupported),
    }
    Ok(())
}

/// A map key, ordered as the key type orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum MapKey<'a> {
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    String(&'a str),
}

impl<'a> MapKey<'a> {
    fn of(scalar: Scalar<'a>) -> Result<Self, Unsupported> {
        Ok(match scalar {
            Scalar::Bool(value) => Self::Bool(value),
            Scalar::Signed(value) => Self::Signed(value),
            Scalar::Unsigned(value) => Self::Unsigned(value),
            Scalar::String(value) => Self::String(value),
            _ => return Err(Unsupported),
        })
    }

    /// The key of an entry that leaves it out.
    fn default_of(kind: ValueKind) -> Result<Self, Unsupported> {
        Self::of(kind.default_value(0)?)
    }
}

/// A map entry as read: its key, and its value still on the wire (or
/// absent, for the default).
type Entry<'a> = (MapKey<'a>, Option<(WireType, &'a [u8])>);

/// The repeated field whose records are being read.
enum Run<'l, 'a> {
    List {
        field: &'l FieldLayout,
        /// `"key":[` is out.
        opened: bool,
    },
    Map {
        field: &'l FieldLayout,
        key: ValueKind,
        entries: Vec<Entry<'a>>,
    },
}

impl Run<'_, '_> {
    fn field(&self) -> &FieldLayout {
        match self {
            Self::List { field, .. } | Self::Map { field, .. } => field,
        }
    }
}

/// Separates the members of one JSON object.
struct Members {
    first: bool,
}

impl Members {
    fn key(&mut self, key: &[u8], out: &mut Vec<u8>) {
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        out.extend_from_slice(key);
    }
}

struct Writer<'l> {
    layout: &'l Layout,
    /// Which of a field's `keys`.
    key: usize,
    enum_numbers: bool,
    emit_defaults: bool,
}

impl<'l> Writer<'l> {
    fn message(
        &self,
        index: usize,
        mut input: &[u8],
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        if depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        let message = &self.layout.messages[index];
        if let Some(well_known) = &message.well_known {
            return self.well_known(well_known, input, depth, out);
        }
        let fields = &message.fields;
        out.push(b'{');
        let mut members = Members { first: true };
        // `fields[..next]` are behind: written, or passed over as absent.
        let mut next = 0;
        let mut run: Option<Run> = None;
        let mut oneofs_set: Vec<u32> = Vec::new();
        while !input.is_empty() {
            let (number, wire) = decode_key(&mut input)?;
            if let Some(open) = &mut run {
                if open.field().number == number {
                    self.record(open, wire, &mut input, depth, &mut members, out)?;
                    continue;
                }
                let done = run.take().expect("a run is open");
                self.close(done, depth, &mut members, out)?;
            }
            while next < fields.len() && fields[next].number < number {
                self.absent(&fields[next], &mut members, out)?;
                next += 1;
            }
            match fields.get(next) {
                Some(field) if field.number == number => {
                    next += 1;
                    if let Some(oneof) = field.oneof {
                        // A second member of a oneof replaces the first.
                        if oneofs_set.contains(&oneof) {
                            return Err(Unsupported);
                        }
                        oneofs_set.push(oneof);
                    }
                    let mut open = match field.shape {
                        Shape::Singular { presence } => {
                            let value = field.value.read(wire, &mut input)?;
                            if presence
                                || self.emit_defaults
                                || !value.is_default(self.enum_default(field.value))
                            {
                                members.key(&field.keys[self.key], out);
                                self.value(field.value, value, depth, out)?;
                            }
                            continue;
                        }
                        Shape::List => Run::List {
                            field,
                            opened: false,
                        },
                        Shape::Map { key } => Run::Map {
                            field,
                            key,
                            entries: Vec::new(),
                        },
                    };
                    self.record(&mut open, wire, &mut input, depth, &mut members, out)?;
                    run = Some(open);
                }
                _ if message.extendable
                    || fields
                        .binary_search_by_key(&number, |field| field.number)
                        .is_ok() =>
                {
                    // Out of order, set twice, or an extension.
                    return Err(Unsupported);
                }
                // Unknown fields have no JSON form.
                _ => skip(wire, &mut input)?,
            }
        }
        if let Some(open) = run {
            self.close(open, depth, &mut members, out)?;
        }
        for field in &fields[next..] {
            self.absent(field, &mut members, out)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// One record of a repeated field: an element, a packed run of
    /// elements, or a map entry.
    fn record<'a>(
        &self,
        run: &mut Run<'l, 'a>,
        wire: WireType,
        input: &mut &'a [u8],
        depth: usize,
        members: &mut Members,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        match run {
            Run::List { field, opened } => {
                let kind = field.value;
                let mut next_element = |out: &mut Vec<u8>| {
                    if std::mem::replace(opened, true) {
                        out.push(b',');
                    } else {
                        members.key(&field.keys[self.key], out);
                        out.push(b'[');
                    }
                };
                if wire == WireType::LengthDelimited && kind.is_packable() {
                    let mut packed = length_delimited(input)?;
                    let element = kind.wire_type().ok_or(Unsupported)?;
                    while !packed.is_empty() {
                        let value = kind.read(element, &mut packed)?;
                        next_element(out);
                        self.value(kind, value, depth, out)?;
                    }
                } else {
                    let value = kind.read(wire, input)?;
                    next_element(out);
                    self.value(kind, value, depth, out)?;
                }
            }
            Run::Map {
                field,
                key: key_kind,
                entries,
            } => {
                if wire != WireType::LengthDelimited {
                    return Err(Unsupported);
                }
                let mut entry = length_delimited(input)?;
                let mut key = None;
                let mut value = None;
                while !entry.is_empty() {
                    let (number, wire) = decode_key(&mut entry)?;
                    match number {
                        1 if key.is_none() => {
                            key = Some(MapKey::of(key_kind.read(wire, &mut entry)?)?);
                        }
                        2 if value.is_none() => {
                            let before = entry;
                            field.value.read(wire, &mut entry)?;
                            value = Some((wire, &before[..before.len() - entry.len()]));
                        }
                        1 | 2 => return Err(Unsupported),
                        _ => skip(wire, &mut entry)?,
                    }
                }
                let key = match key {
                    Some(key) => key,
                    None => MapKey::default_of(*key_kind)?,
                };
                entries.push((key, value));
            }
        }
        Ok(())
    }

    /// Ends the run of a repeated field: closes its array, or writes its
    /// map, sorted by key, the last of equal keys winning.
    fn close(
        &self,
        run: Run<'_, '_>,
        depth: usize,
        members: &mut Members,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        match run {
            Run::List { opened: true, .. } => out.push(b']'),
            Run::List { field, .. } => self.absent(field, members, out)?,
            Run::Map { field, entries, .. } if entries.is_empty() => {
                self.absent(field, members, out)?
            }
            Run::Map {
                field, mut entries, ..
            } => {
                sort_last_wins(&mut entries, |replaced| match *replaced {
                    Some((wire, mut raw)) => {
                        let value = field.value.read(wire, &mut raw)?;
                        self.value(field.value, value, depth, &mut Vec::new())
                    }
                    None => Ok(()),
                })?;
                members.key(&field.keys[self.key], out);
                out.push(b'{');
                for (index, (key, value)) in entries.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_map_key(*key, out)?;
                    out.push(b':');
                    match value {
                        &Some((wire, mut raw)) => {
                            let value = field.value.read(wire, &mut raw)?;
                            self.value(field.value, value, depth, out)?;
                        }
                        None => self.default(field.value, depth, out)?,
                    }
                }
                out.push(b'}');
            }
        }
        Ok(())
    }

    /// A field not on the wire: written at its default where the options
    /// ask for defaults and the field has no presence.
    fn absent(
        &self,
        field: &FieldLayout,
        members: &mut Members,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        if !self.emit_defaults {
            return Ok(());
        }
        match field.shape {
            Shape::Singular { presence: true } => {}
            Shape::Singular { presence: false } => {
                members.key(&field.keys[self.key], out);
                self.default(field.value, 0, out)?;
            }
            Shape::List => {
                members.key(&field.keys[self.key], out);
                out.extend_from_slice(b"[]");
            }
            Shape::Map { .. } => {
                members.key(&field.keys[self.key], out);
                out.extend_from_slice(b"{}");
            }
        }
        Ok(())
    }

    /// A value of `kind` at its default.
    fn default(&self, kind: ValueKind, depth: usize, out: &mut Vec<u8>) -> Result<(), Unsupported> {
        let value = kind.default_value(self.enum_default(kind))?;
        self.value(kind, value, depth, out)
    }

    fn enum_default(&self, kind: ValueKind) -> i32 {
        match kind {
            ValueKind::Enum(index) => self.layout.enums[index].default,
            _ => 0,
        }
    }

    fn value(
        &self,
        kind: ValueKind,
        value: Scalar<'_>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        let quoted = kind.is_quoted_number();
        let mut json = serde_json::Serializer::new(&mut *out);
        match value {
            Scalar::Signed(value) if quoted => json.collect_str(&value)?,
            Scalar::Unsigned(value) if quoted => json.collect_str(&value)?,
            Scalar::Signed(value) => json.serialize_i64(value)?,
            Scalar::Unsigned(value) => json.serialize_u64(value)?,
            Scalar::Float(value) => match non_finite(f64::from(value)) {
                Some(text) => json.serialize_str(text)?,
                None => json.serialize_f32(value)?,
            },
            Scalar::Double(value) => match non_finite(value) {
                Some(text) => json.serialize_str(text)?,
                None => json.serialize_f64(value)?,
            },
            Scalar::Bool(value) => json.serialize_bool(value)?,
            Scalar::String(value) => json.serialize_str(value)?,
            Scalar::Bytes(value) => {
                out.push(b'"');
                let start = out.len();
                let length = base64::encoded_len(value.len(), true).ok_or(Unsupported)?;
                out.resize(start + length, 0);
                BASE64
                    .encode_slice(value, &mut out[start..])
                    .map_err(|_| Unsupported)?;
                out.push(b'"');
            }
            Scalar::Enum(number) => {
                let ValueKind::Enum(index) = kind else {
                    return Err(Unsupported);
                };
                let layout = &self.layout.enums[index];
                let named = layout
                    .names
                    .binary_search_by_key(&number, |(number, _)| *number);
                if layout.closed && named.is_err() {
                    // Left out, field or element; the general path knows
                    // which.
                    return Err(Unsupported);
                }
                if layout.null {
                    out.extend_from_slice(b"null");
                } else if self.enum_numbers {
                    json.serialize_i32(number)?;
                } else {
                    match named {
                        Ok(found) => out.extend_from_slice(&layout.names[found].1),
                        Err(_) => json.serialize_i32(number)?,
                    }
                }
            }
            Scalar::Message(bytes) => {
                let ValueKind::Message(index) = kind else {
                    return Err(Unsupported);
                };
                self.message(index, bytes, depth + 1, out)?;
            }
        }
        Ok(())
    }

    fn well_known(
        &self,
        well_known: &WellKnown,
        mut input: &[u8],
        depth: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Unsupported> {
        match well_known {
            WellKnown::Wrapper(kind) => {
                // The last value sent wins, as in any singular field.
                let mut value = None;
                while !input.is_empty() {
                    match decode_key(&mut input)? {
                        (1, wire) => value = Some(kind.read(wire, &mut input)?),
                        (_, wire) => skip(wire, &mut input)?,
                    }
                }
                match value {
                    Some(value) => self.value(*kind, value, depth, out),
                    None => self.default(*kind, depth, out),
                }
            }
            WellKnown::Timestamp => {
                let timestamp = prost_types::Timestamp::decode(input)?;
                if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&timestamp.seconds) {
                    return Err(Unsupported);
                }
                write_display(&timestamp, out)
            }
            WellKnown::Duration => {
                let duration = prost_types::Duration::decode(input)?;
                if duration.seconds.unsigned_abs() > MAX_DURATION_SECONDS
                    || duration.nanos.unsigned_abs() > MAX_DURATION_NANOS
                {
                    return Err(Unsupported);
                }
                write_display(&duration, out)
            }
            WellKnown::Empty => {
                while !input.is_empty() {
                    let (_, wire) = decode_key(&mut input)?;
                    skip(wire, &mut input)?;
                }
                out.extend_from_slice(b"{}");
                Ok(())
            }
            WellKnown::Struct => json_struct(input, depth, out),
            WellKnown::Value => json_value(input, depth, out),
            WellKnown::ListValue => json_list(input, depth, out),
            WellKnown::FieldMask => field_mask(input, out),
            WellKnown::Any => Err(Unsupported),
        }
    }
}

/// A `google.protobuf.FieldMask`: its paths in lowerCamelCase, joined by
/// commas. Only paths of lower-case letters, digits, dots and underscores
/// before a letter, and not empty, are written here; the general path
/// refuses some others and changes the rest in its own way.
fn field_mask(mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Unsupported> {
    out.push(b'"');
    let mut first = true;
    while !input.is_empty() {
        let (number, wire) = decode_key(&mut input)?;
        if number != 1 {
            skip(wire, &mut input)?;
            continue;
        }
        let Scalar::String(path) = ValueKind::String.read(wire, &mut input)? else {
            return Err(Unsupported);
        };
        // The general path writes a comma only after a path that wrote
        // something, so `["", "a"]` is `"a"`: its to write.
        if path.is_empty() {
            return Err(Unsupported);
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        let mut bytes = path.bytes();
        while let Some(byte) = bytes.next() {
            match byte {
                b'_' => match bytes.next() {
                    Some(next @ b'a'..=b'z') => out.push(next.to_ascii_uppercase()),
                    _ => return Err(Unsupported),
                },
                b'a'..=b'z' | b'0'..=b'9' | b'.' => out.push(byte),
                _ => return Err(Unsupported),
            }
        }
    }
    out.push(b'"');
    Ok(())
}

/// A `google.protobuf.Struct`: an object, its keys sorted as the general
/// path's map of them is.
fn json_struct(mut input: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    if depth > MAX_DEPTH {
        return Err(Unsupported);
    }
    let mut entries: Vec<(&str, &[u8])> = Vec::new();
    while !input.is_empty() {
        match decode_key(&mut input)? {
            (1, WireType::LengthDelimited) => {
                let mut entry = length_delimited(&mut input)?;
                let (mut key, mut value) = (None, None);
                while !entry.is_empty() {
                    match decode_key(&mut entry)? {
                        (1, wire) if key.is_none() => {
                            let Scalar::String(text) = ValueKind::String.read(wire, &mut entry)?
                            else {
                                return Err(Unsupported);
                            };
                            key = Some(text);
                        }
                        (2, WireType::LengthDelimited) if value.is_none() => {
                            value = Some(length_delimited(&mut entry)?);
                        }
                        (1 | 2, _) => return Err(Unsupported),
                        (_, wire) => skip(wire, &mut entry)?,
                    }
                }
                entries.push((key.unwrap_or_default(), value.unwrap_or_default()));
            }
            (1, _) => return Err(Unsupported),
            (_, wire) => skip(wire, &mut input)?,
        }
    }
    sort_last_wins(&mut entries, |value| {
        json_value(value, depth + 1, &mut Vec::new())
    })?;
    out.push(b'{');
    for (index, (key, value)) in entries.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        serde_json::Serializer::new(&mut *out).serialize_str(key)?;
        out.push(b':');
        json_value(value, depth + 1, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// A `google.protobuf.Value`: whichever JSON value it holds; `null` when it
/// holds none.
fn json_value(mut input: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    if depth > MAX_DEPTH {
        return Err(Unsupported);
    }
    let mut held: Option<(u32, WireType, &[u8])> = None;
    while !input.is_empty() {
        let (number, wire) = decode_key(&mut input)?;
        if !(1..=6).contains(&number) {
            skip(wire, &mut input)?;
            continue;
        }
        // A second kind replaces the first: the general path's to write.
        if held.is_some() {
            return Err(Unsupported);
        }
        let before = input;
        skip(wire, &mut input)?;
        held = Some((number, wire, &before[..before.len() - input.len()]));
    }
    let Some((number, wire, mut raw)) = held else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    let kind = match number {
        1 => ValueKind::Int32,
        2 => ValueKind::Double,
        3 => ValueKind::String,
        4 => ValueKind::Bool,
        _ => ValueKind::Bytes,
    };
    let mut json = serde_json::Serializer::new(&mut *out);
    match (number, kind.read(wire, &mut raw)?) {
        (1, _) => out.extend_from_slice(b"null"),
        // A number that is not finite has no JSON form here.
        (2, Scalar::Double(value)) if value.is_finite() => json.serialize_f64(value)?,
        (3, Scalar::String(value)) => json.serialize_str(value)?,
        (4, Scalar::Bool(value)) => json.serialize_bool(value)?,
        (5, Scalar::Bytes(value)) => json_struct(value, depth + 1, out)?,
        (6, Scalar::Bytes(value)) => json_list(value, depth + 1, out)?,
        _ => return Err(Unsupported),
    }
    Ok(())
}

/// A `google.protobuf.ListValue`: an array.
fn json_list(mut input: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    if depth > MAX_DEPTH {
        return Err(Unsupported);
    }
    out.push(b'[');
    let mut first = true;
    while !input.is_empty() {
        match decode_key(&mut input)? {
            (1, WireType::LengthDelimited) => {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                json_value(length_delimited(&mut input)?, depth + 1, out)?;
            }
            (1, _) => return Err(Unsupported),
            (_, wire) => skip(wire, &mut input)?,
        }
    }
    out.push(b']');
    Ok(())
}

// The ranges the general path accepts, proto3 JSON's.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

/// Sorts map entries by key and keeps, of equal keys, the one sent last, as
/// decoding into a map does.
///
/// Decoding reads the values it replaces all the same, and refuses the
/// message when one of them is malformed (a message value with a string
/// that is not UTF-8, say), so `check` must accept each value left out
/// here: writing it to a scratch buffer is the check.
fn sort_last_wins<K: Ord, V>(
    entries: &mut Vec<(K, V)>,
    mut check: impl FnMut(&V) -> Result<(), Unsupported>,
) -> Result<(), Unsupported> {
    entries.reverse();
    // Stable: of equal keys, the one sent last is now first, and stays.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut checked = Ok(());
    entries.dedup_by(|replaced, kept| {
        let equal = replaced.0 == kept.0;
        if equal && checked.is_ok() {
            checked = check(&replaced.1);
        }
        equal
    });
    checked
}

fn write_map_key(key: MapKey<'_>, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    let mut json = serde_json::Serializer::new(&mut *out);
    match key {
        MapKey::Bool(value) => json.collect_str(&value)?,
        MapKey::Signed(value) => json.collect_str(&value)?,
        MapKey::Unsigned(value) => json.collect_str(&value)?,
        MapKey::String(value) => json.serialize_str(value)?,
    }
    Ok(())
}

fn write_display(value: &impl std::fmt::Display, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    serde_json::Serializer::new(out).collect_str(value)?;
    Ok(())
}

#[cfg(test)]
mod descriptor_proptests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
