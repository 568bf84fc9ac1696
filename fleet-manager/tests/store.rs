//! The schema: migrations apply from scratch, undo cleanly, and apply again,
//! on both backends.

mod common;

use common::TestDb;
use fleet_manager::store::Store;
use fm_migrations::{Migrator, MigratorTrait};

#[tokio::test]
async fn migrations_apply_from_scratch_roll_back_and_apply_again() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url)
        .await
        .expect("first start applies every migration");
    let applied = Migrator::get_applied_migrations(store.conn())
        .await
        .unwrap();
    assert_eq!(applied.len(), Migrator::migrations().len());
    Migrator::down(store.conn(), None)
        .await
        .expect("every migration can be undone");
    assert!(
        Migrator::get_applied_migrations(store.conn())
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    let store = Store::open(&db.url).await.expect("and applied again");
    assert!(
        Migrator::get_pending_migrations(store.conn())
            .await
            .unwrap()
            .is_empty()
    );
    // Re-opening an up-to-date store changes nothing.
    store.close().await;
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(
        Migrator::get_applied_migrations(store.conn())
            .await
            .unwrap()
            .len(),
        Migrator::migrations().len()
    );
    store.close().await;
}

#[tokio::test]
async fn a_stale_agent_report_never_rolls_the_instance_state_back() {
    use fm_proto::agent::{Heartbeat, NodeState};
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.unwrap();
    fleet_manager::store::lifecycle::runtime_ensure(store.conn(), "main", "inst-gen")
        .await
        .unwrap();
    fleet_manager::store::lifecycle::runtime_set(
        store.conn(),
        "inst-gen",
        vec![(
            fleet_manager::store::entities::instance_runtime::Column::VmId,
            Some("vm-gen".to_string()).into(),
        )],
    )
    .await
    .unwrap();
    let hb = |state: NodeState, version: &str| Heartbeat {
        node_state: state as i32,
        node_version: version.into(),
        ..Default::default()
    };
    let boot2 = (2u64 << 32) | 7;
    let boot1 = (1u64 << 32) | 900;
    assert!(
        store
            .runtime_heartbeat(
                "inst-gen",
                "vm-gen",
                boot2 as i64,
                &hb(NodeState::Running, "14.2.0")
            )
            .await
            .unwrap()
    );
    // A late message from before the agent restarted, and a duplicate.
    assert!(
        !store
            .runtime_heartbeat(
                "inst-gen",
                "vm-gen",
                boot1 as i64,
                &hb(NodeState::Stopped, "13.5.4")
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .runtime_heartbeat(
                "inst-gen",
                "vm-gen",
                boot2 as i64,
                &hb(NodeState::Stopped, "13.5.4")
            )
            .await
            .unwrap()
    );
    let rt = fleet_manager::store::lifecycle::runtime_get(store.conn(), "inst-gen")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rt.node_state.as_deref(), Some("running"));
    assert!(rt.heartbeat.unwrap().contains("14.2.0"));
    assert!(
        store
            .runtime_heartbeat(
                "inst-gen",
                "vm-gen",
                boot2 as i64 + 1,
                &hb(NodeState::Stopped, "14.2.0")
            )
            .await
            .unwrap()
    );
    store.close().await;
}

#[tokio::test]
async fn a_leader_lease_has_one_holder_until_it_expires() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.unwrap();
    assert!(store.lease_acquire("schedule", "fm-a", 200).await.unwrap());
    assert!(
        !store.lease_acquire("schedule", "fm-b", 200).await.unwrap(),
        "held by fm-a"
    );
    assert!(
        store.lease_acquire("schedule", "fm-a", 200).await.unwrap(),
        "the holder renews"
    );
    assert!(
        store.lease_acquire("other", "fm-b", 200).await.unwrap(),
        "leases are per name"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        store.lease_acquire("schedule", "fm-b", 200).await.unwrap(),
        "taken over once expired"
    );
    assert!(!store.lease_acquire("schedule", "fm-a", 200).await.unwrap());
    store.close().await;
}
