//! The path parameters of the API, one named struct per path shape, so a
//! handler reads `p.instance_id` and can't swap two ids of one tuple. They
//! are read through [`super::extract::PathParams`] (a segment that can't be
//! decoded is a 400) and documented by their `IntoParams`.

use serde::Deserialize;
use utoipa::IntoParams;

/// `/tenants/{tenantId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    pub tenant_id: String,
}

/// `/tenants/{tenantId}/cloud-accounts/{accountId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct AccountPath {
    pub tenant_id: String,
    pub account_id: String,
}

/// `/tenants/{tenantId}/virtual-networks/{networkId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct NetworkPath {
    pub tenant_id: String,
    pub network_id: String,
}

/// `/tenants/{tenantId}/instance-settings-templates/{templateId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct TemplatePath {
    pub tenant_id: String,
    pub template_id: String,
}

/// `/tenants/{tenantId}/instances/{instanceId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    pub tenant_id: String,
    pub instance_id: String,
}

/// `/tenants/{tenantId}/instances/{instanceId}/snapshots/{snapshotId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct SnapshotPath {
    pub tenant_id: String,
    pub instance_id: String,
    pub snapshot_id: String,
}

/// `/tenants/{tenantId}/instances/{instanceId}/backups/{backupId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct BackupPath {
    pub tenant_id: String,
    pub instance_id: String,
    pub backup_id: String,
}

/// `/tenants/{tenantId}/futures/{jobId}`
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct FuturePath {
    pub tenant_id: String,
    pub job_id: String,
}
