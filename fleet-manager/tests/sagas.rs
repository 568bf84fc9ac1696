//! Every saga, step by step, on the `sim` cloud (VMs in memory, agents
//! in-process): run with every step's action repeated, it still succeeds and
//! makes each thing once; failed at each step in turn (with every undo run
//! twice), it unwinds to a clean slate: nothing is left in the cloud or in
//! the catalogue that was not there before, and a node it paused runs
//! again (omicron's `actions_succeed_idempotently`,
//! `action_failure_can_unwind_idempotently`).

mod common;

use common::{TestApp, sim_app, sim_app_with};
use fleet_manager::agents::sim::SimNode;
use fleet_manager::cloud::sim::{Inventory, SimCloud};
use fleet_manager::ops::Injection;
use fleet_manager::ops::sagas::common::BackupRef;
use fleet_manager::ops::sagas::{self as s, SagaParams};
use fleet_manager::store::lifecycle as lq;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

const TENANT: &str = "main";

fn cloud(t: &TestApp) -> SimCloud {
    common::sim_cloud(t)
}

/// What the saga could leave behind: cloud resources and catalogue rows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slate {
    cloud: Inventory,
    snapshots: BTreeSet<String>,
    backups: BTreeSet<String>,
    node: SimNode,
}

async fn slate(t: &TestApp, instance: &str) -> Slate {
    let c = t.app.store.conn();
    Slate {
        cloud: cloud(t).inventory(),
        snapshots: lq::snapshot_list(c, instance)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect(),
        backups: lq::backup_list(c, instance)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect(),
        node: cloud(t).agents().node(instance),
    }
}

/// Runs one operation with `inject` and returns its final state and error.
async fn run<P: SagaParams>(
    t: &TestApp,
    target: &str,
    params: &P,
    inject: Injection,
) -> (String, Option<String>) {
    let e = &t.app.engine;
    let op = e
        .submit(
            &fleet_manager::opctx::OpCtx::system("test"),
            TENANT,
            target,
            params,
        )
        .await
        .expect("submit");
    e.inject(&op.id, inject);
    e.kick();
    let op = e
        .wait(TENANT, &op.id, Duration::from_secs(30))
        .await
        .expect("wait");
    (op.state, op.error_message)
}

/// The proof for one saga: failed at each step in turn, every undo run
/// twice, it leaves nothing new behind (and, with `resumes`, a node that
/// ran before runs again); then with every step repeated it succeeds, and
/// no agent command was executed twice (and, with `resumes`, the node runs
/// as it did). The caller checks what success made.
async fn prove<P: SagaParams>(
    t: &TestApp,
    target: &str,
    params: impl Fn() -> P,
    resumes: bool,
) -> Slate {
    let steps = t
        .app
        .engine
        .saga(P::KIND)
        .expect("a registered saga")
        .steps
        .len();
    for i in 0..steps {
        let before = slate(t, target).await;
        let inject = Injection {
            fail_at: Some(i),
            repeat_undo: true,
            ..Injection::default()
        };
        let (state, err) = run(t, target, &params(), inject).await;
        assert_eq!(state, "failed", "{} failed at step {i}: {err:?}", P::KIND);
        let after = slate(t, target).await;
        assert!(
            after.cloud.within(&before.cloud),
            "{} failed at step {i} left cloud resources behind:\nbefore {:?}\nafter  {:?}",
            P::KIND,
            before.cloud,
            after.cloud
        );
        assert!(
            after.snapshots.is_subset(&before.snapshots)
                && after.backups.is_subset(&before.backups),
            "{} failed at step {i} left catalogue rows behind: {before:?} -> {after:?}",
            P::KIND
        );
        if resumes {
            assert_eq!(
                after.node.running,
                before.node.running,
                "{} failed at step {i} left the node {}",
                P::KIND,
                if before.node.running {
                    "stopped"
                } else {
                    "running"
                }
            );
            assert!(!after.node.frozen, "{} left the filesystem frozen", P::KIND);
        }
    }
    let executed_before = cloud(t).agents().executed();
    let before = slate(t, target).await;
    let inject = Injection {
        repeat_steps: true,
        ..Injection::default()
    };
    let (state, err) = run(t, target, &params(), inject).await;
    assert_eq!(
        state,
        "done",
        "{} with every step repeated: {err:?}",
        P::KIND
    );
    if resumes {
        let after = slate(t, target).await;
        assert_eq!(
            after.node.running,
            before.node.running,
            "{} with every step repeated changed whether the node runs",
            P::KIND
        );
    }
    for (id, n) in cloud(t).agents().executed() {
        let was = executed_before.get(&id).copied().unwrap_or(0);
        assert!(
            n - was <= 1,
            "{}: agent command {id} ran {} times",
            P::KIND,
            n - was
        );
    }
    slate(t, target).await
}

