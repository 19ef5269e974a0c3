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
pub mod maintenance;
pub mod metrics;
pub mod registry;
pub mod secrets;
pub mod store;
pub mod web;

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
use crate::store::postgres::{PgSettings, PgStore};
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
    pub login_throttle: Arc<web::LoginThrottle>,
    pub metrics: Arc<metrics::Metrics>,
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
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let settings = PgSettings {
            max_connections: config.database_max_connections,
            statement_timeout: config.database_statement_timeout,
        };
        // The URL may hold a password: errors name only the database kind.
        Arc::new(
            PgStore::connect(&url, settings)
                .await
                .context("cannot connect to the PostgreSQL database")?,
        )
    } else {
        anyhow::bail!(
            "unsupported database URL: Herald supports sqlite://, postgres:// and postgresql:// URLs"
        );
    };
    store.migrate().await.context("database migration failed")?;
    Ok(store)
}

/// The operator's extra CA certificates for deliveries, if any.
fn ca_bundle(config: &Config) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(path) = &config.delivery_ca_bundle else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA bundle {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{} holds no usable PEM certificates", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no certificates",
        path.display()
    );
    Ok(certs)
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
        let lease = config.delivery_lease();
        anyhow::ensure!(
            lease > config.delivery_timeout,
            "--delivery-lease ({}) must be longer than --delivery-timeout ({}), or another \
             process could send a delivery that is still being sent",
            humantime::format_duration(lease),
            humantime::format_duration(config.delivery_timeout)
        );
        let store = open_store(&config).await?;
        if config.secret_key.is_none() && !config.database_url().starts_with("sqlite:") {
            tracing::warn!(
                "the secret key comes from this data directory: every process sharing the \
                 database must use the same key, so set HERALD_SECRET_KEY on all of them"
            );
        }
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
            &ca_bundle(&config)?,
        )?;
        let metrics = Arc::new(metrics::Metrics::default());
        let dispatcher = Dispatcher::new(
            store.clone(),
            sender,
            cipher.clone(),
            DispatcherConfig {
                concurrency: config.delivery_concurrency,
                per_webhook: config.delivery_concurrency_per_webhook,
                slow_lane: config.delivery_slow_lane as usize,
                schedule: config.retry_schedule.clone(),
                lease,
                disable_after: config.auto_disable_after,
            },
            metrics.clone(),
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
                login_throttle: Arc::default(),
                metrics,
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

    /// Serves HTTP and runs the delivery workers, as the process's roles say, until
    /// `shutdown` completes; then stops taking requests, lets deliveries in flight finish
    /// (up to `--shutdown-grace`), hands back the rest, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let state = self.state.clone();
        let config = state.config.clone();
        let mut background = Vec::new();
        if config.runs_workers() {
            let dispatcher = state.dispatcher.clone();
            background.push(tokio::spawn(dispatcher.clone().run()));
            if let Some(task) = state.store.wakeups(Arc::new(move || dispatcher.wake())) {
                background.push(tokio::spawn(task));
            }
        }
        background.push(tokio::spawn(maintenance::retention_loop(state.clone())));
        let app = if config.serves_api() {
            api::router(state.clone())
        } else {
            // A worker still answers health checks and metrics, and says why the rest is missing.
            axum::Router::new()
                .route("/healthz", axum::routing::get(api::health::healthz))
                .route("/readyz", axum::routing::get(api::health::readyz))
                .route("/metrics", axum::routing::get(api::health::metrics))
                .fallback(|| async {
                    error::AppError::not_found(
                        "this Herald process runs only delivery workers (--worker)",
                    )
                })
                .with_state(state.clone())
        };
        let roles = match (config.serves_api(), config.runs_workers()) {
            (true, true) => "api,worker",
            (true, false) => "api",
            _ => "worker",
        };
        tracing::info!(%addr, roles, events_url = %config.events_url(addr), "Herald is listening");
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        tracing::info!("no longer accepting requests; finishing deliveries in flight");
        if config.runs_workers() {
            state.dispatcher.drain(config.shutdown_grace).await;
        }
        for task in background {
            task.abort();
        }
        tracing::info!("stopped");
        served.context("the HTTP server failed")
    }
}
