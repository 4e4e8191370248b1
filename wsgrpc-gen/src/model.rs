//! A small model of what the .proto files declare: files, messages, enums,
//! services and methods, built from `FileDescriptorProto`s whatever produced
//! them (protox in build.rs, protoc for the plugin). The renderers read
//! only this model.

use std::collections::HashMap;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    ServiceDescriptorProto, SourceCodeInfo,
};

/// How many messages flow each way in a call.
///
/// The runtime has its own `wsgrpc_runtime::MethodKind`, which the
/// generated tables name by [`name`](Self::name): this crate runs in build
/// scripts and must not pull in the runtime's tokio, axum and tonic. A test
/// holds the two to the same variants for the same streaming flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// A stream of requests and a stream of responses.
    BidiStreaming,
}

impl MethodKind {
    /// The kind of a method whose client and server do or do not stream,
    /// as its descriptor's `client_streaming` and `server_streaming` say.
    pub const fn from_streaming(client_streaming: bool, server_streaming: bool) -> Self {
        match (client_streaming, server_streaming) {
            (false, false) => Self::Unary,
            (false, true) => Self::ServerStreaming,
            (true, false) => Self::ClientStreaming,
            (true, true) => Self::BidiStreaming,
        }
    }

    /// Whether the client may send more than one request message.
    pub const fn client_streams(self) -> bool {
        matches!(self, Self::ClientStreaming | Self::BidiStreaming)
    }

    /// Whether the server may answer with more than one response message.
    pub const fn server_streams(self) -> bool {
        matches!(self, Self::ServerStreaming | Self::BidiStreaming)
    }

    /// The variant's name, as in `wsgrpc_runtime::MethodKind`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unary => "Unary",
            Self::ServerStreaming => "ServerStreaming",
            Self::ClientStreaming => "ClientStreaming",
            Self::BidiStreaming => "BidiStreaming",
        }
    }
}

/// One .proto file to generate code for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct File {
    /// The path protoc knows it by: `example/v1/example.proto`.
    pub name: String,
    /// `example.v1`; empty for files without a package.
    pub package: String,
    /// The proto files this one imports.
    pub dependencies: Vec<String>,
    /// Every message, nested ones included, in declaration order.
    pub messages: Vec<Message>,
    /// Every enum, nested ones included, in declaration order.
    pub enums: Vec<Enum>,
    /// The services, in declaration order.
    pub services: Vec<Service>,
    /// Which rules its fields follow.
    pub syntax: Syntax,
}

/// The `syntax` a file declares; editions are not supported yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syntax {
    /// `syntax = "proto2"`, or none.
    Proto2,
    /// `syntax = "proto3"`.
    Proto3,
}

/// A message, nested or not.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Message {
    /// `example.v1.Outer.Inner`, without the leading dot.
    pub full_name: String,
    /// The names from the file's package down: `["Outer", "Inner"]`.
    pub path: Vec<String>,
    /// The fields, in declaration order.
    pub fields: Vec<Field>,
    /// Real oneofs only; a proto3 `optional` field's synthetic oneof is not one.
    pub oneofs: Vec<Oneof>,
    /// The message's comments.
    pub comments: Comments,
    /// A synthetic `map<K, V>` entry; its map field stands for it.
    pub is_map_entry: bool,
}

/// A oneof: at most one of its fields is set.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Oneof {
    /// Its name in the .proto.
    pub name: String,
    /// Its comments.
    pub comments: Comments,
}

/// A field of a message.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Field {
    /// Its name in the .proto: `snake_case`.
    pub name: String,
    /// lowerCamelCase, as proto3 JSON writes it.
    pub json_name: String,
    /// Its field number.
    pub number: i32,
    /// How many values it holds, and whether presence is tracked.
    pub cardinality: Cardinality,
    /// The type of its values (of a map's, its key and value types are in
    /// [`Cardinality::Map`]).
    pub field_type: FieldType,
    /// Index into the message's [`Message::oneofs`].
    pub oneof: Option<usize>,
    /// Its comments.
    pub comments: Comments,
}

/// How many values a field holds, and whether its presence is tracked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cardinality {
    /// Proto3 implicit presence: the default value is omitted on the wire.
    Singular,
    /// Explicit presence: proto3 `optional`, proto2 `optional`, message fields.
    Optional,
    /// Proto2 `required`.
    Required,
    /// `repeated`: a list.
    Repeated,
    /// `map<key, value>`.
    Map {
        /// The type of the keys.
        key: FieldType,
        /// The type of the values.
        value: FieldType,
    },
}

