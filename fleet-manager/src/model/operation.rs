//! Operations as the public API shows them: futures.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpState {
    Pending,
    Running,
    Done,
    Failed,
    Aborted,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Pending => "pending",
            OpState::Running => "running",
            OpState::Done => "done",
            OpState::Failed => "failed",
            OpState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OpState::Pending,
            "running" => OpState::Running,
            "done" => OpState::Done,
            "failed" => OpState::Failed,
            "aborted" => OpState::Aborted,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, OpState::Done | OpState::Failed | OpState::Aborted)
    }
}

/// Progress of a running operation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FutureProgress {
    /// Steps finished so far.
    pub done_steps: i32,
    pub total_steps: i32,
    /// The step running now, if any.
    pub current_step: Option<String>,
    /// 0 to 100.
    pub percent: u8,
}

/// The error of a failed future.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FutureError {
    pub error_type: String,
    pub message: String,
}

/// A future: the public view of an operation, in the shape the public
/// client's `FMFuture` reads (`jobId`, `hasResult`, `result`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FutureState {
    pub job_id: String,
    /// What the operation does, e.g. `DELETE_INSTANCE_TEMPLATE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The id of the object the operation acts on.
    pub target_id: String,
    /// `pending`, `running`, `done`, `failed` or `aborted`.
    pub state: String,
    /// True while the operation may still make progress.
    pub alive: bool,
    pub has_result: bool,
    /// What the operation answered, once done: a free-form JSON object
    /// whose fields depend on `type` (e.g. `instanceId` and `publicURL` for
    /// a provisioning, the backup for `BACKUP_INSTANCE`, `id` and `deleted` for
    /// a deletion); null before.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub aborted: bool,
    pub failed: bool,
    pub error: Option<FutureError>,
    pub progress: FutureProgress,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    /// Milliseconds since the operation started (or until it ended).
    pub running_time: i64,
    /// The last log lines of the operation, oldest first.
    pub log: Vec<String>,
    /// Who started it: a user's name, or `system:<what>` for FM's own
    /// schedules; null for operations older than users.
    pub initiated_by: Option<String>,
}

/// A change FM wrote to its outbox, in the transaction that made it: an
/// operation that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetEvent {
    /// Increasing: a watcher resumes after the last one it saw.
    pub id: i64,
    pub at: i64,
    /// The operation's kind (`PROVISION_INSTANCE`, ...).
    pub kind: String,
    pub target_id: String,
    pub operation_id: Option<String>,
    /// How it ended: `done`, `failed` or `aborted`.
    pub state: String,
    pub error: Option<String>,
}
