//! Signing in and out: session cookies and CSRF tokens. Passwords are checked, and guessing
//! slowed down, by `auth::sign_in_with_password`, shared with the API's Basic auth.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{redirect_with, render, WebError};
use crate::auth::{self, throttle::ThrottledBy, SignInError};
use crate::domain::model::User;
use crate::error::AppError;
use crate::AppState;

const SESSION_COOKIE: &str = "herald_session";
const LOGIN_CSRF_COOKIE: &str = "herald_login_csrf";
const SESSION_DAYS: i64 = 7;

/// A message carried across a redirect ("Webhook 'deploy' is now enabled").
#[derive(Debug, Clone, Serialize)]
pub struct Flash {
    pub kind: String,
    pub message: String,
}

/// The signed-in user of a page, with the session's CSRF token.
pub struct WebUser {
    pub user: User,
    pub csrf: String,
    pub flash: Option<Flash>,
}

impl WebUser {
    /// The signed-in user as the use cases know them.
    pub fn actor(&self) -> crate::app::Actor {
        crate::app::Actor::User(self.user.clone())
    }

    /// Every state-changing form carries the session's CSRF token.
    pub fn check_csrf(&self, given: &str) -> Result<(), WebError> {
        if bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(WebError(AppError::forbidden(
                "the form is out of date or was not sent by Herald (CSRF check failed); reload the page and try again",
            )))
        }
    }
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn is_secure(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    forwarded
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

fn set_cookie(response: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next: String =
                url::form_urlencoded::byte_serialize(parts.uri.path().as_bytes()).collect();
            Redirect::to(&format!("/login?next={next}")).into_response()
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let found = state
            .store
            .session(&auth::token_hash(&token), chrono::Utc::now())
            .await
            .map_err(|e| WebError::from(e).into_response())?;
        let Some((user, csrf)) = found else {
            return Err(to_login());
        };
        if let Some(actor) = parts.extensions.get::<super::Actor>() {
            actor.set(&user.username);
        }
        let flash = cookie(&parts.headers, "herald_flash").and_then(|raw| {
            let decoded: String = url::form_urlencoded::parse(format!("f={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?;
            let (kind, message) = decoded.split_once(':')?;
            Some(Flash {
                kind: kind.to_string(),
                message: message.to_string(),
            })
        });
        Ok(WebUser { user, csrf, flash })
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

/// Only local paths, so the login form cannot send anyone elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    username: &str,
    next: &str,
    error: Option<String>,
) -> Response {
    // Login CSRF: the form's token must match a cookie set with the form.
    let token = crate::secrets::random_token("");
    // A refused sign-in names the sign-in page's address, so a reload does not post again.
    let location = (status != StatusCode::OK).then(|| {
        let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        format!("/login?next={next}")
    });
    let mut response = render(
        "login.html",
        status,
        minijinja::context! {
            csrf => token, username => username, next => next, error => error, location,
        },
        false,
    );
    let secure = if is_secure(state, headers) {
        "; Secure"
    } else {
        ""
    };
    set_cookie(
        &mut response,
        format!("{LOGIN_CSRF_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Lax{secure}"),
    );
    response
}

pub async fn login_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    login_form(
        &state,
        &headers,
        StatusCode::OK,
        "",
        &safe_next(q.next.as_deref()),
        None,
    )
}

pub async fn login(
    State(state): State<AppState>,
    client: auth::ClientAddr,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(Some(&form.next));
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return login_form(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &form.username,
            &next,
            Some("The sign-in form expired; please try again.".into()),
        );
    }
    let username = form.username.trim().to_string();
    // The same throttle, gate and single rejection as the API's Basic auth.
    let refused = |status: StatusCode, message: String, retry_after: Option<u64>| {
        let mut response = login_form(&state, &headers, status, &username, &next, Some(message));
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    };
    let user = match crate::app::users::sign_in(&state, &username, form.password, client.0).await {
        Ok(user) => user,
        Err(SignInError::Throttled(t)) => {
            let whose = match t.by {
                ThrottledBy::User => "for this user",
                ThrottledBy::Address => "from this address",
            };
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed sign-ins {whose}; try again in {} s.",
                    t.secs()
                ),
                Some(t.secs()),
            );
        }
        Err(SignInError::Rejected) => {
            return refused(
                StatusCode::UNAUTHORIZED,
                "Wrong username or password, or the user is disabled.".into(),
                None,
            );
        }
        Err(SignInError::Overloaded(crate::auth::gate::GateError::Overloaded { wait })) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "Herald is busy checking other sign-ins; please try again in a moment.".into(),
                Some(crate::auth::throttle::whole_seconds(wait)),
            );
        }
        Err(e) => return WebError::from(crate::app::Error::from(e)).into_response(),
    };
    let token = crate::secrets::random_token("");
    let csrf = crate::secrets::random_token("");
    let expires = chrono::Utc::now() + chrono::Duration::days(SESSION_DAYS);
    if let Err(e) = state
        .store
        .create_session(&auth::token_hash(&token), user.id, &csrf, expires)
        .await
    {
        return WebError::from(e).into_response();
    }
    tracing::info!(user = %user.username, "signed in to the web UI");
    let mut response = Redirect::to(&next).into_response();
    let secure = if is_secure(&state, &headers) {
        "; Secure"
    } else {
        ""
    };
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            SESSION_DAYS * 86_400
        ),
    );
    set_cookie(
        &mut response,
        format!("{LOGIN_CSRF_COOKIE}=; Path=/login; Max-Age=0"),
    );
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    web: WebUser,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    web.check_csrf(&form.csrf)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state
            .store
            .delete_session(&auth::token_hash(&token))
            .await?;
    }
    let mut response = redirect_with("/login", "success", "You are signed out.");
    set_cookie(
        &mut response,
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/namespaces/acme")), "/namespaces/acme");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
