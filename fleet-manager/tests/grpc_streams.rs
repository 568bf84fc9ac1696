//! The gRPC API's server streams against FM on the sim cloud, through
//! tonic's generated client: an operation watched until it is done, one
//! message per change; an instances watcher told of the operation's end;
//! and FM's graceful stop not held by a watcher left open.

mod common;

use common::{setup, sim_app};
use fm_proto::fleet::instances_client::InstancesClient;
use fm_proto::fleet::operations_client::OperationsClient;
use fm_proto::fleet::{InstanceActionRequest, WatchInstancesRequest, WatchOperationRequest};
use std::time::Duration;

type Auth = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

fn authed<T>(auth: &Auth, m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert("authorization", auth.clone());
    r
}

#[tokio::test]
async fn watchers_follow_an_operation_to_its_end_and_do_not_hold_fms_stop() {
    let t = sim_app().await;
    let (tpl, net) = setup(&t.api, serde_json::json!([])).await;
    let id = t.api.create_instance(&tpl, &net).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let channel = tonic::transport::Channel::from_shared(t.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth: Auth = format!("Bearer {}:{}", t.api.key.0, t.api.key.1)
        .parse()
        .unwrap();
    let mut instances = InstancesClient::new(channel.clone());
    let mut operations = OperationsClient::new(channel);
    let mut events = instances
        .watch_instances(authed(
            &auth,
            WatchInstancesRequest {
                tenant: String::new(),
                instance_ids: vec![id.clone()],
                after_event_id: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let op = instances
        .reprovision_instance(authed(
            &auth,
            InstanceActionRequest {
                tenant: String::new(),
                id: id.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut moves = operations
        .watch_operation(authed(
            &auth,
            WatchOperationRequest {
                tenant: String::new(),
                name: op.name.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(60), moves.message())
        .await
        .expect("a change or the end within a minute")
        .unwrap()
    {
        seen.push(m);
    }
    let last = seen.last().expect("at least the operation as it was");
    assert!(last.done && last.state == "done", "{last:?}");
    assert!(seen[..seen.len() - 1].iter().all(|m| !m.done), "{seen:?}");
    assert!(op.done || seen.len() >= 2, "{seen:?}");
    let percents: Vec<i32> = seen.iter().map(|m| m.percent).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    let ev = tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("the event within seconds")
        .unwrap()
        .expect("an event");
    assert_eq!(
        (
            ev.instance_id.as_str(),
            ev.operation.as_str(),
            ev.state.as_str()
        ),
        (id.as_str(), op.name.as_str(), "done")
    );

    // The instances watcher is still open: FM stops all the same, and the
    // stream ends.
    tokio::time::timeout(Duration::from_secs(15), t.stop())
        .await
        .expect("FM stops with a watcher open");
    let end = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("the stream ends when FM stops");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}
