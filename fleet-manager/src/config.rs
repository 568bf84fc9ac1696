//! Configuration: command-line flags, then `FM_*` environment variables,
//! then a TOML file (`--config`), then defaults.

use crate::error::{Error, Result};
use crate::model::network::NetworkDefaults;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where FM keeps its state; shared by `serve` and the admin commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Directory for FM's own files (SQLite database, secrets key).
    #[arg(long, env = "FM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Default: SQLite in the data dir.
    #[arg(long, env = "FM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A TOML file with any of: data_dir, listen, database_url, max_body_bytes,
    /// future_wait_ms, cloud, [operations], [limits], [network_defaults], [aws].
    #[arg(long, env = "FM_CONFIG")]
    pub config: Option<PathBuf>,
    /// The cloud instances run on: `local` (processes on this machine) or
    /// `aws` (EC2).
    #[arg(long, env = "FM_CLOUD")]
    pub cloud: Option<String>,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub future_wait_ms: Option<u64>,
    pub agent_listen: Option<String>,
    pub grpc_listen: Option<String>,
    pub agent_url: Option<String>,
    #[serde(default)]
    pub operations: OperationsConfig,
    #[serde(default)]
    pub network_defaults: NetworkDefaultsConfig,
    pub cloud: Option<String>,
    #[serde(default)]
    pub aws: AwsFileConfig,
    #[serde(default)]
    pub backups: BackupsFileConfig,
    #[serde(default)]
    pub limits: LimitsFileConfig,
}

/// `[limits]` in the config file: the listeners' timeouts and caps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFileConfig {
    pub http_header_timeout_ms: Option<u64>,
    pub http_request_timeout_ms: Option<u64>,
    pub http_idle_timeout_ms: Option<u64>,
    pub http_max_connections: Option<usize>,
    pub http_max_in_flight: Option<usize>,
    pub agent_handshake_timeout_ms: Option<u64>,
    pub agent_request_timeout_ms: Option<u64>,
    pub agent_hello_timeout_ms: Option<u64>,
    pub agent_idle_timeout_ms: Option<u64>,
    pub agent_keepalive_ms: Option<u64>,
    pub agent_max_connections: Option<usize>,
    pub agent_max_streams: Option<u32>,
    pub enroll_failures_per_minute: Option<u32>,
    pub auth_cache_ms: Option<u64>,
}

/// How much the listeners take before they push back. Every limit ends a
/// connection or answers 503 (REST) / `RESOURCE_EXHAUSTED` (agents); none
/// stops FM.
#[derive(Debug, Clone)]
pub struct Limits {
    /// REST: the whole request head must arrive within this long (also how
    /// long an idle keep-alive connection is kept).
    pub http_header_timeout: Duration,
    /// REST: a request (body read and handling) that takes longer is
    /// answered 503.
    pub http_request_timeout: Duration,
    /// REST: a connection on which no byte moves for this long while it
    /// waits to read or write is closed; never shorter than the request
    /// timeout.
    pub http_idle_timeout: Duration,
    /// REST: open connections at most; more wait in the listen backlog.
    pub http_max_connections: usize,
    /// REST: requests handled at once; more are answered 503 with
    /// `Retry-After`.
    pub http_max_in_flight: usize,
    /// Agents: the TLS handshake must finish within this long.
    pub agent_handshake_timeout: Duration,
    /// Agents: a unary call, or a session until its Hello, must finish
    /// within this long.
    pub agent_request_timeout: Duration,
    /// Agents: the first Hello of a session must arrive within this long.
    pub agent_hello_timeout: Duration,
    /// Agents: a connection that reads nothing (not even a keepalive
    /// answer) for this long is closed.
    pub agent_idle_timeout: Duration,
    /// Agents: HTTP/2 keepalive ping interval (the answer is awaited as
    /// long again).
    pub agent_keepalive: Duration,
    /// Agents: open connections at most.
    pub agent_max_connections: usize,
    /// Agents: concurrent streams per connection.
    pub agent_max_streams: u32,
    /// Agents: failed enrollments per source address per minute; later
    /// calls from that address are refused without any work.
    pub enroll_failures_per_minute: u32,
    /// How long the in-memory table of API keys is trusted before it is
    /// read again (an unknown key id rereads it at most once a second).
    pub auth_cache: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            http_header_timeout: Duration::from_secs(10),
            http_request_timeout: Duration::from_secs(60),
            http_idle_timeout: Duration::from_secs(120),
            http_max_connections: 4096,
            http_max_in_flight: 256,
            agent_handshake_timeout: Duration::from_secs(10),
            agent_request_timeout: Duration::from_secs(60),
            agent_hello_timeout: Duration::from_secs(10),
            agent_idle_timeout: Duration::from_secs(120),
            agent_keepalive: Duration::from_secs(30),
            agent_max_connections: 4096,
            agent_max_streams: 16,
            enroll_failures_per_minute: 10,
            auth_cache: Duration::from_secs(10),
        }
    }
}

