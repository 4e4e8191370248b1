//! The table that generated code fills in: services, their methods, each
//! method's kind and the descriptors of its request and response types.
//!
//! The runtime never names a message type: a [`Method`] carries the
//! descriptors of its messages, and [`crate::json`] turns JSON into protobuf
//! and back from those alone. Generated code takes them from the descriptor
//! set it embeds; a bridge built at run time could take them from anywhere.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use prost_reflect::{DescriptorPool, MessageDescriptor, ServiceDescriptor};
use serde_json::value::RawValue;

use crate::json::{self, JsonOptions, JsonRules, JsonWriter, TranscodeError};

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

/// One RPC of a service, as the bridge needs to know it.
#[derive(Clone)]
pub struct Method {
    name: Cow<'static, str>,
    kind: MethodKind,
    input: MessageDescriptor,
    /// Whether requests may hold proto2 types, which reading them checks
    /// further.
    input_reaches_proto2: bool,
    output: JsonWriter,
    json: JsonOptions,
}

impl Method {
    /// A method taking messages of type `input` and answering with `output`.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        kind: MethodKind,
        input: MessageDescriptor,
        output: MessageDescriptor,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            input_reaches_proto2: json::proto2::reaches(&input),
            input,
            output: JsonWriter::new(&output),
            json: JsonOptions::canonical(),
        }
    }

    /// The same method, writing responses with `options`.
    pub fn with_json_options(mut self, options: JsonOptions) -> Self {
        self.json = options;
        self
    }

    /// The method's name as written in the .proto, e.g. `SayHello`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether requests and responses stream, which decides how the bridge
    /// runs a call.
    pub fn kind(&self) -> MethodKind {
        self.kind
    }

    /// The request type, against which request payloads are read.
    pub fn input(&self) -> &MessageDescriptor {
        &self.input
    }

    /// The response type, in which responses are written.
    pub fn output(&self) -> &MessageDescriptor {
        self.output.descriptor()
    }

    /// How responses are written.
    pub fn json_options(&self) -> JsonOptions {
        self.json
    }

    /// Reads a request payload (JSON text) and returns its protobuf encoding.
    pub fn decode_request(&self, json: &str) -> Result<Bytes, TranscodeError> {
        json::read_request(&self.input, json, self.input_reaches_proto2)
    }

    /// Writes one protobuf-encoded response as JSON, with the method's
    /// options.
    pub fn encode_response(&self, proto: &[u8]) -> Result<Box<RawValue>, TranscodeError> {
        self.encode_response_with(proto, &self.json)
    }

    /// Writes one protobuf-encoded response as JSON, with `options`.
    pub fn encode_response_with(
        &self,
        proto: &[u8],
        options: &JsonOptions,
    ) -> Result<Box<RawValue>, TranscodeError> {
        self.output.to_json(proto, options)
    }

    /// Writes one protobuf-encoded response as JSON text, with the method's
    /// options.
    pub fn response_text(&self, proto: &[u8]) -> Result<String, TranscodeError> {
        self.response_text_with(proto, &self.json)
    }

    /// Writes one protobuf-encoded response as JSON text, with `options`.
    pub fn response_text_with(
        &self,
        proto: &[u8],
        options: &JsonOptions,
    ) -> Result<String, TranscodeError> {
        self.output.to_text(proto, options)
    }

    /// Appends one protobuf-encoded response to `out` as JSON, with the
    /// method's options. On error, `out` is as it was.
    pub fn write_response(&self, proto: &[u8], out: &mut Vec<u8>) -> Result<(), TranscodeError> {
        self.write_response_with(proto, &self.json, out)
    }

    /// Appends one protobuf-encoded response to `out` as JSON, with
    /// `options`. On error, `out` is as it was.
    pub fn write_response_with(
        &self,
        proto: &[u8],
        options: &JsonOptions,
        out: &mut Vec<u8>,
    ) -> Result<(), TranscodeError> {
        self.output.write(proto, options, out)
    }

    /// The same method with its descriptors taken from `pool`, where `pool`
    /// has them.
    fn rebound(&self, pool: &DescriptorPool) -> Self {
        let find = |descriptor: &MessageDescriptor| {
            pool.get_message_by_name(descriptor.full_name())
                .unwrap_or_else(|| descriptor.clone())
        };
        Self {
            input: find(&self.input),
            output: JsonWriter::new(&find(self.output.descriptor())),
            ..self.clone()
        }
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Method")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("input", &self.input.full_name())
            .field("output", &self.output.descriptor().full_name())
            .field("json", &self.json)
            .finish()
    }
}

