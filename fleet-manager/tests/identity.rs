//! Who may do what: users, roles, their API keys, the role every endpoint
//! declares, who started each operation, and the audit log. Each test runs
//! on its own fresh database.

mod common;

use common::{Api, TestApp, TestDb};
use common::{FmProcess, admin};
use fleet_manager::api::access::declared_role;
use fleet_manager::model::user::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Every operation of the served document: (method, path template, role).
fn endpoints(doc: &Value) -> Vec<(Method, String, Option<Role>)> {
    let mut v = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            v.push((m, path.clone(), declared_role(op)));
        }
    }
    v
}

fn concrete(path: &str) -> String {
    path.replace("{tenantId}", "main")
        .replace("{accountId}", "ca-x")
        .replace("{networkId}", "vn-x")
        .replace("{templateId}", "ist-x")
        .replace("{instanceId}", "inst-x")
        .replace("{jobId}", "op-x")
        .replace("{snapshotId}", "snap-x")
        .replace("{backupId}", "bk-x")
}

async fn served_doc(t: &TestApp) -> Value {
    let (s, doc) = t.api.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    doc
}

#[tokio::test]
async fn every_endpoint_declares_exactly_one_role() {
    let t = TestApp::new().await;
    let doc = served_doc(&t).await;
    let all = endpoints(&doc);
    assert!(all.len() >= 50, "only {} endpoints", all.len());
    for (m, p, role) in &all {
        assert!(role.is_some(), "{m} {p} declares no role");
    }
    // The table the server enforces is the document's.
    let roles = fleet_manager::api::access::Roles::from_doc(&doc);
    for (m, p, role) in &all {
        assert_eq!(
            roles.needed(m, &format!("/api/public{p}")),
            *role,
            "{m} {p}"
        );
    }
    // What the roles mean, spelled out for a few: reads are the viewer's,
    // lifecycle actions the operator's, configuration and secrets the
    // admin's.
    let role_of = |m: Method, p: &str| {
        all.iter()
            .find(|(em, ep, _)| *em == m && ep == p)
            .and_then(|e| e.2)
            .unwrap_or_else(|| panic!("{m} {p} is not documented"))
    };
    let i = "/tenants/{tenantId}/instances/{instanceId}";
    assert_eq!(role_of(Method::GET, i), Role::Viewer);
    assert_eq!(
        role_of(Method::GET, &format!("{i}/actions/start")),
        Role::Operator
    );
    assert_eq!(
        role_of(Method::POST, &format!("{i}/backups")),
        Role::Operator
    );
    assert_eq!(
        role_of(Method::GET, &format!("{i}/admin-api-key")),
        Role::Admin
    );
    assert_eq!(
        role_of(Method::GET, &format!("{i}/actions/get-initial-password")),
        Role::Admin
    );
    assert_eq!(
        role_of(Method::POST, "/tenants/{tenantId}/virtual-networks"),
        Role::Admin
    );
    assert_eq!(
        role_of(Method::GET, "/tenants/{tenantId}/audit-log"),
        Role::Admin
    );
    t.stop().await;
}

