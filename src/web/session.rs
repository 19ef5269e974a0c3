//! Signing in and out: session cookies, CSRF tokens, and slowing down password guessing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{redirect_with, render, WebError};
use crate::auth;
use crate::error::AppError;
use crate::store::User;
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

/// Failed sign-ins per username: after three, each further try must wait longer (1 s, 2 s,
/// 4 s ... up to a minute), which makes guessing slow without locking anyone out for long.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    fn wait_needed(&self, username: &str) -> Option<Duration> {
        let map = self.failures.lock().ok()?;
        let (count, last) = map.get(username)?;
        if *count < 3 {
            return None;
        }
        let delay = Duration::from_secs(1u64 << (count - 3).min(6));
        let elapsed = last.elapsed();
        (elapsed < delay).then(|| delay - elapsed)
    }

    fn failed(&self, username: &str) {
        if let Ok(mut map) = self.failures.lock() {
            if map.len() > 10_000 {
                map.retain(|_, (_, last)| last.elapsed() < Duration::from_secs(3600));
            }
            let entry = map
                .entry(username.to_string())
                .or_insert((0, Instant::now()));
            entry.0 += 1;
            entry.1 = Instant::now();
        }
    }

    fn succeeded(&self, username: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(username);
        }
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
    let mut response = render(
        "login.html",
        status,
        minijinja::context! { csrf => token, username => username, next => next, error => error },
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
    if let Some(wait) = state.login_throttle.wait_needed(&username) {
        let message = format!(
            "Too many failed sign-ins for this user; try again in {} s.",
            wait.as_secs() + 1
        );
        return login_form(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &username,
            &next,
            Some(message),
        );
    }
    let credentials = match state.store.user_credentials(&username).await {
        Ok(c) => c,
        Err(e) => return WebError::from(e).into_response(),
    };
    let (user, hash) = match credentials {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let valid = match state.password_gate.verify(form.password, hash).await {
        Ok(valid) => valid,
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
            let mut response = login_form(
                &state,
                &headers,
                StatusCode::SERVICE_UNAVAILABLE,
                &username,
                &next,
                Some(
                    "Herald is busy checking other sign-ins; please try again in a moment.".into(),
                ),
            );
            if let Some(secs) = e.retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return response;
        }
        Err(e) => return WebError(e).into_response(),
    };
    let user = match user {
        Some(user) if valid && !user.disabled => user,
        _ => {
            state.login_throttle.failed(&username);
            tracing::warn!(username = %username, "failed sign-in");
            return login_form(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                &username,
                &next,
                Some("Wrong username or password, or the user is disabled.".into()),
            );
        }
    };
    state.login_throttle.succeeded(&username);
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
    fn throttle_slows_down_after_three_failures() {
        let t = LoginThrottle::default();
        for _ in 0..3 {
            assert!(t.wait_needed("eve").is_none());
            t.failed("eve");
        }
        assert!(t.wait_needed("eve").is_some());
        assert!(t.wait_needed("bob").is_none(), "per user");
        t.succeeded("eve");
        assert!(t.wait_needed("eve").is_none());
    }

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/namespaces/acme")), "/namespaces/acme");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
