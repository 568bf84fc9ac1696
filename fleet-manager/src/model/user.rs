//! Users, their roles, their API keys and the audit log, as the API and the
//! CLI show them.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The built-in roles, each including the one below it. Anything not
/// granted is denied.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything except secrets and the audit log.
    Viewer,
    /// A viewer who also runs every lifecycle action, snapshots and backups.
    Operator,
    /// Everything: accounts, networks, templates, images, users, keys,
    /// tenant settings, secrets, the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown role '{}': one of viewer, operator, admin",
                    s.escape_debug()
                ))
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::parse(s)
    }
}

/// The first user, made on the first start of an empty store.
pub const FIRST_ADMIN: &str = "admin";

/// A user's name: 1 to 64 characters of `[a-z0-9._-]`, starting with a
/// letter or a digit (it is shown in audit rows and futures as is). Names
/// starting with `system` are FM's own.
pub fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(Error::invalid(format!(
            "user name '{}' must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or a digit",
            name.escape_debug()
        )));
    }
    if name.starts_with("system") {
        return Err(Error::invalid(format!(
            "user name '{name}' is reserved: names starting with 'system' are FM's own"
        )));
    }
    Ok(())
}

/// A password chosen by a person: at least 12 characters, at most 1024.
pub fn check_password(p: &str) -> Result<()> {
    let n = p.chars().count();
    if n < 12 {
        return Err(Error::invalid(
            "the password must have at least 12 characters",
        ));
    }
    if p.len() > 1024 {
        return Err(Error::invalid("the password must have at most 1024 bytes"));
    }
    Ok(())
}

/// A user as listed: never the password hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// The password was set by FM (first start, reset) and must be changed.
    pub must_change_password: bool,
    pub created_at: i64,
}

/// A new user or a reset password: shown this once.
#[derive(Debug, Serialize)]
pub struct NewPassword {
    pub user: String,
    pub password: String,
}

/// One row of the audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    /// Milliseconds since the epoch at which the request arrived.
    pub at: i64,
    pub tenant_id: Option<String>,
    /// The user's name; none when the credentials named no user.
    pub actor: Option<String>,
    pub key_id: Option<String>,
    pub role: Option<String>,
    /// The address the request came from.
    pub source: Option<String>,
    pub method: String,
    pub path: String,
    /// The id of the object in the path, if any.
    pub object: Option<String>,
    /// `started` (still running or interrupted), `ok`, `failed` or `refused`.
    pub outcome: String,
    /// The HTTP status answered.
    pub status: Option<i32>,
    /// The error's type and message when it failed or was refused.
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    /// The operation (future) the request started.
    pub operation_id: Option<String>,
    pub request_id: String,
}
