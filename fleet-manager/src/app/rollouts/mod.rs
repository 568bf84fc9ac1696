//! Rollouts: creating one (its targets chosen once, by the selector, and
//! the meltdown guard checked before anything starts), reading them, and
//! pausing, resuming or cancelling one. `drive.rs` moves them on.

mod drive;

pub use drive::RolloutPass;

use super::{App, from_doc};
use crate::error::{Error, Result};
use crate::model::instance::Instance;
use crate::model::rollout::{
    MAX_TARGETS, Rollout, RolloutAction, RolloutSpec, RolloutState, TargetState,
};
use crate::model::state::{NodeState, RuntimeState};
use crate::model::{check_id, new_id};
use crate::opctx::OpCtx;
use crate::store::entities::{instance_runtime, rollout, rollout_target};
use crate::store::lifecycle as lq;
use crate::store::page::{Page, Paged};
use crate::store::resources as q;
use std::collections::HashMap;

impl App {
    /// Starts a rollout: its targets are the instances the selector takes
    /// now, in order (the listed ids first, then by creation); the first
    /// `canaries` of them are its canaries. When more of them than
    /// `meltdownPercent` are unhealthy, nothing starts: the rollout is
    /// recorded as failed with every target skipped.
    pub async fn rollout_create(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        spec: RolloutSpec,
    ) -> Result<Rollout> {
        self.tenant(tenant).await?;
        spec.validate()?;
        match &spec.action {
            RolloutAction::Upgrade { image_id, .. } => {
                let image = q::image_get(self.store.conn(), image_id)
                    .await?
                    .ok_or_else(|| {
                        Error::invalid(format!("action.imageId: image '{image_id}' does not exist"))
                    })?;
                if image.kit_file.is_none() {
                    return Err(Error::conflict(format!(
                        "image '{image_id}' has no node kit: it can't be provisioned"
                    )));
                }
            }
            RolloutAction::Backup {} => self.backups_configured()?,
            _ => {}
        }
        let selected = self.select(tenant, &spec).await?;
        let now = self.store.clock_ms().await?;
        let id = new_id("ro");
        let canaries = spec.canaries as usize;
        let runtimes = self.runtimes_by_id(&selected).await?;
        let unhealthy = if spec.action.needs_healthy_targets() {
            selected
                .iter()
                .filter(|i| !self.is_healthy(runtimes.get(*i), true, now))
                .count()
        } else {
            0
        };
        let tripped = unhealthy * 100 > selected.len() * spec.meltdown_percent as usize;
        let (state, reason, target_state) = if tripped {
            (
                RolloutState::Failed,
                Some(format!(
                    "the meltdown guard stopped it before it began: {unhealthy} of {} selected instances are not healthy (more than {}%)",
                    selected.len(),
                    spec.meltdown_percent
                )),
                TargetState::Skipped,
            )
        } else {
            (RolloutState::Running, None, TargetState::Pending)
        };
        let targets: Vec<rollout_target::Model> = selected
            .iter()
            .enumerate()
            .map(|(n, instance)| rollout_target::Model {
                rollout_id: id.clone(),
                seq: n as i32,
                instance_id: instance.clone(),
                canary: n < canaries,
                state: target_state.as_str().to_string(),
                operation_id: None,
                error: None,
                started_at: None,
                watch_since: None,
                healthy_since: None,
                finished_at: tripped.then_some(now),
            })
            .collect();
        let row = rollout::Model {
            id: id.clone(),
            tenant_id: tenant.to_string(),
            label: spec.label.clone(),
            spec: serde_json::to_string(&spec).map_err(Error::internal)?,
            state: state.as_str().to_string(),
            reason,
            initiated_by: Some(ctx.actor_name()),
            created_at: now,
            updated_at: now,
            finished_at: tripped.then_some(now),
        };
        self.store
            .rollout_insert(row.clone(), targets.clone())
            .await?;
        self.rollouts_kick();
        Rollout::from_rows(&row, &targets)
    }

    /// A rollout with every target.
    pub async fn rollout_get(&self, tenant: &str, id: &str) -> Result<Rollout> {
        let row = self.rollout_row(tenant, id).await?;
        let targets = self.store.rollout_targets(id).await?;
        Rollout::from_rows(&row, &targets)
    }

    /// A page of the tenant's rollouts, newest first, with their counts.
    pub async fn rollout_list(&self, tenant: &str, page: &Page) -> Result<Paged<Rollout>> {
        self.tenant(tenant).await?;
        let rows = self.store.rollout_page(tenant, page).await?;
        let ids: Vec<String> = rows.items.iter().map(|r| r.id.clone()).collect();
        let mut by_rollout: HashMap<String, Vec<TargetState>> = HashMap::new();
        for (rid, state) in self.store.rollout_target_states(&ids).await? {
            by_rollout
                .entry(rid)
                .or_default()
                .push(TargetState::parse(&state));
        }
        rows.try_map(|r| {
            let states = by_rollout.remove(&r.id).unwrap_or_default();
            Rollout::summary(&r, &states)
        })
    }

