//! Instances: one node each, with its VM, data volume and settings.

use super::{check_cloud_tags, check_id, check_label, check_len, nullable};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The longest certificate chain an instance may carry (a chain of a few
/// certificates is well under it).
const MAX_PEM_BYTES: usize = 64 * 1024;
/// The longest KMS key id or ARN.
const MAX_KEY_ID_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    #[default]
    Design,
    Automation,
    Deployer,
    Govern,
}

impl NodeType {
    /// The name the node kit's installer takes (`design`, `automation`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Design => "design",
            NodeType::Automation => "automation",
            NodeType::Deployer => "deployer",
            NodeType::Govern => "govern",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EncryptionMode {
    #[default]
    None,
    DefaultKey,
    Tenant,
    Custom,
}

/// How a snapshot is made consistent (an extension of the public API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotConsistency {
    /// Stop the node for the snapshot and start it again right after.
    #[default]
    StopNode,
    /// Freeze the data dir's filesystem (`fsfreeze`) for the cloud call:
    /// the node keeps running; needs the data dir on its own volume.
    FreezeFs,
    /// Snapshot the running node (crash-consistent only).
    None,
}

/// How an agent backup is made consistent (an extension).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackupConsistency {
    /// Stop the node while the data dir is archived (the node's backup
    /// guide), start it again after.
    #[default]
    StopNode,
    /// Archive the running node's files (files written meanwhile may be
    /// inconsistent).
    None,
}

/// Agent backups of the data dir to object storage: how they are taken and
/// how many the schedule keeps (an extension of the public API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupPolicy {
    /// Take backups on a schedule.
    #[serde(default)]
    pub enabled: bool,
    /// Hours between two automated backups.
    #[serde(default = "default_period")]
    #[schema(schema_with = super::schema::period_hours)]
    pub period_hours: u32,
    /// The schedule keeps the newest N automated backups...
    #[serde(default = "default_keep_last")]
    #[schema(schema_with = super::schema::u32)]
    pub keep_last: u32,
    /// ... and the newest of each of the last N days...
    #[serde(default)]
    #[schema(schema_with = super::schema::u32)]
    pub keep_daily: u32,
    /// ... and the newest of each of the last N weeks.
    #[serde(default)]
    #[schema(schema_with = super::schema::u32)]
    pub keep_weekly: u32,
    /// Encrypt archives and manifests with a key FM holds.
    #[serde(default = "yes")]
    pub encrypt: bool,
    #[serde(default)]
    pub consistency: BackupConsistency,
    /// Paths relative to the data dir whose content is not archived.
    #[serde(default = "default_exclusions")]
    #[schema(schema_with = super::schema::exclusions)]
    pub exclusions: Vec<String>,
}

fn default_period() -> u32 {
    24
}
fn default_keep_last() -> u32 {
    7
}
fn yes() -> bool {
    true
}
fn default_exclusions() -> Vec<String> {
    fm_backup::DEFAULT_EXCLUSIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            enabled: false,
            period_hours: default_period(),
            keep_last: default_keep_last(),
            keep_daily: 0,
            keep_weekly: 0,
            encrypt: true,
            consistency: BackupConsistency::StopNode,
            exclusions: default_exclusions(),
        }
    }
}

impl BackupPolicy {
    pub fn validate(&self) -> Result<()> {
        if self.period_hours == 0 || self.period_hours > 24 * 366 {
            return Err(Error::invalid(
                "backupPolicy.periodHours must be between 1 and 8784",
            ));
        }
        if self.enabled && self.keep_last == 0 && self.keep_daily == 0 && self.keep_weekly == 0 {
            return Err(Error::invalid(
                "backupPolicy: keepLast, keepDaily and keepWeekly can't all be 0 when enabled",
            ));
        }
        if self.exclusions.len() > 100 {
            return Err(Error::invalid("backupPolicy.exclusions: at most 100 paths"));
        }
        for x in &self.exclusions {
            let ok = !x.is_empty()
                && x.chars().count() <= 512
                && !x.starts_with('/')
                && !x.contains('\0')
                && x.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
            if !ok {
                return Err(Error::invalid(format!(
                    "backupPolicy.exclusions: '{}' must be a path relative to the data dir, without '.' or '..'",
                    x.escape_debug()
                )));
            }
        }
        Ok(())
    }
}

