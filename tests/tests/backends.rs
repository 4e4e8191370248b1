//! A bridge in front of several backend replicas: calls spread over them,
//! and a replica that stops takes no more calls.

use std::time::Duration;

use serde_json::json;
use wsgrpc_tests::client::WsClient;
use wsgrpc_tests::{RunningBackend, RunningBridge, test_bridge};

const ANY_PORT: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

/// A unary call on `client`; whether it succeeded.
async fn unary(client: &mut WsClient, id: &str) -> bool {
    client
        .send(json!({
            "type": "request",
            "id": id,
            "method": "wsgrpc.test.v1.TestService/Unary",
            "payload": {"text": id},
        }))
        .await;
    let frames = client.recv_call(id).await;
    frames.len() == 1 && frames[0]["payload"]["text"] == id && frames[0].get("error").is_none()
}

#[tokio::test]
async fn calls_spread_over_every_replica_and_avoid_a_stopped_one() {
    let first = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let second = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let bridge = RunningBridge::start(
        test_bridge(&first.uri()).backend_uris([first.uri(), second.uri()]),
        ANY_PORT.into(),
    )
    .await
    .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;

    for call in 0..100 {
        assert!(unary(&mut client, &format!("a{call}")).await, "call {call}");
    }
    let (on_first, on_second) = (first.backend.started(), second.backend.started());
    assert_eq!(on_first + on_second, 100);
    assert!(
        on_first >= 20 && on_second >= 20,
        "calls on each replica: {on_first} and {on_second}"
    );

    let second_addr = second.addr;
    second.kill();
    // The calls that find the replica gone fail, as they would with one
    // backend; they tell the bridge to hold it out.
    let mut failed = 0;
    for call in 0..20 {
        if !unary(&mut client, &format!("b{call}")).await {
            failed += 1;
        }
    }
    assert!(failed <= 5, "{failed} of 20 calls failed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = first.backend.started();
    for call in 0..50 {
        assert!(
            unary(&mut client, &format!("c{call}")).await,
            "call {call} after the replica stopped"
        );
    }
    assert_eq!(first.backend.started() - before, 50);

    // Back on its address, it is tried again within seconds and takes
    // calls again.
    let second = RunningBackend::start(second_addr).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut call = 0;
    while second.backend.started() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted replica took no call"
        );
        assert!(unary(&mut client, &format!("d{call}")).await, "call {call}");
        call += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_name_of_one_address_works_as_a_single_backend() {
    let backend = RunningBackend::start(ANY_PORT.into()).await.unwrap();
    let uri = format!("http://localhost:{}", backend.addr.port());
    let bridge = RunningBridge::start(test_bridge(&uri), ANY_PORT.into())
        .await
        .unwrap();
    let mut client = WsClient::connect(&bridge.url()).await;
    for call in 0..5 {
        assert!(unary(&mut client, &format!("n{call}")).await, "call {call}");
    }
    assert_eq!(backend.backend.started(), 5);
}
