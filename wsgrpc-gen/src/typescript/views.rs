//! Views of a file for the template: every name and type resolved, so
//! that the template only lays them out.

use std::collections::HashSet;

use heck::ToLowerCamelCase;
use serde::Serialize;

use super::GENERATOR_VERSION;
use super::names::{Symbols, claim, escape, property_name, string_literal};
use super::scope::Scope;
use super::tsdoc::doc_block;
use super::types::field_declaration;
use crate::model::{Cardinality, Enum, Field, File, Message, Method, MethodKind, Service};
use crate::{Error, Options};

/// One `{name}_wsgrpc.ts`, every name and type resolved.
#[derive(Debug, Serialize)]
pub(super) struct FileView {
    /// What the header names: the generator's version, the parameter that
    /// generates this file, and the file and package it is generated from.
    version: &'static str,
    parameter: String,
    source: String,
    package: String,
    /// The `import` of the runtime, where the file needs it.
    runtime_import: Option<String>,
    imports: Vec<ImportView>,
    messages: Vec<MessageView>,
    enums: Vec<EnumView>,
    services: Vec<ServiceView>,
}

#[derive(Debug, Serialize)]
pub(super) struct ImportView {
    /// `Money, Item as rich_common_v1_Item`.
    pub(super) names: String,
    pub(super) path: String,
}

#[derive(Debug, Serialize)]
struct MessageView {
    doc: String,
    name: String,
    /// The fields outside oneofs, in declaration order.
    fields: Vec<FieldView>,
    /// Each oneof as the union of its members, one set or none.
    oneofs: Vec<OneofView>,
}

#[derive(Debug, Serialize)]
struct FieldView {
    doc: String,
    property: String,
    ts_type: String,
    /// Whether the property may be missing: fields with presence. Those
    /// without (proto3 singular, repeated, maps) are always written, as the
    /// client asks the bridge to write defaults.
    optional: bool,
}

#[derive(Debug, Serialize)]
struct OneofView {
    /// One alternative per member, the member set and the others not.
    alternatives: Vec<Vec<MemberView>>,
    /// Every member's property, for the alternative with none set.
    properties: Vec<String>,
}

#[derive(Debug, Serialize)]
struct MemberView {
    /// The set member's doc; empty for the members left out.
    doc: String,
    property: String,
    /// The member's type where it is set; `undefined` otherwise.
    ts_type: String,
    set: bool,
}

#[derive(Debug, Serialize)]
struct EnumView {
    doc: String,
    name: String,
    values: Vec<EnumValueView>,
}

#[derive(Debug, Serialize)]
struct EnumValueView {
    doc: String,
    /// The value's name as an object key.
    key: String,
    /// The value's name as a string literal.
    literal: String,
}

#[derive(Debug, Serialize)]
struct ServiceView {
    doc: String,
    client_doc: String,
    full_name: String,
    descriptor_name: String,
    client_name: String,
    methods: Vec<MethodView>,
}

#[derive(Debug, Serialize)]
struct MethodView {
    doc: String,
    /// The client method: `sayHello`.
    name: String,
    /// As declared: `SayHello`.
    proto_name: String,
    /// `unary`, `serverStreaming`, …: the descriptor's kind and the
    /// transport function's stem.
    kind: &'static str,
    /// The transport function the method calls.
    transport_fn: &'static str,
    /// `request: HelloRequest` or `requests: wsgrpc.StreamInput<…>`.
    parameter: String,
    /// The argument passed on: `request` or `requests`.
    argument: &'static str,
    input_type: String,
    output_type: String,
    return_type: String,
}

impl FileView {
    pub(super) fn new(
        file: &File,
        symbols: &Symbols<'_>,
        options: &Options,
        parameter: &str,
    ) -> Result<Self, Error> {
        let mut scope = Scope::new(file, symbols, options);
        let messages = file
            .messages
            .iter()
            .filter(|message| !message.is_map_entry)
            .map(|message| message_view(message, &mut scope))
            .collect::<Result<Vec<_>, _>>()?;
        let enums = file
            .enums
            .iter()
            .map(|descriptor| enum_view(descriptor, &scope))
            .collect();
        let services = file
            .services
            .iter()
            .map(|service| service_view(service, &mut scope))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            version: GENERATOR_VERSION,
            parameter: parameter.to_owned(),
            source: file.name.clone(),
            package: file.package.clone(),
            runtime_import: scope.runtime_import(),
            imports: scope.imports(),
            messages,
            enums,
            services,
        })
    }
}

fn service_view(service: &Service, scope: &mut Scope<'_, '_>) -> Result<ServiceView, Error> {
    let descriptor_name = claim(escape(&service.name), &mut scope.taken);
    let client_name = claim(escape(&format!("{}Client", service.name)), &mut scope.taken);
    // The client's methods share its class with the constructor.
    let mut method_names = HashSet::from(["constructor".to_owned()]);
    let methods = service
        .methods
        .iter()
        .map(|method| method_view(service, method, &mut method_names, scope))
        .collect::<Result<Vec<_>, _>>()?;
    let declaration = format!("service {}", service.full_name);
    let client_note = format!(
        "A client of `{}`, over a `wsgrpc.Transport` (a `WebSocketGRPCClient`, or a fake in tests).",
        service.full_name
    );
    scope.uses_runtime = true;
    Ok(ServiceView {
        doc: doc_block(&service.comments, &[], &declaration, ""),
        client_doc: doc_block(&service.comments, &[client_note], &declaration, ""),
        full_name: service.full_name.clone(),
        descriptor_name,
        client_name,
        methods,
    })
}

