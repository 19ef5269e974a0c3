//! Herald: registry notifications in, namespace webhooks out, every delivery recorded.
//!
//! `Application::build` assembles everything from a `Config`; `main.rs` only parses the
//! command line, and the integration tests start the same application on port 0.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod hooks;
pub mod http;
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
use crate::delivery::brokers::Brokers;
use crate::delivery::client::HttpSender;
use crate::delivery::ssrf::SsrfGuard;
use crate::delivery::transport::Transport;
use crate::delivery::worker::{Dispatcher, DispatcherConfig};
use crate::hooks::templates::TemplateSandbox;
use crate::registry::token::RegistryToken;
use crate::secrets::Cipher;
use crate::store::postgres::{PgSettings, PgStore};
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// The version and the commit built from: what `--version`, `/healthz` and
/// `herald_build_info` say.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("HERALD_COMMIT"), ")");

/// The commit this binary was built from (`unknown` when built outside a git checkout).
pub const COMMIT: &str = env!("HERALD_COMMIT");

/// What every request handler can reach: the use cases' context (the store, the cipher,
/// the password gate ...; its fields read through `state.store` and the like), and what
/// only a serving process has.
#[derive(Clone)]
pub struct AppState {
    pub app: app::Context,
    pub registry_token: RegistryToken,
    pub dispatcher: Arc<Dispatcher>,
    /// The registries Herald reads (also in `app.registries`, for the use cases).
    pub registries: Arc<registry::reader::Registries>,
    pub metrics: Arc<metrics::Metrics>,
    /// Whether envelopes are being committed, for `/readyz`.
    pub ingest_health: Arc<http::ingest::IngestHealth>,
}

impl std::ops::Deref for AppState {
    type Target = app::Context;

    fn deref(&self) -> &app::Context {
        &self.app
    }
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

/// Creates the data directory when needed and opens (and migrates) the database: what
/// `serve` and `migrate` do.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    prepare_data_dir(&config.data_dir)?;
    let store = connect_store(config).await?;
    store.migrate().await.context("database migration failed")?;
    Ok(store)
}

/// A path as given and absolute, for messages: `./herald-data (/srv/herald-data)`.
pub fn show_path(path: &Path) -> String {
    let given = if path.is_relative() && !path.starts_with(".") {
        format!("./{}", path.display())
    } else {
        path.display().to_string()
    };
    format!("{given} ({})", config::absolute(path).display())
}

/// The database file of a SQLite URL; `None` for other databases and in-memory ones.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .ok()
        .map(|o| o.get_filename().to_path_buf())
}

/// Opens the database of an existing Herald, for the commands that manage one (users,
/// tokens, webhooks, deliveries): it creates nothing and migrates nothing, so a command run
/// in the wrong directory fails instead of quietly starting an empty Herald there.
pub async fn open_existing_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    if let Some(file) = sqlite_file(&url) {
        if !file.is_file() {
            if config.database_url.is_none() {
                anyhow::bail!(
                    "no Herald database in {} (use --data-dir or HERALD_DATA_DIR)",
                    show_path(&config.data_dir)
                );
            }
            anyhow::bail!(
                "no Herald database at {} (use --database or HERALD_DATABASE_URL)",
                show_path(&file)
            );
        }
    }
    let store = connect_store(config).await?;
    match store.migrations_current().await {
        Ok(true) => Ok(store),
        Ok(false) => anyhow::bail!(
            "the database's Herald schema is older than this herald; run `herald migrate` \
             (or start `herald serve`) first"
        ),
        Err(_) => anyhow::bail!(
            "the database has no Herald schema; run `herald migrate` or `herald serve` first"
        ),
    }
}

async fn connect_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
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
    Ok(store)
}

/// The registry token of an existing Herald: the configured one, or the one its first start
/// wrote into the data directory. Creates nothing.
pub fn existing_registry_token(config: &Config) -> anyhow::Result<RegistryToken> {
    let configured = config.registry_token.as_deref().map(str::trim);
    if configured.is_none_or(str::is_empty) {
        let file = config.data_dir.join("registry-token");
        anyhow::ensure!(
            file.is_file(),
            "no registry token in {} (use --data-dir or HERALD_DATA_DIR, or --registry-token; \
             `herald serve` or `herald migrate` creates it)",
            show_path(&config.data_dir)
        );
    }
    RegistryToken::load_or_create(&config.data_dir, config.registry_token.as_deref())
}

