//! The operations engine.
//!
//! Every long action is a persisted *operation* (a *future* in the public
//! API): a saga of idempotent steps. Workers claim pending operations with a
//! lease, record each finished step before starting the next, renew the
//! lease while they work, and write the final state together with an outbox
//! event in one guarded transaction. If FM dies mid-operation, the lease
//! expires and a worker (after restart, or on another replica) resumes at the
//! first unfinished step; steps are idempotent, so re-running the one that
//! was in flight is safe, and the guarded finish makes completion happen
//! exactly once. A failing step unwinds the finished ones through their undo
//! actions, in reverse; an abort does the same between steps.

pub mod backup_access;
pub mod placement;
pub mod sagas;

use crate::error::{Error, OpFailure, Result};
use crate::model::operation::OpState;
use crate::opctx::OpCtx;
use crate::store::entities::operation;
use crate::store::operations::{op_get, op_insert};
use crate::store::requests as rq;
use crate::store::{ClaimedOp, NewOperation, OpOutcome, Store};
use sagas::{Saga, SagaParams, StepCtx};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The ports and settings saga steps act through.
#[derive(Debug)]
pub struct Services {
    pub store: Store,
    pub secrets: crate::crypto::SecretBox,
    pub hub: crate::agents::AgentHub,
    pub cloud: Arc<dyn crate::cloud::CloudProvider>,
    pub lc: LifecycleConfig,
    pub ca: Arc<crate::pki::Ca>,
    /// The URL agents dial (FM's agent endpoint), known once it listens.
    pub agent_url: std::sync::OnceLock<String>,
}

/// Settings of the instance lifecycle.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// FM's CA certificate, given to agents in their user-data.
    pub ca_pem: String,
    pub heartbeat_secs: u32,
    /// How long a new or restarted VM's agent has to connect.
    pub agent_connect_timeout: Duration,
    /// How long one agent command may take.
    pub command_timeout: Duration,
    /// How long a started node has to answer its health check.
    pub health_timeout_secs: u32,
    /// Nodes get port blocks `port_base + k * port_step`.
    pub port_base: u16,
    pub port_step: u16,
    /// How long an enrollment token stays valid.
    pub token_ttl: Duration,
    /// Where instance backups go (none: backups are refused).
    pub backups: Option<fm_backup::Location>,
    /// How agents' object-storage credentials are scoped (none: agents get
    /// the location's own).
    pub backup_scoping: Option<backup_access::Scoping>,
}

/// The first pause before a failed bookkeeping write is tried again, and
/// the longest (doubling in between).
const PERSIST_RETRY_FIRST: Duration = Duration::from_millis(100);
const PERSIST_RETRY_MAX: Duration = Duration::from_secs(2);

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker tasks per FM process.
    pub workers: usize,
    /// How long a claim lasts without renewal.
    pub lease: Duration,
    /// How often idle workers look for work they were not woken for.
    pub poll_interval: Duration,
    /// A pause before each step. Zero in production; fault tests set it so
    /// that an operation is caught mid-flight.
    pub step_delay: Duration,
    /// An operation claimed this many times without finishing is failed.
    pub max_attempts: i32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            step_delay: Duration::ZERO,
            max_attempts: 10,
        }
    }
}

/// Faults injected into one operation's run, so a test can prove each saga
/// step by step (omicron's `saga_inject_repeat` / `saga_inject_error`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injection {
    /// Run every step's action twice; the second run's output is kept.
    pub repeat_steps: bool,
    /// Fail the step at this index (0-based) without running it, so the
    /// steps before it unwind.
    pub fail_at: Option<usize>,
    /// Run every undo action twice.
    pub repeat_undo: bool,
}

/// Runs operations; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    svc: Arc<Services>,
    owner: String,
    cfg: EngineConfig,
    sagas: HashMap<&'static str, Saga>,
    wake: Notify,
    /// Workers waiting for work (between two looks at the queue).
    idle: std::sync::atomic::AtomicUsize,
    finished: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    injections: Mutex<HashMap<String, Injection>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.inner.owner)
            .finish()
    }
}

