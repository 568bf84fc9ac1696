//! PostgreSQL going away under running workers: FM is cut off from its
//! database by a [`common::ChaosProxy`] for longer than a lease, mid-way
//! through several operations. No operation is lost or left stuck, each
//! finishes exactly once, a step runs again only when its worker lost the
//! database under it, and the REST API fails fast while the database is away
//! and serves again once it is back. PostgreSQL only (`FM_TEST_BACKEND=postgres`).

mod common;

use common::{TestApp, TestDb};
use fleet_manager::error::Result;
use fleet_manager::ops::sagas::{Saga, SagaParams, Step, StepCtx};
use fleet_manager::store::operations::op_get;
use fleet_manager::store::resources::events_for_operation;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

const SAGA: &str = "TEST_OUTAGE_FOUR_STEPS";
const STEPS: [&str; 4] = ["a", "b", "c", "d"];
/// Leases are renewed every third of this.
const LEASE: Duration = Duration::from_secs(2);
/// Longer than a lease: every lease held when the network broke runs out.
const OUTAGE: Duration = Duration::from_secs(3);

/// What the steps did, kept in memory (the database may be away when they
/// run): per operation, the steps in the order they started, and every time
/// a step started while another run of the same operation was still going.
#[derive(Default)]
struct Record {
    runs: HashMap<String, Vec<&'static str>>,
    active: HashMap<String, usize>,
    overlaps: Vec<String>,
}

static RECORD: LazyLock<Mutex<Record>> = LazyLock::new(Default::default);

/// A run of a step, counted as active until it ends or is dropped.
struct Running(String);

impl Running {
    fn start(op: &str, step: &'static str) -> Running {
        let mut r = RECORD.lock().unwrap();
        r.runs.entry(op.to_string()).or_default().push(step);
        let n = r.active.entry(op.to_string()).or_default();
        *n += 1;
        if *n > 1 {
            r.overlaps
                .push(format!("{op}: {step} started while another run was going"));
        }
        Running(op.to_string())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut r) = RECORD.lock() {
            *r.active.entry(self.0.clone()).or_default() -= 1;
        }
    }
}

fn runs(op: &str) -> Vec<&'static str> {
    RECORD
        .lock()
        .unwrap()
        .runs
        .get(op)
        .cloned()
        .unwrap_or_default()
}

fn overlaps(ops: &[String]) -> Vec<String> {
    let r = RECORD.lock().unwrap();
    r.overlaps
        .iter()
        .filter(|o| ops.iter().any(|op| o.starts_with(&format!("{op}:"))))
        .cloned()
        .collect()
}

/// The test saga's parameters: each step takes `sleep_ms`, the one named
/// `long_step` `long_ms`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutageParams {
    #[serde(default)]
    sleep_ms: Option<u64>,
    #[serde(default)]
    long_step: Option<String>,
    #[serde(default)]
    long_ms: Option<u64>,
}

impl SagaParams for OutageParams {
    const KIND: &'static str = SAGA;
}

fn sleeping(ms: u64) -> OutageParams {
    OutageParams {
        sleep_ms: Some(ms),
        ..OutageParams::default()
    }
}

/// Each step sleeps as the parameters say and writes a log line (lost if
/// the database is away, which a step must survive).
async fn step(c: StepCtx, name: &'static str) -> Result<Value> {
    let _run = Running::start(&c.op_id, name);
    c.log(format!("ran {name}")).await;
    let p: OutageParams = c.params()?;
    let ms = if p.long_step.as_deref() == Some(name) {
        p.long_ms
    } else {
        p.sleep_ms
    };
    tokio::time::sleep(Duration::from_millis(ms.unwrap_or(0))).await;
    Ok(json!({"step": name}))
}

