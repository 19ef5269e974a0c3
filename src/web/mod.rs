//! The web UI: server-rendered pages from templates built into the binary, one stylesheet,
//! a few lines of JavaScript. It uses the same store and the same policy as the REST API.

mod chart;
mod pages;
mod session;

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use serde::Serialize;

use crate::error::AppError;
use crate::AppState;

pub use session::WebUser;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::dashboard::dashboard))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/namespaces", post(pages::namespaces::create_namespace))
        .route("/namespaces/{ns}", get(pages::namespaces::namespace))
        .route(
            "/namespaces/{ns}/delete",
            post(pages::namespaces::delete_namespace),
        )
        .route(
            "/namespaces/{ns}/webhooks",
            post(pages::webhooks::create_webhook),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}",
            get(pages::webhooks::webhook),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/edit",
            get(pages::webhooks::edit_page).post(pages::webhooks::edit_webhook),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/toggle",
            post(pages::webhooks::toggle_webhook),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/delete",
            post(pages::webhooks::delete_webhook),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/headers",
            post(pages::headers::set_header),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/headers/{name}/delete",
            post(pages::headers::delete_header),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/deliveries/{d}",
            get(pages::deliveries::delivery),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/deliveries/{d}/retrigger",
            post(pages::deliveries::retrigger),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/rotate-secret",
            post(pages::webhook_actions::rotate_secret),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/ping",
            post(pages::webhook_actions::ping),
        )
        .route(
            "/namespaces/{ns}/webhooks/{id}/recover",
            post(pages::webhook_actions::recover),
        )
        .route("/events", get(pages::events::events))
        .route("/account", get(pages::account::account))
        .route("/account/password", post(pages::account::change_password))
        .route("/users/{name}/password", post(pages::users::reset_password))
        .route(
            "/teams",
            get(pages::teams::teams).post(pages::teams::create_team),
        )
        .route("/teams/{team}", get(pages::teams::team))
        .route("/teams/{team}/members", post(pages::teams::set_member))
        .route(
            "/teams/{team}/members/{user}/delete",
            post(pages::teams::remove_member),
        )
        .route(
            "/users",
            get(pages::users::users).post(pages::users::create_user),
        )
        .route("/users/{name}", post(pages::users::update_user))
        .route(
            "/sources",
            get(pages::sources::sources).post(pages::sources::create_source),
        )
        .route("/sources/{name}", get(pages::sources::source))
        .route(
            "/sources/{name}/delete",
            post(pages::sources::delete_source),
        )
        .route(
            "/sources/{name}/registry",
            post(pages::sources::update_registry),
        )
        .route("/sources/{name}/nats", post(pages::sources::update_nats))
        .route("/sources/{name}/reconcile", post(pages::sources::reconcile))
        .route(
            "/tokens",
            get(pages::tokens::tokens).post(pages::tokens::create_token),
        )
        .route("/tokens/{id}/delete", post(pages::tokens::revoke_token))
        .route("/activity", get(pages::activity::activity))
        .route("/static/{file}", get(static_file))
        .layer(axum::middleware::from_fn(log_actions))
}

/// Who signed in for this request, filled in by the [`WebUser`] extractor, so that
/// [`log_actions`] can name them.
#[derive(Clone, Default)]
pub struct Actor(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl Actor {
    pub fn set(&self, username: &str) {
        if let Ok(mut a) = self.0.lock() {
            *a = Some(username.to_string());
        }
    }
}

/// Every state-changing UI request is logged with who made it and how it ended, as the
/// API's handlers log theirs: one place, so no form can be left out.
async fn log_actions(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let actor = Actor::default();
    let path = request.uri().path().to_string();
    request.extensions_mut().insert(actor.clone());
    let response = next.run(request).await;
    if let Some(by) = actor.0.lock().ok().and_then(|a| a.clone()) {
        tracing::info!(by = %by, path = %path, status = response.status().as_u16(), "web action");
    }
    response
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("namespace.html", include_str!("templates/namespace.html")),
    ("webhook.html", include_str!("templates/webhook.html")),
    (
        "webhook_edit.html",
        include_str!("templates/webhook_edit.html"),
    ),
    ("forms.html", include_str!("templates/forms.html")),
    ("delivery.html", include_str!("templates/delivery.html")),
    ("teams.html", include_str!("templates/teams.html")),
    ("team.html", include_str!("templates/team.html")),
    ("users.html", include_str!("templates/users.html")),
    ("sources.html", include_str!("templates/sources.html")),
    ("source.html", include_str!("templates/source.html")),
    ("tokens.html", include_str!("templates/tokens.html")),
    ("activity.html", include_str!("templates/activity.html")),
    ("error.html", include_str!("templates/error.html")),
    ("events.html", include_str!("templates/events.html")),
    ("account.html", include_str!("templates/account.html")),
    ("health.html", include_str!("templates/health.html")),
    (
        "filters_fields.html",
        include_str!("templates/filters_fields.html"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; a broken one is a build bug caught by tests.
            if let Err(e) = env.add_template(name, source) {
                panic!("template {name} does not compile: {e}");
            }
        }
        env.add_filter("ago", ago);
        env.add_filter("utc", utc);
        env
    })
}

/// "3 min ago" for an RFC 3339 timestamp.
fn ago(value: String) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(&value) else {
        return value;
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    match secs {
        s if s < 5 => "just now".into(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// "2026-11-26 21:23 UTC" for an RFC 3339 timestamp.
fn utc(value: String) -> String {
    chrono::DateTime::parse_from_rfc3339(&value)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or(value)
}

/// Renders a template with `status`; clears the flash cookie once shown.
pub fn render(
    template: &str,
    status: StatusCode,
    ctx: impl Serialize,
    clear_flash: bool,
) -> Response {
    let html = env().get_template(template).and_then(|t| t.render(ctx));
    match html {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            if clear_flash {
                response.headers_mut().append(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "herald_flash=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
                    ),
                );
            }
            response
        }
        Err(e) => {
            tracing::error!(template, error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log",
            )
                .into_response()
        }
    }
}

/// A redirect that carries a message for the next page.
pub fn redirect_with(to: &str, kind: &str, message: &str) -> Response {
    let value: String =
        url::form_urlencoded::byte_serialize(format!("{kind}:{message}").as_bytes()).collect();
    let mut response = Redirect::to(to).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "herald_flash={value}; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Errors in the UI are pages, not JSON.
pub struct WebError(pub AppError);

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(e: crate::store::StoreError) -> Self {
        Self(e.into())
    }
}

impl From<crate::auth::policy::Denied> for WebError {
    fn from(d: crate::auth::policy::Denied) -> Self {
        Self(d.into())
    }
}

impl From<crate::app::Error> for WebError {
    fn from(e: crate::app::Error) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        render(
            "error.html",
            self.0.status,
            minijinja::context! { status => self.0.status.as_u16(), message => self.0.message },
            false,
        )
    }
}

pub type WebResult = Result<Response, WebError>;

async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static str, &str) = match file.as_str() {
        "app.css" => (include_str!("static/app.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("static/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        let env = super::env();
        for (name, _) in super::TEMPLATES {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }
}
