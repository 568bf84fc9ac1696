//! The REST surface: routes, authentication, and the JSON error contract.
//! Handlers are thin; all rules live in [`crate::app`].

pub mod error;
pub mod extract;
pub mod handlers;
pub mod openapi;
pub mod path;

use crate::app::App;
use crate::error::Error;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use extract::BodyLimit;
use handlers as h;

/// The whole HTTP application.
pub fn router(app: App, body_limit: usize) -> Router {
    let tenant = Router::new()
        .route(
            "/cloud-credentials",
            get(h::tenant::cloud_credentials_get).put(h::tenant::cloud_credentials_put),
        )
        .route(
            "/cloud-tags",
            get(h::tenant::cloud_tags_get).put(h::tenant::cloud_tags_put),
        )
        .route(
            "/cloud-accounts",
            get(h::accounts::account_list).post(h::accounts::account_create),
        )
        .route(
            "/cloud-accounts/{accountId}",
            get(h::accounts::account_get)
                .put(h::accounts::account_update)
                .delete(h::accounts::account_delete),
        )
        .route(
            "/virtual-networks",
            get(h::networks::network_list).post(h::networks::network_create),
        )
        .route(
            "/virtual-networks/{networkId}",
            get(h::networks::network_get)
                .put(h::networks::network_update)
                .delete(h::networks::network_delete),
        )
        .route(
            "/instance-settings-templates",
            get(h::templates::template_list).post(h::templates::template_create),
        )
        .route(
            "/instance-settings-templates/{templateId}",
            get(h::templates::template_get)
                .put(h::templates::template_update)
                .delete(h::templates::template_delete),
        )
        .route(
            "/instances",
            get(h::instances::instance_list).post(h::instances::instance_create),
        )
        .route(
            "/instances/{instanceId}",
            get(h::instances::instance_get).put(h::instances::instance_update),
        )
        .route(
            "/instances/{instanceId}/actions/delete",
            get(h::instances::instance_delete),
        )
        .route(
            "/instances/{instanceId}/actions/reprovision",
            get(h::instances::instance_reprovision),
        )
        .route(
            "/instances/{instanceId}/actions/deprovision",
            get(h::instances::instance_deprovision),
        )
        .route(
            "/instances/{instanceId}/actions/start",
            get(h::instances::instance_start),
        )
        .route(
            "/instances/{instanceId}/actions/stop",
            get(h::instances::instance_stop),
        )
        .route(
            "/instances/{instanceId}/actions/restart-dss",
            get(h::instances::instance_restart_node),
        )
        .route(
            "/instances/{instanceId}/actions/replay-setup-actions",
            get(h::instances::instance_replay_setup),
        )
        .route(
            "/instances/{instanceId}/actions/get-initial-password",
            get(h::instances::instance_initial_password),
        )
        .route(
            "/instances/{instanceId}/actions/reset-user-password",
            axum::routing::post(h::instances::instance_reset_password),
        )
        .route(
            "/instances/{instanceId}/status",
            get(h::instances::instance_status),
        )
        .route(
            "/instances/{instanceId}/admin-api-key",
            get(h::instances::instance_admin_api_key),
        )
        .route(
            "/instances/{instanceId}/snapshots",
            get(h::snapshots::snapshot_list).post(h::snapshots::snapshot_create),
        )
        .route(
            "/instances/{instanceId}/snapshots/{snapshotId}",
            get(h::snapshots::snapshot_get).delete(h::snapshots::snapshot_delete),
        )
        .route(
            "/instances/{instanceId}/snapshots/{snapshotId}/reprovision",
            axum::routing::post(h::snapshots::snapshot_reprovision),
        )
        .route(
            "/instances/{instanceId}/backups",
            get(h::backups::backup_list).post(h::backups::backup_take),
        )
        .route(
            "/instances/{instanceId}/backups/{backupId}",
            get(h::backups::backup_get).delete(h::backups::backup_delete),
        )
        .route(
            "/instances/{instanceId}/backups/{backupId}/restore",
            axum::routing::post(h::backups::backup_restore),
        )
        .route(
            "/instances/{instanceId}/backups/{backupId}/verify",
            axum::routing::post(h::backups::backup_verify),
        )
        .route(
            "/instances/{instanceId}/backups/{backupId}/clone",
            axum::routing::post(h::backups::backup_clone),
        )
        .route("/images", get(h::images::image_list))
        .route("/futures", get(h::futures::future_list))
        .route(
            "/futures/{jobId}",
            get(h::futures::future_get).delete(h::futures::future_abort),
        );

    let public = Router::new()
        .nest("/tenants/{tenantId}", tenant)
        .route("/openapi.json", get(openapi_json));

    Router::new()
        .nest("/api/public", public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

async fn openapi_json() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], openapi::document())
}

async fn not_found() -> Error {
    Error::invalid_path()
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
}

/// Every request needs HTTP Basic with an API key id and secret; nothing is
/// readable without one, not even which paths exist.
async fn authenticate(State(app): State<App>, req: Request, next: Next) -> Response {
    let creds = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((id, secret)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
        return Error::Unauthorized.into_response();
    };
    match app.authenticate(id, secret).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// One line per request: method, path, status, latency. Never headers or
/// bodies, so credentials and secrets never reach the log.
async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), micros = start.elapsed().as_micros() as u64, "request");
    resp
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
