//! A shared-secret [`Authenticator`] for the example bridge.
//!
//! Every socket must present the one token the bridge was started with; a
//! socket that does is the user [`DEMO_USER`], which the bridge forwards to
//! the backend as the [`USER_ID_KEY`] metadata on every call. A real
//! deployment would verify a signed per-user token (a JWT, a session cookie)
//! here instead, and name the user it was issued to.

use wsgrpc_runtime::{Metadata, TokenAuth};

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

/// The example's authenticator: every socket must present `secret`, from
/// (in this order) an `Authorization: Bearer` header, the `token` query
/// parameter or the `wsgrpc_token` cookie, and is then the user
/// [`DEMO_USER`]. An empty secret accepts nothing.
pub fn token_auth(secret: impl Into<String>) -> TokenAuth {
    TokenAuth::new([secret.into()])
        .query_param(TOKEN_QUERY_PARAM)
        .cookie(TOKEN_COOKIE)
        .identity(Metadata::from([(
            USER_ID_KEY.to_owned(),
            DEMO_USER.to_owned(),
        )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, Uri, header};
    use wsgrpc_runtime::{Authenticator, UpgradeRequest};

    fn authenticate(uri: &str, headers: &[(header::HeaderName, &str)]) -> Result<Metadata, String> {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value.parse().unwrap());
        }
        token_auth("s3cret")
            .authenticate(&UpgradeRequest {
                headers: &map,
                uri: &uri,
            })
            .map_err(|status| status.message().to_owned())
    }

    #[test]
    fn the_page_sends_the_token_in_the_query_or_a_cookie() {
        let demo = Metadata::from([(USER_ID_KEY.to_owned(), DEMO_USER.to_owned())]);
        assert_eq!(authenticate("/ws?token=s3cret", &[]), Ok(demo.clone()));
        assert_eq!(
            authenticate(
                "/ws",
                &[(header::COOKIE, "theme=dark; wsgrpc_token=s3cret")]
            ),
            Ok(demo)
        );
        assert_eq!(
            authenticate("/ws?token=guess", &[]),
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
        assert!(token_auth("").authenticate(&request).is_err());
    }
}
