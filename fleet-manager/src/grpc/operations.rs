//! `fm.fleet.v1.Operations`: FM's futures as long-running operations.

use super::{audited, caller, page_of, source, status, tenant};
use crate::api::page::encode_token;
use crate::app::App;
use crate::model::operation::FutureState;
use fm_proto::fleet::{
    CancelOperationRequest, GetOperationRequest, ListOperationsRequest, ListOperationsResponse,
    Operation, WaitOperationRequest, WatchOperationRequest,
};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

pub struct Service {
    pub app: App,
    /// True once FM stops (streams end then).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// The longest a `WaitOperation` waits, and how often it looks.
const WAIT_MAX: Duration = Duration::from_secs(60);
const WAIT_POLL: Duration = Duration::from_millis(200);

pub fn to_proto(f: FutureState) -> Operation {
    let (error_type, error_message) = f
        .error
        .map(|e| (e.error_type, e.message))
        .unwrap_or_default();
    Operation {
        name: f.job_id,
        kind: f.kind,
        target_id: f.target_id,
        done: !f.alive,
        state: f.state,
        percent: f.progress.percent.into(),
        current_step: f.progress.current_step.unwrap_or_default(),
        error_type,
        error_message,
        result_json: f.result.map(|r| r.to_string()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl fm_proto::fleet::operations_server::Operations for Service {
    type WatchOperationStream = super::watch::Stream<Operation>;

    async fn watch_operation(
        &self,
        req: Request<WatchOperationRequest>,
    ) -> Result<Response<Self::WatchOperationStream>, Status> {
        let r = req.into_inner();
        let t = tenant(&r.tenant).to_string();
        let first = self
            .app
            .future_get(&t, &r.name, true)
            .await
            .map_err(status)?;
        Ok(Response::new(super::watch::operation(
            self.app.clone(),
            t,
            to_proto(first),
            self.stopping.clone(),
        )))
    }

    async fn get_operation(
        &self,
        req: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = req.into_inner();
        let f = self
            .app
            .future_get(tenant(&r.tenant), &r.name, true)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(f)))
    }

    async fn list_operations(
        &self,
        req: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, 500, 50)?;
        let got = self
            .app
            .future_list(tenant(&r.tenant), &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListOperationsResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            operations: got.items.into_iter().map(to_proto).collect(),
        }))
    }

    async fn wait_operation(
        &self,
        req: Request<WaitOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let wait = Duration::from_millis(r.timeout_ms.max(0) as u64).min(WAIT_MAX);
        let until = Instant::now() + wait;
        loop {
            let f = self
                .app
                .future_get(t, &r.name, true)
                .await
                .map_err(status)?;
            if !f.alive || Instant::now() >= until {
                return Ok(Response::new(to_proto(f)));
            }
            tokio::time::sleep(WAIT_POLL.min(until - Instant::now())).await;
        }
    }

    async fn cancel_operation(
        &self,
        req: Request<CancelOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let f = audited(
            &self.app,
            &ctx,
            "Operations/CancelOperation",
            (t, &r.name, from),
            self.app.future_abort(t, &r.name),
        )
        .await?;
        Ok(Response::new(to_proto(f)))
    }
}
