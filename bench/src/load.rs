//! The load generators: one speaks wire protocol v1 over WebSocket to the
//! bridge, the other calls the backend directly with tonic. Each workload
//! has the same shape on both sides.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use tonic::transport::Channel;
use wsgrpc_example::proto::example_service_client::ExampleServiceClient;
use wsgrpc_example::proto::{ChatMessage, HelloRequest, StreamRequest};
use wsgrpc_runtime::envelope::{Envelope, parse_batch};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Latencies of completed calls, in microseconds.
#[derive(Debug, Default)]
pub struct Latencies(pub Vec<u32>);

impl Latencies {
    pub fn merge(mut self, other: Latencies) -> Self {
        self.0.extend(other.0);
        self
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (0–1) in microseconds.
    pub fn quantile(&mut self, q: f64) -> u32 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.sort_unstable();
        let index = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0[index]
    }
}

pub async fn connect(url: &str) -> Socket {
    let (socket, _) = connect_async_with_config(url, None, true)
        .await
        .expect("the bridge accepts the socket");
    socket
}

/// The next text frame's id and whether it ends its call.
async fn next_frame(socket: &mut Socket) -> (String, bool, bool) {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame = Envelope::parse(text.as_str()).expect("the bridge sends envelopes");
                assert!(frame.error.is_none(), "call failed: {text}");
                let id = frame.id.unwrap_or_default().into_owned();
                return (id, frame.end, frame.payload.is_some());
            }
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
}

fn say_hello(id: usize) -> Message {
    Message::Text(
        format!(
            r#"{{"type":"request","method":"example.ExampleService/SayHello","id":"{id}","payload":{{"name":"bench"}}}}"#
        )
        .into(),
    )
}

/// W1 over the bridge: `in_flight` SayHello calls kept open on one socket
/// until `duration` has passed.
pub async fn ws_unary(url: &str, in_flight: usize, duration: Duration) -> Latencies {
    let mut socket = connect(url).await;
    let mut started = vec![Instant::now(); in_flight];
    let mut latencies = Latencies::default();
    let until = Instant::now() + duration;
    for (id, start) in started.iter_mut().enumerate() {
        *start = Instant::now();
        socket.send(say_hello(id)).await.unwrap();
    }
    let mut open = in_flight;
    while open > 0 {
        let (id, end, _) = next_frame(&mut socket).await;
        if !end {
            continue;
        }
        let slot: usize = id.parse().unwrap();
        latencies.0.push(started[slot].elapsed().as_micros() as u32);
        if Instant::now() < until {
            started[slot] = Instant::now();
            socket.send(say_hello(slot)).await.unwrap();
        } else {
            open -= 1;
        }
    }
    latencies
}

/// W1 against the backend: the same shape on one tonic channel.
pub async fn grpc_unary(channel: Channel, in_flight: usize, duration: Duration) -> Latencies {
    let until = Instant::now() + duration;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let mut client = ExampleServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                while Instant::now() < until {
                    let start = Instant::now();
                    client
                        .say_hello(HelloRequest {
                            name: "bench".into(),
                        })
                        .await
                        .expect("the backend answers");
                    latencies.0.push(start.elapsed().as_micros() as u32);
                }
                latencies
            })
        })
        .collect();
    let mut all = Latencies::default();
    for task in tasks {
        all = all.merge(task.await.unwrap());
    }
    all
}

/// The request envelope of W2: `count` messages of call `s`.
fn stream_request(count: i32) -> String {
    format!(
        r#"{{"type":"request","method":"example.ExampleService/StreamMessages","id":"s","payload":{{"message":"m","count":{count}}}}}"#
    )
}

/// W2 over the bridge: messages received and the time to the end marker.
pub async fn ws_stream(url: &str, count: i32) -> (usize, Duration) {
    let mut socket = connect(url).await;
    let start = Instant::now();
    let request = stream_request(count);
    socket.send(Message::Text(request.into())).await.unwrap();
    let mut messages = 0;
    loop {
        let (_, end, _) = next_frame(&mut socket).await;
        if end {
            return (messages, start.elapsed());
        }
        messages += 1;
    }
}

