//! The operations engine: sagas run in order, unwind on failure, abort
//! between steps, resume after a crash at the first unfinished step, and
//! finish exactly once — including when the real server is killed mid-way.

mod common;

use common::{FmProcess, TestApp, TestDb, cli_create_key};
use fleet_manager::error::{Error, Result};
use fleet_manager::ops::sagas::{Saga, SagaParams, Step, StepCtx};
use fleet_manager::store::operations::op_insert;
use fleet_manager::store::resources::events_for_operation;
use fleet_manager::store::{NewOperation, OpOutcome, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const TEST_SAGA: &str = "TEST_THREE_STEPS";

/// The test saga's parameters: `fail_at` names a step that fails,
/// `sleep_ms` makes every step slow.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestParams {
    #[serde(default)]
    fail_at: Option<String>,
    #[serde(default)]
    sleep_ms: Option<u64>,
}

impl SagaParams for TestParams {
    const KIND: &'static str = TEST_SAGA;
}

fn fail_at(step: &str) -> TestParams {
    TestParams {
        fail_at: Some(step.into()),
        sleep_ms: None,
    }
}

fn sleep_ms(ms: u64) -> TestParams {
    TestParams {
        fail_at: None,
        sleep_ms: Some(ms),
    }
}

/// Each step logs that it ran, sleeps and fails as the parameters say.
async fn step(c: StepCtx, name: &'static str) -> Result<Value> {
    c.log(format!("ran {name}")).await;
    let p: TestParams = c.params()?;
    if let Some(ms) = p.sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if p.fail_at.as_deref() == Some(name) {
        return Err(Error::conflict(format!("step {name} refused")));
    }
    Ok(json!({"step": name}))
}

async fn undo(c: StepCtx, name: &'static str) -> Result<Value> {
    c.log(format!("undid {name}")).await;
    Ok(Value::Null)
}

fn test_saga() -> Saga {
    Saga::new(
        TEST_SAGA,
        vec![
            Step {
                name: "a",
                run: |c| Box::pin(step(c, "a")),
                undo: Some(|c| Box::pin(undo(c, "a"))),
            },
            Step {
                name: "b",
                run: |c| Box::pin(step(c, "b")),
                undo: Some(|c| Box::pin(undo(c, "b"))),
            },
            Step {
                name: "c",
                run: |c| Box::pin(step(c, "c")),
                undo: Some(|c| Box::pin(undo(c, "c"))),
            },
        ],
    )
}

async fn app_with_test_saga(future_wait_ms: u64) -> TestApp {
    TestApp::with(
        |cfg| cfg.future_wait = Duration::from_millis(future_wait_ms),
        vec![test_saga()],
    )
    .await
}

/// An app whose workers look for work only when woken (and once at start),
/// so a test can stage an operation before any worker sees it.
async fn idle_app() -> TestApp {
    let t = TestApp::with(
        |cfg| {
            cfg.engine.poll_interval = Duration::from_secs(3600);
            cfg.future_wait = Duration::ZERO;
        },
        vec![test_saga()],
    )
    .await;
    // The workers' first look at the queue has passed: they wait to be woken.
    let workers = t.app.engine.workers();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.app.engine.idle_workers() < workers {
        assert!(
            std::time::Instant::now() < deadline,
            "the workers never went idle"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t
}

/// The operation's own log lines that steps wrote (`ran x`, `undid x`).
fn step_lines(f: &Value) -> Vec<String> {
    f["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .filter(|l| l.starts_with("ran ") || l.starts_with("undid "))
        .map(str::to_string)
        .collect()
}

async fn event_count(store: &Store, op: &str) -> usize {
    events_for_operation(store.conn(), op).await.unwrap().len()
}

#[tokio::test]
async fn a_saga_runs_its_steps_in_order_and_finishes_once() {
    let t = app_with_test_saga(5000).await;
    let f = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            TestParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(f.state, "done");
    assert!(f.has_result);
    assert_eq!(f.result, Some(json!({"step": "c"})));
    let (_, peek) = t
        .api
        .get(&format!("/tenants/main/futures/{}?peek=true", f.job_id))
        .await;
    assert_eq!(step_lines(&peek), ["ran a", "ran b", "ran c"]);
    assert_eq!(peek["progress"]["percent"], 100);
    assert_eq!(event_count(&t.app.store, &f.job_id).await, 1);
    t.stop().await;
}

#[tokio::test]
async fn a_failing_step_unwinds_the_finished_ones_in_reverse() {
    let t = app_with_test_saga(5000).await;
    let f = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            fail_at("c"),
        )
        .await
        .unwrap();
    assert_eq!(f.state, "failed");
    assert!(!f.has_result && !f.alive);
    let (s, peek) = t
        .api
        .get(&format!("/tenants/main/futures/{}?peek=true", f.job_id))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        step_lines(&peek),
        ["ran a", "ran b", "ran c", "undid b", "undid a"]
    );
    // Waiting for the result (no peek) reports the failure with the step's message.
    let (s, err) = t
        .api
        .get(&format!("/tenants/main/futures/{}", f.job_id))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["errorType"], "Conflict");
    assert_eq!(err["message"], "step c refused");
    assert_eq!(event_count(&t.app.store, &f.job_id).await, 1);
    t.stop().await;
}

