//! The CLI over the gRPC API (`fleet-manager networks|templates|instances|
//! accounts|images|operations|rollouts ...`), the real binary against FM on the sim
//! cloud: resources made from `--set` fields (once per request id),
//! printed as tables for people and JSON for scripts, updated field by
//! field with a stale etag refused, actions followed to their end and
//! watched as they end, secrets from the environment never printed, and
//! exit statuses scripts can trust.

mod common;

use common::sim_app;
use serde_json::Value;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const SECRET: &str = "cliSecretKey0000000000000000000000000000";

struct Cli {
    url: String,
    key: (String, String),
}

impl Cli {
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new(common::bin());
        cmd.args(args)
            .env("FM_GRPC_URL", &self.url)
            .env("FM_API_KEY_ID", &self.key.0)
            .env("FM_API_KEY_SECRET", &self.key.1)
            .env("FM_CLI_TEST_SECRET", SECRET);
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
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

    /// A command that must succeed, its JSON.
    async fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let (code, out, err) = self.run(&all).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

#[tokio::test]
async fn resources_are_made_listed_updated_and_acted_on_from_the_command_line() {
    let t = sim_app().await;
    let cli = Cli {
        url: t.grpc_url(),
        key: t.api.key.clone(),
    };
    let net = [
        "networks",
        "create",
        "--set",
        "label=cli-net",
        "--set",
        "awsRegion=eu-west-3",
        "--set",
        "awsVpcId=vpc-0a1b2c3d",
        "--set",
        "awsSubnetId=subnet-0a1b2c3d",
        "--request-id",
        "cli-net-1",
    ];
    let vn = cli.json(&net).await;
    let vn_id = vn["id"].as_str().unwrap().to_string();
    assert!(vn_id.starts_with("vn-"), "{vn}");
    assert_eq!(vn["settings"]["awsVpcId"], "vpc-0a1b2c3d");
    // A retry with the same request id makes nothing new.
    assert_eq!(cli.json(&net).await["id"], vn_id.as_str());
    assert_eq!(
        cli.json(&["networks", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let tpl = cli
        .json(&["templates", "create", "--set", "label=cli-tpl"])
        .await;
    let tpl_id = tpl["id"].as_str().unwrap().to_string();
    let images = cli.json(&["images", "list"]).await;
    let image = images.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // validate_only: answered, not made.
    let fields = |label: &str| {
        vec![
            "--set".to_string(),
            format!("label={label}"),
            "--set".into(),
            format!("instanceSettingsTemplateId={tpl_id}"),
            "--set".into(),
            format!("virtualNetworkId={vn_id}"),
            "--set".into(),
            format!("imageId={image}"),
            "--set".into(),
            "dssNodeType=automation".into(),
            "--set".into(),
            "fmTags=[\"cli\"]".into(),
            "--set".into(),
            "dataVolumeSizeGB=60".into(),
        ]
    };
    let mut dry = vec!["instances", "create", "--validate-only"];
    let f = fields("cli-dry");
    dry.extend(f.iter().map(String::as_str));
    assert_eq!(cli.json(&dry).await["id"], "");
    let mut make = vec!["instances", "create"];
    let f = fields("cli-inst");
    make.extend(f.iter().map(String::as_str));
    let inst = cli.json(&make).await;
    let id = inst["id"].as_str().unwrap().to_string();
    assert_eq!(inst["dssNodeType"], "automation");
    assert_eq!(inst["fmTags"], serde_json::json!(["cli"]));
    assert_eq!(inst["settings"]["dataVolumeSizeGB"], 60);

    // For people: a table with a header and one row per instance.
    let (code, table, _) = cli.run(&["instances", "list"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("NODE TYPE"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&id) && lines[1].contains("automation"),
        "{table}"
    );
    let (code, one, _) = cli.run(&["instances", "get", &id]).await;
    assert_eq!(code, 0);
    assert!(
        one.lines()
            .any(|l| l.starts_with("settings.dataVolumeSizeGB") && l.ends_with("60")),
        "{one}"
    );

    // An update changes the fields it gives, no others; a stale etag is refused.
    let up = cli
        .json(&["instances", "update", &id, "--set", "dataVolumeSizeGB=80"])
        .await;
    assert_eq!(up["settings"]["dataVolumeSizeGB"], 80);
    assert_eq!(up["label"], "cli-inst");
    assert_ne!(up["etag"], inst["etag"]);
    let stale = inst["etag"].as_str().unwrap();
    let (code, _, err) = cli
        .run(&[
            "instances",
            "update",
            &id,
            "--set",
            "description=lost",
            "--etag",
            stale,
        ])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Stale"), "{err}");
    let (code, _, err) = cli.run(&["instances", "update", &id]).await;
    assert_eq!(code, 1);
    assert!(err.contains("--set"), "{err}");

    // A watcher prints each operation on the instance as it ends.
    let mut watch = tokio::process::Command::new(common::bin())
        .args(["instances", "watch", &id, "--output", "json"])
        .env("FM_GRPC_URL", &cli.url)
        .env("FM_API_KEY_ID", &cli.key.0)
        .env("FM_API_KEY_SECRET", &cli.key.1)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // An action is followed to its end; the operation is listed.
    let op = cli.json(&["instances", "reprovision", &id]).await;
    assert_eq!(op["state"], "done", "{op}");
    assert_eq!(op["done"], true);
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the watcher prints the operation's end")
        .unwrap()
        .expect("a line");
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["operation"], op["name"], "{line}");
    assert_eq!(
        (ev["instanceId"].as_str(), ev["state"].as_str()),
        (Some(id.as_str()), Some("done"))
    );
    watch.kill().await.unwrap();
    let ops = cli.json(&["operations", "list", "--limit", "5"]).await;
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == op["name"]),
        "{ops}"
    );
    let started = cli.json(&["instances", "stop", &id, "--no-wait"]).await;
    assert!(
        started["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{started}"
    );
    let waited = cli
        .json(&["operations", "wait", started["name"].as_str().unwrap()])
        .await;
    assert_eq!(waited["state"], "done", "{waited}");

    // A rollout over the stopped instance, followed to its end.
    let r = cli
        .json(&[
            "rollouts",
            "create",
            "--action",
            "START",
            "--instance",
            &id,
            "--health-seconds",
            "0",
            "--label",
            "cli-start",
        ])
        .await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["counts"]["done"], 1, "{r}");
    assert_eq!(r["targets"][0]["instanceId"], id.as_str(), "{r}");
    let rid = r["id"].as_str().unwrap();
    let (code, table, _) = cli.run(&["rollouts", "get", rid]).await;
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("INSTANCE") && l.contains("CANARY")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("done")),
        "{table}"
    );
    let (code, table, _) = cli.run(&["rollouts", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(rid) && l.contains("START")),
        "{table}"
    );
    let (code, _, err) = cli
        .run(&[
            "rollouts",
            "create",
            "--action",
            "UPGRADE",
            "--instance",
            &id,
        ])
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("imageId"), "{err}");

    // Refused before anything starts: the reason, exit status 1.
    let (code, _, err) = cli.run(&["networks", "delete", &vn_id]).await;
    assert_eq!(code, 1);
    assert!(err.contains("used by 1 instance"), "{err}");
    let (code, _, err) = cli.run(&["instances", "get", "inst-nope"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("NotFound"), "{err}");

    // A secret comes from the environment and is never printed back.
    let acct = cli
        .json(&[
            "accounts",
            "create",
            "--set",
            "label=cli-acct",
            "--set",
            "awsAuthenticationMode=KEYPAIR",
            "--set",
            "awsAccessKeyId=AKIACLIEXAMPLE000000",
            "--set-from-env",
            "awsSecretAccessKey=FM_CLI_TEST_SECRET",
        ])
        .await;
    assert_eq!(acct["hasAwsSecretAccessKey"], true, "{acct}");
    assert!(
        acct["settings"].get("awsSecretAccessKey").is_none(),
        "{acct}"
    );

    let gone = cli.json(&["instances", "delete", &id]).await;
    assert_eq!(gone["state"], "done", "{gone}");
    assert_eq!(
        cli.json(&["instances", "list"]).await,
        serde_json::json!([])
    );

    // No key: said so, nothing called.
    let out = std::process::Command::new(common::bin())
        .args(["instances", "list"])
        .env("FM_GRPC_URL", &cli.url)
        .env_remove("FM_API_KEY_ID")
        .env_remove("FM_API_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("an API key is needed"));
    t.stop().await;
}
