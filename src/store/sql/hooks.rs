//! Namespaces and their webhooks: settings, headers, signing secrets, and the health that
//! can disable a webhook.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::history::NsContext;
use super::operational;
use super::rows::{self, taken_webhook_name, NAMESPACE_SELECT};
use super::{conflict_on_unique, locking, sql, Backend, Conn, SqlRow, Tx};
use crate::domain::control::{
    Circuit, CircuitRule, CircuitState, DeliveryOrder, HealthChange, RateLimit,
};
use crate::domain::events::Action;
use crate::domain::model::{
    Audit, Health, HealthVerdict, Namespace, NewWebhook, StoredHeader, Visibility, Webhook,
    WebhookPatch,
};
use crate::domain::names::{NamespaceName, WebhookUrl};
use crate::domain::operational::Announcement;
use crate::secrets::Sealed;
use crate::store::{filters_json, from_ms, to_ms, Hooks, StoreError, StoreResult};

#[async_trait]
impl<B: Backend> Hooks for B {
    async fn list_namespaces(&self, visibility: &Visibility) -> StoreResult<Vec<Namespace>> {
        sql(format!(
            "{NAMESPACE_SELECT} WHERE (CAST($1 AS BIGINT) IS NULL OR n.team_id IN \
             (SELECT team_id FROM team_members WHERE user_id = $1)) ORDER BY n.name"
        ))
        .bind(visibility.member())
        .all(&mut self.reader())
        .await?
        .iter()
        .map(rows::namespace)
        .collect()
    }

