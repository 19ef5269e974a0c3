//! Herald: registry notifications in, namespace webhooks out, every delivery recorded.
//!
//! `Application::build` assembles everything from a `Config`; `main.rs` only parses the
//! command line, and the integration tests start the same application on port 0.

pub mod api;
pub mod app;
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
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::delivery::client::HttpSender;
use crate::delivery::ssrf::SsrfGuard;
use crate::delivery::worker::{Dispatcher, DispatcherConfig};
use crate::hooks::templates::TemplateSandbox;
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
    /// Renders `template` webhooks' bodies outside this process.
    pub templates: Arc<TemplateSandbox>,
    /// Failed password sign-ins per username and per client address (UI and API alike).
    pub login_throttle: Arc<auth::LoginThrottle>,
    /// The bound on password hashes running at once (UI, API and user creation alike).
    pub password_gate: Arc<auth::PasswordGate>,
    pub metrics: Arc<metrics::Metrics>,
}

/// The data directory holds the database, the registry token and the secret key, so only
/// Herald's user may enter it: it is created 0700, and an existing one of that user's that
/// others may enter is tightened to 0700, as are the token and key files in it.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        secrets::create_private_dir(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        return Ok(());
    }
    anyhow::ensure!(
        dir.is_dir(),
        "the data directory {} is not a directory",
        dir.display()
    );
    let tightened = secrets::tighten(dir, 0o700)
        .with_context(|| format!("cannot restrict the data directory {}", dir.display()))?;
    if let Some(had) = tightened {
        tracing::warn!(path = %dir.display(), was = format!("{had:o}"), "others could enter the data directory; it is now 0700");
    }
    for name in ["registry-token", "secret.key"] {
        let path = dir.join(name);
        let tightened = secrets::tighten(&path, 0o600)
            .with_context(|| format!("cannot restrict {}", path.display()))?;
        if let Some(had) = tightened {
            tracing::warn!(path = %path.display(), was = format!("{had:o}"), "others could read this file; it is now 0600");
        }
    }
    Ok(())
}

/// Creates the data directory when needed and opens (and migrates) the database.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    prepare_data_dir(&config.data_dir)?;
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
    prepare_data_dir(&config.data_dir)?;
    RegistryToken::load_or_create(&config.data_dir, config.registry_token.as_deref())
}

/// Refuses a secret key other than the one the database's secrets were sealed with: such a
/// process could not open them and would fail every delivery it claimed.
async fn check_secret_key(store: &dyn Store, cipher: &Cipher) -> anyhow::Result<()> {
    let mismatch = || {
        anyhow::anyhow!(
            "this process's secret key is not the one this database's secrets were sealed \
             with: set HERALD_SECRET_KEY (or --secret-key) to the key the other Herald \
             processes use, or use the data directory whose secret.key first opened this \
             database"
        )
    };
    if !store.has_key_check().await? {
        // A database from before key checks: its secrets show which key it had.
        if let Some(sealed) = store.any_sealed_secret().await? {
            cipher.open(&sealed).map_err(|_| mismatch())?;
        }
    }
    let recorded = store.record_key_check(cipher.check_value()).await?;
    if recorded != cipher.check_value() {
        return Err(mismatch());
    }
    Ok(())
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// SQLite: this process owns the data directory while it runs.
    _owner: Option<crate::store::sqlite::DataDirLock>,
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
        anyhow::ensure!(
            !config.ingest_read_timeout.is_zero(),
            "--ingest-read-timeout must be longer than 0s, or no envelope could be read"
        );
        anyhow::ensure!(
            config.ready_stall_timeout >= std::time::Duration::from_secs(1),
            "--ready-stall-timeout must be at least 1s: an idle dispatcher goes round every 500ms"
        );
        let store = open_store(&config).await?;
        if config.secret_key.is_none() && !config.database_url().starts_with("sqlite:") {
            tracing::warn!(
                "the secret key comes from this data directory: every process sharing the \
                 database must use the same key, so set HERALD_SECRET_KEY on all of them"
            );
        }
        let cipher = Cipher::load_or_create(&config.data_dir, config.secret_key.as_deref())?;
        check_secret_key(store.as_ref(), &cipher).await?;
        let owner = if config.database_url().starts_with("sqlite:") {
            let lock = crate::store::sqlite::DataDirLock::acquire(&config.data_dir)?;
            let released = store.release_all_claims().await?;
            if released > 0 {
                tracing::info!(
                    released,
                    "gave back the claims of the previous run; those deliveries go out now"
                );
            }
            Some(lock)
        } else {
            None
        };
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
        let templates = Arc::new(TemplateSandbox::start(config.template_sandbox_exe()?).await?);
        let dispatcher = Dispatcher::new(
            store.clone(),
            sender,
            cipher.clone(),
            templates.clone(),
            DispatcherConfig {
                concurrency: config.delivery_concurrency,
                per_webhook: config.delivery_concurrency_per_webhook,
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
                templates,
                login_throttle: Arc::default(),
                password_gate: Arc::default(),
                metrics,
            },
            _owner: owner,
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
        let _owner = self._owner;
        let state = self.state.clone();
        let config = state.config.clone();
        let mut background = Vec::new();
        if config.runs_workers() {
            let dispatcher = state.dispatcher.clone();
            let wake = dispatcher.clone();
            if let Some(task) = state
                .store
                .liveness(Arc::new(move || wake.wake()))
                .await
                .context("cannot register this process in the database")?
            {
                background.push(tokio::spawn(task));
            }
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
        // The peer address feeds the sign-in throttle's per-address count.
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
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
