//! PostgreSQL, for several Herald processes sharing one database: the same contract and
//! the same models as `sqlite.rs`, query for query, plus what sharing needs: claims with
//! `FOR UPDATE SKIP LOCKED`, and `NOTIFY` after ingest so idle workers elsewhere start at once.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::*;
use crate::registry::envelope::Disposition;

/// The channel ingest notifies after committing deliveries.
pub const WAKEUP_CHANNEL: &str = "herald_deliveries";

/// How long a request waits for a pooled connection: while the database is down, ingest
/// answers 500 (and the registry retries) well within the registry's own timeout.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool size and time limits, from `--database-max-connections` and
/// `--database-statement-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct PgSettings {
    pub max_connections: u32,
    /// Zero: no limit.
    pub statement_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The listener gets a pool of its own, so it never takes a connection from queries.
    listen_options: PgConnectOptions,
    /// This process's row in `workers` once it runs workers; its claims carry it.
    worker_id: Arc<std::sync::OnceLock<i64>>,
}

/// How often a process heartbeats, and after how many missed beats the others give back
/// its claims: a dead process's deliveries go out again within seconds, not after a lease.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
const HEARTBEATS_MISSED: u32 = 4;

impl PgStore {
    pub async fn connect(url: &str, settings: PgSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("herald")
            .options([(
                "statement_timeout",
                format!("{}ms", settings.statement_timeout.as_millis()),
            )]);
        // The pool tests connections before handing them out and replaces dead ones, so a
        // database restart costs the requests in flight, not the process.
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            listen_options: options,
            worker_id: Arc::default(),
        })
    }
}

/// PostgreSQL text cannot hold NUL, which registry events and receivers' answers may
/// contain: it becomes U+FFFD rather than failing the whole write.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(text)
}

fn conflict_on_unique(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}

fn opt_ms(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_ms)
}

fn headers_from_json(text: Option<String>) -> Vec<(String, String)> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn webhook_from_row(row: &PgRow, headers: Vec<StoredHeader>) -> StoreResult<Webhook> {
    let password: Option<Vec<u8>> = row.try_get("password")?;
    let current: Option<Vec<u8>> = row.try_get("signing_secret")?;
    let previous: Option<Vec<u8>> = row.try_get("previous_signing_secret")?;
    let previous_until = opt_ms(row.try_get("previous_secret_until")?);
    // The rotated-out secret signs only until its time is up.
    let previous_valid = previous_until.is_some_and(|t| t > Utc::now());
    let signing_secrets: Vec<Sealed> = current
        .into_iter()
        .chain(previous.filter(|_| previous_valid))
        .map(Sealed)
        .collect();
    let method: String = row.try_get("request_method")?;
    let content_type: String = row.try_get("content_type")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        namespace: NamespaceName::trusted(row.try_get("namespace")?),
        name: WebhookName::trusted(row.try_get("name")?),
        url: WebhookUrl::trusted(row.try_get("url")?),
        request_method: RequestMethod::parse(&method).unwrap_or_default(),
        content_type: ContentType::parse(&content_type).unwrap_or_default(),
        username: row.try_get("username")?,
        password: password.map(Sealed),
        headers,
        enabled: row.try_get("enabled")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
        signing_secrets,
        previous_secret_until: previous_until,
        failing_since: opt_ms(row.try_get("failing_since")?),
        filters: parse_filters(row.try_get::<Option<String>, _>("filters")?.as_deref()),
        format: Format::parse(&row.try_get::<String, _>("format")?).unwrap_or_default(),
        template: row.try_get("template")?,
        tls_verify: row.try_get("tls_verify")?,
    })
}

const WEBHOOK_SELECT: &str = "SELECT w.id, n.name AS namespace, w.name, w.url, w.request_method, \
     w.content_type, w.username, w.password, w.enabled, w.created_at, w.updated_at, \
     w.signing_secret, w.previous_signing_secret, w.previous_secret_until, w.failing_since, \
     w.filters, w.format, w.template, w.tls_verify \
     FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id";

const DELIVERY_SELECT: &str = "SELECT d.id, d.webhook_id, d.state, d.attempts, d.last_status, \
     d.last_error, d.next_attempt_at, d.created_at, d.updated_at, d.request_method, d.request_url, \
     d.request_headers, d.request_body, e.registry_id, e.action, e.repository, e.tag, e.digest, \
     e.body AS event_body \
     FROM deliveries d JOIN events e ON e.id = d.event_id";

const NAMESPACE_SELECT: &str = "SELECT n.id, n.name, n.description, n.created_at, n.team_id, \
     t.name AS team, (SELECT COUNT(*) FROM webhooks w WHERE w.namespace_id = n.id) AS webhook_count \
     FROM namespaces n LEFT JOIN teams t ON t.id = n.team_id";

fn delivery_from_row(row: &PgRow) -> StoreResult<DeliverySummary> {
    let id: i64 = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    Ok(DeliverySummary {
        id,
        webhook_id: row.try_get("webhook_id")?,
        state: super::stored_state(id, &state)?,
        attempt_count: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: opt_ms(row.try_get("next_attempt_at")?),
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
        event: EventRef {
            id: row.try_get("registry_id")?,
            action: row.try_get("action")?,
            repository: row.try_get("repository")?,
            tag: row.try_get("tag")?,
            digest: row.try_get("digest")?,
        },
    })
}

