//! A client of gRPC server reflection: every service of the backend and the
//! files that define them, with all their imports.
//!
//! `grpc.reflection.v1alpha` is a copy of `v1` under another package, field
//! for field, so one set of message types speaks both: only the path of the
//! call differs.

use std::collections::HashSet;
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message;
use prost_types::FileDescriptorProto;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};
use tonic_prost::ProstCodec;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::descriptors::LoadError;

const PATHS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// How long loading every descriptor may take, so that a backend that
/// accepts the call and never answers cannot hold a reload forever.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Every file that defines a service of the backend, and every file those
/// import.
pub async fn fetch(channel: Channel) -> Result<Vec<FileDescriptorProto>, LoadError> {
    match tokio::time::timeout(TIMEOUT, fetch_any_version(channel)).await {
        Ok(result) => result,
        Err(_) => Err(LoadError::Unreachable(format!(
            "server reflection did not answer within {}s",
            TIMEOUT.as_secs()
        ))),
    }
}

async fn fetch_any_version(channel: Channel) -> Result<Vec<FileDescriptorProto>, LoadError> {
    let mut unimplemented = Vec::new();
    for path in PATHS {
        match Session::open(channel.clone(), path).await {
            Ok((mut session, services)) => return session.all_files(services).await,
            Err(status) if status.code() == Code::Unimplemented => {
                unimplemented.push(
                    path.trim_end_matches("/ServerReflectionInfo")
                        .trim_start_matches('/'),
                );
            }
            Err(status) => return Err(failure(status)),
        }
    }
    Err(LoadError::Invalid(format!(
        "the backend serves no server reflection (neither {}): enable it there, or give the \
         bridge a descriptor set",
        unimplemented.join(" nor ")
    )))
}

fn failure(status: Status) -> LoadError {
    let message = format!(
        "server reflection failed: {}: {}",
        status.code(),
        status.message()
    );
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            LoadError::Unreachable(message)
        }
        _ => LoadError::Invalid(message),
    }
}

/// One reflection stream, asked one question at a time.
struct Session {
    requests: mpsc::Sender<ServerReflectionRequest>,
    responses: Streaming<ServerReflectionResponse>,
}

impl Session {
    /// Opens the stream and asks for the names of the services: a backend
    /// without this version of reflection answers UNIMPLEMENTED here.
    async fn open(channel: Channel, path: &'static str) -> Result<(Self, Vec<String>), Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|err| Status::unavailable(format!("backend unreachable: {err}")))?;
        let (requests, receiver) = mpsc::channel(4);
        let list = request(MessageRequest::ListServices(String::new()));
        requests
            .send(list)
            .await
            .expect("the receiver is held until the call is made");
        let responses = grpc
            .streaming(
                tonic::Request::new(ReceiverStream::new(receiver)),
                PathAndQuery::from_static(path),
                ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default(),
            )
            .await?
            .into_inner();
        let mut session = Self {
            requests,
            responses,
        };
        let first = session.responses.next().await;
        let services = match first {
            Some(Ok(ServerReflectionResponse {
                message_response: Some(MessageResponse::ListServicesResponse(list)),
                ..
            })) => list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect(),
            Some(Ok(_)) => {
                return Err(Status::internal(
                    "server reflection did not answer with the list of services",
                ));
            }
            Some(Err(status)) => return Err(status),
            None => return Err(Status::unavailable("server reflection ended the stream")),
        };
        Ok((session, services))
    }

    async fn all_files(
        &mut self,
        services: Vec<String>,
    ) -> Result<Vec<FileDescriptorProto>, LoadError> {
        let mut files = Vec::new();
        let mut known = HashSet::new();
        for service in services {
            let answer = self
                .ask(MessageRequest::FileContainingSymbol(service.clone()))
                .await?;
            take_files(answer, &mut files, &mut known, &service)?;
        }
        // Servers send a file's imports along with it, but need not: ask
        // for each one still missing.
        let mut index = 0;
        while index < files.len() {
            let imports = files[index].dependency.clone();
            for import in imports {
                if !known.contains(&import) {
                    let answer = self
                        .ask(MessageRequest::FileByFilename(import.clone()))
                        .await?;
                    take_files(answer, &mut files, &mut known, &import)?;
                    known.insert(import);
                }
            }
            index += 1;
        }
        Ok(files)
    }

    async fn ask(&mut self, message: MessageRequest) -> Result<MessageResponse, LoadError> {
        if self.requests.send(request(message)).await.is_err() {
            return Err(LoadError::Unreachable(
                "server reflection ended the stream".into(),
            ));
        }
        self.answer().await
    }

    async fn answer(&mut self) -> Result<MessageResponse, LoadError> {
        match self.responses.next().await {
            Some(Ok(response)) => response
                .message_response
                .ok_or_else(|| LoadError::Invalid("server reflection sent an empty answer".into())),
            Some(Err(status)) => Err(failure(status)),
            None => Err(LoadError::Unreachable(
                "server reflection ended the stream".into(),
            )),
        }
    }
}

/// Adds the files of `answer` (to the question about `asked`) that are
/// not `known` yet.
fn take_files(
    answer: MessageResponse,
    files: &mut Vec<FileDescriptorProto>,
    known: &mut HashSet<String>,
    asked: &str,
) -> Result<(), LoadError> {
    let encoded = match answer {
        MessageResponse::FileDescriptorResponse(response) => response.file_descriptor_proto,
        MessageResponse::ErrorResponse(error) => {
            return Err(LoadError::Invalid(format!(
                "server reflection has no descriptors for `{asked}`: {}",
                error.error_message
            )));
        }
        other => return Err(unexpected(&other)),
    };
    for bytes in encoded {
        let file = FileDescriptorProto::decode(bytes.as_slice()).map_err(|err| {
            LoadError::Invalid(format!(
                "server reflection sent an invalid descriptor for `{asked}`: {err}"
            ))
        })?;
        if known.insert(file.name().to_owned()) {
            files.push(file);
        }
    }
    Ok(())
}

fn request(message: MessageRequest) -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    }
}

fn unexpected(answer: &MessageResponse) -> LoadError {
    let kind = match answer {
        MessageResponse::FileDescriptorResponse(_) => "file descriptors",
        MessageResponse::AllExtensionNumbersResponse(_) => "extension numbers",
        MessageResponse::ListServicesResponse(_) => "a list of services",
        MessageResponse::ErrorResponse(_) => "an error",
    };
    LoadError::Invalid(format!(
        "server reflection answered with {kind} out of turn"
    ))
}
