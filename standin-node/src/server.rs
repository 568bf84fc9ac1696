//! `standin-node serve`: the HTTP side of the stand-in node (NOT Dataiku
//! DSS). A status page, health and status endpoints, a small key/value
//! store under `values/`, a password check against `config/users.json`, and
//! a debug endpoint that makes the node hang (a test aid).
//!
//! Runs on a current-thread tokio runtime and exits 0 promptly on SIGTERM.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::control::{BIND_ENV, bind_addr};
use crate::datadir::{DataDir, write_atomic};
use crate::error::{Context, Fail, Outcome};
use crate::package::NEVER_HEALTHY;
use crate::users::UsersFile;

/// Largest accepted request body (values and auth checks): 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest accepted value key.
pub const MAX_KEY_LEN: usize = 64;
/// Grace period for in-flight requests after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the node learned at startup, plus the simulated-hang switch.
#[derive(Debug)]
struct NodeState {
    data_dir: PathBuf,
    version: String,
    node_type: String,
    started_at_ms: u64,
    env_variables: BTreeMap<String, String>,
    properties: BTreeMap<String, String>,
    upgrade_history: Vec<String>,
    /// Set by `POST /api/debug/hang`: from then on every request hangs.
    simulated_hang: AtomicBool,
}

type Shared = Arc<NodeState>;

/// True for a value key: `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Runs the node for `data_dir` until SIGTERM/SIGINT.
pub fn serve(data_dir: &Path) -> Outcome<()> {
    let dd = DataDir::new(data_dir)?;
    let node_type = dd.read_version_file()?.node_type;
    let data_version = dd.installed_version()?;
    let version = dd.binary_version()?;
    if data_version > version {
        return Err(Fail::new(format!(
            "this data dir was written by a newer version ({data_version}); this node is {version}"
        )));
    }
    let port = dd.port()?;
    let addr = bind_addr(std::env::var(BIND_ENV).ok().as_deref(), port)?;
    let started_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let state = Arc::new(NodeState {
        data_dir: dd.root().to_path_buf(),
        version: version.as_str().to_string(),
        node_type,
        started_at_ms,
        env_variables: dd.env_site()?,
        properties: dd.dip_properties()?,
        upgrade_history: dd.upgrade_history()?,
        simulated_hang: AtomicBool::new(false),
    });

    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(|| "cannot start the async runtime".to_string())?;
    runtime.block_on(run(state, addr))
}

/// The routes of the stand-in node.
fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/health", get(health))
        .route("/api/status", get(status))
        .route("/api/values/{key}", get(get_value).put(put_value))
        .route("/api/debug/hang", post(debug_simulate_hang))
        .route("/api/auth/check", post(auth_check))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            simulated_hang_gate,
        ))
        .with_state(state)
}

async fn run(state: Shared, addr: SocketAddr) -> Outcome<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        %addr,
        version = %state.version,
        node_type = %state.node_type,
        data_dir = %state.data_dir.display(),
        "stand-in node (not Dataiku DSS) listening"
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future();
    let on_signal = async {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "stand-in node shutting down");
        let _ = stop_tx.send(true);
        // Hung requests never finish: do not wait for them for long.
        if !state.simulated_hang.load(Ordering::SeqCst) {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    tokio::select! {
        result = server => result.context(|| "server error".to_string()),
        () = on_signal => Ok(()),
    }
}

/// Waits for SIGTERM or SIGINT; returns the signal's name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            tracing::warn!("cannot install signal handlers; waiting for ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// After `POST /api/debug/hang`, every request waits forever (simulated hung
/// node, a test aid).
async fn simulated_hang_gate(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if state.simulated_hang.load(Ordering::SeqCst) {
        return std::future::pending::<Response>().await;
    }
    next.run(req).await
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

async fn status_page(State(state): State<Shared>) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>Stand-in node (not Dataiku DSS)</title></head>\n<body>\n\
<h1>Stand-in node (not Dataiku DSS)</h1>\n\
<p>This is the Fleet Manager project's stand-in for the real node software \
(Dataiku DSS, which is proprietary): a small program with the same command-line \
contract, used by the agent and the tests.</p>\n<ul>\n\
<li>Version: {}</li>\n<li>Node type: {}</li>\n<li>Data dir: {}</li>\n</ul>\n\
</body></html>\n",
        html_escape(&state.version),
        html_escape(&state.node_type),
        html_escape(&state.data_dir.to_string_lossy()),
    ))
}

