//! How a change is made, for the surfaces that offer more than a plain
//! write (the gRPC API): checked only (AIP-163), at most once per client
//! request id (AIP-155), or only if the object is still the version the
//! caller read (AIP-154). REST and the console make plain changes
//! ([`Change::default`]).

use super::App;
use crate::error::{Error, Result};
use crate::store::requests as rq;
use sea_orm::{DatabaseTransaction, TransactionTrait};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Check everything a real change would, write nothing, and answer
    /// what would be made.
    pub validate_only: bool,
    /// The client's id for the request: a retry answers what the first
    /// attempt made.
    pub request: Option<ClientRequest>,
    /// The etag the caller read: the update is refused (stale) when the
    /// object changed since.
    pub etag: Option<String>,
}

/// A client's request id with what identifies the request it was given to.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub id: String,
    /// The method (`VirtualNetworks/CreateVirtualNetwork`).
    pub method: String,
    /// A hash of the request's content (without its id).
    pub fingerprint: String,
}

/// An object with its etag, a digest of its stored state.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

/// The etag of a stored state: a digest of its parts.
pub fn etag_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl Change {
    /// Refuses the change when the caller read another version than `etag`.
    pub fn check_etag(&self, what: impl std::fmt::Display, etag: &str) -> Result<()> {
        match &self.etag {
            Some(e) if e != etag => Err(Error::stale(what)),
            _ => Ok(()),
        }
    }
}

/// What a create made or would make.
pub enum Made {
    /// Made now in the transaction given back (commit it).
    New(DatabaseTransaction),
    /// An earlier request with the same id made this object.
    Earlier(String),
}

impl App {
    /// The object an earlier request with the same id made, if any; the
    /// same id given to a different request is refused.
    pub(super) async fn replayed(&self, tenant: &str, change: &Change) -> Result<Option<String>> {
        let Some(r) = &change.request else {
            return Ok(None);
        };
        match rq::request_find(&self.store.db, tenant, &r.id).await? {
            None => Ok(None),
            Some(m) if m.method == r.method && m.fingerprint == r.fingerprint => {
                Ok(Some(m.object_id))
            }
            Some(m) => Err(Error::invalid(format!(
                "request_id '{}' was already used for another request ({}): give each new request a new id",
                r.id.escape_debug(),
                m.method
            ))),
        }
    }

    /// Opens the transaction that makes object `id`, with the client's
    /// request id recorded in it; when another attempt with the same id
    /// got there first, answers what that one made.
    pub(super) async fn begin_create(
        &self,
        tenant: &str,
        change: &Change,
        id: &str,
    ) -> Result<Made> {
        let txn = self.store.db.begin().await?;
        let Some(r) = &change.request else {
            return Ok(Made::New(txn));
        };
        if rq::request_claim(&txn, tenant, &r.id, &r.method, &r.fingerprint, id).await? {
            return Ok(Made::New(txn));
        }
        txn.rollback().await?;
        match self.replayed(tenant, change).await? {
            Some(earlier) => Ok(Made::Earlier(earlier)),
            None => Err(Error::conflict(format!(
                "request_id '{}' is being used by another request: retry",
                r.id.escape_debug()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_changes_with_any_part_and_with_where_parts_split() {
        let a = etag_of(&["doc", "secret"]);
        assert_eq!(a, etag_of(&["doc", "secret"]));
        assert_ne!(a, etag_of(&["doc", "secreT"]));
        assert_ne!(a, etag_of(&["docs", "ecret"]));
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn a_stale_etag_is_refused_and_none_is_not_checked() {
        let c = Change {
            etag: Some("old".into()),
            ..Change::default()
        };
        assert!(matches!(c.check_etag("x", "new"), Err(Error::Stale(_))));
        assert!(c.check_etag("x", "old").is_ok());
        assert!(Change::default().check_etag("x", "any").is_ok());
    }
}
