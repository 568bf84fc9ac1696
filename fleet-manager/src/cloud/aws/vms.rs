//! FM's VMs as EC2 instances: `RunInstances` and the VM's life after it
//! (state, start, stop, terminate, address).
//!
//! Invariants: a VM is FM's by `fleet-manager:vm` (its logical id), and one
//! terminated or shutting down counts as gone. `RunInstances` carries a
//! `ClientToken` from the VM id and goes through `create_once`, so a lost
//! answer never makes a second VM; it runs only once the data volume
//! exists, and the VM boots with the script that mounts it (user-data).
//! IMDSv2 is required on every VM. The root volume is left as the image
//! has it unless the instance's settings ask otherwise.

use super::AwsCloud;
use super::boot;
use super::gate::{Class, Gate};
use super::retry::already;
use super::tags::{TAG_VM, client_token, tag_filter};
use super::volumes::{DEFAULT_VOLUME_TYPE, takes_iops};
use crate::cloud::{CloudProvider, Placement, VmSpec, VmState};
use crate::error::{Error, OpFailure, Result};
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification, Instance,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceStateName, InstanceType, ResourceType,
    VolumeType,
};
use std::time::Duration;

/// The instance type of an instance whose settings name none.
const DEFAULT_INSTANCE_TYPE: &str = "m5.xlarge";
/// The root device of an image EC2 tells none for.
const DEFAULT_ROOT_DEVICE: &str = "/dev/xvda";
/// How often and how many times starting a VM still stopping is retried
/// (2 minutes).
const START_POLL: Duration = Duration::from_millis(500);
const START_TRIES: u32 = 240;

/// What `RunInstances` needs that takes a look-up first.
struct Looked {
    /// The agent's image in the region.
    ami: String,
    /// The security groups: the instance's and the one FM made, if any.
    groups: Vec<String>,
    /// The image's root device, when the root volume is not the image's.
    root_device: Option<String>,
}

/// Whether the instance's settings ask for a root volume other than the
/// image's.
fn custom_root(at: &Placement) -> bool {
    let root = &at.root_volume;
    root.size_gb.is_some() || root.volume_type.is_some() || at.encrypted
}

