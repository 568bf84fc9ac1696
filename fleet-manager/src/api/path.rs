//! The path parameters of the API, one named struct per path shape, so a
//! handler reads `p.instance_id` and can't swap two ids of one tuple. They
//! are read through [`super::extract::PathParams`] (a segment that can't be
//! decoded is a 400) and documented by their `IntoParams`. Every id has
//! the shape [`crate::model::check_id`] accepts, and the document says so.

use serde::Deserialize;
use utoipa::IntoParams;

/// `/tenants/{tenantId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
}

/// `/tenants/{tenantId}/cloud-accounts/{accountId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct AccountPath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub account_id: String,
}

/// `/tenants/{tenantId}/virtual-networks/{networkId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct NetworkPath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub network_id: String,
}

/// `/tenants/{tenantId}/instance-settings-templates/{templateId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct TemplatePath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub template_id: String,
}

/// `/tenants/{tenantId}/instances/{instanceId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub instance_id: String,
}

/// `/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct SnapshotPath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub instance_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub snapshot_id: String,
}

/// `/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct BackupPath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub instance_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub backup_id: String,
}

/// `/tenants/{tenantId}/futures/{jobId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct FuturePath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub job_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct RolloutPath {
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub tenant_id: String,
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub rollout_id: String,
}
