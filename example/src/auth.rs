//! A shared-secret [`Authenticator`] for the example bridge.
//!
//! Every socket must present the one token the bridge was started with; a
//! socket that does is the user [`DEMO_USER`], which the bridge forwards to
//! the backend as the [`USER_ID_KEY`] metadata on every call. A real
//! deployment would verify a signed per-user token (a JWT, a session cookie)
//! here instead, and name the user it was issued to.

use subtle::ConstantTimeEq;
use wsgrpc_runtime::envelope::Metadata;
use wsgrpc_runtime::{Authenticator, UpgradeRequest};

/// The metadata key that carries the caller's user id to the backend.
///
/// Behind a bridge with an authenticator only the bridge sets it: a client
/// that sends it in its own call metadata gets `PERMISSION_DENIED`. Without
/// an authenticator any client may set it, so a backend that trusts it must
/// only be reachable through an authenticating bridge.
pub const USER_ID_KEY: &str = "x-user-id";

/// The user id of every socket that presents the shared token.
pub const DEMO_USER: &str = "demo";

/// The query parameter that carries the token; browsers cannot set headers
/// on a WebSocket, so the page uses this.
pub const TOKEN_QUERY_PARAM: &str = "token";

/// The cookie that carries the token.
pub const TOKEN_COOKIE: &str = "wsgrpc_token";

/// Accepts sockets that present one shared secret token, from (in this
/// order) an `Authorization: Bearer` header, the `token` query parameter or
/// the `wsgrpc_token` cookie.
pub struct TokenAuth {
    secret: String,
}

impl std::fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("TokenAuth").finish_non_exhaustive()
    }
}

impl TokenAuth {
    /// An authenticator that accepts `secret`. An empty secret accepts
    /// nothing: an empty token counts as no token.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
        }
    }
}

impl Authenticator for TokenAuth {
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, String> {
        let presented = request
            .bearer_token()
            .map(str::to_owned)
            .or_else(|| request.query(TOKEN_QUERY_PARAM))
            .or_else(|| request.cookie(TOKEN_COOKIE).map(str::to_owned))
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                format!(
                    "missing token: send `Authorization: Bearer <token>`, \
                     the `{TOKEN_QUERY_PARAM}` query parameter or the `{TOKEN_COOKIE}` cookie"
                )
            })?;
        if !constant_time_eq(presented.as_bytes(), self.secret.as_bytes()) {
            return Err("invalid token".to_owned());
        }
        Ok(Metadata::from([(
            USER_ID_KEY.to_owned(),
            DEMO_USER.to_owned(),
        )]))
    }
}

/// Compares two byte strings in time that depends only on their lengths,
/// so that timing a wrong guess tells nothing about how much of it was
/// right. The length itself may leak; it is not the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, Uri, header};

    fn authenticate(uri: &str, headers: &[(header::HeaderName, &str)]) -> Result<Metadata, String> {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value.parse().unwrap());
        }
        TokenAuth::new("s3cret").authenticate(&UpgradeRequest {
            headers: &map,
            uri: &uri,
        })
    }

    #[test]
    fn equal_only_when_every_byte_matches() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"s3cret"));
    }

    #[test]
    fn accepts_the_token_from_header_query_or_cookie() {
        let demo = Metadata::from([(USER_ID_KEY.to_owned(), DEMO_USER.to_owned())]);
        assert_eq!(
            authenticate("/ws", &[(header::AUTHORIZATION, "Bearer s3cret")]),
            Ok(demo.clone())
        );
        assert_eq!(authenticate("/ws?token=s3cret", &[]), Ok(demo.clone()));
        assert_eq!(
            authenticate(
                "/ws",
                &[(header::COOKIE, "theme=dark; wsgrpc_token=s3cret")]
            ),
            Ok(demo)
        );
    }

    #[test]
    fn refuses_a_missing_empty_or_wrong_token() {
        let missing = authenticate("/ws", &[]).unwrap_err();
        assert!(missing.starts_with("missing token"), "{missing}");
        let empty = authenticate("/ws?token=", &[]).unwrap_err();
        assert!(empty.starts_with("missing token"), "{empty}");
        assert_eq!(
            authenticate("/ws?token=guess", &[]),
            Err("invalid token".into())
        );
        // The header wins: a right token further down does not rescue it.
        assert_eq!(
            authenticate(
                "/ws?token=s3cret",
                &[(header::AUTHORIZATION, "Bearer guess")]
            ),
            Err("invalid token".into())
        );
    }

    #[test]
    fn an_empty_secret_accepts_nothing() {
        let uri: Uri = "/ws?token=".parse().unwrap();
        let headers = HeaderMap::new();
        let request = UpgradeRequest {
            headers: &headers,
            uri: &uri,
        };
        assert!(TokenAuth::new("").authenticate(&request).is_err());
    }
}
