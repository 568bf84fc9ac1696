//! Lifecycle helpers shared by the lifecycle suites (local and aws).

use super::*;

/// Starts an action and waits for its future; returns the final state.
pub async fn act(api: &Api, instance: &str, action: &str) -> Value {
    let job = start(api, instance, action).await;
    api.wait_future(&job).await
}

/// Starts an action; returns its future's job id.
pub async fn start(api: &Api, instance: &str, action: &str) -> String {
    let (s, f) = api
        .get(&format!(
            "/tenants/main/instances/{instance}/actions/{action}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{action}: {f}");
    f["jobId"].as_str().unwrap().to_string()
}

pub fn assert_done(f: &Value) {
    assert_eq!(
        f["state"],
        "done",
        "{}",
        serde_json::to_string_pretty(f).unwrap()
    );
}

pub async fn node_get(url: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
}

/// Polls a future until its log has a line containing `needle`.
pub async fn wait_log(api: &Api, job: &str, needle: &str) {
    for _ in 0..1200 {
        let (_, f) = api
            .get(&format!("/tenants/main/futures/{job}?peek=true"))
            .await;
        if f["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(needle)))
        {
            return;
        }
        assert_eq!(
            f["alive"], true,
            "the operation ended before '{needle}': {f}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log line '{needle}' in future {job}");
}

pub fn count_lines(f: &Value, needle: &str) -> usize {
    f["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.as_str().is_some_and(|l| l.contains(needle)))
        .count()
}

/// An in-process FM ready for the lifecycle: kits published, quick
/// heartbeats, futures answered at once. Each test gives its own block of
/// node ports (`base`), so tests running side by side never share one;
/// blocks stay below the kernel's ephemeral ports (32768 and up), where a
/// client connection could already hold a node's port;
/// `tune` adjusts the rest.
pub async fn lifecycle_app(
    base: u16,
    tune: impl FnOnce(&mut fleet_manager::config::Config),
) -> TestApp {
    for b in ["fm-agent", "standin-node"] {
        assert!(
            fleet_manager::config::sibling_binary(b).exists(),
            "{b} is not built: run `cargo build --workspace` first"
        );
    }
    TestApp::with(
        |cfg| {
            cfg.lifecycle.standin_bin = fleet_manager::config::sibling_binary("standin-node");
            cfg.lifecycle.heartbeat_secs = 1;
            cfg.lifecycle.agent_timeout = Duration::from_secs(4);
            cfg.lifecycle.health_timeout_secs = 30;
            cfg.lifecycle.agent_connect_timeout = Duration::from_secs(30);
            debug_assert!(
                base + 1000 <= 32768,
                "node ports must stay below the ephemeral range"
            );
            cfg.lifecycle.port_base = base + (std::process::id() % 50) as u16 * 20;
            cfg.future_wait = Duration::ZERO;
            tune(cfg);
        },
        vec![],
    )
    .await
}

/// A provisioned instance from a template without setup actions.
pub async fn provisioned(api: &Api) -> String {
    let (tpl, net) = setup(api, serde_json::json!([])).await;
    let id = api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_done(&act(api, &id, "reprovision").await);
    id
}

pub async fn setup(api: &Api, actions: Value) -> (String, String) {
    let net = api.create_network().await;
    let (s, t) = api
        .post(
            "/tenants/main/instance-settings-templates",
            serde_json::json!({"label": "tpl", "setupActions": actions}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    (t["id"].as_str().unwrap().to_string(), net)
}

/// An FM on the sim cloud, with kits for the catalog's images and a
/// directory for backups.
pub async fn sim_app() -> TestApp {
    sim_app_with(|_| {}).await
}

pub async fn sim_app_with(tune: impl FnOnce(&mut fleet_manager::config::Config)) -> TestApp {
    let t = TestApp::with(
        |cfg| {
            cfg.cloud.kind = fleet_manager::config::CloudKind::Sim;
            cfg.future_wait = Duration::ZERO;
            cfg.lifecycle.agent_connect_timeout = Duration::from_secs(2);
            cfg.lifecycle.command_timeout = Duration::from_secs(5);
            let dir = cfg.data_dir.join("backups");
            std::fs::create_dir_all(&dir).expect("backup dir");
            cfg.backups = Some(fm_backup::Location {
                url: format!("file://{}", dir.display()),
                ..Default::default()
            });
            tune(cfg);
        },
        vec![],
    )
    .await;
    let kit = t.db.dir.path().join("sim-kit.tar.gz");
    std::fs::write(&kit, b"a simulated node kit").expect("kit");
    for (i, v) in ["13.5.4", "14.2.0"].iter().enumerate() {
        t.app
            .image_register(&format!("dss-{v}-default"), v, v, &kit, i as i64)
            .await
            .expect("image");
    }
    t
}

/// The sim cloud of an FM started by [`sim_app`].
pub fn sim_cloud(t: &TestApp) -> fleet_manager::cloud::sim::SimCloud {
    t.app
        .engine
        .services()
        .cloud
        .as_any()
        .downcast_ref::<fleet_manager::cloud::sim::SimCloud>()
        .expect("the sim cloud")
        .clone()
}
