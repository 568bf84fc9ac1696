//! The web console: pages rendered by FM (askama templates under
//! `templates/console/`, htmx and CSS served from the binary), each a thin
//! handler over the same [`App`] methods as the REST surface.
//!
//! Every route is declared once in [`router`] with who may use it: public
//! (sign-in, assets), a role, or the role of the REST endpoint it mirrors
//! (read from the REST role table, so an action needs the same role on
//! both surfaces). [`guard`] runs after routing: it finds the session the
//! cookie names, sends the signed-out to the sign-in page, answers 404 to a
//! page above the user's role and 403 to a change above it (audited), checks
//! the CSRF token of every change, and writes the audit rows of changes
//! like the REST guard does.

mod assets;
mod pages;
mod view;

use crate::api::access::{ErrorNote, Roles};
use crate::app::App;
use crate::app::audit::{Refusal, Request as AuditRequest};
use crate::app::sessions::Session;
use crate::error::Error;
use crate::model::tenant::DEFAULT_TENANT;
use crate::model::user::Role;
use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Form, MatchedPath, Path, Request, State};
use axum::handler::Handler;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, COOKIE, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::Arc;

/// The session cookie.
pub const COOKIE_NAME: &str = "fm_session";
/// Where a change's CSRF token is: a form field, or a header (htmx).
const CSRF_FIELD: &str = "csrf";
const CSRF_HEADER: &str = "x-csrf-token";
/// The largest form the console takes.
const FORM_LIMIT: usize = 256 * 1024;
/// How long an action waits for the operation it starts before the page
/// answers (and shows its progress instead).
const ACTION_WAIT: std::time::Duration = std::time::Duration::from_millis(300);
/// The tenant the console shows.
const TENANT: &str = DEFAULT_TENANT;

/// Who may use a console route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the sign-in page, the assets.
    Public,
    /// A signed-in user with at least this role.
    Role(Role),
}

/// Every console route (method, path template) and who may use it.
#[derive(Debug, Default)]
pub struct Table(HashMap<(Method, String), Access>);

impl Table {
    pub fn get(&self, method: &Method, template: &str) -> Option<Access> {
        self.0
            .get(&(
                crate::api::access::declared_method(method).clone(),
                template.to_string(),
            ))
            .copied()
    }
}

/// Routes and their access, declared together.
struct Routes<'a> {
    router: Router<App>,
    table: Table,
    rest: &'a Roles,
}

impl<'a> Routes<'a> {
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        mr: axum::routing::MethodRouter<App>,
    ) -> Self {
        let previous = self.table.0.insert((method, path.to_string()), access);
        assert!(previous.is_none(), "console route {path} declared twice");
        self.router = self.router.route(path, mr);
        self
    }

    fn get<H, T>(self, path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add(Method::GET, path, access, get(h))
    }

    fn post<H, T>(self, path: &'static str, access: Access, h: H) -> Self
    where
        H: Handler<T, App>,
        T: 'static,
    {
        self.add(Method::POST, path, access, post(h))
    }

    /// The higher of two roles.
    fn stricter(&self, a: Access, b: Access) -> Access {
        match (a, b) {
            (Access::Role(x), Access::Role(y)) => Access::Role(x.max(y)),
            (Access::Public, other) | (other, Access::Public) => other,
        }
    }

    /// The role the REST endpoint `method path` (under `/api/public`)
    /// declares.
    fn same_as(&self, method: Method, path: &str) -> Access {
        Access::Role(self.rest.of_rest(method, path))
    }
}

