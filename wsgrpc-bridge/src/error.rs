//! Why the bridge did not start, as a type a program that embeds it can
//! match on.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use wsgrpc_runtime::BuildError;

use crate::descriptors::LoadError;

/// Why the bridge did not start: bad options, services that do not load,
/// an address in use.
///
/// Each message says what went wrong in the names of the options; where a
/// library or the system underneath failed, its error is the
/// [`source`](StdError::source). [`report`](Error::report) joins them in
/// one line, as the binary prints it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The file given with `--config` could not be read.
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The file given with `--config` is not TOML of known options.
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What the TOML reader said: the key and line.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Both a descriptor set and reflection were given.
    BothSources,
    /// Neither a descriptor set nor reflection was given.
    NoSource,
    /// No backend was given.
    NoBackend,
    /// The backend is not a URI tonic can dial.
    InvalidBackend {
        /// The URI, as given.
        uri: String,
        /// What tonic said.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The options do not make a valid [`BridgeConfig`](wsgrpc_runtime::BridgeConfig).
    InvalidSettings(Box<dyn StdError + Send + Sync>),
    /// Both a token file and a token variable were given.
    BothTokenSources,
    /// The token file could not be read.
    ReadTokenFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The token variable is not set, or not Unicode.
    TokenEnv {
        /// The variable's name.
        var: String,
        /// Why it could not be read.
        source: std::env::VarError,
    },
    /// The token file or variable holds no token, so every socket would be
    /// refused.
    NoTokens,
    /// The listening address could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why not.
        source: std::io::Error,
    },
    /// The tokio runtime could not be started.
    Runtime(std::io::Error),
    /// The runtime refused the bridge's configuration.
    Build(BuildError),
    /// The services did not load for a reason a restart would not fix.
    Load(LoadError),
    /// Serving failed.
    Serve(std::io::Error),
}

impl Error {
    /// The error and every error under it, joined by `: `, for a reader
    /// that gets one line.
    pub fn report(&self) -> String {
        let mut message = self.to_string();
        let mut source = self.source();
        while let Some(err) = source {
            message.push_str(": ");
            message.push_str(&err.to_string());
            source = err.source();
        }
        message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Errors that say it all themselves.
            Self::Build(err) => err.fmt(f),
            Self::Load(err) => err.fmt(f),
            Self::ReadConfig { path, .. } => write!(f, "cannot read {}", path.display()),
            Self::ParseConfig { path, .. } => {
                write!(f, "{} is not a valid options file", path.display())
            }
            Self::BothSources => {
                f.write_str("give either `descriptor_set` or `reflection`, not both")
            }
            Self::NoSource => f.write_str(
                "no services: give `--descriptor-set FILE` or `--reflection` \
                 (`descriptor_set` or `reflection = true` in the config file)",
            ),
            Self::NoBackend => {
                f.write_str("no backend: give `--backend URI` (`backend` in the config file)")
            }
            Self::InvalidBackend { uri, .. } => write!(f, "backend `{uri}` is not a valid URI"),
            Self::InvalidSettings(_) => f.write_str("invalid bridge settings"),
            Self::BothTokenSources => {
                f.write_str("give either `token_file` or `token_env`, not both")
            }
            Self::ReadTokenFile { path, .. } => {
                write!(f, "cannot read token file {}", path.display())
            }
            Self::TokenEnv { var, .. } => {
                write!(f, "token_env: cannot read the environment variable {var}")
            }
            Self::NoTokens => f.write_str("the token list is empty: every socket would be refused"),
            Self::Listen { addr, .. } => write!(f, "cannot listen on {addr}"),
            Self::Serve(_) => f.write_str("serving failed"),
            Self::Runtime(_) => f.write_str("cannot start the tokio runtime"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Build(err) => err.source(),
            Self::Load(err) => err.source(),
            Self::ReadConfig { source, .. }
            | Self::ReadTokenFile { source, .. }
            | Self::Listen { source, .. }
            | Self::Serve(source)
            | Self::Runtime(source) => Some(source),
            Self::ParseConfig { source, .. }
            | Self::InvalidBackend { source, .. }
            | Self::InvalidSettings(source) => Some(source.as_ref()),
            Self::TokenEnv { source, .. } => Some(source),
            Self::BothSources
            | Self::NoSource
            | Self::NoBackend
            | Self::BothTokenSources
            | Self::NoTokens => None,
        }
    }
}

impl From<BuildError> for Error {
    fn from(err: BuildError) -> Self {
        Self::Build(err)
    }
}

impl From<LoadError> for Error {
    fn from(err: LoadError) -> Self {
        Self::Load(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_can_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
    }

    #[test]
    fn a_report_walks_the_sources() {
        let err = Error::ReadTokenFile {
            path: "/run/tokens".into(),
            source: std::io::Error::other("no such file"),
        };
        assert_eq!(err.to_string(), "cannot read token file /run/tokens");
        assert_eq!(
            err.report(),
            "cannot read token file /run/tokens: no such file"
        );
        assert_eq!(Error::NoBackend.report(), Error::NoBackend.to_string());
    }
}
