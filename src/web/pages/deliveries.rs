//! A delivery's page and retriggering it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use minijinja::{context, Value};

use super::{id_of, load_webhook, page, webhook_row, CsrfOnly};
use crate::auth::policy::NamespaceAction;
use crate::store::Audit;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

/// JSON bodies are shown indented; anything else as it is.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

pub async fn delivery(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id, d)): Path<(String, String, String)>,
) -> WebResult {
    let (access, hook) = load_webhook(&state, &web, &ns, &id, NamespaceAction::Read).await?;
    let detail = state
        .store
        .get_delivery(hook.id, id_of(&d, "delivery")?)
        .await?;
    let request_body = detail.request.as_ref().map(|r| pretty(&r.body));
    let attempts: Vec<Value> = detail
        .attempts
        .iter()
        .rev()
        .map(|a| context! { attempt => a, body => pretty(&a.response_body) })
        .collect();
    Ok(page(
        &web,
        "delivery.html",
        StatusCode::OK,
        context! {
            namespace => access.namespace,
            webhook => webhook_row(&hook),
            delivery => detail.summary,
            request => detail.request,
            request_body,
            attempts,
            can_retrigger => access.allows(&state, &web.user, NamespaceAction::Retrigger),
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
    let (access, hook) = load_webhook(&state, &web, &ns, &id, NamespaceAction::Retrigger).await?;
    let delivery = id_of(&d, "delivery")?;
    state.store.get_delivery(hook.id, delivery).await?;
    let audit = Audit::new(&web.user.username, "webhook.delivery.retrigger")
        .detail(format!("delivery {delivery}"));
    state
        .store
        .record_activity(&access.namespace.name, Some(hook.id), &audit)
        .await?;
    state.dispatcher.retrigger(delivery).await?;
    let after = state.store.get_delivery(hook.id, delivery).await?;
    let outcome = match (after.summary.last_status, &after.summary.last_error) {
        (Some(status), _) => format!("answered {status}"),
        (None, Some(e)) => format!("failed: {e}"),
        _ => "sent".to_string(),
    };
    let kind = if after.summary.state == crate::store::DeliveryState::Succeeded {
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
