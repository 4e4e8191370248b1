//! `protoc --wsgrpc_out=OUT --wsgrpc_opt=… file.proto`
//!
//! Reads a `CodeGeneratorRequest` from stdin and writes the response to
//! stdout; all the work is in `wsgrpc_gen::plugin`.

use std::io::{Read, Write};
use std::process::ExitCode;

use prost::Message;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("protoc-gen-wsgrpc {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut request = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut request) {
        eprintln!("protoc-gen-wsgrpc: reading the request: {err}");
        return ExitCode::FAILURE;
    }
    let response = wsgrpc_gen::plugin::execute(&request).encode_to_vec();
    if let Err(err) = std::io::stdout().write_all(&response) {
        eprintln!("protoc-gen-wsgrpc: writing the response: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
