//! The documented routes: the REST API's and ingest's, registered from their handlers'
//! OpenAPI annotations, so no route exists without being in the document.

use axum::extract::DefaultBodyLimit;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ingest;
use crate::api::{
    activities, deliveries, events, health, namespaces, sources, teams, tokens, users, webhooks,
};
use crate::AppState;

/// The OpenAPI document's frame; the paths come from the handlers' annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Herald", description = "Registry notifications in, namespace webhooks out."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "registry", description = "Where the registry sends its notifications"),
        (name = "namespaces"), (name = "webhooks"), (name = "deliveries"),
        (name = "teams"), (name = "users"), (name = "tokens"), (name = "audit"), (name = "operations")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "registry",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every documented route, registered from its handler's annotation: a route cannot exist
/// without being in the OpenAPI document.
fn documented_routes(gate: ingest::Gate, state: &AppState) -> OpenApiRouter<AppState> {
    let (schemas, paths, ingest_route) = routes!(ingest::receive);
    let (source_schemas, source_paths, source_route) = routes!(ingest::receive_source);
    let source_route = source_route
        .layer(DefaultBodyLimit::max(gate.max_bytes()))
        .layer(axum::middleware::from_fn_with_state(
            (gate.clone(), state.clone()),
            ingest::admit_source,
        ));
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes((
            schemas,
            paths,
            ingest_route
                .layer(DefaultBodyLimit::max(gate.max_bytes()))
                .layer(axum::middleware::from_fn_with_state(gate, ingest::admit)),
        ))
        .routes((source_schemas, source_paths, source_route))
        .routes(routes!(sources::list, sources::create))
        .routes(routes!(sources::show, sources::update, sources::delete))
        .routes(routes!(sources::reconcile, sources::reconcile_status))
        .routes(routes!(namespaces::list, namespaces::create))
        .routes(routes!(namespaces::show, namespaces::delete))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::set_header, webhooks::delete_header))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::recover))
        .routes(routes!(webhooks::ping))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::show))
        .routes(routes!(deliveries::retrigger))
        .routes(routes!(events::list))
        .routes(routes!(activities::list))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::me))
        .routes(routes!(users::update))
        .routes(routes!(teams::list, teams::create))
        .routes(routes!(teams::show))
        .routes(routes!(teams::set_member, teams::remove_member))
}

/// The documented routes and their OpenAPI document; `crate::http` serves both.
pub(crate) fn documented(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) =
        documented_routes(ingest::Gate::new(state), state).split_for_parts();
    document_json_body_errors(&mut openapi);
    (router, openapi)
}

/// Every operation that takes a JSON body answers malformed JSON with 400 and another
/// content type with 415 ([`ApiJson`]); documented here once rather than on each handler.
fn document_json_body_errors(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            let takes_json = op
                .request_body
                .as_ref()
                .is_some_and(|b| b.content.contains_key("application/json"));
            if !takes_json {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses
                .entry("400".into())
                .or_insert_with(|| error("The body is not valid JSON").into());
            responses
                .entry("415".into())
                .or_insert_with(|| error("The body is not application/json").into());
        }
    }
}
