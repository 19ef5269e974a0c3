//! The user's API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::{id_of, page, CsrfOnly};
use crate::auth;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn tokens(State(state): State<AppState>, web: WebUser) -> WebResult {
    tokens_page(&state, &web, StatusCode::OK, None).await
}

async fn tokens_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    new_token: Option<String>,
) -> WebResult {
    let tokens = state.store.list_tokens(web.user.id).await?;
    Ok(page(
        web,
        "tokens.html",
        status,
        context! {
            tokens,
            new_token,
            // The answer to the form: a reload shows the list, not a second new token.
            location => (status != StatusCode::OK).then_some("/tokens"),
        },
    ))
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
}

/// The new token is shown on this response only; it is never stored or shown again.
pub async fn create_token(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<TokenForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let token = auth::new_api_token();
    let label: String = form.label.trim().chars().take(200).collect();
    state
        .store
        .create_token(web.user.id, &label, &auth::token_hash(&token))
        .await?;
    tokens_page(&state, &web, StatusCode::CREATED, Some(token)).await
}

pub async fn revoke_token(
    State(state): State<AppState>,
    web: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    state
        .store
        .revoke_token(web.user.id, id_of(&id, "token")?)
        .await?;
    Ok(redirect_with("/tokens", "success", "Token revoked"))
}
