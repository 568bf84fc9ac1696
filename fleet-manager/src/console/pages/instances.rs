//! Instances: the list (filters, paging), one instance's page (status,
//! vitals, snapshots, backups, operations, and a live panel that refreshes
//! while something is in flight), and every action, each behind a
//! confirmation that names what it stops, replaces or loses.

use super::dashboard::OpRow;
use super::{or_page, page_at};
use crate::agents::AgentLog;
use crate::app::Action;
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::TENANT;
use crate::console::view::{Chrome, badge, bytes, error_page, render, time, urlencode};
use crate::error::{Error, Result};
use crate::model::lifecycle::NodeHeartbeat;
use crate::model::operation::FutureState;
use crate::store::overview::InstanceFilter;
use crate::store::page::Page;
use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::Deserialize;

/// Every action the instance page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Reprovision,
    Start,
    Stop,
    RestartNode,
    ReplaySetupActions,
    Snapshot,
    RestoreSnapshot,
    Backup,
    RestoreBackup,
    Deprovision,
    Delete,
}

impl Verb {
    pub const ALL: [Verb; 11] = [
        Verb::Reprovision,
        Verb::Start,
        Verb::Stop,
        Verb::RestartNode,
        Verb::ReplaySetupActions,
        Verb::Snapshot,
        Verb::RestoreSnapshot,
        Verb::Backup,
        Verb::RestoreBackup,
        Verb::Deprovision,
        Verb::Delete,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Verb::Reprovision => "reprovision",
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::RestartNode => "restart-node",
            Verb::ReplaySetupActions => "replay-setup-actions",
            Verb::Snapshot => "snapshot",
            Verb::RestoreSnapshot => "restore-snapshot",
            Verb::Backup => "backup",
            Verb::RestoreBackup => "restore-backup",
            Verb::Deprovision => "deprovision",
            Verb::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.slug() == s)
    }

    /// The console route that does it.
    pub fn path(self) -> &'static str {
        match self {
            Verb::Reprovision => "/console/instances/{id}/actions/reprovision",
            Verb::Start => "/console/instances/{id}/actions/start",
            Verb::Stop => "/console/instances/{id}/actions/stop",
            Verb::RestartNode => "/console/instances/{id}/actions/restart-node",
            Verb::ReplaySetupActions => "/console/instances/{id}/actions/replay-setup-actions",
            Verb::Snapshot => "/console/instances/{id}/actions/snapshot",
            Verb::RestoreSnapshot => "/console/instances/{id}/actions/restore-snapshot",
            Verb::Backup => "/console/instances/{id}/actions/backup",
            Verb::RestoreBackup => "/console/instances/{id}/actions/restore-backup",
            Verb::Deprovision => "/console/instances/{id}/actions/deprovision",
            Verb::Delete => "/console/instances/{id}/actions/delete",
        }
    }

    /// The REST endpoint that does the same, whose role it needs.
    pub fn rest(self) -> (Method, &'static str) {
        match self {
            Verb::Reprovision => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/reprovision",
            ),
            Verb::Start => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/start",
            ),
            Verb::Stop => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/stop",
            ),
            Verb::RestartNode => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/restart-dss",
            ),
            Verb::ReplaySetupActions => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/replay-setup-actions",
            ),
            Verb::Snapshot => (
                Method::POST,
                "/tenants/{tenantId}/instances/{instanceId}/snapshots",
            ),
            Verb::RestoreSnapshot => (
                Method::POST,
                "/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}/reprovision",
            ),
            Verb::Backup => (
                Method::POST,
                "/tenants/{tenantId}/instances/{instanceId}/backups",
            ),
            Verb::RestoreBackup => (
                Method::POST,
                "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/restore",
            ),
            Verb::Deprovision => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/deprovision",
            ),
            Verb::Delete => (
                Method::GET,
                "/tenants/{tenantId}/instances/{instanceId}/actions/delete",
            ),
        }
    }

    fn label(self, state: &str) -> &'static str {
        match self {
            Verb::Reprovision if never_up(state) => "Provision",
            Verb::Reprovision => "Reprovision",
            Verb::Start => "Start",
            Verb::Stop => "Stop",
            Verb::RestartNode => "Restart node",
            Verb::ReplaySetupActions => "Replay setup actions",
            Verb::Snapshot => "Snapshot",
            Verb::RestoreSnapshot => "Restore snapshot",
            Verb::Backup => "Back up",
            Verb::RestoreBackup => "Restore backup",
            Verb::Deprovision => "Deprovision",
            Verb::Delete => "Delete",
        }
    }

    /// What the action does, and what it stops, replaces or loses.
    fn consequence(self, state: &str, what: Option<&str>) -> String {
        let what = what.unwrap_or("?");
        match self {
            Verb::Reprovision if never_up(state) => {
                "Creates the VM and its data disk, then installs and starts the node.".into()
            }
            Verb::Reprovision => "Replaces the VM with a new one from the instance's image; the \
                 data disk is kept. The node restarts: its users are signed out and running \
                 jobs are interrupted."
                .into(),
            Verb::Start => "Starts the VM, then the node.".into(),
            Verb::Stop => "Stops the node and its VM. Its users are signed out and running \
                 jobs are interrupted; the data disk is kept."
                .into(),
            Verb::RestartNode => "Restarts the node on its VM. Its users are signed out and \
                 running jobs are interrupted."
                .into(),
            Verb::ReplaySetupActions => "Runs the template's setup actions again on the \
                 running node; the node may restart."
                .into(),
            Verb::Snapshot => "Takes a snapshot of the data disk. The node keeps running.".into(),
            Verb::RestoreSnapshot => format!(
                "Replaces the VM and the data disk with new ones made from snapshot {what}. \
                 Everything written to the disk since that snapshot is lost; the node restarts."
            ),
            Verb::Backup => "Backs the node's data dir up to object storage. The node keeps \
                 running."
                .into(),
            Verb::RestoreBackup => format!(
                "Replaces the node's data dir with backup {what}. The node is stopped \
                 meanwhile; everything written since that backup is lost."
            ),
            Verb::Deprovision => "Terminates the VM. The data disk and the snapshots are \
                 kept; the node is unreachable until it is provisioned again."
                .into(),
            Verb::Delete => "Deletes the instance: its VM, its data disk (everything on it is \
                 lost) and FM's record of it. This can't be undone."
                .into(),
        }
    }

    /// Why the action can't be done now, if it can't.
    fn blocked(self, state: &str, busy: bool) -> Option<&'static str> {
        if busy {
            return Some("an operation is running on this instance");
        }
        let ok = match self {
            Verb::Reprovision | Verb::RestoreSnapshot | Verb::Delete => state != "provisioning",
            Verb::Start => state == "stopped",
            Verb::Stop | Verb::RestartNode | Verb::ReplaySetupActions => state == "running",
            Verb::Backup | Verb::RestoreBackup => state == "running",
            Verb::Snapshot => matches!(state, "running" | "stopped" | "deprovisioned"),
            Verb::Deprovision => matches!(state, "running" | "stopped" | "provisioning-failed"),
        };
        (!ok).then_some(match self {
            Verb::Start => "the instance is not stopped",
            Verb::Snapshot => "the instance has no data disk yet",
            Verb::Deprovision => "the instance has no VM",
            Verb::Reprovision | Verb::RestoreSnapshot | Verb::Delete => {
                "the instance is being provisioned"
            }
            _ => "the instance is not running",
        })
    }

    /// Whether the action is offered once per snapshot or backup rather
    /// than among the instance's buttons.
    fn per_item(self) -> bool {
        matches!(self, Verb::RestoreSnapshot | Verb::RestoreBackup)
    }
}

