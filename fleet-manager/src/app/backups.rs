//! Agent backups (an extension beside the public API): list, take, delete,
//! restore onto the instance, clone into a new instance, verify; and the
//! backup schedule with its retention (keep the last N, the newest of each
//! of the last D days and of the last W weeks).

use super::{App, StartedFuture, from_doc};
use crate::error::{Error, Result};
use crate::model::backup::Backup;
use crate::model::image::version_cmp;
use crate::model::instance::Instance;
use crate::model::{check_id, check_label, check_len, new_id, now_ms};
use crate::opctx::OpCtx;
use crate::ops::sagas::common::{BackupRef, backup_location};
use crate::ops::sagas::{backup_delete, backup_restore, backup_take, backup_verify, provision};
use crate::store::entities::backup;
use crate::store::lifecycle as lq;
use crate::store::operations::op_active_for_target;
use crate::store::page::{Page, Paged};
use crate::store::resources as q;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// What a clone is given: the new instance's label (and description).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloneRequest {
    #[schema(schema_with = crate::model::schema::label)]
    pub label: String,
    #[serde(default)]
    #[schema(schema_with = crate::model::schema::nullable_description)]
    pub description: Option<String>,
    /// The new instance's image (the source's by default); must not be
    /// older than the backup's node version.
    #[serde(default)]
    #[schema(schema_with = crate::model::schema::nullable_id)]
    pub image_id: Option<String>,
}

/// What one pass of the backup schedule did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackupScheduleReport {
    pub backups_started: u32,
    pub deletions_started: u32,
    /// Instances skipped for an error (logged).
    pub failed: u32,
}

impl App {
    async fn backup_row(&self, tenant: &str, id: &str, backup: &str) -> Result<backup::Model> {
        self.instance_get(tenant, id).await?;
        check_id("backup", backup)?;
        lq::backup_get(self.store.conn(), id, backup)
            .await?
            .ok_or_else(|| Error::not_found("backup", backup))
    }

    pub(super) fn backups_configured(&self) -> Result<()> {
        backup_location(&self.engine.services().lc, None).map(|_| ())
    }

    pub async fn backup_list(&self, tenant: &str, id: &str, page: &Page) -> Result<Paged<Backup>> {
        self.instance_get(tenant, id).await?;
        Ok(lq::backup_page(self.store.conn(), id, page)
            .await?
            .map(|b| Backup::from_row(&b)))
    }

    pub async fn backup_get(&self, tenant: &str, id: &str, backup: &str) -> Result<Backup> {
        Ok(Backup::from_row(
            &self.backup_row(tenant, id, backup).await?,
        ))
    }

