//! Instance lifecycle: the actions of the public API (reprovision,
//! deprovision, start, stop, restart the node, replay setup actions, reset a
//! password, delete), status, secrets of the node, and snapshots.

use super::{App, StartedFuture};
use crate::crypto::Place;
use crate::error::{Error, Result};
use crate::model::image::version_cmp;
use crate::model::lifecycle::{AdminApiKey, InitialPassword, InstanceStatus, NodeHeartbeat};
use crate::model::operation::OpState;
use crate::model::snapshot::Snapshot;
use crate::model::state::{AgentState, NodeState};
use crate::model::{check_id, check_len, new_id, now_ms};
use crate::opctx::OpCtx;
use crate::ops::sagas::{
    deprovision, password, power, provision, setup, snapshot as snap, snapshot_delete,
};
use crate::store::entities::instance_runtime;
use crate::store::lifecycle as lq;
use crate::store::page::{Page, Paged};
use crate::store::resources as q;

/// How long a snapshot request waits for its snapshot.
const SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// The lifecycle actions that take no parameters.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Deprovision,
    Start,
    Stop,
    RestartNode,
    ReplaySetupActions,
}

impl App {
    async fn runtime_of(&self, tenant: &str, id: &str) -> Result<Option<instance_runtime::Model>> {
        self.instance_get(tenant, id).await?;
        lq::runtime_get(self.store.conn(), id).await
    }

    async fn provisioned(&self, tenant: &str, id: &str) -> Result<instance_runtime::Model> {
        match self.runtime_of(tenant, id).await? {
            Some(rt) if rt.vm_id.is_some() => Ok(rt),
            _ => Err(Error::conflict(format!(
                "instance '{id}' is not provisioned; reprovision it first"
            ))),
        }
    }

    /// Provisions the instance, or replaces its VM (the data volume stays).
    /// Moving to an older image is refused unless `allow_downgrade`.
    pub async fn instance_reprovision(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        allow_downgrade: bool,
        snapshot: Option<&str>,
    ) -> Result<StartedFuture> {
        let inst = self.instance_get(tenant, id).await?;
        if let Some(s) = snapshot {
            check_id("snapshot", s)?;
            if lq::snapshot_get(self.store.conn(), id, s).await?.is_none() {
                return Err(Error::not_found("snapshot", s));
            }
        }
        self.check_provisionable(id, &inst.image_id, allow_downgrade)
            .await?;
        let params = provision::Params {
            allow_downgrade,
            snapshot_id: snapshot.map(str::to_string),
            restore_backup: None,
        };
        self.start_operation(ctx, tenant, id, params).await
    }

    /// Moves the instance to image `image_id` and reprovisions it: its node
    /// runs that image's version on a new VM, its data disk kept. Nothing
    /// changes when the image can't be provisioned or would downgrade the
    /// node without `allow_downgrade`.
    pub async fn instance_upgrade(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        image_id: &str,
        allow_downgrade: bool,
    ) -> Result<StartedFuture> {
        check_id("imageId", image_id)?;
        let mut inst = self.instance_get(tenant, id).await?;
        self.check_provisionable(id, image_id, allow_downgrade)
            .await?;
        if inst.image_id != image_id {
            inst.image_id = image_id.to_string();
            self.instance_update(tenant, id, inst).await?;
        }
        self.instance_reprovision(ctx, tenant, id, allow_downgrade, None)
            .await
    }

    /// Whether instance `id` may be provisioned with image `image_id`: the
    /// image exists, has a kit, and does not take the installed node to an
    /// older version unless `allow_downgrade`.
    async fn check_provisionable(
        &self,
        id: &str,
        image_id: &str,
        allow_downgrade: bool,
    ) -> Result<()> {
        let image = q::image_get(self.store.conn(), image_id)
            .await?
            .ok_or_else(|| Error::invalid(format!("imageId: image '{image_id}' does not exist")))?;
        if image.kit_file.is_none() {
            return Err(Error::conflict(format!(
                "image '{}' has no node kit: it can't be provisioned",
                image.id
            )));
        }
        if let Some(rt) = lq::runtime_get(self.store.conn(), id).await?
            && let Some(installed) = rt.node_version.as_deref()
            && version_cmp(&image.node_version, installed).is_lt()
            && !allow_downgrade
        {
            return Err(Error::conflict(format!(
                "image {} would downgrade the node from {installed} to {}; add allowDowngrade=true to force it",
                image.id, image.node_version
            )));
        }
        Ok(())
    }

