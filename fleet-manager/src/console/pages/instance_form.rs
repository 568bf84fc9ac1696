//! The forms of an instance: creating one (its template, network and image
//! chosen from what exists) and editing its settings (with the changes that
//! wait for a reprovisioning named).

use super::CHOICES;
use super::forms::{self, Fields, FormPage, Problem};
use super::or_page;
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, error_page, render};
use crate::console::{TENANT, see_other};
use crate::error::{Error, Result};
use crate::model::instance::{Instance, needs_reprovision};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, json};

/// A choice in a select: (value, label).
type Choice = (String, String);

#[derive(Debug, Default)]
struct Values {
    label: String,
    description: String,
    template: String,
    network: String,
    image: String,
    node_type: String,
}

#[derive(Template)]
#[template(path = "console/instance_new.html")]
struct NewPage {
    chrome: Option<Chrome>,
    v: Values,
    templates: Vec<Choice>,
    networks: Vec<Choice>,
    images: Vec<Choice>,
    node_types: [&'static str; 4],
    problem: Option<Problem>,
}

impl FormPage for NewPage {
    const FIELDS: &'static [&'static str] = &[
        "label",
        "description",
        "instanceSettingsTemplateId",
        "virtualNetworkId",
        "imageId",
        "dssNodeType",
    ];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

async fn choices(app: &App) -> Result<(Vec<Choice>, Vec<Choice>, Vec<Choice>)> {
    let t = app.template_list(TENANT, &CHOICES).await?;
    let n = app.network_list(TENANT, &CHOICES).await?;
    Ok((
        t.items
            .into_iter()
            .map(|t| (t.id.unwrap_or_default(), t.label))
            .collect(),
        n.items
            .into_iter()
            .map(|n| (n.id.unwrap_or_default(), n.label))
            .collect(),
        super::images::image_choices(app).await?,
    ))
}

const NODE_TYPES: [&str; 4] = ["design", "automation", "deployer", "govern"];

pub async fn new(State(app): State<App>, Extension(s): Extension<Session>) -> Response {
    let (templates, networks, images) = or_page!(s, choices(&app).await);
    render(&NewPage {
        chrome: Some(Chrome::of(&s, "instances")),
        v: Values {
            node_type: "design".into(),
            ..Default::default()
        },
        templates,
        networks,
        images,
        node_types: NODE_TYPES,
        problem: None,
    })
}

pub async fn create(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let v = Values {
        label: forms::field(&f, "label"),
        description: forms::field(&f, "description"),
        template: forms::field(&f, "instanceSettingsTemplateId"),
        network: forms::field(&f, "virtualNetworkId"),
        image: forms::field(&f, "imageId"),
        node_type: forms::field(&f, "dssNodeType"),
    };
    let made = async {
        let mut doc = Map::new();
        doc.insert("label".into(), json!(v.label));
        doc.insert("description".into(), json!(v.description));
        doc.insert("instanceSettingsTemplateId".into(), json!(v.template));
        doc.insert("virtualNetworkId".into(), json!(v.network));
        doc.insert("imageId".into(), json!(v.image));
        doc.insert("dssNodeType".into(), json!(v.node_type));
        let i: Instance = forms::decode(doc)?;
        let made = app.instance_create(TENANT, i).await?;
        let made: Instance = serde_json::from_str(&made).map_err(Error::internal)?;
        Ok::<_, Error>(made.id.unwrap_or_default())
    }
    .await;
    match made {
        Ok(id) => see_other(&headers, &format!("/console/instances/{id}")),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let (templates, networks, images) = or_page!(s, choices(&app).await);
            let page = NewPage {
                chrome: Some(Chrome::of(&s, "instances")),
                v,
                templates,
                networks,
                images,
                node_types: NODE_TYPES,
                problem: Some(Problem::of(&e)),
            };
            forms::refused(&page, &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}

// ------------------------------------------------------------------ edit

#[derive(Debug, Default)]
struct Edit {
    label: String,
    description: String,
    image: String,
    instance_type: String,
    volume_gb: String,
    volume_type: String,
    /// `key=value` per line.
    cloud_tags: String,
    fm_tags: String,
    snapshots: bool,
    snapshot_period: String,
    snapshot_retention: String,
    backups: bool,
    backup_period: String,
    backup_keep: String,
    backup_encrypt: bool,
}

impl Edit {
    fn of(i: &Instance) -> Edit {
        Edit {
            label: i.label.clone(),
            description: i.description.clone(),
            image: i.image_id.clone(),
            instance_type: i.cloud_instance_type.clone().unwrap_or_default(),
            volume_gb: i
                .data_volume_size_gb
                .map(|g| g.to_string())
                .unwrap_or_default(),
            volume_type: i.data_volume_type.clone().unwrap_or_default(),
            cloud_tags: i
                .cloud_tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            fm_tags: i.fm_tags.join(", "),
            snapshots: i.enable_automated_snapshot,
            snapshot_period: i
                .automated_snapshot_period
                .map(|p| p.to_string())
                .unwrap_or_default(),
            snapshot_retention: i.automated_snapshot_retention.to_string(),
            backups: i.backup_policy.enabled,
            backup_period: i.backup_policy.period_hours.to_string(),
            backup_keep: i.backup_policy.keep_last.to_string(),
            backup_encrypt: i.backup_policy.encrypt,
        }
    }

    fn read(f: &Fields) -> Edit {
        Edit {
            label: forms::field(f, "label"),
            description: forms::field(f, "description"),
            image: forms::field(f, "imageId"),
            instance_type: forms::field(f, "cloudInstanceType"),
            volume_gb: forms::field(f, "dataVolumeSizeGB"),
            volume_type: forms::field(f, "dataVolumeType"),
            cloud_tags: forms::field(f, "cloudTags"),
            fm_tags: forms::field(f, "fmTags"),
            snapshots: forms::ticked(f, "enableAutomatedSnapshot"),
            snapshot_period: forms::field(f, "automatedSnapshotPeriod"),
            snapshot_retention: forms::field(f, "automatedSnapshotRetention"),
            backups: forms::ticked(f, "backupPolicy.enabled"),
            backup_period: forms::field(f, "backupPolicy.periodHours"),
            backup_keep: forms::field(f, "backupPolicy.keepLast"),
            backup_encrypt: forms::ticked(f, "backupPolicy.encrypt"),
        }
    }

    /// The edited fields written over the instance's document `doc`.
    fn put(&self, doc: &mut Map<String, serde_json::Value>) -> Result<()> {
        use serde_json::Value;
        let opt = |v: &str| {
            if v.is_empty() { Value::Null } else { json!(v) }
        };
        doc.insert("label".into(), json!(self.label));
        doc.insert("description".into(), json!(self.description));
        doc.insert("imageId".into(), json!(self.image));
        doc.insert("cloudInstanceType".into(), opt(&self.instance_type));
        doc.insert("dataVolumeType".into(), opt(&self.volume_type));
        doc.insert(
            "dataVolumeSizeGB".into(),
            whole("dataVolumeSizeGB", &self.volume_gb)?,
        );
        let mut tags = Map::new();
        for (n, line) in self.cloud_tags.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::invalid(format!(
                    "cloudTags: line {} is not key=value",
                    n + 1
                )));
            };
            tags.insert(k.trim().to_string(), json!(v.trim()));
        }
        doc.insert("cloudTags".into(), Value::Object(tags));
        let fm_tags: Vec<&str> = self
            .fm_tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        doc.insert("fmTags".into(), json!(fm_tags));
        doc.insert("enableAutomatedSnapshot".into(), json!(self.snapshots));
        doc.insert(
            "automatedSnapshotPeriod".into(),
            whole("automatedSnapshotPeriod", &self.snapshot_period)?,
        );
        doc.insert(
            "automatedSnapshotRetention".into(),
            match whole("automatedSnapshotRetention", &self.snapshot_retention)? {
                Value::Null => json!(0),
                n => n,
            },
        );
        let mut policy = match doc.get("backupPolicy") {
            Some(Value::Object(p)) => p.clone(),
            _ => Map::new(),
        };
        policy.insert("enabled".into(), json!(self.backups));
        policy.insert("encrypt".into(), json!(self.backup_encrypt));
        for (k, v) in [
            ("periodHours", &self.backup_period),
            ("keepLast", &self.backup_keep),
        ] {
            match whole(&format!("backupPolicy.{k}"), v)? {
                Value::Null => policy.remove(k),
                n => policy.insert(k.into(), n),
            };
        }
        doc.insert("backupPolicy".into(), Value::Object(policy));
        Ok(())
    }
}

