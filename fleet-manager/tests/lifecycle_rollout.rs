//! A rollout on the local cloud with the real binaries: twenty instances
//! upgraded with one canary and at most a quarter of them at once, FM
//! killed (SIGKILL) mid-rollout and the rollout finished once after the
//! restart; then an upgrade to a broken image stopped by its canary, the
//! other nodes untouched. One run, on SQLite: a second backend adds
//! nothing the sim suite (`rollouts.rs`, both backends) does not cover.

mod common;

use common::{
    Api, FmProcess, TestDb, admin, assert_done, cli_create_key, count_lines, lifecycle_env,
    local_vms, max_in_flight, rollout_create, rollout_wait, target_states,
};
use serde_json::{Value, json};
use std::time::Duration;

const FLEET: usize = 20;

async fn image_of(api: &Api, id: &str) -> String {
    let (_, i) = api.get(&format!("/tenants/main/instances/{id}")).await;
    i["imageId"].as_str().unwrap().to_string()
}

async fn node_version(api: &Api, id: &str) -> Value {
    let (_, s) = api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    s["nodeVersion"].clone()
}

#[tokio::test]
async fn an_upgrade_rollout_survives_fm_killed_mid_way_and_a_broken_image_stops_at_its_canary() {
    if common::backend() == "postgres" {
        return;
    }
    let db = TestDb::new().await;
    let key = cli_create_key(&db);
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let env = lifecycle_env(
        29000,
        &[
            ("FM_OPS_LEASE_SECS", "2"),
            ("FM_FUTURE_WAIT_MS", "0"),
            ("FM_OPS_WORKERS", "6"),
            ("FM_ROLLOUT_TICK_MS", "200"),
            ("FM_GRPC_LISTEN", &grpc),
        ],
    );
    let mut fm = FmProcess::start(&db, &key, &env).await;
    let net = fm.api.create_network().await;
    let tpl = fm.api.create_template().await;
    let mut ids = Vec::new();
    let mut jobs = Vec::new();
    for n in 0..FLEET {
        let (s, i) = fm
            .api
            .post(
                "/tenants/main/instances",
                json!({"label": format!("node-{n}"), "instanceSettingsTemplateId": tpl,
                       "virtualNetworkId": net, "imageId": "dss-13.5.4-default"}),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{i}");
        let id = i["id"].as_str().unwrap().to_string();
        jobs.push(common::start(&fm.api, &id, "reprovision").await);
        ids.push(id);
    }
    for j in jobs {
        assert_done(&fm.api.wait_future(&j).await);
    }

    let r = rollout_create(
        &fm.api,
        json!({"label": "to 14.2.0", "selector": {"fmTags": [], "virtualNetworkId": net},
               "action": {"type": "UPGRADE", "imageId": "dss-14.2.0-default"},
               "canaries": 1, "maxInFlight": "25%", "maxErrors": 1, "healthSeconds": 2}),
    )
    .await;
    let rid = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["counts"]["targets"], FLEET);

    // FM dies once a few targets are done and others are in flight.
    loop {
        let (_, now) = fm.api.get(&format!("/tenants/main/rollouts/{rid}")).await;
        if now["counts"]["done"].as_u64().unwrap() >= 3
            && now["counts"]["running"].as_u64().unwrap() >= 2
        {
            break;
        }
        assert_eq!(now["state"], "running", "{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fm.kill();
    // While FM is down: an image whose kit is corrupt, for later.
    let kits = db.dir.path().join("kits");
    let broken = db.dir.path().join("standin-kit-14.3.0.tar.gz");
    std::fs::copy(kits.join("standin-kit-14.2.0.tar.gz"), &broken).unwrap();
    admin(
        db.dir.path(),
        &db.url,
        &[
            "add-image",
            "--id",
            "broken-14.3.0",
            "--version",
            "14.3.0",
            "--kit",
            broken.to_str().unwrap(),
        ],
    );
    let stored = kits.join("standin-kit-14.3.0.tar.gz");
    let mut bytes = std::fs::read(&stored).unwrap();
    let half = bytes.len() / 2;
    bytes[half] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    fm = FmProcess::start(&db, &key, &env).await;
    let r = rollout_wait(&fm.api, &rid, 600).await;
    assert_eq!(
        r["state"],
        "done",
        "{}",
        serde_json::to_string_pretty(&r).unwrap()
    );
    assert_eq!(r["counts"]["done"], FLEET);
    let targets = r["targets"].as_array().unwrap();
    assert_eq!(targets[0]["canary"], true);
    let canary_end = targets[0]["finishedAt"].as_i64().unwrap();
    assert!(
        targets[1..]
            .iter()
            .all(|t| t["startedAt"].as_i64().unwrap() >= canary_end),
        "the canary first: {r}"
    );
    // From the recorded timeline, across the restart: never more than 5.
    let most = max_in_flight(&r);
    assert!((2..=5).contains(&most), "{most} at once: {r}");
    // Each target upgraded by one operation that finished once; one VM each.
    for (t, id) in targets.iter().zip(&ids) {
        let f = fm.api.wait_future(t["operationId"].as_str().unwrap()).await;
        assert_done(&f);
        assert_eq!(count_lines(&f, "operation done"), 1, "{f}");
        assert_eq!(image_of(&fm.api, id).await, "dss-14.2.0-default");
        assert_eq!(node_version(&fm.api, id).await, "14.2.0");
    }
    let (_, futures) = fm.api.get("/tenants/main/futures?limit=500").await;
    let by_rollout = futures
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["initiatedBy"] == "system:rollout")
        .count();
    assert_eq!(by_rollout, FLEET, "one operation per target, no more");
    assert_eq!(local_vms(db.dir.path()).len(), FLEET);

    // A broken image, rolled out with the CLI: the canary fails, the others
    // stay as they are, and the CLI says so with its exit status.
    let mut cli = tokio::process::Command::new(common::bin());
    cli.args(["rollouts", "--grpc-url", &format!("http://{grpc}")])
        .args(["--key-id", &key.0, "--key-secret", &key.1])
        .args([
            "create",
            "--action",
            "UPGRADE",
            "--to-image",
            "broken-14.3.0",
        ])
        .args([
            "--canaries",
            "1",
            "--max-in-flight",
            "25%",
            "--max-errors",
            "1",
        ])
        .args(["--health-seconds", "2"]);
    for id in &ids {
        cli.args(["--instance", id]);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cli.output())
        .await
        .expect("the CLI follows the rollout to its end")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed: a canary failed"), "{stderr}");
    assert!(
        stderr.contains("0/20 done, 0 running, 1 failed, 19 skipped"),
        "{stderr}"
    );
    let (_, list) = fm.api.get("/tenants/main/rollouts?limit=1").await;
    let r = rollout_wait(&fm.api, list[0]["id"].as_str().unwrap(), 10).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"], "a canary failed");
    let states = target_states(&r);
    assert_eq!(states[0], "failed");
    assert!(states[1..].iter().all(|s| s == "skipped"), "{states:?}");
    assert!(
        r["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("failed verification"),
        "{r}"
    );
    for id in &ids[1..] {
        assert_eq!(image_of(&fm.api, id).await, "dss-14.2.0-default");
        assert_eq!(node_version(&fm.api, id).await, "14.2.0");
    }
    fm.kill();
}
