//! Operations stored by the previous version (parameters and step outputs
//! as untyped JSON) still resume: the typed sagas read what it wrote.

use super::common::{BackupRef, Plan, Quiesced, VmRef};
use super::*;
use serde_json::json;

fn read<P: DeserializeOwned>(v: serde_json::Value) -> P {
    P::deserialize(v).expect("stored JSON reads as the saga's type")
}

#[test]
fn parameters_written_by_the_previous_version_read_as_typed_params() {
    let p: provision::Params = read(json!({"allowDowngrade": true, "snapshotId": "snap-1"}));
    assert!(p.allow_downgrade);
    assert_eq!(p.snapshot_id.as_deref(), Some("snap-1"));
    let p: provision::Params = read(json!({
        "allowDowngrade": false,
        "restoreBackup": {"instanceId": "inst-a", "backupId": "bk-1"},
    }));
    assert_eq!(
        p.restore_backup,
        Some(BackupRef {
            instance_id: "inst-a".into(),
            backup_id: "bk-1".into()
        })
    );
    let p: backup_restore::Params =
        read(json!({"restoreBackup": {"instanceId": "inst-a", "backupId": "bk-1"}}));
    assert_eq!(p.restore_backup.backup_id, "bk-1");
    let p: snapshot::Params =
        read(json!({"snapshotId": "snap-2", "reason": "automated", "automated": true}));
    assert!(p.automated && p.snapshot_id == "snap-2");
    let p: snapshot::Params = read(json!({"snapshotId": "snap-3", "reason": null}));
    assert!(!p.automated && p.reason.is_none());
    let p: backup_take::Params = read(json!({"backupId": "bk-2", "reason": null}));
    assert_eq!(p.backup_id, "bk-2");
    let p: password::Params = read(json!({"userName": "admin", "passwordSealed": "x"}));
    assert_eq!(p.user_name, "admin");
    let _: backup_verify::Params = read(json!({"backupId": "bk-3"}));
    let _: backup_delete::Params = read(json!({"backupId": "bk-3"}));
    let _: snapshot_delete::Params = read(json!({"snapshotId": "snap-1"}));
    let _: deprovision::Params = read(json!({}));
    let _: power::Start = read(json!({}));
    let _: resource_delete::DeleteTemplate = read(json!({}));
}

#[test]
fn step_outputs_written_by_the_previous_version_read_as_typed_outputs() {
    // A provisioning plan as the previous version stored it (no
    // `port_reserved`; the backup under snake_case keys).
    let plan: Plan = read(json!({
        "vm_id": "vm-1", "old_vm_id": null, "volume_id": "vol-inst-a", "old_volume_id": null,
        "snapshot_ref": null, "port": 20000, "image_version": "14.2.0",
        "kit_file": "kit.tar.gz", "kit_sha256": "ab", "node_type": "design",
        "allow_downgrade": false,
        "setup": {"before_install": [["ADD_SSH_KEY", "{}"]], "after_install": [], "after_dss_startup": []},
        "backup": {"instance_id": "inst-b", "backup_id": "bk-9"},
    }));
    assert_eq!(plan.backup.unwrap().backup_id, "bk-9");
    assert!(plan.old_volume_id.is_none());
    let planned: provision::Planned = read(json!({
        "vm_id": "vm-1", "old_vm_id": null, "volume_id": "vol-inst-a", "old_volume_id": null,
        "snapshot_ref": null, "port": 20000, "image_version": "14.2.0",
        "kit_file": "kit.tar.gz", "kit_sha256": "ab", "node_type": "design",
        "allow_downgrade": false,
        "setup": {"before_install": [], "after_install": [], "after_dss_startup": []},
    }));
    assert!(!planned.port_reserved);
    let vm: VmRef = read(json!({"vmId": "vm-1"}));
    assert_eq!(vm.vm_id, "vm-1");
    let q: Quiesced = read(json!({"stopped": false, "frozen": true}));
    assert!(q.frozen && !q.stopped);
    let q: Quiesced = read(json!({"stopped": true}));
    assert!(q.stopped && !q.frozen);
}

#[test]
fn every_saga_kind_is_registered_once_with_a_result_step_of_its_own() {
    let all = all();
    let mut kinds: Vec<_> = all.iter().map(|s| s.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), all.len());
    for s in &all {
        assert!(
            s.steps.iter().any(|st| st.name == s.result),
            "{}: result step {} is not one of its steps",
            s.kind,
            s.result
        );
    }
}
