//! Rows as Herald's types, and the `SELECT`s that produce them: one mapping per type, for
//! both databases.

use chrono::{DateTime, Utc};

use super::SqlRow;
use crate::domain::control::{Circuit, CircuitState, DeliveryOrder, RateLimit};
use crate::domain::delivery::{DeliveryState, DeliverySummary, EventRef};
use crate::domain::deploy::FormatOptions;
use crate::domain::format::Format;
use crate::domain::model::{
    ApiToken, Namespace, Page, Source, StoredHeader, User, Webhook, WebhookStatus,
};
use crate::domain::names::{
    ContentType, HeaderName, NamespaceName, RequestMethod, WebhookName, WebhookUrl,
};
use crate::domain::signature::SignatureScheme;
use crate::secrets::Sealed;
use crate::store::{from_ms, parse_filters, StoreError, StoreResult};

pub(crate) fn opt_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_ms)
}

/// Stored request and response headers are a JSON list of pairs.
pub(crate) fn headers_from_json(text: Option<String>) -> Vec<(String, String)> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// What [`webhook`] reads, from `webhooks w` joined with `namespaces n`.
pub(crate) const WEBHOOK_COLUMNS: &str = "SELECT w.id, n.name AS namespace, w.name, w.url, \
     w.request_method, w.content_type, w.username, w.password, w.enabled, w.created_at, \
     w.updated_at, w.signing_secret, w.previous_signing_secret, w.previous_secret_until, \
     w.failing_since, w.filters, w.format, w.template, w.tls_verify, \
     w.rate_limit_milli, w.ordering, w.circuit_state, w.circuit_failures, \
     w.circuit_open_until, w.circuit_cooldown_ms, w.circuit_probe, \
     w.signature, w.client_certificate, w.client_key, w.token, w.format_options, w.revision";

pub(crate) fn webhook_select() -> String {
    format!("{WEBHOOK_COLUMNS} FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id")
}

pub(crate) fn webhook(row: &impl SqlRow, headers: Vec<StoredHeader>) -> StoreResult<Webhook> {
    let previous_until = opt_ms(row.int_opt("previous_secret_until")?);
    // The rotated-out secret signs only until its time is up.
    let previous_valid = previous_until.is_some_and(|t| t > Utc::now());
    let signing_secrets: Vec<Sealed> = row
        .bytes_opt("signing_secret")?
        .into_iter()
        .chain(
            row.bytes_opt("previous_signing_secret")?
                .filter(|_| previous_valid),
        )
        .map(Sealed)
        .collect();
    Ok(Webhook {
        id: row.int("id")?,
        namespace: NamespaceName::trusted(row.text("namespace")?),
        name: WebhookName::trusted(row.text("name")?),
        url: WebhookUrl::trusted(row.text("url")?),
        request_method: RequestMethod::parse(&row.text("request_method")?).unwrap_or_default(),
        content_type: ContentType::parse(&row.text("content_type")?).unwrap_or_default(),
        username: row.text_opt("username")?,
        password: row.bytes_opt("password")?.map(Sealed),
        headers,
        enabled: row.flag("enabled")?,
        created_at: from_ms(row.int("created_at")?),
        updated_at: from_ms(row.int("updated_at")?),
        signing_secrets,
        previous_secret_until: previous_until,
        failing_since: opt_ms(row.int_opt("failing_since")?),
        filters: parse_filters(row.text_opt("filters")?.as_deref()),
        format: Format::parse(&row.text("format")?).unwrap_or_default(),
        template: row.text_opt("template")?,
        tls_verify: row.flag("tls_verify")?,
        rate_limit: row
            .int_opt("rate_limit_milli")?
            .and_then(RateLimit::from_milli),
        ordering: DeliveryOrder::parse(&row.text("ordering")?).unwrap_or_default(),
        circuit: Circuit {
            state: CircuitState::parse(&row.text("circuit_state")?),
            failures: row.int("circuit_failures")?,
            open_until: row.int_opt("circuit_open_until")?,
            cooldown_ms: row.int_opt("circuit_cooldown_ms")?,
            probe: row.int_opt("circuit_probe")?,
        },
        signature: SignatureScheme::parse(&row.text("signature")?).unwrap_or_default(),
        client_certificate: row.text_opt("client_certificate")?,
        client_key: row.bytes_opt("client_key")?.map(Sealed),
        token: row.bytes_opt("token")?.map(Sealed),
        format_options: FormatOptions::from_stored(row.text_opt("format_options")?.as_deref()),
        revision: row.int("revision")?,
    })
}

pub(crate) fn header(row: &impl SqlRow) -> StoreResult<StoredHeader> {
    Ok(StoredHeader {
        name: HeaderName::trusted(row.text("name")?),
        value: Sealed(row.bytes("value")?),
    })
}

pub(crate) const DELIVERY_SELECT: &str = "SELECT d.id, d.webhook_id, d.state, d.attempts, \
     d.last_status, d.last_error, d.next_attempt_at, d.created_at, d.updated_at, \
     d.request_method, d.request_url, d.request_headers, d.request_body, e.registry_id, \
     e.action, e.repository, e.tag, e.digest, e.body AS event_body \
     FROM deliveries d JOIN events e ON e.id = d.event_id";

