//! The UI's pages and form actions. Each checks the same policy as the REST API before it
//! shows a control or acts on a form.

pub mod account;
pub mod activity;
pub mod dashboard;
pub mod deliveries;
pub mod events;
pub mod headers;
pub mod namespaces;
pub mod sources;
pub mod teams;
pub mod tokens;
pub mod users;
pub mod webhook_actions;
pub mod webhook_form;
pub mod webhooks;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{context, Value};
use serde::Deserialize;

use super::{render, WebUser};
use crate::app::access::NamespaceAccess;
use crate::auth::policy::NamespaceAction;
use crate::domain::control::{Circuit, CircuitState};
use crate::domain::delivery::{DeliveryState, DeliverySummary};
use crate::domain::model::{Webhook, WebhookStatus};
use crate::domain::names::Invalid;
use crate::error::AppError;
use crate::AppState;

pub(super) fn page(web: &WebUser, template: &str, status: StatusCode, ctx: Value) -> Response {
    let full = context! {
        me => web.user,
        csrf => web.csrf,
        flash => web.flash,
        ..ctx
    };
    render(template, status, full, web.flash.is_some())
}

pub(super) fn id_of(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::not_found(format!("{what} '{raw}' not found")))
}

/// A refused form's problems by field, for showing beside each: every problem of a 422,
/// or the one field (the name, for a conflict) the error names.
pub(super) fn errors_of(e: &crate::error::AppError) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for p in &e.problems {
        map.entry(form_field(&p.field))
            .or_insert_with(|| p.message.clone());
    }
    if map.is_empty() {
        let field = e
            .field
            .as_deref()
            .map_or_else(|| "name".to_string(), form_field);
        map.insert(field, e.message.clone());
    }
    map
}

pub(super) fn errors_map(problems: &[Invalid]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for p in problems {
        map.entry(form_field(&p.field))
            .or_insert_with(|| p.message.clone());
    }
    map
}

