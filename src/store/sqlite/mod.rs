//! The embedded default: SQLite in WAL mode with full fsync on commit, so a 2xx to the
//! registry always means the events are on disk.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::*;
use group_commit::{Done, GroupCommit, Job};

mod group_commit;
mod owner;

pub use owner::DataDirLock;

/// Bytes of the database file readers map into memory (address space, not RSS: pages are
/// the kernel's page cache, shared and reclaimable).
const MMAP_SIZE: u64 = 1 << 30;

/// Write transactions take the write lock at once: one that read first and then found
/// the group committer's connection had written meanwhile would fail at once with
/// SQLITE_BUSY instead of waiting its turn.
const IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// Two pools: one connection for writes, so writers queue in-process instead of fighting
/// over SQLite's lock, and several for reads, which WAL lets run beside the writer.
/// Ingest and delivery results, the writes that come in floods, share commits through
/// `group_commit`.
#[derive(Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    writer: GroupCommit,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if !url.contains(":memory:") && !url.contains("mode=memory") {
            private_database_files(options.get_filename())?;
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        // Readers map the file: after each commit elsewhere a reader drops its page cache,
        // and reading pages from the mapping is far cheaper than a pread per page.
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().pragma("mmap_size", MMAP_SIZE.to_string()))
            .await?;
        let writer = GroupCommit::start(options.get_filename())?;
        Ok(Self {
            write,
            read,
            writer,
        })
    }

    /// Transactions the group committer has run: fewer than its jobs under load.
    pub fn group_commits(&self) -> u64 {
        self.writer.commits()
    }
}

/// The database holds every event and the sealed secrets: only Herald's user may read it.
/// SQLite would create the file 0644 (less the umask) and gives its `-wal` and `-shm` files
/// the database file's mode, so the file is created 0600 first (empty, which SQLite takes
/// as a new database) and all three are private, without touching the process's umask. An
/// existing database that others may read is tightened, with its `-wal` and `-shm`.
fn private_database_files(path: &std::path::Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
    match options.open(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        if let Some(had) = crate::secrets::tighten(&file, 0o600).map_err(io)? {
            tracing::warn!(path = %file.display(), was = format!("{had:o}"), "others could read the database; it is now 0600");
        }
    }
    Ok(())
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

fn webhook_from_row(row: &SqliteRow, headers: Vec<StoredHeader>) -> StoreResult<Webhook> {
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

/// What `webhook_from_row` reads, from `webhooks w` joined with `namespaces n`.
macro_rules! webhook_columns {
    () => {
        "SELECT w.id, n.name AS namespace, w.name, w.url, w.request_method, w.content_type, \
         w.username, w.password, w.enabled, w.created_at, w.updated_at, w.signing_secret, \
         w.previous_signing_secret, w.previous_secret_until, w.failing_since, w.filters, \
         w.format, w.template, w.tls_verify"
    };
}

const WEBHOOK_COLUMNS: &str = webhook_columns!();

const WEBHOOK_SELECT: &str = concat!(
    webhook_columns!(),
    " FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id"
);

/// Bytes from SQLite's `hex()`; `None` if the text is not hex.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

const DELIVERY_SELECT: &str = "SELECT d.id, d.webhook_id, d.state, d.attempts, d.last_status, \
     d.last_error, d.next_attempt_at, d.created_at, d.updated_at, d.request_method, d.request_url, \
     d.request_headers, d.request_body, e.registry_id, e.action, e.repository, e.tag, e.digest, \
     e.body AS event_body \
     FROM deliveries d JOIN events e ON e.id = d.event_id";

fn delivery_from_row(row: &SqliteRow) -> StoreResult<DeliverySummary> {
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

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        admin: row.try_get("admin")?,
        disabled: row.try_get("disabled")?,
        created_at: from_ms(row.try_get("created_at")?),
    })
}

