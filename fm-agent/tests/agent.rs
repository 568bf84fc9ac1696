//! The real `fm-agent` binary against a fake FM: enrollment, mutual-TLS
//! sessions, generations across restarts, and commands run exactly once.

mod common;

use common::{Agent, AgentDirs, FakeFm, NodeGuard, free_port, make_kit};
use fm_proto::agent::command::Kind;
use fm_proto::agent::{
    Command, InstallNode, NodeState, Ping, RunSetupActions, SetupAction, StartNode, StopNode,
};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn cmd(id: &str, kind: Kind) -> Command {
    Command {
        command_id: id.to_owned(),
        kind: Some(kind),
        timeout_secs: 0,
    }
}

fn install(kit_url: &str, sha: &str, version: &str, port: u16) -> Kind {
    Kind::Install(InstallNode {
        kit_url: kit_url.to_owned(),
        kit_sha256: sha.to_owned(),
        node_version: version.to_owned(),
        node_type: "design".to_owned(),
        port: u32::from(port),
        allow_downgrade: false,
    })
}

/// FM, one agent enrolled with a session open.
async fn connected(tmp: &tempfile::TempDir, heartbeat_secs: u64) -> (FakeFm, AgentDirs, Agent) {
    let fm = FakeFm::start(&["tok-1"]).await;
    let dirs = AgentDirs::new(tmp.path(), "a");
    dirs.write_user_data(&fm, "inst-a", "tok-1", heartbeat_secs);
    let agent = Agent::spawn(&dirs);
    fm.wait("the first session's hello", WAIT, |s| {
        !s.hellos().is_empty()
    })
    .await;
    (fm, dirs, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_enrolls_then_holds_a_mutual_tls_session() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, _agent) = connected(&tmp, 10).await;
    let (session, hello) = fm.with(|s| s.hellos()[0].clone());
    assert_eq!(session, 1);
    assert_eq!(hello.instance_id, "inst-a");
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(hello.journal.is_empty());
    for f in ["agent.crt", "agent.key"] {
        let mode = std::fs::metadata(dirs.state.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // A heartbeat follows at once.
    fm.wait("a heartbeat", WAIT, |s| !s.heartbeats().is_empty())
        .await;
    let hb = fm.with(|s| s.heartbeats()[0].2.clone());
    assert_eq!(hb.node_state, NodeState::NotInstalled as i32);
    assert!(hb.os_disk_total_bytes > 0 && hb.memory_total_bytes > 0);
    // Commands flow back.
    fm.send(cmd("ping-1", Kind::Ping(Ping {}))).await;
    let r = fm.result("ping-1", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    assert!(r.output_json.contains("agentTimeMs"));
    // The session was only possible with the issued certificate.
    assert_eq!(fm.with(|s| s.enroll_attempts), 1);
    let anonymous = tonic::transport::Endpoint::from_shared(fm.url())
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&fm.ca_pem))
                .domain_name("127.0.0.1"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = fm_proto::agent::agent_service_client::AgentServiceClient::new(anonymous)
        .session(tokio_stream::iter(
            Vec::<fm_proto::agent::AgentMessage>::new(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_token_is_refused_and_the_agent_keeps_retrying() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, first_dirs, _first) = connected(&tmp, 10).await;
    let dirs = AgentDirs::new(tmp.path(), "b");
    dirs.write_user_data(&fm, "inst-b", "tok-1", 10);
    let mut second = Agent::spawn(&dirs);
    fm.wait("three refused enrollments", WAIT, |s| {
        s.enroll_refusals >= 3
    })
    .await;
    assert!(second.is_running(), "the agent must not give up");
    assert!(!dirs.state.join("agent.crt").exists());
    assert_eq!(
        fm.with(|s| s.hellos().len()),
        1,
        "no session without a certificate"
    );
    let log = dirs.log_text();
    assert!(log.contains("enrollment refused"), "{log}");
    for text in [log, first_dirs.log_text()] {
        assert!(!text.contains("tok-1"), "the token must never be logged");
        assert!(!text.contains("PRIVATE KEY"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_grow_within_a_run_and_across_agent_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, mut agent) = connected(&tmp, 1).await;
    fm.wait("three heartbeats", WAIT, |s| s.heartbeats().len() >= 3)
        .await;
    agent.kill();
    let before: Vec<u64> = fm.with(|s| s.messages.iter().map(|(_, m)| m.generation).collect());
    assert!(before.windows(2).all(|w| w[0] < w[1]), "{before:?}");
    assert!(matches!(
        fm.with(|s| s.messages[0].1.body.clone()),
        Some(fm_proto::agent::agent_message::Body::Hello(_))
    ));
    let boot_before = before[0] >> 32;

    let _agent = Agent::spawn(&dirs);
    fm.wait("two heartbeats after the restart", WAIT, |s| {
        s.heartbeats().iter().filter(|(n, _, _)| *n == 2).count() >= 2
    })
    .await;
    // No second enrollment: the stored certificate was used.
    assert_eq!(fm.with(|s| s.enroll_attempts), 1);
    let after: Vec<u64> = fm.with(|s| {
        s.messages
            .iter()
            .filter(|(n, _)| *n == 2)
            .map(|(_, m)| m.generation)
            .collect()
    });
    assert!(after.windows(2).all(|w| w[0] < w[1]), "{after:?}");
    assert!(after[0] > *before.last().unwrap());
    assert_eq!(after[0] >> 32, boot_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_after_fm_goes_away_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut fm, dirs, mut agent) = connected(&tmp, 1).await;
    fm.wait("a heartbeat", WAIT, |s| !s.heartbeats().is_empty())
        .await;
    fm.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.is_running());
    let last_before = fm.with(|s| s.messages.last().unwrap().1.generation);
    fm.restart().await;
    fm.wait("a heartbeat on a new session", WAIT, |s| {
        s.heartbeats().iter().any(|(n, _, _)| *n >= 2)
    })
    .await;
    let (n, hello) = fm.with(|s| s.hellos().last().unwrap().clone());
    assert!(n >= 2);
    assert_eq!(hello.instance_id, "inst-a");
    let first_after = fm.with(|s| {
        s.messages
            .iter()
            .find(|(m, _)| *m == n)
            .map(|(_, m)| m.generation)
            .unwrap()
    });
    assert!(first_after > last_before);
    assert_eq!(first_after >> 32, last_before >> 32, "same agent run");
    assert_eq!(fm.with(|s| s.enroll_attempts), 1);
    let log = dirs.log_text();
    assert!(log.contains("reconnecting in"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_failing_verification_fails_the_install_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, _agent) = connected(&tmp, 10).await;
    let (_, name, bytes, sha) = make_kit(tmp.path(), "14.2.0");
    fm.add_kit(&name, bytes);
    let wrong = "ab".repeat(32);
    fm.send(cmd(
        "install-bad",
        install(&format!("fm:kits/{name}"), &wrong, "14.2.0", free_port()),
    ))
    .await;
    let r = fm.result("install-bad", 1, WAIT).await;
    assert!(!r.ok);
    assert_eq!(
        r.error,
        format!("kit {name} failed verification: expected sha256 {wrong}, got {sha}")
    );
    let kits = dirs.state.join("kits");
    let left: Vec<_> = std::fs::read_dir(&kits)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(dirs.installer_runs(), 0);
    assert!(!dirs.data.join("dss-version.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_fetch_failing_while_fm_is_away_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, _agent) = connected(&tmp, 10).await;
    let (_, name, bytes, sha) = make_kit(tmp.path(), "14.2.0");
    fm.add_kit(&name, bytes);
    fm.fail_next_kit_fetches(2);
    fm.send(cmd(
        "install",
        install(&format!("fm:kits/{name}"), &sha, "14.2.0", free_port()),
    ))
    .await;
    let r = fm.result("install", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(fm.with(|s| s.kit_fetches), 3);
    let lines = fm.with(|s| s.progress("install"));
    let retries = lines.iter().filter(|l| l.contains("retrying in")).count();
    assert_eq!(retries, 2, "{lines:?}");
    assert_eq!(dirs.installer_runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_start_and_stop_drive_the_node_and_the_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, _agent) = connected(&tmp, 1).await;
    let _node = NodeGuard(dirs.data.clone());
    let (_, name, bytes, sha) = make_kit(tmp.path(), "14.2.0");
    fm.add_kit(&name, bytes);
    let port = free_port();
    fm.send(cmd(
        "install",
        install(&format!("fm:kits/{name}"), &sha, "14.2.0", port),
    ))
    .await;
    let r = fm.result("install", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    let out: serde_json::Value = serde_json::from_str(&r.output_json).unwrap();
    assert_eq!(out["nodeVersion"], "14.2.0");
    assert_eq!(out["initialPassword"], "initial-pw-123");
    assert!(out.get("adminApiKey").is_none());
    let lines = fm.with(|s| s.progress("install"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("installing 14.2.0 into")),
        "{lines:?}"
    );
    assert!(dirs.state.join("kits").join(&name).exists());
    assert!(
        dirs.state
            .join("kits/standin-kit-14.2.0/standin-kit-14.2.0/installer.sh")
            .exists()
    );
    fm.wait("a STOPPED heartbeat", WAIT, |s| {
        s.heartbeats().last().is_some_and(|(_, _, h)| {
            h.node_state == NodeState::Stopped as i32 && h.node_version == "14.2.0"
        })
    })
    .await;

    fm.send(cmd(
        "start",
        Kind::Start(StartNode {
            health_timeout_secs: 20,
        }),
    ))
    .await;
    let r = fm.result("start", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    let seen = fm.with(|s| s.heartbeats().len());
    fm.wait("a RUNNING heartbeat", WAIT, |s| {
        s.heartbeats()[seen..]
            .iter()
            .any(|(_, _, h)| h.node_state == NodeState::Running as i32)
    })
    .await;

    // An older kit over the newer node is refused.
    let (_, old_name, old_bytes, old_sha) = make_kit(tmp.path(), "14.1.0");
    fm.add_kit(&old_name, old_bytes);
    fm.send(cmd(
        "downgrade",
        install(&format!("fm:kits/{old_name}"), &old_sha, "14.1.0", port),
    ))
    .await;
    let r = fm.result("downgrade", 1, WAIT).await;
    assert_eq!(
        r.error,
        "refusing to downgrade the node from 14.2.0 to 14.1.0"
    );

    fm.send(cmd("stop", Kind::Stop(StopNode {}))).await;
    let r = fm.result("stop", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    let seen = fm.with(|s| s.heartbeats().len());
    fm.wait("a STOPPED heartbeat after stop", WAIT, |s| {
        s.heartbeats()[seen..]
            .iter()
            .any(|(_, _, h)| h.node_state == NodeState::Stopped as i32)
    })
    .await;
    assert_eq!(dirs.installer_runs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_sent_twice_runs_once_even_across_an_agent_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, mut agent) = connected(&tmp, 10).await;
    let (path, _, _, sha) = make_kit(tmp.path(), "14.2.0");
    let kind = install(
        &format!("file://{}", path.display()),
        &sha,
        "14.2.0",
        free_port(),
    );
    fm.send(cmd("c1", kind.clone())).await;
    let first = fm.result("c1", 1, WAIT).await;
    assert!(first.ok, "{first:?}");
    fm.send(cmd("c1", kind.clone())).await;
    let second = fm.result("c1", 2, WAIT).await;
    assert_eq!(second, first);
    assert_eq!(dirs.installer_runs(), 1);

    agent.kill();
    let _agent = Agent::spawn(&dirs);
    fm.wait("the hello after the restart", WAIT, |s| {
        s.hellos().len() >= 2
    })
    .await;
    let hello = fm.with(|s| s.hellos()[1].1.clone());
    assert_eq!(
        hello.journal,
        vec![first.clone()],
        "FM learns the outcome again"
    );
    fm.send(cmd("c1", kind)).await;
    let third = fm.result("c1", 3, WAIT).await;
    assert_eq!(third, first);
    assert_eq!(dirs.installer_runs(), 1, "the installer ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_actions_land_and_running_them_again_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, _agent) = connected(&tmp, 10).await;
    // A driver archive holding the jar among other files.
    let pkg = tmp.path().join("pkg");
    std::fs::create_dir_all(pkg.join("drv/lib")).unwrap();
    std::fs::write(pkg.join("drv/lib/pg.jar"), b"jar").unwrap();
    std::fs::write(pkg.join("drv/README"), b"readme").unwrap();
    let archive = tmp.path().join("pg-driver.tar.gz");
    assert!(
        std::process::Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&pkg)
            .arg("drv")
            .status()
            .unwrap()
            .success()
    );
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----";
    let actions = [
        (
            "ADD_AUTHORIZED_KEY",
            serde_json::json!({"sshKey": "ssh-ed25519 AAAAC3 ops@example"}),
        ),
        (
            "ADD_ENV_VARIABLES",
            serde_json::json!({"variables": [{"key": "JAVA_OPTS", "value": "-Xmx2g -Dx='y'"}]}),
        ),
        (
            "ADD_PROPERTIES",
            serde_json::json!({"properties": [{"key": "dku.feature", "value": "on"}]}),
        ),
        (
            "SETUP_PROXY",
            serde_json::json!({"httpProxy": "http://proxy:3128", "noProxy": "localhost"}),
        ),
        ("ADD_CA_TO_TRUSTSTORE", serde_json::json!({"cert": cert})),
        (
            "INSTALL_JDBC_DRIVER",
            serde_json::json!({
                "url": format!("file://{}", archive.display()),
                "dbType": "postgresql",
                "pathsInArchive": ["drv/lib/pg.jar"],
            }),
        ),
        ("INSTALL_SOMETHING_CLOUDY", serde_json::json!({})),
    ];
    let req = Kind::RunSetupActions(RunSetupActions {
        stage: "after_install".into(),
        actions: actions
            .iter()
            .map(|(t, p)| SetupAction {
                r#type: (*t).to_owned(),
                params_json: p.to_string(),
            })
            .collect(),
    });
    let files = [
        dirs.home.join(".ssh/authorized_keys"),
        dirs.data.join("bin/env-site.sh"),
        dirs.data.join("config/dip.properties"),
        dirs.home.join(".fm/ca-bundle.pem"),
        dirs.data.join("lib/jdbc/postgresql/pg.jar"),
    ];
    fm.send(cmd("setup-1", req.clone())).await;
    let r = fm.result("setup-1", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    let first: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect();
    assert_eq!(first[0], "ssh-ed25519 AAAAC3 ops@example\n");
    assert!(
        first[1].contains("export JAVA_OPTS='-Xmx2g -Dx='\\''y'\\'''\n"),
        "{}",
        first[1]
    );
    assert!(first[1].contains("export HTTP_PROXY='http://proxy:3128'\n"));
    assert!(first[1].contains("export no_proxy='localhost'\n"));
    assert!(first[2].contains("dku.feature=on\n"));
    assert!(first[3].contains("MIIBfake"));
    assert_eq!(first[4], "jar");
    let jdbc_dir: Vec<_> = std::fs::read_dir(dirs.data.join("lib/jdbc/postgresql"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        jdbc_dir,
        ["pg.jar"],
        "only the listed path, no archive left"
    );
    let ssh_mode = std::fs::metadata(dirs.home.join(".ssh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(ssh_mode & 0o777, 0o700);
    let lines = fm.with(|s| s.progress("setup-1"));
    assert!(
        lines.contains(&"setup action 2/7 ADD_ENV_VARIABLES: done".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"setup action INSTALL_SOMETHING_CLOUDY: skipped (not applicable on this platform)"
                .to_owned()
        )
    );

    // A new command id runs them again: nothing changes.
    fm.send(cmd("setup-2", req)).await;
    let r = fm.result("setup-2", 1, WAIT).await;
    assert!(r.ok, "{r:?}");
    let second: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(second, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_data_file_missing_a_key_exits_with_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let fm = FakeFm::start(&[]).await;
    let dirs = AgentDirs::new(tmp.path(), "a");
    dirs.write_user_data(&fm, "inst-a", "tok", 10);
    let text = std::fs::read_to_string(&dirs.user_data).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("home_dir"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&dirs.user_data, without).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fm-agent"))
        .arg("--user-data")
        .arg(&dirs.user_data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing field `home_dir`"), "{err}");
    assert!(!err.contains("tok"), "{err}");
}

/// Run with `--ignored --nocapture` (and `--release` for the shipped
/// build): RSS and CPU of an idle agent holding a session (default 10 s
/// heartbeat) for 30 s. The heap and stacks (RssAnon) must stay small in any
/// build; the whole RSS within 15 MiB in a release build (a debug binary's
/// mapped code alone is bigger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn an_idle_agent_stays_small() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, _dirs, agent) = connected(&tmp, 10).await;
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = ticks(agent.pid());
    tokio::time::sleep(Duration::from_secs(30)).await;
    let t1 = ticks(agent.pid());
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    for l in status
        .lines()
        .filter(|l| l.starts_with("Rss") || l.starts_with("Threads"))
    {
        eprintln!("{l}");
    }
    let cpu_pct = (t1 - t0) as f64 / 100.0 / 30.0 * 100.0;
    eprintln!(
        "idle agent: VmRSS {rss_kib} kB, CPU {cpu_pct:.3} % of a core over 30 s ({} ticks), heartbeats {}",
        t1 - t0,
        fm.with(|s| s.heartbeats().len())
    );
    let anon_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(anon_kib <= 8 * 1024, "RssAnon {anon_kib} kB");
    if !cfg!(debug_assertions) {
        assert!(rss_kib <= 15 * 1024, "RSS {rss_kib} kB");
    }
    assert!(cpu_pct <= 0.2, "CPU {cpu_pct} %");
}
