//! Run with `cargo run --release -p wsgrpc-bench`.
//!
//! Starts the example's tonic backend and the bridge as processes of their
//! own, then runs every workload twice in the same run: through the bridge
//! over WebSocket, and straight against the backend over gRPC. Prints a
//! table and writes `BENCHMARKS.md` and `docs/benchmarks.svg`. W1 and W2
//! also run through wsgrpc-bridge (services from a descriptor set, no
//! generated code), beside the generated bridge.
//! `--smoke` runs each workload for a moment, to keep the benchmark working.

mod echo;
mod load;
mod procfs;
mod report;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use report::{Report, Row};
use tonic::transport::{Channel, Endpoint};
use wsgrpc_bridge::config::Interval;
use wsgrpc_runtime::{AllowedOrigins, Bridge};

const USAGE: &str = "\
Usage: wsgrpc-bench [--smoke] [--only W1,W2,W3,W4] [--out DIR]
       wsgrpc-bench backend --addr ADDR
       wsgrpc-bench bridge --addr ADDR --backend URI
       wsgrpc-bench bridge-one-thread --addr ADDR --backend URI
       wsgrpc-bench ws-echo --addr ADDR";

struct Settings {
    /// Run only these workloads (W1…W4, comma-separated); figures are then
    /// not written.
    only: Option<String>,
    unary_time: Duration,
    stream_messages: i32,
    idle_sockets: Vec<usize>,
    ping_pong_time: Duration,
}

