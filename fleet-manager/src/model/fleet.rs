//! Plan and apply (an extension beside the public API): a fleet file
//! declares the networks, templates and instances a tenant should have, by
//! label; a plan is the difference between that and the fleet as it is,
//! with a fingerprint of both, so that `apply` runs only the plan that was
//! read (Terraform's plan symbols, Nomad's `job plan` + `-check-index`).

use super::rollout::{
    Limit, RolloutAction, RolloutSpec, Selector, health_seconds, health_timeout_seconds,
    meltdown_percent, one, zero,
};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The most objects of each kind one fleet file declares.
pub const MAX_DECLARED: usize = 10_000;

/// A fleet file, as JSON (the CLI reads it from YAML and resolves its
/// secret references before sending it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    /// Virtual networks, each a document of the public API (no `id`);
    /// `useDefaultValues: true` fills region, VPC and subnet as
    /// `?useDefaultValues=true` does.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, max_items = 10000)]
    pub networks: Vec<Map<String, Value>>,
    /// Instance templates, each a document of the public API (no `id`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>, max_items = 10000)]
    pub templates: Vec<Map<String, Value>>,
    /// Instances, each a document of the public API with `template` and
    /// `network` (labels of this file or of the fleet) instead of
    /// `instanceSettingsTemplateId` and `virtualNetworkId`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, max_items = 10000)]
    pub instances: Vec<Map<String, Value>>,
    /// Delete what the file does not declare: instances, and templates and
    /// networks no remaining instance uses.
    #[serde(default)]
    pub prune: bool,
    /// How instances that need a new VM are reprovisioned.
    #[serde(default, deserialize_with = "object")]
    pub rollout: FleetRollout,
}

/// Reads a struct from a JSON object only (serde would take an array of
/// its fields too).
fn object<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Value::deserialize(d)? {
        v @ Value::Object(_) => serde_json::from_value(v).map_err(serde::de::Error::custom),
        _ => Err(serde::de::Error::custom("expected an object")),
    }
}

/// The rollout settings of a fleet file: those of a rollout, without its
/// selector and action, with the same defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetRollout {
    #[serde(default)]
    #[schema(schema_with = super::schema::u32)]
    pub canaries: u32,
    #[serde(default = "one")]
    #[schema(schema_with = super::schema::limit_from_1)]
    pub max_in_flight: Limit,
    #[serde(default = "zero")]
    #[schema(schema_with = super::schema::limit_from_0)]
    pub max_errors: Limit,
    #[serde(default = "health_seconds")]
    #[schema(schema_with = super::schema::health_seconds)]
    pub health_seconds: u32,
    #[serde(default = "health_timeout_seconds")]
    #[schema(schema_with = super::schema::health_timeout_seconds)]
    pub health_timeout_seconds: u32,
    #[serde(default = "meltdown_percent")]
    #[schema(schema_with = super::schema::percent)]
    pub meltdown_percent: u32,
    /// Reprovision onto an older image when the file asks for one.
    #[serde(default)]
    pub allow_downgrade: bool,
}

impl Default for FleetRollout {
    fn default() -> Self {
        FleetRollout {
            canaries: 0,
            max_in_flight: one(),
            max_errors: zero(),
            health_seconds: health_seconds(),
            health_timeout_seconds: health_timeout_seconds(),
            meltdown_percent: meltdown_percent(),
            allow_downgrade: false,
        }
    }
}

impl FleetRollout {
    /// The rollout that reprovisions `ids` with these settings.
    pub fn spec(&self, label: &str, ids: Vec<String>) -> Result<RolloutSpec> {
        let spec = RolloutSpec {
            label: label.to_string(),
            selector: Selector {
                instance_ids: ids,
                ..Selector::default()
            },
            action: RolloutAction::Reprovision {
                allow_downgrade: self.allow_downgrade,
            },
            canaries: self.canaries,
            max_in_flight: self.max_in_flight,
            max_errors: self.max_errors,
            health_seconds: self.health_seconds,
            health_timeout_seconds: self.health_timeout_seconds,
            meltdown_percent: self.meltdown_percent,
        };
        spec.validate()
            .map_err(|e| Error::invalid(format!("rollout: {}", e.message())))?;
        Ok(spec)
    }
}