/// The type of a field's values, as the .proto names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// `double`.
    Double,
    /// `float`.
    Float,
    /// `int32`.
    Int32,
    /// `int64`.
    Int64,
    /// `uint32`.
    Uint32,
    /// `uint64`.
    Uint64,
    /// `sint32`.
    Sint32,
    /// `sint64`.
    Sint64,
    /// `fixed32`.
    Fixed32,
    /// `fixed64`.
    Fixed64,
    /// `sfixed32`.
    Sfixed32,
    /// `sfixed64`.
    Sfixed64,
    /// `bool`.
    Bool,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// A message, by full name without the leading dot.
    Message(String),
    /// An enum, by full name without the leading dot.
    Enum(String),
    /// A proto2 group, by the full name of its message. The Rust output
    /// carries it (prost does); the TypeScript output refuses it.
    Group(String),
}

/// An enum, nested or not.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Enum {
    /// `example.v1.Outer.Mode`, without the leading dot.
    pub full_name: String,
    /// The names from the file's package down: `["Outer", "Mode"]`.
    pub path: Vec<String>,
    /// The values, in declaration order.
    pub values: Vec<EnumValue>,
    /// The enum's comments.
    pub comments: Comments,
}

/// A value of an enum.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnumValue {
    /// Its name in the .proto: `MODE_ON`.
    pub name: String,
    /// Its number.
    pub number: i32,
    /// Its comments.
    pub comments: Comments,
}

/// A service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Service {
    /// `ExampleService`.
    pub name: String,
    /// `example.ExampleService`.
    pub full_name: String,
    /// The methods, in declaration order.
    pub methods: Vec<Method>,
    /// The service's comments.
    pub comments: Comments,
}

/// A method of a service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Method {
    /// `SayHello`.
    pub name: String,
    /// Whether requests, responses or both stream.
    pub kind: MethodKind,
    /// The request type's full name, without the leading dot.
    pub input_type: String,
    /// The response type's full name, without the leading dot.
    pub output_type: String,
    /// The method's comments.
    pub comments: Comments,
}

/// The comments a declaration carries in its .proto file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Comments {
    /// The comment block just above it, if any, as protoc gives it: its
    /// lines end in `\n`, `//` removed but not the space after it.
    pub leading: Vec<String>,
    /// The comment after it on the same line or the next, if any, as
    /// protoc gives it.
    pub trailing: Vec<String>,
}

impl Comments {
    /// The lines of the leading and trailing comments, leading first, with
    /// the one space after `//` removed.
    pub fn lines(&self) -> Vec<&str> {
        let mut lines = Vec::new();
        for block in self.leading.iter().chain(&self.trailing) {
            if !lines.is_empty() {
                lines.push("");
            }
            let block = block.strip_suffix('\n').unwrap_or(block);
            lines.extend(
                block
                    .split('\n')
                    .map(|line| line.strip_prefix(' ').unwrap_or(line)),
            );
        }
        lines
    }

    /// Whether there are no comments at all.
    pub fn is_empty(&self) -> bool {
        self.leading.is_empty() && self.trailing.is_empty()
    }
}

/// Something in the descriptors that the model cannot represent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    /// A file's `syntax` is neither `proto2` nor `proto3` (an edition, say).
    UnsupportedSyntax {
        /// The file.
        file: String,
        /// What it declares.
        syntax: String,
    },
    /// A map field whose entry message lacks its key or its value field.
    MalformedMapEntry {
        /// The file.
        file: String,
        /// The full name of the message holding the map field.
        message: String,
    },
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedSyntax { file, syntax } => write!(
                f,
                "{file}: syntax `{syntax}` is not supported (proto2 and proto3 are)"
            ),
            Self::MalformedMapEntry { file, message } => {
                write!(f, "{file}: malformed map entry in `{message}`")
            }
        }
    }
}

impl std::error::Error for ModelError {}

// Field numbers in descriptor.proto, for source code info paths.
const FILE_MESSAGE: i32 = 4;
const FILE_ENUM: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED: i32 = 3;
const MESSAGE_ENUM: i32 = 4;
const MESSAGE_ONEOF: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

struct CommentIndex<'a>(HashMap<&'a [i32], Comments>);

