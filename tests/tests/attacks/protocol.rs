//! Frames and envelopes a proper client never sends: the target answers
//! each with the close code or the status the protocol gives it.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::raw::{self, OP_TEXT};
use crate::{
    Binary, Client, Ending, FRAME_TIMEOUT, Findings, SAY_HELLO, Setup, Target, greeted,
    on_both_binaries, say_hello,
};

/// With `--max-frame-size 65536`, a 100 KiB text frame closes the socket
/// with 1009 (message too big).
async fn a_frame_over_the_limit_closes_with_1009(binary: Binary) {
    let target = Target::start(
        binary,
        Setup {
            max_frame_size: Some(65536),
            ..Setup::default()
        },
    )
    .await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let request = say_hello("big", &"x".repeat(100 << 10));
    // The target may close before it has read the whole frame; what
    // matters is how the socket ends.
    let _ = client.send(&request).await;
    let ending = client.ending(FRAME_TIMEOUT).await;
    findings.check(ending == Ending::Close(Some(1009)), || {
        format!("a 100 KiB frame over a 64 KiB limit: expected close 1009, got {ending:?}")
    });
    findings.finish(&target);
}
on_both_binaries!(a_frame_over_the_limit_closes_with_1009);

/// Sends one hand-made frame on a fresh socket and reads how it ends.
async fn ending_after(target: &Target, frame: &[u8]) -> Ending {
    let mut socket = raw::upgrade(target.addr, &target.ws_path(), &[])
        .await
        .expect("upgrades");
    if let Err(err) = socket.send(frame).await {
        return Ending::Dropped(format!("sending failed: {err}"));
    }
    socket.ending(FRAME_TIMEOUT, &mut Vec::new()).await
}

/// A text frame that is not UTF-8 closes the socket with 1007 (invalid
/// frame payload data).
async fn invalid_utf8_closes_with_1007(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut findings = Findings::default();
    let ending = ending_after(&target, &raw::masked(OP_TEXT, b"{\"id\":\"\xff\xfe\"}")).await;
    findings.check(ending == Ending::Close(Some(1007)), || {
        format!("a text frame of invalid UTF-8: expected close 1007, got {ending:?}")
    });
    findings.finish(&target);
}
on_both_binaries!(invalid_utf8_closes_with_1007);

/// A frame with the reserved opcode 0x3 closes the socket with 1002
/// (protocol error).
async fn a_reserved_opcode_closes_with_1002(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut findings = Findings::default();
    let ending = ending_after(&target, &raw::masked(0x3, b"x")).await;
    findings.check(ending == Ending::Close(Some(1002)), || {
        format!("a frame with opcode 0x3: expected close 1002, got {ending:?}")
    });
    findings.finish(&target);
}
on_both_binaries!(a_reserved_opcode_closes_with_1002);

/// A client frame without a mask closes the socket with 1002 (protocol
/// error).
async fn an_unmasked_client_frame_closes_with_1002(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut findings = Findings::default();
    let envelope = say_hello("u", "unmasked").to_string();
    let ending = ending_after(&target, &raw::frame(OP_TEXT, envelope.as_bytes(), None)).await;
    findings.check(ending == Ending::Close(Some(1002)), || {
        format!("an unmasked text frame: expected close 1002, got {ending:?}")
    });
    findings.finish(&target);
}
on_both_binaries!(an_unmasked_client_frame_closes_with_1002);

/// Sends `text` and returns its reply (in v1 every envelope, refused or
/// not, gets one: an `error` frame, or the frame that ends its call), then
/// every frame that came before a SayHello probe's answer after it.
async fn reply_and_after(
    client: &mut Client,
    text: &str,
    probe: &str,
) -> Result<(Value, Vec<Value>), String> {
    client.send_text(text.to_owned()).await?;
    let reply = client
        .next(FRAME_TIMEOUT)
        .await
        .map_err(|ending| format!("no reply: {ending:?}"))?;
    client.send(&say_hello(probe, "probe")).await?;
    let mut after = Vec::new();
    loop {
        match client.next(FRAME_TIMEOUT).await {
            Ok(frame) if frame["id"] == probe => {
                if !greeted(&frame) {
                    return Err(format!("the probe call after it failed: {frame}"));
                }
                return Ok((reply, after));
            }
            Ok(frame) => after.push(frame),
            Err(ending) => return Err(format!("no reply to the probe: {ending:?}")),
        }
    }
}

/// Checks that `text` was answered with code 3 and started no call.
async fn refused_with_3(client: &mut Client, findings: &mut Findings, text: &str) {
    let probe = format!("probe-{}", text.len());
    match reply_and_after(client, text, &probe).await {
        Ok((reply, after)) => {
            findings.check(reply["code"] == 3, || {
                format!("{text}: expected a reply with code 3 (INVALID_ARGUMENT), got {reply}")
            });
            let made = std::iter::once(&reply)
                .chain(&after)
                .find(|frame| !frame["payload"].is_null());
            findings.check(made.is_none(), || {
                format!("{text}: a call was made: {}", made.unwrap())
            });
        }
        Err(err) => findings.add(format!("{text}: {err}")),
    }
}

/// A v1 envelope written as an array of its values is not an envelope: it
/// is answered with code 3 and no call is made.
async fn an_envelope_as_an_array_is_refused_and_makes_no_call(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let text = format!(r#"["request","{SAY_HELLO}","1",{{}}]"#);
    refused_with_3(&mut client, &mut findings, &text).await;
    findings.finish(&target);
}
on_both_binaries!(an_envelope_as_an_array_is_refused_and_makes_no_call);

/// An envelope that gives `id` twice is answered with code 3 and makes no
/// call.
async fn an_envelope_with_a_duplicate_key_is_refused(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let text =
        format!(r#"{{"type":"request","id":"1","id":"2","method":"{SAY_HELLO}","payload":{{}}}}"#);
    refused_with_3(&mut client, &mut findings, &text).await;
    findings.finish(&target);
}
on_both_binaries!(an_envelope_with_a_duplicate_key_is_refused);

/// A payload that gives a field twice (`{"name":"a","name":"b"}`) ends its
/// call with code 3.
async fn a_payload_with_a_duplicate_key_is_refused(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let text = format!(
        r#"{{"type":"request","id":"3","method":"{SAY_HELLO}","payload":{{"name":"a","name":"b"}}}}"#
    );
    refused_with_3(&mut client, &mut findings, &text).await;
    findings.finish(&target);
}
on_both_binaries!(a_payload_with_a_duplicate_key_is_refused);

/// `timeoutMs` of 2^64 − 1, beyond any deadline the bridge can keep, does
/// not hang the call: SayHello completes normally within 5 s.
async fn a_timeout_out_of_range_does_not_hang_the_call(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut client = target.client().await.expect("connects");
    let mut findings = Findings::default();
    let mut request = say_hello("t", "x");
    request["timeoutMs"] = json!(u64::MAX);
    let started = Instant::now();
    match client.call(request, Duration::from_secs(5)).await {
        Ok(reply) => findings.check(greeted(&reply), || {
            format!(
                "timeoutMs 18446744073709551615: expected a greeting, got {reply} after {:?}",
                started.elapsed()
            )
        }),
        Err(err) => findings.add(format!("timeoutMs 18446744073709551615: {err}")),
    }
    findings.finish(&target);
}
on_both_binaries!(a_timeout_out_of_range_does_not_hang_the_call);
