//! `fm.fleet.v1.CloudAccounts` and `fm.fleet.v1.Images`: each method one
//! `App` call.

use super::fields::{self, Typed};
use super::{audited, caller, page_of, source, status, tenant};
use crate::api::page::encode_token;
use crate::app::{App, Change, Versioned};
use crate::model::account::CloudAccount as Model;
use fm_proto::fleet::{
    CloudAccount, CreateCloudAccountRequest, DeleteCloudAccountRequest, GetCloudAccountRequest,
    Image, ListCloudAccountsRequest, ListCloudAccountsResponse, ListImagesRequest,
    ListImagesResponse, Operation, UpdateCloudAccountRequest,
};
use serde_json::{Map, Value as Json};
use tonic::{Request, Response, Status};

pub struct Service {
    pub app: App,
}

const PAGE_MAX: i32 = 1000;
const PAGE_DEFAULT: u64 = 100;

/// The typed fields one can set (by proto and REST name).
pub(crate) const TYPED: &[Typed] = &[("label", "label"), ("description", "description")];
const OUTPUT_ONLY: &[&str] = &["id", "nbNetworks", "hasAwsSecretAccessKey"];

fn to_proto(v: Versioned<Model>) -> Result<CloudAccount, Status> {
    let mut doc = fields::to_doc(&v.value).map_err(status)?;
    if let Some(m) = doc.as_object_mut() {
        for k in OUTPUT_ONLY {
            m.remove(*k);
        }
    }
    let (_, settings) = fields::split(doc, TYPED);
    let a = v.value;
    Ok(CloudAccount {
        id: a.id.unwrap_or_default(),
        label: a.label,
        description: a.description,
        settings: Some(settings),
        has_aws_secret_access_key: a.has_aws_secret_access_key,
        nb_networks: a.nb_networks as i64,
        etag: v.etag,
    })
}

/// The document a message stands for (without its output-only fields).
fn to_doc(a: CloudAccount) -> crate::error::Result<Map<String, Json>> {
    let mut f = Map::new();
    f.insert("label".into(), Json::String(a.label));
    f.insert("description".into(), Json::String(a.description));
    fields::join(f, a.settings, TYPED)
}

#[tonic::async_trait]
impl fm_proto::fleet::cloud_accounts_server::CloudAccounts for Service {
    async fn get_cloud_account(
        &self,
        req: Request<GetCloudAccountRequest>,
    ) -> Result<Response<CloudAccount>, Status> {
        let r = req.into_inner();
        let v = self
            .app
            .account_get_versioned(tenant(&r.tenant), &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(v)?))
    }

    async fn list_cloud_accounts(
        &self,
        req: Request<ListCloudAccountsRequest>,
    ) -> Result<Response<ListCloudAccountsResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let got = self
            .app
            .account_list_versioned(tenant(&r.tenant), &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListCloudAccountsResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            cloud_accounts: got
                .items
                .into_iter()
                .map(to_proto)
                .collect::<Result<_, _>>()?,
        }))
    }

    async fn create_cloud_account(
        &self,
        req: Request<CreateCloudAccountRequest>,
    ) -> Result<Response<CloudAccount>, Status> {
        const METHOD: &str = "CloudAccounts/CreateCloudAccount";
        let ctx = caller(&req)?;
        let from = source(&req);
        let mut r = req.into_inner();
        let request_id = std::mem::take(&mut r.request_id);
        let validate_only = std::mem::take(&mut r.validate_only);
        let change =
            fields::create_change(METHOD, &request_id, validate_only, &r).map_err(status)?;
        let t = tenant(&r.tenant).to_string();
        let a = r.cloud_account.unwrap_or_default();
        let app = &self.app;
        let made = async {
            let input: Model = fields::to_model(to_doc(a)?)?;
            app.account_create_with(&t, input, &change).await
        };
        let v = audited(app, &ctx, METHOD, (&t, "", from), made).await?;
        Ok(Response::new(to_proto(v)?))
    }

    async fn update_cloud_account(
        &self,
        req: Request<UpdateCloudAccountRequest>,
    ) -> Result<Response<CloudAccount>, Status> {
        const METHOD: &str = "CloudAccounts/UpdateCloudAccount";
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant).to_string();
        let a = r.cloud_account.unwrap_or_default();
        let id = a.id.clone();
        let change = Change {
            validate_only: r.validate_only,
            request: None,
            etag: (!a.etag.is_empty()).then(|| a.etag.clone()),
        };
        let app = &self.app;
        let updated = async {
            let current = app.account_get_versioned(&t, &id).await?;
            // The mask applies to what the caller read.
            change.check_etag(format!("cloud account '{id}'"), &current.etag)?;
            let mask = r.update_mask.as_ref();
            let input: Model =
                fields::masked_update(&current.value, to_doc(a)?, mask, TYPED, OUTPUT_ONLY)?;
            app.account_update_with(&t, &id, input, &change).await
        };
        let v = audited(app, &ctx, METHOD, (&t, &id, from), updated).await?;
        Ok(Response::new(to_proto(v)?))
    }

    async fn delete_cloud_account(
        &self,
        req: Request<DeleteCloudAccountRequest>,
    ) -> Result<Response<Operation>, Status> {
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let app = &self.app;
        let started = app.account_delete(&ctx, t, &r.id);
        let f = audited(
            app,
            &ctx,
            "CloudAccounts/DeleteCloudAccount",
            (t, &r.id, from),
            started,
        )
        .await?;
        Ok(Response::new(super::operations::to_proto(f)))
    }
}

pub struct ImagesService {
    pub app: App,
}

#[tonic::async_trait]
impl fm_proto::fleet::images_server::Images for ImagesService {
    async fn list_images(
        &self,
        req: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let got = self
            .app
            .image_list(tenant(&r.tenant), &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListImagesResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            images: got
                .items
                .into_iter()
                .map(|i| Image {
                    id: i.id,
                    label: i.label,
                    node_version: i.node_version,
                })
                .collect(),
        }))
    }
}
