//! The network side of an instance: checking its VPC and subnet, the
//! security group FM makes per virtual network, and Elastic IPs.
//!
//! Invariants: a network's group is FM's by `fleet-manager:network` and
//! belongs to no one instance (it carries no `fleet-manager:instance` and
//! no `Name`); it is found by that tag before it is made, gets its rules
//! whether found or made (a first run may have died between the two), and
//! is cached per (region, network) until the network is deleted. An address
//! FM allocates is FM's by `fleet-manager:instance` and released with the
//! instance; an address the admin allocated is only associated, never
//! released.

use super::AwsCloud;
use super::gate::{Class, Gate};
use super::retry::already;
use super::tags::{TAG_INSTANCE, TAG_NETWORK, filter, tag_filter};
use crate::cloud::{ElasticIp, Placement};
use crate::error::{Error, Result};
use aws_sdk_ec2::types::{
    DomainType, IpPermission, IpRange, ResourceType, TagSpecification, UserIdGroupPair,
};
use std::future::Future;
use std::time::Duration;

/// How often and how many times deleting a group is retried while
/// terminating VMs still hold it (2 minutes).
const GROUP_RELEASE_POLL: Duration = Duration::from_secs(2);
const GROUP_RELEASE_TRIES: u32 = 60;
/// Who may reach the nodes' ports when EC2 tells no CIDR for the VPC.
const FALLBACK_VPC_CIDR: &str = "10.0.0.0/8";

impl AwsCloud {
    /// Checks that the VPC and subnet `at` names exist, the subnet in the
    /// VPC.
    pub(super) async fn verify_network(&self, at: &Placement) -> Result<()> {
        let g = self.gate(at).await?;
        if let Some(vpc) = &at.vpc_id {
            let out = self
                .send(&g, Class::Describe, "DescribeVpcs", || {
                    g.client
                        .describe_vpcs()
                        .filters(filter("vpc-id", vpc))
                        .send()
                })
                .await?;
            if out.vpcs().is_empty() {
                return Err(Error::invalid(format!(
                    "VPC '{vpc}' does not exist in region {}",
                    at.region
                )));
            }
        }
        if let Some(subnet) = &at.subnet_id {
            let out = self
                .send(&g, Class::Describe, "DescribeSubnets", || {
                    g.client
                        .describe_subnets()
                        .filters(filter("subnet-id", subnet))
                        .send()
                })
                .await?;
            let Some(s) = out.subnets().first() else {
                return Err(Error::invalid(format!(
                    "subnet '{subnet}' does not exist in region {}",
                    at.region
                )));
            };
            if let (Some(vpc), Some(in_vpc)) = (&at.vpc_id, s.vpc_id())
                && vpc != in_vpc
            {
                return Err(Error::invalid(format!(
                    "subnet '{subnet}' is in {in_vpc}, not in VPC '{vpc}'"
                )));
            }
        }
        Ok(())
    }