/// The key for secrets at rest of an existing Herald. Creates nothing.
pub fn existing_cipher(config: &Config) -> anyhow::Result<Cipher> {
    if config.secret_key.is_none() {
        anyhow::ensure!(
            config.data_dir.join("secret.key").is_file(),
            "no secret key in {} (use --data-dir or HERALD_DATA_DIR, or HERALD_SECRET_KEY)",
            show_path(&config.data_dir)
        );
    }
    Cipher::load_or_create(&config.data_dir, config.secret_key.as_deref())
}

/// The dispatcher as `serve` builds it: the HTTP sender behind the SSRF guard, the
/// template sandbox and the retry settings of `config`. The CLI's retrigger builds one too.
pub async fn build_dispatcher(
    config: &Config,
    store: Arc<dyn Store>,
    cipher: Cipher,
    metrics: Arc<metrics::Metrics>,
) -> anyhow::Result<(Arc<Dispatcher>, Arc<TemplateSandbox>)> {
    let allow = config.delivery_allow_networks.clone().unwrap_or_default();
    let guard = SsrfGuard::new(allow);
    let http = HttpSender::new(
        config.delivery_connect_timeout,
        config.delivery_timeout,
        guard.clone(),
        &ca_bundle(config)?,
        config.egress(),
        config.webhook_origin(),
    )?;
    let brokers = Brokers::new(
        guard,
        config.delivery_connect_timeout,
        config.delivery_timeout,
    );
    let sender = Transport::new(http, brokers);
    let templates = Arc::new(TemplateSandbox::start(config.template_sandbox_exe()?).await?);
    let dispatcher = Dispatcher::new(
        store,
        sender,
        cipher,
        templates.clone(),
        DispatcherConfig {
            concurrency: config.delivery_concurrency,
            per_webhook: config.delivery_concurrency_per_webhook,
            per_broker: config.delivery_concurrency_per_broker as usize,
            slow_lane: config.delivery_slow_lane as usize,
            schedule: config.retry_schedule.clone(),
            lease: config.delivery_lease(),
            disable_after: config.auto_disable_after,
            circuit: config.circuit(),
        },
        metrics,
    );
    Ok((dispatcher, templates))
}

/// The operator's extra CA certificates for deliveries, if any.
fn ca_bundle(config: &Config) -> anyhow::Result<Vec<reqwest::Certificate>> {
    read_ca_bundle(config.delivery_ca_bundle.as_deref())
}

/// The certificates of a PEM bundle, if one is given; a file that holds none is an error.
fn read_ca_bundle(path: Option<&Path>) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(path) = path else {
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

/// The registries Herald reads: the default endpoint's access from the configuration
/// (checked here, so a half-given one stops the start), the sources' from the store.
pub fn build_registries(
    config: &Config,
    store: Arc<dyn Store>,
    cipher: Cipher,
    metrics: Arc<metrics::Metrics>,
) -> anyhow::Result<Arc<registry::reader::Registries>> {
    use registry::client::Credentials;
    let credentials = match (&config.registry_username, &config.registry_password) {
        (Some(username), Some(password)) => {
            crate::domain::registry::check_registry_username(username)
                .map_err(|e| anyhow::anyhow!("--registry-username: {}", e.message))?;
            crate::domain::registry::check_registry_password(password)
                .map_err(|e| anyhow::anyhow!("--registry-password: {}", e.message))?;
            Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            })
        }
        (None, None) => None,
        (Some(_), None) => anyhow::bail!(
            "--registry-username needs --registry-password (or HERALD_REGISTRY_PASSWORD)"
        ),
        (None, Some(_)) => anyhow::bail!("--registry-password needs --registry-username"),
    };
    let default = match (&config.registry_url, credentials) {
        (Some(url), credentials) => Some(registry::reader::DefaultAccess {
            url: url.clone(),
            credentials,
        }),
        (None, Some(_)) => anyhow::bail!(
            "--registry-username and --registry-password need --registry-url: the registry to read"
        ),
        (None, None) => None,
    };
    anyhow::ensure!(
        !config.registry_timeout.is_zero(),
        "--registry-timeout must be longer than 0s"
    );
    let roots = read_ca_bundle(config.registry_ca_bundle.as_deref())?;
    if let Some(d) = &default {
        tracing::info!(registry = %d.url, username = d.credentials.as_ref().map(|c| c.username.as_str()), "Herald reads the default endpoint's registry");
    }
    Ok(Arc::new(registry::reader::Registries::new(
        store,
        cipher,
        metrics,
        roots,
        config.registry_timeout,
        default,
    )))
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

