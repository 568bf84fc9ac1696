//! Users and API keys (admins only): who exists with which role, making a
//! user (its one-time password shown once), changing a role, disabling,
//! resetting a password; keys with their user, role, expiry and last use,
//! making one (its secret shown once) and revoking one.

use super::forms::{self, Fields};
use super::or_page;
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::see_other;
use crate::console::view::{Chrome, error_page, render, render_status, time};
use crate::error::{Error, Result};
use crate::model::user::Role;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use std::time::Duration;

pub struct UserRow {
    pub name: String,
    pub role: &'static str,
    pub disabled: bool,
    pub must_change: bool,
    pub created: String,
}

pub struct KeyRow {
    pub id: String,
    pub label: String,
    pub user: String,
    pub role: String,
    pub expires: String,
    pub last_used: String,
}

/// Something shown once: a new password or a key's secret.
pub struct Shown {
    pub what: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    chrome: Option<Chrome>,
    /// The session's CSRF token, for the many small forms.
    csrf: String,
    users: Vec<UserRow>,
    keys: Vec<KeyRow>,
    roles: [&'static str; 3],
    shown: Option<Shown>,
    problem: Option<String>,
}

async fn page(
    app: &App,
    s: &Session,
    shown: Option<Shown>,
    problem: Option<String>,
) -> Result<UsersPage> {
    let users = app.user_list().await?;
    let keys = app.api_key_list().await?;
    Ok(UsersPage {
        chrome: Some(Chrome::of(s, "users")),
        csrf: s.csrf.clone(),
        users: users
            .into_iter()
            .map(|u| UserRow {
                role: u.role.as_str(),
                name: u.name,
                disabled: u.disabled,
                must_change: u.must_change_password,
                created: time(u.created_at),
            })
            .collect(),
        keys: keys
            .into_iter()
            .map(|k| KeyRow {
                id: k.id,
                label: k.label.unwrap_or_default(),
                user: k.user.unwrap_or_default(),
                role: k.role.map(|r| r.as_str().to_string()).unwrap_or_default(),
                expires: k.expires_at.map(time).unwrap_or_else(|| "never".into()),
                last_used: k.last_used_at.map(time).unwrap_or_else(|| "never".into()),
            })
            .collect(),
        roles: ["viewer", "operator", "admin"],
        shown,
        problem,
    })
}

pub async fn list(State(app): State<App>, Extension(s): Extension<Session>) -> Response {
    let p = or_page!(s, page(&app, &s, None, None).await);
    render(&p)
}

/// Shows the list with what a change answered: a value shown once, or the
/// reason it was refused.
async fn answer(app: &App, s: &Session, done: Result<Option<Shown>>) -> Response {
    match done {
        Ok(shown) => {
            let p = or_page!(s, page(app, s, shown, None).await);
            render(&p)
        }
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_) | Error::NotFound { .. })) => {
            let status = crate::api::error::status_of(&e);
            let p = or_page!(s, page(app, s, None, Some(e.message())).await);
            super::auth::with_note(render_status(status, &p), &e)
        }
        Err(e) => error_page(Some(s), e),
    }
}

fn role_of(f: &Fields, name: &str) -> Result<Option<Role>> {
    forms::text(f, name).map(|r| Role::parse(&r)).transpose()
}

pub async fn create_user(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Form(f): Form<Fields>,
) -> Response {
    let done = async {
        let name = forms::text(&f, "name").unwrap_or_default();
        let role = role_of(&f, "role")?.ok_or_else(|| Error::invalid("'role' is missing"))?;
        let made = app.user_create(&name, role, None).await?;
        Ok(Some(Shown {
            what: format!(
                "The one-time password of {} (to be changed at first sign-in)",
                made.user
            ),
            value: made.password,
        }))
    }
    .await;
    answer(&app, &s, done).await
}

pub async fn user_action(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    let done = async {
        match action.as_str() {
            "role" => {
                let role =
                    role_of(&f, "role")?.ok_or_else(|| Error::invalid("'role' is missing"))?;
                app.user_set_role(&name, role).await?;
                Ok(None)
            }
            "disable" => app.user_set_disabled(&name, true).await.map(|_| None),
            "enable" => app.user_set_disabled(&name, false).await.map(|_| None),
            "reset-password" => {
                let p = app.user_reset_password(&name, None).await?;
                Ok(Some(Shown {
                    what: format!("The new one-time password of {}", p.user),
                    value: p.password,
                }))
            }
            _ => Err(Error::invalid_path()),
        }
    }
    .await;
    // Disabling oneself ends one's own session: back to sign-in.
    if action == "disable" && done.is_ok() && name == s.ctx.actor_name() {
        return see_other(&headers, "/console/login");
    }
    answer(&app, &s, done).await
}

pub async fn create_key(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Form(f): Form<Fields>,
) -> Response {
    let done = async {
        let user = forms::text(&f, "user").ok_or_else(|| Error::invalid("'user' is missing"))?;
        let role = role_of(&f, "role")?;
        let ttl = match forms::text(&f, "days") {
            Some(d) => Some(Duration::from_secs(
                d.parse::<u64>()
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .ok_or_else(|| {
                        Error::invalid("'days' must be a whole number of days from 1 to 3650")
                    })?
                    * 86_400,
            )),
            None => None,
        };
        let k = app
            .api_key_create(&user, role, ttl, forms::text(&f, "label"))
            .await?;
        Ok(Some(Shown {
            what: format!(
                "The secret of key {} (use it with the key id as HTTP Basic credentials)",
                k.id
            ),
            value: k.secret,
        }))
    }
    .await;
    answer(&app, &s, done).await
}

pub async fn delete_key(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let done = app.api_key_delete(&id).await.map(|_| None);
    answer(&app, &s, done).await
}
