//! The bridge server: configuration, the upgrade handler and serving.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode, Uri, header};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};

use crate::access::{AllowedOrigins, Authenticator, UpgradeRequest};
use crate::config::BridgeConfig;
use crate::envelope::{Metadata, Protocol};
use crate::json::{JsonOptions, JsonRules};
use crate::metrics::{Metrics, Rejection};
use crate::receive::{ReceiveBudget, Unfinished};
use crate::service::{Service, ServiceTable};
use crate::session::KeptBudget;
use crate::shared::Shared;
use crate::{accept, backend, connection};

/// What each socket reads into at first.
const READ_BUFFER: usize = 4 * 1024;
/// What a socket's writer gathers before it writes to TCP.
const WRITE_BUFFER: usize = 64 * 1024;

/// HTTP/2 flow-control windows of the backend channel.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
const STREAM_WINDOW: u32 = 256 * 1024;

/// Configures a [`Bridge`]: a [`BridgeConfig`] (every setting has a
/// default), the backend, the services and an authenticator.
#[derive(Debug, Clone, Default)]
pub struct BridgeBuilder {
    config: BridgeConfig,
    backend: Option<Backend>,
    services: Vec<Service>,
    table: Option<ServiceTable>,
    json: JsonRules,
    authenticator: Option<Arc<dyn Authenticator>>,
}

#[derive(Debug, Clone)]
enum Backend {
    Uris(Vec<String>),
    Channel(Channel),
}

/// A backend once checked: a channel to use, or the URIs to dial.
enum Dial {
    Ready(Channel),
    Lazy(Vec<Uri>),
}

