//! The test service: each request says what the backend does.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http_body::Body;
use tonic::codegen::{Service, http};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::test_v1::test_service_server::{TestService, TestServiceServer};
use crate::test_v1::{StatsResponse, TestRequest, TestResponse};

type ResponseStream = Pin<Box<dyn Stream<Item = Result<TestResponse, Status>> + Send>>;

/// The backend. Clones share their counters.
#[derive(Debug, Clone, Default)]
pub struct TestBackend {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    cancelled: AtomicU64,
    active: AtomicU64,
    half_closed: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    started: AtomicU64,
}

impl TestBackend {
    pub fn into_service(self) -> WatchInput<TestServiceServer<Self>> {
        WatchInput {
            counters: self.counters.clone(),
            inner: TestServiceServer::new(self),
        }
    }

    /// Streams of requests (client streaming, bidi) that the client ended
    /// with a clean END_STREAM. tonic shows a handler a reset stream as a
    /// clean end too; this counts what arrived on the wire.
    pub fn half_closed(&self) -> u64 {
        self.counters.half_closed.load(Ordering::SeqCst)
    }

    /// Calls that ended because their client went away or cancelled.
    pub fn cancelled(&self) -> u64 {
        self.counters.cancelled.load(Ordering::SeqCst)
    }

    /// Calls that reached this backend, of every kind.
    pub fn started(&self) -> u64 {
        self.counters.started.load(Ordering::SeqCst)
    }

    /// Calls running now.
    pub fn active(&self) -> u64 {
        self.counters.active.load(Ordering::SeqCst)
    }

    /// Stream responses handed to tonic, which polls for the next one only
    /// while HTTP/2 flow control lets it send.
    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::SeqCst)
    }

    /// Stream requests read.
    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::SeqCst)
    }

    fn count_sent(&self) {
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn count_received(&self) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
    }

    fn track(&self) -> CallGuard {
        self.counters.started.fetch_add(1, Ordering::SeqCst);
        self.counters.active.fetch_add(1, Ordering::SeqCst);
        CallGuard {
            counters: self.counters.clone(),
            finished: false,
        }
    }
}

/// Lives as long as a call; dropped unfinished, it counts a cancellation.
struct CallGuard {
    counters: Arc<Counters>,
    finished: bool,
}

impl CallGuard {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn failure(request: &TestRequest) -> Option<Status> {
    (request.fail_code != 0).then(|| {
        let mut status = Status::new(
            Code::from_i32(request.fail_code),
            request.fail_message.clone(),
        );
        status
            .metadata_mut()
            .insert("x-failed-by", MetadataValue::from_static("test-backend"));
        status
    })
}

fn echoed(metadata: &MetadataMap) -> std::collections::HashMap<String, String> {
    metadata
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => {
                let key = key.as_str();
                let transport =
                    key.starts_with("grpc-") || matches!(key, "te" | "content-type" | "user-agent");
                (!transport).then(|| {
                    (
                        key.to_owned(),
                        value.to_str().unwrap_or_default().to_owned(),
                    )
                })
            }
            // Binary values come back as the base64 of what arrived.
            tonic::metadata::KeyAndValueRef::Binary(key, value) => value
                .to_bytes()
                .ok()
                .map(|bytes| (key.as_str().to_owned(), BASE64_STANDARD.encode(bytes))),
        })
        .collect()
}

/// A response for `request`, carrying the echoed metadata where asked.
fn response(
    request: &TestRequest,
    index: i32,
    metadata: &std::collections::HashMap<String, String>,
) -> TestResponse {
    if request.mark_end {
        return TestResponse {
            end: true,
            ..TestResponse::default()
        };
    }
    TestResponse {
        text: request.text.clone(),
        index,
        metadata: if request.echo_metadata {
            metadata.clone()
        } else {
            Default::default()
        },
        ..TestResponse::default()
    }
}

fn with_echo_headers<T>(
    request_metadata: &std::collections::HashMap<String, String>,
    echo: bool,
    body: T,
) -> Response<T> {
    let mut response = Response::new(body);
    if echo {
        for (key, value) in request_metadata {
            if let (Ok(key), Ok(value)) = (
                format!("echo-{key}")
                    .parse::<tonic::metadata::MetadataKey<tonic::metadata::Ascii>>(),
                value.parse(),
            ) {
                response.metadata_mut().insert(key, value);
            }
        }
    }
    response
}

async fn pause(request: &TestRequest) {
    if request.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(request.delay_ms as u64)).await;
    }
}

#[tonic::async_trait]
impl TestService for TestBackend {
    async fn unary(&self, request: Request<TestRequest>) -> Result<Response<TestResponse>, Status> {
        let guard = self.track();
        let metadata = echoed(request.metadata());
        let request = request.into_inner();
        pause(&request).await;
        guard.finish();
        if let Some(status) = failure(&request) {
            return Err(status);
        }
        let body = response(&request, 0, &metadata);
        Ok(with_echo_headers(&metadata, request.echo_metadata, body))
    }