    async fn get_namespace(&self, name: &NamespaceName) -> StoreResult<Namespace> {
        let row = sql(format!("{NAMESPACE_SELECT} WHERE n.name = $1"))
            .bind(name.as_str())
            .opt(&mut self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace '{name}'")))?;
        rows::namespace(&row)
    }

    async fn create_namespace(
        &self,
        name: &NamespaceName,
        description: &str,
        team_id: Option<i64>,
        audit: &Audit,
    ) -> StoreResult<Namespace> {
        let mut tx = self.begin().await?;
        sql(
            "INSERT INTO namespaces (name, description, team_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name.as_str())
        .bind(description)
        .bind(team_id)
        .bind(to_ms(Utc::now()))
        .exec(&mut tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the namespace '{name}' already exists")))?;
        let ns = NsContext::load(&mut tx, name).await?;
        ns.record(&mut tx, audit, None).await?;
        tx.commit().await?;
        self.get_namespace(name).await
    }

    async fn delete_namespace(&self, name: &NamespaceName, audit: &Audit) -> StoreResult<()> {
        if name.is_global() {
            return Err(StoreError::Conflict(
                "the global namespace always exists and cannot be deleted".into(),
            ));
        }
        let mut tx = self.begin().await?;
        let ns = NsContext::load(&mut tx, name).await?;
        sql("DELETE FROM namespaces WHERE id = $1")
            .bind(ns.id)
            .exec(&mut tx)
            .await?;
        ns.record(&mut tx, audit, None).await?;
        tx.commit().await
    }

    async fn list_webhooks(&self, namespace: &NamespaceName) -> StoreResult<Vec<Webhook>> {
        self.get_namespace(namespace).await?;
        let found = sql(format!(
            "{} WHERE n.name = $1 ORDER BY w.id",
            rows::webhook_select()
        ))
        .bind(namespace.as_str())
        .all(&mut self.reader())
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for row in &found {
            let headers = headers_of(&mut self.reader(), row.int("id")?).await?;
            out.push(rows::webhook(row, headers)?);
        }
        Ok(out)
    }

    async fn get_webhook(&self, namespace: &NamespaceName, id: i64) -> StoreResult<Webhook> {
        let row = sql(format!(
            "{} WHERE n.name = $1 AND w.id = $2",
            rows::webhook_select()
        ))
        .bind(namespace.as_str())
        .bind(id)
        .opt(&mut self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("webhook {id} in namespace '{namespace}'")))?;
        let headers = headers_of(&mut self.reader(), id).await?;
        rows::webhook(&row, headers)
    }

    async fn create_webhook(
        &self,
        namespace: &NamespaceName,
        new: NewWebhook,
        audit: &Audit,
    ) -> StoreResult<Webhook> {
        let now = to_ms(Utc::now());
        let mut tx = self.begin().await?;
        let ns = NsContext::load(&mut tx, namespace).await?;
        let id = sql(
            "INSERT INTO webhooks (namespace_id, name, url, request_method, content_type, \
             username, password, enabled, created_at, updated_at, signing_secret, filters, \
             format, template, tls_verify, rate_limit_milli, ordering, signature, \
             client_certificate, client_key, token, format_options) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8, $9, $10, $11, $12, $13, \
             $14, $15, $16, $17, $18, $19, $20) \
             RETURNING id",
        )
        .bind(ns.id)
        .bind(new.name.as_str())
        .bind(new.url.as_str())
        .bind(new.request_method.as_str())
        .bind(new.content_type.as_str())
        .bind(&new.username)
        .bind(new.password.as_ref().map(|s| s.0.as_slice()))
        .bind(now)
        .bind(&new.signing_secret.0)
        .bind(filters_json(&new.filters))
        .bind(new.format.as_str())
        .bind(&new.template)
        .bind(new.tls_verify)
        .bind(new.rate_limit.map(RateLimit::milli))
        .bind(new.ordering.as_str())
        .bind(new.signature.as_str())
        .bind(&new.client_certificate)
        .bind(new.client_key.as_ref().map(|s| s.0.as_slice()))
        .bind(new.token.as_ref().map(|s| s.0.as_slice()))
        .bind(new.format_options.to_stored())
        .one(&mut tx)
        .await
        .map_err(|e| conflict_on_unique(e, || taken_webhook_name(new.name.as_str(), namespace)))?
        .int("id")?;
        replace_headers(&mut tx, id, &new.headers).await?;
        let host = new.url.host();
        ns.record(&mut tx, audit, Some((id, new.name.as_str(), &host)))
            .await?;
        tx.commit().await?;
        self.get_webhook(namespace, id).await
    }

    async fn update_webhook(
        &self,
        namespace: &NamespaceName,
        id: i64,
        patch: WebhookPatch,
        audit: &Audit,
    ) -> StoreResult<Webhook> {
        let current = self.get_webhook(namespace, id).await?;
        let name = patch.name.unwrap_or(current.name);
        let url = patch.url.unwrap_or(current.url);
        let method = patch.request_method.unwrap_or(current.request_method);
        let content_type = patch.content_type.unwrap_or(current.content_type);
        let username = patch.username.unwrap_or(current.username);
        let password = patch.password.unwrap_or(current.password);
        let enabled = patch.enabled.unwrap_or(current.enabled);
        let filters = patch.filters.unwrap_or(current.filters);
        let format = patch.format.unwrap_or(current.format);
        let template = patch.template.unwrap_or(current.template);
        let tls_verify = patch.tls_verify.unwrap_or(current.tls_verify);
        let rate_limit = patch.rate_limit.unwrap_or(current.rate_limit);
        let ordering = patch.ordering.unwrap_or(current.ordering);
        let signature = patch.signature.unwrap_or(current.signature);
        let (client_certificate, client_key) = match patch.client_identity {
            Some(Some((certificate, key))) => (Some(certificate), Some(key)),
            Some(None) => (None, None),
            None => (current.client_certificate, current.client_key),
        };
        let token = patch.token.unwrap_or(current.token);
        let format_options = patch.format_options.unwrap_or(current.format_options);
        let mut tx = self.begin().await?;
        // Updating the webhook first locks its row, so concurrent header changes queue.
        sql(
            "UPDATE webhooks SET name = $1, url = $2, request_method = $3, content_type = $4, \
             username = $5, password = $6, enabled = $7, updated_at = $8, filters = $10, \
             revision = revision + 1, \
             format = $11, template = $12, tls_verify = $13, \
             signature = $16, client_certificate = $17, client_key = $18, \
             token = $19, format_options = $20, \
             failing_since = CASE WHEN NOT enabled THEN NULL ELSE failing_since END, \
             rate_limit_milli = $14, ordering = $15, \
             circuit_state = CASE WHEN NOT enabled THEN 'closed' ELSE circuit_state END, \
             circuit_failures = CASE WHEN NOT enabled THEN 0 ELSE circuit_failures END, \
             circuit_open_until = CASE WHEN NOT enabled THEN NULL ELSE circuit_open_until END, \
             circuit_cooldown_ms = CASE WHEN NOT enabled THEN NULL ELSE circuit_cooldown_ms END, \
             circuit_probe = CASE WHEN NOT enabled THEN NULL ELSE circuit_probe END \
             WHERE id = $9",
        )
        .bind(name.as_str())
        .bind(url.as_str())
        .bind(method.as_str())
        .bind(content_type.as_str())
        .bind(&username)
        .bind(password.as_ref().map(|s| s.0.as_slice()))
        .bind(enabled)
        .bind(to_ms(Utc::now()))
        .bind(id)
        .bind(filters_json(&filters))
        .bind(format.as_str())
        .bind(&template)
        .bind(tls_verify)
        .bind(rate_limit.map(RateLimit::milli))
        .bind(ordering.as_str())
        .bind(signature.as_str())
        .bind(&client_certificate)
        .bind(client_key.as_ref().map(|s| s.0.as_slice()))
        .bind(token.as_ref().map(|s| s.0.as_slice()))
        .bind(format_options.to_stored())
        .exec(&mut tx)
        .await
        .map_err(|e| conflict_on_unique(e, || taken_webhook_name(name.as_str(), namespace)))?;
        if ordering != current.ordering {
            // The order is checked against the unfinished deliveries marked fifo.
            sql("UPDATE deliveries SET fifo = $1 \
                 WHERE webhook_id = $2 AND state IN ('pending', 'retrying') AND fifo <> $1")
            .bind(ordering == DeliveryOrder::Fifo)
            .bind(id)
            .exec(&mut tx)
            .await?;
        }
        // A new scheme's key takes over as a rotation does: the old key signs beside it.
        if let Some((secret, keep_previous_until)) = &patch.signing_secret {
            rotate_in(&mut tx, id, secret, *keep_previous_until).await?;
        }
        if let Some(headers) = &patch.headers {
            replace_headers(&mut tx, id, headers).await?;
        }
        let ns = NsContext::load(&mut tx, namespace).await?;
        ns.record(&mut tx, audit, Some((id, name.as_str(), &url.host())))
            .await?;
        tx.commit().await?;
        self.get_webhook(namespace, id).await
    }

    async fn delete_webhook(
        &self,
        namespace: &NamespaceName,
        id: i64,
        audit: &Audit,
    ) -> StoreResult<()> {
        let hook = self.get_webhook(namespace, id).await?;
        let mut tx = self.begin().await?;
        sql("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .exec(&mut tx)
            .await?;
        record_hook_change(&mut tx, audit, &hook).await?;
        tx.commit().await
    }

    async fn set_header(
        &self,
        namespace: &NamespaceName,
        webhook_id: i64,
        header: StoredHeader,
        audit: &Audit,
    ) -> StoreResult<bool> {
        let hook = self.get_webhook(namespace, webhook_id).await?;
        let mut tx = self.begin().await?;
        // First, so the webhook's row lock serialises concurrent changes of its headers
        // (SQLite's single writer does the same) and "was it new" stays exact.
        sql(BUMP_REVISION)
            .bind(to_ms(Utc::now()))
            .bind(webhook_id)
            .exec(&mut tx)
            .await?;
        let removed =
            sql("DELETE FROM webhook_headers WHERE webhook_id = $1 AND lower(name) = lower($2)")
                .bind(webhook_id)
                .bind(header.name.as_str())
                .exec(&mut tx)
                .await?;
        sql("INSERT INTO webhook_headers (webhook_id, name, value) VALUES ($1, $2, $3)")
            .bind(webhook_id)
            .bind(header.name.as_str())
            .bind(&header.value.0)
            .exec(&mut tx)
            .await?;
        record_hook_change(&mut tx, audit, &hook).await?;
        tx.commit().await?;
        Ok(removed == 0)
    }

    async fn delete_header(
        &self,
        namespace: &NamespaceName,
        webhook_id: i64,
        name: &str,
        audit: &Audit,
    ) -> StoreResult<()> {
        let hook = self.get_webhook(namespace, webhook_id).await?;
        let mut tx = self.begin().await?;
        sql(BUMP_REVISION)
            .bind(to_ms(Utc::now()))
            .bind(webhook_id)
            .exec(&mut tx)
            .await?;
        let removed =
            sql("DELETE FROM webhook_headers WHERE webhook_id = $1 AND lower(name) = lower($2)")
                .bind(webhook_id)
                .bind(name)
                .exec(&mut tx)
                .await?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "header '{name}' of webhook {webhook_id}"
            )));
        }
        record_hook_change(&mut tx, audit, &hook).await?;
        tx.commit().await
    }

    async fn rotate_signing_secret(
        &self,
        namespace: &NamespaceName,
        id: i64,
        secret: Sealed,
        keep_previous_until: DateTime<Utc>,
        audit: &Audit,
    ) -> StoreResult<Webhook> {
        let hook = self.get_webhook(namespace, id).await?;
        let mut tx = self.begin().await?;
        rotate_in(&mut tx, id, &secret, keep_previous_until).await?;
        record_hook_change(&mut tx, audit, &hook).await?;
        tx.commit().await?;
        self.get_webhook(namespace, id).await
    }

    async fn webhook_health_after(
        &self,
        webhook_id: i64,
        delivery_id: Option<i64>,
        health: Health,
        now: DateTime<Utc>,
        disable_after: std::time::Duration,
        circuit: CircuitRule,
    ) -> StoreResult<HealthChange> {
        let mut tx = self.begin().await?;
        let row = sql(format!(
            "SELECT w.enabled, w.failing_since, w.name, w.url, n.name AS namespace, \
             w.circuit_state, w.circuit_failures, w.circuit_open_until, w.circuit_cooldown_ms, \
             w.circuit_probe \
             FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id WHERE w.id = $1{}",
            locking::<B>(" FOR UPDATE OF w")
        ))
        .bind(webhook_id)
        .opt(&mut tx)
        .await?;
        let Some(row) = row else {
            return Ok(HealthChange::default());
        };
        let verdict = HealthVerdict::weigh(
            health,
            row.flag("enabled")?,
            row.int_opt("failing_since")?,
            to_ms(now),
            disable_after,
        );
        let before = Circuit {
            state: CircuitState::parse(&row.text("circuit_state")?),
            failures: row.int("circuit_failures")?,
            open_until: row.int_opt("circuit_open_until")?,
            cooldown_ms: row.int_opt("circuit_cooldown_ms")?,
            probe: row.int_opt("circuit_probe")?,
        };
        let (after, circuit_change) =
            before.after_attempt(health == Health::Succeeded, to_ms(now), &circuit);
        sql(
            "UPDATE webhooks SET enabled = $1, failing_since = $2, circuit_state = $4, \
             circuit_failures = $5, circuit_open_until = $6, circuit_cooldown_ms = $7, \
             circuit_probe = $8 WHERE id = $3",
        )
        .bind(verdict.enabled)
        .bind(verdict.failing_since)
        .bind(webhook_id)
        .bind(after.state.as_str())
        .bind(after.failures)
        .bind(after.open_until)
        .bind(after.cooldown_ms)
        .bind(after.probe)
        .exec(&mut tx)
        .await?;
        if let Some(detail) = &verdict.disabled_because {
            let namespace = NamespaceName::trusted(row.text("namespace")?);
            let name = row.text("name")?;
            let url = WebhookUrl::trusted(row.text("url")?);
            let audit = Audit::new("herald", "webhook.auto_disabled").detail(detail.clone());
            let ns = NsContext::load(&mut tx, &namespace).await?;
            ns.record(&mut tx, &audit, Some((webhook_id, &name, &url.host())))
                .await?;
        }
        // Announced in the same transaction as the change, so once per change; never
        // after an attempt of an operational event's own delivery (no cascades).
        let announcement = match (&verdict.disabled_because, verdict.recovered) {
            (Some(detail), _) => Some(Announcement::new(
                Action::WebhookDisabled,
                webhook_id,
                detail.clone(),
            )),
            (None, true) => Some(Announcement::new(
                Action::WebhookRecovered,
                webhook_id,
                recovered_detail(row.int_opt("failing_since")?),
            )),
            (None, false) => None,
        };
        if let Some(announcement) = announcement {
            let quiet = match delivery_id {
                Some(id) => operational::carries_operational(&mut tx, id).await?,
                None => false,
            };
            if !quiet {
                operational::announce(&mut tx, &announcement, now).await?;
            }
        }
        tx.commit().await?;
        Ok(HealthChange {
            disabled: verdict.disabled_because.is_some(),
            circuit: circuit_change,
            circuit_failures: after.failures,
            circuit_open_until: after.open_until.map(from_ms),
        })
    }

    async fn announce(
        &self,
        announcement: &Announcement,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.begin().await?;
        let stored = operational::announce(&mut tx, announcement, now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn create_ping(
        &self,
        webhook_id: i64,
        registry_id: &str,
        repository: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let now = to_ms(now);
        let mut tx = self.begin().await?;
        let namespace = sql(
            "SELECT n.name FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id \
             WHERE w.id = $1",
        )
        .bind(webhook_id)
        .opt(&mut tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("webhook {webhook_id}")))?
        .text("name")?;
        let event_id = sql(
            "INSERT INTO events (registry_id, action, repository, namespace, status, reason, \
             body, received_at) \
             VALUES ($1, 'ping', $2, $3, 'accepted', 'ping from Herald', $4, $5) RETURNING id",
        )
        .bind(registry_id)
        .bind(repository)
        .bind(namespace)
        .bind(body)
        .bind(now)
        .one(&mut tx)
        .await?
        .int("id")?;
        let delivery_id = sql(
            "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, created_at, \
             updated_at, fifo) \
             SELECT $1, $2, 'pending', NULL, $3, $3, ordering = 'fifo' FROM webhooks \
             WHERE id = $1 RETURNING id",
        )
        .bind(webhook_id)
        .bind(event_id)
        .bind(now)
        .one(&mut tx)
        .await?
        .int("id")?;
        tx.commit().await?;
        Ok(delivery_id)
    }
}

