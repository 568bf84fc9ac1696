//! The Fleet Manager (FM) agent: it runs beside the node on every instance.
//!
//! At start it reads its user-data ([`config`]), bumps its boot counter
//! ([`session::Generation`]), drops week-old [`journal`] entries, enrolls
//! with FM once to get a client certificate ([`enroll`]), then keeps one
//! mutual-TLS [`session`] open to FM: it says hello, sends a [`heartbeat`]
//! every few seconds and runs the [`commands`] FM sends, one at a time, with
//! a journal so that a command is never run twice for one command id.
//!
//! Everything runs on one tokio current-thread runtime to keep the agent
//! small; heavy file work goes to the blocking pool.
//!
//! Logs go to stderr; `FM_AGENT_LOG` (an `EnvFilter` directive, default
//! `info`) sets their level. The enrollment token, keys, passwords and setup
//! action parameters are never logged.

pub mod beneath;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod fsutil;
pub mod heartbeat;
pub mod journal;
pub mod logring;
pub mod nodeuser;
pub mod proc;
pub mod session;
pub mod tool;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "fm-agent",
    version,
    about = "Fleet Manager agent: enrolls with FM, reports the node and runs FM's commands"
)]
pub struct Args {
    /// The user-data file (TOML) FM rendered for this instance (required to
    /// run as the agent).
    #[arg(long, env = "FM_AGENT_USER_DATA")]
    pub user_data: Option<PathBuf>,
    /// A tool instead of the agent.
    #[command(subcommand)]
    pub tool: Option<tool::Tool>,
}

/// Exit code for an unusable user-data file.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the agent until SIGTERM/SIGINT (exit 0), a bad user-data file
/// (exit 2) or a fatal local error such as an unwritable state dir (exit 1).
pub fn run(args: Args) -> ExitCode {
    init_tracing();
    if let Some(t) = args.tool {
        return tool::run(t);
    }
    let Some(user_data) = args.user_data else {
        tracing::error!("--user-data (or FM_AGENT_USER_DATA) is required to run the agent");
        return ExitCode::from(EXIT_CONFIG);
    };
    let cfg = match config::Config::load(&user_data) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let outcome = rt.block_on(async {
        tokio::select! {
            r = agent(Arc::new(cfg)) => r,
            () = shutdown_signal() => {
                tracing::info!("stopping");
                Ok(())
            }
        }
    });
    // Don't wait for blocking work (a kit copy, say) still under way.
    rt.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The agent's runtime: one thread, a few for blocking work (archives,
/// files), so its footprint stays small.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("fm-agent: can't start the runtime: {e}");
            None
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FM_AGENT_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,h2=warn,hyper=warn,tower=warn,rustls=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(logring::Tee)
        .with_ansi(false)
        .try_init();
}

/// The agent proper: local state, enrollment, then sessions forever.
async fn agent(cfg: Arc<config::Config>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    fsutil::create_private_dir(&cfg.state_dir)
        .with_context(|| format!("can't create the state dir {}", cfg.state_dir.display()))?;
    let generation = session::Generation::load_and_bump(&cfg.state_dir)
        .context("can't update the boot counter")?;
    let journal = journal::Journal::open(&cfg.state_dir).context("can't open the journal")?;
    let pruned = journal.prune(journal::MAX_AGE);
    tracing::info!(
        instance_id = %cfg.instance_id,
        version = env!("CARGO_PKG_VERSION"),
        boot = generation.boot(),
        pruned_journal_entries = pruned,
        "fm-agent starting"
    );
    let mut identity = enroll::ensure_enrolled(&cfg).await;
    let mut channel =
        session::mtls_channel(&cfg, &identity).context("can't configure the channel")?;
    if identity.renewal_due(now_ms()) {
        match enroll::renew(&cfg, channel.clone()).await {
            Ok(renewed) => {
                enroll::store_identity(&cfg.state_dir, &renewed);
                tracing::info!("agent certificate renewed");
                identity = renewed;
                channel = session::mtls_channel(&cfg, &identity)
                    .context("can't configure the channel")?;
            }
            Err(e) => tracing::warn!("renewing the agent certificate failed ({e:?}); will retry"),
        }
    }
    let ctx = Arc::new(commands::Ctx::new(cfg.clone(), channel.clone(), journal));
    spawn_renewal_check(cfg, identity.clone(), channel, ctx.clone());
    let queue = commands::spawn_worker(ctx.clone());
    session::run_sessions(ctx, Arc::new(generation), queue).await;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Twice a day, renews the certificate when it is due; the agent then exits
/// so its init restarts it on the new certificate (commands are journaled,
/// so nothing runs twice).
fn spawn_renewal_check(
    cfg: Arc<config::Config>,
    identity: enroll::AgentIdentity,
    channel: tonic::transport::Channel,
    ctx: Arc<commands::Ctx>,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(12 * 3600)).await;
            if !identity.renewal_due(now_ms()) {
                continue;
            }
            match enroll::renew(&cfg, channel.clone()).await {
                Ok(renewed) => {
                    enroll::store_identity(&cfg.state_dir, &renewed);
                    // Not in the middle of a command: its children would
                    // outlive the agent and race the re-run.
                    while !ctx.idle() {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                    tracing::info!("agent certificate renewed; restarting to use it");
                    std::process::exit(0);
                }
                Err(e) => {
                    tracing::warn!("renewing the agent certificate failed ({e:?}); will retry")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
