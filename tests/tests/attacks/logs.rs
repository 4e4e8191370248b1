//! The target's log as an attacker's canvas: forged lines, huge lines, and
//! a line for every refused frame. Both binaries are meant to log to stderr;
//! the log is read from stdout and stderr together, so that a binary that
//! logs to stdout (today's wsgrpc-example) is measured all the same.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Binary, FRAME_TIMEOUT, Findings, SAY_HELLO, Setup, Target, on_both_binaries};

/// How long the log is given to catch up after the last reply.
const LOG_SETTLE: Duration = Duration::from_millis(400);

/// Newlines in a method name, in call ids and in an envelope's `type`
/// cannot start a line of the target's log: no line of its log starts
/// with `FORGED`.
async fn newlines_in_client_text_cannot_forge_log_lines(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let frames = [
        json!({"type": "request", "id": "n1", "method": "a\nFORGED line", "payload": {}}),
        json!({"type": "request", "id": "n2\nFORGED id", "method": "nope\nFORGED method",
               "payload": {}}),
        json!({"type": "request", "id": "n3\nFORGED id", "method": SAY_HELLO,
               "payload": {"name": "x\nFORGED name"}}),
        json!({"type": "cancel", "id": "n4\nFORGED cancel"}),
        json!({"type": "bogus\nFORGED type", "id": "n5"}),
    ];
    // Each frame gets one reply, whatever id it carries (if any).
    for frame in frames {
        let replied = match client.send(&frame).await {
            Ok(()) => client
                .next(FRAME_TIMEOUT)
                .await
                .map_err(|e| format!("{e:?}")),
            Err(err) => Err(err),
        };
        if let Err(err) = replied {
            findings.add(format!("no reply to {frame}: {err}"));
        }
    }
    tokio::time::sleep(LOG_SETTLE).await;
    let log = target.process.log();
    let forged: Vec<&str> = log
        .lines()
        .filter(|line| line.starts_with("FORGED"))
        .collect();
    findings.check(forged.is_empty(), || {
        format!("{} log lines start with FORGED: {forged:?}", forged.len())
    });
    findings.finish(&target);
}
on_both_binaries!(newlines_in_client_text_cannot_forge_log_lines);

/// A request whose method name is 3 MiB (in a frame the target accepts,
/// `--max-frame-size 8388608`) grows its log by less than 64 KiB.
async fn a_3_mib_method_name_is_not_logged_whole(binary: Binary) {
    let target = Target::start(
        binary,
        Setup {
            max_frame_size: Some(8 << 20),
            ..Setup::default()
        },
    )
    .await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let before = target.process.log_len();
    let method = "m".repeat(3 << 20);
    let request = json!({"type": "request", "id": "big", "method": method, "payload": {}});
    // Its reply (a refusal), or the end of the socket, says the frame was
    // handled; either way only the log is judged here.
    if let Err(err) = client.send(&request).await {
        findings.add(format!("sending a 3 MiB method name: {err}"));
    } else if let Ok(reply) = client.next(FRAME_TIMEOUT).await {
        let mut reply = reply;
        reply["method"] = Value::Null;
        eprintln!("{binary:?}: the reply to a 3 MiB method name: {reply}");
    } else {
        eprintln!("{binary:?}: the socket ended after a 3 MiB method name");
    }
    tokio::time::sleep(LOG_SETTLE).await;
    let growth = target.process.log_len() - before;
    findings.check(growth < 64 << 10, || {
        format!("the log grew by {growth} bytes for one request with a 3 MiB method name")
    });
    findings.finish(&target);
}
on_both_binaries!(a_3_mib_method_name_is_not_logged_whole);

/// 10,000 `cancel` envelopes for ids that are not open (v1, where each is
/// refused with an `error` frame) add fewer than 100 lines to its log.
async fn ten_thousand_refused_cancels_do_not_flood_the_log(binary: Binary) {
    const CANCELS: usize = 10_000;
    const BATCH: usize = 500;
    let target = Target::start(binary, Setup::default()).await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let before = target.process.log_lines();
    let mut refused = 0;
    'batches: for batch in 0..CANCELS / BATCH {
        for i in 0..BATCH {
            let id = format!("gone-{}", batch * BATCH + i);
            if let Err(err) = client.send(&json!({"type": "cancel", "id": id})).await {
                findings.add(format!("cancel {id}: {err}"));
                break 'batches;
            }
        }
        for _ in 0..BATCH {
            match client.next(FRAME_TIMEOUT).await {
                Ok(frame) if frame["type"] == "error" => refused += 1,
                Ok(_) => {}
                Err(ending) => {
                    findings.add(format!(
                        "after {refused} refusals the socket ended: {ending:?}"
                    ));
                    break 'batches;
                }
            }
        }
    }
    tokio::time::sleep(LOG_SETTLE).await;
    let added = target.process.log_lines() - before;
    findings.check(added < 100, || {
        format!("{CANCELS} refused cancels ({refused} error frames) added {added} lines to the log")
    });
    findings.finish(&target);
}
on_both_binaries!(ten_thousand_refused_cancels_do_not_flood_the_log);
