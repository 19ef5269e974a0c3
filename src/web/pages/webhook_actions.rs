//! What the API does to a webhook beyond editing it: rotate its secret, ping it, recover
//! failed deliveries. Each calls the same use case as the API (`crate::app`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Form;
use chrono::{NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;

use super::webhooks::{webhook_page, Extras};
use super::{CsrfOnly, Refused};
use crate::app;
use crate::app::access::WebhookRef::Id;
use crate::domain::delivery::DeliveryState;
use crate::web::{redirect_with, WebResult, WebUser};
use crate::AppState;

/// A new signing secret, shown on this answer only; a second rotation within the
/// 24-hour overlap is refused with the API's message.
pub async fn rotate_secret(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    match app::webhooks::rotate_secret(&state, &web.actor(), &ns, Id(&id))
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok((_, hook, secret)) => {
            // A v1a webhook shows no secret: its new public key is on the page.
            let what = if secret.is_some() {
                "signing secret"
            } else {
                "signing key (see its public key below)"
            };
            let extras = Extras {
                new_secret: secret,
                notice: Some(format!(
                    "Webhook '{}' has a new {what}; the previous one also signs for {} hours",
                    hook.name.as_str(),
                    app::webhooks::ROTATION_OVERLAP_HOURS
                )),
                ..Extras::default()
            };
            webhook_page(&state, &web, &ns, &id, StatusCode::CREATED, extras).await
        }
        Err(e) if e.status == StatusCode::CONFLICT => Ok(redirect_with(
            &format!("/namespaces/{ns}/webhooks/{id}"),
            "error",
            &format!("Not rotated: {}", e.message),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Sends a test event now and shows its delivery.
pub async fn ping(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let pinged = app::webhooks::ping(&state, &web.actor(), &ns, Id(&id)).await;
    let (_, hook, delivery, _) = match pinged {
        // A deploy webhook takes no test event: back to its page, saying why.
        Err(app::Error::Conflict(why)) => {
            return Ok(redirect_with(
                &format!("/namespaces/{ns}/webhooks/{id}"),
                "error",
                &why,
            ))
        }
        other => other?,
    };
    let d = &delivery.summary;
    let (kind, outcome) = match (d.state, d.last_status, &d.last_error) {
        (DeliveryState::Succeeded, Some(status), _) => ("success", format!("answered {status}")),
        (_, Some(status), _) => ("error", format!("answered {status}")),
        (_, None, Some(e)) => ("error", format!("failed: {e}")),
        _ => ("success", "queued".to_string()),
    };
    Ok(redirect_with(
        &format!("/namespaces/{ns}/webhooks/{id}/deliveries/{}", d.id),
        kind,
        &format!(
            "Test event sent to webhook '{}': {outcome}",
            hook.name.as_str()
        ),
    ))
}

#[derive(Deserialize)]
pub struct RecoverForm {
    #[serde(default)]
    csrf: String,
    /// A `datetime-local` value, read as UTC: `2026-11-26T08:30`.
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// `datetime-local` sends minutes, or seconds when the input has a step; both are UTC here.
fn parse_local(raw: &str) -> Option<chrono::DateTime<Utc>> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw.trim(), f).ok())
        .map(|t| Utc.from_utc_datetime(&t))
}

/// Puts the failed deliveries created since a time back in the queue.
pub async fn recover(
    State(state): State<AppState>,
    web: WebUser,
    Path((ns, id)): Path<(String, String)>,
    Form(form): Form<RecoverForm>,
) -> WebResult {
    web.check_csrf(&form.csrf)?;
    let back = format!("/namespaces/{ns}/webhooks/{id}");
    let values = BTreeMap::from([
        ("since".to_string(), form.since.clone()),
        ("until".to_string(), form.until.clone()),
    ]);
    // A refused form is shown on the webhook's page, its problem at its field.
    let refused = |field: &str, message: String| {
        Extras::refused(Refused::one("recover", field, message).with_values(values.clone()))
    };
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    let Some(since) = parse_local(&form.since) else {
        let extras = refused(
            "since",
            "choose the time (UTC) from which to recover failed deliveries".into(),
        );
        return webhook_page(&state, &web, &ns, &id, status, extras).await;
    };
    let until = match form.until.trim() {
        "" => None,
        raw => match parse_local(raw) {
            Some(t) => Some(t),
            None => {
                let extras = refused("until", "the end time is not a time".into());
                return webhook_page(&state, &web, &ns, &id, status, extras).await;
            }
        },
    };
    match app::webhooks::recover(&state, &web.actor(), &ns, Id(&id), since, until)
        .await
        .map_err(crate::error::AppError::from)
    {
        Ok((_, hook, requeued)) => Ok(redirect_with(
            &back,
            "success",
            &format!(
                "{requeued} failed deliveries of webhook '{}' are queued again",
                hook.name.as_str()
            ),
        )),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let field = e.field.clone().unwrap_or_else(|| "since".to_string());
            let extras = refused(&field, e.message);
            webhook_page(&state, &web, &ns, &id, status, extras).await
        }
        Err(e) => Err(e.into()),
    }
}
