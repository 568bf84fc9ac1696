//! `fm.fleet.v1.InstanceTemplates`: each method one `App` call.

use super::fields::{self, Typed};
use super::{audited, caller, page_of, source, status, tenant};
use crate::api::page::encode_token;
use crate::app::{App, Change, Versioned};
use crate::model::template::InstanceTemplate as Model;
use fm_proto::fleet::{
    CreateInstanceTemplateRequest, DeleteInstanceTemplateRequest, GetInstanceTemplateRequest,
    InstanceTemplate, ListInstanceTemplatesRequest, ListInstanceTemplatesResponse, Operation,
    UpdateInstanceTemplateRequest,
};
use serde_json::{Map, Value as Json};
use tonic::{Request, Response, Status};

pub struct Service {
    pub app: App,
}

const PAGE_MAX: i32 = 1000;
const PAGE_DEFAULT: u64 = 100;

/// The typed fields besides the output-only ones.
pub(crate) const TYPED: &[Typed] = &[("label", "label")];
/// Shown as typed fields.
const SHOWN_TYPED: &[&str] = &["id", "nbInstances"];
const OUTPUT_ONLY: &[&str] = &["id", "nbInstances", "hasDataikuAwsSecretAccessKey"];

fn to_proto(v: Versioned<Model>) -> Result<InstanceTemplate, Status> {
    let mut doc = fields::to_doc(&v.value).map_err(status)?;
    if let Some(m) = doc.as_object_mut() {
        for k in SHOWN_TYPED {
            m.remove(*k);
        }
    }
    let (f, settings) = fields::split(doc, TYPED);
    let s = |k: &str| {
        f.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(InstanceTemplate {
        id: v.value.id.clone().unwrap_or_default(),
        label: s("label"),
        settings: Some(settings),
        nb_instances: v.value.nb_instances as i64,
        etag: v.etag,
    })
}

/// The document a message stands for (without its output-only fields).
fn to_doc(n: InstanceTemplate) -> crate::error::Result<Map<String, Json>> {
    let mut f = Map::new();
    f.insert("label".into(), Json::String(n.label));
    fields::join(f, n.settings, TYPED)
}

#[tonic::async_trait]
impl fm_proto::fleet::instance_templates_server::InstanceTemplates for Service {
    async fn get_instance_template(
        &self,
        req: Request<GetInstanceTemplateRequest>,
    ) -> Result<Response<InstanceTemplate>, Status> {
        let r = req.into_inner();
        let v = self
            .app
            .template_get_versioned(tenant(&r.tenant), &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(v)?))
    }

    async fn list_instance_templates(
        &self,
        req: Request<ListInstanceTemplatesRequest>,
    ) -> Result<Response<ListInstanceTemplatesResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let got = self
            .app
            .template_list_versioned(tenant(&r.tenant), &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListInstanceTemplatesResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            instance_templates: got
                .items
                .into_iter()
                .map(to_proto)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn create_instance_template(
        &self,
        req: Request<CreateInstanceTemplateRequest>,
    ) -> Result<Response<InstanceTemplate>, Status> {
        const METHOD: &str = "InstanceTemplates/CreateInstanceTemplate";
        let ctx = caller(&req)?;
        let from = source(&req);
        let mut r = req.into_inner();
        let request_id = std::mem::take(&mut r.request_id);
        let validate_only = std::mem::take(&mut r.validate_only);
        let change =
            fields::create_change(METHOD, &request_id, validate_only, &r).map_err(status)?;
        let t = tenant(&r.tenant).to_string();
        let n = r.instance_template.unwrap_or_default();
        let app = &self.app;
        let made = async {
            let input: Model = fields::to_model(to_doc(n)?)?;
            app.template_create_with(&t, input, &change).await
        };
        let v = audited(app, &ctx, METHOD, (&t, "", from), made).await?;
        Ok(Response::new(to_proto(v)?))
    }

    async fn update_instance_template(
        &self,
        req: Request<UpdateInstanceTemplateRequest>,
    ) -> Result<Response<InstanceTemplate>, Status> {
        const METHOD: &str = "InstanceTemplates/UpdateInstanceTemplate";
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant).to_string();
        let n = r.instance_template.unwrap_or_default();
        let id = n.id.clone();
        let change = Change {
            validate_only: r.validate_only,
            request: None,
            etag: (!n.etag.is_empty()).then(|| n.etag.clone()),
        };
        let app = &self.app;
        let updated = async {
            let current = app.template_get_versioned(&t, &id).await?;
            // The mask applies to what the caller read: a stale etag is
            // refused before anything is merged.
            change.check_etag(format!("instance template '{id}'"), &current.etag)?;
            let mask = r.update_mask.as_ref();
            let input: Model =
                fields::masked_update(&current.value, to_doc(n)?, mask, TYPED, OUTPUT_ONLY)?;
            app.template_update_with(&t, &id, input, &change).await
        };
        let v = audited(app, &ctx, METHOD, (&t, &id, from), updated).await?;
        Ok(Response::new(to_proto(v)?))
    }

    async fn delete_instance_template(
        &self,
        req: Request<DeleteInstanceTemplateRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let app = &self.app;
        let started = app.template_delete(&ctx, t, &r.id);
        let f = audited(
            app,
            &ctx,
            "InstanceTemplates/DeleteInstanceTemplate",
            (t, &r.id, from),
            started,
        )
        .await?;
        Ok(Response::new(super::operations::to_proto(f)))
    }
}
