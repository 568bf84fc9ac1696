//! Futures: starting operations and reading or aborting them.

use super::App;
use crate::error::{Error, Result};
use crate::model::check_id;
use crate::model::operation::{FleetEvent, FutureError, FutureProgress, FutureState, OpState};
use crate::opctx::OpCtx;
use crate::ops::sagas::SagaParams;
use crate::store::entities::operation;
use crate::store::operations::{op_get, op_list};
use crate::store::page::{Page, Paged};

/// The state of a future just started.
pub type StartedFuture = FutureState;

const LOG_TAIL: u64 = 200;

/// The most events one read answers.
const EVENTS_MAX: u64 = 500;

impl App {
    /// The tenant's events after cursor `after` (`None`: from now on), and
    /// the cursor to read the next ones from.
    pub async fn events_after(
        &self,
        tenant: &str,
        after: Option<i64>,
    ) -> Result<(Vec<FleetEvent>, i64)> {
        self.tenant(tenant).await?;
        let Some(after) = after else {
            return Ok((
                Vec::new(),
                crate::store::resources::event_latest(&self.store.db).await?,
            ));
        };
        let rows = crate::store::resources::events_after(&self.store.db, tenant, after, EVENTS_MAX)
            .await?;
        let next = rows.last().map_or(after, |r| r.id);
        let events = rows
            .into_iter()
            .map(|r| {
                let d: serde_json::Value = serde_json::from_str(&r.detail).unwrap_or_default();
                FleetEvent {
                    id: r.id,
                    at: r.at,
                    kind: r.kind,
                    target_id: r.target_id,
                    operation_id: r.operation_id,
                    state: d["state"].as_str().unwrap_or_default().to_string(),
                    error: d["error"].as_str().map(str::to_string),
                }
            })
            .collect();
        Ok((events, next))
    }

    /// Deletes the history older than `retention`: finished operations
    /// with their logs, outbox events, expired enrollment tokens.
    pub async fn history_prune(
        &self,
        retention: std::time::Duration,
    ) -> Result<crate::store::operations::Pruned> {
        let before = crate::model::now_ms() - retention.as_millis() as i64;
        self.store.history_prune(before).await
    }

    /// Persists an operation, wakes a worker, and waits up to the caller's
    /// wait (else the configured one) for it to finish, so quick operations
    /// answer with their result.
    pub async fn start_operation<P: SagaParams>(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        target: &str,
        params: P,
    ) -> Result<StartedFuture> {
        let op = self
            .run_operation(
                ctx,
                tenant,
                target,
                &params,
                ctx.wait.unwrap_or(self.cfg.future_wait),
            )
            .await?;
        self.future_view(op).await
    }

    /// The operation an earlier request with the client's request id
    /// started, if any (the same id given to a different request is
    /// refused).
    pub async fn operation_replayed(
        &self,
        tenant: &str,
        request: &Option<super::ClientRequest>,
    ) -> Result<Option<FutureState>> {
        let change = super::Change {
            request: request.clone(),
            ..Default::default()
        };
        match self.replayed(tenant, &change).await? {
            Some(op) => Ok(Some(self.future_get(tenant, &op, true).await?)),
            None => Ok(None),
        }
    }

    /// Persists an operation, wakes a worker and waits up to `wait` for it;
    /// returns the operation as it is then.
    pub(super) async fn run_operation<P: SagaParams>(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        target: &str,
        params: &P,
        wait: std::time::Duration,
    ) -> Result<operation::Model> {
        let op = self.engine.submit(ctx, tenant, target, params).await?;
        self.engine.kick();
        self.engine.wait(tenant, &op.id, wait).await
    }

    async fn future_view(&self, op: operation::Model) -> Result<FutureState> {
        let log = self.store.op_log_tail(&op.id, LOG_TAIL).await?;
        Ok(Self::view_of(op, log))
    }

    pub(super) fn view_of(op: operation::Model, log: Vec<String>) -> FutureState {
        let state = OpState::parse(&op.state).unwrap_or(OpState::Failed);
        let done_steps = op.next_step.min(op.total_steps);
        let percent = match (state, op.total_steps) {
            (OpState::Done, _) => 100,
            (_, 0) => 0,
            (_, total) => (done_steps * 100 / total) as u8,
        };
        let start = op.started_at.unwrap_or(op.created_at);
        let end = op.finished_at.unwrap_or_else(crate::model::now_ms);
        FutureState {
            job_id: op.id,
            kind: op.kind,
            target_id: op.target_id,
            state: state.as_str().to_string(),
            alive: !state.is_final(),
            has_result: state == OpState::Done,
            result: op
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            aborted: state == OpState::Aborted,
            failed: state == OpState::Failed,
            error: match (op.error_type, op.error_message) {
                (Some(error_type), Some(message)) if state != OpState::Done => Some(FutureError {
                    error_type,
                    message,
                }),
                _ => None,
            },
            progress: FutureProgress {
                done_steps,
                total_steps: op.total_steps,
                current_step: op.current_step,
                percent,
            },
            start_time: op.created_at,
            running_time: (end - start).max(0),
            log,
            initiated_by: op.initiated_by,
        }
    }

    async fn op_row(&self, tenant: &str, id: &str) -> Result<operation::Model> {
        check_id("future", id)?;
        match op_get(&self.store.db, tenant, id).await? {
            Some(op) => Ok(op),
            None => Err(self.missing(tenant, "future", id).await),
        }
    }

    /// A future's state. With `peek`, always the state; without it, a future
    /// that failed or was aborted answers with its error, so a client waiting
    /// for the result learns of the failure.
    pub async fn future_get(&self, tenant: &str, id: &str, peek: bool) -> Result<FutureState> {
        let view = self.future_view(self.op_row(tenant, id).await?).await?;
        if !peek && let Some(e) = &view.error {
            return Err(if view.aborted {
                Error::OperationAborted
            } else {
                Error::OperationFailed {
                    error_type: e.error_type.clone(),
                    message: e.message.clone(),
                }
            });
        }
        Ok(view)
    }

    /// A page of the tenant's futures, newest first.
    pub async fn future_list(&self, tenant: &str, page: &Page) -> Result<Paged<FutureState>> {
        self.tenant(tenant).await?;
        let ops = op_list(&self.store.db, tenant, page).await?;
        // The page's log tails in one query, not one per future.
        let ids: Vec<String> = ops.items.iter().map(|o| o.id.clone()).collect();
        let mut tails = self.store.op_log_tails(&ids, LOG_TAIL).await?;
        let items = ops
            .items
            .into_iter()
            .map(|op| {
                let log = tails.remove(&op.id).unwrap_or_default();
                Self::view_of(op, log)
            })
            .collect();
        Ok(Paged {
            items,
            next: ops.next,
        })
    }

    /// Aborts a future: at once if it has not started, between steps (with
    /// the finished steps undone) if it is running. Finished futures are
    /// left as they are.
    pub async fn future_abort(&self, tenant: &str, id: &str) -> Result<FutureState> {
        self.op_row(tenant, id).await?;
        let op = self
            .store
            .op_request_abort(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found("future", id))?;
        self.future_view(op).await
    }
}
