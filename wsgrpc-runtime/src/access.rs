//! Who may open a socket and make calls: the origins allowed to upgrade, and
//! the hooks that authenticate a socket and authorize its calls.

use std::fmt;

use http::{HeaderMap, Uri, header};
use tonic::Status;

use crate::envelope::Metadata;

/// Which pages may open a socket.
///
/// Browsers send the page's origin with every WebSocket upgrade but, unlike
/// `fetch`, do not enforce CORS on it: checking it is the only defence
/// against a foreign page opening a socket with the user's cookies.
#[derive(Debug, Clone, Default)]
pub enum AllowedOrigins {
    /// Only pages served from the bridge's own host (the default).
    #[default]
    SameOrigin,
    /// The bridge's own host and these origins (`https://app.example.com`).
    List(Vec<String>),
    /// Any page. Only for development, or when the socket carries no ambient
    /// credentials.
    Any,
}

impl AllowedOrigins {
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        // Only browsers send an Origin; other clients cannot be hijacked.
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        match self {
            Self::Any => true,
            Self::List(list)
                if list
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin)) =>
            {
                true
            }
            Self::SameOrigin | Self::List(_) => {
                let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
                let origin_host = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"));
                matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
            }
        }
    }
}

/// Decides who may open a socket and make calls.
///
/// Browsers cannot set headers on a WebSocket, so a token comes in a cookie,
/// in the query string, or (from other clients) in `Authorization`; see the
/// helpers on [`UpgradeRequest`]. The hooks are synchronous: verifying a
/// signed token needs no I/O.
pub trait Authenticator: Send + Sync + 'static {
    /// Runs on the upgrade request, before the socket opens. `Ok` holds the
    /// caller's identity as metadata, which the bridge adds to every call of
    /// the connection (clients may not set those keys themselves); `Err`
    /// refuses the upgrade with HTTP 401 and the message.
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, String>;

    /// Runs before every call with the connection's identity, the method's
    /// full name and the call's metadata; `Err` ends the call with that
    /// status, its details and trailers included (usually `UNAUTHENTICATED`
    /// or `PERMISSION_DENIED`).
    fn authorize_call(
        &self,
        identity: &Metadata,
        method: &str,
        metadata: &Metadata,
    ) -> Result<(), Status> {
        let _ = (identity, method, metadata);
        Ok(())
    }
}

/// The HTTP request that asks to open a socket.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    pub headers: &'a HeaderMap,
    pub uri: &'a Uri,
}

impl UpgradeRequest<'_> {
    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        value.strip_prefix("Bearer ").map(str::trim)
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }
}

impl fmt::Debug for dyn Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    #[test]
    fn same_origin_is_the_default() {
        let policy = AllowedOrigins::default();
        assert!(policy.allows(&headers(Some("http://localhost:50052"), "localhost:50052")));
        assert!(policy.allows(&headers(None, "localhost:50052")));
        assert!(!policy.allows(&headers(Some("https://evil.example"), "localhost:50052")));
        assert!(!policy.allows(&headers(Some("http://localhost:3000"), "localhost:50052")));
    }

    #[test]
    fn a_list_adds_origins() {
        let policy = AllowedOrigins::List(vec!["http://localhost:5173".into()]);
        assert!(policy.allows(&headers(Some("http://localhost:5173"), "localhost:50052")));
        assert!(policy.allows(&headers(Some("http://localhost:50052"), "localhost:50052")));
        assert!(!policy.allows(&headers(Some("null"), "localhost:50052")));
    }
}
