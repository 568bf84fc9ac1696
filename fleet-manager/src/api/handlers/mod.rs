//! REST handlers, one file per resource: parse, call one application
//! method, render. Paths are relative to `/api/public`.

pub mod accounts;
pub mod audit;
pub mod backups;
pub mod fleet;
pub mod futures;
pub mod images;
pub mod instances;
pub mod networks;
pub mod rollouts;
pub mod snapshots;
pub mod templates;
pub mod tenant;

use crate::app::App;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

/// Every endpoint of the API, routed and documented from its handler's
/// `#[utoipa::path]` alone.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(tenant::routes())
        .merge(accounts::routes())
        .merge(networks::routes())
        .merge(templates::routes())
        .merge(instances::routes())
        .merge(snapshots::routes())
        .merge(backups::routes())
        .merge(images::routes())
        .merge(futures::routes())
        .merge(rollouts::routes())
        .merge(fleet::routes())
        .merge(audit::routes())
}

/// A response whose body is JSON already serialized (stored documents).
pub struct RawJson(pub String);

impl IntoResponse for RawJson {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}
