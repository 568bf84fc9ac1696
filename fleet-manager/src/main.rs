//! `fleet-manager`: the server and its admin commands.

use clap::{Parser, Subcommand};
use fleet_manager::config::{Config, StoreArgs};
use fleet_manager::model::user::Role;
use fleet_manager::server;
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "fleet-manager",
    version,
    about = "Fleet Manager: deploy, upgrade, back up and restore platform nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (SQLite under ./fm-data and 127.0.0.1:10000 by default).
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on.
        #[arg(long, env = "FM_LISTEN")]
        listen: Option<String>,
    },
    #[command(flatten)]
    Fleet(fleet_manager::cli::Resource),
    /// Preview what makes the fleet as a fleet file (YAML) declares: one
    /// block per object (`+` create, `~` in place, `-/+` reprovision, `-`
    /// delete) and a summary line. Exit status 0: no changes; 2: changes;
    /// 1: an error. Secrets are references (`{fromEnv: NAME}`,
    /// `{fromFile: PATH}`), never shown.
    Plan {
        #[command(flatten)]
        remote: fleet_manager::remote::Remote,
        /// The fleet file.
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
        /// Save the plan here, for `apply` (readable by its owner only).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// `text` (default) or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Make a saved plan's changes, only if the fleet is still as the plan
    /// read it (a stale plan is refused before anything changes); then
    /// follow the reprovisioning rollout and the deletions to their end
    /// unless --no-wait.
    Apply {
        #[command(flatten)]
        remote: fleet_manager::remote::Remote,
        /// A plan saved by `plan --out`.
        plan: std::path::PathBuf,
        #[arg(long)]
        no_wait: bool,
        /// `text` (default) or `json`.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Administration of the store.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an API key of a user; prints {"id": ..., "secret": ...} once.
    CreateApiKey {
        #[command(flatten)]
        store: StoreArgs,
        /// The user the key acts as.
        #[arg(long, default_value = "admin")]
        user: String,
        /// The key's role, at most the user's (the user's by default).
        #[arg(long)]
        role: Option<Role>,
        /// How long the key works, e.g. 30d, 12h, 90m (forever by default).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// A note on what the key is for.
        #[arg(long)]
        label: Option<String>,
    },
    /// Create a user; prints {"user": ..., "password": ...} once, the
    /// password chosen by FM (to be changed at first login) unless
    /// --password-file gives one.
    CreateUser {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
        #[arg(long)]
        role: Role,
        /// A file whose first line is the password.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    /// List users (never their passwords).
    ListUsers {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a user's role; their keys act with at most the new one at once.
    SetRole {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
        role: Role,
    },
    /// Disable a user: their keys and sessions stop working at once.
    DisableUser {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
    },
    /// Enable a disabled user again.
    EnableUser {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
    },
    /// Set a user's password; prints {"user": ..., "password": ...} once
    /// (chosen by FM unless --password-file gives one).
    ResetPassword {
        #[command(flatten)]
        store: StoreArgs,
        name: String,
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    /// The audit log, newest first, one JSON object per line.
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        /// Only rows of the last DURATION, e.g. 1h, 7d.
        #[arg(long, value_parser = parse_duration)]
        since: Option<std::time::Duration>,
        /// Only this user's rows.
        #[arg(long)]
        actor: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// List API keys (never their secrets).
    ListApiKeys {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an API key.
    DeleteApiKey {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
    },
    /// Add or replace an image of the catalog, with its node kit (.tar.gz).
    AddImage {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
        /// The node version the kit installs.
        #[arg(long)]
        version: String,
        #[arg(long)]
        kit: std::path::PathBuf,
        #[arg(long)]
        label: Option<String>,
    },
    /// Compare the store with the cloud: instances whose VM was stopped or
    /// terminated behind FM's back, and resources tagged as FM's that no
    /// instance owns (deleted only with --clean).
    CloudDrift {
        #[command(flatten)]
        store: StoreArgs,
        /// Delete the orphaned resources found.
        #[arg(long)]
        clean: bool,
    },
    /// Write a backup of FM's database (every table, one consistent read) to a file.
    Backup {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup into an empty database (or, with --replace, over one).
    Restore {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        from: std::path::PathBuf,
        /// Delete everything in the target database first.
        #[arg(long)]
        replace: bool,
    },
    /// Print the OpenAPI document of the public API.
    Openapi,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    fleet_manager::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet-manager: can't start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let done = rt.block_on(async {
        match cli.command {
            Command::Plan {
                remote,
                file,
                out,
                output,
            } => {
                fleet_manager::fleetfile::plan(&remote, &file, out.as_deref(), output == "json")
                    .await
            }
            Command::Apply {
                remote,
                plan,
                no_wait,
                output,
            } => fleet_manager::fleetfile::apply(&remote, &plan, no_wait, output == "json")
                .await
                .map(|()| 0),
            other => run(other).await.map(|()| 0),
        }
    });
    match done {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("fleet-manager: {}", e.message());
            std::process::ExitCode::FAILURE
        }
    }
}

/// `30d`, `12h`, `90m`, `45s`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 30d, 12h, 90m or 45s"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("'{s}' is not a duration like 30d, 12h, 90m or 45s")),
    };
    n.checked_mul(secs)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("'{s}' is too long"))
}

