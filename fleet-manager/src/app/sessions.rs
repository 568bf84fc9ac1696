//! Console sessions: signing in with a user's password, the session a
//! cookie names, signing out, changing one's password. Only the hash of a
//! session's token is stored; a session ends after [`IDLE`] without use or
//! [`ABSOLUTE`] after sign-in, whichever is first, and when its user is
//! disabled or changes password. Failed sign-ins are audited and slowed:
//! each failure for a name doubles the wait before the next answer for it,
//! from 250 ms up to 8 s.

use super::App;
use super::audit::{Refusal, Request};
use crate::crypto::{
    hash_password, hash_session_token, new_session_token, session_csrf, verify_password,
};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::model::user::{Role, check_password, check_user_name};
use crate::opctx::OpCtx;
use crate::store::entities::session;
use crate::store::identity::{self as q, UserChange};
use crate::store::sessions as qs;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session unused this long has ended.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after sign-in, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(24 * 3600);
/// A session's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The first failure's wait; each further one doubles it up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
const MAX_WAIT: Duration = Duration::from_secs(8);
/// Names whose failures are remembered at most (a flood of names is
/// forgotten, oldest first).
const MAX_NAMES: usize = 10_000;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub ctx: OpCtx,
    /// The key of the session's row.
    pub id_hash: String,
    /// The token every form and every htmx request must carry.
    pub csrf: String,
    /// The user must choose a new password before anything else.
    pub must_change_password: bool,
}

/// Failed sign-ins by user name.
#[derive(Debug, Default)]
pub(crate) struct Throttle(Mutex<HashMap<String, Failures>>);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No answer for this name before then.
    not_before: Instant,
}

/// The wait after the `n`th failure in a row.
pub fn wait_after(n: u32) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
    FIRST_WAIT.saturating_mul(factor).min(MAX_WAIT)
}

