//! Sealed values are bound to their place: one copied elsewhere in the
//! database does not open there, and values an earlier version sealed
//! without a place are sealed again for theirs, once, at start.

mod common;

use common::{TestApp, TestDb};
use fleet_manager::crypto::{Place, SecretBox};
use fleet_manager::store::entities::{cloud_account, instance_template, setting};
use fleet_manager::store::lifecycle as lq;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use serde_json::{Value, json};

fn secrets_of(db: &TestDb) -> SecretBox {
    let key = std::fs::read_to_string(db.dir.path().join("secrets.key")).unwrap();
    SecretBox::load(Some(&key), db.dir.path()).unwrap()
}

async fn ca_key_sealed(t: &TestApp) -> String {
    let row = setting::Entity::find_by_id("agent-ca".to_string())
        .one(t.app.store.conn())
        .await
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&row.value).unwrap();
    v["key_sealed"].as_str().unwrap().to_string()
}

/// An instance with a runtime row whose admin API key is `sealed`.
async fn instance_with_admin_key(t: &TestApp, sealed: String) -> String {
    let tpl = t.api.create_template().await;
    let net = t.api.create_network().await;
    let inst = t.api.create_instance(&tpl, &net).await;
    let id = inst["id"].as_str().unwrap().to_string();
    let conn = t.app.store.conn();
    lq::runtime_ensure(conn, "main", &id).await.unwrap();
    lq::runtime_mark_installed(conn, &id, "14.2.0", Some(sealed), None)
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn the_ca_key_copied_into_a_node_secret_field_is_not_handed_out() {
    let t = TestApp::new().await;
    let stolen = ca_key_sealed(&t).await;
    let id = instance_with_admin_key(&t, stolen).await;
    let (s, b) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/admin-api-key"))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
    assert!(!b.to_string().contains("PRIVATE KEY"), "{b}");
    assert_eq!(b["errorType"], "InternalError", "{b}");

    // The same field holding a value sealed for it opens.
    let sealed = secrets_of(&t.db)
        .seal(&Place::runtime(&id, "admin_api_key"), "node-admin-key")
        .unwrap();
    lq::runtime_mark_installed(t.app.store.conn(), &id, "14.2.0", Some(sealed), None)
        .await
        .unwrap();
    let (s, b) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/admin-api-key"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["adminAPIKey"], "node-admin-key");
    t.stop().await;
}

#[tokio::test]
async fn a_template_secret_moved_to_another_template_does_not_open() {
    let t = TestApp::new().await;
    let jdbc = |pw: &str| {
        json!({"label": "t", "setupActions": [{"type": "INSTALL_JDBC_DRIVER", "params": {
            "url": "https://repo.example/driver.jar", "dbType": "mysql",
            "username": "me", "password": pw}}]})
    };
    let (_, a) = t
        .api
        .post("/tenants/main/instance-settings-templates", jdbc("pw-of-a"))
        .await;
    let (_, b) = t
        .api
        .post("/tenants/main/instance-settings-templates", jdbc("pw-of-b"))
        .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let conn = t.app.store.conn();
    let row_a = instance_template::Entity::find_by_id(a.to_string())
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    let row_b = instance_template::Entity::find_by_id(b.to_string())
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    // b's document now holds a's sealed password.
    let mut m = row_b.into_active_model();
    m.doc = Set(row_a.doc.clone());
    m.update(conn).await.unwrap();
    // Sending the mask back asks FM to open the stored value: it can't.
    let (_, got) = t
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{b}"))
        .await;
    let (s, err) = t
        .api
        .put(
            &format!("/tenants/main/instance-settings-templates/{b}"),
            got,
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{err}");
    assert!(!err.to_string().contains("pw-of-a"), "{err}");
    t.stop().await;
}

#[tokio::test]
async fn values_sealed_by_an_earlier_version_are_sealed_again_for_their_places_once() {
    let t = TestApp::new().await;
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let (s, acc) = t
        .api
        .post(
            "/tenants/main/cloud-accounts",
            json!({"label": "k", "awsAuthenticationMode": "KEYPAIR",
                "awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE", "awsSecretAccessKey": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{acc}");
    let acc = acc["id"].as_str().unwrap().to_string();
    let sb = secrets_of(&t.db);
    let id = instance_with_admin_key(
        &t,
        sb.seal(&Place::runtime("x", "admin_api_key"), "unused")
            .unwrap(),
    )
    .await;
    let ca_cert = t.app.engine.services().lc.ca_pem.clone();
    let ca_plain = sb.open(&Place::ca_key(), &ca_key_sealed(&t).await).unwrap();

    // Make the database look like an earlier version's: values sealed
    // without a place, and no record of the re-sealing.
    let conn = t.app.store.conn();
    let row = cloud_account::Entity::find_by_id(acc.clone())
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    let mut m = row.into_active_model();
    m.secret = Set(Some(sb.seal_legacy(secret).unwrap()));
    m.update(conn).await.unwrap();
    lq::runtime_mark_installed(
        conn,
        &id,
        "14.2.0",
        Some(sb.seal_legacy("node-admin-key").unwrap()),
        None,
    )
    .await
    .unwrap();
    let ca = setting::Entity::find_by_id("agent-ca".to_string())
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    let mut v: Value = serde_json::from_str(&ca.value).unwrap();
    v["key_sealed"] = json!(sb.seal_legacy(&ca_plain).unwrap());
    let mut m = ca.into_active_model();
    m.value = Set(v.to_string());
    m.update(conn).await.unwrap();
    setting::Entity::delete_by_id("sealing".to_string())
        .exec(conn)
        .await
        .unwrap();

    // Started again, FM seals them for their places; the CA is the same.
    let db = t.into_db().await;
    let t = TestApp::on(db, |_| {}, vec![]).await;
    assert_eq!(t.app.engine.services().lc.ca_pem, ca_cert);
    let (s, b) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/admin-api-key"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["adminAPIKey"], "node-admin-key");
    let row = cloud_account::Entity::find_by_id(acc.clone())
        .one(t.app.store.conn())
        .await
        .unwrap()
        .unwrap();
    let sealed = row.secret.unwrap();
    assert!(sealed.starts_with("v2:"), "{sealed}");
    assert_eq!(
        sb.open(&Place::account_secret(&acc), &sealed).unwrap(),
        secret
    );

    // A legacy value written afterwards never opens.
    lq::runtime_mark_installed(
        t.app.store.conn(),
        &id,
        "14.2.0",
        Some(sb.seal_legacy(&ca_plain).unwrap()),
        None,
    )
    .await
    .unwrap();
    let (s, b) = t
        .api
        .get(&format!("/tenants/main/instances/{id}/admin-api-key"))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
    assert!(!b.to_string().contains("PRIVATE KEY"), "{b}");

    // Nor after a restart with the record deleted: FM refuses to start
    // rather than seal it for the place it was moved to.
    setting::Entity::delete_by_id("sealing".to_string())
        .exec(t.app.store.conn())
        .await
        .unwrap();
    let db = t.into_db().await;
    let cfg = db.config();
    let err = fleet_manager::server::open_app(&cfg).await.err().unwrap();
    assert!(
        err.message().contains("refusing to re-seal"),
        "{}",
        err.message()
    );
    drop(db);
}
