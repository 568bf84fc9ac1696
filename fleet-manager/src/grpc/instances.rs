//! `fm.fleet.v1.Instances`: each method one `App` call.

use super::fields::{self, Typed};
use super::{audited, caller, page_of, source, status, tenant};
use crate::api::page::encode_token;
use crate::app::{Action, App, Change, StartedFuture, etag_of};
use crate::error::{Error, Result as DomainResult};
use crate::model::instance::Instance as Model;
use fm_proto::fleet::{
    CreateInstanceRequest, GetInstanceRequest, Instance, InstanceActionRequest, InstanceEvent,
    ListInstancesRequest, ListInstancesResponse, Operation, UpdateInstanceRequest,
    WatchInstancesRequest,
};
use serde_json::{Map, Value as Json};
use tonic::{Request, Response, Status};

pub struct Service {
    pub app: App,
    /// True once FM stops (streams end then).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// The most instances one page holds, and a page's size when not asked.
const PAGE_MAX: i32 = 1000;
const PAGE_DEFAULT: u64 = 100;

/// The typed fields one can set (by proto and REST name).
pub(crate) const TYPED: &[Typed] = &[
    ("label", "label"),
    ("description", "description"),
    (
        "instance_settings_template_id",
        "instanceSettingsTemplateId",
    ),
    ("virtual_network_id", "virtualNetworkId"),
    ("image_id", "imageId"),
    ("dss_node_type", "dssNodeType"),
    ("fm_tags", "fmTags"),
];
/// Typed output-only fields.
const OUTPUT_ONLY: &[&str] = &["id", "createdAt", "updatedAt"];

/// The message of an instance's stored public JSON.
fn to_proto(doc: &str) -> DomainResult<Instance> {
    let m: Model = serde_json::from_str(doc)
        .map_err(|e| Error::internal(format!("corrupt stored instance: {e}")))?;
    let mut json: Json = serde_json::from_str(doc).map_err(Error::internal)?;
    if let Some(o) = json.as_object_mut() {
        for k in OUTPUT_ONLY {
            o.remove(*k);
        }
    }
    let (_, settings) = fields::split(json, TYPED);
    Ok(Instance {
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
        settings: Some(settings),
        etag: etag_of(&[doc]),
    })
}

/// The document a message stands for (without its output-only fields).
fn to_doc(i: Instance) -> DomainResult<Map<String, Json>> {
    let mut f = Map::new();
    let s = |v: String| Json::String(v);
    f.insert("label".into(), s(i.label));
    f.insert("description".into(), s(i.description));
    f.insert(
        "instanceSettingsTemplateId".into(),
        s(i.instance_settings_template_id),
    );
    f.insert("virtualNetworkId".into(), s(i.virtual_network_id));
    f.insert("imageId".into(), s(i.image_id));
    if !i.dss_node_type.is_empty() {
        f.insert("dssNodeType".into(), s(i.dss_node_type));
    }
    f.insert("fmTags".into(), Json::from(i.fm_tags));
    fields::join(f, i.settings, TYPED)
}

/// The actions the service starts.
#[derive(Clone, Copy)]
enum Act {
    Reprovision,
    Start,
    Stop,
    Delete,
}

impl Act {
    fn method(self) -> &'static str {
        match self {
            Act::Reprovision => "Instances/ReprovisionInstance",
            Act::Start => "Instances/StartInstance",
            Act::Stop => "Instances/StopInstance",
            Act::Delete => "Instances/DeleteInstance",
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
        let mut r = req.into_inner();
        let t = tenant(&r.tenant).to_string();
        let t = t.as_str();
        let app = &self.app;
        let rid = std::mem::take(&mut r.request_id);
        let (ctx, earlier) = super::replayed(app, ctx, t, act.method(), &rid, &r).await?;
        if let Some(op) = earlier {
            return Ok(Response::new(op));
        }
        let started = async {
            match act {
                Act::Reprovision => app.instance_reprovision(&ctx, t, &r.id, false, None).await,
                Act::Start => app.instance_action(&ctx, t, &r.id, Action::Start).await,
                Act::Stop => app.instance_action(&ctx, t, &r.id, Action::Stop).await,
                Act::Delete => app.instance_delete(&ctx, t, &r.id).await,
            }
        };
        let f: StartedFuture = audited(app, &ctx, act.method(), (t, &r.id, from), started).await?;
        Ok(Response::new(super::operations::to_proto(f)))
    }
}

#[tonic::async_trait]
impl fm_proto::fleet::instances_server::Instances for Service {
    type WatchInstancesStream = super::watch::Stream<InstanceEvent>;

