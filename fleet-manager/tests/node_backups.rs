//! Agent backups on the `local` cloud with the real binaries (FM in-process,
//! a real `fm-agent` per VM, the stand-in node): values written through the
//! node's API survive backup → change → restore, a clone, a version change;
//! corrupt objects, an agent killed mid-backup and unreachable storage
//! never lose data or leave the node stopped.

mod common;

use common::{
    Api, TestApp, act, assert_done, lifecycle_app, local_vms, node_get, provisioned, setup,
    wait_log,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn url_of(api: &Api, id: &str) -> String {
    let (_, st) = api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    st["publicURL"].as_str().expect("publicURL").to_string()
}

async fn put_value(url: &str, key: &str, value: &str) {
    let r = reqwest::Client::new()
        .put(format!("{url}/api/values/{key}"))
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {key}: {}", r.status());
}

/// A value through the node's API; None when it has no such key.
async fn get_value(url: &str, key: &str) -> Option<String> {
    let r = node_get(url, &format!("/api/values/{key}")).await;
    match r.status() {
        StatusCode::NOT_FOUND => None,
        s if s.is_success() => Some(r.text().await.unwrap()),
        s => panic!("GET {key}: {s}"),
    }
}

/// Starts a backup action and waits for its future.
async fn backup_action(api: &Api, id: &str, path: &str, body: Value) -> Value {
    let (s, f) = api
        .post(&format!("/tenants/main/instances/{id}/backups{path}"), body)
        .await;
    assert_eq!(s, StatusCode::OK, "{path}: {f}");
    api.wait_future(f["jobId"].as_str().unwrap()).await
}

async fn take(api: &Api, id: &str) -> Value {
    let f = backup_action(api, id, "", json!(null)).await;
    assert_done(&f);
    f["result"].clone()
}

fn failed_message(f: &Value) -> String {
    assert_eq!(f["state"], "failed", "{f}");
    f["error"]["message"]
        .as_str()
        .or_else(|| f["errorMessage"].as_str())
        .unwrap_or_else(|| panic!("no error message in {f}"))
        .to_string()
}

fn store_dir(t: &TestApp) -> PathBuf {
    t.db.dir.path().join("backups")
}

fn object(t: &TestApp, instance: &str, backup: &str, name: &str) -> PathBuf {
    store_dir(t).join(instance).join(backup).join(name)
}

fn flip_a_byte(p: &Path) {
    let mut raw = std::fs::read(p).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 0x5a;
    std::fs::write(p, raw).unwrap();
}

async fn healthy(url: &str) {
    assert_eq!(
        node_get(url, "/api/health").await.status(),
        StatusCode::OK,
        "the node runs"
    );
}

#[tokio::test]
async fn values_written_before_a_backup_come_back_by_restore_and_by_clone() {
    let t = lifecycle_app(20000, |_| {}).await;
    let api = &t.api;
    let id = provisioned(api).await;
    let url = url_of(api, &id).await;
    put_value(&url, "project", "churn-model-v1").await;
    put_value(&url, "owner", "data-team").await;

    let b = take(api, &id).await;
    let bid = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["instanceId"], id.as_str());
    assert_eq!(b["encrypted"], true, "{b}");
    assert_eq!(b["nodeVersion"], "14.2.0");
    assert!(b["files"].as_i64().unwrap() > 2, "{b}");
    assert!(object(&t, &id, &bid, "manifest").exists());
    // Encrypted at rest: the value is nowhere in the stored archive.
    let raw = std::fs::read(object(&t, &id, &bid, "archive")).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains("churn-model-v1"));
    healthy(&url).await;

    // Change the data, then restore.
    put_value(&url, "project", "churn-model-v2-broken").await;
    put_value(&url, "scratch", "new").await;
    let f = backup_action(api, &id, &format!("/{bid}/restore"), json!(null)).await;
    assert_done(&f);
    healthy(&url).await;
    assert_eq!(
        get_value(&url, "project").await.as_deref(),
        Some("churn-model-v1")
    );
    assert_eq!(get_value(&url, "owner").await.as_deref(), Some("data-team"));
    assert_eq!(
        get_value(&url, "scratch").await,
        None,
        "a value written after is gone"
    );

    // Verify: restored into a scratch dir and compared with the manifest.
    let f = backup_action(api, &id, &format!("/{bid}/verify"), json!(null)).await;
    assert_done(&f);
    let (_, got) = api
        .get(&format!("/tenants/main/instances/{id}/backups/{bid}"))
        .await;
    assert_eq!(got["lastVerification"]["ok"], true, "{got}");

    // A clone: a new instance whose node starts with the backup's data.
    let f = backup_action(
        api,
        &id,
        &format!("/{bid}/clone"),
        json!({"label": "churn-clone"}),
    )
    .await;
    assert_done(&f);
    let clone = f["result"]["instanceId"].as_str().unwrap().to_string();
    assert_ne!(clone, id);
    let clone_url = url_of(api, &clone).await;
    assert_ne!(clone_url, url, "the clone has its own port");
    healthy(&clone_url).await;
    assert_eq!(
        get_value(&clone_url, "project").await.as_deref(),
        Some("churn-model-v1")
    );
    // The two are independent.
    put_value(&clone_url, "project", "clone-only").await;
    assert_eq!(
        get_value(&url, "project").await.as_deref(),
        Some("churn-model-v1")
    );

    // Delete: the objects go with the record.
    let (s, f) = api
        .delete(&format!("/tenants/main/instances/{id}/backups/{bid}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_done(&api.wait_future(f["jobId"].as_str().unwrap()).await);
    assert!(!object(&t, &id, &bid, "manifest").exists());
    assert!(!object(&t, &id, &bid, "archive").exists());
    let (s, _) = api
        .get(&format!("/tenants/main/instances/{id}/backups/{bid}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    for i in [&clone, &id] {
        assert_done(&act(api, i, "delete").await);
    }
    t.stop().await;
}

#[tokio::test]
async fn a_corrupted_archive_or_manifest_is_refused_and_the_current_data_kept() {
    let t = lifecycle_app(21000, |_| {}).await;
    let api = &t.api;
    let id = provisioned(api).await;
    let url = url_of(api, &id).await;
    put_value(&url, "k", "backed-up").await;
    let a = take(api, &id).await["id"].as_str().unwrap().to_string();
    let m = take(api, &id).await["id"].as_str().unwrap().to_string();
    put_value(&url, "k", "today").await;

    flip_a_byte(&object(&t, &id, &a, "archive"));
    let f = backup_action(api, &id, &format!("/{a}/verify"), json!(null)).await;
    let msg = failed_message(&f);
    assert!(msg.contains("corrupt"), "{msg}");
    let (_, got) = api
        .get(&format!("/tenants/main/instances/{id}/backups/{a}"))
        .await;
    assert_eq!(got["lastVerification"]["ok"], false, "{got}");
    let f = backup_action(api, &id, &format!("/{a}/restore"), json!(null)).await;
    let msg = failed_message(&f);
    assert!(msg.contains("corrupt"), "{msg}");
    healthy(&url).await;
    assert_eq!(get_value(&url, "k").await.as_deref(), Some("today"));

    flip_a_byte(&object(&t, &id, &m, "manifest"));
    for action in ["verify", "restore"] {
        let f = backup_action(api, &id, &format!("/{m}/{action}"), json!(null)).await;
        let msg = failed_message(&f);
        assert!(msg.contains("manifest") && msg.contains("corrupt"), "{msg}");
    }
    healthy(&url).await;
    assert_eq!(get_value(&url, "k").await.as_deref(), Some("today"));
    assert_done(&act(api, &id, "delete").await);
    t.stop().await;
}

#[tokio::test]
async fn an_agent_killed_mid_backup_leaves_no_half_backup_and_the_node_running() {
    let t = lifecycle_app(22000, |_| {}).await;
    let api = &t.api;
    let id = provisioned(api).await;
    let url = url_of(api, &id).await;
    put_value(&url, "k", "v1").await;
    // Enough incompressible data for the backup to take a while.
    let data =
        t.db.dir
            .path()
            .join("local-cloud/volumes")
            .join(format!("vol-{id}"))
            .join("data");
    let blob: Vec<u8> = (0..(48u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for n in 0..4 {
        std::fs::write(data.join(format!("big-{n}.bin")), &blob).unwrap();
    }
    let (s, f) = api
        .post(
            &format!("/tenants/main/instances/{id}/backups"),
            json!(null),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let job = f["jobId"].as_str().unwrap().to_string();
    wait_log(api, &job, "backing up").await;
    let (_, pid) = local_vms(t.db.dir.path()).pop().expect("a VM");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    // The VM's init restarts the agent; the command runs again from the
    // start (its journal says it never finished) or the future fails.
    let done = api.wait_future(&job).await;
    let (_, list) = api
        .get(&format!("/tenants/main/instances/{id}/backups"))
        .await;
    for b in list.as_array().unwrap() {
        let bid = b["id"].as_str().unwrap();
        assert!(
            object(&t, &id, bid, "manifest").exists(),
            "a listed backup is complete: {b}"
        );
    }
    if done["state"] == "done" {
        assert_eq!(list.as_array().unwrap().len(), 1);
        let bid = done["result"]["id"].as_str().unwrap();
        let f = backup_action(api, &id, &format!("/{bid}/verify"), json!(null)).await;
        assert_done(&f);
    } else {
        assert!(list.as_array().unwrap().is_empty(), "{list}");
    }
    // Whatever happened, the node runs with its data.
    let mut up = false;
    for _ in 0..100 {
        if node_get(&url, "/api/health").await.status() == StatusCode::OK {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the node runs after the backup: {done}");
    assert_eq!(get_value(&url, "k").await.as_deref(), Some("v1"));
    assert_done(&act(api, &id, "delete").await);
    t.stop().await;
}

#[tokio::test]
async fn unreachable_object_storage_fails_the_backup_and_leaves_the_node_running() {
    let port = common::free_port();
    let t = lifecycle_app(23000, |cfg| {
        cfg.backups = Some(fm_backup::Location {
            url: "s3://fm-backups/prefix".into(),
            s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
            s3_region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            session_token: None,
        });
    })
    .await;
    let api = &t.api;
    let id = provisioned(api).await;
    let url = url_of(api, &id).await;
    let f = backup_action(api, &id, "", json!(null)).await;
    let msg = failed_message(&f);
    assert!(msg.contains("object storage"), "{msg}");
    healthy(&url).await;
    let (_, list) = api
        .get(&format!("/tenants/main/instances/{id}/backups"))
        .await;
    assert_eq!(list, json!([]));
    assert_done(&act(api, &id, "delete").await);
    t.stop().await;
}

#[tokio::test]
async fn an_older_backup_is_upgraded_on_restore_and_a_newer_one_refused() {
    let t = lifecycle_app(24000, |_| {}).await;
    let api = &t.api;
    // An instance on the older image.
    let (tpl, net) = setup(api, json!([])).await;
    let (s, inst) = api
        .post(
            "/tenants/main/instances",
            json!({"label": "old", "instanceSettingsTemplateId": tpl,
                   "virtualNetworkId": net, "imageId": "dss-13.5.4-default"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{inst}");
    let id = inst["id"].as_str().unwrap().to_string();
    assert_done(&act(api, &id, "reprovision").await);
    let (_, mut doc) = api.get(&format!("/tenants/main/instances/{id}")).await;
    let url = url_of(api, &id).await;
    put_value(&url, "k", "from-13").await;
    let old = take(api, &id).await;
    assert_eq!(old["nodeVersion"], "13.5.4", "{old}");
    let old = old["id"].as_str().unwrap().to_string();

    // Upgrade to 14.2.0, change the value, restore the 13.5.4 backup: the
    // kit's upgrade runs before the node starts.
    doc["imageId"] = json!("dss-14.2.0-default");
    let (s, b) = api
        .put(&format!("/tenants/main/instances/{id}"), doc.clone())
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_done(&act(api, &id, "reprovision").await);
    put_value(&url, "k", "from-14").await;
    let f = backup_action(api, &id, &format!("/{old}/restore"), json!(null)).await;
    assert_done(&f);
    assert!(
        f["log"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.contains("upgrading the node from 13.5.4 to 14.2.0"))),
        "{f}"
    );
    assert_eq!(get_value(&url, "k").await.as_deref(), Some("from-13"));
    let (_, st) = api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    assert_eq!(st["heartbeat"]["nodeVersion"], "14.2.0", "{st}");

    // A 14.2.0 backup can't go onto a 13.5.4 node: refused before anything.
    let new = take(api, &id).await["id"].as_str().unwrap().to_string();
    let (s, e) = api
        .post(
            &format!("/tenants/main/instances/{id}/backups/{new}/clone"),
            json!({"label": "too-old", "imageId": "dss-13.5.4-default"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("newer") && msg.contains("14.2.0"), "{msg}");
    let (_, all) = api.get("/tenants/main/instances").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "no instance was created");
    assert_done(&act(api, &id, "delete").await);
    t.stop().await;
}

async fn automated_backups(api: &Api, id: &str) -> Vec<Value> {
    let (_, list) = api
        .get(&format!("/tenants/main/instances/{id}/backups"))
        .await;
    list.as_array()
        .unwrap()
        .iter()
        .filter(|b| b["automated"] == true)
        .cloned()
        .collect()
}

async fn backup_schedule(api: &Api, id: &str, policy: Value) {
    let (_, mut doc) = api.get(&format!("/tenants/main/instances/{id}")).await;
    doc["backupPolicy"] = policy;
    let (s, b) = api.put(&format!("/tenants/main/instances/{id}"), doc).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// On a compressed clock (an "hour" lasts 200 ms) automated backups keep
/// coming, the retention is never exceeded by more than the backup just
/// taken, an edit applies without a restart, and a manual backup is never
/// pruned.
#[tokio::test]
async fn automated_backups_keep_coming_and_hold_the_retention() {
    let t = lifecycle_app(25000, |cfg| {
        cfg.lifecycle.reconcile_interval = Duration::from_millis(100);
        cfg.lifecycle.snapshot_hour = Duration::from_millis(200);
    })
    .await;
    let api = &t.api;
    let id = provisioned(api).await;
    let manual = take(api, &id).await;
    backup_schedule(
        api,
        &id,
        json!({"enabled": true, "periodHours": 1, "keepLast": 2, "consistency": "NONE"}),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while seen.len() < 5 && start.elapsed() < Duration::from_secs(60) {
        let autos = automated_backups(api, &id).await;
        assert!(autos.len() <= 3, "keepLast 2 exceeded: {autos:?}");
        seen.extend(autos.iter().map(|b| b["id"].as_str().unwrap().to_string()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 5,
        "only {} automated backups in 60 s",
        seen.len()
    );

    backup_schedule(
        api,
        &id,
        json!({"enabled": true, "periodHours": 1000, "keepLast": 1, "consistency": "NONE"}),
    )
    .await;
    let mut settled = vec![];
    for _ in 0..200 {
        settled = automated_backups(api, &id).await;
        if settled.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled.len(), 1, "{settled:?}");
    let newest = settled[0]["creationDate"].as_i64().unwrap();
    assert!(
        seen.len() > 1 && newest >= manual["creationDate"].as_i64().unwrap(),
        "the newest is kept"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = automated_backups(api, &id).await;
    assert_eq!(after, settled, "the retention is held");
    // Pruned backups are gone from storage too; the manual one stays.
    let dir = store_dir(&t).join(&id);
    let on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut want = vec![
        manual["id"].as_str().unwrap().to_string(),
        settled[0]["id"].as_str().unwrap().to_string(),
    ];
    want.sort();
    let mut got = on_disk.clone();
    got.sort();
    assert_eq!(got, want, "storage holds exactly the kept backups");
    assert_done(&act(api, &id, "delete").await);
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none());
    t.stop().await;
}

/// `fleet-manager backups ... --output json` against the running FM's
/// gRPC API; stdout as JSON.
fn cli(api: &Api, grpc: &str, args: &[&str]) -> Result<Value, String> {
    let out = std::process::Command::new(common::bin())
        .arg("backups")
        .args(args)
        .args(["--output", "json"])
        .env("FM_GRPC_URL", grpc)
        .env("FM_API_KEY_ID", &api.key.0)
        .env("FM_API_KEY_SECRET", &api.key.1)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("JSON on stdout"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_cli_takes_lists_verifies_and_deletes_backups() {
    let t = lifecycle_app(26000, |_| {}).await;
    let api = t.api.clone();
    let grpc = t.grpc_url();
    let id = provisioned(&api).await;
    let b = tokio::task::spawn_blocking({
        let (api, id) = (api.clone(), id.clone());
        move || {
            let cli = |args: &[&str]| cli(&api, &grpc, args);
            let b = cli(&["take", &id, "--reason", "before upgrade"]).unwrap();
            let list = cli(&["list", &id]).unwrap();
            assert_eq!(list[0]["id"], b["id"], "{list}");
            assert_eq!(list[0]["reason"], "before upgrade");
            let bid = b["id"].as_str().unwrap().to_string();
            // For people: a table, one row per backup under its header.
            let table = std::process::Command::new(common::bin())
                .args(["backups", "list", &id])
                .env("FM_GRPC_URL", &grpc)
                .env("FM_API_KEY_ID", &api.key.0)
                .env("FM_API_KEY_SECRET", &api.key.1)
                .output()
                .unwrap();
            let table = String::from_utf8(table.stdout).unwrap();
            let lines: Vec<&str> = table.lines().collect();
            assert!(
                lines[0].starts_with("ID") && lines[0].contains("VERIFIED"),
                "{table}"
            );
            assert!(
                lines[1].starts_with(&bid) && lines[1].contains("never"),
                "{table}"
            );
            let v = cli(&["verify", &id, &bid]).unwrap();
            assert_eq!(v["lastVerification"]["ok"], true, "{v}");
            cli(&["delete", &id, &bid]).unwrap();
            assert_eq!(cli(&["list", &id]).unwrap(), json!([]));
            let e = cli(&["restore", &id, &bid]).unwrap_err();
            assert!(
                e.contains("NotFound") && e.contains("does not exist"),
                "{e}"
            );
            b
        }
    })
    .await
    .unwrap();
    assert_eq!(b["instanceId"], id.as_str());
    assert_done(&act(&api, &id, "delete").await);
    t.stop().await;
}

/// FREEZE_FS snapshots: where the data dir is on its own filesystem the
/// agent freezes it for the cloud call and thaws it after; where it is not
/// (a test machine's root filesystem) the snapshot fails naming why. Either
/// way the node keeps running and serves writes afterwards.
#[tokio::test]
async fn a_freeze_fs_snapshot_thaws_or_fails_clearly_and_the_node_keeps_running() {
    let t = lifecycle_app(27000, |_| {}).await;
    let api = &t.api;
    let id = provisioned(api).await;
    let url = url_of(api, &id).await;
    let (_, mut doc) = api.get(&format!("/tenants/main/instances/{id}")).await;
    doc["snapshotConsistency"] = json!("FREEZE_FS");
    let (s, b) = api.put(&format!("/tenants/main/instances/{id}"), doc).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, snap) = api
        .post(
            &format!("/tenants/main/instances/{id}/snapshots"),
            json!(null),
        )
        .await;
    if s == StatusCode::OK {
        assert!(snap["id"].as_str().is_some(), "{snap}");
    } else {
        let msg = snap["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("own volume") || msg.contains("fsfreeze"),
            "{s}: {snap}"
        );
    }
    healthy(&url).await;
    put_value(&url, "after", "writable").await;
    assert_eq!(get_value(&url, "after").await.as_deref(), Some("writable"));
    assert_done(&act(api, &id, "delete").await);
    t.stop().await;
}

/// Each backup command's agent gets credentials of its own, not FM's: FM
/// assumes its backup role with a session policy that allows the one
/// backup's objects and only the actions the command needs. (The emulator
/// does not enforce session policies, so the test reads the policies FM
/// asked STS for.)
#[tokio::test]
async fn each_backup_command_gets_credentials_for_its_one_backup_only() {
    let rig = common::Ec2Rig::start_with(&["--no-vms"]).await;
    let (s3, bucket) = rig.s3().await;
    let rig_url = rig.url.clone();
    let t = lifecycle_app(23200, move |cfg| {
        cfg.backups = Some(fm_backup::Location {
            url: format!("s3://{bucket}/fleet"),
            s3_endpoint: Some(s3.clone()),
            s3_region: Some("us-east-1".into()),
            access_key_id: Some("AKIAIOSFODNN7EXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        });
        cfg.backup_scoping = Some(fleet_manager::ops::backup_access::Scoping {
            role_arn: "arn:aws:iam::123456789012:role/fm-backups".into(),
            sts_endpoint: Some(rig_url.clone()),
            lifetime: Duration::from_secs(900),
        });
    })
    .await;
    let api = &t.api;
    let id = provisioned(api).await;
    let url = url_of(api, &id).await;
    put_value(&url, "project", "churn-model-v1").await;
    let b = take(api, &id).await;
    let bid = b["id"].as_str().unwrap().to_string();
    put_value(&url, "project", "broken").await;
    assert_done(&backup_action(api, &id, &format!("/{bid}/verify"), json!(null)).await);
    assert_done(&backup_action(api, &id, &format!("/{bid}/restore"), json!(null)).await);
    healthy(&url).await;
    assert_eq!(
        get_value(&url, "project").await.as_deref(),
        Some("churn-model-v1"),
        "the scoped credentials worked"
    );
    let assumed = rig.assumed().await;
    assert_eq!(assumed.len(), 3, "one per command: {assumed:?}");
    let resource = format!("arn:aws:s3:::fm-backups/fleet/{id}/{bid}/*");
    for (call, wants_write) in assumed.iter().zip([true, false, false]) {
        assert_eq!(call["RoleArn"], "arn:aws:iam::123456789012:role/fm-backups");
        assert_eq!(call["DurationSeconds"], "900");
        let policy: Value = serde_json::from_str(call["Policy"].as_str().unwrap()).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1, "{policy}");
        assert_eq!(statements[0]["Effect"], "Allow");
        assert_eq!(statements[0]["Resource"], resource.as_str(), "{policy}");
        let actions: Vec<&str> = statements[0]["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            actions
                .iter()
                .all(|a| !a.contains("Delete") && !a.contains("List")
                    || *a == "s3:ListMultipartUploadParts"),
            "{actions:?}"
        );
        assert_eq!(
            actions.contains(&"s3:PutObject"),
            wants_write,
            "{actions:?}"
        );
        assert!(actions.contains(&"s3:GetObject"), "{actions:?}");
    }
    assert_done(&act(api, &id, "delete").await);
    t.stop().await;
}
