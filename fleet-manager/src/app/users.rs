//! Local user accounts: creation, roles, disabling, passwords (argon2id),
//! and the first admin made on the first start of an empty store.

use super::App;
use crate::crypto::{hash_password, new_password, verify_password};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::model::user::{
    FIRST_ADMIN, NewPassword, Role, UserInfo, check_password, check_user_name,
};
use crate::store::entities::user;
use crate::store::identity::{self as q, UserChange};
use std::path::{Path, PathBuf};

/// Where the first admin's one-time password is written, in the data dir.
pub const FIRST_PASSWORD_FILE: &str = "initial-admin-password";

fn info(u: user::Model) -> Result<UserInfo> {
    Ok(UserInfo {
        role: Role::parse(&u.role).map_err(Error::internal)?,
        id: u.id,
        name: u.name,
        disabled: u.disabled,
        must_change_password: u.must_change_password,
        created_at: u.created_at,
    })
}

impl App {
    pub(super) async fn user_named(&self, name: &str) -> Result<user::Model> {
        check_user_name(name)?;
        q::user_by_name(&self.store.db, name)
            .await?
            .ok_or_else(|| Error::not_found("user", name))
    }

    /// Makes user `name` with `role`. Without a password FM chooses one,
    /// which must be changed at first login; either way it is returned this
    /// once and only its hash is kept.
    pub async fn user_create(
        &self,
        name: &str,
        role: Role,
        password: Option<String>,
    ) -> Result<NewPassword> {
        check_user_name(name)?;
        let chosen = password.is_none();
        let password = match password {
            Some(p) => {
                check_password(&p)?;
                p
            }
            None => new_password(),
        };
        if q::user_by_name(&self.store.db, name).await?.is_some() {
            return Err(Error::conflict(format!("user '{name}' already exists")));
        }
        let now = now_ms();
        q::user_insert(
            &self.store.db,
            user::Model {
                id: crate::model::new_id("usr"),
                name: name.to_string(),
                role: role.as_str().to_string(),
                password_hash: Some(hash_password(&password)?),
                must_change_password: chosen,
                disabled: false,
                created_at: now,
                updated_at: now,
            },
        )
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => Error::conflict(format!("user '{name}' already exists")),
            e => e,
        })?;
        Ok(NewPassword {
            user: name.to_string(),
            password,
        })
    }

    pub async fn user_list(&self) -> Result<Vec<UserInfo>> {
        q::user_list(&self.store.db)
            .await?
            .into_iter()
            .map(info)
            .collect()
    }

    /// Refuses a change that would leave no enabled admin.
    async fn keep_an_admin(&self, u: &user::Model) -> Result<()> {
        if u.role != Role::Admin.as_str() || u.disabled {
            return Ok(());
        }
        let others = q::user_list(&self.store.db)
            .await?
            .into_iter()
            .filter(|o| o.id != u.id && o.role == Role::Admin.as_str() && !o.disabled)
            .count();
        if others == 0 {
            return Err(Error::conflict(format!(
                "'{}' is the last enabled admin; make another admin first",
                u.name
            )));
        }
        Ok(())
    }

    /// Changes a user's role; their keys act with at most the new one at
    /// once.
    pub async fn user_set_role(&self, name: &str, role: Role) -> Result<UserInfo> {
        let u = self.user_named(name).await?;
        if role != Role::Admin {
            self.keep_an_admin(&u).await?;
        }
        q::user_update(
            &self.store.db,
            &u.id,
            UserChange {
                role: Some(role.as_str().to_string()),
                ..Default::default()
            },
        )
        .await?;
        self.user_info(name).await
    }

    /// Disables (or enables again) a user: every key of a disabled user is
    /// refused from the next request on, and its console sessions end.
    pub async fn user_set_disabled(&self, name: &str, disabled: bool) -> Result<UserInfo> {
        let u = self.user_named(name).await?;
        if disabled {
            self.keep_an_admin(&u).await?;
        }
        q::user_update(
            &self.store.db,
            &u.id,
            UserChange {
                disabled: Some(disabled),
                ..Default::default()
            },
        )
        .await?;
        if disabled {
            self.sessions_end(&u.id).await?;
        }
        self.user_info(name).await
    }

    async fn user_info(&self, name: &str) -> Result<UserInfo> {
        info(self.user_named(name).await?)
    }

    /// Sets a user's password; without one FM chooses one, to be changed at
    /// the next login. The user's console sessions end.
    pub async fn user_reset_password(
        &self,
        name: &str,
        password: Option<String>,
    ) -> Result<NewPassword> {
        let u = self.user_named(name).await?;
        let chosen = password.is_none();
        let password = match password {
            Some(p) => {
                check_password(&p)?;
                p
            }
            None => new_password(),
        };
        q::user_update(
            &self.store.db,
            &u.id,
            UserChange {
                password: Some((hash_password(&password)?, chosen)),
                ..Default::default()
            },
        )
        .await?;
        self.sessions_end(&u.id).await?;
        Ok(NewPassword {
            user: name.to_string(),
            password,
        })
    }

    /// Checks a user's password (the console's login); the user when it
    /// matches and the user is enabled. Unknown users cost the same time.
    pub async fn user_check_password(&self, name: &str, password: &str) -> Result<UserInfo> {
        let u = match check_user_name(name) {
            Ok(()) => q::user_by_name(&self.store.db, name).await?,
            Err(_) => None,
        };
        let stored = u.as_ref().and_then(|u| u.password_hash.clone());
        let ok = match &stored {
            Some(h) => verify_password(password, h),
            None => {
                // Spend the same work as a real check.
                let _ = verify_password(password, &DUMMY_PASSWORD_HASH);
                false
            }
        };
        match u {
            Some(u) if ok && !u.disabled => info(u),
            _ => Err(Error::Unauthorized),
        }
    }

    /// On the first start of an empty store: makes user `admin`, writes its
    /// one-time password to `data_dir/initial-admin-password` (mode 0600)
    /// and returns that path. Keys made before users existed become
    /// `admin`'s. Does nothing more once a user exists.
    pub async fn ensure_first_admin(&self, data_dir: &Path) -> Result<Option<PathBuf>> {
        let mut written = None;
        if q::user_count(&self.store.db).await? == 0 {
            let path = data_dir.join(FIRST_PASSWORD_FILE);
            let made = match self.user_create(FIRST_ADMIN, Role::Admin, None).await {
                Ok(made) => made,
                // Another replica made it meanwhile.
                Err(Error::Conflict(_)) => return self.adopt_keys().await.map(|_| None),
                Err(e) => return Err(e),
            };
            write_private(&path, &format!("{}\n", made.password)).map_err(|e| {
                Error::internal(format!(
                    "writing the first admin's password to {}: {e}",
                    path.display()
                ))
            })?;
            written = Some(path);
        }
        self.adopt_keys().await?;
        Ok(written)
    }

    async fn adopt_keys(&self) -> Result<()> {
        let admin = q::user_by_name(&self.store.db, FIRST_ADMIN).await?;
        let Some(admin) = admin.or(q::user_list(&self.store.db)
            .await?
            .into_iter()
            .find(|u| u.role == Role::Admin.as_str()))
        else {
            return Ok(());
        };
        let n = q::api_keys_adopt(&self.store.db, &admin.id).await?;
        if n > 0 {
            tracing::info!(keys = n, user = %admin.name, "API keys made before users existed now belong to a user");
            self.keys.forget();
        }
        Ok(())
    }
}

/// An argon2id hash of a random password nobody knows, made once.
static DUMMY_PASSWORD_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password(&new_password()).unwrap_or_default());

/// Writes `text` to a new file readable by its owner only, replacing any.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