#[tokio::test]
async fn every_endpoint_answers_each_kind_of_credentials_as_its_role_says() {
    let t = TestApp::new().await;
    let viewer = t.api_as("vera", Role::Viewer).await;
    let operator = t.api_as("otto", Role::Operator).await;
    let adm = t.api_as("ada", Role::Admin).await;
    // A key past its expiry, and a key of a user since disabled.
    let exp = t
        .app
        .api_key_create("ada", None, Some(Duration::from_millis(1)), None)
        .await
        .unwrap();
    let expired = Api {
        key: (exp.id, exp.secret),
        ..t.api.clone()
    };
    let gone = t.api_as("gone", Role::Admin).await;
    t.app.user_set_disabled("gone", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;

    let doc = served_doc(&t).await;
    let mut checked = 0;
    for (m, path, role) in endpoints(&doc) {
        let needed = role.expect("a role");
        let p = concrete(&path);
        // Without credentials, or with ones that no longer hold: 401.
        let r = t
            .api
            .http
            .request(m.clone(), t.api.url(&p))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no key: {m} {path}");
        for (who, api) in [("expired", &expired), ("disabled", &gone)] {
            let (s, b) = api.call(m.clone(), &p, Some(json!({}))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{who}: {m} {path}: {b}");
        }
        for (have, api) in [
            (Role::Viewer, &viewer),
            (Role::Operator, &operator),
            (Role::Admin, &adm),
        ] {
            let (s, b) = api.call(m.clone(), &p, Some(json!({}))).await;
            if have < needed {
                assert_eq!(s, StatusCode::FORBIDDEN, "{have}: {m} {path}: {b}");
                assert_eq!(b["errorType"], "Forbidden", "{b}");
                let msg = b["message"].as_str().unwrap();
                assert!(msg.contains(&format!("'{needed}'")), "{msg}");
            } else {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{have}: {m} {path}: {s} {b}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 50, "{checked}");
    t.stop().await;
}

#[tokio::test]
async fn a_keys_role_is_at_most_its_users_and_follows_it_down_at_once() {
    let t = TestApp::new().await;
    t.app
        .user_create("olga", Role::Operator, None)
        .await
        .unwrap();
    let e = t
        .app
        .api_key_create("olga", Some(Role::Admin), None, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("can't be above"), "{e}");
    let k = t
        .app
        .api_key_create("olga", None, None, None)
        .await
        .unwrap();
    let olga = Api {
        key: (k.id, k.secret),
        ..t.api.clone()
    };
    let (s, _) = olga
        .get("/tenants/main/instances/inst-x/actions/start")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.app.user_set_role("olga", Role::Viewer).await.unwrap();
    let (s, b) = olga
        .get("/tenants/main/instances/inst-x/actions/start")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // A viewer key of an admin reads but changes nothing.
    let v = t
        .app
        .api_key_create("admin", Some(Role::Viewer), None, None)
        .await
        .unwrap();
    let ro = Api {
        key: (v.id, v.secret),
        ..t.api.clone()
    };
    assert_eq!(ro.get("/tenants/main/instances").await.0, StatusCode::OK);
    let (s, _) = ro.post("/tenants/main/virtual-networks", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The key list says who each key acts as, with which role.
    let keys = t.app.api_key_list().await.unwrap();
    let ro_key = keys.iter().find(|k| k.id == ro.key.0).unwrap();
    assert_eq!(ro_key.user.as_deref(), Some("admin"));
    assert_eq!(ro_key.role, Some(Role::Viewer));
    t.stop().await;
}

#[tokio::test]
async fn keys_of_a_disabled_user_stop_working_at_once_and_the_last_admin_stays() {
    let t = TestApp::new().await;
    let otto = t.api_as("otto", Role::Operator).await;
    assert_eq!(otto.get("/tenants/main/instances").await.0, StatusCode::OK);
    t.app.user_set_disabled("otto", true).await.unwrap();
    assert_eq!(
        otto.get("/tenants/main/instances").await.0,
        StatusCode::UNAUTHORIZED
    );
    t.app.user_set_disabled("otto", false).await.unwrap();
    assert_eq!(otto.get("/tenants/main/instances").await.0, StatusCode::OK);
    // The only enabled admin can be neither disabled nor demoted.
    for e in [
        t.app.user_set_disabled("admin", true).await.unwrap_err(),
        t.app
            .user_set_role("admin", Role::Operator)
            .await
            .unwrap_err(),
    ] {
        assert!(e.to_string().contains("last enabled admin"), "{e}");
    }
    t.stop().await;
}

#[tokio::test]
async fn the_first_start_makes_admin_with_a_one_time_password_only_its_owner_reads() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestApp::new().await;
    let path =
        t.db.dir
            .path()
            .join(fleet_manager::app::FIRST_PASSWORD_FILE);
    let meta = std::fs::metadata(&path).expect("the password file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let password = std::fs::read_to_string(&path).unwrap();
    let u = t
        .app
        .user_check_password("admin", password.trim())
        .await
        .expect("the written password is admin's");
    assert_eq!(u.role, Role::Admin);
    assert!(u.must_change_password);
    assert!(
        t.app
            .user_check_password("admin", "not the password")
            .await
            .is_err()
    );
    // The test's own key, made before any request, is admin's.
    let keys = t.app.api_key_list().await.unwrap();
    assert_eq!(keys[0].user.as_deref(), Some("admin"));
    t.stop().await;
}

#[tokio::test]
async fn every_operation_shows_who_started_it_and_the_audit_log_what_each_request_did() {
    let t = TestApp::new().await;
    let otto = t.api_as("otto", Role::Operator).await;
    let vera = t.api_as("vera", Role::Viewer).await;
    let template = t.api.create_template().await;
    let (s, f) = otto
        .get(&format!(
            "/tenants/main/instance-settings-templates/{template}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    // An operator deletes what an admin made: the future names the operator.
    let (s, f) = otto
        .call(
            Method::DELETE,
            &format!("/tenants/main/instance-settings-templates/{template}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "templates are the admin's: {f}");
    let (s, f) = t
        .api
        .delete(&format!(
            "/tenants/main/instance-settings-templates/{template}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let job = f["jobId"].as_str().unwrap().to_string();
    let done = t.api.wait_future(&job).await;
    assert_eq!(done["initiatedBy"], "admin", "{done}");
    // A viewer's change is refused; an operator's lifecycle action on a
    // missing instance fails.
    let (s, _) = vera.post("/tenants/main/virtual-networks", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = otto
        .get("/tenants/main/instances/inst-x/actions/stop")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Plain reads are not audited.
    assert_eq!(vera.get("/tenants/main/instances").await.0, StatusCode::OK);

    let (s, rows) = t.api.get("/tenants/main/audit-log").await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    let rows = rows.as_array().unwrap();
    let find = |actor: &str, method: &str, needle: &str| {
        rows.iter()
            .find(|r| {
                r["actor"] == actor
                    && r["method"] == method
                    && r["path"].as_str().unwrap().contains(needle)
            })
            .unwrap_or_else(|| panic!("no row of {actor} {method} {needle} in {rows:#?}"))
            .clone()
    };
    let del = find("admin", "DELETE", &template);
    assert_eq!(del["outcome"], "ok");
    assert_eq!(del["status"], 200);
    assert_eq!(del["object"], template.as_str());
    assert_eq!(del["tenantId"], "main");
    assert_eq!(del["operationId"], job.as_str());
    assert_eq!(del["keyId"], t.api.key.0.as_str());
    assert_eq!(del["source"], "127.0.0.1");
    let refused = find("vera", "POST", "virtual-networks");
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["status"], 403);
    assert!(refused["error"].as_str().unwrap().contains("Forbidden"));
    let op_refused = find("otto", "DELETE", &template);
    assert_eq!(op_refused["outcome"], "refused");
    let failed = find("otto", "GET", "actions/stop");
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["status"], 404);
    assert!(
        !rows
            .iter()
            .any(|r| r["actor"] == "vera" && r["method"] == "GET"),
        "plain reads are not audited: {rows:#?}"
    );
    // A wrong secret for a real key is recorded as refused; a made-up key
    // is not (a flood of them must not fill the log).
    let r = t
        .api
        .http
        .delete(t.api.url("/tenants/main/virtual-networks/vn-x"))
        .basic_auth(&otto.key.0, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, rows) = t
        .api
        .get("/tenants/main/audit-log?actor=otto&limit=1")
        .await;
    assert_eq!(rows[0]["outcome"], "refused", "{rows}");
    assert_eq!(rows[0]["status"], 401);
    assert!(rows[0]["error"].as_str().unwrap().contains("wrong secret"));
    // Filters and paging.
    let (s, b) = t.api.get("/tenants/main/audit-log?since=5&until=4").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, serde_json::json!([]));
    let (s, b) = t.api.get("/tenants/main/audit-log?until=-1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = t
        .api
        .get("/tenants/main/audit-log?since=9007199254740992")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let long = "a".repeat(65);
    let (s, b) = t
        .api
        .get(&format!("/tenants/main/audit-log?actor={long}"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["message"].as_str().unwrap().contains("'actor'"), "{b}");
    let (s, page) = t.api.get("/tenants/main/audit-log?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page.as_array().unwrap().len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn passwords_and_secrets_never_reach_the_log_or_the_audit_log() {
    let db = TestDb::new().await;
    let dir = db.dir.path();
    let pw_file = dir.join("pw");
    std::fs::write(&pw_file, "correct horse battery staple\n").unwrap();
    let mut secrets = vec!["correct horse battery staple".to_string()];
    let out = admin(
        dir,
        &db.url,
        &[
            "create-user",
            "ops",
            "--role",
            "operator",
            "--password-file",
            pw_file.to_str().unwrap(),
        ],
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["user"], "ops");
    let out = admin(dir, &db.url, &["reset-password", "ops"]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    secrets.push(v["password"].as_str().unwrap().to_string());
    let out = admin(
        dir,
        &db.url,
        &["create-api-key", "--user", "ops", "--expires-in", "30d"],
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    let key = (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    );
    secrets.push(key.1.clone());
    let out = admin(dir, &db.url, &["create-api-key"]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let admin_key = (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    );
    secrets.push(admin_key.1.clone());
    secrets.push(
        std::fs::read_to_string(dir.join(fleet_manager::app::FIRST_PASSWORD_FILE))
            .unwrap()
            .trim()
            .to_string(),
    );
    let fm = FmProcess::start(&db, &admin_key, &[("FM_LOG", "debug")]).await;
    let ops = Api {
        key: key.clone(),
        ..fm.api.clone()
    };
    // Requests that carry secrets in every place a request can.
    let (s, _) = ops
        .post(
            "/tenants/main/instances",
            json!({"label": "x", "password": secrets[0]}),
        )
        .await;
    assert!(s.is_client_error(), "{s}");
    let (s, _) = fm
        .api
        .put(
            "/tenants/main/cloud-credentials",
            json!({"awsAccessKey": "AKIAEXAMPLE", "awsSecretKey": "not-a-real-secret-but-one"}),
        )
        .await;
    assert!(s.is_success() || s.is_client_error(), "{s}");
    secrets.push("not-a-real-secret-but-one".into());
    let r = fm
        .api
        .http
        .delete(fm.api.url("/tenants/main/virtual-networks/vn-x"))
        .basic_auth(&key.0, Some(&secrets[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, audit) = fm.api.get("/tenants/main/audit-log").await;
    assert_eq!(s, StatusCode::OK);
    assert!(audit.as_array().unwrap().len() >= 3, "{audit}");
    let cli_audit = admin(dir, &db.url, &["audit", "--since", "1h"]);
    assert!(!cli_audit.is_empty());
    let users = admin(dir, &db.url, &["list-users"]);
    let keys = admin(dir, &db.url, &["list-api-keys"]);
    fm.kill();
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("request"), "the debug log is on: {log}");
    for (what, text) in [
        ("the server log", log),
        ("the audit log", audit.to_string()),
        (
            "the CLI's audit log",
            String::from_utf8_lossy(&cli_audit).into_owned(),
        ),
        (
            "the user list",
            String::from_utf8_lossy(&users).into_owned(),
        ),
        ("the key list", String::from_utf8_lossy(&keys).into_owned()),
    ] {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} holds a secret");
        }
    }
}
