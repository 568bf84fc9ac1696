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
    dns: String,
    zone: String,
    https: String,
    http: String,
    mail: String,
}

impl Values {
    /// The exposure settings as typed.
    fn exposure(f: &Fields) -> Values {
        Values {
            dns: forms::field(f, "dnsStrategy"),
            zone: forms::field(f, "awsRoute53PublicIPZoneId"),
            https: forms::field(f, "httpsStrategy"),
            http: forms::field(f, "httpStrategy"),
            mail: forms::field(f, "contactMail"),
            ..Default::default()
        }
    }

    /// The exposure settings written over the network document `doc`;
    /// an empty choice is the API's default.
    fn put_exposure(&self, doc: &mut Map<String, Value>) {
        for (k, v) in [
            ("dnsStrategy", &self.dns),
            ("httpsStrategy", &self.https),
            ("httpStrategy", &self.http),
            ("awsRoute53PublicIPZoneId", &self.zone),
            ("contactMail", &self.mail),
        ] {
            doc.insert(k.into(), if v.is_empty() { Value::Null } else { json!(v) });
        }
    }
}

/// The choices of the exposure selects: (value, label).
const DNS: [(&str, &str); 2] = [
    ("NONE", "None"),
    (
        "VN_SPECIFIC_CLOUD_DNS_SERVICE",
        "A Route 53 zone of this network",
    ),
];
const HTTPS: [(&str, &str); 4] = [
    ("NONE", "None (HTTP only)"),
    ("SELF_SIGNED", "Self-signed certificate"),
    ("CUSTOM_CERTIFICATE", "Custom certificate"),
    ("LETSENCRYPT", "Let's Encrypt"),
];
const HTTP: [(&str, &str); 2] = [
    ("DISABLE", "Refuse plain HTTP"),
    ("REDIRECT", "Redirect to HTTPS"),
];

/// An enum of the API as its JSON name.
fn api_name<T: serde::Serialize>(v: T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

#[derive(Template)]
#[template(path = "console/network_new.html")]
struct NewPage {
    chrome: Option<Chrome>,
    /// The network being edited; none for a new one.
    editing: Option<String>,
    v: Values,
    dns: [(&'static str, &'static str); 2],
    https: [(&'static str, &'static str); 4],
    http: [(&'static str, &'static str); 2],
    problem: Option<Problem>,
}

impl NewPage {
    fn of(s: &Session, editing: Option<String>, v: Values, problem: Option<Problem>) -> NewPage {
        NewPage {
            chrome: Some(Chrome::of(s, "networks")),
            editing,
            v,
            dns: DNS,
            https: HTTPS,
            http: HTTP,
            problem,
        }
    }
}

impl FormPage for NewPage {
    const FIELDS: &'static [&'static str] = &[
        "label",
        "awsRegion",
        "awsVpcId",
        "awsSubnetId",
        "awsSecurityGroups",
        "dnsStrategy",
        "awsRoute53PublicIPZoneId",
        "httpsStrategy",
        "httpStrategy",
        "contactMail",
    ];

    fn problem(&self) -> &Option<Problem> {
        &self.problem
    }
}

pub async fn new(Extension(s): Extension<Session>) -> Response {
    let v = Values {
        use_defaults: true,
        auto_groups: true,
        public_ip: true,
        dns: DNS[0].0.into(),
        https: HTTPS[0].0.into(),
        http: HTTP[0].0.into(),
        ..Default::default()
    };
    crate::console::view::render(&NewPage::of(&s, None, v, None))
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
        ..Values::exposure(&f)
    };
    let mut doc = Map::new();
    v.put_exposure(&mut doc);
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
            forms::refused(&NewPage::of(&s, None, v, Some(Problem::of(&e))), &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}

/// The settings that reach a network's instances only when they are
/// reprovisioned.
const NEEDS_REPROVISION: &[&str] = &[
    "awsAssignPublicIP",
    "awsSecurityGroups",
    "dnsStrategy",
    "awsRoute53PublicIPZoneId",
    "httpsStrategy",
    "httpStrategy",
];

pub async fn edit(
    State(app): State<App>,
    Extension(s): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let n = or_page!(s, app.network_get(TENANT, &id).await);
    let v = Values {
        use_defaults: false,
        region: n.aws_region.unwrap_or_default(),
        vpc: n.aws_vpc_id.unwrap_or_default(),
        subnet: n.aws_subnet_id.unwrap_or_default(),
        groups: n.aws_security_groups.join(", "),
        auto_groups: n.aws_auto_create_security_groups,
        public_ip: n.aws_assign_public_ip,
        dns: api_name(n.dns_strategy),
        zone: n.aws_route53_public_ip_zone_id.unwrap_or_default(),
        https: api_name(n.https_strategy),
        http: api_name(n.http_strategy),
        mail: n.contact_mail.unwrap_or_default(),
        label: n.label,
    };
    crate::console::view::render(&NewPage::of(&s, Some(id), v, None))
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
        Values::exposure(&f).put_exposure(&mut doc);
        let n: VirtualNetwork = forms::decode(doc)?;
        // Both sides as the API writes them (a null and an absent field are
        // the same setting).
        let after = serde_json::to_value(&n).map_err(Error::internal)?;
        let changed = NEEDS_REPROVISION
            .iter()
            .any(|k| before.get(*k) != after.get(*k));
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
            let v = Values {
                label: forms::field(&f, "label"),
                groups: forms::field(&f, "awsSecurityGroups"),
                auto_groups: forms::ticked(&f, "awsAutoCreateSecurityGroups"),
                public_ip: forms::ticked(&f, "awsAssignPublicIP"),
                ..Values::exposure(&f)
            };
            forms::refused(&NewPage::of(&s, Some(id), v, Some(Problem::of(&e))), &e)
        }
        Err(e) => error_page(Some(&s), e),
    }
}