/// A whole number typed in field `name`, or null when left empty.
fn whole(name: &str, v: &str) -> Result<serde_json::Value> {
    match v {
        "" => Ok(serde_json::Value::Null),
        v => v
            .parse::<u32>()
            .map(|n| json!(n))
            .map_err(|_| Error::invalid(format!("{name} must be a whole number"))),
    }
}

#[derive(Template)]
#[template(path = "console/instance_edit.html")]
struct EditPage {
    chrome: Option<Chrome>,
    id: String,
    v: Edit,
    images: Vec<Choice>,
    problem: Option<Problem>,
}

impl FormPage for EditPage {
    const FIELDS: &'static [&'static str] = &[
        "label",
        "description",
        "imageId",
        "cloudInstanceType",
        "dataVolumeSizeGB",
        "dataVolumeType",
        "cloudTags",
        "fmTags",
        "automatedSnapshotPeriod",
        "automatedSnapshotRetention",
        "backupPolicy",
    ];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

pub async fn edit(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let i = or_page!(s, app.instance_get(TENANT, &id).await);
    let (_, _, images) = or_page!(s, choices(&app).await);
    render(&EditPage {
        chrome: Some(Chrome::of(&s, "instances")),
        id,
        v: Edit::of(&i),
        images,
        problem: None,
    })
}

/// Saves the edited settings over the instance's whole document; the
/// instance's page then names the changes that wait for a reprovisioning.
pub async fn update(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let v = Edit::read(&f);
    let saved = async {
        let before: serde_json::Value =
            serde_json::from_str(&app.instance_get_json(TENANT, &id).await?)
                .map_err(Error::internal)?;
        let mut doc = before.as_object().cloned().unwrap_or_default();
        v.put(&mut doc)?;
        let i: Instance = forms::decode(doc)?;
        let after = app.instance_update(TENANT, &id, i).await?;
        let after: serde_json::Value = serde_json::from_str(&after).map_err(Error::internal)?;
        Ok::<_, Error>(needs_reprovision(&before, &after))
    }
    .await;
    match saved {
        Ok(changed) if changed.is_empty() => {
            see_other(&headers, &format!("/console/instances/{id}?saved=1"))
        }
        Ok(changed) => see_other(
            &headers,
            &format!(
                "/console/instances/{id}?saved=1&pending={}",
                crate::console::view::urlencode(&changed.join(","))
            ),
        ),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let (_, _, images) = or_page!(s, choices(&app).await);
            let page = EditPage {
                chrome: Some(Chrome::of(&s, "instances")),
                id,
                v,
                images,
                problem: Some(Problem::of(&e)),
            };
            forms::refused(&page, &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}
