//! The one test harness: every test gets its own fresh database (a SQLite
//! file, or a new PostgreSQL database when `FM_TEST_BACKEND=postgres`) and
//! either an in-process server ([`TestApp`]) or the real binary
//! ([`FmProcess`]).
//!
//! Beside it: `chaos.rs` (a proxy that cuts the database off), `console.rs`
//! (a client of the console: its cookie, its CSRF token), `process.rs`
//! (the real binary and the local cloud's processes), `ec2.rs` (the EC2
//! rig), `lifecycle.rs` (helpers of the lifecycle suites).
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
        // The local cloud's nodes run as their own user when the tests run
        // as root: it must pass through to their dirs.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .expect("chmod tempdir");
        }
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
        cfg.grpc_listen = "127.0.0.1:0".parse().expect("addr");
        // Packaging node kits takes a while; lifecycle tests turn it back on.
        cfg.lifecycle.standin_bin = PathBuf::from("/nonexistent/standin-node");
        cfg
    }
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

    /// An instance in a new network from a new template; its id.
    pub async fn new_instance(&self) -> String {
        let net = self.create_network().await;
        let tpl = self.create_template().await;
        self.create_instance(&tpl, &net).await["id"]
            .as_str()
            .expect("id")
            .to_string()
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
            .api_key_create("admin", None, None, Some("test".into()))
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

    /// A client acting as a new user `name` with `role`, through a key of
    /// that user.
    pub async fn api_as(&self, name: &str, role: fleet_manager::model::user::Role) -> Api {
        self.app.user_create(name, role, None).await.expect("user");
        let k = self
            .app
            .api_key_create(name, None, None, None)
            .await
            .expect("key");
        Api {
            key: (k.id, k.secret),
            ..self.api.clone()
        }
    }

    /// The public gRPC API's URL.
    pub fn grpc_url(&self) -> String {
        format!(
            "http://{}",
            self.running.as_ref().expect("running").grpc_addr
        )
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

    /// Stops the server and hands back its database (and data dir), to
    /// start another server on it.
    pub async fn into_db(mut self) -> TestDb {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
        self.db
    }
}

mod chaos;
mod console;
mod ec2;
mod lifecycle;
mod process;
mod rollouts;

// Each suite uses a part of the harness.
#[allow(unused_imports)]
pub use {chaos::*, console::*, ec2::*, lifecycle::*, process::*, rollouts::*};
