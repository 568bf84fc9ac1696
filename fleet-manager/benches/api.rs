//! Benchmark of the public API's hot reads: `GET /instances/{id}` and
//! listing 10,000 instances, on SQLite and on PostgreSQL.
//!
//! Run with `cargo bench -p fleet-manager --bench api`. PostgreSQL is taken
//! from `FM_TEST_PG_URL` (default `postgres://postgres:postgres@127.0.0.1:5432/postgres`)
//! and skipped with a note when unreachable. `FM_BENCH_INSTANCES` changes the
//! fleet size (default 10000).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use fleet_manager::model::instance::Instance;
use fleet_manager::server;
use std::time::{Duration, Instant};
use support::{ms, percentile};

mod support;

struct Figures {
    backend: &'static str,
    get_p50: Duration,
    get_p99: Duration,
    list_p50: Duration,
    list_p99: Duration,
    list_bytes: usize,
    seed: Duration,
}

async fn run(backend: &'static str, url: String, dir: std::path::PathBuf, n: usize) -> Figures {
    let (cfg, app) = support::open_app(url, dir).await;
    let key = app
        .api_key_create("admin", None, None, None)
        .await
        .expect("key");
    let (tpl, net) = support::template_and_network(&app).await;
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

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n = support::fleet_size();
    let rows = support::on_both_backends(|backend, url, dir| run(backend, url, dir, n)).await;
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
