//! The TypeScript output: `{name}_wsgrpc.ts` per .proto file and, once per
//! output directory, the transport `wsgrpc_runtime.ts`.
//!
//! Rendering has two steps: a view of each file with every name and type
//! already resolved to TypeScript ([`FileView`]), then one tera template
//! (`wsgrpc-gen/templates/file_wsgrpc.ts.tera`) that only lays it out. Both templates
//! are compiled in, so an installed `protoc-gen-wsgrpc` needs no files
//! beside it.
//!
//! # Types: the proto3 JSON the bridge speaks
//!
//! Each message becomes an `interface` whose properties are the fields'
//! JSON names, all optional (`?:`) since JSON leaves out default values;
//! requests and responses use the same types. The types follow the proto3
//! JSON mapping as the bridge writes and reads it, field by field as
//! docs/PROTOCOL.md ("Payloads") lists it: 64-bit integers as `string`,
//! `float`, `double` and their wrappers as `wsgrpc.JsonFloat` (`number |
//! "NaN" | "Infinity" | "-Infinity"`), enums as the union of their value
//! names, maps as objects keyed by strings, oneof members side by side,
//! the well-known types in their JSON forms (`Any` as `wsgrpc.AnyJson`,
//! with its `"@type"`), other `google.protobuf` messages as
//! `wsgrpc.JsonObject`.
//!
//! No file is written for `google/protobuf/*.proto`: the well-known types
//! are written inline or come from `wsgrpc_runtime.ts`.
//!
//! # Names
//!
//! - Messages and enums: their names from the package down joined by `_`
//!   (`Order.Line` → `Order_Line`); map entries are not emitted.
//! - A service `Shop` gives the class `ShopClient` and the descriptor
//!   constant `Shop`; methods are lowerCamelCase (`GetOrder` → `getOrder`).
//! - A name that is a JavaScript or TypeScript reserved word, a built-in
//!   type, or a global the generated code or its users rely on (see
//!   `RESERVED_NAMES`) gets a `$` suffix: `Object` → `Object$`. So does a
//!   name already taken in its file (an `Outer_Inner` beside
//!   `Outer.Inner`, a message `ShopClient` beside service `Shop`), in
//!   declaration order; a method named `constructor` becomes `constructor$`.
//! - A type from another file is imported under its own name, or, where
//!   that is taken, prefixed with its package: `rich_common_v1_Item`.
//! - Properties are the JSON names, quoted where they are not identifiers.

use std::collections::{BTreeMap, HashMap, HashSet};

use heck::ToLowerCamelCase;
use serde::Serialize;

use crate::model::{Cardinality, Comments, Enum, Field, FieldType, File, Message, MethodKind};
use crate::names::unique_name;
use crate::{Error, GeneratedFile, Language, Options};

/// The transport every generated file imports, at the output's root.
pub const RUNTIME_FILE: &str = "wsgrpc_runtime.ts";

const RUNTIME_SOURCE: &str = include_str!("../templates/wsgrpc_runtime.ts");
const FILE_TEMPLATE: &str = include_str!("../templates/file_wsgrpc.ts.tera");

/// The version the headers name.
const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the generated files import `wsgrpc_runtime.ts` as (reserved).
const RUNTIME_NAMESPACE: &str = "wsgrpc";

/// Names a generated declaration must not take, whitespace-separated: such
/// a name gets a `$` suffix. Reserved words (strict mode's included),
/// words TypeScript gives a meaning in types and declarations, globals
/// that generated code or its users refer to, and the namespace generated
/// files import the runtime as.
const RESERVED_NAMES: &str = "
    await break case catch class const continue debugger default delete do else enum
    export extends false finally for function if implements import in instanceof
    interface let new null package private protected public return static super switch
    this throw true try typeof var void while with yield

    abstract accessor any as asserts async bigint boolean constructor declare from get
    global infer intrinsic is keyof module namespace never number object of out override
    readonly require satisfies set string symbol type undefined unique unknown

    arguments eval globalThis Infinity NaN Object Function Array ReadonlyArray String
    Number Boolean Symbol BigInt Error Date RegExp Map Set WeakMap WeakSet WeakRef JSON
    Math Reflect Proxy Intl Promise PromiseLike Awaited Record Partial Required Readonly
    Pick Omit Exclude Extract NonNullable Parameters ReturnType InstanceType Iterable
    Iterator IterableIterator IteratorResult AsyncIterable AsyncIterator
    AsyncIterableIterator Generator AsyncGenerator ArrayBuffer SharedArrayBuffer DataView
    Int8Array Uint8Array Uint8ClampedArray Int16Array Uint16Array Int32Array Uint32Array
    Float32Array Float64Array BigInt64Array BigUint64Array AbortSignal AbortController
    WebSocket console setTimeout clearTimeout

    wsgrpc
