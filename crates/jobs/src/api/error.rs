//! [`ApiError`]: every way a request fails, each with its status and the one
//! JSON body shape `{"error": {"code", "message", "problems"?}}`; and the
//! `ApiJson` and `ApiQuery` extractors, which report bad input through
//! it, naming the line and column or the path that was wrong.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ApiState;
use crate::client::SubmitError;
use crate::store::StoreError;
use crate::validate::Problem;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input: bad JSON syntax, a bad id, a bad query parameter.
    #[error("{0}")]
    BadRequest(String),
    /// JSON of the wrong shape: the message names the path.
    #[error("{0}")]
    Unprocessable(String),
    /// The submission broke rules: every problem, with job index and field.
    #[error("invalid submission")]
    Invalid(Vec<Problem>),
    /// No bearer token, or not an accepted one.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No such job, batch or route.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the resource's state: `code` says how.
    #[error("{message}")]
    Conflict {
        /// A stable, machine-readable reason.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The body is larger than the configured limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The store is closed (the server is stopping).
    #[error("shutting down")]
    Unavailable,
    /// The store failed; the detail is logged, not sent.
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) | Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `code` of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unprocessable(_) => "invalid_body",
            Self::Invalid(_) => "invalid_submission",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict { code, .. } => code,
            Self::TooLarge(_) => "body_too_large",
            Self::Unavailable => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => Self::Unavailable,
            e => Self::Internal(e),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(problems) => Self::Invalid(problems),
            SubmitError::Store(e) => e.into(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<&'a [Problem]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = &self {
            tracing::error!(error = %e, "store failed");
        }
        let message = match &self {
            Self::Invalid(p) => format!(
                "{} problem{} in the submission; nothing was stored",
                p.len(),
                if p.len() == 1 { "" } else { "s" }
            ),
            other => other.to_string(),
        };
        let problems = match &self {
            Self::Invalid(p) => Some(p.as_slice()),
            _ => None,
        };
        let body = json!({ "error": Body { code: self.code(), message, problems } });
        let mut res = (self.status(), axum::Json(body)).into_response();
        if matches!(self, Self::Unauthorized) {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        res
    }
}

/// The fallback for unknown routes.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

/// The fallback for known routes called with another method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A JSON body: syntax errors are 400 with line and column, shape errors 422
/// with the path (`jobs[3].max_attempts`), too large 413.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<ApiState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(ref inner)
                if inner.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::TooLarge(state.config.body_limit)
            }
            e => ApiError::BadRequest(e.body_text()),
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, telling syntax errors (400) from shape errors (422).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let at = if path == "." {
                    "the body".to_owned()
                } else {
                    format!("`{path}`")
                };
                ApiError::Unprocessable(format!("{at}: {inner}"))
            }
            serde_json::error::Category::Eof if bytes.iter().all(u8::is_ascii_whitespace) => {
                ApiError::BadRequest("empty body: expected JSON".into())
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {inner}")),
        }
    })?;
    // Text after the value is as malformed as a missing bracket.
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A query string: unknown or malformed parameters are 400, naming them.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}
