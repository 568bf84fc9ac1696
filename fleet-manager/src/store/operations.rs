//! Data access for the operations engine: the operations table, its log
//! lines, claiming with a lease, and guarded state changes.
//!
//! Every change a worker makes to a running operation is guarded by
//! `lease_owner`: a worker that lost its lease (it stalled, and another one
//! took over) changes nothing.

use super::entities::{operation, operation_log};
use super::page::{Cursor, Order, Page, Paged, finish, keyset};
use super::{Backend, Store};
use crate::error::{Error, Result};
use crate::model::now_ms;
use crate::model::operation::OpState;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement, TransactionTrait,
};

/// What a caller asks the engine to run.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub target_id: String,
    pub params: serde_json::Value,
    pub total_steps: i32,
    /// Who started it (a user's name, `system:<what>`).
    pub initiated_by: String,
}

/// An operation a worker holds the lease on.
pub type ClaimedOp = operation::Model;

pub async fn op_insert<C: ConnectionTrait>(c: &C, op: NewOperation) -> Result<operation::Model> {
    let now = now_ms();
    let model = operation::ActiveModel {
        id: Set(op.id),
        tenant_id: Set(op.tenant_id),
        kind: Set(op.kind),
        target_id: Set(op.target_id.clone()),
        state: Set(OpState::Pending.as_str().to_string()),
        params: Set(op.params.to_string()),
        saga: Set("{}".to_string()),
        next_step: Set(0),
        total_steps: Set(op.total_steps),
        current_step: Set(None),
        result: Set(None),
        error_type: Set(None),
        error_message: Set(None),
        abort_requested: Set(false),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        attempts: Set(0),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
        initiated_by: Set(Some(op.initiated_by)),
    };
    model.insert(c).await.map_err(|e| match Error::from(e) {
        Error::Conflict(_) => Error::conflict(format!(
            "another operation is already in progress on '{}'; wait for it or abort it",
            op.target_id
        )),
        other => other,
    })
}

pub async fn op_get<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    id: &str,
) -> Result<Option<operation::Model>> {
    Ok(operation::Entity::find_by_id(id.to_string())
        .filter(operation::Column::TenantId.eq(tenant))
        .one(c)
        .await?)
}

/// The unfinished operation on `target_id`, if any.
pub async fn op_active_for_target<C: ConnectionTrait>(
    c: &C,
    target_id: &str,
) -> Result<Option<operation::Model>> {
    Ok(operation::Entity::find()
        .filter(operation::Column::TargetId.eq(target_id))
        .filter(
            operation::Column::State.is_in([OpState::Pending.as_str(), OpState::Running.as_str()]),
        )
        .one(c)
        .await?)
}

/// A page of the tenant's operations, newest first (then by id, descending).
pub async fn op_list<C: ConnectionTrait>(
    c: &C,
    tenant: &str,
    page: &Page,
) -> Result<Paged<operation::Model>> {
    let query = operation::Entity::find().filter(operation::Column::TenantId.eq(tenant));
    let rows = keyset(
        query,
        operation::Column::CreatedAt,
        operation::Column::Id,
        Order::Desc,
        page,
    )
    .all(c)
    .await?;
    Ok(finish(rows, page, |m| Cursor {
        key: m.created_at,
        id: m.id.clone(),
    }))
}

fn claimable(now: i64) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(operation::Column::State.eq(OpState::Pending.as_str()))
        .add(
            sea_orm::Condition::all()
                .add(operation::Column::State.eq(OpState::Running.as_str()))
                .add(operation::Column::LeaseExpiresAt.lt(now)),
        )
}