";

/// Renders `to_generate` (and the runtime) from the model of every file.
pub(crate) fn render(
    files: &[File],
    to_generate: &[&str],
    options: &Options,
) -> Result<Vec<GeneratedFile>, Error> {
    let symbols = Symbols::new(files);
    let parameter = options.only(Language::TypeScript).to_string();
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    tera.add_raw_template("file_wsgrpc.ts", FILE_TEMPLATE)
        .map_err(|err| Error::Generate(format!("the TypeScript template: {err:?}")))?;

    let mut out = Vec::new();
    for &name in to_generate {
        let file = files
            .iter()
            .find(|file| file.name == name)
            .ok_or_else(|| Error::Generate(format!("no descriptor for `{name}`")))?;
        let view = FileView::new(file, &symbols, options, &parameter)?;
        let context = tera::Context::from_serialize(&view)
            .map_err(|err| Error::Generate(format!("{name}: {err}")))?;
        let content = tera
            .render("file_wsgrpc.ts", &context)
            .map_err(|err| Error::Generate(format!("{name}: rendering TypeScript: {err:?}")))?;
        out.push(GeneratedFile {
            name: output_name(name),
            content,
            language: Language::TypeScript,
        });
    }
    out.push(GeneratedFile {
        name: RUNTIME_FILE.to_owned(),
        content: format!(
            "// @generated by wsgrpc-gen v{GENERATOR_VERSION}: the wsgrpc transport, the same in every output. DO NOT EDIT.\n\n{RUNTIME_SOURCE}"
        ),
        language: Language::TypeScript,
    });
    Ok(out)
}

/// `dir/name.proto` → `dir/name_wsgrpc.ts`.
fn output_name(proto: &str) -> String {
    format!(
        "{}_wsgrpc.ts",
        proto.strip_suffix(".proto").unwrap_or(proto)
    )
}

/// `name`, with `$` appended when it is reserved.
fn escape(name: &str) -> String {
    if RESERVED_NAMES
        .split_ascii_whitespace()
        .any(|reserved| reserved == name)
    {
        format!("{name}$")
    } else {
        name.to_owned()
    }
}

/// `name`, with `$` appended until `taken` does not hold it; then taken.
fn claim(name: String, taken: &mut HashSet<String>) -> String {
    unique_name(name, '$', taken)
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// A property name: as is where it is an identifier, else quoted.
fn property_name(json_name: &str) -> String {
    if is_identifier(json_name) {
        json_name.to_owned()
    } else {
        string_literal(json_name)
    }
}

fn string_literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// The TypeScript form of a well-known type, for those with a JSON form of
/// their own; `None` for anything else.
fn well_known_type(full_name: &str) -> Option<&'static str> {
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

/// Where each message and enum is declared, and its exported name.
struct Symbols<'a> {
    by_full_name: HashMap<&'a str, Symbol<'a>>,
}

struct Symbol<'a> {
    file: &'a File,
    name: String,
}

impl<'a> Symbols<'a> {
    fn new(files: &'a [File]) -> Self {
        let mut by_full_name = HashMap::new();
        for file in files {
            let mut taken = HashSet::new();
            let messages = file.messages.iter().filter(|m| !m.is_map_entry);
            let declared = messages
                .map(|m| (&m.full_name, &m.path))
                .chain(file.enums.iter().map(|e| (&e.full_name, &e.path)));
            for (full_name, path) in declared {
                let name = claim(escape(&path.join("_")), &mut taken);
                by_full_name.insert(full_name.as_str(), Symbol { file, name });
            }
        }
        Self { by_full_name }
    }

    fn get(&self, full_name: &str) -> Option<&Symbol<'a>> {
        self.by_full_name.get(full_name)
    }
}

/// The names one output file declares and imports, and what it imports.
struct Scope<'s, 'a> {
    file: &'a File,
    symbols: &'s Symbols<'a>,
    options: &'s Options,
    /// Every top-level name in the file, imports included.
    taken: HashSet<String>,
    /// Imported types: file → exported name → local name.
    imports: BTreeMap<String, BTreeMap<String, String>>,
    uses_runtime: bool,
}