/// A setter per setting of [`BridgeConfig`], documented there.
macro_rules! config_setters {
    ($($name:ident: $type:ty),* $(,)?) => {
        $(
            #[doc = concat!("Sets [`BridgeConfig::", stringify!($name), "`].")]
            pub fn $name(mut self, value: $type) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl BridgeBuilder {
    /// Every setting at once, in place of those set before.
    pub fn config(mut self, config: BridgeConfig) -> Self {
        self.config = config;
        self
    }

    config_setters! {
        listen: SocketAddr,
        public_metrics: bool,
        max_frame_size: usize,
        max_calls_per_connection: usize,
        max_connections: usize,
        max_connections_per_identity: usize,
        call_queue_messages: usize,
        window_bytes: u64,
        connection_window_bytes: u64,
        max_window_bytes: u64,
        max_call_duration: Option<Duration>,
        protocol_v2: bool,
        batch_bytes: usize,
        batch_linger: Duration,
        ping_interval: Option<Duration>,
        idle_timeout: Option<Duration>,
        session_grace: Option<Duration>,
        max_connection_age: Option<Duration>,
        drain_timeout: Duration,
        header_read_timeout: Duration,
        max_pending_connections: usize,
        max_unfinished_frame_bytes: usize,
        max_session_kept_bytes: usize,
        max_metadata_entries: usize,
        max_metadata_bytes: usize,
        backend_keepalive_interval: Option<Duration>,
        backend_keepalive_timeout: Duration,
        backend_resolve_interval: Option<Duration>,
    }

    /// Sets [`BridgeConfig::path`].
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// Which pages may connect; sets [`BridgeConfig::allowed_origins`].
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.config.allowed_origins = match origins {
            AllowedOrigins::SameOrigin => Vec::new(),
            AllowedOrigins::List(list) => list,
            AllowedOrigins::Any => vec!["*".to_owned()],
        };
        self
    }

    /// Sets [`BridgeConfig::allowed_hosts`].
    pub fn allowed_hosts<H: Into<String>>(mut self, hosts: impl IntoIterator<Item = H>) -> Self {
        self.config.allowed_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// The gRPC backend, e.g. `http://127.0.0.1:50051`. It is dialled on the
    /// first call, so the bridge starts while the backend is still down.
    pub fn backend_uri(mut self, uri: impl Into<String>) -> Self {
        self.backend = Some(Backend::Uris(vec![uri.into()]));
        self
    }

    /// Several replicas of the gRPC backend, each as for
    /// [`backend_uri`](Self::backend_uri): calls are spread over them and
    /// over every address their names resolve to (see
    /// [`BridgeConfig::backend_resolve_interval`]). None is the same as not
    /// calling it.
    pub fn backend_uris<U: Into<String>>(mut self, uris: impl IntoIterator<Item = U>) -> Self {
        let uris: Vec<String> = uris.into_iter().map(Into::into).collect();
        self.backend = (!uris.is_empty()).then_some(Backend::Uris(uris));
        self
    }

    /// A tonic channel to the backend, for TLS or other custom settings
    /// (the channel's own, not [`BridgeConfig`]'s keepalive, then apply).
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

    /// Checks every socket and call; see [`Authenticator`].
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// The bridge, or what is missing or wrong. Needs a Tokio runtime when
    /// the backend is given as a URI.
    pub fn build(self) -> Result<Bridge, BuildError> {
        let config = self.config.normalised();
        if !config.path.starts_with('/') {
            return Err(BuildError::PathWithoutSlash(config.path));
        }
        // Everything is checked before the service table, which may be
        // shared, is touched.
        let backend = match self.backend {
            None => return Err(BuildError::NoBackend),
            Some(Backend::Channel(channel)) => Dial::Ready(channel),
            // A lazy channel spawns its worker at once: without a runtime
            // tonic would panic.
            Some(Backend::Uris(_)) if tokio::runtime::Handle::try_current().is_err() => {
                return Err(BuildError::NoRuntime);
            }
            Some(Backend::Uris(uris)) => {
                let mut checked = Vec::with_capacity(uris.len());
                for uri in uris {
                    match Endpoint::from_shared(uri.clone()) {
                        Ok(endpoint) => checked.push(endpoint.uri().clone()),
                        Err(err) => {
                            return Err(BuildError::InvalidBackendUri {
                                uri,
                                source: Box::new(err),
                            });
                        }
                    }
                }
                Dial::Lazy(checked)
            }
        };
        let replaceable = self.table.is_some();
        let services = self.table.unwrap_or_default();
        services.configure(self.json, &self.services);
        if services.is_empty() && !replaceable {
            return Err(BuildError::NoServices);
        }
        // Last, because a lazy channel spawns its worker on the runtime.
        let channel = match backend {
            Dial::Ready(channel) => channel,
            Dial::Lazy(uris) => {
                let keepalive = config.clone();
                let configure = move |endpoint: Endpoint| {
                    endpoint
                        // Every call of every socket to one backend address
                        // shares one HTTP/2 connection. A client that stops
                        // reading stops its call from reading too; with h2's
                        // default 64 KiB connection window that one call
                        // would stall all the others. So the connection
                        // window is as large as HTTP/2 allows, and each
                        // stream's own window bounds what a stalled call
                        // holds.
                        .initial_connection_window_size(CONNECTION_WINDOW)
                        .initial_stream_window_size(STREAM_WINDOW)
                        .tcp_nodelay(true)
                        .apply_keepalive(&keepalive)
                };
                match (uris.as_slice(), config.backend_resolve_interval) {
                    ([uri], None) => configure(Endpoint::from(uri.clone())).connect_lazy(),
                    _ => backend::resolve::balanced_channel(
                        uris,
                        config.backend_resolve_interval,
                        configure,
                    ),
                }
            }
        };
        let max_session_kept_bytes = config.max_session_kept_bytes;
        let metrics = Metrics::default();
        let sessions = connection::Sessions::new(metrics.sessions_parked.clone());
        Ok(Bridge {
            shared: Arc::new(Shared {
                services,
                channel,
                origins: config.origins(),
                receive_budget: ReceiveBudget::new(config.max_unfinished_frame_bytes),
                config,
                authenticator: self.authenticator,
                metrics,
                shutdown: CancellationToken::new(),
                connections: TaskTracker::new(),
                open_connections: AtomicUsize::new(0),
                sockets_by_identity: Mutex::default(),
                sessions,
                kept_budget: KeptBudget::new(max_session_kept_bytes),
            }),
        })
    }
}

/// Keepalive settings on a tonic endpoint.
trait ApplyKeepalive {
    fn apply_keepalive(self, config: &BridgeConfig) -> Self;
}

impl ApplyKeepalive for Endpoint {
    fn apply_keepalive(self, config: &BridgeConfig) -> Self {
        match config.backend_keepalive_interval {
            Some(interval) => self
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(config.backend_keepalive_timeout)
                // No pings without calls: servers count those against a
                // client, and an idle connection has no call to save.
                .keep_alive_while_idle(false),
            None => self,
        }
    }
}

/// Why [`BridgeBuilder::build`] refused: a bridge that is configured
/// incorrectly, one variant per cause, to match on.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// [`BridgeConfig::path`] does not start with `/`; it holds the path.
    PathWithoutSlash(String),
    /// Neither [`backend_uri`](BridgeBuilder::backend_uri) nor
    /// [`backend_channel`](BridgeBuilder::backend_channel) was called.
    NoBackend,
    /// No service was added, nor a [`ServiceTable`] that may be filled later.
    NoServices,
    /// The backend is a URI and `build()` ran outside a Tokio runtime, where
    /// the lazy channel cannot spawn its worker.
    NoRuntime,
    /// The backend URI does not parse as one tonic can dial.
    InvalidBackendUri {
        /// The URI, as given.
        uri: String,
        /// What tonic said.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathWithoutSlash(path) => write!(f, "path `{path}` must start with `/`"),
            Self::NoBackend => f.write_str("no backend: call `backend_uri` or `backend_channel`"),
            Self::NoServices => f.write_str("no services: add one with `service`"),
            Self::NoRuntime => f.write_str(
                "build() needs a Tokio runtime for the backend channel: call it inside the runtime that serves the bridge (in #[tokio::main], say)",
            ),
            Self::InvalidBackendUri { uri, .. } => write!(f, "backend `{uri}` is not a valid URI"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidBackendUri { source, .. } => Some(source.as_ref()),
            Self::PathWithoutSlash(_) | Self::NoBackend | Self::NoServices | Self::NoRuntime => {
                None
            }
        }
    }
}

/// A WebSocket ↔ gRPC bridge, ready to serve.
pub struct Bridge {
    shared: Arc<Shared>,
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("listen", &self.shared.config.listen)
            .field("path", &self.shared.config.path)
            .field("methods", &self.shared.services)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// A builder with every setting at its default; it needs a backend and
    /// services before it [`build`](BridgeBuilder::build)s.
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder::default()
    }

    /// An axum router with the WebSocket endpoint, `/healthz` and
    /// `/metrics`, to merge into an application's router and serve with
    /// [`serve_router`](Self::serve_router), which gives it the bridge's
    /// limits and drain.
    pub fn router(&self) -> Router {
        Router::new()
            .route(&self.shared.config.path, axum::routing::get(upgrade))
            .route("/healthz", axum::routing::get(healthz))
            .route("/metrics", axum::routing::get(metrics))
            .with_state(self.shared.clone())
    }

    /// Starts a graceful shutdown of every connection, as `serve_with`'s
    /// `shutdown` future does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Binds the configured address and serves until SIGINT or SIGTERM
    /// (see [`shutdown_signal`]), then drains.
    pub async fn serve(self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.shared.config.listen).await?;
        self.serve_with(listener, shutdown_signal()).await
    }

    /// Serves on `listener` until `shutdown` completes, then drains.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router();
        self.serve_router(listener, app, shutdown).await
    }

    /// Serves `app`, an application's router into which
    /// [`router`](Self::router) has been merged (beside its pages, say), on
    /// `listener` until `shutdown` completes, with everything that guards
    /// the bridge's own serving:
    ///
    /// - a request's headers must arrive within
    ///   [`BridgeBuilder::header_read_timeout`], and at most
    ///   [`BridgeBuilder::max_pending_connections`] connections may wait for
    ///   theirs;
    /// - at `shutdown` the bridge drains: new sockets are refused with 503,
    ///   `/healthz` answers 503 so that load balancers turn away, calls in
    ///   flight get [`BridgeBuilder::drain_timeout`] to finish, and then
    ///   every socket is closed with 1001 (going away).
    ///
    /// It returns when the last socket has closed.
    pub async fn serve_router(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(addr = ?listener.local_addr()?, path = %self.shared.config.path, "bridge listening");
        let token = self.shared.shutdown.clone();
        let shared = self.shared.clone();
        let stop_accepting = async move {
            tokio::select! {
                _ = shutdown => token.cancel(),
                _ = token.cancelled() => {}
            }
            // Sessions waiting for a socket will not get one.
            shared.sessions.end_all();
        };
        let serving = accept::serve(listener, app, self.shared.clone());
        tokio::join!(stop_accepting, serving);
        tracing::info!("bridge stopped");
        Ok(())
    }
}