pub(crate) const VOLUME_TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

/// An instance as the public API reads and writes it. Field names follow
/// the public client exactly (`dataVolumeSizeGB`, `awsAssignElasticIP`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Read-only; set by FM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub id: Option<String>,
    #[schema(schema_with = super::schema::label)]
    pub label: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_description)]
    pub description: String,
    #[schema(schema_with = super::schema::id)]
    /// An existing instance template.
    pub instance_settings_template_id: String,
    #[schema(schema_with = super::schema::id)]
    /// An existing virtual network; can't change after creation.
    pub virtual_network_id: String,
    #[schema(schema_with = super::schema::id)]
    /// An image of `GET /images`.
    pub image_id: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dss_node_type: NodeType,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_instance_type)]
    pub cloud_instance_type: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_volume_type)]
    pub data_volume_type: Option<String>,
    #[serde(rename = "dataVolumeSizeGB", default)]
    #[schema(schema_with = super::schema::nullable_size_gb)]
    pub data_volume_size_gb: Option<u32>,
    /// Not smaller than `dataVolumeSizeGB`.
    #[serde(rename = "dataVolumeSizeMaxGB", default)]
    #[schema(schema_with = super::schema::nullable_size_gb)]
    pub data_volume_size_max_gb: Option<u32>,
    #[serde(rename = "dataVolumeIOPS", default)]
    #[schema(schema_with = super::schema::nullable_iops)]
    pub data_volume_iops: Option<u32>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_throughput)]
    pub data_volume_throughput: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub volumes_encryption: EncryptionMode,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_text_2048)]
    pub volumes_encryption_key: Option<String>,
    #[serde(rename = "awsRootVolumeSizeGB", default)]
    #[schema(schema_with = super::schema::nullable_size_gb)]
    pub aws_root_volume_size_gb: Option<u32>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_volume_type)]
    pub aws_root_volume_type: Option<String>,
    #[serde(rename = "awsRootVolumeIOPS", default)]
    #[schema(schema_with = super::schema::nullable_iops)]
    pub aws_root_volume_iops: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_cloud_tags)]
    pub cloud_tags: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_labels)]
    pub fm_tags: Vec<String>,
    #[serde(rename = "awsAssignElasticIP", default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub aws_assign_elastic_ip: bool,
    #[serde(rename = "awsElasticIPAllocationId", default)]
    #[schema(schema_with = super::schema::nullable_eip_allocation_id)]
    pub aws_elastic_ip_allocation_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub enable_automated_snapshot: bool,
    /// Hours between two automated snapshots.
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_u32)]
    pub automated_snapshot_period: Option<u32>,
    /// How many automated snapshots to keep; 0 keeps all.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_u32)]
    pub automated_snapshot_retention: u32,
    #[serde(rename = "sslCertificatePEM", default)]
    #[schema(schema_with = super::schema::nullable_pem)]
    pub ssl_certificate_pem: Option<String>,
    /// Disaster recovery: create the data volume from this snapshot.
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_snapshot_id)]
    pub aws_snapshot_id: Option<String>,
    /// How snapshots are made consistent: `STOP_NODE` (default) or `NONE`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub snapshot_consistency: SnapshotConsistency,
    /// Agent backups to object storage (an extension).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub backup_policy: BackupPolicy,
    /// Read-only: milliseconds since the epoch.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub created_at: i64,
    /// Read-only: milliseconds since the epoch.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub updated_at: i64,
}

/// The settings an instance takes up at once; a change of any other one
/// reaches its VM only when it is reprovisioned (a new VM from the image,
/// the data disk kept).
const APPLIED_AT_ONCE: &[&str] = &[
    "id",
    "label",
    "description",
    "fmTags",
    "enableAutomatedSnapshot",
    "automatedSnapshotPeriod",
    "automatedSnapshotRetention",
    "snapshotConsistency",
    "backupPolicy",
    "createdAt",
    "updatedAt",
];

