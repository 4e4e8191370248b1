//! The table of a socket's open calls: starting a call's task, ending
//! calls, and forgetting those that have ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tonic::{Code, Status};
use tracing::Instrument;

use super::Connection;
use crate::call::{self, CallSpec, Finish};
use crate::envelope::Protocol;
use crate::flow::{CallRequests, CallWindow, RequestWindows, ResponseWindow};
use crate::outbox::Outbox;
use crate::service::Route;
use crate::untrusted::{Untrusted, bounded_message};

/// A call the connection has started and not yet seen end.
pub(super) struct OpenCall {
    pub(super) route: Arc<Route>,
    pub(super) method_echo: String,
    /// Further request messages; `None` once the client half-closed or
    /// where the method takes one request.
    pub(super) requests: Option<RequestQueue>,
    /// v2: the stream responses the client takes, where it said.
    pub(super) window: Option<ResponseWindow>,
    task: AbortHandle,
    finish: Finish,
}

/// Where further request messages of a client-streaming call go, each with
/// what it cost the client's windows.
pub(super) struct RequestQueue {
    pub(super) sender: mpsc::UnboundedSender<(Bytes, u64)>,
    /// What the client may still send.
    pub(super) window: CallWindow,
    /// Set before the queue is dropped by a half-close.
    half_closed: Arc<AtomicBool>,
}

impl RequestQueue {
    pub(super) fn half_close(self) {
        self.half_closed.store(true, Ordering::Release);
    }
}

/// The backend's end of a call's request queue. What it leaves untaken
/// when the call ends goes back to the socket's window, so that the
/// client's count and the bridge's agree.
struct QueueEnd {
    receiver: mpsc::UnboundedReceiver<(Bytes, u64)>,
    credit: Option<CallRequests>,
    socket: Option<(Arc<RequestWindows>, Outbox)>,
}

impl Drop for QueueEnd {
    fn drop(&mut self) {
        let Some((windows, out)) = &self.socket else {
            return;
        };
        self.receiver.close();
        while let Ok((_, cost)) = self.receiver.try_recv() {
            windows.give_back(cost, out);
        }
    }
}

