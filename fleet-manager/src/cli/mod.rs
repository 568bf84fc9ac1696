//! `fleet-manager instances|templates|networks|accounts|images|snapshots|
//! backups|operations|rollouts ...`: the product from the command line,
//! over a running FM's gRPC API.
//!
//! Every command prints a table (`--output table`, the default) or JSON
//! (`--output json`, for scripts). An action that starts an operation
//! follows it to its end with a progress bar on stderr, unless
//! `--no-wait`. Exit status: 0 done; 1 refused, failed or unreachable
//! (the reason on stderr); 2 a usage error.

mod client;
mod input;
mod rollouts;
mod show;
mod wait;

use crate::error::{Error, Result};
use client::{Clients, answer};
use fm_proto::fleet::{self as pb, Operation};
use input::{Fields, mask_of, text, typed_and_settings};
pub use show::Output;

/// Where FM's gRPC API is, the key to call it with, and how to print.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// FM's gRPC API.
    #[arg(
        long,
        env = "FM_GRPC_URL",
        default_value = "http://127.0.0.1:10002",
        global = true
    )]
    pub grpc_url: String,
    /// API key id.
    #[arg(long, env = "FM_API_KEY_ID", global = true)]
    pub key_id: Option<String>,
    /// API key secret.
    #[arg(long, env = "FM_API_KEY_SECRET", hide_env_values = true, global = true)]
    pub key_secret: Option<String>,
    #[arg(long, default_value = "main", global = true)]
    pub tenant: String,
    /// `table` for people, `json` for scripts.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Output,
    /// Print the operation an action started instead of following it.
    #[arg(long, global = true)]
    pub no_wait: bool,
}

impl Conn {
    async fn connect(&self) -> Result<Clients> {
        let (Some(id), Some(secret)) = (&self.key_id, &self.key_secret) else {
            return Err(Error::invalid(
                "an API key is needed: set FM_API_KEY_ID and FM_API_KEY_SECRET (or --key-id, --key-secret)",
            ));
        };
        client::connect(&self.grpc_url, id, secret).await
    }
}

