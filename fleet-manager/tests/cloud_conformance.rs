//! One conformance suite for every cloud provider: what the lifecycle
//! relies on from the cloud port, call by call, run against `local` and
//! against `aws` (the real SDK, on the EC2 emulator behind the test rig).

mod common;

use fleet_manager::cloud::aws::{AwsCloud, AwsSettings};
use fleet_manager::cloud::local::LocalCloud;
use fleet_manager::cloud::{CloudAuth, CloudProvider, Placement, Redacted, VmSpec, VmState};
use fleet_manager::config::sibling_binary;
use std::time::Duration;

/// User-data for an agent that will keep trying to reach an FM that is not
/// there (so the VM's process stays up, as a booted VM does); its settings
/// are valid, or the agent would exit.
fn user_data(cloud: &dyn CloudProvider, vm: &str, vol: &str) -> String {
    fleet_manager::ops::sagas::provision::render_user_data(
        "inst-conformance",
        &format!("https://127.0.0.1:{}", common::free_port()),
        "token",
        &cloud.layout(vm, vol),
        60,
        &rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a CA")
            .cert
            .pem(),
    )
}

async fn wait_state(cloud: &dyn CloudProvider, at: &Placement, vm: &str, want: VmState) {
    for _ in 0..100 {
        if cloud.vm_state(at, vm).await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("VM {vm} never became {want:?}");
}

/// The contract, in the order the lifecycle uses it. Every call that makes
/// or removes something is made twice: the second finds the first's work.
async fn conforms(cloud: &dyn CloudProvider, at: &Placement) {
    let (vm, vol, vol2) = ("vm-conf1", "vol-inst-conformance", "vol-inst-conformance-2");
    cloud.ensure_volume(at, vol).await.unwrap();
    cloud.ensure_volume(at, vol).await.unwrap();
    assert_eq!(cloud.vm_state(at, vm).await.unwrap(), VmState::Missing);
    assert!(
        cloud.start_vm(at, vm).await.is_err(),
        "a VM that does not exist can't be started"
    );

    let spec = VmSpec {
        vm_id: vm.into(),
        instance_id: at.instance_id.clone(),
        volume_id: vol.into(),
        user_data: user_data(cloud, vm, vol),
    };
    cloud.ensure_vm(at, &spec).await.unwrap();
    cloud.ensure_vm(at, &spec).await.unwrap();
    wait_state(cloud, at, vm, VmState::Running).await;
    let url = cloud.public_url(at, vm, 23456).await.unwrap();
    assert!(
        url.starts_with("http://") && url.ends_with(":23456"),
        "{url}"
    );

    cloud.stop_vm(at, vm).await.unwrap();
    cloud.stop_vm(at, vm).await.unwrap();
    wait_state(cloud, at, vm, VmState::Stopped).await;
    cloud.start_vm(at, vm).await.unwrap();
    cloud.start_vm(at, vm).await.unwrap();
    wait_state(cloud, at, vm, VmState::Running).await;

    let (snap, _) = cloud.snapshot_volume(at, vol, "snap-conf1").await.unwrap();
    let (again, _) = cloud.snapshot_volume(at, vol, "snap-conf1").await.unwrap();
    assert_eq!(snap, again, "one snapshot per snapshot id");
    cloud.volume_from_snapshot(at, &snap, vol2).await.unwrap();
    cloud.volume_from_snapshot(at, &snap, vol2).await.unwrap();

    cloud.terminate_vm(at, vm).await.unwrap();
    cloud.terminate_vm(at, vm).await.unwrap();
    assert_eq!(cloud.vm_state(at, vm).await.unwrap(), VmState::Missing);
    for v in [vol, vol2, vol] {
        cloud.delete_volume(at, v).await.unwrap();
    }
    cloud.delete_snapshot(at, &snap).await.unwrap();
    cloud.delete_snapshot(at, &snap).await.unwrap();
    cloud.release_instance(at).await.unwrap();
    let left: Vec<_> = cloud
        .owned_resources(at)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.live && r.kind != "security-group")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn the_local_cloud_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = LocalCloud::new(dir.path().to_path_buf(), sibling_binary("fm-agent")).unwrap();
    let at = Placement {
        instance_id: "inst-conformance".into(),
        ..Placement::default()
    };
    conforms(&cloud, &at).await;
}

#[tokio::test]
async fn the_aws_cloud_conforms_against_the_emulator() {
    let rig = common::Ec2Rig::start().await;
    let env: std::collections::HashMap<String, String> = rig.fm_env().await.into_iter().collect();
    let cloud = AwsCloud::new(AwsSettings {
        endpoint_url: Some(rig.url.clone()),
        amis: [("*".to_string(), "ami-0fa1ca7e5e1f00d00".to_string())].into(),
        owner: "conformance".into(),
        node_host: None,
        node_ports: (20000, 39999),
        max_attempts: 10,
        base_backoff: Duration::from_millis(20),
        ..Default::default()
    });
    let at = Placement {
        tenant_id: "main".into(),
        instance_id: "inst-conformance".into(),
        label: "conformance".into(),
        account_id: "acc-1".into(),
        auth: CloudAuth::Keypair {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Redacted("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
        },
        region: common::RIG_REGION.into(),
        network_id: "vn-conformance".into(),
        vpc_id: Some(env["FM_DEFAULT_VPC_ID"].clone()),
        subnet_id: Some(env["FM_DEFAULT_SUBNET_ID"].clone()),
        auto_security_group: true,
        assign_public_ip: true,
        elastic_ip: fleet_manager::cloud::ElasticIp::Allocate,
        ..Placement::default()
    };
    cloud.check_network(&at).await.unwrap();
    let bad = Placement {
        subnet_id: Some("subnet-0123456789abcdef0".into()),
        ..at.clone()
    };
    let e = cloud.check_network(&bad).await.unwrap_err();
    assert!(e.message().contains("subnet-0123456789abcdef0"), "{e:?}");

    conforms(&cloud, &at).await;

    // What FM made is tagged as FM's, with the user's tags merged in.
    let owned = rig.owned().await;
    assert_eq!(owned["securityGroups"].as_array().unwrap().len(), 1);
    cloud.delete_network(&at).await.unwrap();
    cloud.delete_network(&at).await.unwrap();
    let owned = rig.owned().await;
    for kind in [
        "instances",
        "volumes",
        "securityGroups",
        "addresses",
        "snapshots",
    ] {
        assert!(
            owned[kind].as_array().unwrap().is_empty(),
            "{kind} left: {owned}"
        );
    }
}
