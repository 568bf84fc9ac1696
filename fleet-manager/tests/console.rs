//! The web console over HTTP: signing in and out, sessions and their end,
//! the CSRF token of every change, who sees and does what, and an
//! operator's provisioning recorded under their name. Each test runs on
//! its own fresh database; the browser suite (`tests/python`) drives the
//! same pages in Chromium.

mod common;

use common::{Console, TestApp, sim_app};
use fleet_manager::model::user::Role;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

const PASSWORD: &str = "a-long-enough-password";

/// A user `name` with `role` and [`PASSWORD`], signed in.
async fn signed_in(t: &TestApp, name: &str, role: Role) -> Console {
    t.app
        .user_create(name, role, Some(PASSWORD.into()))
        .await
        .expect("user");
    let mut c = Console::new(&t.api.base);
    let p = c.login(name, PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    c
}

async fn audit(t: &TestApp) -> Vec<Value> {
    let (s, rows) = t.api.get("/tenants/main/audit-log?limit=1000").await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    rows.as_array().expect("rows").clone()
}

#[tokio::test]
async fn the_signed_out_are_sent_to_sign_in_and_come_back_where_they_were() {
    let t = TestApp::new().await;
    let mut c = Console::new(&t.api.base);
    let p = c.get("/console/instances?state=running").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(
        p.location.as_deref(),
        Some("/console/login?next=/console/instances%3Fstate%3Drunning")
    );
    let root = c.get("/").await;
    assert_eq!(root.location.as_deref(), Some("/console/"));

    t.app
        .user_create("alice", Role::Viewer, Some(PASSWORD.into()))
        .await
        .unwrap();
    let p = c
        .post(
            "/console/login",
            &[
                ("name", "alice"),
                ("password", PASSWORD),
                ("next", "/console/instances?state=running"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(
        p.location.as_deref(),
        Some("/console/instances?state=running")
    );
    let cookie = p.set_cookie.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let page = c.get("/console/instances?state=running").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice"), "the page names its user");

    // A next page elsewhere is not followed.
    let mut other = Console::new(&t.api.base);
    let p = other
        .post(
            "/console/login",
            &[
                ("name", "alice"),
                ("password", PASSWORD),
                ("next", "//evil.example/console/"),
            ],
        )
        .await;
    assert_eq!(p.location.as_deref(), Some("/console/"));
}

#[tokio::test]
async fn a_wrong_password_is_refused_audited_and_slowed_more_each_time() {
    let t = TestApp::new().await;
    t.app
        .user_create("bob", Role::Operator, Some(PASSWORD.into()))
        .await
        .unwrap();
    let mut c = Console::new(&t.api.base);
    let mut took = vec![];
    for _ in 0..3 {
        let start = Instant::now();
        let p = c
            .post("/console/login", &[("name", "bob"), ("password", "not-it")])
            .await;
        took.push(start.elapsed());
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.set_cookie.is_none());
        assert!(p.body.contains("Wrong user name or password"), "{}", p.body);
    }
    // 250 ms, then 500 ms, then 1 s before each answer (at least).
    assert!(took[0] >= Duration::from_millis(250), "{took:?}");
    assert!(took[1] >= Duration::from_millis(500), "{took:?}");
    assert!(took[2] >= Duration::from_millis(1000), "{took:?}");
    let refused: Vec<_> = audit(&t)
        .await
        .into_iter()
        .filter(|r| r["path"] == "/console/login" && r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r["actor"] == "bob" && r["status"] == 401)
    );

    // The right password still works (after the wait), and is audited too.
    let p = c.login("bob", PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(
        audit(&t)
            .await
            .iter()
            .any(|r| r["path"] == "/console/login" && r["outcome"] == "ok" && r["actor"] == "bob")
    );
}

#[tokio::test]
async fn a_change_without_the_sessions_csrf_token_is_refused_and_audited() {
    let t = TestApp::new().await;
    let mut c = signed_in(&t, "carol", Role::Admin).await;
    let before = t.api.get("/tenants/main/virtual-networks").await.1;
    for token in [None, Some("0123456789abcdef0123456789abcdef")] {
        let mut form = vec![("label".to_string(), "net".to_string())];
        if let Some(tk) = token {
            form.push(("csrf".into(), tk.into()));
        }
        let p = c.post_raw("/console/networks", &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        assert!(p.body.contains("CSRF"), "{}", p.body);
    }
    assert_eq!(t.api.get("/tenants/main/virtual-networks").await.1, before);
    let refused = audit(&t)
        .await
        .into_iter()
        .filter(|r| r["path"] == "/console/networks" && r["outcome"] == "refused")
        .count();
    assert_eq!(refused, 2);
    // With the token the same form goes through.
    let p = c
        .post(
            "/console/networks",
            &[("label", "net"), ("useDefaults", "on")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
}

#[tokio::test]
async fn a_viewer_sees_no_action_no_admin_page_and_a_forged_post_is_refused_and_audited() {
    let t = sim_app().await;
    let inst = t.api.new_instance().await;
    let mut v = signed_in(&t, "victor", Role::Viewer).await;
    let page = v.get(&format!("/console/instances/{inst}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("data-action="),
        "a viewer sees no action button"
    );
    assert!(
        !page.body.contains("/console/audit"),
        "nor the audit log's link"
    );
    for admin_page in [
        "/console/audit",
        "/console/networks/new",
        "/console/templates/new",
    ] {
        assert_eq!(
            v.get(admin_page).await.status,
            StatusCode::NOT_FOUND,
            "{admin_page}"
        );
    }
    assert_eq!(
        v.get(&format!("/console/instances/{inst}/confirm/stop"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let p = v
        .post(
            &format!("/console/instances/{inst}/actions/reprovision"),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    let (_, futures) = t.api.get("/tenants/main/futures").await;
    assert_eq!(futures, Value::Array(vec![]), "nothing started");
    let rows = audit(&t).await;
    let row = rows
        .iter()
        .find(|r| r["path"] == format!("/console/instances/{inst}/actions/reprovision"))
        .expect("the forged POST is audited");
    assert_eq!(row["outcome"], "refused");
    assert_eq!(row["status"], 403);
    assert_eq!(row["actor"], "victor");
    assert_eq!(row["role"], "viewer");

    let mut o = signed_in(&t, "olga", Role::Operator).await;
    let page = o.get(&format!("/console/instances/{inst}")).await;
    assert!(page.body.contains("data-action=\"reprovision\""));
    // Provision is offered; stop is shown disabled with its reason.
    assert!(
        page.body
            .contains("disabled title=\"the instance is not running\" data-action=\"stop\"")
    );
    assert_eq!(o.get("/console/audit").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_operator_provisions_and_stops_from_the_console_under_their_own_name() {
    let t = sim_app().await;
    let net = t.api.create_network().await;
    let tpl = t.api.create_template().await;
    let mut o = signed_in(&t, "olga", Role::Operator).await;
    let p = o
        .post(
            "/console/instances",
            &[
                ("label", "web-node"),
                ("instanceSettingsTemplateId", &tpl),
                ("virtualNetworkId", &net),
                ("imageId", "dss-14.2.0-default"),
                ("dssNodeType", "automation"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let at = p.location.expect("the new instance's page");
    let inst = at.rsplit('/').next().unwrap().to_string();
    let page = o.get(&at).await;
    assert!(
        page.body
            .contains(&format!("hx-get=\"/console/instances/{inst}/agent-log\"")),
        "the page asks for the agent's log"
    );
    let log = o.get(&format!("/console/instances/{inst}/agent-log")).await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(log.body.contains("No agent is connected."), "{}", log.body);
    let confirm = o
        .get(&format!("/console/instances/{inst}/confirm/reprovision"))
        .await;
    assert!(
        confirm.body.contains("Creates the VM and its data disk"),
        "{}",
        confirm.body
    );
    let p = o
        .post(
            &format!("/console/instances/{inst}/actions/reprovision"),
            &[],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some(at.as_str()));
    // The live panel reports the state until the node runs.
    let mut state = String::new();
    for _ in 0..200 {
        let live = o.get(&format!("/console/instances/{inst}/live")).await;
        assert_eq!(live.status, StatusCode::OK);
        state = live
            .body
            .split("data-state=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string();
        if state == "running" && !live.body.contains("id=\"active-operation\"") {
            assert!(live.body.contains("every 30s"), "slow polling once settled");
            break;
        }
        assert!(
            live.body.contains("every 2s") || state == "running",
            "{}",
            live.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "running");
    // The agent's own lines, asked of it.
    let log = o.get(&format!("/console/instances/{inst}/agent-log")).await;
    assert!(
        log.body
            .contains(&format!("simulated agent of {inst}: session open")),
        "{}",
        log.body
    );
    let p = o
        .post(&format!("/console/instances/{inst}/actions/stop"), &[])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);

    let (_, futures) = t.api.get("/tenants/main/futures").await;
    let kinds: Vec<(&str, &str)> = futures
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["type"].as_str().unwrap(),
                f["initiatedBy"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.iter().all(|(_, by)| *by == "olga"), "{kinds:?}");
    let rows = audit(&t).await;
    for action in ["reprovision", "stop"] {
        let path = format!("/console/instances/{inst}/actions/{action}");
        let row = rows
            .iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no audit row for {path}"));
        assert_eq!(row["actor"], "olga");
        assert_eq!(row["outcome"], "ok");
        assert!(row["operationId"].is_string(), "{row}");
    }
}

#[tokio::test]
async fn signing_out_a_password_change_and_disabling_end_sessions() {
    let t = TestApp::new().await;
    let mut a = signed_in(&t, "dora", Role::Viewer).await;
    let mut b = Console::new(&t.api.base);
    b.login("dora", PASSWORD).await;
    assert_eq!(b.get("/console/").await.status, StatusCode::OK);

    // A change of password ends the other session, not this one.
    let p = a.change_password(PASSWORD, "another-long-password").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains("your one other session has ended"),
        "{}",
        p.body
    );
    assert_eq!(a.get("/console/").await.status, StatusCode::OK);
    assert_eq!(b.get("/console/").await.status, StatusCode::SEE_OTHER);
    // The wrong current password changes nothing.
    let p = a.change_password("wrong", "yet-another-password").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"password-error\""));

    // Signing out ends the session at FM, not just in the browser.
    let kept = a.cookie.clone();
    let p = a.post("/console/logout", &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.set_cookie.unwrap().contains("Max-Age=0"));
    a.cookie = kept;
    assert_eq!(a.get("/console/").await.status, StatusCode::SEE_OTHER);

    // Disabling a user ends their sessions.
    let mut c = Console::new(&t.api.base);
    c.login("dora", "another-long-password").await;
    assert_eq!(c.get("/console/").await.status, StatusCode::OK);
    t.app.user_set_disabled("dora", true).await.unwrap();
    assert_eq!(c.get("/console/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_user_whose_password_fm_chose_must_change_it_first() {
    let t = TestApp::new().await;
    let made = t.app.user_create("erin", Role::Admin, None).await.unwrap();
    let mut c = Console::new(&t.api.base);
    let p = c.login("erin", &made.password).await;
    assert_eq!(p.location.as_deref(), Some("/console/account/password"));
    let p = c.get("/console/instances").await;
    assert_eq!(p.location.as_deref(), Some("/console/account/password"));
    let p = c
        .change_password(&made.password, "erins-own-password")
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(c.get("/console/instances").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_rest_api_takes_a_key_and_never_a_session_cookie() {
    let t = TestApp::new().await;
    let c = signed_in(&t, "frank", Role::Admin).await;
    let resp = reqwest::Client::new()
        .get(t.api.url("/tenants/main/instances"))
        .header("cookie", format!("fm_session={}", c.cookie.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // And a key's request is named in the audit log by the id it answers.
    let resp = reqwest::Client::new()
        .post(
            t.api
                .url("/tenants/main/virtual-networks?useDefaultValues=true"),
        )
        .basic_auth(&t.api.key.0, Some(&t.api.key.1))
        .json(&serde_json::json!({"label": "n"}))
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let rows = audit(&t).await;
    let row = rows.iter().find(|r| r["requestId"] == rid).expect("row");
    assert_eq!(row["actor"], "admin");
}

#[tokio::test]
async fn a_form_refused_by_the_api_shows_its_message_beside_the_field_and_keeps_the_input() {
    let t = TestApp::new().await;
    let mut c = signed_in(&t, "gina", Role::Admin).await;
    let p = c
        .post(
            "/console/templates",
            &[
                ("label", ""),
                ("description", "kept"),
                ("action_type_0", "ADD_ENV_VARIABLES"),
                ("action_params_0", "{not json"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"setupActions-error\""), "{}", p.body);
    assert!(p.body.contains("value=\"kept\""), "the input is kept");
    assert!(p.body.contains("{not json"), "the input is kept");
    let p = c
        .post(
            "/console/templates",
            &[
                ("label", "tpl"),
                ("action_type_0", "ADD_ENV_VARIABLES"),
                (
                    "action_params_0",
                    r#"{"variables": [{"key": "A", "value": "1"}]}"#,
                ),
                ("action_enabled_0", "on"),
                ("action_order_0", "2"),
                ("action_type_1", "INSTALL_SYSTEM_PACKAGES"),
                ("action_params_1", r#"{"packages": ["jq"]}"#),
                ("action_order_1", "1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, tpls) = t.api.get("/tenants/main/instance-settings-templates").await;
    let acts = &tpls[0]["setupActions"];
    assert_eq!(
        acts[0]["type"], "INSTALL_SYSTEM_PACKAGES",
        "ordered by 'order'"
    );
    assert_eq!(acts[0]["enabled"], false, "unticked: disabled");
    assert_eq!(acts[1]["type"], "ADD_ENV_VARIABLES");
    assert_eq!(acts[1]["enabled"], true);
}

#[tokio::test]
async fn pages_forbid_framing_and_inline_script_and_htmx_is_served_with_its_pinned_hash() {
    let t = TestApp::new().await;
    let mut c = Console::new(&t.api.base);
    let resp = reqwest::get(format!("{}/console/login", t.api.base))
        .await
        .unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let page = resp.text().await.unwrap();
    let src = page
        .split("<script src=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    assert!(page.contains("integrity=\"sha384-"), "{page}");
    let js = c.get(&src).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("htmx"), "{src}");
    assert_eq!(
        c.get("/console/static/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_admin_makes_users_and_keys_whose_secrets_are_shown_once() {
    let t = TestApp::new().await;
    let mut a = signed_in(&t, "hana", Role::Admin).await;
    let p = a
        .post("/console/users", &[("name", "ivan"), ("role", "operator")])
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let shown = |body: &str| {
        body.split("id=\"shown-value\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .map(str::to_string)
    };
    let password = shown(&p.body).expect("the one-time password is shown");
    assert!(
        !a.get("/console/users").await.body.contains(&password),
        "only once"
    );
    let mut i = Console::new(&t.api.base);
    let login = i.login("ivan", &password).await;
    assert_eq!(login.location.as_deref(), Some("/console/account/password"));
    let p = i.change_password(&password, PASSWORD).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    // ivan is an operator: the users page is not there for him.
    assert_eq!(i.get("/console/users").await.status, StatusCode::NOT_FOUND);

    let p = a
        .post(
            "/console/api-keys",
            &[
                ("user", "ivan"),
                ("role", "viewer"),
                ("days", "7"),
                ("label", "ci"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let secret = shown(&p.body).expect("the key's secret is shown");
    let id = p
        .body
        .split("The secret of key ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let resp = reqwest::Client::new()
        .get(t.api.url("/tenants/main/instances"))
        .basic_auth(&id, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A key above its user's role is refused, beside nothing lost.
    let p = a
        .post("/console/api-keys", &[("user", "ivan"), ("role", "admin")])
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"form-error\""), "{}", p.body);
    // Revoked, it stops at once.
    let p = a.post(&format!("/console/api-keys/{id}/delete"), &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let resp = reqwest::Client::new()
        .get(t.api.url("/tenants/main/instances"))
        .basic_auth(&id, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Disabling ivan ends his session.
    let p = a.post("/console/users/ivan/disable", &[]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(i.get("/console/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_edit_names_the_changes_that_wait_for_a_reprovisioning() {
    let t = TestApp::new().await;
    let inst = t.api.new_instance().await;
    let mut o = signed_in(&t, "jo", Role::Operator).await;
    let form = o.get(&format!("/console/instances/{inst}/edit")).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains("value=\"node\""),
        "the current label is filled in"
    );
    assert!(
        form.body.contains("name=\"backupPolicy.encrypt\" checked"),
        "the stored schedule is filled in"
    );
    let p = o
        .post(
            &format!("/console/instances/{inst}/edit"),
            &[("label", "renamed"), ("imageId", "dss-14.2.0-default")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let to = p.location.unwrap();
    assert_eq!(
        to,
        format!("/console/instances/{inst}?saved=1"),
        "a label needs no reprovisioning"
    );
    let p = o
        .post(
            &format!("/console/instances/{inst}/edit"),
            &[
                ("label", "renamed"),
                ("imageId", "dss-13.5.4-default"),
                ("cloudInstanceType", "m5.4xlarge"),
            ],
        )
        .await;
    let to = p.location.expect("redirect");
    assert!(to.ends_with("pending=cloudInstanceType%2CimageId"), "{to}");
    let page = o.get(&to).await;
    assert!(
        page.body.contains("id=\"requires-reprovisioning\""),
        "{}",
        page.body
    );
    let (_, i) = t.api.get(&format!("/tenants/main/instances/{inst}")).await;
    assert_eq!(i["label"], "renamed");
    assert_eq!(i["imageId"], "dss-13.5.4-default");
    // A bad value comes back beside its field, the input kept.
    let p = o
        .post(
            &format!("/console/instances/{inst}/edit"),
            &[
                ("label", "renamed"),
                ("imageId", "dss-13.5.4-default"),
                ("dataVolumeSizeGB", "lots"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(
        p.body.contains("id=\"dataVolumeSizeGB-error\""),
        "{}",
        p.body
    );
    assert!(p.body.contains("value=\"lots\""));
    // Tags and schedules: tags wait for a reprovisioning, schedules don't.
    let p = o
        .post(
            &format!("/console/instances/{inst}/edit"),
            &[
                ("label", "renamed"),
                ("imageId", "dss-13.5.4-default"),
                ("cloudInstanceType", "m5.4xlarge"),
                ("cloudTags", "team=data\r\n env = prod \r\n"),
                ("fmTags", "blue, nightly"),
                ("enableAutomatedSnapshot", "on"),
                ("automatedSnapshotPeriod", "6"),
                ("automatedSnapshotRetention", "4"),
                ("backupPolicy.enabled", "on"),
                ("backupPolicy.periodHours", "12"),
                ("backupPolicy.keepLast", "3"),
                ("backupPolicy.encrypt", "on"),
            ],
        )
        .await;
    let to = p.location.expect("redirect");
    assert!(to.ends_with("pending=cloudTags"), "{to}");
    let (_, i) = t.api.get(&format!("/tenants/main/instances/{inst}")).await;
    assert_eq!(
        i["cloudTags"],
        serde_json::json!({"team": "data", "env": "prod"})
    );
    assert_eq!(i["fmTags"], serde_json::json!(["blue", "nightly"]));
    assert_eq!(i["enableAutomatedSnapshot"], true);
    assert_eq!(i["automatedSnapshotPeriod"], 6);
    assert_eq!(i["automatedSnapshotRetention"], 4);
    assert_eq!(i["backupPolicy"]["enabled"], true);
    assert_eq!(i["backupPolicy"]["periodHours"], 12);
    assert_eq!(i["backupPolicy"]["keepLast"], 3);
    let form = o.get(&format!("/console/instances/{inst}/edit")).await;
    assert!(form.body.contains("env=prod\nteam=data"), "{}", form.body);
    // A tag line without '=': refused beside the tags, nothing changed.
    let p = o
        .post(
            &format!("/console/instances/{inst}/edit"),
            &[
                ("label", "renamed"),
                ("imageId", "dss-13.5.4-default"),
                ("cloudTags", "team"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"cloudTags-error\""), "{}", p.body);
    let (_, after) = t.api.get(&format!("/tenants/main/instances/{inst}")).await;
    assert_eq!(after, i);
}

#[tokio::test]
async fn a_template_edit_keeps_its_masked_secrets_and_names_the_instances_it_reaches() {
    let t = TestApp::new().await;
    let mut a = signed_in(&t, "kim", Role::Admin).await;
    let secret_key = "-----BEGIN OPENSSH PRIVATE KEY----- kim-only";
    let p = a
        .post(
            "/console/templates",
            &[
                ("label", "with-secret"),
                ("action_type_0", "ADD_SSH_KEY"),
                (
                    "action_params_0",
                    &serde_json::json!({ "sshKey": secret_key }).to_string(),
                ),
                ("action_enabled_0", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, tpls) = t.api.get("/tenants/main/instance-settings-templates").await;
    let id = tpls[0]["id"].as_str().unwrap().to_string();
    let form = a.get(&format!("/console/templates/{id}/edit")).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(!form.body.contains("kim-only"), "the secret is not shown");
    assert!(form.body.contains("********"), "it is shown masked");
    // Saved as shown, with a second action added: the secret stays (FM
    // refuses a mask it has no stored value for, so the save proves it).
    let params = form
        .body
        .split("name=\"action_params_0\"")
        .nth(1)
        .and_then(|r| r.split('>').nth(1))
        .and_then(|r| r.split("</textarea").next())
        .unwrap()
        .replace("&quot;", "\"")
        .replace("&#34;", "\"");
    let p = a
        .post(
            &format!("/console/templates/{id}/edit"),
            &[
                ("label", "renamed"),
                ("action_type_0", "ADD_SSH_KEY"),
                ("action_params_0", &params),
                ("action_enabled_0", "on"),
                ("action_type_1", "INSTALL_SYSTEM_PACKAGES"),
                ("action_params_1", r#"{"packages": ["jq"]}"#),
                ("action_enabled_1", "on"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(
        p.location.as_deref(),
        Some(format!("/console/templates?saved={id}").as_str())
    );
    let (_, tpl) = t
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{id}"))
        .await;
    assert_eq!(tpl["label"], "renamed");
    assert_eq!(tpl["setupActions"][0]["params"]["sshKey"], "********");
    assert_eq!(tpl["setupActions"][1]["type"], "INSTALL_SYSTEM_PACKAGES");
}

#[tokio::test]
async fn a_network_edit_says_when_its_instances_must_be_reprovisioned() {
    let t = TestApp::new().await;
    let inst = t.api.new_instance().await;
    let (_, i) = t.api.get(&format!("/tenants/main/instances/{inst}")).await;
    let net = i["virtualNetworkId"].as_str().unwrap().to_string();
    let mut a = signed_in(&t, "lee", Role::Admin).await;
    let form = a.get(&format!("/console/networks/{net}/edit")).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("vpc-1"), "the fixed placement is shown");
    assert!(!form.body.contains("name=\"awsVpcId\""), "but not editable");
    // The label alone: nothing to reprovision.
    let p = a
        .post(
            &format!("/console/networks/{net}/edit"),
            &[("label", "renamed"), ("awsAssignPublicIP", "on")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let page = a.get(p.location.as_deref().unwrap()).await;
    assert!(page.body.contains("Saved renamed."), "{}", page.body);
    assert!(!page.body.contains("requires-reprovisioning"));
    // The public IP: its one instance must be reprovisioned.
    let p = a
        .post(
            &format!("/console/networks/{net}/edit"),
            &[("label", "renamed")],
        )
        .await;
    let page = a.get(p.location.as_deref().unwrap()).await;
    assert!(
        page.body
            .contains("This change requires reprovisioning the network's 1 instance(s)."),
        "{}",
        page.body
    );
    let (_, n) = t
        .api
        .get(&format!("/tenants/main/virtual-networks/{net}"))
        .await;
    assert_eq!(n["label"], "renamed");
    assert_eq!(n["awsAssignPublicIP"], false);
    assert_eq!(n["awsVpcId"], "vpc-1", "the placement is kept");
    // How nodes are reached: HTTPS, then a choice the API does not know.
    let p = a
        .post(
            &format!("/console/networks/{net}/edit"),
            &[
                ("label", "renamed"),
                ("httpsStrategy", "SELF_SIGNED"),
                ("httpStrategy", "REDIRECT"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let page = a.get(p.location.as_deref().unwrap()).await;
    assert!(
        page.body.contains("requires-reprovisioning"),
        "{}",
        page.body
    );
    let (_, n) = t
        .api
        .get(&format!("/tenants/main/virtual-networks/{net}"))
        .await;
    assert_eq!(n["httpsStrategy"], "SELF_SIGNED");
    assert_eq!(n["httpStrategy"], "REDIRECT");
    let form = a.get(&format!("/console/networks/{net}/edit")).await;
    assert!(
        form.body
            .contains("<option value=\"SELF_SIGNED\" selected>"),
        "{}",
        form.body
    );
    let p = a
        .post(
            &format!("/console/networks/{net}/edit"),
            &[("label", "renamed"), ("httpsStrategy", "PLEASE")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"httpsStrategy-error\""), "{}", p.body);
    let (_, n) = t
        .api
        .get(&format!("/tenants/main/virtual-networks/{net}"))
        .await;
    assert_eq!(
        n["httpsStrategy"], "SELF_SIGNED",
        "a refused edit changes nothing"
    );
    // An operator may not edit networks.
    let mut o = signed_in(&t, "max", Role::Operator).await;
    assert_eq!(
        o.get(&format!("/console/networks/{net}/edit")).await.status,
        StatusCode::NOT_FOUND
    );
    let p = o
        .post(&format!("/console/networks/{net}/edit"), &[("label", "x")])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_sign_in_posted_without_its_forms_token_signs_nobody_in() {
    let t = TestApp::new().await;
    t.app
        .user_create("nina", Role::Viewer, Some(PASSWORD.into()))
        .await
        .unwrap();
    let form = |extra: Option<String>| {
        let mut f = vec![
            ("name".to_string(), "nina".to_string()),
            ("password".to_string(), PASSWORD.to_string()),
        ];
        if let Some(x) = extra {
            f.push(("login_csrf".into(), x));
        }
        f
    };
    // A form posted from elsewhere: no token, or another browser's.
    let mut other = Console::new(&t.api.base);
    let theirs = common::field_in(&other.get("/console/login").await.body, "login_csrf");
    let mut c = Console::new(&t.api.base);
    for f in [form(None), form(theirs)] {
        let p = c.post_raw("/console/login", &f).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        assert!(p.set_cookie.is_none(), "no session");
        assert!(p.body.contains("sign in again"), "{}", p.body);
    }
    // Loaded first, as a browser does, it works.
    assert_eq!(
        c.login("nina", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

/// Waits until no operation runs on `instance`; returns its status.
async fn settled(t: &TestApp, instance: &str) -> fleet_manager::model::lifecycle::InstanceStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = t.app.active_operation(instance, 1).await.unwrap().is_some();
        if !busy {
            return t.app.instance_status("main", instance).await.unwrap();
        }
        assert!(Instant::now() < deadline, "{instance} never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_operator_upgrades_by_image_and_clones_a_backup_and_a_refused_upgrade_changes_nothing() {
    let t = sim_app().await;
    let net = t.api.create_network().await;
    let tpl = t.api.create_template().await;
    let (s, i) = t
        .api
        .post(
            "/tenants/main/instances",
            serde_json::json!({"label": "old-node", "instanceSettingsTemplateId": tpl,
                "virtualNetworkId": net, "imageId": "dss-13.5.4-default"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{i}");
    let inst = i["id"].as_str().unwrap().to_string();
    common::assert_done(&common::act(&t.api, &inst, "reprovision").await);
    let mut o = signed_in(&t, "olga", Role::Operator).await;

    let form = o.get(&format!("/console/instances/{inst}/upgrade")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("it runs 13.5.4 now"), "{}", form.body);
    assert!(
        form.body.contains("13.5.4 (13.5.4) · current"),
        "{}",
        form.body
    );
    // An image that does not exist: said beside the field.
    let p = o
        .post(
            &format!("/console/instances/{inst}/upgrade"),
            &[("imageId", "dss-99-nope")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"imageId-error\""), "{}", p.body);
    let p = o
        .post(
            &format!("/console/instances/{inst}/upgrade"),
            &[("imageId", "dss-14.2.0-default")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(
        p.location.as_deref(),
        Some(format!("/console/instances/{inst}").as_str())
    );
    let st = settled(&t, &inst).await;
    assert_eq!(st.state, "running");
    assert_eq!(st.node_version.flatten().as_deref(), Some("14.2.0"));
    // Back to the older version without saying so: refused, nothing changed.
    let p = o
        .post(
            &format!("/console/instances/{inst}/upgrade"),
            &[("imageId", "dss-13.5.4-default")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("would downgrade the node"), "{}", p.body);
    let (_, now) = t.api.get(&format!("/tenants/main/instances/{inst}")).await;
    assert_eq!(now["imageId"], "dss-14.2.0-default");
    assert!(t.app.active_operation(&inst, 1).await.unwrap().is_none());

    // A backup, then its clone from the console.
    let (s, f) = t
        .api
        .post(
            &format!("/tenants/main/instances/{inst}/backups"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    let done = t.api.wait_future(f["jobId"].as_str().unwrap()).await;
    common::assert_done(&done);
    let backup = done["result"]["id"]
        .as_str()
        .expect("the backup's id")
        .to_string();
    let page = o.get(&format!("/console/instances/{inst}")).await;
    let clone_at = format!("/console/instances/{inst}/backups/{backup}/clone");
    assert!(page.body.contains(&clone_at), "no clone link");
    let form = o.get(&clone_at).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body.contains("value=\"old-node-clone\""),
        "{}",
        form.body
    );
    let p = o.post(&clone_at, &[("label", ""), ("imageId", "")]).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("id=\"label-error\""), "{}", p.body);
    let p = o
        .post(&clone_at, &[("label", "the-clone"), ("imageId", "")])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let at = p.location.expect("the clone's page");
    let clone = at.strip_prefix("/console/instances/").unwrap().to_string();
    assert_ne!(clone, inst);
    let st = settled(&t, &clone).await;
    assert_eq!(st.state, "running");
    let (_, c) = t.api.get(&format!("/tenants/main/instances/{clone}")).await;
    assert_eq!(c["label"], "the-clone");
    assert_eq!(c["imageId"], "dss-14.2.0-default");
    let images = o.get("/console/images").await;
    assert!(
        images.body.contains("dss-13.5.4-default"),
        "{}",
        images.body
    );
}

#[tokio::test]
async fn an_admin_keeps_a_cloud_accounts_secret_write_only_from_the_console() {
    let t = sim_app().await;
    let mut a = signed_in(&t, "ada", Role::Admin).await;
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let fields = |secret: &'static str| {
        vec![
            ("label", "prod"),
            ("awsAuthenticationMode", "KEYPAIR"),
            ("awsAccessKeyId", "AKIAIOSFODNN7EXAMPLE"),
            ("awsSecretAccessKey", secret),
        ]
    };
    // A key without its secret: said beside the secret's field, kept input.
    let p = a.post("/console/accounts", &fields("")).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(
        p.body.contains("id=\"awsSecretAccessKey-error\""),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("value=\"AKIAIOSFODNN7EXAMPLE\""),
        "{}",
        p.body
    );
    let p = a.post("/console/accounts", &fields(secret)).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let list = a.get(p.location.as_deref().unwrap()).await;
    assert!(list.body.contains("Saved prod."), "{}", list.body);
    assert!(list.body.contains("(secret stored)"), "{}", list.body);
    let (_, all) = t.api.get("/tenants/main/cloud-accounts").await;
    let id = all[0]["id"].as_str().unwrap().to_string();
    let edit = a.get(&format!("/console/accounts/{id}/edit")).await;
    assert!(!edit.body.contains(secret), "the secret is shown");
    assert!(edit.body.contains("one is stored"), "{}", edit.body);
    // Saved again with the secret left empty: the stored one stays.
    let mut again = fields("");
    again[0] = ("label", "production");
    let p = a
        .post(&format!("/console/accounts/{id}/edit"), &again)
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, got) = t
        .api
        .get(&format!("/tenants/main/cloud-accounts/{id}"))
        .await;
    assert_eq!(got["label"], "production");
    assert_eq!(got["hasAwsSecretAccessKey"], true);
    // Who may not change accounts finds no form.
    let mut v = signed_in(&t, "vic", Role::Viewer).await;
    assert_eq!(
        v.get("/console/accounts/new").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        v.get(&format!("/console/accounts/{id}/edit")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_operator_follows_pauses_and_cancels_a_rollout_and_a_viewer_only_reads_it() {
    let t = sim_app().await;
    let net = t.api.create_network().await;
    let tpl = t.api.create_template().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = t.api.create_instance(&tpl, &net).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        common::assert_done(&common::act(&t.api, &id, "reprovision").await);
        ids.push(id);
    }
    // A long health watch keeps the first target in flight.
    let r = common::rollout_create(
        &t.api,
        serde_json::json!({"label": "restart all", "selector": {"instanceIds": ids},
            "action": {"type": "RESTART_NODE"}, "healthSeconds": 3600,
            "healthTimeoutSeconds": 3600}),
    )
    .await;
    let rid = r["id"].as_str().unwrap().to_string();
    let mut o = signed_in(&t, "olga", Role::Operator).await;
    let list = o.get("/console/rollouts").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("restart all"), "{}", list.body);
    assert!(list.body.contains(&format!("/console/rollouts/{rid}")));

    let page = o.get(&format!("/console/rollouts/{rid}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("RESTART_NODE"), "{}", page.body);
    assert!(page.body.contains(&ids[0]), "{}", page.body);
    assert!(
        page.body.contains("hx-trigger=\"every 2s\""),
        "polled while it runs"
    );
    assert!(
        page.body
            .contains(&format!("/console/rollouts/{rid}/pause"))
    );

    let p = o.post(&format!("/console/rollouts/{rid}/pause"), &[]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let live = o.get(&format!("/console/rollouts/{rid}/live")).await;
    assert!(live.body.contains("data-state=\"paused\""), "{}", live.body);
    assert!(
        live.body
            .contains(&format!("/console/rollouts/{rid}/resume"))
    );
    // Pausing twice is refused with FM's message.
    let p = o.post(&format!("/console/rollouts/{rid}/pause"), &[]).await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.body);
    assert!(p.body.contains("is paused"), "{}", p.body);

    // A viewer reads it, sees no button and can't move it.
    let mut v = signed_in(&t, "vera", Role::Viewer).await;
    let page = v.get(&format!("/console/rollouts/{rid}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("/cancel"), "{}", page.body);
    let p = v
        .post(&format!("/console/rollouts/{rid}/cancel"), &[])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    let p = o
        .post(&format!("/console/rollouts/{rid}/cancel"), &[])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let (_, now) = t.api.get(&format!("/tenants/main/rollouts/{rid}")).await;
    assert_eq!(now["state"], "cancelling", "{now}");
    let moves: Vec<Value> = audit(&t)
        .await
        .into_iter()
        .filter(|r| {
            r["actor"] == "olga"
                && r["path"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("/console/rollouts/")
        })
        .collect();
    assert_eq!(
        moves.iter().filter(|r| r["outcome"] == "ok").count(),
        2,
        "the pause and the cancel: {moves:?}"
    );
    t.stop().await;
}