/// The descriptors that generated code embeds, from which it builds its
/// methods.
#[derive(Debug, Clone)]
pub struct Descriptors {
    pool: DescriptorPool,
}

impl Descriptors {
    /// Decodes a serialized `FileDescriptorSet` written by wsgrpc-gen, on
    /// top of prost-reflect's well-known types, which the generator leaves
    /// out of the set.
    ///
    /// # Panics
    ///
    /// If the bytes are not a valid set, which the generator never writes.
    pub fn new(file_descriptor_set: &[u8]) -> Self {
        let mut pool = DescriptorPool::global();
        pool.decode_file_descriptor_set(file_descriptor_set)
            .unwrap_or_else(|err| panic!("wsgrpc-gen embedded invalid descriptors: {err}"));
        Self { pool }
    }

    /// A method whose messages are the types named `input` and `output`
    /// (fully qualified, no leading dot).
    ///
    /// # Panics
    ///
    /// If the set lacks either type, which the generator never allows.
    pub fn method(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: MethodKind,
        input: &str,
        output: &str,
    ) -> Method {
        let find = |type_name: &str| {
            self.pool
                .get_message_by_name(type_name)
                .unwrap_or_else(|| panic!("embedded descriptors lack `{type_name}`"))
        };
        Method::new(name, kind, find(input), find(output))
    }

    /// Every type the set declares, with the well-known types.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }
}

/// A gRPC service: its fully-qualified name and its methods.
#[derive(Debug, Clone)]
pub struct Service {
    name: Cow<'static, str>,
    methods: Vec<Method>,
}

impl Service {
    /// `name` is fully qualified: `example.ExampleService`.
    ///
    /// The names are not checked: a method whose service and method names
    /// do not form a gRPC path (`/example.ExampleService/SayHello`) is left
    /// out of the bridge's table with a warning. [`try_new`](Self::try_new)
    /// refuses such names instead.
    pub fn new(name: impl Into<Cow<'static, str>>, methods: impl Into<Vec<Method>>) -> Self {
        Self {
            name: name.into(),
            methods: methods.into(),
        }
    }

    /// A service whose name and method names are proto identifiers (the
    /// service's qualified by its package, `example.ExampleService`), as a
    /// gRPC path needs them; the first that is not, otherwise.
    pub fn try_new(
        name: impl Into<Cow<'static, str>>,
        methods: impl Into<Vec<Method>>,
    ) -> Result<Self, InvalidName> {
        let service = Self::new(name, methods);
        if !service.name.split('.').all(is_identifier) {
            return Err(InvalidName(service.name.into_owned()));
        }
        if let Some(method) = service.methods.iter().find(|m| !is_identifier(m.name())) {
            return Err(InvalidName(method.name().to_owned()));
        }
        Ok(service)
    }

    /// The service as its descriptor defines it, every method included: for
    /// a bridge that learns its services at run time, from a descriptor set
    /// or the backend's reflection, instead of from generated code.
    pub fn from_descriptor(service: &ServiceDescriptor) -> Self {
        let methods: Vec<Method> = service
            .methods()
            .map(|method| {
                let kind = MethodKind::from_streaming(
                    method.is_client_streaming(),
                    method.is_server_streaming(),
                );
                Method::new(
                    method.name().to_owned(),
                    kind,
                    method.input(),
                    method.output(),
                )
            })
            .collect();
        Self::new(service.full_name().to_owned(), methods)
    }

    /// The fully-qualified name, e.g. `example.ExampleService`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every method, in the order given.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }
}

/// Whether `name` is a proto identifier: a letter or `_`, then letters,
/// digits and `_`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A service or method name that is not a proto identifier, so it cannot
/// be part of a gRPC path; see [`Service::try_new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName(String);

impl InvalidName {
    /// The name, as given.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a valid service or method name: a gRPC path needs proto identifiers",
            self.0
        )
    }
}

impl std::error::Error for InvalidName {}

/// A method the bridge can call, with its HTTP/2 path precomputed.
#[derive(Debug)]
pub(crate) struct Route {
    pub method: Method,
    /// `package.Service/Method`, the name generated clients send.
    pub full_name: String,
    /// `/package.Service/Method`, the gRPC request path.
    pub path: http::uri::PathAndQuery,
}

/// Every registered method, found by the names clients may use.
///
/// The descriptors of every service are merged into one pool, so that an
/// `Any` in any message resolves against every type the bridge knows.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    json: JsonRules,
    services: Vec<Service>,
    pool: DescriptorPool,
    routes: HashMap<String, Arc<Route>>,
    /// Bare method names; `None` where two services share the name. Their
    /// routes write JSON with [`JsonRules::bare_name`].
    bare: HashMap<String, Option<Arc<Route>>>,
}

