//! Instance templates: the list, and the form that creates one with its
//! setup actions (added as rows, ordered, each enabled or not; parameters
//! as a JSON object).

use super::forms::{self, Fields, FormPage, Problem};
use super::{or_page, page_at};
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, error_page, render};
use crate::console::{TENANT, see_other};
use crate::error::Error;
use crate::model::setup_action::SetupActionType;
use crate::model::template::InstanceTemplate;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Setup-action rows a new form shows; `?rows=N` asks for more.
const ROWS: usize = 3;
const MAX_ROWS: usize = 50;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    /// The template just saved.
    saved: Option<String>,
}

pub struct Row {
    pub id: String,
    pub label: String,
    pub actions: Vec<String>,
    pub instances: u64,
}

#[derive(Template)]
#[template(path = "console/templates.html")]
struct ListPage {
    chrome: Option<Chrome>,
    /// The template just saved, with how many instances use it.
    saved: Option<(String, u64)>,
    rows: Vec<Row>,
    next: Option<String>,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let tpls = or_page!(s, app.template_list(TENANT, &page).await);
    let saved = match q.saved.as_deref() {
        Some(id) => {
            let t = or_page!(s, app.template_get(TENANT, id).await);
            Some((t.label, t.nb_instances))
        }
        None => None,
    };
    render(&ListPage {
        chrome: Some(Chrome::of(&s, "templates")),
        saved,
        next: super::next_link("/console/templates", tpls.next.as_ref()),
        rows: tpls
            .items
            .into_iter()
            .map(|t| Row {
                id: t.id.unwrap_or_default(),
                label: t.label,
                actions: t
                    .setup_actions
                    .iter()
                    .map(|a| {
                        let mut s = a.action_type.as_str();
                        if !a.enabled {
                            s.push_str(" (disabled)");
                        }
                        s
                    })
                    .collect(),
                instances: t.nb_instances,
            })
            .collect(),
    })
}

/// One setup-action row as typed.
#[derive(Debug, Clone, Default)]
pub struct ActionRow {
    pub n: usize,
    pub kind: String,
    pub order: String,
    pub params: String,
    pub enabled: bool,
}

#[derive(Template)]
#[template(path = "console/template_new.html")]
struct NewPage {
    chrome: Option<Chrome>,
    /// Where the form posts, and its heading.
    action: String,
    heading: String,
    label: String,
    description: String,
    rows: Vec<ActionRow>,
    kinds: Vec<String>,
    more: usize,
    problem: Option<Problem>,
}

impl FormPage for NewPage {
    const FIELDS: &'static [&'static str] = &["label", "description", "setupActions"];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

fn kinds() -> Vec<String> {
    use SetupActionType as T;
    [
        T::RunAnsibleTasks,
        T::InstallSystemPackages,
        T::AddAuthorizedKey,
        T::AddSshKey,
        T::AddEnvVariables,
        T::AddProperties,
        T::AddCaToTruststore,
        T::SetupProxy,
        T::InstallJdbcDriver,
        T::InstallDssPluginsFromStore,
        T::InstallCodeEnvWithPreset,
        T::SetupK8sAndSpark,
        T::SetupNoneK8sAndSpark,
        T::SetupRuntimeDatabase,
        T::SetupMusAutocreate,
        T::SetupUiCustomization,
        T::SetupMemorySettings,
        T::SetupGraphicsExport,
        T::SetupAdvancedSecurity,
        T::SetupInstanceName,
        T::SetupSecureCookies,
        T::UpdateDssPort,
        T::InstallDeprecatedPython,
    ]
    .into_iter()
    .map(|t| t.as_str())
    .collect()
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    rows: Option<usize>,
}

fn blank_rows(n: usize) -> Vec<ActionRow> {
    (0..n)
        .map(|i| ActionRow {
            n: i,
            order: (i + 1).to_string(),
            enabled: true,
            ..Default::default()
        })
        .collect()
}

pub async fn new(Extension(s): Extension<Session>, Query(q): Query<NewQuery>) -> Response {
    let n = q.rows.unwrap_or(ROWS).clamp(1, MAX_ROWS);
    render(&NewPage {
        chrome: Some(Chrome::of(&s, "templates")),
        action: "/console/templates".into(),
        heading: "New instance template".into(),
        label: String::new(),
        description: String::new(),
        rows: blank_rows(n),
        kinds: kinds(),
        more: (n + 2).min(MAX_ROWS),
        problem: None,
    })
}

