//! Who may open a socket and make calls: the origins allowed to upgrade, and
//! the hooks that authenticate a socket and authorize its calls.

use std::fmt;

use http::{HeaderMap, StatusCode, Uri, header};
use tonic::{Code, Status};

use crate::metadata::Metadata;

/// Which pages may open a socket.
///
/// Browsers send the page's origin with every WebSocket upgrade but, unlike
/// `fetch`, do not enforce CORS on it: checking it is the only defence
/// against a foreign page opening a socket with the user's cookies.
///
/// Other ways to allow origins may come (patterns, say), so a `match` on it
/// outside this crate needs a `_` arm.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
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
    /// Whether the upgrade's `Origin` may open a socket. A page of the
    /// bridge's own origin must also be served under a host name in
    /// `hosts` (see [`is_allowed_host`]).
    pub(crate) fn allows(&self, headers: &HeaderMap, hosts: &[String]) -> bool {
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
                matches!((origin_host, host), (Some(a), Some(b))
                    if a.eq_ignore_ascii_case(b) && is_allowed_host(b, hosts))
            }
        }
    }
}

/// Whether a page served under `host` (a `Host` header: name and port)
/// counts as the bridge's own origin.
///
/// `Host` is the name the browser looked up, and a page and a socket with
/// the same name are the same origin to it, even when an attacker's DNS
/// answers that name with the bridge's address (DNS rebinding: a page of
/// `evil.example` re-resolves its name to `127.0.0.1` or a private address
/// and opens a socket with the user's network position). So a host name
/// is trusted only if the bridge was told it (`hosts`, entries like
/// `app.example.com`, or `.example.com` for it and every subdomain), or if
/// no DNS is involved: an IP address, `localhost` and `*.localhost`.
pub(crate) fn is_allowed_host(host: &str, hosts: &[String]) -> bool {
    let name = host_name(host);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    hosts.iter().any(|allowed| {
        let allowed = allowed.trim_end_matches('.').to_ascii_lowercase();
        match allowed.strip_prefix('.') {
            Some(domain) => name == domain || name.ends_with(&allowed),
            None => name == allowed,
        }
    })
}

/// The name of a `Host` header, without its port or IPv6 brackets.
fn host_name(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
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
    /// refuses the upgrade with the status's message and the HTTP status
    /// that google.rpc.Code gives its code: 401 for `UNAUTHENTICATED`, 403
    /// for `PERMISSION_DENIED`, 503 for `UNAVAILABLE` (an identity provider
    /// out of reach, say, which a client may retry). A fresh token sent in
    /// band is refused with the status itself.
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, Status>;

    /// When what `authenticate` accepted in `request` runs out (a signed
    /// token's `exp`), if it does. Before then the bridge asks a v2 client
    /// for a fresh token, which it checks with `authenticate` as if it came
    /// in `Authorization: Bearer`; at that time, without one, the socket's
    /// calls end with `UNAUTHENTICATED` and the socket closes. By default
    /// nothing runs out.
    fn expires(&self, request: &UpgradeRequest<'_>) -> Option<std::time::SystemTime> {
        let _ = request;
        None
    }

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
    /// The request's headers, where a token may be (`Authorization`,
    /// `Cookie`).
    pub headers: &'a HeaderMap,
    /// The request's URI, whose query may carry a token.
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

/// The code of a refusal with `status`: its own, but `UNAUTHENTICATED`
/// for one that says `OK` (a refusal is never a success).
pub(crate) fn refusal_code(status: &Status) -> Code {
    match status.code() {
        Code::Ok => Code::Unauthenticated,
        code => code,
    }
}

/// The HTTP status of an upgrade refused with `status`: the mapping
/// google.rpc.Code documents for each code.
pub(crate) fn http_status_of(status: &Status) -> StatusCode {
    match refusal_code(status) {
        Code::Ok | Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid status code"),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
        let allows = |origin, host| policy.allows(&headers(origin, host), &[]);
        assert!(allows(Some("http://localhost:50052"), "localhost:50052"));
        assert!(allows(None, "localhost:50052"));
        assert!(!allows(Some("https://evil.example"), "localhost:50052"));
        assert!(!allows(Some("http://localhost:3000"), "localhost:50052"));
    }

    #[test]
    fn a_list_adds_origins() {
        let policy = AllowedOrigins::List(vec!["http://localhost:5173".into()]);
        let allows = |origin, host| policy.allows(&headers(Some(origin), host), &[]);
        assert!(allows("http://localhost:5173", "localhost:50052"));
        assert!(allows("http://localhost:50052", "localhost:50052"));
        assert!(!allows("null", "localhost:50052"));
        // Listed origins need no allowed host: the attacker's page cannot
        // take a listed origin's name.
        assert!(allows("http://localhost:5173", "app.example.com"));
    }

    #[test]
    fn a_refused_upgrade_answers_with_the_http_status_of_its_code() {
        let http = |code| http_status_of(&Status::new(code, "no")).as_u16();
        assert_eq!(http(Code::Unauthenticated), 401);
        assert_eq!(http(Code::PermissionDenied), 403);
        assert_eq!(http(Code::Unavailable), 503);
        assert_eq!(http(Code::ResourceExhausted), 429);
        assert_eq!(http(Code::Internal), 500);
        // A refusal is never a success, whatever its code says.
        assert_eq!(http(Code::Ok), 401);
    }

    #[test]
    fn a_rebound_name_is_not_the_same_origin() {
        let policy = AllowedOrigins::SameOrigin;
        let hosts = ["app.example.com".to_owned(), ".corp.example".to_owned()];
        let allows = |origin, host| policy.allows(&headers(Some(origin), host), &hosts);
        assert!(!allows("http://evil.com", "evil.com"));
        assert!(!allows("http://evil.com:50052", "evil.com:50052"));
        assert!(allows("https://app.example.com", "app.example.com"));
        assert!(allows("https://APP.example.com", "app.EXAMPLE.com"));
        assert!(allows("https://a.corp.example", "a.corp.example"));
        assert!(allows("https://corp.example", "corp.example"));
        assert!(!allows("https://evilcorp.example", "evilcorp.example"));
        assert!(allows("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(allows("http://[::1]:8080", "[::1]:8080"));
        assert!(allows("http://app.localhost:8080", "app.localhost:8080"));
        assert!(!allows("http://localhost.evil.com", "localhost.evil.com"));
    }
}