    pub async fn instance_action(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        action: Action,
    ) -> Result<StartedFuture> {
        if let Action::Deprovision = action {
            self.instance_get(tenant, id).await?;
        } else {
            self.provisioned(tenant, id).await?;
        }
        match action {
            Action::Deprovision => {
                self.start_operation(ctx, tenant, id, deprovision::Params {})
                    .await
            }
            Action::Start => self.start_operation(ctx, tenant, id, power::Start {}).await,
            Action::Stop => self.start_operation(ctx, tenant, id, power::Stop {}).await,
            Action::RestartNode => {
                self.start_operation(ctx, tenant, id, power::RestartNode {})
                    .await
            }
            Action::ReplaySetupActions => {
                self.start_operation(ctx, tenant, id, setup::Params {})
                    .await
            }
        }
    }

    /// Resets a node user's password; the password travels sealed in the
    /// operation's parameters and is never logged.
    pub async fn instance_reset_password(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        user: &str,
        password: &str,
    ) -> Result<StartedFuture> {
        self.provisioned(tenant, id).await?;
        let ok_user = !user.is_empty()
            && !user.starts_with('-')
            && user.len() <= 128
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !ok_user {
            return Err(Error::invalid(
                "userName must be 1 to 128 letters, digits, '.', '_', '@' or '-', not starting with '-'",
            ));
        }
        if !(8..=256).contains(&password.chars().count()) {
            return Err(Error::invalid("password must be 8 to 256 characters"));
        }
        let params = password::Params {
            user_name: user.to_string(),
            password_sealed: self
                .secrets
                .seal(&Place::operation(id, password::SEALED_FIELD), password)?,
        };
        self.start_operation(ctx, tenant, id, params).await
    }

