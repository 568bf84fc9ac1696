//! The sagas FM runs: each a named list of idempotent steps, each step with
//! an optional undo. A step may run more than once (after a crash it is run
//! again from the start), so it must check before it acts.

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::resources as q;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;

/// A [`Step`] from a step function (and its undo):
/// `step!("name", f)`, `step!("name", f, undo g)`.
macro_rules! step {
    ($name:literal, $f:path) => {
        Step {
            name: $name,
            run: |c| Box::pin($f(c)),
            undo: None,
        }
    };
    ($name:literal, $f:path, undo $u:path) => {
        Step {
            name: $name,
            run: |c| Box::pin($f(c)),
            undo: Some(|c| Box::pin($u(c))),
        }
    };
}
pub(crate) use step;

/// What a step sees.
#[derive(Clone, Debug)]
pub struct StepCtx {
    pub store: Store,
    /// The ports and settings steps act through.
    pub svc: std::sync::Arc<super::Services>,
    pub op_id: String,
    pub tenant: String,
    /// The id of the object the operation acts on.
    pub target: String,
    /// The parameters the operation was submitted with.
    pub params: Value,
    /// The outputs of the steps finished so far, by step name.
    pub outputs: Map<String, Value>,
}

impl StepCtx {
    /// Appends a line to the operation's log.
    pub async fn log(&self, line: impl Into<String>) {
        let _ = self.store.op_log(&self.op_id, &line.into()).await;
    }
}

pub type StepFuture = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;
pub type StepFn = fn(StepCtx) -> StepFuture;

/// One step of a saga.
#[derive(Clone, Copy)]
pub struct Step {
    pub name: &'static str,
    pub run: StepFn,
    pub undo: Option<StepFn>,
}

/// A kind of operation and its steps.
#[derive(Clone)]
pub struct Saga {
    pub kind: &'static str,
    pub steps: Vec<Step>,
}

pub const DELETE_CLOUD_ACCOUNT: &str = "DELETE_CLOUD_ACCOUNT";
pub const DELETE_VIRTUAL_NETWORK: &str = "DELETE_VIRTUAL_NETWORK";
pub const DELETE_INSTANCE_TEMPLATE: &str = "DELETE_INSTANCE_TEMPLATE";

/// Every saga FM knows.
pub fn all() -> Vec<Saga> {
    let mut all = super::lifecycle::sagas();
    all.extend(super::backups::sagas());
    all.extend([
        Saga {
            kind: DELETE_CLOUD_ACCOUNT,
            steps: vec![
                Step {
                    name: "check-account-unused",
                    run: |c| Box::pin(check_unused(c, Owner::Account)),
                    undo: None,
                },
                Step {
                    name: "delete-account-record",
                    run: |c| Box::pin(delete_unused(c, Owner::Account)),
                    undo: None,
                },
            ],
        },
        Saga {
            kind: DELETE_VIRTUAL_NETWORK,
            steps: vec![
                Step {
                    name: "check-network-unused",
                    run: |c| Box::pin(check_unused(c, Owner::Network)),
                    undo: None,
                },
                Step {
                    name: "delete-cloud-resources",
                    run: |c| Box::pin(delete_network_resources(c)),
                    undo: None,
                },
                Step {
                    name: "delete-network-record",
                    run: |c| Box::pin(delete_unused(c, Owner::Network)),
                    undo: None,
                },
            ],
        },
        Saga {
            kind: DELETE_INSTANCE_TEMPLATE,
            steps: vec![
                Step {
                    name: "check-template-unused",
                    run: |c| Box::pin(check_unused(c, Owner::Template)),
                    undo: None,
                },
                Step {
                    name: "delete-template-record",
                    run: |c| Box::pin(delete_unused(c, Owner::Template)),
                    undo: None,
                },
            ],
        },
    ]);
    all
}

/// The objects that other objects refer to, and so can only be deleted when
/// nothing uses them.
#[derive(Clone, Copy)]
enum Owner {
    Account,
    Network,
    Template,
}

impl Owner {
    async fn users<C: sea_orm::ConnectionTrait>(self, c: &C, id: &str) -> Result<u64> {
        match self {
            Owner::Account => q::networks_using_account(c, id).await,
            Owner::Network => q::instances_using_network(c, id).await,
            Owner::Template => q::instances_using_template(c, id).await,
        }
    }

    async fn delete<C: sea_orm::ConnectionTrait>(
        self,
        c: &C,
        tenant: &str,
        id: &str,
    ) -> Result<u64> {
        match self {
            Owner::Account => q::account_delete(c, tenant, id).await,
            Owner::Network => q::network_delete(c, tenant, id).await,
            Owner::Template => q::template_delete(c, tenant, id).await,
        }
    }

    fn in_use(self, id: &str, n: u64) -> Error {
        let (what, by) = match self {
            Owner::Account => ("cloud account", "virtual network(s)"),
            Owner::Network => ("virtual network", "instance(s)"),
            Owner::Template => ("instance template", "instance(s)"),
        };
        Error::conflict(format!(
            "{what} '{id}' is used by {n} {by}; delete or move them first"
        ))
    }
}

async fn check_unused(c: StepCtx, owner: Owner) -> Result<Value> {
    let n = owner.users(&c.store.db, &c.target).await?;
    if n > 0 {
        return Err(owner.in_use(&c.target, n));
    }
    Ok(json!({"users": 0}))
}

/// Re-checks usage inside the transaction that deletes, so a reference
/// added after the check step can't be orphaned (the store's foreign keys
/// refuse it too). Deleting a row that is already gone (the step ran before
/// a crash) succeeds.
async fn delete_unused(c: StepCtx, owner: Owner) -> Result<Value> {
    use sea_orm::TransactionTrait;
    let txn = c.store.db.begin().await?;
    let n = owner.users(&txn, &c.target).await?;
    if n > 0 {
        return Err(owner.in_use(&c.target, n));
    }
    owner.delete(&txn, &c.tenant, &c.target).await?;
    txn.commit().await?;
    Ok(json!({"id": c.target, "deleted": true}))
}

/// Deletes what FM made in the cloud for a network (its security group),
/// before its record goes.
async fn delete_network_resources(c: StepCtx) -> Result<Value> {
    let Some(row) = q::network_get(c.store.conn(), &c.tenant, &c.target).await? else {
        return Ok(serde_json::json!({}));
    };
    let mut net: crate::model::network::VirtualNetwork =
        serde_json::from_str(&row.doc).map_err(crate::error::Error::internal)?;
    net.id = Some(row.id);
    let at = super::placement::for_network(&c.svc, &c.tenant, &net).await?;
    c.svc.cloud.delete_network(&at).await?;
    Ok(serde_json::json!({}))
}
