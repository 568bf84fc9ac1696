//! What every page shares: the frame around it (who is signed in, what
//! they may do), rendering, the one mapping of the domain error to a page,
//! and the formatting of times, sizes and states.

use crate::api::access::ErrorNote;
use crate::api::error::status_of;
use crate::app::sessions::Session;
use crate::error::Error;
use crate::model::user::Role;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// The frame of a signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    /// May act on instances and operations.
    pub can_operate: bool,
    /// May see the audit log and manage users.
    pub is_admin: bool,
    /// The menu entry to highlight.
    pub section: &'static str,
}

impl Chrome {
    pub fn of(s: &Session, section: &'static str) -> Chrome {
        Chrome {
            user: s.ctx.actor_name(),
            role: s.ctx.role.as_str(),
            csrf: s.csrf.clone(),
            can_operate: s.ctx.role >= Role::Operator,
            is_admin: s.ctx.role >= Role::Admin,
            section,
        }
    }
}

/// A rendered page (200).
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_page(None, Error::internal(format!("rendering a page: {e}"))),
    }
}

/// A rendered page with another status.
pub fn render_status<T: Template>(status: StatusCode, t: &T) -> Response {
    let mut r = render(t);
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: Option<Chrome>,
    title: String,
    message: String,
    status: u16,
}

/// The page of an error: its status, its safe message, and the note the
/// audit row takes.
pub fn error_page(s: Option<&Session>, e: Error) -> Response {
    let status = status_of(&e);
    if let Error::Internal { context } = &e {
        tracing::error!("{context}");
    }
    let title = match &e {
        Error::NotFound { .. } => "Not found".to_string(),
        Error::Unauthorized => "Signed out".to_string(),
        Error::Forbidden { .. } => "Not allowed".to_string(),
        Error::InvalidInput(_) => "Not accepted".to_string(),
        Error::Conflict(_) => "Not now".to_string(),
        _ => status.canonical_reason().unwrap_or("Error").to_string(),
    };
    let page = ErrorPage {
        chrome: s.map(|s| Chrome::of(s, "")),
        title,
        message: e.message(),
        status: status.as_u16(),
    };
    let html = page
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>Error</title>".to_string());
    let mut r = (status, Html(html)).into_response();
    r.extensions_mut()
        .insert(ErrorNote(format!("{}: {}", e.error_type(), e.message())));
    r
}

/// `s` percent-encoded for a query string.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub use crate::human::{bytes, time};

/// A duration in milliseconds, short: `850 ms`, `12 s`, `3 min 5 s`, `2 h 4 min`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// The CSS class of a state's badge.
pub fn badge(state: &str) -> &'static str {
    match state {
        "running" | "done" | "ok" | "connected" => "ok",
        "provisioning" | "pending" | "starting" | "stopping" | "started" => "busy",
        "provisioning-failed" | "failed" | "unhealthy" | "unreachable" | "refused" | "aborted" => {
            "bad"
        }
        _ => "idle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc_calendar_form() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_796_278_811_000), "2026-12-03 06:20:11 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn sizes_and_durations_are_short() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(7_440_000), "2 h 4 min");
    }

    #[test]
    fn a_next_url_is_encoded_for_the_query() {
        assert_eq!(
            urlencode("/console/instances?state=running&x=a b"),
            "/console/instances%3Fstate%3Drunning%26x%3Da%20b"
        );
    }
}
