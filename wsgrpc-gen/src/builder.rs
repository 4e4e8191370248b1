//! The build script entry point: parse with protox, generate, write files
//! that changed.

use std::path::{Path, PathBuf};

use prost_types::FileDescriptorSet;

use crate::{Error, GeneratedFile, Options, ServiceGenerator, typescript};

/// Starts configuring code generation for a build script.
pub fn configure() -> Builder {
    Builder {
        out_dir: None,
        typescript_out_dir: None,
        rust: true,
        typescript_options: typescript::Options::default(),
        service_generator: None,
    }
}

/// Configures and runs code generation; see [`configure`].
#[must_use]
pub struct Builder {
    out_dir: Option<PathBuf>,
    typescript_out_dir: Option<PathBuf>,
    rust: bool,
    typescript_options: typescript::Options,
    service_generator: Option<Box<dyn ServiceGenerator>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("out_dir", &self.out_dir)
            .field("typescript_out_dir", &self.typescript_out_dir)
            .field("rust", &self.rust)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Where the Rust goes; default `$OUT_DIR`, where `include_proto!` looks.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Also write the TypeScript client into `dir` (relative paths are
    /// relative to the crate's manifest directory, as build scripts run).
    pub fn typescript_out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.typescript_out_dir = Some(dir.into());
        self
    }

    /// Whether to write the Rust; default yes. Turn it off for a build script
    /// that only writes TypeScript.
    pub fn rust(mut self, enable: bool) -> Self {
        self.rust = enable;
        self
    }

    /// How the TypeScript is written.
    pub fn typescript_options(mut self, options: typescript::Options) -> Self {
        self.typescript_options = options;
        self
    }

    /// Another generator to run for every service over the same message
    /// types, e.g. `tonic_prost_build::configure().service_generator()` for
    /// a tonic server in the same files.
    pub fn service_generator(mut self, generator: Box<dyn ServiceGenerator>) -> Self {
        self.service_generator = Some(generator);
        self
    }

    /// Parses `protos` (found in `includes`) with protox and writes the
    /// outputs. A .proto that does not parse fails naming file, line and
    /// column.
    pub fn compile(
        self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let set = parse(protos, includes)?;
        if std::env::var_os("CARGO").is_some() {
            for include in includes {
                println!("cargo:rerun-if-changed={}", include.as_ref().display());
            }
        }
        self.compile_fds(set)
    }

    /// Generates from descriptors already parsed: every file in the set but
    /// the well-known types, which come from `prost-types`.
    pub fn compile_fds(self, set: FileDescriptorSet) -> Result<(), Error> {
        let to_generate: Vec<String> = set
            .file
            .iter()
            .map(|file| file.name().to_owned())
            .filter(|name| !name.starts_with("google/protobuf/"))
            .collect();
        let rust_dir = match (&self.out_dir, self.rust) {
            (Some(dir), true) => Some(dir.clone()),
            (None, true) => Some(PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(
                || {
                    Error::Generate(
                        "OUT_DIR is not set: call `out_dir` outside build scripts".into(),
                    )
                },
            )?)),
            (_, false) => None,
        };
        if let Some(dir) = &rust_dir {
            let files = crate::generate(
                &set.file,
                &to_generate,
                Options {
                    rust: true,
                    service_generator: self.service_generator,
                    ..Options::default()
                },
            )?;
            write_all(dir, &files)?;
        }
        if let Some(dir) = &self.typescript_out_dir {
            let files = crate::generate(
                &set.file,
                &to_generate,
                Options {
                    typescript: true,
                    typescript_options: self.typescript_options,
                    ..Options::default()
                },
            )?;
            write_all(dir, &files)?;
        }
        Ok(())
    }
}

/// Parses .proto files with protox, keeping comments for the docs.
pub(crate) fn parse(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> Result<FileDescriptorSet, Error> {
    let mut compiler = protox::Compiler::new(includes).map_err(parse_error)?;
    compiler.include_imports(true).include_source_info(true);
    for proto in protos {
        compiler.open_file(proto).map_err(parse_error)?;
    }
    Ok(compiler.file_descriptor_set())
}

/// `file:line:column: message`, as compilers write it.
fn parse_error(err: protox::Error) -> Error {
    use miette::Diagnostic;
    let location = err
        .labels()
        .and_then(|mut labels| labels.next())
        .and_then(|label| {
            let contents = err.source_code()?.read_span(label.inner(), 0, 0).ok()?;
            Some((contents.line() + 1, contents.column() + 1))
        });
    let message = match (err.file(), location) {
        (Some(file), Some((line, column))) => format!("{file}:{line}:{column}: {err}"),
        (Some(file), None) => format!("{file}: {err}"),
        (None, _) => err.to_string(),
    };
    Error::Parse(message)
}

/// Writes each file under `dir`, leaving unchanged files alone so that
/// their modification times do not trigger rebuilds.
fn write_all(dir: &Path, files: &[GeneratedFile]) -> Result<(), Error> {
    for file in files {
        let path = dir.join(&file.name);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == file.content) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.content)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("broken.proto"),
            "syntax = \"proto3\";\nmessage A {\n  string name = 1\n}\n",
        )
        .unwrap();
        let err = parse(&["broken.proto"], &[dir.path()]).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("broken.proto:4:1: "), "{message}");
    }

    #[test]
    fn an_unknown_type_names_its_location() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("types.proto"),
            "syntax = \"proto3\";\nmessage A {\n  Missing m = 1;\n}\n",
        )
        .unwrap();
        let message = parse(&["types.proto"], &[dir.path()])
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("types.proto:3:3: "), "{message}");
        assert!(message.contains("Missing"), "{message}");
    }
}
