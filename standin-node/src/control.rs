//! `DATA_DIR/bin/dss start|stop|restart|status` of a stand-in node: starts
//! the HTTP node in the background (same process group, no `setsid`), stops
//! it with SIGTERM then SIGKILL, and reports whether it runs.
//!
//! Signals are sent with the `kill` shell builtin (no libc). Liveness uses
//! `/proc/PID` when available (a zombie or a recycled pid that is not a
//! stand-in node counts as not running), else `kill -0`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::datadir::{DataDir, write_atomic};
use crate::error::{Context, Fail, Outcome};

/// How long `start` waits for the port to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);
/// Lines of `run/node.log` shown when the node fails to start.
const LOG_TAIL_LINES: usize = 20;

/// Environment variable that overrides the bind address of the node
/// (an IP address, or `IP:PORT`).
pub const BIND_ENV: &str = "STANDIN_BIND";

/// The actions of `bin/dss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DssAction {
    /// Start the node in the background and wait for its port.
    Start,
    /// Stop the node (SIGTERM, then SIGKILL after 10 s).
    Stop,
    /// Stop then start.
    Restart,
    /// Print RUNNING (exit 0) or STOPPED (exit 3).
    Status,
}

/// Result of a `dss` action: lines for stdout and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    /// Lines to print on stdout.
    pub lines: Vec<String>,
    /// Exit code.
    pub code: u8,
}

impl ActionResult {
    fn ok(line: impl Into<String>) -> Self {
        Self {
            lines: vec![line.into()],
            code: 0,
        }
    }
}

/// Runs one `dss` action on `data_dir`.
pub fn run(data_dir: &Path, action: DssAction) -> Outcome<ActionResult> {
    let dd = DataDir::new(data_dir)?;
    match action {
        DssAction::Start => start(&dd),
        DssAction::Stop => stop(&dd),
        DssAction::Restart => {
            let mut lines = stop(&dd)?.lines;
            let started = start(&dd)?;
            lines.extend(started.lines);
            Ok(ActionResult { lines, code: 0 })
        }
        DssAction::Status => Ok(status(&dd)),
    }
}

/// The address the node binds: `STANDIN_BIND` (IP or IP:PORT) or
/// `127.0.0.1:port`.
pub fn bind_addr(bind_env: Option<&str>, port: u16) -> Outcome<SocketAddr> {
    match bind_env.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        Some(s) => {
            if let Ok(addr) = s.parse::<SocketAddr>() {
                Ok(addr)
            } else if let Ok(ip) = s.parse::<IpAddr>() {
                Ok(SocketAddr::new(ip, port))
            } else {
                Err(Fail::new(format!(
                    "invalid {BIND_ENV} {s:?}: expected an IP address or IP:PORT"
                )))
            }
        }
    }
}

/// The address to probe for a node bound to `bind` (a wildcard bind is
/// probed on loopback).
pub fn probe_addr(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bind.port())
        }
        _ => bind,
    }
}

fn port_answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn start(dd: &DataDir) -> Outcome<ActionResult> {
    let data_version = dd.installed_version()?;
    let binary_version = dd.binary_version()?;
    if data_version > binary_version {
        return Err(Fail::new(format!(
            "this data dir was written by a newer version ({data_version}); this node is {binary_version}"
        )));
    }
    let port = dd.port()?;
    let env_site = dd.env_site()?;
    let bind_env = env_site
        .get(BIND_ENV)
        .cloned()
        .or_else(|| std::env::var(BIND_ENV).ok());
    let probe = probe_addr(bind_addr(bind_env.as_deref(), port)?);

    if let Some(pid) = read_pid(dd) {
        if is_alive(pid) {
            if wait_until(START_TIMEOUT, || port_answers(probe) || !is_alive(pid)) && is_alive(pid)
            {
                return Ok(ActionResult::ok(format!(
                    "stand-in node already running (pid {pid}, {probe})"
                )));
            }
            return Err(Fail::new(format!(
                "stand-in node pid {pid} is running but {probe} does not accept connections{}",
                log_tail_suffix(dd)
            )));
        }
        remove_pid_file(dd)?;
    }
    if port_answers(probe) {
        return Err(Fail::new(format!(
            "cannot start the stand-in node: {probe} is already in use by another process"
        )));
    }
    spawn_and_wait(dd, &env_site, probe)
}

