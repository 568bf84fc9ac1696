//! The fleet at a glance.

use super::or_page;
use crate::app::App;
use crate::app::overview::{DISK_WARN_PERCENT, Overview};
use crate::app::sessions::Session;
use crate::console::TENANT;
use crate::console::view::{Chrome, badge, duration, render};
use crate::store::page::Page;
use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

/// An operation as a dashboard row.
pub struct OpRow {
    pub id: String,
    pub kind: String,
    pub target: String,
    pub state: String,
    pub badge: &'static str,
    pub percent: u8,
    pub by: String,
    pub took: String,
}

impl OpRow {
    pub fn of(f: crate::model::operation::FutureState) -> OpRow {
        OpRow {
            badge: badge(&f.state),
            id: f.job_id,
            kind: f.kind,
            target: f.target_id,
            state: f.state,
            percent: f.progress.percent,
            by: f.initiated_by.unwrap_or_default(),
            took: duration(f.running_time),
        }
    }
}

#[derive(Template)]
#[template(path = "console/dashboard.html")]
struct DashboardPage {
    chrome: Option<Chrome>,
    o: Overview,
    states: Vec<(String, u64, &'static str)>,
    ops: Vec<(String, u64, &'static str)>,
    recent: Vec<OpRow>,
    disk_warn: u64,
}

pub async fn show(State(app): State<App>, Extension(s): Extension<Session>) -> Response {
    let o = or_page!(s, app.fleet_overview(TENANT).await);
    let recent = or_page!(
        s,
        app.future_list(
            TENANT,
            &Page {
                after: None,
                limit: Some(10),
            },
        )
        .await
    );
    render(&DashboardPage {
        chrome: Some(Chrome::of(&s, "dashboard")),
        states: o
            .instances
            .iter()
            .map(|(k, n)| (k.clone(), *n, badge(k)))
            .collect(),
        ops: o
            .operations
            .iter()
            .map(|(k, n)| (k.clone(), *n, badge(k)))
            .collect(),
        o,
        recent: recent.items.into_iter().map(OpRow::of).collect(),
        disk_warn: DISK_WARN_PERCENT,
    })
}
