//! Several backends: calls spread over every address that the backend URIs
//! name, as gRPC clients spread them over a name's addresses.
//!
//! Each URI's host is resolved (`tokio::net::lookup_host`, the system's
//! resolver) now and again every resolve interval; each address becomes an
//! endpoint of a tonic balanced channel (tower's power-of-two-choices over
//! the endpoints' open requests), inserted when the name first resolves to
//! it and removed when it no longer does. Requests still name the URI's
//! host (`:authority`), not the address.
//!
//! tonic's lazy endpoints report themselves ready even when they cannot
//! connect (hyperium/tonic#1147, grpc/grpc-rust#2839), so the balancer would
//! keep handing calls to a stopped replica until the name stops resolving to
//! it. gRPC clients skip such an endpoint ("transient failure"); here, once
//! a call fails on its way to a backend, every address is tried with a TCP
//! connect and the ones that refuse are held out of the balancer until they
//! accept again. When every address refuses none is held out, so calls fail
//! at once with `UNAVAILABLE`, as with a single backend.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::future::join_all;
use http::Uri;
use tokio::sync::mpsc::Sender;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// Changes queued towards the balancer.
const CHANGES: usize = 64;
/// How long a probe waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a held-out address is tried again (or less often, at the
/// resolve interval, if that is shorter).
const RECHECK: Duration = Duration::from_secs(2);
/// The least time between two rounds of probes that failing calls start.
const PROBE_GAP: Duration = Duration::from_millis(200);
/// When names are not resolved: a day, to wait for ever.
const NEVER: Duration = Duration::from_secs(24 * 60 * 60);

/// Counts calls that failed before a backend answered them. A `Backend`
/// cannot say which channel it belongs to, so every balanced channel of the
/// process probes its addresses on each count; probes are cheap and only
/// failures start them.
static FAILED_CALLS: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// Notes that a call failed on its way to a backend (it could not connect,
/// or the connection broke).
pub(crate) fn call_failed() {
    FAILED_CALLS.send_modify(|count| *count = count.wrapping_add(1));
}

/// One endpoint of the balancer: an address of one of the URIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// Which URI it is an address of.
    target: usize,
    /// None for the URI as given, its host resolved at each connect: when
    /// resolving is off, or the name has never resolved (so that calls fail
    /// at once with the resolver's error, as with a single backend).
    addr: Option<SocketAddr>,
}

/// A channel that spreads calls over the addresses of `uris`, resolved now
/// and again every `every`, or over the URIs as given if `every` is None.
/// `configure` sets each endpoint up (windows,
/// keepalive), the same for each. Needs a Tokio runtime; the task that
/// resolves ends when the last clone of the channel is dropped.
pub(crate) fn balanced_channel(
    uris: Vec<Uri>,
    every: Option<Duration>,
    configure: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
) -> Channel {
    let (channel, changes) = Channel::balance_channel::<Key>(CHANGES);
    let members = Members {
        uris,
        every,
        configure: Box::new(configure),
        changes,
        inserted: HashSet::new(),
        held_out: HashSet::new(),
    };
    tokio::spawn(members.run());
    channel
}

/// The resolving task's state: which addresses the balancer has.
struct Members {
    uris: Vec<Uri>,
    every: Option<Duration>,
    configure: Box<dyn Fn(Endpoint) -> Endpoint + Send + Sync>,
    changes: Sender<Change<Key, Endpoint>>,
    /// In the balancer.
    inserted: HashSet<Key>,
    /// Resolved, but refused a connection when last tried.
    held_out: HashSet<Key>,
}

/// Why a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The first, or the resolve interval has passed: resolve again.
    Resolve,
    /// Some address is held out: is it back?
    Recheck,
    /// A call failed: is every address still there?
    CallFailed,
}

