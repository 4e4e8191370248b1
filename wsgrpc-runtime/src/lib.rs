//! The runtime of wsgrpc: browsers call gRPC services over one WebSocket.
//!
//! A browser sends JSON envelopes over a WebSocket; the
//! [`Bridge`] turns each into a gRPC call on a shared HTTP/2 channel to an
//! unchanged backend and streams the answers back. What the bridge knows of
//! each service — its methods, their kinds and how to turn their messages
//! between proto3 JSON and protobuf — comes from code that `wsgrpc-gen`
//! generates from the `.proto` files, through the [`codegen`] module.
//!
//! ```no_run
//! # fn example_service() -> wsgrpc_runtime::Service { unimplemented!() }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! wsgrpc_runtime::Bridge::builder()
//!     .backend_uri("http://127.0.0.1:50051")
//!     .service(example_service())
//!     .build()?
//!     .serve()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The wire protocol is described in `docs/PROTOCOL.md`.

#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod accept;
mod access;
mod backend;
mod bridge;
mod call;
mod config;
mod connection;
#[doc(hidden)]
pub mod envelope;
mod flow;
mod frame;
pub mod json;
mod metadata;
mod metrics;
mod non_finite;
mod outbox;
mod receive;
mod service;
mod session;
mod shared;
mod token;
mod transcode;
mod untrusted;

pub use access::{AllowedOrigins, Authenticator, UpgradeRequest};
pub use bridge::{Bridge, BridgeBuilder, BuildError, shutdown_signal};
pub use config::BridgeConfig;
pub use json::{JsonOptions, JsonRules, JsonWriter, TranscodeError};
pub use metadata::Metadata;
pub use prost_reflect;
pub use service::{Descriptors, InvalidName, Method, MethodKind, Service, ServiceTable};
pub use token::TokenAuth;
pub use tokio_util::sync::CancellationToken;
/// The status an [`Authenticator`] refuses a socket or a call with (tonic's).
pub use tonic::{Code, Status};
pub use transcode::BytesCodec;

/// What generated code uses; `use wsgrpc_runtime::codegen::*;` brings it in.
pub mod codegen {
    pub use crate::service::{Descriptors, Method, MethodKind, Service};
    /// The well-known types, so that generated code that uses them needs no
    /// `prost-types` of its user's.
    pub use prost_types;
}

/// Includes the Rust that `wsgrpc-gen` wrote for a proto package in a build
/// script: `include_proto!("example.v1")` inside `pub mod v1 { … }`.
#[macro_export]
macro_rules! include_proto {
    ($package:tt) => {
        include!(concat!(env!("OUT_DIR"), concat!("/", $package, ".rs")));
    };
}
