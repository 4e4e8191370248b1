//! Floods from clients that never read: pings, stalled server streams, a
//! client stream that ignores its credit, and connections that never send
//! their upgrade request. Each must cost the target bounded memory and
//! descriptors, and leave room for a client that behaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use wsgrpc_tests::process::rss_kib;

use crate::raw::{self, OP_PING, OP_PONG};
use crate::{
    Binary, COLLECT_MESSAGES, Ending, FRAME_TIMEOUT, Findings, STREAM_MESSAGES, Setup, Target,
    greeted, on_both_binaries, say_hello,
};

const MIB: u64 = 1024;

/// Samples the resident memory of `pid` every 50 ms until `stop` is set;
/// the highest sample is kept in `peak`.
fn sample_peak_rss(
    pid: u32,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
    })
}

/// A SayHello on a socket of its own; what went wrong, if anything.
async fn hello_on_new_socket(target: &Target, id: &str) -> Result<Value, String> {
    let mut client = target.client().await?;
    client.call(say_hello(id, "bystander"), FRAME_TIMEOUT).await
}

/// A client sends masked pings as fast as it can and never reads the
/// pongs: until it has sent 160 MiB or 5 s have passed (a target that stops
/// reading the flood ends it by time; a fast one that keeps reading, by
/// volume, so that a slow or busy machine still delivers the whole attack).
/// The target's resident memory grows by less than 64 MiB, and another
/// client's unary call, made during the flood, succeeds.
async fn a_ping_flood_that_never_reads_costs_bounded_memory_and_spares_others(binary: Binary) {
    const FLOOD: Duration = Duration::from_secs(5);
    const VOLUME: usize = 160 << 20;
    let target = Target::start(binary, Setup::default()).await;
    target.warm_up().await;
    let mut findings = Findings::default();
    let pid = target.process.pid();
    let before = rss_kib(pid);

    let mut flood = raw::upgrade(target.addr, &target.ws_path(), &[])
        .await
        .expect("the flooding client upgrades");
    let pings: Vec<u8> = (0..512)
        .flat_map(|_| raw::masked(OP_PING, &[b'p'; 125]))
        .collect();
    let flood_started = Instant::now();
    let flooding = tokio::spawn(async move {
        let until = Instant::now() + FLOOD;
        let mut sent = 0usize;
        while Instant::now() < until && sent < VOLUME {
            match tokio::time::timeout_at(until, flood.stream.write_all(&pings)).await {
                Ok(Ok(())) => sent += pings.len(),
                Ok(Err(err)) => return (sent, Some(err.to_string()), flood),
                Err(_) => break,
            }
        }
        (sent, None, flood)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = sample_peak_rss(pid, stop.clone(), peak.clone());

    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let answered = hello_on_new_socket(&target, "during-flood").await;
    let bystander = asked.elapsed();
    match answered {
        Ok(reply) => findings.check(greeted(&reply), || {
            format!("the bystander's call during the flood failed: {reply}")
        }),
        Err(err) => findings.add(format!(
            "the bystander's call during the flood failed after {:?}: {err}",
            asked.elapsed()
        )),
    }
    let (sent, error, _flood) = flooding.await.expect("the flood task");
    let flood_took = flood_started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("the sampler");
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    findings.check(growth < 64 * MIB, || {
        format!(
            "resident memory grew by {} MiB (from {} MiB) while a client sent {} MiB of pings it never read the pongs of",
            growth / MIB,
            before / MIB,
            sent >> 20
        )
    });
    eprintln!(
        "{binary:?}: ping flood of {} MiB in {:?} ({}); resident memory {} MiB, peak +{} MiB; a bystander's SayHello on a new socket took {:?}",
        sent >> 20,
        flood_took,
        error.as_deref().unwrap_or("never read"),
        before / MIB,
        growth / MIB,
        bystander
    );
    findings.finish(&target);
}
on_both_binaries!(a_ping_flood_that_never_reads_costs_bounded_memory_and_spares_others);

/// Bytes received and not read, by local port, of this machine's IPv4
/// sockets (`/proc/net/tcp`, `rx_queue`).
fn receive_queues() -> HashMap<u16, u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let rx = u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?;
            Some((port, rx))
        })
        .collect()
}