/// The console's routes, with `rest` the REST surface's role table.
pub fn router(app: App, rest: &Roles) -> Router<App> {
    use Access::Public;
    use pages::instances::{self, Verb};
    use pages::{
        accounts, audit, auth, dashboard, images, instance_form, networks, operations, rollouts,
        templates, users,
    };
    let viewer = Access::Role(Role::Viewer);
    // Users and keys have no REST endpoint (the admin CLI manages them).
    let admin = Access::Role(Role::Admin);
    let r = Routes {
        router: Router::new(),
        table: Table::default(),
        rest,
    };
    let abort = r.same_as(Method::DELETE, "/tenants/{tenantId}/futures/{jobId}");
    let audit_read = r.same_as(Method::GET, "/tenants/{tenantId}/audit-log");
    let network_create = r.same_as(Method::POST, "/tenants/{tenantId}/virtual-networks");
    let template_create = r.same_as(
        Method::POST,
        "/tenants/{tenantId}/instance-settings-templates",
    );
    let network_update = r.same_as(
        Method::PUT,
        "/tenants/{tenantId}/virtual-networks/{networkId}",
    );
    let template_update = r.same_as(
        Method::PUT,
        "/tenants/{tenantId}/instance-settings-templates/{templateId}",
    );
    let instance_create = r.same_as(Method::POST, "/tenants/{tenantId}/instances");
    let instance_update = r.same_as(Method::PUT, "/tenants/{tenantId}/instances/{instanceId}");
    let (m, p) = Verb::Reprovision.rest();
    // An upgrade changes the instance's image, then reprovisions it.
    let upgrade = r.stricter(instance_update, r.same_as(m, p));
    let clone = r.same_as(
        Method::POST,
        "/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}/clone",
    );
    let images_read = r.same_as(Method::GET, "/tenants/{tenantId}/images");
    let accounts_read = r.same_as(Method::GET, "/tenants/{tenantId}/cloud-accounts");
    let account_create = r.same_as(Method::POST, "/tenants/{tenantId}/cloud-accounts");
    let account_update = r.same_as(
        Method::PUT,
        "/tenants/{tenantId}/cloud-accounts/{accountId}",
    );
    let rollouts_read = r.same_as(Method::GET, "/tenants/{tenantId}/rollouts");
    let rollout_move = |r: &Routes, a: &str| {
        r.same_as(
            Method::POST,
            &format!("/tenants/{{tenantId}}/rollouts/{{rolloutId}}/actions/{a}"),
        )
    };
    let (pause, resume, cancel) = (
        rollout_move(&r, "pause"),
        rollout_move(&r, "resume"),
        rollout_move(&r, "cancel"),
    );
    // The confirmation of an action asks for the role the actions need.
    let (m, p) = Verb::Start.rest();
    let confirm = r.same_as(m, p);
    let mut r = r
        .get("/", Public, auth::root)
        .get("/console/static/{file}", Public, assets::serve)
        .get("/console/login", Public, auth::login_page)
        .post("/console/login", Public, auth::login)
        .post("/console/logout", viewer, auth::logout)
        .get("/console/account/password", viewer, auth::password_page)
        .post("/console/account/password", viewer, auth::password_change)
        .get("/console/", viewer, dashboard::show)
        .get("/console/instances", viewer, instances::list)
        .get(
            "/console/instances/new",
            instance_create,
            instance_form::new,
        )
        .post("/console/instances", instance_create, instance_form::create)
        .get(
            "/console/instances/{id}/edit",
            instance_update,
            instance_form::edit,
        )
        .post(
            "/console/instances/{id}/edit",
            instance_update,
            instance_form::update,
        )
        .get("/console/networks", viewer, networks::list)
        .get("/console/networks/new", network_create, networks::new)
        .post("/console/networks", network_create, networks::create)
        .get(
            "/console/networks/{id}/edit",
            network_update,
            networks::edit,
        )
        .post(
            "/console/networks/{id}/edit",
            network_update,
            networks::update,
        )
        .get("/console/templates", viewer, templates::list)
        .get("/console/templates/new", template_create, templates::new)
        .post("/console/templates", template_create, templates::create)
        .get(
            "/console/templates/{id}/edit",
            template_update,
            templates::edit,
        )
        .post(
            "/console/templates/{id}/edit",
            template_update,
            templates::update,
        )
        .get("/console/instances/{id}", viewer, instances::show)
        .get("/console/instances/{id}/live", viewer, instances::live)
        .get(
            "/console/instances/{id}/agent-log",
            viewer,
            instances::agent_log,
        )
        .get(
            "/console/instances/{id}/upgrade",
            upgrade,
            images::upgrade_form,
        )
        .post("/console/instances/{id}/upgrade", upgrade, images::upgrade)
        .get(
            "/console/instances/{id}/backups/{backup}/clone",
            clone,
            images::clone_form,
        )
        .post(
            "/console/instances/{id}/backups/{backup}/clone",
            clone,
            images::clone,
        )
        .get("/console/images", images_read, images::list)
        .get("/console/accounts", accounts_read, accounts::list)
        .get("/console/accounts/new", account_create, accounts::new)
        .post("/console/accounts", account_create, accounts::create)
        .get(
            "/console/accounts/{id}/edit",
            account_update,
            accounts::edit,
        )
        .post(
            "/console/accounts/{id}/edit",
            account_update,
            accounts::update,
        )
        .get(
            "/console/instances/{id}/confirm/{action}",
            confirm,
            instances::confirm,
        )
        .get("/console/operations", viewer, operations::list)
        .get("/console/operations/{id}", viewer, operations::show)
        .get("/console/operations/{id}/live", viewer, operations::live)
        .post("/console/operations/{id}/abort", abort, operations::abort)
        .get("/console/rollouts", rollouts_read, rollouts::list)
        .get("/console/rollouts/{id}", rollouts_read, rollouts::show)
        .get("/console/rollouts/{id}/live", rollouts_read, rollouts::live)
        .post("/console/rollouts/{id}/pause", pause, rollouts::pause)
        .post("/console/rollouts/{id}/resume", resume, rollouts::resume)
        .post("/console/rollouts/{id}/cancel", cancel, rollouts::cancel)
        .get("/console/audit", audit_read, audit::list)
        .get("/console/users", admin, users::list)
        .post("/console/users", admin, users::create_user)
        .post("/console/users/{name}/{action}", admin, users::user_action)
        .post("/console/api-keys", admin, users::create_key)
        .post("/console/api-keys/{id}/delete", admin, users::delete_key);
    for verb in Verb::ALL {
        let (m, p) = verb.rest();
        let access = r.same_as(m, p);
        r = r.post(
            verb.path(),
            access,
            move |State(app): State<App>,
                  Extension(s): Extension<Session>,
                  headers: HeaderMap,
                  Path(id): Path<String>,
                  Form(f): Form<instances::ActForm>| {
                instances::act(verb, app, s, headers, id, f)
            },
        );
    }
    let table = Arc::new(r.table);
    r.router
        .route_layer(middleware::from_fn_with_state((app, table), guard))
}

