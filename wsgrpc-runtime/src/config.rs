//! Every setting of a bridge, with its default, in one place.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::access::AllowedOrigins;
use crate::metadata::MetadataLimits;

/// Every setting of a bridge but its backend, services and authenticator.
///
/// [`BridgeBuilder`](crate::BridgeBuilder) wraps one; `wsgrpc-bridge` reads
/// one from its flags and its TOML file, whose keys are these fields'
/// names. Durations are written as `humantime` reads them (`250ms`, `30s`,
/// `5m`), and an optional one as `off` for none.
///
/// ```
/// let config: wsgrpc_runtime::BridgeConfig =
///     serde_json::from_str(r#"{"max_connections": 500, "idle_timeout": "off"}"#).unwrap();
/// assert_eq!(config.max_connections, 500);
/// assert_eq!(config.idle_timeout, None);
/// assert_eq!(config.path, "/ws");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BridgeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Path of the WebSocket endpoint; `/healthz` and `/metrics`
    /// (Prometheus) are served beside it.
    pub path: String,
    /// Origins whose pages may connect besides the bridge's own, e.g.
    /// `https://app.example.com`; `*` for any page.
    pub allowed_origins: Vec<String>,
    /// Host names under which a page counts as the bridge's own origin:
    /// `app.example.com`, or `.example.com` for it and its subdomains. IP
    /// addresses, `localhost` and `*.localhost` always count; any other name
    /// must be listed, so that a page whose name an attacker's DNS points
    /// at the bridge (DNS rebinding) is not taken for the bridge's own.
    pub allowed_hosts: Vec<String>,
    /// Whether `/metrics` answers anyone. Otherwise, with an authenticator,
    /// a scrape must authenticate as a socket would (a token as
    /// `Authorization: Bearer`): the metrics name every method.
    pub public_metrics: bool,
    /// Largest frame a client may send, in bytes; a larger one closes the
    /// socket with 1009. A response whose JSON is larger than four times
    /// this fails its call with `RESOURCE_EXHAUSTED`.
    pub max_frame_size: usize,
    /// Calls open at once on one socket; a client of protocol v2 queues the
    /// ones beyond.
    pub max_calls_per_connection: usize,
    /// Sockets open at once; further upgrades get HTTP 503.
    pub max_connections: usize,
    /// Sockets open at once for one identity (what the authenticator
    /// returns, where it names one); further upgrades of that identity get
    /// HTTP 429. Its parked sessions are held to the same number: one
    /// more ends the session that would park, so that one signed-in client
    /// can take neither every socket nor every parked place from the rest.
    pub max_connections_per_identity: usize,
    /// Request messages a streaming call may queue ahead of the backend,
    /// for clients that count messages rather than bytes.
    pub call_queue_messages: usize,
    /// Protocol v2, byte windows: the request bytes a client- or
    /// bidi-streaming call may send before the bridge's first credit. The
    /// window grows from here towards the path's bandwidth-delay product.
    pub window_bytes: u64,
    /// Protocol v2, byte windows: the request bytes all calls of a socket
    /// together may send before the bridge's first credit; it grows to
    /// twice a call's window.
    pub connection_window_bytes: u64,
    /// Protocol v2, byte windows: the largest a call's request window
    /// grows to. A socket may hold twice this of requests in the bridge.
    pub max_window_bytes: u64,
    /// Longest a call may run, streams included; it then ends with
    /// `DEADLINE_EXCEEDED` and is cancelled at the backend.
    #[serde(with = "optional_duration")]
    pub max_call_duration: Option<Duration>,
    /// Whether clients may choose wire protocol v2 (many envelopes per
    /// frame). Without it the bridge answers no subprotocol, as a bridge
    /// that predates v2 does, and every socket speaks v1.
    pub protocol_v2: bool,
    /// Protocol v2: the most bytes the bridge puts into one frame. Bigger
    /// frames cost a browser less per message; smaller ones let it act on
    /// the first messages sooner.
    pub batch_bytes: usize,
    /// Protocol v2: how long the bridge waits for more envelopes before it
    /// sends a frame that is not full; zero sends what is ready at once.
    /// Tokio's timers count whole milliseconds.
    #[serde(with = "duration")]
    pub batch_linger: Duration,
    /// How often each client is pinged.
    #[serde(with = "optional_duration")]
    pub ping_interval: Option<Duration>,
    /// A socket from which nothing (not even a pong) arrives for this long
    /// is closed; so is one whose client reads nothing for this long while
    /// the bridge has something to send.
    #[serde(with = "optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// How long a socket may live: past it (give or take a tenth), the
    /// bridge sends a v2 client `goaway`, takes no new calls on the socket
    /// and closes it once its calls end (within `drain_timeout`), so that
    /// clients spread over replicas that came up since. `off` for no limit.
    #[serde(with = "optional_duration")]
    pub max_connection_age: Option<Duration>,
    /// Protocol v2 sessions: how long the calls of a session whose socket
    /// dropped go on, waiting for the client to resume them on a new
    /// socket; `off` ends them with the socket.
    #[serde(with = "optional_duration")]
    pub session_grace: Option<Duration>,
    /// On shutdown, how long calls in flight may take to finish before
    /// every socket is closed with 1001 (going away).
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// How long a client may take to send an HTTP request's headers, the
    /// upgrade request's among them.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// HTTP connections that have not (yet) become WebSockets, at once; a
    /// new one past this closes the one that has waited longest.
    pub max_pending_connections: usize,
    /// Bytes that the unfinished frames of all sockets together may hold
    /// (each socket's own is bounded by `max_frame_size`). Past it, a socket
    /// that holds 256 KiB or more of an unfinished frame is closed with
    /// 1008 when it reads more.
    pub max_unfinished_frame_bytes: usize,
    /// Bytes that the v2 sessions of all sockets together may keep for
    /// their clients to acknowledge. Past it, a session keeping more than
    /// 64 KiB sends no more until its client acknowledges what it has: a
    /// client that never does holds back its own calls, and the others
    /// only down to that share.
    pub max_session_kept_bytes: usize,
    /// Metadata entries one call may carry; more ends the call with
    /// `RESOURCE_EXHAUSTED`.
    pub max_metadata_entries: usize,
    /// Bytes of metadata one call may carry, counted as HTTP/2 counts a
    /// header list (key, value and 32 per entry); more ends the call with
    /// `RESOURCE_EXHAUSTED`. Keep it below what the backend accepts (gRPC
    /// servers take 8–16 KiB): a header block the backend refuses can break
    /// the connection that every call shares.
    pub max_metadata_bytes: usize,
    /// How often the backend connection is pinged while calls are open.
    /// Servers limit how often they may be pinged (grpc-go and gRPC C-core
    /// by default once per 5 minutes while they send nothing): allow the
    /// bridge's interval there, or raise it here.
    #[serde(with = "optional_duration")]
    pub backend_keepalive_interval: Option<Duration>,
    /// How long a ping of the backend may go unanswered before every call
    /// on the connection fails with `UNAVAILABLE` and it reconnects.
    #[serde(with = "duration")]
    pub backend_keepalive_timeout: Duration,
    /// How often the backend's host name is resolved again: calls are
    /// spread over all its addresses (a Kubernetes headless Service's pods,
    /// say), which join and leave as the name changes, and over those of
    /// every backend URI given. `off` connects to each URI's name as given,
    /// one connection per URI, as a bridge of a single backend did.
    #[serde(with = "optional_duration")]
    pub backend_resolve_interval: Option<Duration>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50052)),
            path: "/ws".to_owned(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            public_metrics: false,
            max_frame_size: 4 << 20,
            max_calls_per_connection: 100,
            max_connections: 10_000,
            // A person has tens of tabs open at most; a service that shares
            // one identity over many sockets raises it.
            max_connections_per_identity: 256,
            call_queue_messages: 64,
            window_bytes: 256 << 10,
            connection_window_bytes: 1 << 20,
            max_window_bytes: 16 << 20,
            max_call_duration: None,
            protocol_v2: true,
            batch_bytes: 64 << 10,
            batch_linger: Duration::ZERO,
            ping_interval: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(90)),
            max_connection_age: None,
            session_grace: Some(Duration::from_secs(30)),
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_pending_connections: 1024,
            max_unfinished_frame_bytes: 256 << 20,
            max_session_kept_bytes: 256 << 20,
            max_metadata_entries: 64,
            max_metadata_bytes: 8 << 10,
            backend_keepalive_interval: Some(Duration::from_secs(20)),
            backend_keepalive_timeout: Duration::from_secs(10),
            backend_resolve_interval: Some(Duration::from_secs(30)),
        }
    }
}

