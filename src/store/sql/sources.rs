//! Other registries that post events, and their hashed credentials.

use async_trait::async_trait;
use chrono::Utc;

use super::history::write_activity;
use super::{conflict_on_unique, rows, sql, Backend, SqlRow, Tx};
use crate::domain::model::{Audit, NatsIntake, NewSource, RegistryAccess, Source};
use crate::secrets::Sealed;
use crate::store::{to_ms, Sources, StoreError, StoreResult};

/// What a `Source` is read from (its credential hash too, which `rows::source` leaves).
const SOURCE_COLUMNS: &str = "name, kind, username, secret_hash, created_at, registry_url, \
     registry_username, registry_password IS NOT NULL AS has_registry_password, nats_url, \
     nats_subject, nats_stream, nats_consumer";

#[async_trait]
impl<B: Backend> Sources for B {
    async fn create_source(&self, new: &NewSource, audit: &Audit) -> StoreResult<Source> {
        let mut tx = self.begin().await?;
        let row = sql(format!(
            "INSERT INTO sources (name, kind, username, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {SOURCE_COLUMNS}"
        ))
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.username)
        .bind(&new.secret_hash)
        .bind(to_ms(Utc::now()))
        .one(&mut tx)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || format!("the source '{}' already exists", new.name))
        })?;
        let source = rows::source(&row)?;
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await?;
        Ok(source)
    }

    async fn list_sources(&self) -> StoreResult<Vec<Source>> {
        sql(format!(
            "SELECT {SOURCE_COLUMNS} FROM sources ORDER BY name"
        ))
        .all(&mut self.reader())
        .await?
        .iter()
        .map(rows::source)
        .collect()
    }

    async fn source_credential(&self, name: &str) -> StoreResult<Option<(Source, String)>> {
        sql(format!(
            "SELECT {SOURCE_COLUMNS} FROM sources WHERE name = $1"
        ))
        .bind(name)
        .opt(&mut self.reader())
        .await?
        .map(|r| Ok((rows::source(&r)?, r.text("secret_hash")?)))
        .transpose()
    }

    async fn registry_access(&self, name: &str) -> StoreResult<Option<RegistryAccess>> {
        sql("SELECT registry_url, registry_username, registry_password FROM sources WHERE name = $1")
            .bind(name)
            .opt(&mut self.reader())
            .await?
            .map(|r| {
                Ok(RegistryAccess {
                    url: r.text_opt("registry_url")?,
                    username: r.text_opt("registry_username")?,
                    password: r.bytes_opt("registry_password")?.map(Sealed),
                })
            })
            .transpose()
    }

    async fn set_registry_access(
        &self,
        name: &str,
        access: &RegistryAccess,
        audit: &Audit,
    ) -> StoreResult<Source> {
        let mut tx = self.begin().await?;
        let row = sql(format!(
            "UPDATE sources SET registry_url = $1, registry_username = $2, registry_password = $3 \
             WHERE name = $4 RETURNING {SOURCE_COLUMNS}"
        ))
        .bind(access.url.as_deref())
        .bind(access.username.as_deref())
        .bind(access.password.as_ref().map(|p| p.0.as_slice()))
        .bind(name)
        .opt(&mut tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("source '{name}'")))?;
        let source = rows::source(&row)?;
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await?;
        Ok(source)
    }

    async fn nats_intakes(&self) -> StoreResult<Vec<(Source, NatsIntake)>> {
        let rows = sql(format!(
            "SELECT {SOURCE_COLUMNS}, nats_username, nats_password FROM sources \
             WHERE nats_url IS NOT NULL ORDER BY name"
        ))
        .all(&mut self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let source = rows::source(r)?;
                let intake = NatsIntake {
                    url: r.text("nats_url")?,
                    subject: r.text_opt("nats_subject")?.unwrap_or_default(),
                    stream: r.text_opt("nats_stream")?.unwrap_or_default(),
                    consumer: r.text_opt("nats_consumer")?.unwrap_or_default(),
                    username: r.text_opt("nats_username")?,
                    password: r.bytes_opt("nats_password")?.map(Sealed),
                };
                Ok((source, intake))
            })
            .collect()
    }

    async fn set_nats_intake(
        &self,
        name: &str,
        intake: Option<&NatsIntake>,
        audit: &Audit,
    ) -> StoreResult<Source> {
        let mut tx = self.begin().await?;
        let row = sql(format!(
            "UPDATE sources SET nats_url = $1, nats_subject = $2, nats_stream = $3, \
             nats_consumer = $4, nats_username = $5, nats_password = $6 \
             WHERE name = $7 RETURNING {SOURCE_COLUMNS}"
        ))
        .bind(intake.map(|i| i.url.as_str()))
        .bind(intake.map(|i| i.subject.as_str()))
        .bind(intake.map(|i| i.stream.as_str()))
        .bind(intake.map(|i| i.consumer.as_str()))
        .bind(intake.and_then(|i| i.username.as_deref()))
        .bind(
            intake
                .and_then(|i| i.password.as_ref())
                .map(|p| p.0.as_slice()),
        )
        .bind(name)
        .opt(&mut tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("source '{name}'")))?;
        let source = rows::source(&row)?;
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await?;
        Ok(source)
    }

    async fn delete_source(&self, name: &str, audit: &Audit) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = sql("DELETE FROM sources WHERE name = $1")
            .bind(name)
            .exec(&mut tx)
            .await?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("source '{name}'")));
        }
        // What Herald learned of its registry goes with it: a new source of the same name
        // starts from nothing.
        for table in ["registry_tags", "reconciles"] {
            sql(format!("DELETE FROM {table} WHERE source = $1"))
                .bind(name)
                .exec(&mut tx)
                .await?;
        }
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await
    }
}
