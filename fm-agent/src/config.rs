//! The user-data file FM renders for each instance (TOML), parsed strictly:
//! unknown keys and missing required keys are errors (exit code 2).

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A string that must never be logged; `Debug` prints `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The agent's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The instance this agent runs for; the CN of its certificate.
    pub instance_id: String,
    /// FM's agent endpoint, `https://HOST:PORT`.
    pub fm_url: String,
    /// The host part of `fm_url`, the name FM's certificate must carry.
    pub fm_host: String,
    /// FM's CA certificate (PEM).
    pub ca_pem: String,
    /// The one-time enrollment token.
    pub enrollment_token: Secret,
    /// The agent's own files (certificate, journal, kits, boot counter).
    pub state_dir: PathBuf,
    /// The node's data dir.
    pub data_dir: PathBuf,
    /// The home dir of the node's user.
    pub home_dir: PathBuf,
    /// The user the node runs as (see [`crate::nodeuser`]); `None`: the
    /// data dir's owner.
    pub node_user: Option<crate::nodeuser::UserSpec>,
    /// The instance metadata service (`http://169.254.169.254` on EC2):
    /// when set, enrollment carries the VM's signed identity document.
    pub imds_url: Option<String>,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Bounds on every download (kits, setup actions' files).
    pub downloads: DownloadLimits,
    /// How long a command FM sent without a timeout may take.
    pub command_timeout: Duration,
}

/// Bounds on a download: past any of them it fails, so a stalled or
/// endless server can't hold the command worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Longest a whole download may take.
    pub timeout: Duration,
    /// Longest to wait for the answer's headers or for its next bytes.
    pub idle_timeout: Duration,
    /// Largest file accepted.
    pub max_bytes: u64,
}

/// The default [`DownloadLimits::timeout`] in seconds.
pub const DEFAULT_DOWNLOAD_TIMEOUT_SECS: u64 = 3600;
/// The default [`DownloadLimits::idle_timeout`] in seconds.
pub const DEFAULT_DOWNLOAD_IDLE_TIMEOUT_SECS: u64 = 60;
/// The default [`DownloadLimits::max_bytes`]: 32 GiB (a node kit is a few).
pub const DEFAULT_DOWNLOAD_MAX_BYTES: u64 = 32 << 30;
/// The default [`Config::command_timeout`] in seconds: FM's default command
/// timeout.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 2 * 3600;

impl Default for DownloadLimits {
    fn default() -> Self {
        DownloadLimits {
            timeout: Duration::from_secs(DEFAULT_DOWNLOAD_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(DEFAULT_DOWNLOAD_IDLE_TIMEOUT_SECS),
            max_bytes: DEFAULT_DOWNLOAD_MAX_BYTES,
        }
    }
}

/// Why the user-data can't be used.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    instance_id: String,
    fm_url: String,
    ca_pem: String,
    enrollment_token: String,
    state_dir: PathBuf,
    data_dir: PathBuf,
    home_dir: PathBuf,
    node_user: Option<String>,
    imds_url: Option<String>,
    heartbeat_secs: Option<u64>,
    download_timeout_secs: Option<u64>,
    download_idle_timeout_secs: Option<u64>,
    download_max_bytes: Option<u64>,
    command_timeout_secs: Option<u64>,
}

/// The default heartbeat interval in seconds.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 10;

impl Config {
    /// Reads and validates the user-data file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "can't read the user-data file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|e| ConfigError(format!("user-data file {}: {}", path.display(), e.0)))
    }

    /// Parses and validates user-data text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError(e.message().to_owned()))?;
        let instance_id = raw.instance_id.trim().to_owned();
        if instance_id.is_empty()
            || !instance_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(ConfigError(format!(
                "instance_id {instance_id:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"
            )));
        }
        let fm_host = https_host(&raw.fm_url).ok_or_else(|| {
            ConfigError(format!(
                "fm_url {:?} must be an https:// URL with a host",
                raw.fm_url
            ))
        })?;
        if !raw.ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ConfigError(
                "ca_pem must hold a PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        for (key, p) in [
            ("state_dir", &raw.state_dir),
            ("data_dir", &raw.data_dir),
            ("home_dir", &raw.home_dir),
        ] {
            if !p.is_absolute() {
                return Err(ConfigError(format!(
                    "{key} must be an absolute path, not {}",
                    p.display()
                )));
            }
        }
        let node_user = match raw.node_user.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(crate::nodeuser::UserSpec::parse(s).map_err(ConfigError)?),
        };
        let imds_url = match raw.imds_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_owned())
            }
            Some(u) => {
                return Err(ConfigError(format!(
                    "imds_url {u:?} must be an http:// or https:// URL"
                )));
            }
        };
        let secs = raw.heartbeat_secs.unwrap_or(DEFAULT_HEARTBEAT_SECS);
        if !(1..=3600).contains(&secs) {
            return Err(ConfigError(format!(
                "heartbeat_secs must be between 1 and 3600, not {secs}"
            )));
        }
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(ConfigError(format!("{key} must be positive"))),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let downloads = DownloadLimits {
            timeout: Duration::from_secs(positive(
                "download_timeout_secs",
                raw.download_timeout_secs,
                DEFAULT_DOWNLOAD_TIMEOUT_SECS,
            )?),
            idle_timeout: Duration::from_secs(positive(
                "download_idle_timeout_secs",
                raw.download_idle_timeout_secs,
                DEFAULT_DOWNLOAD_IDLE_TIMEOUT_SECS,
            )?),
            max_bytes: positive(
                "download_max_bytes",
                raw.download_max_bytes,
                DEFAULT_DOWNLOAD_MAX_BYTES,
            )?,
        };
        let command_timeout = Duration::from_secs(positive(
            "command_timeout_secs",
            raw.command_timeout_secs,
            DEFAULT_COMMAND_TIMEOUT_SECS,
        )?);
        Ok(Config {
            instance_id,
            fm_url: raw.fm_url.trim_end_matches('/').to_owned(),
            fm_host,
            ca_pem: raw.ca_pem,
            enrollment_token: Secret(raw.enrollment_token),
            state_dir: raw.state_dir,
            data_dir: raw.data_dir,
            home_dir: raw.home_dir,
            node_user,
            imds_url,
            heartbeat: Duration::from_secs(secs),
            downloads,
            command_timeout,
        })
    }
}

