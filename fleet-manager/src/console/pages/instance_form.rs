//! The forms of an instance: creating one (its template, network and image
//! chosen from what exists) and editing its settings (with the changes that
//! wait for a reprovisioning named).

use super::forms::{self, Fields, FormPage, Problem};
use super::or_page;
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, error_page, render};
use crate::console::{TENANT, see_other};
use crate::error::{Error, Result};
use crate::model::instance::{Instance, needs_reprovision};
use crate::store::page::Page;
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

const CHOICES: Page = Page {
    after: None,
    limit: Some(500),
};

async fn choices(app: &App) -> Result<(Vec<Choice>, Vec<Choice>, Vec<Choice>)> {
    let t = app.template_list(TENANT, &CHOICES).await?;
    let n = app.network_list(TENANT, &CHOICES).await?;
    let i = app.image_list(TENANT, &CHOICES).await?;
    Ok((
        t.items
            .into_iter()
            .map(|t| (t.id.unwrap_or_default(), t.label))
            .collect(),
        n.items
            .into_iter()
            .map(|n| (n.id.unwrap_or_default(), n.label))
            .collect(),
        i.items
            .into_iter()
            .rev()
            .map(|i| (i.id, format!("{} ({})", i.label, i.node_version)))
            .collect(),
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
        v: Edit {
            label: i.label,
            description: i.description,
            image: i.image_id,
            instance_type: i.cloud_instance_type.unwrap_or_default(),
            volume_gb: i
                .data_volume_size_gb
                .map(|g| g.to_string())
                .unwrap_or_default(),
        },
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
    let v = Edit {
        label: forms::field(&f, "label"),
        description: forms::field(&f, "description"),
        image: forms::field(&f, "imageId"),
        instance_type: forms::field(&f, "cloudInstanceType"),
        volume_gb: forms::field(&f, "dataVolumeSizeGB"),
    };
    let saved = async {
        let before: serde_json::Value =
            serde_json::from_str(&app.instance_get_json(TENANT, &id).await?)
                .map_err(Error::internal)?;
        let mut doc = before.as_object().cloned().unwrap_or_default();
        doc.insert("label".into(), json!(v.label));
        doc.insert("description".into(), json!(v.description));
        doc.insert("imageId".into(), json!(v.image));
        doc.insert(
            "cloudInstanceType".into(),
            if v.instance_type.is_empty() {
                serde_json::Value::Null
            } else {
                json!(v.instance_type)
            },
        );
        let gb = match v.volume_gb.as_str() {
            "" => serde_json::Value::Null,
            g => json!(
                g.parse::<u32>()
                    .map_err(|_| Error::invalid("dataVolumeSizeGB must be a whole number of GB"))?
            ),
        };
        doc.insert("dataVolumeSizeGB".into(), gb);
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
