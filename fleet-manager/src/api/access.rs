//! Who may call what, and the record of it. Every request is
//! authenticated (HTTP Basic with an API key id and secret); the role each
//! endpoint needs is the one its `#[utoipa::path]` declares as its
//! `security` scope (read back from the OpenAPI document, so the table and
//! the document can't disagree); anything not declared is denied. Mutating
//! requests, reads of secrets and refusals are written to the audit log.

use super::Peer;
use crate::app::App;
use crate::app::audit::{Refusal, Request as AuditRequest};
use crate::error::Error;
use crate::model::user::Role;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::collections::HashMap;
use std::sync::Arc;

/// The security scheme every endpoint names.
pub const SCHEME: &str = "apiKey";

/// Which role each endpoint (method and path template under
/// `/api/public`) needs.
#[derive(Debug, Default)]
pub struct Roles(HashMap<(Method, String), Role>);

/// Endpoints served outside the OpenAPI document's paths.
const EXTRA: &[(&str, &str, Role)] = &[("GET", "/openapi.json", Role::Viewer)];

impl Roles {
    /// Reads the roles from the document: each operation's one security
    /// requirement on [`SCHEME`] with one scope, a role. An operation that
    /// declares none (or several) is left out, so it is denied; the
    /// endpoint tests fail on it.
    pub fn from_doc(doc: &serde_json::Value) -> Roles {
        let mut t = HashMap::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                if let Some(role) = declared_role(op) {
                    t.insert((m, format!("/api/public{path}")), role);
                }
            }
        }
        for (m, path, role) in EXTRA {
            t.insert(
                (
                    Method::from_bytes(m.as_bytes()).expect("a method"),
                    format!("/api/public{path}"),
                ),
                *role,
            );
        }
        Roles(t)
    }

    /// The role `method` on the route `template` needs; none if undeclared.
    pub fn needed(&self, method: &Method, template: &str) -> Option<Role> {
        self.0
            .get(&(declared_method(method).clone(), template.to_string()))
            .copied()
    }

    /// The role of the REST endpoint `method path` (`path` under
    /// `/api/public`), for a surface that mirrors it; a path with no
    /// declared role is a bug, found at start.
    pub fn of_rest(&self, method: Method, path: &str) -> Role {
        let template = format!("/api/public{path}");
        self.needed(&method, &template)
            .unwrap_or_else(|| panic!("no role is declared for REST {method} {template}"))
    }

    /// Whether some method of the route `template` is declared.
    pub fn routes(&self, template: &str) -> bool {
        self.0.keys().any(|(_, p)| p == template)
    }

    /// Every declared endpoint: (method, path template, role).
    pub fn entries(&self) -> Vec<(Method, String, Role)> {
        let mut v: Vec<_> = self
            .0
            .iter()
            .map(|((m, p), r)| (m.clone(), p.clone(), *r))
            .collect();
        v.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
        v
    }
}

/// The method a request's route is declared under: HEAD is served by the
/// GET route.
pub(crate) fn declared_method(method: &Method) -> &Method {
    if method == Method::HEAD {
        &Method::GET
    } else {
        method
    }
}

/// The one role an operation of the document declares.
pub fn declared_role(op: &serde_json::Value) -> Option<Role> {
    let reqs = op["security"].as_array()?;
    let [req] = reqs.as_slice() else { return None };
    let scopes = req.get(SCHEME)?.as_array()?;
    let [scope] = scopes.as_slice() else {
        return None;
    };
    Role::parse(scope.as_str()?).ok()
}

/// Whether a call is written to the audit log: anything but a plain read.
fn audited(method: &Method, needed: Role) -> bool {
    !(method == Method::GET || method == Method::HEAD) || needed > Role::Viewer
}

/// The tenant and the object a request names, from its route template and
/// its path: `{tenantId}`, and the last other parameter.
pub(crate) fn named(template: &str, path: &str) -> (Option<String>, Option<String>) {
    let mut tenant = None;
    let mut object = None;
    for (t, v) in template.split('/').zip(path.split('/')) {
        if t == "{tenantId}" {
            tenant = Some(v.to_string());
        } else if t.starts_with('{') {
            object = Some(v.to_string());
        }
    }
    (tenant, object)
}

fn credentials(req: &Request) -> Option<(String, String)> {
    basic_credentials(req.headers().get(AUTHORIZATION)?.to_str().ok()?)
}