fn user_from_row(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        admin: row.try_get("admin")?,
        disabled: row.try_get("disabled")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

fn namespace_from_row(row: &PgRow) -> StoreResult<Namespace> {
    Ok(Namespace {
        id: row.try_get("id")?,
        name: NamespaceName::trusted(row.try_get("name")?),
        description: row.try_get("description")?,
        team_id: row.try_get("team_id")?,
        team: row.try_get("team")?,
        webhook_count: row.try_get("webhook_count")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

fn token_from_row(r: &PgRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        label: r.try_get("label")?,
        created_at: from_ms(r.try_get("created_at")?),
        last_used_at: opt_ms(r.try_get("last_used_at")?),
    })
}

/// Trims a `limit + 1` fetch to `limit` and sets the cursor when there is more.
fn paginate<T>(items: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit.max(0) as usize);
    let next = if more {
        items.last().map(|i| id(i).to_string())
    } else {
        None
    };
    Page {
        items: std::mem::take(items),
        next,
    }
}

fn taken_webhook_name(name: &str, namespace: &NamespaceName) -> String {
    format!("a webhook named '{name}' already exists in namespace '{namespace}'")
}

impl PgStore {
    async fn headers_of(&self, webhook_id: i64) -> StoreResult<Vec<StoredHeader>> {
        let rows = sqlx::query(
            "SELECT name, value FROM webhook_headers WHERE webhook_id = $1 \
             ORDER BY lower(name), name",
        )
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredHeader {
                    name: HeaderName::trusted(r.try_get("name")?),
                    value: Sealed(r.try_get("value")?),
                })
            })
            .collect()
    }

    async fn namespace_id(&self, name: &NamespaceName) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace '{name}'")))
    }

    async fn replace_headers(
        tx: &mut Transaction<'_, Postgres>,
        webhook_id: i64,
        headers: &[StoredHeader],
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM webhook_headers WHERE webhook_id = $1")
            .bind(webhook_id)
            .execute(&mut **tx)
            .await?;
        for h in headers {
            // A name given twice (in any case) breaks the unique key; the transaction is
            // then dropped, so nothing of the change stays.
            sqlx::query(
                "INSERT INTO webhook_headers (webhook_id, name, value) VALUES ($1, $2, $3)",
            )
            .bind(webhook_id)
            .bind(h.name.as_str())
            .bind(&h.value.0)
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!("the header '{}' is given twice", h.name.as_str())
                })
            })?;
        }
        Ok(())
    }

    /// Keeps calling `wake` on every notification, reconnecting after errors, forever.
    async fn listen(options: PgConnectOptions, wake: Arc<dyn Fn() + Send + Sync>) {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for new deliveries; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if let Err(e) = listener.listen(WAKEUP_CHANNEL).await {
                tracing::warn!(error = %e, "cannot listen for new deliveries; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            tracing::debug!(channel = WAKEUP_CHANNEL, "listening for new deliveries");
            backoff = Duration::from_millis(200);
            // Whatever was notified while not listening is found by the next poll; waking
            // once after a (re)connect shortens even that.
            wake();
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => wake(),
                    Ok(None) => {
                        tracing::warn!("the notification connection was lost; reconnecting");
                        wake();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for new deliveries failed; reconnecting");
                        break;
                    }
                }
            }
            // A fresh listener, so a connection that failed oddly is not reused.
            drop(listener);
            tokio::time::sleep(backoff).await;
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so processes starting together migrate one at a time.
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn ingest(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
    ) -> StoreResult<IngestSummary> {
        let mut summary = IngestSummary::default();
        let mut tx = self.pool.begin().await?;
        // One lookup per namespace per envelope.
        let mut cache: std::collections::HashMap<String, Option<Vec<Candidate>>> =
            std::collections::HashMap::new();
        for event in events {
            // Decide the event's fate before storing it, so the row says why.
            let candidates = match (&event.disposition, &event.namespace) {
                (Disposition::Ignore(_), _) | (_, None) => None,
                (_, Some(ns)) => {
                    if !cache.contains_key(ns.as_str()) {
                        let ns_id: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM namespaces WHERE name = $1")
                                .bind(ns.as_str())
                                .fetch_optional(&mut *tx)
                                .await?;
                        let found = match ns_id {
                            None => None,
                            Some(id) => {
                                let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
                                    "SELECT id, filters FROM webhooks WHERE namespace_id = $1 AND enabled",
                                )
                                .bind(id)
                                .fetch_all(&mut *tx)
                                .await?;
                                Some(
                                    rows.into_iter()
                                        .map(|(id, f)| Candidate::new(id, f.as_deref()))
                                        .collect::<Vec<_>>(),
                                )
                            }
                        };
                        cache.insert(ns.as_str().to_string(), found);
                    }
                    cache.get(ns.as_str()).and_then(|c| c.as_deref())
                }
            };
            let (status, reason, webhooks) = decide(event, candidates);
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO events (registry_id, action, repository, namespace, tag, digest, \
                 media_type, actor, status, reason, body, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (registry_id) DO NOTHING RETURNING id",
            )
            .bind(opt_text(&event.registry_id))
            .bind(opt_text(&event.action))
            .bind(opt_text(&event.repository))
            .bind(event.namespace.as_ref().map(|n| n.as_str()))
            .bind(opt_text(&event.tag))
            .bind(opt_text(&event.digest))
            .bind(opt_text(&event.media_type))
            .bind(opt_text(&event.actor))
            .bind(status)
            .bind(opt_text(&reason))
            .bind(text(&event.body))
            .bind(to_ms(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(event_id) = inserted else {
                summary.duplicates += 1;
                continue;
            };
            match status {
                "ignored" => summary.ignored += 1,
                "skipped" => summary.skipped += 1,
                _ => summary.accepted += 1,
            }
            for webhook_id in webhooks {
                sqlx::query(
                    "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
                     created_at, updated_at) VALUES ($1, $2, 'pending', $3, $3, $3)",
                )
                .bind(webhook_id)
                .bind(event_id)
                .bind(to_ms(now))
                .execute(&mut *tx)
                .await?;
                summary.deliveries += 1;
            }
        }
        if summary.deliveries > 0 {
            // Delivered to listeners only when the transaction commits.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKEUP_CHANNEL)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn list_events(&self, limit: i64, before: Option<i64>) -> StoreResult<Page<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, registry_id, action, repository, namespace, tag, digest, status, reason, \
             received_at FROM events WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(StoredEvent {
                    id: r.try_get("id")?,
                    registry_id: r.try_get("registry_id")?,
                    action: r.try_get("action")?,
                    repository: r.try_get("repository")?,
                    namespace: r.try_get("namespace")?,
                    tag: r.try_get("tag")?,
                    digest: r.try_get("digest")?,
                    status: r.try_get("status")?,
                    reason: r.try_get("reason")?,
                    received_at: from_ms(r.try_get("received_at")?),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(&mut items, limit, |e| e.id))
    }

    async fn list_namespaces(&self, visibility: &Visibility) -> StoreResult<Vec<Namespace>> {
        let member_of = match visibility {
            Visibility::All => None,
            Visibility::MemberOf(user) => Some(*user),
        };
        let rows = sqlx::query(&format!(
            "{NAMESPACE_SELECT} WHERE ($1::BIGINT IS NULL OR n.team_id IN \
             (SELECT team_id FROM team_members WHERE user_id = $1)) ORDER BY n.name"
        ))
        .bind(member_of)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(namespace_from_row).collect()
    }

    async fn get_namespace(&self, name: &NamespaceName) -> StoreResult<Namespace> {
        let row = sqlx::query(&format!("{NAMESPACE_SELECT} WHERE n.name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace '{name}'")))?;
        namespace_from_row(&row)
    }

    async fn create_namespace(
        &self,
        name: &NamespaceName,
        description: &str,
        team_id: Option<i64>,
        audit: &Audit,
    ) -> StoreResult<Namespace> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO namespaces (name, description, team_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(name.as_str())
        .bind(text(description))
        .bind(team_id)
        .bind(to_ms(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the namespace '{name}' already exists")))?;
        let ctx = NsContext::load(&mut tx, name).await?;
        insert_activity(&mut tx, audit, &ctx, None).await?;
        tx.commit().await?;
        self.get_namespace(name).await
    }

    async fn delete_namespace(&self, name: &NamespaceName, audit: &Audit) -> StoreResult<()> {
        if name.is_global() {
            return Err(StoreError::Conflict(
                "the global namespace always exists and cannot be deleted".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        let ctx = NsContext::load(&mut tx, name).await?;
        sqlx::query("DELETE FROM namespaces WHERE id = $1")
            .bind(ctx.id)
            .execute(&mut *tx)
            .await?;
        insert_activity(&mut tx, audit, &ctx, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_webhooks(&self, namespace: &NamespaceName) -> StoreResult<Vec<Webhook>> {
        self.namespace_id(namespace).await?;
        let rows = sqlx::query(&format!("{WEBHOOK_SELECT} WHERE n.name = $1 ORDER BY w.id"))
            .bind(namespace.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let headers = self.headers_of(row.try_get("id")?).await?;
            out.push(webhook_from_row(row, headers)?);
        }
        Ok(out)
    }

    async fn get_webhook(&self, namespace: &NamespaceName, id: i64) -> StoreResult<Webhook> {
        let row = sqlx::query(&format!("{WEBHOOK_SELECT} WHERE n.name = $1 AND w.id = $2"))
            .bind(namespace.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("webhook {id} in namespace '{namespace}'"))
            })?;
        let headers = self.headers_of(id).await?;
        webhook_from_row(&row, headers)
    }

    async fn create_webhook(
        &self,
        namespace: &NamespaceName,
        new: NewWebhook,
        audit: &Audit,
    ) -> StoreResult<Webhook> {
        let now = to_ms(Utc::now());
        let mut tx = self.pool.begin().await?;
        let ctx = NsContext::load(&mut tx, namespace).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhooks (namespace_id, name, url, request_method, content_type, \
             username, password, enabled, created_at, updated_at, signing_secret, filters, format, \
             template, tls_verify) VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8, $9, $10, $11, $12, $13) \
             RETURNING id",
        )
        .bind(ctx.id)
        .bind(new.name.as_str())
        .bind(new.url.as_str())
        .bind(new.request_method.as_str())
        .bind(new.content_type.as_str())
        .bind(opt_text(&new.username))
        .bind(new.password.as_ref().map(|s| s.0.clone()))
        .bind(now)
        .bind(&new.signing_secret.0)
        .bind(filters_json(&new.filters))
        .bind(new.format.as_str())
        .bind(new.template.as_deref().map(text))
        .bind(new.tls_verify)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || taken_webhook_name(new.name.as_str(), namespace)))?;
        Self::replace_headers(&mut tx, id, &new.headers).await?;
        insert_activity(
            &mut tx,
            audit,
            &ctx,
            Some((id, new.name.as_str(), &new.url.host())),
        )
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
        let mut tx = self.pool.begin().await?;
        // Updating the webhook first locks its row, so concurrent header changes queue.
        sqlx::query(
            "UPDATE webhooks SET name = $1, url = $2, request_method = $3, content_type = $4, \
             username = $5, password = $6, enabled = $7, updated_at = $8, filters = $10, \
             format = $11, template = $12, tls_verify = $13, \
             failing_since = CASE WHEN NOT enabled THEN NULL ELSE failing_since END WHERE id = $9",
        )
        .bind(name.as_str())
        .bind(url.as_str())
        .bind(method.as_str())
        .bind(content_type.as_str())
        .bind(opt_text(&username))
        .bind(password.as_ref().map(|s| s.0.clone()))
        .bind(enabled)
        .bind(to_ms(Utc::now()))
        .bind(id)
        .bind(filters_json(&filters))
        .bind(format.as_str())
        .bind(template.as_deref().map(text))
        .bind(tls_verify)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || taken_webhook_name(name.as_str(), namespace)))?;
        if let Some(headers) = &patch.headers {
            Self::replace_headers(&mut tx, id, headers).await?;
        }
        let ctx = NsContext::load(&mut tx, namespace).await?;
        insert_activity(&mut tx, audit, &ctx, Some((id, name.as_str(), &url.host()))).await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let ctx = NsContext::load(&mut tx, namespace).await?;
        insert_activity(
            &mut tx,
            audit,
            &ctx,
            Some((id, hook.name.as_str(), &hook.url.host())),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_header(
        &self,
        namespace: &NamespaceName,
        webhook_id: i64,
        header: StoredHeader,
        audit: &Audit,
    ) -> StoreResult<bool> {
        let hook = self.get_webhook(namespace, webhook_id).await?;
        let mut tx = self.pool.begin().await?;
        // First, so the webhook's row lock serialises concurrent changes of its headers
        // (SQLite's single writer does the same) and "was it new" stays exact.
        sqlx::query("UPDATE webhooks SET updated_at = $1 WHERE id = $2")
            .bind(to_ms(Utc::now()))
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query(
            "DELETE FROM webhook_headers WHERE webhook_id = $1 AND lower(name) = lower($2)",
        )
        .bind(webhook_id)
        .bind(header.name.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("INSERT INTO webhook_headers (webhook_id, name, value) VALUES ($1, $2, $3)")
            .bind(webhook_id)
            .bind(header.name.as_str())
            .bind(&header.value.0)
            .execute(&mut *tx)
            .await?;
        let ctx = NsContext::load(&mut tx, namespace).await?;
        insert_activity(
            &mut tx,
            audit,
            &ctx,
            Some((webhook_id, hook.name.as_str(), &hook.url.host())),
        )
        .await?;
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM webhook_headers WHERE webhook_id = $1 AND lower(name) = lower($2)",
        )
        .bind(webhook_id)
        .bind(text(name))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "header '{name}' of webhook {webhook_id}"
            )));
        }
        let ctx = NsContext::load(&mut tx, namespace).await?;
        insert_activity(
            &mut tx,
            audit,
            &ctx,
            Some((webhook_id, hook.name.as_str(), &hook.url.host())),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_activity(
        &self,
        namespace: &NamespaceName,
        webhook_id: Option<i64>,
        audit: &Audit,
    ) -> StoreResult<()> {
        let hook = match webhook_id {
            Some(id) => Some(self.get_webhook(namespace, id).await?),
            None => None,
        };
        let host = hook.as_ref().map(|h| h.url.host()).unwrap_or_default();
        let target = hook
            .as_ref()
            .map(|h| (h.id, h.name.as_str(), host.as_str()));
        let mut tx = self.pool.begin().await?;
        let ctx = NsContext::load(&mut tx, namespace).await?;
        insert_activity(&mut tx, audit, &ctx, target).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_activities_by(
        &self,
        visibility: &Visibility,
        filter: ActivityFilter<'_>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<Activity>> {
        let member_of = match visibility {
            Visibility::All => None,
            Visibility::MemberOf(user) => Some(*user),
        };
        let rows = sqlx::query(
            "SELECT id, actor, action, team, namespace, webhook_id, webhook_name, webhook_host, \
             detail, created_at FROM activities \
             WHERE id < $1 AND ($2::TEXT IS NULL OR namespace = $2) \
               AND ($3::BIGINT IS NULL OR team_id IN \
                    (SELECT team_id FROM team_members WHERE user_id = $3)) \
               AND ($5::TEXT IS NULL OR actor = $5) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.namespace.map(text))
        .bind(member_of)
        .bind(limit + 1)
        .bind(filter.actor.map(text))
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(Activity {
                    id: r.try_get("id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    team: r.try_get("team")?,
                    namespace: r.try_get("namespace")?,
                    webhook_id: r.try_get("webhook_id")?,
                    webhook_name: r.try_get("webhook_name")?,
                    webhook_host: r.try_get("webhook_host")?,
                    detail: r.try_get("detail")?,
                    created_at: from_ms(r.try_get("created_at")?),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(&mut items, limit, |a| a.id))
    }

    async fn list_deliveries_in(
        &self,
        webhook_id: i64,
        state: Option<DeliveryState>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<DeliverySummary>> {
        let rows = sqlx::query(&format!(
            "{DELIVERY_SELECT} WHERE d.webhook_id = $1 AND d.id < $2 \
             AND ($4::TEXT IS NULL OR d.state = $4) ORDER BY d.id DESC LIMIT $3"
        ))
        .bind(webhook_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .bind(state.map(DeliveryState::as_str))
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(&mut items, limit, |d| d.id))
    }

    async fn get_delivery(&self, webhook_id: i64, delivery_id: i64) -> StoreResult<DeliveryDetail> {
        let row = sqlx::query(&format!(
            "{DELIVERY_SELECT} WHERE d.webhook_id = $1 AND d.id = $2"
        ))
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("delivery {delivery_id} of webhook {webhook_id}"))
        })?;
        let summary = delivery_from_row(&row)?;
        let method: Option<String> = row.try_get("request_method")?;
        let request = match method {
            None => None,
            Some(method) => {
                let body: Option<String> = row.try_get("request_body")?;
                Some(StoredRequest {
                    method,
                    url: row
                        .try_get::<Option<String>, _>("request_url")?
                        .unwrap_or_default(),
                    headers: headers_from_json(row.try_get("request_headers")?),
                    body: match body {
                        Some(b) => b,
                        None => row.try_get("event_body")?,
                    },
                })
            }
        };
        let attempts = sqlx::query(
            "SELECT id, started_at, duration_ms, status, error, response_headers, response_body, \
             truncated, manual FROM attempts WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(delivery_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Attempt {
                id: r.try_get("id")?,
                started_at: from_ms(r.try_get("started_at")?),
                duration_ms: r.try_get("duration_ms")?,
                status: r.try_get("status")?,
                error: r.try_get("error")?,
                response_headers: headers_from_json(r.try_get("response_headers")?),
                response_body: r.try_get("response_body")?,
                response_truncated: r.try_get("truncated")?,
                manual: r.try_get("manual")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(DeliveryDetail {
            summary,
            request,
            attempts,
        })
    }

    async fn claim_due_in(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        scope: ClaimScope<'_>,
    ) -> StoreResult<Vec<Claim>> {
        // SKIP LOCKED: claimers in other processes pass over the rows this one is taking
        // instead of waiting for them. MATERIALIZED: the LIMITed, locking subquery runs
        // exactly once; inlined into a join, the planner may run it again and claim more.
        // `webhook_id + 0`: the due index finds due rows in order, where one on webhook_id
        // would read the webhooks' whole history.
        const SKIPPING: &str = "WITH due AS MATERIALIZED ( \
               SELECT id FROM deliveries \
               WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $2 \
                 AND (locked_until IS NULL OR locked_until <= $2) \
                 AND webhook_id <> ALL($4) \
               ORDER BY next_attempt_at, id LIMIT $3 \
               FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET locked_until = $1, lease_token = d.lease_token + 1, \
               claimed_by = $5 \
             FROM due WHERE d.id = due.id \
             RETURNING d.id, d.webhook_id, d.lease_token";
        const ONLY: &str = "WITH due AS MATERIALIZED ( \
               SELECT id FROM deliveries \
               WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $2 \
                 AND (locked_until IS NULL OR locked_until <= $2) \
                 AND webhook_id + 0 = ANY($4) \
               ORDER BY next_attempt_at, id LIMIT $3 \
               FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET locked_until = $1, lease_token = d.lease_token + 1, \
               claimed_by = $5 \
             FROM due WHERE d.id = due.id \
             RETURNING d.id, d.webhook_id, d.lease_token";
        // The rows of the window that are not taken stay locked only until this statement
        // commits; other claimers pass over them meanwhile.
        const ONE_PER_WEBHOOK: &str = "WITH window_ AS MATERIALIZED ( \
               SELECT id, webhook_id, next_attempt_at FROM deliveries \
               WHERE state IN ('pending', 'retrying') AND next_attempt_at <= $2 \
                 AND (locked_until IS NULL OR locked_until <= $2) \
                 AND webhook_id <> ALL($4) \
               ORDER BY next_attempt_at, id LIMIT $5 \
               FOR UPDATE SKIP LOCKED), \
             due AS MATERIALIZED ( \
               SELECT id FROM ( \
                 SELECT DISTINCT ON (webhook_id) id, next_attempt_at FROM window_ \
                 ORDER BY webhook_id, next_attempt_at, id) firsts \
               ORDER BY next_attempt_at, id LIMIT $3) \
             UPDATE deliveries d SET locked_until = $1, lease_token = d.lease_token + 1, \
               claimed_by = $6 \
             FROM due WHERE d.id = due.id \
             RETURNING d.id, d.webhook_id, d.lease_token";
        let (webhooks, _) = scope.webhooks();
        let query = match scope {
            ClaimScope::Skipping(_) => sqlx::query_as(SKIPPING),
            ClaimScope::Only(_) => sqlx::query_as(ONLY),
            ClaimScope::OnePerWebhookSkipping(_) => sqlx::query_as(ONE_PER_WEBHOOK),
        };
        let query = query
            .bind(to_ms(lease_until))
            .bind(to_ms(now))
            .bind(limit)
            .bind(webhooks);
        // The claims name this process, so that the others give them back within seconds
        // if its heartbeat stops (`liveness`); `NULL` before it registered.
        let worker = self.worker_id.get().copied();
        let query = match scope {
            ClaimScope::OnePerWebhookSkipping(_) => {
                query.bind(one_per_webhook_window(limit)).bind(worker)
            }
            _ => query.bind(worker),
        };
        let rows: Vec<(i64, i64, i64)> = query.fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(|(delivery_id, webhook_id, token)| Claim {
                delivery_id,
                webhook_id,
                token,
            })
            .collect())
    }

    async fn renew_lease(
        &self,
        delivery_id: i64,
        token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // A claim racing with this waits for the row and then sees the renewed lease, or
        // got there first and changed the token: either way one of the two wins.
        let done = sqlx::query(
            "UPDATE deliveries SET locked_until = $1 WHERE id = $2 AND lease_token = $3 \
             AND state IN ('pending', 'retrying')",
        )
        .bind(to_ms(lease_until))
        .bind(delivery_id)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_job(&self, delivery_id: i64) -> StoreResult<DeliveryJob> {
        let row = sqlx::query(
            "SELECT d.webhook_id, d.attempts, d.state, d.next_attempt_at, e.action, e.body, \
             n.name AS namespace, \
             (SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id AND NOT a.manual) \
               AS automatic_attempts, \
             e.registry_id, e.repository, e.tag, e.digest, e.media_type, e.actor, e.received_at \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             JOIN webhooks w ON w.id = d.webhook_id JOIN namespaces n ON n.id = w.namespace_id \
             WHERE d.id = $1",
        )
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
        let namespace = NamespaceName::trusted(row.try_get("namespace")?);
        let state: String = row.try_get("state")?;
        let webhook = self
            .get_webhook(&namespace, row.try_get("webhook_id")?)
            .await?;
        Ok(DeliveryJob {
            delivery_id,
            attempts_so_far: row.try_get("attempts")?,
            automatic_attempts: row.try_get("automatic_attempts")?,
            next_attempt_at: row
                .try_get::<Option<i64>, _>("next_attempt_at")?
                .map(from_ms),
            state: super::stored_state(delivery_id, &state)?,
            webhook,
            event_action: row
                .try_get::<Option<String>, _>("action")?
                .unwrap_or_default(),
            event_body: row.try_get("body")?,
            event: EventRecord {
                action: row
                    .try_get::<Option<String>, _>("action")?
                    .unwrap_or_default(),
                registry_id: row.try_get("registry_id")?,
                repository: row.try_get("repository")?,
                tag: row.try_get("tag")?,
                digest: row.try_get("digest")?,
                media_type: row.try_get("media_type")?,
                actor: row.try_get("actor")?,
                received_at: from_ms(row.try_get("received_at")?),
            },
        })
    }

    async fn record_attempt(&self, r: AttemptRecord) -> StoreResult<()> {
        let (state, next) = match r.outcome {
            Outcome::Succeeded => (DeliveryState::Succeeded, None),
            Outcome::RetryAt(at) => (DeliveryState::Retrying, Some(to_ms(at))),
            Outcome::Failed => (DeliveryState::Failed, None),
        };
        let headers = serde_json::to_string(&r.request.headers).unwrap_or_else(|_| "[]".into());
        let response_headers =
            serde_json::to_string(&r.response_headers).unwrap_or_else(|_| "[]".into());
        let mut tx = self.pool.begin().await?;
        // A manual attempt (no lease) leaves a worker's lease alone; a worker's attempt
        // counts only under its current claim.
        let updated = sqlx::query(
            "UPDATE deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, \
             locked_until = CASE WHEN $3::BIGINT IS NULL THEN locked_until ELSE NULL END, \
             last_status = $4, last_error = $5, request_method = $6, request_url = $7, \
             request_headers = $8, request_body = $9, updated_at = $10 \
             WHERE id = $11 AND ($3::BIGINT IS NULL OR lease_token = $3)",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(r.lease)
        .bind(r.status.map(i64::from))
        .bind(opt_text(&r.error))
        .bind(text(&r.request.method))
        .bind(text(&r.request.url))
        .bind(&headers)
        .bind(if r.body_is_event {
            None
        } else {
            Some(text(&r.request.body))
        })
        .bind(to_ms(Utc::now()))
        .bind(r.delivery_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(match r.lease {
                Some(_) => lease_lost(r.delivery_id),
                None => StoreError::NotFound(format!("delivery {}", r.delivery_id)),
            });
        }
        sqlx::query(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, status, error, \
             response_headers, response_body, truncated, manual) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.delivery_id)
        .bind(to_ms(r.started_at))
        .bind(r.duration_ms)
        .bind(r.status.map(i64::from))
        .bind(opt_text(&r.error))
        .bind(&response_headers)
        .bind(text(&r.response_body))
        .bind(r.response_truncated)
        .bind(r.manual)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn abandon(&self, delivery_id: i64, lease: Option<i64>, reason: &str) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, \
             locked_until = CASE WHEN $1::BIGINT IS NULL THEN locked_until ELSE NULL END, \
             last_error = $2, updated_at = $3 \
             WHERE id = $4 AND ($1::BIGINT IS NULL OR lease_token = $1)",
        )
        .bind(lease)
        .bind(text(reason))
        .bind(to_ms(Utc::now()))
        .bind(delivery_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 && lease.is_some() {
            return Err(lease_lost(delivery_id));
        }
        Ok(())
    }

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        email: Option<&str>,
        admin: bool,
    ) -> StoreResult<User> {
        let now = to_ms(Utc::now());
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, email, admin, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id, username, email, admin, disabled, created_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(email.map(text))
        .bind(admin)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the user '{username}' already exists")))?;
        let user = user_from_row(&row)?;
        // The personal team and namespace come with the user, or nothing is created.
        let team_id: i64 = sqlx::query_scalar(
            "INSERT INTO teams (name, personal, created_at) VALUES ($1, TRUE, $2) RETURNING id",
        )
        .bind(format!("~{username}"))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(team_id)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO namespaces (name, description, team_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(username)
        .bind(format!("Personal namespace of {username}"))
        .bind(team_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "a namespace named '{username}' already exists, so it cannot become the \
                     user's personal namespace"
                )
            })
        })?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, email, admin, disabled, created_at, password_hash \
             FROM users WHERE username = $1",
        )
        .bind(text(username))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("password_hash")?))),
        }
    }

    async fn create_source(&self, new: &NewSource, audit: &Audit) -> StoreResult<Source> {
        let mut tx = self.pool.begin().await?;
        let created_at: i64 = sqlx::query_scalar(
            "INSERT INTO sources (name, kind, username, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
        )
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.username)
        .bind(&new.secret_hash)
        .bind(to_ms(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || format!("the source '{}' already exists", new.name))
        })?;
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await?;
        Ok(source_from_parts(
            new.name.clone(),
            new.kind.as_str(),
            new.username.clone(),
            created_at,
        ))
    }

    async fn list_sources(&self) -> StoreResult<Vec<Source>> {
        let rows =
            sqlx::query("SELECT name, kind, username, created_at FROM sources ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(source_from_parts(
                    r.try_get("name")?,
                    r.try_get::<String, _>("kind")?.as_str(),
                    r.try_get("username")?,
                    r.try_get("created_at")?,
                ))
            })
            .collect()
    }

    async fn source_credential(&self, name: &str) -> StoreResult<Option<(Source, String)>> {
        let row = sqlx::query(
            "SELECT name, kind, username, secret_hash, created_at FROM sources WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                source_from_parts(
                    r.try_get("name")?,
                    r.try_get::<String, _>("kind")?.as_str(),
                    r.try_get("username")?,
                    r.try_get("created_at")?,
                ),
                r.try_get("secret_hash")?,
            ))
        })
        .transpose()
    }

    async fn delete_source(&self, name: &str, audit: &Audit) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM sources WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("source '{name}'")));
        }
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, username, email, admin, disabled, created_at FROM users ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(password_hash)
            .bind(text(username))
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user '{username}'")));
        }
        Ok(())
    }

    async fn webhook_statuses(
        &self,
        namespace: &NamespaceName,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WebhookStatus>> {
        let rows = sqlx::query(&webhook_status_sql(STATUS_OF_NAMESPACE))
            .bind(to_ms(since))
            .bind(namespace.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(status_from_row).collect()
    }

    async fn webhooks_needing_attention(
        &self,
        visibility: &Visibility,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WebhookStatus>> {
        let member_of = match visibility {
            Visibility::All => None,
            Visibility::MemberOf(user) => Some(*user),
        };
        let rows = sqlx::query(&webhook_status_sql(STATUS_NEEDING_ATTENTION))
            .bind(to_ms(since))
            .bind(member_of)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(status_from_row).collect()
    }

    async fn update_user(
        &self,
        username: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> StoreResult<User> {
        let row = sqlx::query(
            "UPDATE users SET admin = COALESCE($1, admin), disabled = COALESCE($2, disabled) \
             WHERE username = $3 RETURNING id, username, email, admin, disabled, created_at",
        )
        .bind(admin)
        .bind(disabled)
        .bind(text(username))
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
        user_from_row(&row)
    }

    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        token_hash: &str,
    ) -> StoreResult<ApiToken> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (user_id, label, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id, label, created_at, last_used_at",
        )
        .bind(user_id)
        .bind(text(label))
        .bind(token_hash)
        .bind(to_ms(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        token_from_row(&row)
    }

    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, label, created_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, user_id: i64, token_id: i64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(to_ms(Utc::now()))
        .bind(token_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {token_id}")));
        }
        Ok(())
    }

    async fn authenticate_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.email, u.admin, u.disabled, u.created_at, \
             t.id AS token_id, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(text(token_hash))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // Record use at most once a minute: a write per API call would be wasteful.
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|t| to_ms(now) - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(to_ms(now))
                .bind(row.try_get::<i64, _>("token_id")?)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(user_from_row(&row)?))
    }

    async fn list_teams(&self, visibility: &Visibility) -> StoreResult<Vec<Team>> {
        let member_of = match visibility {
            Visibility::All => None,
            Visibility::MemberOf(user) => Some(*user),
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM teams WHERE NOT personal AND ($1::BIGINT IS NULL OR id IN \
             (SELECT team_id FROM team_members WHERE user_id = $1)) ORDER BY name",
        )
        .bind(member_of)
        .fetch_all(&self.pool)
        .await?;
        let mut teams = Vec::with_capacity(names.len());
        for name in names {
            teams.push(self.get_team(&name).await?);
        }
        Ok(teams)
    }

    async fn get_team(&self, name: &str) -> StoreResult<Team> {
        let row = sqlx::query(
            "SELECT id, name, description, personal, created_at FROM teams WHERE name = $1",
        )
        .bind(text(name))
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team '{name}'")))?;
        let id: i64 = row.try_get("id")?;
        let members = sqlx::query(
            "SELECT u.username, m.role FROM team_members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 ORDER BY u.username",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let role: String = r.try_get("role")?;
            Ok(Member {
                username: r.try_get("username")?,
                role: Role::parse(&role).unwrap_or(Role::Viewer),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Team {
            id,
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            personal: row.try_get("personal")?,
            created_at: from_ms(row.try_get("created_at")?),
            members,
        })
    }

    async fn create_team(
        &self,
        name: &str,
        description: &str,
        owner_id: i64,
        audit: &Audit,
    ) -> StoreResult<Team> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO teams (name, description, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(text(name))
        .bind(text(description))
        .bind(to_ms(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the team '{name}' already exists")))?;
        sqlx::query("INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(id)
            .bind(owner_id)
            .execute(&mut *tx)
            .await?;
        write_activity(&mut tx, audit, Some(id), Some(name), None, None).await?;
        tx.commit().await?;
        self.get_team(name).await
    }

    async fn set_member(
        &self,
        team: &str,
        user_id: i64,
        role: Role,
        audit: &Audit,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let team_id = lock_team(&mut tx, team).await?;
        let current = member_role(&mut tx, team_id, user_id).await?;
        if current == Some(Role::Owner) && role != Role::Owner {
            ensure_another_owner(&mut tx, team, team_id).await?;
        }
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        write_activity(&mut tx, audit, Some(team_id), Some(team), None, None).await?;
        tx.commit().await?;
        Ok(current.is_none())
    }

    async fn remove_member(&self, team: &str, user_id: i64, audit: &Audit) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let team_id = lock_team(&mut tx, team).await?;
        match member_role(&mut tx, team_id, user_id).await? {
            None => {
                return Err(StoreError::NotFound(format!(
                    "that member of team '{team}'"
                )))
            }
            Some(Role::Owner) => ensure_another_owner(&mut tx, team, team_id).await?,
            Some(_) => {}
        }
        sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        write_activity(&mut tx, audit, Some(team_id), Some(team), None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn role_in_team(&self, team_id: i64, user_id: i64) -> StoreResult<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
                .bind(team_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(role.as_deref().and_then(Role::parse))
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE webhooks SET previous_signing_secret = signing_secret, previous_secret_until = $1, \
             signing_secret = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(to_ms(keep_previous_until))
        .bind(&secret.0)
        .bind(to_ms(Utc::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let ctx = NsContext::load(&mut tx, namespace).await?;
        insert_activity(
            &mut tx,
            audit,
            &ctx,
            Some((id, hook.name.as_str(), &hook.url.host())),
        )
        .await?;
        tx.commit().await?;
        self.get_webhook(namespace, id).await
    }

    async fn webhook_health(
        &self,
        webhook_id: i64,
        health: Health,
        now: DateTime<Utc>,
        disable_after: std::time::Duration,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT w.enabled, w.failing_since, w.name, w.url, n.name AS namespace FROM webhooks w \
             JOIN namespaces n ON n.id = w.namespace_id WHERE w.id = $1 FOR UPDATE OF w",
        )
        .bind(webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let enabled: bool = row.try_get("enabled")?;
        let failing_since: Option<i64> = row.try_get("failing_since")?;
        let cutoff = to_ms(now) - disable_after.as_millis() as i64;
        let disable = enabled
            && match health {
                Health::Succeeded => false,
                Health::Gone => true,
                Health::Failed => failing_since.is_some_and(|t| t <= cutoff),
            };
        let (enabled_after, failing_after) = match (health, disable) {
            (Health::Succeeded, _) => (enabled, None),
            (_, true) => (false, None),
            (_, false) => (enabled, Some(failing_since.unwrap_or(to_ms(now)))),
        };
        sqlx::query("UPDATE webhooks SET enabled = $1, failing_since = $2 WHERE id = $3")
            .bind(enabled_after)
            .bind(failing_after)
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
        if disable {
            let namespace = NamespaceName::trusted(row.try_get("namespace")?);
            let name: String = row.try_get("name")?;
            let url = WebhookUrl::trusted(row.try_get("url")?);
            let detail = match health {
                Health::Gone => "the receiver answered 410 Gone".to_string(),
                _ => format!(
                    "every attempt failed for {}",
                    humantime::format_duration(disable_after)
                ),
            };
            let audit = Audit::new("herald", "webhook.auto_disabled").detail(detail);
            let ctx = NsContext::load(&mut tx, &namespace).await?;
            insert_activity(
                &mut tx,
                &audit,
                &ctx,
                Some((webhook_id, &name, &url.host())),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(disable)
    }

    async fn requeue_failed(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = $1, locked_until = NULL, \
             updated_at = $2 WHERE webhook_id = $3 AND state = 'failed' AND created_at >= $4 AND created_at < $5",
        )
        .bind(to_ms(now))
        .bind(to_ms(now))
        .bind(webhook_id)
        .bind(to_ms(since))
        .bind(to_ms(until))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn create_ping(
        &self,
        webhook_id: i64,
        registry_id: &str,
        repository: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        let namespace: Option<String> = sqlx::query_scalar(
            "SELECT n.name FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id WHERE w.id = $1",
        )
        .bind(webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        let namespace =
            namespace.ok_or_else(|| StoreError::NotFound(format!("webhook {webhook_id}")))?;
        let event_id: i64 = sqlx::query_scalar(
            "INSERT INTO events (registry_id, action, repository, namespace, status, reason, body, received_at) \
             VALUES ($1, 'ping', $2, $3, 'accepted', 'ping from Herald', $4, $5) RETURNING id",
        )
        .bind(registry_id)
        .bind(repository)
        .bind(&namespace)
        .bind(body)
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await?;
        let delivery_id: i64 = sqlx::query_scalar(
            "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, created_at, updated_at) \
             VALUES ($1, $2, 'pending', NULL, $3, $4) RETURNING id",
        )
        .bind(webhook_id)
        .bind(event_id)
        .bind(to_ms(now))
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(delivery_id)
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let now = Utc::now();
        // Expired sessions are swept whenever a new one starts: no separate job needed.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(to_ms(now))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.email, u.admin, u.disabled, u.created_at, s.csrf_token \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND NOT u.disabled",
        )
        .bind(token_hash)
        .bind(to_ms(now))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("csrf_token")?))),
        }
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delivery_stats(
        &self,
        webhook_id: i64,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<HourStats>> {
        let since = to_ms(since);
        let mut hours: std::collections::BTreeMap<i64, HourStats> =
            std::collections::BTreeMap::new();
        let rows = sqlx::query(
            "SELECT (created_at - $1) / 3600000 AS hour, \
             COUNT(*) FILTER (WHERE state = 'succeeded') AS succeeded, \
             COUNT(*) FILTER (WHERE state = 'failed') AS failed, \
             COUNT(*) FILTER (WHERE state IN ('pending', 'retrying')) AS waiting \
             FROM deliveries WHERE webhook_id = $2 AND created_at >= $1 GROUP BY 1",
        )
        .bind(since)
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let hour: i64 = r.try_get("hour")?;
            let entry = hours.entry(hour).or_default();
            entry.hour = hour;
            entry.succeeded = r.try_get("succeeded")?;
            entry.failed = r.try_get("failed")?;
            entry.waiting = r.try_get("waiting")?;
        }
        let rows = sqlx::query(
            "SELECT (a.started_at - $1) / 3600000 AS hour, AVG(a.duration_ms)::float8 AS mean_ms \
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.webhook_id = $2 AND a.started_at >= $1 GROUP BY 1",
        )
        .bind(since)
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let hour: i64 = r.try_get("hour")?;
            let entry = hours.entry(hour).or_default();
            entry.hour = hour;
            entry.mean_ms = r.try_get("mean_ms")?;
        }
        Ok(hours.into_values().collect())
    }

    async fn migrations_current(&self) -> StoreResult<bool> {
        let known = sqlx::migrate!("./migrations/postgres").iter().count() as i64;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        Ok(applied >= known)
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending') AS pending, \
             COUNT(*) FILTER (WHERE state = 'retrying') AS retrying, \
             MIN(next_attempt_at) FILTER (WHERE next_attempt_at <= $1) AS oldest \
             FROM deliveries WHERE state IN ('pending', 'retrying')",
        )
        .bind(to_ms(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            pending: row.try_get("pending")?,
            retrying: row.try_get("retrying")?,
            oldest_due_at: opt_ms(row.try_get("oldest")?),
        })
    }

    async fn record_key_check(&self, candidate: &str) -> StoreResult<String> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('secret_key_check', $1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(candidate)
        .execute(&mut *tx)
        .await?;
        let recorded: String =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'secret_key_check'")
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn has_key_check(&self) -> StoreResult<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'secret_key_check'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn any_sealed_secret(&self) -> StoreResult<Option<Sealed>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT signing_secret FROM webhooks WHERE signing_secret IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(sealed.map(Sealed))
    }

    async fn release_all_claims(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET locked_until = NULL \
             WHERE locked_until IS NOT NULL AND state IN ('pending', 'retrying')",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn release(&self, delivery_ids: &[i64]) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET locked_until = NULL \
             WHERE id = ANY($1) AND state IN ('pending', 'retrying')",
        )
        .bind(delivery_ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn prune(
        &self,
        before: DateTime<Utc>,
        keep_per_webhook: i64,
        batch: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let old = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries \
             WHERE created_at < $1 AND state IN ('succeeded', 'failed') ORDER BY id LIMIT $2)",
        )
        .bind(to_ms(before))
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let extra = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM ( \
               SELECT id, state, ROW_NUMBER() OVER (PARTITION BY webhook_id ORDER BY id DESC) AS n \
               FROM deliveries) ranked WHERE n > $1 AND state IN ('succeeded', 'failed') LIMIT $2)",
        )
        .bind(keep_per_webhook)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.received_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) ORDER BY e.id LIMIT $2)",
        )
        .bind(to_ms(before))
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(old + extra)
    }

    fn wakeups(&self, wake: Arc<dyn Fn() + Send + Sync>) -> Option<WakeupTask> {
        Some(Box::pin(Self::listen(self.listen_options.clone(), wake)))
    }

    async fn liveness(
        &self,
        released: Arc<dyn Fn() + Send + Sync>,
    ) -> StoreResult<Option<WakeupTask>> {
        let now = to_ms(Utc::now());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO workers (host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             RETURNING id",
        )
        .bind(host)
        .bind(i64::from(std::process::id()))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let _ = self.worker_id.set(id);
        let pool = self.pool.clone();
        Ok(Some(Box::pin(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
            loop {
                ticks.tick().await;
                match heartbeat(&pool, id).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(
                            deliveries = n,
                            "gave back the claims of a Herald process that stopped heartbeating"
                        );
                        released();
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
                }
            }
        })))
    }
}

