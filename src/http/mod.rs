//! What a process serves, composed in one place: the REST API and registry ingest (both
//! from their handlers' OpenAPI annotations), the web UI, the operations routes, and the
//! layers every request passes through. A worker-only process serves operations alone.

pub mod ingest;
pub mod ingest_nats;
mod layers;
mod openapi;

use axum::routing::get;
use axum::Router;

use crate::error::AppError;
use crate::{api, web, AppState};

/// Everything: API, ingest, UI and operations.
pub fn app(state: AppState) -> Router {
    let (documented, doc) = openapi::documented(&state);
    let doc = std::sync::Arc::new(doc);
    let router = Router::new()
        .merge(documented)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(web::router())
        .fallback(|| async { AppError::not_found("no such route") });
    layers::around(router, state)
}

/// A delivery worker still answers health checks and metrics, and says why the rest is
/// missing.
pub fn worker_only(state: AppState) -> Router {
    let router = Router::new()
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz))
        .route("/metrics", get(api::health::metrics))
        .fallback(|| async {
            AppError::not_found("this Herald process runs only delivery workers (--worker)")
        });
    layers::around(router, state)
}
