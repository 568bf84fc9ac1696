//! Following an operation to its end, with a progress bar on stderr when
//! it is a terminal (nothing otherwise, so scripts' logs stay clean).

use super::client::{Clients, answer};
use crate::error::{Error, Result};
use fm_proto::fleet::{Operation, WaitOperationRequest};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long one `WaitOperation` call waits on the server.
const WAIT_MS: i64 = 20_000;

/// Waits until `op` is done; one that did not end `done` is an error with
/// its state, type and message.
pub async fn operation(c: &mut Clients, tenant: &str, op: Operation) -> Result<Operation> {
    ended(follow(c, tenant, op).await?)
}

/// Waits until `op` is done, however it ends.
pub async fn follow(c: &mut Clients, tenant: &str, mut op: Operation) -> Result<Operation> {
    let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos:>3}% {msg}")
            .map_err(Error::internal)?
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{} {}", op.kind, op.target_id));
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    while !op.done {
        bar.set_position(op.percent.clamp(0, 100) as u64);
        bar.set_message(op.current_step.clone());
        let req = WaitOperationRequest {
            tenant: tenant.to_string(),
            name: op.name.clone(),
            timeout_ms: WAIT_MS,
        };
        op = answer(c.operations.wait_operation(req).await)?;
    }
    bar.finish_and_clear();
    Ok(op)
}

/// An operation that ended other than `done` as the error.
pub fn ended(op: Operation) -> Result<Operation> {
    if op.state == "done" {
        return Ok(op);
    }
    let why = if op.error_type.is_empty() {
        "no reason given".to_string()
    } else {
        format!("{}: {}", op.error_type, op.error_message)
    };
    Err(Error::OperationFailed {
        error_type: op.error_type.clone(),
        message: format!("operation {} ({}) {}: {why}", op.name, op.kind, op.state),
    })
}
