//! Every sealed value the database keeps, by its [`Place`]: the one-time
//! re-sealing of values an earlier version sealed without one.
//!
//! The places are the ones the application seals for: the agent CA's key
//! (settings `agent-ca`), tenants' credentials, cloud accounts' and
//! templates' secrets, templates' secret setup-action parameters, the
//! node secrets in runtime rows, and what operations carry in their
//! parameters and steps' outputs (a password reset, a setup plan), under
//! the name of the field that holds them.

use super::Store;
use super::entities::{
    cloud_account, instance_runtime, instance_template, operation, setting, tenant,
};
use crate::crypto::{Place, is_legacy_sealed, is_sealed};
use crate::error::{Error, Result};
use crate::model::now_ms;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set, TransactionTrait};
use serde_json::Value;

/// The settings row that records that the database's values are sealed
/// with their places.
pub const SEALING_SETTING: &str = "sealing";
const CA_SETTING: &str = "agent-ca";
const TEMPLATE_SEALED_PREFIX: &str = crate::model::setup_action::SEALED_PREFIX;

/// Seals one legacy value again for its place; `None` leaves it.
pub type Reseal<'a> = dyn Fn(&Place, &str) -> Result<Option<String>> + Send + Sync + 'a;

/// What [`reseal_legacy`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Legacy values sealed again for their places.
    pub values: usize,
    /// Whether this run did it (false: the database was already done).
    pub ran: bool,
}

