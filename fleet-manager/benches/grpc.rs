//! Benchmark of the public gRPC API and of rollouts: `GetInstance` and
//! paging through 10,000 instances with `ListInstances` (one tonic client,
//! one HTTP/2 connection), on SQLite and on PostgreSQL; then the time a
//! rollout adds over its targets' own operations (20 reprovisions on the
//! sim cloud, one at a time, no health watch: the rollout's wall time
//! against the sum of its operations' running times).
//!
//! Run with `cargo bench -p fleet-manager --bench grpc`. `FM_BENCH_INSTANCES`
//! changes the fleet size (default 10000), `FM_TEST_PG_URL` the PostgreSQL
//! server (skipped with a note when unreachable).

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use fleet_manager::model::instance::Instance;
use fleet_manager::model::rollout::RolloutState;
use fleet_manager::opctx::OpCtx;
use fleet_manager::server;
use fm_proto::fleet::instances_client::InstancesClient;
use fm_proto::fleet::{GetInstanceRequest, ListInstancesRequest};
use std::time::{Duration, Instant};
use support::{ms, percentile};
use tonic::metadata::MetadataValue;

mod support;

struct Figures {
    backend: &'static str,
    get_p50: Duration,
    get_p99: Duration,
    list_p50: Duration,
    list_p99: Duration,
}

fn authorized<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {key}")).expect("metadata"),
    );
    r
}

async fn seed(app: &fleet_manager::app::App, n: usize) -> Vec<String> {
    let (tpl, net) = support::template_and_network(app).await;
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
    ids
}

async fn reads(backend: &'static str, url: String, dir: std::path::PathBuf, n: usize) -> Figures {
    let (cfg, app) = support::open_app(url, dir).await;
    let k = app
        .api_key_create("admin", None, None, None)
        .await
        .expect("key");
    let key = format!("{}:{}", k.id, k.secret);
    let ids = seed(&app, n).await;
    let running = server::start(app, &cfg).await.expect("start");
    let mut client = InstancesClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .expect("connect");
    let mut get = async |id: &str| {
        let t = Instant::now();
        let req = GetInstanceRequest {
            tenant: String::new(),
            id: id.to_string(),
        };
        client
            .get_instance(authorized(&key, req))
            .await
            .expect("get");
        t.elapsed()
    };
    for id in ids.iter().take(200) {
        get(id).await;
    }
    let mut gets = Vec::new();
    for i in 0..5000 {
        gets.push(get(&ids[(i * 7919) % ids.len()]).await);
    }
    gets.sort();
    let mut client = InstancesClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .expect("connect");
    let mut list_all = async || {
        let t = Instant::now();
        let (mut token, mut seen) = (String::new(), 0);
        loop {
            let req = ListInstancesRequest {
                tenant: String::new(),
                page_size: 1000,
                page_token: token,
            };
            let page = client
                .list_instances(authorized(&key, req))
                .await
                .expect("list")
                .into_inner();
            seen += page.instances.len();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(seen, n, "every instance listed once");
        t.elapsed()
    };
    list_all().await;
    let mut lists = Vec::new();
    for _ in 0..50 {
        lists.push(list_all().await);
    }
    lists.sort();
    running.stop().await;
    let f = Figures {
        backend,
        get_p50: percentile(&gets, 0.5),
        get_p99: percentile(&gets, 0.99),
        list_p50: percentile(&lists, 0.5),
        list_p99: percentile(&lists, 0.99),
    };
    // As each backend finishes, so a cut-short run still tells something.
    eprintln!(
        "{backend}: GetInstance p50 {} p99 {}; list {n} p50 {} p99 {}",
        ms(f.get_p50),
        ms(f.get_p99),
        ms(f.list_p50),
        ms(f.list_p99)
    );
    f
}

/// A rollout of `targets` reprovisions, one at a time: (its wall time, the
/// sum of its operations' running times).
async fn rollout_overhead(targets: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fleet_manager::store::Store::sqlite_url(dir.path());
    let (cfg, app) = support::open_app_with(url, dir.path().to_path_buf(), |cfg| {
        cfg.cloud.kind = fleet_manager::config::CloudKind::Sim;
        cfg.future_wait = Duration::ZERO;
        // Each step of an operation takes a little while, as a cloud call does.
        cfg.engine.step_delay = Duration::from_millis(20);
    })
    .await;
    let kit = dir.path().join("sim-kit.tar.gz");
    std::fs::write(&kit, b"a simulated node kit").expect("kit");
    for (i, v) in ["13.5.4", "14.2.0"].iter().enumerate() {
        app.image_register(&format!("dss-{v}-default"), v, v, &kit, i as i64)
            .await
            .expect("image");
    }
    let running = server::start(app.clone(), &cfg).await.expect("start");
    let ids = seed(&app, targets).await;
    let ctx = OpCtx::system("bench");
    for id in &ids {
        let f = app
            .instance_reprovision(&ctx, "main", id, false, None)
            .await
            .expect("provision");
        wait_future(&app, &f.job_id).await;
    }
    let spec = serde_json::from_value(serde_json::json!({
        "selector": {"instanceIds": ids}, "action": {"type": "REPROVISION"},
        "maxInFlight": 1, "healthSeconds": 0,
    }))
    .expect("spec");
    let started = Instant::now();
    let r = app
        .rollout_create(&ctx, "main", spec)
        .await
        .expect("rollout");
    let r = loop {
        let r = app.rollout_get("main", &r.id).await.expect("get");
        if r.finished_at.is_some() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = started.elapsed();
    assert_eq!(r.state, RolloutState::Done, "{:?}", r.reason);
    let mut busy = Duration::ZERO;
    for t in r.targets.expect("targets") {
        let op = t.operation_id.expect("operation");
        let f = app.future_get("main", &op, true).await.expect("future");
        busy += Duration::from_millis(f.running_time as u64);
    }
    running.stop().await;
    (wall, busy)
}

async fn wait_future(app: &fleet_manager::app::App, id: &str) {
    loop {
        let f = app.future_get("main", id, true).await.expect("future");
        if !f.alive {
            assert_eq!(f.state, "done", "{:?}", f.error);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() {
    fleet_manager::install_crypto_provider();
    let n = support::fleet_size();
    let rows = support::on_both_backends(|backend, url, dir| reads(backend, url, dir, n)).await;
    println!(
        "\n{n} instances; 5000 GetInstance calls, 50 listings of all ({} pages of 1000), one client, one connection\n",
        n.div_ceil(1000)
    );
    println!("| backend | GetInstance p50 | p99 | list {n} p50 | p99 |");
    println!("|---|---|---|---|---|");
    for f in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            f.backend,
            ms(f.get_p50),
            ms(f.get_p99),
            ms(f.list_p50),
            ms(f.list_p99)
        );
    }
    let targets = 20;
    let (wall, busy) = rollout_overhead(targets).await;
    let extra = wall.saturating_sub(busy);
    println!(
        "\nrollout of {targets} reprovisions on the sim cloud, maxInFlight 1, no health watch: {:.2} s in all, {:.2} s in its operations, {:.2} s added ({:.1} %)",
        wall.as_secs_f64(),
        busy.as_secs_f64(),
        extra.as_secs_f64(),
        extra.as_secs_f64() * 100.0 / busy.as_secs_f64()
    );
}
