//! The REST surface: routes, authentication, and the JSON error contract.
//! Handlers are thin; all rules live in [`crate::app`].

pub mod access;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod openapi;
pub mod page;
pub mod path;

use crate::app::App;
use crate::config::Limits;
use crate::error::Error;
use crate::listen::Guarded;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use extract::BodyLimit;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The whole HTTP application: the REST surface under `/api/public`
/// (API keys) and the console (sessions). Everything else answers 404,
/// after the REST guard, so nothing tells which paths exist.
pub fn router(app: App, body_limit: usize) -> Router {
    let (api, doc) = openapi::api();
    let doc = openapi::render(&doc);
    let roles = Arc::new(roles_of(&doc));
    let public = api.route(
        "/openapi.json",
        get(move || async move { ([(CONTENT_TYPE, "application/json")], doc) }),
    );
    let console = crate::console::router(app.clone(), &roles);
    let rest = Router::new()
        .nest("/api/public", public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            (app.clone(), roles),
            access::guard,
        ));
    console
        .merge(rest)
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(middleware::from_fn(access_log))
        .with_state(app)
}

/// The REST surface's role table (the other surfaces ask it too).
pub fn roles() -> access::Roles {
    roles_of(&openapi::render(&openapi::api().1))
}

fn roles_of(doc: &str) -> access::Roles {
    access::Roles::from_doc(&serde_json::from_str(doc).expect("the OpenAPI document is JSON"))
}

async fn not_found() -> Error {
    Error::invalid_path()
}

async fn method_not_allowed() -> Error {
    Error::MethodNotAllowed
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

/// At most `max` requests are handled at once; the next is answered 503
/// with `Retry-After` at once rather than queued. A request that takes
/// longer than `timeout` (a slow body, a stuck handler) is answered 503 too.
async fn overload(
    State(limit): State<(Arc<Semaphore>, Duration)>,
    req: Request,
    next: Next,
) -> Response {
    let (slots, timeout) = limit;
    let Ok(_slot) = slots.try_acquire_owned() else {
        return unavailable("FM is handling too many requests; retry shortly");
    };
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => unavailable(&format!(
            "the request took longer than {} ms",
            timeout.as_millis()
        )),
    }
}

fn unavailable(message: &str) -> Response {
    let body = error::ApiErrorBody {
        error_type: "Unavailable".into(),
        message: message.into(),
    };
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The HTTP application with the request limits of `limits`.
pub fn limited(router: Router, limits: &Limits) -> Router {
    router.layer(middleware::from_fn_with_state(
        (
            Arc::new(Semaphore::new(limits.http_max_in_flight)),
            limits.http_request_timeout,
        ),
        overload,
    ))
}

/// The peer of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves until `shutdown` resolves: HTTP/1.1 with a deadline for each
/// request head (idle keep-alive connections included), connections that
/// close when nothing moves for the idle timeout, and at most
/// `http_max_connections` connections. Connections still open when the
/// task is dropped are cut.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = limited(router, limits);
    let slots = Arc::new(Semaphore::new(limits.http_max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.http_header_timeout)
        .keep_alive(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer, slot) = tokio::select! {
            c = crate::listen::accept(&listener, &slots, "http") => c,
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let io = TokioIo::new(Guarded::new(stream, limits.http_idle_timeout, Some(slot)));
        let router = router.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            let mut router = router.clone();
            async move { tower::Service::call(&mut router, req.map(axum::body::Body::new)).await }
        });
        let conn = http.serve_connection(io, svc);
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}
