//! The HTTP side: DNS rebinding (a foreign page whose host name resolves to
//! the target) and the endpoints beside the socket.

use crate::raw::{self, HttpResponse};
use crate::{Binary, Findings, Setup, TOKEN, Target, on_both_binaries};

/// An upgrade request with these `Host` and `Origin`; the HTTP status it
/// got (101 when the socket opened).
async fn upgrade_status(target: &Target, host: &str, origin: &str) -> (u16, String) {
    let headers = [format!("Host: {host}"), format!("Origin: {origin}")];
    match raw::upgrade(target.addr, &target.ws_path(), &headers).await {
        Ok(_) => (101, String::new()),
        Err(HttpResponse { status, head, body }) => (
            status,
            format!("{} {body}", head.lines().next().unwrap_or_default()),
        ),
    }
}

/// A page of `evil.com` whose DNS now points at the target opens a socket
/// with `Host: evil.com` and `Origin: http://evil.com`: same origin on its
/// face, refused with HTTP 403 before the upgrade. The target's own names
/// on loopback (`127.0.0.1:PORT`, `localhost:PORT`) with matching origins
/// upgrade.
async fn a_foreign_host_name_is_refused_before_the_upgrade(binary: Binary) {
    let target = Target::start(binary, Setup::default()).await;
    let mut findings = Findings::default();
    let port = target.addr.port();
    let (status, said) = upgrade_status(&target, "evil.com", "http://evil.com").await;
    findings.check(status == 403, || {
        format!("Host: evil.com, Origin: http://evil.com: expected 403, got {status} {said}")
    });
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let origin = format!("http://{host}");
        let (status, said) = upgrade_status(&target, &host, &origin).await;
        findings.check(status == 101, || {
            format!("Host: {host}, Origin: {origin}: expected 101, got {status} {said}")
        });
    }
    findings.finish(&target);
}
on_both_binaries!(a_foreign_host_name_is_refused_before_the_upgrade);

/// wsgrpc-bridge with `--allowed-host app.example` upgrades a page of that
/// host (`Host: app.example`, `Origin: http://app.example`), and still
/// refuses `evil.com`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_allowed_host_admits_that_host_name() {
    crate::bounded(async {
        let target = Target::start(
            Binary::Bridge,
            Setup {
                allowed_hosts: vec!["app.example"],
                ..Setup::default()
            },
        )
        .await;
        let mut findings = Findings::default();
        let (status, said) = upgrade_status(&target, "app.example", "http://app.example").await;
        findings.check(status == 101, || {
            format!(
                "Host: app.example, Origin: http://app.example: expected 101, got {status} {said}"
            )
        });
        let (status, said) = upgrade_status(&target, "evil.com", "http://evil.com").await;
        findings.check(status == 403, || {
            format!("Host: evil.com, Origin: http://evil.com: expected 403, got {status} {said}")
        });
        findings.finish(&target);
    })
    .await;
}

/// With a token configured, `/metrics` (which names every method and
/// counts every call) needs it: 401 without, 200 with `Authorization:
/// Bearer`. `/healthz` needs none and tells nothing: 200, `ok`, no method
/// named.
async fn metrics_need_the_token_and_healthz_tells_nothing(binary: Binary) {
    let target = Target::start(
        binary,
        Setup {
            token: true,
            ..Setup::default()
        },
    )
    .await;
    // Calls, so that the metrics have methods to name.
    target.warm_up().await;
    let mut findings = Findings::default();
    let authorization = format!("Authorization: Bearer {TOKEN}");
    for (what, headers, want) in [
        ("without the token", vec![], 401),
        ("with the token", vec![authorization.as_str()], 200),
    ] {
        match raw::get(target.addr, "/metrics", &headers).await {
            Ok(response) => findings.check(response.status == want, || {
                format!(
                    "GET /metrics {what}: expected {want}, got {} ({} bytes: {:?}…)",
                    response.status,
                    response.body.len(),
                    &response.body[..response.body.len().min(120)]
                )
            }),
            Err(err) => findings.add(format!("GET /metrics {what}: {err}")),
        }
    }
    match raw::get(target.addr, "/healthz", &[]).await {
        Ok(response) => {
            findings.check(
                response.status == 200 && response.body.trim() == "ok",
                || {
                    format!(
                        "GET /healthz: expected 200 ok, got {} {:?}",
                        response.status, response.body
                    )
                },
            );
            findings.check(
                !["SayHello", "ExampleService", "example."]
                    .iter()
                    .any(|name| response.body.contains(name)),
                || format!("GET /healthz names a method: {:?}", response.body),
            );
        }
        Err(err) => findings.add(format!("GET /healthz: {err}")),
    }
    findings.finish(&target);
}
on_both_binaries!(metrics_need_the_token_and_healthz_tells_nothing);
