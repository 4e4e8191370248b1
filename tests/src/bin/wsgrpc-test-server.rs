//! The test backend and a bridge in front of it, for the TypeScript tests.
//!
//! Prints `READY bridge=ws://…/ws grpc=http://…` once both listen.

use std::net::SocketAddr;

use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const USAGE: &str = "Usage: wsgrpc-test-server [--bridge-addr ADDR] [--grpc-addr ADDR]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut bridge_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--bridge-addr" => bridge_addr = value.parse()?,
            "--grpc-addr" => grpc_addr = value.parse()?,
            _ => return Err(USAGE.into()),
        }
    }
    let backend = RunningBackend::start(grpc_addr).await?;
    let bridge = RunningBridge::start(test_bridge(&backend.uri()), bridge_addr).await?;
    println!("READY bridge={} grpc={}", bridge.url(), backend.uri());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
