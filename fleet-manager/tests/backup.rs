//! FM's own backup: a consistent copy of every table that restores into an
//! empty database (of either backend) with the same secrets key, and a lost
//! FM brought back from it while its agents reconnect with their existing
//! certificates.

mod common;

use common::{FmProcess, TestApp, TestDb, cli_create_key};
use fleet_manager::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

#[tokio::test]
async fn a_backup_restores_every_object_secret_and_key_into_an_empty_database() {
    let src = TestApp::new().await;
    let (s, acc) = src
        .api
        .post(
            "/tenants/main/cloud-accounts",
            json!({"label": "k", "awsAuthenticationMode": "KEYPAIR", "awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE", "awsSecretAccessKey": SECRET}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{acc}");
    let tpl = src.api.create_template().await;
    let net = src.api.create_network().await;
    let inst = src.api.create_instance(&tpl, &net).await;
    let other = src.api.create_template().await;
    let (_, f) = src
        .api
        .delete(&format!(
            "/tenants/main/instance-settings-templates/{other}"
        ))
        .await;
    let job = f["jobId"].as_str().unwrap().to_string();
    src.api.wait_future(&job).await;
    let backup = src.app.store.backup().await.unwrap();

    // A new, empty database; the same secrets key.
    let dst_db = TestDb::new().await;
    std::fs::copy(
        src.db.dir.path().join("secrets.key"),
        dst_db.dir.path().join("secrets.key"),
    )
    .unwrap();
    let store = Store::open(&dst_db.url).await.unwrap();
    store.restore(&backup, false).await.unwrap();
    store.close().await;
    let mut dst = TestApp::on(dst_db, |_| {}, vec![]).await;
    // The source's API key authenticates on the restored FM.
    dst.api.key = src.api.key.clone();

    let id = inst["id"].as_str().unwrap();
    let (s, got) = dst.api.get(&format!("/tenants/main/instances/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, inst);
    let (_, a) = dst
        .api
        .get(&format!(
            "/tenants/main/cloud-accounts/{}",
            acc["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(a["hasAwsSecretAccessKey"], true);
    let (_, f) = dst
        .api
        .get(&format!("/tenants/main/futures/{job}?peek=true"))
        .await;
    assert_eq!(f["state"], "done");
    assert!(!f["log"].as_array().unwrap().is_empty());
    // The restored store keeps working: new operations and log lines.
    let (_, f) = dst
        .api
        .delete(&format!(
            "/tenants/main/virtual-networks/{}",
            dst.api.create_network().await
        ))
        .await;
    assert_eq!(
        dst.api.wait_future(f["jobId"].as_str().unwrap()).await["state"],
        "done"
    );
    // The sealed secret opens with the restored FM's key.
    let row = fleet_manager::store::resources::account_get(
        dst.app.store.conn(),
        "main",
        acc["id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let key = std::fs::read_to_string(dst.db.dir.path().join("secrets.key")).unwrap();
    let sb = fleet_manager::crypto::SecretBox::load(Some(&key), dst.db.dir.path()).unwrap();
    let at = fleet_manager::crypto::Place::account_secret(&row.id);
    assert_eq!(
        sb.open(&at, row.secret.as_deref().unwrap()).unwrap(),
        SECRET
    );
    src.stop().await;
    dst.stop().await;
}

#[tokio::test]
async fn restore_refuses_a_database_that_holds_data_unless_told_to_replace_it() {
    let src = TestApp::new().await;
    src.api.create_template().await;
    let backup = src.app.store.backup().await.unwrap();
    let mut other = TestApp::new().await;
    other.api.create_network().await;
    let err = other.app.store.restore(&backup, false).await.unwrap_err();
    assert!(err.message().contains("--replace"), "{}", err.message());
    // Nothing changed.
    let (_, nets) = other.api.get("/tenants/main/virtual-networks").await;
    assert_eq!(nets.as_array().unwrap().len(), 1);
    other.app.store.restore(&backup, true).await.unwrap();
    // Everything is the source's now, its API keys included.
    let (s, _) = other.api.get("/tenants/main/virtual-networks").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    other.api.key = src.api.key.clone();
    let (_, nets) = other.api.get("/tenants/main/virtual-networks").await;
    assert_eq!(nets, json!([]));
    let (_, tpls) = other
        .api
        .get("/tenants/main/instance-settings-templates")
        .await;
    assert_eq!(tpls.as_array().unwrap().len(), 1);
    src.stop().await;
    other.stop().await;
}

/// A lost FM (its database gone) is rebuilt from a backup; the running
/// node's agent reconnects with the certificate it already has, and the
/// instance is controlled again without a reprovision.
#[tokio::test]
async fn a_lost_fm_is_recovered_from_its_backup_and_its_agents_reconnect() {
    let db = TestDb::new().await;
    let key = cli_create_key(&db);
    let env = common::lifecycle_env(28000, &[("FM_AGENT_TIMEOUT_SECS", "4")]);
    let fm = FmProcess::start(&db, &key, &env).await;
    let tpl = fm.api.create_template().await;
    let net = fm.api.create_network().await;
    let id = fm.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, f) = fm
        .api
        .get(&format!("/tenants/main/instances/{id}/actions/reprovision"))
        .await;
    assert_eq!(
        fm.api.wait_future(f["jobId"].as_str().unwrap()).await["state"],
        "done"
    );

    let backup = db.dir.path().join("fm-backup.json");
    common::admin(
        db.dir.path(),
        &db.url,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    fm.kill();
    // The database is lost; a new, empty one takes its place (the local
    // cloud, like a real one, lives on outside FM's database).
    let new_db = TestDb::new().await;
    common::admin(
        db.dir.path(),
        &new_db.url,
        &["restore", "--from", backup.to_str().unwrap()],
    );

    let fm = FmProcess::start_on(db.dir.path(), &new_db.url, &key, &env).await;
    let mut status = Value::Null;
    for _ in 0..300 {
        let (_, st) = fm
            .api
            .get(&format!("/tenants/main/instances/{id}/status"))
            .await;
        status = st;
        if status["agentState"] == "connected" && status["nodeState"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["agentState"], "connected", "{status}");
    assert_eq!(status["nodeState"], "running", "{status}");
    // No reprovision happened: only the one provisioning operation exists.
    let (_, futures) = fm.api.get("/tenants/main/futures").await;
    let provisions = futures
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "PROVISION_INSTANCE")
        .count();
    assert_eq!(provisions, 1);
    // And FM controls the node again.
    let (_, f) = fm
        .api
        .get(&format!("/tenants/main/instances/{id}/actions/restart-dss"))
        .await;
    assert_eq!(
        fm.api.wait_future(f["jobId"].as_str().unwrap()).await["state"],
        "done"
    );
    let (_, f) = fm
        .api
        .get(&format!("/tenants/main/instances/{id}/actions/delete"))
        .await;
    assert_eq!(
        fm.api.wait_future(f["jobId"].as_str().unwrap()).await["state"],
        "done"
    );
    fm.kill();
}