#[tokio::test]
async fn an_abort_while_running_unwinds_the_finished_steps() {
    let t = app_with_test_saga(0).await;
    let f = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            sleep_ms(400),
        )
        .await
        .unwrap();
    assert!(f.alive);
    // Abort while step a runs: a finishes, b never starts, a is undone.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (s, _) = t
        .api
        .delete(&format!("/tenants/main/futures/{}", f.job_id))
        .await;
    assert_eq!(s, StatusCode::OK);
    let done = t.api.wait_future(&f.job_id).await;
    assert_eq!(done["state"], "aborted", "{done}");
    assert_eq!(done["aborted"], true);
    assert_eq!(step_lines(&done), ["ran a", "undid a"]);
    let (s, err) = t
        .api
        .get(&format!("/tenants/main/futures/{}", f.job_id))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(err["errorType"], "OperationAborted");
    t.stop().await;
}

#[tokio::test]
async fn a_pending_operation_aborts_at_once_and_never_runs() {
    // Workers poll rarely and are never woken: the operation stays pending.
    let t = idle_app().await;
    let op = t
        .app
        .engine
        .submit(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            &TestParams::default(),
        )
        .await
        .unwrap();
    let (s, f) = t
        .api
        .delete(&format!("/tenants/main/futures/{}", op.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["state"], "aborted");
    t.app.engine.kick();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, f) = t
        .api
        .get(&format!("/tenants/main/futures/{}?peek=true", op.id))
        .await;
    assert_eq!(f["state"], "aborted");
    assert!(step_lines(&f).is_empty(), "{f}");
    t.stop().await;
}

#[tokio::test]
async fn a_second_operation_on_a_busy_object_is_refused() {
    let t = app_with_test_saga(0).await;
    let first = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            sleep_ms(300),
        )
        .await
        .unwrap();
    let second = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            TestParams::default(),
        )
        .await;
    assert!(matches!(second, Err(Error::Conflict(_))), "{second:?}");
    let done = t.api.wait_future(&first.job_id).await;
    assert_eq!(done["state"], "done");
    // Once the first is over, the object takes new work.
    let third = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            TestParams::default(),
        )
        .await
        .unwrap();
    t.api.wait_future(&third.job_id).await;
    t.stop().await;
}

