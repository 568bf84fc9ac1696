//! The `aws` cloud: instances, volumes, snapshots, security groups and
//! addresses on EC2, through the AWS SDK.
//!
//! Every resource FM makes carries FM's ownership tags (`fleet-manager:owner`
//! naming this FM, `fleet-manager:instance`, and the logical id FM chose:
//! `fleet-manager:vm`, `fleet-manager:volume`, `fleet-manager:snapshot`,
//! `fleet-manager:network`). Before creating anything, FM looks it up by
//! those tags, so a step retried after a lost answer or resumed after a
//! crash finds what its first attempt made; mutating calls that accept one
//! also carry a `ClientToken` derived from the logical id, which the plan
//! step persisted before any call.
//!
//! Calls go through one gate per account and region: a client-side token
//! bucket sized by EC2's published request buckets, and retries with
//! jittered exponential backoff on throttling and server errors. Errors no
//! retry can fix come back with AWS's code and message.

use super::{
    CloudAuth, CloudProvider, ElasticIp, OwnedResource, Placement, VmLayout, VmSpec, VmState,
};
use crate::error::{Error, Result};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, DomainType, EbsBlockDevice, Filter, HttpTokensState,
    IamInstanceProfileSpecification, Instance, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceNetworkInterfaceSpecification, InstanceStateName,
    InstanceType, IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair,
    VolumeState, VolumeType,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TAG_OWNER: &str = "fleet-manager:owner";
pub const TAG_TENANT: &str = "fleet-manager:tenant";
pub const TAG_INSTANCE: &str = "fleet-manager:instance";
pub const TAG_VM: &str = "fleet-manager:vm";
pub const TAG_VOLUME: &str = "fleet-manager:volume";
pub const TAG_SNAPSHOT: &str = "fleet-manager:snapshot";
pub const TAG_NETWORK: &str = "fleet-manager:network";

/// The device the data volume is attached as.
const DATA_DEVICE: &str = "/dev/sdf";

/// Settings of the `aws` provider.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// An endpoint for every AWS service (an emulator); `AWS_ENDPOINT_URL`
    /// is honoured too.
    pub endpoint_url: Option<String>,
    /// The agent's base image per region; `*` for any region.
    pub amis: std::collections::BTreeMap<String, String>,
    /// The value of the `fleet-manager:owner` tag: which FM owns what.
    pub owner: String,
    /// Emulators only: every node runs on this host (one machine plays
    /// every VM), so nodes' URLs point at it and ports must not collide.
    pub node_host: Option<String>,
    /// The TCP ports nodes listen on, opened in auto-created groups.
    pub node_ports: (u16, u16),
    /// How many attempts a throttled or failing call gets.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling; doubles each attempt up to 20 s.
    pub base_backoff: Duration,
}

/// EC2's request-rate classes, each a token bucket (burst, refill per
/// second), as EC2 publishes them per account and region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Class {
    RunInstances,
    Mutating,
    Describe,
}

