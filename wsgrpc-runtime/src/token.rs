//! The ready [`Authenticator`] for shared secret tokens.

use std::fmt;

use subtle::ConstantTimeEq;

use tonic::Status;

use crate::access::{Authenticator, UpgradeRequest};
use crate::metadata::Metadata;

/// Lets in the sockets that present one of a list of secret tokens, from
/// (in this order) an `Authorization: Bearer` header, a query parameter
/// (default `access_token`; browsers cannot set headers on a WebSocket) or
/// a cookie (default `wsgrpc_token`).
///
/// Tokens are compared in constant time, each of them, so that timing a
/// guess tells nothing of how much of it was right. Several tokens let one
/// be rotated without a moment where neither works.
///
/// ```
/// # use wsgrpc_runtime::{Metadata, TokenAuth};
/// let auth = TokenAuth::new(["s3cret"])
///     .query_param("token")
///     .identity(Metadata::from([("x-user-id".into(), "demo".into())]));
/// ```
#[derive(Clone)]
pub struct TokenAuth {
    tokens: Vec<Vec<u8>>,
    query_param: String,
    cookie: String,
    identity: Metadata,
}

impl TokenAuth {
    /// Accepts any of `tokens`; an empty token is dropped, as an empty
    /// token counts as none.
    pub fn new<T: Into<String>>(tokens: impl IntoIterator<Item = T>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|token| token.into().into_bytes())
                .filter(|token| !token.is_empty())
                .collect(),
            query_param: "access_token".to_owned(),
            cookie: "wsgrpc_token".to_owned(),
            identity: Metadata::new(),
        }
    }

    /// The query parameter that may carry the token; default `access_token`.
    pub fn query_param(mut self, name: impl Into<String>) -> Self {
        self.query_param = name.into();
        self
    }

    /// The cookie that may carry the token; default `wsgrpc_token`.
    pub fn cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = name.into();
        self
    }

    /// The identity of every socket that presents a token, which the
    /// bridge sends to the backend with each of its calls (and which
    /// clients may then not set themselves); default none. Every socket
    /// with a token is then the same identity, and they count together
    /// against `max_connections_per_identity`.
    pub fn identity(mut self, identity: Metadata) -> Self {
        self.identity = identity;
        self
    }

    fn is_valid(&self, presented: &[u8]) -> bool {
        // Every token is compared, whether an earlier one matched or not.
        let matched = self
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |matched, token| {
                matched | token.as_slice().ct_eq(presented)
            });
        matched.into()
    }
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The tokens stay out of logs.
        f.debug_struct("TokenAuth")
            .field("tokens", &self.tokens.len())
            .field("query_param", &self.query_param)
            .field("cookie", &self.cookie)
            .field("identity", &self.identity)
            .finish()
    }
}

impl Authenticator for TokenAuth {
    fn authenticate(&self, request: &UpgradeRequest<'_>) -> Result<Metadata, Status> {
        let presented = request
            .bearer_token()
            .map(str::to_owned)
            .or_else(|| request.query(&self.query_param))
            .or_else(|| request.cookie(&self.cookie).map(str::to_owned))
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(format!(
                    "missing token: send `Authorization: Bearer <token>`, \
                     the `{}` query parameter or the `{}` cookie",
                    self.query_param, self.cookie
                ))
            })?;
        if self.is_valid(presented.as_bytes()) {
            Ok(self.identity.clone())
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Uri, header};

    fn authenticate(
        auth: &TokenAuth,
        uri: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> Result<Metadata, String> {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name, value.parse().unwrap());
        }
        // The message is what a refused client reads; the code is always
        // UNAUTHENTICATED (HTTP 401).
        auth.authenticate(&UpgradeRequest {
            headers: &map,
            uri: &uri,
        })
        .map_err(|status| {
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            status.message().to_owned()
        })
    }

    #[test]
    fn accepts_a_token_from_header_query_or_cookie() {
        let identity = Metadata::from([("x-user-id".to_owned(), "demo".to_owned())]);
        let auth = TokenAuth::new(["s3cret"]).identity(identity.clone());
        let bearer = [(header::AUTHORIZATION, "Bearer s3cret")];
        assert_eq!(authenticate(&auth, "/ws", &bearer), Ok(identity.clone()));
        assert_eq!(
            authenticate(&auth, "/ws?access_token=s3cret", &[]),
            Ok(identity.clone())
        );
        let cookie = [(header::COOKIE, "theme=dark; wsgrpc_token=s3cret")];
        assert_eq!(authenticate(&auth, "/ws", &cookie), Ok(identity));
        let renamed = TokenAuth::new(["s3cret"]).query_param("token").cookie("t");
        assert!(authenticate(&renamed, "/ws?token=s3cret", &[]).is_ok());
        assert!(authenticate(&renamed, "/ws?access_token=s3cret", &[]).is_err());
        assert!(authenticate(&renamed, "/ws", &[(header::COOKIE, "t=s3cret")]).is_ok());
    }

    #[test]
    fn any_of_several_tokens_and_nothing_else() {
        let auth = TokenAuth::new(["old", "new"]);
        assert!(authenticate(&auth, "/ws?access_token=old", &[]).is_ok());
        assert!(authenticate(&auth, "/ws?access_token=new", &[]).is_ok());
        for wrong in ["ol", "oldx", "OLD", "new%20", "x"] {
            let uri = format!("/ws?access_token={wrong}");
            assert_eq!(authenticate(&auth, &uri, &[]), Err("invalid token".into()));
        }
        // The header wins: a right token further down does not rescue it.
        let guess = [(header::AUTHORIZATION, "Bearer guess")];
        assert!(authenticate(&auth, "/ws?access_token=new", &guess).is_err());
    }

    #[test]
    fn an_empty_token_is_no_token() {
        let missing = authenticate(&TokenAuth::new(["s3cret"]), "/ws?access_token=", &[]);
        assert!(missing.unwrap_err().starts_with("missing token"));
        let none = TokenAuth::new([""]);
        assert!(authenticate(&none, "/ws?access_token=", &[]).is_err());
        assert!(authenticate(&none, "/ws?access_token=x", &[]).is_err());
    }

    #[test]
    fn debug_shows_no_token() {
        let shown = format!("{:?}", TokenAuth::new(["s3cret"]));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
