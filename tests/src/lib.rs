//! A real tonic backend and a real bridge on loopback, for the tests of the
//! generated code, the bridge and the TypeScript client.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wsgrpc_runtime::{AllowedOrigins, Bridge, BridgeBuilder};

pub mod backend;
pub mod client;

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
    Bridge::builder()
        .backend_uri(backend_uri)
        .service(test_v1::test_service_bridge::service())
        .service(wsgrpc_example::proto::example_service_bridge::service())
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