impl Store {
    /// Takes the oldest operation that is pending, or running under an
    /// expired lease (its worker died), and leases it to `owner`.
    ///
    /// On PostgreSQL the candidate row is locked with `FOR UPDATE SKIP
    /// LOCKED`, so replicas never wait on each other; on SQLite (one writer)
    /// a conditional update does the same job.
    pub async fn op_claim(&self, owner: &str, lease_ms: i64) -> Result<Option<ClaimedOp>> {
        let now = self.clock_ms().await?;
        let candidate: Option<String> = match self.backend() {
            Backend::Postgres => {
                let txn = self.db.begin().await?;
                let row = txn
                    .query_one(Statement::from_sql_and_values(
                        sea_orm::DatabaseBackend::Postgres,
                        "SELECT id FROM operations \
                         WHERE state = 'pending' OR (state = 'running' AND lease_expires_at < $1) \
                         ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                        [now.into()],
                    ))
                    .await?;
                let id = match row {
                    Some(r) => r.try_get::<String>("", "id")?,
                    None => return Ok(None),
                };
                let claimed = lease_update(&txn, &id, owner, now, lease_ms).await?;
                txn.commit().await?;
                return Ok(claimed);
            }
            Backend::Sqlite => {
                operation::Entity::find()
                    .select_only()
                    .column(operation::Column::Id)
                    .filter(claimable(now))
                    .order_by_asc(operation::Column::CreatedAt)
                    .into_tuple::<String>()
                    .one(&self.db)
                    .await?
            }
        };
        match candidate {
            Some(id) => lease_update(&self.db, &id, owner, now, lease_ms).await,
            None => Ok(None),
        }
    }

