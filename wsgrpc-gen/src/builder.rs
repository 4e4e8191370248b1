//! The build script entry point: parse with protox, generate, write files
//! that changed.

use std::path::{Path, PathBuf};

use prost_types::FileDescriptorSet;
use protox::file::{ChainFileResolver, GoogleFileResolver, IncludeFileResolver};

use crate::{
    Config, Error, GeneratedFile, Language, Options, OptionsError, ParseError, ServiceGenerator,
};

/// Starts configuring code generation for a build script.
pub fn configure() -> Builder {
    Builder {
        out_dir: None,
        typescript_out_dir: None,
        // TypeScript once it has somewhere to go.
        options: Options::default().only(Language::Rust),
        invalid_option: None,
        service_generator: None,
        bundled_well_known_types: true,
    }
}

/// Configures and runs code generation; see [`configure`].
///
/// It sets the same [`Options`] the protoc plugin parses from its
/// parameter, so that both write the same files.
#[must_use]
pub struct Builder {
    out_dir: Option<PathBuf>,
    typescript_out_dir: Option<PathBuf>,
    options: Options,
    /// The first option set to a value [`Options`] refused, reported by
    /// `compile`, as a build script can only fail there.
    invalid_option: Option<OptionsError>,
    service_generator: Option<Box<dyn ServiceGenerator>>,
    bundled_well_known_types: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("out_dir", &self.out_dir)
            .field("typescript_out_dir", &self.typescript_out_dir)
            .field("options", &self.options)
            .field("bundled_well_known_types", &self.bundled_well_known_types)
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
        self.options.typescript = true;
        self
    }

    /// Whether to write the Rust; default yes. Turn it off for a build script
    /// that only writes TypeScript.
    pub fn rust(mut self, enable: bool) -> Self {
        self.options.rust = enable;
        self
    }

    /// The extension of relative imports in the TypeScript, as the plugin's
    /// `import_extension`: `.js` (the default) or `js`, or `none`.
    pub fn import_extension(mut self, extension: &str) -> Self {
        if let Err(err) = self.options.set_import_extension(extension) {
            self.invalid_option.get_or_insert(err);
        }
        self
    }

    /// Imports the TypeScript transport from the npm package `name` (such
    /// as `@wsgrpc/runtime`), as the plugin's `runtime_package`, instead of
    /// writing a copy of it, `wsgrpc_runtime.ts`, beside the generated files.
    pub fn runtime_package(mut self, name: &str) -> Self {
        if let Err(err) = self.options.set_runtime_package(Some(name)) {
            self.invalid_option.get_or_insert(err);
        }
        self
    }

    /// Another generator to run for every service over the same message
    /// types, e.g. `tonic_prost_build::configure().service_generator()` for
    /// a tonic server in the same files.
    pub fn service_generator(mut self, generator: Box<dyn ServiceGenerator>) -> Self {
        self.service_generator = Some(generator);
        self
    }

    /// Whether `google/protobuf/*.proto` come from protox's own copies
    /// (the default) rather than from `includes`.
    ///
    /// The generated code never depends on which copy was read: the Rust
    /// uses `prost-types`, the TypeScript writes the well-known types
    /// inline, and the bridge's descriptors leave them out. A copy on the
    /// include path (Google's APIs ship the newest descriptor.proto, say)
    /// can then only break parsing where it uses syntax newer than protox
    /// reads. Turn this off for a .proto that needs an option only a newer
    /// descriptor.proto than protox's declares.
    pub fn bundled_well_known_types(mut self, enable: bool) -> Self {
        self.bundled_well_known_types = enable;
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
        self.compile_with_config(Config::new(), protos, includes)
    }

    /// [`compile`](Self::compile), with the Rust message types made by
    /// prost-build's `config`: derives and attributes, `extern_path`,
    /// `bytes` fields, as with tonic-prost-build's `compile_with_config`.
    ///
    /// The generator sets two things on it, as [`generate_with_config`]
    /// says: its service generator (add another with
    /// [`service_generator`](Self::service_generator)) and where the
    /// well-known types come from.
    ///
    /// ```no_run
    /// // build.rs
    /// let mut config = wsgrpc_gen::Config::new();
    /// config
    ///     .type_attribute(".", "#[derive(Eq, Hash)]")
    ///     .bytes(["."]);
    /// wsgrpc_gen::configure().compile_with_config(config, &["proto/example.proto"], &["proto"])?;
    /// # Ok::<(), wsgrpc_gen::Error>(())
    /// ```
    ///
    /// [`generate_with_config`]: crate::generate_with_config
    pub fn compile_with_config(
        self,
        config: Config,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(), Error> {
        let set = parse(protos, includes, self.bundled_well_known_types)?;
        if std::env::var_os("CARGO").is_some() {
            for include in includes {
                println!("cargo:rerun-if-changed={}", include.as_ref().display());
            }
        }
        self.compile_fds_with_config(config, set)
    }

    /// Generates from descriptors already parsed, for every file in the set
    /// (as prost-build does).
    pub fn compile_fds(self, set: FileDescriptorSet) -> Result<(), Error> {
        self.compile_fds_with_config(Config::new(), set)
    }

    /// [`compile_fds`](Self::compile_fds), with the Rust message types made
    /// by `config`, as [`compile_with_config`](Self::compile_with_config).
    pub fn compile_fds_with_config(
        self,
        config: Config,
        set: FileDescriptorSet,
    ) -> Result<(), Error> {
        if let Some(err) = self.invalid_option {
            return Err(err.into());
        }
        let rust_dir = match (self.out_dir, self.options.rust) {
            (Some(dir), true) => Some(dir),
            (None, true) => Some(PathBuf::from(
                std::env::var_os("OUT_DIR").ok_or(Error::OutDirNotSet)?,
            )),
            (_, false) => None,
        };
        let to_generate: Vec<String> = set.file.iter().map(|file| file.name().to_owned()).collect();
        let files = crate::generate_with_config(
            config,
            &set.file,
            &to_generate,
            &self.options,
            self.service_generator,
        )?;
        for file in &files {
            let dir = match file.language {
                Language::Rust => rust_dir.as_deref(),
                Language::TypeScript => self.typescript_out_dir.as_deref(),
            };
            if let Some(dir) = dir {
                write(dir, file)?;
            }
        }
        Ok(())
    }
}

