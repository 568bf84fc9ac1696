//! Heartbeats: the node's state and version, disk, memory and load.

use crate::commands::node;
use crate::config::Config;
use crate::fsutil;
use fm_proto::agent::{Heartbeat, NodeState};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Timeout of the health request made for a heartbeat.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// A heartbeat as of now. `starting` tells that a start command is under
/// way, which turns STOPPED/UNHEALTHY into STARTING.
pub async fn collect(cfg: &Config, starting: bool) -> Heartbeat {
    let (state, version) = node_state(cfg).await;
    let state = match state {
        NodeState::Stopped | NodeState::Unhealthy if starting => NodeState::Starting,
        s => s,
    };
    let (data_used, data_total) = disk_usage(&fsutil::nearest_existing(&cfg.data_dir));
    let (os_used, os_total) = disk_usage(Path::new("/"));
    let (mem_used, mem_total) = std::fs::read_to_string("/proc/meminfo")
        .map(|s| memory(&s))
        .unwrap_or((0, 0));
    let cpu_load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Heartbeat {
        node_state: state as i32,
        node_version: version,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        data_disk_used_bytes: data_used,
        data_disk_total_bytes: data_total,
        os_disk_used_bytes: os_used,
        os_disk_total_bytes: os_total,
        memory_used_bytes: mem_used,
        memory_total_bytes: mem_total,
        cpu_load,
        sent_at_ms: now_ms(),
    }
}

/// The node's state and installed version ("" if not installed).
pub async fn node_state(cfg: &Config) -> (NodeState, String) {
    let data_dir = &cfg.data_dir;
    let Some(version) = node::installed_version(data_dir) else {
        return (NodeState::NotInstalled, String::new());
    };
    let state = match node::is_running(cfg).await {
        Ok(false) => NodeState::Stopped,
        Err(e) => {
            tracing::debug!("dss status: {e}");
            NodeState::Unhealthy
        }
        Ok(true) => match node::port(data_dir) {
            Some(port) => match node::health(port, HEALTH_TIMEOUT).await {
                Ok(200) => NodeState::Running,
                _ => NodeState::Unhealthy,
            },
            None => NodeState::Unhealthy,
        },
    };
    (state, version)
}

/// (used, total) bytes of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> (u64, u64) {
    match rustix::fs::statvfs(path) {
        Ok(s) => {
            let total = s.f_blocks.saturating_mul(s.f_frsize);
            let used = s
                .f_blocks
                .saturating_sub(s.f_bfree)
                .saturating_mul(s.f_frsize);
            (used, total)
        }
        Err(_) => (0, 0),
    }
}

/// (used, total) bytes of memory from `/proc/meminfo` text:
/// MemTotal - MemAvailable.
pub fn memory(meminfo: &str) -> (u64, u64) {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal").unwrap_or(0);
    let avail = field("MemAvailable").unwrap_or(total);
    (total.saturating_sub(avail), total)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_used_is_total_minus_available() {
        let m = "MemTotal:       16000 kB\nMemFree:  1000 kB\nMemAvailable:   12000 kB\n";
        assert_eq!(memory(m), (4000 * 1024, 16000 * 1024));
    }

    #[test]
    fn the_root_filesystem_has_a_size() {
        let (used, total) = disk_usage(Path::new("/"));
        assert!(total > 0 && used <= total);
    }

    #[tokio::test]
    async fn an_empty_data_dir_is_not_installed() {
        let d = tempfile::tempdir().unwrap();
        let ctx = crate::commands::tests_support::ctx(d.path());
        std::fs::create_dir_all(&ctx.cfg.data_dir).unwrap();
        assert_eq!(
            node_state(&ctx.cfg).await,
            (NodeState::NotInstalled, String::new())
        );
    }

    #[tokio::test]
    async fn a_heartbeat_for_a_missing_data_dir_still_reports_disks() {
        let d = tempfile::tempdir().unwrap();
        let cfg = Config::parse(&format!(
            r#"instance_id = "i"
fm_url = "https://127.0.0.1:1"
ca_pem = "-----BEGIN CERTIFICATE-----"
enrollment_token = "t"
state_dir = "{0}/state"
data_dir = "{0}/not/yet/there"
home_dir = "{0}/home"
"#,
            d.path().display()
        ))
        .unwrap();
        let hb = collect(&cfg, false).await;
        assert_eq!(hb.node_state, NodeState::NotInstalled as i32);
        assert!(hb.data_disk_total_bytes > 0);
        assert!(hb.memory_total_bytes > 0);
        assert!(hb.sent_at_ms > 0);
    }
}
