//! The EC2 test rig and the test virtualenv's Python.

use super::*;

/// The Python of the test virtualenv (`scripts/python-venv.sh` makes it).
pub fn venv_python() -> PathBuf {
    let p = match std::env::var_os("FM_VENV") {
        Some(v) => PathBuf::from(v).join("bin/python"),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/fleet-manager/venv/bin/python"),
    };
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/python-venv.sh` first (the test command does)",
        p.display()
    );
    p
}

/// The EC2 test rig (`tests/aws/ec2_rig.py`): the moto emulator behind a
/// fault-injecting, call-counting proxy, and a player that runs a real
/// `fm-agent` for every emulated instance. Dropping it stops it and every
/// agent it started.
pub struct Ec2Rig {
    child: std::process::Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

pub const RIG_REGION: &str = "eu-west-1";

impl Ec2Rig {
    pub async fn start() -> Ec2Rig {
        Self::start_with(&[]).await
    }

    /// With extra arguments (`--no-vms`).
    pub async fn start_with(args: &[&str]) -> Ec2Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        // The rig's nodes run as their own user when it runs as root.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .expect("chmod tempdir");
        }
        let out = dir.path().join("rig.log");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/aws/ec2_rig.py");
        let child = std::process::Command::new(venv_python())
            .arg(script)
            .arg("--root")
            .arg(dir.path())
            .arg("--agent-bin")
            .arg(fleet_manager::config::sibling_binary("fm-agent"))
            .args(args)
            .stdout(std::fs::File::create(&out).expect("rig log"))
            .stderr(std::fs::File::create(dir.path().join("rig.err")).expect("rig log"))
            .spawn()
            .expect("start the EC2 rig");
        let mut rig = Ec2Rig {
            child,
            url: String::new(),
            dir,
            http: reqwest::Client::new(),
        };
        for _ in 0..600 {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .find_map(|l| l.strip_prefix("READY proxy="))
                .and_then(|r| r.split_whitespace().next())
            {
                rig.url = format!("http://127.0.0.1:{port}");
                return rig;
            }
            if let Ok(Some(st)) = rig.child.try_wait() {
                panic!(
                    "the EC2 rig exited ({st}): {}",
                    std::fs::read_to_string(rig.dir.path().join("rig.err")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the EC2 rig did not start in 30 s");
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("rig")
            .json()
            .await
            .expect("rig JSON")
    }

    /// FM's resources in the emulator, read through the EC2 API by FM's
    /// ownership tags: `{"instances": [...], "volumes": [...], ...}`.
    pub async fn owned(&self) -> Value {
        self.get("/rig/owned").await
    }

    /// EC2 calls FM made (`{"calls": {action: n}, "faults": {...}}`).
    pub async fn stats(&self) -> Value {
        self.get("/rig/stats").await
    }

    pub async fn reset_stats(&self) {
        self.http
            .post(format!("{}/rig/reset-stats", self.url))
            .send()
            .await
            .expect("rig");
    }

    /// Share of EC2 calls answered with a fault from now on.
    pub async fn set_fault_rate(&self, rate: f64) {
        self.http
            .post(format!("{}/rig/config", self.url))
            .json(&serde_json::json!({"faultRate": rate}))
            .send()
            .await
            .expect("rig");
    }

    /// The next call of `action` fails with this EC2 error.
    pub async fn fail_next(&self, action: &str, status: u16, code: &str, message: &str) {
        self.http
            .post(format!("{}/rig/config", self.url))
            .json(&serde_json::json!({"failNext": {action: {"status": status, "code": code, "message": message}}}))
            .send()
            .await
            .expect("rig");
    }

    /// The parameters of every STS AssumeRole call made through the rig,
    /// in order (`RoleArn`, `RoleSessionName`, `Policy`, `DurationSeconds`).
    pub async fn assumed(&self) -> Vec<Value> {
        self.get("/rig/assumed")
            .await
            .as_array()
            .expect("list")
            .clone()
    }

    /// The emulator's S3 endpoint and its backup bucket.
    pub async fn s3(&self) -> (String, String) {
        let d = self.get(&format!("/rig/defaults/{RIG_REGION}")).await;
        (
            d["s3Endpoint"].as_str().expect("s3").to_string(),
            d["s3Bucket"].as_str().expect("bucket").to_string(),
        )
    }

    /// The certificate the rig signs instance identity documents with.
    pub fn identity_certs(&self) -> PathBuf {
        self.dir.path().join("identity-cert.pem")
    }

    /// A signed identity document of `instance` as its IMDS serves it
    /// (`forged`: signed by a key FM does not trust): (document, signature).
    pub async fn identity(&self, instance: &str, forged: bool) -> (String, String) {
        let v = self
            .get(&format!(
                "/rig/identity/{instance}{}",
                if forged { "?forged=1" } else { "" }
            ))
            .await;
        (
            v["document"].as_str().expect("document").to_string(),
            v["signature"].as_str().expect("signature").to_string(),
        )
    }

    /// The environment of an FM on the `aws` cloud against this rig, its
    /// default network being the emulator's default VPC.
    pub async fn fm_env(&self) -> Vec<(String, String)> {
        let d = self.get(&format!("/rig/defaults/{RIG_REGION}")).await;
        let certs = self.identity_certs().display().to_string();
        [
            ("FM_CLOUD", "aws"),
            ("FM_AWS_ENDPOINT_URL", &self.url),
            ("FM_AWS_AMIS", "ami-0fa1ca7e5e1f00d00"),
            ("FM_AWS_NODE_HOST", "127.0.0.1"),
            ("FM_AWS_BACKOFF_MS", "20"),
            ("FM_AWS_IDENTITY_CERTS", &certs),
            ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("FM_DEFAULT_REGION", RIG_REGION),
            ("FM_DEFAULT_VPC_ID", d["vpcId"].as_str().expect("vpc")),
            (
                "FM_DEFAULT_SUBNET_ID",
                d["subnetId"].as_str().expect("subnet"),
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Calls the emulator directly, as someone else would (not through the
    /// proxy, not counted): `StopInstances`, `StartInstances` or
    /// `TerminateInstances` of one instance.
    pub async fn behind_fms_back(&self, action: &str, instance: &str) {
        let r = self
            .http
            .post(format!("{}/rig/ec2", self.url))
            .json(&serde_json::json!({"action": action, "instanceId": instance, "region": RIG_REGION}))
            .send()
            .await
            .expect("rig");
        assert!(
            r.status().is_success(),
            "{action}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Creates a volume straight in the emulator with these tags (a leak
    /// to find); returns its id.
    pub async fn create_volume_behind_fms_back(&self, tags: Value) -> String {
        let r: Value = self
            .http
            .post(format!("{}/rig/ec2", self.url))
            .json(
                &serde_json::json!({"action": "CreateVolume", "tags": tags, "region": RIG_REGION}),
            )
            .send()
            .await
            .expect("rig")
            .json()
            .await
            .expect("rig JSON");
        r["id"].as_str().expect("volume id").to_string()
    }

    /// Live resources of one kind that belong to an FM instance.
    pub async fn owned_by(&self, kind: &str, instance: &str) -> Vec<Value> {
        self.owned().await[kind]
            .as_array()
            .expect("list")
            .iter()
            .filter(|r| r["instance"] == instance)
            .cloned()
            .collect()
    }
}

impl Drop for Ec2Rig {
    fn drop(&mut self) {
        // SIGTERM: the rig stops its agents, then exits.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