impl BridgeConfig {
    /// Counts that cannot be zero are at least one.
    pub(crate) fn normalised(mut self) -> Self {
        self.max_calls_per_connection = self.max_calls_per_connection.max(1);
        self.max_connections_per_identity = self.max_connections_per_identity.max(1);
        self.call_queue_messages = self.call_queue_messages.max(1);
        let max_window = crate::flow::MAX_WINDOW;
        self.window_bytes = self.window_bytes.clamp(1, max_window);
        self.connection_window_bytes = self.connection_window_bytes.clamp(1, max_window);
        self.max_window_bytes = self.max_window_bytes.clamp(self.window_bytes, max_window);
        self.batch_bytes = self.batch_bytes.max(1);
        self.max_pending_connections = self.max_pending_connections.max(1);
        self
    }

    /// Which pages may connect.
    pub(crate) fn origins(&self) -> AllowedOrigins {
        if self.allowed_origins.iter().any(|origin| origin == "*") {
            AllowedOrigins::Any
        } else if self.allowed_origins.is_empty() {
            AllowedOrigins::SameOrigin
        } else {
            AllowedOrigins::List(self.allowed_origins.clone())
        }
    }

    pub(crate) fn metadata_limits(&self) -> MetadataLimits {
        MetadataLimits {
            max_entries: self.max_metadata_entries,
            max_bytes: self.max_metadata_bytes,
        }
    }

