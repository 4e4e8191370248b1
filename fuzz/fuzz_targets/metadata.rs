//! Any metadata a client sends with a call is refused, or reaches the
//! backend as canonical metadata: every key lower-cased, none reserved,
//! none the connection's identity, within the limits, every value as sent.
//!
//! The runtime makes metadata canonical internally, so this target goes
//! the way a client does: a request envelope through a bridge on loopback,
//! to the test backend, which echoes the metadata it got. The input is
//! read as header lines, `Key: value` (a line without `:` is a key with an
//! empty value).

#![no_main]

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use wsgrpc_runtime::{Authenticator, Metadata, Status, UpgradeRequest};
use wsgrpc_tests::client::WsClient;
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

/// The key of the identity the bridge adds to every call.
const IDENTITY_KEY: &str = "x-user-id";
const IDENTITY: &str = "fuzzer";
/// The bridge's default limits on a call's metadata.
const MAX_ENTRIES: usize = 64;
const MAX_BYTES: usize = 8 << 10;
/// Frames of the test bridge are at most 64 KiB.
const MAX_FRAME: usize = 60 << 10;

/// Gives every socket the identity `x-user-id: fuzzer`.
struct Identity;

impl Authenticator for Identity {
    fn authenticate(&self, _request: &UpgradeRequest<'_>) -> Result<Metadata, Status> {
        Ok(Metadata::from([(
            IDENTITY_KEY.to_owned(),
            IDENTITY.to_owned(),
        )]))
    }
}

/// A backend, a bridge and a socket to it, for the whole run.
struct Harness {
    runtime: tokio::runtime::Runtime,
    client: Mutex<WsClient>,
    next_id: AtomicU64,
    _backend: RunningBackend,
    _bridge: RunningBridge,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let (backend, bridge, client) = runtime.block_on(async {
        let backend = RunningBackend::start(any_port).await.expect("a backend");
        let builder = test_bridge(&backend.uri()).authenticator(Identity);
        let bridge = RunningBridge::start(builder, any_port)
            .await
            .expect("a bridge");
        let client = WsClient::connect(&bridge.url()).await;
        (backend, bridge, client)
    });
    Harness {
        runtime,
        client: Mutex::new(client),
        next_id: AtomicU64::new(0),
        _backend: backend,
        _bridge: bridge,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries: Vec<(&str, &str)> = text
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once(':') {
            Some((key, value)) => (key, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        })
        .collect();
    check(&entries);
});

fn check(entries: &[(&str, &str)]) {
    let harness = &*HARNESS;
    let id = harness.next_id.fetch_add(1, Ordering::Relaxed).to_string();
    let members: Vec<String> = entries
        .iter()
        .map(|(key, value)| format!("{}:{}", json!(key), json!(value)))
        .collect();
    let request = format!(
        r#"{{"type":"request","id":"{id}","method":"wsgrpc.test.v1.TestService/Unary","payload":{{"echoMetadata":true}},"metadata":{{{}}}}}"#,
        members.join(",")
    );
    if request.len() > MAX_FRAME {
        return;
    }
    let mut client = harness.client.lock().unwrap_or_else(|err| err.into_inner());
    // The call's frames, up to its end or the refusal of the request.
    let frames = harness.runtime.block_on(async {
        client.send_text(&request).await;
        let mut frames = Vec::new();
        loop {
            let envelope = client
                .next()
                .await
                .unwrap_or_else(|other| panic!("{request}\nwas answered {other:?}"));
            if envelope["id"] != id.as_str() {
                continue;
            }
            let last = envelope["type"] == "error" || envelope["end"] == true;
            frames.push(envelope);
            if last {
                return frames;
            }
        }
    });
    let end = frames.last().expect("a frame");

    // A key given twice in one spelling: the envelope is refused.
    let mut keys = HashSet::new();
    if !entries.iter().all(|(key, _)| keys.insert(*key)) {
        assert_eq!(end["type"], "error", "{request}\n{end}");
        return;
    }
    assert_eq!(end["type"], "response", "{request}\n{end}");

    let lower: Vec<(String, &str)> = entries
        .iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), *value))
        .collect();
    let bytes: usize = entries
        .iter()
        .map(|(key, value)| key.len() + value.len() + 32)
        .sum();
    let over = entries.len() > MAX_ENTRIES || bytes > MAX_BYTES;
    let reserved = lower.iter().any(|(key, _)| is_reserved(key));
    let identity = lower.iter().any(|(key, _)| key == IDENTITY_KEY);
    let code = end["code"].as_i64().unwrap_or(0);
    match code {
        // RESOURCE_EXHAUSTED: over the limits, and only then.
        8 => assert!(over, "{request}\n{end}"),
        // INVALID_ARGUMENT: a key or value that cannot go on the wire.
        3 => assert!(!over, "{request}\n{end}"),
        // PERMISSION_DENIED: the identity's key, in some spelling.
        7 => assert!(!over && !reserved && identity, "{request}\n{end}"),
        // The backend got the call: with the client's metadata as sent,
        // keys lower-cased, and the identity as the bridge set it.
        0 => {
            assert!(!over && !reserved && !identity, "{request}\n{end}");
            let payload = frames
                .iter()
                .find_map(|frame| frame.get("payload").filter(|p| p.get("metadata").is_some()))
                .unwrap_or_else(|| panic!("{request}\nno echoed metadata: {frames:?}"));
            let echoed = &payload["metadata"];
            assert_eq!(echoed[IDENTITY_KEY], IDENTITY, "{request}\n{payload}");
            for (key, value) in &lower {
                assert!(is_lower_case_token(key), "{request}\n{payload}");
                // The backend echoes text values, and shows its own
                // user agent (tonic's, after the client's).
                if !key.ends_with("-bin") && key != "user-agent" {
                    assert_eq!(echoed[key.as_str()], *value, "{request}\n{payload}");
                }
            }
        }
        // Anything else (UNAVAILABLE, INTERNAL): metadata that the bridge
        // took and the backend's connection did not.
        _ => panic!("{request}\nended {code}: {end}"),
    }
    if reserved || identity {
        assert_ne!(code, 0, "{request}\n{end}");
    }
}

/// Names that belong to HTTP/2 or to gRPC.
fn is_reserved(key: &str) -> bool {
    key.starts_with("grpc-")
        || key.starts_with(':')
        || matches!(
            key,
            "content-type"
                | "content-length"
                | "te"
                | "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "trailer"
                | "date"
        )
}

/// A header name as HTTP/2 sends it: an RFC 9110 token, lower case.
fn is_lower_case_token(key: &str) -> bool {
    !key.is_empty()
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}