/// Seals again, in one transaction, every value an earlier version sealed
/// without a place, and records that it was done; a later start does
/// nothing, and a legacy value written into the database afterwards never
/// opens. Refused when the database holds values sealed with their places
/// beside legacy ones but no record of the re-sealing (the record was
/// deleted: re-sealing then could launder a value copied from elsewhere).
pub async fn reseal_legacy(store: &Store, reseal: &Reseal<'_>) -> Result<Resealed> {
    if setting::Entity::find_by_id(SEALING_SETTING.to_string())
        .one(store.conn())
        .await?
        .is_some()
    {
        return Ok(Resealed::default());
    }
    let txn = store.conn().begin().await?;
    let mut w = Walk {
        reseal,
        legacy: 0,
        current: 0,
    };

    if let Some(row) = setting::Entity::find_by_id(CA_SETTING.to_string())
        .one(&txn)
        .await?
    {
        let mut v: Value = serde_json::from_str(&row.value).map_err(Error::internal)?;
        if let Some(s) = v.get_mut("key_sealed")
            && w.value(&Place::ca_key(), s)?
        {
            let mut m = row.into_active_model();
            m.value = Set(v.to_string());
            m.update(&txn).await?;
        }
    }
    for row in tenant::Entity::find().all(&txn).await? {
        let mut v: Value = serde_json::from_str(&row.cloud_credentials).map_err(Error::internal)?;
        let changed = match v.get_mut("sealed") {
            Some(s) => w.value(&Place::tenant_credentials(&row.id), s)?,
            None => false,
        };
        if changed {
            let mut m = row.into_active_model();
            m.cloud_credentials = Set(v.to_string());
            m.update(&txn).await?;
        }
    }
    for row in cloud_account::Entity::find().all(&txn).await? {
        if let Some(new) = w.column(&Place::account_secret(&row.id), row.secret.as_deref())? {
            let mut m = row.into_active_model();
            m.secret = Set(Some(new));
            m.update(&txn).await?;
        }
    }
    for row in instance_template::Entity::find().all(&txn).await? {
        let secret = w.column(&Place::template_secret(&row.id), row.secret.as_deref())?;
        let mut doc: Value = serde_json::from_str(&row.doc).map_err(Error::internal)?;
        let mut doc_changed = false;
        if let Some(actions) = doc.get_mut("setupActions").and_then(Value::as_array_mut) {
            for a in actions {
                let Some(params) = a.get_mut("params").and_then(Value::as_object_mut) else {
                    continue;
                };
                for (key, v) in params.iter_mut() {
                    doc_changed |= w.value(&Place::template_param(&row.id, key), v)?;
                }
            }
        }
        if secret.is_some() || doc_changed {
            let id = row.id.clone();
            let mut m = row.into_active_model();
            if let Some(s) = secret {
                m.secret = Set(Some(s));
            }
            if doc_changed {
                m.doc = Set(doc.to_string());
            }
            m.update(&txn)
                .await
                .map_err(|e| Error::internal(format!("can't re-seal template '{id}': {e}")))?;
        }
    }
    for row in instance_runtime::Entity::find().all(&txn).await? {
        let key = w.column(
            &Place::runtime(&row.instance_id, "admin_api_key"),
            row.admin_api_key.as_deref(),
        )?;
        let pw = w.column(
            &Place::runtime(&row.instance_id, "initial_password"),
            row.initial_password.as_deref(),
        )?;
        if key.is_some() || pw.is_some() {
            let mut m = row.into_active_model();
            if let Some(k) = key {
                m.admin_api_key = Set(Some(k));
            }
            if let Some(p) = pw {
                m.initial_password = Set(Some(p));
            }
            m.update(&txn).await?;
        }
    }
    for row in operation::Entity::find().all(&txn).await? {
        let mut params: Value = serde_json::from_str(&row.params).map_err(Error::internal)?;
        let mut saga: Value = serde_json::from_str(&row.saga).map_err(Error::internal)?;
        let p = w.tree(&row.target_id, "", &mut params)?;
        let s = w.tree(&row.target_id, "", &mut saga)?;
        if p || s {
            let mut m = row.into_active_model();
            m.params = Set(params.to_string());
            m.saga = Set(saga.to_string());
            m.update(&txn).await?;
        }
    }

    if w.legacy > 0 && w.current > 0 {
        return Err(Error::conflict(format!(
            "the database holds {} value(s) sealed by an earlier version beside {} sealed with their places, but no record that it was re-sealed: refusing to re-seal them (was the '{SEALING_SETTING}' setting deleted?)",
            w.legacy, w.current
        )));
    }
    setting::Entity::insert(setting::ActiveModel {
        key: Set(SEALING_SETTING.into()),
        value: Set(serde_json::json!({"version": 2, "resealed": w.legacy}).to_string()),
        updated_at: Set(now_ms()),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(Resealed {
        values: w.legacy,
        ran: true,
    })
}

struct Walk<'a, 'b> {
    reseal: &'a Reseal<'b>,
    legacy: usize,
    current: usize,
}

impl Walk<'_, '_> {
    /// A column holding a sealed value: the new value if it was re-sealed.
    fn column(&mut self, at: &Place, v: Option<&str>) -> Result<Option<String>> {
        let Some(s) = v else { return Ok(None) };
        if is_sealed(s) {
            self.current += 1;
            return Ok(None);
        }
        if !is_legacy_sealed(s) {
            return Ok(None);
        }
        self.legacy += 1;
        (self.reseal)(at, s)
    }

    /// A JSON string that may hold a sealed value (bare, or behind the
    /// templates' `fm-sealed:` prefix); true when it was re-sealed.
    fn value(&mut self, at: &Place, v: &mut Value) -> Result<bool> {
        let Some(s) = v.as_str() else {
            return Ok(false);
        };
        let (prefix, body) = match s.strip_prefix(TEMPLATE_SEALED_PREFIX) {
            Some(b) => (TEMPLATE_SEALED_PREFIX, b),
            None => ("", s),
        };
        match self.column(at, Some(body))? {
            Some(new) => {
                *v = Value::String(format!("{prefix}{new}"));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Every sealed value in an operation's document, each under the name
    /// of the field that holds it; strings that are JSON documents
    /// themselves (a setup action's parameters) are walked too.
    fn tree(&mut self, target: &str, key: &str, v: &mut Value) -> Result<bool> {
        match v {
            Value::Object(map) => {
                let mut changed = false;
                for (k, child) in map.iter_mut() {
                    changed |= self.tree(target, k, child)?;
                }
                Ok(changed)
            }
            Value::Array(items) => {
                let mut changed = false;
                for child in items {
                    changed |= self.tree(target, key, child)?;
                }
                Ok(changed)
            }
            Value::String(s) if s.starts_with('{') || s.starts_with('[') => {
                let Ok(mut inner) = serde_json::from_str::<Value>(s) else {
                    return Ok(false);
                };
                if self.tree(target, key, &mut inner)? {
                    *v = Value::String(inner.to_string());
                    return Ok(true);
                }
                Ok(false)
            }
            Value::String(_) => self.value(&Place::operation(target, key), v),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn operation_documents_are_walked_to_every_sealed_value_under_its_field() {
        let seen = Mutex::new(Vec::new());
        let reseal = |at: &Place, v: &str| {
            seen.lock().unwrap().push((at.to_string(), v.to_string()));
            Ok(Some("v2:NEW".to_string()))
        };
        let mut w = Walk {
            reseal: &reseal,
            legacy: 0,
            current: 0,
        };
        let params = serde_json::json!({"userName": "admin", "passwordSealed": "v1:PW"});
        let action = serde_json::json!({"url": "https://x", "password": "fm-sealed:v1:JDBC",
            "headers": "fm-sealed:v2:ALREADY"})
        .to_string();
        let saga = serde_json::json!({"outputs": {"plan": {"setup": {
            "before_install": [["INSTALL_JDBC_DRIVER", action]], "after_install": []}}}});
        let (mut p, mut s) = (params, saga);
        assert!(w.tree("ins-1", "", &mut p).unwrap());
        assert!(w.tree("ins-1", "", &mut s).unwrap());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (
                    "operations.passwordSealed of 'ins-1'".to_string(),
                    "v1:PW".to_string()
                ),
                (
                    "operations.password of 'ins-1'".to_string(),
                    "v1:JDBC".to_string()
                ),
            ]
        );
        assert_eq!((w.legacy, w.current), (2, 1));
        assert_eq!(p["passwordSealed"], "v2:NEW");
        let inner = s["outputs"]["plan"]["setup"]["before_install"][0][1]
            .as_str()
            .unwrap();
        let inner: Value = serde_json::from_str(inner).unwrap();
        assert_eq!(inner["password"], "fm-sealed:v2:NEW");
        assert_eq!(inner["url"], "https://x");
    }
}
