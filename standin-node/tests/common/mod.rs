//! Shared helpers of the stand-in node integration tests: packaging and
//! unpacking kits, installing data dirs, running `bin/dss`, a guard that
//! always stops the node, and a minimal raw HTTP/1.1 client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_standin-node");

/// The JSON line printed by `standin-node package`.
#[derive(Debug, serde::Deserialize)]
pub struct Packaged {
    pub file: PathBuf,
    pub sha256: String,
    pub version: String,
}

/// Runs `standin-node package` and parses its output.
pub fn package(out: &Path, version: &str, never_healthy: bool) -> Packaged {
    let mut cmd = Command::new(BIN);
    cmd.args(["package", "--version", version, "--out"])
        .arg(out);
    if never_healthy {
        cmd.arg("--never-healthy");
    }
    let output = cmd.output().expect("run standin-node package");
    assert_success(&output, "package");
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON line expected: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("package prints JSON")
}

/// Extracts a kit archive into `into` and returns the kit directory.
pub fn extract(archive: &Path, into: &Path, version: &str) -> PathBuf {
    std::fs::create_dir_all(into).expect("create extraction dir");
    let output = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .expect("run tar");
    assert_success(&output, "tar -x");
    let kit = into.join(format!("standin-kit-{version}"));
    assert!(
        kit.join("installer.sh").is_file(),
        "no installer in {}",
        kit.display()
    );
    kit
}

/// Packages and extracts a kit under `work`.
pub fn kit(work: &Path, version: &str, never_healthy: bool) -> PathBuf {
    let suffix = if never_healthy { "-nh" } else { "" };
    let p = package(
        &work.join(format!("out-{version}{suffix}")),
        version,
        never_healthy,
    );
    extract(
        &p.file,
        &work.join(format!("kit-{version}{suffix}")),
        version,
    )
}

/// Runs `KIT/installer.sh ARGS...`.
pub fn installer(kit: &Path, args: &[&str]) -> Output {
    Command::new(kit.join("installer.sh"))
        .args(args)
        .output()
        .expect("run installer.sh")
}

/// Fresh-installs `data` from `kit` on `port` as a `node_type` node.
pub fn install(kit: &Path, data: &Path, port: u16, node_type: &str) {
    let data_s = data.to_str().expect("utf-8 path");
    let port_s = port.to_string();
    let output = installer(kit, &["-d", data_s, "-p", &port_s, "-t", node_type]);
    assert_success(&output, "installer.sh");
}

/// Runs `DATA/bin/dss ACTION`.
pub fn dss(data: &Path, action: &str) -> Output {
    Command::new(data.join("bin/dss"))
        .arg(action)
        .output()
        .expect("run bin/dss")
}

/// Runs `DATA/bin/dsscli ARGS...`.
pub fn dsscli(data: &Path, args: &[&str]) -> Output {
    Command::new(data.join("bin/dsscli"))
        .args(args)
        .output()
        .expect("run bin/dsscli")
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stops the node of a data dir when dropped, even if the test failed:
/// `bin/dss stop`, then SIGKILL to whatever pid is left in `run/node.pid`.
pub struct NodeGuard {
    data: PathBuf,
}

impl NodeGuard {
    pub fn new(data: &Path) -> Self {
        Self {
            data: data.to_path_buf(),
        }
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let _ = Command::new(self.data.join("bin/dss")).arg("stop").output();
        // `dss stop` removes the pid file once the node is gone; if it is
        // still there, stopping failed: kill the pid outright.
        let pid_file = self.data.join("run/node.pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let pid = pid.trim();
            if !pid.is_empty() {
                let _ = Command::new("kill").args(["-KILL", pid]).output();
            }
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request over a raw TCP connection (`Connection: close`),
/// with a read timeout.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `http` with a 10 s timeout.
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Response {
    http(port, method, path, body, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, "GET", path, b"")
}
