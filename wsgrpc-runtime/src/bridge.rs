//! The bridge server: configuration, the upgrade handler and serving.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri, header};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::envelope::{Metadata, Protocol};
use crate::json::{JsonOptions, JsonRules};
use crate::metrics::{Metrics, Rejection};
use crate::service::{Service, ServiceTable};
use crate::{accept, connection};

/// What each socket reads into at first.
const READ_BUFFER: usize = 4 * 1024;

/// HTTP/2 flow-control windows of the backend channel.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
const STREAM_WINDOW: u32 = 256 * 1024;

/// Which pages may open a socket.
///
/// Browsers send the page's origin with every WebSocket upgrade but, unlike
/// `fetch`, do not enforce CORS on it: checking it is the only defence
/// against a foreign page opening a socket with the user's cookies.
#[derive(Debug, Clone, Default)]
pub enum AllowedOrigins {
    /// Only pages served from the bridge's own host (the default).
    #[default]
    SameOrigin,
    /// The bridge's own host and these origins (`https://app.example.com`).
    List(Vec<String>),
    /// Any page. Only for development, or when the socket carries no ambient
    /// credentials.
    Any,
}

impl AllowedOrigins {
    fn allows(&self, headers: &HeaderMap) -> bool {
        // Only browsers send an Origin; other clients cannot be hijacked.
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        match self {
            Self::Any => true,
            Self::List(list)
                if list
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin)) =>
            {
                true
            }
            Self::SameOrigin | Self::List(_) => {
                let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
                let origin_host = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"));
                matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
            }
        }
    }
}

/// Limits and timers.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_frame_size: usize,
    pub max_calls_per_connection: usize,
    pub max_connections: usize,
    pub max_call_duration: Option<Duration>,
    pub call_queue_messages: usize,
    /// Whether the bridge offers protocol v2 at all.
    pub protocol_v2: bool,
    pub batch_bytes: usize,
    pub batch_linger: Duration,
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_pending_connections: usize,
}

/// What every connection of a bridge shares.
pub(crate) struct Shared {
    pub services: ServiceTable,
    /// One HTTP/2 channel to the backend, multiplexing every call of every
    /// connection.
    pub channel: Channel,
    pub limits: Limits,
    pub origins: AllowedOrigins,
    pub authenticator: Option<Arc<dyn Authenticator>>,
    pub metrics: Metrics,
    /// Cancelled when the bridge starts shutting down.
    pub shutdown: CancellationToken,
    pub connections: TaskTracker,
    open_connections: AtomicUsize,
}

/// Decides who may open a socket and make calls.
///
/// Browsers cannot set headers on a WebSocket, so a token comes in a cookie,
/// in the query string, or (from other clients) in `Authorization`; see the
/// helpers on [`UpgradeRequest`]. The hooks are synchronous: verifying a
/// signed token needs no I/O.
pub trait Authenticator: Send + Sync + 'static {
    /// Runs on the upgrade request, before the socket opens. `Ok` holds the
    /// caller's identity as metadata, which the bridge adds to every call of
    /// the connection (clients may not set those keys themselves); `Err`
    /// refuses the upgrade with HTTP 401 and the message.
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, String>;

    /// Runs before every call with the connection's identity, the method's
    /// full name and the call's metadata; `Err` ends the call with that
    /// status (usually `UNAUTHENTICATED` or `PERMISSION_DENIED`).
    fn authorize_call(
        &self,
        identity: &Metadata,
        method: &str,
        metadata: &Metadata,
    ) -> Result<(), Status> {
        let _ = (identity, method, metadata);
        Ok(())
    }
}

/// The HTTP request that asks to open a socket.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    pub headers: &'a HeaderMap,
    pub uri: &'a Uri,
}

impl UpgradeRequest<'_> {
    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        value.strip_prefix("Bearer ").map(str::trim)
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

/// Configures a [`Bridge`]. Every setting has a default but the backend and
/// the services.
#[derive(Debug, Clone)]
pub struct BridgeBuilder {
    listen: SocketAddr,
    path: String,
    backend: Option<Backend>,
    services: Vec<Service>,
    table: Option<ServiceTable>,
    json: JsonRules,
    origins: AllowedOrigins,
    limits: Limits,
    authenticator: Option<Arc<dyn Authenticator>>,
}

impl fmt::Debug for dyn Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator")
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Uri(String),
    Channel(Channel),
}