    /// Stops starting targets; those in flight go on.
    pub async fn rollout_pause(&self, ctx: &OpCtx, tenant: &str, id: &str) -> Result<Rollout> {
        self.rollout_move(
            ctx,
            tenant,
            id,
            &[RolloutState::Running],
            RolloutState::Paused,
        )
        .await
    }

    /// Starts targets again after a pause.
    pub async fn rollout_resume(&self, ctx: &OpCtx, tenant: &str, id: &str) -> Result<Rollout> {
        self.rollout_move(
            ctx,
            tenant,
            id,
            &[RolloutState::Paused],
            RolloutState::Running,
        )
        .await
    }

    /// Starts nothing more: the targets not started are skipped, and the
    /// rollout ends as cancelled once those in flight have finished.
    pub async fn rollout_cancel(&self, ctx: &OpCtx, tenant: &str, id: &str) -> Result<Rollout> {
        self.rollout_move(
            ctx,
            tenant,
            id,
            &[RolloutState::Running, RolloutState::Paused],
            RolloutState::Cancelling,
        )
        .await
    }

    async fn rollout_move(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        from: &[RolloutState],
        to: RolloutState,
    ) -> Result<Rollout> {
        let row = self.rollout_row(tenant, id).await?;
        let reason =
            (to == RolloutState::Cancelling).then(|| format!("cancelled by {}", ctx.actor_name()));
        if !self
            .store
            .rollout_transition(id, from, to, reason.as_deref())
            .await?
        {
            let now = self.rollout_row(tenant, id).await.unwrap_or(row);
            let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
            return Err(Error::conflict(format!(
                "rollout '{id}' is {}; it can become {} only when {}",
                now.state,
                to.as_str(),
                allowed.join(" or ")
            )));
        }
        self.rollouts_kick();
        self.rollout_get(tenant, id).await
    }

    async fn rollout_row(&self, tenant: &str, id: &str) -> Result<rollout::Model> {
        check_id("rollout", id)?;
        match self.store.rollout_get(tenant, id).await? {
            Some(r) => Ok(r),
            None => Err(self.missing(tenant, "rollout", id).await),
        }
    }

    /// The ids of the instances the spec's selector takes, in the order
    /// they go.
    async fn select(&self, tenant: &str, spec: &RolloutSpec) -> Result<Vec<String>> {
        let s = &spec.selector;
        let rows = q::instance_list(self.store.conn(), tenant, &Page::ALL).await?;
        let mut by_id: HashMap<String, Instance> = HashMap::with_capacity(rows.items.len());
        let mut order = Vec::with_capacity(rows.items.len());
        for r in &rows.items {
            order.push(r.id.clone());
            by_id.insert(r.id.clone(), from_doc(&r.doc)?);
        }
        let matches = |i: &Instance| {
            s.matches(
                &i.instance_settings_template_id,
                &i.virtual_network_id,
                &i.image_id,
                i.dss_node_type,
                &i.fm_tags,
            )
        };
        let mut selected = Vec::new();
        if s.instance_ids.is_empty() {
            selected.extend(order.into_iter().filter(|id| matches(&by_id[id])));
        } else {
            let mut seen = std::collections::HashSet::new();
            for id in &s.instance_ids {
                let Some(i) = by_id.get(id) else {
                    return Err(Error::not_found("instance", id));
                };
                if seen.insert(id.clone()) && matches(i) {
                    selected.push(id.clone());
                }
            }
        }
        if selected.is_empty() {
            return Err(Error::conflict(
                "no instance matches the selector: nothing to roll out",
            ));
        }
        if selected.len() > MAX_TARGETS {
            return Err(Error::invalid(format!(
                "selector: it takes {} instances; a rollout takes at most {MAX_TARGETS}",
                selected.len()
            )));
        }
        Ok(selected)
    }

    async fn runtimes_by_id(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, instance_runtime::Model>> {
        Ok(lq::runtimes_of(self.store.conn(), ids)
            .await?
            .into_iter()
            .map(|r| (r.instance_id.clone(), r))
            .collect())
    }

    /// Whether an instance is as a rollout wants it: with `running`, its VM
    /// running, its agent heard from lately and its node running; without,
    /// stopped.
    fn is_healthy(&self, rt: Option<&instance_runtime::Model>, running: bool, now: i64) -> bool {
        let Some(rt) = rt else { return false };
        let state = RuntimeState::parse(&rt.state);
        if !running {
            return state == RuntimeState::Stopped;
        }
        let heard = rt
            .last_heartbeat_at
            .is_some_and(|t| now - t <= self.cfg.agent_timeout.as_millis() as i64);
        state == RuntimeState::Running
            && heard
            && rt.node_state.as_deref().map(NodeState::parse) == Some(NodeState::Running)
    }
}
