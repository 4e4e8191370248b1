//! Bytes on a TCP socket, for what a well-behaved WebSocket client cannot
//! send: hand-made upgrade requests, unmasked frames, reserved opcodes,
//! invalid UTF-8, floods that never read.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// A client frame (RFC 6455 §5.2), FIN set; masked with `mask` if given.
pub fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(masked | len as u8),
        len @ 126..=0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(masked | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame, as browsers send them.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// A masked text frame.
pub fn text(payload: &str) -> Vec<u8> {
    masked(OP_TEXT, payload.as_bytes())
}

/// An HTTP response: status, head, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Reads a response head, up to and including the blank line; whatever
/// followed it stays in `rest`.
async fn read_head(stream: &mut TcpStream, rest: &mut Vec<u8>) -> std::io::Result<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..end + 4]).into_owned();
            rest.drain(..end + 4);
            return Ok(head);
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the response head ({} bytes: {:?})",
                    rest.len(),
                    String::from_utf8_lossy(rest)
                ),
            ));
        }
        rest.extend_from_slice(&buf[..n]);
    }
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// `GET path` with `headers` (each `Name: value`) on a connection of its
/// own, `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut rest = Vec::new();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream, &mut rest))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response head"))??;
    let body = read_body(&mut stream, &head, rest).await;
    Ok(HttpResponse {
        status: status_of(&head),
        head,
        body,
    })
}

async fn read_body(stream: &mut TcpStream, head: &str, mut rest: Vec<u8>) -> String {
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let want = content_length(head);
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if want.is_some_and(|want| rest.len() >= want) {
                return;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let body = if chunked { dechunk(&rest) } else { rest };
    String::from_utf8_lossy(&body).into_owned()
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..eol])
            .ok()
            .and_then(|line| usize::from_str_radix(line.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// A WebSocket opened by hand.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read past the upgrade response.
    buffered: Vec<u8>,
    pub head: String,
}

/// How reading a raw socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code (`None`: a close frame without one).
    Close(Option<u16>),
    /// The connection ended without a close frame (what browsers report
    /// as 1006).
    Dropped(String),
    TimedOut,
}

/// One server frame.
#[derive(Debug)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Sends an upgrade request for `path` (with its query). `headers` are
/// added as given (`Name: value`); a `Host` header among them replaces the
/// default one. Anything but 101 comes back as the response.
pub async fn upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[String],
) -> Result<RawWs, HttpResponse> {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(err) => {
            return Err(HttpResponse {
                status: 0,
                head: format!("cannot connect: {err}"),
                body: String::new(),
            });
        }
    };
    let _ = stream.set_nodelay(true);
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    request.push_str(
        "Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sends the upgrade request");
    let mut rest = Vec::new();
    let head = match tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream, &mut rest))
        .await
    {
        Ok(Ok(head)) => head,
        Ok(Err(err)) => {
            return Err(HttpResponse {
                status: 0,
                head: err.to_string(),
                body: String::new(),
            });
        }
        Err(_) => {
            return Err(HttpResponse {
                status: 0,
                head: "no response to the upgrade request within 5 s".into(),
                body: String::new(),
            });
        }
    };
    let status = status_of(&head);
    if status != 101 {
        let body = read_body(&mut stream, &head, rest).await;
        return Err(HttpResponse { status, head, body });
    }
    Ok(RawWs {
        stream,
        buffered: rest,
        head,
    })
}

/// The complete server frames at the start of `data` (server frames are
/// not masked).
pub fn parse_frames(mut data: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while data.len() >= 2 {
        let opcode = data[0] & 0x0f;
        let (len, header) = match data[1] & 0x7f {
            126 if data.len() >= 4 => (u16::from_be_bytes([data[2], data[3]]) as usize, 4),
            127 if data.len() >= 10 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&data[2..10]);
                (u64::from_be_bytes(bytes) as usize, 10)
            }
            126 | 127 => break,
            len => (len as usize, 2),
        };
        if data.len() < header + len {
            break;
        }
        frames.push(Frame {
            opcode,
            payload: data[header..header + len].to_vec(),
        });
        data = &data[header + len..];
    }
    frames
}

impl RawWs {
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The server frames received so far, looked at without reading them:
    /// they stay in the socket's receive buffer (`MSG_PEEK`), so that to
    /// the server this client has read nothing.
    pub async fn peek_frames(&self) -> Vec<Frame> {
        let mut buf = vec![0u8; 256 << 10];
        let n = match tokio::time::timeout(Duration::from_millis(1), self.stream.peek(&mut buf))
            .await
        {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        let mut data = self.buffered.clone();
        data.extend_from_slice(&buf[..n]);
        parse_frames(&data)
    }

    async fn fill(&mut self, want: usize) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.buffered.len() < want {
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buffered.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    /// The next server frame (server frames are not masked).
    pub async fn read_frame(&mut self) -> std::io::Result<Frame> {
        self.fill(2).await?;
        let opcode = self.buffered[0] & 0x0f;
        let short = (self.buffered[1] & 0x7f) as usize;
        let (len, header) = match short {
            126 => {
                self.fill(4).await?;
                (
                    u16::from_be_bytes([self.buffered[2], self.buffered[3]]) as usize,
                    4,
                )
            }
            127 => {
                self.fill(10).await?;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&self.buffered[2..10]);
                (u64::from_be_bytes(bytes) as usize, 10)
            }
            len => (len, 2),
        };
        self.fill(header + len).await?;
        let payload = self.buffered[header..header + len].to_vec();
        self.buffered.drain(..header + len);
        Ok(Frame { opcode, payload })
    }

    /// Reads until the server closes: its close code, or how the
    /// connection ended without one. Text frames are collected into
    /// `texts`.
    pub async fn ending(&mut self, timeout: Duration, texts: &mut Vec<String>) -> Ending {
        let read = async {
            loop {
                match self.read_frame().await {
                    Ok(frame) if frame.opcode == OP_CLOSE => {
                        let code = (frame.payload.len() >= 2)
                            .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                        return Ending::Close(code);
                    }
                    Ok(frame) if frame.opcode == OP_TEXT => {
                        texts.push(String::from_utf8_lossy(&frame.payload).into_owned());
                    }
                    Ok(_) => {}
                    Err(err) => return Ending::Dropped(err.to_string()),
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or(Ending::TimedOut)
    }
}
