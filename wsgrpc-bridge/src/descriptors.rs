//! Where the bridge's services come from: a `FileDescriptorSet` file or the
//! backend's server reflection, turned into the runtime's service table.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use tonic::transport::Channel;
use wsgrpc_runtime::Service;

use crate::reflection;

/// The services of these packages are the bridge's own business, not the
/// backend's API: a page has no use for them.
const INFRASTRUCTURE: &[&str] = &["grpc.reflection."];

/// Where the descriptors are read from, at start and at every reload.
#[derive(Debug, Clone)]
pub enum Source {
    /// A serialized `FileDescriptorSet`, as `buf build -o api.binpb` or
    /// `protoc --include_imports --descriptor_set_out=api.binpb` write it.
    File(PathBuf),
    /// The backend's gRPC server reflection (`grpc.reflection.v1`, or
    /// `v1alpha` where v1 is missing).
    Reflection,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "descriptor set {}", path.display()),
            Self::Reflection => f.write_str("server reflection"),
        }
    }
}

/// Why no services could be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The backend could not be reached; worth trying again.
    Unreachable(String),
    /// Anything else: a bad file, a backend without reflection, a broken
    /// set of descriptors.
    Invalid(String),
}

impl LoadError {
    /// Whether a later attempt may succeed: the backend was unreachable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(message) | Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why descriptors do not give the services to serve.
#[derive(Debug)]
#[non_exhaustive]
pub enum DescriptorsError {
    /// Files import others that neither they nor Google's well-known types
    /// hold: each as `file` (imported by `importer`).
    MissingImports(Vec<String>),
    /// The files do not make a valid pool.
    Invalid(prost_reflect::DescriptorError),
    /// Services asked for by name that the descriptors do not define.
    UnknownServices(Vec<String>),
    /// The descriptors define no service to serve.
    NoServices,
}

impl fmt::Display for DescriptorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingImports(imports) => write!(
                f,
                "missing imports: {}; include them (`protoc --include_imports`)",
                imports.join(", ")
            ),
            Self::Invalid(_) => f.write_str("invalid descriptors"),
            Self::UnknownServices(names) => write!(f, "no service named {}", names.join(", ")),
            Self::NoServices => f.write_str("the descriptors define no services"),
        }
    }
}

impl std::error::Error for DescriptorsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Invalid(source) => Some(source),
            _ => None,
        }
    }
}

/// `err` as a load error of `origin` (a file, reflection), in one line.
fn invalid(origin: impl fmt::Display, err: &DescriptorsError) -> LoadError {
    let mut message = format!("{origin}: {err}");
    if let Some(source) = std::error::Error::source(err) {
        message.push_str(&format!(": {source}"));
    }
    LoadError::Invalid(message)
}

impl Source {
    /// Reads the descriptors and returns the services to serve: every
    /// service they define, or those named in `only` (all must exist).
    pub async fn load(
        &self,
        backend: &Channel,
        only: &[String],
    ) -> Result<Vec<Service>, LoadError> {
        let pool = match self {
            Self::File(path) => read_pool(path)?,
            Self::Reflection => {
                let files = reflection::fetch(backend.clone()).await?;
                pool_from(files).map_err(|err| invalid(self, &err))?
            }
        };
        services(&pool, only).map_err(|err| invalid(self, &err))
    }
}

/// The descriptors of a `FileDescriptorSet` file, in one pool.
pub fn read_pool(path: &Path) -> Result<DescriptorPool, LoadError> {
    let files = read_set(path)?;
    pool_from(files).map_err(|err| invalid(path.display(), &err))
}

fn read_set(path: &Path) -> Result<Vec<FileDescriptorProto>, LoadError> {
    let bytes = std::fs::read(path).map_err(|err| {
        LoadError::Invalid(format!(
            "cannot read descriptor set {}: {err}",
            path.display()
        ))
    })?;
    let set = FileDescriptorSet::decode(bytes.as_slice()).map_err(|err| {
        LoadError::Invalid(format!(
            "{} is not a FileDescriptorSet ({err}); write one with `buf build -o FILE` or \
             `protoc --include_imports --descriptor_set_out=FILE`",
            path.display()
        ))
    })?;
    if set.file.is_empty() {
        return Err(LoadError::Invalid(format!(
            "{} holds no files: is it a descriptor set?",
            path.display()
        )));
    }
    Ok(set.file)
}

