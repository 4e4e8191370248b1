//! The bridge's Prometheus metrics, served at `/metrics`.
//!
//! Method labels come only from the registry (or `unknown`), never from what
//! a client wrote, so a client cannot grow the label sets without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::envelope::code_name;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    reason: &'static str,
}

/// Why a frame or connection was refused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rejection {
    Malformed,
    Binary,
    NotOpen,
    DuplicateId,
    NotAccepted,
    Oversized,
    Origin,
    Unauthenticated,
    TooManyConnections,
    /// An upgrade past its identity's `max_connections_per_identity`, or
    /// a session that would park past it.
    TooManyForIdentity,
    /// An HTTP request whose headers did not arrive in time.
    HeaderTimeout,
    /// An HTTP connection closed to make room for a newer one.
    TooManyPending,
    /// A socket closed because its client left too much unread.
    Unread,
    /// A socket closed because the unfinished frames of all sockets held
    /// too much, and it the most.
    ReceiveBudget,
    /// A socket closed because its client sent past the socket's window.
    Overrun,
}

impl Rejection {
    fn label(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Binary => "binary",
            Self::NotOpen => "not_open",
            Self::DuplicateId => "duplicate_id",
            Self::NotAccepted => "not_accepted",
            Self::Oversized => "oversized",
            Self::Origin => "origin",
            Self::Unauthenticated => "unauthenticated",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyForIdentity => "too_many_for_identity",
            Self::HeaderTimeout => "header_timeout",
            Self::TooManyPending => "too_many_pending",
            Self::Unread => "unread",
            Self::ReceiveBudget => "receive_budget",
            Self::Overrun => "overrun",
        }
    }
}

pub(crate) struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    pub pending_connections: Gauge,
    /// v2 sessions whose socket dropped, waiting for a new one.
    pub sessions_parked: Gauge,
    calls_in_flight: Family<MethodLabels, Gauge>,
    calls: Family<CallLabels, Counter>,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    rejected: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wsgrpc");
        let connections_open = Gauge::default();
        let pending_connections = Gauge::default();
        let sessions_parked = Gauge::default();
        let calls_in_flight = Family::<MethodLabels, Gauge>::default();
        let calls = Family::<CallLabels, Counter>::default();
        let bytes_received = Counter::default();
        let bytes_sent = Counter::default();
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_open",
            "Open WebSocket connections",
            connections_open.clone(),
        );
        registry.register(
            "pending_connections",
            "HTTP connections not (yet) upgraded to a WebSocket",
            pending_connections.clone(),
        );
        registry.register(
            "sessions_parked",
            "Sessions whose socket dropped, waiting for a client to resume them",
            sessions_parked.clone(),
        );
        registry.register(
            "calls_in_flight",
            "Calls running now, by method",
            calls_in_flight.clone(),
        );
        registry.register(
            "calls",
            "Calls ended, by method and status code",
            calls.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes of text frames received",
            bytes_received.clone(),
        );
        registry.register(
            "sent_bytes",
            "Bytes of text frames sent",
            bytes_sent.clone(),
        );
        registry.register(
            "rejected",
            "Frames and connections refused, by reason",
            rejected.clone(),
        );
        Self {
            registry,
            connections_open,
            pending_connections,
            sessions_parked,
            calls_in_flight,
            calls,
            bytes_received,
            bytes_sent,
            rejected,
        }
    }
}

impl Metrics {
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub(crate) fn rejected(&self, reason: Rejection) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    pub(crate) fn call_ended(&self, method: &str, code: tonic::Code) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                code: code_name(code),
            })
            .inc();
    }

    /// Counts a call as in flight until the guard is dropped, which also
    /// happens when its task is aborted.
    pub(crate) fn in_flight(&self, method: &str) -> InFlight {
        let gauge = self
            .calls_in_flight
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }
}

pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        let guard = metrics.in_flight("a.B/C");
        metrics.call_ended("a.B/C", tonic::Code::NotFound);
        metrics.rejected(Rejection::Binary);
        let text = metrics.render();
        assert!(
            text.contains(r#"wsgrpc_calls_in_flight{method="a.B/C"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"wsgrpc_calls_total{method="a.B/C",code="NOT_FOUND"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"wsgrpc_rejected_total{reason="binary"} 1"#),
            "{text}"
        );
        drop(guard);
        assert!(
            metrics
                .render()
                .contains(r#"wsgrpc_calls_in_flight{method="a.B/C"} 0"#)
        );
    }
}
