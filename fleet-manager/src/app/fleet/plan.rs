//! Computing a plan: every declared object matched by label with the
//! fleet's, checked by the same `App` rules as a change (as a
//! `validate_only` change), compared field by field with secrets compared
//! by digest and never shown.

use super::super::App;
use super::super::changes::{Change, etag_of};
use super::super::templates::{SENSITIVE, template_desired, template_etag};
use crate::error::{Error, Result};
use crate::model::fleet::{
    FieldChange, FleetSpec, MAX_DECLARED, ObjectKind, Plan, PlanAction, PlanSummary, PlannedChange,
    diff, holds,
};
use crate::model::instance::{Instance, needs_reprovision};
use crate::model::network::VirtualNetwork;
use crate::model::template::InstanceTemplate;
use crate::store::entities::{instance, instance_template, virtual_network};
use crate::store::lifecycle as lq;
use crate::store::page::Page;
use crate::store::resources as q;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// A plan and what applying it does, step by step.
pub(super) struct Planned {
    pub plan: Plan,
    pub steps: Vec<Step>,
}

/// A template or network an instance of the file names.
#[derive(Debug, Clone)]
pub(super) enum Ref {
    /// One the fleet has (and keeps).
    Existing(String),
    /// One this plan makes, by its label.
    Made(String),
}

/// One change, in the order apply makes them; `change` indexes the plan's
/// changes, for the ids of what is made.
pub(super) enum Step {
    CreateNetwork {
        change: usize,
        input: VirtualNetwork,
        use_defaults: bool,
    },
    UpdateNetwork {
        id: String,
        input: VirtualNetwork,
        etag: String,
    },
    CreateTemplate {
        change: usize,
        input: InstanceTemplate,
    },
    UpdateTemplate {
        id: String,
        input: InstanceTemplate,
        etag: String,
    },
    CreateInstance {
        change: usize,
        input: Instance,
        template: Ref,
        network: Ref,
    },
    UpdateInstance {
        id: String,
        input: Instance,
        template: Ref,
        etag: String,
        reprovision: bool,
    },
    DeleteInstance {
        id: String,
    },
    DeleteTemplate {
        id: String,
    },
    DeleteNetwork {
        id: String,
    },
}

/// Where an entry of the file is, for errors: `templates[2] 'std'`.
fn at(list: &str, i: usize, label: &str) -> String {
    if label.is_empty() {
        format!("{list}[{i}]")
    } else {
        format!("{list}[{i}] '{label}'")
    }
}

/// The error of a declared object, saying which one.
fn within(at: &str, e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{at}: {m}")),
        Error::Conflict(m) => Error::Conflict(format!("{at}: {m}")),
        other => other,
    }
}

/// Reads one entry of the file as `T`, naming the field a type error is in.
fn read<T: serde::de::DeserializeOwned>(at: &str, entry: Map<String, Value>) -> Result<T> {
    serde_path_to_error::deserialize(Value::Object(entry))
        .map_err(|e| Error::invalid(format!("{at}: {}: {}", e.path(), e.inner())))
}

/// The entry's label (checked again with the object's rules).
fn label_of(entry: &Map<String, Value>) -> String {
    entry
        .get("label")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Objects of the fleet by label; a label two of them share can't be
/// declared.
struct ByLabel<'a, M> {
    rows: HashMap<&'a str, Vec<&'a M>>,
}

impl<'a, M> ByLabel<'a, M> {
    fn new(rows: &'a [M], label: impl Fn(&M) -> &str) -> Self {
        let mut by: HashMap<&str, Vec<&M>> = HashMap::new();
        for r in rows {
            by.entry(label(r)).or_default().push(r);
        }
        ByLabel { rows: by }
    }

    fn one(&self, kind: ObjectKind, label: &str) -> Result<Option<&'a M>> {
        match self.rows.get(label).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([m]) => Ok(Some(*m)),
            Some(many) => Err(Error::conflict(format!(
                "{} {} of the fleet are labelled '{label}': a fleet file names objects by label, so labels it declares must be unique",
                many.len(),
                match kind {
                    ObjectKind::Network => "virtual networks",
                    ObjectKind::Template => "instance templates",
                    ObjectKind::Instance => "instances",
                }
            ))),
        }
    }
}

