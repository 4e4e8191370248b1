//! A real tonic backend and a real bridge on loopback, for the tests of the
//! generated code, the bridge and the TypeScript client.

use std::collections::HashMap;

use prost::Message as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wsgrpc_runtime::{AllowedOrigins, Bridge, BridgeBuilder};

pub mod backend;
pub mod client;
pub mod mirror;
pub mod process;

/// `wsgrpc.test.v1`: the test service.
pub mod test_v1 {
    wsgrpc_runtime::include_proto!("wsgrpc.test.v1");
}

/// The rich fixture: every field shape, two packages, keyword names.
pub mod rich {
    pub mod common {
        pub mod v1 {
            wsgrpc_runtime::include_proto!("rich.common.v1");
        }
    }
    pub mod shop {
        pub mod v1 {
            wsgrpc_runtime::include_proto!("rich.shop.v1");
        }
    }
}

pub use backend::TestBackend;

use rich::common::v1 as common;
use rich::shop::v1 as shop;

fn string_value(text: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(text.into())),
    }
}

/// An amount in euros.
pub fn money(units: i64) -> common::Money {
    common::Money {
        currency_code: "EUR".into(),
        units,
        nanos: 500_000_000,
    }
}

/// An order with every field of the rich fixture set, most at an edge.
pub fn full_order() -> shop::Order {
    let line = shop::order::Line {
        sku: "sku-1".into(),
        quantity: 3,
        price: Some(money(2)),
    };
    shop::Order {
        id: "o-1".into(),
        state: shop::order::State::Shipped as i32,
        lines: vec![line.clone()],
        totals_by_currency: HashMap::from([("EUR".into(), money(6))]),
        lines_by_number: HashMap::from([(-7, line.clone())]),
        payment: Some(shop::order::Payment::Voucher(vec![0, 1, 2, 250])),
        note: Some(String::new()),
        scalars: Some(shop::Scalars {
            f_double: 1.5,
            f_float: -0.25,
            f_int32: -32,
            f_int64: -9_007_199_254_740_993,
            f_uint32: 32,
            f_uint64: u64::MAX,
            f_sint32: -1,
            f_sint64: i64::MIN,
            f_fixed32: 7,
            f_fixed64: 1 << 60,
            f_sfixed32: -7,
            f_sfixed64: -(1 << 60),
            f_bool: true,
            f_string: "ünïcödé \"quoted\"".into(),
            f_bytes: b"\xff\x00bytes".to_vec(),
            r_int64: vec![1, -2, i64::MAX],
            r_double: vec![0.5, -1e300],
            o_uint64: Some(0),
            m_bool_bytes: HashMap::from([(true, vec![1]), (false, vec![])]),
        }),
        well_known: Some(shop::WellKnown {
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            ttl: Some(prost_types::Duration {
                seconds: 90,
                nanos: 500_000_000,
            }),
            attributes: Some(prost_types::Struct {
                fields: [("color".to_owned(), string_value("red"))].into(),
            }),
            any_value: Some(prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(2.5)),
            }),
            list: Some(prost_types::ListValue {
                values: vec![
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::BoolValue(true)),
                    },
                    string_value("x"),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::NullValue(0)),
                    },
                ],
            }),
            maybe_name: Some(String::new()),
            maybe_count: Some(i64::MAX),
            maybe_flag: Some(false),
            maybe_bytes: Some(vec![9, 9]),
            maybe_ratio: Some(0.75),
            mask: Some(prost_types::FieldMask {
                paths: vec!["scalars.f_int64".into(), "note".into()],
            }),
            nothing: Some(()),
            payload: Some(prost_types::Any {
                type_url: "type.googleapis.com/rich.common.v1.Money".into(),
                value: money(7).encode_to_vec(),
            }),
            maybe_float: Some(f32::NAN),
            maybe_int32: Some(i32::MIN),
            maybe_uint32: Some(u32::MAX),
            maybe_uint64: Some(u64::MAX),
            values: vec![prost_types::Value {
                kind: Some(prost_types::value::Kind::NullValue(0)),
            }],
            history: vec![prost_types::Timestamp {
                seconds: -62_135_596_800,
                nanos: 0,
            }],
        }),
        keywords: Some(shop::Keywords {
            r#type: "t".into(),
            r#fn: "f".into(),
            self_: 1,
            r#async: true,
            r#match: "m".into(),
            function: "fun".into(),
            default: "d".into(),
            constructor: "c".into(),
        }),
        maps: Some(shop::Maps {
            by_int32: HashMap::from([(i32::MIN, "min".into())]),
            by_uint32: HashMap::from([(u32::MAX, 0.5)]),
            by_uint64: HashMap::from([(u64::MAX, f32::INFINITY)]),
            by_sint32: HashMap::from([(-1, common::Availability::InStock as i32)]),
            by_sint64: HashMap::from([(i64::MIN, vec![1, 2])]),
            by_fixed32: HashMap::from([(0, true)]),
            by_fixed64: HashMap::from([(u64::MAX, -1)]),
            by_sfixed32: HashMap::from([(-5, 5)]),
            by_sfixed64: HashMap::from([(
                9,
                prost_types::Duration {
                    seconds: -1,
                    nanos: -1,
                },
            )]),
            by_string: HashMap::from([("".into(), string_value(""))]),
            by_bool: HashMap::from([(false, money(0))]),
        }),
    }
}

