//! What reading registries teaches Herald: manifest facts (cached by digest), the events
//! that waited for them, the tag map, and each source's reconcile with its lease.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{locking, sql, Backend, SqlRow, Tx};
use crate::domain::artifact::ArtifactFacts;
use crate::domain::delivery::Candidate;
use crate::domain::events::{path_in_namespace, Action, EventFacts, DEFAULT_SOURCE};
use crate::domain::names::NamespaceName;
use crate::domain::registry::{FactsRead, PendingFacts, ReconcileStatus};
use crate::store::{from_ms, to_ms, RegistryReads, StoreError, StoreResult};

const RECONCILE_COLUMNS: &str = "source, requested_at, started_at, finished_at, cursor, learned, \
     repositories, tags, pushes, deletes, error, owner, lease_until";

fn reconcile_row(row: &impl SqlRow, now: DateTime<Utc>) -> StoreResult<ReconcileStatus> {
    let lease = row.int_opt("lease_until")?;
    let running = row.text_opt("owner")?.is_some() && lease.is_some_and(|l| l > to_ms(now));
    let requested_at = row.int_opt("requested_at")?.map(from_ms);
    Ok(ReconcileStatus {
        source: row.text("source")?,
        state: if running {
            "running"
        } else if requested_at.is_some() {
            "requested"
        } else {
            "idle"
        }
        .into(),
        requested_at,
        started_at: row.int_opt("started_at")?.map(from_ms),
        finished_at: row.int_opt("finished_at")?.map(from_ms),
        cursor: row.text_opt("cursor")?,
        learned: row.flag("learned")?,
        repositories: row.int("repositories")?,
        tags: row.int("tags")?,
        pushes: row.int("pushes")?,
        deletes: row.int("deletes")?,
        error: row.text_opt("error")?,
    })
}

