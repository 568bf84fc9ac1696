//! Operations: the list, one operation with its progress and live log,
//! and aborting one.

use super::dashboard::OpRow;
use super::{or_page, page_at};
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, badge, duration, render, time};
use crate::console::{TENANT, see_other};
use crate::model::operation::FutureState;
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

#[derive(Template)]
#[template(path = "console/operations.html")]
struct ListPage {
    chrome: Option<Chrome>,
    recent: Vec<OpRow>,
    next: Option<String>,
    first: bool,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let ops = or_page!(s, app.future_list(TENANT, &page).await);
    render(&ListPage {
        chrome: Some(Chrome::of(&s, "operations")),
        next: super::next_link("/console/operations", ops.next.as_ref()),
        recent: ops.items.into_iter().map(OpRow::of).collect(),
        first: page.after.is_none(),
    })
}

/// An operation as its page shows it.
pub struct OpView {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub state: String,
    pub badge: &'static str,
    pub alive: bool,
    pub percent: u8,
    pub done_steps: i32,
    pub total_steps: i32,
    pub step: String,
    pub started: String,
    pub took: String,
    pub by: String,
    pub error: Option<String>,
    pub log: Vec<String>,
    pub every: &'static str,
}

impl OpView {
    fn of(f: FutureState) -> OpView {
        OpView {
            badge: badge(&f.state),
            alive: f.alive,
            every: if f.alive { "2s" } else { "" },
            id: f.job_id,
            kind: f.kind,
            target: f.target_id,
            state: f.state,
            percent: f.progress.percent,
            done_steps: f.progress.done_steps,
            total_steps: f.progress.total_steps,
            step: f.progress.current_step.unwrap_or_default(),
            started: time(f.start_time),
            took: duration(f.running_time),
            by: f.initiated_by.unwrap_or_default(),
            error: f.error.map(|e| format!("{}: {}", e.error_type, e.message)),
            log: f.log,
        }
    }
}

#[derive(Template)]
#[template(path = "console/operation.html")]
struct OpPage {
    chrome: Option<Chrome>,
    op: OpView,
}

pub async fn show(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let f = or_page!(s, app.future_get(TENANT, &id, true).await);
    render(&OpPage {
        chrome: Some(Chrome::of(&s, "operations")),
        op: OpView::of(f),
    })
}

#[derive(Template)]
#[template(path = "console/operation_live.html")]
struct OpLive {
    chrome: Option<Chrome>,
    op: OpView,
}

/// The progress and log alone, for polling; polling stops once the
/// operation has ended.
pub async fn live(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let f = or_page!(s, app.future_get(TENANT, &id, true).await);
    render(&OpLive {
        chrome: Some(Chrome::of(&s, "operations")),
        op: OpView::of(f),
    })
}

pub async fn abort(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    or_page!(s, app.future_abort(TENANT, &id).await);
    see_other(&headers, &format!("/console/operations/{id}"))
}
