//! The protoc plugin: a `CodeGeneratorRequest` in, a `CodeGeneratorResponse`
//! out. `protoc-gen-wsgrpc` only moves the bytes.
//!
//! The parameter (`--wsgrpc_opt=a,b=c`) is parsed into [`Options`], which
//! lists what it may hold.

use prost::Message;
use prost_types::compiler::code_generator_response::{Feature, File};
use prost_types::compiler::{CodeGeneratorRequest, CodeGeneratorResponse};

use crate::Options;
use crate::error::report;

/// Runs the plugin on an encoded request. Every failure is reported in the
/// response's `error`, as protoc expects, never by panicking.
///
/// ```
/// use prost::Message;
/// use prost_types::compiler::CodeGeneratorRequest;
///
/// let request = CodeGeneratorRequest {
///     parameter: Some("rust,colour=blue".into()),
///     ..CodeGeneratorRequest::default()
/// };
/// let response = wsgrpc_gen::plugin::execute(&request.encode_to_vec());
/// assert!(response.error().contains("unknown parameter `colour=blue`"));
/// ```
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
    let options: Options = request
        .parameter()
        .parse()
        .map_err(|err| format!("protoc-gen-wsgrpc: {}", report(&err)))?;
    let generated = crate::generate(
        &request.proto_file,
        &request.file_to_generate,
        &options,
        None,
    )
    // protoc shows one line: the error, and what failed under it.
    .map_err(|err| format!("protoc-gen-wsgrpc: {}", report(&err)))?;
    Ok(generated
        .into_iter()
        .map(|file| File {
            name: Some(file.name),
            content: Some(file.content),
            ..File::default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn writes_no_code_for_the_well_known_types_even_when_asked() {
        let set = crate::test_protos::parse(&[(
            "t.proto",
            "syntax = \"proto3\"; package t; import \"google/protobuf/empty.proto\"; message M {}",
        )]);
        let request = CodeGeneratorRequest {
            file_to_generate: vec!["google/protobuf/empty.proto".into(), "t.proto".into()],
            parameter: Some("rust".into()),
            proto_file: set.file,
            ..CodeGeneratorRequest::default()
        };
        let response = execute(&request.encode_to_vec());
        assert_eq!(response.error, None);
        let names: Vec<&str> = response.file.iter().map(|file| file.name()).collect();
        assert_eq!(
            names,
            ["t.rs"],
            "as the build.rs path, which uses prost-types"
        );
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