impl Default for BridgeBuilder {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            path: "/ws".to_owned(),
            backend: None,
            services: Vec::new(),
            table: None,
            json: JsonRules::default(),
            origins: AllowedOrigins::SameOrigin,
            limits: Limits {
                max_frame_size: 4 << 20,
                max_calls_per_connection: 100,
                max_connections: 10_000,
                max_call_duration: None,
                call_queue_messages: 64,
                protocol_v2: true,
                batch_bytes: 64 << 10,
                batch_linger: Duration::ZERO,
                ping_interval: Some(Duration::from_secs(30)),
                idle_timeout: Some(Duration::from_secs(90)),
                drain_timeout: Duration::from_secs(10),
                header_read_timeout: Duration::from_secs(10),
                max_pending_connections: 1024,
            },
            authenticator: None,
        }
    }
}

impl BridgeBuilder {
    /// Address to listen on; default `127.0.0.1:50052`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Path of the WebSocket endpoint; default `/ws`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The gRPC backend, e.g. `http://127.0.0.1:50051`. It is dialled on the
    /// first call, so the bridge starts while the backend is still down.
    pub fn backend_uri(mut self, uri: impl Into<String>) -> Self {
        self.backend = Some(Backend::Uri(uri.into()));
        self
    }

    /// A tonic channel to the backend, for TLS or other custom settings.
    pub fn backend_channel(mut self, channel: Channel) -> Self {
        self.backend = Some(Backend::Channel(channel));
        self
    }

    /// Adds a service, as generated by `wsgrpc-gen`.
    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Serves the services of `table`, which may be empty now and replaced
    /// at any time while the bridge serves (see [`ServiceTable::replace`]):
    /// for a bridge that learns its services at run time. Services added
    /// with [`service`](Self::service) join the table.
    pub fn service_table(mut self, table: ServiceTable) -> Self {
        self.table = Some(table);
        self
    }

    /// How responses are written to calls that name their method in full,
    /// as generated clients do; default canonical proto3 JSON.
    pub fn json_options(mut self, options: JsonOptions) -> Self {
        self.json.full_name = options;
        self
    }

    /// How responses are written to calls that name their method bare
    /// (`SayHello`), as clients of the original bridge do; default
    /// canonical with every field written, defaults too.
    pub fn bare_name_json_options(mut self, options: JsonOptions) -> Self {
        self.json.bare_name = options;
        self
    }