impl Members {
    async fn run(mut self) {
        let mut failures = FAILED_CALLS.subscribe();
        failures.mark_unchanged();
        let mut wanted: Vec<Key> = Vec::new();
        let mut round = Round::Resolve;
        let mut next_resolve = Instant::now();
        let mut last_probe: Option<Instant> = None;
        loop {
            if round == Round::Resolve {
                wanted = match self.every {
                    Some(every) => {
                        next_resolve = Instant::now() + every;
                        self.resolve(&wanted).await
                    }
                    None => {
                        next_resolve = Instant::now() + NEVER;
                        self.unresolved()
                    }
                };
            }
            let to_probe: Vec<Key> = match round {
                // New addresses are tried before they join: `localhost`
                // may name `::1` of a backend that listens on 127.0.0.1.
                // Held-out ones are tried again, in the balancer or not.
                Round::Resolve | Round::Recheck => wanted
                    .iter()
                    .filter(|key| !self.inserted.contains(key) || self.held_out.contains(key))
                    .copied()
                    .collect(),
                Round::CallFailed => {
                    last_probe = Some(Instant::now());
                    wanted.clone()
                }
            };
            let refused = self.refusing(&to_probe).await;
            for key in &to_probe {
                if refused.contains(key) {
                    self.held_out.insert(*key);
                } else {
                    self.held_out.remove(key);
                }
            }
            self.held_out.retain(|key| wanted.contains(key));
            if self.apply(&wanted).await.is_err() {
                return;
            }
            let wake = if self.held_out.is_empty() {
                next_resolve
            } else {
                next_resolve.min(Instant::now() + RECHECK)
            };
            tokio::select! {
                () = self.changes.closed() => return,
                () = tokio::time::sleep_until(wake) => {
                    round = if Instant::now() >= next_resolve {
                        Round::Resolve
                    } else {
                        Round::Recheck
                    };
                }
                changed = failures.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Calls that fail together start one round.
                    if let Some(last) = last_probe {
                        tokio::time::sleep_until(last + PROBE_GAP).await;
                    }
                    failures.mark_unchanged();
                    round = Round::CallFailed;
                }
            }
        }
    }

    /// The addresses of every URI; one that does not resolve (or resolves
    /// to nothing) keeps those it had, or is used as given.
    async fn resolve(&self, before: &[Key]) -> Vec<Key> {
        let mut wanted = Vec::new();
        for (target, uri) in self.uris.iter().enumerate() {
            let addrs = match addresses(uri).await {
                Ok(addrs) if !addrs.is_empty() => {
                    wanted.extend(addrs.into_iter().map(|addr| Key {
                        target,
                        addr: Some(addr),
                    }));
                    continue;
                }
                Ok(_) => "no address".to_owned(),
                Err(err) => err.to_string(),
            };
            let last = wanted.len();
            wanted.extend(before.iter().filter(|key| key.target == target));
            tracing::warn!(%uri, "backend does not resolve: {addrs}; keeping the last addresses");
            if wanted.len() == last {
                wanted.push(Key { target, addr: None });
            }
        }
        wanted
    }

    /// Every URI as given.
    fn unresolved(&self) -> Vec<Key> {
        (0..self.uris.len())
            .map(|target| Key { target, addr: None })
            .collect()
    }

    /// Those of `keys` that do not take a TCP connection at once.
    async fn refusing(&self, keys: &[Key]) -> HashSet<Key> {
        let tries = keys.iter().map(|key| async move {
            let connect = async {
                match key.addr {
                    Some(addr) => tokio::net::TcpStream::connect(addr).await,
                    None => {
                        let uri = &self.uris[key.target];
                        let host = uri.host().unwrap_or_default();
                        let host = host.trim_start_matches('[').trim_end_matches(']');
                        tokio::net::TcpStream::connect((host, port_of(uri))).await
                    }
                }
            };
            let accepted = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, connect).await,
                Ok(Ok(_))
            );
            (!accepted).then_some(*key)
        });
        join_all(tries).await.into_iter().flatten().collect()
    }

    /// Tells the balancer which addresses to use: those wanted and not held
    /// out, or every one wanted if all are held out.
    async fn apply(&mut self, wanted: &[Key]) -> Result<(), ()> {
        let mut usable: Vec<Key> = wanted
            .iter()
            .filter(|key| !self.held_out.contains(key))
            .copied()
            .collect();
        if usable.is_empty() {
            usable = wanted.to_vec();
        }
        let gone: Vec<Key> = self
            .inserted
            .iter()
            .filter(|key| !usable.contains(key))
            .copied()
            .collect();
        for key in gone {
            self.inserted.remove(&key);
            tracing::info!(backend = %self.uris[key.target], addr = ?key.addr, "backend address removed");
            self.changes
                .send(Change::Remove(key))
                .await
                .map_err(|_| ())?;
        }
        for key in usable {
            if self.inserted.contains(&key) {
                continue;
            }
            let Some(endpoint) = self.endpoint(key) else {
                continue;
            };
            self.inserted.insert(key);
            tracing::info!(backend = %self.uris[key.target], addr = ?key.addr, "backend address added");
            self.changes
                .send(Change::Insert(key, endpoint))
                .await
                .map_err(|_| ())?;
        }
        Ok(())
    }

    /// An endpoint that dials `key`'s address and names its URI's host.
    fn endpoint(&self, key: Key) -> Option<Endpoint> {
        let uri = &self.uris[key.target];
        let endpoint = match key.addr {
            None => Endpoint::from(uri.clone()),
            Some(addr) => {
                let scheme = uri.scheme_str().unwrap_or("http");
                Endpoint::from_shared(format!("{scheme}://{addr}"))
                    .ok()?
                    .origin(uri.clone())
            }
        };
        Some((self.configure)(endpoint))
    }
}

