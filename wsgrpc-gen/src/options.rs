//! What to generate and how, behind both entry points: the protoc plugin
//! parses its parameter into [`Options`], the build.rs [`Builder`] sets
//! the same fields, and every value is checked and normalised here, once.
//!
//! [`Builder`]: crate::Builder

use std::fmt;
use std::str::FromStr;

/// Which outputs to generate, and how.
///
/// Parsed from the protoc plugin's parameter (`--wsgrpc_opt`, or buf's
/// `opt`): comma-separated, strict, an unknown key is an error.
///
/// - `rust`, `typescript`: the outputs to write; both when neither is named;
/// - `import_extension=.js`: the extension of relative imports in the
///   TypeScript (`.js`, the default, suits Vite and Node; `js` means the
///   same; `none` leaves it off, for bundlers that resolve bare paths).
///
/// Its [`Display`](fmt::Display) is the same parameter written out in
/// full, as the generated files' headers quote it.
///
/// ```
/// let options: wsgrpc_gen::Options = "typescript, import_extension=none".parse()?;
/// assert!(!options.rust && options.typescript);
/// assert_eq!(options.import_extension(), "");
/// assert_eq!(options.to_string(), "typescript,import_extension=none");
///
/// let both: wsgrpc_gen::Options = "import_extension=js".parse()?;
/// assert_eq!(both.to_string(), "rust,typescript,import_extension=.js");
/// # Ok::<(), wsgrpc_gen::OptionsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// `{package}.rs` files: the message types, and the bridge's tables.
    pub rust: bool,
    /// `{name}_wsgrpc.ts` files and `wsgrpc_runtime.ts`.
    pub typescript: bool,
    import_extension: String,
    runtime_package: Option<String>,
}

/// The one language of a generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// A `{package}.rs` file.
    Rust,
    /// A `{name}_wsgrpc.ts` file, or `wsgrpc_runtime.ts`.
    TypeScript,
}

impl Default for Options {
    /// Both outputs, imports ending in `.js`.
    fn default() -> Self {
        Self {
            rust: true,
            typescript: true,
            import_extension: ".js".to_owned(),
            runtime_package: None,
        }
    }
}

impl Options {
    /// The extension relative imports in the TypeScript end with: `.js` or
    /// empty.
    pub fn import_extension(&self) -> &str {
        &self.import_extension
    }

    /// Sets the extension of relative imports: `.js` and `js` both give
    /// `.js`; `none` (or nothing) leaves it off.
    pub fn set_import_extension(&mut self, extension: &str) -> Result<(), OptionsError> {
        let bare = extension.strip_prefix('.').unwrap_or(extension);
        self.import_extension = match bare {
            "" | "none" => String::new(),
            // It ends up inside a string literal in an import.
            bare if bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') => {
                format!(".{bare}")
            }
            _ => return Err(OptionsError::InvalidImportExtension(extension.to_owned())),
        };
        Ok(())
    }

    /// The npm package the TypeScript imports the transport from, where it
    /// is not the copy written beside the generated files.
    pub fn runtime_package(&self) -> Option<&str> {
        self.runtime_package.as_deref()
    }

    /// Imports the transport from the npm package `name` (such as
    /// `@wsgrpc/runtime`) instead of writing `wsgrpc_runtime.ts` beside the
    /// generated files; `None` for the copy (the default).
    pub fn set_runtime_package(&mut self, name: Option<&str>) -> Result<(), OptionsError> {
        self.runtime_package = match name {
            None => None,
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || "@/._-".contains(c)
                    }) =>
            {
                Some(name.to_owned())
            }
            Some(name) => return Err(OptionsError::InvalidRuntimePackage(name.to_owned())),
        };
        Ok(())
    }

    /// These options with only `language`'s output turned on: what a file
    /// in that language was generated with.
    pub fn only(&self, language: Language) -> Self {
        Self {
            rust: language == Language::Rust,
            typescript: language == Language::TypeScript,
            ..self.clone()
        }
    }

    /// Whether a file gets code of its own: every file but the well-known
    /// types (`google/protobuf/*.proto`), which come from `prost-types` in
    /// Rust (through the runtime's `wsgrpc_runtime::codegen::prost_types`)
    /// and are written inline or come from `wsgrpc_runtime.ts` in
    /// TypeScript.
    pub fn generates(&self, proto_file: &str) -> bool {
        !crate::model::is_well_known_file(proto_file)
    }
}

impl FromStr for Options {
    type Err = OptionsError;

