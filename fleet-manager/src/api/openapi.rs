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
        handlers::tenant::cloud_credentials_get, handlers::tenant::cloud_credentials_put,
        handlers::tenant::cloud_tags_get, handlers::tenant::cloud_tags_put,
        handlers::accounts::account_list, handlers::accounts::account_create, handlers::accounts::account_get,
        handlers::accounts::account_update, handlers::accounts::account_delete,
        handlers::networks::network_list, handlers::networks::network_create, handlers::networks::network_get,
        handlers::networks::network_update, handlers::networks::network_delete,
        handlers::templates::template_list, handlers::templates::template_create, handlers::templates::template_get,
        handlers::templates::template_update, handlers::templates::template_delete,
        handlers::instances::instance_list, handlers::instances::instance_create, handlers::instances::instance_get,
        handlers::instances::instance_update, handlers::instances::instance_delete,
        handlers::instances::instance_reprovision, handlers::instances::instance_deprovision, handlers::instances::instance_start,
        handlers::instances::instance_stop, handlers::instances::instance_restart_node, handlers::instances::instance_replay_setup,
        handlers::instances::instance_initial_password, handlers::instances::instance_reset_password,
        handlers::instances::instance_status, handlers::instances::instance_admin_api_key,
        handlers::snapshots::snapshot_list, handlers::snapshots::snapshot_create, handlers::snapshots::snapshot_get,
        handlers::snapshots::snapshot_delete, handlers::snapshots::snapshot_reprovision,
        handlers::backups::backup_list, handlers::backups::backup_take, handlers::backups::backup_get,
        handlers::backups::backup_delete, handlers::backups::backup_restore, handlers::backups::backup_verify,
        handlers::backups::backup_clone,
        handlers::images::image_list,
        handlers::futures::future_list, handlers::futures::future_get, handlers::futures::future_abort,
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
