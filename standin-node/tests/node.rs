//! Integration tests of a running stand-in node: `bin/dss` lifecycle, the
//! HTTP API, `bin/dsscli user-edit`, upgrades of a node with data, and the
//! never-healthy and simulated-hang test aids. Every test that starts a node
//! holds a [`NodeGuard`] so the node is stopped even on failure.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn installed(tmp: &std::path::Path, version: &str, node_type: &str) -> (std::path::PathBuf, u16) {
    let kit = kit(tmp, version, false);
    let data = tmp.join("data");
    let port = free_port();
    install(&kit, &data, port, node_type);
    (data, port)
}

#[test]
fn node_lifecycle_serves_the_api_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = installed(tmp.path(), "13.5.4", "automation");
    std::fs::write(
        data.join("bin/env-site.sh"),
        "# site env\nexport STANDIN_TEST_GREETING=\"hello world\"\nPLAIN=1\n",
    )
    .unwrap();
    std::fs::write(data.join("config/dip.properties"), "logging.level=DEBUG\n").unwrap();
    let _guard = NodeGuard::new(&data);

    let out = dss(&data, "start");
    assert_success(&out, "dss start");
    assert!(data.join("run/node.pid").is_file());

    let health = get(port, "/api/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));

    let status = get(port, "/api/status").json();
    assert_eq!(status["product"], "standin-node");
    assert_eq!(status["version"], "13.5.4");
    assert_eq!(status["nodeType"], "automation");
    assert_eq!(status["dataDir"], data.to_str().unwrap());
    assert!(status["startedAtMs"].as_u64().unwrap() > 0);
    assert_eq!(
        status["envVariables"]["STANDIN_TEST_GREETING"],
        "hello world"
    );
    assert_eq!(status["envVariables"]["PLAIN"], "1");
    assert_eq!(status["properties"]["logging.level"], "DEBUG");
    assert_eq!(status["upgradeHistory"], serde_json::json!([]));

    let page = get(port, "/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Stand-in node (not Dataiku DSS)"));
    assert!(page.text().contains("13.5.4"));

    let out = dss(&data, "status");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).trim(), "RUNNING");

    // Starting again while running is fine.
    assert_success(&dss(&data, "start"), "second dss start");

    let out = dss(&data, "stop");
    assert_success(&out, "dss stop");
    assert!(!data.join("run/node.pid").exists());
    let out = dss(&data, "status");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out).trim(), "STOPPED");
    assert!(http(port, "GET", "/api/health", b"", Duration::from_secs(2)).is_err());

    // Stopping a stopped node is fine too.
    assert_success(&dss(&data, "stop"), "dss stop when stopped");
}

#[test]
fn values_can_be_stored_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = installed(tmp.path(), "13.5.4", "design");
    let _guard = NodeGuard::new(&data);
    assert_success(&dss(&data, "start"), "dss start");

    let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let put = request(port, "PUT", "/api/values/my_key-1", &payload);
    assert_eq!(put.status, 204);
    let got = get(port, "/api/values/my_key-1");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, payload);
    assert_eq!(
        std::fs::read(data.join("values/my_key-1")).unwrap(),
        payload
    );

    let missing = get(port, "/api/values/nothing");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());

    let bad = request(port, "PUT", "/api/values/bad.key", b"x");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].is_string());
    let long_key = "k".repeat(65);
    assert_eq!(get(port, &format!("/api/values/{long_key}")).status, 400);

    let too_big = vec![b'x'; 1024 * 1024 + 1];
    assert_eq!(
        request(port, "PUT", "/api/values/big", &too_big).status,
        413
    );
    let max = vec![b'x'; 1024 * 1024];
    assert_eq!(request(port, "PUT", "/api/values/big", &max).status, 204);
}

#[test]
fn user_edit_changes_the_password_checked_by_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = installed(tmp.path(), "13.5.4", "design");
    let _guard = NodeGuard::new(&data);
    assert_success(&dss(&data, "start"), "dss start");

    let initial = std::fs::read_to_string(data.join("config/initial-admin-password")).unwrap();
    let check = |login: &str, password: &str| {
        let body = serde_json::json!({"login": login, "password": password}).to_string();
        request(port, "POST", "/api/auth/check", body.as_bytes()).status
    };
    assert_eq!(check("admin", initial.trim()), 200);
    assert_eq!(check("admin", "x"), 401);

    let out = dsscli(&data, &["user-edit", "admin", "--password", "x"]);
    assert_success(&out, "dsscli user-edit");
    assert_eq!(check("admin", "x"), 200);
    assert_eq!(check("admin", initial.trim()), 401);
    assert_eq!(check("nobody", "x"), 401);
    assert!(
        !std::fs::read_to_string(data.join("config/users.json"))
            .unwrap()
            .contains("\"x\"")
    );
    assert_eq!(
        request(port, "POST", "/api/auth/check", b"not json").status,
        400
    );
}

