//! A backend that stops answering without closing anything (a frozen VM, a
//! black-holed route), between wsgrpc-bridge and a real backend.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Binary, FRAME_TIMEOUT, Findings, Setup, Target, greeted, say_hello, start_backend};

/// A TCP proxy that forwards both ways until frozen; then it forwards
/// nothing more, in either direction, and keeps every socket open.
struct FreezingProxy {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    async fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let (frozen, watching) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(backend).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                tokio::spawn(pump(in_read, out_write, watching.clone()));
                tokio::spawn(pump(out_read, in_write, watching.clone()));
            }
        });
        Self { addr, frozen, task }
    }

    fn freeze(&self) {
        let _ = self.frozen.send(true);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either ends; once frozen, holds both open
/// and copies nothing more (until the runtime ends).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *frozen.borrow() {
            std::future::pending::<()>().await;
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if *frozen.borrow() {
                    std::future::pending::<()>().await;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            _ = frozen.changed() => {}
        }
    }
}

/// With `--backend-keepalive-interval 1s --backend-keepalive-timeout 1s`,
/// a call in flight to a backend that froze (its connection open, nothing
/// coming back) fails with UNAVAILABLE within 10 s instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_fails_calls_to_a_frozen_backend_with_unavailable() {
    crate::bounded(async {
        let (_backend, backend_addr) = start_backend().await;
        let proxy = FreezingProxy::start(backend_addr).await;
        let target = Target::start(
            Binary::Bridge,
            Setup {
                backend_uri: Some(format!("http://{}", proxy.addr)),
                backend_keepalive_ms: Some(1000),
                ..Setup::default()
            },
        )
        .await;
        let mut findings = Findings::default();
        let mut client = target.client().await.expect("connects");
        match client.call(say_hello("before", "x"), FRAME_TIMEOUT).await {
            Ok(reply) => assert!(greeted(&reply), "the call before the freeze failed: {reply}"),
            Err(err) => panic!("the call before the freeze: {err}"),
        }

        proxy.freeze();
        let frozen = Instant::now();
        match client
            .call(say_hello("frozen", "x"), Duration::from_secs(10))
            .await
        {
            Ok(reply) => findings.check(reply["code"] == 14, || {
                format!(
                    "a call to the frozen backend: expected code 14 (UNAVAILABLE), got {reply} after {:?}",
                    frozen.elapsed()
                )
            }),
            Err(err) => findings.add(format!("a call to the frozen backend: {err}")),
        }
        findings.finish(&target);
    })
    .await;
}
