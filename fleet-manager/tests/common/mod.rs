//! The one test harness: every test gets its own fresh database (a SQLite
//! file, or a new PostgreSQL database when `FM_TEST_BACKEND=postgres`) and
//! either an in-process server ([`TestApp`]) or the real binary
//! ([`FmProcess`]).
#![allow(dead_code)]

use fleet_manager::app::App;
use fleet_manager::config::{Config, StoreArgs};
use fleet_manager::ops::sagas::Saga;
use fleet_manager::server::{self, Running};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// A fresh, empty database for one test, dropped with it.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg: Option<(String, String)>,
    /// The proxy `url` goes through, for [`TestDb::behind_chaos_proxy`].
    chaos: Option<ChaosProxy>,
}

pub fn backend() -> String {
    std::env::var("FM_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

fn pg_admin_url() -> String {
    std::env::var("FM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

impl TestDb {
    pub async fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        if backend() == "postgres" {
            use sqlx::Connection;
            let admin = pg_admin_url();
            let name = format!(
                "fm_test_{}",
                fleet_manager::model::new_id("db").replace('-', "_")
            );
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create database");
            let _ = conn.close().await;
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin.clone());
            let url = format!("{base}/{name}");
            TestDb {
                url,
                dir,
                pg: Some((admin, name)),
                chaos: None,
            }
        } else {
            let url = fleet_manager::store::Store::sqlite_url(dir.path());
            TestDb {
                url,
                dir,
                pg: None,
                chaos: None,
            }
        }
    }

    /// A fresh PostgreSQL database whose `url` reaches the server through a
    /// [`ChaosProxy`], so a test can cut FM off from its database. Creating
    /// and dropping the database bypass the proxy. PostgreSQL only.
    pub async fn behind_chaos_proxy() -> TestDb {
        assert_eq!(backend(), "postgres", "the chaos proxy fronts PostgreSQL");
        let mut db = TestDb::new().await;
        let (prefix, rest) = db.url.split_once('@').expect("user@host in the URL");
        let (hostport, path) = rest.split_once('/').expect("a database in the URL");
        let upstream = tokio::net::lookup_host(hostport)
            .await
            .expect("resolve the PostgreSQL address")
            .next()
            .expect("an address for PostgreSQL");
        let proxy = ChaosProxy::start(upstream).await;
        db.url = format!("{prefix}@{}/{path}", proxy.addr);
        db.chaos = Some(proxy);
        db
    }

    /// The proxy in front of the database ([`TestDb::behind_chaos_proxy`]).
    pub fn chaos(&self) -> &ChaosProxy {
        self.chaos
            .as_ref()
            .expect("a database made by TestDb::behind_chaos_proxy")
    }

    pub fn config(&self) -> Config {
        let args = StoreArgs {
            data_dir: Some(self.dir.path().to_path_buf()),
            database_url: Some(self.url.clone()),
            config: None,
            cloud: None,
        };
        let mut cfg = Config::resolve(&args, Some("127.0.0.1:0")).expect("config");
        cfg.engine.poll_interval = Duration::from_millis(50);
        cfg.lifecycle.agent_listen = "127.0.0.1:0".parse().expect("addr");
        // Packaging node kits takes a while; lifecycle tests turn it back on.
        cfg.lifecycle.standin_bin = PathBuf::from("/nonexistent/standin-node");
        cfg
    }
}

/// A TCP proxy on 127.0.0.1 in front of a database server, whose network a
/// test can break: [`ChaosProxy::break_networking`] resets every open
/// connection and, until [`ChaosProxy::restore_networking`], resets each new
/// one as soon as it is accepted, so clients see the server go away at once
/// (no half-open socket to wait on). Dropping it resets every connection.
pub struct ChaosProxy {
    pub addr: std::net::SocketAddr,
    broken: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> ChaosProxy {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the chaos proxy");
        let addr = listener.local_addr().expect("proxy address");
        let broken = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accept = {
            let (broken, forwarded, refused) = (broken.clone(), forwarded.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    // Subscribed before the check: a break from here on
                    // reaches this connection too.
                    let mut cut = broken.subscribe();
                    if *cut.borrow_and_update() {
                        refused.fetch_add(1, Relaxed);
                        let _ = client.set_zero_linger();
                        continue;
                    }
                    forwarded.fetch_add(1, Relaxed);
                    tokio::spawn(async move {
                        let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                            let _ = client.set_zero_linger();
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.wait_for(|b| *b) => {
                                let _ = client.set_zero_linger();
                                let _ = server.set_zero_linger();
                            }
                        }
                    });
                }
            })
        };
        ChaosProxy {
            addr,
            broken,
            forwarded,
            refused,
            accept,
        }
    }

    /// Resets every open connection and every new one until restored.
    pub fn break_networking(&self) {
        self.broken.send_replace(true);
    }

    /// Forwards new connections again.
    pub fn restore_networking(&self) {
        self.broken.send_replace(false);
    }

    /// Connections forwarded to the server so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections reset on arrival while the network was broken.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.broken.send_replace(true);
    }
}