/// What a `webhook.recovered` says: since when it had failed.
fn recovered_detail(failing_since_ms: Option<i64>) -> String {
    match failing_since_ms {
        Some(ms) => format!(
            "an attempt succeeded again; every attempt since {} had failed",
            crate::store::from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "an attempt succeeded again".to_string(),
    }
}

pub(crate) async fn headers_of(
    on: &mut impl Conn,
    webhook_id: i64,
) -> StoreResult<Vec<StoredHeader>> {
    sql(
        "SELECT name, value FROM webhook_headers WHERE webhook_id = $1 \
         ORDER BY lower(name), name",
    )
    .bind(webhook_id)
    .all(on)
    .await?
    .iter()
    .map(rows::header)
    .collect()
}

async fn replace_headers(
    on: &mut impl Conn,
    webhook_id: i64,
    headers: &[StoredHeader],
) -> StoreResult<()> {
    sql("DELETE FROM webhook_headers WHERE webhook_id = $1")
        .bind(webhook_id)
        .exec(on)
        .await?;
    for h in headers {
        // A name given twice (in any case) breaks the unique key; the transaction is
        // then dropped, so nothing of the change stays.
        sql("INSERT INTO webhook_headers (webhook_id, name, value) VALUES ($1, $2, $3)")
            .bind(webhook_id)
            .bind(h.name.as_str())
            .bind(&h.value.0)
            .exec(on)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!("the header '{}' is given twice", h.name.as_str())
                })
            })?;
    }
    Ok(())
}

