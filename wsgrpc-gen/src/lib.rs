#![doc = include_str!("../README.md")]
//!
//! ## The parts
//!
//! - [`generate`] is the core: descriptors in, files out, no I/O. Both
//!   entry points wrap it: [`plugin::execute`] (what `protoc-gen-wsgrpc`
//!   runs) and [`configure`], the [`Builder`] for build scripts.
//! - [`Options`] says what to generate and how; the plugin parses its
//!   parameter into it, the builder sets it.
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

mod builder;
pub mod model;
mod names;
mod options;
pub mod plugin;
mod rust;
#[cfg(test)]
mod test_protos;
pub mod typescript;

use std::fmt;

pub use builder::{Builder, configure};
pub use options::{Language, Options, OptionsError};
pub use prost_build::ServiceGenerator;
use prost_types::FileDescriptorProto;

/// One output file, named relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub name: String,
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
pub fn generate(
    descriptors: &[FileDescriptorProto],
    to_generate: &[String],
    options: &Options,
    other_services: Option<Box<dyn ServiceGenerator>>,
) -> Result<Vec<GeneratedFile>, Error> {
    for name in to_generate {
        if !descriptors.iter().any(|file| file.name() == name) {
            return Err(Error::Generate(format!("no descriptor for `{name}`")));
        }
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
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| Error::Generate(err.to_string()))?;
    let mut out = Vec::new();
    if options.typescript {
        out.extend(typescript::render(&model, &to_generate, options)?);
    }
    if options.rust {
        out.extend(rust::render(
            descriptors,
            &model,
            &to_generate,
            options,
            other_services,
        )?);
    }
    Ok(out)
}

/// Why generation failed.
#[derive(Debug)]
pub enum Error {
    /// A .proto file did not parse or did not resolve; the message names the
    /// file, line and column.
    Parse(String),
    /// The descriptors hold something the generator cannot render.
    Generate(String),
    /// An option has a value the generator does not know.
    Options(OptionsError),
    /// An output could not be written.
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(message) | Self::Generate(message) => f.write_str(message),
            Self::Options(err) => err.fmt(f),
            Self::Io(err) => write!(f, "writing generated code: {err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<OptionsError> for Error {
    fn from(err: OptionsError) -> Self {
        Self::Options(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}
