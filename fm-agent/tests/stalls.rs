//! A stalled download, a command past its deadline and commands resent
//! while queued can't hold the agent's command worker: each fails (or runs
//! once) and the next command is answered.

mod common;

use common::{Agent, AgentDirs, FakeFm, free_port, make_kit};
use fm_proto::agent::command::Kind;
use fm_proto::agent::{Command, InstallNode, Ping, RunSetupActions, SetupAction};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);

fn cmd(id: &str, kind: Kind, timeout_secs: u32) -> Command {
    Command {
        command_id: id.to_owned(),
        kind: Some(kind),
        timeout_secs,
    }
}

/// An HTTP server that answers every request with headers promising 100
/// bytes, then sends nothing and holds the connection; (address, number of
/// connections so far).
async fn stalling_server() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(s);
            });
        }
    });
    (format!("http://{addr}"), conns)
}

fn jdbc_from(url: &str) -> Kind {
    Kind::RunSetupActions(RunSetupActions {
        stage: "after_install".into(),
        actions: vec![SetupAction {
            r#type: "INSTALL_JDBC_DRIVER".into(),
            params_json: serde_json::json!({"url": url, "dbType": "postgresql"}).to_string(),
        }],
    })
}

/// FM, one agent (user-data plus `extra`) with a session open.
async fn connected(tmp: &tempfile::TempDir, extra: &str) -> (FakeFm, AgentDirs, Agent) {
    let fm = FakeFm::start(&["tok-1"]).await;
    let dirs = AgentDirs::new(tmp.path(), "a");
    dirs.write_user_data(&fm, "inst-a", "tok-1", 10);
    dirs.append_user_data(extra);
    let agent = Agent::spawn(&dirs);
    fm.wait("the first session's hello", WAIT, |s| {
        !s.hellos().is_empty()
    })
    .await;
    (fm, dirs, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_jdbc_download_fails_within_the_idle_timeout_and_a_ping_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let (fm, dirs, _agent) = connected(&tmp, "download_idle_timeout_secs = 2\n").await;
    let (base, conns) = stalling_server().await;
    let t = Instant::now();
    fm.send(cmd("jdbc-1", jdbc_from(&format!("{base}/pg.jar")), 0))
        .await;
    fm.send(cmd("ping-1", Kind::Ping(Ping {}), 0)).await;
    let r = fm.result("jdbc-1", 1, WAIT).await;
    assert!(!r.ok, "{r:?}");
    assert!(r.error.contains("no data within 2 s"), "{}", r.error);
    let ping = fm.result("ping-1", 1, WAIT).await;
    assert!(ping.ok, "{ping:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    assert!(
        !dirs.data.join("lib/jdbc/postgresql/pg.jar").exists(),
        "nothing installed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_deadline_fails_and_duplicates_queued_behind_it_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    // The download itself would wait a minute for data: FM's 3 s decide.
    let (fm, dirs, _agent) = connected(&tmp, "").await;
    let (base, _) = stalling_server().await;
    let (kit, _, _, sha) = make_kit(tmp.path(), "14.2.0");
    let install = Kind::Install(InstallNode {
        kit_url: format!("file://{}", kit.display()),
        kit_sha256: sha,
        node_version: "14.2.0".into(),
        node_type: "design".into(),
        port: u32::from(free_port()),
        allow_downgrade: false,
    });
    let t = Instant::now();
    fm.send(cmd("stuck", jdbc_from(&format!("{base}/pg.jar")), 3))
        .await;
    // Resent while queued (as FM does after a reconnect): runs once.
    fm.send(cmd("inst-1", install.clone(), 0)).await;
    fm.send(cmd("inst-1", install, 0)).await;
    fm.send(cmd("ping-2", Kind::Ping(Ping {}), 0)).await;
    let r = fm.result("stuck", 1, WAIT).await;
    assert!(!r.ok, "{r:?}");
    assert!(r.error.contains("timed out"), "{}", r.error);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let installed = fm.result("inst-1", 1, WAIT).await;
    assert!(installed.ok, "{installed:?}");
    // The ping was queued after both copies: by its answer, a second run
    // would have answered too.
    let ping = fm.result("ping-2", 1, WAIT).await;
    assert!(ping.ok, "{ping:?}");
    assert_eq!(fm.with(|s| s.results("inst-1").len()), 1, "one answer");
    assert_eq!(dirs.installer_runs(), 1, "the installer ran once");
}
