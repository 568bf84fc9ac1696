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
