//! Benchmark of provisioning on the `aws` cloud against the EC2 emulator:
//! N instances (data volume created, VM run with its user-data, volume
//! attached) provisioned at once through the provider, with and without
//! injected faults (a share of calls answered `RequestLimitExceeded`, 500,
//! or 500 after the emulator did the work). Reports instances/s and the EC2
//! calls per instance, counted by the rig's proxy. FM's client-side rate
//! limit (EC2's published buckets: RunInstances burst 5, 2/s) bounds the
//! rate, as it would on AWS.
//!
//! Run with `bash scripts/python-venv.sh && cargo bench -p fleet-manager --bench aws`.
//! `FM_BENCH_SIZES` (default `50,200`) and `FM_BENCH_FAULT_RATES` (default `0,0.2`).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use fleet_manager::cloud::aws::{AwsCloud, AwsSettings};
use fleet_manager::cloud::{CloudProvider, Placement, VmSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn run(rig: &common::Ec2Rig, n: usize, fault_rate: f64, round: usize) {
    let env: std::collections::HashMap<String, String> = rig.fm_env().await.into_iter().collect();
    let cloud = Arc::new(AwsCloud::new(AwsSettings {
        endpoint_url: Some(rig.url.clone()),
        amis: [("*".to_string(), "ami-0fa1ca7e5e1f00d00".to_string())].into(),
        owner: format!("bench-{round}"),
        node_host: Some("127.0.0.1".into()),
        node_ports: (20000, 39999),
        max_attempts: 12,
        base_backoff: Duration::from_millis(50),
        ..Default::default()
    }));
    let at = Placement {
        tenant_id: "main".into(),
        auth: fleet_manager::cloud::CloudAuth::Keypair {
            access_key_id: env["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: fleet_manager::cloud::Redacted(env["AWS_SECRET_ACCESS_KEY"].clone()),
        },
        region: common::RIG_REGION.into(),
        network_id: format!("vn-bench-{round}"),
        vpc_id: Some(env["FM_DEFAULT_VPC_ID"].clone()),
        subnet_id: Some(env["FM_DEFAULT_SUBNET_ID"].clone()),
        auto_security_group: true,
        ..Placement::default()
    };
    rig.reset_stats().await;
    rig.set_fault_rate(fault_rate).await;
    let t = Instant::now();
    let mut tasks = vec![];
    for i in 0..n {
        let cloud = cloud.clone();
        let at = Placement {
            instance_id: format!("in-{round}-{i}"),
            label: format!("bench {i}"),
            ..at.clone()
        };
        tasks.push(tokio::spawn(async move {
            let vol = format!("vol-{}", at.instance_id);
            let vm = format!("vm-{}", at.instance_id);
            cloud.ensure_volume(&at, &vol).await?;
            cloud
                .ensure_vm(
                    &at,
                    &VmSpec {
                        vm_id: vm,
                        instance_id: at.instance_id.clone(),
                        volume_id: vol,
                        user_data: "instance_id = \"bench\"\n".into(),
                    },
                )
                .await
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if task.await.expect("task").is_err() {
            failed += 1;
        }
    }
    let took = t.elapsed();
    rig.set_fault_rate(0.0).await;
    let stats = rig.stats().await;
    let total: u64 = stats["calls"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let faults: u64 = stats["faults"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let owned = rig.owned().await;
    let vms = owned["instances"].as_array().unwrap().len();
    println!(
        "N={n:>3} faults={:>3.0}%: {:>6.2} instances/s ({:>6.1} s), {:>5.2} EC2 calls/instance ({faults} faults injected), {vms} VMs for {n} instances, {failed} failed",
        fault_rate * 100.0,
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        total as f64 / n as f64,
    );
    let mut calls: Vec<_> = stats["calls"].as_object().unwrap().iter().collect();
    calls.sort_by_key(|(k, _)| k.to_string());
    println!(
        "        calls: {}",
        calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<usize> = std::env::var("FM_BENCH_SIZES")
        .unwrap_or_else(|_| "50,200".into())
        .split(',')
        .map(|s| s.trim().parse().expect("FM_BENCH_SIZES"))
        .collect();
    let rates: Vec<f64> = std::env::var("FM_BENCH_FAULT_RATES")
        .unwrap_or_else(|_| "0,0.2".into())
        .split(',')
        .map(|s| s.trim().parse().expect("FM_BENCH_FAULT_RATES"))
        .collect();
    let mut round = 0;
    for n in sizes {
        for r in &rates {
            // A fresh emulator per round: moto slows down as it accumulates
            // terminated instances and deleted volumes.
            let rig = common::Ec2Rig::start_with(&["--no-vms"]).await;
            round += 1;
            run(&rig, n, *r, round).await;
        }
    }
}