/// With an idle timeout of 1 s and no pings, 20 clients each start a fast
/// server stream and never read again. The target closes them: within the
/// idle timeout and a few seconds after they go silent, its descriptors in
/// `/proc/PID/fd` are back within 3 of what they were before the clients
/// connected.
///
/// The clients stay silent only once the target can write them no more:
/// until then (until each one's receive queue is full and stops growing)
/// they send a pong now and then, unread and unasked (RFC 6455 allows it),
/// so that the idle timeout finds every socket stuck, however slow the
/// machine.
async fn stalled_sockets_are_closed_and_their_descriptors_released(binary: Binary) {
    const SOCKETS: usize = 20;
    let target = Target::start(
        binary,
        Setup {
            idle_timeout_ms: Some(1000),
            ping_interval_ms: Some(0),
            ..Setup::default()
        },
    )
    .await;
    target.warm_up().await;
    let mut findings = Findings::default();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = target.process.fd_count();

    let request = json!({"type": "request", "id": "s", "method": STREAM_MESSAGES,
                         "payload": {"message": "x".repeat(1024), "count": 1_000_000}});
    let request = raw::text(&request.to_string());
    let mut stalled = Vec::new();
    for _ in 0..SOCKETS {
        let mut socket = raw::upgrade(target.addr, &target.ws_path(), &[])
            .await
            .expect("a stalling client upgrades");
        socket.send(&request).await.expect("sends its request");
        stalled.push(socket);
    }
    let opened = target.process.fd_count();
    let ports: Vec<u16> = stalled
        .iter()
        .filter_map(|socket| Some(socket.stream.local_addr().ok()?.port()))
        .collect();
    let pong = raw::masked(OP_PONG, b"");
    let filling = Instant::now();
    let mut queued = Vec::new();
    let mut steady_since = Instant::now();
    while filling.elapsed() < Duration::from_secs(5) {
        for socket in &mut stalled {
            let _ = tokio::time::timeout(Duration::from_millis(50), socket.send(&pong)).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let queues = receive_queues();
        let now: Vec<u64> = ports
            .iter()
            .map(|port| queues.get(port).copied().unwrap_or(0))
            .collect();
        if now != queued {
            queued = now;
            steady_since = Instant::now();
        } else if queued.iter().all(|&bytes| bytes > 0)
            && steady_since.elapsed() >= Duration::from_millis(500)
        {
            break;
        }
    }
    let unread: u64 = queued.iter().sum();
    let filled_in = filling.elapsed();

    // Silent from here on.
    let deadline = Instant::now() + Duration::from_secs(1 + 5);
    let mut now = target.process.fd_count();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        now = target.process.fd_count();
        if now <= before + 3 {
            break;
        }
    }
    eprintln!(
        "{binary:?}: descriptors {before} before, {opened} with {SOCKETS} stalled sockets \
         ({} KiB unread after {:?}), {now} at the end",
        unread >> 10,
        filled_in
    );
    findings.check(now <= before + 3, || {
        format!(
            "descriptors: {before} before {SOCKETS} stalled sockets, {opened} with them open \
             ({} KiB sent to them unread), still {now} 6 s after they went silent (idle \
             timeout 1 s)",
            unread >> 10
        )
    });
    drop(stalled);
    findings.finish(&target);
}
on_both_binaries!(stalled_sockets_are_closed_and_their_descriptors_released);