fn spawn_and_wait(
    dd: &DataDir,
    env_site: &BTreeMap<String, String>,
    probe: SocketAddr,
) -> Outcome<ActionResult> {
    let run_dir = dd.join("run");
    fs::create_dir_all(&run_dir).context(|| format!("cannot create {}", run_dir.display()))?;
    let log_path = dd.log_file();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .context(|| format!("cannot open {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .context(|| format!("cannot open {}", log_path.display()))?;
    let exe = dd.join("bin/standin-node");
    // Deliberately no setsid / process_group: the node stays in the caller's
    // process group (the local test cloud kills a VM by process group).
    let mut child = Command::new(&exe)
        .arg("serve")
        .arg("--data-dir")
        .arg(dd.root())
        .envs(env_site)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .spawn()
        .context(|| format!("cannot run {}", exe.display()))?;
    let pid = child.id();
    write_atomic(&dd.pid_file(), format!("{pid}\n").as_bytes(), 0o644)
        .context(|| format!("cannot write {}", dd.pid_file().display()))?;

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if port_answers(probe) {
            return Ok(ActionResult::ok(format!(
                "stand-in node started (pid {pid}, {probe})"
            )));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = remove_pid_file(dd);
            return Err(Fail::new(format!(
                "stand-in node exited during startup ({status}){}",
                log_tail_suffix(dd)
            )));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = remove_pid_file(dd);
            return Err(Fail::new(format!(
                "stand-in node did not accept connections on {probe} within {} s{}",
                START_TIMEOUT.as_secs(),
                log_tail_suffix(dd)
            )));
        }
        sleep(POLL);
    }
}

fn stop(dd: &DataDir) -> Outcome<ActionResult> {
    let Some(pid) = read_pid(dd) else {
        remove_pid_file(dd)?;
        return Ok(ActionResult::ok("stand-in node is not running"));
    };
    if !is_alive(pid) {
        remove_pid_file(dd)?;
        return Ok(ActionResult::ok("stand-in node is not running"));
    }
    send_signal("TERM", pid);
    if !wait_until(STOP_TIMEOUT, || !is_alive(pid)) {
        send_signal("KILL", pid);
        if !wait_until(KILL_TIMEOUT, || !is_alive(pid)) {
            return Err(Fail::new(format!(
                "stand-in node pid {pid} did not die after SIGKILL"
            )));
        }
    }
    remove_pid_file(dd)?;
    Ok(ActionResult::ok(format!(
        "stand-in node stopped (pid {pid})"
    )))
}

fn status(dd: &DataDir) -> ActionResult {
    match read_pid(dd) {
        Some(pid) if is_alive(pid) => ActionResult {
            lines: vec!["RUNNING".to_string()],
            code: 0,
        },
        _ => ActionResult {
            lines: vec!["STOPPED".to_string()],
            code: 3,
        },
    }
}

/// Polls `done` every 100 ms until it is true or `timeout` passes.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL);
    }
}

/// The pid in `run/node.pid`, if the file holds one.
fn read_pid(dd: &DataDir) -> Option<u32> {
    parse_pid(&fs::read_to_string(dd.pid_file()).ok()?)
}

fn parse_pid(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|p| *p > 1)
}

fn remove_pid_file(dd: &DataDir) -> Outcome<()> {
    match fs::remove_file(dd.pid_file()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Fail::new(format!(
            "cannot remove {}: {e}",
            dd.pid_file().display()
        ))),
    }
}

/// True if `pid` is a live (non-zombie) stand-in node process.
pub fn is_alive(pid: u32) -> bool {
    if Path::new("/proc/self/stat").exists() {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        if matches!(proc_state(&stat), Some('Z' | 'X' | 'x')) {
            return false;
        }
        match fs::read(format!("/proc/{pid}/cmdline")) {
            Ok(cmdline) => cmdline
                .split(|b| *b == 0)
                .any(|arg| arg.ends_with(b"standin-node")),
            Err(_) => false,
        }
    } else {
        Command::new("sh")
            .args(["-c", "kill -0 \"$1\" 2>/dev/null", "sh", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// The state letter of a `/proc/PID/stat` line (the field after `(comm)`).
fn proc_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

fn send_signal(signal: &str, pid: u32) {
    let _ = Command::new("sh")
        .args([
            "-c",
            "kill -s \"$1\" \"$2\" 2>/dev/null",
            "sh",
            signal,
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `"; last lines of run/node.log:\n..."` or an empty string.
fn log_tail_suffix(dd: &DataDir) -> String {
    let tail = log_tail(&dd.log_file(), LOG_TAIL_LINES);
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last lines of {}:\n{tail}", dd.log_file().display())
    }
}

/// The last `lines` lines of a (possibly large) log file.
fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))
        .is_err()
    {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bind_is_loopback_on_the_install_port() {
        assert_eq!(bind_addr(None, 1234).unwrap().to_string(), "127.0.0.1:1234");
        assert_eq!(
            bind_addr(Some("  "), 1234).unwrap().to_string(),
            "127.0.0.1:1234"
        );
    }

    #[test]
    fn standin_bind_accepts_an_ip_or_a_socket_address() {
        assert_eq!(
            bind_addr(Some("0.0.0.0"), 80).unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(
            bind_addr(Some("10.0.0.1:81"), 80).unwrap().to_string(),
            "10.0.0.1:81"
        );
        assert_eq!(bind_addr(Some("::"), 80).unwrap().to_string(), "[::]:80");
        assert!(bind_addr(Some("localhost"), 80).is_err());
    }

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let p = probe_addr(bind_addr(Some("0.0.0.0"), 9).unwrap());
        assert_eq!(p.to_string(), "127.0.0.1:9");
        let p = probe_addr(bind_addr(Some("::"), 9).unwrap());
        assert_eq!(p.to_string(), "[::1]:9");
        let p = probe_addr(bind_addr(Some("10.1.2.3"), 9).unwrap());
        assert_eq!(p.to_string(), "10.1.2.3:9");
    }

    #[test]
    fn pid_file_content_must_be_a_plausible_pid() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid("1"), None);
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("abc"), None);
        assert_eq!(parse_pid(""), None);
    }

    #[test]
    fn proc_state_is_read_after_the_command_name() {
        assert_eq!(proc_state("42 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(proc_state("42 (standin-node) S 1 2"), Some('S'));
        assert_eq!(proc_state("garbage"), None);
    }

    #[test]
    fn a_process_that_is_not_a_standin_node_is_not_considered_running() {
        assert!(!is_alive(std::process::id()) || cfg!(not(target_os = "linux")));
    }

    #[test]
    fn log_tail_keeps_only_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&p, text).unwrap();
        assert_eq!(log_tail(&p, 2), "line 98\nline 99");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), "");
    }
}