impl Limits {
    fn resolve(f: LimitsFileConfig) -> Result<Limits> {
        let d = Limits::default();
        let ms = |env: &str, file: Option<u64>, def: Duration| -> Result<Duration> {
            Ok(env_parse::<u64>(env)?
                .or(file)
                .map(Duration::from_millis)
                .unwrap_or(def))
        };
        let mut l = Limits {
            http_header_timeout: ms(
                "FM_HTTP_HEADER_TIMEOUT_MS",
                f.http_header_timeout_ms,
                d.http_header_timeout,
            )?,
            http_request_timeout: ms(
                "FM_HTTP_REQUEST_TIMEOUT_MS",
                f.http_request_timeout_ms,
                d.http_request_timeout,
            )?,
            http_idle_timeout: ms(
                "FM_HTTP_IDLE_TIMEOUT_MS",
                f.http_idle_timeout_ms,
                d.http_idle_timeout,
            )?,
            http_max_connections: env_parse("FM_HTTP_MAX_CONNECTIONS")?
                .or(f.http_max_connections)
                .unwrap_or(d.http_max_connections),
            http_max_in_flight: env_parse("FM_HTTP_MAX_IN_FLIGHT")?
                .or(f.http_max_in_flight)
                .unwrap_or(d.http_max_in_flight),
            agent_handshake_timeout: ms(
                "FM_AGENT_HANDSHAKE_TIMEOUT_MS",
                f.agent_handshake_timeout_ms,
                d.agent_handshake_timeout,
            )?,
            agent_request_timeout: ms(
                "FM_AGENT_REQUEST_TIMEOUT_MS",
                f.agent_request_timeout_ms,
                d.agent_request_timeout,
            )?,
            agent_hello_timeout: ms(
                "FM_AGENT_HELLO_TIMEOUT_MS",
                f.agent_hello_timeout_ms,
                d.agent_hello_timeout,
            )?,
            agent_idle_timeout: ms(
                "FM_AGENT_IDLE_TIMEOUT_MS",
                f.agent_idle_timeout_ms,
                d.agent_idle_timeout,
            )?,
            agent_keepalive: ms(
                "FM_AGENT_KEEPALIVE_MS",
                f.agent_keepalive_ms,
                d.agent_keepalive,
            )?,
            agent_max_connections: env_parse("FM_AGENT_MAX_CONNECTIONS")?
                .or(f.agent_max_connections)
                .unwrap_or(d.agent_max_connections),
            agent_max_streams: env_parse("FM_AGENT_MAX_STREAMS")?
                .or(f.agent_max_streams)
                .unwrap_or(d.agent_max_streams),
            enroll_failures_per_minute: env_parse("FM_ENROLL_FAILURES_PER_MINUTE")?
                .or(f.enroll_failures_per_minute)
                .unwrap_or(d.enroll_failures_per_minute),
            auth_cache: ms("FM_AUTH_CACHE_MS", f.auth_cache_ms, d.auth_cache)?,
        };
        for (name, v) in [
            ("http_max_connections", l.http_max_connections),
            ("http_max_in_flight", l.http_max_in_flight),
            ("agent_max_connections", l.agent_max_connections),
            ("agent_max_streams", l.agent_max_streams as usize),
        ] {
            if v == 0 {
                return Err(Error::invalid(format!("limit {name} must be at least 1")));
            }
        }
        l.http_idle_timeout = l.http_idle_timeout.max(l.http_request_timeout);
        Ok(l)
    }
}

