//! The protoc plugin: a `CodeGeneratorRequest` in, a `CodeGeneratorResponse`
//! out. `protoc-gen-wsgrpc` only moves the bytes.
//!
//! Parameters (`--wsgrpc_opt=a,b=c`):
//! - `rust`, `typescript`: which outputs to write; both when neither is given;
//! - `import_extension=.js`: the extension of relative imports in the
//!   TypeScript (`.js`, the default, suits Vite and Node; `none` leaves it off).

use prost::Message;
use prost_types::compiler::code_generator_response::{Feature, File};
use prost_types::compiler::{CodeGeneratorRequest, CodeGeneratorResponse};

use crate::{Options, typescript};

/// Runs the plugin on an encoded request. Every failure is reported in the
/// response's `error`, as protoc expects, never by panicking.
pub fn execute(request: &[u8]) -> CodeGeneratorResponse {
    let mut response = CodeGeneratorResponse {
        supported_features: Some(Feature::Proto3Optional as u64),
        ..CodeGeneratorResponse::default()
    };
    match run(request) {
        Ok(files) => response.file = files,
        Err(message) => response.error = Some(message),
    }
    response
}

fn run(request: &[u8]) -> Result<Vec<File>, String> {
    let request = CodeGeneratorRequest::decode(request)
        .map_err(|err| format!("protoc-gen-wsgrpc: invalid CodeGeneratorRequest: {err}"))?;
    let options = parse_parameter(request.parameter())?;
    let generated = crate::generate(&request.proto_file, &request.file_to_generate, options)
        .map_err(|err| format!("protoc-gen-wsgrpc: {err}"))?;
    Ok(generated
        .into_iter()
        .map(|file| File {
            name: Some(file.name),
            content: Some(file.content),
            ..File::default()
        })
        .collect())
}

/// Parses `--wsgrpc_opt`; an unknown parameter is an error, not ignored.
pub fn parse_parameter(parameter: &str) -> Result<Options, String> {
    let mut options = Options::default();
    let mut typescript_options = typescript::Options::default();
    for item in parameter
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        match item.split_once('=') {
            None if item == "rust" => options.rust = true,
            None if item == "typescript" => options.typescript = true,
            Some(("import_extension", value)) => {
                typescript_options.import_extension = match value {
                    "none" | "" => String::new(),
                    ext if ext.starts_with('.') => ext.to_owned(),
                    ext => format!(".{ext}"),
                };
            }
            _ => {
                return Err(format!(
                    "protoc-gen-wsgrpc: unknown parameter `{item}` (known: rust, typescript, import_extension=EXT)"
                ));
            }
        }
    }
    if !options.rust && !options.typescript {
        options.rust = true;
        options.typescript = true;
    }
    options.typescript_options = typescript_options;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_choose_outputs() {
        let both = parse_parameter("").unwrap();
        assert!(both.rust && both.typescript);
        let rust = parse_parameter("rust").unwrap();
        assert!(rust.rust && !rust.typescript);
        let ts = parse_parameter("typescript, import_extension=none").unwrap();
        assert!(!ts.rust && ts.typescript);
        assert_eq!(ts.typescript_options.import_extension, "");
    }

    #[test]
    fn an_unknown_parameter_is_an_error_in_the_response() {
        let request = CodeGeneratorRequest {
            parameter: Some("rust,colour=blue".into()),
            ..CodeGeneratorRequest::default()
        };
        let response = execute(&request.encode_to_vec());
        assert!(
            response.error().contains("unknown parameter `colour=blue`"),
            "{}",
            response.error()
        );
        assert!(response.file.is_empty());
    }

    #[test]
    fn garbage_input_is_an_error_not_a_panic() {
        let response = execute(&[0xff, 0xff, 0xff]);
        assert!(response.error().contains("invalid CodeGeneratorRequest"));
    }

    #[test]
    fn a_file_without_a_descriptor_is_an_error() {
        let request = CodeGeneratorRequest {
            file_to_generate: vec!["missing.proto".into()],
            ..CodeGeneratorRequest::default()
        };
        let response = execute(&request.encode_to_vec());
        assert!(
            response.error().contains("missing.proto"),
            "{}",
            response.error()
        );
    }
}
