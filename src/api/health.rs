//! What operators poll: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::metrics::StateLabel;
use crate::AppState;

/// Alive: the process answers. Nothing else is checked, so a supervisor restarts only a hung process.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "commit": crate::COMMIT,
    }))
}

/// Ready: the database answers, every migration is applied, the store's writer is not
/// stuck on one batch, the delivery dispatcher's claim loop goes round, each within
/// `--ready-stall-timeout`, and envelopes are being stored (not three failures in a row,
/// the last within that time). A registry Herald cannot read is named in `detail.registries`
/// without making Herald unready: events are still stored and delivered.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", tag = "operations", responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let stall = state.config.ready_stall_timeout;
    let database = state.store.ping().await.is_ok();
    let migrations = database && state.store.migrations_current().await.unwrap_or(false);
    let busy = state.store.writer_busy_for();
    let writer = busy.is_none_or(|busy| busy < stall);
    if !writer {
        tracing::warn!(busy = %humantime::format_duration(busy.unwrap_or_default()), "the database writer is stuck on one batch; not ready");
    }
    // An API-only process runs no workers; that is not a reason to take it out of service.
    let dispatcher = !state.config.runs_workers() || state.dispatcher.is_alive(stall);
    if !dispatcher {
        tracing::warn!("the delivery dispatcher's claim loop has not gone round; not ready");
    }
    let ingest_error = state.ingest_health.failing(stall);
    if let Some(error) = &ingest_error {
        tracing::warn!(error = %error, "envelopes are not being stored; not ready");
    }
    let ingest = ingest_error.is_none();
    let ready = database && migrations && writer && dispatcher && ingest;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "database": database,
            "migrations": migrations,
            "writer": writer,
            "dispatcher": dispatcher,
            "ingest": ingest,
        },
    });
    if let Some(error) = ingest_error {
        body["detail"]["ingest"] = serde_json::json!(error);
    }
    let registries = state.registries.failing();
    if !registries.is_empty() {
        body["detail"]["registries"] = registries
            .into_iter()
            .map(|(source, error)| (source, serde_json::Value::String(error)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "operations", responses((status = 200, description = "Prometheus metrics: OpenMetrics text when the Accept header asks for it, else the classic text format 0.0.4", content(
        (String = "text/plain; version=0.0.4"),
        (String = "application/openmetrics-text; version=1.0.0")))))]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    // The queue is shared by every process: read it from the database at scrape time.
    match state.store.queue_stats().await {
        Ok(q) => {
            let m = &state.metrics;
            m.queue_depth
                .get_or_create(&StateLabel {
                    state: "pending".into(),
                })
                .set(q.pending);
            m.queue_depth
                .get_or_create(&StateLabel {
                    state: "retrying".into(),
                })
                .set(q.retrying);
            let age = q
                .oldest_due_at
                .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            m.oldest_due_age.set(age);
        }
        Err(e) => tracing::warn!(error = %e, "queue figures unavailable for /metrics"),
    }
    match state
        .store
        .webhook_figures(crate::metrics::FAILING_WEBHOOKS_LISTED)
        .await
    {
        Ok(f) => {
            let m = &state.metrics;
            for (name, count) in [
                ("enabled", f.enabled),
                ("disabled", f.disabled),
                ("failing", f.failing),
                ("circuit_open", f.circuit_open),
            ] {
                m.webhooks
                    .get_or_create(&StateLabel { state: name.into() })
                    .set(count);
            }
            // Only those failing now: a webhook that recovered leaves the list.
            m.webhook_failing.clear();
            let now = chrono::Utc::now();
            for (id, namespace, since) in f.failing_longest {
                let secs = (now - since).num_milliseconds().max(0) as f64 / 1000.0;
                m.webhook_failing
                    .get_or_create(&crate::metrics::WebhookLabels {
                        webhook_id: id.to_string(),
                        namespace,
                    })
                    .set(secs);
            }
        }
        Err(e) => tracing::warn!(error = %e, "webhook figures unavailable for /metrics"),
    }
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.to_ascii_lowercase()
                .contains("application/openmetrics-text")
        });
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            state.metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            state.metrics.encode_classic(),
        )
            .into_response()
    }
}
