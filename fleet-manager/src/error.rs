//! The one domain error type.
//!
//! It knows nothing about HTTP: each surface maps it exactly once (the REST
//! mapping lives in `api::error`). `message` is always safe to show a user;
//! internal context is logged, never returned.

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input is malformed or breaks a rule (HTTP 400).
    InvalidInput(String),
    /// No credentials, or wrong ones (HTTP 401).
    Unauthorized,
    /// Valid credentials whose role is below the one needed (HTTP 403).
    Forbidden {
        needed: crate::model::user::Role,
        have: crate::model::user::Role,
    },
    /// The object named in the path does not exist (HTTP 404).
    NotFound { kind: &'static str, id: String },
    /// The request is valid but clashes with the current state (HTTP 409).
    Conflict(String),
    /// The object changed since the version the caller read (its etag no
    /// longer matches; HTTP 412).
    Stale(String),
    /// The body is larger than the configured limit (HTTP 413).
    PayloadTooLarge { limit: usize },
    /// The body is not JSON (HTTP 415).
    UnsupportedMediaType(String),
    /// The path exists but not with this method (HTTP 405).
    MethodNotAllowed,
    /// A long operation ended in failure; `error_type` is the step's own.
    OperationFailed { error_type: String, message: String },
    /// A long operation was aborted before it finished.
    OperationAborted,
    /// A bug or an outage of a dependency; `context` is logged, not shown.
    Internal { context: String },
}

/// Why an operation failed, when FM itself decided it (a step's own error
/// otherwise keeps the kind the cloud or agent gave it). Shown as the
/// future's `errorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFailure {
    TooManyAttempts,
    AgentUnreachable,
    AgentTimeout,
    AgentCommandFailed,
    ImageWithoutKit,
    NoFreePort,
    BackupTooNew,
    BackupRestoreFailed,
    BackupStorageError,
    BackupVerificationFailed,
    SnapshotFailed,
    SnapshotPending,
    VolumeBusy,
    NoImageForRegion,
    IncorrectInstanceState,
    /// A failure a test injected into a saga step.
    InjectedFailure,
    /// A step panicked (a bug): the operation fails rather than hang.
    StepPanicked,
}

impl OpFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OpFailure::TooManyAttempts => "TooManyAttempts",
            OpFailure::AgentUnreachable => "AgentUnreachable",
            OpFailure::AgentTimeout => "AgentTimeout",
            OpFailure::AgentCommandFailed => "AgentCommandFailed",
            OpFailure::ImageWithoutKit => "ImageWithoutKit",
            OpFailure::NoFreePort => "NoFreePort",
            OpFailure::BackupTooNew => "BackupTooNew",
            OpFailure::BackupRestoreFailed => "BackupRestoreFailed",
            OpFailure::BackupStorageError => "BackupStorageError",
            OpFailure::BackupVerificationFailed => "BackupVerificationFailed",
            OpFailure::SnapshotFailed => "SnapshotFailed",
            OpFailure::SnapshotPending => "SnapshotPending",
            OpFailure::VolumeBusy => "VolumeBusy",
            OpFailure::NoImageForRegion => "NoImageForRegion",
            OpFailure::IncorrectInstanceState => "IncorrectInstanceState",
            OpFailure::InjectedFailure => "InjectedFailure",
            OpFailure::StepPanicked => "StepPanicked",
        }
    }
}

impl Error {
    /// An operation failure of a kind FM names.
    pub fn op_failed(kind: OpFailure, message: impl Into<String>) -> Self {
        Error::OperationFailed {
            error_type: kind.as_str().to_string(),
            message: message.into(),
        }
    }

    /// Whether this is an operation failure of kind `kind`.
    pub fn is_op_failure(&self, kind: OpFailure) -> bool {
        matches!(self, Error::OperationFailed { error_type, .. } if error_type == kind.as_str())
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict(message.into())
    }

    /// The object `what` changed since the caller read it.
    pub fn stale(what: impl fmt::Display) -> Self {
        Error::Stale(format!(
            "{what} changed since it was read (its etag no longer matches): read it again and retry"
        ))
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// A path that names nothing FM serves.
    pub fn invalid_path() -> Self {
        Error::NotFound {
            kind: "path",
            id: String::new(),
        }
    }

    pub fn internal(context: impl fmt::Display) -> Self {
        Error::Internal {
            context: context.to_string(),
        }
    }

    /// A short, stable name for the kind of error, as returned in `errorType`.
    pub fn error_type(&self) -> &str {
        match self {
            Error::InvalidInput(_) => "InvalidInput",
            Error::Unauthorized => "Unauthorized",
            Error::Forbidden { .. } => "Forbidden",
            Error::NotFound { .. } => "NotFound",
            Error::Conflict(_) => "Conflict",
            Error::Stale(_) => "Stale",
            Error::PayloadTooLarge { .. } => "PayloadTooLarge",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::MethodNotAllowed => "MethodNotAllowed",
            Error::OperationFailed { error_type, .. } => error_type,
            Error::OperationAborted => "OperationAborted",
            Error::Internal { .. } => "InternalError",
        }
    }

    /// The message shown to the caller.
    pub fn message(&self) -> String {
        match self {
            Error::InvalidInput(m) | Error::Conflict(m) | Error::Stale(m) => m.clone(),
            Error::Unauthorized => {
                "authentication required: use HTTP Basic with an API key id and secret".into()
            }
            Error::Forbidden { needed, have } => {
                format!("this needs the role '{needed}' or higher; these credentials have '{have}'")
            }
            Error::NotFound { kind: "path", .. } => "no such path in the API".into(),
            Error::NotFound { kind, id } => format!("{kind} '{id}' does not exist"),
            Error::PayloadTooLarge { limit } => {
                format!("request body is larger than the limit of {limit} bytes")
            }
            Error::UnsupportedMediaType(got) => {
                format!("request body must be JSON (Content-Type: application/json), got '{got}'")
            }
            Error::MethodNotAllowed => "this method is not allowed on this path".into(),
            Error::OperationFailed { message, .. } => message.clone(),
            Error::OperationAborted => "the operation was aborted".into(),
            Error::Internal { .. } => "internal error; see the server log".into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal { context } => write!(f, "internal error: {context}"),
            other => write!(f, "{}: {}", other.error_type(), other.message()),
        }
    }
}

impl std::error::Error for Error {}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        use sea_orm::SqlErr;
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                Error::conflict("an object with this identity already exists or is busy")
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                Error::conflict("the object is referenced by another object")
            }
            _ => Error::internal(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