    /// The group FM made for `at`'s network, made now if need be; `None`
    /// unless the network asks for one.
    pub(super) async fn security_group(&self, g: &Gate, at: &Placement) -> Result<Option<String>> {
        if !at.auto_security_group {
            return Ok(None);
        }
        let key = (at.region.clone(), at.network_id.clone());
        let cached = || {
            self.groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned()
        };
        if let Some(id) = cached() {
            return Ok(Some(id));
        }
        let _one = self.shared_lookup.lock().await;
        if let Some(id) = cached() {
            return Ok(Some(id));
        }
        let id = self.make_security_group(g, at).await?;
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, id.clone());
        Ok(Some(id))
    }

    async fn make_security_group(&self, g: &Gate, at: &Placement) -> Result<String> {
        let find = || async {
            let out = self
                .send(g, Class::Describe, "DescribeSecurityGroups", || {
                    g.client
                        .describe_security_groups()
                        .filters(self.owner_filter())
                        .filters(tag_filter(TAG_NETWORK, &at.network_id))
                        .send()
                })
                .await?;
            Ok::<_, Error>(
                out.security_groups()
                    .first()
                    .and_then(|s| s.group_id())
                    .map(str::to_string),
            )
        };
        let vpc = at.vpc_id.clone().ok_or_else(|| {
            Error::invalid("the virtual network names no VPC to create a security group in")
        })?;
        let id = match find().await? {
            Some(id) => id,
            None => self.create_security_group(g, at, &vpc, &find).await?,
        };
        // Found or made, the group gets its rules (a first run may have died
        // between the two): once per FM process, as the caller caches it.
        self.authorize_node_ports(g, &id, &vpc).await?;
        Ok(id)
    }

    async fn create_security_group<F, Fut>(
        &self,
        g: &Gate,
        at: &Placement,
        vpc: &str,
        find: &F,
    ) -> Result<String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<String>>>,
    {
        let name = format!("fleet-manager-{}-{}", self.settings.owner, at.network_id);
        let mut spec = self.tag_spec(
            at,
            ResourceType::SecurityGroup,
            (TAG_NETWORK, &at.network_id),
        );
        // A network's group belongs to no one instance.
        spec = TagSpecification::builder()
            .resource_type(ResourceType::SecurityGroup)
            .set_tags(Some(
                spec.tags()
                    .iter()
                    .filter(|t| !matches!(t.key(), Some(TAG_INSTANCE) | Some("Name")))
                    .cloned()
                    .collect(),
            ))
            .build();
        let created = self
            .send(g, Class::Mutating, "CreateSecurityGroup", || {
                g.client
                    .create_security_group()
                    .group_name(&name)
                    .description("Fleet Manager nodes of one virtual network")
                    .vpc_id(vpc)
                    .tag_specifications(spec.clone())
                    .send()
            })
            .await;
        let id = match created {
            Ok(out) => out.group_id().unwrap_or_default().to_string(),
            // A lost answer: the group exists under its name.
            Err(Error::OperationFailed { error_type, .. })
                if error_type == "InvalidGroup.Duplicate" =>
            {
                find().await?.ok_or_else(|| {
                    Error::internal(format!("security group {name} exists but is not found"))
                })?
            }
            Err(e) => return Err(e),
        };
        Ok(id)
    }

    /// Opens the nodes' ports to the VPC and all traffic within the group;
    /// rules already there are fine.
    async fn authorize_node_ports(&self, g: &Gate, id: &str, vpc: &str) -> Result<()> {
        let cidr = self
            .send(g, Class::Describe, "DescribeVpcs", || {
                g.client.describe_vpcs().vpc_ids(vpc).send()
            })
            .await?
            .vpcs()
            .first()
            .and_then(|v| v.cidr_block())
            .unwrap_or(FALLBACK_VPC_CIDR)
            .to_string();
        let (lo, hi) = self.settings.node_ports;
        let rules = vec![
            // Nodes' ports, from inside the VPC.
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(lo as i32)
                .to_port(hi as i32)
                .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
                .build(),
            // Nodes of the network talk to each other.
            IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(id).build())
                .build(),
        ];
        let r = self
            .send(g, Class::Mutating, "AuthorizeSecurityGroupIngress", || {
                g.client
                    .authorize_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(rules.clone()))
                    .send()
            })
            .await;
        already(r, "InvalidPermission.Duplicate")?;
        Ok(())
    }

    /// Deletes the groups FM made for `at`'s network, waiting while
    /// terminating VMs still hold them; missing ones are fine.
    pub(super) async fn delete_security_groups(&self, at: &Placement) -> Result<()> {
        let g = self.gate(at).await?;
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(at.region.clone(), at.network_id.clone()));
        let out = self
            .send(&g, Class::Describe, "DescribeSecurityGroups", || {
                g.client
                    .describe_security_groups()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_NETWORK, &at.network_id))
                    .send()
            })
            .await?;
        for sg in out.security_groups() {
            let id = sg.group_id().unwrap_or_default().to_string();
            // Terminating VMs hold the group for a while.
            let mut tries = 0;
            loop {
                let r = self
                    .send(&g, Class::Mutating, "DeleteSecurityGroup", || {
                        g.client.delete_security_group().group_id(&id).send()
                    })
                    .await;
                match r {
                    Ok(_) => break,
                    Err(Error::OperationFailed { error_type, .. })
                        if error_type == "InvalidGroup.NotFound" =>
                    {
                        break;
                    }
                    Err(Error::OperationFailed { error_type, .. })
                        if error_type == "DependencyViolation" && tries < GROUP_RELEASE_TRIES =>
                    {
                        tries += 1;
                        tokio::time::sleep(GROUP_RELEASE_POLL).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Gives EC2 instance `instance` the address `at` asks for (allocating
    /// one if FM is to), unless it has it already.
    pub(super) async fn elastic_ip(&self, g: &Gate, at: &Placement, instance: &str) -> Result<()> {
        let allocation = match &at.elastic_ip {
            ElasticIp::None => return Ok(()),
            ElasticIp::Existing(a) => a.clone(),
            ElasticIp::Allocate => match self.find_address(g, at).await? {
                Some((_, Some(assoc))) if assoc == instance => {
                    return Ok(());
                }
                Some((a, _)) => a,
                None => {
                    let spec =
                        self.tag_spec(at, ResourceType::ElasticIp, (TAG_INSTANCE, &at.instance_id));
                    self.create_once(
                        g,
                        Class::Mutating,
                        "AllocateAddress",
                        || {
                            let r = g
                                .client
                                .allocate_address()
                                .domain(DomainType::Vpc)
                                .tag_specifications(spec.clone());
                            async move {
                                r.send()
                                    .await
                                    .map(|o| o.allocation_id().unwrap_or_default().to_string())
                            }
                        },
                        || async { Ok(self.find_address(g, at).await?.map(|a| a.0)) },
                    )
                    .await?
                }
            },
        };
        self.while_starting(|| {
            self.send(g, Class::Mutating, "AssociateAddress", || {
                g.client
                    .associate_address()
                    .allocation_id(&allocation)
                    .instance_id(instance)
                    .allow_reassociation(true)
                    .send()
            })
        })
        .await?;
        Ok(())
    }

    /// The address FM allocated for the instance: (allocation, associated
    /// instance).
    async fn find_address(
        &self,
        g: &Gate,
        at: &Placement,
    ) -> Result<Option<(String, Option<String>)>> {
        let out = self
            .send(g, Class::Describe, "DescribeAddresses", || {
                g.client
                    .describe_addresses()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_INSTANCE, &at.instance_id))
                    .send()
            })
            .await?;
        Ok(out.addresses().first().map(|a| {
            (
                a.allocation_id().unwrap_or_default().to_string(),
                a.instance_id().map(str::to_string),
            )
        }))
    }

    /// Releases the addresses FM allocated for `at`'s instance,
    /// disassociating them first; missing ones are fine.
    pub(super) async fn release_addresses(&self, at: &Placement) -> Result<()> {
        let g = self.gate(at).await?;
        let out = self
            .send(&g, Class::Describe, "DescribeAddresses", || {
                g.client
                    .describe_addresses()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_INSTANCE, &at.instance_id))
                    .send()
            })
            .await?;
        for a in out.addresses() {
            let allocation = a.allocation_id().unwrap_or_default().to_string();
            // The VM may still be shutting down with the address on it.
            if let Some(assoc) = a.association_id() {
                let r = self
                    .send(&g, Class::Mutating, "DisassociateAddress", || {
                        g.client.disassociate_address().association_id(assoc).send()
                    })
                    .await;
                already(r, "InvalidAssociationID.NotFound")?;
            }
            let r = self
                .send(&g, Class::Mutating, "ReleaseAddress", || {
                    g.client.release_address().allocation_id(&allocation).send()
                })
                .await;
            already(r, "InvalidAllocationID.NotFound")?;
        }
        Ok(())
    }
}