/// The document without the fields FM sets.
fn without(v: Value, keys: &[&str]) -> Value {
    match v {
        Value::Object(mut m) => {
            for k in keys {
                m.remove(*k);
            }
            Value::Object(m)
        }
        v => v,
    }
}

const NETWORK_SET_BY_FM: &[&str] = &["id", "nbInstances"];
const INSTANCE_SET_BY_FM: &[&str] = &["id", "createdAt", "updatedAt"];

/// The fields a created object takes: those the file gives, as FM will
/// store them.
fn given(entry_keys: &[String], after: &Value) -> Vec<FieldChange> {
    let mut keys: Vec<&String> = entry_keys.iter().collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|k| {
            let v = after.get(k)?;
            let sensitive = holds(v, SENSITIVE);
            Some(FieldChange {
                field: k.clone(),
                before: None,
                after: (!sensitive).then(|| v.clone()),
                sensitive,
            })
        })
        .collect()
}

/// What the fingerprint covers of one object: which it is, the version the
/// plan read and what the file wants of it.
fn part(kind: ObjectKind, label: &str, id: Option<&str>, etag: &str, want: &Value) -> Value {
    let digest = hex::encode(Sha256::digest(want.to_string().as_bytes()));
    serde_json::json!([kind, label, id, etag, digest])
}

/// A list of the store, whole.
fn all() -> Page {
    Page::ALL
}

impl App {
    /// The plan of `fleet` and the steps applying it takes.
    pub(super) async fn fleet_planned(&self, tenant: &str, fleet: &FleetSpec) -> Result<Planned> {
        self.tenant(tenant).await?;
        for (list, n) in [
            ("networks", fleet.networks.len()),
            ("templates", fleet.templates.len()),
            ("instances", fleet.instances.len()),
        ] {
            if n > MAX_DECLARED {
                return Err(Error::invalid(format!(
                    "{list}: at most {MAX_DECLARED} objects in one file"
                )));
            }
        }
        // The rollout settings are checked now, not when a reprovision needs
        // them.
        fleet.rollout.spec("plan", vec!["planned".into()])?;
        let db = &self.store.db;
        let networks = q::network_list(db, tenant, &all()).await?.items;
        let templates = q::template_list(db, tenant, &all()).await?.items;
        let instances = q::instance_list(db, tenant, &all()).await?.items;
        let mut p = Planning {
            changes: Vec::new(),
            steps: Vec::new(),
            summary: PlanSummary::default(),
            parts: Vec::new(),
            notes: Vec::new(),
        };
        let nets = self.plan_networks(tenant, fleet, &networks, &mut p).await?;
        let tmpls = self
            .plan_templates(tenant, fleet, &templates, &mut p)
            .await?;
        let declared = self
            .plan_instances(
                fleet, &instances, &networks, &templates, &nets, &tmpls, &mut p,
            )
            .await?;
        if fleet.prune {
            self.plan_prune(
                &networks, &templates, &instances, &nets, &tmpls, &declared, &mut p,
            )
            .await?;
        }
        p.parts
            .push(serde_json::json!({"prune": fleet.prune, "rollout": fleet.rollout}));
        let fingerprint = hex::encode(Sha256::digest(
            Value::Array(std::mem::take(&mut p.parts))
                .to_string()
                .as_bytes(),
        ));
        Ok(Planned {
            plan: Plan {
                fingerprint,
                changes: p.changes,
                summary: p.summary,
                notes: p.notes,
            },
            steps: p.steps,
        })
    }

