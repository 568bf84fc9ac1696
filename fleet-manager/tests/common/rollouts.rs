//! Rollout helpers shared by the rollout suites (sim and local).

use super::*;

/// Starts a rollout; asserts it was taken and returns it.
pub async fn rollout_create(api: &Api, spec: Value) -> Value {
    let (s, r) = api.post("/tenants/main/rollouts", spec).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}

/// Polls a rollout until it has ended (or `secs` have passed: a panic).
pub async fn rollout_wait(api: &Api, id: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, r) = api.get(&format!("/tenants/main/rollouts/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        if ["done", "failed", "cancelled"].contains(&r["state"].as_str().unwrap_or_default()) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollout {id} did not end: {}",
            serde_json::to_string_pretty(&r).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The most targets that were in flight at once, from their recorded
/// start and finish times (a target finishing at the instant another
/// starts is not counted with it).
pub fn max_in_flight(rollout: &Value) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::new();
    for t in rollout["targets"].as_array().expect("targets") {
        if let Some(start) = t["startedAt"].as_i64() {
            let end = t["finishedAt"].as_i64().unwrap_or(i64::MAX);
            edges.push((start, 1));
            edges.push((end, -1));
        }
    }
    // Ends before starts at the same instant.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The targets' states, in order.
pub fn target_states(rollout: &Value) -> Vec<String> {
    rollout["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t["state"].as_str().unwrap_or_default().to_string())
        .collect()
}
