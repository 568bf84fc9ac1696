//! Rollouts: the list, one rollout with its targets (polled while it runs),
//! and pausing, resuming or cancelling it.

use super::{or_page, page_at};
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, badge, duration, render, time};
use crate::console::{TENANT, see_other};
use crate::model::rollout::{Rollout, RolloutState};
use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

/// A rollout as the pages show it.
pub struct RolloutView {
    pub id: String,
    pub label: String,
    pub action: String,
    pub state: &'static str,
    pub badge: &'static str,
    pub reason: Option<String>,
    pub active: bool,
    pub paused: bool,
    pub targets: usize,
    pub done: usize,
    pub running: usize,
    pub failed: usize,
    pub skipped: usize,
    pub pending: usize,
    pub percent: usize,
    pub limits: String,
    pub by: String,
    pub started: String,
    pub took: String,
    pub rows: Vec<TargetRow>,
}

pub struct TargetRow {
    pub instance: String,
    pub canary: bool,
    pub state: &'static str,
    pub badge: &'static str,
    pub operation: Option<String>,
    pub error: Option<String>,
    pub took: String,
}

/// A rollout's states, as the badges know them.
fn state_badge(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Running | RolloutState::Cancelling | RolloutState::Failing => "busy",
        RolloutState::Done => "ok",
        RolloutState::Failed => "bad",
        RolloutState::Paused | RolloutState::Cancelled => "idle",
    }
}

impl RolloutView {
    fn of(r: Rollout) -> RolloutView {
        let c = &r.counts;
        let spec = &r.spec;
        let mut action = spec.action.name().to_string();
        if let crate::model::rollout::RolloutAction::Upgrade { image_id, .. } = &spec.action {
            action = format!("{action} to {image_id}");
        }
        let limit = |l: crate::model::rollout::Limit| match l {
            crate::model::rollout::Limit::Count(n) => n.to_string(),
            crate::model::rollout::Limit::Percent(p) => format!("{p}%"),
        };
        let end = r.finished_at.unwrap_or_else(crate::model::now_ms);
        RolloutView {
            state: r.state.as_str(),
            badge: state_badge(r.state),
            active: !r.state.is_final(),
            paused: r.state == RolloutState::Paused,
            targets: c.targets,
            done: c.done,
            running: c.running,
            failed: c.failed,
            skipped: c.skipped,
            pending: c.pending,
            percent: (c.done + c.failed + c.skipped) * 100 / c.targets.max(1),
            limits: format!(
                "{} canaries, at most {} at once, {} errors allowed, healthy for {} s",
                spec.canaries,
                limit(spec.max_in_flight),
                limit(spec.max_errors),
                spec.health_seconds
            ),
            action,
            by: r.initiated_by.clone().unwrap_or_default(),
            started: time(r.created_at),
            took: duration(end - r.created_at),
            rows: r
                .targets
                .unwrap_or_default()
                .into_iter()
                .map(|t| TargetRow {
                    state: t.state.as_str(),
                    badge: badge(t.state.as_str()),
                    took: match (t.started_at, t.finished_at) {
                        (Some(a), Some(b)) => duration(b - a),
                        (Some(a), None) => duration(crate::model::now_ms() - a),
                        _ => String::new(),
                    },
                    instance: t.instance_id,
                    canary: t.canary,
                    operation: t.operation_id,
                    error: t.error,
                })
                .collect(),
            id: r.id,
            label: r.label,
            reason: r.reason,
        }
    }
}

#[derive(Template)]
#[template(path = "console/rollouts.html")]
struct ListPage {
    chrome: Option<Chrome>,
    rollouts: Vec<RolloutView>,
    next: Option<String>,
    first: bool,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let got = or_page!(s, app.rollout_list(TENANT, &page).await);
    render(&ListPage {
        chrome: Some(Chrome::of(&s, "rollouts")),
        next: super::next_link("/console/rollouts", got.next.as_ref()),
        rollouts: got.items.into_iter().map(RolloutView::of).collect(),
        first: page.after.is_none(),
    })
}

#[derive(Template)]
#[template(path = "console/rollout.html")]
struct ShowPage {
    chrome: Option<Chrome>,
    r: RolloutView,
}

pub async fn show(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let r = or_page!(s, app.rollout_get(TENANT, &id).await);
    render(&ShowPage {
        chrome: Some(Chrome::of(&s, "rollouts")),
        r: RolloutView::of(r),
    })
}

#[derive(Template)]
#[template(path = "console/rollout_live.html")]
struct LivePart {
    chrome: Option<Chrome>,
    r: RolloutView,
}

/// The state, counts and targets alone, for polling; polling stops once
/// the rollout has ended.
pub async fn live(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let r = or_page!(s, app.rollout_get(TENANT, &id).await);
    render(&LivePart {
        chrome: Some(Chrome::of(&s, "rollouts")),
        r: RolloutView::of(r),
    })
}

/// What a user does to a rollout.
#[derive(Debug, Clone, Copy)]
enum Move {
    Pause,
    Resume,
    Cancel,
}

async fn moved(mv: Move, app: App, s: Session, headers: HeaderMap, id: String) -> Response {
    let ctx = &s.ctx;
    let r = match mv {
        Move::Pause => app.rollout_pause(ctx, TENANT, &id).await,
        Move::Resume => app.rollout_resume(ctx, TENANT, &id).await,
        Move::Cancel => app.rollout_cancel(ctx, TENANT, &id).await,
    };
    or_page!(s, r);
    see_other(&headers, &format!("/console/rollouts/{id}"))
}

pub async fn pause(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    moved(Move::Pause, app, s, headers, id).await
}

pub async fn resume(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    moved(Move::Resume, app, s, headers, id).await
}

pub async fn cancel(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    moved(Move::Cancel, app, s, headers, id).await
}
