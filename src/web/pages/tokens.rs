//! The user's API tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::context;
use serde::Deserialize;

use super::{id_of, page, CsrfOnly};
use crate::app;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn tokens(State(state): State<AppState>, web: WebUser) -> WebResult {
    tokens_page(&state, &web, StatusCode::OK, None, None).await
}

async fn tokens_page(
    state: &AppState,
    web: &WebUser,
    status: StatusCode,
    new_token: Option<String>,
    label_error: Option<String>,
) -> WebResult {
    let tokens = app::tokens::list(state, &web.actor(), None).await?;
    let errors: std::collections::BTreeMap<&str, String> =
        label_error.into_iter().map(|m| ("label", m)).collect();
    Ok(page(
        web,
        "tokens.html",
        status,
        context! {
            tokens,
            new_token,
            errors,
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
    match app::tokens::create(&state, &web.actor(), None, &form.label).await {
        Ok((_, token)) => tokens_page(&state, &web, StatusCode::CREATED, Some(token), None).await,
        Err(app::Error::Invalid(problems)) => {
            let message = problems.into_iter().next().map(|p| p.message);
            tokens_page(
                &state,
                &web,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                message,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    web: WebUser,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    app::tokens::revoke(&state, &web.actor(), id_of(&id, "token")?).await?;
    Ok(redirect_with("/tokens", "success", "Token revoked"))
}
