//! The node's life cycle through its own `DATA_DIR/bin/dss` script: start
//! (then wait for `/api/health`), stop, restart; and the probes the
//! heartbeat shares (installed version, port, running, healthy).

use super::{Ctx, Outcome, Progress};
use crate::config::Config;
use crate::{nodeuser, proc};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Health wait when the command gives 0.
pub const DEFAULT_HEALTH_TIMEOUT_SECS: u32 = 120;
/// Longest `dss start` may run.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `dss stop` may run.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `dss status` may run.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
const HEALTH_POLL: Duration = Duration::from_millis(500);

/// `DATA_DIR/bin/dss`.
pub fn dss_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bin").join("dss")
}

/// The installed version: `None` when `dss-version.json` is absent, `""`
/// when it has no readable `product_version`.
pub fn installed_version(data_dir: &Path) -> Option<String> {
    let text = match std::fs::read(data_dir.join("dss-version.json")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(_) => return Some(String::new()),
    };
    Some(
        serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("product_version")?.as_str().map(str::to_owned))
            .unwrap_or_default(),
    )
}

/// The node's base port: `port` under `[general]` in `install.ini`.
pub fn port(data_dir: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(data_dir.join("install.ini")).ok()?;
    parse_port(&text)
}

fn parse_port(ini: &str) -> Option<u16> {
    let mut section = String::new();
    for line in ini.lines() {
        let l = line.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim().to_owned();
        } else if section == "general"
            && let Some((k, v)) = l.split_once('=')
            && k.trim() == "port"
        {
            return v.trim().parse().ok();
        }
    }
    None
}

/// Whether `dss status` says the node runs (exit 0). Like every kit
/// command, it runs as the node's user ([`crate::nodeuser`]).
pub async fn is_running(cfg: &Config) -> Result<bool, String> {
    let mut cmd = nodeuser::command(cfg, dss_path(&cfg.data_dir))?;
    cmd.arg("status");
    match proc::run_quiet(cmd, STATUS_TIMEOUT).await? {
        Some(s) => Ok(s.success()),
        None => Err(format!(
            "dss status did not answer within {} s",
            STATUS_TIMEOUT.as_secs()
        )),
    }
}