    type ServerStreamStream = ResponseStream;

    async fn server_stream(
        &self,
        request: Request<TestRequest>,
    ) -> Result<Response<ResponseStream>, Status> {
        let guard = self.track();
        let metadata = echoed(request.metadata());
        let request = request.into_inner();
        let echo = request.echo_metadata;
        let backend = self.clone();
        let stream = stream::unfold(
            (0, Some(guard), request, metadata.clone()),
            move |(index, guard, request, metadata)| {
                let backend = backend.clone();
                async move {
                    let guard = guard?;
                    if index >= request.count {
                        guard.finish();
                        return failure(&request)
                            .map(|status| (Err(status), (index, None, request, metadata)));
                    }
                    pause(&request).await;
                    let item = response(&request, index, &metadata);
                    backend.count_sent();
                    Some((Ok(item), (index + 1, Some(guard), request, metadata)))
                }
            },
        );
        Ok(with_echo_headers(
            &metadata,
            echo,
            Box::pin(stream) as ResponseStream,
        ))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<TestRequest>>,
    ) -> Result<Response<TestResponse>, Status> {
        let guard = self.track();
        let metadata = echoed(request.metadata());
        let mut requests = request.into_inner();
        let mut texts = Vec::new();
        let mut sum = 0i64;
        let mut count = 0;
        let mut last = TestRequest::default();
        while let Some(request) = requests.next().await {
            let request = request?;
            self.count_received();
            pause(&request).await;
            texts.push(request.text.clone());
            sum += request.big;
            count += 1;
            last = request;
        }
        // tonic's server reports a client's RST_STREAM(CANCEL) as a clean end
        // of the requests. Yielding once lets hyper see the reset and drop
        // this call, as it would if the handler had any work left to do; a
        // real half-close goes on to finish.
        tokio::task::yield_now().await;
        guard.finish();
        if let Some(status) = failure(&last) {
            return Err(status);
        }
        let body = TestResponse {
            text: texts.join(" "),
            index: count,
            sum,
            metadata: if last.echo_metadata {
                metadata.clone()
            } else {
                Default::default()
            },
            ..TestResponse::default()
        };
        Ok(with_echo_headers(&metadata, last.echo_metadata, body))
    }

    type BidiStream = ResponseStream;

    async fn bidi(
        &self,
        request: Request<Streaming<TestRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let guard = self.track();
        let metadata = echoed(request.metadata());
        let requests = request.into_inner();
        let backend = self.clone();
        let stream = stream::unfold(
            (
                requests,
                Some(guard),
                metadata,
                std::collections::VecDeque::new(),
            ),
            move |(mut requests, guard, metadata, mut pending)| {
                let backend = backend.clone();
                async move {
                    let guard = guard?;
                    loop {
                        if let Some(item) = pending.pop_front() {
                            backend.count_sent();
                            return Some((item, (requests, Some(guard), metadata, pending)));
                        }
                        match requests.next().await {
                            None => {
                                guard.finish();
                                return None;
                            }
                            Some(Err(status)) => {
                                return Some((Err(status), (requests, None, metadata, pending)));
                            }
                            Some(Ok(request)) => {
                                backend.count_received();
                                pause(&request).await;
                                for index in 0..request.count.max(1) {
                                    pending.push_back(Ok(response(&request, index, &metadata)));
                                }
                                if let Some(status) = failure(&request) {
                                    pending.push_back(Err(status));
                                }
                            }
                        }
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream) as ResponseStream))
    }

    async fn hang(&self, _request: Request<TestRequest>) -> Result<Response<TestResponse>, Status> {
        let _guard = self.track();
        std::future::pending::<()>().await;
        unreachable!("a pending future never completes")
    }

    async fn stats(&self, _request: Request<()>) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(StatsResponse {
            cancelled: self.cancelled(),
            active: self.active(),
            sent: self.sent(),
            received: self.received(),
        }))
    }
}

/// The test service, with an eye on how each stream of requests ends.
#[derive(Debug, Clone)]
pub struct WatchInput<S> {
    counters: Arc<Counters>,
    inner: S,
}

impl<S> NamedService for WatchInput<S>
where
    S: NamedService,
{
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<tonic::body::Body>> for WatchInput<S>
where
    S: Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path();
        let streams_requests = path.ends_with("/ClientStream") || path.ends_with("/Bidi");
        let counters = streams_requests.then(|| self.counters.clone());
        self.inner.call(request.map(|body| {
            tonic::body::Body::new(WatchedBody {
                inner: body,
                counters,
            })
        }))
    }
}

struct WatchedBody {
    inner: tonic::body::Body,
    /// Where to count a clean end; taken when counted.
    counters: Option<Arc<Counters>>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some(counters) = self.counters.take()
        {
            counters.half_closed.fetch_add(1, Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
