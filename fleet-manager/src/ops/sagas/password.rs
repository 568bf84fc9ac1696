//! Resetting a node user's password (`RESET_USER_PASSWORD`). The password
//! travels sealed in the operation's parameters and is opened only into
//! the agent command; it is never logged or kept in an output.

use super::common::{require_agent, run_command};
use super::{Saga, SagaParams, StepCtx, step};
use crate::crypto::Place;
use crate::error::Result;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};

pub const KIND: &str = "RESET_USER_PASSWORD";
/// The field of [`Params`] the password is sealed in, which is also its
/// [`Place`](crate::crypto::Place).
pub const SEALED_FIELD: &str = "passwordSealed";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub user_name: String,
    /// The new password, sealed for [`SEALED_FIELD`] of the instance.
    pub password_sealed: String,
}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(KIND, vec![step!("reset-password", reset_password)])
}

/// The saga's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordReset {
    pub user_name: String,
}

async fn reset_password(c: StepCtx) -> Result<PasswordReset> {
    let p: Params = c.params()?;
    require_agent(&c).await?;
    let password = c.svc.secrets.open(
        &Place::operation(&c.target, SEALED_FIELD),
        &p.password_sealed,
    )?;
    run_command(
        &c,
        "reset-password",
        command::Kind::ResetUserPassword(fm_proto::agent::ResetUserPassword {
            user_name: p.user_name.clone(),
            password,
        }),
    )
    .await?;
    Ok(PasswordReset {
        user_name: p.user_name,
    })
}
