//! Rollouts and their targets. A rollout and all its targets are written
//! in one transaction; after that, only the reconciler that holds the
//! rollout lease writes targets, and state changes asked by users (pause,
//! resume, cancel) are conditional updates on the state they start from.

use super::Store;
use super::entities::{rollout, rollout_target};
use super::page::{Cursor, Order, Page, Paged, finish, keyset};
use crate::error::Result;
use crate::model::rollout::{RolloutState, TargetState};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    TransactionTrait,
};

impl Store {
    /// Stores a new rollout with its targets.
    pub async fn rollout_insert(
        &self,
        r: rollout::Model,
        targets: Vec<rollout_target::Model>,
    ) -> Result<()> {
        let txn = self.db.begin().await?;
        r.into_active_model().insert(&txn).await?;
        // Chunks keep each statement under the backends' parameter limits.
        for chunk in targets.chunks(500) {
            rollout_target::Entity::insert_many(
                chunk
                    .iter()
                    .cloned()
                    .map(IntoActiveModel::into_active_model),
            )
            .exec(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    pub async fn rollout_get(&self, tenant: &str, id: &str) -> Result<Option<rollout::Model>> {
        Ok(rollout::Entity::find_by_id(id.to_string())
            .filter(rollout::Column::TenantId.eq(tenant))
            .one(&self.db)
            .await?)
    }

    /// The targets of a rollout, in the order they go.
    pub async fn rollout_targets(&self, id: &str) -> Result<Vec<rollout_target::Model>> {
        Ok(rollout_target::Entity::find()
            .filter(rollout_target::Column::RolloutId.eq(id))
            .order_by_asc(rollout_target::Column::Seq)
            .all(&self.db)
            .await?)
    }

    /// The targets' states of several rollouts (a list's counts).
    pub async fn rollout_target_states(&self, ids: &[String]) -> Result<Vec<(String, String)>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        use sea_orm::QuerySelect;
        Ok(rollout_target::Entity::find()
            .select_only()
            .column(rollout_target::Column::RolloutId)
            .column(rollout_target::Column::State)
            .filter(rollout_target::Column::RolloutId.is_in(ids.iter().cloned()))
            .into_tuple::<(String, String)>()
            .all(&self.db)
            .await?)
    }

    /// A page of a tenant's rollouts, newest first.
    pub async fn rollout_page(&self, tenant: &str, page: &Page) -> Result<Paged<rollout::Model>> {
        let query = rollout::Entity::find().filter(rollout::Column::TenantId.eq(tenant));
        let rows = keyset(
            query,
            rollout::Column::CreatedAt,
            rollout::Column::Id,
            Order::Desc,
            page,
        )
        .all(&self.db)
        .await?;
        Ok(finish(rows, page, |m| Cursor {
            key: m.created_at,
            id: m.id.clone(),
        }))
    }

    /// Every rollout that has not ended, of every tenant, oldest first.
    pub async fn rollouts_active(&self) -> Result<Vec<rollout::Model>> {
        Ok(rollout::Entity::find()
            .filter(rollout::Column::State.is_in(RolloutState::ACTIVE.map(RolloutState::as_str)))
            .order_by_asc(rollout::Column::CreatedAt)
            .order_by_asc(rollout::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Moves a rollout from one of the states `from` to `to` (with the
    /// reason, when one is given); false when it was in none of them.
    pub async fn rollout_transition(
        &self,
        id: &str,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
    ) -> Result<bool> {
        let now = self.clock_ms().await?;
        let mut update = rollout::Entity::update_many()
            .col_expr(rollout::Column::State, Expr::value(to.as_str()))
            .col_expr(rollout::Column::UpdatedAt, Expr::value(now))
            .filter(rollout::Column::Id.eq(id))
            .filter(rollout::Column::State.is_in(from.iter().map(|s| s.as_str())));
        if let Some(reason) = reason {
            update = update.col_expr(rollout::Column::Reason, Expr::value(reason));
        }
        if to.is_final() {
            update = update.col_expr(rollout::Column::FinishedAt, Expr::value(now));
        }
        Ok(update.exec(&self.db).await?.rows_affected == 1)
    }

    /// Writes a target's row as given.
    pub async fn rollout_target_save(&self, t: rollout_target::Model) -> Result<()> {
        // Every column is written.
        t.into_active_model().reset_all().update(&self.db).await?;
        Ok(())
    }

    /// Marks every pending target of a rollout skipped; returns how many.
    pub async fn rollout_skip_pending(&self, id: &str) -> Result<u64> {
        let now = self.clock_ms().await?;
        Ok(rollout_target::Entity::update_many()
            .col_expr(
                rollout_target::Column::State,
                Expr::value(TargetState::Skipped.as_str()),
            )
            .col_expr(rollout_target::Column::FinishedAt, Expr::value(now))
            .filter(rollout_target::Column::RolloutId.eq(id))
            .filter(rollout_target::Column::State.eq(TargetState::Pending.as_str()))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
