//! The test backend and a bridge in front of it, for the TypeScript tests.
//! With `--backend URI`, only a bridge, in front of that backend: a second
//! bridge replica sharing the first one's backend.
//!
//! Prints `READY bridge=ws://…/ws grpc=http://…` (the backend it uses) once
//! everything it runs listens.

use std::net::SocketAddr;

use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const USAGE: &str = "Usage: wsgrpc-test-server [--bridge-addr ADDR] [--grpc-addr ADDR | --backend URI] [--max-calls N]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut bridge_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut grpc_addr = None;
    let mut backend_uri = None;
    let mut max_calls = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--bridge-addr" => bridge_addr = value.parse()?,
            "--grpc-addr" => grpc_addr = Some(value.parse()?),
            "--backend" => backend_uri = Some(value),
            "--max-calls" => max_calls = Some(value.parse()?),
            _ => return Err(USAGE.into()),
        }
    }
    // Kept alive until the process ends; None when the backend is elsewhere.
    let (_backend, backend_uri) = match (backend_uri, grpc_addr) {
        (Some(_), Some(_)) => return Err(USAGE.into()),
        (Some(uri), None) => (None, uri),
        (None, grpc_addr) => {
            let addr = grpc_addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            let backend = RunningBackend::start(addr).await?;
            let uri = backend.uri();
            (Some(backend), uri)
        }
    };
    let mut builder = test_bridge(&backend_uri);
    if let Some(calls) = max_calls {
        builder = builder.max_calls_per_connection(calls);
    }
    let bridge = RunningBridge::start(builder, bridge_addr).await?;
    println!("READY bridge={} grpc={}", bridge.url(), backend_uri);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
