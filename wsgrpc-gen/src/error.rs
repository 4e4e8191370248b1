//! Why generation failed, as types a build script or a test can match on.

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

use crate::model::ModelError;
use crate::options::OptionsError;

/// Why generation failed.
///
/// Each message says what went wrong in the names the generator knows
/// (file, type, option). Where a library underneath failed (prost-build,
/// the file system, a template), that library's error is the
/// [`source`](StdError::source): walk the chain, or print with `{:?}`
/// (as a build script's `main` does), to see both.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An option was set to a value the generator does not know.
    Options(OptionsError),
    /// The builder had no `out_dir` for the Rust and `OUT_DIR` is not set,
    /// as happens outside a build script.
    OutDirNotSet,
    /// A .proto file did not parse or did not resolve.
    Parse(ParseError),
    /// A file to generate code for is not among the descriptors given.
    MissingDescriptor {
        /// The file's name, as asked for.
        file: String,
    },
    /// The descriptors hold something the model cannot represent.
    Model(ModelError),
    /// A file refers to a type that no descriptor given declares.
    UnknownType {
        /// The file that refers to it.
        file: String,
        /// The type's full name, without the leading dot.
        type_name: String,
    },
    /// A proto2 group, which the TypeScript output cannot represent (the
    /// Rust output carries it, as prost does).
    GroupInTypeScript {
        /// The file that declares the field.
        file: String,
        /// The group's full name.
        group: String,
    },
    /// prost-build refused to generate the message types, as it refuses
    /// a malformed or duplicate `extern_path` in a [`Config`](crate::Config).
    Prost(std::io::Error),
    /// Code or a template the generator wrote did not lay out: a bug in
    /// wsgrpc-gen, whatever the input.
    Render {
        /// What was being rendered.
        output: String,
        /// What syn or tera said.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// An output file could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Errors of this crate that say it all themselves.
            Self::Options(err) => err.fmt(f),
            Self::Parse(err) => err.fmt(f),
            Self::Model(err) => err.fmt(f),
            Self::OutDirNotSet => {
                f.write_str("OUT_DIR is not set: outside a build script, call `out_dir`")
            }
            Self::MissingDescriptor { file } => write!(f, "no descriptor for `{file}`"),
            Self::UnknownType { file, type_name } => write!(
                f,
                "{file}: type `{type_name}` is not declared in any file given"
            ),
            Self::GroupInTypeScript { file, group } => write!(
                f,
                "{file}: `{group}` is a group, which the TypeScript output does not support"
            ),
            Self::Prost(_) => f.write_str("prost-build could not generate the message types"),
            Self::Render { output, .. } => {
                write!(f, "rendering {output} failed (a bug in wsgrpc-gen)")
            }
            Self::Write { path, .. } => write!(f, "writing {}", path.display()),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Options(err) => err.source(),
            Self::Parse(err) => err.source(),
            Self::Model(err) => err.source(),
            Self::Prost(err) => Some(err),
            Self::Render { source, .. } => Some(source.as_ref()),
            Self::Write { source, .. } => Some(source),
            Self::OutDirNotSet
            | Self::MissingDescriptor { .. }
            | Self::UnknownType { .. }
            | Self::GroupInTypeScript { .. } => None,
        }
    }
}

impl From<OptionsError> for Error {
    fn from(err: OptionsError) -> Self {
        Self::Options(err)
    }
}

impl From<ParseError> for Error {
    fn from(err: ParseError) -> Self {
        Self::Parse(err)
    }
}

impl From<ModelError> for Error {
    fn from(err: ModelError) -> Self {
        Self::Model(err)
    }
}

/// A .proto file that did not parse or did not resolve: protox's message,
/// after where it happened (`file:line:column: `), as compilers write it.
#[derive(Debug)]
pub struct ParseError {
    file: Option<String>,
    /// Line and column, from 1.
    position: Option<(usize, usize)>,
    // protox stays out of the public API: its version is not ours to fix.
    error: protox::Error,
}

impl ParseError {
    pub(crate) fn new(error: protox::Error) -> Self {
        use miette::Diagnostic;
        let position = error
            .labels()
            .and_then(|mut labels| labels.next())
            .and_then(|label| {
                let contents = error.source_code()?.read_span(label.inner(), 0, 0).ok()?;
                Some((contents.line() + 1, contents.column() + 1))
            });
        Self {
            file: error.file().map(str::to_owned),
            position,
            error,
        }
    }

    /// The file the error is in, where protox knows it.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }

    /// The line the error is on, from 1, where protox knows it.
    pub fn line(&self) -> Option<usize> {
        self.position.map(|(line, _)| line)
    }

    /// The column the error starts at, from 1, where protox knows it.
    pub fn column(&self) -> Option<usize> {
        self.position.map(|(_, column)| column)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.position) {
            (Some(file), Some((line, column))) => write!(f, "{file}:{line}:{column}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, _) => {}
        }
        self.error.fmt(f)
    }
}

impl StdError for ParseError {
    // protox's message is this error's own; what it wraps (an I/O error
    // opening a file) is the source.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// `err` and every error under it, joined by `: `, for a reader that gets
/// one line (protoc shows a plugin's error so).
pub(crate) fn report(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_can_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
    }

    #[test]
    fn a_report_walks_the_sources() {
        let err = Error::Write {
            path: "out/a.rs".into(),
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(err.to_string(), "writing out/a.rs");
        assert_eq!(report(&err), "writing out/a.rs: disk full");
        assert_eq!(
            report(&Error::OutDirNotSet),
            Error::OutDirNotSet.to_string()
        );
    }
}
