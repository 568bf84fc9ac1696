//! The audit log: a time window, an actor, paging.

use super::{or_page, page_at};
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::TENANT;
use crate::console::view::{Chrome, badge, duration, render, time, urlencode};
use crate::error::Error;
use crate::model::now_ms;
use crate::store::identity::AuditFilter;
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

/// The windows offered: (value, label, length in ms; 0 for all).
const WINDOWS: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3_600_000),
    ("24h", "last day", 86_400_000),
    ("7d", "last week", 604_800_000),
    ("all", "all time", 0),
];

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    window: Option<String>,
    actor: Option<String>,
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

pub struct Row {
    pub at: String,
    pub actor: String,
    pub method: String,
    pub path: String,
    pub outcome: String,
    pub badge: &'static str,
    pub status: String,
    pub error: String,
    pub took: String,
    pub operation: Option<String>,
    pub source: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Option<Chrome>,
    rows: Vec<Row>,
    window: String,
    windows: [(&'static str, &'static str, i64); 4],
    actor: String,
    next: Option<String>,
    first: bool,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let window = q.window.clone().unwrap_or_else(|| "24h".into());
    let Some(&(_, _, span)) = WINDOWS.iter().find(|w| w.0 == window) else {
        return crate::console::view::error_page(
            Some(&s),
            Error::invalid(format!(
                "'window' must be one of 1h, 24h, 7d, all (not '{}')",
                window.chars().take(20).collect::<String>()
            )),
        );
    };
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let actor = q.actor.clone().filter(|a| !a.is_empty());
    let filter = AuditFilter {
        tenant: None,
        since: (span > 0).then(|| now_ms() - span),
        until: None,
        actor: actor.clone(),
    };
    let rows = or_page!(s, app.audit_list(TENANT, filter, &page).await);
    let mut at = format!("/console/audit?window={}", urlencode(&window));
    if let Some(a) = &actor {
        at.push_str(&format!("&actor={}", urlencode(a)));
    }
    let next = super::next_link(&at, rows.next.as_ref());
    render(&AuditPage {
        chrome: Some(Chrome::of(&s, "audit")),
        rows: rows
            .items
            .into_iter()
            .map(|r| Row {
                at: time(r.at),
                actor: r.actor.unwrap_or_else(|| "(unknown)".into()),
                method: r.method,
                path: r.path,
                badge: badge(&r.outcome),
                outcome: r.outcome,
                status: r.status.map(|s| s.to_string()).unwrap_or_default(),
                error: r.error.unwrap_or_default(),
                took: r.duration_ms.map(duration).unwrap_or_default(),
                operation: r.operation_id,
                source: r.source.unwrap_or_default(),
            })
            .collect(),
        window,
        windows: WINDOWS,
        actor: actor.unwrap_or_default(),
        next,
        first: page.after.is_none(),
    })
}
