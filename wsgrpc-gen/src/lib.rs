//! Generates what a wsgrpc bridge and its browser clients need from `.proto`
//! files:
//!
//! - Rust, one file per proto package: the prost message types, and for a
//!   package with services the descriptors the bridge transcodes their
//!   proto3 JSON from and a `{service}_bridge` module per service whose
//!   `service()` is the bridge's dispatch table;
//! - TypeScript, one `{name}_wsgrpc.ts` per .proto file with its message
//!   types and service clients, plus the transport `wsgrpc_runtime.ts`.
//!
//! Two entry points share one core ([`generate`]): the protoc plugin
//! `protoc-gen-wsgrpc`, and [`configure`] for build scripts, which parses
//! with protox and so needs no protoc.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     wsgrpc_gen::configure()
//!         .typescript_out_dir("client/src/gen")
//!         .compile(&["proto/example.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! ```ignore
//! // src/lib.rs
//! pub mod example {
//!     wsgrpc_runtime::include_proto!("example");
//! }
//! ```

mod builder;
pub mod model;
pub mod plugin;
mod rust;
pub mod typescript;

use std::fmt;

pub use builder::{Builder, configure};
pub use prost_build::ServiceGenerator;
use prost_types::FileDescriptorProto;

/// One output file, named relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub name: String,
    pub content: String,
}

/// Which outputs to generate, and how.
#[derive(Default)]
pub struct Options {
    /// `{package}.rs` files for the bridge (and the app's own use).
    pub rust: bool,
    /// `{name}_wsgrpc.ts` files and `wsgrpc_runtime.ts`.
    pub typescript: bool,
    pub typescript_options: typescript::Options,
    /// Runs for every service beside the bridge's, so that one build script
    /// can also generate a tonic server or client over the same types.
    pub service_generator: Option<Box<dyn ServiceGenerator>>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("rust", &self.rust)
            .field("typescript", &self.typescript)
            .field("typescript_options", &self.typescript_options)
            .field("service_generator", &self.service_generator.is_some())
            .finish()
    }
}

/// The generator's core: descriptors in, files out, no I/O.
///
/// `descriptors` holds every file `to_generate` depends on, as protoc hands
/// them to a plugin; `to_generate` names the files to write code for.
pub fn generate(
    descriptors: &[FileDescriptorProto],
    to_generate: &[String],
    options: Options,
) -> Result<Vec<GeneratedFile>, Error> {
    for name in to_generate {
        if !descriptors.iter().any(|file| file.name() == name) {
            return Err(Error::Generate(format!("no descriptor for `{name}`")));
        }
    }
    let mut out = Vec::new();
    if options.typescript {
        let files = descriptors
            .iter()
            .map(model::File::from_descriptor)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| Error::Generate(err.to_string()))?;
        out.extend(typescript::render(
            &files,
            to_generate,
            &options.typescript_options,
        )?);
    }
    if options.rust {
        out.extend(rust::render(
            descriptors,
            to_generate,
            options.service_generator,
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
    /// An output could not be written.
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(message) | Self::Generate(message) => f.write_str(message),
            Self::Io(err) => write!(f, "writing generated code: {err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}
