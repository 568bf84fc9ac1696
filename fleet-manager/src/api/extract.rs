//! Extractors that turn every malformed request into a precise domain
//! error: JSON bodies (size, media type, syntax, types, with the path of the
//! offending field), path segments and query strings.

use crate::error::Error;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// The largest body accepted, in bytes; set once at start-up.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON body. A missing `Content-Type` is read as JSON (the public Python
/// client sends none); any other media type is refused with 415.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !(essence == "application/json" || essence.ends_with("+json")) {
                return Err(Error::UnsupportedMediaType(ct.chars().take(100).collect()));
            }
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(1 << 20);
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| Error::PayloadTooLarge { limit })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid("a JSON request body is required"));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let what = if inner.is_syntax() || inner.is_eof() {
                    format!("malformed JSON: {inner}")
                } else if path == "." {
                    format!("invalid body: {inner}")
                } else {
                    format!("invalid value at '{path}': {inner}")
                };
                Error::InvalidInput(what)
            })
    }
}

/// Path parameters; a segment that can't be decoded is a 400.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| Error::invalid(format!("invalid path: {}", e.body_text())))
    }
}

/// Query parameters; an unreadable query string is a 400.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| Error::invalid(format!("invalid query string: {}", e.body_text())))
    }
}

/// Reads a boolean query flag the way clients spell it: `true`, `True`,
/// `1`, `yes` (and their opposites). Absent means `false`.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, Error> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v.is_empty() || v == "false" || v == "0" || v == "no" => Ok(false),
        Some(v) if v == "true" || v == "1" || v == "yes" => Ok(true),
        Some(v) => Err(Error::invalid(format!(
            "query parameter {name} must be true or false, got '{v}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_accept_python_spellings() {
        assert!(super::flag("peek", Some("True")).unwrap());
        assert!(!super::flag("peek", Some("False")).unwrap());
        assert!(!super::flag("peek", None).unwrap());
        assert!(super::flag("peek", Some("maybe")).is_err());
    }
}