#[async_trait]
impl<B: Backend> RegistryReads for B {
    async fn pending_facts(&self, limit: i64) -> StoreResult<Vec<PendingFacts>> {
        sql(
            "SELECT id, source, repository, digest, tag, received_at FROM events \
             WHERE facts_state = 'pending' ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(PendingFacts {
                event_id: r.int("id")?,
                source: r
                    .text_opt("source")?
                    .unwrap_or_else(|| DEFAULT_SOURCE.to_string()),
                repository: r.text_opt("repository")?.unwrap_or_default(),
                digest: r.text_opt("digest")?.unwrap_or_default(),
                tag: r.text_opt("tag")?,
                received_at: from_ms(r.int("received_at")?),
            })
        })
        .collect()
    }

    async fn cached_manifest(&self, digest: &str) -> StoreResult<Option<ArtifactFacts>> {
        let row = sql("SELECT facts FROM manifest_facts WHERE digest = $1")
            .bind(digest)
            .opt(&mut self.reader())
            .await?;
        // A row Herald cannot read back is read again from the registry.
        Ok(row
            .map(|r| r.text("facts"))
            .transpose()?
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    async fn tags_of_digest(
        &self,
        source: &str,
        repository: &str,
        digest: &str,
    ) -> StoreResult<Vec<String>> {
        sql(
            "SELECT tag FROM registry_tags WHERE source = $1 AND repository = $2 AND digest = $3 \
             ORDER BY tag LIMIT 1000",
        )
        .bind(source)
        .bind(repository)
        .bind(digest)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| r.text("tag"))
        .collect()
    }

    async fn complete_facts(
        &self,
        reads: &[FactsRead],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Option<usize>>> {
        let mut tx = self.begin().await?;
        let mut made = Vec::with_capacity(reads.len());
        for read in reads {
            if let (Some(digest), Ok(facts)) = (&read.cache, &read.outcome) {
                sql(
                    "INSERT INTO manifest_facts (digest, facts, read_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (digest) DO NOTHING",
                )
                .bind(digest.as_str())
                .bind(serde_json::to_string(facts).unwrap_or_default())
                .bind(to_ms(now))
                .exec(&mut tx)
                .await?;
            }
            made.push(complete_one::<B>(&mut tx, read.event_id, &read.outcome, now).await?);
        }
        tx.commit().await?;
        Ok(made)
    }

    async fn known_tags(
        &self,
        source: &str,
        repository: &str,
    ) -> StoreResult<Vec<(String, String)>> {
        sql(
            "SELECT tag, digest FROM registry_tags WHERE source = $1 AND repository = $2 \
             ORDER BY tag",
        )
        .bind(source)
        .bind(repository)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| Ok((r.text("tag")?, r.text("digest")?)))
        .collect()
    }

    async fn learn_tags(
        &self,
        source: &str,
        repository: &str,
        tags: &[(String, String)],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sql("DELETE FROM registry_tags WHERE source = $1 AND repository = $2")
            .bind(source)
            .bind(repository)
            .exec(&mut tx)
            .await?;
        for (tag, digest) in tags {
            sql(
                "INSERT INTO registry_tags (source, repository, tag, digest, updated_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(source)
            .bind(repository)
            .bind(tag)
            .bind(digest)
            .bind(to_ms(now))
            .exec(&mut tx)
            .await?;
        }
        tx.commit().await
    }

    async fn known_repositories(
        &self,
        source: &str,
        after: Option<&str>,
        before: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        sql(
            "SELECT DISTINCT repository FROM registry_tags WHERE source = $1 \
             AND ($2 IS NULL OR repository > $2) AND ($3 IS NULL OR repository < $3) \
             ORDER BY repository LIMIT $4",
        )
        .bind(source)
        .bind(after)
        .bind(before)
        .bind(limit)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| r.text("repository"))
        .collect()
    }

    async fn request_reconcile(&self, source: &str, now: DateTime<Utc>) -> StoreResult<()> {
        sql(
            "INSERT INTO reconciles (source, requested_at) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE SET requested_at = excluded.requested_at",
        )
        .bind(source)
        .bind(to_ms(now))
        .exec(&mut self.writer())
        .await?;
        Ok(())
    }

    async fn claim_reconcile(
        &self,
        source: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        due_before: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<ReconcileStatus>> {
        let mut tx = self.begin().await?;
        // A source never reconciled has no row yet: it is due.
        sql("INSERT INTO reconciles (source) VALUES ($1) ON CONFLICT (source) DO NOTHING")
            .bind(source)
            .exec(&mut tx)
            .await?;
        // Free (no lease, or an expired one) and wanted: asked for, unfinished (a started
        // run without a finish after it), or due.
        let row = sql(format!(
            "UPDATE reconciles SET owner = $1, lease_until = $2, requested_at = NULL, \
               started_at = CASE WHEN cursor IS NULL THEN $3 ELSE started_at END, \
               repositories = CASE WHEN cursor IS NULL THEN 0 ELSE repositories END, \
               tags = CASE WHEN cursor IS NULL THEN 0 ELSE tags END, \
               pushes = CASE WHEN cursor IS NULL THEN 0 ELSE pushes END, \
               deletes = CASE WHEN cursor IS NULL THEN 0 ELSE deletes END, \
               error = NULL \
             WHERE source = $4 AND (owner IS NULL OR lease_until IS NULL OR lease_until <= $3) \
               AND (requested_at IS NOT NULL OR cursor IS NOT NULL \
                    OR (started_at IS NOT NULL AND (finished_at IS NULL OR finished_at < started_at)) \
                    OR finished_at IS NULL OR ($5 IS NOT NULL AND finished_at < $5)) \
             RETURNING {RECONCILE_COLUMNS}"
        ))
        .bind(owner)
        .bind(to_ms(lease_until))
        .bind(to_ms(now))
        .bind(source)
        .bind(due_before.map(to_ms))
        .opt(&mut tx)
        .await?;
        let status = row.map(|r| reconcile_row(&r, now)).transpose()?;
        tx.commit().await?;
        Ok(status)
    }

    async fn save_reconcile(
        &self,
        status: &ReconcileStatus,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<()> {
        let changed = sql(
            "UPDATE reconciles SET cursor = $1, repositories = $2, tags = $3, pushes = $4, \
             deletes = $5, lease_until = $6 WHERE source = $7 AND owner = $8",
        )
        .bind(status.cursor.as_deref())
        .bind(status.repositories)
        .bind(status.tags)
        .bind(status.pushes)
        .bind(status.deletes)
        .bind(to_ms(lease_until))
        .bind(status.source.as_str())
        .bind(owner)
        .exec(&mut self.writer())
        .await?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "the reconcile of '{}' was taken over by another process",
                status.source
            )));
        }
        Ok(())
    }

    async fn finish_reconcile(
        &self,
        source: &str,
        owner: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        // A run that failed keeps its cursor, so the next one resumes there.
        sql(
            "UPDATE reconciles SET owner = NULL, lease_until = NULL, finished_at = $1, \
               error = $2, learned = CASE WHEN $2 IS NULL THEN TRUE ELSE learned END, \
               cursor = CASE WHEN $2 IS NULL THEN NULL ELSE cursor END \
             WHERE source = $3 AND owner = $4",
        )
        .bind(to_ms(now))
        .bind(error)
        .bind(source)
        .bind(owner)
        .exec(&mut self.writer())
        .await?;
        Ok(())
    }

    async fn reconcile_status(&self, source: &str) -> StoreResult<Option<ReconcileStatus>> {
        sql(format!(
            "SELECT {RECONCILE_COLUMNS} FROM reconciles WHERE source = $1"
        ))
        .bind(source)
        .opt(&mut self.reader())
        .await?
        .map(|r| reconcile_row(&r, Utc::now()))
        .transpose()
    }

    async fn note_instance(
        &self,
        source: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let before = sql(format!(
            "SELECT instance_id FROM reconciles WHERE source = $1{}",
            locking::<B>(" FOR UPDATE")
        ))
        .bind(source)
        .opt(&mut tx)
        .await?
        .map(|r| r.text_opt("instance_id"))
        .transpose()?
        .flatten();
        if before.as_deref() == Some(instance_id) {
            return Ok(false);
        }
        let restarted = before.is_some();
        sql(
            "INSERT INTO reconciles (source, instance_id, requested_at) VALUES ($1, $2, $3) \
             ON CONFLICT (source) DO UPDATE SET instance_id = excluded.instance_id, \
             requested_at = CASE WHEN $4 THEN excluded.requested_at ELSE reconciles.requested_at END",
        )
        .bind(source)
        .bind(instance_id)
        .bind(restarted.then(|| to_ms(now)))
        .bind(restarted)
        .exec(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(restarted)
    }
}

