//! Black-box attacks on the two real binaries, `wsgrpc-example` (the example
//! gRPC server and a bridge in one process) and `wsgrpc-bridge` (in front of
//! a `wsgrpc-example` process's gRPC port, its services read from a
//! descriptor set), each started as a process of its own and watched from
//! outside: its replies, its close codes, its log (stderr, and stdout where
//! today's wsgrpc-example logs), its descriptors in `/proc/PID/fd` and its
//! resident memory.
//!
//! Every attack that applies to both binaries runs against both: the test
//! `<module>::<attack>::example` and `<module>::<attack>::bridge`.
//!
//! The binaries are taken from `<workspace>/target/debug`, or from the
//! directory `WSGRPC_BIN_DIR` names (see `wsgrpc_tests::process`). `cargo
//! test` does not build them (`cargo test --workspace` builds wsgrpc-bridge
//! but not wsgrpc-example): build them first, with `cargo build -p
//! wsgrpc-example -p wsgrpc-bridge`; a binary older than its sources fails
//! the test that starts it.
//!
//! Many of these tests describe hardening that a binary may not have yet;
//! a test fails with every way the target gave in (see [`Findings`]).

mod backend;
mod drain;
mod floods;
mod http;
mod logs;
mod metadata;
mod protocol;
mod raw;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use wsgrpc_tests::process::Process;

pub use raw::Ending;

/// The token of targets started with one.
pub const TOKEN: &str = "s3cret";
pub const SAY_HELLO: &str = "example.ExampleService/SayHello";
pub const STREAM_MESSAGES: &str = "example.ExampleService/StreamMessages";
pub const COLLECT_MESSAGES: &str = "example.ExampleService/CollectMessages";

/// How long a process may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a test waits for one frame unless it says otherwise.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// The most any one attack test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(45);

/// Which binary is attacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Example,
    Bridge,
}

/// How the attacked binary is started. Each option becomes the flag of that
/// binary (`idle_timeout_ms: Some(1000)` is `--idle-timeout-ms 1000` for
/// wsgrpc-example and `--idle-timeout 1000ms` for wsgrpc-bridge); options
/// left unset pass no flag.
#[derive(Debug, Default, Clone)]
pub struct Setup {
    /// Require [`TOKEN`] on every socket.
    pub token: bool,
    pub idle_timeout_ms: Option<u64>,
    /// `Some(0)`: no pings.
    pub ping_interval_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub max_frame_size: Option<usize>,
    /// wsgrpc-bridge only: `--allowed-host`.
    pub allowed_hosts: Vec<&'static str>,
    /// wsgrpc-bridge only: `--max-unfinished-frame-bytes`.
    pub max_unfinished_frame_bytes: Option<usize>,
    /// wsgrpc-bridge only: `--backend-keepalive-interval` and
    /// `--backend-keepalive-timeout`, both this long.
    pub backend_keepalive_ms: Option<u64>,
    /// wsgrpc-bridge: this backend instead of a `wsgrpc-example` process of
    /// its own.
    pub backend_uri: Option<String>,
    /// wsgrpc-example: bridge (with `--backend`) to the gRPC server of
    /// another wsgrpc-example process, so that what the backend keeps does
    /// not count in the attacked process's memory.
    pub separate_backend: bool,
}

/// The attacked process, listening.
pub struct Target {
    pub binary: Binary,
    pub process: Process,
    /// Where it serves HTTP and WebSockets.
    pub addr: SocketAddr,
    token: bool,
    /// A `wsgrpc-example` serving gRPC to the attacked process, where there
    /// is one.
    pub backend: Option<(Process, SocketAddr)>,
    _dir: Option<tempfile::TempDir>,
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

/// The address in a log line's `addr=…` field, on the first line that
/// contains `marker`.
fn logged_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|line| line.contains(marker))
        .find_map(|line| {
            let rest = &line[line.find("addr=")? + 5..];
            rest.split_whitespace().next()?.parse().ok()
        })
}

/// A `wsgrpc-example` process serving gRPC (with `--stream-interval-ms 0`),
/// and its gRPC address.
pub async fn start_backend() -> (Process, SocketAddr) {
    let mut process = Process::start(
        "wsgrpc-example",
        &args(&[
            "--grpc-addr",
            "127.0.0.1:0",
            "--bridge-addr",
            "127.0.0.1:0",
            "--stream-interval-ms",
            "0",
        ]),
        &[],
    );
    let addr = process
        // Logged to stderr, or (today's wsgrpc-example) to stdout.
        .wait_for(START_TIMEOUT, |stdout, stderr| {
            logged_addr(stderr, "gRPC server listening")
                .or_else(|| logged_addr(stdout, "gRPC server listening"))
        })
        .await;
    (process, addr)
}

/// The address in wsgrpc-example's `open http://ADDR/` line.
fn example_bridge_addr(stdout: &str) -> Option<SocketAddr> {
    let rest = &stdout[stdout.find("open http://")? + "open http://".len()..];
    rest[..rest.find('/')?].parse().ok()
}