    /// The largest envelope the bridge sends: a response whose JSON is
    /// larger fails its call with `RESOURCE_EXHAUSTED` instead, so that
    /// what a socket buffers for its client stays bounded.
    pub(crate) fn max_envelope_bytes(&self) -> usize {
        self.max_frame_size.max(self.batch_bytes).saturating_mul(4)
    }
}

/// A duration as `humantime` writes it: `30s`, `250ms`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*duration))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(super) fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text)
            .map_err(|err| format!("`{text}` is not a duration like `30s`: {err}"))
    }
}

/// An optional duration: as [`duration`] writes it, or `off`.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::duration::serialize(duration, serializer),
            None => serializer.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "off" {
            return Ok(None);
        }
        super::duration::parse(&text)
            .map(Some)
            .map_err(|err| serde::de::Error::custom(format!("{err}, or `off`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_round_trips_through_its_written_form() {
        let config = BridgeConfig {
            max_call_duration: Some(Duration::from_millis(1500)),
            idle_timeout: None,
            allowed_origins: vec!["*".into()],
            ..BridgeConfig::default()
        };
        let written = serde_json::to_value(&config).unwrap();
        assert_eq!(written["max_call_duration"], "1s 500ms");
        assert_eq!(written["idle_timeout"], "off");
        assert_eq!(written["drain_timeout"], "10s");
        let read: BridgeConfig = serde_json::from_value(written).unwrap();
        assert_eq!(read, config);
        assert!(matches!(read.origins(), AllowedOrigins::Any));
    }

    #[test]
    fn an_unknown_key_or_a_bad_duration_is_an_error_that_names_it() {
        let err = serde_json::from_str::<BridgeConfig>(r#"{"max_calls": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_calls`"),
            "{err}"
        );
        let err = serde_json::from_str::<BridgeConfig>(r#"{"idle_timeout": "soon"}"#).unwrap_err();
        assert!(
            err.to_string().contains("`soon` is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn counts_that_cannot_be_zero_become_one() {
        let config = BridgeConfig {
            max_calls_per_connection: 0,
            call_queue_messages: 0,
            ..BridgeConfig::default()
        }
        .normalised();
        assert_eq!(config.max_calls_per_connection, 1);
        assert_eq!(config.call_queue_messages, 1);
    }
}
