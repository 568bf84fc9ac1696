//! Cloud accounts: the list, and the form that creates or edits one (its
//! secret access key write-only: never shown, kept when left empty).

use super::forms::{self, Fields, FormPage, Problem};
use super::{or_page, page_at};
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, error_page, render};
use crate::console::{TENANT, see_other};
use crate::error::Error;
use crate::model::account::CloudAccount;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::{Map, json};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    /// The label of the account just saved.
    saved: Option<String>,
}

#[derive(Template)]
#[template(path = "console/accounts.html")]
struct ListPage {
    chrome: Option<Chrome>,
    saved: Option<String>,
    rows: Vec<CloudAccount>,
    next: Option<String>,
}

impl ListPage {
    /// How the account authenticates, in words.
    fn mode(&self, a: &CloudAccount) -> &'static str {
        use crate::model::account::AwsAccountAuthMode as M;
        match a.aws_authentication_mode {
            M::DefaultInstanceCredentials => MODES[0].1,
            M::IamRole => MODES[1].1,
            M::Keypair => MODES[2].1,
        }
    }
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let accounts = or_page!(s, app.account_list(TENANT, &page).await);
    render(&ListPage {
        chrome: Some(Chrome::of(&s, "accounts")),
        saved: q.saved,
        next: super::next_link("/console/accounts", accounts.next.as_ref()),
        rows: accounts.items,
    })
}

/// The authentication modes, as the API names them, and their labels.
const MODES: [(&str, &str); 3] = [
    (
        "DEFAULT_INSTANCE_CREDENTIALS",
        "FM's own credentials (its instance profile)",
    ),
    ("IAM_ROLE", "Assume an IAM role"),
    ("KEYPAIR", "An access key"),
];

/// The form's fields, as typed (never the secret).
#[derive(Debug, Default)]
struct Values {
    label: String,
    description: String,
    mode: String,
    role_arn: String,
    key_id: String,
    has_secret: bool,
}

#[derive(Template)]
#[template(path = "console/account_form.html")]
struct FormView {
    chrome: Option<Chrome>,
    /// The account being edited; none for a new one.
    editing: Option<String>,
    v: Values,
    modes: [(&'static str, &'static str); 3],
    problem: Option<Problem>,
}

impl FormPage for FormView {
    const FIELDS: &'static [&'static str] = &[
        "label",
        "description",
        "awsAuthenticationMode",
        "awsIAMRoleARN",
        "awsAccessKeyId",
        "awsSecretAccessKey",
    ];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

fn form_view(
    s: &Session,
    editing: Option<String>,
    v: Values,
    problem: Option<Problem>,
) -> FormView {
    FormView {
        chrome: Some(Chrome::of(s, "accounts")),
        editing,
        v,
        modes: MODES,
        problem,
    }
}

pub async fn new(Extension(s): Extension<Session>) -> Response {
    let v = Values {
        mode: MODES[0].0.to_string(),
        ..Default::default()
    };
    render(&form_view(&s, None, v, None))
}

pub async fn edit(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let a = or_page!(s, app.account_get(TENANT, &id).await);
    let mode = match serde_json::to_value(a.aws_authentication_mode) {
        Ok(serde_json::Value::String(m)) => m,
        _ => MODES[0].0.to_string(),
    };
    let v = Values {
        label: a.label,
        description: a.description,
        mode,
        role_arn: a.aws_iam_role_arn.unwrap_or_default(),
        key_id: a.aws_access_key_id.unwrap_or_default(),
        has_secret: a.has_aws_secret_access_key,
    };
    render(&form_view(&s, Some(id), v, None))
}

/// The account the form describes, as the public API's document; an empty
/// secret is left out (an edit keeps the stored one).
fn document(f: &Fields) -> crate::error::Result<CloudAccount> {
    let mut doc = Map::new();
    doc.insert("label".into(), json!(forms::field(f, "label")));
    doc.insert("description".into(), json!(forms::field(f, "description")));
    doc.insert(
        "awsAuthenticationMode".into(),
        json!(forms::field(f, "awsAuthenticationMode")),
    );
    for k in ["awsIAMRoleARN", "awsAccessKeyId", "awsSecretAccessKey"] {
        if let Some(v) = forms::text(f, k) {
            doc.insert(k.into(), json!(v));
        }
    }
    forms::decode(doc)
}

/// Creates (`id` none) or saves the account, then shows the list.
async fn save(app: App, s: Session, headers: HeaderMap, id: Option<String>, f: Fields) -> Response {
    let saved = match document(&f) {
        Ok(a) => match &id {
            None => app.account_create(TENANT, a).await,
            Some(id) => app.account_update(TENANT, id, a).await,
        },
        Err(e) => Err(e),
    };
    match saved {
        Ok(a) => see_other(
            &headers,
            &format!(
                "/console/accounts?saved={}",
                crate::console::view::urlencode(&a.label)
            ),
        ),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let has_secret = match &id {
                Some(id) => app
                    .account_get(TENANT, id)
                    .await
                    .is_ok_and(|a| a.has_aws_secret_access_key),
                None => false,
            };
            let v = Values {
                label: forms::field(&f, "label"),
                description: forms::field(&f, "description"),
                mode: forms::field(&f, "awsAuthenticationMode"),
                role_arn: forms::field(&f, "awsIAMRoleARN"),
                key_id: forms::field(&f, "awsAccessKeyId"),
                has_secret,
            };
            forms::refused(&form_view(&s, id, v, Some(Problem::of(&e))), &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}

pub async fn create(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    save(app, s, headers, None, f).await
}

pub async fn update(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    save(app, s, headers, Some(id), f).await
}
