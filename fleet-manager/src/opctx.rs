//! The operation context: who asks, with which key and role, in which
//! request. Each surface makes one per request once its credentials are
//! checked; it goes through every `App` method, into the operations engine
//! (an operation records who started it) and back out to the audit log.

use crate::model::user::Role;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person or a script, through one of their API keys or a session.
    User { id: String, name: String },
    /// FM itself: a reconciler, the CLI on the server's host.
    System(&'static str),
}

/// One request's context; cheap to clone.
#[derive(Debug, Clone)]
pub struct OpCtx {
    pub actor: Actor,
    /// The API key the request came with, if any.
    pub key_id: Option<String>,
    /// The role the request acts with (the key's, at most its user's).
    pub role: Role,
    /// Unique per request; in the audit row and the access log.
    pub request_id: String,
    /// How long a call that starts an operation waits for it before it
    /// answers with the running operation; none: FM's configured wait.
    pub wait: Option<Duration>,
    /// The id the operation this request starts takes, when the caller
    /// chose it beforehand (a rollout records it before it starts a
    /// target's operation); none: a new id.
    pub operation_id: Option<String>,
    /// The client's id for this request (AIP-155): the operation it starts
    /// is recorded under it, in the same transaction, so a retry answers
    /// that operation instead of starting another.
    pub client_request: Option<crate::app::ClientRequest>,
    /// The operation the request started, for the audit row.
    started: Arc<Mutex<Option<String>>>,
}

impl OpCtx {
    /// The context of a user's request.
    pub fn user(id: String, name: String, key_id: Option<String>, role: Role) -> OpCtx {
        OpCtx {
            actor: Actor::User { id, name },
            key_id,
            role,
            request_id: crate::model::new_id("req"),
            wait: None,
            operation_id: None,
            client_request: None,
            started: Default::default(),
        }
    }

    /// FM acting on its own (`system:<what>`), with every right.
    pub fn system(what: &'static str) -> OpCtx {
        OpCtx {
            actor: Actor::System(what),
            key_id: None,
            role: Role::Admin,
            request_id: crate::model::new_id("req"),
            wait: None,
            operation_id: None,
            client_request: None,
            started: Default::default(),
        }
    }

    /// The same context, waiting at most `wait` for the operations it
    /// starts (the console answers at once and shows the progress).
    pub fn waiting(mut self, wait: Duration) -> OpCtx {
        self.wait = Some(wait);
        self
    }

    /// The same context, its operation recorded under the client's
    /// request id.
    pub fn with_client_request(mut self, r: Option<crate::app::ClientRequest>) -> OpCtx {
        self.client_request = r;
        self
    }

    /// The same context, its operation taking the id `id`.
    pub fn with_operation_id(mut self, id: String) -> OpCtx {
        self.operation_id = Some(id);
        self
    }

    /// The actor as operations and the audit log name it: the user's name,
    /// or `system:<what>`.
    pub fn actor_name(&self) -> String {
        match &self.actor {
            Actor::User { name, .. } => name.clone(),
            Actor::System(what) => format!("system:{what}"),
        }
    }

    /// Notes the operation this request started.
    pub fn note_operation(&self, id: &str) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
    }

    /// The operation this request started, if any.
    pub fn operation(&self) -> Option<String> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