/// The setup actions of the form, in the order their `order` fields give
/// (rows without a type are left out).
fn actions_of(rows: &[ActionRow]) -> Result<Vec<Value>, Error> {
    let mut picked: Vec<(f64, usize, Value)> = Vec::new();
    for r in rows.iter().filter(|r| !r.kind.is_empty()) {
        let params: Value = if r.params.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&r.params).map_err(|e| {
                Error::invalid(format!(
                    "'setupActions': the parameters of action {} are not a JSON object: {e}",
                    r.n + 1
                ))
            })?
        };
        if !params.is_object() {
            return Err(Error::invalid(format!(
                "'setupActions': the parameters of action {} must be a JSON object",
                r.n + 1
            )));
        }
        let order = r.order.trim().parse::<f64>().unwrap_or((r.n + 1) as f64);
        picked.push((
            order,
            r.n,
            json!({"type": r.kind, "params": params, "enabled": r.enabled}),
        ));
    }
    picked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(picked.into_iter().map(|(_, _, v)| v).collect())
}

/// The setup-action rows of a submitted form.
fn rows_of(f: &Fields) -> Vec<ActionRow> {
    let n = f
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("action_type_")?.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1)
        .min(MAX_ROWS);
    (0..n)
        .map(|i| ActionRow {
            n: i,
            kind: forms::field(f, &format!("action_type_{i}")),
            order: forms::field(f, &format!("action_order_{i}")),
            params: forms::field(f, &format!("action_params_{i}")),
            enabled: forms::ticked(f, &format!("action_enabled_{i}")),
        })
        .collect()
}

/// Saves a submitted form: a new template, or the edit of `id` (over its
/// whole document, masked secrets standing for the stored ones).
async fn save(app: &App, id: Option<&str>, f: &Fields) -> Result<InstanceTemplate, Error> {
    let mut doc = match id {
        Some(id) => match serde_json::to_value(app.template_get(TENANT, id).await?) {
            Ok(Value::Object(m)) => m,
            _ => return Err(Error::internal("a template is a JSON object")),
        },
        None => Map::new(),
    };
    doc.insert("label".into(), json!(forms::field(f, "label")));
    doc.insert("description".into(), json!(forms::field(f, "description")));
    doc.insert("setupActions".into(), Value::from(actions_of(&rows_of(f))?));
    let t: InstanceTemplate = forms::decode(doc)?;
    match id {
        Some(id) => app.template_update(TENANT, id, t).await,
        None => app.template_create(TENANT, t).await,
    }
}

/// The form again, with what was typed and why it was refused.
fn refused(s: &Session, action: String, heading: String, f: &Fields, e: Error) -> Response {
    match e {
        Error::InvalidInput(_) | Error::Conflict(_) => {
            let rows = rows_of(f);
            let page = NewPage {
                chrome: Some(Chrome::of(s, "templates")),
                action,
                heading,
                label: forms::field(f, "label"),
                description: forms::field(f, "description"),
                more: (rows.len() + 2).min(MAX_ROWS),
                rows,
                kinds: kinds(),
                problem: Some(Problem::of(&e)),
            };
            forms::refused(&page, &e)
        }
        e => error_page(Some(s), e),
    }
}

pub async fn create(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    match save(&app, None, &f).await {
        Ok(_) => see_other(&headers, "/console/templates"),
        Err(e) => refused(
            &s,
            "/console/templates".into(),
            "New instance template".into(),
            &f,
            e,
        ),
    }
}

pub async fn edit(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let t = or_page!(s, app.template_get(TENANT, &id).await);
    let mut rows: Vec<ActionRow> = t
        .setup_actions
        .iter()
        .enumerate()
        .map(|(i, a)| ActionRow {
            n: i,
            kind: a.action_type.as_str(),
            order: (i + 1).to_string(),
            params: a
                .params
                .as_ref()
                .and_then(|p| serde_json::to_string(p).ok())
                .unwrap_or_default(),
            enabled: a.enabled,
        })
        .collect();
    let n = rows.len();
    rows.extend(blank_rows(n + 2).into_iter().skip(n));
    render(&NewPage {
        chrome: Some(Chrome::of(&s, "templates")),
        action: format!("/console/templates/{id}/edit"),
        heading: format!("Edit {}", t.label),
        label: t.label,
        description: t.description,
        more: 0,
        rows,
        kinds: kinds(),
        problem: None,
    })
}

pub async fn update(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    match save(&app, Some(&id), &f).await {
        Ok(_) => see_other(&headers, &format!("/console/templates?saved={id}")),
        Err(e) => refused(
            &s,
            format!("/console/templates/{id}/edit"),
            "Edit the instance template".into(),
            &f,
            e,
        ),
    }
}
