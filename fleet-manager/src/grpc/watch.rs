//! The server streams: an instance's changes from the outbox
//! (`WatchInstances`) and one operation as it moves (`WatchOperation`).
//! Each stream is a task that reads, sends and sleeps; it ends when the
//! client goes, when FM stops (so a graceful stop is not held by a
//! watcher), or, for an operation, once it is done.

use super::status;
use crate::app::App;
use crate::model::operation::FleetEvent;
use fm_proto::fleet::{InstanceEvent, Operation};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::Status;

pub type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// How often a stream looks for news.
const POLL: Duration = Duration::from_millis(250);

/// Sleeps one poll; false when the stream is to end instead.
async fn pause<T>(tx: &mpsc::Sender<T>, stopping: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => true,
        _ = tx.closed() => false,
        _ = stopping.wait_for(|s| *s) => false,
    }
}

fn event(e: FleetEvent) -> InstanceEvent {
    InstanceEvent {
        event_id: e.id,
        at_ms: e.at,
        instance_id: e.target_id,
        operation: e.operation_id.unwrap_or_default(),
        kind: e.kind,
        state: e.state,
        error: e.error.unwrap_or_default(),
    }
}

/// Whether a watcher of `ids` (empty: every instance) gets `e`.
fn wanted(e: &FleetEvent, ids: &[String]) -> bool {
    e.target_id.starts_with("inst-") && (ids.is_empty() || ids.contains(&e.target_id))
}

/// The instances' events after `after` (0: from now on).
pub fn instances(
    app: App,
    tenant: String,
    ids: Vec<String>,
    after: i64,
    mut stopping: watch::Receiver<bool>,
) -> Stream<InstanceEvent> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut cursor = (after > 0).then_some(after);
        loop {
            match app.events_after(&tenant, cursor).await {
                Ok((events, next)) => {
                    let full = events.len() >= 500;
                    for e in events.into_iter().filter(|e| wanted(e, &ids)) {
                        if tx.send(Ok(event(e))).await.is_err() {
                            return;
                        }
                    }
                    cursor = Some(next);
                    // A backlog is read at once, page after page.
                    if full {
                        continue;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            }
            if !pause(&tx, &mut stopping).await {
                return;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// `first` (the operation as it was just read), then each change of its
/// state, progress or step, until it is done.
pub fn operation(
    app: App,
    tenant: String,
    first: Operation,
    mut stopping: watch::Receiver<bool>,
) -> Stream<Operation> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let key = |o: &Operation| (o.state.clone(), o.percent, o.current_step.clone(), o.done);
        let name = first.name.clone();
        let mut shown = key(&first);
        let mut done = first.done;
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        while !done {
            if !pause(&tx, &mut stopping).await {
                return;
            }
            match app.future_get(&tenant, &name, true).await {
                Ok(f) => {
                    let op = super::operations::to_proto(f);
                    done = op.done;
                    if key(&op) != shown {
                        shown = key(&op);
                        if tx.send(Ok(op)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(status(e))).await;
                    return;
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(target: &str) -> FleetEvent {
        FleetEvent {
            id: 1,
            at: 0,
            kind: "PROVISION_INSTANCE".into(),
            target_id: target.into(),
            operation_id: None,
            state: "done".into(),
            error: None,
        }
    }

    #[test]
    fn a_watcher_gets_instances_events_only_and_only_those_it_names() {
        assert!(wanted(&ended("inst-a"), &[]));
        assert!(!wanted(&ended("vn-a"), &[]));
        assert!(wanted(&ended("inst-a"), &["inst-a".into()]));
        assert!(!wanted(&ended("inst-b"), &["inst-a".into()]));
    }
}
