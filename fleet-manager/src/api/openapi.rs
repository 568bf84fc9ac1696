//! The OpenAPI document of the public API, generated from the handlers'
//! annotations as they are routed ([`super::handlers::routes`]). A copy is
//! checked in at `fleet-manager/openapi.json`; a test fails when the two
//! differ.

use super::error::ApiErrorBody;
use super::handlers;
use crate::app::App;
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "Fleet Manager public API", description = "Wire-compatible with the public Fleet Manager API (`dataikuapi.fmclient`). Every call needs HTTP Basic with an API key id and secret. Errors are `{errorType, message}`."),
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

/// `doc` as served and checked in: pretty JSON with a final newline.
pub fn render(doc: &utoipa::openapi::OpenApi) -> String {
    let mut s = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// The document of the public API, as served at `/api/public/openapi.json`.
pub fn document() -> String {
    render(&api().1)
}