/// Parses .proto files with protox, keeping comments for the docs; the
/// well-known types first from protox's copies, if `bundled_well_known_types`.
pub(crate) fn parse(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
    bundled_well_known_types: bool,
) -> Result<FileDescriptorSet, Error> {
    let mut resolver = ChainFileResolver::new();
    if bundled_well_known_types {
        resolver.add(GoogleFileResolver::new());
    }
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.as_ref().to_owned()));
    }
    // Last, as protox's `Compiler::new` has it: files no include holds.
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).include_source_info(true);
    for proto in protos {
        compiler.open_file(proto).map_err(ParseError::new)?;
    }
    Ok(compiler.file_descriptor_set())
}

/// Writes `file` under `dir`, leaving it alone when unchanged so that its
/// modification time does not trigger rebuilds.
fn write(dir: &Path, file: &GeneratedFile) -> Result<(), Error> {
    let path = dir.join(&file.name);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == file.content) {
        return Ok(());
    }
    let written = match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent),
        None => Ok(()),
    }
    .and_then(|()| std::fs::write(&path, &file.content));
    written.map_err(|source| Error::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_protos::include_dir;

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let dir = include_dir(&[(
            "broken.proto",
            "syntax = \"proto3\";\nmessage A {\n  string name = 1\n}\n",
        )]);
        let err = parse(&["broken.proto"], &[dir.path()], true).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("broken.proto:4:1: "), "{message}");
        let Error::Parse(err) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (err.file(), err.line(), err.column()),
            (Some("broken.proto"), Some(4), Some(1))
        );
    }

    #[test]
    fn an_unknown_type_names_its_location() {
        let dir = include_dir(&[(
            "types.proto",
            "syntax = \"proto3\";\nmessage A {\n  Missing m = 1;\n}\n",
        )]);
        let message = parse(&["types.proto"], &[dir.path()], true)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("types.proto:3:3: "), "{message}");
        assert!(message.contains("Missing"), "{message}");
    }

    /// The TypeScript client of a one-service file, written with `options`
    /// applied to the builder, and the directory it was written to.
    fn typescript_client(options: impl FnOnce(Builder) -> Builder) -> (String, tempfile::TempDir) {
        let dir = include_dir(&[(
            "svc.proto",
            "syntax = \"proto3\";\nmessage M {}\nservice S { rpc Call(M) returns (M); }\n",
        )]);
        let out = dir.path().join("ts");
        options(configure().rust(false).typescript_out_dir(&out))
            .compile(&["svc.proto"], &[dir.path()])
            .unwrap();
        let client = std::fs::read_to_string(out.join("svc_wsgrpc.ts")).unwrap();
        (client, dir)
    }

    #[test]
    fn with_a_runtime_package_the_files_import_it_and_no_copy_is_written() {
        let (client, dir) = typescript_client(|builder| builder.runtime_package("@wsgrpc/runtime"));
        assert!(
            client.contains("import * as wsgrpc from \"@wsgrpc/runtime\";"),
            "{client}"
        );
        assert!(
            client.contains("runtime_package=@wsgrpc/runtime"),
            "{client}"
        );
        assert!(!dir.path().join("ts/wsgrpc_runtime.ts").exists());
    }

    #[test]
    fn an_import_extension_is_normalised_as_the_plugin_does_it() {
        let (client, dir) = typescript_client(|builder| builder.import_extension("js"));
        assert!(
            client.contains("import * as wsgrpc from \"./wsgrpc_runtime.js\";"),
            "{client}"
        );

        let out = dir.path().join("ts");
        let err = configure()
            .rust(false)
            .typescript_out_dir(&out)
            .import_extension("js/../x")
            .compile(&["svc.proto"], &[dir.path()])
            .unwrap_err();
        assert!(err.to_string().contains("not a file extension"), "{err}");
    }

    #[test]
    fn a_prost_config_shapes_the_message_types_and_the_tables_stay() {
        let dir = include_dir(&[
            (
                "shop.proto",
                "syntax = \"proto3\"; package shop;\n\
                 import \"money.proto\";\n\
                 import \"google/protobuf/timestamp.proto\";\n\
                 message Order { bytes receipt = 1; money.Money total = 2; google.protobuf.Timestamp at = 3; }\n\
                 service Shop { rpc Get(Order) returns (Order); }\n",
            ),
            (
                "money.proto",
                "syntax = \"proto3\"; package money; message Money { int64 cents = 1; }\n",
            ),
        ]);
        let out = tempfile::tempdir().unwrap();
        let mut config = Config::new();
        config
            .type_attribute(".shop.Order", "#[derive(Eq, Hash)]")
            .bytes([".shop"])
            .extern_path(".money", "::money_crate");
        configure()
            .out_dir(out.path())
            .compile_with_config(config, &["shop.proto"], &[dir.path()])
            .unwrap();
        let rust = std::fs::read_to_string(out.path().join("shop.rs")).unwrap();
        for expected in [
            "#[derive(Eq, Hash)]",
            "pub receipt: ::prost::bytes::Bytes,",
            "pub total: ::core::option::Option<::money_crate::Money>,",
            "pub at: ::core::option::Option<::wsgrpc_runtime::codegen::prost_types::Timestamp>,",
            "pub mod shop_bridge {",
        ] {
            assert!(rust.contains(expected), "{expected} in:\n{rust}");
        }
        assert!(
            !std::fs::exists(out.path().join("money.rs")).unwrap(),
            "an extern path gets no file"
        );
    }

    #[test]
    fn the_well_known_types_need_no_prost_types_of_the_users() {
        let dir = include_dir(&[(
            "t.proto",
            "syntax = \"proto3\"; package t;\n\
             import \"google/protobuf/duration.proto\";\n\
             import \"google/protobuf/struct.proto\";\n\
             message M { google.protobuf.Duration ttl = 1; repeated google.protobuf.Value values = 2; }\n",
        )]);
        let out = tempfile::tempdir().unwrap();
        configure()
            .out_dir(out.path())
            .compile(&["t.proto"], &[dir.path()])
            .unwrap();
        let rust = std::fs::read_to_string(out.path().join("t.rs")).unwrap();
        assert!(
            rust.contains("::wsgrpc_runtime::codegen::prost_types::Duration"),
            "{rust}"
        );
        assert!(
            rust.contains("::wsgrpc_runtime::codegen::prost_types::Value"),
            "{rust}"
        );
        let outside_the_runtime = rust.replace(crate::rust::PROST_TYPES_PATH, "");
        assert!(!outside_the_runtime.contains("prost_types"), "{rust}");
    }

    #[test]
    fn prost_refusing_its_config_is_an_error_with_its_reason() {
        let dir = include_dir(&[("a.proto", "syntax = \"proto3\"; package a; message A {}\n")]);
        let out = tempfile::tempdir().unwrap();
        let mut config = Config::new();
        config
            .extern_path(".other", "::one")
            .extern_path(".other", "::two");
        let err = configure()
            .out_dir(out.path())
            .compile_with_config(config, &["a.proto"], &[dir.path()])
            .unwrap_err();
        let Error::Prost(reason) = &err else {
            panic!("{err:?}")
        };
        assert!(
            reason
                .to_string()
                .contains("duplicate extern Protobuf path"),
            "{reason}"
        );
        assert!(
            crate::error::report(&err).ends_with(&format!(": {reason}")),
            "the reason is the source"
        );
    }

    #[test]
    fn the_rust_needs_an_out_dir_outside_build_scripts() {
        assert!(
            std::env::var_os("OUT_DIR").is_none(),
            "cargo sets OUT_DIR only for crates with a build script"
        );
        let err = configure()
            .compile_fds(FileDescriptorSet::default())
            .unwrap_err();
        assert!(matches!(err, Error::OutDirNotSet), "{err:?}");
        configure()
            .rust(false)
            .compile_fds(FileDescriptorSet::default())
            .unwrap();
    }

    #[test]
    fn an_output_that_cannot_be_written_names_its_path() {
        let dir = include_dir(&[("a.proto", "syntax = \"proto3\"; package a; message A {}\n")]);
        // A file where the output directory should be.
        let out = dir.path().join("a.proto");
        let err = configure()
            .out_dir(&out)
            .compile(&["a.proto"], &[dir.path()])
            .unwrap_err();
        let Error::Write { path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*path, out.join("a.rs"));
    }

    #[test]
    fn a_newer_descriptor_proto_on_the_include_path_is_not_read() {
        let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protos/newer_descriptor");
        let out = tempfile::tempdir().unwrap();
        configure()
            .out_dir(out.path())
            .compile(&["routes.proto"], &[&include])
            .unwrap();
        let rust = std::fs::read_to_string(out.path().join("routes.rs")).unwrap();
        assert!(rust.contains("pub mod routes_bridge {"), "{rust}");

        let message = configure()
            .out_dir(out.path())
            .bundled_well_known_types(false)
            .compile(&["routes.proto"], &[&include])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("google/protobuf/descriptor.proto:"),
            "asked to, it reads the include path's copy: {message}"
        );
    }
}
