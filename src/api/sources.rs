//! `/api/v1/sources`: the registries that feed Herald, the built-in `default` among them,
//! their read access and their reconciles (admins).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::ApiUser;
use super::{ApiJson, Items};
use crate::app::sources::{self, SourceInput};
use crate::domain::model::Source;
use crate::domain::registry::ReconcileStatus;
use crate::error::{ApiResult, ErrorBody};
use crate::AppState;

/// A new source: a name, a kind and either a bearer `token` or a `username` and `password`
/// (Basic auth), as the registry can send them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSource {
    name: Option<String>,
    /// `distribution`, `zot`, `harbor` or `gitlab`.
    kind: Option<String>,
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/sources", operation_id = "createSource", tag = "registry", security(("bearer" = [])),
    request_body = CreateSource,
    responses((status = 201, body = Source), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    ApiJson(input): ApiJson<CreateSource>,
) -> ApiResult<(StatusCode, Json<Source>)> {
    let input = SourceInput {
        name: input.name.unwrap_or_default(),
        kind: input.kind.unwrap_or_default(),
        token: input.token,
        username: input.username,
        password: input.password,
    };
    let source = sources::create(&state, &user, input).await?;
    Ok((StatusCode::CREATED, Json(source)))
}

#[utoipa::path(get, path = "/api/v1/sources", operation_id = "listSources", tag = "registry", security(("bearer" = [])),
    responses((status = 200, body = Items<Source>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
) -> ApiResult<Json<Items<Source>>> {
    Ok(Json(Items {
        items: sources::list(&state, &user).await?,
    }))
}

#[utoipa::path(delete, path = "/api/v1/sources/{name}", operation_id = "deleteSource", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    sources::delete(&state, &user, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A change to a source's registry access: a field left out stays as it is; `null` (or an
/// empty text) removes it. The password is never returned (`has_registry_password`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSource {
    /// The registry's address, e.g. `https://registry.example.org`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    registry_url: Option<Option<String>>,
    /// A username with read access (pull, and the catalog for reconciles).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    registry_username: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    registry_password: Option<Option<String>>,
    /// Read this source's events from NATS instead of HTTP (zot and distribution sources):
    /// the server, `nats://[user:password@]host:4222` (its credentials are sealed and never
    /// returned); `null` stops it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    nats_url: Option<Option<String>>,
    /// The subject the registry publishes to (wildcards allowed).
    nats_subject: Option<String>,
    /// The JetStream stream that captures the subject.
    nats_stream: Option<String>,
    /// The durable consumer's name (default `herald-<source>`).
    nats_consumer: Option<String>,
}

/// A field that is there, even as `null`: `Some(None)`.
fn present<'de, D>(d: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(d).map(Some)
}

#[utoipa::path(get, path = "/api/v1/sources/{name}", operation_id = "showSource", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "The source's name; `default` is the built-in one")),
    responses((status = 200, body = Source), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<Json<Source>> {
    Ok(Json(sources::get(&state, &user, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/sources/{name}", operation_id = "updateSource", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path)),
    request_body = UpdateSource,
    responses((status = 200, body = Source), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<UpdateSource>,
) -> ApiResult<Json<Source>> {
    let nats = sources::NatsInput {
        url: input.nats_url,
        subject: input.nats_subject,
        stream: input.nats_stream,
        consumer: input.nats_consumer,
    };
    let registry = sources::RegistryAccessInput {
        registry_url: input.registry_url,
        registry_username: input.registry_username,
        registry_password: input.registry_password,
    };
    let registry_given = registry.registry_url.is_some()
        || registry.registry_username.is_some()
        || registry.registry_password.is_some();
    if nats.is_empty() {
        return Ok(Json(sources::update(&state, &user, &name, registry).await?));
    }
    if registry_given {
        sources::update(&state, &user, &name, registry).await?;
    }
    Ok(Json(sources::set_nats(&state, &user, &name, nats).await?))
}

#[utoipa::path(post, path = "/api/v1/sources/{name}/reconcile", operation_id = "reconcileSource", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path, description = "The source's name; `default` is the built-in one")),
    responses((status = 202, body = ReconcileStatus, description = "Asked for; GET the same path for its progress"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Herald may not read this source's registry")))]
pub async fn reconcile(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<ReconcileStatus>)> {
    let status = sources::reconcile(&state, &user, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

#[utoipa::path(get, path = "/api/v1/sources/{name}/reconcile", operation_id = "reconcileStatus", tag = "registry", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = ReconcileStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reconcile_status(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    Path(name): Path<String>,
) -> ApiResult<Json<ReconcileStatus>> {
    Ok(Json(sources::reconcile_status(&state, &user, &name).await?))
}
