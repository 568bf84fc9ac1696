//! The automated-snapshot schedule: a reconciler that, for every instance
//! with `enableAutomatedSnapshot`, takes a snapshot when the last automated
//! one is older than `automatedSnapshotPeriod` hours and deletes the oldest
//! automated ones past `automatedSnapshotRetention` (0 keeps all).
//!
//! It reads the settings on every pass, so edits apply without a restart,
//! prunes before it snapshots (so the retention holds even when snapshots
//! take longer than the period), and it takes at most one snapshot per
//! instance per pass: after FM was
//! down for several periods, the missed ones are caught up once, not N
//! times. It acts through operations, one at a time per instance.

use super::{App, from_doc};
use crate::error::{Error, Result};
use crate::model::instance::Instance;
use crate::model::{new_id, now_ms};
use crate::opctx::OpCtx;
use crate::ops::sagas::{snapshot as snap, snapshot_delete};
use crate::store::lifecycle as lq;
use crate::store::operations::op_active_for_target;
use crate::store::resources as q;
use std::time::Duration;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleReport {
    pub snapshots_started: u32,
    pub deletions_started: u32,
    /// Instances skipped for an error (logged).
    pub failed: u32,
}

impl App {
    /// One pass of the schedule. `hour` is how long an hour of
    /// `automatedSnapshotPeriod` lasts (an hour, except in tests).
    pub async fn reconcile_automated_snapshots(&self, hour: Duration) -> Result<ScheduleReport> {
        let mut report = ScheduleReport::default();
        let runtimes = lq::runtime_list_with_volume(self.store.conn()).await?;
        for rt in runtimes {
            let instance = rt.instance_id.clone();
            let pass: Result<()> = async {
                let Some(row) =
                    q::instance_get(self.store.conn(), &rt.tenant_id, &rt.instance_id).await?
                else {
                    return Ok(());
                };
                let inst: Instance = from_doc(&row.doc)?;
                if !inst.enable_automated_snapshot
                    || op_active_for_target(self.store.conn(), &rt.instance_id)
                        .await?
                        .is_some()
                {
                    return Ok(());
                }
                let period = hour.as_millis() as i64
                    * i64::from(inst.automated_snapshot_period.unwrap_or(24).max(1));
                let mut autos: Vec<_> = lq::snapshot_list(self.store.conn(), &rt.instance_id)
                    .await?
                    .into_iter()
                    .filter(|s| s.automated)
                    .collect();
                autos.sort_by_key(|s| s.created_at);
                let due = autos
                    .last()
                    .is_none_or(|s| now_ms() - s.created_at >= period);
                // Pruning first: with snapshots slower than the period, a
                // snapshot would otherwise always be due and the retention never
                // reached.
                let prune = inst.automated_snapshot_retention > 0
                    && autos.len() > inst.automated_snapshot_retention as usize;
                let started = if prune {
                    let params = snapshot_delete::Params {
                        snapshot_id: autos[0].id.clone(),
                    };
                    self.engine
                        .submit(
                            &OpCtx::system("snapshot-schedule"),
                            &rt.tenant_id,
                            &rt.instance_id,
                            &params,
                        )
                        .await
                } else if due {
                    let params = snap::Params {
                        snapshot_id: new_id("snap"),
                        reason: Some("automated".into()),
                        automated: true,
                    };
                    self.engine
                        .submit(
                            &OpCtx::system("snapshot-schedule"),
                            &rt.tenant_id,
                            &rt.instance_id,
                            &params,
                        )
                        .await
                } else {
                    return Ok(());
                };
                match started {
                    Ok(_) if prune => report.deletions_started += 1,
                    Ok(_) => report.snapshots_started += 1,
                    // A user's operation got there first; next pass.
                    Err(Error::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                Ok(())
            }
            .await;
            // One instance's trouble (a corrupt document, a failed read)
            // is logged and counted; the other instances' schedules go on.
            if let Err(e) = pass {
                tracing::warn!(instance = %instance, error = %e, "automated snapshots: this instance was skipped");
                report.failed += 1;
            }
        }
        if report != ScheduleReport::default() {
            self.engine.kick();
        }
        Ok(report)
    }
}