impl Settings {
    fn runs(&self, workload: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|name| name == workload))
    }

    fn full() -> Self {
        Self {
            only: None,
            unary_time: Duration::from_secs(3),
            stream_messages: 1_000_000,
            idle_sockets: vec![1_000, 10_000],
            ping_pong_time: Duration::from_secs(3),
        }
    }

    fn smoke() -> Self {
        Self {
            only: None,
            unary_time: Duration::from_millis(200),
            stream_messages: 2_000,
            idle_sockets: vec![50],
            ping_pong_time: Duration::from_millis(200),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    let mut flag = |name: &str| -> Result<String, String> {
        match (args.next(), args.next()) {
            (Some(key), Some(value)) if key == name => Ok(value),
            _ => Err(USAGE.into()),
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // The bridge on the runtime `wsgrpc-bridge --worker-threads 1` runs
    // it on, beside the default runtime.
    let runtime = if first.as_deref() == Some("bridge-one-thread") {
        wsgrpc_bridge::Options {
            worker_threads: std::num::NonZeroUsize::new(1),
            ..Default::default()
        }
        .runtime()?
    } else {
        tokio::runtime::Runtime::new()?
    };
    match first.as_deref() {
        Some("backend") => {
            let addr: SocketAddr = flag("--addr")?.parse()?;
            runtime.block_on(serve_backend(addr))
        }
        Some("bridge" | "bridge-one-thread") => {
            let addr: SocketAddr = flag("--addr")?.parse()?;
            let backend = flag("--backend")?;
            runtime.block_on(serve_bridge(addr, backend))
        }
        Some("ws-echo") => {
            let addr: SocketAddr = flag("--addr")?.parse()?;
            runtime.block_on(echo::serve(addr))
        }
        Some("dynamic-bridge") => {
            let addr: SocketAddr = flag("--addr")?.parse()?;
            let backend = flag("--backend")?;
            runtime.block_on(serve_dynamic_bridge(addr, backend))
        }
        _ => {
            let mut smoke = false;
            let mut only = None;
            let mut out = PathBuf::from(".");
            let mut rest = std::env::args().skip(1);
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--smoke" => smoke = true,
                    "--out" => out = rest.next().ok_or(USAGE)?.into(),
                    "--only" => only = Some(rest.next().ok_or(USAGE)?.to_uppercase()),
                    _ => return Err(USAGE.into()),
                }
            }
            let mut settings = if smoke {
                Settings::smoke()
            } else {
                Settings::full()
            };
            settings.only = only;
            let report = runtime.block_on(run(&settings))?;
            println!("{}", report.table());
            if smoke || settings.only.is_some() {
                println!("partial run: figures not written");
            } else {
                report.write(&out)?;
                println!("wrote {}", out.join("BENCHMARKS.md").display());
            }
            Ok(())
        }
    }
}

/// CPU `seconds` spent on `calls` calls, in µs a call.
fn micros_per_call(seconds: f64, calls: usize) -> f64 {
    seconds * 1e6 / calls.max(1) as f64
}

async fn serve_backend(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    let service = wsgrpc_example::ExampleServer::default()
        .with_stream_interval(Duration::ZERO)
        .into_service();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

async fn serve_bridge(addr: SocketAddr, backend: String) -> Result<(), Box<dyn std::error::Error>> {
    let bridge = Bridge::builder()
        .backend_uri(backend)
        .service(wsgrpc_example::proto::example_service_bridge::service())
        .allowed_origins(AllowedOrigins::Any)
        .max_connections(50_000)
        .max_calls_per_connection(1_000)
        .ping_interval(None)
        .idle_timeout(None)
        .build()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    bridge.serve_with(listener, std::future::pending()).await?;
    Ok(())
}

/// wsgrpc-bridge, as its binary runs, with the example's services from a
/// descriptor set and the settings of [`serve_bridge`].
async fn serve_dynamic_bridge(
    addr: SocketAddr,
    backend: String,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("wsgrpc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let descriptor_set = dir.join("example.binpb");
    std::fs::write(&descriptor_set, wsgrpc_example::proto::FILE_DESCRIPTOR_SET)?;
    let off = Some(Interval(None));
    let options = wsgrpc_bridge::Options {
        backend: Some(backend),
        descriptor_set: Some(descriptor_set),
        allowed_origins: vec!["*".into()],
        max_connections: Some(50_000),
        max_calls_per_connection: Some(1_000),
        ping_interval: off,
        idle_timeout: off,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    wsgrpc_bridge::serve(options, listener).await?;
    Ok(())
}

/// A child process of this binary, killed when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    fn start(args: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("unexpected first line: {line}"))?
            .parse()?;
        Ok(Self { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
}

async fn run(settings: &Settings) -> Result<Report, Box<dyn std::error::Error>> {
    let backend = Process::start(&["backend", "--addr", "127.0.0.1:0"])?;
    let backend_uri = format!("http://{}", backend.addr);
    let bridge = Process::start(&["bridge", "--addr", "127.0.0.1:0", "--backend", &backend_uri])?;
    let url = format!("ws://{}/ws", bridge.addr);
    let dynamic = Process::start(&[
        "dynamic-bridge",
        "--addr",
        "127.0.0.1:0",
        "--backend",
        &backend_uri,
    ])?;
    let dynamic_url = format!("ws://{}/ws", dynamic.addr);
    let grpc = channel(backend.addr).await?;
    let mut report = Report::new(procfs::machine());

    // Warm both paths up: connections, allocator, branch predictors.
    load::ws_unary(&url, 8, Duration::from_millis(300)).await;
    load::ws_unary(&dynamic_url, 8, Duration::from_millis(300)).await;
    load::grpc_unary(grpc.clone(), 8, Duration::from_millis(300)).await;

    let t = settings.unary_time;
    let secs = t.as_secs_f64();

    // W1: unary, three shapes.
    if settings.runs("W1") {
        let mut ws = load::ws_unary(&url, 1, t).await;
        let mut direct = load::grpc_unary(grpc.clone(), 1, t).await;
        report.unary(
            "W1 unary, 1 call at a time",
            &mut ws,
            &mut direct,
            secs,
            None,
        );
        // One WebSocket round trip with nothing behind it: the bridge's
        // floor is this plus a direct call.
        let echo = Process::start(&["ws-echo", "--addr", "127.0.0.1:0"])?;
        let echo_url = format!("ws://{}/", echo.addr);
        load::ws_unary(&echo_url, 1, Duration::from_millis(300)).await;
        let mut floor = load::ws_unary(&echo_url, 1, t).await;
        report.unary(
            "W1 floor: a WebSocket echo, no backend, 1 at a time",
            &mut floor,
            &mut direct,
            secs,
            None,
        );
        drop(echo);

        // What a call costs each process, through the bridge and direct:
        // the bridge is a tonic client and a WebSocket server in one, so
        // the direct load generator (a tonic client) and the backend (a
        // tonic server) give its cost a scale in the same run.
        let processes = [
            ("bridge", bridge.pid()),
            ("backend", backend.pid()),
            ("load generator", std::process::id()),
        ];
        let cpu_before = processes.map(|(_, pid)| procfs::cpu_seconds(pid));
        let mut ws = load::ws_unary(&url, 32, t).await;
        let cpu_bridged = processes.map(|(_, pid)| procfs::cpu_seconds(pid));
        let mut direct = load::grpc_unary(grpc.clone(), 32, t).await;
        let cpu_direct = processes.map(|(_, pid)| procfs::cpu_seconds(pid));
        let per_call_us = |before: [f64; 3], after: [f64; 3], index: usize, calls: usize| {
            micros_per_call(after[index] - before[index], calls)
        };
        let (bridged_calls, direct_calls) = (ws.count(), direct.count());
        let cpu_per_call_us = per_call_us(cpu_before, cpu_bridged, 0, bridged_calls);
        report.unary(
            "W1 unary, 32 in flight on 1 connection",
            &mut ws,
            &mut direct,
            secs,
            Some(0.6),
        );
        report.push(Row::single(
            "Bridge CPU per unary call (32 in flight)",
            cpu_per_call_us,
            "µs",
            Some(("≤ 100 µs", cpu_per_call_us <= 100.0)),
        ));
        // The same through a bridge on a current-thread runtime.
        let one_thread = Process::start(&[
            "bridge-one-thread",
            "--addr",
            "127.0.0.1:0",
            "--backend",
            &backend_uri,
        ])?;
        let one_thread_url = format!("ws://{}/ws", one_thread.addr);
        load::ws_unary(&one_thread_url, 8, Duration::from_millis(300)).await;
        let before = procfs::cpu_seconds(one_thread.pid());
        let on_one_thread = load::ws_unary(&one_thread_url, 32, t).await.count();
        let one_thread_cpu_us = micros_per_call(
            procfs::cpu_seconds(one_thread.pid()) - before,
            on_one_thread,
        );
        drop(one_thread);
        report.push(Row::compare_to(
            "default runtime",
            "W1 unary, 32 in flight: bridge on one thread vs default runtime, calls/s",
            on_one_thread as f64 / secs,
            bridged_calls as f64 / secs,
            None,
        ));
        report.push(Row::cost(
            "W1 32 in flight: CPU of the bridge per call, one thread vs default runtime",
            one_thread_cpu_us,
            cpu_per_call_us,
            "µs",
        ));
        for (index, (name, _)) in processes.iter().enumerate().skip(1) {
            let label = format!("W1 32 in flight: CPU of the {name} per call");
            report.push(Row::cost(
                &label,
                per_call_us(cpu_before, cpu_bridged, index, bridged_calls),
                per_call_us(cpu_bridged, cpu_direct, index, direct_calls),
                "µs",
            ));
        }

        let shards: Vec<_> = (0..32)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { load::ws_unary(&url, 1, t).await })
            })
            .collect();
        let mut ws = load::Latencies::default();
        for shard in shards {
            ws = ws.merge(shard.await?);
        }
        let mut direct = load::Latencies::default();
        let mut channels = Vec::new();
        for _ in 0..32 {
            channels.push(channel(backend.addr).await?);
        }
        let shards: Vec<_> = channels
            .into_iter()
            .map(|channel| tokio::spawn(load::grpc_unary(channel, 1, t)))
            .collect();
        for shard in shards {
            direct = direct.merge(shard.await?);
        }
        report.unary(
            "W1 unary, 32 connections, 1 call each",
            &mut ws,
            &mut direct,
            secs,
            None,
        );
    }
    // W2: one long server stream.
    if settings.runs("W2") {
        let processes = [
            ("bridge", bridge.pid()),
            ("backend", backend.pid()),
            ("load generator", std::process::id()),
        ];
        let messages = settings.stream_messages;
        let (direct_messages, direct_time) = load::grpc_stream(grpc.clone(), messages).await;
        assert_eq!(direct_messages, messages as usize);
        for protocol in ["v1", "v2"] {
            let cpu_before = processes.map(|(_, pid)| procfs::cpu_seconds(pid));
            let (ws_messages, ws_time) = match protocol {
                "v1" => load::ws_stream(&url, messages).await,
                _ => load::ws_stream_v2(&url, messages).await,
            };
            let cpu_after = processes.map(|(_, pid)| procfs::cpu_seconds(pid));
            assert_eq!(ws_messages, messages as usize);
            report.stream(protocol, messages, ws_time, direct_time);
            // Where the time goes on the bridge's path: every process
            // shares the two cores.
            for (index, (name, _)) in processes.iter().enumerate() {
                let per_message =
                    (cpu_after[index] - cpu_before[index]) * 1e9 / f64::from(messages);
                let target = (protocol == "v2" && *name == "bridge")
                    .then_some(("≤ 150 ns", per_message <= 150.0));
                report.push(Row::single(
                    &format!("W2 {protocol} over the bridge: CPU of the {name} per message"),
                    per_message,
                    "ns",
                    target,
                ));
            }
        }
    }
    // W1 and W2 through wsgrpc-bridge, whose services come from a
    // descriptor set at run time, beside the generated bridge.
    if settings.runs("W1") {
        for in_flight in [1, 32] {
            let generated = load::ws_unary(&url, in_flight, t).await.count() as f64 / secs;
            let loaded = load::ws_unary(&dynamic_url, in_flight, t).await.count() as f64 / secs;
            report.push(Row::compare_to(
                "generated",
                &format!(
                    "W1 unary, {in_flight} in flight: wsgrpc-bridge vs generated bridge, calls/s"
                ),
                loaded,
                generated,
                Some(0.8),
            ));
        }
    }
    if settings.runs("W2") {
        let messages = settings.stream_messages;
        let (count, generated) = load::ws_stream_v2(&url, messages).await;
        assert_eq!(count, messages as usize);
        let (count, loaded) = load::ws_stream_v2(&dynamic_url, messages).await;
        assert_eq!(count, messages as usize);
        let rate = |time: Duration| f64::from(messages) / time.as_secs_f64();
        report.push(Row::compare_to(
            "generated",
            "W2 v2 stream: wsgrpc-bridge vs generated bridge, messages/s",
            rate(loaded),
            rate(generated),
            Some(0.8),
        ));
    }
    // W4: bidi ping-pong on one call.
    if settings.runs("W4") {
        let ws_trips = load::ws_ping_pong(&url, settings.ping_pong_time).await;
        let direct_trips = load::grpc_ping_pong(grpc.clone(), settings.ping_pong_time).await;
        let pp = settings.ping_pong_time.as_secs_f64();
        report.push(Row::compare(
            "W4 bidi ping-pong, round trips/s",
            ws_trips as f64 / pp,
            direct_trips as f64 / pp,
            None,
        ));
    }
    // W3: idle sockets, then one call on each.
    if settings.runs("W3") {
        for &count in &settings.idle_sockets {
            let before = procfs::rss_kib(bridge.pid());
            let mut sockets = load::open_sockets(&url, count).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let idle = procfs::rss_kib(bridge.pid());
            load::one_call_each(&mut sockets).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let used = procfs::rss_kib(bridge.pid());
            let per_idle = (idle.saturating_sub(before)) as f64 / count as f64;
            let per_used = (used.saturating_sub(before)) as f64 / count as f64;
            let backend_connections = procfs::connections_to_port(backend.addr.port());
            report.push(Row::single(
                &format!("W3 {count} idle sockets: bridge RSS per socket"),
                per_idle,
                "KiB",
                Some(("≤ 16 KiB", per_idle <= 16.0)),
            ));
            report.push(Row::single(
                &format!("W3 {count} sockets after one call each: RSS per socket"),
                per_used,
                "KiB",
                None,
            ));
            // This process holds one channel plus 32 from W1; the bridge adds one.
            report.push(Row::single(
                &format!("W3 {count} sockets: TCP connections to the backend, all processes"),
                backend_connections as f64,
                "",
                Some(("bridge: 1", backend_connections <= 34)),
            ));
            drop(sockets);
        }
    }
    Ok(report)
}
