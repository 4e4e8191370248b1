//! A plain WebSocket client that speaks the envelope as JSON values, for
//! tests that look at frames exactly as they travel.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

/// How long a test waits for a frame before it fails.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// A raw WebSocket to the bridge.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next text frame of a v2 socket, an array of envelopes; pings and
/// pongs are passed over.
pub async fn next_v2_frame(socket: &mut Socket) -> Vec<Value> {
    loop {
        let message = tokio::time::timeout(FRAME_TIMEOUT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("reads a frame");
        match message {
            Message::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("the bridge sends JSON");
                return frame.as_array().expect("a v2 frame is an array").clone();
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What arrived instead of a text frame.
#[derive(Debug)]
pub enum NotText {
    Closed(Option<CloseFrame>),
    Other(Message),
    TimedOut,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url).await
    }

    /// Connects with a request of the caller's making, e.g. with headers.
    pub async fn connect_with(request: impl IntoClientRequest + Unpin) -> Self {
        let (socket, _) = connect_async_with_config(request, None, true)
            .await
            .expect("connects to the bridge");
        Self { socket }
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .expect("sends a frame");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .expect("sends a frame");
    }

    /// The next text frame as JSON; panics on anything else.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Ok(value) => value,
            Err(other) => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next text frame, or what came instead.
    pub async fn next(&mut self) -> Result<Value, NotText> {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next()).await;
            match message {
                Err(_) => return Err(NotText::TimedOut),
                Ok(None) | Ok(Some(Err(_))) => return Err(NotText::Closed(None)),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Ok(serde_json::from_str(&text).expect("the bridge sends JSON"));
                }
                Ok(Some(Ok(Message::Close(frame)))) => return Err(NotText::Closed(frame)),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(other))) => return Err(NotText::Other(other)),
            }
        }
    }

    /// Frames until (and including) the one that ends call `id`; frames of
    /// other calls are skipped.
    pub async fn recv_call(&mut self, id: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["id"] != id {
                continue;
            }
            let end = frame["end"] == true;
            frames.push(frame);
            if end {
                return frames;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Drops the TCP connection without a close frame, as a crashed
    /// browser tab would.
    pub fn vanish(self) {
        drop(self.socket);
    }
}
