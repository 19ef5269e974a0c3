//! Herald: registry notifications in, namespace webhooks out, every delivery recorded.
//!
//! `Application::build` assembles everything from a `Config`; `main.rs` only parses the
//! command line, and the integration tests start the same application on port 0.

pub mod api;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod error;
pub mod hooks;
pub mod registry;
pub mod secrets;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::delivery::client::HttpSender;
use crate::delivery::ssrf::SsrfGuard;
use crate::delivery::worker::{Dispatcher, DispatcherConfig};
use crate::registry::token::RegistryToken;
use crate::secrets::Cipher;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cipher: Cipher,
    pub registry_token: RegistryToken,
    pub config: Arc<Config>,
    pub dispatcher: Arc<Dispatcher>,
}

/// Creates the data directory when needed and opens (and migrates) the database.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let url = config.database_url();
    let store: Arc<dyn Store> = if url.starts_with("sqlite:") {
        Arc::new(
            SqliteStore::connect(&url)
                .await
                .with_context(|| format!("cannot open {url}"))?,
        )
    } else {
        anyhow::bail!("unsupported database URL '{url}': Herald supports sqlite:// URLs");
    };
    store.migrate().await.context("database migration failed")?;
    Ok(store)
}

pub fn registry_token(config: &Config) -> anyhow::Result<RegistryToken> {
    std::fs::create_dir_all(&config.data_dir)?;
    RegistryToken::load_or_create(&config.data_dir, config.registry_token.as_deref())
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        let cipher = Cipher::load_or_create(&config.data_dir, config.secret_key.as_deref())?;
        let registry_token = registry_token(&config)?;
        let allow = config.delivery_allow_networks.clone().unwrap_or_default();
        if !allow.is_empty() {
            tracing::info!(%allow, "the SSRF guard lets deliveries reach these networks");
        }
        let sender = HttpSender::new(
            config.delivery_connect_timeout,
            config.delivery_timeout,
            SsrfGuard::new(allow),
        )?;
        let dispatcher = Dispatcher::new(
            store.clone(),
            sender,
            cipher.clone(),
            DispatcherConfig {
                concurrency: config.delivery_concurrency,
                per_webhook: config.delivery_concurrency_per_webhook,
                schedule: config.retry_schedule.clone(),
                // Long enough that a live attempt is never taken over; short enough that a
                // crashed process's deliveries resume within minutes.
                lease: config.delivery_timeout * 2 + std::time::Duration::from_secs(30),
            },
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            state: AppState {
                store,
                cipher,
                registry_token,
                config: Arc::new(config),
                dispatcher,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP and runs the delivery workers until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let workers = tokio::spawn(self.state.dispatcher.clone().run());
        let app = api::router(self.state.clone());
        tracing::info!(%addr, events_url = %self.state.config.events_url(addr), "Herald is listening");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        workers.abort();
        served.context("the HTTP server failed")
    }
}