/// The API key id and secret of an `authorization` value `Basic
/// base64(id:secret)`.
pub(crate) fn basic_credentials(v: &str) -> Option<(String, String)> {
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// The error type of a response, when [`Error::into_response`] made it.
#[derive(Debug, Clone)]
pub struct ErrorNote(pub String);

/// Authenticates, authorizes, audits. Nothing is readable without valid
/// credentials, not even which paths exist.
pub async fn guard(
    State((app, roles)): State<(App, Arc<Roles>)>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let (tenant, object) = template
        .as_deref()
        .map(|t| named(t, &path))
        .unwrap_or_default();
    let about = AuditRequest {
        method: method.to_string(),
        path: path.clone(),
        tenant,
        object,
        source: req.extensions().get::<Peer>().map(|p| p.0.ip().to_string()),
    };
    let Some((id, secret)) = credentials(&req) else {
        return Error::Unauthorized.into_response();
    };
    let ctx = match app.authenticate(&id, &secret).await {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(refused)) => {
            // Only refusals that name a real key are recorded: a flood of
            // made-up ids must not fill the log.
            if refused.key_id.is_some()
                && let Err(e) = app
                    .audit_refused(&about, Refusal::unauthenticated(refused))
                    .await
            {
                return e.into_response();
            }
            return Error::Unauthorized.into_response();
        }
        Err(e) => return e.into_response(),
    };
    let request_id = HeaderValue::from_str(&ctx.request_id).ok();
    let mut resp = authorized(app, &roles, ctx, &about, &method, template, req, next).await;
    if let Some(v) = request_id {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The rest of [`guard`] once the caller is known: the role check, the
/// audit rows, the handler.
#[allow(clippy::too_many_arguments)]
async fn authorized(
    app: App,
    roles: &Roles,
    ctx: crate::opctx::OpCtx,
    about: &AuditRequest,
    method: &Method,
    template: Option<String>,
    mut req: Request,
    next: Next,
) -> Response {
    // A path that names no endpoint answers 404 (after authentication).
    let Some(template) = template else {
        req.extensions_mut().insert(ctx);
        return next.run(req).await;
    };
    let needed = match roles.needed(method, &template) {
        Some(r) => r,
        // Another method of a declared path: the router answers 405, and
        // a change asked that way is recorded as failed.
        None if roles.routes(&template) => Role::Viewer,
        None => {
            return Error::internal(format!(
                "no role is declared for {method} {template}: denied"
            ))
            .into_response();
        }
    };
    if ctx.role < needed {
        let e = Error::Forbidden {
            needed,
            have: ctx.role,
        };
        if let Err(err) = app
            .audit_refused(about, Refusal::of_caller(&ctx, 403, &e))
            .await
        {
            return err.into_response();
        }
        return e.into_response();
    }
    req.extensions_mut().insert(ctx.clone());
    if !audited(method, needed) {
        return next.run(req).await;
    }
    let row = match app.audit_begin(&ctx, about).await {
        Ok(row) => row,
        // Not recorded, not run.
        Err(e) => return e.into_response(),
    };
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let error = resp
        .extensions()
        .get::<ErrorNote>()
        .map(|n| n.0.clone())
        .filter(|_| status.as_u16() >= 400);
    if let Err(e) = app
        .audit_end(
            &ctx,
            &row,
            status.as_u16(),
            error,
            start.elapsed().as_millis() as i64,
        )
        .await
    {
        // The action ran; its row stays `started`, which says so.
        tracing::error!(row = %row, error = %e, "could not complete an audit row");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_is_the_last_path_parameter_and_the_tenant_its_own() {
        assert_eq!(
            named(
                "/api/public/tenants/{tenantId}/instances/{instanceId}/actions/start",
                "/api/public/tenants/main/instances/inst-1/actions/start"
            ),
            (Some("main".into()), Some("inst-1".into()))
        );
        assert_eq!(
            named("/api/public/openapi.json", "/api/public/openapi.json"),
            (None, None)
        );
    }

    #[test]
    fn reads_are_not_audited_but_reads_of_secrets_and_every_change_are() {
        assert!(!audited(&Method::GET, Role::Viewer));
        assert!(audited(&Method::GET, Role::Operator));
        assert!(audited(&Method::GET, Role::Admin));
        assert!(audited(&Method::POST, Role::Viewer));
        assert!(audited(&Method::DELETE, Role::Operator));
    }
}
