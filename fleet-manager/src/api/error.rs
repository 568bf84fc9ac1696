//! The one mapping from the domain error to HTTP: status code and
//! `{errorType, message}` body.

use crate::error::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every error response's body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody {
    /// A stable name for the kind of error, e.g. `InvalidInput`.
    pub error_type: String,
    /// What went wrong, for a person.
    pub message: String,
}

pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
        Error::Unauthorized => StatusCode::UNAUTHORIZED,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Stale(_) => StatusCode::PRECONDITION_FAILED,
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        // The request was fine; the operation it asks about ended badly.
        Error::OperationFailed { .. } | Error::OperationAborted => StatusCode::CONFLICT,
        Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        if let Error::Internal { context } = &self {
            tracing::error!("{context}");
        }
        let body = ApiErrorBody {
            error_type: self.error_type().to_string(),
            message: self.message(),
        };
        let note = super::access::ErrorNote(format!("{}: {}", body.error_type, body.message));
        let mut resp = (status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(note);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fleet-manager\""),
            );
        }
        resp
    }
}
