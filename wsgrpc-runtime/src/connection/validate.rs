//! What a well-formed `request` must pass to become a call: a method the
//! bridge serves, room on the socket, metadata the client may send, a
//! deadline and a window in range, a first message that decodes. What fails
//! here ends the call it would have been, with the status that says why.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::Connection;
use crate::call::{CallSpec, Deadline};
use crate::config::BridgeConfig;
use crate::flow::{ByteWindow, MAX_WINDOW, ResponseWindow};
use crate::frame::{Amount, Request};
use crate::metadata;
use crate::service::{ResolveError, Route};

/// Why a request does not become a call: the status that ends it (an
/// authenticator's, with its details and trailers, or the bridge's own).
/// Boxed, as tonic's `Status` is large.
pub(super) type Refusal = Box<Status>;

pub(super) fn refusal(code: Code, message: String) -> Refusal {
    Box::new(Status::new(code, message))
}

impl Connection {
    /// Checks a request and turns it into a call, or says why not.
    pub(super) fn prepare(
        &mut self,
        request: &Request<'_>,
    ) -> Result<(CallSpec, Option<Bytes>), Refusal> {
        if let Some(drain) = self.draining {
            return Err(refusal(Code::Unavailable, drain.reason().into()));
        }
        let route = self.resolve(&request.method)?;
        self.make_room()?;
        let metadata = self.call_metadata(&route, request)?;
        let deadline = deadline(&self.shared.config, request.timeout_ms)?;
        let window = self.response_window(&route, request.window)?;
        let first = first_request(&route, request)?;
        let spec = CallSpec {
            id: request.id.clone().into_owned(),
            method_echo: request.method.clone().into_owned(),
            protocol: self.protocol,
            json: self.json.unwrap_or_else(|| route.method.json_options()),
            route,
            metadata,
            deadline,
            window,
        };
        Ok((spec, first))
    }

    /// The method a request names.
    fn resolve(&self, method_echo: &str) -> Result<Arc<Route>, Refusal> {
        self.shared
            .services
            .resolve(method_echo)
            .map_err(|err| match err {
                ResolveError::Unknown => refusal(
                    Code::Unimplemented,
                    format!("unknown method `{method_echo}`"),
                ),
                ResolveError::Ambiguous => refusal(
                    Code::Unimplemented,
                    format!(
                        "method name `{method_echo}` is ambiguous; use `package.Service/{method_echo}`"
                    ),
                ),
            })
    }

    /// Forgets calls that have ended, and refuses a call beyond the
    /// connection's limit.
    fn make_room(&mut self) -> Result<(), Refusal> {
        self.reap_finished();
        let limit = self.shared.config.max_calls_per_connection;
        if self.calls.len() >= limit {
            let message = format!("too many calls in flight on this connection (limit {limit})");
            return Err(refusal(Code::ResourceExhausted, message));
        }
        Ok(())
    }

    /// The gRPC metadata of a call: the client's, made canonical and
    /// allowed by the authenticator, and the connection's identity.
    fn call_metadata(&self, route: &Route, request: &Request<'_>) -> Result<MetadataMap, Refusal> {
        let client_metadata = request.metadata.clone().unwrap_or_default();
        let client_metadata =
            metadata::canonical(client_metadata, &self.shared.config.metadata_limits())
                .map_err(|err| Box::new(err.into_status()))?;
        if let Some(auth) = &self.shared.authenticator {
            if let Some(key) = client_metadata
                .keys()
                .find(|key| self.identity.contains_key(*key))
            {
                return Err(refusal(
                    Code::PermissionDenied,
                    format!("metadata key `{key}` is set by the bridge"),
                ));
            }
            auth.authorize_call(&self.identity, &route.full_name, &client_metadata)
                .map_err(Box::new)?;
        }
        let mut grpc_metadata = MetadataMap::new();
        metadata::to_grpc(&client_metadata, &mut grpc_metadata)
            .map_err(|err| Box::new(err.into_status()))?;
        metadata::to_grpc(&self.identity, &mut grpc_metadata).map_err(|_| {
            refusal(
                Code::Internal,
                "the authenticator's identity is not valid metadata".into(),
            )
        })?;
        Ok(grpc_metadata)
    }

    /// v2: how much of the stream's responses the client takes at first. On
    /// a socket with byte windows, the socket's window holds every stream
    /// back, whether the request gave one of its own or not.
    fn response_window(
        &self,
        route: &Route,
        window: Option<Amount>,
    ) -> Result<Option<ResponseWindow>, Refusal> {
        let Some(Amount::Messages(amount) | Amount::Bytes(amount)) = window else {
            return Ok(self.socket_window(None));
        };
        if amount > MAX_WINDOW {
            let field = match window {
                Some(Amount::Bytes(_)) => "windowBytes",
                _ => "window",
            };
            return Err(refusal(
                Code::InvalidArgument,
                format!("`{field}` is larger than {MAX_WINDOW}"),
            ));
        }
        // A call with one response needs no window.
        if !route.method.kind().server_streams() {
            return Ok(None);
        }
        match window {
            Some(Amount::Bytes(bytes)) if self.windows.is_some() => {
                Ok(self.socket_window(Some(ByteWindow::new(bytes))))
            }
            Some(Amount::Bytes(_)) => Err(refusal(
                Code::InvalidArgument,
                "`windowBytes` needs byte windows: send the client's `settings` first".into(),
            )),
            _ => Ok(Some(ResponseWindow::messages(amount))),
        }
    }

    /// A byte window of the socket's, with the call's own if it has one.
    fn socket_window(&self, call: Option<Arc<ByteWindow>>) -> Option<ResponseWindow> {
        let windows = self.windows.as_ref()?;
        Some(ResponseWindow::Bytes {
            call,
            socket: windows.responses.clone(),
        })
    }
}

/// The sooner of the client's deadline and the bridge's limit, if any.
pub(super) fn deadline(
    limits: &BridgeConfig,
    timeout_ms: Option<u64>,
) -> Result<Option<Deadline>, Refusal> {
    let client_deadline = match timeout_ms {
        Some(0) => {
            return Err(refusal(
                Code::InvalidArgument,
                "`timeoutMs` must be positive".into(),
            ));
        }
        Some(ms) => Some(Deadline {
            after: Duration::from_millis(ms),
            bridge_limit: false,
        }),
        None => None,
    };
    let bridge_deadline = limits.max_call_duration.map(|after| Deadline {
        after,
        bridge_limit: true,
    });
    Ok(match (client_deadline, bridge_deadline) {
        (Some(client), Some(bridge)) if bridge.after < client.after => Some(bridge),
        (Some(client), _) => Some(client),
        (None, bridge) => bridge,
    })
}

/// The request message that comes with the request frame, as protobuf.
fn first_request(route: &Route, request: &Request<'_>) -> Result<Option<Bytes>, Refusal> {
    let first = match request.payload {
        Some(payload) => Some(payload.get()),
        // A call that takes one request always sends one: the empty message.
        None if !route.method.kind().client_streams() => Some("{}"),
        None => None,
    };
    first
        .map(|json| route.method.decode_request(json))
        .transpose()
        .map_err(|err| {
            refusal(
                Code::InvalidArgument,
                format!("invalid request payload for `{}`: {err}", route.full_name),
            )
        })
}