/// Escapes text for HTML element content.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn health(State(state): State<Shared>) -> Response {
    let marker = state.data_dir.join("bin").join(NEVER_HEALTHY);
    let never_healthy = tokio::fs::try_exists(&marker).await.unwrap_or(false);
    if never_healthy {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "unhealthy" })),
        )
            .into_response()
    } else {
        axum::Json(json!({ "status": "ok" })).into_response()
    }
}

async fn status(State(state): State<Shared>) -> Response {
    axum::Json(json!({
        "product": "standin-node",
        "version": state.version,
        "nodeType": state.node_type,
        "dataDir": state.data_dir.to_string_lossy(),
        "startedAtMs": state.started_at_ms,
        "envVariables": state.env_variables,
        "properties": state.properties,
        "upgradeHistory": state.upgrade_history,
    }))
    .into_response()
}

async fn put_value(
    State(state): State<Shared>,
    UrlPath(key): UrlPath<String>,
    body: Bytes,
) -> Response {
    if !is_valid_key(&key) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid key: expected [A-Za-z0-9_-]{1,64}",
        );
    }
    let dir = state.data_dir.join("values");
    let result = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join(&key), &body, 0o644)
    })
    .await;
    match result {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot store value");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store value")
        }
        Err(e) => {
            tracing::error!(error = %e, "value writer task failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store value")
        }
    }
}

async fn get_value(State(state): State<Shared>, UrlPath(key): UrlPath<String>) -> Response {
    if !is_valid_key(&key) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid key: expected [A-Za-z0-9_-]{1,64}",
        );
    }
    match tokio::fs::read(state.data_dir.join("values").join(&key)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            json_error(StatusCode::NOT_FOUND, "no such value")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read value");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read value")
        }
    }
}

/// `POST /api/debug/hang`: answers 200, then makes the node hang (test aid).
async fn debug_simulate_hang(State(state): State<Shared>) -> Response {
    tracing::warn!("simulated hang requested: every further request will hang (test aid)");
    state.simulated_hang.store(true, Ordering::SeqCst);
    axum::Json(json!({ "status": "hanging" })).into_response()
}

#[derive(Deserialize)]
struct AuthCheck {
    login: String,
    password: String,
}

async fn auth_check(State(state): State<Shared>, body: Bytes) -> Response {
    let Ok(check) = serde_json::from_slice::<AuthCheck>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"login\": ..., \"password\": ...}",
        );
    };
    let path = state.data_dir.join("config/users.json");
    let users = match tokio::task::spawn_blocking(move || UsersFile::load(&path)).await {
        Ok(Ok(users)) => users,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot load users");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot load users");
        }
        Err(e) => {
            tracing::error!(error = %e, "user loader task failed");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot load users");
        }
    };
    if users.check(&check.login, &check.password) {
        axum::Json(json!({ "status": "ok", "login": check.login })).into_response()
    } else {
        json_error(StatusCode::UNAUTHORIZED, "invalid login or password")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_word_characters_and_dashes_are_valid() {
        assert!(is_valid_key("a"));
        assert!(is_valid_key("Key_1-x"));
        assert!(is_valid_key(&"k".repeat(64)));
    }

    #[test]
    fn empty_long_or_punctuated_keys_are_invalid() {
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(&"k".repeat(65)));
        for bad in ["a.b", "../x", "a/b", "a b", ".hidden", "é", "a%2Fb"] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn status_page_text_is_html_escaped() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