impl SqliteStore {
    async fn headers_of(&self, webhook_id: i64) -> StoreResult<Vec<StoredHeader>> {
        let rows = sqlx::query(
            "SELECT name, value FROM webhook_headers WHERE webhook_id = ? ORDER BY name",
        )
        .bind(webhook_id)
        .fetch_all(&self.read)
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
        sqlx::query_scalar("SELECT id FROM namespaces WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("namespace '{name}'")))
    }

    async fn replace_headers(
        tx: &mut Transaction<'_, Sqlite>,
        webhook_id: i64,
        headers: &[StoredHeader],
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM webhook_headers WHERE webhook_id = ?")
            .bind(webhook_id)
            .execute(&mut **tx)
            .await?;
        for h in headers {
            sqlx::query("INSERT INTO webhook_headers (webhook_id, name, value) VALUES (?, ?, ?)")
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
}

fn mismatched() -> StoreError {
    StoreError::Writer("it answered a different kind of job".into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.write)
            .await
            .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    fn writer_busy_for(&self) -> Option<Duration> {
        self.writer.busy_for()
    }

    async fn ingest(
        &self,
        events: &[IncomingEvent],
        now: DateTime<Utc>,
    ) -> StoreResult<IngestSummary> {
        let job = Job::Ingest {
            events: events.to_vec(),
            now,
        };
        match self.writer.submit(job).await? {
            Done::Ingested(summary) => Ok(summary),
            _ => Err(mismatched()),
        }
    }

    async fn list_events(&self, limit: i64, before: Option<i64>) -> StoreResult<Page<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, registry_id, action, repository, namespace, tag, digest, status, reason, \
             received_at FROM events WHERE id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.read)
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
            "{NAMESPACE_SELECT} WHERE (?1 IS NULL OR n.team_id IN \
             (SELECT team_id FROM team_members WHERE user_id = ?1)) ORDER BY n.name"
        ))
        .bind(member_of)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(namespace_from_row).collect()
    }

    async fn get_namespace(&self, name: &NamespaceName) -> StoreResult<Namespace> {
        let row = sqlx::query(&format!("{NAMESPACE_SELECT} WHERE n.name = ?"))
            .bind(name.as_str())
            .fetch_optional(&self.read)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO namespaces (name, description, team_id, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(name.as_str())
        .bind(description)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let ctx = NsContext::load(&mut tx, name).await?;
        sqlx::query("DELETE FROM namespaces WHERE id = ?")
            .bind(ctx.id)
            .execute(&mut *tx)
            .await?;
        insert_activity(&mut tx, audit, &ctx, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_webhooks(&self, namespace: &NamespaceName) -> StoreResult<Vec<Webhook>> {
        self.namespace_id(namespace).await?;
        let rows = sqlx::query(&format!("{WEBHOOK_SELECT} WHERE n.name = ? ORDER BY w.id"))
            .bind(namespace.as_str())
            .fetch_all(&self.read)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let headers = self.headers_of(row.try_get("id")?).await?;
            out.push(webhook_from_row(row, headers)?);
        }
        Ok(out)
    }

    async fn get_webhook(&self, namespace: &NamespaceName, id: i64) -> StoreResult<Webhook> {
        let row = sqlx::query(&format!("{WEBHOOK_SELECT} WHERE n.name = ? AND w.id = ?"))
            .bind(namespace.as_str())
            .bind(id)
            .fetch_optional(&self.read)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let ctx = NsContext::load(&mut tx, namespace).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhooks (namespace_id, name, url, request_method, content_type, \
             username, password, enabled, created_at, updated_at, signing_secret, filters, format, \
             template, tls_verify) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(ctx.id)
        .bind(new.name.as_str())
        .bind(new.url.as_str())
        .bind(new.request_method.as_str())
        .bind(new.content_type.as_str())
        .bind(&new.username)
        .bind(new.password.as_ref().map(|s| s.0.clone()))
        .bind(now)
        .bind(now)
        .bind(&new.signing_secret.0)
        .bind(filters_json(&new.filters))
        .bind(new.format.as_str())
        .bind(&new.template)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        sqlx::query(
            "UPDATE webhooks SET name = ?, url = ?, request_method = ?, content_type = ?, \
             username = ?, password = ?, enabled = ?, updated_at = ?, filters = ?, format = ?, \
             template = ?, tls_verify = ?, \
             failing_since = CASE WHEN enabled = 0 THEN NULL ELSE failing_since END WHERE id = ?",
        )
        .bind(name.as_str())
        .bind(url.as_str())
        .bind(method.as_str())
        .bind(content_type.as_str())
        .bind(&username)
        .bind(password.as_ref().map(|s| s.0.clone()))
        .bind(enabled)
        .bind(to_ms(Utc::now()))
        .bind(filters_json(&filters))
        .bind(format.as_str())
        .bind(&template)
        .bind(tls_verify)
        .bind(id)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        sqlx::query("DELETE FROM webhooks WHERE id = ?")
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let removed = sqlx::query("DELETE FROM webhook_headers WHERE webhook_id = ? AND name = ?")
            .bind(webhook_id)
            .bind(header.name.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("INSERT INTO webhook_headers (webhook_id, name, value) VALUES (?, ?, ?)")
            .bind(webhook_id)
            .bind(header.name.as_str())
            .bind(&header.value.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE webhooks SET updated_at = ? WHERE id = ?")
            .bind(to_ms(Utc::now()))
            .bind(webhook_id)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let done = sqlx::query("DELETE FROM webhook_headers WHERE webhook_id = ? AND name = ?")
            .bind(webhook_id)
            .bind(name)
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

    async fn list_deliveries_in(
        &self,
        webhook_id: i64,
        state: Option<DeliveryState>,
        limit: i64,
        before: Option<i64>,
    ) -> StoreResult<Page<DeliverySummary>> {
        let rows = sqlx::query(&format!(
            "{DELIVERY_SELECT} WHERE d.webhook_id = ?1 AND d.id < ?2 \
             AND (?4 IS NULL OR d.state = ?4) ORDER BY d.id DESC LIMIT ?3"
        ))
        .bind(webhook_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .bind(state.map(DeliveryState::as_str))
        .fetch_all(&self.read)
        .await?;
        let mut items = rows
            .iter()
            .map(delivery_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(&mut items, limit, |d| d.id))
    }

    async fn get_delivery(&self, webhook_id: i64, delivery_id: i64) -> StoreResult<DeliveryDetail> {
        let row = sqlx::query(&format!(
            "{DELIVERY_SELECT} WHERE d.webhook_id = ? AND d.id = ?"
        ))
        .bind(webhook_id)
        .bind(delivery_id)
        .fetch_optional(&self.read)
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
             truncated, manual FROM attempts WHERE delivery_id = ? ORDER BY id",
        )
        .bind(delivery_id)
        .fetch_all(&self.read)
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
        // Finding the due deliveries may read many rows (past a large backlog of a skipped
        // webhook), so it runs on a reader; the writer only takes those still due and free.
        // `+webhook_id`: the due index finds due rows in order, where one on webhook_id
        // would read the webhooks' whole history.
        const SKIPPING: &str = "SELECT id, webhook_id FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?1 \
               AND (locked_until IS NULL OR locked_until <= ?1) \
               AND webhook_id NOT IN (SELECT value FROM json_each(?3)) \
             ORDER BY next_attempt_at, id LIMIT ?2";
        const ONLY: &str = "SELECT id, webhook_id FROM deliveries \
             WHERE state IN ('pending', 'retrying') AND next_attempt_at <= ?1 \
               AND (locked_until IS NULL OR locked_until <= ?1) \
               AND +webhook_id IN (SELECT value FROM json_each(?3)) \
             ORDER BY next_attempt_at, id LIMIT ?2";
        let (webhooks, only) = scope.webhooks();
        let one_each = matches!(scope, ClaimScope::OnePerWebhookSkipping(_));
        let list = serde_json::to_string(webhooks).unwrap_or_else(|_| "[]".into());
        let rows: Vec<(i64, i64)> = sqlx::query_as(if only { ONLY } else { SKIPPING })
            .bind(to_ms(now))
            .bind(if one_each {
                one_per_webhook_window(limit)
            } else {
                limit
            })
            .bind(&list)
            .fetch_all(&self.read)
            .await?;
        let due: Vec<i64> = if one_each {
            let mut seen = std::collections::HashSet::new();
            rows.into_iter()
                .filter(|(_, webhook)| seen.insert(*webhook))
                .map(|(id, _)| id)
                .take(usize::try_from(limit).unwrap_or_default())
                .collect()
        } else {
            rows.into_iter().map(|(id, _)| id).collect()
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let job = Job::Claim {
            ids: due,
            now,
            lease_until,
        };
        match self.writer.submit(job).await? {
            Done::Claimed(claims) => Ok(claims),
            _ => Err(mismatched()),
        }
    }

    async fn renew_lease(
        &self,
        delivery_id: i64,
        token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE deliveries SET locked_until = ? WHERE id = ? AND lease_token = ? \
             AND state IN ('pending', 'retrying')",
        )
        .bind(to_ms(lease_until))
        .bind(delivery_id)
        .bind(token)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn load_job(&self, delivery_id: i64) -> StoreResult<DeliveryJob> {
        // One query for the delivery, its event, its webhook and the webhook's headers: this
        // runs for every delivery, and each query is a hop to a reader thread and back.
        let row = sqlx::query(&format!(
            "{WEBHOOK_COLUMNS}, d.attempts AS delivery_attempts, d.state AS delivery_state, \
             d.next_attempt_at AS delivery_next_attempt_at, \
             (SELECT COUNT(*) FROM attempts a WHERE a.delivery_id = d.id AND a.manual = 0) \
               AS automatic_attempts, \
             e.action AS event_action, e.body AS event_body, e.registry_id AS event_registry_id, \
             e.repository AS event_repository, e.tag AS event_tag, e.digest AS event_digest, \
             e.media_type AS event_media_type, e.actor AS event_actor, \
             e.received_at AS event_received_at, \
             (SELECT json_group_array(json_array(h.name, hex(h.value))) FROM \
               (SELECT name, value FROM webhook_headers WHERE webhook_id = w.id ORDER BY name) h) \
               AS headers_json \
             FROM deliveries d JOIN events e ON e.id = d.event_id \
             JOIN webhooks w ON w.id = d.webhook_id JOIN namespaces n ON n.id = w.namespace_id \
             WHERE d.id = ?"
        ))
        .bind(delivery_id)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delivery {delivery_id}")))?;
        let headers_json: String = row.try_get("headers_json")?;
        let pairs: Vec<(String, String)> = serde_json::from_str(&headers_json)
            .map_err(|e| StoreError::Crypto(format!("stored headers are unreadable: {e}")))?;
        let headers = pairs
            .into_iter()
            .map(|(name, hex)| {
                Ok(StoredHeader {
                    name: HeaderName::trusted(name),
                    value: Sealed(from_hex(&hex).ok_or_else(|| {
                        StoreError::Crypto("a stored header value is unreadable".into())
                    })?),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let state: String = row.try_get("delivery_state")?;
        Ok(DeliveryJob {
            delivery_id,
            attempts_so_far: row.try_get("delivery_attempts")?,
            automatic_attempts: row.try_get("automatic_attempts")?,
            next_attempt_at: row
                .try_get::<Option<i64>, _>("delivery_next_attempt_at")?
                .map(from_ms),
            state: super::stored_state(delivery_id, &state)?,
            webhook: webhook_from_row(&row, headers)?,
            event_action: row
                .try_get::<Option<String>, _>("event_action")?
                .unwrap_or_default(),
            event_body: row.try_get("event_body")?,
            event: EventRecord {
                action: row
                    .try_get::<Option<String>, _>("event_action")?
                    .unwrap_or_default(),
                registry_id: row.try_get("event_registry_id")?,
                repository: row.try_get("event_repository")?,
                tag: row.try_get("event_tag")?,
                digest: row.try_get("event_digest")?,
                media_type: row.try_get("event_media_type")?,
                actor: row.try_get("event_actor")?,
                received_at: from_ms(row.try_get("event_received_at")?),
            },
        })
    }

    async fn record_attempt(&self, r: AttemptRecord) -> StoreResult<()> {
        match self.writer.submit(Job::Attempt(Box::new(r))).await? {
            Done::Recorded => Ok(()),
            _ => Err(mismatched()),
        }
    }

    async fn abandon(&self, delivery_id: i64, lease: Option<i64>, reason: &str) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, \
             locked_until = CASE WHEN ?1 IS NULL THEN locked_until ELSE NULL END, \
             last_error = ?2, updated_at = ?3 WHERE id = ?4 AND (?1 IS NULL OR lease_token = ?1)",
        )
        .bind(lease)
        .bind(reason)
        .bind(to_ms(Utc::now()))
        .bind(delivery_id)
        .execute(&self.write)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, email, admin, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id, username, email, admin, disabled, created_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(email)
        .bind(admin)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the user '{username}' already exists")))?;
        let user = user_from_row(&row)?;
        // The personal team and namespace come with the user, or nothing is created.
        let team_id: i64 = sqlx::query_scalar(
            "INSERT INTO teams (name, personal, created_at) VALUES (?, 1, ?) RETURNING id",
        )
        .bind(format!("~{username}"))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO team_members (team_id, user_id, role) VALUES (?, ?, 'owner')")
            .bind(team_id)
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO namespaces (name, description, team_id, created_at) VALUES (?, ?, ?, ?)")
            .bind(username)
            .bind(format!("Personal namespace of {username}"))
            .bind(team_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!("a namespace named '{username}' already exists, so it cannot become the user's personal namespace")
                })
            })?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, email, admin, disabled, created_at, password_hash \
             FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.read)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("password_hash")?))),
        }
    }

    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        token_hash: &str,
    ) -> StoreResult<ApiToken> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (user_id, label, token_hash, created_at) VALUES (?, ?, ?, ?) \
             RETURNING id, label, created_at, last_used_at",
        )
        .bind(user_id)
        .bind(label)
        .bind(token_hash)
        .bind(to_ms(Utc::now()))
        .fetch_one(&self.write)
        .await?;
        Ok(ApiToken {
            id: row.try_get("id")?,
            label: row.try_get("label")?,
            created_at: from_ms(row.try_get("created_at")?),
            last_used_at: opt_ms(row.try_get("last_used_at")?),
        })
    }

    async fn authenticate_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.email, u.admin, u.disabled, u.created_at, \
             t.id AS token_id, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        // Record use at most once a minute: a write per API call would be wasteful.
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|t| to_ms(now) - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(to_ms(now))
                .bind(row.try_get::<i64, _>("token_id")?)
                .execute(&self.write)
                .await?;
        }
        Ok(Some(user_from_row(&row)?))
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
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
             WHERE id < ?1 AND (?2 IS NULL OR namespace = ?2) \
               AND (?3 IS NULL OR team_id IN (SELECT team_id FROM team_members WHERE user_id = ?3)) \
               AND (?5 IS NULL OR actor = ?5) \
             ORDER BY id DESC LIMIT ?4",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.namespace)
        .bind(member_of)
        .bind(limit + 1)
        .bind(filter.actor)
        .fetch_all(&self.read)
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

    async fn create_source(&self, new: &NewSource, audit: &Audit) -> StoreResult<Source> {
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let created_at: i64 = sqlx::query_scalar(
            "INSERT INTO sources (name, kind, username, secret_hash, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING created_at",
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
                .fetch_all(&self.read)
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
            "SELECT name, kind, username, secret_hash, created_at FROM sources WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.read)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let done = sqlx::query("DELETE FROM sources WHERE name = ?")
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

    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE username = ?")
            .bind(password_hash)
            .bind(username)
            .execute(&self.write)
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
        let sql = sqlite_dialect(&webhook_status_sql(STATUS_OF_NAMESPACE));
        let rows = sqlx::query(&sql)
            .bind(to_ms(since))
            .bind(namespace.as_str())
            .fetch_all(&self.read)
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
        let sql = sqlite_dialect(&webhook_status_sql(STATUS_NEEDING_ATTENTION));
        let rows = sqlx::query(&sql)
            .bind(to_ms(since))
            .bind(member_of)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(status_from_row).collect()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, username, email, admin, disabled, created_at FROM users ORDER BY username",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn update_user(
        &self,
        username: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> StoreResult<User> {
        let row = sqlx::query(
            "UPDATE users SET admin = COALESCE(?, admin), disabled = COALESCE(?, disabled) \
             WHERE username = ? RETURNING id, username, email, admin, disabled, created_at",
        )
        .bind(admin)
        .bind(disabled)
        .bind(username)
        .fetch_optional(&self.write)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
        user_from_row(&row)
    }

    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, label, created_at, last_used_at FROM api_tokens \
             WHERE user_id = ? AND revoked_at IS NULL ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, user_id: i64, token_id: i64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        )
        .bind(to_ms(Utc::now()))
        .bind(token_id)
        .bind(user_id)
        .execute(&self.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {token_id}")));
        }
        Ok(())
    }

    async fn list_teams(&self, visibility: &Visibility) -> StoreResult<Vec<Team>> {
        let member_of = match visibility {
            Visibility::All => None,
            Visibility::MemberOf(user) => Some(*user),
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM teams WHERE personal = 0 AND (?1 IS NULL OR id IN \
             (SELECT team_id FROM team_members WHERE user_id = ?1)) ORDER BY name",
        )
        .bind(member_of)
        .fetch_all(&self.read)
        .await?;
        let mut teams = Vec::with_capacity(names.len());
        for name in names {
            teams.push(self.get_team(&name).await?);
        }
        Ok(teams)
    }

    async fn get_team(&self, name: &str) -> StoreResult<Team> {
        let row = sqlx::query(
            "SELECT id, name, description, personal, created_at FROM teams WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team '{name}'")))?;
        let id: i64 = row.try_get("id")?;
        let members = sqlx::query(
            "SELECT u.username, m.role FROM team_members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = ? ORDER BY u.username",
        )
        .bind(id)
        .fetch_all(&self.read)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO teams (name, description, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(description)
        .bind(to_ms(Utc::now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the team '{name}' already exists")))?;
        sqlx::query("INSERT INTO team_members (team_id, user_id, role) VALUES (?, ?, 'owner')")
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let team_id = team_id_in(&mut tx, team).await?;
        let current = member_role(&mut tx, team_id, user_id).await?;
        if current == Some(Role::Owner) && role != Role::Owner {
            ensure_another_owner(&mut tx, team, team_id).await?;
        }
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role) VALUES (?, ?, ?) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let team_id = team_id_in(&mut tx, team).await?;
        match member_role(&mut tx, team_id, user_id).await? {
            None => {
                return Err(StoreError::NotFound(format!(
                    "that member of team '{team}'"
                )))
            }
            Some(Role::Owner) => ensure_another_owner(&mut tx, team, team_id).await?,
            Some(_) => {}
        }
        sqlx::query("DELETE FROM team_members WHERE team_id = ? AND user_id = ?")
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
            sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = ? AND user_id = ?")
                .bind(team_id)
                .bind(user_id)
                .fetch_optional(&self.read)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        sqlx::query(
            "UPDATE webhooks SET previous_signing_secret = signing_secret, previous_secret_until = ?, \
             signing_secret = ?, updated_at = ? WHERE id = ?",
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let row = sqlx::query(
            "SELECT w.enabled, w.failing_since, w.name, w.url, n.name AS namespace FROM webhooks w \
             JOIN namespaces n ON n.id = w.namespace_id WHERE w.id = ?",
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
        sqlx::query("UPDATE webhooks SET enabled = ?, failing_since = ? WHERE id = ?")
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
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, locked_until = NULL, \
             updated_at = ? WHERE webhook_id = ? AND state = 'failed' AND created_at >= ? AND created_at < ?",
        )
        .bind(to_ms(now))
        .bind(to_ms(now))
        .bind(webhook_id)
        .bind(to_ms(since))
        .bind(to_ms(until))
        .execute(&self.write)
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
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        let namespace: Option<String> = sqlx::query_scalar(
            "SELECT n.name FROM webhooks w JOIN namespaces n ON n.id = w.namespace_id WHERE w.id = ?",
        )
        .bind(webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        let namespace =
            namespace.ok_or_else(|| StoreError::NotFound(format!("webhook {webhook_id}")))?;
        let event_id: i64 = sqlx::query_scalar(
            "INSERT INTO events (registry_id, action, repository, namespace, status, reason, body, received_at) \
             VALUES (?, 'ping', ?, ?, 'accepted', 'ping from Herald', ?, ?) RETURNING id",
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
             VALUES (?, ?, 'pending', NULL, ?, ?) RETURNING id",
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
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(to_ms(now))
            .execute(&self.write)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .execute(&self.write)
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
             WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(to_ms(now))
        .fetch_optional(&self.read)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((user_from_row(&r)?, r.try_get("csrf_token")?))),
        }
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.write)
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
            "SELECT (created_at - ?1) / 3600000 AS hour, \
             SUM(state = 'succeeded') AS succeeded, SUM(state = 'failed') AS failed, \
             SUM(state IN ('pending', 'retrying')) AS waiting \
             FROM deliveries WHERE webhook_id = ?2 AND created_at >= ?1 GROUP BY hour",
        )
        .bind(since)
        .bind(webhook_id)
        .fetch_all(&self.read)
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
            "SELECT (a.started_at - ?1) / 3600000 AS hour, AVG(a.duration_ms) AS mean_ms \
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
             WHERE d.webhook_id = ?2 AND a.started_at >= ?1 GROUP BY hour",
        )
        .bind(since)
        .bind(webhook_id)
        .fetch_all(&self.read)
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
        let known = sqlx::migrate!("./migrations/sqlite").iter().count() as i64;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.read)
                .await?;
        Ok(applied >= known)
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let now = to_ms(Utc::now());
        let row = sqlx::query(
            "SELECT COALESCE(SUM(state = 'pending'), 0) AS pending, \
             COALESCE(SUM(state = 'retrying'), 0) AS retrying, \
             MIN(CASE WHEN next_attempt_at <= ?1 THEN next_attempt_at END) AS oldest \
             FROM deliveries WHERE state IN ('pending', 'retrying')",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(QueueStats {
            pending: row.try_get("pending")?,
            retrying: row.try_get("retrying")?,
            oldest_due_at: opt_ms(row.try_get("oldest")?),
        })
    }

    async fn record_key_check(&self, candidate: &str) -> StoreResult<String> {
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ('secret_key_check', ?) \
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
                .fetch_optional(&self.read)
                .await?;
        Ok(found.is_some())
    }

    async fn any_sealed_secret(&self) -> StoreResult<Option<Sealed>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT signing_secret FROM webhooks WHERE signing_secret IS NOT NULL LIMIT 1",
        )
        .fetch_optional(&self.read)
        .await?;
        Ok(sealed.map(Sealed))
    }

    async fn release_all_claims(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE deliveries SET locked_until = NULL \
             WHERE locked_until IS NOT NULL AND state IN ('pending', 'retrying')",
        )
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    async fn release(&self, delivery_ids: &[i64]) -> StoreResult<()> {
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        for id in delivery_ids {
            sqlx::query("UPDATE deliveries SET locked_until = NULL WHERE id = ? AND state IN ('pending', 'retrying')")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn prune(
        &self,
        before: DateTime<Utc>,
        keep_per_webhook: i64,
        batch: i64,
    ) -> StoreResult<u64> {
        // Finding what to delete may read much of the history, so it happens on a reader;
        // the write lock is held only for deleting those rows by id.
        let mut doomed: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE created_at < ? AND state IN ('succeeded', 'failed') \
             ORDER BY id LIMIT ?",
        )
        .bind(to_ms(before))
        .bind(batch)
        .fetch_all(&self.read)
        .await?;
        // Beyond the newest `keep_per_webhook` of each webhook: the id below which a webhook's
        // deliveries go, found by walking its (webhook_id, id) index, not the whole table.
        let webhooks: Vec<i64> = sqlx::query_scalar("SELECT id FROM webhooks ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        for webhook_id in webhooks {
            if doomed.len() as i64 >= batch {
                break;
            }
            let extra: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM deliveries WHERE webhook_id = ?1 AND state IN ('succeeded', 'failed') \
                 AND id <= (SELECT id FROM deliveries WHERE webhook_id = ?1 \
                            ORDER BY id DESC LIMIT 1 OFFSET ?2) \
                 ORDER BY id LIMIT ?3",
            )
            .bind(webhook_id)
            .bind(keep_per_webhook)
            .bind(batch - doomed.len() as i64)
            .fetch_all(&self.read)
            .await?;
            doomed.extend(extra);
        }
        doomed.sort_unstable();
        doomed.dedup();
        let ids = serde_json::to_string(&doomed).unwrap_or_else(|_| "[]".into());
        let mut tx = self.write.begin_with(IMMEDIATE).await?;
        // Checked again under the lock: only finished deliveries ever go.
        let deleted = sqlx::query(
            "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?)) \
             AND state IN ('succeeded', 'failed')",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Events older than the cutoff that no delivery needs any more. Ids grow with time,
        // so the search stops at the first event newer than the cutoff instead of reading
        // every event under the write lock.
        sqlx::query(
            "DELETE FROM events WHERE id IN (SELECT e.id FROM events e \
             WHERE e.id < COALESCE((SELECT id FROM events WHERE received_at >= ?1 ORDER BY id LIMIT 1), \
                                   9223372036854775807) \
               AND e.received_at < ?1 \
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id) \
             ORDER BY e.id LIMIT ?2)",
        )
        .bind(to_ms(before))
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

fn namespace_from_row(row: &SqliteRow) -> StoreResult<Namespace> {
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

/// Trims a `limit + 1` fetch to `limit` and sets the cursor when there is more.
fn paginate<T: Clone>(items: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> i64) -> Page<T> {
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

fn token_from_row(r: &SqliteRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: r.try_get("id")?,
        label: r.try_get("label")?,
        created_at: from_ms(r.try_get("created_at")?),
        last_used_at: opt_ms(r.try_get("last_used_at")?),
    })
}

const NAMESPACE_SELECT: &str = "SELECT n.id, n.name, n.description, n.created_at, n.team_id, \
     t.name AS team, (SELECT COUNT(*) FROM webhooks w WHERE w.namespace_id = n.id) AS webhook_count \
     FROM namespaces n LEFT JOIN teams t ON t.id = n.team_id";

/// A namespace's id and team, as an activity records them.
struct NsContext {
    id: i64,
    name: String,
    team_id: Option<i64>,
    team: Option<String>,
}

impl NsContext {
    async fn load(tx: &mut Transaction<'_, Sqlite>, name: &NamespaceName) -> StoreResult<Self> {
        let row = sqlx::query(
            "SELECT n.id, n.name, n.team_id, t.name AS team FROM namespaces n \
             LEFT JOIN teams t ON t.id = n.team_id WHERE n.name = ?",
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
    tx: &mut Transaction<'_, Sqlite>,
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
    tx: &mut Transaction<'_, Sqlite>,
    audit: &Audit,
    team_id: Option<i64>,
    team: Option<&str>,
    namespace: Option<&str>,
    webhook: Option<(i64, &str, &str)>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO activities (actor, action, team_id, team, namespace, webhook_id, \
         webhook_name, webhook_host, detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&audit.actor)
    .bind(audit.action)
    .bind(team_id)
    .bind(team)
    .bind(namespace)
    .bind(webhook.map(|w| w.0))
    .bind(webhook.map(|w| w.1))
    .bind(webhook.map(|w| w.2))
    .bind(&audit.detail)
    .bind(to_ms(Utc::now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn team_id_in(tx: &mut Transaction<'_, Sqlite>, team: &str) -> StoreResult<i64> {
    sqlx::query_scalar("SELECT id FROM teams WHERE name = ?")
        .bind(team)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("team '{team}'")))
}

async fn member_role(
    tx: &mut Transaction<'_, Sqlite>,
    team_id: i64,
    user_id: i64,
) -> StoreResult<Option<Role>> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = ? AND user_id = ?")
            .bind(team_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(role.as_deref().and_then(Role::parse))
}

/// A team always keeps at least one owner.
async fn ensure_another_owner(
    tx: &mut Transaction<'_, Sqlite>,
    team: &str,
    team_id: i64,
) -> StoreResult<()> {
    let owners: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM team_members WHERE team_id = ? AND role = 'owner'",
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