impl Connection {
    /// Spawns the call's task and remembers the call.
    pub(super) fn start(&mut self, spec: CallSpec, first: Option<Bytes>, half_closed: bool) {
        let id = spec.id.clone();
        let route = spec.route.clone();
        let method_echo = spec.method_echo.clone();
        let window = spec.window.clone();
        let finish = Finish::default();
        let first = stream::iter(first);
        let (requests, task) = if route.method.kind().client_streams() && !half_closed {
            let (sender, receiver) = mpsc::unbounded_channel();
            let (credit, window) = self.request_credit(&id);
            let queue = RequestQueue {
                sender,
                window,
                half_closed: Arc::default(),
            };
            let half_closed = queue.half_closed.clone();
            let mut end = QueueEnd {
                receiver,
                credit,
                socket: self
                    .windows
                    .as_ref()
                    .map(|windows| (windows.requests.clone(), self.out.clone())),
            };
            // The input ends only where the client half-closed it. A queue
            // dropped because the call was cancelled leaves it open, so
            // that the backend learns of the cancel by the stream's reset
            // rather than by a clean end of input that completes the call.
            let more = stream::poll_fn(move |cx| match end.receiver.poll_recv(cx) {
                Poll::Ready(None) if !half_closed.load(Ordering::Acquire) => Poll::Pending,
                Poll::Ready(Some((message, cost))) => {
                    if let Some(credit) = &mut end.credit {
                        credit.took(cost);
                    }
                    Poll::Ready(Some(message))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            });
            (
                Some(queue),
                self.spawn(spec, first.chain(more), finish.clone()),
            )
        } else {
            (None, self.spawn(spec, first, finish.clone()))
        };
        let call = OpenCall {
            route,
            method_echo,
            requests,
            window,
            task,
            finish,
        };
        self.calls.insert(id, call);
    }

    /// What a new client-streaming call's client may send, and the credit
    /// that gives it more: in bytes where the socket counts bytes, in
    /// messages otherwise (v1 counts them too, without telling the client).
    fn request_credit(&self, id: &str) -> (Option<CallRequests>, CallWindow) {
        let queue = self.shared.config.call_queue_messages;
        match (&self.windows, self.protocol) {
            (Some(windows), _) => {
                let first = self.shared.config.window_bytes;
                let (credit, window) = CallRequests::bytes(
                    id.to_owned(),
                    self.out.clone(),
                    windows.requests.clone(),
                    first,
                );
                (Some(credit), window)
            }
            (None, Protocol::V2) => {
                let (credit, window) =
                    CallRequests::messages(id.to_owned(), self.out.clone(), queue);
                (Some(credit), window)
            }
            (None, _) => {
                let (credit, window) = CallRequests::silent(self.out.clone(), queue);
                (Some(credit), window)
            }
        }
    }

    fn spawn(
        &self,
        spec: CallSpec,
        requests: impl futures_util::Stream<Item = Bytes> + Send + 'static,
        finish: Finish,
    ) -> AbortHandle {
        let span = tracing::info_span!(
            "call",
            id = %Untrusted(&spec.id),
            method = %spec.route.full_name,
            trace_id = tracing::field::Empty,
        );
        // The page's trace context (W3C `traceparent`) goes to the backend
        // as metadata; the call's span carries its trace id, so that the
        // bridge's log lines join the trace.
        if let Some(trace_id) = spec
            .metadata
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(trace_id)
        {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        span.in_scope(|| tracing::debug!("call opened"));
        let in_flight = self.shared.metrics.in_flight(&spec.route.full_name);
        let task = call::run(
            spec,
            requests,
            self.shared.clone(),
            self.out.clone(),
            finish,
            in_flight,
            self.out.running(),
        );
        tokio::spawn(task.instrument(span)).abort_handle()
    }

    /// Ends an open call with `status`, cancelling it at the backend.
    pub(super) fn fail(&mut self, id: &str, status: Status) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        // Dropping the task's future resets its HTTP/2 stream, which is how
        // the backend learns of the cancellation.
        call.task.abort();
        if call.finish.claim() {
            tracing::debug!(id = %Untrusted(id), method = %call.route.full_name, code = ?status.code(), "call ended by the bridge");
            self.shared
                .metrics
                .call_ended(&call.route.full_name, status.code());
            let echo = self.protocol.method_echo(&call.method_echo);
            let status = Status::new(status.code(), bounded_message(status.message()));
            let frame = call::error_frame(id, echo, &status, None);
            self.send(frame);
        }
    }

    /// Ends every open call with `status`, telling the client.
    pub(super) fn fail_all(&mut self, status: Status) {
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in ids {
            self.fail(&id, status.clone());
        }
    }

    /// The open call with this id, forgetting it if it has already ended.
    pub(super) fn open_call(&mut self, id: &str) -> Option<&mut OpenCall> {
        if self
            .calls
            .get(id)
            .is_some_and(|call| call.finish.is_claimed())
        {
            self.calls.remove(id);
        }
        self.calls.get_mut(id)
    }

    pub(super) fn reap_finished(&mut self) {
        if self.calls.len() >= self.shared.config.max_calls_per_connection {
            self.calls.retain(|_, call| !call.finish.is_claimed());
        }
    }

    /// Whether a unary or client-streaming call is still running; those are
    /// let finish when the bridge shuts down.
    pub(super) fn has_unary_calls(&mut self) -> bool {
        self.calls.retain(|_, call| !call.finish.is_claimed());
        self.calls
            .values()
            .any(|call| !call.route.method.kind().server_streams())
    }

    /// Whether any call is still running.
    pub(super) fn has_calls(&mut self) -> bool {
        self.calls.retain(|_, call| !call.finish.is_claimed());
        !self.calls.is_empty()
    }

    /// Cancels every open call at the backend; the client is gone.
    pub(super) fn cancel_all(&mut self) {
        for (_, call) in self.calls.drain() {
            call.task.abort();
            if call.finish.claim() {
                self.shared
                    .metrics
                    .call_ended(&call.route.full_name, Code::Cancelled);
            }
        }
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`),
/// where it is one: lower-case hex, not all zeros.
fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn a_trace_id_is_read_only_from_a_valid_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&format!("00-{id}-00f067aa0ba902b7-01")), Some(id));
        for bad in [
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
            format!("00-{id}-00f067aa0ba902b7"),
            format!("00-{id}-00f067aa0ba902b7-01-extra"),
            format!("ff-{id}-00f067aa0ba902b7-01"),
            format!("00-{id}\nFORGED-00f067aa0ba902b7-01"),
        ] {
            assert_eq!(trace_id(&bad), None, "{bad}");
        }
        // Later versions may add fields.
        assert_eq!(
            trace_id(&format!("01-{id}-00f067aa0ba902b7-01-extra")),
            Some(id)
        );
    }
}
