//! A delivery's page and retriggering it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::{context, Value};

use super::{delivery_view, id_of, load_webhook, page, webhook_row, CsrfOnly};
use crate::app;
use crate::app::access::WebhookRef::Id;
use crate::auth::policy::NamespaceAction;
use crate::domain::delivery::DeliveryState;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

/// JSON bodies indented, or `None` when the body is not JSON (then only the exact bytes).
fn pretty(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
}

#[derive(serde::Deserialize)]
pub struct DeliveryQuery {
    /// `?view=pretty` shows JSON bodies indented; by default they are shown as sent.
    #[serde(default)]
    view: String,
}

pub async fn delivery(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id, d)): Path<(String, String, String)>,
    Query(q): Query<DeliveryQuery>,
) -> WebResult {
    let pretty_view = q.view == "pretty";
    // The exact bytes unless the reader asked for indented JSON (and the body is JSON).
    let shown = |body: &str| -> (String, bool) {
        match pretty(body) {
            Some(p) if pretty_view => (p, true),
            Some(_) => (body.to_string(), true),
            None => (body.to_string(), false),
        }
    };
    let (access, hook) = load_webhook(&state, &web, &ns, &id, NamespaceAction::Read).await?;
    let detail = state
        .store
        .get_delivery(hook.id, id_of(&d, "delivery")?)
        .await?;
    let (request_body, request_is_json) = detail
        .request
        .as_ref()
        .map(|r| shown(&r.body))
        .unwrap_or_default();
    let mut any_json = request_is_json;
    let mut attempts: Vec<Value> = Vec::new();
    for a in detail.attempts.iter().rev() {
        let (body, is_json) = shown(&a.response_body);
        any_json |= is_json;
        attempts.push(context! { attempt => a, body });
    }
    Ok(page(
        &web,
        "delivery.html",
        StatusCode::OK,
        context! {
            namespace => access.namespace,
            webhook => webhook_row(&hook),
            delivery => delivery_view(&detail.summary, &hook.circuit),
            circuit_probe_at => hook
                .circuit
                .open_until
                .filter(|_| hook.circuit.state == crate::domain::control::CircuitState::Open)
                .and_then(chrono::DateTime::from_timestamp_millis),
            request => detail.request,
            request_body,
            attempts,
            pretty_view,
            any_json,
            can_retrigger => access.allows(&state, &web.actor(), NamespaceAction::Retrigger),
        },
    ))
}

pub async fn retrigger(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id, d)): Path<(String, String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let (_, hook, after, _) =
        app::deliveries::retrigger(&state, &web.actor(), &ns, Id(&id), &d).await?;
    let delivery = after.summary.id;
    let outcome = match (after.summary.last_status, &after.summary.last_error) {
        (Some(status), _) => format!("answered {status}"),
        (None, Some(e)) => format!("failed: {e}"),
        _ => "sent".to_string(),
    };
    let kind = if after.summary.state == DeliveryState::Succeeded {
        "success"
    } else {
        "error"
    };
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}/deliveries/{delivery}"),
        kind,
        &format!(
            "Delivery {delivery} of webhook '{}' retriggered: {outcome}",
            hook.name.as_str()
        ),
    ))
}