/// The form field a problem belongs to: each format option is a key of the one format
/// options field (its message names the option).
fn form_field(field: &str) -> String {
    match field.split_once('.') {
        Some(("format_options", _)) => "format_options".into(),
        _ => field.to_string(),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

#[derive(Deserialize)]
pub struct CursorQuery {
    pub cursor: Option<i64>,
}

/// A webhook and the caller's standing, or the policy's 404/403.
pub(super) async fn load_webhook(
    state: &AppState,
    web: &WebUser,
    ns: &str,
    id: &str,
    action: NamespaceAction,
) -> Result<(NamespaceAccess, Webhook), AppError> {
    Ok(crate::app::webhooks::load(
        state,
        &web.actor(),
        ns,
        crate::app::access::WebhookRef::Id(id),
        action,
    )
    .await?)
}

/// A webhook's health as the templates show it, at `now`. `live_key` changes whenever
/// anything the health section shows changes, `live_state` only when its state does (what
/// the page announces).
pub(super) fn health_view(s: &WebhookStatus, attention_after: std::time::Duration) -> Value {
    let now = chrono::Utc::now();
    let state = s.state_at(now, attention_after);
    let circuit = match (s.circuit, s.circuit_open_until) {
        (CircuitState::Open, Some(until)) if until <= now => CircuitState::HalfOpen,
        (c, _) => c,
    };
    let live_key = format!(
        "{}|{}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}",
        state.as_str(),
        circuit.as_str(),
        s.last_status,
        s.last_error,
        s.last_attempt_at,
        s.succeeded,
        s.failed,
        s.retrying,
        s.failing_since,
    );
    context! {
        state => state.as_str(),
        needs_attention => s.needs_attention(now, attention_after),
        failing_since => s.failing_since,
        last_status => s.last_status,
        last_error => s.last_error,
        last_attempt_at => s.last_attempt_at,
        success_rate => s.success_rate().map(|r| format!("{r:.0} %")),
        finished => s.succeeded + s.failed,
        retrying => s.retrying,
        circuit => circuit.as_str(),
        circuit_probe_at => s.circuit_open_until.filter(|_| circuit == CircuitState::Open),
        live_state => format!("{}|{}", state.as_str(), circuit.as_str()),
        live_key,
    }
}

/// A form the server refused: which one (its id in the page), each field's problem, and
/// the input to show again (never a password, token or key).
#[derive(Default)]
pub(super) struct Refused {
    pub form: &'static str,
    pub errors: BTreeMap<String, String>,
    pub values: BTreeMap<String, String>,
}

impl Refused {
    pub fn new(
        form: &'static str,
        errors: BTreeMap<String, String>,
        values: BTreeMap<String, String>,
    ) -> Self {
        Self {
            form,
            errors,
            values,
        }
    }

    /// One problem of `form`, at `field`.
    pub fn one(form: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            form,
            BTreeMap::from([(field.into(), message.into())]),
            BTreeMap::new(),
        )
    }

    pub fn with_values(mut self, values: BTreeMap<String, String>) -> Self {
        self.values = values;
        self
    }

    /// What the templates read: `failed_form`, `errors`, `values`; and for a page answering
    /// a form (any status but 200), `location`, the page's own address, which the script
    /// puts in the address bar so that a reload does not send the form again.
    pub fn context(&self, status: StatusCode, own_address: &str) -> Value {
        context! {
            failed_form => self.form,
            errors => self.errors,
            values => self.values,
            location => (status != StatusCode::OK).then_some(own_address),
        }
    }
}

/// A delivery as the templates show it: `waits_for_probe` when it is due (or comes due)
/// while the webhook's circuit holds deliveries back, so that the page names the probe's
/// time rather than a past "next attempt".
pub(super) fn delivery_view(d: &DeliverySummary, circuit: &Circuit) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let waiting = matches!(d.state, DeliveryState::Pending | DeliveryState::Retrying);
    let next = d.next_attempt_at.map(|t| t.timestamp_millis());
    let waits_for_probe = waiting
        && match circuit.state_at(now) {
            CircuitState::Closed => false,
            CircuitState::HalfOpen => true,
            CircuitState::Open => match (next, circuit.open_until) {
                (Some(next), Some(probe)) => next <= probe,
                _ => true,
            },
        };
    context! { waits_for_probe, ..Value::from_serialize(d) }
}

pub(super) fn webhook_row(w: &Webhook) -> Value {
    context! {
        id => w.id,
        name => w.name,
        url => w.url,
        filters => w.filters,
        format => w.format,
        template => w.template,
        tls_verify => w.tls_verify,
        rate_limit => w.rate_limit.map(|r| r.as_f64()),
        ordering => w.ordering.as_str(),
        circuit => w.circuit.state_at(chrono::Utc::now().timestamp_millis()).as_str(),
        circuit_probe_at => w
            .circuit
            .open_until
            .filter(|_| w.circuit.state == crate::domain::control::CircuitState::Open)
            .and_then(chrono::DateTime::from_timestamp_millis),
        request_method => w.request_method,
        content_type => w.content_type,
        username => w.username,
        has_password => w.password.is_some(),
        has_token => w.token.is_some(),
        triggers_deploy => w.format.triggers_deploy(),
        format_options => w.format_options.to_stored().unwrap_or_default(),
        enabled => w.enabled,
        created_at => w.created_at,
        updated_at => w.updated_at,
        signature => w.signature,
        has_client_certificate => w.client_certificate.is_some(),
        client_certificate_warning => w.client_certificate.as_deref().and_then(|c| {
            crate::hooks::client_cert::validity_warning(c, std::time::SystemTime::now())
        }),
        client_certificate_sha256 => w
            .client_certificate
            .as_deref()
            .and_then(crate::hooks::client_cert::fingerprint),
    }
}