/// One read's facts recorded, and the deliveries of the webhooks that waited for them,
/// in the caller's transaction; `None` when the event was no longer waiting.
async fn complete_one<B: Backend>(
    tx: &mut B::Tx,
    event_id: i64,
    outcome: &Result<ArtifactFacts, String>,
    now: DateTime<Utc>,
) -> StoreResult<Option<usize>> {
    let (state, facts, error) = match outcome {
        Ok(facts) => ("read", serde_json::to_string(facts).ok(), None),
        Err(why) => ("failed", None, Some(why.as_str())),
    };
    // The guard against a second process: only a still pending event is completed.
    let changed = sql(
        "UPDATE events SET facts_state = $1, facts = $2, facts_error = $3 \
         WHERE id = $4 AND facts_state = 'pending'",
    )
    .bind(state)
    .bind(facts)
    .bind(error)
    .bind(event_id)
    .exec(tx)
    .await?;
    if changed == 0 {
        return Ok(None);
    }
    let event = sql(
        "SELECT action, repository, namespace, tag, source, synthesized FROM events \
         WHERE id = $1",
    )
    .bind(event_id)
    .one(tx)
    .await?;
    let namespace = event.text_opt("namespace")?;
    let (Some(namespace), Some(action)) = (
        namespace.and_then(|n| NamespaceName::parse(&n).ok()),
        event.text_opt("action")?.as_deref().and_then(Action::parse),
    ) else {
        return Ok(Some(0));
    };
    let facts = EventFacts {
        action,
        path: path_in_namespace(
            &namespace,
            event.text_opt("repository")?.as_deref().unwrap_or_default(),
        ),
        tag: event.text_opt("tag")?,
        is_manifest: true,
        request_method: None,
        source: event.text_opt("source")?,
        artifact: outcome.as_ref().ok().cloned(),
        synthesized: event.text_opt("synthesized")?.is_some(),
    };
    let candidates: Vec<Candidate> = sql(format!(
        "SELECT w.id, w.ordering = 'fifo' AS fifo, w.filters, w.format FROM namespaces n \
         JOIN webhooks w ON w.namespace_id = n.id WHERE n.name = $1 AND w.enabled \
         ORDER BY w.id{}",
        locking::<B>(" FOR SHARE OF w")
    ))
    .bind(namespace.as_str())
    .all(tx)
    .await?
    .iter()
    .map(super::rows::candidate)
    .collect::<StoreResult<_>>()?;
    let mut created = 0;
    for c in candidates.iter().filter(|c| c.filters.needs_facts()) {
        let insert = match outcome {
            Ok(_) if c.wants(&facts) => sql(
                "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
                 created_at, updated_at, fifo) VALUES ($1, $2, 'pending', $3, $3, $3, $4)",
            )
            .bind(c.recipient.webhook_id)
            .bind(event_id)
            .bind(to_ms(now))
            .bind(c.recipient.fifo),
            Err(why) if c.wants_before_facts(&facts) => sql(
                "INSERT INTO deliveries (webhook_id, event_id, state, next_attempt_at, \
                 created_at, updated_at, fifo, last_error) \
                 VALUES ($1, $2, 'failed', NULL, $3, $3, $4, $5)",
            )
            .bind(c.recipient.webhook_id)
            .bind(event_id)
            .bind(to_ms(now))
            .bind(c.recipient.fifo)
            .bind(format!(
                "not sent: this webhook filters on what was pushed, and {why}"
            )),
            _ => continue,
        };
        insert.exec(tx).await?;
        created += 1;
    }
    Ok(Some(created))
}
