//! One call: its exchange with the backend, run as a task of its own, and
//! the frames it sends back to the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::backend::Backend;
use crate::envelope::{LEGACY_END_PAYLOAD, Protocol};
use crate::flow::{self, ResponseWindow};
use crate::frame::{Response, ServerFrame, StatusFields};
use crate::json::JsonOptions;
use crate::metadata;
use crate::metadata::Metadata;
use crate::metrics::InFlight;
use crate::outbox::{Outbox, Running};
use crate::service::Route;
use crate::shared::Shared;
use crate::transcode::BytesCodec;

/// v2: the most bytes of messages one call gathers into one envelope
/// before it hands them to the writer.
const MAX_RUN_BYTES: usize = 31 << 10;

/// Whether a call's final frame has been claimed. Whoever claims it first —
/// the call's task, or the connection cancelling the call — sends it, so a
/// client sees exactly one frame with `end: true` for every call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finish(Arc<AtomicBool>);

impl Finish {
    pub(crate) fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_claimed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the client asked for, checked and resolved.
pub(crate) struct CallSpec {
    pub id: String,
    /// The method exactly as the client wrote it; every v1 response echoes it.
    pub method_echo: String,
    pub protocol: Protocol,
    pub route: Arc<Route>,
    /// How the call's responses are written: the method's options, or the
    /// form the client's settings asked for.
    pub json: JsonOptions,
    pub metadata: tonic::metadata::MetadataMap,
    pub deadline: Option<Deadline>,
    /// v2: the stream responses the client takes, where it said.
    pub window: Option<ResponseWindow>,
}

/// When a call must be over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub after: Duration,
    /// The bridge's own limit on call duration rather than the client's
    /// `timeoutMs`.
    pub bridge_limit: bool,
}

impl Deadline {
    fn exceeded(self) -> Status {
        let ms = self.after.as_millis();
        if self.bridge_limit {
            Status::deadline_exceeded(format!("call exceeded the bridge's limit of {ms} ms"))
        } else {
            Status::deadline_exceeded(format!("deadline of {ms} ms exceeded"))
        }
    }
}

impl CallSpec {
    /// What every response envelope of the call starts from.
    fn response(&self) -> Response<'_> {
        Response {
            method: self.protocol.method_echo(&self.method_echo),
            id: &self.id,
            ..Response::default()
        }
    }

    /// The envelope that ends the call with `status`.
    fn error_frame(&self, status: &Status, headers: Option<Metadata>) -> String {
        let echo = self.protocol.method_echo(&self.method_echo);
        error_frame(&self.id, echo, status, headers)
    }
}

/// The envelope that ends call `id` with `status`; `method_echo` for v1.
pub(crate) fn error_frame(
    id: &str,
    method_echo: Option<&str>,
    status: &Status,
    headers: Option<Metadata>,
) -> String {
    ServerFrame::Response(Response {
        method: method_echo,
        id,
        end: true,
        unprocessed: false,
        status: Some(StatusFields::of(status)),
        headers,
        trailers: metadata::from_grpc(status.metadata()),
    })
    .to_json()
}

