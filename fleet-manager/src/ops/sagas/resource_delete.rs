//! Deleting a configuration object others refer to: a cloud account
//! (`DELETE_CLOUD_ACCOUNT`), a virtual network (`DELETE_VIRTUAL_NETWORK`,
//! with the security group FM made for it) or an instance template
//! (`DELETE_INSTANCE_TEMPLATE`). Each checks nothing uses the object, then
//! re-checks and deletes in one transaction, so a reference added between
//! the two can't be orphaned. Nothing to undo: the checks come first.

use super::common::{Deleted, Nothing};
use super::{Saga, SagaParams, StepCtx, step};
use crate::error::{Error, Result};
use crate::store::resources::Referenced;
use serde::{Deserialize, Serialize};

pub const DELETE_CLOUD_ACCOUNT: &str = "DELETE_CLOUD_ACCOUNT";
pub const DELETE_VIRTUAL_NETWORK: &str = "DELETE_VIRTUAL_NETWORK";
pub const DELETE_INSTANCE_TEMPLATE: &str = "DELETE_INSTANCE_TEMPLATE";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteAccount {}

impl SagaParams for DeleteAccount {
    const KIND: &'static str = DELETE_CLOUD_ACCOUNT;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteNetwork {}

impl SagaParams for DeleteNetwork {
    const KIND: &'static str = DELETE_VIRTUAL_NETWORK;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteTemplate {}

impl SagaParams for DeleteTemplate {
    const KIND: &'static str = DELETE_INSTANCE_TEMPLATE;
}

pub fn account_saga() -> Saga {
    Saga::new(
        DELETE_CLOUD_ACCOUNT,
        vec![
            step!("check-account-unused", check_account),
            step!("delete-account-record", delete_account),
        ],
    )
}

pub fn network_saga() -> Saga {
    Saga::new(
        DELETE_VIRTUAL_NETWORK,
        vec![
            step!("check-network-unused", check_network),
            step!("delete-cloud-resources", delete_network_resources),
            step!("delete-network-record", delete_network),
        ],
    )
}

pub fn template_saga() -> Saga {
    Saga::new(
        DELETE_INSTANCE_TEMPLATE,
        vec![
            step!("check-template-unused", check_template),
            step!("delete-template-record", delete_template),
        ],
    )
}

/// What the check step found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unused {
    pub users: u64,
}

fn in_use(what: Referenced, id: &str, n: u64) -> Error {
    Error::conflict(format!(
        "{} '{id}' is used by {n} {}; delete or move them first",
        what.name(),
        what.users_name()
    ))
}

async fn check_unused(c: &StepCtx, what: Referenced) -> Result<Unused> {
    let n = c.store.users_of(what, &c.target).await?;
    if n > 0 {
        return Err(in_use(what, &c.target, n));
    }
    Ok(Unused { users: 0 })
}

/// Deleting a row that is already gone (the step ran before a crash)
/// succeeds.
async fn delete_unused(c: &StepCtx, what: Referenced) -> Result<Deleted> {
    match c.store.delete_if_unused(what, &c.tenant, &c.target).await? {
        0 => Ok(Deleted::of(&c.target)),
        n => Err(in_use(what, &c.target, n)),
    }
}

async fn check_account(c: StepCtx) -> Result<Unused> {
    check_unused(&c, Referenced::Account).await
}

async fn delete_account(c: StepCtx) -> Result<Deleted> {
    delete_unused(&c, Referenced::Account).await
}

async fn check_network(c: StepCtx) -> Result<Unused> {
    check_unused(&c, Referenced::Network).await
}

async fn delete_network(c: StepCtx) -> Result<Deleted> {
    delete_unused(&c, Referenced::Network).await
}

async fn check_template(c: StepCtx) -> Result<Unused> {
    check_unused(&c, Referenced::Template).await
}

async fn delete_template(c: StepCtx) -> Result<Deleted> {
    delete_unused(&c, Referenced::Template).await
}

/// Deletes what FM made in the cloud for a network (its security group),
/// before its record goes.
async fn delete_network_resources(c: StepCtx) -> Result<Nothing> {
    let Some(net) = c.store.network_doc_if(&c.tenant, &c.target).await? else {
        return Ok(Nothing {});
    };
    let at = crate::ops::placement::for_network(&c.svc, &c.tenant, &net).await?;
    c.svc.cloud.delete_network(&at).await?;
    Ok(Nothing {})
}
