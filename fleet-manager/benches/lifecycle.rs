//! Benchmark of the lifecycle on the `local` cloud with the real agent and
//! the stand-in node: time from `reprovision` to a healthy node, command
//! round trips FM → agent → FM, and the agent's idle RSS and CPU at the
//! default heartbeat (10 s).
//!
//! Run with `cargo build --workspace --release && cargo bench -p fleet-manager --bench lifecycle`.
//! `FM_BENCH_IDLE_SECS` sets the idle measurement window (default 60).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use fleet_manager::config::{Config, StoreArgs, sibling_binary};
use fleet_manager::server;
use fm_proto::agent::{Command, Ping, command};
use std::time::{Duration, Instant};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// (RSS in KiB, CPU ticks of the process and of its reaped children) of a
/// process: the agent's `dss status` checks count too.
fn proc_sample(pid: u64) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (rss, ticks)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let idle_secs: u64 = std::env::var("FM_BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().expect("tempdir");
    let args = StoreArgs {
        data_dir: Some(dir.path().to_path_buf()),
        database_url: None,
        config: None,
        cloud: None,
    };
    let mut cfg = Config::resolve(&args, Some("127.0.0.1:0")).expect("config");
    cfg.lifecycle.agent_listen = "127.0.0.1:0".parse().expect("addr");
    cfg.grpc_listen = "127.0.0.1:0".parse().expect("addr");
    cfg.lifecycle.port_base = 27000;
    cfg.future_wait = Duration::ZERO;
    assert!(
        sibling_binary("fm-agent").exists(),
        "build the workspace first"
    );
    let app = server::open_app(&cfg).await.expect("app");
    let running = server::start(app.clone(), &cfg).await.expect("start");
    let tpl = app
        .template_create(
            "main",
            serde_json::from_value(serde_json::json!({"label": "b"})).expect("t"),
        )
        .await
        .expect("tpl");
    let net = app
        .network_create(
            "main",
            serde_json::from_value(serde_json::json!({"label": "b"})).expect("n"),
            true,
        )
        .await
        .expect("net");
    let inst: fleet_manager::model::instance::Instance = serde_json::from_value(serde_json::json!({
        "label": "bench", "instanceSettingsTemplateId": tpl.id, "virtualNetworkId": net.id, "imageId": "dss-14.2.0-default"
    }))
    .expect("inst");
    let doc: serde_json::Value =
        serde_json::from_str(&app.instance_create("main", inst).await.expect("create"))
            .expect("doc");
    let id = doc["id"].as_str().expect("id").to_string();

    let mut provisions = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let f = app
            .instance_reprovision(
                &fleet_manager::opctx::OpCtx::system("bench"),
                "main",
                &id,
                false,
                None,
            )
            .await
            .expect("reprovision");
        let done = app
            .engine
            .wait("main", &f.job_id, Duration::from_secs(300))
            .await
            .expect("wait");
        assert_eq!(done.state, "done", "{:?}", done.error_message);
        provisions.push(t.elapsed());
    }

    let hub = &app.engine.services().hub;
    let mut rtts = vec![];
    for i in 0..1000 {
        let cmd = Command {
            command_id: format!("bench-ping-{i}"),
            kind: Some(command::Kind::Ping(Ping {})),
            timeout_secs: 10,
        };
        let t = Instant::now();
        hub.run_ok(&id, cmd, None, Duration::from_secs(10))
            .await
            .expect("ping");
        rtts.push(t.elapsed());
    }
    rtts.sort();

    let vms = dir.path().join("local-cloud").join("vms");
    let vm = std::fs::read_dir(&vms)
        .expect("vms")
        .flatten()
        .next()
        .expect("a vm");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vm.path().join("vm.json")).expect("vm.json"))
            .expect("json");
    let pid = rec["pid"].as_u64().expect("pid");
    let (_, t0) = proc_sample(pid);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let (rss, t1) = proc_sample(pid);
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (t1 - t0) as f64 / hz / start.elapsed().as_secs_f64() * 100.0;

    let f = app
        .instance_action(
            &fleet_manager::opctx::OpCtx::system("bench"),
            "main",
            &id,
            fleet_manager::app::Action::Deprovision,
        )
        .await
        .expect("deprovision");
    app.engine
        .wait("main", &f.job_id, Duration::from_secs(60))
        .await
        .expect("wait");
    running.stop().await;

    println!("\nlocal cloud, stand-in node 14.2.0, one instance\n");
    println!("| figure | value |");
    println!("|---|---|");
    for (i, d) in provisions.iter().enumerate() {
        let what = if i == 0 {
            "first provision"
        } else {
            "reprovision (new VM, kept volume)"
        };
        println!("| {what} → healthy node | {:.2} s |", d.as_secs_f64());
    }
    println!(
        "| command round trip (Ping) p50 | {} |",
        ms(pct(&rtts, 0.5))
    );
    println!(
        "| command round trip (Ping) p99 | {} |",
        ms(pct(&rtts, 0.99))
    );
    println!("| agent idle RSS | {:.1} MiB |", rss as f64 / 1024.0);
    println!(
        "| agent idle CPU over {idle_secs} s (10 s heartbeat, node running, its checks included) | {cpu:.3} % of a core |"
    );
}