    /// The node's initial admin password, once.
    pub async fn instance_initial_password(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<InitialPassword> {
        let rt = self.runtime_of(tenant, id).await?;
        let sealed = rt.and_then(|r| r.initial_password).ok_or_else(|| {
            Error::conflict(format!(
                "instance '{id}' has no initial password yet: provision it first"
            ))
        })?;
        // Open it before marking it taken: a failure must not lose it.
        let password = self
            .secrets
            .open(&Place::runtime(id, "initial_password"), &sealed)?;
        if !lq::runtime_take_initial_password(self.store.conn(), id).await? {
            return Err(Error::conflict(
                "the initial password was already retrieved; it is given only once",
            ));
        }
        Ok(InitialPassword {
            password,
            user: "admin".into(),
        })
    }

    pub async fn instance_admin_api_key(&self, tenant: &str, id: &str) -> Result<AdminApiKey> {
        let rt = self.runtime_of(tenant, id).await?;
        let sealed = rt.and_then(|r| r.admin_api_key).ok_or_else(|| {
            Error::conflict(format!(
                "instance '{id}' has no admin API key yet: provision it first"
            ))
        })?;
        Ok(AdminApiKey {
            admin_api_key: self
                .secrets
                .open(&Place::runtime(id, "admin_api_key"), &sealed)?,
        })
    }

    /// The recent log lines of the instance's agent, asked of it now.
    pub async fn agent_log(&self, tenant: &str, id: &str) -> Result<crate::agents::AgentLog> {
        self.instance_get(tenant, id).await?;
        Ok(self.engine.services().hub.agent_log(id).await)
    }

    /// What FM knows of the instance's VM, node and agent.
    pub async fn instance_status(&self, tenant: &str, id: &str) -> Result<InstanceStatus> {
        let Some(rt) = self.runtime_of(tenant, id).await? else {
            return Ok(InstanceStatus::never_provisioned());
        };
        let svc = self.engine.services();
        let cloud_state = match &rt.vm_id {
            Some(vm) => {
                let at = crate::ops::placement::for_instance(svc, tenant, id).await?;
                Some(svc.cloud.vm_state(&at, vm).await?.as_str().to_owned())
            }
            None => None,
        };
        let agent_state = match rt.last_heartbeat_at {
            None => AgentState::None,
            Some(t) if now_ms() - t <= self.cfg.agent_timeout.as_millis() as i64 => {
                AgentState::Connected
            }
            Some(_) => AgentState::Unreachable,
        };
        let node_state = match agent_state {
            AgentState::Connected => rt.node_state.clone(),
            AgentState::None | AgentState::Unreachable => {
                Some(NodeState::Unknown.as_str().to_string())
            }
        };
        let agent_state = agent_state.as_str();
        let heartbeat: Option<NodeHeartbeat> = rt
            .heartbeat
            .as_deref()
            .and_then(|h| serde_json::from_str(h).ok());
        Ok(InstanceStatus {
            agent_state: agent_state.into(),
            agent_version: Some(rt.agent_version),
            cloud_state: Some(cloud_state),
            data_volume_id: Some(rt.volume_id),
            has_physical_instance: rt.vm_id.is_some(),
            heartbeat: Some(heartbeat),
            last_heartbeat_at: Some(rt.last_heartbeat_at),
            node_state: Some(node_state),
            node_version: Some(rt.node_version),
            public_url: rt.public_url,
            state: rt.state,
            vm_id: Some(rt.vm_id),
        })
    }

    // ---------------------------------------------------------------- snapshots

    pub async fn snapshot_list(
        &self,
        tenant: &str,
        id: &str,
        page: &Page,
    ) -> Result<Paged<Snapshot>> {
        self.instance_get(tenant, id).await?;
        Ok(lq::snapshot_page(self.store.conn(), id, page)
            .await?
            .map(|s| Snapshot::from_row(&s)))
    }

    pub async fn snapshot_get(&self, tenant: &str, id: &str, snapshot: &str) -> Result<Snapshot> {
        self.instance_get(tenant, id).await?;
        check_id("snapshot", snapshot)?;
        lq::snapshot_get(self.store.conn(), id, snapshot)
            .await?
            .map(|s| Snapshot::from_row(&s))
            .ok_or_else(|| Error::not_found("snapshot", snapshot))
    }

    /// Snapshots the data volume and answers with the snapshot.
    pub async fn snapshot_create(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Snapshot> {
        let params = self.snapshot_params(tenant, id, reason).await?;
        let op = self
            .run_operation(ctx, tenant, id, &params, SNAPSHOT_WAIT)
            .await?;
        match (OpState::parse(&op.state), op.result) {
            (Some(OpState::Done), Some(r)) => serde_json::from_str(&r).map_err(Error::internal),
            _ => Err(Error::OperationFailed {
                error_type: op.error_type.unwrap_or_else(|| "SnapshotFailed".into()),
                message: op
                    .error_message
                    .unwrap_or_else(|| format!("the snapshot did not finish (future {})", op.id)),
            }),
        }
    }

    /// Starts a snapshot of the data volume and answers with its future.
    pub async fn snapshot_start(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<StartedFuture> {
        let params = self.snapshot_params(tenant, id, reason).await?;
        self.start_operation(ctx, tenant, id, params).await
    }

    async fn snapshot_params(
        &self,
        tenant: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<snap::Params> {
        let rt = self.runtime_of(tenant, id).await?;
        if rt.and_then(|r| r.volume_id).is_none() {
            return Err(Error::conflict(format!(
                "instance '{id}' has no data volume yet: provision it first"
            )));
        }
        if let Some(r) = reason {
            check_len("reasonForSnapshot", r, 1024)?;
        }
        Ok(snap::Params {
            snapshot_id: new_id("snap"),
            reason: reason.map(str::to_string),
            automated: false,
        })
    }

    pub async fn snapshot_delete(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        id: &str,
        snapshot: &str,
    ) -> Result<StartedFuture> {
        self.snapshot_get(tenant, id, snapshot).await?;
        let params = snapshot_delete::Params {
            snapshot_id: snapshot.to_string(),
        };
        self.start_operation(ctx, tenant, id, params).await
    }
}
