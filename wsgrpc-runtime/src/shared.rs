//! What every connection of a bridge shares: the bridge builds it once, and
//! connections and calls read it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Channel;

use crate::access::{AllowedOrigins, Authenticator};
use crate::metadata::MetadataLimits;
use crate::metrics::Metrics;
use crate::service::ServiceTable;

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
    pub metadata: MetadataLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
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
            metadata: MetadataLimits::default(),
        }
    }
}

impl Limits {
    /// The largest envelope the bridge sends: a response whose JSON is
    /// larger fails its call with `RESOURCE_EXHAUSTED` instead, so that
    /// what a socket buffers for its client stays bounded.
    pub(crate) fn max_envelope_bytes(&self) -> usize {
        self.max_frame_size.max(self.batch_bytes).saturating_mul(4)
    }
}

/// What every connection of a bridge shares.
pub(crate) struct Shared {
    pub services: ServiceTable,
    /// One HTTP/2 channel to the backend, multiplexing every call of every
    /// connection.
    pub channel: Channel,
    pub limits: Limits,
    pub origins: AllowedOrigins,
    /// Host names a page of the bridge's own origin may have.
    pub hosts: Vec<String>,
    pub public_metrics: bool,
    pub authenticator: Option<Arc<dyn Authenticator>>,
    pub metrics: Metrics,
    /// Cancelled when the bridge starts shutting down.
    pub shutdown: CancellationToken,
    pub connections: TaskTracker,
    /// Sockets open or being upgraded, counted against `max_connections`.
    pub open_connections: AtomicUsize,
}