fn saga() -> Saga {
    Saga::new(
        SAGA,
        vec![
            Step {
                name: "a",
                run: |c| Box::pin(step(c, "a")),
                undo: None,
            },
            Step {
                name: "b",
                run: |c| Box::pin(step(c, "b")),
                undo: None,
            },
            Step {
                name: "c",
                run: |c| Box::pin(step(c, "c")),
                undo: None,
            },
            Step {
                name: "d",
                run: |c| Box::pin(step(c, "d")),
                undo: None,
            },
        ],
    )
}

/// An FM on a PostgreSQL database behind a chaos proxy, with short leases;
/// `None` (and a note) on another backend.
async fn app_behind_proxy(test: &str) -> Option<TestApp> {
    if common::backend() != "postgres" {
        eprintln!("{test}: skipped, it needs FM_TEST_BACKEND=postgres");
        return None;
    }
    let db = TestDb::behind_chaos_proxy().await;
    let t = TestApp::on(
        db,
        |cfg| {
            cfg.engine.lease = LEASE;
            cfg.engine.workers = 4;
            cfg.future_wait = Duration::ZERO;
        },
        vec![saga()],
    )
    .await;
    Some(t)
}

async fn submit(t: &TestApp, target: &str, params: OutageParams) -> String {
    let f = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            target,
            params,
        )
        .await
        .expect("submit");
    assert!(f.alive, "{f:?}");
    f.job_id
}

/// Polls until `cond` holds, for at most `limit`.
async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// While the network is broken: the API answers 5xx quickly (no hang, no
/// dropped connection), and submitting work fails with an error.
async fn api_fails_fast(t: &TestApp, job: &str) {
    let begun = Instant::now();
    let (s, body) = tokio::time::timeout(
        Duration::from_secs(5),
        t.api.get(&format!("/tenants/main/futures/{job}?peek=true")),
    )
    .await
    .expect("the API answers while the database is away");
    assert!(s.is_server_error(), "{s}: {body}");
    assert!(begun.elapsed() < Duration::from_secs(5));
    let (s, body) = tokio::time::timeout(
        Duration::from_secs(5),
        t.api.post(
            "/tenants/main/instance-settings-templates",
            json!({"label": "during the outage"}),
        ),
    )
    .await
    .expect("the API answers while the database is away");
    assert!(s.is_server_error(), "{s}: {body}");
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        t.app.start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "during-outage",
            OutageParams::default(),
        ),
    )
    .await
    .expect("submitting answers while the database is away");
    assert!(r.is_err(), "{r:?}");
}