/// The request messages a v2 client may have sent by now: the call's
/// first window (`callQueueMessages` of the settings) and every `credit`
/// the bridge has granted, as seen in `frames`; and whether a close frame
/// is among them.
fn credit_seen(frames: &[raw::Frame]) -> (u64, Option<u16>) {
    let mut allowed = 0;
    let mut close = None;
    for frame in frames {
        if frame.opcode == raw::OP_CLOSE {
            close = Some(if frame.payload.len() >= 2 {
                u16::from_be_bytes([frame.payload[0], frame.payload[1]])
            } else {
                1005
            });
            continue;
        }
        let Ok(Value::Array(envelopes)) = serde_json::from_slice(&frame.payload) else {
            continue;
        };
        for envelope in envelopes {
            match envelope["type"].as_str() {
                Some("settings") => {
                    allowed += envelope["callQueueMessages"].as_u64().unwrap_or(0);
                }
                Some("credit") if envelope["id"] == "c" => {
                    allowed += envelope["messages"].as_u64().unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    (allowed, close)
}

/// A v2 client streams 32 MiB to CollectMessages in 1 KiB messages, 32 to
/// a `message` envelope (half the call queue), and never reads the socket:
/// the bridge's credit envelopes pile up unread. (The client keeps within
/// its credit all the same, so that the backend keeps up and the call stays
/// open: it looks at what arrived without reading it, `MSG_PEEK`, which
/// leaves it in the socket for the bridge to see unread.) Either the
/// target's resident memory grows by less than 16 MiB, or it closes the
/// socket with 1008 (policy violation).
///
/// The backend keeps every message it is sent (32 MiB); against
/// wsgrpc-example it therefore runs in a process of its own (`--backend`),
/// so that only the bridge is measured.
async fn a_client_stream_that_never_reads_its_credit_costs_bounded_memory(binary: Binary) {
    const PER_ENVELOPE: u64 = 32;
    const ENVELOPES: u64 = 1024;
    let setup = Setup {
        separate_backend: binary == Binary::Example,
        ..Setup::default()
    };
    let target = Target::start(binary, setup).await;
    target.warm_up().await;
    let mut findings = Findings::default();
    let pid = target.process.pid();

    let mut socket = raw::upgrade(
        target.addr,
        &target.ws_path(),
        &["Sec-WebSocket-Protocol: wsgrpc.v2".to_owned()],
    )
    .await
    .expect("the v2 client upgrades");
    assert!(
        socket.head.to_ascii_lowercase().contains("wsgrpc.v2"),
        "v2 was not agreed: {}",
        socket.head
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = sample_peak_rss(pid, stop.clone(), peak.clone());

    let open = json!([{"type": "request", "id": "c", "method": COLLECT_MESSAGES}]);
    socket
        .send(&raw::text(&open.to_string()))
        .await
        .expect("opens the call");
    let message = json!({"message": "x".repeat(1024)});
    let envelope = json!([{"type": "message", "id": "c",
                           "payloads": vec![message; PER_ENVELOPE as usize]}]);
    let frame = raw::text(&envelope.to_string());
    let started = Instant::now();
    let mut sent = 0;
    let mut stopped = None;
    'sending: while sent < ENVELOPES {
        // Wait (without reading) until the credit allows one more envelope.
        let waiting = Instant::now();
        loop {
            let (allowed, close) = credit_seen(&socket.peek_frames().await);
            if let Some(code) = close {
                stopped = Some(format!("the target closed the socket with {code}"));
                break 'sending;
            }
            if (sent + 1) * PER_ENVELOPE <= allowed {
                break;
            }
            if waiting.elapsed() > Duration::from_secs(5) {
                stopped = Some(format!(
                    "no credit for 5 s (allowed {allowed} messages, sent {})",
                    sent * PER_ENVELOPE
                ));
                break 'sending;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Err(err) = socket.send(&frame).await {
            stopped = Some(format!("sending failed: {err}"));
            break;
        }
        sent += 1;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("the sampler");
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);

    // Only now read what the bridge sent: credits, errors, a close.
    let mut texts = Vec::new();
    let ending = socket.ending(Duration::from_secs(2), &mut texts).await;
    let closed_1008 = ending == Ending::Close(Some(1008));
    let errors: Vec<&String> = texts.iter().filter(|t| t.contains("\"code\"")).collect();
    let summary = format!(
        "{sent} envelopes ({} MiB) in {took:?}{}; resident memory {} MiB, peak +{} MiB; \
         then the socket {ending:?}, after {} frames, {} of them errors{}",
        (sent * PER_ENVELOPE) >> 10,
        stopped.map(|why| format!(" ({why})")).unwrap_or_default(),
        before / MIB,
        growth / MIB,
        texts.len(),
        errors.len(),
        errors
            .first()
            .map(|e| format!(", the first: {}", &e[..e.len().min(300)]))
            .unwrap_or_default(),
    );
    eprintln!("{binary:?}: {summary}");
    findings.check(growth < 16 * MIB || closed_1008, || {
        format!(
            "resident memory grew by {} MiB, and the socket was not closed with 1008: {summary}",
            growth / MIB
        )
    });
    findings.finish(&target);
}
on_both_binaries!(a_client_stream_that_never_reads_its_credit_costs_bounded_memory);

/// How many silent connections this process can open: 2,000, or fewer (but
/// more than the bridge's cap of 1,024 pending connections) if its
/// descriptor limit is low.
fn silent_connections() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(4096);
    let n = 2000.min(soft.saturating_sub(300));
    assert!(
        n > 1024,
        "the descriptor limit ({soft}) is too low for this test: raise `ulimit -n` above 1,400"
    );
    n
}

/// 2,000 TCP connections that never send a byte, then a client that
/// upgrades and calls SayHello: it succeeds within 5 s.
async fn silent_connections_do_not_keep_a_real_client_out(binary: Binary) {
    let n = silent_connections();
    let target = Target::start(binary, Setup::default()).await;
    target.warm_up().await;
    let mut findings = Findings::default();
    let addr = target.addr;
    let mut silent = Vec::with_capacity(n);
    let mut failed = 0;
    for chunk in 0..n.div_ceil(250) {
        let tasks: Vec<_> = (chunk * 250..n.min((chunk + 1) * 250))
            .map(|_| {
                tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_secs(5),
                        tokio::net::TcpStream::connect(addr),
                    )
                    .await
                })
            })
            .collect();
        for task in tasks {
            match task.await.expect("the connect task") {
                Ok(Ok(stream)) => silent.push(stream),
                _ => failed += 1,
            }
        }
    }
    let asked = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        hello_on_new_socket(&target, "after-flood"),
    )
    .await;
    match outcome {
        Ok(Ok(reply)) => findings.check(greeted(&reply), || {
            format!("the call after {n} silent connections failed: {reply}")
        }),
        Ok(Err(err)) => findings.add(format!(
            "the call after {n} silent connections failed after {:?}: {err}",
            asked.elapsed()
        )),
        Err(_) => findings.add(format!(
            "the call after {n} silent connections did not succeed within 5 s"
        )),
    }
    if failed > 0 {
        eprintln!("{failed} of {n} silent connections could not connect");
    }
    drop(silent);
    findings.finish(&target);
}
on_both_binaries!(silent_connections_do_not_keep_a_real_client_out);