/// `[aws]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFileConfig {
    pub endpoint_url: Option<String>,
    /// Region → AMI of the agent's base image; `"*"` for any region.
    #[serde(default)]
    pub amis: std::collections::BTreeMap<String, String>,
    pub owner: Option<String>,
    pub node_host: Option<String>,
    pub max_attempts: Option<u32>,
    /// A PEM file of the certificates identity documents are checked against.
    pub identity_certs: Option<PathBuf>,
    /// `required` (the default) or `off`.
    pub attestation: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsFileConfig {
    pub url: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// The role FM assumes for each backup command's own credentials.
    pub role_arn: Option<String>,
    pub sts_endpoint: Option<String>,
    pub credentials_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationsConfig {
    pub workers: Option<usize>,
    pub lease_secs: Option<u64>,
    pub step_delay_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDefaultsConfig {
    pub region: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
}

/// Everything FM runs with, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub listen: SocketAddr,
    /// The public gRPC API's listen address (`FM_GRPC_LISTEN`).
    pub grpc_listen: SocketAddr,
    pub max_body_bytes: usize,
    pub future_wait: Duration,
    pub engine: crate::ops::EngineConfig,
    pub network_defaults: NetworkDefaults,
    /// Whether the defaults were configured (else, on EC2, FM's own
    /// network is read from the instance metadata).
    pub network_defaults_set: bool,
    /// Base64 of 32 bytes; overrides `DATA_DIR/secrets.key`.
    pub secrets_key: Option<String>,
    pub lifecycle: LifecycleSettings,
    pub cloud: CloudSettings,
    /// Where agents put instance backups: `FM_BACKUP_URL` or `[backups]`;
    /// on the local cloud `file://<data dir>/backups` by default.
    pub backups: Option<fm_backup::Location>,
    /// `FM_BACKUP_S3_ROLE_ARN` and friends: per-command credentials.
    pub backup_scoping: Option<crate::ops::backup_access::Scoping>,
    /// The listeners' timeouts and caps (`[limits]`).
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudKind {
    Local,
    Aws,
    /// In memory with in-process agents (tests).
    Sim,
}

/// Which cloud FM provisions on, and its settings.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    pub kind: CloudKind,
    /// For `aws`; `owner` empty means "derive from FM's CA".
    pub aws: crate::cloud::aws::AwsSettings,
}

/// `FM_AWS_AMIS`: `REGION=AMI,...`, or one AMI for every region.
fn parse_amis(v: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let mut m = std::collections::BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (region, ami) = part.split_once('=').unwrap_or(("*", part));
        if !ami.starts_with("ami-") {
            return Err(Error::invalid(format!(
                "FM_AWS_AMIS: '{ami}' is not an AMI id (ami-...)"
            )));
        }
        m.insert(region.trim().to_string(), ami.trim().to_string());
    }
    Ok(m)
}

/// Where agents reach FM and how the lifecycle is paced.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// The agent endpoint's listen address (TLS gRPC).
    pub agent_listen: SocketAddr,
    /// The URL agents dial; default `https://127.0.0.1:PORT` of `agent_listen`.
    pub agent_url: Option<String>,
    pub kits_dir: PathBuf,
    pub agent_bin: PathBuf,
    pub standin_bin: PathBuf,
    /// `FM_LOCAL_NODE_USER`: what the local cloud's nodes run as.
    pub local_node_user: Option<String>,
    pub heartbeat_secs: u32,
    pub agent_timeout: Duration,
    pub agent_connect_timeout: Duration,
    pub health_timeout_secs: u32,
    pub port_base: u16,
    /// How long an enrollment token stays valid.
    pub token_ttl: Duration,
    /// How long FM waits for one agent command (an install may be long).
    pub command_timeout: Duration,
    /// How often reconcilers (the snapshot schedule) run.
    pub reconcile_interval: Duration,
    /// How often the rollout reconciler looks at running rollouts when
    /// nothing wakes it (an operation finishing, a rollout created or moved).
    pub rollout_tick: Duration,
    /// How long an "hour" of `automatedSnapshotPeriod` is: 3600 s, shorter
    /// only to test the schedule on a compressed clock.
    pub snapshot_hour: Duration,
    /// Finished operations (with their log lines and events) and expired
    /// enrollment tokens older than this are deleted.
    pub history_retention: Duration,
    /// Complete audit rows older than this are deleted.
    pub audit_retention: Duration,
}

