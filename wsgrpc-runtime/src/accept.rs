//! The HTTP side of serving: accepting TCP connections and reading their
//! requests until they become WebSockets.
//!
//! A connection costs memory from its first byte, long before an upgrade
//! is authenticated or counted against `max_connections`. So a request's
//! headers must arrive within `header_read_timeout`, and at most
//! `max_pending_connections` connections may be waiting for theirs: past
//! that, the one that has waited longest is closed. A flood of connections
//! that never finish their requests then holds a bounded amount of memory,
//! and cannot keep a client that sends its request at once from getting in.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::future::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Rejection;
use crate::receive::{Counted, Unfinished};
use crate::shared::Shared;

/// The most a connection buffers while it reads a request's headers; an
/// upgrade request with cookies is a few KiB.
const MAX_HEADER_BUFFER: usize = 64 << 10;
/// How long to wait after an accept error (out of file descriptors, say)
/// before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves HTTP on `listener` until the bridge has shut down: after the
/// shutdown starts it goes on answering (`/healthz` with 503, upgrades with
/// 503) while the sockets drain, and stops when the last one has closed.
pub(crate) async fn serve(listener: TcpListener, router: Router, shared: Arc<Shared>) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout)
        .max_buf_size(MAX_HEADER_BUFFER);
    let pending = Arc::new(Pending::new(shared.config.max_pending_connections));
    let connections = TaskTracker::new();
    // Cancelled once every socket has closed: the HTTP connections still
    // open (a health check, a client that sends nothing) are then dropped.
    let stopped = CancellationToken::new();
    let mut drained = pin!(async {
        shared.shutdown.cancelled().await;
        shared.connections.close();
        shared.connections.wait().await;
    });
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut drained => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(err) => {
                tracing::warn!(%err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let place = pending.admit(&shared);
        let connection = serve_connection(&http, tcp, router.clone(), place, shared.clone());
        connections.spawn(connection.with_cancellation_token_owned(stopped.clone()));
    }
    drop(listener);
    stopped.cancel();
    connections.close();
    connections.wait().await;
}

fn serve_connection(
    http: &http1::Builder,
    tcp: TcpStream,
    router: Router,
    place: Place,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send + 'static {
    // Frames are small and latency matters more than packet count.
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%err, "could not set TCP_NODELAY");
    }
    // Its reads count against the budget for unfinished frames, also once
    // it has become a WebSocket; the socket learns its share through the
    // upgrade request.
    let unfinished = Unfinished::new(shared.receive_budget.clone());
    let service = Counting {
        inner: TowerToHyperService::new(router),
        unfinished: unfinished.clone(),
    };
    let tcp = Counted::new(tcp, unfinished);
    let mut http = http.clone();
    // While draining, a connection serves one request (a health check, an
    // upgrade refused with 503) and closes.
    let draining = shared.shutdown.is_cancelled();
    http.keep_alive(!draining);
    let connection = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    async move {
        let mut connection = pin!(connection);
        let mut draining = draining;
        // Ends when the connection closes or becomes a WebSocket, which
        // then lives on in a task of its own.
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(err) = served {
                        if err.is_timeout() {
                            shared.metrics.rejected(Rejection::HeaderTimeout);
                        }
                        tracing::debug!(%err, "HTTP connection ended");
                    }
                    break;
                }
                () = place.evicted.cancelled() => {
                    tracing::debug!("closing the longest-waiting HTTP connection");
                    shared.metrics.rejected(Rejection::TooManyPending);
                    break;
                }
                () = shared.shutdown.cancelled(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        drop(place);
    }
}

/// The router, served to one connection: each request tells its
/// connection's budget that what came before it is no longer held, and
/// carries that budget to the upgrade handler.
struct Counting<S> {
    inner: S,
    unfinished: Arc<Unfinished>,
}

impl<S, B> hyper::service::Service<http::Request<B>> for Counting<S>
where
    S: hyper::service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: http::Request<B>) -> Self::Future {
        self.unfinished.message_received();
        request.extensions_mut().insert(self.unfinished.clone());
        self.inner.call(request)
    }
}

/// The connections that have not become WebSockets, oldest first.
struct Pending {
    limit: usize,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    by_age: BTreeMap<u64, CancellationToken>,
}

/// A connection's place among the pending ones; dropping it gives it up.
struct Place {
    pending: Arc<Pending>,
    id: u64,
    evicted: CancellationToken,
    shared: Arc<Shared>,
}

impl Pending {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            waiting: Mutex::default(),
        }
    }

    /// A place for a new connection, closing the oldest one if all are taken.
    fn admit(self: &Arc<Self>, shared: &Arc<Shared>) -> Place {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.by_age.len() >= self.limit
            && let Some((_, oldest)) = waiting.by_age.pop_first()
        {
            oldest.cancel();
        }
        let id = waiting.next;
        waiting.next += 1;
        let evicted = CancellationToken::new();
        waiting.by_age.insert(id, evicted.clone());
        shared.metrics.pending_connections.inc();
        Place {
            pending: self.clone(),
            id,
            evicted,
            shared: shared.clone(),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut waiting = self
            .pending
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waiting.by_age.remove(&self.id);
        self.shared.metrics.pending_connections.dec();
    }
}