impl Registry {
    /// An empty registry whose calls get JSON options by `json`.
    pub(crate) fn new(json: JsonRules) -> Self {
        Self {
            json,
            ..Self::default()
        }
    }

    /// A registry of `services`: their descriptors merged once per pool,
    /// then every method routed against the merged pool.
    fn with_services(json: JsonRules, services: impl IntoIterator<Item = Service>) -> Self {
        let mut registry = Self::new(json);
        registry.services = services.into_iter().collect();
        let pools: Vec<DescriptorPool> = registry
            .services
            .iter()
            .flat_map(Service::methods)
            .flat_map(|method| [method.input(), method.output()])
            .map(|descriptor| descriptor.parent_pool().clone())
            .collect();
        // Pools compare by identity: the methods of one service, or of a
        // whole descriptor set, share theirs.
        let mut merged: Vec<DescriptorPool> = Vec::new();
        for pool in pools {
            if !merged.contains(&pool) {
                registry.merge(&pool);
                merged.push(pool);
            }
        }
        for service in std::mem::take(&mut registry.services) {
            registry.route(&service);
            registry.services.push(service);
        }
        registry
    }

    /// Adds the files of `pool` that the merged pool lacks. A file that
    /// differs from one of the same name already there is left out: its
    /// methods keep their own pool, in which `Any` resolves only their
    /// own types.
    fn merge(&mut self, pool: &DescriptorPool) {
        let mut missing = Vec::new();
        for file in pool.files() {
            match self.pool.get_file_by_name(file.name()) {
                Some(known) if known.file_descriptor_proto() != file.file_descriptor_proto() => {
                    tracing::warn!(
                        file = file.name(),
                        "two services bring different versions of this file; keeping the first"
                    );
                }
                Some(_) => {}
                None => missing.push(file.file_descriptor_proto().clone()),
            }
        }
        if missing.is_empty() {
            return;
        }
        // Added together: a pool lists its files in no particular order,
        // and each must come after the files it imports.
        let mut merged = self.pool.clone();
        match merged.add_file_descriptor_protos(missing) {
            Ok(()) => self.pool = merged,
            Err(err) => tracing::warn!(%err, "descriptors not merged"),
        }
    }

    fn route(&mut self, service: &Service) {
        for method in service.methods() {
            let method = method.rebound(&self.pool);
            let full_name = format!("{}/{}", service.name(), method.name());
            let path = format!("/{full_name}");
            // `Service::new` takes any name; one that is not a path alone
            // (a query, a space) is left out rather than served wrongly.
            let path = match path.parse::<http::uri::PathAndQuery>() {
                Ok(parsed) if parsed.query().is_none() && parsed.path() == path => parsed,
                _ => {
                    tracing::warn!(method = %full_name, "not a valid gRPC path; not served");
                    continue;
                }
            };
            let bare = Arc::new(Route {
                method: method.clone().with_json_options(self.json.bare_name),
                full_name: full_name.clone(),
                path: path.clone(),
            });
            let route = Arc::new(Route {
                method: method.with_json_options(self.json.full_name),
                full_name: full_name.clone(),
                path,
            });
            self.bare
                .entry(route.method.name().to_owned())
                .and_modify(|slot| *slot = None)
                .or_insert(Some(bare));
            self.routes.insert(full_name, route);
        }
    }

