//! The sagas FM runs, one per file: each a named list of idempotent steps,
//! each step with an optional undo that reverses that step's own effect. A
//! step may run more than once (after a crash it is run again from the
//! start), so it must check before it acts.
//!
//! Types carry everything between the parts of a saga: each saga declares
//! its parameters as a [`SagaParams`] type (submitted with
//! [`crate::ops::Engine::submit`]) and each step returns a `Serialize`
//! output; steps read them back with [`StepCtx::params`] and
//! [`StepCtx::output`], never by string key. Both are stored as JSON, so an
//! operation written by this version resumes after an upgrade as long as
//! the types read what it wrote (tested in `compat`).

pub mod backup_delete;
pub mod backup_restore;
pub mod backup_take;
pub mod backup_verify;
pub mod common;
pub mod deprovision;
pub mod instance_delete;
pub mod password;
pub mod power;
pub mod provision;
pub mod resource_delete;
pub mod setup;
pub mod snapshot;
pub mod snapshot_delete;

#[cfg(test)]
mod compat;

use crate::error::{Error, Result};
use crate::store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A [`Step`] from a step function (and its undo), each an `async fn(StepCtx)
/// -> Result<T>` with any `Serialize` output `T`:
/// `step!("name", f)`, `step!("name", f, undo g)`.
macro_rules! step {
    ($name:literal, $f:path) => {
        $crate::ops::sagas::Step {
            name: $name,
            run: |c| Box::pin($crate::ops::sagas::to_output($f(c))),
            undo: None,
        }
    };
    ($name:literal, $f:path, undo $u:path) => {
        $crate::ops::sagas::Step {
            name: $name,
            run: |c| Box::pin($crate::ops::sagas::to_output($f(c))),
            undo: Some(|c| Box::pin($crate::ops::sagas::to_output($u(c)))),
        }
    };
}
pub(crate) use step;

/// The parameters of one kind of saga: what [`crate::ops::Engine::submit`]
/// persists and [`StepCtx::params`] reads back.
pub trait SagaParams: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The operation kind (the public API's future `kind`).
    const KIND: &'static str;
}

/// What a step sees.
#[derive(Clone, Debug)]
pub struct StepCtx {
    pub store: Store,
    /// The ports and settings steps act through.
    pub svc: Arc<super::Services>,
    pub op_id: String,
    pub tenant: String,
    /// The id of the object the operation acts on.
    pub target: String,
    params: Arc<Value>,
    outputs: Arc<Map<String, Value>>,
}

impl StepCtx {
    pub(crate) fn new(
        svc: Arc<super::Services>,
        op_id: String,
        tenant: String,
        target: String,
        params: Arc<Value>,
        outputs: Arc<Map<String, Value>>,
    ) -> StepCtx {
        StepCtx {
            store: svc.store.clone(),
            svc,
            op_id,
            tenant,
            target,
            params,
            outputs,
        }
    }

    /// Appends a line to the operation's log.
    pub async fn log(&self, line: impl Into<String>) {
        let _ = self.store.op_log(&self.op_id, &line.into()).await;
    }

    /// The parameters the operation was submitted with, as its saga's type.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P> {
        P::deserialize(&*self.params).map_err(|e| {
            Error::internal(format!(
                "operation {} has parameters its saga can't read: {e}",
                self.op_id
            ))
        })
    }

    /// The output of the finished step `step`, as that step's type.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T> {
        self.output_if(step)?
            .ok_or_else(|| Error::internal(format!("the output of step {step} is missing")))
    }

    /// The output of step `step` if it finished (a saga whose steps differ
    /// by path, or an undo running before its step's output was recorded).
    pub fn output_if<T: DeserializeOwned>(&self, step: &str) -> Result<Option<T>> {
        self.outputs
            .get(step)
            .map(|v| {
                T::deserialize(v).map_err(|e| {
                    Error::internal(format!(
                        "the output of step {step} of operation {} can't be read: {e}",
                        self.op_id
                    ))
                })
            })
            .transpose()
    }
}

pub type StepFuture = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;
pub type StepFn = fn(StepCtx) -> StepFuture;

/// Turns a step's typed output into the JSON the engine records.
pub async fn to_output<T: Serialize>(f: impl Future<Output = Result<T>>) -> Result<Value> {
    let out = f.await?;
    serde_json::to_value(out).map_err(Error::internal)
}

/// One step of a saga.
#[derive(Clone, Copy)]
pub struct Step {
    pub name: &'static str,
    pub run: StepFn,
    pub undo: Option<StepFn>,
}

/// A kind of operation and its steps.
#[derive(Clone)]
pub struct Saga {
    pub kind: &'static str,
    pub steps: Vec<Step>,
    /// The step whose output is the operation's result.
    pub result: &'static str,
}

impl Saga {
    /// A saga whose result is its last step's output.
    pub fn new(kind: &'static str, steps: Vec<Step>) -> Saga {
        let result = steps.last().map(|s| s.name).unwrap_or_default();
        Saga {
            kind,
            steps,
            result,
        }
    }

    /// The saga with step `step`'s output as its result.
    pub fn result_of(mut self, step: &'static str) -> Saga {
        debug_assert!(self.steps.iter().any(|s| s.name == step));
        self.result = step;
        self
    }
}

/// Every saga FM knows.
pub fn all() -> Vec<Saga> {
    vec![
        provision::saga(),
        deprovision::saga(),
        power::start_saga(),
        power::stop_saga(),
        power::restart_saga(),
        setup::saga(),
        password::saga(),
        snapshot::saga(),
        snapshot_delete::saga(),
        instance_delete::saga(),
        backup_take::saga(),
        backup_delete::saga(),
        backup_restore::saga(),
        backup_verify::saga(),
        resource_delete::account_saga(),
        resource_delete::network_saga(),
        resource_delete::template_saga(),
    ]
}
