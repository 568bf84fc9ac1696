//! `fm.fleet.v1.Rollouts`: each method one `App` call. A request's spec is
//! read through the REST API's JSON model, so both surfaces take the same
//! fields with the same checks and messages.

use super::{audited, caller, page_of, source, status, tenant};
use crate::api::page::encode_token;
use crate::app::App;
use crate::error::Error;
use crate::model::rollout::{self as m, Limit, RolloutAction as Act};
use fm_proto::fleet::{
    CreateRolloutRequest, GetRolloutRequest, ListRolloutsRequest, ListRolloutsResponse, Rollout,
    RolloutAction, RolloutActionRequest, RolloutCounts, RolloutSelector, RolloutSpec,
    RolloutTarget,
};
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};

pub struct Service {
    pub app: App,
}

/// The most rollouts one page holds, and a page's size when not asked.
const PAGE_MAX: i32 = 500;
const PAGE_DEFAULT: u64 = 50;

/// The request's spec as the REST API's JSON document: fields left empty
/// are left out (the defaults apply), the rest goes through the model.
fn spec_of(s: Option<RolloutSpec>) -> Result<m::RolloutSpec, Status> {
    let s = s.ok_or_else(|| status(Error::invalid("spec is required")))?;
    let mut doc = Map::new();
    doc.insert("label".into(), json!(s.label));
    let sel = s.selector.unwrap_or_default();
    let mut selector = Map::new();
    if !sel.instance_ids.is_empty() {
        selector.insert("instanceIds".into(), json!(sel.instance_ids));
    }
    if !sel.fm_tags.is_empty() {
        selector.insert("fmTags".into(), json!(sel.fm_tags));
    }
    for (k, v) in [
        (
            "instanceSettingsTemplateId",
            sel.instance_settings_template_id,
        ),
        ("virtualNetworkId", sel.virtual_network_id),
        ("imageId", sel.image_id),
        ("dssNodeType", sel.dss_node_type),
    ] {
        if !v.is_empty() {
            selector.insert(k.into(), json!(v));
        }
    }
    if sel.all {
        selector.insert("all".into(), json!(true));
    }
    doc.insert("selector".into(), Value::Object(selector));
    let a = s
        .action
        .ok_or_else(|| status(Error::invalid("spec.action is required")))?;
    let mut action = Map::new();
    action.insert("type".into(), json!(a.r#type));
    if !a.image_id.is_empty() {
        action.insert("imageId".into(), json!(a.image_id));
    }
    if a.allow_downgrade {
        action.insert("allowDowngrade".into(), json!(true));
    }
    doc.insert("action".into(), Value::Object(action));
    doc.insert("canaries".into(), json!(s.canaries));
    for (k, v) in [
        ("maxInFlight", s.max_in_flight),
        ("maxErrors", s.max_errors),
    ] {
        if !v.is_empty() {
            doc.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [
        ("healthSeconds", s.health_seconds),
        ("healthTimeoutSeconds", s.health_timeout_seconds),
        ("meltdownPercent", s.meltdown_percent),
    ] {
        if let Some(v) = v {
            doc.insert(k.into(), json!(v));
        }
    }
    serde_json::from_value(Value::Object(doc))
        .map_err(|e| status(Error::invalid(format!("spec: {e}"))))
}

fn limit(l: Limit) -> String {
    match l {
        Limit::Count(n) => n.to_string(),
        Limit::Percent(p) => format!("{p}%"),
    }
}

fn action_to_proto(a: &Act) -> RolloutAction {
    let (image_id, allow_downgrade) = match a {
        Act::Reprovision { allow_downgrade } => (String::new(), *allow_downgrade),
        Act::Upgrade {
            image_id,
            allow_downgrade,
        } => (image_id.clone(), *allow_downgrade),
        _ => (String::new(), false),
    };
    RolloutAction {
        r#type: a.name().to_string(),
        image_id,
        allow_downgrade,
    }
}

pub(crate) fn spec_to_proto(s: m::RolloutSpec) -> RolloutSpec {
    let sel = s.selector;
    RolloutSpec {
        label: s.label,
        selector: Some(RolloutSelector {
            instance_ids: sel.instance_ids,
            fm_tags: sel.fm_tags,
            instance_settings_template_id: sel.instance_settings_template_id.unwrap_or_default(),
            virtual_network_id: sel.virtual_network_id.unwrap_or_default(),
            image_id: sel.image_id.unwrap_or_default(),
            dss_node_type: sel
                .dss_node_type
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            all: sel.all,
        }),
        action: Some(action_to_proto(&s.action)),
        canaries: s.canaries,
        max_in_flight: limit(s.max_in_flight),
        max_errors: limit(s.max_errors),
        health_seconds: Some(s.health_seconds),
        health_timeout_seconds: Some(s.health_timeout_seconds),
        meltdown_percent: Some(s.meltdown_percent),
    }
}

fn to_proto(r: m::Rollout) -> Rollout {
    let c = r.counts;
    Rollout {
        id: r.id,
        label: r.label,
        state: r.state.as_str().to_string(),
        reason: r.reason.unwrap_or_default(),
        spec: Some(spec_to_proto(r.spec)),
        counts: Some(RolloutCounts {
            targets: c.targets as i32,
            pending: c.pending as i32,
            running: c.running as i32,
            done: c.done as i32,
            failed: c.failed as i32,
            skipped: c.skipped as i32,
        }),
        targets: r
            .targets
            .unwrap_or_default()
            .into_iter()
            .map(|t| RolloutTarget {
                instance_id: t.instance_id,
                canary: t.canary,
                state: t.state.as_str().to_string(),
                operation_id: t.operation_id.unwrap_or_default(),
                error: t.error.unwrap_or_default(),
                started_at_ms: t.started_at.unwrap_or_default(),
                finished_at_ms: t.finished_at.unwrap_or_default(),
            })
            .collect(),
        initiated_by: r.initiated_by.unwrap_or_default(),
        created_at_ms: r.created_at,
        updated_at_ms: r.updated_at,
        finished_at_ms: r.finished_at.unwrap_or_default(),
    }
}

/// The moves a user makes on a rollout.
#[derive(Clone, Copy)]
enum Move {
    Pause,
    Resume,
    Cancel,
}

impl Service {
    async fn moved(
        &self,
        req: Request<RolloutActionRequest>,
        mv: Move,
    ) -> Result<Response<Rollout>, Status> {
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let app = &self.app;
        let method = match mv {
            Move::Pause => "Rollouts/PauseRollout",
            Move::Resume => "Rollouts/ResumeRollout",
            Move::Cancel => "Rollouts/CancelRollout",
        };
        let change = async {
            match mv {
                Move::Pause => app.rollout_pause(&ctx, t, &r.id).await,
                Move::Resume => app.rollout_resume(&ctx, t, &r.id).await,
                Move::Cancel => app.rollout_cancel(&ctx, t, &r.id).await,
            }
        };
        let ro = audited(app, &ctx, method, (t, &r.id, from), change).await?;
        Ok(Response::new(to_proto(ro)))
    }
}

#[tonic::async_trait]
impl fm_proto::fleet::rollouts_server::Rollouts for Service {
    async fn create_rollout(
        &self,
        req: Request<CreateRolloutRequest>,
    ) -> Result<Response<Rollout>, Status> {
        let ctx = caller(&req)?;
        let from = source(&req);
        let r = req.into_inner();
        let t = tenant(&r.tenant);
        let app = &self.app;
        let change = async {
            let spec = spec_of(r.spec).map_err(|s| Error::invalid(s.message().to_string()))?;
            app.rollout_create(&ctx, t, spec).await
        };
        let ro = audited(app, &ctx, "Rollouts/CreateRollout", (t, "", from), change).await?;
        Ok(Response::new(to_proto(ro)))
    }

    async fn get_rollout(
        &self,
        req: Request<GetRolloutRequest>,
    ) -> Result<Response<Rollout>, Status> {
        let r = req.into_inner();
        let ro = self
            .app
            .rollout_get(tenant(&r.tenant), &r.id)
            .await
            .map_err(status)?;
        Ok(Response::new(to_proto(ro)))
    }

    async fn list_rollouts(
        &self,
        req: Request<ListRolloutsRequest>,
    ) -> Result<Response<ListRolloutsResponse>, Status> {
        let r = req.into_inner();
        let page = page_of(r.page_size, &r.page_token, PAGE_MAX, PAGE_DEFAULT)?;
        let got = self
            .app
            .rollout_list(tenant(&r.tenant), &page)
            .await
            .map_err(status)?;
        Ok(Response::new(ListRolloutsResponse {
            next_page_token: got.next.as_ref().map(encode_token).unwrap_or_default(),
            rollouts: got.items.into_iter().map(to_proto).collect(),
        }))
    }

    async fn pause_rollout(
        &self,
        req: Request<RolloutActionRequest>,
    ) -> Result<Response<Rollout>, Status> {
        self.moved(req, Move::Pause).await
    }

    async fn resume_rollout(
        &self,
        req: Request<RolloutActionRequest>,
    ) -> Result<Response<Rollout>, Status> {
        self.moved(req, Move::Resume).await
    }

    async fn cancel_rollout(
        &self,
        req: Request<RolloutActionRequest>,
    ) -> Result<Response<Rollout>, Status> {
        self.moved(req, Move::Cancel).await
    }
}