/// The fields whose change between two documents of an instance (its
/// public JSON) takes effect only at the next reprovisioning, sorted.
pub fn needs_reprovision(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let mut changed: Vec<String> = b
        .keys()
        .chain(a.keys())
        .filter(|k| !APPLIED_AT_ONCE.contains(&k.as_str()))
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

impl Instance {
    /// Checks the instance's own fields; references to other objects are
    /// checked against the store by the application layer.
    pub fn validate(&self) -> Result<()> {
        check_label("label", &self.label)?;
        check_len("description", &self.description, 4096)?;
        check_id("instance template", &self.instance_settings_template_id)?;
        check_id("virtual network", &self.virtual_network_id)?;
        check_id("image", &self.image_id)?;
        if let Some(t) = &self.cloud_instance_type {
            let ok = !t.is_empty()
                && t.len() <= 64
                && t.contains('.')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(Error::invalid(format!(
                    "cloudInstanceType '{}' is not an instance type (e.g. 'm5.2xlarge')",
                    t.escape_debug()
                )));
            }
        }
        for (field, v) in [
            ("dataVolumeType", &self.data_volume_type),
            ("awsRootVolumeType", &self.aws_root_volume_type),
        ] {
            if let Some(v) = v
                && !VOLUME_TYPES.contains(&v.as_str())
            {
                return Err(Error::invalid(format!(
                    "{field} '{}' must be one of {}",
                    v.escape_debug(),
                    VOLUME_TYPES.join(", ")
                )));
            }
        }
        for (field, v, max) in [
            ("dataVolumeSizeGB", self.data_volume_size_gb, 65536),
            ("dataVolumeSizeMaxGB", self.data_volume_size_max_gb, 65536),
            ("awsRootVolumeSizeGB", self.aws_root_volume_size_gb, 65536),
        ] {
            if let Some(v) = v
                && (v == 0 || v > max)
            {
                return Err(Error::invalid(format!(
                    "{field} must be between 1 and {max}"
                )));
            }
        }
        if let (Some(size), Some(max)) = (self.data_volume_size_gb, self.data_volume_size_max_gb)
            && max < size
        {
            return Err(Error::invalid(
                "dataVolumeSizeMaxGB must not be smaller than dataVolumeSizeGB",
            ));
        }
        for (field, v) in [
            ("dataVolumeIOPS", self.data_volume_iops),
            ("awsRootVolumeIOPS", self.aws_root_volume_iops),
        ] {
            if let Some(v) = v
                && !(100..=256_000).contains(&v)
            {
                return Err(Error::invalid(format!(
                    "{field} must be between 100 and 256000"
                )));
            }
        }
        if let Some(t) = self.data_volume_throughput
            && !(125..=4000).contains(&t)
        {
            return Err(Error::invalid(
                "dataVolumeThroughput must be between 125 and 4000 MiB/s",
            ));
        }
        if self.volumes_encryption == EncryptionMode::Custom
            && self
                .volumes_encryption_key
                .as_deref()
                .is_none_or(str::is_empty)
        {
            return Err(Error::invalid(
                "volumesEncryptionKey is required when volumesEncryption is CUSTOM",
            ));
        }
        check_cloud_tags("cloudTags", &self.cloud_tags)?;
        if self.fm_tags.len() > 50 {
            return Err(Error::invalid("fmTags: at most 50 tags"));
        }
        for t in &self.fm_tags {
            check_label("fmTags", t)?;
        }
        if let Some(a) = &self.aws_elastic_ip_allocation_id {
            super::check_aws_id("awsElasticIPAllocationId", a, "eipalloc")?;
        }
        if self.enable_automated_snapshot {
            match self.automated_snapshot_period {
                Some(p) if p > 0 => {}
                _ => {
                    return Err(Error::invalid(
                        "automatedSnapshotPeriod (hours, at least 1) is required when enableAutomatedSnapshot is true",
                    ));
                }
            }
        }
        if let Some(pem) = &self.ssl_certificate_pem {
            check_len("sslCertificatePEM", pem, MAX_PEM_BYTES)?;
        }
        if let Some(k) = &self.volumes_encryption_key {
            check_len("volumesEncryptionKey", k, MAX_KEY_ID_BYTES)?;
        }
        if let Some(pem) = &self.ssl_certificate_pem
            && !pem.is_empty()
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(Error::invalid(
                "sslCertificatePEM must be a PEM certificate",
            ));
        }
        if let Some(s) = &self.aws_snapshot_id {
            super::check_aws_id("awsSnapshotId", s, "snap")?;
        }
        self.backup_policy.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_changes_that_reach_the_vm_need_a_reprovisioning() {
        let before = serde_json::json!({"label": "a", "imageId": "dss-13", "cloudInstanceType": "m5.large",
            "fmTags": ["x"], "backupPolicy": {"enabled": false}});
        let after = serde_json::json!({"label": "b", "imageId": "dss-14", "cloudInstanceType": "m5.large",
            "fmTags": ["y"], "backupPolicy": {"enabled": true}, "dataVolumeSizeGB": 200});
        assert_eq!(
            needs_reprovision(&before, &after),
            vec!["dataVolumeSizeGB", "imageId"]
        );
        assert!(needs_reprovision(&before, &before).is_empty());
    }

    use super::*;
    use serde_json::json;

    fn instance(extra: serde_json::Value) -> Instance {
        let mut base = json!({
            "label": "i", "instanceSettingsTemplateId": "ist-1",
            "virtualNetworkId": "vn-1", "imageId": "dss-14.2.0-default"
        });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_python_clients_nulls_mean_defaults() {
        let i = instance(
            json!({"dataVolumeType": null, "dataVolumeSizeGB": null, "volumesEncryption": "NONE", "cloudTags": null, "fmTags": null}),
        );
        i.validate().unwrap();
        assert_eq!(i.dss_node_type, NodeType::Design);
    }

    #[test]
    fn max_size_below_size_is_refused() {
        let i = instance(json!({"dataVolumeSizeGB": 100, "dataVolumeSizeMaxGB": 50}));
        assert!(
            i.validate()
                .unwrap_err()
                .message()
                .contains("dataVolumeSizeMaxGB")
        );
    }

    #[test]
    fn automated_snapshots_need_a_period() {
        let i = instance(json!({"enableAutomatedSnapshot": true}));
        assert!(i.validate().is_err());
        let i = instance(json!({"enableAutomatedSnapshot": true, "automatedSnapshotPeriod": 24}));
        i.validate().unwrap();
    }

    #[test]
    fn backup_policies_get_defaults_and_bad_exclusions_are_named() {
        let i = instance(json!({}));
        assert_eq!(i.backup_policy, BackupPolicy::default());
        assert!(i.backup_policy.encrypt && i.backup_policy.exclusions.contains(&"tmp".into()));
        let i = instance(json!({"backupPolicy": {"enabled": true, "periodHours": 6}}));
        i.validate().unwrap();
        assert_eq!(i.backup_policy.keep_last, 7);
        for bad in ["../etc", "/abs", "a//b", "a/./b"] {
            let i = instance(json!({"backupPolicy": {"exclusions": [bad]}}));
            let e = i.validate().unwrap_err();
            assert!(e.message().contains("exclusions"), "{bad}: {}", e.message());
        }
        let i = instance(json!({"backupPolicy": {"enabled": true, "keepLast": 0}}));
        assert!(i.validate().is_err());
        let r: std::result::Result<Instance, _> = serde_json::from_value(json!({
            "label": "i", "instanceSettingsTemplateId": "t", "virtualNetworkId": "v",
            "imageId": "x", "backupPolicy": {"keepForever": true}
        }));
        assert!(
            r.is_err(),
            "an unknown policy field is an error, not ignored"
        );
    }

    #[test]
    fn unknown_node_type_is_refused() {
        let r: std::result::Result<Instance, _> = serde_json::from_value(json!({
            "label": "i", "instanceSettingsTemplateId": "t", "virtualNetworkId": "v",
            "imageId": "x", "dssNodeType": "spaceship"
        }));
        assert!(r.unwrap_err().to_string().contains("unknown variant"));
    }
}