/// A binary shipped beside this one (or beside the test harness's, whose
/// executables live one level down, in `deps/`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join(name)
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:10000";
pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:10001";
/// Where the public gRPC API listens by default.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:10002";

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| Error::invalid(format!("{name}='{v}' is not valid"))),
        Err(_) => Ok(None),
    }
}

impl Config {
    pub fn resolve(store: &StoreArgs, listen: Option<&str>) -> Result<Config> {
        let file = match &store.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let data_dir = store
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("fm-data"));
        let kits_dir = data_dir.join("kits");
        let database_url = store
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| crate::store::Store::sqlite_url(&data_dir));
        let listen_s = listen
            .map(str::to_string)
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_s
            .parse()
            .map_err(|_| Error::invalid(format!("listen address '{listen_s}' is not HOST:PORT")))?;
        let ops = file.operations;
        let defaults = crate::ops::EngineConfig::default();
        let engine = crate::ops::EngineConfig {
            workers: env_parse("FM_OPS_WORKERS")?
                .or(ops.workers)
                .unwrap_or(defaults.workers)
                .max(1),
            lease: env_parse("FM_OPS_LEASE_SECS")?
                .or(ops.lease_secs)
                .map(Duration::from_secs)
                .unwrap_or(defaults.lease),
            step_delay: env_parse("FM_OPS_STEP_DELAY_MS")?
                .or(ops.step_delay_ms)
                .map(Duration::from_millis)
                .unwrap_or(defaults.step_delay),
            ..defaults
        };
        let nd = file.network_defaults;
        let kind = match store
            .cloud
            .clone()
            .or(file.cloud)
            .as_deref()
            .unwrap_or("local")
        {
            "local" => CloudKind::Local,
            "aws" => CloudKind::Aws,
            "sim" => CloudKind::Sim,
            other => {
                return Err(Error::invalid(format!(
                    "cloud '{other}' is not one of: local, aws, sim"
                )));
            }
        };
        let fa = file.aws;
        let port_base: u16 = env_parse("FM_LOCAL_PORT_BASE")?.unwrap_or(20000);
        let cloud = CloudSettings {
            kind,
            aws: crate::cloud::aws::AwsSettings {
                endpoint_url: std::env::var("FM_AWS_ENDPOINT_URL")
                    .ok()
                    .or(fa.endpoint_url),
                amis: match std::env::var("FM_AWS_AMIS") {
                    Ok(v) => parse_amis(&v)?,
                    Err(_) => fa.amis,
                },
                owner: std::env::var("FM_AWS_OWNER")
                    .ok()
                    .or(fa.owner)
                    .unwrap_or_default(),
                node_host: std::env::var("FM_AWS_NODE_HOST").ok().or(fa.node_host),
                node_ports: (port_base, port_base.saturating_add(19_999)),
                max_attempts: env_parse("FM_AWS_MAX_ATTEMPTS")?
                    .or(fa.max_attempts)
                    .unwrap_or(10),
                base_backoff: Duration::from_millis(env_parse("FM_AWS_BACKOFF_MS")?.unwrap_or(100)),
                identity_certs: Default::default(),
                attestation: true,
            },
        };
        let mut cloud = cloud;
        if kind == CloudKind::Aws {
            let mode = std::env::var("FM_AWS_ATTESTATION")
                .ok()
                .or(fa.attestation)
                .unwrap_or_else(|| "required".into());
            cloud.aws.attestation = match mode.as_str() {
                "required" => true,
                "off" => false,
                other => {
                    return Err(Error::invalid(format!(
                        "FM_AWS_ATTESTATION '{other}' is not one of: required, off"
                    )));
                }
            };
            let certs = std::env::var_os("FM_AWS_IDENTITY_CERTS")
                .map(PathBuf::from)
                .or(fa.identity_certs);
            match certs {
                Some(p) => {
                    let pem = std::fs::read_to_string(&p).map_err(|e| {
                        Error::invalid(format!(
                            "FM_AWS_IDENTITY_CERTS: can't read {}: {e}",
                            p.display()
                        ))
                    })?;
                    cloud.aws.identity_certs =
                        crate::cloud::aws::identity::IdentityCerts::from_pem(&pem)?;
                }
                None if cloud.aws.attestation => {
                    return Err(Error::invalid(
                        "the aws cloud checks each agent's instance identity document: set FM_AWS_IDENTITY_CERTS to a PEM file of the RSA certificates AWS publishes for your regions (\"AWS public certificates for instance identity document signatures\"), or FM_AWS_ATTESTATION=off to enroll agents on their token alone",
                    ));
                }
                None => {
                    tracing::warn!("FM_AWS_ATTESTATION=off: agents enroll on their token alone");
                }
            }
        }
        let fb = file.backups;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let backup_url = env("FM_BACKUP_URL").or(fb.url).or_else(|| {
            (kind == CloudKind::Local).then(|| {
                let abs = std::path::absolute(&data_dir).unwrap_or_else(|_| data_dir.clone());
                format!("file://{}", abs.join("backups").display())
            })
        });
        let backups = match backup_url {
            Some(url) => {
                let l = fm_backup::Location {
                    url,
                    s3_endpoint: env("FM_BACKUP_S3_ENDPOINT").or(fb.s3_endpoint),
                    s3_region: env("FM_BACKUP_S3_REGION").or(fb.s3_region),
                    access_key_id: env("FM_BACKUP_S3_ACCESS_KEY_ID").or(fb.access_key_id),
                    secret_access_key: env("FM_BACKUP_S3_SECRET_ACCESS_KEY")
                        .or(fb.secret_access_key),
                    session_token: None,
                };
                l.validate().map_err(|e| Error::invalid(e.0))?;
                Some(l)
            }
            None => None,
        };
        let backup_scoping = match env("FM_BACKUP_S3_ROLE_ARN").or(fb.role_arn) {
            Some(role_arn) => {
                if !role_arn.starts_with("arn:") {
                    return Err(Error::invalid(format!(
                        "FM_BACKUP_S3_ROLE_ARN '{role_arn}' is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)"
                    )));
                }
                let secs = env_parse("FM_BACKUP_CREDENTIALS_SECS")?
                    .or(fb.credentials_secs)
                    .unwrap_or(3600);
                if !(900..=43_200).contains(&secs) {
                    return Err(Error::invalid(format!(
                        "FM_BACKUP_CREDENTIALS_SECS must be between 900 and 43200, not {secs}"
                    )));
                }
                Some(crate::ops::backup_access::Scoping {
                    role_arn,
                    sts_endpoint: env("FM_BACKUP_STS_ENDPOINT").or(fb.sts_endpoint),
                    lifetime: Duration::from_secs(secs),
                })
            }
            None => {
                if backups.as_ref().is_some_and(|b| b.url.starts_with("s3://")) {
                    tracing::warn!(
                        "agents get the backup location's own credentials, which reach every instance's backups: set FM_BACKUP_S3_ROLE_ARN so each command gets credentials for its one backup"
                    );
                }
                None
            }
        };
        let limits = Limits::resolve(file.limits)?;
        Ok(Config {
            limits,
            backups,
            backup_scoping,
            cloud,
            data_dir,
            database_url,
            listen,
            grpc_listen: {
                let a = std::env::var("FM_GRPC_LISTEN")
                    .ok()
                    .or(file.grpc_listen)
                    .unwrap_or_else(|| DEFAULT_GRPC_LISTEN.into());
                a.parse().map_err(|_| {
                    Error::invalid(format!("gRPC listen address '{a}' is not HOST:PORT"))
                })?
            },
            max_body_bytes: env_parse("FM_MAX_BODY_BYTES")?
                .or(file.max_body_bytes)
                .unwrap_or(1 << 20),
            future_wait: Duration::from_millis(
                env_parse("FM_FUTURE_WAIT_MS")?
                    .or(file.future_wait_ms)
                    .unwrap_or(2000),
            ),
            engine,
            network_defaults_set: std::env::var_os("FM_DEFAULT_VPC_ID").is_some()
                || nd.vpc_id.is_some(),
            // FM's own network, for `useDefaultValues`.
            network_defaults: NetworkDefaults {
                region: std::env::var("FM_DEFAULT_REGION")
                    .ok()
                    .or(nd.region)
                    .unwrap_or_else(|| "us-east-1".into()),
                vpc_id: std::env::var("FM_DEFAULT_VPC_ID")
                    .ok()
                    .or(nd.vpc_id)
                    .unwrap_or_else(|| "vpc-local".into()),
                subnet_id: std::env::var("FM_DEFAULT_SUBNET_ID")
                    .ok()
                    .or(nd.subnet_id)
                    .unwrap_or_else(|| "subnet-local".into()),
            },
            secrets_key: std::env::var("FM_SECRETS_KEY").ok(),
            lifecycle: LifecycleSettings {
                agent_listen: {
                    let a = std::env::var("FM_AGENT_LISTEN")
                        .ok()
                        .or(file.agent_listen)
                        .unwrap_or_else(|| DEFAULT_AGENT_LISTEN.into());
                    a.parse().map_err(|_| {
                        Error::invalid(format!("agent listen address '{a}' is not HOST:PORT"))
                    })?
                },
                agent_url: std::env::var("FM_AGENT_URL").ok().or(file.agent_url),
                kits_dir: kits_dir.clone(),
                agent_bin: std::env::var_os("FM_AGENT_BIN")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| sibling_binary("fm-agent")),
                standin_bin: std::env::var_os("FM_STANDIN_BIN")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| sibling_binary("standin-node")),
                local_node_user: std::env::var("FM_LOCAL_NODE_USER").ok(),
                heartbeat_secs: env_parse("FM_HEARTBEAT_SECS")?.unwrap_or(10),
                agent_timeout: Duration::from_secs(
                    env_parse("FM_AGENT_TIMEOUT_SECS")?.unwrap_or(35),
                ),
                agent_connect_timeout: Duration::from_secs(
                    env_parse("FM_AGENT_CONNECT_TIMEOUT_SECS")?.unwrap_or(120),
                ),
                health_timeout_secs: env_parse("FM_NODE_HEALTH_TIMEOUT_SECS")?.unwrap_or(120),
                port_base,
                token_ttl: Duration::from_secs(
                    env_parse("FM_ENROLLMENT_TOKEN_TTL_SECS")?.unwrap_or(3600),
                ),
                command_timeout: Duration::from_secs(
                    env_parse("FM_COMMAND_TIMEOUT_SECS")?.unwrap_or(7200),
                ),
                reconcile_interval: Duration::from_millis(
                    env_parse("FM_RECONCILE_MS")?.unwrap_or(30_000),
                ),
                rollout_tick: Duration::from_millis(
                    env_parse("FM_ROLLOUT_TICK_MS")?.unwrap_or(1_000).max(10),
                ),
                snapshot_hour: Duration::from_millis(
                    env_parse("FM_SNAPSHOT_HOUR_MS")?.unwrap_or(3_600_000),
                ),
                history_retention: Duration::from_secs(
                    env_parse::<u64>("FM_HISTORY_RETENTION_DAYS")?
                        .unwrap_or(90)
                        .max(1)
                        * 86_400,
                ),
                audit_retention: Duration::from_secs(
                    env_parse::<u64>("FM_AUDIT_RETENTION_DAYS")?
                        .unwrap_or(365)
                        .max(1)
                        * 86_400,
                ),
            },
        })
    }
}

fn read_file(p: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(p)
        .map_err(|e| Error::invalid(format!("can't read config file {}: {e}", p.display())))?;
    toml::from_str(&text).map_err(|e| Error::invalid(format!("config file {}: {e}", p.display())))
}
