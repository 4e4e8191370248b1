//! The bridge at the edge: authentication, limits, graceful shutdown,
//! health and metrics, slow and vanishing clients.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgrpc_runtime::envelope::Metadata;
use wsgrpc_runtime::{Authenticator, UpgradeRequest};
use wsgrpc_tests::client::{NotText, WsClient};
use wsgrpc_tests::{RunningBackend, RunningBridge, UserInQuery, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

fn request(id: &str, method: &str, payload: Value) -> Value {
    json!({"type": "request", "id": id, "method": method, "payload": payload})
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts `?access_token=let-me-in` and names the user after the token;
/// a known token of a user who may not come in is refused as forbidden.
struct TokenAuth;

impl Authenticator for TokenAuth {
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, tonic::Status> {
        let token = request
            .query("access_token")
            .or_else(|| request.cookie("access_token").map(str::to_owned))
            .ok_or_else(|| tonic::Status::unauthenticated("no access token"))?;
        if token == "banned" {
            return Err(tonic::Status::permission_denied("this user is banned"));
        }
        if token != "let-me-in" {
            return Err(tonic::Status::unauthenticated("invalid access token"));
        }
        Ok(Metadata::from([("x-user".to_owned(), "alice".to_owned())]))
    }

    fn authorize_call(
        &self,
        _identity: &Metadata,
        method: &str,
        metadata: &Metadata,
    ) -> Result<(), tonic::Status> {
        if method.ends_with("/Hang") && !metadata.contains_key("x-step-up") {
            return Err(tonic::Status::unauthenticated("Hang needs x-step-up"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn authentication_at_upgrade_and_per_call_with_identity_forwarded() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(
        test_bridge(&backend.uri()).authenticator(TokenAuth),
        ANY_PORT.into(),
    )
    .await
    .unwrap();

    let refused = [
        (bridge.url(), 401, "no access token"),
        (
            format!("{}?access_token=wrong", bridge.url()),
            401,
            "invalid access token",
        ),
        (
            format!("{}?access_token=banned", bridge.url()),
            403,
            "this user is banned",
        ),
    ];
    for (url, status, message) in refused {
        match tokio_tungstenite::connect_async(url).await.unwrap_err() {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), status);
                let body = response.body().as_deref().unwrap_or_default();
                assert_eq!(String::from_utf8_lossy(body), message);
            }
            other => panic!("expected HTTP {status}, got {other}"),
        }
    }

    let mut with_cookie = bridge.url().into_client_request().unwrap();
    with_cookie.headers_mut().insert(
        "cookie",
        "theme=dark; access_token=let-me-in".parse().unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(with_cookie).await.is_ok());

    let mut client = WsClient::connect(&format!("{}?access_token=let-me-in", bridge.url())).await;
    client
        .send(request(
            "1",
            "wsgrpc.test.v1.TestService/Unary",
            json!({"echoMetadata": true}),
        ))
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["payload"]["metadata"]["x-user"], "alice", "{frame}");

    client
        .send(
            json!({"type": "request", "id": "2", "method": "wsgrpc.test.v1.TestService/Unary",
                     "metadata": {"x-user": "mallory"}}),
        )
        .await;
    let frame = client.recv().await;
    assert_eq!(
        frame["codeName"], "PERMISSION_DENIED",
        "a client cannot pose as another user: {frame}"
    );

    client
        .send(request("3", "wsgrpc.test.v1.TestService/Hang", json!({})))
        .await;
    let frame = client.recv().await;
    assert_eq!(frame["codeName"], "UNAUTHENTICATED");
    assert_eq!(frame["error"], "Hang needs x-step-up");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_their_places_come_back() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(
        test_bridge(&backend.uri()).max_connections(2),
        ANY_PORT.into(),
    )
    .await
    .unwrap();
    let first = WsClient::connect(&bridge.url()).await;
    let _second = WsClient::connect(&bridge.url()).await;
    match tokio_tungstenite::connect_async(bridge.url())
        .await
        .unwrap_err()
    {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 503),
        other => panic!("expected HTTP 503, got {other}"),
    }
    first.close().await;
    let mut reconnected = None;
    for _ in 0..100 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(bridge.url()).await {
            reconnected = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reconnected.is_some(), "a closed connection frees its place");
}

#[tokio::test]
async fn one_identity_cannot_take_every_socket() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri())
        .authenticator(UserInQuery)
        .max_connections_per_identity(2);
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    let as_user = |user: &str| format!("{}?user={user}", bridge.url());
    let first = WsClient::connect(&as_user("mallory")).await;
    let _second = WsClient::connect(&as_user("mallory")).await;
    match tokio_tungstenite::connect_async(as_user("mallory"))
        .await
        .unwrap_err()
    {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 429),
        other => panic!("expected HTTP 429, got {other}"),
    }
    // Anyone else still gets in, and answered.
    let mut alice = WsClient::connect(&as_user("alice")).await;
    alice
        .send(request(
            "1",
            "wsgrpc.test.v1.TestService/Unary",
            json!({"text": "hi"}),
        ))
        .await;
    assert_eq!(alice.recv().await["payload"]["text"], "hi");
    // A socket that closes gives its identity its place back.
    first.close().await;
    let mut reconnected = None;
    for _ in 0..100 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(as_user("mallory")).await {
            reconnected = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reconnected.is_some(),
        "a closed socket frees its identity's place"
    );
}

