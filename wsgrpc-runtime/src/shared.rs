//! What every connection of a bridge shares: the bridge builds it once, and
//! connections and calls read it.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;

use crate::access::{AllowedOrigins, Authenticator};
use crate::config::BridgeConfig;
use crate::connection::Sessions;
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::receive::ReceiveBudget;
use crate::service::ServiceTable;
use crate::session::KeptBudget;

/// What every connection of a bridge shares.
pub(crate) struct Shared {
    pub services: ServiceTable,
    /// One HTTP/2 channel to the backend, multiplexing every call of every
    /// connection.
    pub channel: Channel,
    pub config: BridgeConfig,
    /// From `config.allowed_origins`.
    pub origins: AllowedOrigins,
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// What the unfinished frames of every socket may hold together.
    pub receive_budget: Arc<ReceiveBudget>,
    pub metrics: Metrics,
    /// Cancelled when the bridge starts shutting down.
    pub shutdown: CancellationToken,
    pub connections: TaskTracker,
    /// Sockets open or being upgraded, counted against `max_connections`.
    pub open_connections: AtomicUsize,
    /// Sockets open for each identity an authenticator named, counted
    /// against `max_connections_per_identity`.
    pub sockets_by_identity: Mutex<HashMap<Metadata, usize>>,
    /// v2 sessions, by key.
    pub sessions: Sessions,
    /// What the sessions keep together, bounded by
    /// `config.max_session_kept_bytes`.
    pub kept_budget: Arc<KeptBudget>,
}
