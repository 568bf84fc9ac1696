//! Moving rollouts on: one pass over every rollout that has not ended, run
//! by the holder of the `rollouts` lease whenever an operation finishes, a
//! rollout is created or moved, or a tick passes.
//!
//! Everything a pass decides from is in the store, so a pass after a crash
//! goes on where the last one stopped. A target's operation id is chosen
//! and recorded (`starting`) before the operation is started with that id,
//! so a target is never started twice: a pass that finds a target
//! `starting` looks for its operation before it starts it. In-flight
//! targets are counted from the rows, so `maxInFlight` holds across
//! restarts; the lease is renewed before each start, so a replica that
//! lost it starts nothing more.

use super::super::App;
use super::super::lifecycle::Action;
use crate::error::{Error, Result};
use crate::model::new_id;
use crate::model::operation::OpState;
use crate::model::rollout::{RolloutAction, RolloutSpec, RolloutState, TargetState};
use crate::opctx::OpCtx;
use crate::store::entities::{rollout, rollout_target};
use crate::store::lifecycle as lq;
use crate::store::operations::op_get;
use std::time::Duration;

/// The lease that makes one replica the rollouts' driver.
pub const LEASE: &str = "rollouts";

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RolloutPass {
    /// Rollouts looked at.
    pub rollouts: u32,
    /// Targets whose operation was started.
    pub started: u32,
    /// Targets that finished (done or failed).
    pub finished: u32,
    /// Rollouts that ended.
    pub ended: u32,
}

impl App {
    /// Wakes the rollout reconciler now.
    pub(super) fn rollouts_kick(&self) {
        self.rollout_wake.notify_one();
    }

