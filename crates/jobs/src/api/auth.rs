//! Bearer-token auth, and the check that keeps an unauthenticated server
//! off the network.
//!
//! Tokens are kept as BLAKE3 hashes and a presented token is hashed and
//! compared with every one: `blake3::Hash` equality is constant-time, and
//! hashing first means neither the length nor the content of a token leaks
//! through timing.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, ApiState};

/// The one route that also takes `?access_token=`, because browsers'
/// `EventSource` cannot set headers.
const QUERY_TOKEN_ROUTE: &str = "/v1/events";

/// The accepted tokens, hashed.
#[derive(Debug)]
pub(crate) struct Tokens(Vec<blake3::Hash>);

impl Tokens {
    pub(crate) fn new(tokens: &[String]) -> Self {
        Self(tokens.iter().map(|t| blake3::hash(t.as_bytes())).collect())
    }

    fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        let h = blake3::hash(presented.as_bytes());
        // No early exit: every token is compared.
        self.0.iter().fold(false, |ok, t| ok | (*t == h))
    }
}

/// Lets the request through when no tokens are configured or it carries an
/// accepted one; otherwise 401 with `WWW-Authenticate: Bearer`.
pub(crate) async fn require_token(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.tokens.is_open() {
        return Ok(next.run(req).await);
    }
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let ok = match header_token {
        Some(t) => state.tokens.accepts(t),
        None if req.uri().path() == QUERY_TOKEN_ROUTE => query_token(req.uri())
            .map(|t| state.tokens.accepts(&t))
            .unwrap_or(false),
        None => false,
    };
    if ok {
        Ok(next.run(req).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Q {
        access_token: Option<String>,
    }
    axum::extract::Query::<Q>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.access_token)
}

/// Why the server must not listen where it was asked to.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExposureError {
    /// A non-loopback address without any token.
    #[error(
        "refusing to serve the jobs API on {0} without a token: anyone who can reach it could \
         submit and cancel jobs. Configure a token, listen on 127.0.0.1, or pass --insecure"
    )]
    NoToken(SocketAddr),
    /// An empty token would accept `Authorization: Bearer ` with nothing.
    #[error("token {0} is empty")]
    EmptyToken(usize),
}

/// Checks that serving on `addr` with `tokens` is safe: a non-loopback
/// address needs a token unless `insecure`; no token may be empty.
pub fn check_exposure(
    addr: SocketAddr,
    tokens: &[String],
    insecure: bool,
) -> Result<(), ExposureError> {
    if let Some(i) = tokens.iter().position(|t| t.trim().is_empty()) {
        return Err(ExposureError::EmptyToken(i));
    }
    if tokens.is_empty() && !addr.ip().is_loopback() && !insecure {
        return Err(ExposureError::NoToken(addr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_needs_a_token_off_loopback() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let t = vec!["s3cret".to_owned()];
        assert_eq!(check_exposure(lo, &[], false), Ok(()));
        assert_eq!(check_exposure(lo6, &[], false), Ok(()));
        assert_eq!(
            check_exposure(any, &[], false),
            Err(ExposureError::NoToken(any))
        );
        assert_eq!(check_exposure(any, &[], true), Ok(()));
        assert_eq!(check_exposure(any, &t, false), Ok(()));
        assert_eq!(
            check_exposure(lo, &["a".into(), " ".into()], false),
            Err(ExposureError::EmptyToken(1))
        );
    }

    #[test]
    fn tokens_accept_only_their_own() {
        let t = Tokens::new(&["one".into(), "two".into()]);
        assert!(t.accepts("one"));
        assert!(t.accepts("two"));
        assert!(!t.accepts("three"));
        assert!(!t.accepts(""));
        assert!(!t.accepts("one "));
        assert!(Tokens::new(&[]).is_open());
    }
}
