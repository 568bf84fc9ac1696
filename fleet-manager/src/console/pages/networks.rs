//! Virtual networks: the list, the form that creates one and the one that
//! edits one (naming the instances a change reaches only when reprovisioned).

use super::forms::{self, Fields, FormPage, Problem};
use super::{or_page, page_at};
use crate::app::App;
use crate::app::sessions::Session;
use crate::console::view::{Chrome, error_page};
use crate::console::{TENANT, see_other};
use crate::error::Error;
use crate::model::network::VirtualNetwork;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "pageToken")]
    page_token: Option<String>,
    /// The network just saved, and whether its instances need a
    /// reprovisioning to take the change.
    saved: Option<String>,
    reprovision: Option<String>,
}

#[derive(Template)]
#[template(path = "console/networks.html")]
struct ListPage {
    chrome: Option<Chrome>,
    /// The network just saved: its label, and how many instances must be
    /// reprovisioned to take the change (0: none).
    saved: Option<(String, u64)>,
    rows: Vec<VirtualNetwork>,
    next: Option<String>,
}

pub async fn list(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = or_page!(s, page_at(q.page_token.as_deref()));
    let nets = or_page!(s, app.network_list(TENANT, &page).await);
    let saved = match q.saved.as_deref() {
        Some(id) => {
            let n = or_page!(s, app.network_get(TENANT, id).await);
            let pending = if q.reprovision.is_some() {
                n.nb_instances
            } else {
                0
            };
            Some((n.label, pending))
        }
        None => None,
    };
    crate::console::view::render(&ListPage {
        chrome: Some(Chrome::of(&s, "networks")),
        saved,
        next: super::next_link("/console/networks", nets.next.as_ref()),
        rows: nets.items,
    })
}

/// The form's fields, as typed.
#[derive(Debug, Default)]
struct Values {
    label: String,
    use_defaults: bool,
    region: String,
    vpc: String,
    subnet: String,
    groups: String,
    auto_groups: bool,
    public_ip: bool,
}

#[derive(Template)]
#[template(path = "console/network_new.html")]
struct NewPage {
    chrome: Option<Chrome>,
    /// The network being edited; none for a new one.
    editing: Option<String>,
    v: Values,
    problem: Option<Problem>,
}

impl FormPage for NewPage {
    const FIELDS: &'static [&'static str] = &[
        "label",
        "awsRegion",
        "awsVpcId",
        "awsSubnetId",
        "awsSecurityGroups",
    ];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

pub async fn new(Extension(s): Extension<Session>) -> Response {
    crate::console::view::render(&NewPage {
        chrome: Some(Chrome::of(&s, "networks")),
        editing: None,
        v: Values {
            use_defaults: true,
            auto_groups: true,
            public_ip: true,
            ..Default::default()
        },
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
        use_defaults: forms::ticked(&f, "useDefaults"),
        region: forms::field(&f, "awsRegion"),
        vpc: forms::field(&f, "awsVpcId"),
        subnet: forms::field(&f, "awsSubnetId"),
        groups: forms::field(&f, "awsSecurityGroups"),
        auto_groups: forms::ticked(&f, "awsAutoCreateSecurityGroups"),
        public_ip: forms::ticked(&f, "awsAssignPublicIP"),
    };
    let mut doc = Map::new();
    doc.insert("label".into(), json!(v.label));
    for (k, val) in [
        ("awsRegion", &v.region),
        ("awsVpcId", &v.vpc),
        ("awsSubnetId", &v.subnet),
    ] {
        if !val.is_empty() {
            doc.insert(k.into(), json!(val));
        }
    }
    doc.insert(
        "awsSecurityGroups".into(),
        Value::from(forms::list(&f, "awsSecurityGroups")),
    );
    doc.insert("awsAutoCreateSecurityGroups".into(), json!(v.auto_groups));
    doc.insert("awsAssignPublicIP".into(), json!(v.public_ip));
    let made = match forms::decode::<VirtualNetwork>(doc) {
        Ok(n) => app.network_create(TENANT, n, v.use_defaults).await,
        Err(e) => Err(e),
    };
    match made {
        Ok(_) => see_other(&headers, "/console/networks"),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let page = NewPage {
                chrome: Some(Chrome::of(&s, "networks")),
                editing: None,
                v,
                problem: Some(Problem::of(&e)),
            };
            forms::refused(&page, &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}

/// The settings that reach a network's instances only when they are
/// reprovisioned.
const NEEDS_REPROVISION: &[&str] = &["awsAssignPublicIP", "awsSecurityGroups"];

pub async fn edit(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let n = or_page!(s, app.network_get(TENANT, &id).await);
    crate::console::view::render(&NewPage {
        chrome: Some(Chrome::of(&s, "networks")),
        editing: Some(id),
        v: Values {
            label: n.label,
            use_defaults: false,
            region: n.aws_region.unwrap_or_default(),
            vpc: n.aws_vpc_id.unwrap_or_default(),
            subnet: n.aws_subnet_id.unwrap_or_default(),
            groups: n.aws_security_groups.join(", "),
            auto_groups: n.aws_auto_create_security_groups,
            public_ip: n.aws_assign_public_ip,
        },
        problem: None,
    })
}

/// Saves the label, the security groups and the public-IP choice over the
/// network's whole document (its region, VPC and subnet can't change).
pub async fn update(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    let saved = async {
        let before = match serde_json::to_value(app.network_get(TENANT, &id).await?) {
            Ok(Value::Object(m)) => m,
            _ => return Err(Error::internal("a network is a JSON object")),
        };
        let mut doc = before.clone();
        doc.insert("label".into(), json!(forms::field(&f, "label")));
        doc.insert(
            "awsSecurityGroups".into(),
            Value::from(forms::list(&f, "awsSecurityGroups")),
        );
        doc.insert(
            "awsAutoCreateSecurityGroups".into(),
            json!(forms::ticked(&f, "awsAutoCreateSecurityGroups")),
        );
        doc.insert(
            "awsAssignPublicIP".into(),
            json!(forms::ticked(&f, "awsAssignPublicIP")),
        );
        let changed = NEEDS_REPROVISION
            .iter()
            .any(|k| before.get(*k) != doc.get(*k));
        let n: VirtualNetwork = forms::decode(doc)?;
        app.network_update(TENANT, &id, n).await?;
        Ok(changed)
    }
    .await;
    match saved {
        Ok(changed) => see_other(
            &headers,
            &format!(
                "/console/networks?saved={id}{}",
                if changed { "&reprovision=1" } else { "" }
            ),
        ),
        Err(e @ (Error::InvalidInput(_) | Error::Conflict(_))) => {
            let page = NewPage {
                chrome: Some(Chrome::of(&s, "networks")),
                editing: Some(id),
                v: Values {
                    label: forms::field(&f, "label"),
                    groups: forms::field(&f, "awsSecurityGroups"),
                    auto_groups: forms::ticked(&f, "awsAutoCreateSecurityGroups"),
                    public_ip: forms::ticked(&f, "awsAssignPublicIP"),
                    ..Default::default()
                },
                problem: Some(Problem::of(&e)),
            };
            forms::refused(&page, &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}
