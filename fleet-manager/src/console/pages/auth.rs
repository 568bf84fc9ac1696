//! Signing in and out, and changing one's password.

use crate::api::Peer;
use crate::app::App;
use crate::app::audit::Request as AuditRequest;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, error_page, render, render_status};
use crate::console::{COOKIE_NAME, TENANT, cookie_value, see_other, session_token};
use crate::crypto::same_token;
use crate::error::Error;
use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

pub async fn root(headers: HeaderMap) -> Response {
    see_other(&headers, "/console/")
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Option<Chrome>,
    /// The sign-in form's own token, also set as the cookie [`LOGIN_COOKIE`].
    login_csrf: String,
    next: String,
    name: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after signing in: a console page, nothing else.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/console/") && !n.contains("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/console/".to_string(),
    }
}

/// The cookie that carries the sign-in form's token (double submit: a
/// form posted from another site has no way to know it, so nobody can be
/// signed in to an account not theirs).
const LOGIN_COOKIE: &str = "fm_login";

/// The sign-in page with a fresh form token, and its cookie.
fn login_form(
    status: StatusCode,
    headers: &HeaderMap,
    next: String,
    name: String,
    error: Option<String>,
) -> Response {
    let token = crate::crypto::new_session_token();
    let mut r = render_status(
        status,
        &LoginPage {
            chrome: None,
            login_csrf: token.clone(),
            next,
            name,
            error,
        },
    );
    r.headers_mut().append(
        SET_COOKIE,
        cookie(LOGIN_COOKIE, "/console/login", &token, headers, Some(3600)),
    );
    r
}

pub async fn login_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    login_form(
        StatusCode::OK,
        &headers,
        safe_next(q.next.as_deref()),
        String::new(),
        None,
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    #[serde(default)]
    login_csrf: String,
}

/// A console cookie: script cannot read it, no other site sends it, and
/// under HTTPS it is never sent in clear.
fn cookie(
    name: &str,
    path: &str,
    value: &str,
    headers: &HeaderMap,
    max_age: Option<u64>,
) -> HeaderValue {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if https {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).expect("a cookie is a header value")
}

pub async fn login(
    State(app): State<App>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let sent = cookie_value(&headers, LOGIN_COOKIE);
    if !sent.is_some_and(|c| !f.login_csrf.is_empty() && same_token(&c, &f.login_csrf)) {
        return login_form(
            StatusCode::FORBIDDEN,
            &headers,
            next,
            f.name,
            Some("This sign-in form has expired or did not come from FM: sign in again.".into()),
        );
    }
    let about = AuditRequest {
        method: "POST".into(),
        path: "/console/login".into(),
        // The console shows the audit log of its tenant.
        tenant: Some(TENANT.into()),
        object: None,
        source: peer.map(|p| p.0.0.ip().to_string()),
    };
    match app.session_login(&f.name, &f.password, &about).await {
        Ok((token, s)) => {
            let to = if s.must_change_password {
                "/console/account/password".to_string()
            } else {
                next
            };
            let mut r = see_other(&headers, &to);
            let h = r.headers_mut();
            h.append(SET_COOKIE, cookie(COOKIE_NAME, "/", &token, &headers, None));
            h.append(
                SET_COOKIE,
                cookie(LOGIN_COOKIE, "/console/login", "", &headers, Some(0)),
            );
            r
        }
        Err(Error::Unauthorized) => login_form(
            StatusCode::UNAUTHORIZED,
            &headers,
            next,
            f.name,
            Some("Wrong user name or password, or the user is disabled.".into()),
        ),
        Err(e) => error_page(None, e),
    }
}

pub async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(t) = session_token(&headers)
        && let Err(e) = app.session_logout(&t).await
    {
        return error_page(None, e);
    }
    let mut r = see_other(&headers, "/console/login");
    r.headers_mut()
        .insert(SET_COOKIE, cookie(COOKIE_NAME, "/", "", &headers, Some(0)));
    r
}

#[derive(Template)]
#[template(path = "console/password.html")]
struct PasswordPage {
    chrome: Option<Chrome>,
    must_change: bool,
    error: Option<String>,
    done: Option<String>,
}

pub async fn password_page(Extension(s): Extension<Session>) -> Response {
    render(&PasswordPage {
        chrome: Some(Chrome::of(&s, "account")),
        must_change: s.must_change_password,
        error: None,
        done: None,
    })
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn password_change(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    axum::Form(f): axum::Form<PasswordForm>,
) -> Response {
    let page = |error: Option<String>, done: Option<String>, must_change: bool| PasswordPage {
        chrome: Some(Chrome::of(&s, "account")),
        must_change,
        error,
        done,
    };
    if f.password != f.confirm {
        let e = Error::invalid("'confirm' differs from the new password");
        return with_note(
            render_status(
                StatusCode::BAD_REQUEST,
                &page(Some(e.message()), None, s.must_change_password),
            ),
            &e,
        );
    }
    match app
        .session_change_password(&s, &f.current, &f.password)
        .await
    {
        Ok(ended) => render(&page(
            None,
            Some(match ended {
                0 => "Your password is changed.".to_string(),
                1 => "Your password is changed; your one other session has ended.".to_string(),
                n => format!("Your password is changed; your {n} other sessions have ended."),
            }),
            false,
        )),
        Err(e @ Error::InvalidInput(_)) => with_note(
            render_status(
                StatusCode::BAD_REQUEST,
                &page(Some(e.message()), None, s.must_change_password),
            ),
            &e,
        ),
        Err(e) => error_page(Some(&s), e),
    }
}

/// Notes the error for the audit row of a page that shows it in place.
pub fn with_note(mut r: Response, e: &Error) -> Response {
    r.extensions_mut()
        .insert(crate::api::access::ErrorNote(format!(
            "{}: {}",
            e.error_type(),
            e.message()
        )));
    r
}