/// Eight sockets each send 3 MiB of a 4 MiB frame and stall, against a
/// bridge whose unfinished frames may hold 8 MiB in all: the sockets past
/// the budget are closed with 1008 (the ones that hold the memory), the
/// bridge's memory stays near the budget, and a bystander's call succeeds.
#[tokio::test]
async fn unfinished_frames_across_sockets_stay_within_the_process_budget() {
    const SOCKETS: usize = 8;
    const SENT: usize = 3 << 20;
    let target = Target::start(
        Binary::Bridge,
        Setup {
            max_unfinished_frame_bytes: Some(8 << 20),
            ..Setup::default()
        },
    )
    .await;
    target.warm_up().await;
    let mut findings = Findings::default();
    let pid = target.process.pid();
    let before = rss_kib(pid);

    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        let Ok(mut socket) = raw::upgrade(target.addr, &target.ws_path(), &[]).await else {
            findings.add("a socket could not upgrade".to_owned());
            continue;
        };
        // A masked text frame that says 4 MiB and brings 3 MiB of it.
        let mut head = vec![0x81, 0x80 | 127];
        head.extend_from_slice(&(4u64 << 20).to_be_bytes());
        head.extend_from_slice(&[0; 4]);
        let _ = socket.send(&head).await;
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..SENT / chunk.len() {
            let sent = tokio::time::timeout(Duration::from_millis(500), socket.send(&chunk)).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let peak = rss_kib(pid).saturating_sub(before);
    let bystander = hello_on_new_socket(&target, "beside-unfinished").await;
    findings.check(bystander.as_ref().is_ok_and(greeted), || {
        format!("a bystander's call beside the unfinished frames failed: {bystander:?}")
    });
    let mut endings = Vec::new();
    for socket in &mut sockets {
        endings.push(socket.ending(Duration::from_secs(2), &mut Vec::new()).await);
    }
    let refused = endings
        .iter()
        .filter(|ending| **ending == Ending::Close(Some(1008)))
        .count();
    // 8 MiB holds two sockets' 3 MiB and part of a third.
    findings.check(refused >= SOCKETS - 3, || {
        format!("{refused} of {SOCKETS} sockets were closed with 1008: {endings:?}")
    });
    findings.check(peak < 24 * MIB, || {
        format!("resident memory grew by {} MiB", peak / MIB)
    });
    eprintln!(
        "Bridge: {SOCKETS} sockets holding 3 MiB of a 4 MiB frame each against an 8 MiB budget: {refused} closed with 1008; resident memory +{} MiB",
        peak / MIB
    );
    findings.finish(&target);
}