/// The addresses `uri`'s host resolves to, in the resolver's order, without
/// repeats.
pub(crate) async fn addresses(uri: &Uri) -> std::io::Result<Vec<SocketAddr>> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other(format!("`{uri}` names no host")))?;
    let port = port_of(uri);
    // `[::1]` is how a URI writes an IPv6 address.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut seen = HashSet::new();
    Ok(tokio::net::lookup_host((bare, port))
        .await?
        .filter(|addr| seen.insert(*addr))
        .collect())
}

/// The URI's port, or its scheme's.
fn port_of(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ip_literal_is_its_own_address() {
        let uri: Uri = "http://127.0.0.1:50051".parse().unwrap();
        assert_eq!(
            addresses(&uri).await.unwrap(),
            [SocketAddr::from(([127, 0, 0, 1], 50051))]
        );
        let uri: Uri = "http://[::1]:7".parse().unwrap();
        assert_eq!(addresses(&uri).await.unwrap(), ["[::1]:7".parse().unwrap()]);
    }

    #[tokio::test]
    async fn the_port_defaults_by_scheme() {
        let plain: Uri = "http://10.0.0.1".parse().unwrap();
        assert_eq!(addresses(&plain).await.unwrap()[0].port(), 80);
        let tls: Uri = "https://10.0.0.1".parse().unwrap();
        assert_eq!(addresses(&tls).await.unwrap()[0].port(), 443);
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback_addresses() {
        let uri: Uri = "http://localhost:50051".parse().unwrap();
        let addrs = addresses(&uri).await.unwrap();
        assert!(!addrs.is_empty());
        for addr in &addrs {
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_eq!(addr.port(), 50051);
        }
        let unique: HashSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len(), "no repeats: {addrs:?}");
    }

    #[tokio::test]
    async fn an_unknown_name_is_an_error() {
        let uri: Uri = "http://no-such-host.invalid:1".parse().unwrap();
        assert!(addresses(&uri).await.is_err());
    }

    fn members(uris: &[&str]) -> Members {
        let (changes, _) = tokio::sync::mpsc::channel(1);
        Members {
            uris: uris.iter().map(|uri| uri.parse().unwrap()).collect(),
            every: None,
            configure: Box::new(|endpoint| endpoint),
            changes,
            inserted: HashSet::new(),
            held_out: HashSet::new(),
        }
    }

    #[tokio::test]
    async fn a_closed_port_refuses_and_a_listening_one_accepts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let members = members(&[&format!("http://localhost:{}", open.port())]);
        let key = |target, addr| Key { target, addr };
        let keys = [
            key(0, Some(open)),
            key(0, Some(closed)),
            // The name as given: any of its addresses may take it.
            key(0, None),
        ];
        let refused = members.refusing(&keys).await;
        assert_eq!(refused, HashSet::from([key(0, Some(closed))]));
    }

    #[tokio::test]
    async fn a_name_that_never_resolved_is_used_as_given() {
        let members = members(&["http://no-such-host.invalid:1", "http://127.0.0.1:2"]);
        let wanted = members.resolve(&[]).await;
        assert_eq!(
            wanted,
            [
                Key {
                    target: 0,
                    addr: None
                },
                Key {
                    target: 1,
                    addr: Some(SocketAddr::from(([127, 0, 0, 1], 2)))
                },
            ]
        );
        // Once resolved, its last addresses stay while it does not resolve.
        let before = [Key {
            target: 0,
            addr: Some(SocketAddr::from(([10, 0, 0, 1], 1))),
        }];
        assert_eq!(members.resolve(&before).await[0], before[0]);
    }
}