pub(crate) fn delivery(row: &impl SqlRow) -> StoreResult<DeliverySummary> {
    let id = row.int("id")?;
    Ok(DeliverySummary {
        id,
        webhook_id: row.int("webhook_id")?,
        state: stored_state(id, &row.text("state")?)?,
        attempt_count: row.int("attempts")?,
        last_status: row.int_opt("last_status")?,
        last_error: row.text_opt("last_error")?,
        next_attempt_at: opt_ms(row.int_opt("next_attempt_at")?),
        created_at: from_ms(row.int("created_at")?),
        updated_at: from_ms(row.int("updated_at")?),
        event: EventRef {
            id: row.text_opt("registry_id")?,
            action: row.text_opt("action")?,
            repository: row.text_opt("repository")?,
            tag: row.text_opt("tag")?,
            digest: row.text_opt("digest")?,
        },
    })
}

pub(crate) fn user(row: &impl SqlRow) -> StoreResult<User> {
    Ok(User {
        id: row.int("id")?,
        username: row.text("username")?,
        email: row.text_opt("email")?,
        admin: row.flag("admin")?,
        disabled: row.flag("disabled")?,
        created_at: from_ms(row.int("created_at")?),
    })
}

pub(crate) const NAMESPACE_SELECT: &str = "SELECT n.id, n.name, n.description, n.created_at, \
     n.team_id, t.name AS team, \
     (SELECT COUNT(*) FROM webhooks w WHERE w.namespace_id = n.id) AS webhook_count \
     FROM namespaces n LEFT JOIN teams t ON t.id = n.team_id";

pub(crate) fn namespace(row: &impl SqlRow) -> StoreResult<Namespace> {
    Ok(Namespace {
        id: row.int("id")?,
        name: NamespaceName::trusted(row.text("name")?),
        description: row.text("description")?,
        team_id: row.int_opt("team_id")?,
        team: row.text_opt("team")?,
        webhook_count: row.int("webhook_count")?,
        created_at: from_ms(row.int("created_at")?),
    })
}

pub(crate) fn token(row: &impl SqlRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: row.int("id")?,
        label: row.text("label")?,
        created_at: from_ms(row.int("created_at")?),
        last_used_at: opt_ms(row.int_opt("last_used_at")?),
    })
}

/// A `sources` row; its credential hash is read apart.
pub(crate) fn source(row: &impl SqlRow) -> StoreResult<Source> {
    let username = row.text_opt("username")?;
    Ok(Source {
        name: row.text("name")?,
        kind: crate::domain::events::SourceKind::parse(&row.text("kind")?)
            .unwrap_or(crate::domain::events::SourceKind::Distribution),
        auth: if username.is_some() {
            "basic"
        } else {
            "bearer"
        },
        username,
        builtin: false,
        created_at: Some(from_ms(row.int("created_at")?)),
        registry_url: row.text_opt("registry_url")?,
        registry_username: row.text_opt("registry_username")?,
        has_registry_password: row.flag("has_registry_password")?,
        registry_status: None,
        nats_url: row.text_opt("nats_url")?,
        nats_subject: row.text_opt("nats_subject")?,
        nats_stream: row.text_opt("nats_stream")?,
        nats_consumer: row.text_opt("nats_consumer")?,
    })
}

/// A status row of [`crate::store::webhook_status_sql`].
pub(crate) fn status(row: &impl SqlRow) -> StoreResult<WebhookStatus> {
    let enabled = row.flag("enabled")?;
    let last_switch = row.text_opt("last_switch")?;
    Ok(WebhookStatus {
        webhook_id: row.int("id")?,
        namespace: row.text("namespace")?,
        name: row.text("name")?,
        enabled,
        failing_since: opt_ms(row.int_opt("failing_since")?),
        last_status: row.int_opt("last_status")?,
        last_error: row.text_opt("last_error")?,
        last_attempt_at: opt_ms(row.int_opt("last_attempt_at")?),
        succeeded: row.int("succeeded")?,
        failed: row.int("failed")?,
        retrying: row.int("retrying")?,
        failed_while_failing: row.int("failed_while_failing")?,
        auto_disabled: !enabled && last_switch.as_deref() == Some("webhook.auto_disabled"),
        circuit: CircuitState::parse(&row.text("circuit_state")?),
        circuit_open_until: opt_ms(row.int_opt("circuit_open_until")?),
    })
}

/// Trims a `limit + 1` fetch to `limit` and sets the cursor when there is more.
pub(crate) fn paginate<T>(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit.max(0) as usize);
    let next = if more {
        items.last().map(|i| id(i).to_string())
    } else {
        None
    };
    Page { items, next }
}

pub(crate) fn taken_webhook_name(name: &str, namespace: &NamespaceName) -> String {
    format!("a webhook named '{name}' already exists in namespace '{namespace}'")
}

/// A delivery's stored state, or a database error naming the delivery and the value, so a
/// corrupt row fails loudly (500, and the value in the log) instead of passing as pending.
pub(crate) fn stored_state(delivery_id: i64, text: &str) -> StoreResult<DeliveryState> {
    DeliveryState::parse(text).map_err(|e| {
        StoreError::Database(sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("delivery {delivery_id}: {e}").into(),
        })
    })
}

/// An enabled webhook as the delivery of a later event (facts, operational) weighs it, from
/// `id`, `fifo`, `filters` and `format`. Those deliveries are never born claimed.
pub(crate) fn candidate(row: &impl SqlRow) -> StoreResult<crate::domain::delivery::Candidate> {
    Ok(crate::domain::delivery::Candidate::new(
        row.int("id")?,
        row.flag("fifo")?,
        false,
        0,
        row.text_opt("filters")?.as_deref(),
        &row.text("format")?,
    ))
}
