//! The bridge's settings: one set of options, read from a TOML file and from
//! the command line, where a flag overrides the file's key of the same name
//! (`--max-connections` overrides `max_connections`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use wsgrpc_runtime::{BridgeBuilder, BridgeConfig, JsonOptions, TokenAuth};

use crate::descriptors::Source;
use crate::error::Error;

/// A WebSocket ↔ gRPC bridge for any gRPC backend. The services come from a
/// descriptor set or from the backend's server reflection; browsers call
/// them with the TypeScript client that `protoc-gen-wsgrpc` writes.
///
/// Every option can also be set in the file given with --config, under its
/// name in snake_case (`max_connections = 500`); a flag overrides the file.
#[derive(Debug, Default, Parser, Deserialize, Serialize)]
#[command(name = "wsgrpc-bridge", version, about, max_term_width = 100)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// A TOML file with any of the options below.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:50052].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Path of the WebSocket endpoint [default: /ws]. `/healthz` and
    /// `/metrics` (Prometheus) are served beside it.
    #[arg(long)]
    pub path: Option<String>,

    /// The gRPC backend, e.g. `http://127.0.0.1:50051` (required). Several
    /// replicas separated by commas (or a list in the file): calls are
    /// spread over them and over every address their names resolve to.
    /// Services are read by reflection from the first.
    #[arg(long, value_name = "URI[,URI…]")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub backend: Option<String>,

    /// Read the services from this FileDescriptorSet, as `buf build -o FILE`
    /// or `protoc --include_imports --descriptor_set_out=FILE` write it.
    #[arg(long, value_name = "FILE", conflicts_with = "reflection")]
    pub descriptor_set: Option<PathBuf>,

    /// Read the services from the backend's gRPC server reflection (v1, or
    /// v1alpha), at start and on every reload.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub reflection: Option<bool>,

    /// Reload the services this often, besides on SIGHUP, e.g. `30s`
    /// [default: only on SIGHUP].
    #[arg(long, value_name = "DURATION")]
    pub reload_interval: Option<Interval>,

    /// Serve only this service (full name, e.g. `example.ExampleService`);
    /// repeat for more [default: every service but reflection itself].
    #[arg(long = "service", value_name = "NAME")]
    #[serde(default)]
    pub services: Vec<String>,

    /// An origin whose pages may connect besides the bridge's own, e.g.
    /// `https://app.example.com`; `*` for any page. Repeat for more.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    #[serde(default)]
    pub allowed_origins: Vec<String>,

    /// A host name under which a page counts as the bridge's own origin,
    /// e.g. `app.example.com` (`.example.com` for it and its subdomains);
    /// repeat for more. IP addresses and `localhost` always count; any
    /// other name must be listed, against DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    #[serde(default)]
    pub allowed_hosts: Vec<String>,

    /// Serve `/metrics` without the token [default: false]; with a token
    /// configured, a scrape otherwise sends it as `Authorization: Bearer`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub public_metrics: Option<bool>,

    /// Metadata entries one call may carry [default: 64].
    #[arg(long, value_name = "ENTRIES")]
    pub max_metadata_entries: Option<usize>,

    /// Bytes of metadata one call may carry, as HTTP/2 counts them (key,
    /// value and 32 per entry) [default: 8192].
    #[arg(long, value_name = "BYTES")]
    pub max_metadata_bytes: Option<usize>,

    /// How often the backend connection is pinged while calls are open;
    /// `off` for never [default: 20s].
    #[arg(long, value_name = "DURATION")]
    pub backend_keepalive_interval: Option<Interval>,

    /// How long a ping of the backend may go unanswered before its calls
    /// fail with UNAVAILABLE [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub backend_keepalive_timeout: Option<Interval>,

    /// How often the backend's host name is resolved again, to spread calls
    /// over all its addresses; `off` connects to each name as given
    /// [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub backend_resolve_interval: Option<Interval>,

    /// How long a client may take to send an HTTP request's headers, the
    /// upgrade's among them [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub header_read_timeout: Option<Interval>,

    /// HTTP connections not (yet) upgraded, at once; past this the one that
    /// has waited longest is closed [default: 1024].
    #[arg(long, value_name = "CONNECTIONS")]
    pub max_pending_connections: Option<usize>,

    /// Bytes the unfinished frames of all sockets may hold together; past
    /// it a socket holding 256 KiB or more of one is closed with 1008
    /// [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    pub max_unfinished_frame_bytes: Option<usize>,

    /// Bytes the v2 sessions of all sockets may keep together for their
    /// clients to acknowledge; past it a session keeping more than 64 KiB
    /// waits for its client's acknowledgements [default: 268435456].
    #[arg(long, value_name = "BYTES")]
    pub max_session_kept_bytes: Option<usize>,

    /// Largest frame a client may send, in bytes [default: 4194304].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_size: Option<usize>,

    /// Calls open at once on one socket; a client of protocol v2 queues
    /// the ones beyond [default: 100].
    #[arg(long, value_name = "CALLS")]
    pub max_calls_per_connection: Option<usize>,

    /// Sockets open at once; further upgrades get HTTP 503 [default: 10000].
    #[arg(long, value_name = "SOCKETS")]
    pub max_connections: Option<usize>,

    /// Sockets open at once for one identity the authenticator named;
    /// further upgrades get HTTP 429, and its parked sessions are held to
    /// as many [default: 256].
    #[arg(long, value_name = "SOCKETS")]
    pub max_connections_per_identity: Option<usize>,

    /// Request messages a streaming call may queue ahead of the backend
    /// [default: 64].
    #[arg(long, value_name = "MESSAGES")]
    pub call_queue_messages: Option<usize>,

    /// Byte windows: request bytes a streaming call may send before the
    /// bridge's first credit; grows towards the path's bandwidth-delay
    /// product [default: 262144].
    #[arg(long, value_name = "BYTES")]
    pub window_bytes: Option<u64>,

    /// Byte windows: request bytes a socket's calls together may send
    /// before the bridge's first credit [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub connection_window_bytes: Option<u64>,

    /// Byte windows: the largest a call's request window grows to
    /// [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub max_window_bytes: Option<u64>,

    /// Longest a call may run, e.g. `10m`; `off` for no limit [default: off].
    #[arg(long, value_name = "DURATION")]
    pub max_call_duration: Option<Interval>,

    /// How often each client is pinged; `off` for never [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub ping_interval: Option<Interval>,

    /// A socket from which nothing arrives for this long is closed; `off`
    /// for never [default: 90s].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<Interval>,

    /// How long a socket may live before the bridge sends a v2 client
    /// `goaway` and closes it once its calls end, e.g. `30m`, give or take
    /// a tenth; `off` for no limit [default: off].
    #[arg(long, value_name = "DURATION")]
    pub max_connection_age: Option<Interval>,

    /// Protocol v2 sessions: how long the calls of a session whose socket
    /// dropped go on, waiting for the client to resume them; `off` ends
    /// them with the socket [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub session_grace: Option<Interval>,

    /// How long open calls may go on after SIGTERM or Ctrl-C [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<Interval>,

    /// Offer wire protocol v2, many messages per frame [default: true].
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub protocol_v2: Option<bool>,

    /// Protocol v2: the most bytes in one frame [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub batch_bytes: Option<usize>,

    /// Protocol v2: how long to wait for more messages before sending a
    /// frame that is not full [default: 0s].
    #[arg(long, value_name = "DURATION")]
    pub batch_linger: Option<Interval>,

    /// Write fields that hold their default value in responses.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub emit_defaults: Option<bool>,

    /// Write enum values as numbers instead of names.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub enum_numbers: Option<bool>,

    /// Write fields under their .proto names instead of lowerCamelCase.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub proto_field_names: Option<bool>,

    /// Require a token to open a socket: one of the lines of this file.
    /// Clients send it as `Authorization: Bearer …`, in the query parameter
    /// `access_token` or in the cookie named by --token-cookie.
    #[arg(long, value_name = "FILE", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,

    /// Require a token to open a socket: the value of this environment
    /// variable (see --token-file for how clients send it).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,

    /// The cookie that may carry the token [default: wsgrpc_token].
    #[arg(long, value_name = "NAME")]
    pub token_cookie: Option<String>,

    /// Threads that run the bridge [default: one per core]. `1` runs it on
    /// a single-threaded runtime, where no hand-off between a socket's
    /// tasks crosses threads: it spends less CPU per call (docs/PERFORMANCE.md)
    /// but uses one core, for a bridge per core or beside its backend.
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<std::num::NonZeroUsize>,
}