impl<'a> CommentIndex<'a> {
    fn new(info: Option<&'a SourceCodeInfo>) -> Self {
        let mut map = HashMap::new();
        for location in info.into_iter().flat_map(|info| &info.location) {
            let comments = Comments {
                leading: location.leading_comments.iter().cloned().collect(),
                trailing: location.trailing_comments.iter().cloned().collect(),
            };
            if !comments.is_empty() {
                map.insert(location.path.as_slice(), comments);
            }
        }
        Self(map)
    }

    fn at(&self, path: &[i32]) -> Comments {
        self.0.get(path).cloned().unwrap_or_default()
    }
}

impl File {
    /// The model of one file; the files it imports are modelled on their
    /// own.
    pub fn from_descriptor(file: &FileDescriptorProto) -> Result<Self, ModelError> {
        let name = file.name().to_owned();
        let package = file.package().to_owned();
        let syntax = match file.syntax() {
            "" | "proto2" => Syntax::Proto2,
            "proto3" => Syntax::Proto3,
            other => {
                return Err(ModelError::UnsupportedSyntax {
                    file: name,
                    syntax: other.to_owned(),
                });
            }
        };
        let comments = CommentIndex::new(file.source_code_info.as_ref());
        let mut model = File {
            name,
            package: package.clone(),
            dependencies: file.dependency.clone(),
            messages: Vec::new(),
            enums: Vec::new(),
            services: Vec::new(),
            syntax,
        };
        for (i, message) in file.message_type.iter().enumerate() {
            model.add_message(message, &[], &[FILE_MESSAGE, i as i32], &comments)?;
        }
        for (i, descriptor) in file.enum_type.iter().enumerate() {
            model.add_enum(descriptor, &[], &[FILE_ENUM, i as i32], &comments);
        }
        for (i, service) in file.service.iter().enumerate() {
            let service = model.service(service, &[FILE_SERVICE, i as i32], &comments);
            model.services.push(service);
        }
        Ok(model)
    }

    fn full_name(&self, path: &[String]) -> String {
        let local = path.join(".");
        if self.package.is_empty() {
            local
        } else {
            format!("{}.{local}", self.package)
        }
    }

    fn add_message(
        &mut self,
        message: &DescriptorProto,
        parents: &[String],
        location: &[i32],
        comments: &CommentIndex<'_>,
    ) -> Result<(), ModelError> {
        let mut path = parents.to_vec();
        path.push(message.name().to_owned());
        let full_name = self.full_name(&path);

        // A oneof that holds a proto3 `optional` field is synthetic.
        let synthetic: Vec<bool> = (0..message.oneof_decl.len())
            .map(|index| {
                message
                    .field
                    .iter()
                    .any(|f| f.oneof_index == Some(index as i32) && f.proto3_optional())
            })
            .collect();
        let mut real_index = HashMap::new();
        let mut oneofs = Vec::new();
        for (index, oneof) in message.oneof_decl.iter().enumerate() {
            if !synthetic[index] {
                real_index.insert(index as i32, oneofs.len());
                oneofs.push(Oneof {
                    name: oneof.name().to_owned(),
                    comments: comments.at(&[location, &[MESSAGE_ONEOF, index as i32]].concat()),
                });
            }
        }

        let mut fields = Vec::new();
        for (i, field) in message.field.iter().enumerate() {
            let field_comments = comments.at(&[location, &[MESSAGE_FIELD, i as i32]].concat());
            fields.push(self.field(message, field, &real_index, field_comments, &full_name)?);
        }

        self.messages.push(Message {
            full_name,
            path: path.clone(),
            fields,
            oneofs,
            comments: comments.at(location),
            is_map_entry: message.options.as_ref().is_some_and(|o| o.map_entry()),
        });
        for (i, nested) in message.nested_type.iter().enumerate() {
            self.add_message(
                nested,
                &path,
                &[location, &[MESSAGE_NESTED, i as i32]].concat(),
                comments,
            )?;
        }
        for (i, nested) in message.enum_type.iter().enumerate() {
            self.add_enum(
                nested,
                &path,
                &[location, &[MESSAGE_ENUM, i as i32]].concat(),
                comments,
            );
        }
        Ok(())
    }

