//! Wiring: open the store, build the application, the engine and the
//! agents port, then serve the REST API (and console), the public gRPC API
//! and the agent endpoint.

use crate::agents::AgentHub;
use crate::agents::grpc::AgentEndpoint;
use crate::app::{App, AppConfig};
use crate::cloud::CloudProvider;
use crate::cloud::aws::AwsCloud;
use crate::cloud::local::LocalCloud;
use crate::config::{CloudKind, Config};
use crate::crypto::SecretBox;
use crate::error::{Error, Result};
use crate::ops::{Engine, LifecycleConfig, Services};
use crate::pki::Ca;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Opens the store named by the configuration (creating the data directory
/// and applying migrations) and builds the application on it.
pub async fn open_app(cfg: &Config) -> Result<App> {
    open_app_with(cfg, vec![]).await
}

/// As [`open_app`], with extra sagas registered in the engine (tests).
pub async fn open_app_with(cfg: &Config, extra_sagas: Vec<crate::ops::sagas::Saga>) -> Result<App> {
    crate::install_crypto_provider();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
        Error::invalid(format!(
            "can't create data directory {}: {e}",
            cfg.data_dir.display()
        ))
    })?;
    // FM's own files are nobody else's: the data dir lets others pass
    // through only (the local cloud's node users reach their VMs' dirs),
    // the SQLite database is FM's user's alone.
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // Only a dir of FM's own (never a shared one such as /tmp).
        if let Ok(m) = std::fs::metadata(&cfg.data_dir)
            && m.uid() == rustix::process::geteuid().as_raw()
            && m.mode() & 0o1000 == 0
        {
            let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o711));
        }
    }
    let store = Store::open(&cfg.database_url).await?;
    if let Some(path) = crate::store::Store::sqlite_path(&cfg.database_url) {
        use std::os::unix::fs::PermissionsExt;
        for p in [
            path.clone(),
            path.with_extension("db-wal"),
            path.with_extension("db-shm"),
        ] {
            if p.exists() {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    let secrets = SecretBox::load(cfg.secrets_key.as_deref(), &cfg.data_dir)?;
    let resealed =
        crate::store::sealed::reseal_legacy(&store, &|at, v| secrets.reseal_legacy(at, v)).await?;
    if resealed.values > 0 {
        tracing::info!(
            values = resealed.values,
            "values sealed by an earlier version sealed again for their places"
        );
    }
    let ca = Ca::load_or_create(&store, &secrets).await?;
    let l = &cfg.lifecycle;
    let hub = AgentHub::new(store.clone());
    let cloud: Arc<dyn CloudProvider> = match cfg.cloud.kind {
        CloudKind::Sim => Arc::new(crate::cloud::sim::SimCloud::new(hub.clone())),
        CloudKind::Local => {
            let root = cfg.data_dir.join("local-cloud");
            let user = LocalCloud::node_user_for(&root, l.local_node_user.as_deref())?;
            Arc::new(LocalCloud::with_node_user(root, l.agent_bin.clone(), user)?)
        }
        CloudKind::Aws => {
            let mut aws = cfg.cloud.aws.clone();
            if aws.owner.is_empty() {
                // Stable for this FM's database: resources another FM made
                // are never taken for this one's.
                use sha2::Digest;
                aws.owner = hex::encode(&sha2::Sha256::digest(ca.cert_pem.as_bytes())[..8]);
            }
            Arc::new(AwsCloud::new(aws))
        }
    };
    let mut network_defaults = cfg.network_defaults.clone();
    if cfg.cloud.kind == CloudKind::Aws && !cfg.network_defaults_set {
        // On EC2, FM's own network is the default one.
        if let Some(own) = crate::cloud::aws::own_network_from_imds().await {
            tracing::info!(region = %own.region, vpc = %own.vpc_id, subnet = %own.subnet_id, "default network from instance metadata");
            network_defaults = own;
        }
    }
    let svc = Services {
        store: store.clone(),
        secrets: secrets.clone(),
        hub,
        cloud,
        lc: LifecycleConfig {
            ca_pem: ca.cert_pem.clone(),
            heartbeat_secs: l.heartbeat_secs,
            agent_connect_timeout: l.agent_connect_timeout,
            command_timeout: l.command_timeout,
            health_timeout_secs: l.health_timeout_secs,
            port_base: l.port_base,
            port_step: 20,
            token_ttl: l.token_ttl,
            backups: cfg.backups.clone(),
            backup_scoping: cfg.backup_scoping.clone(),
        },
        agent_url: std::sync::OnceLock::new(),
        ca: Arc::new(ca),
    };
    let engine = Engine::new(Arc::new(svc), cfg.engine.clone(), extra_sagas);
    let app = App::new(
        store,
        secrets,
        engine,
        AppConfig {
            network_defaults,
            future_wait: cfg.future_wait,
            kits_dir: l.kits_dir.clone(),
            standin_bin: Some(l.standin_bin.clone()),
            agent_timeout: l.agent_timeout,
            auth_cache: cfg.limits.auth_cache,
        },
    );
    app.bootstrap().await?;
    if let Some(path) = app.ensure_first_admin(&cfg.data_dir).await? {
        tracing::warn!(
            file = %path.display(),
            "first start: made user 'admin'; its one-time password is in this file (readable by FM's user only)"
        );
    }
    Ok(app)
}

/// A running server, for `serve` and for tests.
#[derive(Debug)]
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub agent_addr: std::net::SocketAddr,
    /// The public gRPC API's address.
    pub grpc_addr: std::net::SocketAddr,
    pub app: App,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops taking requests and work, and waits for both to drain.
    pub async fn stop(self) {
        self.app.engine.shutdown();
        let _ = self.shutdown.send(true);
        self.app.engine.services().hub.close_all();
        for t in self.tasks {
            // Connections that don't drain in time are cut.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for w in self.workers {
            // Workers give their leases back at once; don't wait forever.
            let abort = w.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), w)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

fn signal(
    rx: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Starts the HTTP server, the agent endpoint and the operation workers.
pub async fn start(app: App, cfg: &Config) -> Result<Running> {
    crate::listen::raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::invalid(format!("can't listen on {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(Error::internal)?;
    let agent_listener = tokio::net::TcpListener::bind(cfg.lifecycle.agent_listen)
        .await
        .map_err(|e| {
            Error::invalid(format!(
                "can't listen for agents on {}: {e}",
                cfg.lifecycle.agent_listen
            ))
        })?;
    let agent_addr = agent_listener.local_addr().map_err(Error::internal)?;
    let grpc_listener = tokio::net::TcpListener::bind(cfg.grpc_listen)
        .await
        .map_err(|e| {
            Error::invalid(format!(
                "can't listen for the gRPC API on {}: {e}",
                cfg.grpc_listen
            ))
        })?;
    let grpc_addr = grpc_listener.local_addr().map_err(Error::internal)?;
    let svc = app.engine.services().clone();
    let agent_url = cfg
        .lifecycle
        .agent_url
        .clone()
        .unwrap_or_else(|| format!("https://127.0.0.1:{}", agent_addr.port()));
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        agent_addr.ip().to_string(),
    ];
    if let Some(host) = agent_url
        .split("://")
        .nth(1)
        .and_then(|r| r.split([':', '/']).next())
    {
        names.push(host.to_string());
    }
    names.sort();
    names.dedup();
    let _ = svc.agent_url.set(agent_url);
    app.publish_kits().await?;

    let (tx, rx) = tokio::sync::watch::channel(false);
    let endpoint = AgentEndpoint::new(
        svc.store.clone(),
        svc.hub.clone(),
        svc.ca.clone(),
        cfg.lifecycle.kits_dir.clone(),
        cfg.limits.clone(),
    )
    .with_attestor(Arc::new(crate::ops::placement::CloudAttestor(svc.clone())));
    let agent_task = {
        let stop = signal(&rx);
        tokio::spawn(async move {
            if let Err(e) = crate::agents::grpc::serve(endpoint, agent_listener, names, stop).await
            {
                tracing::error!(error = %e, "agent endpoint stopped");
            }
        })
    };
    let housekeeping = {
        let cloud = svc.cloud.clone();
        let hub = svc.hub.clone();
        let mut stop = rx.clone();
        tokio::spawn(async move {
            let mut ticks = 0u64;
            loop {
                if let Err(e) = cloud.tick().await {
                    tracing::warn!(error = %e, "cloud housekeeping failed");
                }
                // Every replica ends its own agents' sessions from VMs
                // their instances no longer have, once a minute.
                ticks += 1;
                if ticks.is_multiple_of(60)
                    && let Err(e) = hub.close_stale_sessions().await
                {
                    tracing::warn!(error = %e, "ending stale agent sessions failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    };
    let schedule = {
        let app = app.clone();
        let (every, hour, retention, audit_retention) = (
            cfg.lifecycle.reconcile_interval,
            cfg.lifecycle.snapshot_hour,
            cfg.lifecycle.history_retention,
            cfg.lifecycle.audit_retention,
        );
        let mut stop = rx.clone();
        tokio::spawn(async move {
            // One replica runs the schedule: the holder of its lease.
            let ttl = (every * 3).max(Duration::from_secs(10)).as_millis() as i64;
            let mut passes = 0u64;
            loop {
                let leader = app
                    .store
                    .lease_acquire("snapshot-schedule", app.engine.owner(), ttl)
                    .await;
                passes += 1;
                if matches!(leader, Ok(true)) && passes % 10 == 1 {
                    match app.history_prune(retention).await {
                        Ok(p) if p != Default::default() => tracing::info!(
                            operations = p.operations,
                            events = p.events,
                            tokens = p.tokens,
                            "old history deleted"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "deleting old history failed"),
                    }
                    match app.audit_prune(audit_retention).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(rows = n, "old audit rows deleted"),
                        Err(e) => tracing::warn!(error = %e, "deleting old audit rows failed"),
                    }
                    match app.sessions_prune().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(sessions = n, "ended console sessions deleted"),
                        Err(e) => tracing::warn!(error = %e, "deleting ended sessions failed"),
                    }
                    // Drift between the store and the cloud: reported, never
                    // cleaned here (`admin cloud-drift --clean` does).
                    match app.cloud_drift(false).await {
                        Ok(d) if !d.drifted.is_empty() || !d.orphans.is_empty() => {
                            tracing::warn!(
                                drifted = ?d.drifted,
                                orphans = ?d.orphans,
                                "the cloud differs from FM's records"
                            )
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "drift check failed"),
                    }
                }
                let is_leader = matches!(leader, Ok(true));
                let pass = match leader {
                    Ok(true) => app.reconcile_automated_snapshots(hour).await,
                    Ok(false) => Ok(Default::default()),
                    Err(e) => Err(e),
                };
                match pass {
                    Ok(r) if r != Default::default() => tracing::info!(
                        snapshots = r.snapshots_started,
                        deletions = r.deletions_started,
                        "automated snapshot schedule"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "automated snapshot schedule failed"),
                }
                if is_leader {
                    match app.reconcile_automated_backups(hour).await {
                        Ok(r) if r != Default::default() => tracing::info!(
                            backups = r.backups_started,
                            deletions = r.deletions_started,
                            "backup schedule"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "backup schedule failed"),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    };
    let rollouts = {
        let app = app.clone();
        let tick = cfg.lifecycle.rollout_tick;
        let mut stop = rx.clone();
        tokio::spawn(async move {
            // One replica drives rollouts: the holder of their lease.
            let owner = format!("{}/rollouts", app.engine.owner());
            let ttl = (tick * 5).max(Duration::from_secs(10)).as_millis() as i64;
            loop {
                let moved = match app.reconcile_rollouts(&owner, ttl).await {
                    Ok(p) => {
                        if p.started > 0 || p.ended > 0 {
                            tracing::info!(
                                started = p.started,
                                finished = p.finished,
                                ended = p.ended,
                                "rollouts"
                            );
                        }
                        p.started > 0 || p.finished > 0
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rollout pass failed");
                        false
                    }
                };
                // A pass that moved targets may let the next one start more.
                if moved {
                    continue;
                }
                tokio::select! {
                    _ = app.rollouts_wait(tick) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    };
    let workers = app.engine.start();
    let router = crate::api::router(app.clone(), cfg.max_body_bytes);
    let limits = cfg.limits.clone();
    let http_task = {
        let stop = signal(&rx);
        tokio::spawn(async move {
            if let Err(e) = crate::api::serve(listener, router, &limits, stop).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        })
    };
    let grpc_task = {
        let stop = signal(&rx);
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::grpc::serve(app, grpc_listener, stop).await {
                tracing::error!(error = %e, "gRPC API stopped");
            }
        })
    };
    tracing::info!(%grpc_addr, "gRPC API listening");
    Ok(Running {
        addr,
        agent_addr,
        grpc_addr,
        app,
        shutdown: tx,
        tasks: vec![
            http_task,
            agent_task,
            grpc_task,
            housekeeping,
            schedule,
            rollouts,
        ],
        workers,
    })
}