/// Runs the call to its end and sends its final frame, unless the
/// connection has already ended it.
pub(crate) async fn run(
    spec: CallSpec,
    requests: impl Stream<Item = Bytes> + Send + 'static,
    shared: Arc<Shared>,
    out: Outbox,
    finish: Finish,
    in_flight: InFlight,
    running: Running,
) {
    let mut exchange = Exchange {
        spec: &spec,
        out: &out,
        headers: None,
        headers_sent: false,
        run: Vec::new(),
        run_cost: 0,
        max_envelope_bytes: shared.config.max_envelope_bytes(),
        // Two runs, each closed just past this, fill a frame.
        max_run_bytes: (shared.config.batch_bytes / 2)
            .saturating_sub(1 << 10)
            .clamp(1 << 10, MAX_RUN_BYTES),
    };
    let started = tokio::time::Instant::now();
    let channel = shared.channel.clone();
    let result = match spec.deadline {
        Some(deadline) => {
            match tokio::time::timeout(deadline.after, exchange.run(requests, channel)).await {
                Err(_) => Err(deadline.exceeded()),
                // The backend enforces `grpc-timeout` too, and may answer first.
                Ok(Err(status))
                    if status.code() == Code::Cancelled && started.elapsed() >= deadline.after =>
                {
                    Err(deadline.exceeded())
                }
                Ok(result) => result,
            }
        }
        None => exchange.run(requests, channel).await,
    };
    let result = result.map_err(unavailable_if_transport_failed);
    let headers = exchange.unsent_headers();
    let run_bytes = exchange.run_bytes();
    let run = std::mem::take(&mut exchange.run);
    drop((in_flight, running));
    if !finish.claim() {
        return;
    }
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    shared.metrics.call_ended(&spec.route.full_name, code);
    let frame = match result {
        Ok(end) => {
            tracing::debug!("call ended");
            end.into_frame(&spec, headers, run, run_bytes)
        }
        Err(status) => {
            tracing::debug!(code = ?status.code(), message = status.message(), "call failed");
            // The messages gathered before the failure still go first.
            if !run.is_empty() {
                let _ = out.send(close_run(run, run_bytes, None)).await;
            }
            spec.error_frame(&status, headers)
        }
    };
    let max = shared.config.max_envelope_bytes();
    let frame = if frame.len() > max {
        spec.error_frame(&too_large(frame.len(), max), None)
    } else {
        frame
    };
    // The client may be gone; the connection is then closing anyway.
    let _ = out.send(frame).await;
}

fn too_large(bytes: usize, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "the response takes {bytes} bytes as JSON; the bridge sends at most {max} in one envelope"
    ))
}

/// Ends a v2 run of messages: `]}`, or with what they count in `bytes`, or
/// with the call's end and trailers.
fn close_run(mut run: Vec<u8>, bytes: Option<u64>, end: Option<Option<Metadata>>) -> String {
    run.push(b']');
    if let Some(bytes) = bytes {
        run.extend_from_slice(br#","bytes":"#);
        run.extend_from_slice(bytes.to_string().as_bytes());
    }
    if let Some(trailers) = end {
        run.extend_from_slice(br#","end":true"#);
        if let Some(trailers) = trailers {
            run.extend_from_slice(br#","trailers":"#);
            serde_json::to_writer(&mut run, &trailers).expect("metadata serializes");
        }
    }
    run.push(b'}');
    // Everything in it was written by serde_json or is ASCII.
    String::from_utf8(run).expect("a run is UTF-8")
}

/// How a call that succeeded ends.
struct End {
    /// The single response of a unary or client-streaming call, as JSON.
    response: Option<String>,
    trailers: Option<Metadata>,
}

impl End {
    /// The envelope that ends the call; in v2, a stream's last messages
    /// (`run`) ride on it.
    fn into_frame(
        self,
        spec: &CallSpec,
        headers: Option<Metadata>,
        run: Vec<u8>,
        run_bytes: Option<u64>,
    ) -> String {
        if !run.is_empty() {
            return close_run(run, run_bytes, Some(self.trailers));
        }
        let frame = ServerFrame::Response(Response {
            end: true,
            headers,
            trailers: self.trailers,
            ..spec.response()
        });
        match (&self.response, spec.protocol) {
            (Some(response), _) => frame.to_json_with_payload(response),
            // Only v1 clients may look for the end in the payload.
            (None, Protocol::V1) => frame.to_json_with_payload(LEGACY_END_PAYLOAD),
            (None, Protocol::V2) => frame.to_json(),
        }
    }
}

/// Resets the call's HTTP/2 stream when the exchange is dropped before its
/// end (cancel, deadline, client gone). Dropping the response alone would
/// not: the task that pipes the request body holds the stream open too.
/// After a graceful end, cancelling is a no-op.
struct ResetOnDrop(Option<tonic::CancellationHandle>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.cancel();
        }
    }
}

struct Exchange<'a> {
    spec: &'a CallSpec,
    out: &'a Outbox,
    headers: Option<Metadata>,
    headers_sent: bool,
    /// v2: an envelope of stream messages not yet handed to the writer,
    /// open at its `payloads` array; empty when there is none.
    run: Vec<u8>,
    /// What the run's messages cost a byte window.
    run_cost: u64,
    max_run_bytes: usize,
    max_envelope_bytes: usize,
}