/// W2 over the bridge in protocol v2: many messages per frame.
pub async fn ws_stream_v2(url: &str, count: i32) -> (usize, Duration) {
    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "wsgrpc.v2".parse().expect("a header value"),
    );
    let (mut socket, _) = connect_async_with_config(request, None, true)
        .await
        .expect("the bridge accepts the socket");
    // The bridge's settings come first.
    let settings = socket.next().await;
    assert!(
        matches!(&settings, Some(Ok(Message::Text(text))) if text.contains("settings")),
        "expected the settings, got {settings:?}"
    );
    let start = Instant::now();
    let request = format!("[{}]", stream_request(count));
    socket.send(Message::Text(request.into())).await.unwrap();
    let mut messages = 0;
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        };
        for envelope in parse_batch(text.as_str()).expect("the bridge sends arrays") {
            let envelope = envelope.expect("the bridge sends envelopes");
            assert!(envelope.error.is_none(), "call failed: {text}");
            messages += envelope.payloads.map_or(0, |payloads| payloads.len());
            if envelope.end {
                return (messages, start.elapsed());
            }
        }
    }
}

/// W2 against the backend.
pub async fn grpc_stream(channel: Channel, count: i32) -> (usize, Duration) {
    let mut client = ExampleServiceClient::new(channel);
    let start = Instant::now();
    let mut stream = client
        .stream_messages(StreamRequest {
            message: "m".into(),
            count,
        })
        .await
        .unwrap()
        .into_inner();
    let mut messages = 0;
    while stream.message().await.unwrap().is_some() {
        messages += 1;
    }
    (messages, start.elapsed())
}

/// W4 over the bridge: round trips of one bidi call in `duration`.
pub async fn ws_ping_pong(url: &str, duration: Duration) -> usize {
    let mut socket = connect(url).await;
    let open = r#"{"type":"request","method":"example.ExampleService/Chat","id":"c"}"#;
    socket.send(Message::Text(open.into())).await.unwrap();
    let until = Instant::now() + duration;
    let mut trips = 0;
    while Instant::now() < until {
        let ping =
            format!(r#"{{"type":"message","id":"c","payload":{{"text":"ping","seq":{trips}}}}}"#);
        socket.send(Message::Text(ping.into())).await.unwrap();
        next_frame(&mut socket).await;
        trips += 1;
    }
    socket
        .send(Message::Text(r#"{"type":"end","id":"c"}"#.into()))
        .await
        .unwrap();
    trips
}

/// W4 against the backend.
pub async fn grpc_ping_pong(channel: Channel, duration: Duration) -> usize {
    let mut client = ExampleServiceClient::new(channel);
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let requests = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let until = Instant::now() + duration;
    sender
        .send(ChatMessage {
            text: "ping".into(),
            seq: 0,
        })
        .await
        .unwrap();
    let mut replies = client.chat(requests).await.unwrap().into_inner();
    let mut trips = 0;
    while replies.message().await.unwrap().is_some() {
        trips += 1;
        if Instant::now() >= until {
            break;
        }
        sender
            .send(ChatMessage {
                text: "ping".into(),
                seq: trips,
            })
            .await
            .unwrap();
    }
    trips as usize
}

/// W3: opens `count` sockets, a few hundred at a time.
pub async fn open_sockets(url: &str, count: usize) -> Vec<Socket> {
    let mut sockets = Vec::with_capacity(count);
    while sockets.len() < count {
        let batch = (count - sockets.len()).min(200);
        let opening: Vec<_> = (0..batch)
            .map(|_| {
                let url = url.to_owned();
                tokio::spawn(async move { connect(&url).await })
            })
            .collect();
        for socket in opening {
            sockets.push(socket.await.unwrap());
        }
    }
    sockets
}

/// W3: one SayHello on every socket, all at once.
pub async fn one_call_each(sockets: &mut [Socket]) {
    for socket in sockets.iter_mut() {
        socket.send(say_hello(0)).await.unwrap();
    }
    for socket in sockets.iter_mut() {
        while !next_frame(socket).await.1 {}
    }
}