/// The session token the request's cookie carries.
fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, COOKIE_NAME)
}

/// The value of the request's cookie `name`, if set and not empty.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// A redirect that works for a plain browser and for htmx.
pub fn see_other(headers: &HeaderMap, to: &str) -> Response {
    let loc = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/console/"));
    if headers.contains_key("hx-request") {
        let mut r = StatusCode::NO_CONTENT.into_response();
        r.headers_mut().insert("hx-location", loc);
        return r;
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(LOCATION, loc);
    r
}

/// The CSRF token a change carries: its header, else its form field (the
/// body is read, checked and handed on unchanged).
async fn carried_csrf(req: Request) -> Result<(Request, Option<String>), Response> {
    if let Some(v) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        let v = v.to_string();
        return Ok((req, Some(v)));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| view::error_page(None, Error::PayloadTooLarge { limit: FORM_LIMIT }))?;
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|f| f.into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v));
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

/// Headers on every console answer: no framing, no inline script, no
/// caching of pages that show the fleet, no referrer outside FM.
fn harden(resp: &mut Response, asset: bool) {
    let h = resp.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !asset {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Authenticates (the session cookie), authorizes (the route's declared
/// access), checks CSRF and audits every console request.
async fn guard(
    State((app, table)): State<(App, Arc<Table>)>,
    req: Request,
    next: Next,
) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let asset = template.starts_with("/console/static/");
    let mut resp = guarded(app, &table, &template, req, next).await;
    harden(&mut resp, asset);
    resp
}

async fn guarded(app: App, table: &Table, template: &str, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(access) = table.get(&method, template) else {
        return view::error_page(None, Error::invalid_path());
    };
    let needed = match access {
        Access::Public => return next.run(req).await,
        Access::Role(r) => r,
    };
    let change = !(method == Method::GET || method == Method::HEAD);
    let (_, object) = crate::api::access::named(template, &path);
    let about = AuditRequest {
        method: method.to_string(),
        path: path.clone(),
        tenant: Some(TENANT.to_string()),
        object,
        source: req
            .extensions()
            .get::<crate::api::Peer>()
            .map(|p| p.0.ip().to_string()),
    };
    let session = match session_token(req.headers()) {
        Some(t) => match app.session_get(&t).await {
            Ok(s) => s,
            Err(e) => return view::error_page(None, e),
        },
        None => None,
    };
    let Some(session) = session else {
        if change {
            let mut r = view::error_page(None, Error::Unauthorized);
            r.headers_mut()
                .insert("hx-redirect", HeaderValue::from_static("/console/login"));
            return r;
        }
        let next_url = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/console/".into());
        return see_other(
            req.headers(),
            &format!("/console/login?next={}", view::urlencode(&next_url)),
        );
    };
    let request_id = HeaderValue::from_str(&session.ctx.request_id).ok();
    let mut resp = async move {
        if session.must_change_password
            && !template.starts_with("/console/account/password")
            && template != "/console/logout"
        {
            return see_other(req.headers(), "/console/account/password");
        }
        let ctx = &session.ctx;
        if ctx.role < needed {
            let e = Error::Forbidden {
                needed,
                have: ctx.role,
            };
            if !change {
                // Pages above one's role are not there.
                return view::error_page(Some(&session), Error::invalid_path());
            }
            return refuse(&app, &about, &session, 403, e).await;
        }
        if !change {
            let mut req = req;
            req.extensions_mut().insert(session);
            return next.run(req).await;
        }
        let (mut req, carried) = match carried_csrf(req).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        if !carried.is_some_and(|c| crate::crypto::same_token(&c, &session.csrf)) {
            let e = Error::invalid(
                "the form's CSRF token is missing or is not this session's: reload the page and try again",
            );
            return refuse(&app, &about, &session, 403, e).await;
        }
        let row = match app.audit_begin(ctx, &about).await {
            Ok(row) => row,
            Err(e) => return view::error_page(Some(&session), e),
        };
        let ctx = ctx.clone();
        let mut session = session;
        // The page answers at once; the instance's page shows the progress.
        session.ctx = session.ctx.waiting(ACTION_WAIT);
        req.extensions_mut().insert(session);
        let start = std::time::Instant::now();
        let resp = next.run(req).await;
        let status = resp.status().as_u16();
        let error = resp
            .extensions()
            .get::<ErrorNote>()
            .map(|n| n.0.clone())
            .filter(|_| status >= 400);
        if let Err(e) = app
            .audit_end(
                &ctx,
                &row,
                status,
                error,
                start.elapsed().as_millis() as i64,
            )
            .await
        {
            tracing::error!(row = %row, error = %e, "could not complete an audit row");
        }
        resp
    }
    .await;
    if let Some(v) = request_id {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// A refused change: audited, then answered with `status`.
async fn refuse(app: &App, about: &AuditRequest, s: &Session, status: u16, e: Error) -> Response {
    if let Err(err) = app
        .audit_refused(about, Refusal::of_caller(&s.ctx, status, &e))
        .await
    {
        return view::error_page(Some(s), err);
    }
    let mut r = view::error_page(Some(s), e);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    r
}
