//! Benchmark of the public API's hot reads: `GET /instances/{id}` and
//! listing 10,000 instances, on SQLite and on PostgreSQL.
//!
//! Run with `cargo bench -p fleet-manager --bench api`. PostgreSQL is taken
//! from `FM_TEST_PG_URL` (default `postgres://postgres:postgres@127.0.0.1:5432/postgres`)
//! and skipped with a note when unreachable. `FM_BENCH_INSTANCES` changes the
//! fleet size (default 10000).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use fleet_manager::config::{Config, StoreArgs};
use fleet_manager::model::instance::Instance;
use fleet_manager::server;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Figures {
    backend: &'static str,
    get_p50: Duration,
    get_p99: Duration,
    list_p50: Duration,
    list_p99: Duration,
    list_bytes: usize,
    seed: Duration,
}

async fn run(backend: &'static str, url: String, dir: &std::path::Path, n: usize) -> Figures {
    let args = StoreArgs {
        data_dir: Some(dir.to_path_buf()),
        database_url: Some(url),
        config: None,
        cloud: None,
    };
    let mut cfg = Config::resolve(&args, Some("127.0.0.1:0")).expect("config");
    cfg.lifecycle.agent_listen = "127.0.0.1:0".parse().expect("addr");
    let app = server::open_app(&cfg).await.expect("open app");
    let key = app.api_key_create(None).await.expect("key");
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
    let (tpl, net) = (tpl.id.expect("id"), net.id.expect("id"));
    let seed_start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let inst: Instance = serde_json::from_value(serde_json::json!({
            "label": format!("node-{i}"), "instanceSettingsTemplateId": tpl, "virtualNetworkId": net,
            "imageId": "dss-14.2.0-default", "dssNodeType": "design", "cloudInstanceType": "m5.2xlarge",
            "dataVolumeType": "gp3", "dataVolumeSizeGB": 100, "dataVolumeSizeMaxGB": 500,
            "cloudTags": {"team": "data", "env": "prod"}, "fmTags": ["bench"],
        }))
        .expect("instance");
        let doc = app.instance_create("main", inst).await.expect("create");
        let v: serde_json::Value = serde_json::from_str(&doc).expect("doc");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let seed = seed_start.elapsed();
    let running = server::start(app, &cfg).await.expect("start");
    let base = format!("http://{}/api/public/tenants/main", running.addr);
    let http = reqwest::Client::new();
    let get = |path: String| {
        let req = http.get(path).basic_auth(&key.id, Some(&key.secret));
        async move {
            let t = Instant::now();
            let r = req.send().await.expect("send");
            assert!(r.status().is_success(), "{}", r.status());
            let body = r.bytes().await.expect("body");
            (t.elapsed(), body.len())
        }
    };
    // Warm up, then measure.
    for id in ids.iter().take(200) {
        get(format!("{base}/instances/{id}")).await;
    }
    let mut gets = Vec::new();
    for i in 0..5000 {
        gets.push(
            get(format!("{base}/instances/{}", ids[(i * 7919) % ids.len()]))
                .await
                .0,
        );
    }
    gets.sort();
    get(format!("{base}/instances")).await;
    let mut lists = Vec::new();
    let mut list_bytes = 0;
    for _ in 0..100 {
        let (d, len) = get(format!("{base}/instances")).await;
        lists.push(d);
        list_bytes = len;
    }
    lists.sort();
    running.stop().await;
    Figures {
        backend,
        get_p50: percentile(&gets, 0.5),
        get_p99: percentile(&gets, 0.99),
        list_p50: percentile(&lists, 0.5),
        list_p99: percentile(&lists, 0.99),
        list_bytes,
        seed,
    }
}

async fn pg_database() -> Option<(String, String, String)> {
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

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n: usize = std::env::var("FM_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = fleet_manager::store::Store::sqlite_url(dir.path());
    rows.push(run("SQLite", sqlite, dir.path(), n).await);
    match pg_database().await {
        Some((url, admin, name)) => {
            let dir = tempfile::tempdir().expect("tempdir");
            rows.push(run("PostgreSQL", url, dir.path(), n).await);
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
        None => eprintln!("PostgreSQL unreachable: skipped (set FM_TEST_PG_URL)"),
    }
    println!(
        "\n{n} instances; 5000 GETs of one instance, 100 lists of all, one client, keep-alive\n"
    );
    println!(
        "| backend | GET /instances/{{id}} p50 | p99 | list {n} p50 | p99 | list size | seeding |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} MB | {:.1} s |",
            f.backend,
            ms(f.get_p50),
            ms(f.get_p99),
            ms(f.list_p50),
            ms(f.list_p99),
            f.list_bytes as f64 / 1e6,
            f.seed.as_secs_f64()
        );
    }
}
