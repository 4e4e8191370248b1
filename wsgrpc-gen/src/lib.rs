#![doc = include_str!("../README.md")]
//!
//! ## The parts
//!
//! - [`generate`] is the core: descriptors in, files out, no I/O. Both
//!   entry points wrap it: [`plugin::execute`] (what `protoc-gen-wsgrpc`
//!   runs) and [`configure`], the [`Builder`] for build scripts.
//! - [`Options`] says what to generate and how; the plugin parses its
//!   parameter into it, the builder sets it. prost-build's own [`Config`]
//!   shapes the Rust message types ([`Builder::compile_with_config`],
//!   [`generate_with_config`]).
//! - [`Error`] says why generation failed, as a type to match on.
//! - [`model`] is what both renderers read: the files, messages, enums and
//!   services, built once from the descriptors. [`typescript`] describes
//!   the TypeScript output: its types and how names are escaped.
//!
//! ```
//! use prost_types::{DescriptorProto, FileDescriptorProto};
//!
//! let file = FileDescriptorProto {
//!     name: Some("hello.proto".into()),
//!     package: Some("hello".into()),
//!     syntax: Some("proto3".into()),
//!     message_type: vec![DescriptorProto {
//!         name: Some("Hello".into()),
//!         ..DescriptorProto::default()
//!     }],
//!     ..FileDescriptorProto::default()
//! };
//! let options = "typescript".parse()?;
//! let files = wsgrpc_gen::generate(&[file], &["hello.proto".into()], &options, None)?;
//! let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
//! assert_eq!(names, ["hello_wsgrpc.ts", "wsgrpc_runtime.ts"]);
//! assert!(files[0].content.contains("export type Hello = Record<string, never>;"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod builder;
mod error;
pub mod model;
mod names;
mod options;
pub mod plugin;
mod rust;
#[cfg(test)]
mod test_protos;
pub mod typescript;

pub use builder::{Builder, configure};
pub use error::{Error, ParseError};
pub use model::ModelError;
pub use options::{Language, Options, OptionsError};
/// prost-build's configuration of the message types, for
/// [`Builder::compile_with_config`] and [`generate_with_config`]: re-exported
/// so that its version is always the one wsgrpc-gen uses.
pub use prost_build::Config;
pub use prost_build::ServiceGenerator;
use prost_types::FileDescriptorProto;

/// One output file, named relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GeneratedFile {
    /// The path under the output directory: `example.rs`,
    /// `example/v1/example_wsgrpc.ts`.
    pub name: String,
    /// The whole file.
    pub content: String,
    /// Which output it belongs to, for writers that put each elsewhere.
    pub language: Language,
}

/// The generator's core: descriptors in, files out, no I/O.
///
/// `descriptors` holds every file `to_generate` depends on, as protoc hands
/// them to a plugin; `to_generate` names the files to write code for
/// (those [`Options::generates`] leaves out get none). `other_services`
/// runs for every service beside the bridge's, so that one build script
/// can also generate a tonic server or client over the same types.
///
/// The message types are prost-build's defaults; [`generate_with_config`]
/// takes a [`Config`] of your own.
pub fn generate(
    descriptors: &[FileDescriptorProto],
    to_generate: &[String],
    options: &Options,
    other_services: Option<Box<dyn ServiceGenerator>>,
) -> Result<Vec<GeneratedFile>, Error> {
    generate_with_config(
        Config::new(),
        descriptors,
        to_generate,
        options,
        other_services,
    )
}

/// [`generate`], with the message types made by `config`: its derives and
/// attributes, `extern_path`s, `bytes` fields and the rest.
///
/// Two of its settings are the generator's: its service generator (which
/// places the bridge's tables, and runs `other_services`), and the path of
/// the well-known types, `::wsgrpc_runtime::codegen::prost_types`, so that
/// the crate that includes the code needs no `prost-types` of its own. To
/// take the well-known types from elsewhere (pbjson-types, say), use
/// `compile_well_known_types` with `extern_path(".google.protobuf", …)`, as
/// prost-build documents.
pub fn generate_with_config(
    config: Config,
    descriptors: &[FileDescriptorProto],
    to_generate: &[String],
    options: &Options,
    other_services: Option<Box<dyn ServiceGenerator>>,
) -> Result<Vec<GeneratedFile>, Error> {
    if let Some(name) = to_generate
        .iter()
        .find(|name| !descriptors.iter().any(|file| file.name() == name.as_str()))
    {
        return Err(Error::MissingDescriptor { file: name.clone() });
    }
    let to_generate: Vec<&str> = to_generate
        .iter()
        .map(String::as_str)
        .filter(|name| options.generates(name))
        .collect();
    // One model of every file, for both outputs.
    let model = descriptors
        .iter()
        .map(model::File::from_descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    if options.typescript {
        out.extend(typescript::render(&model, &to_generate, options)?);
    }
    if options.rust {
        out.extend(rust::render(
            config,
            descriptors,
            &model,
            &to_generate,
            options,
            other_services,
        )?);
    }
    Ok(out)
}
