//! Plan and apply through the real CLI (`fleet-manager plan|apply`) against
//! FM on the sim cloud: a fleet made from a file, an unchanged fleet
//! planned as no changes (exit 0), an edit planned as exactly its changes
//! (exit 2), a stale plan refused, a reprovision run by a rollout, pruning,
//! and secrets that are references, never printed or saved.

mod common;

use common::{Api, TestApp, sim_app_with};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const SECRET: &str = "Fle3tSecretKey0000000000000000000000000x";

struct Cli {
    api: Api,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(t: &TestApp) -> Cli {
        Cli {
            api: t.api.clone(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the fleet file (and its secret's file).
    fn write(&self, yaml: &str, secret: &str) {
        std::fs::write(self.path("secret-key"), format!("{secret}\n")).unwrap();
        std::fs::write(self.path("fleet.yaml"), yaml).unwrap();
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new(common::bin());
        cmd.args(args).args(["--url", &self.api.base]).args([
            "--key-id",
            &self.api.key.0,
            "--key-secret",
            &self.api.key.1,
        ]);
        let out: Output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .expect("the CLI ends")
            .expect("the CLI runs");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(!o.contains(SECRET) && !e.contains(SECRET), "{o}{e}");
        (out.status.code().expect("an exit status"), o, e)
    }

    async fn plan(&self, out: &str) -> (i32, String, String) {
        let file = self.path("fleet.yaml");
        let out = self.path(out);
        self.run(&[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .await
    }

    async fn apply(&self, plan: &str) -> (i32, String, String) {
        let p = self.path(plan);
        self.run(&["apply", p.to_str().unwrap()]).await
    }
}

/// The fleet: one network, one template holding a secret, two instances.
fn fleet(template_description: &str, image_1: &str, tags_2: &str, second: bool) -> String {
    let mut y = format!(
        r#"
networks:
  - label: main
    awsRegion: eu-west-3
    awsVpcId: vpc-1
    awsSubnetId: subnet-1
templates:
  - label: std
    description: {template_description}
    dataikuAwsAPIAccessMode: KEYPAIR
    dataikuAwsKeypairStorageMode: INLINE_ENCRYPTED
    dataikuAwsAccessKeyId: AKIAFLEETFILE0000000
    dataikuAwsSecretAccessKey: {{fromFile: secret-key}}
instances:
  - label: design-1
    template: std
    network: main
    imageId: {image_1}
"#
    );
    if second {
        y.push_str(&format!(
            r#"  - label: automation-1
    template: std
    network: main
    imageId: dss-14.2.0-default
    dssNodeType: automation
    fmTags: [{tags_2}]
"#
        ));
    }
    y.push_str("rollout:\n  healthSeconds: 0\n");
    y
}

async fn instances(api: &Api) -> Vec<Value> {
    let (s, v) = api.get("/tenants/main/instances").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

fn by_label<'a>(all: &'a [Value], label: &str) -> &'a Value {
    all.iter()
        .find(|i| i["label"] == label)
        .unwrap_or_else(|| panic!("no instance '{label}'"))
}

fn saved(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[tokio::test]
async fn a_fleet_file_is_planned_applied_and_kept_as_declared() {
    let t = sim_app_with(|cfg| {
        cfg.lifecycle.rollout_tick = Duration::from_millis(50);
    })
    .await;
    let cli = Cli::new(&t);

    // Everything is made.
    cli.write(&fleet("standard", "dss-13.5.4-default", "a", true), SECRET);
    let (code, out, err) = cli.plan("made.json").await;
    assert_eq!(code, 2, "{out}{err}");
    for line in [
        "+ virtual network \"main\"\n",
        "+ instance template \"std\"\n",
        "      dataikuAwsSecretAccessKey: (sensitive value)\n",
        "+ instance \"design-1\"\n",
        "      imageId: \"dss-13.5.4-default\"\n",
        "+ instance \"automation-1\"\n",
        "Plan: 4 to create, 0 to change in place, 0 to reprovision, 0 to delete (0 unchanged).\n",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
    assert!(!saved(&cli.path("made.json")).contains(SECRET));
    let (code, out, err) = cli.apply("made.json").await;
    assert_eq!(code, 0, "{out}{err}");
    let all = instances(&t.api).await;
    assert_eq!(all.len(), 2);
    let d1 = by_label(&all, "design-1").clone();
    let (_, tpl) = t
        .api
        .get(&format!(
            "/tenants/main/instance-settings-templates/{}",
            d1["instanceSettingsTemplateId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(tpl["label"], "std");
    assert_eq!(tpl["hasDataikuAwsSecretAccessKey"], true);

    // The same file again: nothing to do.
    let (code, out, _) = cli.plan("same.json").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "No changes: the fleet is as the file declares (4 objects).\n"
    );

    // design-1 is provisioned; an edit shows exactly what changes, and why
    // design-1 needs a new VM.
    let id1 = d1["id"].as_str().unwrap().to_string();
    let job = common::start(&t.api, &id1, "reprovision").await;
    common::assert_done(&t.api.wait_future(&job).await);
    cli.write(
        &fleet("standard nodes", "dss-14.2.0-default", "a, b", true),
        "AnotherSecretKey000000000000000000000000",
    );
    let (code, out, err) = cli.plan("edit.json").await;
    assert_eq!(code, 2, "{out}{err}");
    let id2 = by_label(&all, "automation-1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tpl_id = tpl["id"].as_str().unwrap();
    assert_eq!(
        out,
        format!(
            "~ instance template \"std\" ({tpl_id})\n\
             \x20     dataikuAwsSecretAccessKey: (sensitive value)\n\
             \x20     description: \"standard\" -> \"standard nodes\"\n\
             -/+ instance \"design-1\" ({id1})\n\
             \x20     imageId: \"dss-13.5.4-default\" -> \"dss-14.2.0-default\"\n\
             \x20     # reprovision: imageId reach the VM only with a new one\n\
             ~ instance \"automation-1\" ({id2})\n\
             \x20     fmTags: [\"a\"] -> [\"a\",\"b\"]\n\
             Plan: 0 to create, 2 to change in place, 1 to reprovision, 0 to delete (1 unchanged).\n"
        )
    );

    // The fleet changes behind the plan: applying it is refused and
    // changes nothing.
    let (s, v) = t
        .api
        .put(
            &format!("/tenants/main/instance-settings-templates/{tpl_id}"),
            serde_json::json!({"label": "std", "description": "by hand",
                "dataikuAwsAPIAccessMode": "KEYPAIR", "dataikuAwsKeypairStorageMode": "INLINE_ENCRYPTED",
                "dataikuAwsAccessKeyId": "AKIAFLEETFILE0000000"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (code, out, err) = cli.apply("edit.json").await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the plan is stale"), "{err}");
    let now = instances(&t.api).await;
    assert_eq!(by_label(&now, "design-1")["imageId"], "dss-13.5.4-default");
    assert_eq!(
        by_label(&now, "automation-1")["fmTags"],
        serde_json::json!(["a"])
    );

    // A new plan applies: the template and automation-1 at once, design-1
    // reprovisioned by a rollout onto the new image.
    let (code, out, _) = cli.plan("edit2.json").await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("description: \"by hand\" -> \"standard nodes\""),
        "{out}"
    );
    let (code, out, err) = cli.apply("edit2.json").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(" done, 0 running, 0 failed"), "{err}");
    let (_, st) = t
        .api
        .get(&format!("/tenants/main/instances/{id1}/status"))
        .await;
    assert_eq!(st["nodeVersion"], "14.2.0", "{st}");
    let (code, out, _) = cli.plan("after.json").await;
    assert_eq!(code, 0, "{out}");

    // Pruned: an instance the file no longer declares is deleted.
    let mut y = fleet("standard nodes", "dss-14.2.0-default", "a, b", false);
    y.push_str("prune: true\n");
    cli.write(&y, "AnotherSecretKey000000000000000000000000");
    let (code, out, _) = cli.plan("prune.json").await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("- instance \"automation-1\" ({id2})\n")),
        "{out}"
    );
    assert!(
        out.contains(
            "Plan: 0 to create, 0 to change in place, 0 to reprovision, 1 to delete (3 unchanged)."
        ),
        "{out}"
    );
    let (code, out, err) = cli.apply("prune.json").await;
    assert_eq!(code, 0, "{out}{err}");
    let now = instances(&t.api).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["label"], "design-1");
}

#[tokio::test]
async fn a_bad_fleet_file_is_refused_with_the_entry_it_names() {
    let t = sim_app_with(|_| {}).await;
    let cli = Cli::new(&t);
    for (yaml, said) in [
        (
            "instances:\n  - label: a\n    template: none\n    network: none\n    imageId: dss-14.2.0-default\n",
            "instances[0] 'a': template: no template labelled 'none' in the file or the fleet",
        ),
        (
            "templates:\n  - label: t\n  - label: t\n",
            "templates[1] 't': label: declared twice in the file",
        ),
        (
            "templates:\n  - label: t\n    dataikuAwsSecretAccessKey: plain\n",
            "templates[0].dataikuAwsSecretAccessKey: a secret is written as a reference",
        ),
        (
            "networks:\n  - label: n\n    id: vn-1\n",
            "networks[0] 'n': id: ids are FM's",
        ),
        (
            "networks:\n  - label: n\n    awsRegion: eu-west-3\n    awsVpcId: vpc-1\n    awsSubnetId: subnet-1\n    internetAccessMode: SOMETIMES\n",
            "networks[0] 'n': internetAccessMode: unknown variant `SOMETIMES`",
        ),
        (
            "rollout:\n  maxInFlight: 0\n",
            "rollout: maxInFlight must be at least 1",
        ),
        ("networks: [1\n", "fleet.yaml"),
    ] {
        cli.write(yaml, SECRET);
        let (code, out, err) = cli.plan("bad.json").await;
        assert_eq!(code, 1, "{yaml}: {out}{err}");
        assert!(err.contains(said), "{yaml}: {said:?} in {err}");
        assert!(!cli.path("bad.json").exists(), "no plan is saved");
    }
    assert!(instances(&t.api).await.is_empty());
}
