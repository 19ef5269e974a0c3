//! The REST API under `/api/v1`: JSON in and out, one file per resource. `crate::http`
//! composes it with the UI and the operations routes.

mod activities;
mod deliveries;
mod events;
pub(crate) mod health;
pub(crate) mod namespaces;
mod sources;
mod teams;
mod tokens;
mod users;
mod webhooks;

pub use crate::app::webhook_view::WebhookView;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::header;
use axum::Router;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::AppError;
use crate::registry::ingest;
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
        .routes(routes!(sources::delete))
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

/// A JSON body whose problems come back as Herald's JSON errors: malformed JSON is a 400,
/// a wrong or unknown field a 422 naming it.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::payload_too_large("the request body is too large")
            } else {
                AppError::bad_request(format!("the body could not be read: {e}"))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// 415 unless the request says its body is JSON.
pub fn json_content_type(headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(AppError::unsupported_media_type(
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    Ok(())
}

/// A JSON body: malformed JSON is a 400, a wrong or unknown field a 422 naming it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            AppError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            AppError::invalid("body", inner.to_string())
        } else {
            AppError::invalid(path, inner.to_string())
        }
    })?;
    de.end()
        .map_err(|e| AppError::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The authenticated caller of an API route, as the use cases know them.
pub struct ApiUser(pub crate::app::Actor);

impl axum::extract::FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = user_from_bearer(state, &parts.headers).await?;
        Ok(ApiUser(crate::app::Actor::User(user)))
    }
}

/// The user behind `Authorization: Bearer <api token>`.
pub async fn user_from_bearer(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<crate::store::User, AppError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::unauthorized("an API token is required: Authorization: Bearer <token>")
        })?;
    let token = crate::auth::scheme::credentials(header, "Bearer").ok_or_else(|| {
        AppError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    Ok(crate::app::users::from_token(state, token).await?)
}

/// A list answer: `{"items": [...]}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// `?limit=&cursor=` of newest-first lists.
pub struct PageParams {
    pub limit: i64,
    pub cursor: Option<i64>,
}

impl PageParams {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 500;

    pub fn parse(query: Option<&str>) -> Result<Self, AppError> {
        let mut params = Self {
            limit: Self::DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "limit" => {
                    params.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            AppError::invalid(
                                "limit",
                                format!("limit must be a number from 1 to {}", Self::MAX_LIMIT),
                            )
                        })?;
                }
                "cursor" if !value.is_empty() => {
                    params.cursor = Some(value.parse().map_err(|_| {
                        AppError::invalid(
                            "cursor",
                            "cursor must be the `next` value of a previous page",
                        )
                    })?);
                }
                _ => {}
            }
        }
        Ok(params)
    }
}