    /// Starts a backup; the future's result is the backup.
    pub async fn backup_take(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<StartedFuture> {
        self.backups_configured()?;
        self.provisioned_instance(tenant, id).await?;
        if let Some(r) = reason {
            check_len("reason", r, 1024)?;
        }
        let params = backup_take::Params {
            backup_id: new_id("bk"),
            reason: reason.map(str::to_string),
            automated: false,
        };
        self.start_operation(ctx, tenant, id, params).await
    }

    pub async fn backup_delete(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        backup: &str,
    ) -> Result<StartedFuture> {
        self.backup_row(tenant, id, backup).await?;
        let params = backup_delete::Params {
            backup_id: backup.to_string(),
        };
        self.start_operation(ctx, tenant, id, params).await
    }

    /// Refuses, before anything starts, a backup newer than `image_id`.
    async fn check_version(&self, b: &backup::Model, image_id: &str) -> Result<()> {
        let image = q::image_get(self.store.conn(), image_id)
            .await?
            .ok_or_else(|| Error::invalid(format!("imageId: image '{image_id}' does not exist")))?;
        if version_cmp(&b.node_version, &image.node_version).is_gt() {
            return Err(Error::conflict(format!(
                "backup {} was taken on node version {}, newer than image {} ({}): restoring it would downgrade the node. Use an image of version {} or later",
                b.id, b.node_version, image.id, image.node_version, b.node_version
            )));
        }
        Ok(())
    }

    /// Replaces the instance's data with the backup's (the node is stopped
    /// meanwhile, upgraded if the backup is older, started again).
    pub async fn backup_restore(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        backup: &str,
    ) -> Result<StartedFuture> {
        self.backups_configured()?;
        let b = self.backup_row(tenant, id, backup).await?;
        let inst = self.provisioned_instance(tenant, id).await?;
        self.check_version(&b, &inst.image_id).await?;
        let params = backup_restore::Params {
            restore_backup: BackupRef {
                instance_id: id.to_string(),
                backup_id: backup.to_string(),
            },
        };
        self.start_operation(ctx, tenant, id, params).await
    }

    /// Restores the backup into a scratch dir on the instance and compares
    /// it with its manifest.
    pub async fn backup_verify(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        backup: &str,
    ) -> Result<StartedFuture> {
        self.backups_configured()?;
        self.backup_row(tenant, id, backup).await?;
        self.provisioned_instance(tenant, id).await?;
        let params = backup_verify::Params {
            backup_id: backup.to_string(),
        };
        self.start_operation(ctx, tenant, id, params).await
    }

    /// A new instance with the source's settings, provisioned with the
    /// backup restored into its data dir before its node is installed.
    pub async fn backup_clone(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        backup: &str,
        req: CloneRequest,
    ) -> Result<StartedFuture> {
        check_label("label", &req.label)?;
        if let Some(d) = &req.description {
            check_len("description", d, 4096)?;
        }
        self.backups_configured()?;
        let b = self.backup_row(tenant, id, backup).await?;
        let src = self.instance_get(tenant, id).await?;
        let inst = Instance {
            id: None,
            label: req.label,
            description: req
                .description
                .unwrap_or_else(|| format!("clone of {} from backup {}", src.label, b.id)),
            image_id: req.image_id.unwrap_or(src.image_id.clone()),
            // The clone gets its own address and no DR snapshot of the source.
            aws_elastic_ip_allocation_id: None,
            aws_snapshot_id: None,
            ..src
        };
        inst.validate()?;
        self.check_version(&b, &inst.image_id).await?;
        let doc = self.instance_create(tenant, inst).await?;
        let created: Instance = from_doc(&doc)?;
        let new_id = created.id.unwrap_or_default();
        let params = provision::Params {
            allow_downgrade: false,
            snapshot_id: None,
            restore_backup: Some(BackupRef {
                instance_id: id.to_string(),
                backup_id: backup.to_string(),
            }),
        };
        self.start_operation(ctx, tenant, &new_id, params).await
    }

    async fn provisioned_instance(&self, tenant: &str, id: &str) -> Result<Instance> {
        let inst = self.instance_get(tenant, id).await?;
        match lq::runtime_get(self.store.conn(), id).await? {
            Some(rt) if rt.vm_id.is_some() => Ok(inst),
            _ => Err(Error::conflict(format!(
                "instance '{id}' is not provisioned; reprovision it first"
            ))),
        }
    }

    /// One pass of the backup schedule: for each provisioned instance whose
    /// `backupPolicy.enabled`, a backup when the last automated one is older
    /// than `periodHours` (once, however many periods were missed), else
    /// the deletion of one automated backup the retention no longer keeps.
    /// `hour` is an hour except on a test's compressed clock.
    pub async fn reconcile_automated_backups(
        &self,
        hour: Duration,
    ) -> Result<BackupScheduleReport> {
        let mut report = BackupScheduleReport::default();
        if self.engine.services().lc.backups.is_none() {
            return Ok(report);
        }
        let runtimes = lq::runtime_list_with_vm(self.store.conn()).await?;
        for rt in runtimes {
            let instance = rt.instance_id.clone();
            let pass: Result<()> = async {
                let Some(row) =
                    q::instance_get(self.store.conn(), &rt.tenant_id, &rt.instance_id).await?
                else {
                    return Ok(());
                };
                let inst: Instance = from_doc(&row.doc)?;
                let policy = &inst.backup_policy;
                if !policy.enabled
                    || op_active_for_target(self.store.conn(), &rt.instance_id)
                        .await?
                        .is_some()
                {
                    return Ok(());
                }
                let hour_ms = hour.as_millis() as i64;
                let autos: Vec<_> = lq::backup_list(self.store.conn(), &rt.instance_id)
                    .await?
                    .into_iter()
                    .filter(|b| b.automated)
                    .collect();
                let now = now_ms();
                let due = autos
                    .iter()
                    .map(|b| b.created_at)
                    .max()
                    .is_none_or(|last| now - last >= hour_ms * i64::from(policy.period_hours));
                let stamps: Vec<(String, i64)> =
                    autos.iter().map(|b| (b.id.clone(), b.created_at)).collect();
                let keep = retained(
                    &stamps,
                    policy.keep_last,
                    policy.keep_daily,
                    policy.keep_weekly,
                    hour_ms * 24,
                );
                // Pruning first, so the retention holds even when backups take
                // longer than the period.
                let prune = stamps.iter().find(|(id, _)| !keep.contains(id));
                let (tenant, target) = (&rt.tenant_id, &rt.instance_id);
                let started = if let Some((oldest, _)) = prune {
                    let params = backup_delete::Params {
                        backup_id: oldest.clone(),
                    };
                    self.engine
                        .submit(
                            &crate::opctx::OpCtx::system("backup-schedule"),
                            tenant,
                            target,
                            &params,
                        )
                        .await
                } else if due {
                    let params = backup_take::Params {
                        backup_id: new_id("bk"),
                        reason: Some("automated".into()),
                        automated: true,
                    };
                    self.engine
                        .submit(
                            &crate::opctx::OpCtx::system("backup-schedule"),
                            tenant,
                            target,
                            &params,
                        )
                        .await
                } else {
                    return Ok(());
                };
                match started {
                    Ok(_) if prune.is_some() => report.deletions_started += 1,
                    Ok(_) => report.backups_started += 1,
                    Err(Error::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                Ok(())
            }
            .await;
            // One instance's trouble (a corrupt document, a failed read)
            // is logged and counted; the other instances' schedules go on.
            if let Err(e) = pass {
                tracing::warn!(instance = %instance, error = %e, "automated backups: this instance was skipped");
                report.failed += 1;
            }
        }
        if report != BackupScheduleReport::default() {
            self.engine.kick();
        }
        Ok(report)
    }
}

/// The backups a retention keeps, of `stamps` (id, creation time): the
/// newest `last`, the newest of each of the newest `daily` days that hold
/// one, and likewise for `weekly` weeks. `day_ms` is a day's length.
pub fn retained(
    stamps: &[(String, i64)],
    last: u32,
    daily: u32,
    weekly: u32,
    day_ms: i64,
) -> BTreeSet<String> {
    let mut newest_first: Vec<&(String, i64)> = stamps.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut keep: BTreeSet<String> = newest_first
        .iter()
        .take(last as usize)
        .map(|(id, _)| id.clone())
        .collect();
    for (n, period) in [(daily, day_ms), (weekly, day_ms * 7)] {
        let mut seen = BTreeSet::new();
        for (id, at) in &newest_first {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(at.div_euclid(period.max(1))) {
                keep.insert(id.clone());
            }
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::retained;

    const DAY: i64 = 86_400_000;

    fn stamps(times: &[i64]) -> Vec<(String, i64)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("b{i}"), *t))
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let s = stamps(&[10, 20, 30, 40]);
        let k = retained(&s, 2, 0, 0, DAY);
        assert_eq!(k.into_iter().collect::<Vec<_>>(), vec!["b2", "b3"]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_recent_day() {
        // Two a day for four days.
        let times: Vec<i64> = (0..4)
            .flat_map(|d| [d * DAY + 1000, d * DAY + 5000])
            .collect();
        let s = stamps(&times);
        let k = retained(&s, 1, 3, 0, DAY);
        // The newest (b7, day 3) and the newest of days 3, 2, 1.
        assert_eq!(k.into_iter().collect::<Vec<_>>(), vec!["b3", "b5", "b7"]);
    }

    #[test]
    fn weekly_reaches_further_back_than_daily() {
        let times: Vec<i64> = (0..21).map(|d| d * DAY).collect();
        let s = stamps(&times);
        let k = retained(&s, 0, 2, 3, DAY);
        // Days 20 and 19; weeks 2 (days 14..20: 20), 1 (7..13: 13), 0 (0..6: 6).
        let mut want = vec!["b19", "b20", "b13", "b6"];
        want.sort();
        assert_eq!(k.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn nothing_kept_means_everything_goes() {
        let s = stamps(&[1, 2]);
        assert!(retained(&s, 0, 0, 0, DAY).is_empty());
    }
}
