//! The signed-in user's own account: changing their password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Form;
use serde::Deserialize;

use super::{page, Refused};
use crate::app;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

pub async fn account(State(_state): State<AppState>, web: WebUser) -> WebResult {
    Ok(account_page(&web, StatusCode::OK, Refused::default()))
}

fn account_page(web: &WebUser, status: StatusCode, refused: Refused) -> axum::response::Response {
    page(
        web,
        "account.html",
        status,
        refused.context(status, "/account"),
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    web: WebUser,
    Form(form): Form<PasswordForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    match app::users::change_own_password(
        &state,
        &web.user,
        form.current_password,
        form.new_password,
    )
    .await
    .map_err(crate::error::AppError::from)
    {
        Ok(()) => Ok(redirect_with(
            "/account",
            "success",
            "Your password is changed",
        )),
        Err(e) if e.status.is_client_error() => {
            let field = e
                .field
                .clone()
                .unwrap_or_else(|| "new_password".to_string());
            let refused = Refused::one("change-password", field, e.message);
            Ok(account_page(&web, e.status, refused))
        }
        Err(e) => Err(e.into()),
    }
}
