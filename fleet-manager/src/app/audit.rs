//! The audit log: a row per mutating request (and per read of a secret),
//! written before the action runs and completed after; a row per refused
//! request. Never bodies, headers or secrets: who, from where, what path,
//! which object, the outcome, the operation started.

use super::App;
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::model::user::AuditEntry;
use crate::opctx::OpCtx;
use crate::store::entities::audit;
use crate::store::identity::{self as q, AuditEnd, AuditFilter};
use crate::store::page::{Page, Paged};

/// The longest actor filter: a user's name.
const MAX_ACTOR: usize = 64;

/// What a surface knows of a request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub tenant: Option<String>,
    pub object: Option<String>,
    pub source: Option<String>,
}

/// A refused request: who the credentials named, if anyone.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub actor: Option<String>,
    pub key_id: Option<String>,
    pub role: Option<String>,
    pub status: i32,
    pub error: String,
    /// The request's id when the caller is known (its answer carries it).
    pub request_id: Option<String>,
}

impl Refusal {
    /// Credentials that name a key but don't hold (401).
    pub fn unauthenticated(r: super::auth::Refused) -> Refusal {
        Refusal {
            actor: r.actor,
            key_id: r.key_id,
            role: None,
            status: 401,
            error: format!("Unauthorized: {}", r.reason),
            request_id: None,
        }
    }

    /// A known caller refused with `status` and error `e` (a role too low,
    /// a missing CSRF token...).
    pub fn of_caller(ctx: &OpCtx, status: u16, e: &Error) -> Refusal {
        Refusal {
            actor: Some(ctx.actor_name()),
            key_id: ctx.key_id.clone(),
            role: Some(ctx.role.as_str().to_string()),
            status: status as i32,
            error: format!("{}: {}", e.error_type(), e.message()),
            request_id: Some(ctx.request_id.clone()),
        }
    }
}

fn entry(r: audit::Model) -> AuditEntry {
    AuditEntry {
        id: r.id,
        at: r.at,
        tenant_id: r.tenant_id,
        actor: r.actor,
        key_id: r.key_id,
        role: r.role,
        source: r.source,
        method: r.method,
        path: r.path,
        object: r.object,
        outcome: r.outcome,
        status: r.status,
        error: r.error,
        duration_ms: r.duration_ms,
        operation_id: r.operation_id,
        request_id: r.request_id,
    }
}

impl App {
    /// Records that `ctx` is about to run `req`; the row's id. The action
    /// must not run if this fails.
    pub async fn audit_begin(&self, ctx: &OpCtx, req: &Request) -> Result<String> {
        let id = crate::model::new_id("aud");
        q::audit_insert(
            &self.store.db,
            audit::Model {
                id: id.clone(),
                at: now_ms(),
                tenant_id: req.tenant.clone(),
                actor: Some(ctx.actor_name()),
                key_id: ctx.key_id.clone(),
                role: Some(ctx.role.as_str().to_string()),
                source: req.source.clone(),
                method: req.method.clone(),
                path: req.path.clone(),
                object: req.object.clone(),
                outcome: "started".into(),
                status: None,
                error: None,
                duration_ms: None,
                operation_id: None,
                request_id: ctx.request_id.clone(),
            },
        )
        .await?;
        Ok(id)
    }

    /// Completes the row [`App::audit_begin`] wrote.
    pub async fn audit_end(
        &self,
        ctx: &OpCtx,
        row: &str,
        status: u16,
        error: Option<String>,
        duration_ms: i64,
    ) -> Result<()> {
        q::audit_complete(
            &self.store.db,
            row,
            AuditEnd {
                outcome: if status < 400 { "ok" } else { "failed" },
                status: status as i32,
                error,
                duration_ms,
                operation_id: ctx.operation(),
            },
        )
        .await
    }

    /// Records a refused request, complete at once.
    pub async fn audit_refused(&self, req: &Request, r: Refusal) -> Result<()> {
        q::audit_insert(
            &self.store.db,
            audit::Model {
                id: crate::model::new_id("aud"),
                at: now_ms(),
                tenant_id: req.tenant.clone(),
                actor: r.actor,
                key_id: r.key_id,
                role: r.role,
                source: req.source.clone(),
                method: req.method.clone(),
                path: req.path.clone(),
                object: req.object.clone(),
                outcome: "refused".into(),
                status: Some(r.status),
                error: Some(r.error),
                duration_ms: Some(0),
                operation_id: None,
                request_id: r.request_id.unwrap_or_else(|| crate::model::new_id("req")),
            },
        )
        .await
    }

    /// A page of a tenant's audit log, newest first.
    pub async fn audit_list(
        &self,
        tenant: &str,
        filter: AuditFilter,
        page: &Page,
    ) -> Result<Paged<AuditEntry>> {
        self.tenant(tenant).await?;
        if let Some(a) = &filter.actor
            && a.chars().count() > MAX_ACTOR
        {
            return Err(Error::invalid(format!(
                "'actor' is longer than {MAX_ACTOR} characters (a user's name)"
            )));
        }
        let f = AuditFilter {
            tenant: Some(tenant.to_string()),
            ..filter
        };
        Ok(q::audit_list(&self.store.db, &f, page).await?.map(entry))
    }

    /// The whole audit log (every tenant), newest first: the CLI's view.
    pub async fn audit_list_all(
        &self,
        filter: AuditFilter,
        page: &Page,
    ) -> Result<Paged<AuditEntry>> {
        Ok(q::audit_list(&self.store.db, &filter, page)
            .await?
            .map(entry))
    }

    /// Deletes the complete rows older than `keep`; how many.
    pub async fn audit_prune(&self, keep: std::time::Duration) -> Result<u64> {
        let before = now_ms() - keep.as_millis().min(i64::MAX as u128) as i64;
        q::audit_prune(&self.store.db, before).await
    }
}