/// The kinds of object a fleet file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    Network,
    Template,
    Instance,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Network => "virtual network",
            ObjectKind::Template => "instance template",
            ObjectKind::Instance => "instance",
        }
    }
}

/// What a plan does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlanAction {
    /// `+`: made.
    Create,
    /// `~`: changed in place.
    Update,
    /// `-/+`: changed, then reprovisioned (a new VM, the data disk kept)
    /// because a changed field reaches the VM only so.
    Reprovision,
    /// `-`: deleted.
    Delete,
}

impl PlanAction {
    /// The plan's symbol for it.
    pub fn symbol(self) -> &'static str {
        match self {
            PlanAction::Create => "+",
            PlanAction::Update => "~",
            PlanAction::Reprovision => "-/+",
            PlanAction::Delete => "-",
        }
    }
}

/// One field that changes. A sensitive field's values are never shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// The field's path in the object's document (`setupActions[0].params`).
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// One object the plan changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub kind: ObjectKind,
    pub label: String,
    /// The object's id; none for one to be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub action: PlanAction,
    /// The fields that change (none listed for a delete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Why a reprovision is needed: the changed fields that reach the VM
    /// only when it is reprovisioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reprovision_because: Vec<String>,
}

/// How many objects the plan changes, by action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub create: u32,
    pub update: u32,
    pub reprovision: u32,
    pub delete: u32,
    /// Declared objects that are already as declared.
    pub unchanged: u32,
}

impl PlanSummary {
    pub fn changes(&self) -> u32 {
        self.create + self.update + self.reprovision + self.delete
    }

    /// The plan's last line.
    pub fn line(&self) -> String {
        if self.changes() == 0 {
            return format!(
                "No changes: the fleet is as the file declares ({} objects).",
                self.unchanged
            );
        }
        format!(
            "Plan: {} to create, {} to change in place, {} to reprovision, {} to delete ({} unchanged).",
            self.create, self.update, self.reprovision, self.delete, self.unchanged
        )
    }
}

/// The difference between a fleet file and the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// A digest of the file and of every object the plan read: `apply`
    /// runs only while it still holds.
    pub fingerprint: String,
    /// Networks first, then templates, then instances, in the file's order;
    /// deletions last.
    pub changes: Vec<PlannedChange>,
    pub summary: PlanSummary,
    /// What the plan leaves for later, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Plan {
    /// The plan as a person reads it: one block per object, a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let id =
                c.id.as_deref()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default();
            out.push_str(&format!(
                "{} {} \"{}\"{id}\n",
                c.action.symbol(),
                c.kind.name(),
                c.label
            ));
            for f in &c.fields {
                if f.sensitive {
                    out.push_str(&format!("      {}: (sensitive value)\n", f.field));
                    continue;
                }
                let show = |v: &Option<Value>| match v {
                    None => "(none)".to_string(),
                    Some(v) => short(v),
                };
                match c.action {
                    PlanAction::Create => {
                        out.push_str(&format!("      {}: {}\n", f.field, show(&f.after)))
                    }
                    _ => out.push_str(&format!(
                        "      {}: {} -> {}\n",
                        f.field,
                        show(&f.before),
                        show(&f.after)
                    )),
                }
            }
            if !c.reprovision_because.is_empty() {
                out.push_str(&format!(
                    "      # reprovision: {} reach the VM only with a new one\n",
                    c.reprovision_because.join(", ")
                ));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("# {n}\n"));
        }
        out.push_str(&self.summary.line());
        out.push('\n');
        out
    }
}

/// A value on one line, cut at 120 characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 120 {
        s
    } else {
        format!("{}...", s.chars().take(117).collect::<String>())
    }
}