    /// Finds a method by `package.Service/Method` (a leading `/` is
    /// accepted), or by its bare name where that is unique.
    pub(crate) fn resolve(&self, name: &str) -> Result<&Arc<Route>, ResolveError> {
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

    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every method's full name, sorted.
    pub(crate) fn full_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The services of a bridge, which can be replaced while it serves.
///
/// Clones are handles to one table. A call looks its method up once, when
/// it starts, and keeps it: replacing the table never disturbs a call that
/// is running, and calls started afterwards see only the new services.
#[derive(Clone, Default)]
pub struct ServiceTable {
    current: Arc<RwLock<Arc<Registry>>>,
}

impl ServiceTable {
    /// An empty table: every method is unknown until services are added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `services` from now on, in place of every service before.
    pub fn replace(&self, services: impl IntoIterator<Item = Service>) {
        let json = self.current().json;
        self.install(Registry::with_services(json, services));
    }

    /// Every method's full name (`package.Service/Method`), sorted.
    pub fn method_names(&self) -> Vec<String> {
        let current = self.current();
        current
            .full_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Whether the table has no method, as before its services load.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Writes JSON by `json` from now on, and adds `services`.
    pub(crate) fn configure(&self, json: JsonRules, services: &[Service]) {
        let current = self.current();
        let all = current.services.iter().chain(services).cloned();
        self.install(Registry::with_services(json, all));
    }

    pub(crate) fn resolve(&self, name: &str) -> Result<Arc<Route>, ResolveError> {
        self.current().resolve(name).cloned()
    }

    fn current(&self) -> Arc<Registry> {
        // A poisoned lock still holds a whole registry: it is only ever
        // replaced, never changed in place.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn install(&self, registry: Registry) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
    }
}

impl fmt::Debug for ServiceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.method_names()).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResolveError {
    Unknown,
    Ambiguous,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> MessageDescriptor {
        prost_reflect::ReflectMessage::descriptor(&())
    }

    fn service(name: &'static str, methods: &[&'static str]) -> Service {
        let methods: Vec<Method> = methods
            .iter()
            .map(|m| Method::new(*m, MethodKind::Unary, empty(), empty()))
            .collect();
        Service::new(name, methods)
    }

    #[test]
    fn resolves_full_and_unique_bare_names() {
        let registry = Registry::with_services(
            JsonRules::default(),
            [
                service("a.One", &["Get", "List"]),
                service("b.Two", &["Get", "Watch"]),
            ],
        );

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
    fn a_replaced_table_serves_only_the_new_services_and_keeps_its_json_rules() {
        let table = ServiceTable::new();
        assert!(table.is_empty());
        let rules = JsonRules {
            full_name: JsonOptions::canonical().enum_numbers(true),
            bare_name: JsonOptions::canonical(),
        };
        table.configure(rules, &[service("a.One", &["Get"])]);
        let before = table.resolve("a.One/Get").unwrap();

        table.replace([
            service("a.One", &["Get", "Put"]),
            service("b.Two", &["Watch"]),
        ]);
        assert_eq!(
            table.method_names(),
            ["a.One/Get", "a.One/Put", "b.Two/Watch"]
        );
        assert!(
            table
                .resolve("a.One/Put")
                .unwrap()
                .method
                .json_options()
                .writes_enum_numbers()
        );
        // A call that resolved its method before keeps it.
        assert_eq!(before.full_name, "a.One/Get");

        table.replace([service("b.Two", &["Watch"])]);
        assert_eq!(
            table.resolve("a.One/Get").unwrap_err(),
            ResolveError::Unknown
        );
        assert_eq!(table.resolve("Watch").unwrap().full_name, "b.Two/Watch");
    }

    #[test]
    fn a_service_from_its_descriptor_has_every_method_with_its_kind() {
        let file = prost_types::FileDescriptorProto {
            name: Some("s.proto".into()),
            package: Some("s".into()),
            message_type: vec![prost_types::DescriptorProto {
                name: Some("M".into()),
                ..Default::default()
            }],
            service: vec![prost_types::ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: vec![
                    prost_types::MethodDescriptorProto {
                        name: Some("Up".into()),
                        input_type: Some(".s.M".into()),
                        output_type: Some(".s.M".into()),
                        client_streaming: Some(true),
                        ..Default::default()
                    },
                    prost_types::MethodDescriptorProto {
                        name: Some("Both".into()),
                        input_type: Some(".s.M".into()),
                        output_type: Some(".s.M".into()),
                        client_streaming: Some(true),
                        server_streaming: Some(true),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        let pool = DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
            file: vec![file],
        })
        .unwrap();
        let service = Service::from_descriptor(&pool.get_service_by_name("s.Svc").unwrap());
        assert_eq!(service.name(), "s.Svc");
        let methods: Vec<_> = service
            .methods()
            .iter()
            .map(|m| (m.name(), m.kind(), m.input().full_name()))
            .collect();
        assert_eq!(
            methods,
            [
                ("Up", MethodKind::ClientStreaming, "s.M"),
                ("Both", MethodKind::BidiStreaming, "s.M"),
            ]
        );
    }

    /// Each kind with its flags written out as data, checked against the
    /// functions and against what a descriptor of each kind yields.
    #[test]
    fn each_kind_has_its_streaming_flags() {
        // (kind, client streams, server streams, method name)
        const KINDS: [(MethodKind, bool, bool, &str); 4] = [
            (MethodKind::Unary, false, false, "One"),
            (MethodKind::ServerStreaming, false, true, "Down"),
            (MethodKind::ClientStreaming, true, false, "Up"),
            (MethodKind::BidiStreaming, true, true, "Both"),
        ];
        for (kind, client, server, _) in KINDS {
            assert_eq!(MethodKind::from_streaming(client, server), kind);
            assert_eq!(kind.client_streams(), client, "{kind:?}");
            assert_eq!(kind.server_streams(), server, "{kind:?}");
        }
        let method = |(_, client, server, name): (MethodKind, bool, bool, &str)| {
            prost_types::MethodDescriptorProto {
                name: Some(name.into()),
                input_type: Some(".s.M".into()),
                output_type: Some(".s.M".into()),
                client_streaming: Some(client),
                server_streaming: Some(server),
                ..Default::default()
            }
        };
        let file = prost_types::FileDescriptorProto {
            name: Some("s.proto".into()),
            package: Some("s".into()),
            message_type: vec![prost_types::DescriptorProto {
                name: Some("M".into()),
                ..Default::default()
            }],
            service: vec![prost_types::ServiceDescriptorProto {
                name: Some("Svc".into()),
                method: KINDS.into_iter().map(method).collect(),
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        let pool = DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
            file: vec![file],
        })
        .unwrap();
        let service = Service::from_descriptor(&pool.get_service_by_name("s.Svc").unwrap());
        let kinds: Vec<_> = service
            .methods()
            .iter()
            .map(|m| (m.name(), m.kind()))
            .collect();
        let expected: Vec<_> = KINDS
            .iter()
            .map(|&(kind, _, _, name)| (name, kind))
            .collect();
        assert_eq!(kinds, expected);
    }

    #[test]
    fn a_name_that_is_not_a_path_is_an_error_not_a_panic() {
        let method = |name: &'static str| Method::new(name, MethodKind::Unary, empty(), empty());
        assert!(Service::try_new("a.B", vec![method("Get")]).is_ok());
        assert!(Service::try_new("B_2", vec![method("_get")]).is_ok());
        for bad in ["a b.C", "a.B?x", "", "a..B", "1a.B", "a.B/C"] {
            let err = Service::try_new(bad, vec![method("Get")]).unwrap_err();
            assert_eq!(err.name(), bad);
        }
        let err = Service::try_new("a.B", vec![method("Get"), method("Ge t")]).unwrap_err();
        assert_eq!(err.name(), "Ge t");
        assert!(err.to_string().contains("`Ge t`"), "{err}");

        // `new` takes them, and the table serves the methods it can.
        let table = ServiceTable::new();
        table.replace([
            Service::new("a b.C", vec![method("Get")]),
            Service::new("a.B", vec![method("Get"), method("Put?x")]),
        ]);
        assert_eq!(table.method_names(), ["a.B/Get"]);
    }

    #[test]
    fn bare_names_get_their_own_json_options() {
        let registry = Registry::with_services(JsonRules::default(), [service("a.One", &["Get"])]);
        let full = registry.resolve("a.One/Get").unwrap();
        let bare = registry.resolve("Get").unwrap();
        assert_eq!(full.method.json_options(), JsonOptions::canonical());
        assert!(bare.method.json_options().writes_defaults());
        assert_eq!(bare.full_name, full.full_name);

        let rules = JsonRules {
            full_name: JsonOptions::canonical().enum_numbers(true),
            bare_name: JsonOptions::canonical(),
        };
        let registry = Registry::with_services(rules, [service("a.One", &["Get"])]);
        assert!(
            registry
                .resolve("/a.One/Get")
                .unwrap()
                .method
                .json_options()
                .writes_enum_numbers()
        );
        assert_eq!(
            registry.resolve("Get").unwrap().method.json_options(),
            JsonOptions::canonical()
        );
    }

    #[test]
    fn descriptors_of_every_service_share_one_pool() {
        let file = prost_types::FileDescriptorProto {
            name: Some("a.proto".into()),
            package: Some("a".into()),
            message_type: vec![prost_types::DescriptorProto {
                name: Some("Thing".into()),
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        let own = DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
            file: vec![file],
        })
        .unwrap();
        let thing = own.get_message_by_name("a.Thing").unwrap();
        assert!(own.get_message_by_name("google.protobuf.Empty").is_none());

        let registry = Registry::with_services(
            JsonRules::default(),
            [
                Service::new(
                    "a.One",
                    [Method::new("Get", MethodKind::Unary, thing.clone(), thing)],
                ),
                service("b.Two", &["Put"]),
            ],
        );
        let get = registry.resolve("a.One/Get").unwrap();
        let pool = get.method.input().parent_pool();
        assert!(pool.get_message_by_name("google.protobuf.Empty").is_some());
        let put = registry.resolve("Put").unwrap();
        assert!(
            put.method
                .output()
                .parent_pool()
                .get_message_by_name("a.Thing")
                .is_some()
        );
    }
}
