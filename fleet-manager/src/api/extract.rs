//! Extractors that turn every malformed request into a precise domain
//! error: JSON bodies (size, media type, syntax, types, with the path of the
//! offending field), path segments and query strings.

use crate::error::Error;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// The operation context of the request, put there by the authentication
/// layer; a handler reached without one answers 401.
#[derive(Debug, Clone)]
pub struct Ctx(pub crate::opctx::OpCtx);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<crate::opctx::OpCtx>()
            .cloned()
            .map(Ctx)
            .ok_or(Error::Unauthorized)
    }
}

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
        let mut value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidInput(format!("malformed JSON: {e}")))?;
        // Every body is a JSON object (serde would also read a struct from
        // an array of its fields' values).
        if !value.is_object() {
            return Err(Error::invalid(
                "invalid body: the request body must be a JSON object",
            ));
        }
        integral_numbers(&mut value);
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let what = if path == "." {
                    format!("invalid body: {inner}")
                } else {
                    format!("invalid value at '{path}': {inner}")
                };
                Error::InvalidInput(what)
            })
    }
}

/// Writes every number with no fractional part as an integer (`95.0` as
/// `95`): JSON Schema's `integer` is any such number, and the document's
/// integer fields take all of them.
fn integral_numbers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                if f >= 0.0 && f < u64::MAX as f64 {
                    *v = Value::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
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

/// The spellings of a boolean query flag: JSON's and Python's (the public
/// client sends `True` and `False`).
pub const FLAG_VALUES: [&str; 4] = ["true", "false", "True", "False"];

/// Reads a boolean query flag spelled as in [`FLAG_VALUES`]. Absent means
/// `false`.
pub fn flag(name: &str, value: Option<&str>) -> Result<bool, Error> {
    match value {
        None | Some("false") | Some("False") => Ok(false),
        Some("true") | Some("True") => Ok(true),
        Some(v) => Err(Error::invalid(format!(
            "query parameter {name} must be true or false, got '{}'",
            v.chars().take(100).collect::<String>().escape_debug()
        ))),
    }
}

/// The document's schema of a boolean query flag: one of [`FLAG_VALUES`].
pub fn flag_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(FLAG_VALUES))
        .build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn integral_floats_read_as_integers() {
        let mut v = serde_json::json!({"a": 95.0, "b": [1.5, -3.0], "c": "x"});
        super::integral_numbers(&mut v);
        assert_eq!(v, serde_json::json!({"a": 95, "b": [1.5, -3], "c": "x"}));
    }

    #[test]
    fn flags_accept_python_spellings() {
        assert!(super::flag("peek", Some("True")).unwrap());
        assert!(!super::flag("peek", Some("False")).unwrap());
        assert!(!super::flag("peek", None).unwrap());
        assert!(super::flag("peek", Some("maybe")).is_err());
        assert!(super::flag("peek", Some("")).is_err());
        assert!(super::flag("peek", Some("1")).is_err());
    }
}
