//! Virtual networks: where instances live (VPC, subnet, security groups,
//! DNS and HTTPS strategies).

use super::{check_aws_id, check_id, check_label, check_len, check_region, nullable};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NetworkMode {
    #[default]
    ExistingMonotenant,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InternetAccessMode {
    #[default]
    Yes,
    No,
    EgressOnly,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsStrategy {
    #[default]
    None,
    VnSpecificCloudDnsService,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HttpsStrategy {
    #[default]
    None,
    SelfSigned,
    CustomCertificate,
    Letsencrypt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HttpStrategy {
    #[default]
    Disable,
    Redirect,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeployerMode {
    #[default]
    NoManagedDeployer,
    CentralDeployer,
    EachDesignNode,
}

fn yes() -> bool {
    true
}

/// A virtual network as the public API reads and writes it.
/// `awsVpcId` and `awsSubnetId` can't change after creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetwork {
    /// Read-only; set by FM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub id: Option<String>,
    #[schema(schema_with = super::schema::label)]
    pub label: String,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub mode: NetworkMode,
    /// The cloud account; none means the tenant's own cloud credentials.
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_id)]
    pub account_id: Option<String>,
    /// Required, like `awsVpcId` and `awsSubnetId`, unless created with
    /// `?useDefaultValues=true` (FM's own fill those left out); none of
    /// the three can change after creation.
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_region)]
    pub aws_region: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_vpc_id)]
    pub aws_vpc_id: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_subnet_id)]
    pub aws_subnet_id: Option<String>,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_subnet_id)]
    pub aws_second_subnet_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub aws_auto_create_security_groups: bool,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(schema_with = super::schema::nullable_security_groups)]
    pub aws_security_groups: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub auto_create_peerings: bool,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub internet_access_mode: InternetAccessMode,
    #[serde(rename = "awsAssignPublicIP", default = "yes")]
    pub aws_assign_public_ip: bool,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dns_strategy: DnsStrategy,
    #[serde(rename = "awsRoute53PrivateIPZoneId", default)]
    pub aws_route53_private_ip_zone_id: Option<String>,
    #[serde(rename = "awsRoute53PublicIPZoneId", default)]
    pub aws_route53_public_ip_zone_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub https_strategy: HttpsStrategy,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub http_strategy: HttpStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_mail: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub managed_nodes_directory: bool,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_text_256)]
    pub event_server_node_label: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(nullable)]
    pub nodes_directory_deployer_mode: DeployerMode,
    #[serde(default)]
    #[schema(schema_with = super::schema::nullable_text_256)]
    pub govern_server_node_label: Option<String>,
    /// Read-only: how many instances use this network.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(read_only)]
    pub nb_instances: u64,
}

/// Where `?useDefaultValues=true` puts a network: FM's own region, VPC and
/// subnet.
#[derive(Debug, Clone)]
pub struct NetworkDefaults {
    pub region: String,
    pub vpc_id: String,
    pub subnet_id: String,
}

impl VirtualNetwork {
    /// Fills the region, VPC and subnet the caller left out from FM's own.
    pub fn apply_defaults(&mut self, d: &NetworkDefaults) {
        self.aws_region.get_or_insert_with(|| d.region.clone());
        self.aws_vpc_id.get_or_insert_with(|| d.vpc_id.clone());
        self.aws_subnet_id
            .get_or_insert_with(|| d.subnet_id.clone());
    }