#[tokio::test]
async fn an_operation_whose_worker_died_resumes_at_the_first_unfinished_step() {
    // Workers look for work only when woken, so the test can stage the crash.
    let t = idle_app().await;
    // As a dead worker leaves it: running, step a recorded done, lease expired.
    let id = "op-crashed0001".to_string();
    op_insert(
        t.app.store.conn(),
        NewOperation {
            id: id.clone(),
            tenant_id: "main".into(),
            kind: TEST_SAGA.into(),
            target_id: "target-1".into(),
            params: json!({}),
            total_steps: 3,
            initiated_by: "system:test".into(),
        },
    )
    .await
    .unwrap();
    let claimed = t
        .app
        .store
        .op_claim("dead-worker", 1)
        .await
        .unwrap()
        .expect("claim");
    assert!(
        t.app
            .store
            .op_record_progress(&id, "dead-worker", 1, None, &json!({"a": {"step": "a"}}))
            .await
            .unwrap()
    );
    assert_eq!(claimed.attempts, 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.app.engine.kick();
    let done = t.api.wait_future(&id).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(step_lines(&done), ["ran b", "ran c"]);
    let log: Vec<&str> = done["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.starts_with("resuming at step 2 of 3 (attempt 2)")),
        "{log:?}"
    );
    assert_eq!(event_count(&t.app.store, &id).await, 1);
    t.stop().await;
}

#[tokio::test]
async fn only_the_lease_holder_can_finish_and_only_once() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.unwrap();
    fleet_manager::store::resources::tenant_ensure(
        store.conn(),
        fleet_manager::store::entities::tenant::Model {
            id: "main".into(),
            cloud_credentials: "{}".into(),
            cloud_tags: "{}".into(),
            created_at: 0,
        },
    )
    .await
    .unwrap();
    let new = NewOperation {
        id: "op-once00000001".into(),
        tenant_id: "main".into(),
        kind: TEST_SAGA.into(),
        target_id: "t".into(),
        params: json!({}),
        total_steps: 3,
        initiated_by: "system:test".into(),
    };
    op_insert(store.conn(), new).await.unwrap();
    let op = store
        .op_claim("w1", 60_000)
        .await
        .unwrap()
        .expect("first claim");
    assert!(
        store.op_claim("w2", 60_000).await.unwrap().is_none(),
        "a held lease can't be claimed"
    );
    let done = OpOutcome::Done(json!({}));
    assert!(
        !store
            .op_finish(&op, "w2", &done, "operation done")
            .await
            .unwrap(),
        "not the holder"
    );
    assert!(
        store
            .op_finish(&op, "w1", &done, "operation done")
            .await
            .unwrap()
    );
    assert!(
        !store
            .op_finish(&op, "w1", &done, "operation done")
            .await
            .unwrap(),
        "already finished"
    );
    assert_eq!(event_count(&store, &op.id).await, 1);
    // The closing log line is written with the state, once.
    assert_eq!(
        store.op_log_tail(&op.id, 10).await.unwrap(),
        ["operation done"]
    );
    store.close().await;
}

