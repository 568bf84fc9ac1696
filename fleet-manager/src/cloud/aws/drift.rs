//! Everything FM's ownership tags mark in an account and region, for the
//! drift and leak reports.
//!
//! Invariants: only this FM's resources are listed (`fleet-manager:owner`
//! filters every describe), instances, snapshots and security groups are
//! read page by page (a large account has more than one page), and nothing
//! is changed. Volumes without `fleet-manager:volume` (root volumes) are
//! left out: they go with their VM. A resource belongs to the FM instance
//! its `fleet-manager:instance` tag names; a security group to the network
//! its `fleet-manager:network` tag names. The order is fixed: instances,
//! volumes, snapshots, groups, addresses; the first failed describe fails
//! the whole list.

use super::AwsCloud;
use super::gate::{Class, Gate};
use super::tags::{TAG_INSTANCE, TAG_NETWORK, TAG_SNAPSHOT, TAG_VM, TAG_VOLUME, tag_value};
use crate::cloud::{OwnedResource, Placement};
use crate::error::Result;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::{
    describe_addresses::DescribeAddressesOutput, describe_instances::DescribeInstancesOutput,
    describe_security_groups::DescribeSecurityGroupsOutput,
    describe_snapshots::DescribeSnapshotsOutput, describe_volumes::DescribeVolumesOutput,
};
use aws_sdk_ec2::types::{
    Address, Instance, InstanceStateName, SecurityGroup, Snapshot, Tag, Volume, VolumeState,
};
use std::future::Future;

/// An EC2 resource as an `OwnedResource`: its kind, which tags name its
/// owner and its logical id, and whether it is still usable.
trait Owned {
    const KIND: &'static str;
    /// The tag naming the FM instance (or network) it belongs to.
    const OWNER_TAG: &'static str;
    /// The tag of FM's logical id for it, if it has one.
    const LOGICAL_TAG: Option<&'static str>;
    fn cloud_id(&self) -> Option<&str>;
    fn tag_list(&self) -> &[Tag];
    fn live(&self) -> bool {
        true
    }
}

impl Owned for Instance {
    const KIND: &'static str = "instance";
    const OWNER_TAG: &'static str = TAG_INSTANCE;
    const LOGICAL_TAG: Option<&'static str> = Some(TAG_VM);
    fn cloud_id(&self) -> Option<&str> {
        self.instance_id()
    }
    fn tag_list(&self) -> &[Tag] {
        self.tags()
    }
    fn live(&self) -> bool {
        !matches!(
            self.state().and_then(|s| s.name()),
            Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
        )
    }
}

impl Owned for Volume {
    const KIND: &'static str = "volume";
    const OWNER_TAG: &'static str = TAG_INSTANCE;
    const LOGICAL_TAG: Option<&'static str> = Some(TAG_VOLUME);
    fn cloud_id(&self) -> Option<&str> {
        self.volume_id()
    }
    fn tag_list(&self) -> &[Tag] {
        self.tags()
    }
    fn live(&self) -> bool {
        !matches!(
            self.state(),
            Some(VolumeState::Deleting | VolumeState::Deleted)
        )
    }
}

impl Owned for Snapshot {
    const KIND: &'static str = "snapshot";
    const OWNER_TAG: &'static str = TAG_INSTANCE;
    const LOGICAL_TAG: Option<&'static str> = Some(TAG_SNAPSHOT);
    fn cloud_id(&self) -> Option<&str> {
        self.snapshot_id()
    }
    fn tag_list(&self) -> &[Tag] {
        self.tags()
    }
}

impl Owned for SecurityGroup {
    const KIND: &'static str = "security-group";
    const OWNER_TAG: &'static str = TAG_NETWORK;
    const LOGICAL_TAG: Option<&'static str> = None;
    fn cloud_id(&self) -> Option<&str> {
        self.group_id()
    }
    fn tag_list(&self) -> &[Tag] {
        self.tags()
    }
}

