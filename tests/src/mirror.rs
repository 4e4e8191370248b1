//! A backend that knows no message types: `Echo` answers with the bytes it
//! received, `Replay` with the bytes it was given. With it, a test controls
//! the exact protobuf the bridge reads and sees the exact protobuf the
//! bridge sent.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::TcpListener;
use tonic::codegen::{Service, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use wsgrpc_runtime::prost_reflect::MessageDescriptor;
use wsgrpc_runtime::{BytesCodec, Method, MethodKind};

/// The backend. Clones share what was received and what to answer.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    received: Option<Bytes>,
    reply: Bytes,
}

impl Mirror {
    pub const SERVICE: &'static str = "wsgrpc.test.v1.Mirror";

    /// The bridge's table: `Echo` takes and answers `message`, `Replay`
    /// takes `google.protobuf.Empty` and answers `message`.
    pub fn service(message: &MessageDescriptor) -> wsgrpc_runtime::Service {
        let empty = message
            .parent_pool()
            .get_message_by_name("google.protobuf.Empty")
            .expect("the pool has google.protobuf.Empty");
        wsgrpc_runtime::Service::new(
            Self::SERVICE,
            [
                Method::new("Echo", MethodKind::Unary, message.clone(), message.clone()),
                Method::new("Replay", MethodKind::Unary, empty, message.clone()),
            ],
        )
    }

    /// What `Replay` answers from now on.
    pub fn reply_with(&self, proto: Bytes) {
        self.lock().reply = proto;
    }

    /// The request that arrived last, taken.
    pub fn take_received(&self) -> Option<Bytes> {
        self.lock().received.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Serves the mirror on a free loopback port, on the current runtime.
    pub async fn serve(&self) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let server = tonic::transport::Server::builder()
            .add_service(self.clone())
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        Ok(addr)
    }
}

impl NamedService for Mirror {
    const NAME: &'static str = Mirror::SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<http::Request<tonic::body::Body>> for Mirror {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = MirrorCall {
            mirror: self.clone(),
            replay: request.uri().path().ends_with("/Replay"),
        };
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(BytesCodec);
            Ok(grpc.unary(call, request).await)
        })
    }
}

struct MirrorCall {
    mirror: Mirror,
    replay: bool,
}

impl UnaryService<Bytes> for MirrorCall {
    type Response = Bytes;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let received = request.into_inner();
        let mut state = self.mirror.lock();
        state.received = Some(received.clone());
        let answer = if self.replay {
            state.reply.clone()
        } else {
            received
        };
        std::future::ready(Ok(Response::new(answer)))
    }
}
