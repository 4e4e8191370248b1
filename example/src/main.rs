//! Run with `cargo run -p wsgrpc-example`.
//!
//! One process runs the example's gRPC server (port 50051), the WebSocket
//! bridge in front of it (port 50052, path `/ws`) and, on the bridge's port,
//! the built web page, so that page and socket share one origin.
//!
//! With `--token SECRET` (or `WSGRPC_TOKEN=SECRET`) every socket must
//! present that token; open the page as `http://127.0.0.1:50052/?token=SECRET`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tower_http::services::ServeDir;
use wsgrpc_example::proto::example_service_bridge;
use wsgrpc_example::{ExampleServer, token_auth};
use wsgrpc_runtime::{AllowedOrigins, Bridge};

const USAGE: &str = "\
Usage: wsgrpc-example [OPTIONS]

Options:
  --grpc-addr ADDR      gRPC server address [default: 127.0.0.1:50051]
  --bridge-addr ADDR    bridge and web page address [default: 127.0.0.1:50052]
  --backend URI         bridge to this gRPC backend instead of starting one
  --static-dir DIR      web page to serve [default: example/client/dist]
  --allow-origin URL    also accept sockets from pages of this origin (repeatable)
  --stream-interval-ms  pause between StreamMessages messages [default: 100]
  --batch-linger-us N   v2: wait up to N µs for more envelopes before sending a
                        frame [default: 0, send what is ready]
  --token SECRET        require this token on every socket: `Authorization: Bearer`,
                        `?token=` (open the page as /?token=SECRET) or the
                        `wsgrpc_token` cookie [default: $WSGRPC_TOKEN, else none]
  --idle-timeout-ms N   close a socket that sends nothing for N ms, 0 for never
                        [default: 90000]
  --ping-interval-ms N  ping each socket every N ms, 0 for never [default: 30000]
  --drain-timeout-ms N  on SIGTERM or Ctrl-C, let calls in flight finish for up
                        to N ms [default: 10000]
  --max-frame-size N    largest frame a client may send, in bytes [default: 4194304]
  -h, --help            print this help
";

struct Args {
    grpc_addr: SocketAddr,
    bridge_addr: SocketAddr,
    backend: Option<String>,
    static_dir: PathBuf,
    allowed_origins: Vec<String>,
    stream_interval: Duration,
    batch_linger: Duration,
    token: Option<String>,
    idle_timeout: Option<Option<Duration>>,
    ping_interval: Option<Option<Duration>>,
    drain_timeout: Option<Duration>,
    max_frame_size: Option<usize>,
}

/// Milliseconds, where 0 means never.
fn millis_or_never(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut args = Args {
        grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
        bridge_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
        backend: None,
        static_dir: PathBuf::from("example/client/dist"),
        allowed_origins: Vec::new(),
        stream_interval: Duration::from_millis(100),
        batch_linger: Duration::ZERO,
        token: None,
        idle_timeout: None,
        ping_interval: None,
        drain_timeout: None,
        max_frame_size: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("grpc-addr") => args.grpc_addr = parser.value()?.parse()?,
            Long("bridge-addr") => args.bridge_addr = parser.value()?.parse()?,
            Long("backend") => args.backend = Some(parser.value()?.parse()?),
            Long("static-dir") => args.static_dir = parser.value()?.parse()?,
            Long("allow-origin") => args.allowed_origins.push(parser.value()?.parse()?),
            Long("stream-interval-ms") => {
                args.stream_interval = Duration::from_millis(parser.value()?.parse()?);
            }
            Long("batch-linger-us") => {
                args.batch_linger = Duration::from_micros(parser.value()?.parse()?);
            }
            Long("token") => args.token = Some(parser.value()?.parse()?),
            Long("idle-timeout-ms") => {
                args.idle_timeout = Some(millis_or_never(parser.value()?.parse()?));
            }
            Long("ping-interval-ms") => {
                args.ping_interval = Some(millis_or_never(parser.value()?.parse()?));
            }
            Long("drain-timeout-ms") => {
                args.drain_timeout = Some(Duration::from_millis(parser.value()?.parse()?));
            }
            Long("max-frame-size") => args.max_frame_size = Some(parser.value()?.parse()?),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if args.token.is_none() {
        args.token = std::env::var("WSGRPC_TOKEN").ok();
    }
    if args.token.as_deref() == Some("") {
        return Err("the token must not be empty".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("wsgrpc-example: {err}\n\n{USAGE}");
            std::process::exit(2);
        }
    };

    let backend = match &args.backend {
        Some(uri) => uri.clone(),
        None => {
            let listener = tokio::net::TcpListener::bind(args.grpc_addr).await?;
            let addr = listener.local_addr()?;
            let service = ExampleServer::default()
                .with_stream_interval(args.stream_interval)
                .into_service();
            tokio::spawn(async move {
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                let server = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming);
                if let Err(err) = server.await {
                    tracing::error!(%err, "gRPC server failed");
                }
            });
            tracing::info!(%addr, "gRPC server listening");
            format!("http://{addr}")
        }
    };

    let origins = if args.allowed_origins.is_empty() {
        AllowedOrigins::SameOrigin
    } else {
        AllowedOrigins::List(args.allowed_origins)
    };
    let mut bridge = Bridge::builder()
        .backend_uri(backend)
        .service(example_service_bridge::service())
        .allowed_origins(origins)
        .batch_linger(args.batch_linger);
    if let Some(idle) = args.idle_timeout {
        bridge = bridge.idle_timeout(idle);
    }
    if let Some(every) = args.ping_interval {
        bridge = bridge.ping_interval(every);
    }
    if let Some(drain) = args.drain_timeout {
        bridge = bridge.drain_timeout(drain);
    }
    if let Some(bytes) = args.max_frame_size {
        bridge = bridge.max_frame_size(bytes);
    }
    let token_required = args.token.is_some();
    if let Some(token) = args.token {
        bridge = bridge.authenticator(token_auth(token));
    }
    let bridge = bridge.build()?;
    if !args.static_dir.join("index.html").exists() {
        tracing::warn!(dir = %args.static_dir.display(), "no built page; run `npm run build --workspace example/client`");
    }
    let app = bridge
        .router()
        .fallback_service(ServeDir::new(&args.static_dir));
    let listener = tokio::net::TcpListener::bind(args.bridge_addr).await?;
    let addr = listener.local_addr()?;
    println!("wsgrpc example: open http://{addr}/ (WebSocket at ws://{addr}/ws)");
    if token_required {
        // The secret itself stays out of the output.
        println!("sockets need the token: open http://{addr}/?token=<your token>");
    }
    // The page is served with the same limits and drain as the socket.
    bridge
        .serve_router(listener, app, wsgrpc_runtime::shutdown_signal())
        .await?;
    Ok(())
}