/// The options that are this binary's own rather than the bridge's.
const OWN_OPTIONS: &[&str] = &[
    "config",
    "backend",
    "descriptor_set",
    "reflection",
    "reload_interval",
    "services",
    "emit_defaults",
    "enum_numbers",
    "proto_field_names",
    "token_file",
    "token_env",
    "token_cookie",
    "worker_threads",
];

/// A duration, written as `humantime` reads it (`250ms`, `30s`, `5m`), or
/// `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

impl FromStr for Interval {
    type Err = InvalidInterval;

    fn from_str(text: &str) -> Result<Self, InvalidInterval> {
        if text == "off" {
            return Ok(Self(None));
        }
        humantime::parse_duration(text)
            .map(|duration| Self(Some(duration)))
            .map_err(|source| InvalidInterval {
                text: text.to_owned(),
                source,
            })
    }
}

/// Text that is neither a duration nor `off`.
#[derive(Debug)]
pub struct InvalidInterval {
    text: String,
    source: humantime::DurationError,
}

impl std::fmt::Display for InvalidInterval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The source's words too: clap and serde print one line.
        write!(
            f,
            "`{}` is not a duration like `30s` or `off`: {}",
            self.text, self.source
        )
    }
}

impl std::error::Error for InvalidInterval {}

impl Serialize for Interval {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(duration) => serializer.collect_str(&humantime::format_duration(duration)),
            None => serializer.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A string, or a list of them, as the command line writes a list: with
/// commas between.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => one,
        OneOrMany::Many(many) => many.join(","),
    }))
}

