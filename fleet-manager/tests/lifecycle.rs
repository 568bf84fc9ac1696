//! The instance lifecycle on the `local` cloud with the real binaries: FM
//! in-process, a real `fm-agent` process per VM, the stand-in node kit.
//! Needs the workspace's binaries built (`cargo build --workspace`).

mod common;

use common::{
    Api, act, assert_done, count_lines, lifecycle_app, local_vms, node_get, provisioned, setup,
    start, wait_log,
};
use fleet_manager::config::sibling_binary;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn an_instance_is_provisioned_controlled_and_deleted_on_the_local_cloud() {
    let t = lifecycle_app(11000, |_| {}).await;
    let driver = t.db.dir.path().join("driver.jar");
    std::fs::write(&driver, b"a JDBC driver").unwrap();
    let (tpl, net) = setup(
        &t.api,
        json!([
            {"type": "ADD_ENV_VARIABLES", "params": {"variables": [{"key": "FM_TEST_VAR", "value": "hello"}]}},
            {"type": "ADD_PROPERTIES", "params": {"properties": [{"key": "fm.test.prop", "value": "42"}]}},
            {"type": "ADD_AUTHORIZED_KEY", "params": {"sshKey": "ssh-ed25519 AAAAC3NzaTEST test@fm"}},
            {"type": "INSTALL_JDBC_DRIVER", "params": {"url": format!("file://{}", driver.display()),
                "dbType": "mysql", "username": "u", "password": "jdbc-pass-123"}}
        ]),
    )
    .await;
    let inst = t.api.create_instance(&tpl, &net).await;
    let id = inst["id"].as_str().unwrap().to_string();

    let f = act(&t.api, &id, "reprovision").await;
    assert_done(&f);
    // The driver landed in the node's data dir; the password it came with is
    // nowhere in FM's stored operations.
    let jars: Vec<_> = walk(&t.db.dir.path().join("local-cloud").join("volumes"))
        .into_iter()
        .filter(|p| p.ends_with("lib/jdbc/mysql/driver.jar"))
        .collect();
    assert_eq!(jars.len(), 1, "the JDBC driver was not installed");
    let backup = serde_json::to_string(&t.app.store.backup().await.unwrap()).unwrap();
    assert!(
        !backup.contains("jdbc-pass-123"),
        "a setup-action secret is stored in clear"
    );
    // The agent's progress lines landed in the operation's log.
    assert!(count_lines(&f, "agent: ") > 0, "{f}");
    let (_, status) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    assert_eq!(status["hasPhysicalInstance"], true, "{status}");
    let url = status["publicURL"].as_str().unwrap().to_string();
    let node: Value = node_get(&url, "/api/status").await.json().await.unwrap();
    assert_eq!(node["version"], "14.2.0");
    assert_eq!(node["envVariables"]["FM_TEST_VAR"], "hello", "{node}");
    assert_eq!(node["properties"]["fm.test.prop"], "42", "{node}");

    // Heartbeats arrive and report the node.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, status) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    assert_eq!(status["agentState"], "connected", "{status}");
    assert_eq!(status["nodeState"], "running", "{status}");
    // FM runs as root here: the node runs as the local cloud's node user,
    // the agent as root.
    if rustix::process::geteuid().is_root() {
        let node = common::uids_of(t.db.dir.path(), "standin-node serve");
        assert_eq!(node, [64100], "the node's processes run as");
        let agents = common::uids_of(t.db.dir.path(), "fm-agent --user-data");
        assert!(
            agents.iter().all(|u| *u == 0) && !agents.is_empty(),
            "{agents:?}"
        );
    }

    // The initial password answers once; the admin key answers.
    let (s, pw) = t
        .api
        .get(&format!(
            "/tenants/main/instances/{id}/actions/get-initial-password"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{pw}");
    let (s, _) = t
        .api
        .get(&format!(
            "/tenants/main/instances/{id}/actions/get-initial-password"
        ))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, key) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/admin-api-key"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(key["adminAPIKey"].as_str().is_some_and(|k| !k.is_empty()));

    // Reset a node user's password; the node accepts the new one.
    let (s, f) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/actions/reset-user-password"),
            json!({"userName": "admin", "password": "a-new-passw0rd"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_done(&t.api.wait_future(f["jobId"].as_str().unwrap()).await);
    let check = reqwest::Client::new()
        .post(format!("{url}/api/auth/check"))
        .json(&json!({"login": "admin", "password": "a-new-passw0rd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), StatusCode::OK);

    // An agent that falls silent is shown unreachable, and recovers by itself.
    let (_, pid) = local_vms(t.db.dir.path()).pop().expect("a VM");
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status();
    let seen = wait_agent_state(&t.api, &id, "unreachable").await;
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status();
    assert!(seen, "a silent agent was never shown unreachable");
    assert!(
        wait_agent_state(&t.api, &id, "connected").await,
        "the agent did not recover after its heartbeats returned"
    );

    assert_done(&act(&t.api, &id, "stop").await);
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/api/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err()
    );
    assert_done(&act(&t.api, &id, "start").await);
    assert_eq!(node_get(&url, "/api/health").await.status(), StatusCode::OK);
    assert_done(&act(&t.api, &id, "restart-dss").await);
    // restart-dss works on a node that no longer answers.
    let hang = reqwest::Client::new()
        .post(format!("{url}/api/debug/hang"))
        .send()
        .await
        .unwrap();
    assert_eq!(hang.status(), StatusCode::OK);
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/api/health"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_err(),
        "the node should hang"
    );
    assert_done(&act(&t.api, &id, "restart-dss").await);
    assert_eq!(node_get(&url, "/api/health").await.status(), StatusCode::OK);

    // Snapshots: create, get, delete.
    let (s, snap) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots?reasonForSnapshot=test"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{snap}");
    let sid = snap["id"].as_str().unwrap().to_string();
    let (s, got) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/snapshots/{sid}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["reasonForSnapshot"], "test");
    let (_, f) = t
        .api
        .delete(&format!("/tenants/main/instances/{id}/snapshots/{sid}"))
        .await;
    assert_done(&t.api.wait_future(f["jobId"].as_str().unwrap()).await);
    let (s, _) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/snapshots/{sid}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_done(&act(&t.api, &id, "replay-setup-actions").await);

    let f = act(&t.api, &id, "delete").await;
    assert_done(&f);
    assert_no_processes(t.db.dir.path()).await;
    let (s, _) = t.api.get(&format!("/tenants/main/instances/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        reqwest::Client::new()
            .get(format!("{url}/api/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err()
    );
    t.stop().await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// No agent or node of the test's VMs is left running (within 5 s).
async fn assert_no_processes(dir: &std::path::Path) {
    let mut left = vec![];
    for _ in 0..50 {
        left = common::procs_under(dir);
        if left.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("processes left running: {left:?}");
}

/// Polls the instance's status (up to 10 s) until `agentState` is `want`.
async fn wait_agent_state(api: &Api, id: &str, want: &str) -> bool {
    for _ in 0..100 {
        let (_, st) = api
            .get(&format!("/tenants/main/instances/{id}/status"))
            .await;
        if st["agentState"] == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn killing_the_agent_mid_install_still_provisions_once() {
    let t = lifecycle_app(12000, |_| {}).await;
    let (tpl, net) = setup(&t.api, json!([])).await;
    let id = t.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = start(&t.api, &id, "reprovision").await;
    wait_log(&t.api, &job, "install-node: started").await;
    let (_, pid) = local_vms(t.db.dir.path()).pop().expect("a VM");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    // The VM's init restarts the agent; it reconnects and finishes the command.
    let done = t.api.wait_future(&job).await;
    assert_done(&done);
    assert_eq!(count_lines(&done, "operation done"), 1);
    let (_, status) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    let url = status["publicURL"].as_str().unwrap().to_string();
    assert_eq!(node_get(&url, "/api/health").await.status(), StatusCode::OK);
    assert_eq!(local_vms(t.db.dir.path()).len(), 1, "one VM");
    let log: Vec<&str> = done["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(
        log.iter().filter(|l| l.contains(" booted")).count(),
        1,
        "{log:?}"
    );
    let events = fleet_manager::store::resources::events_for_operation(t.app.store.conn(), &job)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_done(&act(&t.api, &id, "delete").await);
    assert_no_processes(t.db.dir.path()).await;
    t.stop().await;
}

#[tokio::test]
async fn killing_fm_at_any_step_of_provisioning_still_provisions_once_after_restart() {
    use common::{FmProcess, TestDb, cli_create_key, lifecycle_env};
    let db = TestDb::new().await;
    let key = cli_create_key(&db);
    let env = lifecycle_env(
        24000,
        &[("FM_OPS_LEASE_SECS", "2"), ("FM_FUTURE_WAIT_MS", "0")],
    );
    let mut fm = FmProcess::start(&db, &key, &env).await;
    let (tpl, net) = setup(&fm.api, json!([])).await;
    // FM dies at a different point of the saga each round.
    for point in [
        "boot-vm: started",
        "agent-connected: done",
        "install-node: started",
        "start-node: started",
    ] {
        let id = fm.api.create_instance(&tpl, &net).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let job = start(&fm.api, &id, "reprovision").await;
        wait_log(&fm.api, &job, point).await;
        fm.kill();

        fm = FmProcess::start(&db, &key, &env).await;
        let done = fm.api.wait_future(&job).await;
        assert_done(&done);
        assert_eq!(
            count_lines(&done, "operation done"),
            1,
            "killed at {point}: {done}"
        );
        assert_eq!(
            local_vms(db.dir.path()).len(),
            1,
            "killed at {point}: exactly one VM"
        );
        let (_, status) = fm
            .api
            .get(&format!("/tenants/main/instances/{id}/status"))
            .await;
        let url = status["publicURL"].as_str().unwrap().to_string();
        assert_eq!(
            node_get(&url, "/api/health").await.status(),
            StatusCode::OK,
            "killed at {point}"
        );
        let (_, f) = fm
            .api
            .get(&format!("/tenants/main/instances/{id}/actions/delete"))
            .await;
        assert_done(&fm.api.wait_future(f["jobId"].as_str().unwrap()).await);
        assert!(local_vms(db.dir.path()).is_empty());
    }
    assert_no_processes(db.dir.path()).await;
    fm.kill();
}

/// Runs a reprovision expected to fail; returns the future's error message.
async fn failing_reprovision(api: &Api, id: &str) -> String {
    let f = act(api, id, "reprovision").await;
    assert_eq!(f["state"], "failed", "{f}");
    f["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_failing_setup_action_fails_the_future_with_its_output_and_reprovision_recovers() {
    let t = lifecycle_app(13000, |_| {}).await;
    let bad = json!([{"type": "INSTALL_JDBC_DRIVER", "params": {"url": "file:///nonexistent/driver.jar", "dbType": "mysql"}}]);
    let (tpl, net) = setup(&t.api, bad).await;
    let id = t.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = failing_reprovision(&t.api, &id).await;
    assert!(
        msg.contains("INSTALL_JDBC_DRIVER") || msg.contains("driver.jar"),
        "{msg}"
    );
    // Fix the template; the same instance provisions.
    let (_, mut tdoc) = t
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{tpl}"))
        .await;
    tdoc["setupActions"] = json!([]);
    let (s, _) = t
        .api
        .put(
            &format!("/tenants/main/instance-settings-templates/{tpl}"),
            tdoc,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_done(&act(&t.api, &id, "reprovision").await);
    assert_done(&act(&t.api, &id, "delete").await);
    t.stop().await;
}

#[tokio::test]
async fn a_corrupted_kit_or_a_node_that_never_gets_healthy_fails_clearly() {
    let t = lifecycle_app(14000, |cfg| cfg.lifecycle.health_timeout_secs = 4).await;
    let kits = t.db.dir.path().join("kits");
    // A never-healthy kit of an older version, and a corrupted copy of another.
    let out = std::process::Command::new(sibling_binary("standin-node"))
        .args(["package", "--version", "14.1.0", "--never-healthy", "--out"])
        .arg(t.db.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let sick: Value = serde_json::from_slice(&out.stdout).unwrap();
    t.app
        .image_register(
            "sick-14.1.0",
            "never healthy",
            "14.1.0",
            std::path::Path::new(sick["file"].as_str().unwrap()),
            10,
        )
        .await
        .unwrap();
    let good = kits.join("standin-kit-13.5.4.tar.gz");
    let bad = t.db.dir.path().join("standin-kit-13.9.0.tar.gz");
    std::fs::copy(&good, &bad).unwrap();
    t.app
        .image_register("corrupt-13.9.0", "corrupted", "13.9.0", &bad, 11)
        .await
        .unwrap();
    let mut bytes = std::fs::read(kits.join("standin-kit-13.9.0.tar.gz")).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(kits.join("standin-kit-13.9.0.tar.gz"), bytes).unwrap();

    let (tpl, net) = setup(&t.api, json!([])).await;
    let (s, i) = t
        .api
        .post(
            "/tenants/main/instances",
            json!({"label": "c", "instanceSettingsTemplateId": tpl, "virtualNetworkId": net, "imageId": "corrupt-13.9.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = i["id"].as_str().unwrap().to_string();
    let msg = failing_reprovision(&t.api, &id).await;
    assert!(msg.contains("failed verification"), "{msg}");

    let mut doc = i.clone();
    doc["imageId"] = json!("sick-14.1.0");
    assert_eq!(
        t.api
            .put(&format!("/tenants/main/instances/{id}"), doc.clone())
            .await
            .0,
        StatusCode::OK
    );
    let msg = failing_reprovision(&t.api, &id).await;
    assert!(msg.contains("did not become healthy"), "{msg}");

    // From either failure, a reprovision with a good image works.
    doc["imageId"] = json!("dss-14.2.0-default");
    assert_eq!(
        t.api
            .put(&format!("/tenants/main/instances/{id}"), doc)
            .await
            .0,
        StatusCode::OK
    );
    assert_done(&act(&t.api, &id, "reprovision").await);
    assert_done(&act(&t.api, &id, "delete").await);
    t.stop().await;
}

#[tokio::test]
async fn an_agent_with_a_bad_enrollment_token_fails_the_future_and_reprovision_recovers() {
    use common::{FmProcess, TestDb, cli_create_key, lifecycle_env};
    let db = TestDb::new().await;
    let key = cli_create_key(&db);
    let mut env = lifecycle_env(
        26000,
        &[
            ("FM_FUTURE_WAIT_MS", "0"),
            ("FM_AGENT_CONNECT_TIMEOUT_SECS", "6"),
        ],
    );
    // Every token this FM hands out has expired by the time the agent uses it.
    let mut expired = env.clone();
    expired.push(("FM_ENROLLMENT_TOKEN_TTL_SECS".into(), "0".into()));
    let fm = FmProcess::start(&db, &key, &expired).await;
    let (tpl, net) = setup(&fm.api, json!([])).await;
    let id = fm.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = failing_reprovision(&fm.api, &id).await;
    assert!(msg.contains("enrollment was refused"), "{msg}");
    fm.kill();

    env.push(("FM_AGENT_CONNECT_TIMEOUT_SECS".into(), "60".into()));
    let fm = FmProcess::start(&db, &key, &env).await;
    assert_done(&act(&fm.api, &id, "reprovision").await);
    assert_eq!(
        local_vms(db.dir.path()).len(),
        1,
        "the VM with the bad token is gone"
    );
    assert_done(&act(&fm.api, &id, "delete").await);
    fm.kill();
}

/// Waits until the tenant's recent operations have all finished.
async fn wait_idle(api: &Api) {
    for _ in 0..300 {
        let (_, futures) = api.get("/tenants/main/futures?limit=10").await;
        if futures
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["alive"] == false)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("operations still running");
}

async fn automated(api: &Api, id: &str) -> Vec<Value> {
    let (_, snaps) = api
        .get(&format!("/tenants/main/instances/{id}/snapshots"))
        .await;
    snaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["automated"] == true)
        .cloned()
        .collect()
}

async fn schedule(api: &Api, id: &str, enable: bool, period: u32, keep: u32) {
    let (_, mut doc) = api.get(&format!("/tenants/main/instances/{id}")).await;
    doc["enableAutomatedSnapshot"] = json!(enable);
    doc["automatedSnapshotPeriod"] = json!(period);
    doc["automatedSnapshotRetention"] = json!(keep);
    let (s, b) = api.put(&format!("/tenants/main/instances/{id}"), doc).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// On a compressed clock (an "hour" of the schedule lasts 300 ms), the
/// schedule keeps snapshotting, never keeps more than the retention (plus
/// the one just taken), follows edits without a restart, and leaves manual
/// snapshots alone.
#[tokio::test]
async fn automated_snapshots_keep_coming_and_hold_the_retention_exactly() {
    let t = lifecycle_app(15000, |cfg| {
        cfg.lifecycle.reconcile_interval = Duration::from_millis(100);
        cfg.lifecycle.snapshot_hour = Duration::from_millis(300);
    })
    .await;
    let id = provisioned(&t.api).await;
    let (s, manual) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots?reasonForSnapshot=manual"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{manual}");

    schedule(&t.api, &id, true, 1, 2).await;
    // Snapshots keep coming (each takes as long as archiving the volume),
    // and never more than the retention plus the one just taken is kept.
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while seen.len() < 5 && start.elapsed() < Duration::from_secs(30) {
        let autos = automated(&t.api, &id).await;
        assert!(autos.len() <= 3, "retention 2 exceeded: {autos:?}");
        seen.extend(autos.iter().map(|s| s["id"].as_str().unwrap().to_string()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 5,
        "only {} automated snapshots in 30 s",
        seen.len()
    );

    // An edit applies at once: keep 1, and (a long period) no new ones.
    schedule(&t.api, &id, true, 1000, 1).await;
    let mut settled = vec![];
    for _ in 0..100 {
        settled = automated(&t.api, &id).await;
        if settled.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled.len(), 1, "{settled:?}");
    let newest = settled[0]["creationDate"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = automated(&t.api, &id).await;
    assert_eq!(after.len(), 1, "the retention is held: {after:?}");
    assert_eq!(
        after[0]["creationDate"].as_i64().unwrap(),
        newest,
        "the newest is the one kept"
    );
    let (_, all) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/snapshots"))
        .await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == manual["id"]),
        "manual snapshots are never pruned"
    );
    assert_done(&act(&t.api, &id, "delete").await);
    t.stop().await;
}

/// After FM was away for many periods, one pass takes one snapshot.
#[tokio::test]
async fn a_missed_snapshot_period_is_caught_up_once() {
    // Passes run only when this test calls them.
    let t = lifecycle_app(16000, |cfg| {
        cfg.lifecycle.reconcile_interval = Duration::from_secs(3600)
    })
    .await;
    let id = provisioned(&t.api).await;
    // Quick snapshots (no quiesce), an "hour" of one second.
    let (_, mut doc) = t.api.get(&format!("/tenants/main/instances/{id}")).await;
    doc["snapshotConsistency"] = json!("NONE");
    assert_eq!(
        t.api
            .put(&format!("/tenants/main/instances/{id}"), doc)
            .await
            .0,
        StatusCode::OK
    );
    schedule(&t.api, &id, true, 1, 0).await;
    let hour = Duration::from_secs(1);
    let first = t.app.reconcile_automated_snapshots(hour).await.unwrap();
    assert_eq!(first.snapshots_started, 1);
    wait_idle(&t.api).await;
    assert_eq!(automated(&t.api, &id).await.len(), 1);
    // Five periods pass with no reconciler running.
    tokio::time::sleep(hour * 5).await;
    let pass = t.app.reconcile_automated_snapshots(hour).await.unwrap();
    assert_eq!(pass.snapshots_started, 1, "one catch-up snapshot, not five");
    wait_idle(&t.api).await;
    assert_eq!(automated(&t.api, &id).await.len(), 2);
    // The catch-up counts as this period's snapshot: nothing is due now.
    let again = t.app.reconcile_automated_snapshots(hour).await.unwrap();
    assert_eq!(again, fleet_manager::app::ScheduleReport::default());
    assert_done(&act(&t.api, &id, "delete").await);
    t.stop().await;
}

/// A snapshot stops the node for consistency and starts it again, also
/// when the cloud call fails.
#[tokio::test]
async fn a_snapshot_quiesces_the_node_and_never_leaves_it_stopped() {
    let t = lifecycle_app(17000, |_| {}).await;
    let id = provisioned(&t.api).await;
    let (_, status) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    let url = status["publicURL"].as_str().unwrap().to_string();

    let (s, snap) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{snap}");
    let (_, futures) = t.api.get("/tenants/main/futures?limit=1").await;
    let log = &futures[0];
    assert_eq!(log["type"], "SNAPSHOT_INSTANCE");
    assert_eq!(
        count_lines(log, "node stopped for a consistent snapshot"),
        1,
        "{log}"
    );
    assert_eq!(count_lines(log, "node started again"), 1, "{log}");
    assert_eq!(node_get(&url, "/api/health").await.status(), StatusCode::OK);

    // The cloud call fails (the snapshot store is not a directory): the
    // snapshot fails, and the node runs again.
    let store = t.db.dir.path().join("local-cloud").join("snapshots");
    let aside = t.db.dir.path().join("local-cloud").join("snapshots.aside");
    std::fs::rename(&store, &aside).unwrap();
    std::fs::write(&store, b"not a directory").unwrap();
    let (s, err) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(node_get(&url, "/api/health").await.status(), StatusCode::OK);
    let (_, futures) = t.api.get("/tenants/main/futures?limit=1").await;
    assert_eq!(
        count_lines(&futures[0], "undo quiesce-node: done"),
        1,
        "{}",
        futures[0]
    );
    std::fs::remove_file(&store).unwrap();
    std::fs::rename(&aside, &store).unwrap();

    // With consistency NONE the node is not stopped.
    let (_, mut doc) = t.api.get(&format!("/tenants/main/instances/{id}")).await;
    doc["snapshotConsistency"] = json!("NONE");
    assert_eq!(
        t.api
            .put(&format!("/tenants/main/instances/{id}"), doc)
            .await
            .0,
        StatusCode::OK
    );
    let (s, _) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, futures) = t.api.get("/tenants/main/futures?limit=1").await;
    assert_eq!(
        count_lines(&futures[0], "node stopped"),
        0,
        "{}",
        futures[0]
    );
    assert_done(&act(&t.api, &id, "delete").await);
    t.stop().await;
}

/// A reprovision from a snapshot that fails before the node is healthy
/// gives the instance its previous volume back: the data written after the
/// snapshot is still there.
#[tokio::test]
async fn a_failed_restore_from_a_snapshot_keeps_the_previous_volume() {
    let t = lifecycle_app(18000, |_| {}).await;
    let (tpl, net) = setup(&t.api, json!([])).await;
    let id = t.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_done(&act(&t.api, &id, "reprovision").await);
    let url = |st: &Value| st["publicURL"].as_str().unwrap().to_string();
    let (_, st) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    let put = |u: String, v: &'static str| async move {
        let r = reqwest::Client::new()
            .put(format!("{u}/api/values/k"))
            .body(v)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    };
    put(url(&st), "before").await;
    let (s, snap) = t
        .api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{snap}");
    put(url(&st), "after").await;
    let volume_before = st["dataVolumeId"].clone();

    // The template now has a setup action that fails after the install.
    let (_, mut tdoc) = t
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{tpl}"))
        .await;
    tdoc["setupActions"] = json!([{"type": "INSTALL_JDBC_DRIVER", "params": {"url": "file:///nonexistent/x.jar", "dbType": "mysql"}}]);
    assert_eq!(
        t.api
            .put(
                &format!("/tenants/main/instance-settings-templates/{tpl}"),
                tdoc.clone()
            )
            .await
            .0,
        StatusCode::OK
    );
    let (s, f) = t
        .api
        .post(
            &format!(
                "/tenants/main/instances/{id}/snapshots/{}/reprovision",
                snap["id"].as_str().unwrap()
            ),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let f = t.api.wait_future(f["jobId"].as_str().unwrap()).await;
    assert_eq!(f["state"], "failed", "{f}");
    assert_eq!(count_lines(&f, "keeps its previous data volume"), 1, "{f}");
    let (_, st) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    assert_eq!(st["dataVolumeId"], volume_before, "{st}");
    assert_eq!(st["state"], "provisioning-failed", "{st}");
    let volumes = std::fs::read_dir(t.db.dir.path().join("local-cloud").join("volumes"))
        .unwrap()
        .count();
    assert_eq!(volumes, 1, "the volume made from the snapshot is gone");

    // Fixed template, plain reprovision: the node runs on the previous volume.
    tdoc["setupActions"] = json!([]);
    assert_eq!(
        t.api
            .put(
                &format!("/tenants/main/instance-settings-templates/{tpl}"),
                tdoc
            )
            .await
            .0,
        StatusCode::OK
    );
    assert_done(&act(&t.api, &id, "reprovision").await);
    let (_, st) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    assert_eq!(
        node_get(&url(&st), "/api/values/k")
            .await
            .text()
            .await
            .unwrap(),
        "after"
    );
    assert_done(&act(&t.api, &id, "delete").await);
    assert_no_processes(t.db.dir.path()).await;
    t.stop().await;
}

/// The agent reports the node as each command ends, so the status read
/// right after an operation is current (here heartbeats are hourly).
#[tokio::test]
async fn status_is_current_as_soon_as_an_operation_ends() {
    let t = lifecycle_app(19000, |cfg| cfg.lifecycle.heartbeat_secs = 3600).await;
    let id = provisioned(&t.api).await;
    let (_, st) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    assert_eq!(st["nodeState"], "running", "{st}");
    assert_eq!(st["heartbeat"]["nodeVersion"], "14.2.0", "{st}");
    assert_done(&act(&t.api, &id, "delete").await);
    t.stop().await;
}