impl Target {
    pub async fn start(binary: Binary, setup: Setup) -> Self {
        match binary {
            Binary::Example => Self::start_example(setup).await,
            Binary::Bridge => Self::start_bridge(setup).await,
        }
    }

    async fn start_example(setup: Setup) -> Self {
        assert!(
            setup.allowed_hosts.is_empty()
                && setup.max_unfinished_frame_bytes.is_none()
                && setup.backend_keepalive_ms.is_none()
                && setup.backend_uri.is_none(),
            "an option of wsgrpc-bridge only"
        );
        let mut flags = args(&[
            "--grpc-addr",
            "127.0.0.1:0",
            "--bridge-addr",
            "127.0.0.1:0",
            "--stream-interval-ms",
            "0",
        ]);
        let mut option = |name: &str, value: String| {
            flags.push(name.to_owned());
            flags.push(value);
        };
        if setup.token {
            option("--token", TOKEN.to_owned());
        }
        if let Some(ms) = setup.idle_timeout_ms {
            option("--idle-timeout-ms", ms.to_string());
        }
        if let Some(ms) = setup.ping_interval_ms {
            option("--ping-interval-ms", ms.to_string());
        }
        if let Some(ms) = setup.drain_timeout_ms {
            option("--drain-timeout-ms", ms.to_string());
        }
        if let Some(bytes) = setup.max_frame_size {
            option("--max-frame-size", bytes.to_string());
        }
        let backend = if setup.separate_backend {
            let (process, addr) = start_backend().await;
            option("--backend", format!("http://{addr}"));
            Some((process, addr))
        } else {
            None
        };
        let mut process = Process::start("wsgrpc-example", &flags, &[]);
        let addr = process
            .wait_for(START_TIMEOUT, |stdout, _| example_bridge_addr(stdout))
            .await;
        Self {
            binary: Binary::Example,
            process,
            addr,
            token: setup.token,
            backend,
            _dir: None,
        }
    }

    async fn start_bridge(setup: Setup) -> Self {
        assert!(!setup.separate_backend, "an option of wsgrpc-example only");
        let (backend, uri) = match setup.backend_uri {
            Some(uri) => (None, uri),
            None => {
                let (process, addr) = start_backend().await;
                (Some((process, addr)), format!("http://{addr}"))
            }
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The set protoc would write for proto/example.proto, which the
        // generated code embeds: no protoc needed.
        let set = dir.path().join("example.binpb");
        std::fs::write(&set, wsgrpc_example::proto::FILE_DESCRIPTOR_SET)
            .expect("writes the descriptor set");
        let mut flags = args(&["--listen", "127.0.0.1:0", "--backend", &uri]);
        let mut env = Vec::new();
        let mut option = |name: &str, value: String| {
            flags.push(name.to_owned());
            flags.push(value);
        };
        option("--descriptor-set", set.display().to_string());
        if setup.token {
            option("--token-env", "WSGRPC_ATTACK_TOKEN".to_owned());
            env.push(("WSGRPC_ATTACK_TOKEN".to_owned(), TOKEN.to_owned()));
        }
        if let Some(ms) = setup.idle_timeout_ms {
            option("--idle-timeout", format!("{ms}ms"));
        }
        if let Some(ms) = setup.ping_interval_ms {
            let every = if ms == 0 {
                "off".to_owned()
            } else {
                format!("{ms}ms")
            };
            option("--ping-interval", every);
        }
        if let Some(ms) = setup.drain_timeout_ms {
            option("--drain-timeout", format!("{ms}ms"));
        }
        if let Some(bytes) = setup.max_frame_size {
            option("--max-frame-size", bytes.to_string());
        }
        if let Some(bytes) = setup.max_unfinished_frame_bytes {
            option("--max-unfinished-frame-bytes", bytes.to_string());
        }
        for host in &setup.allowed_hosts {
            option("--allowed-host", (*host).to_owned());
        }
        if let Some(ms) = setup.backend_keepalive_ms {
            option("--backend-keepalive-interval", format!("{ms}ms"));
            option("--backend-keepalive-timeout", format!("{ms}ms"));
        }
        let mut process = Process::start("wsgrpc-bridge", &flags, &env);
        let addr = process
            .wait_for(START_TIMEOUT, |_, stderr| {
                logged_addr(stderr, "bridge listening")
            })
            .await;
        Self {
            binary: Binary::Bridge,
            process,
            addr,
            token: setup.token,
            backend,
            _dir: Some(dir),
        }
    }

    /// The query that carries the token, if the target wants one.
    pub fn token_query(&self) -> String {
        match (self.token, self.binary) {
            (false, _) => String::new(),
            (true, Binary::Example) => format!("?token={TOKEN}"),
            (true, Binary::Bridge) => format!("?access_token={TOKEN}"),
        }
    }

    /// The WebSocket endpoint's path, with the token if needed.
    pub fn ws_path(&self) -> String {
        format!("/ws{}", self.token_query())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.ws_path())
    }