impl Options {
    /// The options of the command line, over those of `--config`'s file.
    pub fn from_args_and_file() -> Result<Self, Error> {
        let flags = Self::parse();
        match &flags.config {
            None => Ok(flags),
            Some(path) => {
                let mut options = Self::read(path)?;
                // Sets only what the command line gives.
                options.update_from(std::env::args_os());
                Ok(options)
            }
        }
    }

    /// The tokio runtime `worker_threads` asks for: a current-thread one
    /// for 1, else a multi-thread one.
    pub fn runtime(&self) -> Result<tokio::runtime::Runtime, Error> {
        let mut builder = match self.worker_threads.map(std::num::NonZeroUsize::get) {
            Some(1) => tokio::runtime::Builder::new_current_thread(),
            Some(threads) => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(threads);
                builder
            }
            None => tokio::runtime::Builder::new_multi_thread(),
        };
        builder.enable_all().build().map_err(Error::Runtime)
    }

    /// Reads a TOML file of options.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|err| Error::ParseConfig {
            path: path.to_owned(),
            source: Box::new(err),
        })
    }

    /// Where the services come from: exactly one source must be given.
    pub fn source(&self) -> Result<Source, Error> {
        match (&self.descriptor_set, self.reflection.unwrap_or(false)) {
            (Some(path), false) => Ok(Source::File(path.clone())),
            (None, true) => Ok(Source::Reflection),
            (Some(_), true) => Err(Error::BothSources),
            (None, false) => Err(Error::NoSource),
        }
    }

    /// The backends' URIs, of which one at least must be given.
    pub fn backends(&self) -> Result<Vec<String>, Error> {
        let uris: Vec<String> = self
            .backend
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|uri| !uri.is_empty())
            .map(str::to_owned)
            .collect();
        if uris.is_empty() {
            return Err(Error::NoBackend);
        }
        Ok(uris)
    }

    /// A bridge builder with every option applied but the backend and the
    /// services.
    pub fn builder(&self) -> Result<BridgeBuilder, Error> {
        let json = JsonOptions::canonical()
            .emit_defaults(self.emit_defaults.unwrap_or(false))
            .enum_numbers(self.enum_numbers.unwrap_or(false))
            .proto_field_names(self.proto_field_names.unwrap_or(false));
        let mut builder = wsgrpc_runtime::Bridge::builder()
            .config(self.bridge_config()?)
            .json_options(json);
        if let Some(tokens) = self.tokens()? {
            let mut auth = TokenAuth::new(tokens);
            if let Some(cookie) = &self.token_cookie {
                auth = auth.cookie(cookie.clone());
            }
            builder = builder.authenticator(auth);
        }
        Ok(builder)
    }

    /// The bridge's settings: those given, by flag or in the file, over
    /// [`BridgeConfig`]'s defaults. Every option that is not this binary's
    /// own is a [`BridgeConfig`] field of the same name.
    pub fn bridge_config(&self) -> Result<BridgeConfig, Error> {
        let Ok(serde_json::Value::Object(mut given)) = serde_json::to_value(self) else {
            unreachable!("options serialize as an object");
        };
        given.retain(|key, value| {
            !OWN_OPTIONS.contains(&key.as_str())
                && !value.is_null()
                && value.as_array().is_none_or(|list| !list.is_empty())
        });
        serde_json::from_value(serde_json::Value::Object(given))
            .map_err(|err| Error::InvalidSettings(Box::new(err)))
    }

    fn tokens(&self) -> Result<Option<Vec<String>>, Error> {
        let text = match (&self.token_file, &self.token_env) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(Error::BothTokenSources);
            }
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|source| Error::ReadTokenFile {
                    path: path.clone(),
                    source,
                })?
            }
            (None, Some(var)) => std::env::var(var).map_err(|source| Error::TokenEnv {
                var: var.clone(),
                source,
            })?,
        };
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(Error::NoTokens);
        }
        Ok(Some(tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Options, String> {
        toml::from_str(text).map_err(|err| err.to_string())
    }

    #[test]
    fn a_file_sets_options_and_flags_override_them() {
        let file = parse(
            r#"
            backend = "http://127.0.0.1:50051"
            reflection = true
            max_connections = 500
            idle_timeout = "off"
            ping_interval = "15s"
            allowed_origins = ["https://app.example.com"]
            "#,
        )
        .unwrap();
        let mut options = file;
        options.update_from([
            "wsgrpc-bridge",
            "--max-connections",
            "7",
            "--listen",
            "0.0.0.0:80",
        ]);
        assert_eq!(options.max_connections, Some(7));
        assert_eq!(options.listen, Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(options.idle_timeout, Some(Interval(None)));
        assert_eq!(
            options.ping_interval,
            Some(Interval(Some(Duration::from_secs(15))))
        );
        assert_eq!(options.allowed_origins, ["https://app.example.com"]);
        assert!(matches!(options.source(), Ok(Source::Reflection)));
        let config = options.bridge_config().unwrap();
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.ping_interval, Some(Duration::from_secs(15)));
        assert_eq!(config.allowed_origins, ["https://app.example.com"]);
        assert_eq!(config.drain_timeout, BridgeConfig::default().drain_timeout);
        assert!(options.builder().is_ok());
    }

    /// Every setting of the bridge is a flag and a key of the file, whose
    /// help says the default that `BridgeConfig` has; and every flag that
    /// is not the binary's own is a setting of the bridge.
    #[test]
    fn every_bridge_setting_is_an_option_with_its_true_default() {
        use clap::CommandFactory;
        let defaults = serde_json::to_value(BridgeConfig::default()).unwrap();
        let defaults = defaults.as_object().unwrap();
        let command = Options::command();
        for (key, default) in defaults {
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == key.as_str() && arg.get_long().is_some())
                .unwrap_or_else(|| panic!("BridgeConfig::{key} has no flag"));
            let flag = arg.get_long().unwrap_or_default();
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            if matches!(default, serde_json::Value::Array(list) if list.is_empty()) {
                continue;
            }
            let said = help
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(said, _)| said)
                .unwrap_or_else(|| panic!("--{flag}'s help says no default: {help}"));
            // Read as the file would read it: a number or a bool, else text.
            let value = serde_json::from_str(said)
                .unwrap_or_else(|_| serde_json::Value::String(said.to_owned()));
            let read: BridgeConfig = serde_json::from_value(serde_json::json!({ key: value }))
                .unwrap_or_else(|err| panic!("--{flag}'s default `{said}` does not read: {err}"));
            assert_eq!(
                &serde_json::to_value(read).unwrap()[key],
                default,
                "--{flag}'s help says `[default: {said}]`"
            );
        }
        for arg in command.get_arguments() {
            let key = arg.get_id().as_str();
            if arg.get_long().is_some() && !OWN_OPTIONS.contains(&key) {
                assert!(
                    defaults.contains_key(key),
                    "--{key} is neither the binary's own nor a BridgeConfig setting"
                );
            }
        }
    }

    #[test]
    fn worker_threads_picks_the_runtime() {
        use tokio::runtime::RuntimeFlavor;
        let runtime = |args: &[&str]| {
            Options::try_parse_from(["b"].iter().chain(args))
                .unwrap()
                .runtime()
                .unwrap()
        };
        let one = runtime(&["--worker-threads", "1"]);
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let three = runtime(&["--worker-threads", "3"]);
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let default = runtime(&[]);
        assert_eq!(
            default.handle().runtime_flavor(),
            RuntimeFlavor::MultiThread
        );
        assert!(Options::try_parse_from(["b", "--worker-threads", "0"]).is_err());
        assert_eq!(
            parse("worker_threads = 1\n").unwrap().worker_threads,
            std::num::NonZeroUsize::new(1)
        );
    }

    #[test]
    fn one_backend_or_several() {
        let one = parse("backend = \"http://a:1\"\n").unwrap();
        assert_eq!(one.backends().unwrap(), ["http://a:1"]);
        let two = parse("backend = [\"http://a:1\", \"http://b:1\"]\n").unwrap();
        assert_eq!(two.backends().unwrap(), ["http://a:1", "http://b:1"]);
        let flags = Options::try_parse_from(["b", "--backend", "http://a:1, http://b:1"]).unwrap();
        assert_eq!(flags.backends().unwrap(), ["http://a:1", "http://b:1"]);
        assert!(matches!(
            Options::default().backends(),
            Err(Error::NoBackend)
        ));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = parse("max_calls = 10\n").unwrap_err();
        assert!(err.contains("unknown field `max_calls`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = parse("idle_timeout = \"soon\"\n").unwrap_err();
        assert!(
            err.contains("idle_timeout") || err.contains("line 1"),
            "{err}"
        );
        assert!(err.contains("`soon` is not a duration"), "{err}");
    }

    #[test]
    fn exactly_one_source_of_services() {
        let both = Options::try_parse_from(["b", "--reflection", "--descriptor-set", "x.binpb"]);
        assert!(both.is_err());
        let neither = Options::default().source().unwrap_err();
        assert!(matches!(neither, Error::NoSource), "{neither}");
        assert!(
            neither.to_string().contains("--descriptor-set"),
            "{neither}"
        );
        let flag = Options::try_parse_from(["b", "--reflection"]).unwrap();
        assert!(matches!(flag.source(), Ok(Source::Reflection)));
        let off = Options::try_parse_from(["b", "--reflection=false"]).unwrap();
        assert!(off.source().is_err());
    }

    #[test]
    fn tokens_come_from_a_file_without_blank_lines_or_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# who\nalpha\n\n beta \n").unwrap();
        let options = Options {
            token_file: Some(path),
            ..Options::default()
        };
        assert_eq!(options.tokens().unwrap().unwrap(), ["alpha", "beta"]);
    }
}
