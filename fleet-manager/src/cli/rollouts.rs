//! `fleet-manager rollouts ...` over the gRPC API: a rollout started from a
//! spec (the REST API's JSON, read through the same model) or from flags,
//! and followed to its end with a progress bar over its targets.

use super::client::{Clients, answer};
use super::{Conn, show};
use crate::error::{Error, Result};
use crate::model::rollout::RolloutSpec;
use fm_proto::fleet::{self as pb, Rollout};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout, from a spec file (JSON, as the REST API takes it;
    /// `-` for stdin) or from the flags, and follow it unless --no-wait.
    Create(Box<RolloutCreate>),
    /// The rollouts, newest first.
    List,
    /// One rollout with its targets.
    Get {
        id: String,
    },
    /// Follow a rollout to its end.
    Wait {
        id: String,
    },
    /// Start no more targets until resumed.
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Skip every target not started; followed until those in flight end.
    Cancel {
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RolloutCreate {
    /// The whole spec; the flags below are then not used.
    #[arg(long, short = 'f')]
    file: Option<std::path::PathBuf>,
    /// REPROVISION, UPGRADE, RESTART_NODE, REPLAY_SETUP_ACTIONS,
    /// SNAPSHOT, BACKUP, STOP or START.
    #[arg(long)]
    action: Option<String>,
    /// The image an UPGRADE moves to.
    #[arg(long)]
    to_image: Option<String>,
    /// Select these instances (repeat).
    #[arg(long = "instance")]
    instances: Vec<String>,
    /// Select instances with every one of these FM tags (repeat).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long)]
    template: Option<String>,
    #[arg(long)]
    network: Option<String>,
    /// Select instances on this image.
    #[arg(long)]
    image: Option<String>,
    /// Select every instance of the tenant.
    #[arg(long)]
    all: bool,
    #[arg(long)]
    label: Option<String>,
    #[arg(long)]
    canaries: Option<u32>,
    /// A count or a share ("25%").
    #[arg(long)]
    max_in_flight: Option<String>,
    /// A count or a share.
    #[arg(long)]
    max_errors: Option<String>,
    #[arg(long)]
    health_seconds: Option<u32>,
}

/// `5` as a number, `25%` as text: the spec takes both.
fn limit_arg(s: String) -> Value {
    s.parse::<u32>().map(Into::into).unwrap_or(s.into())
}

/// A rollout spec from a JSON file, `-` for standard input.
fn read_spec(f: &std::path::Path) -> Result<Value> {
    let text = if f == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(Error::internal)?
    } else {
        std::fs::read_to_string(f)
            .map_err(|e| Error::invalid(format!("can't read {}: {e}", f.display())))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not a JSON spec: {e}", f.display())))
}

impl RolloutCreate {
    /// The spec, in the REST API's shape.
    fn spec(self) -> Result<Value> {
        if let Some(f) = &self.file {
            return read_spec(f);
        }
        let action = self
            .action
            .ok_or_else(|| Error::invalid("give --action (or the whole spec with --file)"))?;
        let mut a = json!({"type": action});
        if let Some(i) = self.to_image {
            a["imageId"] = i.into();
        }
        let mut spec = json!({
            "selector": {
                "instanceIds": self.instances, "fmTags": self.tags,
                "instanceSettingsTemplateId": self.template,
                "virtualNetworkId": self.network, "imageId": self.image, "all": self.all,
            },
            "action": a,
        });
        for (k, v) in [
            ("label", self.label.map(Value::from)),
            ("canaries", self.canaries.map(Into::into)),
            ("maxInFlight", self.max_in_flight.map(limit_arg)),
            ("maxErrors", self.max_errors.map(limit_arg)),
            ("healthSeconds", self.health_seconds.map(Into::into)),
        ] {
            if let Some(v) = v {
                spec[k] = v;
            }
        }
        Ok(spec)
    }
}

/// The spec's message, read through the REST API's model (the same
/// fields, defaults and messages).
fn spec_message(spec: Value) -> Result<pb::RolloutSpec> {
    let model: RolloutSpec =
        serde_json::from_value(spec).map_err(|e| Error::invalid(format!("the spec: {e}")))?;
    Ok(crate::grpc::rollouts::spec_to_proto(model))
}

/// One line of where a rollout stands.
fn line(r: &Rollout) -> String {
    let c = r.counts.unwrap_or_default();
    format!(
        "{} {}: {}/{} done, {} running, {} failed, {} skipped",
        r.id, r.state, c.done, c.targets, c.running, c.failed, c.skipped
    )
}

fn ended(r: &Rollout) -> bool {
    matches!(r.state.as_str(), "done" | "failed" | "cancelled")
}

/// Follows a rollout to its end: a bar over its targets on a terminal, a
/// line on each change otherwise, the last line either way.
async fn follow(c: &mut Clients, tenant: &str, mut r: Rollout) -> Result<Rollout> {
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .map_err(Error::internal)?
            .progress_chars("=> "),
    );
    bar.set_prefix(r.id.clone());
    let mut shown = String::new();
    loop {
        let counts = r.counts.unwrap_or_default();
        bar.set_length(counts.targets.max(0) as u64);
        bar.set_position((counts.done + counts.failed + counts.skipped).max(0) as u64);
        bar.set_message(format!(
            "{}: {} running, {} failed",
            r.state, counts.running, counts.failed
        ));
        let now = line(&r);
        if !tty && now != shown {
            eprintln!("{now}");
        }
        shown = now;
        if ended(&r) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let req = pb::GetRolloutRequest {
            tenant: tenant.to_string(),
            id: r.id.clone(),
        };
        r = answer(c.rollouts.get_rollout(req).await)?;
    }
    bar.finish_and_clear();
    if tty {
        eprintln!("{shown}");
    }
    Ok(r)
}

/// A rollout that ended failed or cancelled, as the error.
fn outcome(r: &Rollout) -> Result<()> {
    match r.state.as_str() {
        "failed" | "cancelled" => Err(Error::invalid(format!(
            "{} {}: {}",
            r.id,
            r.state,
            if r.reason.is_empty() {
                "no reason given"
            } else {
                &r.reason
            }
        ))),
        _ => Ok(()),
    }
}

pub async fn run(conn: &Conn, command: RolloutCommand) -> Result<()> {
    let mut c = conn.connect().await?;
    let t = conn.tenant.clone();
    let out = conn.output;
    let one = |id: String| pb::RolloutActionRequest {
        tenant: t.clone(),
        id,
    };
    let cancelling = matches!(command, RolloutCommand::Cancel { .. });
    let (r, follows) = match command {
        RolloutCommand::Create(create) => {
            let req = pb::CreateRolloutRequest {
                tenant: t.clone(),
                spec: Some(spec_message(create.spec()?)?),
            };
            (answer(c.rollouts.create_rollout(req).await)?, true)
        }
        RolloutCommand::List => {
            let all = super::every_page(|page_token| {
                let mut cl = c.rollouts.clone();
                let req = pb::ListRolloutsRequest {
                    tenant: t.clone(),
                    page_size: 500,
                    page_token,
                };
                async move {
                    let r = answer(cl.list_rollouts(req).await)?;
                    Ok((r.rollouts, r.next_page_token))
                }
            })
            .await?;
            return show::list(out, &all);
        }
        RolloutCommand::Get { id } => {
            let req = pb::GetRolloutRequest { tenant: t, id };
            return show::rollout(out, &answer(c.rollouts.get_rollout(req).await)?);
        }
        RolloutCommand::Wait { id } => {
            let req = pb::GetRolloutRequest {
                tenant: t.clone(),
                id,
            };
            (answer(c.rollouts.get_rollout(req).await)?, true)
        }
        RolloutCommand::Pause { id } => (answer(c.rollouts.pause_rollout(one(id)).await)?, false),
        RolloutCommand::Resume { id } => (answer(c.rollouts.resume_rollout(one(id)).await)?, false),
        RolloutCommand::Cancel { id } => (answer(c.rollouts.cancel_rollout(one(id)).await)?, true),
    };
    if !follows || conn.no_wait {
        return show::rollout(out, &r);
    }
    let r = follow(&mut c, &t, r).await?;
    show::rollout(out, &r)?;
    // Ended cancelled is what a cancel asks for.
    if cancelling && r.state == "cancelled" {
        return Ok(());
    }
    outcome(&r)
}