impl Class {
    fn bucket(self) -> (f64, f64) {
        match self {
            Class::RunInstances => (5.0, 2.0),
            Class::Mutating => (200.0, 5.0),
            Class::Describe => (100.0, 20.0),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    burst: f64,
    rate: f64,
}

/// A client and its rate limits, per account identity and region.
#[derive(Debug)]
struct Gate {
    client: Client,
    buckets: Mutex<HashMap<Class, Bucket>>,
}

impl Bucket {
    fn new(class: Class, now: Instant) -> Bucket {
        let (burst, rate) = class.bucket();
        Bucket {
            tokens: burst,
            last: now,
            burst,
            rate,
        }
    }

    /// Takes a token at `now`, or tells how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

impl Gate {
    async fn take(&self, class: Class) {
        loop {
            let wait = {
                let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match b
                    .entry(class)
                    .or_insert_with(|| Bucket::new(class, now))
                    .take(now)
                {
                    None => return,
                    Some(w) => w,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// What went wrong with one call, read off the SDK's error.
#[derive(Debug)]
struct Fault {
    code: Option<String>,
    message: String,
    retryable: bool,
}

fn fault<E>(e: SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().map(str::to_string);
    let status = e.raw_response().map(|r| r.status().as_u16());
    let message = e
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| aws_sdk_ec2::error::DisplayErrorContext(&e).to_string());
    let transient_code = code.as_deref().is_some_and(|c| {
        matches!(
            c,
            "RequestLimitExceeded"
                | "Throttling"
                | "ThrottlingException"
                | "InternalError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "Unavailable"
                | "RequestTimeout"
        )
    });
    let retryable = transient_code
        || status.is_some_and(|s| s >= 500 || s == 429)
        || matches!(
            e,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
    Fault {
        code,
        message,
        retryable,
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag_filter(key: &str, value: &str) -> Filter {
    filter(&format!("tag:{key}"), value)
}

/// A `ClientToken` for creating `what` named `id`: the same for every
/// attempt of the step that chose `id`, at most 64 ASCII characters.
fn client_token(what: &str, id: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{what}:{id}").as_bytes());
    format!("fm-{}", &hex::encode(h)[..48])
}

/// FM's own region, VPC and subnet from the instance metadata service, when
/// FM runs on EC2 (`None` elsewhere, within about two seconds).
pub async fn own_network_from_imds() -> Option<crate::model::network::NetworkDefaults> {
    let imds = aws_config::imds::Client::builder()
        .max_attempts(1)
        .connect_timeout(Duration::from_millis(500))
        .build();
    let get = |path: String| {
        let imds = imds.clone();
        async move { imds.get(path).await.ok().map(|v| v.as_ref().to_string()) }
    };
    let lookup = async {
        let region = get("/latest/meta-data/placement/region".into()).await?;
        let mac = get("/latest/meta-data/mac".into()).await?;
        let base = format!("/latest/meta-data/network/interfaces/macs/{mac}");
        let vpc_id = get(format!("{base}/vpc-id")).await?;
        let subnet_id = get(format!("{base}/subnet-id")).await?;
        Some(crate::model::network::NetworkDefaults {
            region,
            vpc_id,
            subnet_id,
        })
    };
    tokio::time::timeout(Duration::from_secs(2), lookup)
        .await
        .ok()
        .flatten()
}

/// The cloud-init script that bootstraps a VM: mounts the data volume,
/// writes the agent's settings and starts `fm-agent`.
pub fn render_boot_script(agent_toml: &str, volume_cloud_id: &str, mount: &str) -> String {
    include_str!("../../../templates/aws-user-data.sh")
        .replace("{{volume_id}}", volume_cloud_id)
        .replace("{{mount}}", mount)
        .replace("{{agent_toml}}", agent_toml.trim_end())
}

/// The result of a call whose goal already holds when EC2 answers `code`
/// (deleting what is gone, adding a rule that is there): that answer is
/// success.
fn already<T>(r: Result<T>, code: &str) -> Result<()> {
    match r {
        Err(Error::OperationFailed { error_type, .. }) if error_type == code => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Reads the agent's settings back out of a boot script (the emulator's
/// VM player uses the same markers).
pub fn agent_toml_of(script: &str) -> Option<&str> {
    let start = script.find("<<'FM_AGENT_TOML'\n")? + "<<'FM_AGENT_TOML'\n".len();
    let len = script[start..].find("\nFM_AGENT_TOML\n")?;
    Some(&script[start..start + len])
}

/// A data volume as EC2 describes it.
#[derive(Debug, Clone)]
struct VolumeInfo {
    id: String,
    state: VolumeState,
    attached_to: Option<String>,
    size_gb: u64,
}

#[derive(Debug)]
pub struct AwsCloud {
    settings: AwsSettings,
    gates: tokio::sync::Mutex<HashMap<(CloudAuth, String), Arc<Gate>>>,
    /// Subnet → availability zone (never changes).
    zones: Mutex<HashMap<String, String>>,
    /// (region, network) → the security group FM made for it.
    groups: Mutex<HashMap<(String, String), String>>,
    /// Serializes the first look-up of what many instances share (a
    /// subnet's zone, a network's group), so a fleet provisioned at once
    /// asks EC2 once.
    shared_lookup: tokio::sync::Mutex<()>,
    /// (region, FM's volume id) → EC2's volume id, for volumes FM found or
    /// made; forgotten when deleted.
    volume_ids: Mutex<HashMap<(String, String), String>>,
    /// AMI → its root device name.
    root_devices: Mutex<HashMap<String, String>>,
}

impl AwsCloud {
    pub fn new(settings: AwsSettings) -> AwsCloud {
        AwsCloud {
            settings,
            gates: tokio::sync::Mutex::new(HashMap::new()),
            zones: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            shared_lookup: tokio::sync::Mutex::new(()),
            volume_ids: Mutex::new(HashMap::new()),
            root_devices: Mutex::new(HashMap::new()),
        }
    }

    async fn gate(&self, at: &Placement) -> Result<Arc<Gate>> {
        if at.region.is_empty() {
            return Err(Error::invalid(format!(
                "the virtual network of instance '{}' names no AWS region",
                at.instance_id
            )));
        }
        let key = (at.auth.clone(), at.region.clone());
        let mut gates = self.gates.lock().await;
        if let Some(g) = gates.get(&key) {
            return Ok(g.clone());
        }
        let loader = || {
            let mut l = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(at.region.clone()))
                .retry_config(aws_config::retry::RetryConfig::disabled())
                // A hung connection is a failed attempt, retried like one.
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(Duration::from_secs(60))
                        .build(),
                );
            if let Some(ep) = &self.settings.endpoint_url {
                l = l.endpoint_url(ep.clone());
            }
            l
        };
        let conf = match &at.auth {
            CloudAuth::Default => loader().load().await,
            CloudAuth::Keypair {
                access_key_id,
                secret_access_key,
            } => {
                loader()
                    .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                        access_key_id.clone(),
                        secret_access_key.0.clone(),
                        None,
                        None,
                        "fleet-manager",
                    ))
                    .load()
                    .await
            }
            CloudAuth::Role { arn } => {
                let base = loader().load().await;
                let role = aws_config::sts::AssumeRoleProvider::builder(arn.clone())
                    .session_name("fleet-manager")
                    .configure(&base)
                    .build()
                    .await;
                loader().credentials_provider(role).load().await
            }
        };
        let g = Arc::new(Gate {
            client: Client::new(&conf),
            buckets: Mutex::new(HashMap::new()),
        });
        gates.insert(key, g.clone());
        Ok(g)
    }

    /// Sends one request through the gate: waits for a token of its class,
    /// retries throttling and server errors with full-jitter exponential
    /// backoff, and turns other errors into a failed operation carrying
    /// AWS's code and message. For requests that are safe to repeat.
    async fn send<T, E, F, Fut>(&self, g: &Gate, class: Class, action: &str, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0u32;
        loop {
            g.take(class).await;
            let e = match f().await {
                Ok(v) => return Ok(v),
                Err(e) => fault(e),
            };
            attempt += 1;
            self.retry_or_fail(action, e, attempt).await?;
        }
    }

    /// Creates a resource that must exist once: a create whose answer was
    /// lost may have happened (and the emulator ignores `ClientToken`;
    /// `CreateSnapshot` takes none), so before each retry this looks for
    /// what an earlier attempt made, by FM's tags.
    async fn create_once<E, F, Fut, G, GFut>(
        &self,
        g: &Gate,
        class: Class,
        action: &str,
        create: F,
        find: G,
    ) -> Result<String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<String, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        G: Fn() -> GFut,
        GFut: Future<Output = Result<Option<String>>>,
    {
        let mut attempt = 0u32;
        loop {
            if attempt > 0
                && let Some(id) = find().await?
            {
                return Ok(id);
            }
            g.take(class).await;
            let e = match create().await {
                Ok(id) => return Ok(id),
                Err(e) => fault(e),
            };
            attempt += 1;
            self.retry_or_fail(action, e, attempt).await?;
        }
    }

    /// Sleeps before the next attempt, or gives the error up.
    async fn retry_or_fail(&self, action: &str, e: Fault, attempt: u32) -> Result<()> {
        if !e.retryable || attempt >= self.settings.max_attempts.max(1) {
            let code = e.code.clone().unwrap_or_else(|| "AwsError".into());
            return Err(Error::OperationFailed {
                error_type: code.clone(),
                message: format!("EC2 {action} failed: {code}: {}", e.message),
            });
        }
        let ceiling = self
            .settings
            .base_backoff
            .saturating_mul(1 << attempt.min(10))
            .min(Duration::from_secs(20));
        let wait = ceiling.mul_f64(rand::random::<f64>());
        tracing::debug!(action, code = ?e.code, attempt, ?wait, "EC2 call retried");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn tags(&self, at: &Placement, kind: (&str, &str)) -> Vec<Tag> {
        let mut t: Vec<Tag> = at
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("fleet-manager:") && !k.starts_with("aws:"))
            .map(|(k, v)| tag(k, v))
            .collect();
        if !at.tags.contains_key("Name") && !at.label.is_empty() {
            t.push(tag("Name", &at.label));
        }
        t.push(tag(TAG_OWNER, &self.settings.owner));
        t.push(tag(TAG_TENANT, &at.tenant_id));
        t.push(tag(TAG_INSTANCE, &at.instance_id));
        // EC2 refuses a key twice.
        if kind.0 != TAG_INSTANCE {
            t.push(tag(kind.0, kind.1));
        }
        t
    }

    fn tag_spec(&self, at: &Placement, rt: ResourceType, kind: (&str, &str)) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(rt)
            .set_tags(Some(self.tags(at, kind)))
            .build()
    }

    fn owner_filter(&self) -> Filter {
        tag_filter(TAG_OWNER, &self.settings.owner)
    }

    async fn zone_of(&self, g: &Gate, at: &Placement) -> Result<String> {
        let subnet = at.subnet_id.clone().ok_or_else(|| {
            Error::invalid(format!(
                "the virtual network of instance '{}' names no subnet",
                at.instance_id
            ))
        })?;
        let cached = || {
            self.zones
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&subnet)
                .cloned()
        };
        if let Some(z) = cached() {
            return Ok(z);
        }
        let _one = self.shared_lookup.lock().await;
        if let Some(z) = cached() {
            return Ok(z);
        }
        let out = self
            .send(g, Class::Describe, "DescribeSubnets", || {
                g.client.describe_subnets().subnet_ids(&subnet).send()
            })
            .await?;
        let zone = out
            .subnets()
            .first()
            .and_then(|s| s.availability_zone())
            .ok_or_else(|| Error::invalid(format!("subnet '{subnet}' does not exist")))?
            .to_string();
        self.zones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subnet, zone.clone());
        Ok(zone)
    }

    /// The live volume FM named `volume_id`.
    async fn find_volume(&self, g: &Gate, volume_id: &str) -> Result<Option<VolumeInfo>> {
        let out = self
            .send(g, Class::Describe, "DescribeVolumes", || {
                g.client
                    .describe_volumes()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_VOLUME, volume_id))
                    .send()
            })
            .await?;
        Ok(out
            .volumes()
            .iter()
            .find(|v| {
                !matches!(
                    v.state(),
                    Some(VolumeState::Deleting | VolumeState::Deleted | VolumeState::Error)
                )
            })
            .map(|v| VolumeInfo {
                id: v.volume_id().unwrap_or_default().to_string(),
                state: v.state().cloned().unwrap_or(VolumeState::Available),
                attached_to: v
                    .attachments()
                    .iter()
                    .find(|a| {
                        !matches!(
                            a.state(),
                            Some(aws_sdk_ec2::types::VolumeAttachmentState::Detached)
                        )
                    })
                    .and_then(|a| a.instance_id())
                    .map(str::to_string),
                size_gb: v.size().unwrap_or(0).max(0) as u64,
            }))
    }

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

    fn volume_request(
        &self,
        g: &Gate,
        at: &Placement,
        zone: &str,
        volume_id: &str,
        snapshot: Option<&str>,
    ) -> aws_sdk_ec2::operation::create_volume::builders::CreateVolumeFluentBuilder {
        let d = &at.data_volume;
        let vt = d.volume_type.clone().unwrap_or_else(|| "gp3".into());
        let mut r = g
            .client
            .create_volume()
            .availability_zone(zone)
            .volume_type(VolumeType::from(vt.as_str()))
            .client_token(client_token("volume", volume_id))
            .tag_specifications(self.tag_spec(at, ResourceType::Volume, (TAG_VOLUME, volume_id)));
        r = match snapshot {
            Some(s) => r.snapshot_id(s).set_size(d.size_gb.map(|s| s as i32)),
            None => r.size(d.size_gb.unwrap_or(50) as i32),
        };
        if matches!(vt.as_str(), "io1" | "io2" | "gp3") {
            r = r.set_iops(d.iops.map(|v| v as i32));
        }
        if vt == "gp3" {
            r = r.set_throughput(d.throughput.map(|v| v as i32));
        }
        if at.encrypted {
            r = r.encrypted(true).set_kms_key_id(at.kms_key_id.clone());
        }
        r
    }

    async fn create_volume(
        &self,
        at: &Placement,
        volume_id: &str,
        snapshot: Option<&str>,
    ) -> Result<()> {
        let g = self.gate(at).await?;
        if let Some(v) = self.find_volume(&g, volume_id).await? {
            self.remember_volume(at, volume_id, Some(v.id));
            return Ok(());
        }
        let zone = self.zone_of(&g, at).await?;
        let req = self.volume_request(&g, at, &zone, volume_id, snapshot);
        let id = self
            .create_once(
                &g,
                Class::Mutating,
                "CreateVolume",
                || {
                    let r = req.clone();
                    async move {
                        r.send()
                            .await
                            .map(|o| o.volume_id().unwrap_or_default().to_string())
                    }
                },
                || async { Ok(self.find_volume(&g, volume_id).await?.map(|v| v.id)) },
            )
            .await?;
        self.remember_volume(at, volume_id, Some(id));
        Ok(())
    }

    /// Notes (or, with `None`, forgets) EC2's id of one of FM's volumes.
    fn remember_volume(&self, at: &Placement, volume_id: &str, cloud_id: Option<String>) {
        let mut m = self.volume_ids.lock().unwrap_or_else(|p| p.into_inner());
        let key = (at.region.clone(), volume_id.to_string());
        match cloud_id {
            Some(id) => m.insert(key, id),
            None => m.remove(&key),
        };
    }

    fn known_volume(&self, at: &Placement, volume_id: &str) -> Option<String> {
        self.volume_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(at.region.clone(), volume_id.to_string()))
            .cloned()
    }

    /// A snapshot is usable once EC2 has finished it (it is taken at the
    /// call; the copy completes later).
    async fn wait_snapshot_completed(&self, g: &Gate, snapshot: &str) -> Result<()> {
        use aws_sdk_ec2::types::SnapshotState;
        for _ in 0..720 {
            let out = self
                .send(g, Class::Describe, "DescribeSnapshots", || {
                    g.client.describe_snapshots().snapshot_ids(snapshot).send()
                })
                .await?;
            match out.snapshots().first().and_then(|s| s.state()) {
                Some(SnapshotState::Completed) => return Ok(()),
                Some(SnapshotState::Error) => {
                    return Err(Error::OperationFailed {
                        error_type: "SnapshotFailed".into(),
                        message: format!("EC2 snapshot {snapshot} is in state error"),
                    });
                }
                None => {
                    return Err(Error::invalid(format!(
                        "snapshot '{snapshot}' does not exist in EC2"
                    )));
                }
                Some(_) => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        }
        Err(Error::OperationFailed {
            error_type: "SnapshotPending".into(),
            message: format!("EC2 snapshot {snapshot} did not complete in an hour"),
        })
    }

    /// Waits until the volume is free to attach or delete (a VM's
    /// termination releases it after a while on EC2).
    async fn wait_volume_free(&self, g: &Gate, volume_id: &str) -> Result<Option<String>> {
        for _ in 0..240 {
            match self.find_volume(g, volume_id).await? {
                None => return Ok(None),
                Some(v) if v.state == VolumeState::Available => return Ok(Some(v.id)),
                // Attached to a VM that is gone or going: EC2 releases it
                // after a while.
                Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        Err(Error::OperationFailed {
            error_type: "VolumeBusy".into(),
            message: format!("data volume {volume_id} is still in use after 2 minutes"),
        })
    }

    async fn security_group(&self, g: &Gate, at: &Placement) -> Result<Option<String>> {
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
            .unwrap_or("10.0.0.0/8")
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

    async fn attach_volume(
        &self,
        g: &Gate,
        at: &Placement,
        instance: &str,
        volume: &str,
    ) -> Result<()> {
        // The usual case, one call: a volume this FM just made or found, free.
        if let Some(id) = self.known_volume(at, volume) {
            let r = self
                .send(g, Class::Mutating, "AttachVolume", || {
                    g.client
                        .attach_volume()
                        .device(DATA_DEVICE)
                        .instance_id(instance)
                        .volume_id(&id)
                        .send()
                })
                .await;
            if r.is_ok() {
                return Ok(());
            }
        }
        // Otherwise look: attached already (a lost answer), still held by
        // a VM on its way out, or gone.
        let volume_cloud = match self.find_volume(g, volume).await? {
            Some(v) if v.attached_to.as_deref() == Some(instance) => return Ok(()),
            Some(v) if v.state == VolumeState::Available => v.id,
            Some(_) => self
                .wait_volume_free(g, volume)
                .await?
                .ok_or_else(|| Error::internal(format!("data volume {volume} disappeared")))?,
            None => {
                return Err(Error::internal(format!(
                    "data volume {volume} does not exist"
                )));
            }
        };
        let r = self
            .while_starting(|| {
                self.send(g, Class::Mutating, "AttachVolume", || {
                    g.client
                        .attach_volume()
                        .device(DATA_DEVICE)
                        .instance_id(instance)
                        .volume_id(&volume_cloud)
                        .send()
                })
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // A lost answer: the first attempt attached it.
            Err(e) => match self.find_volume(g, volume).await? {
                Some(v) if v.attached_to.as_deref() == Some(instance) => Ok(()),
                _ => Err(e),
            },
        }
    }

    async fn elastic_ip(&self, g: &Gate, at: &Placement, instance: &str) -> Result<()> {
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

    /// Repeats a call EC2 refuses while a new instance is still `pending`
    /// (or not yet visible to every endpoint), for up to five minutes.
    async fn while_starting<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        for _ in 0..150 {
            match f().await {
                Err(Error::OperationFailed { error_type, .. })
                    if matches!(
                        error_type.as_str(),
                        "IncorrectState" | "IncorrectInstanceState" | "InvalidInstanceID.NotFound"
                    ) =>
                {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                other => return other,
            }
        }
        f().await
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
            .unwrap_or("/dev/xvda")
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
            .ok_or_else(|| Error::OperationFailed {
                error_type: "NoImageForRegion".into(),
                message: format!(
                    "no agent image (AMI) is configured for region {region}; set FM_AWS_AMIS"
                ),
            })
    }

    async fn run_instance(
        &self,
        g: &Gate,
        at: &Placement,
        spec: &VmSpec,
        volume_cloud: &str,
    ) -> Result<String> {
        let layout = self.layout(&spec.vm_id, &spec.volume_id);
        let mount = std::path::Path::new(&layout.data_dir)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/data".into());
        let script = render_boot_script(&spec.user_data, volume_cloud, &mount);
        let user_data = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(script)
        };
        let ami = self.ami(&at.region)?;
        let sg = self.security_group(g, at).await?;
        let image = ami.clone();
        let groups: Vec<String> = at.security_groups.iter().cloned().chain(sg).collect();
        let root = &at.root_volume;
        let root_type = root.volume_type.clone().unwrap_or_else(|| "gp3".into());
        let mut ebs = EbsBlockDevice::builder()
            .delete_on_termination(true)
            .volume_type(VolumeType::from(root_type.as_str()))
            .set_volume_size(root.size_gb.map(|s| s as i32));
        if matches!(root_type.as_str(), "io1" | "io2" | "gp3") {
            ebs = ebs.set_iops(root.iops.map(|v| v as i32));
        }
        if at.encrypted {
            ebs = ebs.encrypted(true).set_kms_key_id(at.kms_key_id.clone());
        }
        let mut req = g
            .client
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(
                at.instance_type.as_deref().unwrap_or("m5.xlarge"),
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
        if root.size_gb.is_some() || root.volume_type.is_some() || at.encrypted {
            let device = self.root_device(g, &ami).await?;
            req = req.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(ebs.build())
                    .build(),
            );
        }
        if let Some(arn) = &at.instance_profile_arn {
            req = req
                .iam_instance_profile(IamInstanceProfileSpecification::builder().arn(arn).build());
        }
        if at.assign_public_ip {
            req = req.network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .set_subnet_id(at.subnet_id.clone())
                    .set_groups((!groups.is_empty()).then_some(groups.clone()))
                    .associate_public_ip_address(true)
                    .build(),
            );
        } else {
            req = req
                .set_subnet_id(at.subnet_id.clone())
                .set_security_group_ids((!groups.is_empty()).then_some(groups.clone()));
        }
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

    async fn vm_address(&self, g: &Gate, vm_id: &str) -> Result<Option<String>> {
        Ok(self.describe_vm(g, vm_id).await?.and_then(|i| {
            i.public_ip_address()
                .or(i.private_ip_address())
                .map(str::to_string)
        }))
    }
}

#[async_trait::async_trait]
impl CloudProvider for AwsCloud {
    fn name(&self) -> &'static str {
        "aws"
    }

    /// The agent keeps its state on the root disk; the node's data dir is
    /// on the data volume, mounted at `/data`.
    fn layout(&self, _vm_id: &str, _volume_id: &str) -> VmLayout {
        VmLayout {
            state_dir: "/var/lib/fm-agent".into(),
            data_dir: "/data/dss_data".into(),
            home_dir: "/data".into(),
        }
    }

    fn shares_host(&self) -> bool {
        self.settings.node_host.is_some()
    }

    async fn public_url(&self, at: &Placement, vm_id: &str, port: u16) -> Result<String> {
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

    async fn check_network(&self, at: &Placement) -> Result<()> {
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

    async fn delete_network(&self, at: &Placement) -> Result<()> {
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
                        if error_type == "DependencyViolation" && tries < 60 =>
                    {
                        tries += 1;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn ensure_volume(&self, at: &Placement, volume_id: &str) -> Result<()> {
        self.create_volume(at, volume_id, None).await
    }

    async fn volume_from_snapshot(
        &self,
        at: &Placement,
        snapshot_ref: &str,
        volume_id: &str,
    ) -> Result<()> {
        let g = self.gate(at).await?;
        if self.find_volume(&g, volume_id).await?.is_none() {
            self.wait_snapshot_completed(&g, snapshot_ref).await?;
        }
        self.create_volume(at, volume_id, Some(snapshot_ref)).await
    }

    async fn delete_volume(&self, at: &Placement, volume_id: &str) -> Result<()> {
        let g = self.gate(at).await?;
        self.remember_volume(at, volume_id, None);
        let Some(id) = self.wait_volume_free(&g, volume_id).await? else {
            return Ok(());
        };
        let r = self
            .send(&g, Class::Mutating, "DeleteVolume", || {
                g.client.delete_volume().volume_id(&id).send()
            })
            .await;
        already(r, "InvalidVolume.NotFound")
    }

    async fn ensure_vm(&self, at: &Placement, spec: &VmSpec) -> Result<()> {
        let g = self.gate(at).await?;
        let instance = match self.find_vm(&g, &spec.vm_id).await? {
            Some((id, InstanceStateName::Stopped | InstanceStateName::Stopping)) => {
                self.start_vm(at, &spec.vm_id).await?;
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

    async fn vm_state(&self, at: &Placement, vm_id: &str) -> Result<VmState> {
        let g = self.gate(at).await?;
        Ok(match self.find_vm(&g, vm_id).await? {
            None => VmState::Missing,
            Some((_, InstanceStateName::Pending | InstanceStateName::Running)) => VmState::Running,
            Some(_) => VmState::Stopped,
        })
    }

    async fn start_vm(&self, at: &Placement, vm_id: &str) -> Result<()> {
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
        for _ in 0..240 {
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
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::OperationFailed {
            error_type: "IncorrectInstanceState".into(),
            message: format!("VM {vm_id} did not become startable in 2 minutes"),
        })
    }

    async fn stop_vm(&self, at: &Placement, vm_id: &str) -> Result<()> {
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

    async fn terminate_vm(&self, at: &Placement, vm_id: &str) -> Result<()> {
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

    async fn snapshot_volume(
        &self,
        at: &Placement,
        volume_id: &str,
        snapshot_id: &str,
    ) -> Result<(String, u64)> {
        let g = self.gate(at).await?;
        let find = || async {
            let out = self
                .send(&g, Class::Describe, "DescribeSnapshots", || {
                    g.client
                        .describe_snapshots()
                        .owner_ids("self")
                        .filters(self.owner_filter())
                        .filters(tag_filter(TAG_SNAPSHOT, snapshot_id))
                        .send()
                })
                .await?;
            Ok::<_, Error>(
                out.snapshots()
                    .first()
                    .map(|s| s.snapshot_id().unwrap_or_default().to_string()),
            )
        };
        let existing = find().await?;
        let volume = match (self.find_volume(&g, volume_id).await?, existing) {
            (Some(v), None) => v,
            (v, Some(found)) => return Ok((found, v.map(|v| v.size_gb << 30).unwrap_or(0))),
            (None, None) => {
                return Err(Error::invalid(format!(
                    "data volume {volume_id} does not exist"
                )));
            }
        };
        let size = volume.size_gb << 30;
        let spec = self.tag_spec(at, ResourceType::Snapshot, (TAG_SNAPSHOT, snapshot_id));
        let id = self
            .create_once(
                &g,
                Class::Mutating,
                "CreateSnapshot",
                || {
                    let r = g
                        .client
                        .create_snapshot()
                        .volume_id(&volume.id)
                        .description(format!("Fleet Manager snapshot {snapshot_id}"))
                        .tag_specifications(spec.clone());
                    async move {
                        r.send()
                            .await
                            .map(|o| o.snapshot_id().unwrap_or_default().to_string())
                    }
                },
                find,
            )
            .await?;
        Ok((id, size))
    }

    async fn delete_snapshot(&self, at: &Placement, snapshot_ref: &str) -> Result<()> {
        let g = self.gate(at).await?;
        let r = self
            .send(&g, Class::Mutating, "DeleteSnapshot", || {
                g.client.delete_snapshot().snapshot_id(snapshot_ref).send()
            })
            .await;
        already(r, "InvalidSnapshot.NotFound")
    }

    async fn release_instance(&self, at: &Placement) -> Result<()> {
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

    async fn volumes_of_instance(&self, at: &Placement) -> Result<Vec<String>> {
        let g = self.gate(at).await?;
        let out = self
            .send(&g, Class::Describe, "DescribeVolumes", || {
                g.client
                    .describe_volumes()
                    .filters(self.owner_filter())
                    .filters(tag_filter(TAG_INSTANCE, &at.instance_id))
                    .filters(filter("tag-key", TAG_VOLUME))
                    .send()
            })
            .await?;
        Ok(out
            .volumes()
            .iter()
            .filter_map(|v| {
                v.tags()
                    .iter()
                    .find(|t| t.key() == Some(TAG_VOLUME))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            })
            .collect())
    }

    async fn owned_resources(&self, at: &Placement) -> Result<Vec<OwnedResource>> {
        let g = self.gate(at).await?;
        let tag_of = |tags: &[Tag], k: &str| {
            tags.iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        let mut all = vec![];
        // Every page: a large account has more than one.
        let pages = self
            .send(&g, Class::Describe, "DescribeInstances", || {
                g.client
                    .describe_instances()
                    .filters(self.owner_filter())
                    .into_paginator()
                    .send()
                    .try_collect()
            })
            .await?;
        for i in pages
            .iter()
            .flat_map(|p| p.reservations())
            .flat_map(|r| r.instances())
        {
            let state = i.state().and_then(|s| s.name()).cloned();
            all.push(OwnedResource {
                kind: "instance",
                cloud_id: i.instance_id().unwrap_or_default().into(),
                owner_id: tag_of(i.tags(), TAG_INSTANCE).unwrap_or_default(),
                logical_id: tag_of(i.tags(), TAG_VM),
                live: !matches!(
                    state,
                    Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                ),
            });
        }
        let out = self
            .send(&g, Class::Describe, "DescribeVolumes", || {
                g.client
                    .describe_volumes()
                    .filters(self.owner_filter())
                    .send()
            })
            .await?;
        for v in out.volumes() {
            // Root volumes go with their VM.
            if tag_of(v.tags(), TAG_VOLUME).is_none() {
                continue;
            }
            all.push(OwnedResource {
                kind: "volume",
                cloud_id: v.volume_id().unwrap_or_default().into(),
                owner_id: tag_of(v.tags(), TAG_INSTANCE).unwrap_or_default(),
                logical_id: tag_of(v.tags(), TAG_VOLUME),
                live: !matches!(
                    v.state(),
                    Some(VolumeState::Deleting | VolumeState::Deleted)
                ),
            });
        }
        let pages = self
            .send(&g, Class::Describe, "DescribeSnapshots", || {
                g.client
                    .describe_snapshots()
                    .owner_ids("self")
                    .filters(self.owner_filter())
                    .into_paginator()
                    .send()
                    .try_collect()
            })
            .await?;
        for s in pages.iter().flat_map(|p| p.snapshots()) {
            all.push(OwnedResource {
                kind: "snapshot",
                cloud_id: s.snapshot_id().unwrap_or_default().into(),
                owner_id: tag_of(s.tags(), TAG_INSTANCE).unwrap_or_default(),
                logical_id: tag_of(s.tags(), TAG_SNAPSHOT),
                live: true,
            });
        }
        let pages = self
            .send(&g, Class::Describe, "DescribeSecurityGroups", || {
                g.client
                    .describe_security_groups()
                    .filters(self.owner_filter())
                    .into_paginator()
                    .send()
                    .try_collect()
            })
            .await?;
        for s in pages.iter().flat_map(|p| p.security_groups()) {
            all.push(OwnedResource {
                kind: "security-group",
                cloud_id: s.group_id().unwrap_or_default().into(),
                owner_id: tag_of(s.tags(), TAG_NETWORK).unwrap_or_default(),
                logical_id: None,
                live: true,
            });
        }
        let out = self
            .send(&g, Class::Describe, "DescribeAddresses", || {
                g.client
                    .describe_addresses()
                    .filters(self.owner_filter())
                    .send()
            })
            .await?;
        for a in out.addresses() {
            all.push(OwnedResource {
                kind: "address",
                cloud_id: a.allocation_id().unwrap_or_default().into(),
                owner_id: tag_of(a.tags(), TAG_INSTANCE).unwrap_or_default(),
                logical_id: None,
                live: true,
            });
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_per_resource_and_within_ec2_limits() {
        let a = client_token("vm", "vm-0123");
        assert_eq!(a, client_token("vm", "vm-0123"));
        assert_ne!(a, client_token("vm", "vm-0124"));
        assert_ne!(a, client_token("volume", "vm-0123"));
        assert!(a.len() <= 64 && a.is_ascii());
    }

    #[test]
    fn the_agent_settings_are_read_back_from_the_boot_script() {
        let toml = "instance_id = \"i1\"\nfm_url = \"https://fm:10001\"\n";
        let script = render_boot_script(toml, "vol-0abc", "/data");
        assert!(script.starts_with("#!/bin/bash"));
        assert!(script.contains("vol0abc") || script.contains("vol-0abc"));
        assert_eq!(agent_toml_of(&script), Some(toml.trim_end()));
    }

    #[test]
    fn run_instances_gets_its_burst_then_two_calls_a_second() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Class::RunInstances, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0), None, "the burst of 5 is free");
        }
        let wait = b.take(t0).expect("the sixth call waits");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.take(t0 + Duration::from_millis(500)), None);
        assert!(b.take(t0 + Duration::from_millis(600)).is_some());
        // A quiet minute refills the burst, no more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(b.take(later), None);
        }
        assert!(b.take(later).is_some());
    }
}