/// Completes when the process is asked to stop: on SIGINT (Ctrl-C) or, on
/// Unix, SIGTERM, as container runtimes send it. For
/// [`Bridge::serve_with`]'s `shutdown`.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terms) => {
                terms.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: draining");
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    unfinished: Option<Extension<Arc<Unfinished>>>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    if shared.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "bridge is shutting down").into_response();
    }
    if !shared
        .origins
        .allows(&headers, &shared.config.allowed_hosts)
    {
        let origin = headers.get(header::ORIGIN);
        tracing::info!(?origin, "refused WebSocket from a foreign origin");
        shared.metrics.rejected(Rejection::Origin);
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let request = UpgradeRequest {
        headers: &headers,
        uri: &uri,
    };
    let (identity, expires) = match &shared.authenticator {
        None => (Metadata::new(), None),
        Some(auth) => match auth.authenticate(&request) {
            // Canonical, as the client's metadata will be, so that the two
            // compare.
            Ok(identity) => (
                identity
                    .into_iter()
                    .map(|(key, value)| (key.to_ascii_lowercase(), value))
                    .collect(),
                auth.expires(&request),
            ),
            Err(status) => {
                let message = status.message();
                tracing::info!(code = ?status.code(), %message, "refused unauthenticated WebSocket");
                shared.metrics.rejected(Rejection::Unauthenticated);
                let http = crate::access::http_status_of(&status);
                return (http, message.to_owned()).into_response();
            }
        },
    };
    // The client's session key, which a proxy may route by too.
    let session_key = request.query("session");
    let Some(permit) = ConnectionPermit::acquire(&shared) else {
        shared.metrics.rejected(Rejection::TooManyConnections);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    };
    // A socket that takes over a session of its identity may go past the
    // limit: its old socket, perhaps half open, lets go of it when it does.
    let resuming = session_key
        .as_deref()
        .is_some_and(|key| shared.sessions.is_held_by(key, &identity));
    let (identity_permit, only_to_resume) =
        match IdentityPermit::admit(&shared, &identity, resuming) {
            Admission::Within(permit) => (permit, false),
            Admission::OnlyToResume(permit) => (Some(permit), true),
            Admission::Refused => {
                tracing::info!("refused a WebSocket past its identity's sockets");
                shared.metrics.rejected(Rejection::TooManyForIdentity);
                let message = "too many connections for this identity";
                return (StatusCode::TOO_MANY_REQUESTS, message).into_response();
            }
        };
    let max = shared.config.max_frame_size;
    let ws = if shared.config.protocol_v2 {
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
        // Bounded, so that a client that sends pings and never reads its
        // pongs (nor anything else) cannot grow it: pongs that do not fit
        // replace one another, and the writer waits.
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + shared.config.max_envelope_bytes())
        .on_upgrade(move |socket| {
            let tracker = shared.connections.clone();
            tracker.track_future(async move {
                let _permits = (permit, identity_permit);
                let (sink, incoming) = socket.split();
                let unfinished = unfinished.map(|Extension(unfinished)| unfinished);
                let upgraded = connection::Upgraded {
                    identity,
                    protocol,
                    unfinished,
                    session_key,
                    expires,
                    only_to_resume,
                };
                connection::serve(sink, incoming, shared, upgraded).await;
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
        if open >= shared.config.max_connections {
            return None;
        }
        permit.0.metrics.connections_open.inc();
        Some(permit)
    }
}

/// One of an identity's `max_connections_per_identity` sockets; none for
/// a socket that no authenticator named (all such share no identity to
/// count by).
struct IdentityPermit {
    shared: Arc<Shared>,
    identity: Metadata,
}

/// Whether an identity's socket may open.
enum Admission {
    /// Within the identity's number (no permit where there is no identity).
    Within(Option<IdentityPermit>),
    /// Past it, to take over one of the identity's sessions: the socket
    /// closes unless it does, so that an identity holds its number of
    /// sockets, and for a moment those replacing some of them.
    OnlyToResume(IdentityPermit),
    /// Past it.
    Refused,
}

impl IdentityPermit {
    /// A place for a socket of `identity`, which is `resuming` one of its
    /// sessions or not.
    fn admit(shared: &Arc<Shared>, identity: &Metadata, resuming: bool) -> Admission {
        if identity.is_empty() {
            return Admission::Within(None);
        }
        let mut sockets = lock_sockets(shared);
        let held = sockets.entry(identity.clone()).or_default();
        let full = *held >= shared.config.max_connections_per_identity;
        if full && !resuming {
            return Admission::Refused;
        }
        *held += 1;
        let permit = Self {
            shared: shared.clone(),
            identity: identity.clone(),
        };
        if full {
            Admission::OnlyToResume(permit)
        } else {
            Admission::Within(Some(permit))
        }
    }
}

impl Drop for IdentityPermit {
    fn drop(&mut self) {
        let mut sockets = lock_sockets(&self.shared);
        if let Some(held) = sockets.get_mut(&self.identity) {
            *held -= 1;
            if *held == 0 {
                sockets.remove(&self.identity);
            }
        }
    }
}

fn lock_sockets(shared: &Shared) -> std::sync::MutexGuard<'_, HashMap<Metadata, usize>> {
    shared
        .sockets_by_identity
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let was = self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
        if was <= self.0.config.max_connections {
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

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    if let (Some(auth), false) = (&shared.authenticator, shared.config.public_metrics)
        && auth
            .authenticate(&UpgradeRequest {
                headers: &headers,
                uri: &uri,
            })
            .is_err()
    {
        return (StatusCode::UNAUTHORIZED, "metrics need the token\n").into_response();
    }
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
        assert!(matches!(err, BuildError::NoRuntime), "{err}");
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    #[tokio::test]
    async fn build_needs_a_backend_and_a_service() {
        let err = Bridge::builder().build().unwrap_err();
        assert!(matches!(err, BuildError::NoBackend), "{err}");
        assert!(err.to_string().contains("no backend"), "{err}");
        let backend = || Bridge::builder().backend_uri("http://127.0.0.1:1");
        let err = backend().build().unwrap_err();
        assert!(matches!(err, BuildError::NoServices), "{err}");
        let service = Service::new("a.B", Vec::new());
        let err = backend().service(service).build().unwrap_err();
        assert!(matches!(err, BuildError::NoServices), "{err}");
        assert!(err.to_string().contains("no services"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_path_or_uri_is_named_with_its_cause() {
        use std::error::Error as _;
        let service = || Service::new("a.B", vec![empty_method()]);
        let err = Bridge::builder()
            .path("ws")
            .backend_uri("http://127.0.0.1:1")
            .service(service())
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "path `ws` must start with `/`");
        assert!(err.source().is_none());
        let err = Bridge::builder()
            .backend_uri("not a uri")
            .service(service())
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidBackendUri { uri, .. } if uri == "not a uri"),
            "{err}"
        );
        assert!(err.to_string().contains("backend `not a uri`"), "{err}");
        assert!(err.source().is_some(), "tonic's error is the source");
    }

    #[test]
    fn a_build_that_fails_leaves_a_shared_table_as_it_was() {
        let table = ServiceTable::new();
        let err = Bridge::builder()
            .service_table(table.clone())
            .service(Service::new("a.B", vec![empty_method()]))
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::NoBackend), "{err}");
        assert!(table.is_empty(), "the table gained a.B/M");
    }
}