    async fn watch_instances(
        &self,
        req: Request<WatchInstancesRequest>,
    ) -> Result<Response<Self::WatchInstancesStream>, Status> {
        let r = req.into_inner();
        let t = tenant(&r.tenant).to_string();
        // An unknown tenant is refused now, not in the stream.
        self.app.events_after(&t, None).await.map_err(status)?;
        Ok(Response::new(super::watch::instances(
            self.app.clone(),
            t,
            r.instance_ids,
            r.after_event_id.max(0),
            self.stopping.clone(),
        )))
    }

    async fn get_instance(
        &self,
        req: Request<GetInstanceRequest>,
    ) -> Result<Response<Instance>, Status> {
        let r = req.into_inner();
        let v = self
            .app
            .instance_get_versioned(tenant(&r.tenant), &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(&v.value).map_err(status)?))
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
            .map(|d| to_proto(d))
            .collect::<DomainResult<Vec<_>>>()
            .map_err(status)?;
        Ok(Response::new(ListInstancesResponse {
            instances,
            next_page_token: docs.next.as_ref().map(encode_token).unwrap_or_default(),
        }))
    }

    async fn create_instance(
        &self,
        req: Request<CreateInstanceRequest>,
    ) -> Result<Response<Instance>, Status> {
        const METHOD: &str = "Instances/CreateInstance";
        let ctx = caller(&req)?;
        let from = source(&req);
        let mut r = req.into_inner();
        let request_id = std::mem::take(&mut r.request_id);
        let validate_only = std::mem::take(&mut r.validate_only);
        let change =
            fields::create_change(METHOD, &request_id, validate_only, &r).map_err(status)?;
        let t = tenant(&r.tenant).to_string();
        let i = r.instance.unwrap_or_default();
        let app = &self.app;
        let made = async {
            let input: Model = fields::to_model(to_doc(i)?)?;
            app.instance_create_with(&t, input, &change).await
        };
        let v = audited(app, &ctx, METHOD, (&t, "", from), made).await?;
        Ok(Response::new(to_proto(&v.value).map_err(status)?))
    }

    async fn update_instance(
        &self,
        req: Request<UpdateInstanceRequest>,
    ) -> Result<Response<Instance>, Status> {
        const METHOD: &str = "Instances/UpdateInstance";
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant).to_string();
        let i = r.instance.unwrap_or_default();
        let id = i.id.clone();
        let change = Change {
            validate_only: r.validate_only,
            request: None,
            etag: (!i.etag.is_empty()).then(|| i.etag.clone()),
        };
        let app = &self.app;
        let updated = async {
            let current = app.instance_get_versioned(&t, &id).await?;
            // The mask applies to what the caller read.
            change.check_etag(format!("instance '{id}'"), &current.etag)?;
            let read: Model = serde_json::from_str(&current.value)
                .map_err(|e| Error::internal(format!("corrupt stored instance: {e}")))?;
            let mask = r.update_mask.as_ref();
            let input: Model = fields::masked_update(&read, to_doc(i)?, mask, TYPED, OUTPUT_ONLY)?;
            app.instance_update_with(&t, &id, input, &change).await
        };
        let v = audited(app, &ctx, METHOD, (&t, &id, from), updated).await?;
        Ok(Response::new(to_proto(&v.value).map_err(status)?))
    }

    async fn delete_instance(
        &self,
        req: Request<InstanceActionRequest>,
    ) -> Result<Response<Operation>, Status> {
        self.act(req, Act::Delete).await
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
