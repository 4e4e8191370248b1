//! The example's `TokenAuth` in front of a real bridge and the example's
//! real `ExampleServer` (served by `RunningBackend` next to the test
//! service): who may open a socket, and that the identity reaches the
//! backend and cannot be forged.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use wsgrpc_example::auth::USER_ID_KEY;
use wsgrpc_example::token_auth;
use wsgrpc_tests::client::WsClient;
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// Needs percent-encoding in a query string, and is a valid header value.
const SECRET: &str = "s3cret+/=";
const SECRET_IN_QUERY: &str = "s3cret%2B%2F%3D";

async fn start() -> (RunningBackend, RunningBridge) {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(
        test_bridge(&backend.uri()).authenticator(token_auth(SECRET)),
        ANY_PORT.into(),
    )
    .await
    .unwrap();
    (backend, bridge)
}

fn with_header(url: &str, name: &'static str, value: &str) -> Request {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(name, value.parse().unwrap());
    request
}

/// The HTTP status and body of an upgrade the bridge refuses.
async fn refused(request: Request) -> (u16, String) {
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("expected an HTTP error, got {other}"),
        Ok(_) => panic!("the socket opened"),
    }
}

async fn say_hello(client: &mut WsClient, id: &str, name: &str, metadata: Value) -> Value {
    client
        .send(
            json!({"type": "request", "id": id, "method": "example.ExampleService/SayHello",
                     "payload": {"name": name}, "metadata": metadata}),
        )
        .await;
    client.recv().await
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_refused_with_401() {
    let (_backend, bridge) = start().await;
    let url = bridge.url();

    let (status, body) = refused(url.clone().into_client_request().unwrap()).await;
    assert_eq!(status, 401);
    assert!(body.starts_with("missing token"), "{body}");

    let invalid = "invalid token";
    let missing = "missing token";
    let wrong = [
        (
            format!("{url}?token=guess").into_client_request().unwrap(),
            invalid,
        ),
        // Decoded, this is `s3cret /=`: `+` in a query is a space.
        (
            format!("{url}?token=s3cret+/=")
                .into_client_request()
                .unwrap(),
            invalid,
        ),
        (with_header(&url, "authorization", "Bearer guess"), invalid),
        (with_header(&url, "cookie", "wsgrpc_token=guess"), invalid),
        (with_header(&url, "authorization", "Bearer "), missing),
        // The right token under another name is no token.
        (
            with_header(&url, "cookie", &format!("token={SECRET}")),
            missing,
        ),
        (
            with_header(&url, "authorization", &format!("Basic {SECRET}")),
            missing,
        ),
    ];
    for (request, message) in wrong {
        let shown = format!("{} {:?}", request.uri(), request.headers());
        let (status, body) = refused(request).await;
        assert_eq!(status, 401, "{shown}");
        assert!(body.starts_with(message), "{shown}: {body}");
    }
}

#[tokio::test]
async fn the_right_token_opens_the_socket_and_the_backend_greets_the_user() {
    let (_backend, bridge) = start().await;
    let url = bridge.url();

    let ways = [
        (
            "query",
            format!("{url}?token={SECRET_IN_QUERY}")
                .into_client_request()
                .unwrap(),
        ),
        (
            "bearer",
            with_header(&url, "authorization", &format!("Bearer {SECRET}")),
        ),
        (
            "cookie",
            with_header(
                &url,
                "cookie",
                &format!("theme=dark; wsgrpc_token={SECRET}"),
            ),
        ),
    ];
    for (way, request) in ways {
        let mut client = WsClient::connect_with(request).await;
        let frame = say_hello(&mut client, "1", "World", json!({})).await;
        assert_eq!(
            frame["payload"]["message"], "Hello World (signed in as demo)",
            "{way}: {frame}"
        );
        client.close().await;
    }
}

#[tokio::test]
async fn the_identity_is_set_by_the_bridge_alone() {
    let (_backend, bridge) = start().await;
    let mut client = WsClient::connect(&format!("{}?token={SECRET_IN_QUERY}", bridge.url())).await;

    // The test service echoes the metadata it received.
    client
        .send(
            json!({"type": "request", "id": "1", "method": "wsgrpc.test.v1.TestService/Unary",
                     "payload": {"echoMetadata": true}}),
        )
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["payload"]["metadata"][USER_ID_KEY], "demo", "{frame}");

    let frame = say_hello(&mut client, "2", "World", json!({USER_ID_KEY: "mallory"})).await;
    assert_eq!(frame["codeName"], "PERMISSION_DENIED", "{frame}");
    assert_eq!(
        frame["error"], "metadata key `x-user-id` is set by the bridge",
        "{frame}"
    );

    // The refused call leaves the socket usable.
    let frame = say_hello(&mut client, "3", "again", json!({"x-other": "fine"})).await;
    assert_eq!(
        frame["payload"]["message"], "Hello again (signed in as demo)",
        "{frame}"
    );
}

#[tokio::test]
async fn without_an_authenticator_the_greeting_is_unchanged() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(test_bridge(&backend.uri()), ANY_PORT.into())
        .await
        .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    let frame = say_hello(&mut client, "1", "World", json!({})).await;
    assert_eq!(frame["payload"]["message"], "Hello World", "{frame}");
}
