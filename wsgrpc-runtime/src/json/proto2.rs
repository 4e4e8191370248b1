//! proto2 in JSON as Google's parsers hold to it, where prost-reflect
//! does not: a closed enum's unknown number is an unknown field (left out
//! of a response, refused in a request), and a request must hold its
//! required fields.

use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Syntax, Value};

/// Takes out what Google's parsers keep as unknown fields, which JSON
/// leaves out: the values of a closed (proto2) enum that the enum does
/// not name. prost-reflect keeps them as numbers, as it does for an open
/// enum. A repeated field loses the element, a map the entry, a singular
/// field its value.
pub(super) fn drop_unknown_closed_enum_values(message: &mut DynamicMessage) {
    let unknown = |kind: &Kind, value: &Value| is_unknown_closed(kind, value).is_some();
    let mut cleared = Vec::new();
    for (field, value) in message.fields_mut() {
        let kind = field.kind();
        match value {
            Value::List(values) => {
                values.retain(|value| !unknown(&kind, value));
                for value in values {
                    if let Value::Message(nested) = value {
                        drop_unknown_closed_enum_values(nested);
                    }
                }
            }
            Value::Map(entries) => {
                let Kind::Message(entry) = &kind else {
                    continue;
                };
                let value_kind = entry.map_entry_value_field().kind();
                entries.retain(|_, value| !unknown(&value_kind, value));
                for value in entries.values_mut() {
                    if let Value::Message(nested) = value {
                        drop_unknown_closed_enum_values(nested);
                    }
                }
            }
            Value::Message(nested) => drop_unknown_closed_enum_values(nested),
            value if unknown(&kind, value) => cleared.push(field),
            _ => {}
        }
    }
    for field in cleared {
        message.clear_field(&field);
    }
}

/// Where `value` is a number that `kind`, a closed (proto2) enum, does
/// not name: the enum's full name.
fn is_unknown_closed<'a>(kind: &'a Kind, value: &Value) -> Option<&'a str> {
    match (kind, value) {
        (Kind::Enum(enumeration), Value::EnumNumber(number))
            if enumeration.parent_file().syntax() == Syntax::Proto2
                && enumeration.get_value(*number).is_none() =>
        {
            Some(enumeration.full_name())
        }
        _ => None,
    }
}

/// Whether a message of type `descriptor` may hold a proto2 message or
/// enum, at any depth: only then does [`refusal`] have anything to
/// find. (The contents of an `Any` are bytes to the walk, as to this.)
pub(crate) fn reaches(descriptor: &MessageDescriptor) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut pending = vec![descriptor.clone()];
    while let Some(message) = pending.pop() {
        if !seen.insert(message.full_name().to_owned()) {
            continue;
        }
        if message.parent_file().syntax() == Syntax::Proto2 {
            return true;
        }
        for field in message.fields() {
            match field.kind() {
                Kind::Message(nested) => pending.push(nested),
                Kind::Enum(enumeration) if enumeration.parent_file().syntax() == Syntax::Proto2 => {
                    return true;
                }
                _ => {}
            }
        }
    }
    false
}

/// What Google's JSON parsers refuse in a request of proto2 types that
/// prost-reflect takes: a required field left out, and a number that a
/// closed enum does not name (a backend's parser would keep it as an
/// unknown field). The field's path (`lines[2].state`) and what is wrong.
pub(super) fn refusal(message: &DynamicMessage, path: String) -> Option<String> {
    let path_of = |field: &prost_reflect::FieldDescriptor| {
        if path.is_empty() {
            field.json_name().to_owned()
        } else {
            format!("{path}.{}", field.json_name())
        }
    };
    if let Some(missing) = prost_reflect::ReflectMessage::descriptor(message)
        .fields()
        .find(|field| {
            field.cardinality() == prost_reflect::Cardinality::Required && !message.has_field(field)
        })
    {
        return Some(format!(
            "field `{}` is required and missing",
            path_of(&missing)
        ));
    }
    let unnamed = |at: String, kind: &Kind, value: &Value| {
        let enumeration = is_unknown_closed(kind, value)?;
        let Value::EnumNumber(number) = value else {
            return None;
        };
        Some(format!(
            "field `{at}`: {number} is not a value of the closed enum {enumeration}"
        ))
    };
    for (field, value) in message.fields() {
        let kind = field.kind();
        let at = path_of(&field);
        let found = match value {
            Value::List(values) => values.iter().enumerate().find_map(|(index, value)| {
                let at = format!("{at}[{index}]");
                match value {
                    Value::Message(nested) => refusal(nested, at),
                    value => unnamed(at, &kind, value),
                }
            }),
            Value::Map(entries) => {
                let Kind::Message(entry) = &kind else {
                    continue;
                };
                let value_kind = entry.map_entry_value_field().kind();
                entries.values().find_map(|value| match value {
                    Value::Message(nested) => refusal(nested, at.clone()),
                    value => unnamed(at.clone(), &value_kind, value),
                })
            }
            Value::Message(nested) => refusal(nested, at),
            value => unnamed(at, &kind, value),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_required_field_is_refused_as_googles_parsers_refuse_it() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/fixtures");
        let pool = protox::Compiler::new([fixtures])
            .and_then(|mut compiler| {
                compiler.open_files(["classic/v1/classic.proto"])?;
                Ok(compiler.descriptor_pool())
            })
            .unwrap();
        let labelled = pool.get_message_by_name("classic.v1.Labelled").unwrap();
        let refusal = |json: &str| {
            super::super::json_to_proto(&labelled, json)
                .unwrap_err()
                .to_string()
        };
        // `Label.text` is required.
        assert!(
            refusal(r#"{"label": {"size": 1}}"#)
                .contains("field `label.text` is required and missing")
        );
        assert!(refusal(r#"{"more": [{"text": "a"}, {}]}"#).contains("`more[1].text`"));
        assert!(
            super::super::json_to_proto(&labelled, r#"{"label": {"text": ""}, "more": []}"#)
                .is_ok()
        );
    }

    #[test]
    fn only_types_that_reach_proto2_are_walked_for_what_proto2_refuses() {
        let global = prost_reflect::DescriptorPool::global();
        let message = |name: &str| global.get_message_by_name(name).unwrap();
        // descriptor.proto is proto2; struct.proto and the wrappers proto3.
        assert!(reaches(&message("google.protobuf.FileDescriptorSet")));
        assert!(!reaches(&message("google.protobuf.Struct")));
        assert!(!reaches(&message("google.protobuf.Int64Value")));
        // proto3, but it holds `SourceContext` (proto3) and `Option`
        // (proto3): no proto2 at any depth.
        assert!(!reaches(&message("google.protobuf.Type")));
    }
}
