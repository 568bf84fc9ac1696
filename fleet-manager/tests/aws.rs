//! The instance lifecycle on the `aws` cloud: the real `fleet-manager`
//! binary provisioning through the AWS SDK against the EC2 emulator (moto,
//! behind the rig's fault-injecting proxy), with a real `fm-agent` per
//! emulated instance. Resources are counted through the EC2 API by FM's
//! ownership tags. Needs the workspace's binaries and the test virtualenv
//! (`bash scripts/python-venv.sh`).

mod common;

use common::{
    Api, Ec2Rig, FmProcess, TestDb, act, assert_done, cli_create_key, count_lines, lifecycle_env,
    node_get, start, wait_log,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// FM (the real binary) on the `aws` cloud against a fresh EC2 rig, with a
/// network on the emulator's default VPC (FM makes its security group)
/// and a template without setup actions.
struct OnEc2 {
    rig: Ec2Rig,
    db: TestDb,
    key: (String, String),
    fm: FmProcess,
    env: Vec<(String, String)>,
    tpl: String,
    net: String,
}

impl OnEc2 {
    async fn start(port_base: u32, extra: &[(&str, &str)]) -> OnEc2 {
        Self::start_on(Ec2Rig::start().await, port_base, extra).await
    }

    async fn start_on(rig: Ec2Rig, port_base: u32, extra: &[(&str, &str)]) -> OnEc2 {
        let db = TestDb::new().await;
        let key = cli_create_key(&db);
        let mut env = lifecycle_env(port_base, &[("FM_FUTURE_WAIT_MS", "0")]);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env.extend(rig.fm_env().await);
        let fm = FmProcess::start(&db, &key, &env).await;
        let (s, net) = fm
            .api
            .post(
                "/tenants/main/virtual-networks?useDefaultValues=true",
                json!({"label": "net", "awsAutoCreateSecurityGroups": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{net}");
        let tpl = fm.api.create_template().await;
        OnEc2 {
            net: net["id"].as_str().unwrap().to_string(),
            tpl,
            rig,
            db,
            key,
            fm,
            env,
        }
    }

    /// A new instance, not provisioned.
    async fn instance(&self) -> String {
        self.fm.api.create_instance(&self.tpl, &self.net).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

async fn delete_instance(api: &Api, id: &str) {
    assert_done(&act(api, id, "delete").await);
}

async fn cloud_state(api: &Api, id: &str) -> Value {
    let (_, st) = api
        .get(&format!("/tenants/main/instances/{id}/status"))
        .await;
    st["cloudState"].clone()
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_network_must_exist_in_ec2_and_its_security_group_goes_with_it() {
    let t = OnEc2::start(25000, &[]).await;
    let (rig, fm) = (&t.rig, &t.fm);
    let (s, e) = fm
        .api
        .post(
            "/tenants/main/virtual-networks",
            json!({"label": "n", "awsRegion": common::RIG_REGION,
                   "awsVpcId": "vpc-0123456789abcdef0", "awsSubnetId": "subnet-0123456789abcdef0"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("vpc-0123456789abcdef0"),
        "{e}"
    );

    // Networks of accounts that assume a role or hold a key pair are
    // checked with that identity.
    let defaults: std::collections::HashMap<_, _> = rig.fm_env().await.into_iter().collect();
    for account in [
        json!({"label": "role", "awsAuthenticationMode": "IAM_ROLE",
               "awsIAMRoleARN": "arn:aws:iam::123456789012:role/fleet-manager"}),
        json!({"label": "keys", "awsAuthenticationMode": "KEYPAIR",
               "awsAccessKeyId": "AKIAIOSFODNN7EXAMPLE",
               "awsSecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}),
    ] {
        let (s, a) = fm.api.post("/tenants/main/cloud-accounts", account).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        let (s, n) = fm
            .api
            .post(
                "/tenants/main/virtual-networks",
                json!({"label": "n", "accountId": a["id"], "awsRegion": common::RIG_REGION,
                       "awsVpcId": defaults["FM_DEFAULT_VPC_ID"],
                       "awsSubnetId": defaults["FM_DEFAULT_SUBNET_ID"]}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{n}");
    }
    assert_eq!(
        rig.stats().await["calls"]["AssumeRole"],
        1,
        "the role was assumed through STS"
    );

    let id = t.instance().await;
    assert_done(&act(&fm.api, &id, "reprovision").await);
    let owned = rig.owned().await;
    assert_eq!(
        owned["securityGroups"].as_array().unwrap().len(),
        1,
        "{owned}"
    );
    delete_instance(&fm.api, &id).await;
    let (s, f) = fm
        .api
        .delete(&format!("/tenants/main/virtual-networks/{}", t.net))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_done(&fm.api.wait_future(f["jobId"].as_str().unwrap()).await);
    let owned = rig.owned().await;
    for kind in ["instances", "volumes", "securityGroups", "addresses"] {
        assert!(
            owned[kind].as_array().unwrap().is_empty(),
            "{kind} left: {owned}"
        );
    }
}

#[tokio::test]
async fn killing_fm_at_each_step_of_provisioning_on_ec2_leaves_one_vm_and_one_volume() {
    let OnEc2 {
        rig,
        db,
        key,
        mut fm,
        env,
        tpl,
        net,
    } = OnEc2::start(25200, &[("FM_OPS_LEASE_SECS", "2")]).await;
    for point in [
        "data-volume: started",
        "replace-vm: started",
        "boot-vm: started",
        "agent-connected: started",
        "install-node: started",
        "start-node: started",
        "finish: started",
    ] {
        let id = fm.api.create_instance(&tpl, &net).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let job = start(&fm.api, &id, "reprovision").await;
        wait_log(&fm.api, &job, point).await;
        fm.kill();

        fm = FmProcess::start(&db, &key, &env).await;
        let done = fm.api.wait_future(&job).await;
        assert_done(&done);
        assert_eq!(count_lines(&done, "operation done"), 1, "{point}: {done}");
        let vms = rig.owned_by("instances", &id).await;
        assert_eq!(vms.len(), 1, "killed at {point}: {vms:?}");
        let data: Vec<Value> = rig
            .owned_by("volumes", &id)
            .await
            .into_iter()
            .filter(|v| v["tags"]["fleet-manager:volume"].is_string())
            .collect();
        assert_eq!(data.len(), 1, "killed at {point}: {data:?}");
        let (_, status) = fm
            .api
            .get(&format!("/tenants/main/instances/{id}/status"))
            .await;
        let url = status["publicURL"].as_str().unwrap().to_string();
        assert_eq!(
            node_get(&url, "/api/health").await.status(),
            StatusCode::OK,
            "killed at {point}"
        );
        delete_instance(&fm.api, &id).await;
        assert!(rig.owned_by("instances", &id).await.is_empty());
        assert!(rig.owned_by("volumes", &id).await.is_empty());
    }
    fm.kill();
}

#[tokio::test]
async fn a_fleet_of_50_provisions_through_throttling_and_lost_answers_without_duplicates() {
    const N: usize = 50;
    let t = OnEc2::start(26000, &[("FM_OPS_WORKERS", "16")]).await;
    let (rig, fm) = (&t.rig, &t.fm);
    let mut instances = vec![];
    for _ in 0..N {
        instances.push(t.instance().await);
    }
    rig.set_fault_rate(0.2).await;
    let mut jobs = vec![];
    for id in &instances {
        jobs.push(start(&fm.api, id, "reprovision").await);
    }
    for (id, job) in instances.iter().zip(&jobs) {
        let f = fm.api.wait_future(job).await;
        assert_eq!(f["state"], "done", "instance {id}: {f}");
    }
    let stats = rig.stats().await;
    let faults: u64 = stats["faults"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(faults >= N as u64, "faults were injected: {stats}");
    assert!(
        stats["faults"].as_object().unwrap().keys().any(|k| {
            (k.starts_with("RunInstances:") || k.starts_with("CreateVolume:"))
                && k.ends_with(":error-after")
        }),
        "some answers to creations were lost: {stats}"
    );
    rig.set_fault_rate(0.0).await;

    let owned = rig.owned().await;
    for id in &instances {
        let vms: Vec<&Value> = owned["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instance"] == id.as_str())
            .collect();
        assert_eq!(vms.len(), 1, "instance {id}: {vms:?}");
        let data: Vec<&Value> = owned["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["instance"] == id.as_str() && r["tags"]["fleet-manager:volume"].is_string()
            })
            .collect();
        assert_eq!(data.len(), 1, "instance {id}: {data:?}");
    }
    assert_eq!(owned["instances"].as_array().unwrap().len(), N);
    assert_eq!(owned["securityGroups"].as_array().unwrap().len(), 1);

    for id in &instances {
        delete_instance(&fm.api, id).await;
    }
    let owned = rig.owned().await;
    assert!(owned["instances"].as_array().unwrap().is_empty(), "{owned}");
    assert!(owned["volumes"].as_array().unwrap().is_empty(), "{owned}");
}

#[tokio::test]
async fn a_vm_stopped_or_terminated_behind_fms_back_shows_in_its_status() {
    let t = OnEc2::start(25400, &[]).await;
    let (rig, fm) = (&t.rig, &t.fm);
    let id = t.instance().await;
    assert_done(&act(&fm.api, &id, "reprovision").await);
    assert_eq!(cloud_state(&fm.api, &id).await, "running");
    let vm = ids(&rig.owned_by("instances", &id).await).remove(0);

    rig.behind_fms_back("StopInstances", &vm).await;
    assert_eq!(cloud_state(&fm.api, &id).await, "stopped");
    rig.behind_fms_back("StartInstances", &vm).await;
    assert_eq!(cloud_state(&fm.api, &id).await, "running");
    rig.behind_fms_back("TerminateInstances", &vm).await;
    assert_eq!(cloud_state(&fm.api, &id).await, "missing");

    // A reprovision brings a new VM on the kept volume.
    assert_done(&act(&fm.api, &id, "reprovision").await);
    assert_eq!(cloud_state(&fm.api, &id).await, "running");
    delete_instance(&fm.api, &id).await;
}

#[tokio::test]
async fn an_ec2_error_no_retry_can_fix_fails_the_future_with_aws_code_and_message() {
    let t = OnEc2::start(25600, &[]).await;
    let (rig, fm) = (&t.rig, &t.fm);
    let id = t.instance().await;
    rig.fail_next(
        "RunInstances",
        400,
        "InvalidAMIID.NotFound",
        "The image id '[ami-0fa1ca7e5e1f00d00]' does not exist",
    )
    .await;
    let f = act(&fm.api, &id, "reprovision").await;
    assert_eq!(f["state"], "failed", "{f}");
    let err = f.to_string();
    assert!(
        err.contains("InvalidAMIID.NotFound") && err.contains("does not exist"),
        "{f}"
    );
    let calls = rig.stats().await["calls"]["RunInstances"].as_u64().unwrap();
    assert_eq!(calls, 1, "a client error is not retried");
    assert!(rig.owned_by("instances", &id).await.is_empty());

    // The cause gone, a reprovision works.
    assert_done(&act(&fm.api, &id, "reprovision").await);
    assert_eq!(rig.owned_by("instances", &id).await.len(), 1);
    delete_instance(&fm.api, &id).await;
}

#[tokio::test]
async fn resources_tagged_as_fms_that_nothing_owns_are_reported_and_cleaned_only_when_asked() {
    let t = OnEc2::start(25800, &[("FM_AWS_OWNER", "fm-drift-test")]).await;
    let (rig, fm, db, env) = (&t.rig, &t.fm, &t.db, &t.env);
    let id = t.instance().await;
    assert_done(&act(&fm.api, &id, "reprovision").await);
    let leak = rig
        .create_volume_behind_fms_back(json!({
            "fleet-manager:owner": "fm-drift-test",
            "fleet-manager:instance": "inst-long-gone",
            "fleet-manager:volume": "vol-inst-long-gone",
        }))
        .await;
    let drift = |clean: bool| {
        let mut cmd = std::process::Command::new(common::bin());
        cmd.args(["admin", "cloud-drift", "--data-dir"])
            .arg(db.dir.path())
            .args(["--database-url", &db.url]);
        if clean {
            cmd.arg("--clean");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("cloud-drift");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON report")
    };
    let report = drift(false);
    let orphans = report["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{report}");
    assert_eq!(orphans[0]["cloudId"], leak.as_str());
    assert_eq!(orphans[0]["deleted"], false);
    assert!(report["drifted"].as_array().unwrap().is_empty(), "{report}");
    assert!(
        rig.owned().await["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == leak.as_str()),
        "reporting deletes nothing"
    );

    let report = drift(true);
    assert_eq!(report["orphans"][0]["deleted"], true, "{report}");
    let volumes = rig.owned().await["volumes"].as_array().unwrap().clone();
    assert!(!volumes.iter().any(|v| v["id"] == leak.as_str()));
    // The instance's own volume is untouched.
    assert_eq!(
        rig.owned_by("volumes", &id)
            .await
            .iter()
            .filter(|v| v["tags"]["fleet-manager:volume"].is_string())
            .count(),
        1
    );
    delete_instance(&fm.api, &id).await;
}

/// The review's attack on EC2: one who reads a VM's user-data (as
/// `DescribeInstanceAttribute` lets many) holds its enrollment token. With
/// no identity document, another instance's (genuinely signed) document or
/// a forged one, FM refuses to enroll them, and the token still enrolls the
/// real agent, which provisions the instance.
#[tokio::test]
async fn a_token_without_the_vms_signed_identity_document_enrolls_nobody() {
    use fm_proto::agent::EnrollRequest;
    use fm_proto::agent::enrollment_client::EnrollmentClient;
    // The VM's agent starts late, leaving its token unused meanwhile.
    let wrapper_dir = tempfile::tempdir().unwrap();
    let wrapper = wrapper_dir.path().join("slow-agent");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nsleep 15\nexec {} \"$@\"\n",
            fleet_manager::config::sibling_binary("fm-agent").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(wrapper_dir.path(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let rig = Ec2Rig::start_with(&["--agent-bin", wrapper.to_str().unwrap()]).await;
    let t = OnEc2::start_on(rig, 25500, &[]).await;
    let id = t.instance().await;
    let (s, f) =
        t.fm.api
            .get(&format!("/tenants/main/instances/{id}/actions/reprovision"))
            .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    // The user-data, as the rig read it back through the EC2 API.
    let mut settings = None;
    for _ in 0..300 {
        if let Some(vm) = t.rig.owned_by("instances", &id).await.first() {
            let p = t
                .rig
                .dir
                .path()
                .join("vms")
                .join(vm["id"].as_str().unwrap())
                .join("user-data.toml");
            if let Ok(text) = std::fs::read_to_string(&p) {
                settings = Some((vm["id"].as_str().unwrap().to_string(), text));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (vm, text) = settings.expect("the rig booted the VM");
    let ud: toml::Table = toml::from_str(&text).unwrap();
    let token = ud["enrollment_token"].as_str().unwrap().to_string();
    assert!(
        ud["imds_url"].as_str().unwrap().contains("/imds/"),
        "{text}"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            ud["ca_pem"].as_str().unwrap(),
        ))
        .domain_name("localhost");
    let url = ud["fm_url"]
        .as_str()
        .unwrap()
        .replace("localhost", "127.0.0.1");
    let channel = tonic::transport::Channel::from_shared(url)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut enroll = EnrollmentClient::new(channel);
    let (other_doc, other_sig) = t.rig.identity("i-0123456789abcdef0", false).await;
    let (forged_doc, forged_sig) = t.rig.identity(&vm, true).await;
    for (what, document, signature) in [
        ("no document", String::new(), String::new()),
        ("another instance's document", other_doc, other_sig),
        ("a forged document", forged_doc, forged_sig),
    ] {
        let e = enroll
            .enroll(EnrollRequest {
                instance_id: id.clone(),
                token: token.clone(),
                csr_pem: common::csr(&id),
                identity_document: document,
                identity_signature: signature,
            })
            .await
            .expect_err(what);
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{what}: {e}");
        assert!(e.message().contains("identity"), "{what}: {e}");
    }
    // The real agent, with the VM's own document, still enrolls on the
    // same token and the provisioning ends.
    let f = t.fm.api.wait_future(f["jobId"].as_str().unwrap()).await;
    assert_done(&f);
    let log = std::fs::read_to_string(t.db.dir.path().join("serve.log")).unwrap();
    assert_eq!(
        log.matches("enrollment refused: the VM's identity was not proven")
            .count(),
        3,
        "FM logs each refusal"
    );
}