/// The first line of a password file.
fn read_password(p: &std::path::Path) -> fleet_manager::error::Result<String> {
    let text = std::fs::read_to_string(p).map_err(|e| {
        fleet_manager::error::Error::invalid(format!("can't read {}: {e}", p.display()))
    })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn print_json(v: &impl serde::Serialize) -> fleet_manager::error::Result<()> {
    let s = serde_json::to_string(v).map_err(fleet_manager::error::Error::internal)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").map_err(fleet_manager::error::Error::internal)
}

async fn run(cmd: Command) -> fleet_manager::error::Result<()> {
    match cmd {
        Command::Serve { store, listen } => {
            let cfg = Config::resolve(&store, listen.as_deref())?;
            let app = server::open_app(&cfg).await?;
            let running = server::start(app, &cfg).await?;
            tracing::info!(
                addr = %running.addr,
                agents = %running.agent_addr,
                database = %fleet_manager::store::redact_url(&cfg.database_url),
                "fleet-manager listening; create an API key with `fleet-manager admin create-api-key`"
            );
            shutdown_signal().await;
            tracing::info!("stopping");
            running.stop().await;
            Ok(())
        }
        Command::Fleet(r) => fleet_manager::cli::run(r).await,
        Command::Plan { .. } | Command::Apply { .. } => Err(fleet_manager::error::Error::internal(
            "plan and apply are run by main",
        )),
        Command::Admin { command } => match command {
            AdminCommand::CreateApiKey {
                store,
                user,
                role,
                expires_in,
                label,
            } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.api_key_create(&user, role, expires_in, label).await?)
            }
            AdminCommand::CreateUser {
                store,
                name,
                role,
                password_file,
            } => {
                let password = password_file.as_deref().map(read_password).transpose()?;
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.user_create(&name, role, password).await?)
            }
            AdminCommand::ListUsers { store } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.user_list().await?)
            }
            AdminCommand::SetRole { store, name, role } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.user_set_role(&name, role).await?)
            }
            AdminCommand::DisableUser { store, name } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.user_set_disabled(&name, true).await?)
            }
            AdminCommand::EnableUser { store, name } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.user_set_disabled(&name, false).await?)
            }
            AdminCommand::ResetPassword {
                store,
                name,
                password_file,
            } => {
                let password = password_file.as_deref().map(read_password).transpose()?;
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.user_reset_password(&name, password).await?)
            }
            AdminCommand::Audit {
                store,
                since,
                actor,
                limit,
            } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                let filter = fleet_manager::store::identity::AuditFilter {
                    since: since.map(|d| {
                        fleet_manager::model::now_ms() - d.as_millis().min(i64::MAX as u128) as i64
                    }),
                    actor,
                    ..Default::default()
                };
                let page = fleet_manager::store::page::Page {
                    after: None,
                    limit: Some(u64::from(limit.max(1))),
                };
                for row in app.audit_list_all(filter, &page).await?.items {
                    print_json(&row)?;
                }
                Ok(())
            }
            AdminCommand::ListApiKeys { store } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                print_json(&app.api_key_list().await?)
            }
            AdminCommand::DeleteApiKey { store, id } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                app.api_key_delete(&id).await
            }
            AdminCommand::AddImage {
                store,
                id,
                version,
                kit,
                label,
            } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                let label = label.unwrap_or_else(|| format!("Node {version}"));
                app.image_register(&id, &label, &version, &kit, 100).await
            }
            AdminCommand::CloudDrift { store, clean } => {
                let app = server::open_app(&Config::resolve(&store, None)?).await?;
                let report = app.cloud_drift(clean).await?;
                print_json(
                    &serde_json::to_value(&report)
                        .map_err(fleet_manager::error::Error::internal)?,
                )
            }
            AdminCommand::Backup { store, out } => {
                let cfg = Config::resolve(&store, None)?;
                let db = fleet_manager::store::Store::open(&cfg.database_url).await?;
                let b = db.backup().await?;
                fleet_manager::store::backup::write_file(&b, &out)?;
                let rows: usize = b.tables.values().map(Vec::len).sum();
                print_json(&serde_json::json!({"file": out, "rows": rows, "format": b.format}))
            }
            AdminCommand::Restore {
                store,
                from,
                replace,
            } => {
                let cfg = Config::resolve(&store, None)?;
                std::fs::create_dir_all(&cfg.data_dir)
                    .map_err(fleet_manager::error::Error::internal)?;
                let b = fleet_manager::store::backup::read_file(&from)?;
                let db = fleet_manager::store::Store::open(&cfg.database_url).await?;
                db.restore(&b, replace).await?;
                let rows: usize = b.tables.values().map(Vec::len).sum();
                print_json(&serde_json::json!({"restored": from, "rows": rows}))
            }
            AdminCommand::Openapi => {
                let mut out = std::io::stdout().lock();
                out.write_all(fleet_manager::api::openapi::document().as_bytes())
                    .map_err(fleet_manager::error::Error::internal)
            }
        },
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
