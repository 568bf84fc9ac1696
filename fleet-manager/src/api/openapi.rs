//! The OpenAPI document of the public API, generated from the handlers'
//! annotations as they are routed ([`super::handlers::routes`]). A copy is
//! checked in at `fleet-manager/openapi.json`; a test fails when the two
//! differ.

use super::error::ApiErrorBody;
use super::handlers;
use crate::app::App;
use axum::Router;
use serde_json::{Value, json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "Fleet Manager public API", description = "Wire-compatible with the public Fleet Manager API (`dataikuapi.fmclient`). Every call needs HTTP Basic with an API key id and secret; each operation's `security` names the role it needs (`viewer`, `operator` or `admin`, each including the one before). Errors are `{errorType, message}`."),
    servers((url = "/api/public")),
    components(schemas(ApiErrorBody)),
    security(("apiKey" = [])),
)]
pub struct ApiDoc;

/// Adds what every operation shares: the Basic auth scheme and the error
/// responses any call can give.
struct Common;

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name(
                    ApiErrorBody::name(),
                )))
                .build(),
        )
        .build()
        .into()
}

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "API key id as the user name, its secret as the password",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops: [(&mut Option<Operation>, bool); 4] = [
                (&mut item.get, path.contains("/actions/")),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.delete, true),
            ];
            for (op, changes) in ops.into_iter() {
                let Some(op) = op else { continue };
                let r = &mut op.responses.responses;
                if changes {
                    r.entry("409".into()).or_insert_with(|| {
                        error_response(
                            "the object's state does not allow it: another operation is running on it, it is not provisioned, it is in use, or a secret its mode needs is not stored",
                        )
                    });
                }
                for (code, what) in [
                    (
                        "400",
                        "bad input: malformed JSON, wrong types, unknown enum values, missing fields, invalid ids",
                    ),
                    (
                        "401",
                        "no API key, a wrong one, an expired one, or one of a disabled user",
                    ),
                    (
                        "403",
                        "the key's role is below the one this operation declares in `security`",
                    ),
                    ("404", "an id in the path does not exist"),
                ] {
                    r.entry(code.to_string())
                        .or_insert_with(|| error_response(what));
                }
                if op.request_body.is_some() {
                    r.entry("413".into())
                        .or_insert_with(|| error_response("the body is over the size limit"));
                    r.entry("415".into())
                        .or_insert_with(|| error_response("the body is not JSON"));
                }
            }
        }
    }
}

/// The routes of the public API (relative to `/api/public`) and their
/// document: [`ApiDoc`] with every handler's path, and what all operations
/// share added once they are all there.
pub fn api() -> (Router<App>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(handlers::routes())
        .split_for_parts();
    Common.modify(&mut doc);
    (router, doc)
}

/// `doc` as served and checked in, with [`refine`]'s rules: pretty JSON
/// with a final newline.
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut v = serde_json::to_value(doc).unwrap_or_default();
    refine(&mut v);
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// `{"if": field == value, "then": then}`.
fn when(field: &str, value: Value, then: Value) -> Value {
    when_all(&[(field, value)], then)
}

/// `{"if": every field == its value, "then": then}`.
fn when_all(conds: &[(&str, Value)], then: Value) -> Value {
    let props: serde_json::Map<String, Value> = conds
        .iter()
        .map(|(f, v)| (f.to_string(), json!({"const": v})))
        .collect();
    let required: Vec<&str> = conds.iter().map(|(f, _)| *f).collect();
    json!({"if": {"properties": props, "required": required}, "then": then})
}

/// `field` must be given, as a string (the schema of its property says more).
fn needs(field: &str) -> Value {
    json!({"required": [field], "properties": {field: {"type": "string", "minLength": 1}}})
}

