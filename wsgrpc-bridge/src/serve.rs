//! Starting the bridge, and keeping its services up to date: loaded at
//! start (retried while the backend is down), again on SIGHUP and, if asked,
//! on an interval.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use wsgrpc_runtime::ServiceTable;

use crate::config::{Interval, Options};
use crate::descriptors::{LoadError, Source};
use crate::error::Error;

/// How often a first load that failed for a reachable reason is retried.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Listens where the options say and serves until SIGINT or SIGTERM. Fails
/// only on what a restart would not fix: bad options, a descriptor set that
/// does not load, a backend that has no reflection, an address in use.
pub async fn run(options: Options) -> Result<(), Error> {
    let addr = options.bridge_config()?.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    serve(options, listener).await
}

/// Serves on `listener` (whatever the options say to listen on) until
/// SIGINT or SIGTERM.
pub async fn serve(options: Options, listener: TcpListener) -> Result<(), Error> {
    let source = options.source()?;
    let backends = options.backends()?;
    // Every replica serves the same services: the first is asked for them.
    let backend = backends[0].clone();
    let builder = options.builder()?;
    let channel = Endpoint::from_shared(backend.clone())
        .map_err(|err| Error::InvalidBackend {
            uri: backend.clone(),
            source: Box::new(err),
        })?
        .connect_lazy();
    let loader = Loader {
        source,
        channel,
        only: options.services.clone(),
        table: ServiceTable::new(),
    };
    let first = loader.reload().await;
    let bridge = builder
        .backend_uris(backends)
        .service_table(loader.table.clone())
        .build()?;
    match first {
        Ok(()) => {}
        Err(err) if err.is_retryable() => {
            tracing::warn!(
                "{} of {backend}: {err}; serving no methods until it loads, retrying",
                loader.source
            );
            let loader = loader.clone();
            tokio::spawn(async move { loader.retry_until_loaded(err.to_string()).await });
        }
        Err(err) => return Err(err.into()),
    }
    let every = options.reload_interval.and_then(|Interval(every)| every);
    tokio::spawn(loader.reload_on_signal(every));
    bridge
        .serve_with(listener, wsgrpc_runtime::shutdown_signal())
        .await
        .map_err(Error::Serve)
}

/// Loads the services from their source into the table.
#[derive(Clone)]
struct Loader {
    source: Source,
    channel: Channel,
    only: Vec<String>,
    table: ServiceTable,
}

impl Loader {
    /// Loads the services and serves them in place of the old ones; on
    /// failure the old ones stay.
    async fn reload(&self) -> Result<(), LoadError> {
        let services = self.source.load(&self.channel, &self.only).await?;
        let before: BTreeSet<String> = self.table.method_names().into_iter().collect();
        self.table.replace(services);
        let after: BTreeSet<String> = self.table.method_names().into_iter().collect();
        let added: Vec<&String> = after.difference(&before).collect();
        let removed: Vec<&String> = before.difference(&after).collect();
        tracing::info!(
            source = %self.source,
            methods = after.len(),
            ?added,
            ?removed,
            "services loaded"
        );
        Ok(())
    }

    /// Retries a first load that failed with `last_error`.
    async fn retry_until_loaded(&self, mut last_error: String) {
        let mut wait = RETRY_FIRST;
        loop {
            tokio::time::sleep(wait).await;
            match self.reload().await {
                Ok(()) => return,
                Err(err) => {
                    // One line for each new reason, not one per attempt.
                    let text = err.to_string();
                    if text != last_error {
                        tracing::warn!("{}: {text}; retrying", self.source);
                        last_error = text;
                    }
                }
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    async fn reload_on_signal(self, every: Option<Duration>) {
        let mut hangups = Hangups::watch();
        let mut ticks = every.map(|every| {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let why = tokio::select! {
                () = hangups.recv() => "SIGHUP",
                _ = async {
                    match ticks.as_mut() {
                        Some(ticks) => { ticks.tick().await; }
                        None => std::future::pending().await,
                    }
                } => "interval",
            };
            if let Err(err) = self.reload().await {
                tracing::warn!(
                    trigger = why,
                    "reload failed, the services stay as they were: {err}"
                );
            }
        }
    }
}

/// The process's SIGHUPs, where the platform has them.
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn watch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(|err| {
                    tracing::warn!(%err, "cannot watch SIGHUP: no reloads on signal");
                })
                .ok();
            Self { signal }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGHUP; never, where there are none.
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending().await
    }
}