impl Engine {
    /// An engine with FM's sagas, plus `extra` ones (tests add their own).
    pub fn new(svc: Arc<Services>, cfg: EngineConfig, extra: Vec<Saga>) -> Engine {
        let store = svc.store.clone();
        let mut sagas: HashMap<&'static str, Saga> =
            sagas::all().into_iter().map(|s| (s.kind, s)).collect();
        for s in extra {
            sagas.insert(s.kind, s);
        }
        Engine {
            inner: Arc::new(Inner {
                store,
                svc,
                owner: crate::model::new_id("worker"),
                cfg,
                sagas,
                wake: Notify::new(),
                idle: std::sync::atomic::AtomicUsize::new(0),
                finished: watch::channel(0).0,
                shutdown: watch::channel(false).0,
                injections: Mutex::default(),
            }),
        }
    }

    /// This FM process's identity in leases.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.inner.svc
    }

    pub fn saga(&self, kind: &str) -> Option<&Saga> {
        self.inner.sagas.get(kind)
    }

    /// Persists a new operation of `P`'s saga, started by `ctx`'s actor,
    /// and returns it; call [`Engine::kick`] to have it run now.
    pub async fn submit<P: SagaParams>(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        target_id: &str,
        params: &P,
    ) -> Result<operation::Model> {
        let params = serde_json::to_value(params).map_err(Error::internal)?;
        let op = self
            .submit_kind(ctx, tenant, P::KIND, target_id, params)
            .await?;
        ctx.note_operation(&op.id);
        Ok(op)
    }

    /// Persists a new operation of kind `kind` with its parameters as JSON.
    async fn submit_kind(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        kind: &str,
        target_id: &str,
        params: Value,
    ) -> Result<operation::Model> {
        let saga = self
            .saga(kind)
            .ok_or_else(|| Error::internal(format!("no saga for operation kind {kind}")))?;
        let new = NewOperation {
            id: ctx
                .operation_id
                .clone()
                .unwrap_or_else(|| crate::model::new_id("op")),
            tenant_id: tenant.to_string(),
            kind: kind.to_string(),
            target_id: target_id.to_string(),
            params,
            total_steps: saga.steps.len() as i32,
            initiated_by: ctx.actor_name(),
        };
        let db = &self.inner.store.db;
        let Some(r) = &ctx.client_request else {
            return op_insert(db, new).await;
        };
        // The request id is claimed with the operation, in one transaction:
        // of two attempts with the same id, one operation is made.
        use sea_orm::TransactionTrait;
        let txn = db.begin().await?;
        if rq::request_claim(&txn, tenant, &r.id, &r.method, &r.fingerprint, &new.id).await? {
            let op = op_insert(&txn, new).await?;
            txn.commit().await?;
            return Ok(op);
        }
        txn.rollback().await?;
        let earlier = rq::request_find(db, tenant, &r.id).await?;
        match earlier {
            Some(m) if m.method == r.method && m.fingerprint == r.fingerprint => {
                op_get(db, tenant, &m.object_id)
                    .await?
                    .ok_or_else(|| Error::not_found("future", m.object_id))
            }
            Some(m) => Err(Error::invalid(format!(
                "request_id '{}' was already used for another request ({}): give each new request a new id",
                r.id.escape_debug(),
                m.method
            ))),
            None => Err(Error::conflict(format!(
                "request_id '{}' is being used by another request: retry",
                r.id.escape_debug()
            ))),
        }
    }

    /// Injects faults into the run of operation `op_id` (tests).
    pub fn inject(&self, op_id: &str, injection: Injection) {
        lock(&self.inner.injections).insert(op_id.to_string(), injection);
    }

    fn injection(&self, op_id: &str) -> Injection {
        lock(&self.inner.injections)
            .get(op_id)
            .copied()
            .unwrap_or_default()
    }

    /// How many workers the engine runs.
    pub fn workers(&self) -> usize {
        self.inner.cfg.workers
    }

    /// How many workers found the queue empty and wait for work.
    pub fn idle_workers(&self) -> usize {
        self.inner.idle.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Changes each time an operation finishes.
    pub fn finished_watch(&self) -> watch::Receiver<u64> {
        self.inner.finished.subscribe()
    }

    /// Wakes a worker for newly submitted work.
    pub fn kick(&self) {
        self.inner.wake.notify_one();
    }

    /// Starts the worker tasks.
    pub fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.inner.cfg.workers)
            .map(|n| {
                let e = self.clone();
                tokio::spawn(async move { e.worker_loop(n).await })
            })
            .collect()
    }

    /// Stops claiming work; in-flight operations give their lease back at the
    /// next step boundary.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        self.inner.wake.notify_waiters();
    }

    fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Waits until the operation is finished or `timeout` passes, and returns
    /// it as it is then.
    pub async fn wait(
        &self,
        tenant: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<operation::Model> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.finished.subscribe();
        loop {
            let op = op_get(&self.inner.store.db, tenant, id)
                .await?
                .ok_or_else(|| Error::not_found("future", id))?;
            let done = OpState::parse(&op.state).is_some_and(OpState::is_final);
            if done || tokio::time::Instant::now() >= deadline {
                return Ok(op);
            }
            let nap = Duration::from_millis(200).min(deadline - tokio::time::Instant::now());
            let _ = tokio::time::timeout(nap, rx.changed()).await;
        }
    }

    async fn worker_loop(self, n: usize) {
        // Each worker holds leases in its own name: one whose lease ran out
        // (the database was away) must not take its successor's for its own.
        let owner = format!("{}/{n}", self.inner.owner);
        let mut shutdown = self.inner.shutdown.subscribe();
        while !self.is_shutting_down() {
            let lease_ms = self.inner.cfg.lease.as_millis() as i64;
            match self.inner.store.op_claim(&owner, lease_ms).await {
                Ok(Some(op)) => {
                    self.run_guarded(op).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming an operation failed"),
            }
            let idle = &self.inner.idle;
            idle.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.cfg.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            idle.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Runs a claimed operation in a task of its own: a step that panics
    /// fails its operation (and frees its target) instead of ending the
    /// worker with the lease still renewed.
    async fn run_guarded(&self, op: ClaimedOp) {
        let id = op.id.clone();
        let e = self.clone();
        let claimed = op.clone();
        match tokio::spawn(async move { e.run(claimed).await }).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(operation = %id, error = %e, "operation run aborted by an internal error")
            }
            Err(j) if !j.is_panic() => {
                // The runtime is stopping: the lease runs out and the next
                // FM resumes the operation.
                tracing::warn!(operation = %id, "the operation's run was cancelled");
            }
            Err(_) => {
                tracing::error!(operation = %id, "a step of the operation panicked");
                let e = Error::op_failed(
                    OpFailure::StepPanicked,
                    "a step of this operation panicked; see the server log",
                );
                if let Err(e) = self.finish(&op, OpOutcome::Failed(e)).await {
                    tracing::error!(operation = %id, error = %e, "can't record the operation's failure");
                }
            }
        }
    }

    async fn log(&self, op: &ClaimedOp, line: String) {
        tracing::info!(operation = %op.id, kind = %op.kind, "{line}");
        if let Err(e) = self.inner.store.op_log(&op.id, &line).await {
            tracing::warn!(operation = %op.id, error = %e, "can't store log line");
        }
    }

    /// Runs a claimed operation from its first unfinished step to the end.
    async fn run(&self, op: ClaimedOp) -> Result<()> {
        let store = &self.inner.store;
        let owner = holder(&op);
        let Some(saga) = self.saga(&op.kind) else {
            let e = Error::internal(format!("unknown operation kind {}", op.kind));
            return self.finish(&op, OpOutcome::Failed(e)).await;
        };
        if op.attempts > self.inner.cfg.max_attempts {
            let e = Error::op_failed(
                OpFailure::TooManyAttempts,
                format!(
                    "gave up after {} attempts to run this operation",
                    op.attempts - 1
                ),
            );
            return self.finish(&op, OpOutcome::Failed(e)).await;
        }
        if op.attempts > 1 {
            self.log(
                &op,
                format!(
                    "resuming at step {} of {} (attempt {})",
                    op.next_step + 1,
                    op.total_steps,
                    op.attempts
                ),
            )
            .await;
        }

        // Keep the lease alive while steps run; stop when we lose it, or
        // when it runs out unrenewed (the database is away): another worker
        // may take the operation over as soon as it has expired, so stand
        // down a little before (a tenth of the lease).
        let (lost_tx, lost_rx) = watch::channel(false);
        let renewer = {
            let store = store.clone();
            let (id, owner, lease) = (op.id.clone(), owner.to_string(), self.inner.cfg.lease);
            // The claim just set the lease to run `lease` from now (in the
            // database's time, which this host's monotonic clock follows).
            let margin = lease / 10;
            let mut until = tokio::time::Instant::now() + lease.saturating_sub(margin);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep_until((tokio::time::Instant::now() + lease / 3).min(until))
                        .await;
                    let asked = tokio::time::Instant::now();
                    if asked < until {
                        let renew = store.op_renew_lease(&id, &owner, lease.as_millis() as i64);
                        match tokio::time::timeout_at(until, renew).await {
                            Ok(Ok(true)) => until = asked + lease.saturating_sub(margin),
                            Ok(Ok(false)) => {
                                let _ = lost_tx.send(true);
                                return;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(operation = %id, error = %e, "lease renewal failed")
                            }
                            Err(_) => {
                                tracing::warn!(operation = %id, "lease renewal timed out")
                            }
                        }
                    }
                    if tokio::time::Instant::now() >= until {
                        tracing::warn!(operation = %id, "lease ran out unrenewed; standing down");
                        let _ = lost_tx.send(true);
                        return;
                    }
                }
            })
        };
        // Stopped however the run ends, a panic included.
        let _renewer = AbortOnDrop(renewer);
        self.run_steps(&op, saga, lost_rx).await
    }

    async fn run_steps(
        &self,
        op: &ClaimedOp,
        saga: &Saga,
        lost: watch::Receiver<bool>,
    ) -> Result<()> {
        let store = &self.inner.store;
        let owner = holder(op);
        let mut outputs: Map<String, Value> = serde_json::from_str(&op.saga).unwrap_or_default();
        let params: Arc<Value> = Arc::new(serde_json::from_str(&op.params).unwrap_or(Value::Null));
        let inject = self.injection(&op.id);
        let ctx = |outputs: &Map<String, Value>| {
            StepCtx::new(
                self.inner.svc.clone(),
                op.id.clone(),
                op.tenant_id.clone(),
                op.target_id.clone(),
                params.clone(),
                Arc::new(outputs.clone()),
            )
        };
        let first = op.next_step.max(0) as usize;
        for (i, step) in saga.steps.iter().enumerate().skip(first) {
            if *lost.borrow() {
                tracing::warn!(operation = %op.id, "lease lost; leaving the operation to its new owner");
                return Ok(());
            }
            if self.is_shutting_down() {
                self.log(
                    op,
                    format!(
                        "FM is stopping; step {} will resume after restart",
                        step.name
                    ),
                )
                .await;
                return store.op_release(&op.id, owner).await;
            }
            let Some(abort) = self
                .persist(&lost, || store.op_abort_requested(&op.id))
                .await
            else {
                return Ok(());
            };
            if abort {
                self.log(op, "abort requested".into()).await;
                self.unwind(op, saga, i, &outputs, &ctx, inject).await;
                return self.finish(op, OpOutcome::Aborted).await;
            }
            let progress = Value::Object(outputs.clone());
            let recorded = self
                .persist(&lost, || {
                    store.op_record_progress(&op.id, owner, i as i32, Some(step.name), &progress)
                })
                .await;
            if recorded != Some(true) {
                return Ok(());
            }
            self.log(
                op,
                format!("step {}/{} {}: started", i + 1, saga.steps.len(), step.name),
            )
            .await;
            if !self.inner.cfg.step_delay.is_zero() {
                tokio::time::sleep(self.inner.cfg.step_delay).await;
            }
            // FM stopping interrupts the step; it runs again (it is
            // idempotent) when a worker resumes the operation.
            let mut stopping = self.inner.shutdown.subscribe();
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let run = async {
                if inject.fail_at == Some(i) {
                    return Err(Error::op_failed(
                        OpFailure::InjectedFailure,
                        format!("a failure injected at step {}", step.name),
                    ));
                }
                if inject.repeat_steps {
                    (step.run)(ctx(&outputs)).await?;
                }
                (step.run)(ctx(&outputs)).await
            };
            // Losing the lease interrupts it too: the new owner runs it.
            let mut losing = lost.clone();
            let lose = async move {
                if losing.wait_for(|l| *l).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let outcome = tokio::select! {
                r = run => r,
                () = stop => {
                    self.log(op, format!("FM is stopping; step {} will run again after restart", step.name)).await;
                    return store.op_release(&op.id, owner).await;
                }
                () = lose => {
                    tracing::warn!(operation = %op.id, step = step.name, "lease lost during the step; leaving the operation to its new owner");
                    return Ok(());
                }
            };
            match outcome {
                Ok(out) => {
                    outputs.insert(step.name.to_string(), out);
                    let next = i as i32 + 1;
                    let progress = Value::Object(outputs.clone());
                    let recorded = self
                        .persist(&lost, || {
                            store.op_record_progress(&op.id, owner, next, None, &progress)
                        })
                        .await;
                    if recorded != Some(true) {
                        return Ok(());
                    }
                    self.log(
                        op,
                        format!("step {}/{} {}: done", i + 1, saga.steps.len(), step.name),
                    )
                    .await;
                }
                Err(e) => {
                    self.log(
                        op,
                        format!(
                            "step {}/{} {}: failed: {}",
                            i + 1,
                            saga.steps.len(),
                            step.name,
                            e.message()
                        ),
                    )
                    .await;
                    // Only the lease holder unwinds: a worker that lost the
                    // lease leaves the operation to its new owner.
                    let lease_ms = self.inner.cfg.lease.as_millis() as i64;
                    let held = self
                        .persist(&lost, || store.op_renew_lease(&op.id, owner, lease_ms))
                        .await;
                    if held != Some(true) {
                        return Ok(());
                    }
                    if let Error::Internal { context } = &e {
                        tracing::error!(operation = %op.id, step = step.name, "{context}");
                    }
                    self.unwind(op, saga, i, &outputs, &ctx, inject).await;
                    return self.finish(op, OpOutcome::Failed(e)).await;
                }
            }
        }
        let result = outputs.get(saga.result).cloned().unwrap_or(Value::Null);
        self.finish(op, OpOutcome::Done(result)).await
    }

    /// Runs a store call of the operation's own bookkeeping again while it
    /// fails (the database is away), for up to one lease: once the database
    /// is back the operation goes on at once instead of waiting for its
    /// lease to run out. `None` when the lease is lost, FM stops or the
    /// time is up: the operation is then left to its next owner.
    async fn persist<T, F, Fut>(&self, lost: &watch::Receiver<bool>, mut call: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.cfg.lease;
        let mut pause = PERSIST_RETRY_FIRST;
        loop {
            match call().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    if *lost.borrow()
                        || self.is_shutting_down()
                        || tokio::time::Instant::now() + pause >= deadline
                    {
                        tracing::warn!(error = %e, "operation bookkeeping failed; leaving the operation to its next owner");
                        return None;
                    }
                    tracing::warn!(error = %e, "operation bookkeeping failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(PERSIST_RETRY_MAX);
                }
            }
        }
    }

    /// Runs the undo actions of steps `0..upto`, newest first. An undo that
    /// fails is logged and the unwinding goes on.
    async fn unwind(
        &self,
        op: &ClaimedOp,
        saga: &Saga,
        upto: usize,
        outputs: &Map<String, Value>,
        ctx: &(dyn Fn(&Map<String, Value>) -> StepCtx + Sync),
        inject: Injection,
    ) {
        for step in saga.steps[..upto].iter().rev() {
            if let Some(undo) = step.undo {
                if inject.repeat_undo
                    && let Err(e) = undo(ctx(outputs)).await
                {
                    self.log(op, format!("undo {}: failed: {}", step.name, e.message()))
                        .await;
                }
                match undo(ctx(outputs)).await {
                    Ok(_) => self.log(op, format!("undo {}: done", step.name)).await,
                    Err(e) => {
                        self.log(op, format!("undo {}: failed: {}", step.name, e.message()))
                            .await
                    }
                }
            }
        }
    }

    async fn finish(&self, op: &ClaimedOp, outcome: OpOutcome) -> Result<()> {
        lock(&self.inner.injections).remove(&op.id);
        let label = match &outcome {
            OpOutcome::Done(_) => "done".to_string(),
            OpOutcome::Failed(e) => format!("failed: {}", e.message()),
            OpOutcome::Aborted => "aborted".to_string(),
        };
        let line = format!("operation {label}");
        if self
            .inner
            .store
            .op_finish(op, holder(op), &outcome, &line)
            .await?
        {
            tracing::info!(operation = %op.id, kind = %op.kind, "{line}");
            self.inner.finished.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The worker a claimed operation is leased to.
fn holder(op: &ClaimedOp) -> &str {
    op.lease_owner.as_deref().unwrap_or_default()
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
