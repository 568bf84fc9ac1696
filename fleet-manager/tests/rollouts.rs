//! Rollouts on the sim cloud: canaries first, never more than maxInFlight
//! at once, the error budget, pause, resume and cancel, the meltdown guard,
//! and every bad request refused precisely. The real-binary rollout (local
//! cloud, FM killed mid-rollout) is in `lifecycle_rollout.rs`.

mod common;

use common::{
    Api, TestApp, max_in_flight, rollout_create, rollout_wait, sim_app_with, target_states,
};
use fleet_manager::cloud::sim::SimCloud;
use fleet_manager::model::user::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

fn cloud(t: &TestApp) -> SimCloud {
    common::sim_cloud(t)
}

/// An FM on the sim cloud whose steps take a little while, so that targets
/// overlap, with a second image to upgrade to.
async fn app() -> TestApp {
    let t = sim_app_with(|cfg| {
        cfg.engine.step_delay = Duration::from_millis(30);
        cfg.engine.workers = 8;
        cfg.lifecycle.rollout_tick = Duration::from_millis(50);
    })
    .await;
    let kit = t.db.dir.path().join("sim-kit.tar.gz");
    t.app
        .image_register("dss-14.3.0-default", "14.3.0", "14.3.0", &kit, 5)
        .await
        .expect("image");
    t
}

/// `n` provisioned instances on one network and template, in creation order.
async fn fleet(api: &Api, n: usize) -> Vec<String> {
    let net = api.create_network().await;
    let tpl = api.create_template().await;
    let mut ids = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..n {
        let id = api.create_instance(&tpl, &net).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        jobs.push(common::start(api, &id, "reprovision").await);
        ids.push(id);
    }
    for j in jobs {
        common::assert_done(&api.wait_future(&j).await);
    }
    ids
}

async fn image_of(api: &Api, id: &str) -> String {
    let (_, i) = api.get(&format!("/tenants/main/instances/{id}")).await;
    i["imageId"].as_str().unwrap().to_string()
}

fn upgrade(ids: &[String], more: Value) -> Value {
    let mut spec = json!({
        "label": "to 14.3.0",
        "selector": {"instanceIds": ids},
        "action": {"type": "UPGRADE", "imageId": "dss-14.3.0-default"},
        "healthSeconds": 0,
    });
    for (k, v) in more.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

#[tokio::test]
async fn an_upgrade_rollout_runs_the_canary_first_and_never_more_than_max_in_flight() {
    let t = app().await;
    let ids = fleet(&t.api, 20).await;
    let r = rollout_create(
        &t.api,
        upgrade(
            &ids,
            json!({"canaries": 1, "maxInFlight": "25%", "maxErrors": 1}),
        ),
    )
    .await;
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(r["counts"]["targets"], 20);
    let id = r["id"].as_str().unwrap();
    let r = rollout_wait(&t.api, id, 120).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["counts"]["done"], 20, "{r}");
    assert_eq!(r["reason"], Value::Null);
    let targets = r["targets"].as_array().unwrap();
    // The canary first: every other target started after it finished.
    let canary = &targets[0];
    assert_eq!(canary["canary"], true);
    assert_eq!(canary["instanceId"], ids[0].as_str());
    let canary_end = canary["finishedAt"].as_i64().unwrap();
    for t in &targets[1..] {
        assert_eq!(t["canary"], false);
        assert!(t["startedAt"].as_i64().unwrap() >= canary_end, "{t}");
    }
    // 25 % of 20: five at once, reached and never passed.
    assert_eq!(max_in_flight(&r), 5, "{r}");
    // Each target's operation is the one upgrade of it, done, by the rollout.
    for (target, instance) in targets.iter().zip(&ids) {
        let op = target["operationId"].as_str().unwrap();
        let f = t.api.wait_future(op).await;
        assert_eq!(f["state"], "done", "{f}");
        assert_eq!(f["type"], "PROVISION_INSTANCE");
        assert_eq!(f["targetId"], instance.as_str());
        assert_eq!(f["initiatedBy"], "system:rollout");
        assert_eq!(image_of(&t.api, instance).await, "dss-14.3.0-default");
    }
    // The list shows it with its counts.
    let (s, list) = t.api.get("/tenants/main/rollouts").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["counts"]["done"], 20);
    assert!(list[0].get("targets").is_none());
    t.stop().await;
}