    fn from_str(parameter: &str) -> Result<Self, OptionsError> {
        let mut options = Self {
            rust: false,
            typescript: false,
            ..Self::default()
        };
        let items = parameter
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty());
        for item in items {
            match item.split_once('=') {
                None if item == "rust" => options.rust = true,
                None if item == "typescript" => options.typescript = true,
                Some(("import_extension", value)) => options.set_import_extension(value)?,
                Some(("runtime_package", value)) => options.set_runtime_package(Some(value))?,
                _ => return Err(OptionsError::UnknownParameter(item.to_owned())),
            }
        }
        if !options.rust && !options.typescript {
            options.rust = true;
            options.typescript = true;
        }
        Ok(options)
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        if self.rust {
            items.push("rust".to_owned());
        }
        if self.typescript {
            items.push("typescript".to_owned());
            let extension = match self.import_extension.as_str() {
                "" => "none",
                extension => extension,
            };
            items.push(format!("import_extension={extension}"));
            if let Some(package) = &self.runtime_package {
                items.push(format!("runtime_package={package}"));
            }
        }
        f.write_str(&items.join(","))
    }
}

/// A parameter or option value the generator does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// An item of the plugin's parameter that is neither a known flag nor
    /// a known `key=value`.
    UnknownParameter(String),
    /// An `import_extension` that is not a file extension.
    InvalidImportExtension(String),
    /// A `runtime_package` that is not an npm package name.
    InvalidRuntimePackage(String),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownParameter(item) => write!(
                f,
                "unknown parameter `{item}` (known: rust, typescript, import_extension=EXT, \
                 runtime_package=NAME)"
            ),
            Self::InvalidImportExtension(extension) => write!(
                f,
                "import_extension `{extension}` is not a file extension (such as .js, or none)"
            ),
            Self::InvalidRuntimePackage(name) => write!(
                f,
                "runtime_package `{name}` is not an npm package name (such as @wsgrpc/runtime)"
            ),
        }
    }
}

impl std::error::Error for OptionsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(parameter: &str) -> Options {
        parameter.parse().unwrap()
    }

    #[test]
    fn parameters_choose_outputs() {
        assert_eq!(parse(""), Options::default());
        let rust = parse("rust");
        assert!(rust.rust && !rust.typescript);
        let typescript = parse("typescript, import_extension=none");
        assert!(!typescript.rust && typescript.typescript);
        assert_eq!(typescript.import_extension(), "");
    }

    #[test]
    fn a_runtime_package_is_a_parameter_that_round_trips() {
        let options = parse("typescript,runtime_package=@wsgrpc/runtime");
        assert_eq!(options.runtime_package(), Some("@wsgrpc/runtime"));
        assert_eq!(
            options.to_string(),
            "typescript,import_extension=.js,runtime_package=@wsgrpc/runtime"
        );
        assert_eq!(parse(&options.to_string()), options);
        let err = "runtime_package=../evil\"".parse::<Options>().unwrap_err();
        assert_eq!(err, OptionsError::InvalidRuntimePackage("../evil\"".into()));
        assert!(err.to_string().contains("not an npm package name"), "{err}");
        assert_eq!(parse("typescript").runtime_package(), None);
    }

    #[test]
    fn an_import_extension_is_normalised_once_for_every_entry_point() {
        for (given, normalised) in [
            (".js", ".js"),
            ("js", ".js"),
            (".mjs", ".mjs"),
            ("none", ""),
            ("", ""),
        ] {
            let mut options = Options::default();
            options.set_import_extension(given).unwrap();
            assert_eq!(options.import_extension(), normalised, "{given}");
            let parsed = parse(&format!("typescript,import_extension={given}"));
            assert_eq!(parsed, options.only(Language::TypeScript), "{given}");
        }
        let err = Options::default()
            .set_import_extension("js\"; evil")
            .unwrap_err();
        assert_eq!(
            err,
            OptionsError::InvalidImportExtension("js\"; evil".into())
        );
        assert!(err.to_string().contains("not a file extension"), "{err}");
    }

    #[test]
    fn writes_itself_back_as_the_parameter_in_full() {
        for (given, written) in [
            ("", "rust,typescript,import_extension=.js"),
            ("rust", "rust"),
            (
                "typescript,import_extension=js",
                "typescript,import_extension=.js",
            ),
            (
                "import_extension=none,typescript",
                "typescript,import_extension=none",
            ),
        ] {
            let options = parse(given);
            assert_eq!(options.to_string(), written);
            assert_eq!(parse(written), options);
        }
    }

    #[test]
    fn an_unknown_parameter_is_an_error() {
        let err = "rust,colour=blue".parse::<Options>().unwrap_err();
        assert_eq!(err, OptionsError::UnknownParameter("colour=blue".into()));
        assert!(err.to_string().contains("unknown parameter `colour=blue`"));
    }

    #[test]
    fn well_known_types_get_no_code_of_their_own() {
        let options = Options::default();
        assert!(!options.generates("google/protobuf/empty.proto"));
        assert!(options.generates("google/api/annotations.proto"));
        assert!(options.generates("example.proto"));
    }
}
