//! The one body type the gateway passes around, and small constructors.
//!
//! Everything is boxed into [`Body`] so that upstream bodies, cached bytes,
//! fixed responses and errors flow through the same service type.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};

/// Errors carried by bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body of bytes.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Box any body whose error converts into [`BoxError`].
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// A JSON error answer: `{"error":{"code":…,"message":…}}`.
///
/// Cold: a branch that answers an error is laid out away from the request
/// path's usual instructions, which then share fewer cache lines with it.
#[cold]
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