async fn new_instance(t: &TestApp) -> String {
    let net = t.api.create_network().await;
    let tpl = t.api.create_template().await;
    let i = t.api.create_instance(&tpl, &net).await;
    i["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn every_lifecycle_saga_repeats_each_step_and_unwinds_from_each_step() {
    let t = sim_app().await;
    let id = new_instance(&t).await;

    // First provisioning: a failure anywhere leaves nothing at all.
    let done = prove(&t, &id, provision::Params::default, false).await;
    assert_eq!(done.cloud.vms.len(), 1, "{done:?}");
    assert_eq!(done.cloud.volumes.len(), 1, "{done:?}");
    assert!(done.node.running && done.node.version.as_deref() == Some("14.2.0"));

    // A reprovision on the same volume.
    let done = prove(&t, &id, provision::Params::default, false).await;
    assert_eq!(done.cloud.vms.len(), 1, "{done:?}");
    assert!(done.node.running);

    prove(&t, &id, || s::power::RestartNode {}, true).await;
    prove(&t, &id, || s::setup::Params {}, true).await;
    prove(
        &t,
        &id,
        || s::password::Params {
            user_name: "admin".into(),
            password_sealed: t
                .app
                .engine
                .services()
                .secrets
                .seal(
                    &fleet_manager::crypto::Place::operation(&id, s::password::SEALED_FIELD),
                    "a-new-password",
                )
                .unwrap(),
        },
        true,
    )
    .await;

    // Snapshots: each run takes a new one.
    let snap_id = std::sync::Mutex::new(0u32);
    let next_snapshot = || {
        let mut n = snap_id.lock().unwrap();
        *n += 1;
        s::snapshot::Params {
            snapshot_id: format!("snap-test{n}"),
            reason: None,
            automated: false,
        }
    };
    let done = prove(&t, &id, next_snapshot, true).await;
    assert_eq!(done.snapshots.len(), 1, "one snapshot made: {done:?}");
    assert_eq!(done.cloud.snapshots.len(), 1, "{done:?}");
    let snapshot = done.snapshots.iter().next().unwrap().clone();

    // Reprovision from that snapshot: a new volume, the old one goes.
    let from_snapshot = || provision::Params {
        snapshot_id: Some(snapshot.clone()),
        ..provision::Params::default()
    };
    let done = prove(&t, &id, from_snapshot, false).await;
    assert_eq!(
        done.cloud.volumes.len(),
        1,
        "the previous volume is gone: {done:?}"
    );
    assert!(done.node.running);

    let done = prove(
        &t,
        &id,
        || s::snapshot_delete::Params {
            snapshot_id: snapshot.clone(),
        },
        true,
    )
    .await;
    assert!(done.snapshots.is_empty() && done.cloud.snapshots.is_empty());

    // Backups.
    let bk_n = std::sync::Mutex::new(0u32);
    let next_backup = || {
        let mut n = bk_n.lock().unwrap();
        *n += 1;
        s::backup_take::Params {
            backup_id: format!("bk-test{n}"),
            reason: None,
            automated: false,
        }
    };
    let done = prove(&t, &id, next_backup, true).await;
    assert_eq!(done.backups.len(), 1, "{done:?}");
    let backup = done.backups.iter().next().unwrap().clone();
    prove(
        &t,
        &id,
        || s::backup_verify::Params {
            backup_id: backup.clone(),
        },
        true,
    )
    .await;
    prove(
        &t,
        &id,
        || s::backup_restore::Params {
            restore_backup: BackupRef {
                instance_id: id.clone(),
                backup_id: backup.clone(),
            },
        },
        true,
    )
    .await;
    let done = prove(
        &t,
        &id,
        || s::backup_delete::Params {
            backup_id: backup.clone(),
        },
        true,
    )
    .await;
    assert!(done.backups.is_empty());

    // Power.
    let done = prove(&t, &id, || s::power::Stop {}, false).await;
    assert!(!done.node.running && done.cloud.vms.values().all(|r| !r));
    let done = prove(&t, &id, || s::power::Start {}, false).await;
    assert!(done.node.running && done.cloud.vms.values().all(|r| *r));
    let done = prove(&t, &id, || s::deprovision::Params {}, false).await;
    assert!(done.cloud.vms.is_empty(), "{done:?}");
    assert_eq!(done.cloud.volumes.len(), 1, "the data volume stays");

    // Delete: everything goes.
    prove(&t, &id, provision::Params::default, false).await;
    prove(
        &t,
        &id,
        || s::snapshot::Params {
            snapshot_id: "snap-last".into(),
            reason: None,
            automated: false,
        },
        true,
    )
    .await;
    let done = prove(&t, &id, || s::instance_delete::Params {}, false).await;
    assert_eq!(done.cloud, Inventory::default(), "{done:?}");
    t.stop().await;
}

#[tokio::test]
async fn a_clone_repeats_each_step_and_unwinds_from_each_step() {
    let t = sim_app().await;
    let src = new_instance(&t).await;
    let (state, err) = run(
        &t,
        &src,
        &provision::Params::default(),
        Injection::default(),
    )
    .await;
    assert_eq!(state, "done", "{err:?}");
    let backup = s::backup_take::Params {
        backup_id: "bk-source".into(),
        reason: None,
        automated: false,
    };
    let (state, err) = run(&t, &src, &backup, Injection::default()).await;
    assert_eq!(state, "done", "{err:?}");
    let clone = new_instance(&t).await;
    let params = || provision::Params {
        restore_backup: Some(BackupRef {
            instance_id: src.clone(),
            backup_id: "bk-source".into(),
        }),
        ..provision::Params::default()
    };
    let done = prove(&t, &clone, params, false).await;
    assert_eq!(done.cloud.vms.len(), 2, "{done:?}");
    assert!(done.node.running);
    t.stop().await;
}

#[tokio::test]
async fn deleting_accounts_networks_and_templates_repeats_and_unwinds_each_step() {
    let t = sim_app().await;
    let (st, acct) = t
        .api
        .post("/tenants/main/cloud-accounts", json!({"label": "acct"}))
        .await;
    assert!(st.is_success(), "{acct}");
    let acct = acct["id"].as_str().unwrap().to_string();
    let net = t.api.create_network().await;
    let tpl = t.api.create_template().await;
    prove(&t, &tpl, || s::resource_delete::DeleteTemplate {}, false).await;
    prove(&t, &net, || s::resource_delete::DeleteNetwork {}, false).await;
    prove(&t, &acct, || s::resource_delete::DeleteAccount {}, false).await;
    for (path, id) in [
        ("instance-settings-templates", &tpl),
        ("virtual-networks", &net),
        ("cloud-accounts", &acct),
    ] {
        let (st, _) = t.api.get(&format!("/tenants/main/{path}/{id}")).await;
        assert_eq!(st, reqwest::StatusCode::NOT_FOUND, "{path} {id} is deleted");
    }
    t.stop().await;
}

/// A provisioning stored by the previous version, as a worker that died
/// after its first step left it (untyped parameters, the plan without the
/// fields added since), resumes and finishes.
#[tokio::test]
async fn a_provisioning_stored_by_the_previous_version_resumes_and_finishes() {
    // Workers look for work only when woken, so the test can stage the crash.
    let t = sim_app_with(|cfg| cfg.engine.poll_interval = Duration::from_secs(3600)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = new_instance(&t).await;
    let store = &t.app.store;
    let image = fleet_manager::store::resources::image_get(store.conn(), "dss-14.2.0-default")
        .await
        .unwrap()
        .unwrap();
    let op = "op-previous0001";
    fleet_manager::store::operations::op_insert(
        store.conn(),
        fleet_manager::store::NewOperation {
            id: op.into(),
            tenant_id: TENANT.into(),
            kind: provision::KIND.into(),
            target_id: id.clone(),
            params: json!({"allowDowngrade": false}),
            total_steps: 12,
            initiated_by: "system:test".into(),
        },
    )
    .await
    .unwrap();
    store
        .op_claim("dead-worker", 1)
        .await
        .unwrap()
        .expect("claim");
    let plan = json!({
        "vm_id": "vm-previous0001", "old_vm_id": null, "volume_id": format!("vol-{id}"),
        "old_volume_id": null, "snapshot_ref": null, "port": 31000,
        "image_version": "14.2.0", "kit_file": image.kit_file, "kit_sha256": image.kit_sha256,
        "node_type": "design", "allow_downgrade": false,
        "setup": {"before_install": [], "after_install": [], "after_dss_startup": []},
    });
    assert!(
        store
            .op_record_progress(op, "dead-worker", 1, None, &json!({"plan": plan}))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.app.engine.kick();
    let done = t
        .app
        .engine
        .wait(TENANT, op, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done.state, "done", "{:?}", done.error_message);
    let result: serde_json::Value = serde_json::from_str(done.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["publicURL"], "http://vm-previous0001.sim:31000");
    let c = cloud(&t).inventory();
    assert_eq!(c.vms.keys().collect::<Vec<_>>(), ["vm-previous0001"]);
    assert!(cloud(&t).agents().node(&id).running);
    t.stop().await;
}

use s::provision;

/// One instance whose document can't be read stops the schedules of none
/// of the others: it is skipped and counted, the others' due snapshots
/// and backups start.
#[tokio::test]
async fn a_corrupt_instance_document_skips_that_instance_only_in_the_schedules() {
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
    let t = sim_app().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = new_instance(&t).await;
        let (_, mut doc) = t.api.get(&format!("/tenants/main/instances/{id}")).await;
        doc["enableAutomatedSnapshot"] = json!(true);
        doc["automatedSnapshotPeriod"] = json!(1);
        doc["snapshotConsistency"] = json!("NONE");
        doc["backupPolicy"] = json!({"enabled": true, "periodHours": 1});
        let (s, b) = t
            .api
            .put(&format!("/tenants/main/instances/{id}"), doc)
            .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{b}");
        let (state, err) = run(
            &t,
            &id,
            &s::provision::Params::default(),
            Injection::default(),
        )
        .await;
        assert_eq!(state, "done", "{err:?}");
        ids.push(id);
    }
    use fleet_manager::store::entities::instance;
    let row = instance::Entity::find_by_id(ids[0].clone())
        .one(t.app.store.conn())
        .await
        .unwrap()
        .unwrap();
    let mut broken = row.into_active_model();
    broken.doc = Set("{not json".into());
    broken.update(t.app.store.conn()).await.unwrap();

    let hour = Duration::from_secs(3600);
    let snaps = t.app.reconcile_automated_snapshots(hour).await.unwrap();
    assert_eq!((snaps.snapshots_started, snaps.failed), (1, 1), "{snaps:?}");
    let e = &t.app.engine;
    for _ in 0..300 {
        if fleet_manager::store::operations::op_active_for_target(t.app.store.conn(), &ids[1])
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e.kick();
    let backups = t.app.reconcile_automated_backups(hour).await.unwrap();
    assert_eq!(
        (backups.backups_started, backups.failed),
        (1, 1),
        "{backups:?}"
    );
}