fn never_up(state: &str) -> bool {
    matches!(state, "none" | "")
}

fn transitional(state: &str) -> bool {
    matches!(state, "provisioning")
}

// ------------------------------------------------------------------ list

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    q: Option<String>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

pub struct Row {
    pub id: String,
    pub label: String,
    pub state: String,
    pub badge: &'static str,
    pub node: String,
    pub public_url: Option<String>,
}

#[derive(Template)]
#[template(path = "console/instances.html")]
struct ListPage {
    chrome: Option<Chrome>,
    rows: Vec<Row>,
    state: String,
    q: String,
    states: [&'static str; 7],
    next: Option<String>,
    first: bool,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let state = q.state.clone().filter(|v| !v.is_empty());
    let filter = InstanceFilter {
        state: state.clone(),
        text: q.q.clone().filter(|v| !v.is_empty()),
    };
    let rows = or_page!(s, app.instance_rows(TENANT, &filter, &page).await);
    let mut at = format!(
        "/console/instances?state={}",
        urlencode(state.as_deref().unwrap_or_default())
    );
    if let Some(t) = &filter.text {
        at.push_str(&format!("&q={}", urlencode(t)));
    }
    let next = super::next_link(&at, rows.next.as_ref());
    render(&ListPage {
        chrome: Some(Chrome::of(&s, "instances")),
        rows: rows
            .items
            .into_iter()
            .map(|r| {
                let st = r.state.unwrap_or_else(|| "none".into());
                Row {
                    badge: badge(&st),
                    state: st,
                    id: r.id,
                    label: r.label,
                    node: r.node_state.unwrap_or_default(),
                    public_url: r.public_url,
                }
            })
            .collect(),
        state: state.unwrap_or_default(),
        q: q.q.unwrap_or_default(),
        states: [
            "none",
            "provisioning",
            "provisioning-failed",
            "running",
            "stopped",
            "deprovisioned",
            "",
        ],
        next,
        first: page.after.is_none(),
    })
}

// ---------------------------------------------------------------- detail

/// What the live panel shows; refreshed by polling.
pub struct Live {
    pub id: String,
    pub state: String,
    pub badge: &'static str,
    pub public_url: Option<String>,
    pub node_state: String,
    pub agent_state: String,
    pub agent_badge: &'static str,
    pub node_version: String,
    pub heartbeat: Option<String>,
    pub vitals: Option<Vitals>,
    pub active: Option<Active>,
    /// The actions, each enabled or not by the state (shown to those who
    /// may act).
    pub buttons: Vec<Button>,
    pub can_operate: bool,
    /// How often the panel asks again: fast while something moves.
    pub every: &'static str,
}

pub struct Vitals {
    pub disk: String,
    pub disk_percent: u64,
    pub memory: String,
    pub load: String,
}

pub struct Active {
    pub id: String,
    pub kind: String,
    pub percent: u8,
    pub step: String,
    pub log: Vec<String>,
}

async fn live_of(app: &App, s: &Session, id: &str) -> Result<Live> {
    let st = app.instance_status(TENANT, id).await?;
    let active = app.active_operation(id, 8).await?;
    let vitals = st
        .heartbeat
        .clone()
        .flatten()
        .map(|h: NodeHeartbeat| Vitals {
            disk_percent: h.data_disk_percent().unwrap_or(0),
            disk: format!(
                "{} of {}",
                bytes(h.data_disk_used_bytes),
                bytes(h.data_disk_total_bytes)
            ),
            memory: format!(
                "{} of {}",
                bytes(h.memory_used_bytes),
                bytes(h.memory_total_bytes)
            ),
            load: h.cpu_load.map(|l| format!("{l:.2}")).unwrap_or_default(),
        });
    let busy = active.is_some() || transitional(&st.state);
    let buttons = Verb::ALL
        .into_iter()
        .filter(|v| !v.per_item())
        .map(|v| Button {
            slug: v.slug(),
            label: v.label(&st.state),
            blocked: v.blocked(&st.state, active.is_some()),
        })
        .collect();
    Ok(Live {
        buttons,
        can_operate: s.ctx.role >= crate::model::user::Role::Operator,
        id: id.to_string(),
        badge: badge(&st.state),
        state: st.state.clone(),
        public_url: st.public_url.clone(),
        node_state: st.node_state.clone().flatten().unwrap_or_default(),
        agent_badge: badge(&st.agent_state),
        agent_state: st.agent_state.clone(),
        node_version: st.node_version.clone().flatten().unwrap_or_default(),
        heartbeat: st.last_heartbeat_at.flatten().map(time),
        vitals,
        active: active.map(|f: FutureState| Active {
            id: f.job_id,
            kind: f.kind,
            percent: f.progress.percent,
            step: f.progress.current_step.unwrap_or_default(),
            log: f.log,
        }),
        every: if busy { "2s" } else { "30s" },
    })
}

pub struct Button {
    pub slug: &'static str,
    pub label: &'static str,
    pub blocked: Option<&'static str>,
}

pub struct SnapRow {
    pub id: String,
    pub at: String,
    pub reason: String,
    pub node_version: String,
}

pub struct BackupRow {
    pub id: String,
    pub at: String,
    pub size: String,
    pub node_version: String,
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
    /// Changed settings that wait for a reprovisioning, comma-separated.
    pending: Option<String>,
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage {
    chrome: Option<Chrome>,
    saved: bool,
    pending: Vec<String>,
    id: String,
    label: String,
    description: String,
    node_type: String,
    template_id: String,
    network_id: String,
    image_id: String,
    live: Live,
    restore_blocked: Option<&'static str>,
    backup_blocked: Option<&'static str>,
    snapshots: Vec<SnapRow>,
    backups: Vec<BackupRow>,
    /// The operations that touched it.
    recent: Vec<OpRow>,
}

pub async fn show(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let inst = or_page!(s, app.instance_get(TENANT, &id).await);
    let live = or_page!(s, live_of(&app, &s, &id).await);
    let recent = Page {
        after: None,
        limit: Some(20),
    };
    let snapshots = or_page!(s, app.snapshot_list(TENANT, &id, &recent).await);
    let backups = or_page!(s, app.backup_list(TENANT, &id, &recent).await);
    let ops = or_page!(s, app.operations_of(TENANT, &id, &recent).await);
    let busy = live.active.is_some();
    render(&InstancePage {
        chrome: Some(Chrome::of(&s, "instances")),
        saved: q.saved.is_some(),
        pending: q
            .pending
            .unwrap_or_default()
            .split(',')
            .filter(|f| !f.is_empty() && f.len() <= 64)
            .take(50)
            .map(str::to_string)
            .collect(),
        restore_blocked: Verb::RestoreSnapshot.blocked(&live.state, busy),
        backup_blocked: Verb::RestoreBackup.blocked(&live.state, busy),
        id: id.clone(),
        label: inst.label,
        description: inst.description,
        node_type: format!("{:?}", inst.dss_node_type),
        template_id: inst.instance_settings_template_id,
        network_id: inst.virtual_network_id,
        image_id: inst.image_id,
        live,
        snapshots: snapshots
            .items
            .into_iter()
            .map(|x| SnapRow {
                at: time(x.creation_date),
                reason: x.reason_for_snapshot.unwrap_or_default(),
                node_version: x.node_version.unwrap_or_default(),
                id: x.id,
            })
            .collect(),
        backups: backups
            .items
            .into_iter()
            .map(|b| BackupRow {
                at: time(b.creation_date),
                size: bytes(b.archive_size_bytes.max(0) as u64),
                node_version: b.node_version,
                id: b.id,
            })
            .collect(),
        recent: ops.items.into_iter().map(OpRow::of).collect(),
    })
}

#[derive(Template)]
#[template(path = "console/instance_live.html")]
struct LiveFragment {
    live: Live,
}

/// The live panel alone, for polling.
pub async fn live(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let live = or_page!(s, live_of(&app, &s, &id).await);
    render(&LiveFragment { live })
}

#[derive(Template)]
#[template(path = "console/agent_log.html")]
struct AgentLogFragment {
    id: String,
    lines: Vec<String>,
    /// Why there are no lines, if there are none.
    note: &'static str,
}

/// The agent's recent log lines, asked of it when shown.
pub async fn agent_log(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let log = or_page!(s, app.agent_log(TENANT, &id).await);
    let (lines, note) = match log {
        AgentLog::Lines(l) if l.is_empty() => (l, "The agent has logged nothing yet."),
        AgentLog::Lines(l) => (l, ""),
        AgentLog::NotConnected => (Vec::new(), "No agent is connected."),
        AgentLog::NoAnswer => (Vec::new(), "The agent did not answer in time."),
    };
    render(&AgentLogFragment { id, lines, note })
}

// ----------------------------------------------------------------- actions

#[derive(Debug, Deserialize, Default)]
pub struct ItemQuery {
    snapshot: Option<String>,
    backup: Option<String>,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
struct ConfirmPage {
    chrome: Option<Chrome>,
    id: String,
    label: String,
    verb: &'static str,
    title: &'static str,
    consequence: String,
    snapshot: Option<String>,
    backup: Option<String>,
    danger: bool,
}

pub async fn confirm(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<ItemQuery>,
) -> Response {
    let Some(verb) = Verb::parse(&action) else {
        return error_page(Some(&s), Error::invalid_path());
    };
    let inst = or_page!(s, app.instance_get(TENANT, &id).await);
    let st = or_page!(s, app.instance_status(TENANT, &id).await);
    let item = match verb {
        Verb::RestoreSnapshot => q.snapshot.clone(),
        Verb::RestoreBackup => q.backup.clone(),
        _ => None,
    };
    if verb.per_item() && item.is_none() {
        return error_page(
            Some(&s),
            Error::invalid(format!(
                "'{}' is missing: choose one on the instance's page",
                if verb == Verb::RestoreSnapshot {
                    "snapshot"
                } else {
                    "backup"
                }
            )),
        );
    }
    render(&ConfirmPage {
        chrome: Some(Chrome::of(&s, "instances")),
        label: inst.label,
        verb: verb.slug(),
        title: verb.label(&st.state),
        consequence: verb.consequence(&st.state, item.as_deref()),
        snapshot: q.snapshot,
        backup: q.backup,
        danger: !matches!(
            verb,
            Verb::Start | Verb::Snapshot | Verb::Backup | Verb::Reprovision
        ) || !never_up(&st.state) && verb == Verb::Reprovision,
        id,
    })
}

#[derive(Debug, Deserialize)]
pub struct ActForm {
    snapshot: Option<String>,
    backup: Option<String>,
    reason: Option<String>,
}

/// Does `verb` on the instance, then shows the instance (or, once it is
/// deleted, the list).
pub async fn act(
    verb: Verb,
    app: App,
    s: Session,
    headers: HeaderMap,
    id: String,
    f: ActForm,
) -> Response {
    let ctx = &s.ctx;
    let reason = f.reason.as_deref().filter(|r| !r.is_empty());
    let started: Result<()> = match verb {
        Verb::Reprovision => app
            .instance_reprovision(ctx, TENANT, &id, false, None)
            .await
            .map(drop),
        Verb::Start => app
            .instance_action(ctx, TENANT, &id, Action::Start)
            .await
            .map(drop),
        Verb::Stop => app
            .instance_action(ctx, TENANT, &id, Action::Stop)
            .await
            .map(drop),
        Verb::RestartNode => app
            .instance_action(ctx, TENANT, &id, Action::RestartNode)
            .await
            .map(drop),
        Verb::ReplaySetupActions => app
            .instance_action(ctx, TENANT, &id, Action::ReplaySetupActions)
            .await
            .map(drop),
        Verb::Deprovision => app
            .instance_action(ctx, TENANT, &id, Action::Deprovision)
            .await
            .map(drop),
        Verb::Delete => app.instance_delete(ctx, TENANT, &id).await.map(drop),
        Verb::Snapshot => app
            .snapshot_create(ctx, TENANT, &id, reason)
            .await
            .map(drop),
        Verb::RestoreSnapshot => match f.snapshot.as_deref() {
            Some(snap) => app
                .instance_reprovision(ctx, TENANT, &id, false, Some(snap))
                .await
                .map(drop),
            None => Err(Error::invalid("'snapshot' is missing")),
        },
        Verb::Backup => app.backup_take(ctx, TENANT, &id, reason).await.map(drop),
        Verb::RestoreBackup => match f.backup.as_deref() {
            Some(b) => app.backup_restore(ctx, TENANT, &id, b).await.map(drop),
            None => Err(Error::invalid("'backup' is missing")),
        },
    };
    match started {
        Ok(_) if verb == Verb::Delete => crate::console::see_other(&headers, "/console/instances"),
        Ok(_) => crate::console::see_other(&headers, &format!("/console/instances/{id}")),
        Err(e) => error_page(Some(&s), e),
    }
}