impl Exchange<'_> {
    async fn run(
        &mut self,
        requests: impl Stream<Item = Bytes> + Send + 'static,
        channel: Channel,
    ) -> Result<End, Status> {
        let spec = self.spec;
        let mut grpc = tonic::client::Grpc::new(Backend(channel));
        grpc.ready()
            .await
            .map_err(|err| Status::unavailable(format!("backend not ready: {err}")))?;
        let mut request = tonic::Request::new(requests);
        let _reset = ResetOnDrop(Some(request.cancellation_handle()));
        *request.metadata_mut() = spec.metadata.clone();
        if let Some(deadline) = spec.deadline {
            // Not `set_timeout`: tonic would enforce it too and report its
            // expiry as CANCELLED; the bridge enforces the deadline itself.
            request
                .metadata_mut()
                .insert("grpc-timeout", grpc_timeout(deadline.after));
        }
        let response = grpc
            .streaming(request, spec.route.path.clone(), BytesCodec)
            .await?;
        self.headers = metadata::from_grpc(response.metadata());
        let mut stream = response.into_inner();

        let kind = spec.route.method.kind();
        let mut single = None;
        // A message that was already there when the last one was handled.
        let mut ready = None;
        if spec.protocol == Protocol::V2 && kind.server_streams() {
            ready = stream.message().now_or_never();
            if ready.is_none() {
                // The backend answered but has no message yet: its headers
                // go now, in a run of none, so that the client knows the
                // call is up without waiting for the first message.
                self.open_run();
                self.flush_run().await?;
            }
        }
        loop {
            let next = match ready.take() {
                Some(next) => next,
                None => {
                    // Nothing more is there yet: what was gathered goes now.
                    self.flush_run().await?;
                    stream.message().await
                }
            };
            let Some(message) = next? else { break };
            if kind.server_streams() {
                if let Some(window) = &spec.window
                    && !window.is_open()
                {
                    // Out of credit: the client gets what is gathered, and
                    // the backend's stream is not read until it grants more,
                    // so HTTP/2 flow control holds the backend back.
                    self.flush_run().await?;
                    window.opened().await;
                }
                let written = self.send_message(&message).await?;
                if let Some(window) = &spec.window {
                    window.spend(written);
                }
            } else if single.replace(encode_response(spec, &message)?).is_some() {
                return Err(Status::internal(
                    "backend sent more than one response to a unary call",
                ));
            }
            // Polled once, without waiting: the messages that came in one
            // HTTP/2 DATA frame are all there at once. Past the window this
            // holds one message, so that a stream that has ended is seen to
            // end without waiting for credit it does not need.
            ready = stream.message().now_or_never();
        }
        if !kind.server_streams() && single.is_none() {
            return Err(Status::internal(
                "backend ended a unary call without a response",
            ));
        }
        let trailers = stream.trailers().await?;
        Ok(End {
            response: single,
            trailers: trailers.as_ref().and_then(metadata::from_grpc),
        })
    }

    /// One stream response: in v1 an envelope of its own; in v2 added to
    /// the run, which goes to the writer when it is full or when nothing
    /// more is there. Returns the length of its JSON.
    async fn send_message(&mut self, message: &[u8]) -> Result<usize, Status> {
        if self.spec.protocol == Protocol::V1 {
            let payload = encode_response(self.spec, message)?;
            let frame = ServerFrame::Response(Response {
                headers: self.unsent_headers(),
                ..self.spec.response()
            });
            self.hand_over(frame.to_json_with_payload(&payload)).await?;
            return Ok(payload.len());
        }
        if self.run.is_empty() {
            self.open_run();
        } else {
            self.run.push(b',');
        }
        let before = self.run.len();
        self.spec
            .route
            .method
            .write_response_with(message, &self.spec.json, &mut self.run)
            .map_err(|err| Status::internal(err.to_string()))?;
        let written = self.run.len() - before;
        self.run_cost += flow::cost(written);
        if self.run.len() >= self.max_run_bytes {
            self.flush_run().await?;
        }
        Ok(written)
    }

    /// `{"type":"response","id":…,"payloads":[`, with the headers on the
    /// call's first envelope.
    fn open_run(&mut self) {
        self.run.reserve(self.max_run_bytes + 256);
        self.run.extend_from_slice(br#"{"type":"response","id":"#);
        serde_json::to_writer(&mut self.run, &self.spec.id).expect("a string serializes");
        if let Some(headers) = self.unsent_headers() {
            self.run.extend_from_slice(br#","headers":"#);
            serde_json::to_writer(&mut self.run, &headers).expect("metadata serializes");
        }
        self.run.extend_from_slice(br#","payloads":["#);
    }

    async fn flush_run(&mut self) -> Result<(), Status> {
        if self.run.is_empty() {
            return Ok(());
        }
        let run = close_run(std::mem::take(&mut self.run), self.run_bytes(), None);
        self.hand_over(run).await
    }

    async fn hand_over(&self, envelope: String) -> Result<(), Status> {
        if envelope.len() > self.max_envelope_bytes {
            return Err(too_large(envelope.len(), self.max_envelope_bytes));
        }
        self.out
            .send(envelope)
            .await
            .map_err(|_| Status::cancelled("client connection closed"))
    }

    /// On a socket with byte windows, what the run's messages count, which
    /// the client gives back as credit; none otherwise.
    fn run_bytes(&mut self) -> Option<u64> {
        let cost = std::mem::take(&mut self.run_cost);
        self.spec
            .window
            .as_ref()
            .is_some_and(ResponseWindow::in_bytes)
            .then_some(cost)
    }

    /// Headers go out once, on the first frame of the call.
    fn unsent_headers(&mut self) -> Option<Metadata> {
        if self.headers_sent {
            return None;
        }
        self.headers_sent = true;
        self.headers.take()
    }
}

/// A unary or client-streaming call's response, or a v1 stream message, as
/// JSON of its own.
fn encode_response(spec: &CallSpec, message: &[u8]) -> Result<String, Status> {
    spec.route
        .method
        .response_text_with(message, &spec.json)
        .map_err(|err| Status::internal(err.to_string()))
}

/// A deadline as a `grpc-timeout` value: at most eight digits and a unit.
fn grpc_timeout(timeout: Duration) -> AsciiMetadataValue {
    const MAX: u128 = 99_999_999;
    let millis = timeout.as_millis().max(1);
    let value = if millis <= MAX {
        format!("{millis}m")
    } else {
        format!("{}S", timeout.as_secs().min(MAX as u64))
    };
    value
        .parse()
        .expect("digits and a unit are a valid header value")
}

/// tonic reports a backend connection that breaks in the middle of a call
/// as UNKNOWN; gRPC says a transport failure is UNAVAILABLE, which is also
/// what clients retry on.
fn unavailable_if_transport_failed(status: Status) -> Status {
    if status.code() != Code::Unknown {
        return status;
    }
    let mut source = std::error::Error::source(&status);
    let mut transport = status.message().starts_with("h2 protocol error");
    while let Some(err) = source {
        transport |= err.is::<std::io::Error>();
        source = err.source();
    }
    if transport {
        Status::unavailable(format!(
            "connection to the backend broke: {}",
            status.message()
        ))
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(250)), "250m");
        assert_eq!(grpc_timeout(Duration::from_micros(10)), "1m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }
}