/// Beats for `id`, then gives back the claims of processes that missed their beats and
/// forgets them; returns how many deliveries were given back.
async fn heartbeat(pool: &PgPool, id: i64) -> StoreResult<u64> {
    let now = Utc::now();
    let dead_before = to_ms(now) - (HEARTBEAT_INTERVAL * HEARTBEATS_MISSED).as_millis() as i64;
    let mut tx = pool.begin().await?;
    // A process declared dead that beats again simply registers anew under its old id.
    sqlx::query(
        "INSERT INTO workers (id, host, pid, started_at, heartbeat_at) \
         OVERRIDING SYSTEM VALUE VALUES ($1, '', 0, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
    )
    .bind(id)
    .bind(to_ms(now))
    .execute(&mut *tx)
    .await?;
    let released = sqlx::query(
        "UPDATE deliveries SET locked_until = NULL, claimed_by = NULL \
         WHERE claimed_by IN (SELECT id FROM workers WHERE heartbeat_at < $1) \
         AND state IN ('pending', 'retrying')",
    )
    .bind(dead_before)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
        .bind(dead_before)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(released)
}

/// A namespace's id and team, as an activity records them.
struct NsContext {
    id: i64,
    name: String,
    team_id: Option<i64>,
    team: Option<String>,
}

impl NsContext {
    async fn load(tx: &mut Transaction<'_, Postgres>, name: &NamespaceName) -> StoreResult<Self> {
        let row = sqlx::query(
            "SELECT n.id, n.name, n.team_id, t.name AS team FROM namespaces n \
             LEFT JOIN teams t ON t.id = n.team_id WHERE n.name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("namespace '{name}'")))?;
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            team_id: row.try_get("team_id")?,
            team: row.try_get("team")?,
        })
    }
}

