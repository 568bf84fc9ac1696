//! `fm.fleet.v1.Instances`: each method one `App` call.

use super::{audited, caller, page_of, source, status, tenant};
use crate::api::page::encode_token;
use crate::app::{Action, App, StartedFuture};
use crate::error::Error;
use crate::model::instance::Instance as Model;
use fm_proto::fleet::{
    GetInstanceRequest, Instance, InstanceActionRequest, ListInstancesRequest,
    ListInstancesResponse, Operation,
};
use tonic::{Request, Response, Status};

pub struct Service {
    pub app: App,
}

/// The most instances one page holds, and a page's size when not asked.
const PAGE_MAX: i32 = 1000;
const PAGE_DEFAULT: u64 = 100;

fn to_proto(m: Model) -> Instance {
    Instance {
        id: m.id.unwrap_or_default(),
        label: m.label,
        description: m.description,
        instance_settings_template_id: m.instance_settings_template_id,
        virtual_network_id: m.virtual_network_id,
        image_id: m.image_id,
        dss_node_type: m.dss_node_type.as_str().to_string(),
        fm_tags: m.fm_tags,
        created_at_ms: m.created_at,
        updated_at_ms: m.updated_at,
    }
}

/// The actions the service starts.
#[derive(Clone, Copy)]
enum Act {
    Reprovision,
    Start,
    Stop,
}

impl Act {
    fn method(self) -> &'static str {
        match self {
            Act::Reprovision => "Instances/ReprovisionInstance",
            Act::Start => "Instances/StartInstance",
            Act::Stop => "Instances/StopInstance",
        }
    }
}

impl Service {
    /// Starts `act` on the instance under an audit row.
    async fn act(
        &self,
        req: Request<InstanceActionRequest>,
        act: Act,
    ) -> Result<Response<Operation>, Status> {
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let app = &self.app;
        let started = async {
            match act {
                Act::Reprovision => app.instance_reprovision(&ctx, t, &r.id, false, None).await,
                Act::Start => app.instance_action(&ctx, t, &r.id, Action::Start).await,
                Act::Stop => app.instance_action(&ctx, t, &r.id, Action::Stop).await,
            }
        };
        let f: StartedFuture = audited(app, &ctx, act.method(), (t, &r.id, from), started).await?;
        Ok(Response::new(super::operations::to_proto(f)))
    }
}

#[tonic::async_trait]
impl fm_proto::fleet::instances_server::Instances for Service {
    async fn get_instance(
        &self,
        req: Request<GetInstanceRequest>,
    ) -> Result<Response<Instance>, Status> {
        let r = req.into_inner();
        let m = self
            .app
            .instance_get(tenant(&r.tenant), &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(m)))
    }

    async fn list_instances(
        &self,
        req: Request<ListInstancesRequest>,
    ) -> Result<Response<ListInstancesResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let docs = self
            .app
            .instance_list_json(tenant(&r.tenant), &page)
            .await
            .map_err(status)?;
        let instances = docs
            .items
            .iter()
            .map(|d| serde_json::from_str::<Model>(d).map(to_proto))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| status(Error::internal(format!("corrupt stored instance: {e}"))))?;
        Ok(Response::new(ListInstancesResponse {
            instances,
            next_page_token: docs.next.as_ref().map(encode_token).unwrap_or_default(),
        }))
    }

    async fn reprovision_instance(
        &self,
        req: Request<InstanceActionRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Reprovision).await
    }

    async fn start_instance(
        &self,
        req: Request<InstanceActionRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Start).await
    }

    async fn stop_instance(
        &self,
        req: Request<InstanceActionRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Stop).await
    }
}
