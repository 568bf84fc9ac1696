//! Where an instance's resources live in the cloud: its network's region,
//! subnet and security groups, its account's identity (secrets opened only
//! here, never stored in step outputs) and its own settings, merged into one
//! [`Placement`] for the cloud port.

use super::Services;
use crate::cloud::{CloudAuth, ElasticIp, Placement, Redacted, VolumeOptions};
use crate::crypto::Place;
use crate::error::{Error, Result};
use crate::model::account::{AwsAccountAuthMode, CloudAccount};
use crate::model::instance::{EncryptionMode, Instance};
use crate::model::network::VirtualNetwork;
use crate::model::template::InstanceTemplate;
use crate::store::resources as q;
use std::collections::BTreeMap;

fn doc<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(Error::internal)
}

/// The cloud identity and region of a network (what checking or cleaning
/// up the network needs).
pub async fn for_network(svc: &Services, tenant: &str, net: &VirtualNetwork) -> Result<Placement> {
    let auth = match &net.account_id {
        Some(id) => account_auth(svc, tenant, id).await?,
        None => CloudAuth::Default,
    };
    Ok(Placement {
        tenant_id: tenant.into(),
        account_id: net.account_id.clone().unwrap_or_default(),
        auth,
        region: net.aws_region.clone().unwrap_or_default(),
        network_id: net.id.clone().unwrap_or_default(),
        vpc_id: net.aws_vpc_id.clone(),
        subnet_id: net.aws_subnet_id.clone(),
        security_groups: net.aws_security_groups.clone(),
        auto_security_group: net.aws_auto_create_security_groups,
        assign_public_ip: net.aws_assign_public_ip,
        ..Placement::default()
    })
}

async fn account_auth(svc: &Services, tenant: &str, id: &str) -> Result<CloudAuth> {
    let row = q::account_get(svc.store.conn(), tenant, id)
        .await?
        .ok_or_else(|| Error::not_found("cloud account", id))?;
    let acc: CloudAccount = doc(&row.doc)?;
    Ok(match acc.aws_authentication_mode {
        AwsAccountAuthMode::DefaultInstanceCredentials => CloudAuth::Default,
        AwsAccountAuthMode::IamRole => CloudAuth::Role {
            arn: acc.aws_iam_role_arn.unwrap_or_default(),
        },
        AwsAccountAuthMode::Keypair => CloudAuth::Keypair {
            access_key_id: acc.aws_access_key_id.unwrap_or_default(),
            secret_access_key: Redacted(match &row.secret {
                Some(s) => svc.secrets.open(&Place::account_secret(id), s)?,
                None => {
                    return Err(Error::invalid(format!(
                        "cloud account '{id}' uses KEYPAIR but has no secret access key"
                    )));
                }
            }),
        },
    })
}

/// Everything the cloud needs to place the instance's resources.
pub async fn for_instance(svc: &Services, tenant: &str, instance_id: &str) -> Result<Placement> {
    let conn = svc.store.conn();
    let row = q::instance_get(conn, tenant, instance_id)
        .await?
        .ok_or_else(|| Error::not_found("instance", instance_id))?;
    let inst: Instance = doc(&row.doc)?;
    let net_row = q::network_get(conn, tenant, &inst.virtual_network_id)
        .await?
        .ok_or_else(|| Error::not_found("virtual network", &inst.virtual_network_id))?;
    let mut net: VirtualNetwork = doc(&net_row.doc)?;
    net.id = Some(net_row.id.clone());
    let tpl: Option<InstanceTemplate> =
        match q::template_get(conn, tenant, &inst.instance_settings_template_id).await? {
            Some(t) => Some(doc(&t.doc)?),
            None => None,
        };
    let tenant_row = q::tenant_get(conn, tenant).await?;
    let tenant_tags: BTreeMap<String, String> = match &tenant_row {
        Some(t) => doc(&t.cloud_tags).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let tenant_cmk = tenant_row.as_ref().and_then(|t| {
        serde_json::from_str::<serde_json::Value>(&t.cloud_credentials)
            .ok()?
            .pointer("/doc/awsCMKId")?
            .as_str()
            .map(str::to_string)
    });
    let mut p = for_network(svc, tenant, &net).await?;
    let mut tags = tenant_tags;
    tags.extend(inst.cloud_tags.clone());
    p.instance_id = instance_id.into();
    p.label = inst.label.clone();
    p.instance_type = inst.cloud_instance_type.clone();
    p.key_pair = tpl.as_ref().and_then(|t| t.aws_key_pair_name.clone());
    p.instance_profile_arn = tpl
        .as_ref()
        .and_then(|t| t.runtime_instance_profile_arn.clone());
    p.root_volume = VolumeOptions {
        size_gb: inst.aws_root_volume_size_gb,
        volume_type: inst.aws_root_volume_type.clone(),
        iops: inst.aws_root_volume_iops,
        throughput: None,
    };
    p.data_volume = VolumeOptions {
        size_gb: inst.data_volume_size_gb,
        volume_type: inst.data_volume_type.clone(),
        iops: inst.data_volume_iops,
        throughput: inst.data_volume_throughput,
    };
    (p.encrypted, p.kms_key_id) = match inst.volumes_encryption {
        EncryptionMode::None => (false, None),
        EncryptionMode::DefaultKey => (true, None),
        EncryptionMode::Tenant => (
            true,
            Some(tenant_cmk.ok_or_else(|| {
                Error::invalid(
                    "volumesEncryption TENANT needs the tenant's awsCMKId in its cloud credentials",
                )
            })?),
        ),
        EncryptionMode::Custom => (
            true,
            Some(inst.volumes_encryption_key.clone().ok_or_else(|| {
                Error::invalid("volumesEncryption CUSTOM needs volumesEncryptionKey")
            })?),
        ),
    };
    p.elastic_ip = match (
        &inst.aws_elastic_ip_allocation_id,
        inst.aws_assign_elastic_ip,
    ) {
        (Some(a), _) => ElasticIp::Existing(a.clone()),
        (None, true) => ElasticIp::Allocate,
        (None, false) => ElasticIp::None,
    };
    p.tags = tags;
    Ok(p)
}

/// Enrollment's check of the VM an agent claims, through the cloud of the
/// instance's placement.
pub struct CloudAttestor(pub std::sync::Arc<Services>);

#[tonic::async_trait]
impl crate::agents::grpc::Attestor for CloudAttestor {
    async fn attest(
        &self,
        tenant: &str,
        instance_id: &str,
        vm_id: &str,
        evidence: &crate::cloud::Evidence,
    ) -> Result<()> {
        if !self.0.cloud.attests() {
            return Ok(());
        }
        let at = for_instance(&self.0, tenant, instance_id).await?;
        self.0.cloud.attest(&at, vm_id, evidence).await
    }
}