/// Kills every process of the local cloud's VMs under `dir` (agents and
/// the nodes they started), so no test leaves one running.
pub fn kill_local_vms(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("local-cloud").join("vms")) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("vm.json")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let groups = v["groups"].as_array().cloned().unwrap_or_default();
        for g in groups
            .iter()
            .filter_map(Value::as_u64)
            .chain(v["pid"].as_u64())
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{g}")])
                .status();
        }
    }
}

/// Processes whose command line mentions `dir`'s local cloud (VM agents
/// and the nodes they started), zombies aside.
pub fn procs_under(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.join("local-cloud").display().to_string();
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if cmd.contains(&needle) && !zombie {
            out.push(cmd);
        }
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        kill_local_vms(self.dir.path());
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside any runtime we may use; do it on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .ok()?;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// An HTTP client holding an API key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub key: (String, String),
    pub http: reqwest::Client,
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/public{path}", self.base)
    }

    /// Sends a request with the key and a JSON body; returns status and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .basic_auth(&self.key.0, Some(&self.key.1));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Polls a future until it has finished; returns its peeked state.
    pub async fn wait_future(&self, job_id: &str) -> Value {
        for _ in 0..600 {
            let (s, f) = self
                .get(&format!("/tenants/main/futures/{job_id}?peek=true"))
                .await;
            assert_eq!(s, StatusCode::OK, "{f}");
            if f["alive"] == false {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("future {job_id} did not finish");
    }

    // Object builders used across tests.

    pub async fn create_network(&self) -> String {
        let (s, n) = self
            .post(
                "/tenants/main/virtual-networks",
                serde_json::json!({"label": "net", "awsRegion": "eu-west-3", "awsVpcId": "vpc-1", "awsSubnetId": "subnet-1"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{n}");
        n["id"].as_str().expect("id").to_string()
    }

    pub async fn create_template(&self) -> String {
        let (s, t) = self
            .post(
                "/tenants/main/instance-settings-templates",
                serde_json::json!({"label": "tpl"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{t}");
        t["id"].as_str().expect("id").to_string()
    }

    pub async fn create_instance(&self, template: &str, network: &str) -> Value {
        let (s, i) = self
            .post(
                "/tenants/main/instances",
                serde_json::json!({"label": "node", "instanceSettingsTemplateId": template,
                    "virtualNetworkId": network, "imageId": "dss-14.2.0-default"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{i}");
        i
    }
}

/// An in-process server on a fresh database.
pub struct TestApp {
    pub api: Api,
    pub app: App,
    pub db: TestDb,
    running: Option<Running>,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(|_| {}, vec![]).await
    }

    /// A server whose configuration `tune` adjusts, with extra sagas.
    pub async fn with(tune: impl FnOnce(&mut Config), sagas: Vec<Saga>) -> TestApp {
        Self::on(TestDb::new().await, tune, sagas).await
    }

    /// A server on a given database.
    pub async fn on(db: TestDb, tune: impl FnOnce(&mut Config), sagas: Vec<Saga>) -> TestApp {
        let mut cfg = db.config();
        tune(&mut cfg);
        let app = server::open_app_with(&cfg, sagas).await.expect("open app");
        let key = app
            .api_key_create(Some("test".into()))
            .await
            .expect("api key");
        let running = server::start(app.clone(), &cfg).await.expect("start");
        let api = Api {
            base: format!("http://{}", running.addr),
            key: (key.id, key.secret),
            http: reqwest::Client::new(),
        };
        TestApp {
            api,
            app,
            db,
            running: Some(running),
        }
    }

    /// Where the agent endpoint listens.
    pub fn agent_addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").agent_addr
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// The real `fleet-manager` binary as a child process.
pub struct FmProcess {
    pub child: std::process::Child,
    pub api: Api,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fleet-manager"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// The environment of a real FM process that runs instances: an agent port
/// of its own (the same after a restart, as agents' user-data names it),
/// one-second heartbeats, a block of node ports from `port_base`, then
/// `extra`.
pub fn lifecycle_env(port_base: u32, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "FM_AGENT_LISTEN".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ),
        ("FM_HEARTBEAT_SECS".to_string(), "1".to_string()),
        (
            "FM_LOCAL_PORT_BASE".to_string(),
            (port_base + (std::process::id() % 50) * 20).to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// Creates an API key through the admin CLI.
pub fn cli_create_key(db: &TestDb) -> (String, String) {
    let out = admin(db.dir.path(), &db.url, &["create-api-key"]);
    let v: Value = serde_json::from_slice(&out).expect("one JSON object on stdout");
    (
        v["id"].as_str().expect("id").into(),
        v["secret"].as_str().expect("secret").into(),
    )
}

/// Runs `fleet-manager admin ARGS` on a data dir and database; it must
/// succeed. Returns its standard output.
pub fn admin(dir: &std::path::Path, url: &str, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(bin())
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--database-url", url])
        .output()
        .expect("run fleet-manager admin");
    assert!(
        out.status.success(),
        "admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl FmProcess {
    /// Starts `fleet-manager serve` on the test database with extra env.
    pub async fn start(
        db: &TestDb,
        key: &(String, String),
        env: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> FmProcess {
        Self::start_on(db.dir.path(), &db.url, key, env).await
    }

    /// Starts `fleet-manager serve` with this data dir and database.
    pub async fn start_on(
        dir: &std::path::Path,
        url: &str,
        key: &(String, String),
        env: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> FmProcess {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("serve.log"))
            .expect("log file");
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["serve", "--data-dir"])
            .arg(dir)
            .args([
                "--database-url",
                url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log);
        if !env.iter().any(|(k, _)| k.as_ref() == "FM_AGENT_LISTEN") {
            cmd.env("FM_AGENT_LISTEN", format!("127.0.0.1:{}", free_port()));
        }
        for (k, v) in env {
            cmd.env(k.as_ref(), v.as_ref());
        }
        let child = cmd.spawn().expect("spawn fleet-manager");
        let api = Api {
            base: format!("http://127.0.0.1:{port}"),
            key: key.clone(),
            http: reqwest::Client::new(),
        };
        // Owned from here on: dropping it (also on panic) kills the child.
        let fm = FmProcess { child, api };
        for _ in 0..200 {
            let probe = fm
                .api
                .http
                .get(fm.api.url("/tenants/main/images"))
                .basic_auth(&key.0, Some(&key.1));
            if probe.send().await.is_ok_and(|r| r.status().is_success()) {
                return fm;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fleet-manager did not start; see {}",
            dir.join("serve.log").display()
        );
    }

    /// Kills the process at once (SIGKILL): no graceful shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FmProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of the test virtualenv (`scripts/python-venv.sh` makes it).
pub fn venv_python() -> PathBuf {
    let p = match std::env::var_os("FM_VENV") {
        Some(v) => PathBuf::from(v).join("bin/python"),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/fleet-manager/venv/bin/python"),
    };
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/python-venv.sh` first (the test command does)",
        p.display()
    );
    p
}

/// The EC2 test rig (`tests/aws/ec2_rig.py`): the moto emulator behind a
/// fault-injecting, call-counting proxy, and a player that runs a real
/// `fm-agent` for every emulated instance. Dropping it stops it and every
/// agent it started.
pub struct Ec2Rig {
    child: std::process::Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

pub const RIG_REGION: &str = "eu-west-1";

impl Ec2Rig {
    pub async fn start() -> Ec2Rig {
        Self::start_with(&[]).await
    }

    /// With extra arguments (`--no-vms`).
    pub async fn start_with(args: &[&str]) -> Ec2Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("rig.log");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/aws/ec2_rig.py");
        let child = std::process::Command::new(venv_python())
            .arg(script)
            .arg("--root")
            .arg(dir.path())
            .arg("--agent-bin")
            .arg(fleet_manager::config::sibling_binary("fm-agent"))
            .args(args)
            .stdout(std::fs::File::create(&out).expect("rig log"))
            .stderr(std::fs::File::create(dir.path().join("rig.err")).expect("rig log"))
            .spawn()
            .expect("start the EC2 rig");
        let mut rig = Ec2Rig {
            child,
            url: String::new(),
            dir,
            http: reqwest::Client::new(),
        };
        for _ in 0..600 {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("READY proxy="))
                .and_then(|r| r.split_whitespace().next())
            {
                rig.url = format!("http://127.0.0.1:{port}");
                return rig;
            }
            if let Ok(Some(st)) = rig.child.try_wait() {
                panic!(
                    "the EC2 rig exited ({st}): {}",
                    std::fs::read_to_string(rig.dir.path().join("rig.err")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the EC2 rig did not start in 30 s");
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("rig")
            .json()
            .await
            .expect("rig JSON")
    }

    /// FM's resources in the emulator, read through the EC2 API by FM's
    /// ownership tags: `{"instances": [...], "volumes": [...], ...}`.
    pub async fn owned(&self) -> Value {
        self.get("/rig/owned").await
    }

    /// EC2 calls FM made (`{"calls": {action: n}, "faults": {...}}`).
    pub async fn stats(&self) -> Value {
        self.get("/rig/stats").await
    }

    pub async fn reset_stats(&self) {
        self.http
            .post(format!("{}/rig/reset-stats", self.url))
            .send()
            .await
            .expect("rig");
    }

    /// Share of EC2 calls answered with a fault from now on.
    pub async fn set_fault_rate(&self, rate: f64) {
        self.http
            .post(format!("{}/rig/config", self.url))
            .json(&serde_json::json!({"faultRate": rate}))
            .send()
            .await
            .expect("rig");
    }

    /// The next call of `action` fails with this EC2 error.
    pub async fn fail_next(&self, action: &str, status: u16, code: &str, message: &str) {
        self.http
            .post(format!("{}/rig/config", self.url))
            .json(&serde_json::json!({"failNext": {action: {"status": status, "code": code, "message": message}}}))
            .send()
            .await
            .expect("rig");
    }

    /// The environment of an FM on the `aws` cloud against this rig, its
    /// default network being the emulator's default VPC.
    pub async fn fm_env(&self) -> Vec<(String, String)> {
        let d = self.get(&format!("/rig/defaults/{RIG_REGION}")).await;
        [
            ("FM_CLOUD", "aws"),
            ("FM_AWS_ENDPOINT_URL", &self.url),
            ("FM_AWS_AMIS", "ami-0fa1ca7e5e1f00d00"),
            ("FM_AWS_NODE_HOST", "127.0.0.1"),
            ("FM_AWS_BACKOFF_MS", "20"),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("FM_DEFAULT_REGION", RIG_REGION),
            ("FM_DEFAULT_VPC_ID", d["vpcId"].as_str().expect("vpc")),
            (
                "FM_DEFAULT_SUBNET_ID",
                d["subnetId"].as_str().expect("subnet"),
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Calls the emulator directly, as someone else would (not through the
    /// proxy, not counted): `StopInstances`, `StartInstances` or
    /// `TerminateInstances` of one instance.
    pub async fn behind_fms_back(&self, action: &str, instance: &str) {
        let r = self
            .http
            .post(format!("{}/rig/ec2", self.url))
            .json(&serde_json::json!({"action": action, "instanceId": instance, "region": RIG_REGION}))
            .send()
            .await
            .expect("rig");
        assert!(
            r.status().is_success(),
            "{action}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Creates a volume straight in the emulator with these tags (a leak
    /// to find); returns its id.
    pub async fn create_volume_behind_fms_back(&self, tags: Value) -> String {
        let r: Value = self
            .http
            .post(format!("{}/rig/ec2", self.url))
            .json(
                &serde_json::json!({"action": "CreateVolume", "tags": tags, "region": RIG_REGION}),
            )
            .send()
            .await
            .expect("rig")
            .json()
            .await
            .expect("rig JSON");
        r["id"].as_str().expect("volume id").to_string()
    }

    /// Live resources of one kind that belong to an FM instance.
    pub async fn owned_by(&self, kind: &str, instance: &str) -> Vec<Value> {
        self.owned().await[kind]
            .as_array()
            .expect("list")
            .iter()
            .filter(|r| r["instance"] == instance)
            .cloned()
            .collect()
    }
}

impl Drop for Ec2Rig {
    fn drop(&mut self) {
        // SIGTERM: the rig stops its agents, then exits.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Lifecycle helpers shared by the lifecycle suites (local and aws).

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

/// The VM records of the local cloud under a data dir: (vm id, agent pid).
pub fn local_vms(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir.join("local-cloud").join("vms")) {
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path().join("vm.json")) {
                let v: Value = serde_json::from_str(&text).unwrap();
                if let Some(pid) = v["pid"].as_u64() {
                    out.push((v["vm_id"].as_str().unwrap().to_string(), pid));
                }
            }
        }
    }
    out
}