/// An authenticator that names the user `?user=NAME` says (as `x-user`),
/// for tests of what one identity may do to another.
pub struct UserInQuery;

impl wsgrpc_runtime::Authenticator for UserInQuery {
    fn authenticate(
        &self,
        request: &wsgrpc_runtime::UpgradeRequest<'_>,
    ) -> Result<wsgrpc_runtime::Metadata, wsgrpc_runtime::Status> {
        let user = request
            .query("user")
            .ok_or_else(|| wsgrpc_runtime::Status::unauthenticated("no user"))?;
        Ok([("x-user".to_owned(), user)].into())
    }
}

/// The descriptor of a message of the rich fixture, from the descriptors its
/// generated code embeds (`rich.shop.v1.Order`, `rich.common.v1.Money`, …).
pub fn rich_message(full_name: &str) -> wsgrpc_runtime::prost_reflect::MessageDescriptor {
    wsgrpc_runtime::Descriptors::new(rich::shop::v1::FILE_DESCRIPTOR_SET)
        .pool()
        .get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("the rich fixture has no message `{full_name}`"))
}

/// A running gRPC backend (both services) on loopback, on a runtime of its
/// own so that stopping it closes every connection, as a crash would.
#[derive(Debug)]
pub struct RunningBackend {
    pub addr: SocketAddr,
    pub backend: TestBackend,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningBackend {
    /// Serves the test service and the example service on `addr` (port 0
    /// for any free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let backend = TestBackend::default();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = backend.clone().into_service();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the backend");
            runtime.block_on(async move {
                let listener = match TcpListener::bind(addr).await {
                    Ok(listener) => listener,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let _ = ready_tx.send(listener.local_addr());
                let example = wsgrpc_example::ExampleServer::default()
                    .with_stream_interval(Duration::ZERO)
                    .into_service();
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                let server = tonic::transport::Server::builder()
                    .add_service(service)
                    .add_service(example)
                    .serve_with_incoming(incoming);
                tokio::select! {
                    _ = server => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task with it.
            runtime.shutdown_background();
        });
        let addr = ready_rx.await.map_err(std::io::Error::other)??;
        Ok(Self {
            addr,
            backend,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the backend abruptly: the listener and every connection close.
    pub fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningBackend {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A bridge in front of the test and example services, with settings that
/// the protocol's test vectors assume: any origin, 4 calls per connection,
/// 64 KiB frames.
pub fn test_bridge(backend_uri: &str) -> BridgeBuilder {
    with_test_settings(Bridge::builder())
        .backend_uri(backend_uri)
        .service(test_v1::test_service_bridge::service())
        .service(wsgrpc_example::proto::example_service_bridge::service())
}

/// A bridge with the settings of [`test_bridge`] whose services are those
/// that a FileDescriptorSet written by protoc defines (the test and example
/// services), as wsgrpc-bridge loads them, without generated code.
pub fn descriptor_set_bridge(backend_uri: &str) -> BridgeBuilder {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = protoc_descriptor_set(
        dir.path(),
        "proto",
        &["wsgrpc/test/v1/test.proto", "example.proto"],
    );
    let pool = wsgrpc_bridge::descriptors::read_pool(&path).expect("protoc's set loads");
    let services = wsgrpc_bridge::descriptors::services(&pool, &[]).expect("it has services");
    let table = wsgrpc_runtime::ServiceTable::new();
    table.replace(services);
    with_test_settings(Bridge::builder())
        .backend_uri(backend_uri)
        .service_table(table)
}

/// Writes the descriptor set of `files` (below `proto/` in the repository,
/// as `include` names it, e.g. `proto/fixtures`), imports included, with
/// the real protoc, into `dir`.
pub fn protoc_descriptor_set(
    dir: &std::path::Path,
    include: &str,
    files: &[&str],
) -> std::path::PathBuf {
    let out = dir.join("api.binpb");
    let include = format!("{}/../{include}", env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("protoc")
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg(format!("-I{include}"))
        .args(files)
        .status()
        .expect("protoc runs (scripts/test installs it)");
    assert!(status.success(), "protoc failed");
    out
}

fn with_test_settings(builder: BridgeBuilder) -> BridgeBuilder {
    builder
        .allowed_origins(AllowedOrigins::Any)
        .max_calls_per_connection(4)
        .max_frame_size(64 * 1024)
}

/// A running bridge on loopback.
#[derive(Debug)]
pub struct RunningBridge {
    pub addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningBridge {
    pub async fn start(builder: BridgeBuilder, addr: SocketAddr) -> std::io::Result<Self> {
        let bridge = builder.build().map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(bridge.serve_with(listener, std::future::pending()));
        Ok(Self { addr, task })
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn kill(self) {
        self.task.abort();
    }
}
