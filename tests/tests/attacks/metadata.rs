//! Metadata as an attacker writes it: another user's identity in another
//! letter case, transport headers smuggled in capitals, one key twice, and
//! header blocks far larger than any backend takes.

use serde_json::{Map, Value, json};

use crate::{
    Binary, FRAME_TIMEOUT, Findings, STREAM_MESSAGES, Setup, Target, greeted, on_both_binaries,
    say_hello,
};

fn with_metadata(id: &str, metadata: Value) -> Value {
    let mut request = say_hello(id, "x");
    request["metadata"] = metadata;
    request
}

/// The example's token authenticator makes every socket the user `demo`,
/// sent to the backend as `x-user-id`. A client that sends `x-user-id`
/// itself, in whatever letter case, is refused with PERMISSION_DENIED and
/// never greeted as the user it named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_refuses_a_user_id_forged_in_any_letter_case() {
    crate::bounded(async {
        let target = Target::start(
            Binary::Example,
            Setup {
                token: true,
                ..Setup::default()
            },
        )
        .await;
        let mut client = target.client().await.expect("connects with the token");
        let mut findings = Findings::default();
        for (id, key) in [("1", "X-User-Id"), ("2", "x-user-id"), ("3", "X-USER-ID")] {
            let request = with_metadata(id, json!({ key: "admin" }));
            match client.call(request, FRAME_TIMEOUT).await {
                Ok(reply) => {
                    findings.check(reply["code"] == 7, || {
                        format!("metadata {{{key:?}: \"admin\"}}: expected code 7 (PERMISSION_DENIED), got {reply}")
                    });
                    let greeting = reply["payload"]["message"].as_str().unwrap_or_default();
                    findings.check(!greeting.contains("admin"), || {
                        format!("metadata {{{key:?}: \"admin\"}}: the backend greeted the forged user: {reply}")
                    });
                }
                Err(err) => findings.add(format!("metadata {{{key:?}: \"admin\"}}: {err}")),
            }
        }
        findings.finish(&target);
    })
    .await;
}

/// Keys the transport owns are refused in any letter case, as is a key
/// given twice in two spellings (which would reach the backend as two
/// values); ordinary keys in capitals pass.
async fn reserved_or_repeated_metadata_keys_are_refused_in_any_letter_case(binary: Binary) {
    let target = Target::start(
        binary,
        Setup {
            token: true,
            ..Setup::default()
        },
    )
    .await;
    let mut client = target.client().await.expect("connects with the token");
    let mut findings = Findings::default();
    let refused = [
        ("r1", json!({"Grpc-Timeout": "1m"})),
        ("r2", json!({"GRPC-ENCODING": "gzip"})),
        ("r3", json!({"x-a": "1", "X-A": "2"})),
    ];
    for (id, metadata) in refused {
        match client
            .call(with_metadata(id, metadata.clone()), FRAME_TIMEOUT)
            .await
        {
            Ok(reply) => findings.check(reply["code"] == 3, || {
                format!("metadata {metadata}: expected code 3 (INVALID_ARGUMENT), got {reply}")
            }),
            Err(err) => findings.add(format!("metadata {metadata}: {err}")),
        }
    }
    let fine = json!({"X-Trace": "v"});
    match client
        .call(with_metadata("ok", fine.clone()), FRAME_TIMEOUT)
        .await
    {
        Ok(reply) => findings.check(greeted(&reply), || {
            format!("metadata {fine}: expected the call to succeed, got {reply}")
        }),
        Err(err) => findings.add(format!("metadata {fine}: {err}")),
    }
    findings.finish(&target);
}
on_both_binaries!(reserved_or_repeated_metadata_keys_are_refused_in_any_letter_case);

/// Every socket's calls share one HTTP/2 connection to the backend. A call
/// whose metadata is far larger than a backend takes (one 64 KiB value;
/// 2,000 small keys) ends with RESOURCE_EXHAUSTED, and a server stream of
/// another client, in flight meanwhile on that connection, completes with
/// every message.
async fn oversized_metadata_fails_its_call_and_spares_other_clients(binary: Binary) {
    const COUNT: usize = 2000;
    let target = Target::start(binary, Setup::default()).await;
    target.warm_up().await;
    let mut findings = Findings::default();

    // B's stream: 2,000 messages of 8 KiB, 16 MiB in all, more than the
    // sockets and the bridge buffer. B reads nothing until A is done, so
    // its stream is held open at the backend by flow control meanwhile.
    let mut b = target.client().await.expect("B connects");
    let stream = json!({"type": "request", "id": "s", "method": STREAM_MESSAGES,
                        "payload": {"message": "m".repeat(8192), "count": COUNT}});
    b.send(&stream).await.expect("B starts its stream");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut a = target.client().await.expect("A connects");
    let one_big_value = json!({"x-big": "v".repeat(64 * 1024)});
    let many_keys: Map<String, Value> = (0..2000)
        .map(|i| (format!("x-k{i:04}"), Value::from("v")))
        .collect();
    let many_keys = Value::Object(many_keys);
    for round in 0..3 {
        for (what, metadata) in [
            ("one 64 KiB value", &one_big_value),
            ("2,000 keys", &many_keys),
        ] {
            let id = format!("a{round}-{}", what.len());
            match a
                .call(with_metadata(&id, metadata.clone()), FRAME_TIMEOUT)
                .await
            {
                Ok(reply) => findings.check(reply["code"] == 8, || {
                    format!("A's metadata of {what} (round {round}): expected code 8 (RESOURCE_EXHAUSTED), got {reply}")
                }),
                Err(err) => {
                    findings.add(format!("A's metadata of {what} (round {round}): {err}"));
                    // Go on with a new socket.
                    match target.client().await {
                        Ok(client) => a = client,
                        Err(err) => {
                            findings.add(format!("A cannot connect again: {err}"));
                            return findings.finish(&target);
                        }
                    }
                }
            }
        }
    }

    // Now B reads its whole stream.
    let mut received = 0usize;
    let end = loop {
        match b.next(FRAME_TIMEOUT).await {
            Ok(frame) if frame["id"] != "s" => {}
            Ok(frame) if frame["end"] == true => break Ok(frame),
            Ok(frame) => {
                if frame["payload"]["index"].as_u64().unwrap_or(0) as usize != received {
                    findings.add(format!(
                        "B's message {received} came as {}",
                        frame["payload"]["index"]
                    ));
                    break Err("out of order".to_owned());
                }
                received += 1;
            }
            Err(ending) => break Err(format!("{ending:?}")),
        }
    };
    findings.check(received == COUNT, || {
        format!("B's stream delivered {received} of {COUNT} messages")
    });
    match end {
        Ok(end) => findings.check(end["code"].is_null() && end["error"].is_null(), || {
            let mut end = end.clone();
            end["payload"] = Value::Null;
            format!("B's stream ended with an error: {end}")
        }),
        Err(ending) => findings.add(format!("B's stream did not end: {ending}")),
    }
    findings.finish(&target);
}
on_both_binaries!(oversized_metadata_fails_its_call_and_spares_other_clients);
