//! A ready WebSocket ↔ gRPC bridge for backends in any language.
//!
//! `wsgrpc-bridge` learns the backend's services at run time — from a
//! `FileDescriptorSet` or from the backend's gRPC server reflection — and
//! serves them with the same runtime as a bridge generated from `.proto`
//! files: the same protocol, limits, metrics and proto3 JSON. Browsers call
//! it with the TypeScript client that `protoc-gen-wsgrpc` writes.
//!
//! The binary is the product; this library holds its parts, for tests and
//! for programs that embed it.

#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod config;
pub mod descriptors;
mod error;
pub mod reflection;
mod serve;

pub use config::Options;
pub use descriptors::{LoadError, Source};
pub use error::Error;
pub use serve::{run, serve};
