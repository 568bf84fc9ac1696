//! Replaying an instance's setup actions (`REPLAY_SETUP_ACTIONS`) on its
//! running node, and the setup stages provisioning shares: the template's
//! actions split by stage in the plan, each stage one agent command.
//! Nothing to undo: the agent's actions are idempotent and a replay is the
//! way to fix a failed one.

use super::common::{SetupPlan, require_agent, run_command};
use super::{Saga, SagaParams, StepCtx, step};
use crate::crypto::Place;
use crate::error::{Error, Result};
use crate::model::setup_action::{SEALED_PREFIX, Stage};
use crate::model::template::InstanceTemplate;
use fm_proto::agent::command;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const KIND: &str = "REPLAY_SETUP_ACTIONS";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {}

impl SagaParams for Params {
    const KIND: &'static str = KIND;
}

pub fn saga() -> Saga {
    Saga::new(
        KIND,
        vec![
            step!("plan", plan_setup),
            step!("setup-before-install", setup_before_install),
            step!("setup-after-install", setup_after_install),
            step!("setup-after-startup", setup_after_startup),
        ],
    )
}

/// The setup actions a replay runs (the same field as a provisioning plan's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupOnly {
    pub setup: SetupPlan,
}

/// What one stage ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRan {
    pub actions: usize,
}

/// The template's enabled setup actions by stage, their secret parameters
/// opened from the template and sealed again for this operation's target
/// (the plan outlives later edits of the template, and a value of the plan
/// opens nowhere else).
pub fn setup_plan(c: &StepCtx, template_id: &str, tpl: &InstanceTemplate) -> Result<SetupPlan> {
    plan_by_stage(tpl, |key, sealed| {
        let plain = c
            .svc
            .secrets
            .open(&Place::template_param(template_id, key), sealed)?;
        c.svc
            .secrets
            .seal(&Place::operation(&c.target, key), &plain)
    })
}

/// The enabled actions by stage, each secret parameter's sealed value
/// replaced by `reseal(key, sealed)`.
fn plan_by_stage(
    tpl: &InstanceTemplate,
    reseal: impl Fn(&str, &str) -> Result<String>,
) -> Result<SetupPlan> {
    let mut p = SetupPlan::default();
    for a in tpl.setup_actions.iter().filter(|a| a.enabled) {
        let mut map = a.params.clone().unwrap_or_default();
        for key in a.secret_params() {
            if let Some(v) = map.get_mut(*key)
                && let Some(sealed) = v.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX))
            {
                *v = Value::String(format!("{SEALED_PREFIX}{}", reseal(key, sealed)?));
            }
        }
        let params = Value::Object(map);
        let entry = (a.action_type.as_str(), params.to_string());
        match a.action_type.stage(a.params.as_ref()) {
            Stage::BeforeInstall => p.before_install.push(entry),
            Stage::AfterInstall => p.after_install.push(entry),
            Stage::AfterDssStartup => p.after_dss_startup.push(entry),
        }
    }
    Ok(p)
}

async fn plan_setup(c: StepCtx) -> Result<SetupOnly> {
    require_agent(&c).await?;
    let (inst, tpl) = super::common::instance_and_template(&c).await?;
    Ok(SetupOnly {
        setup: setup_plan(&c, &inst.instance_settings_template_id, &tpl)?,
    })
}

/// The setup actions the `plan` step chose (a provisioning's plan and a
/// replay's both keep them under `setup`).
fn setup_from(c: &StepCtx) -> Result<SetupPlan> {
    Ok(c.output::<SetupOnly>("plan")?.setup)
}

pub async fn setup_before_install(c: StepCtx) -> Result<StageRan> {
    let s = setup_from(&c)?;
    setup_stage(&c, Stage::BeforeInstall, &s.before_install).await
}

pub async fn setup_after_install(c: StepCtx) -> Result<StageRan> {
    let s = setup_from(&c)?;
    setup_stage(&c, Stage::AfterInstall, &s.after_install).await
}

pub async fn setup_after_startup(c: StepCtx) -> Result<StageRan> {
    let s = setup_from(&c)?;
    setup_stage(&c, Stage::AfterDssStartup, &s.after_dss_startup).await
}

/// The parameters as the agent needs them: sealed secrets opened, only in
/// the command itself (never in stored outputs or logs). Each opens only
/// under its own field for this target: a sealed value moved into another
/// field (one the agent would print) fails the step.
fn unseal_params(c: &StepCtx, params_json: &str) -> Result<String> {
    let mut v: Value = serde_json::from_str(params_json).map_err(Error::internal)?;
    if let Some(map) = v.as_object_mut() {
        for (key, val) in map.iter_mut() {
            if let Some(sealed) = val.as_str().and_then(|s| s.strip_prefix(SEALED_PREFIX)) {
                let plain = c
                    .svc
                    .secrets
                    .open(&Place::operation(&c.target, key), sealed)?;
                *val = serde_json::from_str(&plain).map_err(Error::internal)?;
            }
        }
    }
    Ok(v.to_string())
}

async fn setup_stage(c: &StepCtx, stage: Stage, actions: &[(String, String)]) -> Result<StageRan> {
    if actions.is_empty() {
        return Ok(StageRan { actions: 0 });
    }
    let stage = stage.as_str();
    run_command(
        c,
        &format!("setup-{stage}"),
        command::Kind::RunSetupActions(fm_proto::agent::RunSetupActions {
            stage: stage.to_string(),
            actions: actions
                .iter()
                .map(|(t, p)| {
                    Ok(fm_proto::agent::SetupAction {
                        r#type: t.clone(),
                        params_json: unseal_params(c, p)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        }),
    )
    .await?;
    Ok(StageRan {
        actions: actions.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(actions: Value) -> InstanceTemplate {
        serde_json::from_value(json!({"label": "t", "setupActions": actions})).expect("template")
    }

    #[test]
    fn enabled_actions_are_planned_by_stage_in_template_order() {
        let tpl = template(json!([
            {"type": "ADD_ENV_VARIABLES", "params": {"variables": []}},
            {"type": "ADD_SSH_KEY", "params": {"sshKey": "k"}},
            {"type": "RUN_ANSIBLE_TASKS", "params": {"stage": "after_dss_startup", "ansibleTasks": "- x"}},
            {"type": "SETUP_K8S_AND_SPARK", "params": {}, "enabled": false},
            {"type": "RUN_ANSIBLE_TASKS", "params": {"ansibleTasks": "- y"}},
            {"type": "INSTALL_SYSTEM_PACKAGES", "params": {"packages": ["jq"]}},
        ]));
        let p = plan_by_stage(&tpl, |_, v| Ok(v.to_string())).unwrap();
        let types = |v: &[(String, String)]| v.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
        assert_eq!(
            types(&p.before_install),
            ["ADD_SSH_KEY", "INSTALL_SYSTEM_PACKAGES"]
        );
        assert_eq!(
            types(&p.after_install),
            ["ADD_ENV_VARIABLES", "RUN_ANSIBLE_TASKS"]
        );
        assert_eq!(types(&p.after_dss_startup), ["RUN_ANSIBLE_TASKS"]);
        let params: Value = serde_json::from_str(&p.after_dss_startup[0].1).unwrap();
        assert_eq!(params["ansibleTasks"], "- x");
    }
}
