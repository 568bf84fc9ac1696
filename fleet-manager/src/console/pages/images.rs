//! The image catalog, and the two forms that use it on an instance:
//! upgrading it to another image (then reprovisioning it) and cloning a
//! backup into a new instance.

use super::forms::{self, Fields, FormPage, Problem};
use super::{or_page, page_at};
use crate::app::App;
use crate::app::backups::CloneRequest;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, render};
use crate::console::{TENANT, see_other};
use crate::error::{Error, Result};
use crate::model::image::Image;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
}

#[derive(Template)]
#[template(path = "console/images.html")]
struct ListPage {
    chrome: Option<Chrome>,
    rows: Vec<Image>,
    next: Option<String>,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let images = or_page!(s, app.image_list(TENANT, &page).await);
    render(&ListPage {
        chrome: Some(Chrome::of(&s, "images")),
        next: super::next_link("/console/images", images.next.as_ref()),
        rows: images.items,
    })
}

/// The images of a select, newest first: (id, "label (version)").
pub(super) async fn image_choices(app: &App) -> Result<Vec<(String, String)>> {
    Ok(app
        .image_list(TENANT, &super::CHOICES)
        .await?
        .items
        .into_iter()
        .rev()
        .map(|i| (i.id, format!("{} ({})", i.label, i.node_version)))
        .collect())
}

// ----------------------------------------------------------------- upgrade

#[derive(Template)]
#[template(path = "console/instance_upgrade.html")]
struct UpgradePage {
    chrome: Option<Chrome>,
    id: String,
    label: String,
    /// The image the instance has now, and the node version it runs.
    current: String,
    installed: String,
    image: String,
    allow_downgrade: bool,
    images: Vec<(String, String)>,
    problem: Option<Problem>,
}

impl FormPage for UpgradePage {
    const FIELDS: &'static [&'static str] = &["imageId", "allowDowngrade"];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

async fn upgrade_page(
    app: &App,
    s: &Session,
    id: &str,
    image: Option<String>,
    allow_downgrade: bool,
    problem: Option<Problem>,
) -> Result<UpgradePage> {
    let inst = app.instance_get(TENANT, id).await?;
    let st = app.instance_status(TENANT, id).await?;
    Ok(UpgradePage {
        chrome: Some(Chrome::of(s, "instances")),
        id: id.to_string(),
        label: inst.label,
        image: image.unwrap_or_else(|| inst.image_id.clone()),
        current: inst.image_id,
        installed: st.node_version.flatten().unwrap_or_default(),
        allow_downgrade,
        images: image_choices(app).await?,
        problem,
    })
}

pub async fn upgrade_form(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    render(&or_page!(
        s,
        upgrade_page(&app, &s, &id, None, false, None).await
    ))
}

/// Sets the instance's image and reprovisions it, then shows the instance
/// (where the reprovisioning's progress is followed).
pub async fn upgrade(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let image = forms::field(&f, "imageId");
    let allow = forms::ticked(&f, "allowDowngrade");
    match app
        .instance_upgrade(&s.ctx, TENANT, &id, &image, allow)
        .await
    {
        Ok(_) => see_other(&headers, &format!("/console/instances/{id}")),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let page = or_page!(
                s,
                upgrade_page(&app, &s, &id, Some(image), allow, Some(Problem::of(&e))).await
            );
            forms::refused(&page, &e)
        }
        Err(e) => crate::console::view::error_page(Some(&s), e),
    }
}

// ------------------------------------------------------------------- clone

#[derive(Template)]
#[template(path = "console/backup_clone.html")]
struct ClonePage {
    chrome: Option<Chrome>,
    id: String,
    source: String,
    backup: String,
    node_version: String,
    label: String,
    description: String,
    /// Empty: the source's image.
    image: String,
    images: Vec<(String, String)>,
    problem: Option<Problem>,
}

impl FormPage for ClonePage {
    const FIELDS: &'static [&'static str] = &["label", "description", "imageId"];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

/// The form's fields, as typed.
struct CloneValues {
    label: String,
    description: String,
    image: String,
}

async fn clone_page(
    app: &App,
    s: &Session,
    id: &str,
    backup: &str,
    v: Option<CloneValues>,
    problem: Option<Problem>,
) -> Result<ClonePage> {
    let src = app.instance_get(TENANT, id).await?;
    let b = app.backup_get(TENANT, id, backup).await?;
    let v = v.unwrap_or_else(|| CloneValues {
        label: format!("{}-clone", src.label),
        description: String::new(),
        image: String::new(),
    });
    Ok(ClonePage {
        chrome: Some(Chrome::of(s, "instances")),
        id: id.to_string(),
        source: src.label,
        backup: backup.to_string(),
        node_version: b.node_version,
        label: v.label,
        description: v.description,
        image: v.image,
        images: image_choices(app).await?,
        problem,
    })
}

pub async fn clone_form(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path((id, backup)): Path<(String, String)>,
) -> Response {
    render(&or_page!(
        s,
        clone_page(&app, &s, &id, &backup, None, None).await
    ))
}

/// Creates the clone and provisions it with the backup restored, then shows
/// the new instance.
pub async fn clone(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path((id, backup)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    let v = CloneValues {
        label: forms::field(&f, "label"),
        description: forms::field(&f, "description"),
        image: forms::field(&f, "imageId"),
    };
    let req = CloneRequest {
        label: v.label.clone(),
        description: Some(v.description.clone()).filter(|d| !d.is_empty()),
        image_id: Some(v.image.clone()).filter(|i| !i.is_empty()),
    };
    match app.backup_clone(&s.ctx, TENANT, &id, &backup, req).await {
        Ok(started) => see_other(
            &headers,
            &format!("/console/instances/{}", started.target_id),
        ),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let page = or_page!(
                s,
                clone_page(&app, &s, &id, &backup, Some(v), Some(Problem::of(&e))).await
            );
            forms::refused(&page, &e)
        }
        Err(e) => crate::console::view::error_page(Some(&s), e),
    }
}