/// The host of an `https://` URL (brackets of an IPv6 literal removed).
fn https_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
instance_id = "inst-abc123"
fm_url = "https://127.0.0.1:10001"
ca_pem = """-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----"""
enrollment_token = "tok-secret"
state_dir = "/var/lib/fm-agent"
data_dir = "/data/dataiku"
home_dir = "/home/dataiku"
"#;

    #[test]
    fn full_user_data_parses_with_the_default_heartbeat() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(c.instance_id, "inst-abc123");
        assert_eq!(c.fm_host, "127.0.0.1");
        assert_eq!(c.heartbeat, Duration::from_secs(10));
        assert_eq!(c.enrollment_token.expose(), "tok-secret");
        assert_eq!(c.data_dir, PathBuf::from("/data/dataiku"));
    }

    #[test]
    fn heartbeat_secs_is_honoured() {
        let c = Config::parse(&format!("{FULL}heartbeat_secs = 3\n")).unwrap();
        assert_eq!(c.heartbeat, Duration::from_secs(3));
    }

    #[test]
    fn downloads_and_commands_are_bounded_by_default_or_as_configured() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(c.downloads, DownloadLimits::default());
        assert_eq!(
            c.command_timeout,
            Duration::from_secs(DEFAULT_COMMAND_TIMEOUT_SECS)
        );
        let c = Config::parse(&format!(
            "{FULL}download_timeout_secs = 5\ndownload_idle_timeout_secs = 2\ndownload_max_bytes = 1000\ncommand_timeout_secs = 9\n"
        ))
        .unwrap();
        assert_eq!(
            c.downloads,
            DownloadLimits {
                timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(2),
                max_bytes: 1000,
            }
        );
        assert_eq!(c.command_timeout, Duration::from_secs(9));
        let e = Config::parse(&format!("{FULL}download_idle_timeout_secs = 0\n")).unwrap_err();
        assert!(e.0.contains("download_idle_timeout_secs"), "{e}");
    }

    #[test]
    fn a_missing_required_key_is_named_in_the_error() {
        let text = FULL.replace("data_dir = \"/data/dataiku\"\n", "");
        let e = Config::parse(&text).unwrap_err();
        assert!(e.0.contains("missing field `data_dir`"), "{e}");
    }

    #[test]
    fn the_node_user_is_a_name_or_ids_and_checked() {
        assert_eq!(Config::parse(FULL).unwrap().node_user, None);
        let c = Config::parse(&format!("{FULL}node_user = \"dataiku\"\n")).unwrap();
        assert_eq!(
            c.node_user,
            Some(crate::nodeuser::UserSpec::Name("dataiku".into()))
        );
        let e = Config::parse(&format!("{FULL}node_user = \"-o x\"\n")).unwrap_err();
        assert!(e.0.contains("node_user"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_an_error() {
        let e = Config::parse(&format!("{FULL}colour = \"blue\"\n")).unwrap_err();
        assert!(e.0.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn a_plain_http_fm_url_is_refused() {
        let text = FULL.replace("https://127.0.0.1:10001", "http://127.0.0.1:10001");
        let e = Config::parse(&text).unwrap_err();
        assert!(e.0.contains("https://"), "{e}");
    }

    #[test]
    fn relative_dirs_are_refused() {
        let text = FULL.replace("/var/lib/fm-agent", "var/lib/fm-agent");
        assert!(Config::parse(&text).unwrap_err().0.contains("state_dir"));
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = Config::parse(FULL).unwrap();
        assert!(!format!("{c:?}").contains("tok-secret"));
    }

    #[test]
    fn the_host_comes_out_of_any_https_url() {
        assert_eq!(
            https_host("https://fm.example.com:443/x").unwrap(),
            "fm.example.com"
        );
        assert_eq!(https_host("https://[::1]:10001").unwrap(), "::1");
        assert_eq!(https_host("https://localhost").unwrap(), "localhost");
        assert!(https_host("https://:10").is_none());
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = Config::load(Path::new("/nonexistent/user-data.toml")).unwrap_err();
        assert!(e.0.contains("can't read the user-data file"), "{e}");
    }
}
