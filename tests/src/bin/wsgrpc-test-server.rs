//! The test backend and a bridge in front of it, for the TypeScript tests.
//! With `--backend URI`, only a bridge, in front of that backend: a second
//! bridge replica sharing the first one's backend.
//!
//! `--max-connection-age-ms N` sends sockets away at that age (goaway);
//! `--expiring-tokens` lets in only tokens `USER:EXPIRY` (EXPIRY in
//! milliseconds since the epoch) while they have not run out, from
//! `Authorization: Bearer` or the `access_token` query parameter, as
//! `x-user-id: USER`.
//!
//! Prints `READY bridge=ws://…/ws grpc=http://…` (the backend it uses) once
//! everything it runs listens.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use wsgrpc_runtime::{Authenticator, Metadata, UpgradeRequest};
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const USAGE: &str = "Usage: wsgrpc-test-server [--bridge-addr ADDR] [--grpc-addr ADDR | --backend URI] [--max-calls N] [--max-connection-age-ms N] [--expiring-tokens]";

/// Tokens `USER:EXPIRY`, EXPIRY in milliseconds since the epoch: a token
/// that says when it runs out, as a signed token's `exp` does.
struct ExpiringTokens;

impl ExpiringTokens {
    fn parse(request: &UpgradeRequest<'_>) -> Result<(String, SystemTime), String> {
        let token = match request.bearer_token() {
            Some(token) => token.to_owned(),
            None => request.query("access_token").ok_or("no token")?,
        };
        let (user, expiry) = token.rsplit_once(':').ok_or("not USER:EXPIRY")?;
        let ms: u64 = expiry.parse().map_err(|_| "EXPIRY is not a number")?;
        let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        if user.is_empty() || expires <= SystemTime::now() {
            return Err("the token ran out".into());
        }
        Ok((user.to_owned(), expires))
    }
}

impl Authenticator for ExpiringTokens {
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, tonic::Status> {
        let (user, _) = Self::parse(request).map_err(tonic::Status::unauthenticated)?;
        Ok(Metadata::from([("x-user-id".to_owned(), user)]))
    }

    fn expires(&self, request: &UpgradeRequest<'_>) -> Option<SystemTime> {
        Self::parse(request).ok().map(|(_, expires)| expires)
    }
}

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
    let mut max_age = None;
    let mut expiring_tokens = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--expiring-tokens" {
            expiring_tokens = true;
            continue;
        }
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--bridge-addr" => bridge_addr = value.parse()?,
            "--grpc-addr" => grpc_addr = Some(value.parse()?),
            "--backend" => backend_uri = Some(value),
            "--max-calls" => max_calls = Some(value.parse()?),
            "--max-connection-age-ms" => max_age = Some(Duration::from_millis(value.parse()?)),
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
    if max_age.is_some() {
        builder = builder.max_connection_age(max_age);
    }
    if expiring_tokens {
        builder = builder.authenticator(ExpiringTokens);
    }
    let bridge = RunningBridge::start(builder, bridge_addr).await?;
    println!("READY bridge={} grpc={}", bridge.url(), backend_uri);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
