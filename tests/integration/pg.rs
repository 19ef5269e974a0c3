//! A fresh PostgreSQL database per test, dropped when the test ends however it ends.
//!
//! The server comes from `HERALD_TEST_POSTGRES_URL` (default: the local trust-auth server's
//! `test` database). Without one, PostgreSQL tests are skipped as `require` says.

use std::time::Duration;

use rand::Rng;
use sqlx::{Connection, Executor, PgConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn admin_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

async fn admin_connection() -> Result<PgConnection, String> {
    let url = admin_url();
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to {url}: {e}")),
        Err(_) => Err(format!("cannot connect to {url}: timed out")),
    }
}

/// Owns a database `herald_test_<random>`; dropping it drops the database.
pub struct PgTestDb {
    pub name: String,
    pub url: String,
}

impl PgTestDb {
    /// A new empty database, or `None` (with the reason printed) when PostgreSQL cannot be
    /// reached outside CI.
    pub async fn create() -> Option<Self> {
        let mut admin = crate::require::require("PostgreSQL", admin_connection().await)?;
        let name = format!("herald_test_{:016x}", rand::thread_rng().gen::<u64>());
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url()).expect("HERALD_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(Self {
            name,
            url: url.to_string(),
        })
    }

    /// A plain connection to this database, for what a test does behind Herald's back.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }

    /// Runs SQL on the server's admin database (for what cannot run inside this one).
    pub async fn admin(&self, sql: &str) {
        let mut admin = admin_connection().await.unwrap();
        admin
            .execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = admin.close().await;
    }

    /// Cuts every connection Herald has to this database, as a server restart would.
    pub async fn terminate_connections(&self) {
        self.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await;
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Drop may run inside the test's runtime, which must not block on itself: a thread
        // with a runtime of its own does the work. FORCE ends the app's open connections.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = admin_connection().await {
                    if let Err(e) = admin.execute(sql.as_str()).await {
                        eprintln!("{sql}: {e}");
                    }
                    let _ = admin.close().await;
                }
            })
        })
        .join();
        if done.is_err() {
            eprintln!("dropping test database {} failed", self.name);
        }
    }
}