impl AwsCloud {
    /// The VM FM named `vm_id`, unless terminated or on its way there.
    async fn describe_vm(&self, g: &Gate, vm_id: &str) -> Result<Option<Instance>> {
        let out = self
            .send(g, Class::Describe, "DescribeInstances", || {
                g.client
                    .describe_instances()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_VM, vm_id))
                    .send()
            })
            .await?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| {
                i.instance_id().is_some()
                    && !matches!(
                        i.state().and_then(|s| s.name()),
                        None | Some(
                            InstanceStateName::Terminated | InstanceStateName::ShuttingDown
                        )
                    )
            })
            .cloned())
    }

    /// The VM FM named `vm_id` unless terminated: (instance id, state).
    async fn find_vm(&self, g: &Gate, vm_id: &str) -> Result<Option<(String, InstanceStateName)>> {
        Ok(self.describe_vm(g, vm_id).await?.and_then(|i| {
            let state = i.state()?.name()?.clone();
            Some((i.instance_id()?.to_string(), state))
        }))
    }

    async fn vm_address(&self, g: &Gate, vm_id: &str) -> Result<Option<String>> {
        Ok(self.describe_vm(g, vm_id).await?.and_then(|i| {
            i.public_ip_address()
                .or(i.private_ip_address())
                .map(str::to_string)
        }))
    }

    /// The URL of the node on port `port` of the VM: on the shared host
    /// with an emulator, else at the VM's public (or private) address.
    pub(super) async fn vm_url(&self, at: &Placement, vm_id: &str, port: u16) -> Result<String> {
        if let Some(host) = &self.settings.node_host {
            return Ok(format!("http://{host}:{port}"));
        }
        let g = self.gate(at).await?;
        let addr = self
            .vm_address(&g, vm_id)
            .await?
            .ok_or_else(|| Error::internal(format!("VM {vm_id} has no address")))?;
        Ok(format!("http://{addr}:{port}"))
    }

    /// The image's root device (`/dev/xvda`, `/dev/sda1`, ...), where the
    /// root volume options go.
    async fn root_device(&self, g: &Gate, ami: &str) -> Result<String> {
        let _one = self.shared_lookup.lock().await;
        if let Some(d) = self
            .root_devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ami)
        {
            return Ok(d.clone());
        }
        let out = self
            .send(g, Class::Describe, "DescribeImages", || {
                g.client.describe_images().image_ids(ami).send()
            })
            .await?;
        let device = out
            .images()
            .first()
            .and_then(|i| i.root_device_name())
            .unwrap_or(DEFAULT_ROOT_DEVICE)
            .to_string();
        self.root_devices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ami.to_string(), device.clone());
        Ok(device)
    }

    fn ami(&self, region: &str) -> Result<String> {
        self.settings
            .amis
            .get(region)
            .or_else(|| self.settings.amis.get("*"))
            .cloned()
            .ok_or_else(|| {
                Error::op_failed(
                    OpFailure::NoImageForRegion,
                    format!(
                        "no agent image (AMI) is configured for region {region}; set FM_AWS_AMIS"
                    ),
                )
            })
    }

    /// Makes (or finds) the VM, attaches the data volume and gives it its
    /// address; a stopped VM is started.
    pub(super) async fn ensure_instance(&self, at: &Placement, spec: &VmSpec) -> Result<()> {
        let g = self.gate(at).await?;
        let instance = match self.find_vm(&g, &spec.vm_id).await? {
            Some((id, InstanceStateName::Stopped | InstanceStateName::Stopping)) => {
                self.start_instance(at, &spec.vm_id).await?;
                id
            }
            Some((id, _)) => id,
            None => {
                if spec.user_data.is_empty() {
                    return Err(Error::internal(format!(
                        "VM {} is gone and there is no user-data to boot a new one",
                        spec.vm_id
                    )));
                }
                let known = self.known_volume(at, &spec.volume_id);
                let volume_cloud = match known {
                    Some(id) => Some(id),
                    None => self.find_volume(&g, &spec.volume_id).await?.map(|v| v.id),
                }
                .ok_or_else(|| {
                    Error::internal(format!("data volume {} does not exist", spec.volume_id))
                })?;
                self.run_instance(&g, at, spec, &volume_cloud).await?
            }
        };
        self.attach_volume(&g, at, &instance, &spec.volume_id)
            .await?;
        self.elastic_ip(&g, at, &instance).await
    }

    /// Launches the VM (once), booting with the data volume
    /// `volume_cloud`: EC2's instance id.
    async fn run_instance(
        &self,
        g: &Gate,
        at: &Placement,
        spec: &VmSpec,
        volume_cloud: &str,
    ) -> Result<String> {
        let ami = self.ami(&at.region)?;
        let sg = self.security_group(g, at).await?;
        let groups = at.security_groups.iter().cloned().chain(sg).collect();
        let root_device = if custom_root(at) {
            Some(self.root_device(g, &ami).await?)
        } else {
            None
        };
        let looked = Looked {
            ami,
            groups,
            root_device,
        };
        let req = self.instance_request(g, at, spec, volume_cloud, looked);
        self.create_once(
            g,
            Class::RunInstances,
            "RunInstances",
            || {
                let r = req.clone();
                async move {
                    r.send().await.map(|o| {
                        o.instances()
                            .first()
                            .and_then(|i| i.instance_id())
                            .unwrap_or_default()
                            .to_string()
                    })
                }
            },
            || async { Ok(self.find_vm(g, &spec.vm_id).await?.map(|v| v.0)) },
        )
        .await
    }

    /// The `RunInstances` request for the VM: one instance of the agent's
    /// image, booting with the data volume `volume_cloud`, tagged (it and
    /// its root volume) as FM's VM `spec.vm_id`.
    fn instance_request(
        &self,
        g: &Gate,
        at: &Placement,
        spec: &VmSpec,
        volume_cloud: &str,
        looked: Looked,
    ) -> RunInstancesFluentBuilder {
        let layout = self.layout(&spec.vm_id, &spec.volume_id);
        let user_data = boot::user_data(&spec.user_data, volume_cloud, &layout.data_dir);
        let Looked {
            ami,
            groups,
            root_device,
        } = looked;
        let mut req = g
            .client
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(
                at.instance_type.as_deref().unwrap_or(DEFAULT_INSTANCE_TYPE),
            ))
            .min_count(1)
            .max_count(1)
            .user_data(user_data)
            .client_token(client_token("vm", &spec.vm_id))
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .set_key_name(at.key_pair.clone())
            .tag_specifications(self.tag_spec(at, ResourceType::Instance, (TAG_VM, &spec.vm_id)))
            .tag_specifications(self.tag_spec(at, ResourceType::Volume, (TAG_VM, &spec.vm_id)));
        // The root volume as the image has it, unless the instance asks for
        // something else.
        if let Some(device) = root_device {
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(root_volume(at))
                    .build(),
            );
        }
        if let Some(arn) = &at.instance_profile_arn {
            req = req
                .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
        }
        let groups = (!groups.is_empty()).then_some(groups);
        if at.assign_public_ip {
            req.network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .set_subnet_id(at.subnet_id.clone())
                    .set_groups(groups)
                    .associate_public_ip_address(true)
                    .build(),
            )
        } else {
            req.set_subnet_id(at.subnet_id.clone())
                .set_security_group_ids(groups)
        }
    }

    /// Whether the VM runs: missing when FM has none by that name (or it is
    /// terminated), running while pending too, else stopped.
    pub(super) async fn instance_state(&self, at: &Placement, vm_id: &str) -> Result<VmState> {
        let g = self.gate(at).await?;
        Ok(match self.find_vm(&g, vm_id).await? {
            None => VmState::Missing,
            Some((_, InstanceStateName::Pending | InstanceStateName::Running)) => VmState::Running,
            Some(_) => VmState::Stopped,
        })
    }

    /// Checks the identity document an enrolling agent presents: signed by
    /// a trusted certificate, naming the EC2 instance FM launched as
    /// `vm_id` (pending or running), in the placement's region.
    pub(super) async fn attest_instance(
        &self,
        at: &Placement,
        vm_id: &str,
        ev: &crate::cloud::Evidence,
    ) -> Result<()> {
        if !self.settings.attestation {
            return Ok(());
        }
        let doc = self
            .settings
            .identity_certs
            .verify(&ev.document, &ev.signature)?;
        let g = self.gate(at).await?;
        let launched = match self.find_vm(&g, vm_id).await? {
            Some((id, InstanceStateName::Pending | InstanceStateName::Running)) => id,
            _ => {
                return Err(Error::invalid(format!(
                    "VM {vm_id} is not running in EC2: nothing to enroll"
                )));
            }
        };
        if doc.instance_id != launched {
            return Err(Error::invalid(format!(
                "the identity document is EC2 instance {}'s, not {launched} (VM {vm_id})",
                doc.instance_id
            )));
        }
        if doc.region != at.region {
            return Err(Error::invalid(format!(
                "the identity document is from region {}, not {}",
                doc.region, at.region
            )));
        }
        Ok(())
    }

    /// Starts the VM unless it runs, waiting while it is still stopping.
    pub(super) async fn start_instance(&self, at: &Placement, vm_id: &str) -> Result<()> {
        let g = self.gate(at).await?;
        let (id, state) = self
            .find_vm(&g, vm_id)
            .await?
            .ok_or_else(|| Error::invalid(format!("VM '{vm_id}' does not exist")))?;
        if matches!(
            state,
            InstanceStateName::Running | InstanceStateName::Pending
        ) {
            return Ok(());
        }
        // A VM still stopping can't start yet.
        for _ in 0..START_TRIES {
            let r = self
                .send(&g, Class::Mutating, "StartInstances", || {
                    g.client.start_instances().instance_ids(&id).send()
                })
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(Error::OperationFailed { error_type, .. })
                    if error_type == "IncorrectInstanceState" =>
                {
                    tokio::time::sleep(START_POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::op_failed(
            OpFailure::IncorrectInstanceState,
            format!("VM {vm_id} did not become startable in 2 minutes"),
        ))
    }

    /// Stops the VM unless it is stopped, stopping or missing.
    pub(super) async fn stop_instance(&self, at: &Placement, vm_id: &str) -> Result<()> {
        let g = self.gate(at).await?;
        let Some((id, state)) = self.find_vm(&g, vm_id).await? else {
            return Ok(());
        };
        if matches!(
            state,
            InstanceStateName::Stopped | InstanceStateName::Stopping
        ) {
            return Ok(());
        }
        self.send(&g, Class::Mutating, "StopInstances", || {
            g.client.stop_instances().instance_ids(&id).send()
        })
        .await?;
        Ok(())
    }

    /// Terminates the VM; a missing one is fine.
    pub(super) async fn terminate_instance(&self, at: &Placement, vm_id: &str) -> Result<()> {
        let g = self.gate(at).await?;
        let Some((id, _)) = self.find_vm(&g, vm_id).await? else {
            return Ok(());
        };
        let r = self
            .send(&g, Class::Mutating, "TerminateInstances", || {
                g.client.terminate_instances().instance_ids(&id).send()
            })
            .await;
        already(r, "InvalidInstanceID.NotFound")
    }
}

/// The root volume the instance's settings ask for, deleted with the VM.
fn root_volume(at: &Placement) -> EbsBlockDevice {
    let root = &at.root_volume;
    let root_type = root
        .volume_type
        .clone()
        .unwrap_or_else(|| DEFAULT_VOLUME_TYPE.into());
    let mut ebs = EbsBlockDevice::builder()
        .delete_on_termination(true)
        .volume_type(VolumeType::from(root_type.as_str()))
        .set_volume_size(root.size_gb.map(|s| s as i32));
    if takes_iops(&root_type) {
        ebs = ebs.set_iops(root.iops.map(|v| v as i32));
    }
    if at.encrypted {
        ebs = ebs.encrypted(true).set_kms_key_id(at.kms_key_id.clone());
    }
    ebs.build()
}