    /// Which pages may connect; default [`AllowedOrigins::SameOrigin`].
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.origins = origins;
        self
    }

    /// Largest frame a client may send, in bytes; default 4 MiB. A larger
    /// one closes the connection with 1009 (message too big).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Calls open at once on one connection; default 100.
    pub fn max_calls_per_connection(mut self, calls: usize) -> Self {
        self.limits.max_calls_per_connection = calls.max(1);
        self
    }

    /// Request messages a streaming call may queue ahead of the backend;
    /// default 64.
    pub fn call_queue_messages(mut self, messages: usize) -> Self {
        self.limits.call_queue_messages = messages.max(1);
        self
    }

    /// Whether clients may choose wire protocol v2 (many envelopes per
    /// frame); default yes. Without it the bridge answers no subprotocol,
    /// as a bridge that predates v2 does, and every socket speaks v1.
    pub fn protocol_v2(mut self, enabled: bool) -> Self {
        self.limits.protocol_v2 = enabled;
        self
    }

    /// v2: the most bytes the bridge puts into one frame; default 64 KiB.
    /// Bigger frames cost a browser less per message; smaller ones let it
    /// act on the first messages sooner. One envelope larger than this
    /// still goes, alone in its frame.
    pub fn batch_bytes(mut self, bytes: usize) -> Self {
        self.limits.batch_bytes = bytes.max(1);
        self
    }

    /// v2: how long the bridge waits for more envelopes before it sends a
    /// frame that is not full; default zero, which sends what is ready at
    /// once, so that a lone call is never slower than in v1.
    pub fn batch_linger(mut self, linger: Duration) -> Self {
        self.limits.batch_linger = linger;
        self
    }

    /// How often the bridge pings each client; default 30 s, `None` for never.
    pub fn ping_interval(mut self, every: Option<Duration>) -> Self {
        self.limits.ping_interval = every;
        self
    }

    /// A connection from which nothing (not even a pong) arrives for this
    /// long is closed; default 90 s, `None` for never.
    pub fn idle_timeout(mut self, after: Option<Duration>) -> Self {
        self.limits.idle_timeout = after;
        self
    }

    /// Open sockets at once; default 10 000. Further upgrades get HTTP 503.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections;
        self
    }

    /// How long a client may take to send an HTTP request's headers, the
    /// upgrade request's among them, counted from when the bridge starts
    /// reading it; default 10 s. A slower one's connection is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// HTTP connections that have not (yet) become WebSockets, at once;
    /// default 1,024. A new connection past this closes the one that has
    /// waited longest, so that connections that never finish their request
    /// hold bounded memory and cannot keep others out.
    pub fn max_pending_connections(mut self, connections: usize) -> Self {
        self.limits.max_pending_connections = connections.max(1);
        self
    }

    /// Longest a call may run, streams included; default no limit. A call
    /// that runs longer ends with `DEADLINE_EXCEEDED` and is cancelled at
    /// the backend.
    pub fn max_call_duration(mut self, limit: Option<Duration>) -> Self {
        self.limits.max_call_duration = limit;
        self
    }

    /// On shutdown, how long unary calls in flight may take to finish before
    /// every socket is closed with 1001 (going away); default 10 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.limits.drain_timeout = timeout;
        self
    }

    /// Checks every socket and call; see [`Authenticator`].
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    pub fn build(self) -> Result<Bridge, BuildError> {
        if !self.path.starts_with('/') {
            return Err(BuildError(format!(
                "path `{}` must start with `/`",
                self.path
            )));
        }
        let replaceable = self.table.is_some();
        let services = self.table.unwrap_or_default();
        services.configure(self.json, &self.services);
        if services.is_empty() && !replaceable {
            return Err(BuildError("no services: add one with `service`".into()));
        }
        if self.backend.is_none() {
            return Err(BuildError(
                "no backend: call `backend_uri` or `backend_channel`".into(),
            ));
        }
        // Last, because a lazy channel spawns its worker on the runtime.
        let channel = match self.backend {
            None => {
                return Err(BuildError(
                    "no backend: call `backend_uri` or `backend_channel`".into(),
                ));
            }
            Some(Backend::Channel(channel)) => channel,
            // A lazy channel spawns its worker at once: without a runtime
            // tonic would panic.
            Some(Backend::Uri(_)) if tokio::runtime::Handle::try_current().is_err() => {
                return Err(BuildError(
                    "build() needs a Tokio runtime for the backend channel: call it inside                      the runtime that serves the bridge (in #[tokio::main], say)"
                        .into(),
                ));
            }
            Some(Backend::Uri(uri)) => Endpoint::from_shared(uri.clone())
                .map_err(|err| BuildError(format!("backend `{uri}`: {err}")))?
                // Every call of every socket shares this one HTTP/2
                // connection. A client that stops reading stops its call
                // from reading too; with h2's default 64 KiB connection
                // window that one call would stall all the others. So the
                // connection window is as large as HTTP/2 allows, and each
                // stream's own window bounds what a stalled call holds.
                .initial_connection_window_size(CONNECTION_WINDOW)
                .initial_stream_window_size(STREAM_WINDOW)
                .tcp_nodelay(true)
                .connect_lazy(),
        };
        Ok(Bridge {
            listen: self.listen,
            path: self.path,
            shared: Arc::new(Shared {
                services,
                channel,
                limits: self.limits,
                origins: self.origins,
                authenticator: self.authenticator,
                metrics: Metrics::default(),
                shutdown: CancellationToken::new(),
                connections: TaskTracker::new(),
                open_connections: AtomicUsize::new(0),
            }),
        })
    }
}