async fn insert_activity(
    tx: &mut Transaction<'_, Postgres>,
    audit: &Audit,
    ns: &NsContext,
    webhook: Option<(i64, &str, &str)>,
) -> StoreResult<()> {
    write_activity(
        tx,
        audit,
        ns.team_id,
        ns.team.as_deref(),
        Some(&ns.name),
        webhook,
    )
    .await
}

async fn write_activity(
    tx: &mut Transaction<'_, Postgres>,
    audit: &Audit,
    team_id: Option<i64>,
    team: Option<&str>,
    namespace: Option<&str>,
    webhook: Option<(i64, &str, &str)>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO activities (actor, action, team_id, team, namespace, webhook_id, \
         webhook_name, webhook_host, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(text(&audit.actor))
    .bind(audit.action)
    .bind(team_id)
    .bind(team.map(text))
    .bind(namespace.map(text))
    .bind(webhook.map(|w| w.0))
    .bind(webhook.map(|w| text(w.1)))
    .bind(webhook.map(|w| text(w.2)))
    .bind(opt_text(&audit.detail))
    .bind(to_ms(Utc::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The team's id, with its row locked until the transaction ends: the "keeps one owner"
/// check and the change it guards cannot interleave with another process's.
async fn lock_team(tx: &mut Transaction<'_, Postgres>, team: &str) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT id FROM teams WHERE name = $1 FOR UPDATE")
        .bind(text(team))
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team '{team}'")))
}

async fn member_role(
    tx: &mut Transaction<'_, Postgres>,
    team_id: i64,
    user_id: i64,
) -> StoreResult<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(role.as_deref().and_then(Role::parse))
}

/// A team always keeps at least one owner.
async fn ensure_another_owner(
    tx: &mut Transaction<'_, Postgres>,
    team: &str,
    team_id: i64,
) -> StoreResult<()> {
    let owners: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM team_members WHERE team_id = $1 AND role = 'owner'",
    )
    .bind(team_id)
    .fetch_one(&mut **tx)
    .await?;
    if owners <= 1 {
        return Err(StoreError::Conflict(format!(
            "team '{team}' must keep at least one owner: make someone else owner first"
        )));
    }
    Ok(())
}
