//! The example service of the original WebSocket bridge article, in Rust:
//! a tonic implementation of `example.ExampleService` and the generated
//! bridge table that lets browsers call it over a WebSocket.
//!
//! [`auth::token_auth`] is a shared-secret authenticator for the bridge; the
//! service greets the user it forwards.
//!
//! Run with `cargo run -p wsgrpc-example`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use tonic::{Request, Response, Status, Streaming};

pub mod auth;

pub use auth::token_auth;

/// The generated code for the `example` package: messages, the tonic
/// server and `example_service_bridge`.
pub mod proto {
    wsgrpc_runtime::include_proto!("example");
}

use proto::example_service_server::ExampleService;
use proto::*;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The service. Cloning shares its counters.
#[derive(Debug, Clone)]
pub struct ExampleServer {
    stream_interval: Duration,
    streams_cancelled: Arc<AtomicU64>,
}

impl Default for ExampleServer {
    fn default() -> Self {
        Self {
            stream_interval: Duration::from_millis(100),
            streams_cancelled: Arc::default(),
        }
    }
}

impl ExampleServer {
    /// The pause between two messages of `StreamMessages`; default 100 ms,
    /// so that a person watching the page sees them arrive.
    pub fn with_stream_interval(mut self, interval: Duration) -> Self {
        self.stream_interval = interval;
        self
    }

    /// How many `StreamMessages` calls ended because the client went away or
    /// cancelled before the last message.
    pub fn streams_cancelled(&self) -> u64 {
        self.streams_cancelled.load(Ordering::Relaxed)
    }

    pub fn into_service(self) -> proto::example_service_server::ExampleServiceServer<Self> {
        proto::example_service_server::ExampleServiceServer::new(self)
    }
}

/// Counts a stream as cancelled when it is dropped before its last message.
struct CancelWatch {
    finished: bool,
    cancelled: Arc<AtomicU64>,
}

impl CancelWatch {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if !self.finished {
            let total = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(total, "StreamMessages cancelled by the client");
        }
    }
}

#[tonic::async_trait]
impl ExampleService for ExampleServer {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        // Set by an authenticating bridge; absent without one, and then the
        // reply stays exactly `Hello {name}`.
        let user = request
            .metadata()
            .get(auth::USER_ID_KEY)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let name = request.into_inner().name;
        let message = match user {
            Some(user) => format!("Hello {name} (signed in as {user})"),
            None => format!("Hello {name}"),
        };
        Ok(Response::new(HelloResponse { message }))
    }

    type StreamMessagesStream = ResponseStream<StreamResponse>;

    async fn stream_messages(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::StreamMessagesStream>, Status> {
        let StreamRequest { message, count } = request.into_inner();
        if count < 0 {
            return Err(Status::invalid_argument("count must not be negative"));
        }
        let interval = self.stream_interval;
        let watch = CancelWatch {
            finished: false,
            cancelled: self.streams_cancelled.clone(),
        };
        let stream = stream::unfold((0, watch), move |(index, watch)| {
            let message = message.clone();
            async move {
                if index >= count {
                    watch.finish();
                    return None;
                }
                if index > 0 && !interval.is_zero() {
                    tokio::time::sleep(interval).await;
                }
                Some((Ok(StreamResponse { message, index }), (index + 1, watch)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn collect_messages(
        &self,
        request: Request<Streaming<CollectRequest>>,
    ) -> Result<Response<CollectResponse>, Status> {
        let mut requests = request.into_inner();
        let mut messages = Vec::new();
        while let Some(request) = requests.next().await {
            messages.push(request?.message);
        }
        Ok(Response::new(CollectResponse {
            count: messages.len() as i32,
            joined: messages.join(" "),
        }))
    }

    type ChatStream = ResponseStream<ChatMessage>;

    async fn chat(
        &self,
        request: Request<Streaming<ChatMessage>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let replies = request.into_inner().map(|message| {
            let message = message?;
            Ok(ChatMessage {
                text: format!("echo: {}", message.text),
                seq: message.seq,
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }
}