    /// Extends the lease; false when `owner` no longer holds it.
    pub async fn op_renew_lease(&self, id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let res = operation::Entity::update_many()
            .col_expr(
                operation::Column::LeaseExpiresAt,
                Expr::value(self.clock_ms().await? + lease_ms),
            )
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::LeaseOwner.eq(owner))
            .filter(operation::Column::State.eq(OpState::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Records that the steps before `next_step` are done, with the saga's
    /// accumulated outputs. False when the lease was lost.
    pub async fn op_record_progress(
        &self,
        id: &str,
        owner: &str,
        next_step: i32,
        current_step: Option<&str>,
        saga: &serde_json::Value,
    ) -> Result<bool> {
        let res = operation::Entity::update_many()
            .col_expr(operation::Column::NextStep, Expr::value(next_step))
            .col_expr(
                operation::Column::CurrentStep,
                Expr::value(current_step.map(str::to_string)),
            )
            .col_expr(operation::Column::Saga, Expr::value(saga.to_string()))
            .col_expr(operation::Column::UpdatedAt, Expr::value(now_ms()))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::LeaseOwner.eq(owner))
            .filter(operation::Column::State.eq(OpState::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Moves a running operation to its final state and writes its outbox
    /// event, in one transaction. Only the lease holder can do this, and only
    /// once: a second call finds the operation no longer running and changes
    /// nothing (returns false).
    pub async fn op_finish(
        &self,
        op: &ClaimedOp,
        owner: &str,
        outcome: &OpOutcome,
        line: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let (state, result, err_type, err_msg) = match outcome {
            OpOutcome::Done(result) => (OpState::Done, Some(result.to_string()), None, None),
            OpOutcome::Failed(e) => (
                OpState::Failed,
                None,
                Some(e.error_type().to_string()),
                Some(e.message()),
            ),
            OpOutcome::Aborted => (
                OpState::Aborted,
                None,
                Some(Error::OperationAborted.error_type().to_string()),
                Some(Error::OperationAborted.message()),
            ),
        };
        let txn = self.db.begin().await?;
        let res = operation::Entity::update_many()
            .col_expr(operation::Column::State, Expr::value(state.as_str()))
            .col_expr(operation::Column::Result, Expr::value(result))
            .col_expr(operation::Column::ErrorType, Expr::value(err_type))
            .col_expr(
                operation::Column::ErrorMessage,
                Expr::value(err_msg.clone()),
            )
            .col_expr(
                operation::Column::CurrentStep,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                operation::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                operation::Column::LeaseExpiresAt,
                Expr::value(Option::<i64>::None),
            )
            .col_expr(operation::Column::FinishedAt, Expr::value(now))
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Id.eq(op.id.as_str()))
            .filter(operation::Column::LeaseOwner.eq(owner))
            .filter(operation::Column::State.eq(OpState::Running.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok(false);
        }
        let detail = serde_json::json!({"state": state.as_str(), "error": err_msg});
        super::resources::event_insert(
            &txn,
            &op.tenant_id,
            Some(&op.id),
            &op.kind,
            &op.target_id,
            &detail,
        )
        .await?;
        // The closing log line goes with the state it reports.
        log_insert(&txn, &op.id, line).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Asks an operation to stop. A pending one is aborted at once; a
    /// running one is flagged and its worker unwinds it. Finished ones are
    /// left as they are. Returns the operation as it is afterwards.
    pub async fn op_request_abort(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<operation::Model>> {
        let now = now_ms();
        let txn = self.db.begin().await?;
        let aborted_pending = operation::Entity::update_many()
            .col_expr(
                operation::Column::State,
                Expr::value(OpState::Aborted.as_str()),
            )
            .col_expr(operation::Column::AbortRequested, Expr::value(true))
            .col_expr(
                operation::Column::ErrorType,
                Expr::value(Error::OperationAborted.error_type()),
            )
            .col_expr(
                operation::Column::ErrorMessage,
                Expr::value(Error::OperationAborted.message()),
            )
            .col_expr(operation::Column::FinishedAt, Expr::value(now))
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::TenantId.eq(tenant))
            .filter(operation::Column::State.eq(OpState::Pending.as_str()))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        operation::Entity::update_many()
            .col_expr(operation::Column::AbortRequested, Expr::value(true))
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::TenantId.eq(tenant))
            .filter(operation::Column::State.eq(OpState::Running.as_str()))
            .exec(&txn)
            .await?;
        let op = op_get(&txn, tenant, id).await?;
        if let (true, Some(o)) = (aborted_pending, &op) {
            // Finished without a worker: its outbox event goes with it.
            let detail = serde_json::json!({"state": OpState::Aborted.as_str(), "error": Error::OperationAborted.message()});
            super::resources::event_insert(
                &txn,
                &o.tenant_id,
                Some(&o.id),
                &o.kind,
                &o.target_id,
                &detail,
            )
            .await?;
        }
        txn.commit().await?;
        Ok(op)
    }

    /// Whether an abort was asked for.
    pub async fn op_abort_requested(&self, id: &str) -> Result<bool> {
        let v: Option<bool> = operation::Entity::find_by_id(id.to_string())
            .select_only()
            .column(operation::Column::AbortRequested)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(v.unwrap_or(false))
    }

    pub async fn op_log(&self, id: &str, line: &str) -> Result<()> {
        log_insert(&self.db, id, line).await
    }

    /// The last `n` log lines of an operation, oldest first.
    pub async fn op_log_tail(&self, id: &str, n: u64) -> Result<Vec<String>> {
        let mut lines: Vec<String> = operation_log::Entity::find()
            .select_only()
            .column(operation_log::Column::Line)
            .filter(operation_log::Column::OperationId.eq(id))
            .order_by_desc(operation_log::Column::Id)
            .limit(n)
            .into_tuple()
            .all(&self.db)
            .await?;
        lines.reverse();
        Ok(lines)
    }

    /// The last `n` log lines of each of `ids`, oldest first, in one query
    /// (a window over the operations' lines), for a page of futures.
    pub async fn op_log_tails(
        &self,
        ids: &[String],
        n: u64,
    ) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut out: std::collections::HashMap<String, Vec<String>> =
            ids.iter().map(|i| (i.clone(), Vec::new())).collect();
        if ids.is_empty() {
            return Ok(out);
        }
        let (backend, marks): (sea_orm::DatabaseBackend, Vec<String>) = match self.backend() {
            Backend::Postgres => (
                sea_orm::DatabaseBackend::Postgres,
                (1..=ids.len()).map(|i| format!("${i}")).collect(),
            ),
            Backend::Sqlite => (
                sea_orm::DatabaseBackend::Sqlite,
                vec!["?".into(); ids.len()],
            ),
        };
        let limit_mark = match self.backend() {
            Backend::Postgres => format!("${}", ids.len() + 1),
            Backend::Sqlite => "?".into(),
        };
        let sql = format!(
            "SELECT operation_id, line FROM (\
               SELECT operation_id, line, id, \
                      ROW_NUMBER() OVER (PARTITION BY operation_id ORDER BY id DESC) AS rn \
               FROM operation_logs WHERE operation_id IN ({})\
             ) AS tails WHERE rn <= {limit_mark} ORDER BY operation_id, id",
            marks.join(", ")
        );
        let mut values: Vec<sea_orm::Value> = ids.iter().map(|i| i.clone().into()).collect();
        values.push((n as i64).into());
        let rows = self
            .db
            .query_all(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        for r in rows {
            let id: String = r.try_get("", "operation_id")?;
            let line: String = r.try_get("", "line")?;
            out.entry(id).or_default().push(line);
        }
        Ok(out)
    }
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub enum OpOutcome {
    Done(serde_json::Value),
    Failed(Error),
    Aborted,
}

async fn lease_update<C: ConnectionTrait>(
    c: &C,
    id: &str,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> Result<Option<ClaimedOp>> {
    let res = operation::Entity::update_many()
        .col_expr(
            operation::Column::State,
            Expr::value(OpState::Running.as_str()),
        )
        .col_expr(operation::Column::LeaseOwner, Expr::value(owner))
        .col_expr(
            operation::Column::LeaseExpiresAt,
            Expr::value(now + lease_ms),
        )
        .col_expr(
            operation::Column::Attempts,
            Expr::col(operation::Column::Attempts).add(1),
        )
        .col_expr(
            operation::Column::StartedAt,
            Expr::col(operation::Column::StartedAt).if_null(now),
        )
        .col_expr(operation::Column::UpdatedAt, Expr::value(now))
        .filter(operation::Column::Id.eq(id))
        .filter(claimable(now))
        .exec(c)
        .await?;
    if res.rows_affected != 1 {
        return Ok(None);
    }
    Ok(operation::Entity::find_by_id(id.to_string()).one(c).await?)
}

/// What one pass of [`Store::history_prune`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub operations: u64,
    pub events: u64,
    pub tokens: u64,
}

/// How many operations one pass of the pruning deletes at most, so a long
/// backlog goes in short transactions.
const PRUNE_BATCH: u64 = 1000;

impl Store {
    /// Deletes what is older than `before_ms`: finished operations (their
    /// log lines go with them), outbox events, and enrollment tokens that
    /// expired. Unfinished operations are never touched.
    pub async fn history_prune(&self, before_ms: i64) -> Result<Pruned> {
        use super::entities::{enrollment_token, event};
        let old: Vec<String> = operation::Entity::find()
            .select_only()
            .column(operation::Column::Id)
            .filter(operation::Column::State.is_in([
                OpState::Done.as_str(),
                OpState::Failed.as_str(),
                OpState::Aborted.as_str(),
            ]))
            .filter(operation::Column::FinishedAt.lt(before_ms))
            .limit(PRUNE_BATCH)
            .into_tuple::<String>()
            .all(&self.db)
            .await?;
        let operations = if old.is_empty() {
            0
        } else {
            self.transaction(move |tx| {
                Box::pin(async move {
                    operation_log::Entity::delete_many()
                        .filter(operation_log::Column::OperationId.is_in(old.clone()))
                        .exec(tx)
                        .await?;
                    Ok(operation::Entity::delete_many()
                        .filter(operation::Column::Id.is_in(old))
                        .exec(tx)
                        .await?
                        .rows_affected)
                })
            })
            .await?
        };
        let events = event::Entity::delete_many()
            .filter(event::Column::At.lt(before_ms))
            .exec(&self.db)
            .await?
            .rows_affected;
        let tokens = enrollment_token::Entity::delete_many()
            .filter(enrollment_token::Column::ExpiresAt.lt(before_ms))
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(Pruned {
            operations,
            events,
            tokens,
        })
    }

    /// Gives a lease back without finishing the operation (graceful
    /// shutdown), so the next worker can resume it at once.
    pub async fn op_release(&self, id: &str, owner: &str) -> Result<()> {
        operation::Entity::update_many()
            .col_expr(operation::Column::LeaseExpiresAt, Expr::value(0i64))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::LeaseOwner.eq(owner))
            .filter(operation::Column::State.eq(OpState::Running.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

async fn log_insert<C: ConnectionTrait>(c: &C, id: &str, line: &str) -> Result<()> {
    operation_log::Entity::insert(operation_log::ActiveModel {
        id: sea_orm::NotSet,
        operation_id: Set(id.to_string()),
        at: Set(now_ms()),
        line: Set(line.to_string()),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}
