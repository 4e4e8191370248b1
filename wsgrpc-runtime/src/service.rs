//! The table that generated code fills in: services, their methods, each
//! method's kind and the two functions that turn JSON into protobuf and back.
//!
//! The runtime never names a message type: a [`Method`] carries plain
//! function pointers, instantiated by the generated code for its own types.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::transcode::{self, TranscodeError};

/// How many messages flow each way, straight from the method's descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// A stream of requests and a stream of responses.
    BidiStreaming,
}

impl MethodKind {
    /// The kind of a method whose client and server do or do not stream.
    pub const fn from_streaming(client_streaming: bool, server_streaming: bool) -> Self {
        match (client_streaming, server_streaming) {
            (false, false) => Self::Unary,
            (false, true) => Self::ServerStreaming,
            (true, false) => Self::ClientStreaming,
            (true, true) => Self::BidiStreaming,
        }
    }

    /// Whether the client may send more than one request message.
    pub const fn client_streams(self) -> bool {
        matches!(self, Self::ClientStreaming | Self::BidiStreaming)
    }

    /// Whether the backend may answer with more than one response message.
    pub const fn server_streams(self) -> bool {
        matches!(self, Self::ServerStreaming | Self::BidiStreaming)
    }
}

/// Decodes a request payload (JSON text) into the protobuf encoding of the
/// method's request type.
pub type DecodeRequest = fn(&str) -> Result<Bytes, TranscodeError>;
/// Encodes one protobuf-encoded response message as proto3 JSON.
pub type EncodeResponse = fn(&[u8]) -> Result<Box<RawValue>, TranscodeError>;

/// One RPC of a service, as the bridge needs to know it.
#[derive(Clone)]
pub struct Method {
    name: &'static str,
    kind: MethodKind,
    decode_request: DecodeRequest,
    encode_response: EncodeResponse,
}

impl Method {
    /// A method whose request type is `Req` and response type is `Res`, both
    /// prost messages with proto3 JSON serde implementations.
    pub fn new<Req, Res>(name: &'static str, kind: MethodKind) -> Self
    where
        Req: prost::Message + serde::de::DeserializeOwned + 'static,
        Res: prost::Message + Default + serde::Serialize + 'static,
    {
        Self {
            name,
            kind,
            decode_request: transcode::json_to_proto::<Req>,
            encode_response: transcode::proto_to_json::<Res>,
        }
    }

    /// The method's name as written in the .proto, e.g. `SayHello`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn kind(&self) -> MethodKind {
        self.kind
    }

    pub fn decode_request(&self, json: &str) -> Result<Bytes, TranscodeError> {
        (self.decode_request)(json)
    }

    pub fn encode_response(&self, proto: &[u8]) -> Result<Box<RawValue>, TranscodeError> {
        (self.encode_response)(proto)
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A gRPC service: its fully-qualified name and its methods.
#[derive(Debug, Clone)]
pub struct Service {
    name: &'static str,
    methods: Vec<Method>,
}

impl Service {
    /// `name` is fully qualified: `example.ExampleService`.
    pub fn new(name: &'static str, methods: impl Into<Vec<Method>>) -> Self {
        Self {
            name,
            methods: methods.into(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn methods(&self) -> &[Method] {
        &self.methods
    }
}

/// A method the bridge can call, with its HTTP/2 path precomputed.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// `package.Service/Method`, the name generated clients send.
    pub full_name: String,
    /// `/package.Service/Method`, the gRPC request path.
    pub path: http::uri::PathAndQuery,
}

/// Every registered method, found by the names clients may use.
#[derive(Debug, Default)]
pub struct Registry {
    routes: HashMap<String, Arc<Route>>,
    /// Bare method names; `None` where two services share the name.
    bare: HashMap<&'static str, Option<Arc<Route>>>,
}

impl Registry {
    pub fn add(&mut self, service: &Service) {
        for method in service.methods() {
            let full_name = format!("{}/{}", service.name(), method.name());
            let path = format!("/{full_name}")
                .parse()
                .expect("a proto service and method name form a valid path");
            let route = Arc::new(Route {
                method: method.clone(),
                full_name: full_name.clone(),
                path,
            });
            self.bare
                .entry(method.name())
                .and_modify(|slot| *slot = None)
                .or_insert_with(|| Some(route.clone()));
            self.routes.insert(full_name, route);
        }
    }

    /// Finds a method by `package.Service/Method` (a leading `/` is
    /// accepted), or by its bare name where that is unique.
    pub fn resolve(&self, name: &str) -> Result<&Arc<Route>, ResolveError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        if let Some(route) = self.routes.get(name) {
            return Ok(route);
        }
        if name.contains('/') {
            return Err(ResolveError::Unknown);
        }
        match self.bare.get(name) {
            Some(Some(route)) => Ok(route),
            Some(None) => Err(ResolveError::Ambiguous),
            None => Err(ResolveError::Unknown),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every method's full name, sorted.
    pub fn full_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    Unknown,
    Ambiguous,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &'static str, methods: &[&'static str]) -> Service {
        let methods: Vec<Method> = methods
            .iter()
            .map(|m| Method::new::<(), ()>(m, MethodKind::Unary))
            .collect();
        Service::new(name, methods)
    }

    #[test]
    fn resolves_full_and_unique_bare_names() {
        let mut registry = Registry::default();
        registry.add(&service("a.One", &["Get", "List"]));
        registry.add(&service("b.Two", &["Get", "Watch"]));

        assert_eq!(
            registry.resolve("a.One/Get").unwrap().full_name,
            "a.One/Get"
        );
        assert_eq!(registry.resolve("/b.Two/Get").unwrap().path, "/b.Two/Get");
        assert_eq!(registry.resolve("Watch").unwrap().full_name, "b.Two/Watch");
        assert_eq!(
            registry.resolve("Get").unwrap_err(),
            ResolveError::Ambiguous
        );
        assert_eq!(
            registry.resolve("a.One/Watch").unwrap_err(),
            ResolveError::Unknown
        );
        assert_eq!(
            registry.resolve("Missing").unwrap_err(),
            ResolveError::Unknown
        );
        assert_eq!(registry.resolve("").unwrap_err(), ResolveError::Unknown);
    }

    #[test]
    fn kind_follows_the_streaming_flags() {
        assert_eq!(MethodKind::from_streaming(false, false), MethodKind::Unary);
        assert_eq!(
            MethodKind::from_streaming(true, true),
            MethodKind::BidiStreaming
        );
        assert!(MethodKind::ClientStreaming.client_streams());
        assert!(!MethodKind::ClientStreaming.server_streams());
    }
}