    async fn plan_networks(
        &self,
        tenant: &str,
        fleet: &FleetSpec,
        rows: &[virtual_network::Model],
        p: &mut Planning,
    ) -> Result<Declared> {
        let by = ByLabel::new(rows, |m| m.label.as_str());
        let mut d = Declared::default();
        for (i, entry) in fleet.networks.iter().enumerate() {
            let mut entry = entry.clone();
            let label = label_of(&entry);
            let at = at("networks", i, &label);
            let use_defaults = match entry.remove("useDefaultValues") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => b,
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "{at}: useDefaultValues must be true or false"
                    )));
                }
            };
            no_id(&at, &entry)?;
            let keys: Vec<String> = entry.keys().cloned().collect();
            let mut input: VirtualNetwork = read(&at, entry)?;
            d.add(&at, &label)?;
            let check = Change {
                validate_only: true,
                ..Change::default()
            };
            match by
                .one(ObjectKind::Network, &label)
                .map_err(|e| within(&at, e))?
            {
                None => {
                    let would = self
                        .network_create_with(tenant, input.clone(), use_defaults, &check)
                        .await
                        .map_err(|e| within(&at, e))?;
                    let after = without(to_value(&would.value)?, NETWORK_SET_BY_FM);
                    let change = p.declared_new(ObjectKind::Network, &label, &keys, &after);
                    d.made.insert(label.clone());
                    p.steps.push(Step::CreateNetwork {
                        change,
                        input,
                        use_defaults,
                    });
                }
                Some(m) => {
                    if use_defaults {
                        input.apply_defaults(&self.cfg.network_defaults);
                    }
                    let would = self
                        .network_update_with(tenant, &m.id, input.clone(), &check)
                        .await
                        .map_err(|e| within(&at, e))?;
                    let after = without(to_value(&would.value)?, NETWORK_SET_BY_FM);
                    let before = without(super::super::from_doc(&m.doc)?, NETWORK_SET_BY_FM);
                    let etag = etag_of(&[&m.doc]);
                    d.existing.insert(label.clone(), m.id.clone());
                    let kind = ObjectKind::Network;
                    if p.declared_existing(kind, &label, &m.id, &etag, &before, &after, vec![]) {
                        p.steps.push(Step::UpdateNetwork {
                            id: m.id.clone(),
                            input,
                            etag,
                        });
                    }
                }
            }
        }
        Ok(d)
    }

    async fn plan_templates(
        &self,
        tenant: &str,
        fleet: &FleetSpec,
        rows: &[instance_template::Model],
        p: &mut Planning,
    ) -> Result<Declared> {
        let by = ByLabel::new(rows, |m| m.label.as_str());
        let mut d = Declared::default();
        let check = Change {
            validate_only: true,
            ..Change::default()
        };
        for (i, entry) in fleet.templates.iter().enumerate() {
            let label = label_of(entry);
            let at = at("templates", i, &label);
            no_id(&at, entry)?;
            let keys: Vec<String> = entry.keys().cloned().collect();
            let input: InstanceTemplate = read(&at, entry.clone())?;
            d.add(&at, &label)?;
            match by
                .one(ObjectKind::Template, &label)
                .map_err(|e| within(&at, e))?
            {
                None => {
                    self.template_create_with(tenant, input.clone(), &check)
                        .await
                        .map_err(|e| within(&at, e))?;
                    let after = template_desired(&input, None).map_err(|e| within(&at, e))?;
                    let change = p.declared_new(ObjectKind::Template, &label, &keys, &after);
                    d.made.insert(label.clone());
                    p.steps.push(Step::CreateTemplate { change, input });
                }
                Some(m) => {
                    self.template_update_with(tenant, &m.id, input.clone(), &check)
                        .await
                        .map_err(|e| within(&at, e))?;
                    let before = self.template_compared(m)?;
                    let after =
                        template_desired(&input, Some(&before)).map_err(|e| within(&at, e))?;
                    let etag = template_etag(m);
                    d.existing.insert(label.clone(), m.id.clone());
                    let kind = ObjectKind::Template;
                    if p.declared_existing(kind, &label, &m.id, &etag, &before, &after, vec![]) {
                        p.steps.push(Step::UpdateTemplate {
                            id: m.id.clone(),
                            input,
                            etag,
                        });
                    }
                }
            }
        }
        Ok(d)
    }

    /// The instances of the file; answers the ids of the fleet's instances
    /// it declares.
    #[allow(clippy::too_many_arguments)]
    async fn plan_instances(
        &self,
        fleet: &FleetSpec,
        rows: &[instance::Model],
        network_rows: &[virtual_network::Model],
        template_rows: &[instance_template::Model],
        nets: &Declared,
        tmpls: &Declared,
        p: &mut Planning,
    ) -> Result<HashSet<String>> {
        let by = ByLabel::new(rows, |m| m.label.as_str());
        let networks = group(network_rows.iter().map(|m| (&m.label, &m.id)));
        let templates = group(template_rows.iter().map(|m| (&m.label, &m.id)));
        let mut labels = Declared::default();
        let mut matched: Vec<(usize, &instance::Model)> = Vec::new();
        let mut entries = Vec::new();
        for (i, entry) in fleet.instances.iter().enumerate() {
            let mut entry = entry.clone();
            let label = label_of(&entry);
            let at = at("instances", i, &label);
            no_id(&at, &entry)?;
            for field in ["instanceSettingsTemplateId", "virtualNetworkId"] {
                if entry.contains_key(field) {
                    return Err(Error::invalid(format!(
                        "{at}: {field}: a fleet file names the template and the network by label, as `template` and `network`"
                    )));
                }
            }
            let template = resolve(&at, "template", entry.remove("template"), tmpls, &templates)?;
            let network = resolve(&at, "network", entry.remove("network"), nets, &networks)?;
            labels.add(&at, &label)?;
            let keys: Vec<String> = entry.keys().cloned().collect();
            // A template or network made by this plan has no id yet: the
            // checks run with a stand-in, the plan shows what it stands for.
            entry.insert(
                "instanceSettingsTemplateId".into(),
                template.id_or("planned").into(),
            );
            entry.insert("virtualNetworkId".into(), network.id_or("planned").into());
            let input: Instance = read(&at, entry)?;
            input.validate().map_err(|e| within(&at, e))?;
            if q::image_get(&self.store.db, &input.image_id)
                .await?
                .is_none()
            {
                return Err(Error::invalid(format!(
                    "{at}: imageId: image '{}' does not exist (see GET /images)",
                    input.image_id
                )));
            }
            let mut after = without(to_value(&input)?, INSTANCE_SET_BY_FM);
            for (field, r, what) in [
                ("instanceSettingsTemplateId", &template, "template"),
                ("virtualNetworkId", &network, "network"),
            ] {
                if let Ref::Made(l) = r {
                    after[field] = format!("(the {what} '{l}' this plan makes)").into();
                }
            }
            let m = by
                .one(ObjectKind::Instance, &label)
                .map_err(|e| within(&at, e))?;
            if let Some(m) = m {
                matched.push((entries.len(), m));
            }
            entries.push((at, label, keys, input, template, network, after, m));
        }
        let ids: Vec<String> = matched.iter().map(|(_, m)| m.id.clone()).collect();
        let provisioned: HashSet<String> = lq::runtimes_of(self.store.conn(), &ids)
            .await?
            .into_iter()
            .filter(|r| r.vm_id.is_some())
            .map(|r| r.instance_id)
            .collect();
        let mut declared = HashSet::new();
        for (at, label, keys, input, template, network, after, m) in entries {
            let Some(m) = m else {
                let change = p.declared_new(ObjectKind::Instance, &label, &keys, &after);
                p.steps.push(Step::CreateInstance {
                    change,
                    input,
                    template,
                    network,
                });
                continue;
            };
            declared.insert(m.id.clone());
            let before = without(super::super::from_doc(&m.doc)?, INSTANCE_SET_BY_FM);
            if before.get("virtualNetworkId") != after.get("virtualNetworkId") {
                return Err(Error::invalid(format!(
                    "{at}: network: an instance stays in the network it was made in (it is in '{}'); delete it and declare a new one",
                    m.network_id
                )));
            }
            let etag = etag_of(&[&m.doc]);
            let because = if provisioned.contains(&m.id) {
                needs_reprovision(&before, &after)
            } else {
                Vec::new()
            };
            let reprovision = !because.is_empty();
            let kind = ObjectKind::Instance;
            if p.declared_existing(kind, &label, &m.id, &etag, &before, &after, because) {
                p.steps.push(Step::UpdateInstance {
                    id: m.id.clone(),
                    input,
                    template,
                    etag,
                    reprovision,
                });
            }
        }
        Ok(declared)
    }

    /// With `prune`: what the file does not declare is deleted; a template
    /// or network still used once the plan is applied is kept (and said so).
    #[allow(clippy::too_many_arguments)]
    async fn plan_prune(
        &self,
        networks: &[virtual_network::Model],
        templates: &[instance_template::Model],
        instances: &[instance::Model],
        nets: &Declared,
        tmpls: &Declared,
        declared: &HashSet<String>,
        p: &mut Planning,
    ) -> Result<()> {
        let pruned: Vec<&instance::Model> = instances
            .iter()
            .filter(|m| !declared.contains(&m.id))
            .collect();
        for m in &pruned {
            p.parts.push(part(
                ObjectKind::Instance,
                &m.label,
                Some(&m.id),
                &etag_of(&[&m.doc]),
                &Value::Null,
            ));
            p.delete(ObjectKind::Instance, &m.label, &m.id);
            p.steps.push(Step::DeleteInstance { id: m.id.clone() });
        }
        // Who uses what once the plan's changes are made: the declared
        // instances as the file has them (the pruned ones are counted apart:
        // they use it until their deletion ends).
        let mut users: HashMap<String, usize> = HashMap::new();
        let mut updated = HashSet::new();
        for step in &p.steps {
            match step {
                Step::CreateInstance {
                    template, network, ..
                } => {
                    for r in [template, network] {
                        if let Ref::Existing(id) = r {
                            *users.entry(id.clone()).or_default() += 1;
                        }
                    }
                }
                Step::UpdateInstance { id, template, .. } => {
                    updated.insert(id.clone());
                    if let Ref::Existing(t) = template {
                        *users.entry(t.clone()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        for m in instances.iter().filter(|m| declared.contains(&m.id)) {
            *users.entry(m.network_id.clone()).or_default() += 1;
            if !updated.contains(&m.id) {
                *users.entry(m.template_id.clone()).or_default() += 1;
            }
        }
        let mut deletions = Vec::new();
        for t in templates.iter().filter(|t| !tmpls.declares_id(&t.id)) {
            let users = users.get(&t.id).copied().unwrap_or(0);
            let leaving = pruned.iter().filter(|m| m.template_id == t.id).count();
            deletions.push((
                ObjectKind::Template,
                &t.id,
                &t.label,
                template_etag(t),
                users,
                leaving,
            ));
        }
        for n in networks.iter().filter(|n| !nets.declares_id(&n.id)) {
            let users = users.get(&n.id).copied().unwrap_or(0);
            let leaving = pruned.iter().filter(|m| m.network_id == n.id).count();
            deletions.push((
                ObjectKind::Network,
                &n.id,
                &n.label,
                etag_of(&[&n.doc]),
                users,
                leaving,
            ));
        }
        for (kind, id, label, etag, users, leaving) in deletions {
            if users > 0 {
                p.notes.push(format!(
                    "{} '{label}' ({id}) is not declared but {users} declared instance(s) use it: kept",
                    kind.name()
                ));
                continue;
            }
            if leaving > 0 {
                p.notes.push(format!(
                    "{} '{label}' ({id}) is not declared: it is deleted by a later apply, once the {leaving} instance(s) this plan deletes are gone",
                    kind.name()
                ));
                continue;
            }
            p.parts
                .push(part(kind, label, Some(id), &etag, &Value::Null));
            p.delete(kind, label, id);
            p.steps.push(match kind {
                ObjectKind::Template => Step::DeleteTemplate { id: id.clone() },
                _ => Step::DeleteNetwork { id: id.clone() },
            });
        }
        Ok(())
    }
}

/// Ids by label.
fn group<'a>(
    pairs: impl Iterator<Item = (&'a String, &'a String)>,
) -> HashMap<String, Vec<String>> {
    let mut by: HashMap<String, Vec<String>> = HashMap::new();
    for (label, id) in pairs {
        by.entry(label.clone()).or_default().push(id.clone());
    }
    by
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(Error::internal)
}

fn no_id(at: &str, entry: &Map<String, Value>) -> Result<()> {
    if entry.contains_key("id") {
        return Err(Error::invalid(format!(
            "{at}: id: ids are FM's; a fleet file names objects by label"
        )));
    }
    Ok(())
}

/// The template or network an instance names by label: one the file
/// declares, else the fleet's one of that label.
fn resolve(
    at: &str,
    field: &str,
    label: Option<Value>,
    declared: &Declared,
    fleet: &HashMap<String, Vec<String>>,
) -> Result<Ref> {
    let label = match label {
        Some(Value::String(l)) if !l.trim().is_empty() => l,
        Some(_) => return Err(Error::invalid(format!("{at}: {field} must be a label"))),
        None => {
            return Err(Error::invalid(format!(
                "{at}: {field} is required: the label of a {field} of the file or of the fleet"
            )));
        }
    };
    if let Some(id) = declared.existing.get(&label) {
        return Ok(Ref::Existing(id.clone()));
    }
    if declared.made.contains(&label) {
        return Ok(Ref::Made(label));
    }
    match fleet.get(&label).map(Vec::as_slice) {
        Some([id]) => Ok(Ref::Existing(id.clone())),
        Some([_, _, ..]) => Err(Error::conflict(format!(
            "{at}: {field}: several {field}s of the fleet are labelled '{label}'"
        ))),
        _ => Err(Error::invalid(format!(
            "{at}: {field}: no {field} labelled '{label}' in the file or the fleet"
        ))),
    }
}

impl Ref {
    fn id_or<'a>(&'a self, stand_in: &'a str) -> &'a str {
        match self {
            Ref::Existing(id) => id,
            Ref::Made(_) => stand_in,
        }
    }
}

/// The labels the file declares of one kind: those matched in the fleet
/// (with their ids) and those to make.
#[derive(Default)]
struct Declared {
    existing: HashMap<String, String>,
    made: HashSet<String>,
    seen: HashSet<String>,
}

impl Declared {
    fn add(&mut self, at: &str, label: &str) -> Result<()> {
        if !self.seen.insert(label.to_string()) {
            return Err(Error::invalid(format!(
                "{at}: label: declared twice in the file (objects are named by label)"
            )));
        }
        Ok(())
    }

    fn declares_id(&self, id: &str) -> bool {
        self.existing.values().any(|x| x == id)
    }
}

/// A plan being made.
struct Planning {
    changes: Vec<PlannedChange>,
    steps: Vec<Step>,
    summary: PlanSummary,
    parts: Vec<Value>,
    notes: Vec<String>,
}

impl Planning {
    /// A declared object the fleet lacks; answers its change's index.
    fn declared_new(
        &mut self,
        kind: ObjectKind,
        label: &str,
        keys: &[String],
        after: &Value,
    ) -> usize {
        self.parts.push(part(kind, label, None, "", after));
        self.create(kind, label, given(keys, after));
        self.changes.len() - 1
    }

    /// A declared object the fleet has, as it is (`before`) and as the
    /// file wants it; answers whether it changes.
    #[allow(clippy::too_many_arguments)]
    fn declared_existing(
        &mut self,
        kind: ObjectKind,
        label: &str,
        id: &str,
        etag: &str,
        before: &Value,
        after: &Value,
        because: Vec<String>,
    ) -> bool {
        self.parts.push(part(kind, label, Some(id), etag, after));
        let fields = diff(before, after, SENSITIVE);
        self.update(kind, label, id, fields, because)
    }

    fn create(&mut self, kind: ObjectKind, label: &str, fields: Vec<FieldChange>) {
        self.summary.create += 1;
        self.changes.push(PlannedChange {
            kind,
            label: label.to_string(),
            id: None,
            action: PlanAction::Create,
            fields,
            reprovision_because: vec![],
        });
    }

    /// Records an update if anything changes; answers whether it does.
    fn update(
        &mut self,
        kind: ObjectKind,
        label: &str,
        id: &str,
        fields: Vec<FieldChange>,
        because: Vec<String>,
    ) -> bool {
        if fields.is_empty() {
            self.summary.unchanged += 1;
            return false;
        }
        let action = if because.is_empty() {
            self.summary.update += 1;
            PlanAction::Update
        } else {
            self.summary.reprovision += 1;
            PlanAction::Reprovision
        };
        self.changes.push(PlannedChange {
            kind,
            label: label.to_string(),
            id: Some(id.to_string()),
            action,
            fields,
            reprovision_because: because,
        });
        true
    }

    fn delete(&mut self, kind: ObjectKind, label: &str, id: &str) {
        self.summary.delete += 1;
        self.changes.push(PlannedChange {
            kind,
            label: label.to_string(),
            id: Some(id.to_string()),
            action: PlanAction::Delete,
            fields: vec![],
            reprovision_because: vec![],
        });
    }
}
