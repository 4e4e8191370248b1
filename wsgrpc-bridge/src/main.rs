//! `wsgrpc-bridge --backend URI (--descriptor-set FILE | --reflection)`;
//! `--help` lists every option.

use std::process::ExitCode;

use wsgrpc_bridge::Options;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = Options::from_args_and_file().and_then(|options| {
        let runtime = options.runtime()?;
        runtime.block_on(wsgrpc_bridge::run(options))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wsgrpc-bridge: {}", err.report());
            ExitCode::FAILURE
        }
    }
}