impl Throttle {
    /// How long an attempt for `name` must wait before it is checked.
    fn pending(&self, name: &str) -> Duration {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.get(name)
            .map(|f| f.not_before.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    }

    /// Notes a failure; the wait before its answer.
    fn failed(&self, name: &str) -> Duration {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= MAX_NAMES && !t.contains_key(name) {
            let now = Instant::now();
            t.retain(|_, f| f.not_before > now);
            if t.len() >= MAX_NAMES {
                t.clear();
            }
        }
        let f = t.entry(name.to_string()).or_insert(Failures {
            count: 0,
            not_before: Instant::now(),
        });
        f.count = f.count.saturating_add(1);
        let wait = wait_after(f.count);
        f.not_before = Instant::now() + wait;
        wait
    }

    fn succeeded(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl App {
    /// Signs `name` in: a new session's token (for the cookie) and the
    /// session. A wrong name or password is `Unauthorized`, after a wait
    /// that grows with each failure for that name, and is audited when the
    /// user exists.
    pub async fn session_login(
        &self,
        name: &str,
        password: &str,
        about: &Request,
    ) -> Result<(String, Session)> {
        let name = name.trim();
        tokio::time::sleep(self.logins.pending(name)).await;
        let user = match self.user_check_password(name, password).await {
            Ok(u) => u,
            Err(Error::Unauthorized) => {
                let wait = self.logins.failed(name);
                let known = match check_user_name(name) {
                    Ok(()) => q::user_by_name(&self.store.db, name).await?.is_some(),
                    Err(_) => false,
                };
                if known {
                    self.audit_refused(
                        about,
                        Refusal {
                            actor: Some(name.to_string()),
                            key_id: None,
                            role: None,
                            status: 401,
                            error: "Unauthorized: wrong password, or the user is disabled".into(),
                            request_id: None,
                        },
                    )
                    .await?;
                }
                tokio::time::sleep(wait).await;
                return Err(Error::Unauthorized);
            }
            Err(e) => return Err(e),
        };
        self.logins.succeeded(name);
        let token = new_session_token();
        let now = now_ms();
        let id_hash = hash_session_token(&token);
        qs::session_insert(
            &self.store.db,
            session::Model {
                id_hash: id_hash.clone(),
                user_id: user.id.clone(),
                created_at: now,
                last_seen_at: now,
                expires_at: now + ms(ABSOLUTE),
                source: about.source.clone(),
            },
        )
        .await?;
        let ctx = OpCtx::user(user.id, user.name, None, user.role);
        let row = self.audit_begin(&ctx, about).await?;
        self.audit_end(&ctx, &row, 303, None, 0).await?;
        Ok((
            token.clone(),
            Session {
                ctx,
                id_hash,
                csrf: session_csrf(&token),
                must_change_password: user.must_change_password,
            },
        ))
    }

    /// The live session `token` names, if any; an ended one is deleted.
    pub async fn session_get(&self, token: &str) -> Result<Option<Session>> {
        let id_hash = hash_session_token(token);
        let Some((s, u)) = qs::session_with_user(&self.store.db, &id_hash).await? else {
            return Ok(None);
        };
        let now = now_ms();
        if s.expires_at <= now || s.last_seen_at + ms(IDLE) <= now || u.disabled {
            qs::session_delete(&self.store.db, &id_hash).await?;
            return Ok(None);
        }
        if now - s.last_seen_at >= ms(TOUCH_EVERY) {
            qs::session_touch(&self.store.db, &id_hash, now).await?;
        }
        let role = Role::parse(&u.role).map_err(Error::internal)?;
        Ok(Some(Session {
            ctx: OpCtx::user(u.id, u.name, None, role),
            id_hash,
            csrf: session_csrf(token),
            must_change_password: u.must_change_password,
        }))
    }

    /// Ends the session `token` names (signing out).
    pub async fn session_logout(&self, token: &str) -> Result<()> {
        qs::session_delete(&self.store.db, &hash_session_token(token)).await?;
        Ok(())
    }

    /// Changes the signed-in user's own password, given the current one;
    /// the user's other sessions end. How many ended.
    pub async fn session_change_password(
        &self,
        s: &Session,
        current: &str,
        new: &str,
    ) -> Result<u64> {
        let name = s.ctx.actor_name();
        let u = self.user_named(&name).await?;
        let ok = u
            .password_hash
            .as_deref()
            .is_some_and(|h| verify_password(current, h));
        if !ok {
            return Err(Error::invalid("'current' is not your current password"));
        }
        if current == new {
            return Err(Error::invalid(
                "'password' must differ from the current password",
            ));
        }
        check_password(new)?;
        q::user_update(
            &self.store.db,
            &u.id,
            UserChange {
                password: Some((hash_password(new)?, false)),
                ..Default::default()
            },
        )
        .await?;
        qs::sessions_end_for_user(&self.store.db, &u.id, Some(&s.id_hash)).await
    }

    /// Ends every session of user `user_id` (disabled, password reset).
    pub(super) async fn sessions_end(&self, user_id: &str) -> Result<u64> {
        qs::sessions_end_for_user(&self.store.db, user_id, None).await
    }

    /// Deletes ended sessions; how many.
    pub async fn sessions_prune(&self) -> Result<u64> {
        let now = now_ms();
        qs::sessions_prune(&self.store.db, now, now - ms(IDLE)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_doubles_the_wait_up_to_eight_seconds() {
        assert_eq!(wait_after(0), Duration::ZERO);
        assert_eq!(wait_after(1), Duration::from_millis(250));
        assert_eq!(wait_after(2), Duration::from_millis(500));
        assert_eq!(wait_after(5), Duration::from_secs(4));
        assert_eq!(wait_after(6), Duration::from_secs(8));
        assert_eq!(wait_after(40), Duration::from_secs(8));
    }

    #[test]
    fn a_success_forgets_the_failures_of_its_name() {
        let t = Throttle::default();
        assert_eq!(t.failed("alice"), Duration::from_millis(250));
        assert_eq!(t.failed("alice"), Duration::from_millis(500));
        assert!(t.pending("alice") > Duration::ZERO);
        assert_eq!(t.pending("bob"), Duration::ZERO);
        t.succeeded("alice");
        assert_eq!(t.pending("alice"), Duration::ZERO);
        assert_eq!(t.failed("alice"), Duration::from_millis(250));
    }
}
