//! SIGTERM in the middle of a client's upload: the process drains.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::raw;
use crate::{
    Binary, COLLECT_MESSAGES, Ending, FRAME_TIMEOUT, Findings, Setup, Target, on_both_binaries,
};

const DRAIN_TIMEOUT_MS: u64 = 5000;

/// A client is streaming to CollectMessages when the process gets SIGTERM.
/// The client goes on sending for ~500 ms, then ends its stream and gets
/// the OK response with every message counted. Meanwhile `/healthz` answers
/// 503 and a new upgrade is refused with HTTP 503. After the call the
/// socket is closed with 1001 (going away), and the process exits with
/// status 0 within the drain timeout.
async fn sigterm_lets_a_client_stream_finish_then_closes_with_1001_and_exits_0(binary: Binary) {
    let mut target = Target::start(
        binary,
        Setup {
            drain_timeout_ms: Some(DRAIN_TIMEOUT_MS),
            ..Setup::default()
        },
    )
    .await;
    target.warm_up().await;
    let mut findings = Findings::default();
    let mut client = target.client().await.expect("connects");
    let message =
        |i: usize| json!({"type": "message", "id": "up", "payload": {"message": format!("m{i}")}});
    client
        .send(
            &json!({"type": "request", "id": "up", "method": COLLECT_MESSAGES,
                      "payload": {"message": "m0"}}),
        )
        .await
        .expect("opens the upload");
    client.send(&message(1)).await.expect("sends a message");
    tokio::time::sleep(Duration::from_millis(100)).await;

    target.process.terminate();
    let signalled = Instant::now();

    let addr = target.addr;
    let ws_path = target.ws_path();
    let probes = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let health = raw::get(addr, "/healthz", &[]).await;
        let upgrade = raw::upgrade(addr, &ws_path, &[]).await;
        (health, upgrade)
    };
    let sending = async {
        let mut sent = 2;
        let mut failure = None;
        while signalled.elapsed() < Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(err) = client.send(&message(sent)).await {
                failure = Some(format!(
                    "sending message {sent} {:?} after SIGTERM: {err}",
                    signalled.elapsed()
                ));
                break;
            }
            sent += 1;
        }
        (sent, failure)
    };
    let ((health, upgrade), (sent, failure)) = tokio::join!(probes, sending);

    match health {
        Ok(response) => findings.check(response.status == 503, || {
            format!(
                "GET /healthz while draining: expected 503, got {} {:?}",
                response.status, response.body
            )
        }),
        Err(err) => findings.add(format!("GET /healthz while draining failed: {err}")),
    }
    match upgrade {
        Ok(_) => findings.add("a new upgrade while draining was accepted (101)"),
        Err(response) => findings.check(response.status == 503, || {
            format!(
                "a new upgrade while draining: expected HTTP 503, got {} {}",
                response.status,
                response.head.lines().next().unwrap_or_default()
            )
        }),
    }

    if let Some(failure) = failure {
        findings.add(failure);
    } else {
        let ended = client.send(&json!({"type": "end", "id": "up"})).await;
        match ended {
            Err(err) => findings.add(format!("ending the upload after SIGTERM: {err}")),
            Ok(()) => match client.reply("up", FRAME_TIMEOUT).await {
                Ok(reply) => findings.check(
                    reply["code"].is_null() && reply["payload"]["count"] == sent,
                    || format!("the upload's response: expected OK with count {sent}, got {reply}"),
                ),
                Err(err) => findings.add(format!("the upload's response: {err}")),
            },
        }
    }
    let ending = client.ending(FRAME_TIMEOUT).await;
    findings.check(ending == Ending::Close(Some(1001)), || {
        format!("after the call the socket ended with {ending:?}, not a close frame with 1001")
    });

    let limit = Duration::from_millis(DRAIN_TIMEOUT_MS + 1000);
    let left = limit.saturating_sub(signalled.elapsed());
    match target.process.wait_exit(left).await {
        Some(status) => findings.check(status.success(), || {
            format!(
                "the process exited with {status} {:?} after SIGTERM, not 0",
                signalled.elapsed()
            )
        }),
        None => findings.add(format!(
            "the process had not exited {limit:?} after SIGTERM (drain timeout {DRAIN_TIMEOUT_MS} ms)"
        )),
    }
    findings.finish(&target);
}
on_both_binaries!(sigterm_lets_a_client_stream_finish_then_closes_with_1001_and_exits_0);