#[tokio::test]
async fn a_failing_canary_stops_the_rollout_and_leaves_the_rest_untouched() {
    let t = app().await;
    let ids = fleet(&t.api, 6).await;
    cloud(&t).agents().fail("install", true);
    let r = rollout_create(
        &t.api,
        upgrade(
            &ids,
            json!({"canaries": 1, "maxInFlight": 3, "maxErrors": 2}),
        ),
    )
    .await;
    let r = rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"], "a canary failed");
    assert_eq!(
        target_states(&r),
        [
            "failed", "skipped", "skipped", "skipped", "skipped", "skipped"
        ]
    );
    assert!(
        r["targets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("simulated failure of install"),
        "{r}"
    );
    for (n, target) in r["targets"].as_array().unwrap().iter().enumerate().skip(1) {
        assert_eq!(target["operationId"], Value::Null);
        assert_eq!(image_of(&t.api, &ids[n]).await, "dss-14.2.0-default");
    }
    t.stop().await;
}

#[tokio::test]
async fn the_error_budget_stops_a_rollout_once_more_targets_fail_than_it_allows() {
    let t = app().await;
    let ids = fleet(&t.api, 8).await;
    cloud(&t).agents().fail("restart", true);
    let r = rollout_create(
        &t.api,
        json!({"selector": {"instanceIds": ids}, "action": {"type": "RESTART_NODE"},
               "maxInFlight": 1, "maxErrors": 1, "healthSeconds": 0}),
    )
    .await;
    let r = rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await;
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(
        r["reason"],
        "2 targets failed, more than maxErrors allows (1)"
    );
    assert_eq!(r["counts"]["failed"], 2);
    assert_eq!(r["counts"]["skipped"], 6);
    assert_eq!(max_in_flight(&r), 1);
    let rid = r["id"].as_str().unwrap();
    for a in ["pause", "resume", "cancel"] {
        let (s, e) = t
            .api
            .post(
                &format!("/tenants/main/rollouts/{rid}/actions/{a}"),
                json!({}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{a}: {e}");
        assert!(e["message"].as_str().unwrap().contains("is failed"), "{e}");
    }

    // Within the budget, a rollout ends done and says what failed.
    cloud(&t).agents().fail("restart", false);
    let r = rollout_create(
        &t.api,
        json!({"selector": {"instanceIds": ids}, "action": {"type": "STOP"},
               "maxInFlight": "50%", "maxErrors": "25%", "healthSeconds": 1}),
    )
    .await;
    let r = rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["counts"]["done"], 8);
    t.stop().await;
}

#[tokio::test]
async fn a_paused_rollout_starts_nothing_until_resumed_and_a_cancelled_one_skips_the_rest() {
    let t = app().await;
    let ids = fleet(&t.api, 6).await;
    let spec = json!({"selector": {"all": true}, "action": {"type": "RESTART_NODE"},
                      "maxInFlight": 1, "healthSeconds": 1});
    let r = rollout_create(&t.api, spec.clone()).await;
    let id = r["id"].as_str().unwrap().to_string();
    let path = |a: &str| format!("/tenants/main/rollouts/{id}/actions/{a}");
    let (s, p) = t.api.post(&path("pause"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["state"], "paused");
    // What was started before the pause finishes; nothing else starts.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, now) = t.api.get(&format!("/tenants/main/rollouts/{id}")).await;
    let started =
        now["counts"]["targets"].as_u64().unwrap() - now["counts"]["pending"].as_u64().unwrap();
    assert!(started <= 1, "{now}");
    assert_eq!(now["counts"]["running"], 0, "{now}");
    let (s, e) = t.api.post(&path("pause"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["message"].as_str().unwrap().contains("is paused"), "{e}");

    let (s, _) = t.api.post(&path("resume"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    // Cancel once a second target has started: the rest is skipped.
    for _ in 0..200 {
        let (_, now) = t.api.get(&format!("/tenants/main/rollouts/{id}")).await;
        if now["counts"]["pending"].as_u64().unwrap() <= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, c) = t.api.post(&path("cancel"), json!({})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["state"], "cancelling");
    let r = rollout_wait(&t.api, &id, 60).await;
    assert_eq!(r["state"], "cancelled", "{r}");
    assert!(
        r["reason"].as_str().unwrap().starts_with("cancelled by "),
        "{r}"
    );
    let counts = &r["counts"];
    assert_eq!(counts["pending"], 0);
    assert_eq!(counts["running"], 0);
    assert!(counts["done"].as_u64().unwrap() >= 2, "{r}");
    assert!(counts["skipped"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(
        counts["done"].as_u64().unwrap() + counts["skipped"].as_u64().unwrap(),
        ids.len() as u64
    );
    let (s, e) = t.api.post(&path("resume"), json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    t.stop().await;
}

#[tokio::test]
async fn the_meltdown_guard_starts_nothing_when_too_many_targets_are_unhealthy() {
    let t = app().await;
    let up = fleet(&t.api, 1).await;
    // Two instances never provisioned: two of three selected are down.
    let net = t.api.create_network().await;
    let tpl = t.api.create_template().await;
    let mut ids = up.clone();
    for _ in 0..2 {
        ids.push(
            t.api.create_instance(&tpl, &net).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let r = rollout_create(
        &t.api,
        json!({"selector": {"instanceIds": ids}, "action": {"type": "RESTART_NODE"}}),
    )
    .await;
    assert_eq!(r["state"], "failed", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("2 of 3 selected instances are not healthy"),
        "{r}"
    );
    assert_eq!(target_states(&r), ["skipped", "skipped", "skipped"]);
    // A start takes stopped instances: the guard does not count them.
    let r = rollout_create(
        &t.api,
        json!({"selector": {"instanceIds": up}, "action": {"type": "STOP"}, "healthSeconds": 0}),
    )
    .await;
    assert_eq!(
        rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await["state"],
        "done"
    );
    let r = rollout_create(
        &t.api,
        json!({"selector": {"instanceIds": up}, "action": {"type": "START"}, "healthSeconds": 0}),
    )
    .await;
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(
        rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await["state"],
        "done"
    );
    t.stop().await;
}

#[tokio::test]
async fn a_selector_takes_instances_by_tag_template_and_image() {
    let t = app().await;
    let ids = fleet(&t.api, 3).await;
    // Tag the second one.
    let (_, mut doc) = t
        .api
        .get(&format!("/tenants/main/instances/{}", ids[1]))
        .await;
    doc["fmTags"] = json!(["canary-pool", "eu"]);
    let (s, _) = t
        .api
        .put(&format!("/tenants/main/instances/{}", ids[1]), doc)
        .await;
    assert_eq!(s, StatusCode::OK);
    let r = rollout_create(
        &t.api,
        json!({"selector": {"fmTags": ["eu", "canary-pool"], "imageId": "dss-14.2.0-default"},
               "action": {"type": "RESTART_NODE"}, "healthSeconds": 0}),
    )
    .await;
    assert_eq!(r["counts"]["targets"], 1);
    assert_eq!(r["targets"][0]["instanceId"], ids[1].as_str());
    rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await;
    let r = rollout_create(
        &t.api,
        json!({"selector": {"all": true}, "action": {"type": "SNAPSHOT"}, "healthSeconds": 0}),
    )
    .await;
    assert_eq!(r["counts"]["targets"], 3);
    let r = rollout_wait(&t.api, r["id"].as_str().unwrap(), 60).await;
    assert_eq!(r["state"], "done", "{r}");
    for id in &ids {
        let (_, snaps) = t
            .api
            .get(&format!("/tenants/main/instances/{id}/snapshots"))
            .await;
        assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
        assert_eq!(
            snaps[0]["reasonForSnapshot"],
            format!("rollout {}", r["id"].as_str().unwrap())
        );
    }
    t.stop().await;
}

#[tokio::test]
async fn bad_rollouts_are_refused_with_a_precise_error_and_nothing_stored() {
    let t = app().await;
    let ids = fleet(&t.api, 1).await;
    let cases = [
        (
            json!({"selector": {}, "action": {"type": "STOP"}}),
            StatusCode::BAD_REQUEST,
            "all=true",
        ),
        (
            json!({"selector": {"all": true}, "action": {"type": "UPGRADE", "imageId": "nope"}}),
            StatusCode::BAD_REQUEST,
            "image 'nope' does not exist",
        ),
        (
            json!({"selector": {"instanceIds": ["inst-nope"]}, "action": {"type": "STOP"}}),
            StatusCode::NOT_FOUND,
            "inst-nope",
        ),
        (
            json!({"selector": {"fmTags": ["none-has-it"]}, "action": {"type": "STOP"}}),
            StatusCode::CONFLICT,
            "no instance matches",
        ),
        (
            json!({"selector": {"all": true}, "action": {"type": "STOP"}, "maxErrors": "150%"}),
            StatusCode::BAD_REQUEST,
            "percentage",
        ),
        (
            json!({"selector": {"all": true}, "action": {"type": "FLY"}}),
            StatusCode::BAD_REQUEST,
            "FLY",
        ),
        (
            json!({"selector": {"all": true}}),
            StatusCode::BAD_REQUEST,
            "action",
        ),
    ];
    for (spec, status, needle) in cases {
        let (s, e) = t.api.post("/tenants/main/rollouts", spec.clone()).await;
        assert_eq!(s, status, "{spec}: {e}");
        assert!(
            e["message"].as_str().unwrap_or_default().contains(needle),
            "{spec}: {e}"
        );
    }
    let (_, list) = t.api.get("/tenants/main/rollouts").await;
    assert_eq!(list, json!([]));
    let (s, e) = t.api.get("/tenants/main/rollouts?limit=1&x=1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, _) = t.api.get("/tenants/main/rollouts?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, e) = t.api.get("/tenants/main/rollouts/ro-nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, _) = t.api.get("/tenants/nope/rollouts").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A viewer reads rollouts and starts none.
    let viewer = t.api_as("vera", Role::Viewer).await;
    let (s, _) = viewer
        .post(
            "/tenants/main/rollouts",
            json!({"selector": {"instanceIds": ids}, "action": {"type": "STOP"}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = viewer.get("/tenants/main/rollouts").await;
    assert_eq!(s, StatusCode::OK);
    t.stop().await;
}