fn method_view(
    service: &Service,
    method: &Method,
    method_names: &mut HashSet<String>,
    scope: &mut Scope<'_, '_>,
) -> Result<MethodView, Error> {
    let input_type = scope.reference(&method.input_type)?;
    let output_type = scope.reference(&method.output_type)?;
    let (kind, transport_fn) = match method.kind {
        MethodKind::Unary => ("unary", "unary"),
        MethodKind::ServerStreaming => ("serverStreaming", "serverStream"),
        MethodKind::ClientStreaming => ("clientStreaming", "clientStream"),
        MethodKind::BidiStreaming => ("bidiStreaming", "bidiStream"),
    };
    let init = format!("wsgrpc.MessageInit<{input_type}>");
    let (parameter, argument) = match method.kind {
        // Without an iterable, the result's `send` gives the requests.
        MethodKind::BidiStreaming => (format!("requests?: wsgrpc.StreamInput<{init}>"), "requests"),
        MethodKind::ClientStreaming => {
            (format!("requests: wsgrpc.StreamInput<{init}>"), "requests")
        }
        MethodKind::Unary | MethodKind::ServerStreaming => (format!("request: {init}"), "request"),
    };
    let return_type = match method.kind {
        MethodKind::Unary | MethodKind::ClientStreaming => {
            format!("wsgrpc.UnaryCall<{output_type}>")
        }
        MethodKind::ServerStreaming => format!("wsgrpc.ServerStream<{output_type}>"),
        MethodKind::BidiStreaming => format!("wsgrpc.BidiStream<{init}, {output_type}>"),
    };
    let declaration = format!("rpc {}.{}", service.full_name, method.name);
    Ok(MethodView {
        doc: doc_block(&method.comments, &[], &declaration, "  "),
        name: claim(method.name.to_lower_camel_case(), method_names),
        proto_name: method.name.clone(),
        kind,
        transport_fn,
        parameter,
        argument,
        input_type,
        output_type,
        return_type,
    })
}

fn message_view(message: &Message, scope: &mut Scope<'_, '_>) -> Result<MessageView, Error> {
    let mut fields = Vec::new();
    for field in message.fields.iter().filter(|field| field.oneof.is_none()) {
        fields.push(FieldView {
            doc: doc_block(
                &field.comments,
                &[],
                &format!("field: {}", field_declaration(field)),
                "  ",
            ),
            property: property_name(&field.json_name),
            ts_type: scope.field_type(field)?,
            optional: has_presence(field),
        });
    }
    let mut oneofs = Vec::new();
    for index in 0..message.oneofs.len() {
        let members: Vec<&Field> = message
            .fields
            .iter()
            .filter(|field| field.oneof == Some(index))
            .collect();
        let mut alternatives = Vec::new();
        for set in &members {
            let mut alternative = Vec::new();
            for member in &members {
                let is_set = std::ptr::eq(*member, *set);
                alternative.push(MemberView {
                    doc: if is_set {
                        doc_block(
                            &member.comments,
                            &oneof_notes(message, member),
                            &format!("field: {}", field_declaration(member)),
                            "      ",
                        )
                    } else {
                        String::new()
                    },
                    property: property_name(&member.json_name),
                    ts_type: if is_set {
                        scope.field_type(member)?
                    } else {
                        "undefined".to_owned()
                    },
                    set: is_set,
                });
            }
            alternatives.push(alternative);
        }
        oneofs.push(OneofView {
            alternatives,
            properties: members
                .iter()
                .map(|member| property_name(&member.json_name))
                .collect(),
        });
    }
    Ok(MessageView {
        doc: doc_block(
            &message.comments,
            &[],
            &format!("message {}", message.full_name),
            "",
        ),
        name: scope.declared_name(&message.full_name),
        fields,
        oneofs,
    })
}

/// Whether a field outside a oneof may be missing from the JSON even
/// when defaults are written: it tracks presence (a message, `optional`,
/// proto2 `required`, which a backend may still leave unset).
fn has_presence(field: &Field) -> bool {
    matches!(
        field.cardinality,
        Cardinality::Optional | Cardinality::Required
    )
}

/// For a member of a oneof, what its doc says of the oneof: its members,
/// then the oneof's own comment.
fn oneof_notes(message: &Message, field: &Field) -> Vec<String> {
    let Some(index) = field.oneof else {
        return Vec::new();
    };
    let oneof = &message.oneofs[index];
    let members: Vec<String> = message
        .fields
        .iter()
        .filter(|other| other.oneof == Some(index))
        .map(|other| format!("`{}`", other.json_name))
        .collect();
    let mut notes = vec![format!(
        "Member of oneof `{}`: set at most one of {}.",
        oneof.name,
        members.join(", ")
    )];
    notes.extend(oneof.comments.lines().iter().map(|line| line.to_string()));
    notes
}

fn enum_view(descriptor: &Enum, scope: &Scope<'_, '_>) -> EnumView {
    let values = descriptor
        .values
        .iter()
        .map(|value| EnumValueView {
            doc: doc_block(
                &value.comments,
                &[],
                &format!("enum value: {} = {};", value.name, value.number),
                "  ",
            ),
            key: property_name(&value.name),
            literal: string_literal(&value.name),
        })
        .collect();
    EnumView {
        doc: doc_block(
            &descriptor.comments,
            &[],
            &format!("enum {}", descriptor.full_name),
            "",
        ),
        name: scope.declared_name(&descriptor.full_name),
        values,
    }
}
