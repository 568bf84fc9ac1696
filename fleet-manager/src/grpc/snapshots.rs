//! `fm.fleet.v1.Snapshots` and `fm.fleet.v1.Backups`: an instance's
//! snapshots and backups, each method one `App` call.

use super::{caller, page_of, replayed, source, started, status, tenant};
use crate::api::page::encode_token;
use crate::app::App;
use crate::app::backups::CloneRequest;
use crate::model::backup::Backup as BackupModel;
use crate::model::snapshot::Snapshot as SnapshotModel;
use fm_proto::fleet::{
    Backup, BackupRequest, BackupVerification, CloneBackupRequest, CreateBackupRequest,
    CreateSnapshotRequest, ListBackupsRequest, ListBackupsResponse, ListSnapshotsRequest,
    ListSnapshotsResponse, Operation, Snapshot, SnapshotRequest,
};
use tonic::{Request, Response, Status};

const PAGE_MAX: i32 = 1000;
const PAGE_DEFAULT: u64 = 100;

/// Empty is none.
fn given(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn snapshot(s: SnapshotModel) -> Snapshot {
    Snapshot {
        id: s.id,
        instance_id: s.instance_id,
        cloud_snapshot_id: s.cloud_snapshot_id,
        created_at_ms: s.creation_date,
        automated: s.automated,
        node_version: s.node_version.unwrap_or_default(),
        reason: s.reason_for_snapshot.unwrap_or_default(),
        size_bytes: s.size_bytes.unwrap_or_default(),
    }
}

fn backup(b: BackupModel) -> Backup {
    Backup {
        id: b.id,
        instance_id: b.instance_id,
        created_at_ms: b.creation_date,
        automated: b.automated,
        node_version: b.node_version,
        reason: b.reason.unwrap_or_default(),
        encrypted: b.encrypted,
        files: b.files,
        data_size_bytes: b.data_size_bytes,
        archive_size_bytes: b.archive_size_bytes,
        location: b.location,
        manifest_sha256: b.manifest_sha256,
        last_verification: b.last_verification.map(|v| BackupVerification {
            verified_at_ms: v.date,
            ok: v.ok,
            message: v.message.unwrap_or_default(),
        }),
    }
}

pub struct Service {
    pub app: App,
}

#[tonic::async_trait]
impl fm_proto::fleet::snapshots_server::Snapshots for Service {
    async fn get_snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        let r = req.into_inner();
        let s = self
            .app
            .snapshot_get(tenant(&r.tenant), &r.instance_id, &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(snapshot(s)))
    }

    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let got = self
            .app
            .snapshot_list(tenant(&r.tenant), &r.instance_id, &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListSnapshotsResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            snapshots: got.items.into_iter().map(snapshot).collect(),
        }))
    }

    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<Operation>, Status> {
        const METHOD: &str = "Snapshots/CreateSnapshot";
        let (ctx, from) = (caller(&req)?, source(&req));
        let mut r = req.into_inner();
        let rid = std::mem::take(&mut r.request_id);
        let (t, id) = (tenant(&r.tenant), r.instance_id.as_str());
        let (ctx, earlier) = replayed(&self.app, ctx, t, METHOD, &rid, &r).await?;
        if let Some(op) = earlier {
            return Ok(Response::new(op));
        }
        let op = self.app.snapshot_start(&ctx, t, id, given(&r.reason));
        started(&self.app, &ctx, METHOD, (t, id, from), op).await
    }

    async fn delete_snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Operation>, Status> {
        let (ctx, from) = (caller(&req)?, source(&req));
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let op = self.app.snapshot_delete(&ctx, t, &r.instance_id, &r.id);
        let about = (t, r.instance_id.as_str(), from);
        started(&self.app, &ctx, "Snapshots/DeleteSnapshot", about, op).await
    }

    async fn reprovision_from_snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Operation>, Status> {
        let (ctx, from) = (caller(&req)?, source(&req));
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let op = self
            .app
            .instance_reprovision(&ctx, t, &r.instance_id, false, Some(&r.id));
        let about = (t, r.instance_id.as_str(), from);
        started(
            &self.app,
            &ctx,
            "Snapshots/ReprovisionFromSnapshot",
            about,
            op,
        )
        .await
    }
}

pub struct BackupsService {
    pub app: App,
}

/// The backup actions that name one backup.
#[derive(Clone, Copy)]
enum Act {
    Delete,
    Restore,
    Verify,
}

impl BackupsService {
    async fn act(
        &self,
        req: Request<BackupRequest>,
        act: Act,
    ) -> Result<Response<Operation>, Status> {
        let (ctx, from) = (caller(&req)?, source(&req));
        let r = req.into_inner();
        let (t, id, b) = (tenant(&r.tenant), r.instance_id.as_str(), r.id.as_str());
        let app = &self.app;
        let method = match act {
            Act::Delete => "Backups/DeleteBackup",
            Act::Restore => "Backups/RestoreBackup",
            Act::Verify => "Backups/VerifyBackup",
        };
        let op = async {
            match act {
                Act::Delete => app.backup_delete(&ctx, t, id, b).await,
                Act::Restore => app.backup_restore(&ctx, t, id, b).await,
                Act::Verify => app.backup_verify(&ctx, t, id, b).await,
            }
        };
        started(app, &ctx, method, (t, id, from), op).await
    }
}

#[tonic::async_trait]
impl fm_proto::fleet::backups_server::Backups for BackupsService {
    async fn get_backup(&self, req: Request<BackupRequest>) -> Result<Response<Backup>, Status> {
        let r = req.into_inner();
        let b = self
            .app
            .backup_get(tenant(&r.tenant), &r.instance_id, &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(backup(b)))
    }

    async fn list_backups(
        &self,
        req: Request<ListBackupsRequest>,
    ) -> Result<Response<ListBackupsResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let got = self
            .app
            .backup_list(tenant(&r.tenant), &r.instance_id, &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListBackupsResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            backups: got.items.into_iter().map(backup).collect(),
        }))
    }

    async fn create_backup(
        &self,
        req: Request<CreateBackupRequest>,
    ) -> Result<Response<Operation>, Status> {
        const METHOD: &str = "Backups/CreateBackup";
        let (ctx, from) = (caller(&req)?, source(&req));
        let mut r = req.into_inner();
        let rid = std::mem::take(&mut r.request_id);
        let (t, id) = (tenant(&r.tenant), r.instance_id.as_str());
        let (ctx, earlier) = replayed(&self.app, ctx, t, METHOD, &rid, &r).await?;
        if let Some(op) = earlier {
            return Ok(Response::new(op));
        }
        let op = self.app.backup_take(&ctx, t, id, given(&r.reason));
        started(&self.app, &ctx, METHOD, (t, id, from), op).await
    }

    async fn delete_backup(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Delete).await
    }

    async fn restore_backup(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Restore).await
    }

    async fn verify_backup(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Verify).await
    }

    async fn clone_backup(
        &self,
        req: Request<CloneBackupRequest>,
    ) -> Result<Response<Operation>, Status> {
        let (ctx, from) = (caller(&req)?, source(&req));
        let r = req.into_inner();
        let (t, id) = (tenant(&r.tenant), r.instance_id.as_str());
        let clone = CloneRequest {
            label: r.label.clone(),
            description: given(&r.description).map(str::to_string),
            image_id: given(&r.image_id).map(str::to_string),
        };
        let op = self.app.backup_clone(&ctx, t, id, &r.id, clone);
        started(&self.app, &ctx, "Backups/CloneBackup", (t, id, from), op).await
    }
}