/// The rules between fields that the models' validation applies and
/// utoipa's annotations can't state (JSON Schema's `if`/`then`): a mode
/// that needs another field. Each names the check it mirrors. Creation
/// also needs the secrets that an update may leave out (the stored one is
/// kept), so `POST` bodies get schemas of their own (`…New`).
fn refine(doc: &mut Value) {
    let keypair_secret = when(
        "awsAuthenticationMode",
        json!("KEYPAIR"),
        needs("awsSecretAccessKey"),
    );
    let inline_secret = when_all(
        &[
            ("dataikuAwsAPIAccessMode", json!("KEYPAIR")),
            ("dataikuAwsKeypairStorageMode", json!("INLINE_ENCRYPTED")),
        ],
        needs("dataikuAwsSecretAccessKey"),
    );
    let keep_something = json!({"anyOf": [
        {"not": {"required": ["keepLast"]}},
        {"required": ["keepLast"], "properties": {"keepLast": {"minimum": 1}}},
        {"required": ["keepDaily"], "properties": {"keepDaily": {"minimum": 1}}},
        {"required": ["keepWeekly"], "properties": {"keepWeekly": {"minimum": 1}}},
    ]});
    let rules: Vec<(&str, Vec<Value>)> = vec![
        // model::account::CloudAccount::validate
        (
            "CloudAccount",
            vec![
                when(
                    "awsAuthenticationMode",
                    json!("IAM_ROLE"),
                    needs("awsIAMRoleARN"),
                ),
                when(
                    "awsAuthenticationMode",
                    json!("KEYPAIR"),
                    needs("awsAccessKeyId"),
                ),
            ],
        ),
        // model::tenant::CloudCredentials::validate
        (
            "CloudCredentials",
            vec![
                when(
                    "awsAuthenticationMode",
                    json!("IAM_ROLE"),
                    needs("awsIAMRoleARN"),
                ),
                when(
                    "awsAuthenticationMode",
                    json!("KEYPAIR"),
                    needs("awsAccessKeyId"),
                ),
                when("licenseMode", json!("STATIC"), needs("license")),
            ],
        ),
        // model::network::VirtualNetwork::validate
        (
            "VirtualNetwork",
            vec![
                when(
                    "dnsStrategy",
                    json!("VN_SPECIFIC_CLOUD_DNS_SERVICE"),
                    json!({"anyOf": [
                        {"required": ["awsRoute53PrivateIPZoneId"], "properties": {"awsRoute53PrivateIPZoneId": {"type": "string"}}},
                        {"required": ["awsRoute53PublicIPZoneId"], "properties": {"awsRoute53PublicIPZoneId": {"type": "string"}}},
                    ]}),
                ),
                when(
                    "httpsStrategy",
                    json!("LETSENCRYPT"),
                    json!({"required": ["contactMail"], "properties": {"contactMail": {"type": "string", "pattern": "@", "maxLength": 254}}}),
                ),
            ],
        ),
        // model::template::InstanceTemplate::validate
        (
            "InstanceTemplate",
            vec![
                when_all(
                    &[
                        ("dataikuAwsAPIAccessMode", json!("KEYPAIR")),
                        ("dataikuAwsKeypairStorageMode", json!("INLINE_ENCRYPTED")),
                    ],
                    needs("dataikuAwsAccessKeyId"),
                ),
                when_all(
                    &[
                        ("dataikuAwsAPIAccessMode", json!("KEYPAIR")),
                        ("dataikuAwsKeypairStorageMode", json!("AWS_SECRETS_MANAGER")),
                    ],
                    needs("dataikuAwsSecretAccessKeyAwsSecretName"),
                ),
            ],
        ),
        // model::instance::Instance::validate
        (
            "Instance",
            vec![
                when(
                    "volumesEncryption",
                    json!("CUSTOM"),
                    needs("volumesEncryptionKey"),
                ),
                when(
                    "enableAutomatedSnapshot",
                    json!(true),
                    json!({"required": ["automatedSnapshotPeriod"], "properties": {"automatedSnapshotPeriod": {"type": "integer", "minimum": 1}}}),
                ),
            ],
        ),
        // model::instance::BackupPolicy::validate
        (
            "BackupPolicy",
            vec![when("enabled", json!(true), keep_something)],
        ),
    ];
    for (name, all_of) in rules {
        let schemas = &mut doc["components"]["schemas"];
        if let Some(schema) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert("allOf".into(), Value::Array(all_of));
        }
    }
    // model::setup_action::SetupAction::validate: one branch per type.
    if let Some(schema) = doc["components"]["schemas"]
        .get_mut("SetupAction")
        .and_then(Value::as_object_mut)
    {
        schema.insert(
            "anyOf".into(),
            Value::Array(crate::model::setup_action::params_rules()),
        );
    }
    // model::rollout: an action's variant takes only its own fields, and a
    // selector names at least one criterion or `all: true`.
    if let Some(variants) = doc["components"]["schemas"]["RolloutAction"]["oneOf"].as_array_mut() {
        for v in variants {
            v["additionalProperties"] = json!(false);
        }
    }
    if let Some(schema) = doc["components"]["schemas"]
        .get_mut("Selector")
        .and_then(Value::as_object_mut)
    {
        let mut any: Vec<Value> = ["instanceIds", "fmTags"]
            .iter()
            .map(|k| json!({"required": [k], "properties": {*k: {"type": "array", "minItems": 1}}}))
            .collect();
        for k in [
            "instanceSettingsTemplateId",
            "virtualNetworkId",
            "imageId",
            "dssNodeType",
        ] {
            any.push(json!({"required": [k], "properties": {k: {"not": {"type": "null"}}}}));
        }
        any.push(json!({"required": ["all"], "properties": {"all": {"const": true}}}));
        schema.insert("anyOf".into(), Value::Array(any));
    }
    // Creation bodies: the update's schema and the secrets a mode needs.
    for (path, name, extra) in [
        (
            "/tenants/{tenantId}/cloud-accounts",
            "CloudAccount",
            keypair_secret,
        ),
        (
            "/tenants/{tenantId}/instance-settings-templates",
            "InstanceTemplate",
            inline_secret,
        ),
    ] {
        let new = format!("{name}New");
        doc["components"]["schemas"][&new] = json!({
            "description": format!("A new {name}: as updated, and the secret its mode needs."),
            "allOf": [{"$ref": format!("#/components/schemas/{name}")}, extra],
        });
        doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"] =
            json!({"$ref": format!("#/components/schemas/{new}")});
    }
}

/// The document of the public API, as served at `/api/public/openapi.json`.
pub fn document() -> String {
    render(&api().1)
}