impl<'s, 'a> Scope<'s, 'a> {
    /// The TypeScript type that a message or enum is referred to by here,
    /// importing it when it is declared elsewhere.
    fn reference(&mut self, full_name: &str) -> Result<String, Error> {
        if full_name.starts_with("google.protobuf.") {
            let ts = well_known_type(full_name).expect("a google.protobuf type");
            self.uses_runtime |= ts.contains("wsgrpc.");
            return Ok(ts.to_owned());
        }
        let symbol = self.symbols.get(full_name).ok_or_else(|| {
            Error::Generate(format!(
                "{}: type `{full_name}` is not declared in any file given",
                self.file.name
            ))
        })?;
        if std::ptr::eq(symbol.file, self.file) {
            return Ok(symbol.name.clone());
        }
        let path = self.import_path(&output_name(&symbol.file.name));
        if let Some(local) = self
            .imports
            .get(&path)
            .and_then(|names| names.get(&symbol.name))
        {
            return Ok(local.clone());
        }
        let local = if self.taken.contains(&symbol.name) {
            let prefix = symbol.file.package.replace('.', "_");
            let qualified = if prefix.is_empty() {
                symbol.name.clone()
            } else {
                format!("{prefix}_{}", symbol.name)
            };
            claim(qualified, &mut self.taken)
        } else {
            claim(symbol.name.clone(), &mut self.taken)
        };
        self.imports
            .entry(path)
            .or_default()
            .insert(symbol.name.clone(), local.clone());
        Ok(local)
    }

    /// The relative import path of `target` (an output file name) from this
    /// file's output.
    fn import_path(&self, target: &str) -> String {
        let from = output_name(&self.file.name);
        let from_dirs: Vec<&str> = from.split('/').collect();
        let from_dirs = &from_dirs[..from_dirs.len() - 1];
        let target_parts: Vec<&str> = target.split('/').collect();
        let common = from_dirs
            .iter()
            .zip(&target_parts[..target_parts.len() - 1])
            .take_while(|(a, b)| a == b)
            .count();
        let mut path = if common == from_dirs.len() {
            "./".to_owned()
        } else {
            "../".repeat(from_dirs.len() - common)
        };
        path.push_str(&target_parts[common..].join("/"));
        let stem = path.strip_suffix(".ts").unwrap_or(&path);
        format!("{stem}{}", self.options.import_extension())
    }

    fn value_type(&mut self, field_type: &FieldType) -> Result<String, Error> {
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
        })
    }

    fn field_type(&mut self, field: &Field) -> Result<String, Error> {
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
        FieldType::Message(name) | FieldType::Enum(name) => name,
    }
}

