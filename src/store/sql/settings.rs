//! Process-wide settings kept in the database: the secret key's check value.

use async_trait::async_trait;

use super::{sql, Backend, SqlRow, Tx};
use crate::secrets::Sealed;
use crate::store::{Settings, StoreResult};

const KEY_CHECK: &str = "SELECT value FROM settings WHERE name = 'secret_key_check'";

#[async_trait]
impl<B: Backend> Settings for B {
    async fn record_key_check(&self, candidate: &str) -> StoreResult<String> {
        let mut tx = self.begin().await?;
        sql(
            "INSERT INTO settings (name, value) VALUES ('secret_key_check', $1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(candidate)
        .exec(&mut tx)
        .await?;
        let recorded = sql(KEY_CHECK).one(&mut tx).await?.text("value")?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn has_key_check(&self) -> StoreResult<bool> {
        Ok(sql(KEY_CHECK).opt(&mut self.reader()).await?.is_some())
    }

    async fn any_sealed_secret(&self) -> StoreResult<Option<Sealed>> {
        let row =
            sql("SELECT signing_secret FROM webhooks WHERE signing_secret IS NOT NULL LIMIT 1")
                .opt(&mut self.reader())
                .await?;
        Ok(row
            .map(|r| r.bytes("signing_secret"))
            .transpose()?
            .map(Sealed))
    }
}
