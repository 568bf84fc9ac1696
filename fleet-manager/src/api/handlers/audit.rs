//! The audit log.

use crate::api::extract::{PathParams, QueryParams};
use crate::api::page::{DEFAULT_LIMIT, Listed, MAX_LIMIT, page};
use crate::api::path::TenantPath;
use crate::app::App;
use crate::error::{Error, Result};
use crate::model::user::AuditEntry;
use crate::store::identity::AuditFilter;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The endpoints of this file, as declared by their `#[utoipa::path]`;
/// one `routes!` per path.
pub(super) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(audit_list))
}

/// Which rows of the audit log to answer.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Rows at or after this time (milliseconds since the epoch).
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_u64)]
    since: Option<u64>,
    /// Rows before this time (milliseconds since the epoch); a window
    /// whose end is before its start holds no row.
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_u64)]
    until: Option<u64>,
    /// Only this user's rows.
    #[param(max_length = 64)]
    actor: Option<String>,
    /// At most this many rows (1 to 1000, default 100); `Next-Page-Token`
    /// when more follow.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `Next-Page-Token` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    page_token: Option<String>,
}

/// Who did what, newest first: every mutating request (written before it
/// runs, completed after), every read of a secret, every refused request.
#[utoipa::path(get, path = "/tenants/{tenantId}/audit-log", tag = "audit",
    params(TenantPath, AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>, headers(("Next-Page-Token" = String, description = "the token of the next page; absent on the last page")))),
    security(("apiKey" = ["admin"])))]
pub async fn audit_list(
    State(app): State<App>,
    PathParams(p): PathParams<TenantPath>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Listed<AuditEntry>> {
    let pg = page(q.limit, q.page_token.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = AuditFilter {
        tenant: None,
        since: millis("since", q.since)?,
        until: millis("until", q.until)?,
        actor: q.actor,
    };
    Ok(Listed(app.audit_list(&p.tenant_id, filter, &pg).await?))
}

/// The largest time the window takes: the largest integer a JSON number
/// holds exactly (2^53 - 1 ms, about 285,000 years).
const MAX_MILLIS: u64 = 9_007_199_254_740_991;

/// A bound of the time window, checked against what the document declares.
fn millis(name: &str, v: Option<u64>) -> Result<Option<i64>> {
    match v {
        Some(ms) if ms > MAX_MILLIS => Err(Error::invalid(format!(
            "'{name}' is past {MAX_MILLIS} (milliseconds since the epoch)"
        ))),
        Some(ms) => Ok(Some(ms as i64)),
        None => Ok(None),
    }
}