    fn field(
        &self,
        message: &DescriptorProto,
        field: &FieldDescriptorProto,
        real_oneofs: &HashMap<i32, usize>,
        comments: Comments,
        message_name: &str,
    ) -> Result<Field, ModelError> {
        let field_type = field_type(field);
        let map_entry = match &field_type {
            FieldType::Message(name) if field.label() == Label::Repeated => {
                message.nested_type.iter().find(|nested| {
                    nested.options.as_ref().is_some_and(|o| o.map_entry())
                        && *name == format!("{message_name}.{}", nested.name())
                })
            }
            _ => None,
        };
        let cardinality = if let Some(entry) = map_entry {
            let key = entry.field.iter().find(|f| f.number() == 1);
            let value = entry.field.iter().find(|f| f.number() == 2);
            match (key.map(self::field_type), value.map(self::field_type)) {
                (Some(key), Some(value)) => Cardinality::Map { key, value },
                _ => {
                    return Err(ModelError::MalformedMapEntry {
                        file: self.name.clone(),
                        message: message_name.to_owned(),
                    });
                }
            }
        } else {
            match field.label() {
                Label::Repeated => Cardinality::Repeated,
                Label::Required => Cardinality::Required,
                Label::Optional if field.proto3_optional() => Cardinality::Optional,
                Label::Optional if self.syntax == Syntax::Proto2 => Cardinality::Optional,
                Label::Optional if matches!(field_type, FieldType::Message(_)) => {
                    Cardinality::Optional
                }
                Label::Optional => Cardinality::Singular,
            }
        };
        let json_name = match &field.json_name {
            Some(json_name) => json_name.clone(),
            None => heck::AsLowerCamelCase(field.name()).to_string(),
        };
        Ok(Field {
            name: field.name().to_owned(),
            json_name,
            number: field.number(),
            cardinality,
            field_type,
            oneof: field
                .oneof_index
                .and_then(|index| real_oneofs.get(&index).copied()),
            comments,
        })
    }

    fn add_enum(
        &mut self,
        descriptor: &EnumDescriptorProto,
        parents: &[String],
        location: &[i32],
        comments: &CommentIndex<'_>,
    ) {
        let mut path = parents.to_vec();
        path.push(descriptor.name().to_owned());
        let values = descriptor
            .value
            .iter()
            .enumerate()
            .map(|(i, value)| EnumValue {
                name: value.name().to_owned(),
                number: value.number(),
                comments: comments.at(&[location, &[ENUM_VALUE, i as i32]].concat()),
            })
            .collect();
        self.enums.push(Enum {
            full_name: self.full_name(&path),
            path,
            values,
            comments: comments.at(location),
        });
    }

    fn service(
        &self,
        service: &ServiceDescriptorProto,
        location: &[i32],
        comments: &CommentIndex<'_>,
    ) -> Service {
        let methods = service
            .method
            .iter()
            .enumerate()
            .map(|(i, method)| Method {
                name: method.name().to_owned(),
                kind: MethodKind::from_streaming(
                    method.client_streaming(),
                    method.server_streaming(),
                ),
                input_type: strip_dot(method.input_type()),
                output_type: strip_dot(method.output_type()),
                comments: comments.at(&[location, &[SERVICE_METHOD, i as i32]].concat()),
            })
            .collect();
        Service {
            name: service.name().to_owned(),
            full_name: self.full_name(&[service.name().to_owned()]),
            methods,
            comments: comments.at(location),
        }
    }
}

/// Whether `name` is one of the well-known types' files
/// (`google/protobuf/*.proto`), which every toolchain ships its own copy of.
pub fn is_well_known_file(name: &str) -> bool {
    name.starts_with("google/protobuf/")
}

fn strip_dot(name: &str) -> String {
    name.strip_prefix('.').unwrap_or(name).to_owned()
}