    /// A v1 client.
    pub async fn client(&self) -> Result<Client, String> {
        Client::connect(self.ws_url()).await
    }

    /// One SayHello on a socket of its own, so that the backend channel is
    /// connected before anything is measured.
    pub async fn warm_up(&self) {
        let mut client = self.client().await.expect("the warm-up client connects");
        let reply = client
            .call(say_hello("warm-up", "warm"), FRAME_TIMEOUT)
            .await
            .expect("the warm-up call answers");
        assert!(
            reply["code"].is_null(),
            "the warm-up call failed: {reply}\n{}",
            self.process.log_tail(2000)
        );
        client.close().await;
    }
}

/// A `SayHello` request envelope.
pub fn say_hello(id: &str, name: &str) -> Value {
    json!({"type": "request", "id": id, "method": SAY_HELLO, "payload": {"name": name}})
}

/// Whether a frame ended its call successfully with a greeting.
pub fn greeted(frame: &Value) -> bool {
    frame["code"].is_null()
        && frame["payload"]["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("Hello"))
}

/// A WebSocket client whose every step returns what went wrong instead of
/// panicking, so that one test can record several findings.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(request: impl IntoClientRequest + Unpin) -> Result<Self, String> {
        match tokio::time::timeout(
            FRAME_TIMEOUT,
            connect_async_with_config(request, None, true),
        )
        .await
        {
            Ok(Ok((socket, _))) => Ok(Self { socket }),
            Ok(Err(err)) => Err(format!("the upgrade failed: {err}")),
            Err(_) => Err("the upgrade took longer than 5 s".into()),
        }
    }

    pub async fn send(&mut self, envelope: &Value) -> Result<(), String> {
        self.send_text(envelope.to_string()).await
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|err| format!("sending failed: {err}"))
    }

    /// The next text frame as JSON, or how the socket ended.
    pub async fn next(&mut self, within: Duration) -> Result<Value, Ending> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Err(Ending::TimedOut),
                Ok(None) => return Err(Ending::Dropped("end of stream".into())),
                Ok(Some(Err(err))) => return Err(Ending::Dropped(err.to_string())),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return serde_json::from_str(&text)
                        .map_err(|err| Ending::Dropped(format!("not JSON ({err}): {text}")));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(Ending::Close(frame.map(|frame| u16::from(frame.code))));
                }
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    return Err(Ending::Dropped(format!("a binary frame: {bytes:?}")));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Frames until the one that ends call `id` (`end: true`) or refuses a
    /// frame of it (`type: error`); frames of other calls are skipped.
    pub async fn reply(&mut self, id: &str, within: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Ok(frame)
                    if frame["id"] == id && (frame["end"] == true || frame["type"] == "error") =>
                {
                    return Ok(frame);
                }
                Ok(_) => {}
                Err(ending) => {
                    return Err(format!(
                        "no reply to call `{id}` within {within:?}: {ending:?}"
                    ));
                }
            }
        }
    }

    /// Sends a request envelope and waits for the frame that ends it.
    pub async fn call(&mut self, request: Value, within: Duration) -> Result<Value, String> {
        let id = request["id"]
            .as_str()
            .expect("the request has an id")
            .to_owned();
        self.send(&request).await?;
        self.reply(&id, within).await
    }

    /// Reads until the socket ends, skipping text frames.
    pub async fn ending(&mut self, within: Duration) -> Ending {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(ending) = self.next(left).await {
                return ending;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// What an attack found wrong; the test fails with all of them at once, so
/// that one run tells every way the target gave in.
#[derive(Debug, Default)]
pub struct Findings(Vec<String>);

impl Findings {
    pub fn check(&mut self, ok: bool, finding: impl FnOnce() -> String) {
        if !ok {
            self.0.push(finding());
        }
    }

    pub fn add(&mut self, finding: impl Into<String>) {
        self.0.push(finding.into());
    }

    /// Fails with every finding, and the end of the target's log.
    pub fn finish(self, target: &Target) {
        if !self.0.is_empty() {
            panic!(
                "{:?} gave in to the attack:\n- {}\n--- the end of its log ---\n{}",
                target.binary,
                self.0.join("\n- "),
                target.process.log_tail(1500)
            );
        }
    }
}

/// Runs an attack within [`TEST_TIMEOUT`].
pub async fn bounded(attack: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, attack)
        .await
        .expect("the attack test took longer than its time limit");
}

/// Two tests of one attack, `…::example` and `…::bridge`: the attack
/// `async fn $attack(binary: Binary)` of the enclosing module, against each
/// binary.
macro_rules! on_both_binaries {
    ($attack:ident) => {
        mod $attack {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn example() {
                $crate::bounded(super::$attack($crate::Binary::Example)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bridge() {
                $crate::bounded(super::$attack($crate::Binary::Bridge)).await;
            }
        }
    };
}
pub(crate) use on_both_binaries;