impl Owned for Address {
    const KIND: &'static str = "address";
    const OWNER_TAG: &'static str = TAG_INSTANCE;
    const LOGICAL_TAG: Option<&'static str> = None;
    fn cloud_id(&self) -> Option<&str> {
        self.allocation_id()
    }
    fn tag_list(&self) -> &[Tag] {
        self.tags()
    }
}

impl AwsCloud {
    /// Every resource carrying this FM's tags in `at`'s account and region:
    /// instances, data volumes, snapshots, security groups, addresses.
    pub(super) async fn list_owned(&self, at: &Placement) -> Result<Vec<OwnedResource>> {
        let g = self.gate(at).await?;
        let g = &g;
        let mut all = vec![];
        all.extend(
            self.describe_owned(
                g,
                "DescribeInstances",
                || {
                    g.client
                        .describe_instances()
                        .filters(self.owner_filter())
                        .into_paginator()
                        .send()
                        .try_collect()
                },
                |pages: &Vec<DescribeInstancesOutput>| {
                    pages
                        .iter()
                        .flat_map(|p| p.reservations())
                        .flat_map(|r| r.instances())
                        .collect()
                },
            )
            .await?,
        );
        all.extend(
            self.describe_owned(
                g,
                "DescribeVolumes",
                || {
                    g.client
                        .describe_volumes()
                        .filters(self.owner_filter())
                        .send()
                },
                |out: &DescribeVolumesOutput| {
                    out.volumes()
                        .iter()
                        // Root volumes go with their VM.
                        .filter(|v| tag_value(v.tags(), TAG_VOLUME).is_some())
                        .collect()
                },
            )
            .await?,
        );
        all.extend(
            self.describe_owned(
                g,
                "DescribeSnapshots",
                || {
                    g.client
                        .describe_snapshots()
                        .owner_ids("self")
                        .filters(self.owner_filter())
                        .into_paginator()
                        .send()
                        .try_collect()
                },
                |pages: &Vec<DescribeSnapshotsOutput>| {
                    pages.iter().flat_map(|p| p.snapshots()).collect()
                },
            )
            .await?,
        );
        all.extend(
            self.describe_owned(
                g,
                "DescribeSecurityGroups",
                || {
                    g.client
                        .describe_security_groups()
                        .filters(self.owner_filter())
                        .into_paginator()
                        .send()
                        .try_collect()
                },
                |pages: &Vec<DescribeSecurityGroupsOutput>| {
                    pages.iter().flat_map(|p| p.security_groups()).collect()
                },
            )
            .await?,
        );
        all.extend(
            self.describe_owned(
                g,
                "DescribeAddresses",
                || {
                    g.client
                        .describe_addresses()
                        .filters(self.owner_filter())
                        .send()
                },
                |out: &DescribeAddressesOutput| out.addresses().iter().collect(),
            )
            .await?,
        );
        Ok(all)
    }

    /// One describe of FM's resources of a kind (`describe`, sent through
    /// the gate as `action`), and what `items` picks out of its answer as
    /// `OwnedResource`s.
    async fn describe_owned<R, T, E, F, Fut>(
        &self,
        g: &Gate,
        action: &str,
        describe: F,
        items: fn(&T) -> Vec<&R>,
    ) -> Result<Vec<OwnedResource>>
    where
        R: Owned,
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let out = self.send(g, Class::Describe, action, describe).await?;
        Ok(items(&out)
            .into_iter()
            .map(|r| OwnedResource {
                kind: R::KIND,
                cloud_id: r.cloud_id().unwrap_or_default().into(),
                owner_id: tag_value(r.tag_list(), R::OWNER_TAG).unwrap_or_default(),
                logical_id: R::LOGICAL_TAG.and_then(|k| tag_value(r.tag_list(), k)),
                live: r.live(),
            })
            .collect())
    }
}