fn field_type(field: &FieldDescriptorProto) -> FieldType {
    match field.r#type() {
        Type::Double => FieldType::Double,
        Type::Float => FieldType::Float,
        Type::Int64 => FieldType::Int64,
        Type::Uint64 => FieldType::Uint64,
        Type::Int32 => FieldType::Int32,
        Type::Fixed64 => FieldType::Fixed64,
        Type::Fixed32 => FieldType::Fixed32,
        Type::Bool => FieldType::Bool,
        Type::String => FieldType::String,
        Type::Bytes => FieldType::Bytes,
        Type::Uint32 => FieldType::Uint32,
        Type::Sfixed32 => FieldType::Sfixed32,
        Type::Sfixed64 => FieldType::Sfixed64,
        Type::Sint32 => FieldType::Sint32,
        Type::Sint64 => FieldType::Sint64,
        Type::Message => FieldType::Message(strip_dot(field.type_name())),
        Type::Enum => FieldType::Enum(strip_dot(field.type_name())),
        Type::Group => FieldType::Group(strip_dot(field.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(source: &str) -> FileDescriptorProto {
        let set = crate::test_protos::parse(&[("t.proto", source)]);
        set.file
            .into_iter()
            .find(|f| f.name() == "t.proto")
            .unwrap()
    }

    #[test]
    fn models_services_messages_and_comments() {
        let file = File::from_descriptor(&compile(
            r#"
            syntax = "proto3";
            package a.b;
            // Greets,
            // in two lines.
            //
            // And a second paragraph.
            service Greeter {
              // Says hello.
              rpc Hello(Req) returns (stream Res); // and more
              rpc Talk(stream Req) returns (stream Res);
            }
            message Req {
              message Inner { int64 n = 1; }
              optional string name = 1;
              map<string, Inner> items = 2;
              oneof pick { int32 x = 3; string y = 4; }
              enum Mode { MODE_UNSPECIFIED = 0; }
              Mode mode = 5;
              repeated bytes blobs = 6;
              string plain_name = 7;
            }
            message Res {}
            "#,
        ))
        .unwrap();

        let service = &file.services[0];
        assert_eq!(service.full_name, "a.b.Greeter");
        assert_eq!(
            service.comments.lines(),
            ["Greets,", "in two lines.", "", "And a second paragraph."],
            "a comment is a list of lines, blank between paragraphs"
        );
        let hello = &service.methods[0];
        assert_eq!(hello.kind, MethodKind::ServerStreaming);
        assert_eq!(hello.input_type, "a.b.Req");
        assert_eq!(hello.comments.lines(), ["Says hello.", "", "and more"]);
        assert_eq!(service.methods[1].kind, MethodKind::BidiStreaming);

        let names: Vec<_> = file.messages.iter().map(|m| m.full_name.as_str()).collect();
        assert_eq!(
            names,
            ["a.b.Req", "a.b.Req.Inner", "a.b.Req.ItemsEntry", "a.b.Res"]
        );
        assert!(file.messages[2].is_map_entry);
        assert_eq!(file.enums[0].path, ["Req", "Mode"]);

        let req = &file.messages[0];
        let field = |name: &str| req.fields.iter().find(|f| f.name == name).unwrap();
        assert_eq!(field("name").cardinality, Cardinality::Optional);
        assert_eq!(
            field("name").oneof,
            None,
            "proto3 optional is not a real oneof"
        );
        assert_eq!(req.oneofs.len(), 1);
        assert_eq!(field("x").oneof, Some(0));
        assert_eq!(
            field("items").cardinality,
            Cardinality::Map {
                key: FieldType::String,
                value: FieldType::Message("a.b.Req.Inner".into())
            }
        );
        assert_eq!(
            field("mode").field_type,
            FieldType::Enum("a.b.Req.Mode".into())
        );
        assert_eq!(field("blobs").cardinality, Cardinality::Repeated);
        assert_eq!(field("plain_name").json_name, "plainName");
        assert_eq!(field("plain_name").cardinality, Cardinality::Singular);
    }

    #[test]
    fn a_methods_kind_is_where_its_declaration_puts_stream() {
        let file = File::from_descriptor(&compile(
            r#"
            syntax = "proto3";
            service S {
              rpc Unary(M) returns (M);
              rpc Server(M) returns (stream M);
              rpc Client(stream M) returns (M);
              rpc Bidi(stream M) returns (stream M);
            }
            message M {}
            "#,
        ))
        .unwrap();
        let kinds: Vec<(&str, MethodKind, bool, bool)> = file.services[0]
            .methods
            .iter()
            .map(|method| {
                let kind = method.kind;
                (
                    method.name.as_str(),
                    kind,
                    kind.client_streams(),
                    kind.server_streams(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("Unary", MethodKind::Unary, false, false),
                ("Server", MethodKind::ServerStreaming, false, true),
                ("Client", MethodKind::ClientStreaming, true, false),
                ("Bidi", MethodKind::BidiStreaming, true, true),
            ]
        );
    }

    #[test]
    fn a_syntax_other_than_proto2_or_proto3_is_an_error_naming_it() {
        let descriptor = FileDescriptorProto {
            name: Some("e.proto".into()),
            syntax: Some("editions".into()),
            ..FileDescriptorProto::default()
        };
        let err = File::from_descriptor(&descriptor).unwrap_err();
        assert_eq!(
            err,
            ModelError::UnsupportedSyntax {
                file: "e.proto".into(),
                syntax: "editions".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "e.proto: syntax `editions` is not supported (proto2 and proto3 are)"
        );
    }
}