    pub fn validate(&mut self) -> Result<()> {
        check_label("label", &self.label)?;
        if let Some(a) = &self.account_id {
            check_id("cloud account", a)?;
        }
        let region = self.aws_region.as_deref().ok_or_else(|| {
            Error::invalid("awsRegion is required (or create with ?useDefaultValues=true)")
        })?;
        check_region("awsRegion", region)?;
        let vpc = self.aws_vpc_id.as_deref().ok_or_else(|| {
            Error::invalid("awsVpcId is required (or create with ?useDefaultValues=true)")
        })?;
        check_aws_id("awsVpcId", vpc, "vpc")?;
        let subnet = self.aws_subnet_id.as_deref().ok_or_else(|| {
            Error::invalid("awsSubnetId is required (or create with ?useDefaultValues=true)")
        })?;
        check_aws_id("awsSubnetId", subnet, "subnet")?;
        if let Some(s) = &self.aws_second_subnet_id {
            check_aws_id("awsSecondSubnetId", s, "subnet")?;
        }
        if self.aws_security_groups.len() > 5 {
            return Err(Error::invalid(
                "awsSecurityGroups: at most 5 security groups",
            ));
        }
        for sg in &self.aws_security_groups {
            check_aws_id("awsSecurityGroups", sg, "sg")?;
        }
        if self.aws_auto_create_security_groups {
            self.aws_security_groups.clear();
        }
        match self.dns_strategy {
            DnsStrategy::None => {
                self.aws_route53_private_ip_zone_id = None;
                self.aws_route53_public_ip_zone_id = None;
            }
            DnsStrategy::VnSpecificCloudDnsService => {
                if self.aws_route53_private_ip_zone_id.is_none()
                    && self.aws_route53_public_ip_zone_id.is_none()
                {
                    return Err(Error::invalid(
                        "dnsStrategy VN_SPECIFIC_CLOUD_DNS_SERVICE needs awsRoute53PrivateIPZoneId or awsRoute53PublicIPZoneId",
                    ));
                }
            }
        }
        if self.https_strategy == HttpsStrategy::Letsencrypt {
            let mail = self.contact_mail.as_deref().unwrap_or_default();
            if !mail.contains('@') || mail.chars().count() > 254 {
                return Err(Error::invalid(
                    "contactMail must be an e-mail address when httpsStrategy is LETSENCRYPT",
                ));
            }
        }
        for (field, value) in [
            ("eventServerNodeLabel", &self.event_server_node_label),
            ("governServerNodeLabel", &self.govern_server_node_label),
        ] {
            if let Some(v) = value {
                check_len(field, v, 256)?;
            }
        }
        Ok(())
    }

    /// Refuses changes to the fields that are fixed at creation.
    pub fn check_immutable(&self, before: &VirtualNetwork) -> Result<()> {
        for (field, now, was) in [
            ("awsVpcId", &self.aws_vpc_id, &before.aws_vpc_id),
            ("awsSubnetId", &self.aws_subnet_id, &before.aws_subnet_id),
            ("awsRegion", &self.aws_region, &before.aws_region),
        ] {
            if now != was {
                return Err(Error::invalid(format!(
                    "{field} can't be changed after creation"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> VirtualNetwork {
        serde_json::from_value(serde_json::json!({
            "label": "n", "awsRegion": "eu-west-3", "awsVpcId": "vpc-1", "awsSubnetId": "subnet-1"
        }))
        .unwrap()
    }

    #[test]
    fn public_ip_defaults_to_true() {
        assert!(network().aws_assign_public_ip);
    }

    #[test]
    fn more_than_five_security_groups_are_refused() {
        let mut n = network();
        n.aws_security_groups = (0..6).map(|i| format!("sg-{i}")).collect();
        assert!(n.validate().unwrap_err().message().contains("at most 5"));
    }

    #[test]
    fn defaults_fill_only_missing_fields() {
        let mut n = network();
        n.aws_subnet_id = None;
        n.apply_defaults(&NetworkDefaults {
            region: "us-east-1".into(),
            vpc_id: "vpc-fm".into(),
            subnet_id: "subnet-fm".into(),
        });
        assert_eq!(n.aws_region.as_deref(), Some("eu-west-3"));
        assert_eq!(n.aws_subnet_id.as_deref(), Some("subnet-fm"));
    }

    #[test]
    fn vpc_cannot_change_after_creation() {
        let before = network();
        let mut after = network();
        after.aws_vpc_id = Some("vpc-2".into());
        assert!(after.check_immutable(&before).is_err());
    }
}
