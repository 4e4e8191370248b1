//! Proto types as TypeScript: the proto3 JSON forms of scalars, the
//! well-known types and fields, and each field's proto declaration for its
//! doc comment.

use super::scope::Scope;
use crate::Error;
use crate::model::{Cardinality, Field, FieldType};

/// The TypeScript form of a well-known type, for those with a JSON form of
/// their own; `None` for anything else.
pub(super) fn well_known_type(full_name: &str) -> Option<&'static str> {
    Some(match full_name.strip_prefix("google.protobuf.")? {
        "Timestamp" | "Duration" | "FieldMask" => "string",
        "Struct" => "wsgrpc.JsonObject",
        "Value" => "wsgrpc.JsonValue",
        "ListValue" => "wsgrpc.JsonValue[]",
        "Empty" => "Record<string, never>",
        "Any" => "wsgrpc.AnyJson",
        "DoubleValue" | "FloatValue" => "wsgrpc.JsonFloat",
        "Int32Value" | "UInt32Value" => "number",
        "Int64Value" | "UInt64Value" | "StringValue" | "BytesValue" => "string",
        "BoolValue" => "boolean",
        "NullValue" => "null",
        // Their JSON is that of any message, but no file declares them.
        _ => "wsgrpc.JsonObject",
    })
}

impl Scope<'_, '_> {
    pub(super) fn value_type(&mut self, field_type: &FieldType) -> Result<String, Error> {
        Ok(match field_type {
            FieldType::Double | FieldType::Float => {
                self.uses_runtime = true;
                "wsgrpc.JsonFloat".to_owned()
            }
            FieldType::Int32
            | FieldType::Uint32
            | FieldType::Sint32
            | FieldType::Fixed32
            | FieldType::Sfixed32 => "number".to_owned(),
            FieldType::Int64
            | FieldType::Uint64
            | FieldType::Sint64
            | FieldType::Fixed64
            | FieldType::Sfixed64
            | FieldType::String
            | FieldType::Bytes => "string".to_owned(),
            FieldType::Bool => "boolean".to_owned(),
            FieldType::Message(name) | FieldType::Enum(name) => self.reference(name)?,
            FieldType::Group(name) => {
                return Err(Error::GroupInTypeScript {
                    file: self.file_name().to_owned(),
                    group: name.clone(),
                });
            }
        })
    }

    pub(super) fn field_type(&mut self, field: &Field) -> Result<String, Error> {
        Ok(match &field.cardinality {
            Cardinality::Map { value, .. } => {
                format!("{{ [key: string]: {} }}", self.value_type(value)?)
            }
            Cardinality::Repeated => array_of(&self.value_type(&field.field_type)?),
            Cardinality::Singular | Cardinality::Optional | Cardinality::Required => {
                self.value_type(&field.field_type)?
            }
        })
    }
}

/// `T[]`, parenthesised where `T` would not bind as one type.
fn array_of(element: &str) -> String {
    if element.contains(['|', '&', ' ']) {
        format!("({element})[]")
    } else {
        format!("{element}[]")
    }
}

/// The proto spelling of a field's type, for its `@generated` line.
fn proto_type_name(field_type: &FieldType) -> &str {
    match field_type {
        FieldType::Double => "double",
        FieldType::Float => "float",
        FieldType::Int32 => "int32",
        FieldType::Int64 => "int64",
        FieldType::Uint32 => "uint32",
        FieldType::Uint64 => "uint64",
        FieldType::Sint32 => "sint32",
        FieldType::Sint64 => "sint64",
        FieldType::Fixed32 => "fixed32",
        FieldType::Fixed64 => "fixed64",
        FieldType::Sfixed32 => "sfixed32",
        FieldType::Sfixed64 => "sfixed64",
        FieldType::Bool => "bool",
        FieldType::String => "string",
        FieldType::Bytes => "bytes",
        FieldType::Message(name) | FieldType::Enum(name) | FieldType::Group(name) => name,
    }
}

/// The field as declared: `repeated string ids = 1;`.
pub(super) fn field_declaration(field: &Field) -> String {
    let type_name = proto_type_name(&field.field_type);
    let typed = match &field.cardinality {
        Cardinality::Map { key, value } => {
            format!("map<{}, {}>", proto_type_name(key), proto_type_name(value))
        }
        Cardinality::Repeated => format!("repeated {type_name}"),
        Cardinality::Required => format!("required {type_name}"),
        Cardinality::Optional if !matches!(field.field_type, FieldType::Message(_)) => {
            format!("optional {type_name}")
        }
        Cardinality::Optional | Cardinality::Singular => type_name.to_owned(),
    };
    format!("{typed} {} = {};", field.name, field.number)
}