/// Waits until no operation is pending or running; every one must be done.
async fn all_done(t: &TestApp, ops: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    for op in ops {
        loop {
            let (s, f) = t
                .api
                .get(&format!("/tenants/main/futures/{op}?peek=true"))
                .await;
            assert_eq!(s, StatusCode::OK, "{f}");
            if f["alive"] == false {
                assert_eq!(f["state"], "done", "{f}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "operation {op} stuck after the outage: {f}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The operation finished once: one outbox event, one closing log line, no
/// lease left; its steps ran in order, each once, except that a resumed
/// operation may run again the step its worker was in when it lost the
/// database (one extra run per resume), and never two runs at once.
async fn finished_once(t: &TestApp, op: &str) -> i32 {
    let store = &t.app.store;
    let events = events_for_operation(store.conn(), op).await.unwrap();
    assert_eq!(events.len(), 1, "{op}: {events:?}");
    let m = op_get(store.conn(), "main", op).await.unwrap().unwrap();
    assert_eq!(m.state, "done");
    assert_eq!(m.lease_owner, None);
    assert_eq!(m.next_step, STEPS.len() as i32);
    let log = store.op_log_tail(op, 10_000).await.unwrap();
    let closing = log.iter().filter(|l| l.starts_with("operation ")).count();
    assert_eq!(closing, 1, "{op}: {log:?}");
    assert_eq!(log.last().map(String::as_str), Some("operation done"));

    let runs = runs(op);
    let mut distinct = runs.clone();
    distinct.dedup();
    assert_eq!(distinct, STEPS, "{op}: steps ran out of order: {runs:?}");
    let resumes = (m.attempts - 1).max(0) as usize;
    assert!(
        runs.len() <= STEPS.len() + resumes,
        "{op}: {} step runs in {} attempts: {runs:?}\n{log:#?}",
        runs.len(),
        m.attempts
    );
    m.attempts
}

/// After the outage the API serves and new work runs through to the end.
async fn works_again(t: &TestApp) {
    let tpl = t.api.create_template().await;
    let (s, _) = t
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{tpl}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let job = submit(t, "after-outage", sleeping(10)).await;
    all_done(t, std::slice::from_ref(&job), Duration::from_secs(10)).await;
    assert_eq!(finished_once(t, &job).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_survive_a_database_outage_and_finish_once() {
    let Some(t) = app_behind_proxy("operations_survive_a_database_outage_and_finish_once").await
    else {
        return;
    };
    let chaos = t.db.chaos();
    let begun = Instant::now();
    // Eight operations of four 300 ms steps on four workers.
    let mut ops = vec![];
    for i in 0..8 {
        ops.push(submit(&t, &format!("target-{i}"), sleeping(300)).await);
    }
    // Break the network once some steps are done and four are in flight.
    until(Duration::from_secs(10), "first steps", || {
        ops.iter().map(|o| runs(o).len()).sum::<usize>() >= 6
    })
    .await;
    chaos.break_networking();
    let broke = Instant::now();
    api_fails_fast(&t, &ops[0]).await;
    tokio::time::sleep(OUTAGE.saturating_sub(broke.elapsed())).await;
    assert!(
        chaos.refused() > 0,
        "nothing tried the database while it was away"
    );
    chaos.restore_networking();
    let restored = Instant::now();

    // Resumed within a lease of the restore (plus their remaining steps).
    all_done(&t, &ops, LEASE * 4 + Duration::from_secs(5)).await;
    let recovered = restored.elapsed();
    let mut resumed = 0;
    for op in &ops {
        if finished_once(&t, op).await > 1 {
            resumed += 1;
        }
    }
    assert!(
        resumed > 0,
        "no operation was in flight when the network broke"
    );
    assert_eq!(overlaps(&ops), Vec::<String>::new());
    works_again(&t).await;
    eprintln!(
        "{} operations, {resumed} resumed; all done {recovered:?} after the restore, {:?} in all",
        ops.len(),
        begun.elapsed()
    );
    t.stop().await;
}

/// A step that outlasts the outage: its worker's lease runs out meanwhile and
/// another worker resumes the operation once the database is back. The first
/// worker must then stand down; the rest of the saga runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_ran_out_in_an_outage_leaves_the_operation_to_its_successor() {
    let Some(t) = app_behind_proxy(
        "a_worker_whose_lease_ran_out_in_an_outage_leaves_the_operation_to_its_successor",
    )
    .await
    else {
        return;
    };
    let chaos = t.db.chaos();
    let begun = Instant::now();
    let op = submit(
        &t,
        "target-long",
        OutageParams {
            sleep_ms: Some(100),
            long_step: Some("b".into()),
            long_ms: Some(4500),
        },
    )
    .await;
    until(Duration::from_secs(10), "step b started", || {
        runs(&op).contains(&"b")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    chaos.break_networking();
    api_fails_fast(&t, &op).await;
    tokio::time::sleep(OUTAGE).await;
    chaos.restore_networking();

    all_done(&t, std::slice::from_ref(&op), Duration::from_secs(20)).await;
    let attempts = finished_once(&t, &op).await;
    assert!(attempts > 1, "the operation was never resumed");
    let runs = runs(&op);
    for s in ["a", "c", "d"] {
        assert_eq!(
            runs.iter().filter(|r| **r == s).count(),
            1,
            "{s} ran more than once: {runs:?}"
        );
    }
    assert_eq!(overlaps(std::slice::from_ref(&op)), Vec::<String>::new());
    works_again(&t).await;
    eprintln!(
        "steps run: {runs:?} in {attempts} attempts; {:?} in all",
        begun.elapsed()
    );
    t.stop().await;
}