#[test]
fn unknown_dsscli_commands_exit_2_with_usage() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = installed(tmp.path(), "13.5.4", "design");
    let out = dsscli(&data, &["user-delete", "admin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("usage: dsscli"), "{}", stderr(&out));
}

#[test]
fn status_of_a_never_started_node_is_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = installed(tmp.path(), "13.5.4", "design");
    let out = dss(&data, "status");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out).trim(), "STOPPED");
    assert_success(&dss(&data, "stop"), "dss stop of a never-started node");
}

#[test]
fn upgrade_keeps_values_and_records_history() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = installed(tmp.path(), "13.5.4", "automation");
    let new = kit(tmp.path(), "14.2.0", false);
    let _guard = NodeGuard::new(&data);

    assert_success(&dss(&data, "start"), "dss start");
    assert_eq!(
        request(port, "PUT", "/api/values/survivor", b"still here").status,
        204
    );
    assert_success(&dss(&data, "stop"), "dss stop");

    let out = installer(&new, &["-d", data.to_str().unwrap(), "-u", "-y"]);
    assert_success(&out, "upgrade");

    assert_success(&dss(&data, "start"), "dss start after upgrade");
    let status = get(port, "/api/status").json();
    assert_eq!(status["version"], "14.2.0");
    assert_eq!(status["nodeType"], "automation");
    assert_eq!(
        status["upgradeHistory"],
        serde_json::json!(["13.5.4 -> 14.2.0"])
    );
    assert_eq!(get(port, "/api/values/survivor").body, b"still here");
}

#[test]
fn start_refuses_a_data_dir_written_by_a_newer_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = installed(tmp.path(), "13.5.4", "design");
    let _guard = NodeGuard::new(&data);
    std::fs::write(
        data.join("dss-version.json"),
        r#"{"product_version": "14.2.0", "node_type": "design"}"#,
    )
    .unwrap();
    let out = dss(&data, "start");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("this data dir was written by a newer version (14.2.0); this node is 13.5.4"),
        "{}",
        stderr(&out)
    );
    assert!(!data.join("run/node.pid").exists());
}

#[test]
fn never_healthy_kit_answers_503_on_health() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", true);
    let data = tmp.path().join("data");
    let port = free_port();
    install(&kit, &data, port, "design");
    assert!(data.join("bin/NEVER_HEALTHY").is_file());
    let _guard = NodeGuard::new(&data);
    assert_success(&dss(&data, "start"), "dss start");

    let health = get(port, "/api/health");
    assert_eq!(health.status, 503);
    assert_eq!(health.json(), serde_json::json!({"status": "unhealthy"}));
    assert_eq!(get(port, "/api/status").status, 200);
}

#[test]
fn debug_hang_makes_every_request_hang_but_stop_still_works() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = installed(tmp.path(), "13.5.4", "design");
    let _guard = NodeGuard::new(&data);
    assert_success(&dss(&data, "start"), "dss start");

    assert_eq!(request(port, "POST", "/api/debug/hang", b"").status, 200);
    let err = http(port, "GET", "/api/health", b"", Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "expected a timeout, got {err}"
    );

    let started = Instant::now();
    assert_success(&dss(&data, "stop"), "dss stop of a hung node");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(dss(&data, "status").status.code(), Some(3));
}

#[test]
fn restart_gives_a_new_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, port) = installed(tmp.path(), "13.5.4", "api");
    let _guard = NodeGuard::new(&data);
    assert_success(&dss(&data, "start"), "dss start");
    let first = get(port, "/api/status").json()["startedAtMs"]
        .as_u64()
        .unwrap();
    let pid1 = std::fs::read_to_string(data.join("run/node.pid")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_success(&dss(&data, "restart"), "dss restart");
    let pid2 = std::fs::read_to_string(data.join("run/node.pid")).unwrap();
    assert_ne!(pid1, pid2);
    let second = get(port, "/api/status").json()["startedAtMs"]
        .as_u64()
        .unwrap();
    assert!(second > first);
}

#[test]
fn start_fails_when_the_port_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let kit = kit(tmp.path(), "13.5.4", false);
    let data = tmp.path().join("data");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    install(&kit, &data, port, "design");
    let _guard = NodeGuard::new(&data);
    let out = dss(&data, "start");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    assert_eq!(dss(&data, "status").status.code(), Some(3));
}
