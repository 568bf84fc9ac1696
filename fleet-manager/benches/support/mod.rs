//! What the benchmarks share: percentiles, a PostgreSQL database of their
//! own.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A new PostgreSQL database for one run: (its URL, the admin URL, its
/// name); none when the server is unreachable.
pub async fn pg_database() -> Option<(String, String, String)> {
    use sqlx::Connection;
    let admin = std::env::var("FM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
    let name = format!("fm_bench_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .ok()?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .ok()?;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string())?;
    Some((format!("{base}/{name}"), admin, name))
}

/// Drops the database [`pg_database`] made.
pub async fn pg_drop(admin: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// The fleet size: `FM_BENCH_INSTANCES`, 10,000 by default.
pub fn fleet_size() -> usize {
    std::env::var("FM_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Runs `run(backend, database URL, data dir)` on a fresh SQLite store,
/// then on a fresh PostgreSQL database when one is reachable; the figures
/// of each.
pub async fn on_both_backends<T, F, Fut>(run: F) -> Vec<T>
where
    F: Fn(&'static str, String, PathBuf) -> Fut,
    Fut: Future<Output = T>,
{
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = fleet_manager::store::Store::sqlite_url(dir.path());
    rows.push(run("SQLite", sqlite, dir.path().to_path_buf()).await);
    match pg_database().await {
        Some((url, admin, name)) => {
            let dir = tempfile::tempdir().expect("tempdir");
            rows.push(run("PostgreSQL", url, dir.path().to_path_buf()).await);
            pg_drop(&admin, &name).await;
        }
        None => eprintln!("PostgreSQL unreachable: skipped (set FM_TEST_PG_URL)"),
    }
    rows
}

/// FM's configuration and application on the store at `url` (its data
/// dir `dir`), listening on free ports.
pub async fn open_app(
    url: String,
    dir: PathBuf,
) -> (fleet_manager::config::Config, fleet_manager::app::App) {
    open_app_with(url, dir, |_| {}).await
}

/// [`open_app`] with the configuration adjusted by `tune`.
pub async fn open_app_with(
    url: String,
    dir: PathBuf,
    tune: impl FnOnce(&mut fleet_manager::config::Config),
) -> (fleet_manager::config::Config, fleet_manager::app::App) {
    let args = fleet_manager::config::StoreArgs {
        data_dir: Some(dir),
        database_url: Some(url),
        config: None,
        cloud: None,
    };
    let mut cfg =
        fleet_manager::config::Config::resolve(&args, Some("127.0.0.1:0")).expect("config");
    cfg.lifecycle.agent_listen = "127.0.0.1:0".parse().expect("addr");
    cfg.grpc_listen = "127.0.0.1:0".parse().expect("addr");
    tune(&mut cfg);
    let app = fleet_manager::server::open_app(&cfg)
        .await
        .expect("open app");
    (cfg, app)
}

/// A template and a network for the bench's instances: their ids.
pub async fn template_and_network(app: &fleet_manager::app::App) -> (String, String) {
    let tpl = app
        .template_create(
            "main",
            serde_json::from_value(serde_json::json!({"label": "bench"})).expect("tpl"),
        )
        .await
        .expect("template");
    let net = app
        .network_create(
            "main",
            serde_json::from_value(serde_json::json!({"label": "bench"})).expect("net"),
            true,
        )
        .await
        .expect("network");
    (tpl.id.expect("id"), net.id.expect("id"))
}
