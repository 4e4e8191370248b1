//! The TypeScript output: `{name}_wsgrpc.ts` per .proto file and, once per
//! output directory, the transport `wsgrpc_runtime.ts`.
//!
//! Rendering has two steps: a view of each file with every name and type
//! already resolved to TypeScript (`views`), then one tera template
//! (`wsgrpc-gen/templates/file_wsgrpc.ts.tera`) that only lays it out. Both templates
//! are compiled in, so an installed `protoc-gen-wsgrpc` needs no files
//! beside it.
//!
//! # Types: the proto3 JSON the bridge speaks
//!
//! Each message becomes an `interface` whose properties are the fields'
//! JSON names. Fields without presence (proto3 singular fields, lists,
//! maps) are always there, since the client asks the bridge to write
//! defaults (`json` in its v2 settings); fields with presence (messages,
//! `optional`, proto2) are optional (`?:`). A message with oneofs is a
//! `type`: its fields and, for each oneof, the union of one member set
//! (the others `undefined`) or none. Requests are `wsgrpc.MessageInit<T>`:
//! every field optional, all the way down. The types follow the proto3
//! JSON mapping as the bridge writes and reads it, field by field as
//! docs/PROTOCOL.md ("Payloads") lists it: 64-bit integers as `string`,
//! `float`, `double` and their wrappers as `wsgrpc.JsonFloat` (`number |
//! "NaN" | "Infinity" | "-Infinity"`), enums as the union of their value
//! names, maps as objects keyed by strings, the well-known types in their JSON forms (`Any` as `wsgrpc.AnyJson`,
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
//! - A service `Shop` gives the descriptor constant `Shop`, whose methods
//!   carry their request and response types, and the class `ShopClient`,
//!   which calls through it; methods are lowerCamelCase (`GetOrder` →
//!   `getOrder`).
//! - A name that is a JavaScript or TypeScript reserved word, a built-in
//!   type, or a global the generated code or its users rely on (see
//!   `RESERVED_NAMES`) gets a `$` suffix: `Object` → `Object$`. So does a
//!   name already taken in its file (an `Outer_Inner` beside
//!   `Outer.Inner`, a message `ShopClient` beside service `Shop`), in
//!   declaration order; a method named `constructor` becomes `constructor$`.
//! - A type from another file is imported under its own name, or, where
//!   that is taken, prefixed with its package: `rich_common_v1_Item`.
//! - Properties are the JSON names, quoted where they are not identifiers.

// Each concern in a file of its own: `names` (escaping and the exported
// name of every type), `scope` (one file's names and imports), `types`
// (proto types as TypeScript), `tsdoc` (doc comments) and `views` (what
// the template lays out).

mod names;
mod scope;
mod tsdoc;
mod types;
mod views;

use crate::model::File;
use crate::{Error, GeneratedFile, Language, Options};
use names::Symbols;
use views::FileView;

/// The transport every generated file imports, at the output's root.
pub const RUNTIME_FILE: &str = "wsgrpc_runtime.ts";

const RUNTIME_SOURCE: &str = include_str!("../../templates/wsgrpc_runtime.ts");
const FILE_TEMPLATE: &str = include_str!("../../templates/file_wsgrpc.ts.tera");

/// The version the headers name.
const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

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
        .map_err(|err| render_error("the TypeScript template", err))?;

    let mut out = Vec::new();
    for &name in to_generate {
        let file = files.iter().find(|file| file.name == name).ok_or_else(|| {
            Error::MissingDescriptor {
                file: name.to_owned(),
            }
        })?;
        let view = FileView::new(file, &symbols, options, &parameter)?;
        let content = tera::Context::from_serialize(&view)
            .and_then(|context| tera.render("file_wsgrpc.ts", &context))
            .map_err(|err| render_error(&format!("the TypeScript of {name}"), err))?;
        out.push(GeneratedFile {
            name: output_name(name),
            content,
            language: Language::TypeScript,
        });
    }
    // With a runtime package, the files import it instead of a copy.
    if options.runtime_package().is_some() {
        return Ok(out);
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

/// The template failed on a view the generator made: a bug, never the
/// input's fault.
fn render_error(output: &str, err: tera::Error) -> Error {
    Error::Render {
        output: output.to_owned(),
        source: err.into(),
    }
}

/// `dir/name.proto` → `dir/name_wsgrpc.ts`.
fn output_name(proto: &str) -> String {
    format!(
        "{}_wsgrpc.ts",
        proto.strip_suffix(".proto").unwrap_or(proto)
    )
}

#[cfg(test)]
mod tests;