/// The commands over the gRPC API (flattened into the binary's).
#[derive(Debug, clap::Subcommand)]
pub enum Resource {
    /// Instances: list, read, create, update, delete, reprovision, start, stop.
    Instances {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: InstanceCommand,
    },
    /// Instance templates (the settings instances share).
    Templates {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: Crud,
    },
    /// Virtual networks (a VPC and subnet, in a cloud account).
    Networks {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: Crud,
    },
    /// Cloud accounts (an IAM role or an access key; pass the secret with
    /// --set-from-env or --set-from-file).
    Accounts {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: Crud,
    },
    /// The image catalog.
    Images {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Snapshots of an instance's data volume.
    Snapshots {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Agent backups of an instance's data dir.
    Backups {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Rollouts: one action over a selection of instances, canaries first,
    /// a few at a time; `create` follows the rollout to its end unless
    /// --no-wait, and one that ends failed or cancelled exits with 1.
    Rollouts {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: rollouts::RolloutCommand,
    },
    /// FM's long-running operations.
    Operations {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        command: OperationCommand,
    },
}

/// What every resource takes.
#[derive(Debug, clap::Subcommand)]
pub enum Crud {
    /// Every one (all pages).
    List,
    /// One, every field.
    Get { id: String },
    /// Make one from a document (--file) and fields (--set ...).
    Create {
        #[command(flatten)]
        fields: Fields,
        /// Your id for this request: a retry with the same id answers
        /// what the first attempt made.
        #[arg(long)]
        request_id: Option<String>,
        /// Check everything, make nothing, print what would be made.
        #[arg(long)]
        validate_only: bool,
    },
    /// Change exactly the fields given (--set ...; a --file's fields).
    Update {
        id: String,
        #[command(flatten)]
        fields: Fields,
        /// Refuse the change unless the resource is still at this etag.
        #[arg(long)]
        etag: Option<String>,
        #[arg(long)]
        validate_only: bool,
    },
    /// Delete it (an operation).
    Delete { id: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum InstanceCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Make (or remake) its VM and install its node.
    Reprovision {
        id: String,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
    },
    /// Print each operation on these instances (every one when none is
    /// named) as it ends, until interrupted: a line each, or one JSON
    /// object per line with --output json.
    Watch {
        ids: Vec<String>,
        /// Resume after this event (the `eventId` last printed).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    List,
}

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// The instance's snapshots, newest first.
    List {
        instance: String,
    },
    Get {
        instance: String,
        snapshot: String,
    },
    /// Snapshot the data volume now.
    Create {
        instance: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Delete {
        instance: String,
        snapshot: String,
    },
    /// Reprovision the instance with a data volume made from the snapshot.
    Reprovision {
        instance: String,
        snapshot: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// The instance's backups, oldest first.
    List {
        instance: String,
    },
    Get {
        instance: String,
        backup: String,
    },
    /// Take a backup now.
    Take {
        instance: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a backup (objects and record).
    Delete {
        instance: String,
        backup: String,
    },
    /// Replace the instance's data with the backup.
    Restore {
        instance: String,
        backup: String,
    },
    /// Restore into a scratch dir and compare with the manifest.
    Verify {
        instance: String,
        backup: String,
    },
    /// A new instance provisioned from the backup.
    Clone {
        instance: String,
        backup: String,
        #[arg(long)]
        label: String,
        #[arg(long)]
        description: Option<String>,
        /// The new instance's image (the source's by default).
        #[arg(long)]
        image_id: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum OperationCommand {
    /// The latest operations, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Get {
        name: String,
    },
    /// Follow it to its end.
    Wait {
        name: String,
    },
    /// Ask it to stop (its undo steps run); then follow it.
    Cancel {
        name: String,
    },
}

/// Runs a command.
pub async fn run(r: Resource) -> Result<()> {
    match r {
        Resource::Instances { conn, command } => instances(&conn, command).await,
        Resource::Templates { conn, command } => templates(&conn, command).await,
        Resource::Networks { conn, command } => networks(&conn, command).await,
        Resource::Accounts { conn, command } => accounts(&conn, command).await,
        Resource::Images { conn, command } => images(&conn, command).await,
        Resource::Snapshots { conn, command } => snapshots(&conn, command).await,
        Resource::Backups { conn, command } => backups(&conn, command).await,
        Resource::Operations { conn, command } => operations(&conn, command).await,
        Resource::Rollouts { conn, command } => rollouts::run(&conn, command).await,
    }
}

/// Every page of a list: `call(page_token)` answers (items, next token).
async fn every_page<T, F, Fut>(mut call: F) -> Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String)>>,
{
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = call(token).await?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// An operation just started: followed to its end unless --no-wait, then
/// printed.
async fn started(conn: &Conn, c: &mut Clients, op: Operation) -> Result<Operation> {
    if conn.no_wait {
        return Ok(op);
    }
    wait::operation(c, &conn.tenant, op).await
}

/// The id in an operation's result (the resource it made).
fn result_id(op: &Operation) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(&op.result_json)
        .map_err(|_| Error::internal(format!("operation {} has no result", op.name)))?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::internal(format!("the result of {} names nothing", op.name)))
}

fn request_id(r: Option<String>) -> String {
    r.unwrap_or_default()
}

async fn instances(conn: &Conn, command: InstanceCommand) -> Result<()> {
    use crate::grpc::instances::TYPED;
    let mut c = conn.connect().await?;
    let t = conn.tenant.clone();
    let out = conn.output;
    let act = |id: String| pb::InstanceActionRequest {
        tenant: t.clone(),
        id,
        request_id: String::new(),
    };
    let op = match command {
        InstanceCommand::Crud(Crud::List) => {
            let cl = c.instances.clone();
            let all = every_page(|page_token| {
                let mut cl = cl.clone();
                let req = pb::ListInstancesRequest {
                    tenant: t.clone(),
                    page_size: 1000,
                    page_token,
                };
                async move {
                    let r = answer(cl.list_instances(req).await)?;
                    Ok((r.instances, r.next_page_token))
                }
            })
            .await?;
            return show::list(out, &all);
        }
        InstanceCommand::Crud(Crud::Get { id }) => {
            let req = pb::GetInstanceRequest { tenant: t, id };
            return show::one(out, &answer(c.instances.get_instance(req).await)?);
        }
        InstanceCommand::Crud(Crud::Create {
            fields,
            request_id: rid,
            validate_only,
        }) => {
            let instance = instance_of(fields.doc()?, TYPED)?;
            let req = pb::CreateInstanceRequest {
                tenant: t,
                instance: Some(instance),
                request_id: request_id(rid),
                validate_only,
            };
            return show::one(out, &answer(c.instances.create_instance(req).await)?);
        }
        InstanceCommand::Crud(Crud::Update {
            id,
            fields,
            etag,
            validate_only,
        }) => {
            let doc = changes(&fields)?;
            let mask = mask_of(&doc, TYPED);
            let mut instance = instance_of(doc, TYPED)?;
            instance.id = id;
            instance.etag = etag.unwrap_or_default();
            let req = pb::UpdateInstanceRequest {
                tenant: t,
                instance: Some(instance),
                update_mask: Some(mask),
                validate_only,
            };
            return show::one(out, &answer(c.instances.update_instance(req).await)?);
        }
        InstanceCommand::Crud(Crud::Delete { id }) => {
            answer(c.instances.delete_instance(act(id)).await)?
        }
        InstanceCommand::Reprovision { id } => {
            answer(c.instances.reprovision_instance(act(id)).await)?
        }
        InstanceCommand::Watch { ids, after } => {
            let req = pb::WatchInstancesRequest {
                tenant: t,
                instance_ids: ids,
                after_event_id: after,
            };
            let mut events = answer(c.instances.watch_instances(req).await)?;
            while let Some(e) = events.message().await.map_err(client::refused)? {
                show::event(out, &e)?;
            }
            return Ok(());
        }
        InstanceCommand::Start { id } => answer(c.instances.start_instance(act(id)).await)?,
        InstanceCommand::Stop { id } => answer(c.instances.stop_instance(act(id)).await)?,
    };
    let op = started(conn, &mut c, op).await?;
    show::one(out, &op)
}

/// An update's fields: at least one.
fn changes(fields: &Fields) -> Result<serde_json::Map<String, serde_json::Value>> {
    if fields.is_empty() {
        return Err(Error::invalid(
            "say what to change: --set name=value (or --file, --set-from-env, --set-from-file)",
        ));
    }
    fields.doc()
}

fn instance_of(
    doc: serde_json::Map<String, serde_json::Value>,
    typed: &[crate::grpc::fields::Typed],
) -> Result<pb::Instance> {
    let (f, settings) = typed_and_settings(doc, typed);
    let fm_tags = match f.get("fmTags") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| Error::invalid("fmTags is a list of text"))?,
    };
    Ok(pb::Instance {
        label: text(&f, "label")?,
        description: text(&f, "description")?,
        instance_settings_template_id: text(&f, "instanceSettingsTemplateId")?,
        virtual_network_id: text(&f, "virtualNetworkId")?,
        image_id: text(&f, "imageId")?,
        dss_node_type: text(&f, "dssNodeType")?,
        fm_tags,
        settings: Some(settings),
        ..Default::default()
    })
}

/// The list, get, create, update and delete of a resource whose message
/// is a label, settings and an id (templates, networks, accounts).
macro_rules! crud {
    ($fn:ident, $typed:path, $client:ident, $msg:ident, $field:ident, $plural:ident,
     $get:ident, $list:ident, $create:ident, $update:ident, $delete:ident,
     $getreq:ident, $listreq:ident, $createreq:ident, $updatereq:ident, $deletereq:ident,
     $build:expr) => {
        // A network's create takes one more field (`use_default_values`),
        // left at its default.
        #[allow(clippy::needless_update)]
        async fn $fn(conn: &Conn, command: Crud) -> Result<()> {
            let mut c = conn.connect().await?;
            let t = conn.tenant.clone();
            let out = conn.output;
            let build: fn(serde_json::Map<String, serde_json::Value>) -> Result<pb::$msg> = $build;
            let op = match command {
                Crud::List => {
                    let cl = c.$client.clone();
                    let all = every_page(|page_token| {
                        let mut cl = cl.clone();
                        let req = pb::$listreq {
                            tenant: t.clone(),
                            page_size: 1000,
                            page_token,
                        };
                        async move {
                            let r = answer(cl.$list(req).await)?;
                            Ok((r.$plural, r.next_page_token))
                        }
                    })
                    .await?;
                    return show::list(out, &all);
                }
                Crud::Get { id } => {
                    let req = pb::$getreq { tenant: t, id };
                    return show::one(out, &answer(c.$client.$get(req).await)?);
                }
                Crud::Create {
                    fields,
                    request_id: rid,
                    validate_only,
                } => {
                    let req = pb::$createreq {
                        tenant: t,
                        $field: Some(build(fields.doc()?)?),
                        request_id: request_id(rid),
                        validate_only,
                        ..Default::default()
                    };
                    return show::one(out, &answer(c.$client.$create(req).await)?);
                }
                Crud::Update {
                    id,
                    fields,
                    etag,
                    validate_only,
                } => {
                    let doc = changes(&fields)?;
                    let mask = mask_of(&doc, $typed);
                    let mut m = build(doc)?;
                    m.id = id;
                    m.etag = etag.unwrap_or_default();
                    let req = pb::$updatereq {
                        tenant: t,
                        $field: Some(m),
                        update_mask: Some(mask),
                        validate_only,
                    };
                    return show::one(out, &answer(c.$client.$update(req).await)?);
                }
                Crud::Delete { id } => {
                    answer(c.$client.$delete(pb::$deletereq { tenant: t, id }).await)?
                }
            };
            let op = started(conn, &mut c, op).await?;
            show::one(out, &op)
        }
    };
}

crud!(
    templates,
    crate::grpc::templates::TYPED,
    templates,
    InstanceTemplate,
    instance_template,
    instance_templates,
    get_instance_template,
    list_instance_templates,
    create_instance_template,
    update_instance_template,
    delete_instance_template,
    GetInstanceTemplateRequest,
    ListInstanceTemplatesRequest,
    CreateInstanceTemplateRequest,
    UpdateInstanceTemplateRequest,
    DeleteInstanceTemplateRequest,
    |doc| {
        let (f, settings) = typed_and_settings(doc, crate::grpc::templates::TYPED);
        Ok(pb::InstanceTemplate {
            label: text(&f, "label")?,
            settings: Some(settings),
            ..Default::default()
        })
    }
);

crud!(
    networks,
    crate::grpc::networks::TYPED,
    networks,
    VirtualNetwork,
    virtual_network,
    virtual_networks,
    get_virtual_network,
    list_virtual_networks,
    create_virtual_network,
    update_virtual_network,
    delete_virtual_network,
    GetVirtualNetworkRequest,
    ListVirtualNetworksRequest,
    CreateVirtualNetworkRequest,
    UpdateVirtualNetworkRequest,
    DeleteVirtualNetworkRequest,
    |doc| {
        let (f, settings) = typed_and_settings(doc, crate::grpc::networks::TYPED);
        Ok(pb::VirtualNetwork {
            label: text(&f, "label")?,
            account_id: text(&f, "accountId")?,
            settings: Some(settings),
            ..Default::default()
        })
    }
);

crud!(
    accounts,
    crate::grpc::accounts::TYPED,
    accounts,
    CloudAccount,
    cloud_account,
    cloud_accounts,
    get_cloud_account,
    list_cloud_accounts,
    create_cloud_account,
    update_cloud_account,
    delete_cloud_account,
    GetCloudAccountRequest,
    ListCloudAccountsRequest,
    CreateCloudAccountRequest,
    UpdateCloudAccountRequest,
    DeleteCloudAccountRequest,
    |doc| {
        let (f, settings) = typed_and_settings(doc, crate::grpc::accounts::TYPED);
        Ok(pb::CloudAccount {
            label: text(&f, "label")?,
            description: text(&f, "description")?,
            settings: Some(settings),
            ..Default::default()
        })
    }
);

async fn images(conn: &Conn, command: ImageCommand) -> Result<()> {
    let c = conn.connect().await?;
    let t = conn.tenant.clone();
    match command {
        ImageCommand::List => {
            let all = every_page(|page_token| {
                let mut cl = c.images.clone();
                let req = pb::ListImagesRequest {
                    tenant: t.clone(),
                    page_size: 1000,
                    page_token,
                };
                async move {
                    let r = answer(cl.list_images(req).await)?;
                    Ok((r.images, r.next_page_token))
                }
            })
            .await?;
            show::list(conn.output, &all)
        }
    }
}

async fn snapshots(conn: &Conn, command: SnapshotCommand) -> Result<()> {
    let mut c = conn.connect().await?;
    let t = conn.tenant.clone();
    let out = conn.output;
    let one = |instance_id: String, id: String| pb::SnapshotRequest {
        tenant: t.clone(),
        instance_id,
        id,
    };
    let (op, made) = match command {
        SnapshotCommand::List { instance } => {
            let all = every_page(|page_token| {
                let mut cl = c.snapshots.clone();
                let req = pb::ListSnapshotsRequest {
                    tenant: t.clone(),
                    instance_id: instance.clone(),
                    page_size: 1000,
                    page_token,
                };
                async move {
                    let r = answer(cl.list_snapshots(req).await)?;
                    Ok((r.snapshots, r.next_page_token))
                }
            })
            .await?;
            return show::list(out, &all);
        }
        SnapshotCommand::Get { instance, snapshot } => {
            let s = answer(c.snapshots.get_snapshot(one(instance, snapshot)).await)?;
            return show::one(out, &s);
        }
        SnapshotCommand::Create { instance, reason } => {
            let req = pb::CreateSnapshotRequest {
                tenant: t.clone(),
                instance_id: instance.clone(),
                reason: reason.unwrap_or_default(),
                request_id: String::new(),
            };
            let op = answer(c.snapshots.create_snapshot(req).await)?;
            (op, Some(instance))
        }
        SnapshotCommand::Delete { instance, snapshot } => {
            let op = answer(c.snapshots.delete_snapshot(one(instance, snapshot)).await)?;
            (op, None)
        }
        SnapshotCommand::Reprovision { instance, snapshot } => {
            let req = one(instance, snapshot);
            (
                answer(c.snapshots.reprovision_from_snapshot(req).await)?,
                None,
            )
        }
    };
    let op = started(conn, &mut c, op).await?;
    match made {
        // The snapshot it took.
        Some(instance) if op.done => {
            let s = one(instance, result_id(&op)?);
            show::one(out, &answer(c.snapshots.get_snapshot(s).await)?)
        }
        _ => show::one(out, &op),
    }
}

async fn backups(conn: &Conn, command: BackupCommand) -> Result<()> {
    let mut c = conn.connect().await?;
    let t = conn.tenant.clone();
    let out = conn.output;
    let one = |instance_id: String, id: String| pb::BackupRequest {
        tenant: t.clone(),
        instance_id,
        id,
    };
    // After the operation: the backup it took or verified, else itself.
    let (op, shown) = match command {
        BackupCommand::List { instance } => {
            let all = every_page(|page_token| {
                let mut cl = c.backups.clone();
                let req = pb::ListBackupsRequest {
                    tenant: t.clone(),
                    instance_id: instance.clone(),
                    page_size: 1000,
                    page_token,
                };
                async move {
                    let r = answer(cl.list_backups(req).await)?;
                    Ok((r.backups, r.next_page_token))
                }
            })
            .await?;
            return show::list(out, &all);
        }
        BackupCommand::Get { instance, backup } => {
            let b = answer(c.backups.get_backup(one(instance, backup)).await)?;
            return show::one(out, &b);
        }
        BackupCommand::Take { instance, reason } => {
            let req = pb::CreateBackupRequest {
                tenant: t.clone(),
                instance_id: instance.clone(),
                reason: reason.unwrap_or_default(),
                request_id: String::new(),
            };
            (
                answer(c.backups.create_backup(req).await)?,
                Some((instance, None)),
            )
        }
        BackupCommand::Delete { instance, backup } => (
            answer(c.backups.delete_backup(one(instance, backup)).await)?,
            None,
        ),
        BackupCommand::Restore { instance, backup } => (
            answer(c.backups.restore_backup(one(instance, backup)).await)?,
            None,
        ),
        BackupCommand::Verify { instance, backup } => {
            let op = answer(
                c.backups
                    .verify_backup(one(instance.clone(), backup.clone()))
                    .await,
            )?;
            (op, Some((instance, Some(backup))))
        }
        BackupCommand::Clone {
            instance,
            backup,
            label,
            description,
            image_id,
        } => {
            let req = pb::CloneBackupRequest {
                tenant: t.clone(),
                instance_id: instance,
                id: backup,
                label,
                description: description.unwrap_or_default(),
                image_id: image_id.unwrap_or_default(),
            };
            (answer(c.backups.clone_backup(req).await)?, None)
        }
    };
    let op = started(conn, &mut c, op).await?;
    match shown {
        Some((instance, backup)) if op.done => {
            let id = match backup {
                Some(b) => b,
                None => result_id(&op)?,
            };
            show::one(out, &answer(c.backups.get_backup(one(instance, id)).await)?)
        }
        _ => show::one(out, &op),
    }
}

async fn operations(conn: &Conn, command: OperationCommand) -> Result<()> {
    let mut c = conn.connect().await?;
    let t = conn.tenant.clone();
    let out = conn.output;
    let op = match command {
        OperationCommand::List { limit } => {
            if !(1..=500).contains(&limit) {
                return Err(Error::invalid("--limit must be between 1 and 500"));
            }
            let req = pb::ListOperationsRequest {
                tenant: t,
                page_size: limit as i32,
                page_token: String::new(),
            };
            let r = answer(c.operations.list_operations(req).await)?;
            return show::list(out, &r.operations);
        }
        OperationCommand::Get { name } => {
            let req = pb::GetOperationRequest { tenant: t, name };
            return show::one(out, &answer(c.operations.get_operation(req).await)?);
        }
        OperationCommand::Wait { name } => {
            let req = pb::GetOperationRequest { tenant: t, name };
            answer(c.operations.get_operation(req).await)?
        }
        OperationCommand::Cancel { name } => {
            let req = pb::CancelOperationRequest { tenant: t, name };
            let op = answer(c.operations.cancel_operation(req).await)?;
            if conn.no_wait {
                return show::one(out, &op);
            }
            // Ended aborted is what was asked for; done, that it was too late.
            let op = wait::follow(&mut c, &conn.tenant, op).await?;
            if op.state == "aborted" {
                return show::one(out, &op);
            }
            wait::ended(op)?
        }
    };
    let op = started(conn, &mut c, op).await?;
    show::one(out, &op)
}