/// The HTTP status of `GET http://127.0.0.1:PORT/api/health`.
pub async fn health(port: u16, timeout: Duration) -> Result<u16, String> {
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("can't connect to port {port}: {e}"))?;
        s.write_all(
            b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fm-agent\r\nConnection: close\r\n\r\n",
        )
        .await
        .map_err(|e| format!("health request: {e}"))?;
        let mut head = Vec::with_capacity(128);
        let mut buf = [0u8; 128];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
            let n = s
                .read(&mut buf)
                .await
                .map_err(|e| format!("health answer: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let mut parts = line.split_whitespace();
        match (
            parts.next(),
            parts.next().and_then(|c| c.parse::<u16>().ok()),
        ) {
            (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
            _ => Err("not an HTTP answer".to_owned()),
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
}

fn require_installed(data_dir: &Path) -> Result<String, String> {
    installed_version(data_dir).ok_or_else(|| {
        format!(
            "the node is not installed ({} is missing)",
            data_dir.join("dss-version.json").display()
        )
    })
}

async fn dss(cfg: &Config, verb: &str, timeout: Duration, p: &mut Progress) -> Result<(), String> {
    p.line(format!("dss {verb}")).await;
    let mut cmd = nodeuser::command(cfg, dss_path(&cfg.data_dir))?;
    cmd.arg(verb);
    let done = proc::run_streaming(cmd, timeout, p).await?;
    if done.success() {
        Ok(())
    } else {
        Err(done.failure(&format!("dss {verb}")))
    }
}

/// StartNode: `dss start` unless it runs already, then wait for health.
pub async fn start(ctx: &Ctx, p: &mut Progress, health_timeout_secs: u32) -> Outcome {
    let data_dir = &ctx.cfg.data_dir;
    let version = require_installed(data_dir)?;
    let _starting = ctx.starting_guard();
    if is_running(&ctx.cfg).await == Ok(true) {
        p.line("node already running").await;
    } else {
        dss(&ctx.cfg, "start", START_TIMEOUT, p).await?;
    }
    let port = wait_healthy(data_dir, health_timeout_secs, p).await?;
    Ok(json!({ "nodeVersion": version, "port": port }))
}

/// StopNode: `dss stop` when installed and running.
pub async fn stop(ctx: &Ctx, p: &mut Progress) -> Outcome {
    let data_dir = &ctx.cfg.data_dir;
    if installed_version(data_dir).is_none() {
        p.line("node not installed; nothing to stop").await;
        return Ok(json!({"wasRunning": false}));
    }
    if is_running(&ctx.cfg).await == Ok(false) {
        p.line("node already stopped").await;
        return Ok(json!({"wasRunning": false}));
    }
    dss(&ctx.cfg, "stop", STOP_TIMEOUT, p).await?;
    if is_running(&ctx.cfg).await == Ok(true) {
        return Err("dss stop returned but the node still runs".into());
    }
    p.line("node stopped").await;
    Ok(json!({"wasRunning": true}))
}

/// RestartNode: `dss stop` (signals, so it works on a node that no longer
/// answers HTTP) unless it is already stopped, then as StartNode.
pub async fn restart(ctx: &Ctx, p: &mut Progress, health_timeout_secs: u32) -> Outcome {
    let data_dir = &ctx.cfg.data_dir;
    require_installed(data_dir)?;
    let _starting = ctx.starting_guard();
    if is_running(&ctx.cfg).await == Ok(false) {
        p.line("node not running; starting it").await;
    } else {
        dss(&ctx.cfg, "stop", STOP_TIMEOUT, p).await?;
    }
    start(ctx, p, health_timeout_secs).await
}

/// Polls health every 500 ms until 200; returns the port.
async fn wait_healthy(data_dir: &Path, timeout_secs: u32, p: &mut Progress) -> Result<u16, String> {
    let secs = if timeout_secs == 0 {
        DEFAULT_HEALTH_TIMEOUT_SECS
    } else {
        timeout_secs
    };
    let port = port(data_dir).ok_or_else(|| {
        format!(
            "no [general] port in {}",
            data_dir.join("install.ini").display()
        )
    })?;
    let deadline = Instant::now() + Duration::from_secs(secs.into());
    let mut next_note = Instant::now() + Duration::from_secs(10);
    p.line(format!(
        "waiting up to {secs} s for http://127.0.0.1:{port}/api/health"
    ))
    .await;
    loop {
        let last = match health(port, Duration::from_secs(2)).await {
            Ok(200) => {
                p.line(format!("node healthy on port {port}")).await;
                return Ok(port);
            }
            Ok(code) => format!("HTTP {code}"),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "node did not become healthy within {secs} s (last health check: {last})"
            ));
        }
        if now >= next_note {
            p.line(format!(
                "still waiting for the node (last health check: {last})"
            ))
            .await;
            next_note = now + Duration::from_secs(10);
        }
        tokio::time::sleep_until((now + HEALTH_POLL).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_from_the_general_section_only() {
        assert_eq!(parse_port("[general]\nport = 11200\n"), Some(11200));
        assert_eq!(
            parse_port("[server]\nport = 1\n[general]\nnodetype = design\nport=2\n"),
            Some(2)
        );
        assert_eq!(parse_port("[server]\nport = 1\n"), None);
    }

    #[test]
    fn the_version_comes_from_dss_version_json() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(installed_version(d.path()), None);
        std::fs::write(
            d.path().join("dss-version.json"),
            r#"{"product_version": "14.2.0", "product_commitid": "x"}"#,
        )
        .unwrap();
        assert_eq!(installed_version(d.path()).as_deref(), Some("14.2.0"));
        std::fs::write(d.path().join("dss-version.json"), "garbage").unwrap();
        assert_eq!(installed_version(d.path()).as_deref(), Some(""));
    }

    /// What the node's own `bin/dss` does, it does as the node's user: run
    /// as root over a data dir uid 64100 owns, it runs as 64100, with none
    /// of the agent's environment.
    #[tokio::test]
    async fn kit_commands_run_as_the_data_dirs_owner_with_a_clean_environment() {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: switching users needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let ctx = crate::commands::tests_support::ctx(d.path());
        let data = &ctx.cfg.data_dir;
        std::fs::create_dir_all(data.join("bin")).unwrap();
        std::fs::write(
            dss_path(data),
            "#!/bin/sh\nid -u > ran-as\nenv > env-seen\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(dss_path(data), std::fs::Permissions::from_mode(0o755)).unwrap();
        for p in [data.clone(), data.join("bin"), data.join("bin/dss")] {
            std::os::unix::fs::lchown(&p, Some(64100), Some(64100)).unwrap();
        }
        assert_eq!(is_running(&ctx.cfg).await, Ok(false));
        let ran_as = std::fs::read_to_string(data.join("ran-as")).unwrap();
        assert_eq!(ran_as.trim(), "64100");
        let env = std::fs::read_to_string(data.join("env-seen")).unwrap();
        assert!(
            env.contains(&format!("PATH={}", crate::nodeuser::NODE_PATH)),
            "{env}"
        );
        assert!(
            !env.contains("CARGO"),
            "the agent's environment leaked: {env}"
        );
    }

    #[tokio::test]
    async fn health_reads_the_status_code() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(health(port, Duration::from_secs(2)).await, Ok(503));
    }

    #[tokio::test]
    async fn health_of_a_closed_port_is_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(health(port, Duration::from_secs(2)).await.is_err());
    }
}
