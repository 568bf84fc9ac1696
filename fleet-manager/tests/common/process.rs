//! The real `fleet-manager` binary as a child process, the admin CLI, and
//! the local cloud's VM processes a test must not leave behind.

use super::*;

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

/// The live (not zombie) processes whose command line mentions `dir`'s
/// local cloud (VM agents and the nodes they started): (their /proc dir,
/// command line).
fn local_cloud_procs(dir: &std::path::Path) -> Vec<(PathBuf, String)> {
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
            out.push((e.path(), cmd));
        }
    }
    out
}

/// Processes whose command line mentions `dir`'s local cloud (VM agents
/// and the nodes they started), zombies aside.
pub fn procs_under(dir: &std::path::Path) -> Vec<String> {
    local_cloud_procs(dir)
        .into_iter()
        .map(|(_, cmd)| cmd)
        .collect()
}

/// The real user id of each live process of the test's local cloud whose
/// command line holds `what`.
pub fn uids_of(dir: &std::path::Path, what: &str) -> Vec<u32> {
    local_cloud_procs(dir)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains(what))
        .filter_map(|(proc_dir, _)| {
            let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|u| u.parse().ok())
        })
        .collect()
}

/// A PEM CSR for a fresh key, CN = `instance` (what an enrolling agent
/// sends).
pub fn csr(instance: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, instance);
    params.serialize_request(&key).unwrap().pem().unwrap()
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
        if !env.iter().any(|(k, _)| k.as_ref() == "FM_GRPC_LISTEN") {
            cmd.env("FM_GRPC_LISTEN", "127.0.0.1:0");
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