/// A database whose secrets are sealed with a key, started without that key: refused
/// before a new `secret.key` is written, which could never open them and would only
/// stand in the way of the real one being put back.
async fn refuse_a_lost_key(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    let file = config.data_dir.join("secret.key");
    if config.secret_key.is_some() || file.exists() {
        return Ok(());
    }
    let sealed_before = store.has_key_check().await? || store.any_sealed_secret().await?.is_some();
    anyhow::ensure!(
        !sealed_before,
        "{} is missing, but this database's secrets were sealed with a key: put back the \
         secret.key from the backup of this data directory, or set HERALD_SECRET_KEY to \
         that key. Herald does not make a new one, which could never open them",
        show_path(&file)
    );
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
        // The port first: a start that cannot listen must leave nothing behind on disk.
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            data_dir = %config::absolute(&config.data_dir).display(),
            database = %config.database_url_redacted(),
            "using this data directory"
        );
        let store = open_store(&config).await?;
        if config.secret_key.is_none() && !config.database_url().starts_with("sqlite:") {
            tracing::warn!(
                "the secret key comes from this data directory: every process sharing the \
                 database must use the same key, so set HERALD_SECRET_KEY on all of them"
            );
        }
        refuse_a_lost_key(&config, store.as_ref()).await?;
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
        if let Some(allow) = config
            .delivery_allow_networks
            .as_ref()
            .filter(|a| !a.is_empty())
        {
            tracing::info!(%allow, "the SSRF guard lets deliveries reach these networks");
        }
        // Shown redacted: the proxy's user and password never reach the log.
        let egress = config.egress();
        match &egress.proxy {
            Some(proxy) => tracing::info!(
                %proxy,
                no_proxy = %egress.no_proxy,
                "deliveries go through this proxy, except to the no-proxy receivers; the SSRF guard vets each receiver first"
            ),
            None if !egress.no_proxy.is_empty() => tracing::warn!(
                "--delivery-no-proxy has no effect without --delivery-proxy: deliveries connect directly"
            ),
            None => {}
        }
        let metrics = Arc::new(metrics::Metrics::default());
        let registries = build_registries(&config, store.clone(), cipher.clone(), metrics.clone())?;
        let (dispatcher, templates) =
            build_dispatcher(&config, store.clone(), cipher.clone(), metrics.clone()).await?;
        let app = Self {
            listener,
            state: AppState {
                app: app::Context {
                    store,
                    cipher,
                    password_gate: Arc::default(),
                    login_throttle: Arc::default(),
                    templates,
                    sender: Some(dispatcher.clone()),
                    registries: Some(registries.clone()),
                    config: Arc::new(config),
                },
                registry_token,
                dispatcher,
                registries,
                metrics,
                ingest_health: Arc::default(),
            },
            _owner: owner,
        };
        if app.state.config.serves_api() {
            // Sources that read their events from NATS: checked now, so a broken setting
            // stops the start instead of leaving events unread.
            http::ingest_nats::check_all(&app.state).await?;
        }
        Ok(app)
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
            background.push(tokio::spawn(maintenance::send_requests_loop(state.clone())));
            if let Some(task) = state.store.wakeups(Arc::new(move || dispatcher.wake())) {
                background.push(tokio::spawn(task));
            }
            // Reading registries: the facts of pushes, and the events they lost.
            let wake: Arc<dyn Fn() + Send + Sync> = {
                let dispatcher = state.dispatcher.clone();
                Arc::new(move || dispatcher.wake())
            };
            background.push(tokio::spawn(registry::facts::run(
                state.registries.clone(),
                config.facts_wait,
                wake.clone(),
            )));
            background.push(tokio::spawn(registry::reconcile::run(
                state.registries.clone(),
                registry::reconcile::Settings {
                    owner: secrets::random_token("process-"),
                    interval: config.reconcile_interval,
                    rate: config.reconcile_rate,
                    wake,
                },
            )));
        }
        background.push(tokio::spawn(maintenance::retention_loop(state.clone())));
        if config.serves_api() {
            background.push(tokio::spawn(http::ingest_nats::run(state.clone())));
        }
        let app = if config.serves_api() {
            http::app(state.clone())
        } else {
            http::worker_only(state.clone())
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