/// The field as declared: `repeated string ids = 1;`.
fn field_declaration(field: &Field) -> String {
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

/// A TSDoc block: the comments, then `extra` paragraphs, then the proto
/// declaration, each line indented by `indent`.
fn doc_block(comments: &Comments, extra: &[String], declaration: &str, indent: &str) -> String {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    let lines = comments.lines();
    if !lines.is_empty() {
        paragraphs.push(lines.iter().map(|line| (*line).to_owned()).collect());
    }
    paragraphs.extend(extra.iter().map(|text| vec![text.clone()]));
    paragraphs.push(vec![format!("@generated from {declaration}")]);

    let mut out = format!("{indent}/**\n");
    for (i, paragraph) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push_str(indent);
            out.push_str(" *\n");
        }
        for line in paragraph {
            // A comment must not close the block it is in.
            let line = line.replace("*/", "*\\/");
            let line = line.trim_end();
            out.push_str(indent);
            out.push_str(" *");
            if !line.is_empty() {
                out.push(' ');
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out.push_str(indent);
    out.push_str(" */");
    out
}

/// One `{name}_wsgrpc.ts`, every name and type resolved.
#[derive(Debug, Serialize)]
struct FileView {
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
struct ImportView {
    /// `Money, Item as rich_common_v1_Item`.
    names: String,
    path: String,
}

#[derive(Debug, Serialize)]
struct MessageView {
    doc: String,
    name: String,
    fields: Vec<FieldView>,
}

#[derive(Debug, Serialize)]
struct FieldView {
    doc: String,
    property: String,
    ts_type: String,
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
    /// What the client sends: `example.ExampleService/SayHello`.
    path: String,
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
    fn new(
        file: &File,
        symbols: &Symbols<'_>,
        options: &Options,
        parameter: &str,
    ) -> Result<Self, Error> {
        let declared = file
            .messages
            .iter()
            .filter(|m| !m.is_map_entry)
            .map(|m| &m.full_name)
            .chain(file.enums.iter().map(|e| &e.full_name));
        let taken: HashSet<String> = declared
            .map(|full_name| symbols.get(full_name).expect("declared").name.clone())
            .collect();
        let mut scope = Scope {
            file,
            symbols,
            options,
            taken,
            imports: BTreeMap::new(),
            uses_runtime: false,
        };

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
        let mut services = Vec::new();
        for service in &file.services {
            let descriptor_name = claim(escape(&service.name), &mut scope.taken);
            let client_name = claim(escape(&format!("{}Client", service.name)), &mut scope.taken);
            let mut method_names = HashSet::from(["constructor".to_owned()]);
            let mut methods = Vec::new();
            for method in &service.methods {
                let input_type = scope.reference(&method.input_type)?;
                let output_type = scope.reference(&method.output_type)?;
                let (kind, transport_fn) = match method.kind {
                    MethodKind::Unary => ("unary", "unary"),
                    MethodKind::ServerStreaming => ("serverStreaming", "serverStream"),
                    MethodKind::ClientStreaming => ("clientStreaming", "clientStream"),
                    MethodKind::BidiStreaming => ("bidiStreaming", "bidiStream"),
                };
                let (parameter, argument) = match method.kind {
                    MethodKind::Unary | MethodKind::ServerStreaming => {
                        (format!("request: {input_type}"), "request")
                    }
                    MethodKind::ClientStreaming | MethodKind::BidiStreaming => (
                        format!("requests: wsgrpc.StreamInput<{input_type}>"),
                        "requests",
                    ),
                };
                let return_type = match method.kind {
                    MethodKind::Unary | MethodKind::ClientStreaming => {
                        format!("Promise<{output_type}>")
                    }
                    MethodKind::ServerStreaming | MethodKind::BidiStreaming => {
                        format!("AsyncIterable<{output_type}>")
                    }
                };
                let declaration = format!("rpc {}.{}", service.full_name, method.name);
                methods.push(MethodView {
                    doc: doc_block(&method.comments, &[], &declaration, "  "),
                    name: claim(method.name.to_lower_camel_case(), &mut method_names),
                    proto_name: method.name.clone(),
                    path: format!("{}/{}", service.full_name, method.name),
                    kind,
                    transport_fn,
                    parameter,
                    argument,
                    input_type,
                    output_type,
                    return_type,
                });
            }
            let declaration = format!("service {}", service.full_name);
            let client_note = format!(
                "A client of `{}`, over a `wsgrpc.WebSocketGRPCClient`.",
                service.full_name
            );
            services.push(ServiceView {
                doc: doc_block(&service.comments, &[], &declaration, ""),
                client_doc: doc_block(&service.comments, &[client_note], &declaration, ""),
                full_name: service.full_name.clone(),
                descriptor_name,
                client_name,
                methods,
            });
            scope.uses_runtime = true;
        }

        let runtime_path = scope.import_path(RUNTIME_FILE);
        let runtime_import = if !file.services.is_empty() {
            Some(format!(
                "import * as {RUNTIME_NAMESPACE} from \"{runtime_path}\";"
            ))
        } else if scope.uses_runtime {
            Some(format!(
                "import type * as {RUNTIME_NAMESPACE} from \"{runtime_path}\";"
            ))
        } else {
            None
        };
        let imports = scope
            .imports
            .iter()
            .map(|(path, names)| ImportView {
                path: path.clone(),
                names: names
                    .iter()
                    .map(|(exported, local)| {
                        if exported == local {
                            exported.clone()
                        } else {
                            format!("{exported} as {local}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect();
        Ok(Self {
            version: GENERATOR_VERSION,
            parameter: parameter.to_owned(),
            source: file.name.clone(),
            package: file.package.clone(),
            runtime_import,
            imports,
            messages,
            enums,
            services,
        })
    }
}

fn message_view(message: &Message, scope: &mut Scope<'_, '_>) -> Result<MessageView, Error> {
    let mut fields = Vec::new();
    for field in &message.fields {
        let mut notes = Vec::new();
        if let Some(index) = field.oneof {
            let oneof = &message.oneofs[index];
            let members: Vec<String> = message
                .fields
                .iter()
                .filter(|other| other.oneof == Some(index))
                .map(|other| format!("`{}`", other.json_name))
                .collect();
            notes.push(format!(
                "Member of oneof `{}`: set at most one of {}.",
                oneof.name,
                members.join(", ")
            ));
            notes.extend(oneof.comments.lines().iter().map(|line| line.to_string()));
        }
        fields.push(FieldView {
            doc: doc_block(
                &field.comments,
                &notes,
                &format!("field: {}", field_declaration(field)),
                "  ",
            ),
            property: property_name(&field.json_name),
            ts_type: scope.field_type(field)?,
        });
    }
    Ok(MessageView {
        doc: doc_block(
            &message.comments,
            &[],
            &format!("message {}", message.full_name),
            "",
        ),
        name: scope
            .symbols
            .get(&message.full_name)
            .expect("declared")
            .name
            .clone(),
        fields,
    })
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
        name: scope
            .symbols
            .get(&descriptor.full_name)
            .expect("declared")
            .name
            .clone(),
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generates TypeScript for `sources` (name, text), the first being the
    /// file to generate; returns its output.
    fn generate(sources: &[(&str, &str)], options: Options) -> Vec<GeneratedFile> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in sources {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut compiler = protox::Compiler::new([dir.path()]).unwrap();
        compiler.include_imports(true).include_source_info(true);
        compiler.open_file(sources[0].0).unwrap();
        let set = compiler.file_descriptor_set();
        crate::generate(
            &set.file,
            &[sources[0].0.to_owned()],
            &options.only(Language::TypeScript),
            None,
        )
        .unwrap()
    }

    fn generate_one(source: &str) -> String {
        let files = generate(&[("t.proto", source)], Options::default());
        let file = files.iter().find(|f| f.name == "t_wsgrpc.ts").unwrap();
        file.content.clone()
    }

    fn assert_contains(haystack: &str, needle: &str) {
        assert!(
            haystack.contains(needle),
            "expected to find\n{needle}\nin\n{haystack}"
        );
    }

    #[test]
    fn names_files_and_writes_the_runtime_once() {
        let files = generate(
            &[(
                "a/b/c.proto",
                "syntax = \"proto3\"; package a.b; message M {}",
            )],
            Options::default(),
        );
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a/b/c_wsgrpc.ts", "wsgrpc_runtime.ts"]);
        assert!(
            files[0]
                .content
                .starts_with(&format!(
                    "// @generated by wsgrpc-gen v{GENERATOR_VERSION} with parameter \"typescript,import_extension=.js\"\n\
                     // @generated from file a/b/c.proto (package a.b). DO NOT EDIT.\n"
                ))
        );
        assert!(
            files[1]
                .content
                .contains("export class WebSocketGRPCClient")
        );
    }

    #[test]
    fn maps_scalars_to_their_json_forms() {
        let ts = generate_one(
            r#"syntax = "proto3";
            message S {
              double d = 1; float f = 2; int32 i32 = 3; uint32 u32 = 4; sint32 s32 = 5;
              fixed32 f32 = 6; sfixed32 sf32 = 7; int64 i64 = 8; uint64 u64 = 9;
              sint64 s64 = 10; fixed64 f64 = 11; sfixed64 sf64 = 12; bool b = 13;
              string s = 14; bytes by = 15; repeated int64 many = 16;
              map<int64, bytes> by_number = 17; optional string maybe = 18;
              string snake_case_name = 19;
            }"#,
        );
        for line in [
            "d?: wsgrpc.JsonFloat;",
            "f?: wsgrpc.JsonFloat;",
            "i32?: number;",
            "u32?: number;",
            "s32?: number;",
            "f32?: number;",
            "sf32?: number;",
            "i64?: string;",
            "u64?: string;",
            "s64?: string;",
            "f64?: string;",
            "sf64?: string;",
            "b?: boolean;",
            "s?: string;",
            "by?: string;",
            "many?: string[];",
            "byNumber?: { [key: string]: string };",
            "maybe?: string;",
            "snakeCaseName?: string;",
        ] {
            assert_contains(&ts, &format!("  {line}\n"));
        }
        assert_contains(
            &ts,
            "@generated from field: map<int64, bytes> by_number = 17;",
        );
        assert_contains(&ts, "@generated from field: optional string maybe = 18;");
        assert!(!ts.contains("ByNumberEntry"), "map entries are not emitted");
    }

    #[test]
    fn maps_well_known_types_to_their_json_forms() {
        let ts = generate_one(
            r#"syntax = "proto3";
            import "google/protobuf/any.proto";
            import "google/protobuf/duration.proto";
            import "google/protobuf/empty.proto";
            import "google/protobuf/field_mask.proto";
            import "google/protobuf/struct.proto";
            import "google/protobuf/timestamp.proto";
            import "google/protobuf/wrappers.proto";
            message W {
              google.protobuf.Timestamp at = 1;
              google.protobuf.Duration ttl = 2;
              google.protobuf.Struct attrs = 3;
              google.protobuf.Value value = 4;
              google.protobuf.ListValue list = 5;
              google.protobuf.Empty nothing = 6;
              google.protobuf.FieldMask mask = 7;
              google.protobuf.Any any = 8;
              google.protobuf.Int64Value big = 9;
              google.protobuf.UInt32Value small = 10;
              google.protobuf.BoolValue flag = 11;
              google.protobuf.BytesValue blob = 12;
              google.protobuf.NullValue none = 13;
              repeated google.protobuf.Value values = 14;
            }"#,
        );
        for line in [
            "at?: string;",
            "ttl?: string;",
            "attrs?: wsgrpc.JsonObject;",
            "value?: wsgrpc.JsonValue;",
            "list?: wsgrpc.JsonValue[];",
            "nothing?: Record<string, never>;",
            "mask?: string;",
            "any?: wsgrpc.AnyJson;",
            "big?: string;",
            "small?: number;",
            "flag?: boolean;",
            "blob?: string;",
            "none?: null;",
            "values?: wsgrpc.JsonValue[];",
        ] {
            assert_contains(&ts, &format!("  {line}\n"));
        }
        assert_contains(&ts, "import type * as wsgrpc from \"./wsgrpc_runtime.js\";");
        assert!(!ts.contains("google/protobuf"), "no imports of WKT files");
    }

    #[test]
    fn names_nested_types_and_escapes_reserved_names() {
        let ts = generate_one(
            r#"syntax = "proto3";
            package p;
            message Outer {
              message Inner { string x = 1; }
              enum Mode { MODE_UNSPECIFIED = 0; MODE_ON = 1; }
              Inner inner = 1;
              Mode mode = 2;
            }
            message Outer_Inner {}
            message Object { Array items = 1; }
            message Array {}
            message Promise {}
            message Record {}
            enum string { STRING_UNSPECIFIED = 0; }
            message wsgrpc {}
            service Object2 { rpc constructor(Object) returns (Promise); }
            message Object2Client {}
            "#,
        );
        for declaration in [
            "export interface Outer {",
            "export interface Outer_Inner {",
            "export type Outer_Mode = (typeof Outer_Mode)[keyof typeof Outer_Mode];",
            "export type Outer_Inner$ = Record<string, never>;",
            "export interface Object$ {",
            "export type Array$ = Record<string, never>;",
            "export type Promise$ = Record<string, never>;",
            "export type Record$ = Record<string, never>;",
            "export const string$ = {",
            "export type wsgrpc$ = Record<string, never>;",
            "export const Object2 = {",
            "export class Object2Client$ {",
        ] {
            assert_contains(&ts, declaration);
        }
        assert_contains(&ts, "  inner?: Outer_Inner;\n");
        assert_contains(&ts, "  mode?: Outer_Mode;\n");
        assert_contains(&ts, "  items?: Array$;\n");
        assert_contains(
            &ts,
            "  constructor$(request: Object$, options?: wsgrpc.CallOptions): Promise<Promise$> {",
        );
    }

    #[test]
    fn documents_oneofs_and_comments() {
        let ts = generate_one(
            r#"syntax = "proto3";
            package p;
            // A thing.
            // Two lines; one with */ in it.
            message Thing {
              // How it is paid.
              oneof payment {
                string card = 1; // The card.
                bytes voucher = 2;
              }
            }"#,
        );
        assert_contains(
            &ts,
            "/**\n * A thing.\n * Two lines; one with *\\/ in it.\n *\n * @generated from message p.Thing\n */\nexport interface Thing {",
        );
        assert_contains(
            &ts,
            "  /**\n   * The card.\n   *\n   * Member of oneof `payment`: set at most one of `card`, `voucher`.\n   *\n   * How it is paid.\n   *\n   * @generated from field: string card = 1;\n   */\n  card?: string;",
        );
    }

    #[test]
    fn imports_other_files_by_relative_path_and_aliases_clashes() {
        let files = generate(
            &[
                (
                    "shop/v1/shop.proto",
                    r#"syntax = "proto3"; package shop.v1;
                    import "common/v1/common.proto";
                    message Item { common.v1.Item common = 1; common.v1.Money price = 2; }
                    service Shop { rpc Buy(common.v1.Item) returns (Item); }"#,
                ),
                (
                    "common/v1/common.proto",
                    r#"syntax = "proto3"; package common.v1;
                    message Item { string sku = 1; }
                    message Money { int64 units = 1; }"#,
                ),
            ],
            "import_extension=none".parse().unwrap(),
        );
        let ts = &files
            .iter()
            .find(|f| f.name == "shop/v1/shop_wsgrpc.ts")
            .unwrap()
            .content;
        assert_contains(ts, "import * as wsgrpc from \"../../wsgrpc_runtime\";\n");
        assert_contains(
            ts,
            "import type { Item as common_v1_Item, Money } from \"../../common/v1/common_wsgrpc\";\n",
        );
        assert_contains(ts, "  common?: common_v1_Item;\n");
        assert_contains(ts, "  price?: Money;\n");
        assert_contains(
            ts,
            "  buy(request: common_v1_Item, options?: wsgrpc.CallOptions): Promise<Item> {\n    return this.#transport.unary<common_v1_Item, Item>(\"shop.v1.Shop/Buy\", request, options);",
        );
    }

    #[test]
    fn renders_each_method_kind() {
        let ts = generate_one(
            r#"syntax = "proto3";
            package p;
            service S {
              rpc U(M) returns (M);
              rpc Ss(M) returns (stream M);
              rpc Cs(stream M) returns (M);
              rpc Bidi(stream M) returns (stream M);
            }
            message M {}"#,
        );
        for line in [
            "  u(request: M, options?: wsgrpc.CallOptions): Promise<M> {\n    return this.#transport.unary<M, M>(\"p.S/U\", request, options);",
            "  ss(request: M, options?: wsgrpc.CallOptions): AsyncIterable<M> {\n    return this.#transport.serverStream<M, M>(\"p.S/Ss\", request, options);",
            "  cs(requests: wsgrpc.StreamInput<M>, options?: wsgrpc.CallOptions): Promise<M> {\n    return this.#transport.clientStream<M, M>(\"p.S/Cs\", requests, options);",
            "  bidi(requests: wsgrpc.StreamInput<M>, options?: wsgrpc.CallOptions): AsyncIterable<M> {\n    return this.#transport.bidiStream<M, M>(\"p.S/Bidi\", requests, options);",
            "    bidi: { name: \"Bidi\", path: \"p.S/Bidi\", kind: \"bidiStreaming\" },",
        ] {
            assert_contains(&ts, line);
        }
    }

    #[test]
    fn quotes_properties_that_are_not_identifiers() {
        assert_eq!(property_name("fooBar"), "fooBar");
        assert_eq!(property_name("$ok_1"), "$ok_1");
        assert_eq!(property_name("foo-bar"), "\"foo-bar\"");
        assert_eq!(property_name("1st"), "\"1st\"");
        assert_eq!(escape("Promise"), "Promise$");
        assert_eq!(escape("Order"), "Order");
    }

    #[test]
    fn writes_no_file_for_well_known_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.proto"),
            "syntax = \"proto3\"; import \"google/protobuf/empty.proto\"; message M {}",
        )
        .unwrap();
        let mut compiler = protox::Compiler::new([dir.path()]).unwrap();
        compiler.include_imports(true);
        compiler.open_file("t.proto").unwrap();
        let set = compiler.file_descriptor_set();
        let names: Vec<String> = set.file.iter().map(|f| f.name().to_owned()).collect();
        let files = crate::generate(
            &set.file,
            &names,
            &Options::default().only(Language::TypeScript),
            None,
        )
        .unwrap();
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["t_wsgrpc.ts", "wsgrpc_runtime.ts"]);
    }
}