#[tokio::test]
async fn a_stream_longer_than_the_limit_ends_and_is_cancelled_at_the_backend() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri()).max_call_duration(Some(Duration::from_millis(150)));
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(request(
            "s",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 100, "delayMs": 50}),
        ))
        .await;
    let frames = client.recv_call("s").await;
    let last = frames.last().unwrap();
    assert_eq!(last["codeName"], "DEADLINE_EXCEEDED");
    assert_eq!(last["error"], "call exceeded the bridge's limit of 150 ms");
    assert!(
        frames.len() > 1 && frames.len() < 10,
        "{} frames",
        frames.len()
    );
    wait_for("the backend to see the cancellation", || {
        backend.backend.cancelled() == 1
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri())
        .ping_interval(None)
        .idle_timeout(Some(Duration::from_millis(200)));
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    match client.next().await {
        Err(NotText::Closed(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "idle timeout");
        }
        other => panic!("expected an idle close, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_lets_unary_calls_finish_then_closes_with_1001() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = test_bridge(&backend.uri())
        .drain_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let token = bridge.shutdown_token();
    let listener = tokio::net::TcpListener::bind(std::net::SocketAddr::from(ANY_PORT))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(bridge.serve_with(listener, std::future::pending()));
    let mut client = WsClient::connect(&format!("ws://{addr}/ws")).await;

    client
        .send(request(
            "slow",
            "wsgrpc.test.v1.TestService/Unary",
            json!({"text": "done", "delayMs": 300}),
        ))
        .await;
    client
        .send(request(
            "stream",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 1000, "delayMs": 20}),
        ))
        .await;
    wait_for("both calls at the backend", || {
        backend.backend.active() == 2
    })
    .await;
    token.cancel();

    let mut slow = None;
    let mut stream_end = None;
    let close = loop {
        match client.next().await {
            Ok(frame) if frame["id"] == "slow" => slow = Some(frame),
            Ok(frame) if frame["id"] == "stream" && frame["end"] == true => {
                stream_end = Some(frame)
            }
            Ok(_) => {}
            Err(other) => break other,
        }
    };
    assert_eq!(
        slow.unwrap()["payload"]["text"],
        "done",
        "the unary call finished"
    );
    let stream_end = stream_end.expect("the stream was ended");
    assert_eq!(stream_end["codeName"], "UNAVAILABLE");
    match close {
        NotText::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected close 1001, got {other:?}"),
    }
    wait_for("the stream cancelled at the backend", || {
        backend.backend.cancelled() == 1
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn health_and_metrics() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(test_bridge(&backend.uri()), ANY_PORT.into())
        .await
        .unwrap();
    assert_eq!(
        http_get(bridge.addr, "/healthz").await,
        (200, "ok\n".into())
    );

    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(request("1", "SayHello", json!({"name": "m"})))
        .await;
    client.recv().await;
    client.send(request("2", "Nope", json!({}))).await;
    client.recv().await;
    client.send_binary(vec![0]).await;
    client.recv().await;

    let (status, text) = http_get(bridge.addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "wsgrpc_connections_open 1",
        r#"wsgrpc_calls_total{method="example.ExampleService/SayHello",code="OK"} 1"#,
        r#"wsgrpc_calls_total{method="unknown",code="UNIMPLEMENTED"} 1"#,
        r#"wsgrpc_calls_in_flight{method="example.ExampleService/SayHello"} 0"#,
        r#"wsgrpc_rejected_total{reason="binary"} 1"#,
    ] {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    let received: u64 = metric(&text, "wsgrpc_received_bytes_total");
    let sent: u64 = metric(&text, "wsgrpc_sent_bytes_total");
    assert!(
        received > 50 && sent > 100,
        "received {received}, sent {sent}"
    );
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn a_thousand_vanishing_clients_leak_nothing() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(test_bridge(&backend.uri()), ANY_PORT.into())
        .await
        .unwrap();
    for round in 0..1000 {
        let mut client = WsClient::connect(&bridge.url()).await;
        client
            .send(request(
                "s",
                "wsgrpc.test.v1.TestService/ServerStream",
                json!({"count": 1000000, "delayMs": 1}),
            ))
            .await;
        client.recv().await;
        client.vanish();
        if round % 100 == 99 {
            wait_for("the backend to drop its streams", || {
                backend.backend.active() == 0
            })
            .await;
        }
    }
    wait_for("every stream cancelled", || {
        backend.backend.cancelled() == 1000
    })
    .await;
    let (_, text) = http_get(bridge.addr, "/metrics").await;
    assert!(text.contains("wsgrpc_connections_open 0"), "{text}");
    assert!(
        text.contains(
            r#"wsgrpc_calls_in_flight{method="wsgrpc.test.v1.TestService/ServerStream"} 0"#
        ),
        "{text}"
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_memory_bounded() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(test_bridge(&backend.uri()), ANY_PORT.into())
        .await
        .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(request(
            "flood",
            "wsgrpc.test.v1.TestService/ServerStream",
            json!({"count": 1000000, "text": "x".repeat(100)}),
        ))
        .await;
    // Read one frame so the stream is surely running, then stop reading.
    client.recv().await;
    let before = rss_kib();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("RSS while the client does not read: {before} KiB → {after} KiB");
    assert!(
        grown_mib < 64,
        "bridge, backend and client grew by {grown_mib} MiB"
    );
    // The stalled call holds only its own HTTP/2 window: calls of other
    // clients on the shared backend connection still go through.
    let mut other = WsClient::connect(&bridge.url()).await;
    for round in 0..20 {
        other
            .send(request(
                "hi",
                "SayHello",
                json!({"name": round.to_string()}),
            ))
            .await;
        assert_eq!(
            other.recv().await["payload"]["message"],
            format!("Hello {round}")
        );
    }
    // Still alive, still in order.
    let frame = client.recv().await;
    assert_eq!(frame["payload"]["index"], 1);
    client.send(json!({"type": "cancel", "id": "flood"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sockets_each_make_calls() {
    // The benchmark opens 10 000; the test suite keeps to fewer for time.
    let sockets: usize = std::env::var("WSGRPC_TEST_SOCKETS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let builder = test_bridge(&backend.uri()).max_connections(sockets + 10);
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    let mut clients = Vec::with_capacity(sockets);
    for _ in 0..sockets {
        clients.push(WsClient::connect(&bridge.url()).await);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .send(request("1", "SayHello", json!({"name": i.to_string()})))
            .await;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let frame = client.recv().await;
        assert_eq!(frame["payload"]["message"], format!("Hello {i}"), "{frame}");
    }
    let (_, text) = http_get(bridge.addr, "/metrics").await;
    assert!(
        text.contains(&format!("wsgrpc_connections_open {sockets}")),
        "{text}"
    );
}

#[tokio::test]
async fn unfinished_upgrade_requests_are_closed_and_keep_no_one_out() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let cap = 50;
    let builder = test_bridge(&backend.uri())
        .header_read_timeout(Duration::from_millis(1500))
        .max_pending_connections(cap);
    let bridge = RunningBridge::start(builder, ANY_PORT.into())
        .await
        .unwrap();
    // Twice the cap of connections that send the start of an upgrade
    // request and then nothing.
    let flood = 2 * cap;
    let closed = Arc::new(AtomicUsize::new(0));
    for _ in 0..flood {
        let mut tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
        tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: bridge\r\n")
            .await
            .unwrap();
        let closed = closed.clone();
        tokio::spawn(async move {
            let mut buffer = [0; 1024];
            while let Ok(1..) = tcp.read(&mut buffer).await {}
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    // The cap holds: each connection past it closed the oldest.
    wait_for("all but `cap` of the flood to be closed", || {
        closed.load(Ordering::SeqCst) >= flood - cap
    })
    .await;
    // A client that sends its request at once gets in, and calls.
    let mut client = WsClient::connect(&bridge.url()).await;
    client
        .send(request("1", "SayHello", json!({"name": "flood"})))
        .await;
    assert_eq!(client.recv().await["payload"]["message"], "Hello flood");
    // The rest are closed by the header-read timeout.
    wait_for("the whole flood to be closed", || {
        closed.load(Ordering::SeqCst) == flood
    })
    .await;

    let (_, text) = http_get(bridge.addr, "/metrics").await;
    let evicted = metric(&text, r#"wsgrpc_rejected_total{reason="too_many_pending"}"#);
    let timed_out = metric(&text, r#"wsgrpc_rejected_total{reason="header_timeout"}"#);
    println!("of {flood} unfinished requests, {evicted} made room and {timed_out} timed out");
    assert!(evicted >= (flood - cap) as u64, "{text}");
    assert!(timed_out >= 1, "{text}");
    assert_eq!(evicted + timed_out, flood as u64, "{text}");
    // Only the connection asking for the metrics is still reading a request.
    assert_eq!(metric(&text, "wsgrpc_pending_connections"), 1, "{text}");
    assert_eq!(metric(&text, "wsgrpc_connections_open"), 1, "{text}");
}
