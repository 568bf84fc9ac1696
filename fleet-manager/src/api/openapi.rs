//! The OpenAPI document of the public API, generated from the handlers'
//! annotations. A copy is checked in at `fleet-manager/openapi.json`; a test
//! fails when the two differ.

use super::error::ApiErrorBody;
use super::handlers;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "Fleet Manager public API", description = "Wire-compatible with the public Fleet Manager API (`dataikuapi.fmclient`). Every call needs HTTP Basic with an API key id and secret. Errors are `{errorType, message}`."),
    servers((url = "/api/public")),
    paths(
        handlers::cloud_credentials_get, handlers::cloud_credentials_put,
        handlers::cloud_tags_get, handlers::cloud_tags_put,
        handlers::account_list, handlers::account_create, handlers::account_get,
        handlers::account_update, handlers::account_delete,
        handlers::network_list, handlers::network_create, handlers::network_get,
        handlers::network_update, handlers::network_delete,
        handlers::template_list, handlers::template_create, handlers::template_get,
        handlers::template_update, handlers::template_delete,
        handlers::instance_list, handlers::instance_create, handlers::instance_get,
        handlers::instance_update, handlers::instance_delete,
        handlers::instance_reprovision, handlers::instance_deprovision, handlers::instance_start,
        handlers::instance_stop, handlers::instance_restart_node, handlers::instance_replay_setup,
        handlers::instance_initial_password, handlers::instance_reset_password,
        handlers::instance_status, handlers::instance_admin_api_key,
        handlers::snapshot_list, handlers::snapshot_create, handlers::snapshot_get,
        handlers::snapshot_delete, handlers::snapshot_reprovision,
        handlers::backup_list, handlers::backup_take, handlers::backup_get,
        handlers::backup_delete, handlers::backup_restore, handlers::backup_verify,
        handlers::backup_clone,
        handlers::image_list,
        handlers::future_list, handlers::future_get, handlers::future_abort,
    ),
    components(schemas(ApiErrorBody)),
    modifiers(&Common),
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
        for item in openapi.paths.paths.values_mut() {
            let ops: [&mut Option<Operation>; 4] = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let r = &mut op.responses.responses;
                for (code, what) in [
                    (
                        "400",
                        "bad input: malformed JSON, wrong types, unknown enum values, missing fields, invalid ids",
                    ),
                    ("401", "no API key, or a wrong one"),
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

/// The document as served and checked in: pretty JSON with a final newline.
pub fn document() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}