/// A bridge that is configured incorrectly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// A WebSocket ↔ gRPC bridge, ready to serve.
pub struct Bridge {
    listen: SocketAddr,
    path: String,
    shared: Arc<Shared>,
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("listen", &self.listen)
            .field("path", &self.path)
            .field("methods", &self.shared.services)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder::default()
    }

    /// An axum router with the WebSocket endpoint, `/healthz` and
    /// `/metrics`, to serve alone or merge into an application's router.
    /// Served that way, the header-read timeout and the cap on pending
    /// connections are the application's server's to set.
    pub fn router(&self) -> Router {
        Router::new()
            .route(&self.path, axum::routing::get(upgrade))
            .route("/healthz", axum::routing::get(healthz))
            .route("/metrics", axum::routing::get(metrics))
            .with_state(self.shared.clone())
    }

    /// Starts a graceful shutdown of every connection, as `serve_with`'s
    /// `shutdown` future does: for a bridge served inside another app.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Binds the configured address and serves until the process ends.
    pub async fn serve(self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.listen).await?;
        self.serve_with(listener, std::future::pending()).await
    }

    /// Serves on `listener` until `shutdown` completes.
    ///
    /// Requests' headers must arrive within
    /// [`BridgeBuilder::header_read_timeout`], and at most
    /// [`BridgeBuilder::max_pending_connections`] connections may wait for
    /// theirs; a bridge merged into another app through [`Bridge::router`]
    /// has the limits of that app's server instead.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = ?listener.local_addr()?, path = %self.path, "bridge listening");
        let token = self.shared.shutdown.clone();
        let stop_accepting = async move {
            tokio::select! {
                _ = shutdown => token.cancel(),
                _ = token.cancelled() => {}
            }
        };
        let serving = accept::serve(listener, self.router(), self.shared.clone());
        tokio::join!(stop_accepting, serving);
        // Upgraded sockets live outside the HTTP server; they drain on their
        // own once shutdown starts.
        self.shared.connections.close();
        self.shared.connections.wait().await;
        tracing::info!("bridge stopped");
        Ok(())
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if shared.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "bridge is shutting down").into_response();
    }
    if !shared.origins.allows(&headers) {
        let origin = headers.get(header::ORIGIN);
        tracing::info!(?origin, "refused WebSocket from a foreign origin");
        shared.metrics.rejected(Rejection::Origin);
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let identity = match &shared.authenticator {
        None => Metadata::new(),
        Some(auth) => match auth.authenticate(&UpgradeRequest {
            headers: &headers,
            uri: &uri,
        }) {
            Ok(identity) => identity,
            Err(message) => {
                tracing::info!(%message, "refused unauthenticated WebSocket");
                shared.metrics.rejected(Rejection::Unauthenticated);
                return (StatusCode::UNAUTHORIZED, message).into_response();
            }
        },
    };
    let Some(permit) = ConnectionPermit::acquire(&shared) else {
        shared.metrics.rejected(Rejection::TooManyConnections);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    };
    let max = shared.limits.max_frame_size;
    let ws = if shared.limits.protocol_v2 {
        ws.protocols(Protocol::SUBPROTOCOLS)
    } else {
        ws
    };
    let protocol =
        Protocol::from_subprotocol(ws.selected_protocol().and_then(|name| name.to_str().ok()));
    ws.max_message_size(max)
        .max_frame_size(max)
        // Most sockets sit idle most of the time: start each with a small
        // read buffer (the default is 128 KiB) that grows for large frames.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            let tracker = shared.connections.clone();
            tracker.track_future(async move {
                let _permit = permit;
                connection::serve(socket, shared, identity, protocol).await;
            })
        })
}

/// One of the `max_connections` sockets; dropping it frees the place, also
/// when an upgrade fails before the socket opens.
struct ConnectionPermit(Arc<Shared>);

impl ConnectionPermit {
    fn acquire(shared: &Arc<Shared>) -> Option<Self> {
        let open = shared.open_connections.fetch_add(1, Ordering::AcqRel);
        let permit = Self(shared.clone());
        if open >= shared.limits.max_connections {
            return None;
        }
        permit.0.metrics.connections_open.inc();
        Some(permit)
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let was = self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
        if was <= self.0.limits.max_connections {
            self.0.metrics.connections_open.dec();
        }
    }
}

/// Ready while it serves methods: a bridge whose services have not loaded
/// yet (see [`BridgeBuilder::service_table`]) is not worth routing to.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if shared.services.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no services loaded yet\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn same_origin_is_the_default() {
        let policy = AllowedOrigins::default();
        assert!(policy.allows(&headers(Some("http://localhost:50052"), "localhost:50052")));
        assert!(policy.allows(&headers(None, "localhost:50052")));
        assert!(!policy.allows(&headers(Some("https://evil.example"), "localhost:50052")));
        assert!(!policy.allows(&headers(Some("http://localhost:3000"), "localhost:50052")));
    }

    #[test]
    fn a_list_adds_origins() {
        let policy = AllowedOrigins::List(vec!["http://localhost:5173".into()]);
        assert!(policy.allows(&headers(Some("http://localhost:5173"), "localhost:50052")));
        assert!(policy.allows(&headers(Some("http://localhost:50052"), "localhost:50052")));
        assert!(!policy.allows(&headers(Some("null"), "localhost:50052")));
    }

    fn empty_method() -> crate::Method {
        let empty = prost_reflect::ReflectMessage::descriptor(&());
        crate::Method::new("M", crate::MethodKind::Unary, empty.clone(), empty)
    }

    #[test]
    fn build_outside_a_runtime_is_an_error_not_a_panic() {
        let err = Bridge::builder()
            .backend_uri("http://127.0.0.1:1")
            .service(Service::new("a.B", vec![empty_method()]))
            .build()
            .unwrap_err();
        assert!(err.0.contains("Tokio runtime"), "{err}");
    }

    #[test]
    fn build_needs_a_backend_and_a_service() {
        let err = Bridge::builder().build().unwrap_err();
        assert!(err.0.contains("no services"), "{err}");
        let service = Service::new("a.B", Vec::new());
        let err = Bridge::builder().service(service).build().unwrap_err();
        assert!(err.0.contains("no services"), "{err}");
    }
}