/// Builds one pool from `files`. Imports of Google's well-known types that
/// the files lack are taken from prost-reflect's copies (a set written
/// without `--include_imports` usually lacks nothing else); any other
/// missing import is an error that names it.
pub fn pool_from(mut files: Vec<FileDescriptorProto>) -> Result<DescriptorPool, DescriptorsError> {
    let mut known: HashSet<String> = files.iter().map(|file| file.name().to_owned()).collect();
    let mut missing = BTreeSet::new();
    let well_known = DescriptorPool::global();
    let mut index = 0;
    while index < files.len() {
        let imports = files[index].dependency.clone();
        for import in imports {
            if known.contains(&import) {
                continue;
            }
            match well_known.get_file_by_name(&import) {
                Some(file) => {
                    known.insert(import);
                    files.push(file.file_descriptor_proto().clone());
                }
                None => {
                    missing.insert(format!(
                        "`{import}` (imported by `{}`)",
                        files[index].name()
                    ));
                }
            }
        }
        index += 1;
    }
    if !missing.is_empty() {
        return Err(DescriptorsError::MissingImports(
            missing.into_iter().collect(),
        ));
    }
    DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: files })
        .map_err(DescriptorsError::Invalid)
}

/// The services of `pool` to serve, sorted by name.
pub fn services(pool: &DescriptorPool, only: &[String]) -> Result<Vec<Service>, DescriptorsError> {
    let unknown: Vec<String> = only
        .iter()
        .filter(|name| pool.get_service_by_name(name).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(DescriptorsError::UnknownServices(unknown));
    }
    let mut services: Vec<Service> = pool
        .services()
        .filter(|service| {
            if only.is_empty() {
                !INFRASTRUCTURE
                    .iter()
                    .any(|prefix| service.full_name().starts_with(prefix))
            } else {
                only.iter().any(|name| name == service.full_name())
            }
        })
        .map(|service| Service::from_descriptor(&service))
        .collect();
    if services.is_empty() {
        return Err(DescriptorsError::NoServices);
    }
    services.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    use prost_types::{DescriptorProto, MethodDescriptorProto, ServiceDescriptorProto};
    use wsgrpc_runtime::MethodKind;

    fn api_file(imports: &[&str]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some("api.proto".into()),
            package: Some("api".into()),
            dependency: imports.iter().map(|name| (*name).to_owned()).collect(),
            message_type: vec![DescriptorProto {
                name: Some("Ping".into()),
                ..Default::default()
            }],
            service: vec![ServiceDescriptorProto {
                name: Some("Pinger".into()),
                method: vec![
                    MethodDescriptorProto {
                        name: Some("Ping".into()),
                        input_type: Some(".api.Ping".into()),
                        output_type: Some(".google.protobuf.Empty".into()),
                        ..Default::default()
                    },
                    MethodDescriptorProto {
                        name: Some("Watch".into()),
                        input_type: Some(".api.Ping".into()),
                        output_type: Some(".api.Ping".into()),
                        server_streaming: Some(true),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        }
    }

    #[test]
    fn well_known_imports_are_filled_in_and_methods_keep_their_kinds() {
        let pool = pool_from(vec![api_file(&["google/protobuf/empty.proto"])]).unwrap();
        let services = services(&pool, &[]).unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].name(), "api.Pinger");
        let methods = services[0].methods();
        assert_eq!(methods[0].name(), "Ping");
        assert_eq!(methods[0].output().full_name(), "google.protobuf.Empty");
        assert_eq!(methods[1].kind(), MethodKind::ServerStreaming);
    }

    #[test]
    fn a_missing_import_is_named() {
        let err = pool_from(vec![api_file(&[
            "google/protobuf/empty.proto",
            "acme/money.proto",
        ])])
        .unwrap_err();
        let DescriptorsError::MissingImports(missing) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(missing, &["`acme/money.proto` (imported by `api.proto`)"]);
        assert!(err.to_string().contains("--include_imports"), "{err}");
    }

    #[test]
    fn only_named_services_are_served_and_unknown_names_are_errors() {
        let pool = pool_from(vec![api_file(&["google/protobuf/empty.proto"])]).unwrap();
        assert_eq!(services(&pool, &["api.Pinger".into()]).unwrap().len(), 1);
        let err = services(&pool, &["api.Pinger".into(), "api.Nope".into()]).unwrap_err();
        assert!(matches!(&err, DescriptorsError::UnknownServices(names) if names == &["api.Nope"]));
        assert_eq!(err.to_string(), "no service named api.Nope");
    }

    #[test]
    fn a_file_that_is_not_a_descriptor_set_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.binpb");
        std::fs::write(&path, b"syntax = \"proto3\";\n").unwrap();
        let err = read_set(&path).unwrap_err().to_string();
        assert!(err.contains("is not a FileDescriptorSet"), "{err}");
        let err = read_set(&dir.path().join("nowhere.binpb"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read descriptor set"), "{err}");
    }
}