/// A change of a webhook's headers: first, so the webhook's row lock serialises concurrent
/// changes of them, and its settings' revision moves. `$1`: now, `$2`: the webhook.
const BUMP_REVISION: &str =
    "UPDATE webhooks SET updated_at = $1, revision = revision + 1 WHERE id = $2";

/// Makes `secret` the current signing key; the current one moves aside and keeps signing
/// until `keep_previous_until` (a rotation, or a change of signature scheme).
async fn rotate_in(
    on: &mut impl Conn,
    webhook_id: i64,
    secret: &Sealed,
    keep_previous_until: DateTime<Utc>,
) -> StoreResult<()> {
    sql(
        "UPDATE webhooks SET previous_signing_secret = signing_secret, \
         previous_secret_until = $1, signing_secret = $2, updated_at = $3, \
         revision = revision + 1 WHERE id = $4",
    )
    .bind(to_ms(keep_previous_until))
    .bind(&secret.0)
    .bind(to_ms(Utc::now()))
    .bind(webhook_id)
    .exec(on)
    .await?;
    Ok(())
}

/// The audit entry of a change to `hook`, written in the change's transaction.
async fn record_hook_change(on: &mut impl Conn, audit: &Audit, hook: &Webhook) -> StoreResult<()> {
    let ns = NsContext::load(on, &hook.namespace).await?;
    let host = hook.url.host();
    ns.record(on, audit, Some((hook.id, hook.name.as_str(), &host)))
        .await
}
