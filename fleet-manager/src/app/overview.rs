//! The fleet at a glance, for the console: instances by state, agents that
//! went silent, data disks filling up, operations by state; and the paged
//! instance list with each one's state.

use super::App;
use crate::error::Result;
use crate::model::lifecycle::NodeHeartbeat;
use crate::model::now_ms;
use crate::model::operation::FutureState;
use crate::store::operations::op_active_for_target;
use crate::store::overview::{self as q, InstanceFilter, InstanceRow};
use crate::store::page::{Page, Paged};

/// A data disk this full (percent) is reported.
pub const DISK_WARN_PERCENT: u64 = 80;
/// The dashboard names at most this many instances of each kind; it
/// counts them all.
pub const NAMED: usize = 20;

/// The dashboard's figures for one tenant.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// Instances by provisioning state, `none` for never provisioned.
    pub instances: Vec<(String, u64)>,
    pub total: u64,
    /// How many running instances have an agent silent past the agent
    /// timeout, and the first [`NAMED`] of them.
    pub unreachable_count: u64,
    pub unreachable: Vec<String>,
    /// How many running instances have a data disk past
    /// [`DISK_WARN_PERCENT`], and the fullest [`NAMED`]: (id, percent used).
    pub full_disks_count: u64,
    pub full_disks: Vec<(String, u64)>,
    /// Operations by state.
    pub operations: Vec<(String, u64)>,
}

impl App {
    pub async fn fleet_overview(&self, tenant: &str) -> Result<Overview> {
        self.tenant(tenant).await?;
        let instances = q::instance_state_counts(&self.store.db, tenant).await?;
        let total = instances.iter().map(|(_, n)| n).sum();
        let silent_since = now_ms() - self.cfg.agent_timeout.as_millis() as i64;
        let mut unreachable = Vec::new();
        let mut full_disks = Vec::new();
        for (id, at, beat) in q::running_heartbeats(&self.store.db, tenant).await? {
            if at.is_none_or(|t| t < silent_since) {
                unreachable.push(id.clone());
            }
            let beat: Option<NodeHeartbeat> =
                beat.as_deref().and_then(|b| serde_json::from_str(b).ok());
            if let Some(pct) = beat.and_then(|b| b.data_disk_percent())
                && pct >= DISK_WARN_PERCENT
            {
                full_disks.push((id, pct));
            }
        }
        let operations = q::operation_state_counts(&self.store.db, tenant).await?;
        let (unreachable_count, full_disks_count) =
            (unreachable.len() as u64, full_disks.len() as u64);
        unreachable.truncate(NAMED);
        full_disks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        full_disks.truncate(NAMED);
        Ok(Overview {
            instances,
            total,
            unreachable_count,
            unreachable,
            full_disks_count,
            full_disks,
            operations,
        })
    }

    /// A page of the tenant's instances with their state, oldest first.
    pub async fn instance_rows(
        &self,
        tenant: &str,
        filter: &InstanceFilter,
        page: &Page,
    ) -> Result<Paged<InstanceRow>> {
        self.tenant(tenant).await?;
        q::instance_rows(&self.store.db, tenant, filter, page).await
    }

    /// The unfinished operation on one object, with its last `log` lines.
    pub async fn active_operation(&self, target: &str, log: u64) -> Result<Option<FutureState>> {
        let Some(op) = op_active_for_target(&self.store.db, target).await? else {
            return Ok(None);
        };
        let lines = self.store.op_log_tail(&op.id, log).await?;
        Ok(Some(Self::view_of(op, lines)))
    }

    /// The operations that acted on one object, newest first (without
    /// their logs).
    pub async fn operations_of(
        &self,
        tenant: &str,
        target: &str,
        page: &Page,
    ) -> Result<Paged<FutureState>> {
        self.tenant(tenant).await?;
        Ok(q::operations_of(&self.store.db, tenant, target, page)
            .await?
            .map(|op| Self::view_of(op, Vec::new())))
    }
}
