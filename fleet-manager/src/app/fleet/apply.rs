//! Applying a plan: only while its fingerprint holds (the fleet and the
//! file are as they were when it was read), each update guarded by the
//! etag the plan read, in order: networks, templates, instances; then one
//! rollout reprovisioning the instances that need it, then deletions.
//! Each change is its own write: a failure stops the apply, names what was
//! done, and the next plan shows what is left.

use super::super::App;
use super::super::changes::Change;
use super::plan::{Ref, Step};
use crate::error::{Error, Result};
use crate::model::fleet::{Applied, ApplyRequest};
use crate::opctx::OpCtx;
use std::collections::HashMap;

impl App {
    /// Applies the plan of `req.fleet` if its fingerprint is still
    /// `req.fingerprint`; a stale plan is refused before anything changes.
    pub async fn fleet_apply(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        req: ApplyRequest,
    ) -> Result<Applied> {
        let f = &req.fingerprint;
        if f.len() != 64 || !f.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::invalid(
                "fingerprint: the 64 lowercase hex digits of a plan's fingerprint",
            ));
        }
        let planned = self.fleet_planned(tenant, &req.fleet).await?;
        if planned.plan.fingerprint != req.fingerprint {
            return Err(Error::Stale(format!(
                "the plan is stale: the fleet or the file changed since it was made (fingerprint {} now, {} in the plan); make a new plan",
                planned.plan.fingerprint, req.fingerprint
            )));
        }
        let mut plan = planned.plan;
        let mut networks: HashMap<String, String> = HashMap::new();
        let mut templates: HashMap<String, String> = HashMap::new();
        let mut reprovision = Vec::new();
        let mut job_ids = Vec::new();
        let mut done = 0usize;
        for step in planned.steps {
            let r = self
                .apply_step(
                    ctx,
                    tenant,
                    step,
                    &mut plan.changes,
                    &mut networks,
                    &mut templates,
                    &mut reprovision,
                    &mut job_ids,
                )
                .await;
            if let Err(e) = r {
                return Err(stopped(e, done));
            }
            done += 1;
        }
        let rollout_id = if reprovision.is_empty() {
            None
        } else {
            let label = format!("apply {}", &plan.fingerprint[..12]);
            let spec = req.fleet.rollout.spec(&label, reprovision)?;
            Some(
                self.rollout_create(ctx, tenant, spec)
                    .await
                    .map_err(|e| stopped(e, done))?
                    .id,
            )
        };
        Ok(Applied {
            plan,
            rollout_id,
            job_ids,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_step(
        &self,
        ctx: &OpCtx,
        tenant: &str,
        step: Step,
        changes: &mut [crate::model::fleet::PlannedChange],
        networks: &mut HashMap<String, String>,
        templates: &mut HashMap<String, String>,
        reprovision: &mut Vec<String>,
        job_ids: &mut Vec<String>,
    ) -> Result<()> {
        let guarded = |etag: String| Change {
            etag: Some(etag),
            ..Change::default()
        };
        match step {
            Step::CreateNetwork {
                change,
                input,
                use_defaults,
            } => {
                let made = self
                    .network_create_with(tenant, input, use_defaults, &Change::default())
                    .await?;
                let id = made.value.id.unwrap_or_default();
                networks.insert(changes[change].label.clone(), id.clone());
                changes[change].id = Some(id);
            }
            Step::UpdateNetwork { id, input, etag } => {
                self.network_update_with(tenant, &id, input, &guarded(etag))
                    .await?;
            }
            Step::CreateTemplate { change, input } => {
                let made = self
                    .template_create_with(tenant, input, &Change::default())
                    .await?;
                let id = made.value.id.unwrap_or_default();
                templates.insert(changes[change].label.clone(), id.clone());
                changes[change].id = Some(id);
            }
            Step::UpdateTemplate { id, input, etag } => {
                self.template_update_with(tenant, &id, input, &guarded(etag))
                    .await?;
            }
            Step::CreateInstance {
                change,
                mut input,
                template,
                network,
            } => {
                input.instance_settings_template_id = made_id(&template, templates)?;
                input.virtual_network_id = made_id(&network, networks)?;
                let made = self
                    .instance_create_with(tenant, input, &Change::default())
                    .await?;
                let doc: serde_json::Value =
                    serde_json::from_str(&made.value).map_err(Error::internal)?;
                changes[change].id = doc["id"].as_str().map(str::to_string);
            }
            Step::UpdateInstance {
                id,
                mut input,
                template,
                etag,
                reprovision: again,
            } => {
                input.instance_settings_template_id = made_id(&template, templates)?;
                self.instance_update_with(tenant, &id, input, &guarded(etag))
                    .await?;
                if again {
                    reprovision.push(id);
                }
            }
            Step::DeleteInstance { id } => {
                job_ids.push(self.instance_delete(ctx, tenant, &id).await?.job_id);
            }
            Step::DeleteTemplate { id } => {
                job_ids.push(self.template_delete(ctx, tenant, &id).await?.job_id);
            }
            Step::DeleteNetwork { id } => {
                job_ids.push(self.network_delete(ctx, tenant, &id).await?.job_id);
            }
        }
        Ok(())
    }
}

/// The id of a template or network, made by an earlier step or not.
fn made_id(r: &Ref, made: &HashMap<String, String>) -> Result<String> {
    match r {
        Ref::Existing(id) => Ok(id.clone()),
        Ref::Made(label) => made
            .get(label)
            .cloned()
            .ok_or_else(|| Error::internal(format!("'{label}' was to be made by an earlier step"))),
    }
}

/// An apply stopped by `e` after `done` changes.
fn stopped(e: Error, done: usize) -> Error {
    let said = |m: String| {
        format!("{m} (the apply stopped after {done} change(s); plan again to see what is left)")
    };
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(said(m)),
        Error::Conflict(m) => Error::Conflict(said(m)),
        Error::Stale(m) => Error::Stale(said(m)),
        other => other,
    }
}
