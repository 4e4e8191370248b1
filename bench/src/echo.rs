//! The floor under W1 with one call at a time: a WebSocket server that
//! answers each request envelope at once, with no backend behind it. What
//! a call through the bridge takes beyond this and a direct call is the
//! bridge's own.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsgrpc_runtime::envelope::Envelope;

pub async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                // Parsed as the bridge parses it, answered as the bridge
                // answers SayHello.
                let Ok(request) = Envelope::parse(text.as_str()) else {
                    return;
                };
                let id = serde_json::to_string(request.id.as_deref().unwrap_or_default())
                    .expect("a string serializes");
                let answer = format!(
                    r#"{{"type":"response","id":{id},"payload":{{"message":"Hello bench"}},"end":true}}"#
                );
                if socket.send(Message::Text(answer.into())).await.is_err() {
                    return;
                }
            }
        });
    }
}
