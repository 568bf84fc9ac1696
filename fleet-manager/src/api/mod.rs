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

/// The whole HTTP application.
pub fn router(app: App, body_limit: usize) -> Router {
    let (api, doc) = openapi::api();
    let doc = openapi::render(&doc);
    let public = api.route(
        "/openapi.json",
        get(move || async move { ([(CONTENT_TYPE, "application/json")], doc) }),
    );
    Router::new()
        .nest("/api/public", public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
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