/// The real binary, killed with SIGKILL between the two steps of a template
/// deletion, then restarted: the deletion completes once.
#[tokio::test]
async fn an_operation_interrupted_by_killing_the_server_finishes_once_after_restart() {
    let db = TestDb::new().await;
    let key = cli_create_key(&db);
    let slow = [
        ("FM_OPS_STEP_DELAY_MS", "1500"),
        ("FM_OPS_LEASE_SECS", "2"),
        ("FM_FUTURE_WAIT_MS", "0"),
    ];
    let fm = FmProcess::start(&db, &key, &slow).await;
    let tpl = fm.api.create_template().await;
    let (s, f) = fm
        .api
        .delete(&format!("/tenants/main/instance-settings-templates/{tpl}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["alive"], true, "{f}");
    let job = f["jobId"].as_str().unwrap().to_string();

    // Wait until the first step is recorded done, then kill the server.
    let mut seen = false;
    for _ in 0..100 {
        let (_, f) = fm
            .api
            .get(&format!("/tenants/main/futures/{job}?peek=true"))
            .await;
        if f["progress"]["doneSteps"] == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the first step never finished");
    fm.kill();

    let fm = FmProcess::start(&db, &key, &[("FM_OPS_LEASE_SECS", "2")]).await;
    let done = fm.api.wait_future(&job).await;
    assert_eq!(done["state"], "done", "{done}");
    let log: Vec<&str> = done["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("check-template-unused: done"), 1, "{log:?}");
    assert_eq!(count("resuming at step 2 of 2"), 1, "{log:?}");
    assert_eq!(count("operation done"), 1, "{log:?}");
    let (s, _) = fm
        .api
        .get(&format!("/tenants/main/instance-settings-templates/{tpl}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    fm.kill();

    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(
        event_count(&store, &job).await,
        1,
        "the completion is recorded exactly once"
    );
    store.close().await;
}

const PANIC_SAGA: &str = "TEST_PANICS";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PanicParams {}

impl SagaParams for PanicParams {
    const KIND: &'static str = PANIC_SAGA;
}

async fn boom(_c: StepCtx) -> Result<Value> {
    panic!("a bug in a step");
}

#[tokio::test]
async fn a_panicking_step_fails_its_operation_and_frees_the_worker_and_the_target() {
    let panics = Saga::new(
        PANIC_SAGA,
        vec![Step {
            name: "boom",
            run: |c| Box::pin(boom(c)),
            undo: None,
        }],
    );
    let t = TestApp::with(
        |cfg| {
            cfg.engine.workers = 1;
            cfg.future_wait = Duration::from_secs(5);
        },
        vec![test_saga(), panics],
    )
    .await;
    let f = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            PanicParams {},
        )
        .await
        .unwrap();
    assert_eq!(f.state, "failed", "{f:?}");
    assert_eq!(f.error.as_ref().unwrap().error_type, "StepPanicked");
    // The one worker is still there, and the target takes new work.
    let f = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            TestParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(f.state, "done", "{f:?}");
    t.stop().await;
}

#[tokio::test]
async fn history_past_its_retention_goes_and_unfinished_operations_stay() {
    let t = idle_app().await;
    let done = t
        .app
        .start_operation(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-1",
            TestParams::default(),
        )
        .await
        .unwrap();
    t.api.wait_future(&done.job_id).await;
    assert_eq!(event_count(&t.app.store, &done.job_id).await, 1);
    // Staged, never claimed: workers are not woken.
    let pending = t
        .app
        .engine
        .submit(
            &fleet_manager::opctx::OpCtx::system("test"),
            "main",
            "target-2",
            &TestParams::default(),
        )
        .await
        .unwrap();
    // Nothing is old enough yet.
    let none = t
        .app
        .history_prune(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(none.operations, 0);
    // With no retention left, the finished one goes, logs and events too.
    let pruned = t.app.history_prune(Duration::ZERO).await.unwrap();
    assert_eq!(pruned.operations, 1, "{pruned:?}");
    assert_eq!(event_count(&t.app.store, &done.job_id).await, 0);
    let (s, _) = t
        .api
        .get(&format!("/tenants/main/futures/{}", done.job_id))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, f) = t
        .api
        .get(&format!("/tenants/main/futures/{}?peek=true", pending.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["state"], "pending");
    t.stop().await;
}

/// A page of futures gets every operation's last log lines in one query:
/// each its own, newest `n`, oldest first; an operation without lines gets
/// none.
#[tokio::test]
async fn log_tails_of_many_operations_come_in_one_query_each_its_own() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.unwrap();
    fleet_manager::store::resources::tenant_ensure(
        store.conn(),
        fleet_manager::store::entities::tenant::Model {
            id: "main".into(),
            cloud_credentials: "{}".into(),
            cloud_tags: "{}".into(),
            created_at: 0,
        },
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for (i, lines) in [5usize, 1, 0].into_iter().enumerate() {
        let id = format!("op-tails0000000{i}");
        op_insert(
            store.conn(),
            NewOperation {
                id: id.clone(),
                tenant_id: "main".into(),
                kind: TEST_SAGA.into(),
                target_id: format!("t{i}"),
                params: json!({}),
                total_steps: 1,
                initiated_by: "system:test".into(),
            },
        )
        .await
        .unwrap();
        for n in 0..lines {
            store.op_log(&id, &format!("{id} line {n}")).await.unwrap();
        }
        ids.push(id);
    }
    let tails = store.op_log_tails(&ids, 3).await.unwrap();
    assert_eq!(
        tails[&ids[0]],
        [2, 3, 4].map(|n| format!("{} line {n}", ids[0]))
    );
    assert_eq!(tails[&ids[1]], [format!("{} line 0", ids[1])]);
    assert!(tails[&ids[2]].is_empty());
    for id in &ids {
        assert_eq!(tails[id], store.op_log_tail(id, 3).await.unwrap(), "{id}");
    }
    store.close().await;
}

#[tokio::test]
async fn attempts_racing_with_one_request_id_make_one_operation_and_another_request_is_refused() {
    let t = idle_app().await;
    let request = |fingerprint: &str| fleet_manager::app::ClientRequest {
        id: "retry-me".into(),
        method: "Instances/ReprovisionInstance".into(),
        fingerprint: fingerprint.into(),
    };
    let ctx = |fingerprint: &str| {
        fleet_manager::opctx::OpCtx::system("test").with_client_request(Some(request(fingerprint)))
    };
    let (a, b) = (ctx("same"), ctx("same"));
    let params = TestParams::default();
    let (first, second) = tokio::join!(
        t.app.engine.submit(&a, "main", "target-1", &params),
        t.app.engine.submit(&b, "main", "target-1", &params),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.id, second.id, "one operation for both attempts");
    let (_, list) = t.api.get("/tenants/main/futures").await;
    let ops = list.as_array().map_or(0, Vec::len);
    assert_eq!(ops, 1, "{list}");
    // The same id on a different request is the caller's error.
    let e = t
        .app
        .engine
        .submit(&ctx("other"), "main", "target-1", &params)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert!(e.message().contains("retry-me"), "{}", e.message());
    t.stop().await;
}