    /// Waits until a rollout is created or moved, an operation finishes, or
    /// `tick` passes.
    pub async fn rollouts_wait(&self, tick: Duration) {
        let mut finished = self.engine.finished_watch();
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = self.rollout_wake.notified() => {}
            _ = finished.changed() => {}
        }
    }

    /// One pass over every active rollout, as `owner` of the rollouts
    /// lease (held for `lease_ms` from each renewal); nothing when another
    /// replica holds it.
    pub async fn reconcile_rollouts(&self, owner: &str, lease_ms: i64) -> Result<RolloutPass> {
        let mut pass = RolloutPass::default();
        if !self.store.lease_acquire(LEASE, owner, lease_ms).await? {
            return Ok(pass);
        }
        for r in self.store.rollouts_active().await? {
            pass.rollouts += 1;
            let id = r.id.clone();
            if let Err(e) = self.drive(&r, owner, lease_ms, &mut pass).await {
                tracing::warn!(rollout = %id, error = %e, "rollout pass failed");
            }
        }
        Ok(pass)
    }

    async fn drive(
        &self,
        r: &rollout::Model,
        owner: &str,
        lease_ms: i64,
        pass: &mut RolloutPass,
    ) -> Result<()> {
        let spec: RolloutSpec = serde_json::from_str(&r.spec).map_err(|e| {
            Error::internal(format!("rollout {} has a spec FM can't read: {e}", r.id))
        })?;
        let mut targets = self.store.rollout_targets(&r.id).await?;
        // Targets in flight first: their operations and health watches.
        for t in targets.iter_mut() {
            let before = TargetState::parse(&t.state);
            if before.in_flight() {
                self.advance(r, &spec, t).await?;
                if matches!(
                    TargetState::parse(&t.state),
                    TargetState::Done | TargetState::Failed
                ) {
                    pass.finished += 1;
                }
            }
        }
        let state = RolloutState::parse(&r.state);
        let states: Vec<TargetState> = targets
            .iter()
            .map(|t| TargetState::parse(&t.state))
            .collect();
        let in_flight = states.iter().filter(|s| s.in_flight()).count();
        let failed = states.iter().filter(|s| **s == TargetState::Failed).count();
        let canary_failed = targets
            .iter()
            .any(|t| t.canary && TargetState::parse(&t.state) == TargetState::Failed);
        let budget = spec.max_errors.of(targets.len());
        let state = if matches!(state, RolloutState::Running | RolloutState::Paused)
            && (canary_failed || failed > budget)
        {
            let reason = if canary_failed {
                "a canary failed".to_string()
            } else {
                format!("{failed} targets failed, more than maxErrors allows ({budget})")
            };
            let moved = self
                .store
                .rollout_transition(
                    &r.id,
                    &[RolloutState::Running, RolloutState::Paused],
                    RolloutState::Failing,
                    Some(&reason),
                )
                .await?;
            if moved {
                tracing::warn!(rollout = %r.id, %reason, "rollout stops");
                RolloutState::Failing
            } else {
                // Paused, resumed or cancelled meanwhile: the next pass sees it.
                return Ok(());
            }
        } else {
            state
        };
        match state {
            RolloutState::Cancelling | RolloutState::Failing => {
                self.store.rollout_skip_pending(&r.id).await?;
                if in_flight == 0 {
                    let end = if state == RolloutState::Cancelling {
                        RolloutState::Cancelled
                    } else {
                        RolloutState::Failed
                    };
                    if self
                        .store
                        .rollout_transition(&r.id, &[state], end, None)
                        .await?
                    {
                        pass.ended += 1;
                    }
                }
            }
            RolloutState::Running => {
                let pending: Vec<usize> = (0..targets.len())
                    .filter(|n| states[*n] == TargetState::Pending)
                    .collect();
                if pending.is_empty() && in_flight == 0 {
                    let reason = (failed > 0)
                        .then(|| format!("{failed} targets failed, within maxErrors ({budget})"));
                    if self
                        .store
                        .rollout_transition(
                            &r.id,
                            &[RolloutState::Running],
                            RolloutState::Done,
                            reason.as_deref(),
                        )
                        .await?
                    {
                        pass.ended += 1;
                    }
                    return Ok(());
                }
                // Canaries go first, on their own: nothing else starts until
                // every canary is done.
                let canaries_left = targets
                    .iter()
                    .any(|t| t.canary && TargetState::parse(&t.state) != TargetState::Done);
                let limit = spec.in_flight_of(targets.len());
                let mut room = limit.saturating_sub(in_flight);
                for n in pending {
                    if room == 0 {
                        break;
                    }
                    let t = &mut targets[n];
                    if canaries_left && !t.canary {
                        break;
                    }
                    // A replica that lost the lease starts nothing more.
                    if !self.store.lease_acquire(LEASE, owner, lease_ms).await? {
                        return Ok(());
                    }
                    self.start_target(r, &spec, t).await?;
                    pass.started += 1;
                    room -= 1;
                }
            }
            RolloutState::Paused
            | RolloutState::Done
            | RolloutState::Failed
            | RolloutState::Cancelled => {}
        }
        Ok(())
    }

    /// Records the target as starting with a new operation id, then starts
    /// its operation with that id.
    async fn start_target(
        &self,
        r: &rollout::Model,
        spec: &RolloutSpec,
        t: &mut rollout_target::Model,
    ) -> Result<()> {
        t.state = TargetState::Starting.as_str().to_string();
        t.operation_id = Some(new_id("op"));
        t.started_at = Some(self.store.clock_ms().await?);
        self.store.rollout_target_save(t.clone()).await?;
        self.advance(r, spec, t).await
    }

    /// Moves one in-flight target on, as far as it can go now.
    async fn advance(
        &self,
        r: &rollout::Model,
        spec: &RolloutSpec,
        t: &mut rollout_target::Model,
    ) -> Result<()> {
        let op_id = t
            .operation_id
            .clone()
            .ok_or_else(|| Error::internal(format!("target {} has no operation", t.seq)))?;
        let now = self.store.clock_ms().await?;
        match TargetState::parse(&t.state) {
            TargetState::Starting => {
                if op_get(self.store.conn(), &r.tenant_id, &op_id)
                    .await?
                    .is_none()
                {
                    let started = self.start_action(r, spec, &t.instance_id, &op_id).await;
                    // Another pass may have started it meanwhile (a replica
                    // that lost the lease mid-call): its operation counts.
                    if let Err(e) = started
                        && op_get(self.store.conn(), &r.tenant_id, &op_id)
                            .await?
                            .is_none()
                    {
                        // Refused before any operation was made.
                        t.operation_id = None;
                        return self.finish(t, Some(e.message()), now).await;
                    }
                }
                t.state = TargetState::Running.as_str().to_string();
                self.store.rollout_target_save(t.clone()).await
            }
            TargetState::Running => {
                let Some(op) = op_get(self.store.conn(), &r.tenant_id, &op_id).await? else {
                    return self
                        .finish(t, Some(format!("its operation {op_id} is gone")), now)
                        .await;
                };
                match OpState::parse(&op.state) {
                    Some(OpState::Done) if spec.health_seconds > 0 => {
                        t.state = TargetState::Watching.as_str().to_string();
                        t.watch_since = Some(now);
                        self.store.rollout_target_save(t.clone()).await?;
                        Box::pin(self.advance(r, spec, t)).await
                    }
                    Some(OpState::Done) => self.finish(t, None, now).await,
                    Some(OpState::Failed) | Some(OpState::Aborted) | None => {
                        let why = op
                            .error_message
                            .unwrap_or_else(|| format!("its operation ended {}", op.state));
                        self.finish(t, Some(format!("operation {op_id}: {why}")), now)
                            .await
                    }
                    Some(_) => Ok(()),
                }
            }
            TargetState::Watching => {
                let rt = lq::runtime_get(self.store.conn(), &t.instance_id).await?;
                let running = spec.action.leaves_node_running();
                if self.is_healthy(rt.as_ref(), running, now) {
                    let since = *t.healthy_since.get_or_insert(now);
                    if now - since >= spec.health_seconds as i64 * 1000 {
                        return self.finish(t, None, now).await;
                    }
                    if since == now {
                        self.store.rollout_target_save(t.clone()).await?;
                    }
                    Ok(())
                } else {
                    let was_healthy = t.healthy_since.take().is_some();
                    let watched = now - t.watch_since.unwrap_or(now);
                    if watched > spec.health_timeout_seconds as i64 * 1000 {
                        let what = if running {
                            "healthy (agent connected, node running)"
                        } else {
                            "stopped"
                        };
                        return self
                            .finish(
                                t,
                                Some(format!(
                                    "the node was not {what} for {}s without a break within {}s of its operation",
                                    spec.health_seconds, spec.health_timeout_seconds
                                )),
                                now,
                            )
                            .await;
                    }
                    if was_healthy {
                        self.store.rollout_target_save(t.clone()).await?;
                    }
                    Ok(())
                }
            }
            TargetState::Pending
            | TargetState::Done
            | TargetState::Failed
            | TargetState::Skipped => Ok(()),
        }
    }

    async fn finish(
        &self,
        t: &mut rollout_target::Model,
        error: Option<String>,
        now: i64,
    ) -> Result<()> {
        t.state = match error {
            None => TargetState::Done,
            Some(_) => TargetState::Failed,
        }
        .as_str()
        .to_string();
        t.error = error;
        t.finished_at = Some(now);
        self.store.rollout_target_save(t.clone()).await
    }

    /// Starts the rollout's action on one instance, through the same `App`
    /// call a user's request makes, as operation `op_id`.
    async fn start_action(
        &self,
        r: &rollout::Model,
        spec: &RolloutSpec,
        instance: &str,
        op_id: &str,
    ) -> Result<()> {
        let ctx = OpCtx::system("rollout")
            .waiting(Duration::ZERO)
            .with_operation_id(op_id.to_string());
        let tenant = r.tenant_id.as_str();
        let reason = format!("rollout {}", r.id);
        match &spec.action {
            RolloutAction::Reprovision { allow_downgrade } => {
                self.instance_reprovision(&ctx, tenant, instance, *allow_downgrade, None)
                    .await?;
            }
            RolloutAction::Upgrade {
                image_id,
                allow_downgrade,
            } => {
                self.instance_upgrade(&ctx, tenant, instance, image_id, *allow_downgrade)
                    .await?;
            }
            RolloutAction::RestartNode {} => {
                self.instance_action(&ctx, tenant, instance, Action::RestartNode)
                    .await?;
            }
            RolloutAction::ReplaySetupActions {} => {
                self.instance_action(&ctx, tenant, instance, Action::ReplaySetupActions)
                    .await?;
            }
            RolloutAction::Snapshot {} => {
                self.snapshot_start(&ctx, tenant, instance, Some(&reason))
                    .await?;
            }
            RolloutAction::Backup {} => {
                self.backup_take(&ctx, tenant, instance, Some(&reason))
                    .await?;
            }
            RolloutAction::Stop {} => {
                self.instance_action(&ctx, tenant, instance, Action::Stop)
                    .await?;
            }
            RolloutAction::Start {} => {
                self.instance_action(&ctx, tenant, instance, Action::Start)
                    .await?;
            }
        }
        Ok(())
    }
}