/// Apply the plan of `fleet` if its fingerprint is still `fingerprint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    #[serde(deserialize_with = "object")]
    pub fleet: FleetSpec,
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub fingerprint: String,
}

/// What an apply did and started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The plan that ran, with the ids of what it made.
    pub plan: Plan,
    /// The rollout reprovisioning the instances that need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    /// The futures of the deletions it started (instances, then templates
    /// and networks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_ids: Vec<String>,
}

/// The fields of two documents that differ, by path: objects are compared
/// field by field, anything else (arrays too) as a whole. A value holding
/// `sensitive` marks a sensitive field.
pub fn diff(before: &Value, after: &Value, sensitive: &str) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), sensitive, &mut out);
    out
}

fn walk(
    path: &str,
    b: Option<&Value>,
    a: Option<&Value>,
    sensitive: &str,
    out: &mut Vec<FieldChange>,
) {
    if b == a {
        return;
    }
    if let (Some(Value::Object(bm)), Some(Value::Object(am))) = (b, a) {
        let mut keys: Vec<&String> = bm.keys().chain(am.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            walk(&p, bm.get(k), am.get(k), sensitive, out);
        }
        return;
    }
    let hides = |v: Option<&Value>| v.is_some_and(|v| holds(v, sensitive));
    if hides(b) || hides(a) {
        out.push(FieldChange {
            field: path.to_string(),
            before: None,
            after: None,
            sensitive: true,
        });
        return;
    }
    out.push(FieldChange {
        field: path.to_string(),
        before: b.cloned(),
        after: a.cloned(),
        sensitive: false,
    });
}

/// Whether a string of `v` starts with `marker`.
pub fn holds(v: &Value, marker: &str) -> bool {
    match v {
        Value::String(s) => s.starts_with(marker),
        Value::Array(a) => a.iter().any(|x| holds(x, marker)),
        Value::Object(m) => m.values().any(|x| holds(x, marker)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_diff_names_each_changed_field_and_hides_sensitive_ones() {
        let b = json!({"label": "a", "tags": {"x": "1", "y": "2"}, "key": "S:1", "same": [1]});
        let a = json!({"label": "b", "tags": {"x": "1"}, "key": ["S:2"], "same": [1], "new": true});
        let d = diff(&b, &a, "S:");
        let fields: Vec<_> = d.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["key", "label", "new", "tags.y"]);
        assert!(d[0].sensitive && d[0].before.is_none() && d[0].after.is_none());
        assert_eq!(d[1].after, Some(json!("b")));
        assert_eq!(d[3].after, None);
        assert!(diff(&b, &b, "S:").is_empty());
    }

    #[test]
    fn the_rollout_of_a_file_takes_its_settings_and_the_defaults() {
        let r: FleetRollout =
            serde_json::from_value(json!({"maxInFlight": "25%", "canaries": 1})).unwrap();
        let s = r.spec("apply", vec!["inst-1".into()]).unwrap();
        assert_eq!(s.max_in_flight, Limit::Percent(25));
        assert_eq!(s.canaries, 1);
        assert_eq!(s.max_errors, Limit::Count(0));
        assert_eq!(s.selector.instance_ids, ["inst-1"]);
        let bad: FleetRollout = serde_json::from_value(json!({"healthSeconds": 7200})).unwrap();
        let e = bad.spec("apply", vec!["inst-1".into()]).unwrap_err();
        assert!(e.message().contains("rollout: healthSeconds"), "{e}");
        assert!(serde_json::from_value::<FleetRollout>(json!({"selector": {}})).is_err());
        let e = serde_json::from_value::<FleetSpec>(json!({"rollout": [null, null]})).unwrap_err();
        assert!(e.to_string().contains("expected an object"), "{e}");
    }

    #[test]
    fn an_empty_plan_says_no_changes() {
        let s = PlanSummary {
            unchanged: 3,
            ..PlanSummary::default()
        };
        assert_eq!(
            s.line(),
            "No changes: the fleet is as the file declares (3 objects)."
        );
    }
}
