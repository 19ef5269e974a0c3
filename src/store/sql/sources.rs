//! Other registries that post events, and their hashed credentials.

use async_trait::async_trait;
use chrono::Utc;

use super::history::write_activity;
use super::{conflict_on_unique, rows, sql, Backend, SqlRow, Tx};
use crate::domain::model::{Audit, NewSource, Source};
use crate::store::{to_ms, Sources, StoreError, StoreResult};

const SOURCE_SELECT: &str = "SELECT name, kind, username, secret_hash, created_at FROM sources";

#[async_trait]
impl<B: Backend> Sources for B {
    async fn create_source(&self, new: &NewSource, audit: &Audit) -> StoreResult<Source> {
        let mut tx = self.begin().await?;
        let row = sql(
            "INSERT INTO sources (name, kind, username, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING name, kind, username, created_at",
        )
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
        sql(format!("{SOURCE_SELECT} ORDER BY name"))
            .all(&mut self.reader())
            .await?
            .iter()
            .map(rows::source)
            .collect()
    }

    async fn source_credential(&self, name: &str) -> StoreResult<Option<(Source, String)>> {
        sql(format!("{SOURCE_SELECT} WHERE name = $1"))
            .bind(name)
            .opt(&mut self.reader())
            .await?
            .map(|r| Ok((rows::source(&r)?, r.text("secret_hash")?)))
            .transpose()
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
        write_activity(&mut tx, audit, None, None, None, None).await?;
        tx.commit().await
    }
}
