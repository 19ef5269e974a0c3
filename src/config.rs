//! Configuration: command-line flags, then `HERALD_*` environment variables, then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::delivery::retry::RetrySchedule;

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "HERALD_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Directory for the SQLite database, the registry token and the secret key.
    #[arg(
        long,
        env = "HERALD_DATA_DIR",
        default_value = "herald-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL [default: sqlite://<data-dir>/herald.db].
    #[arg(long = "database", env = "HERALD_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// PostgreSQL: the most connections this process opens (one more listens for wakeups).
    #[arg(
        long,
        env = "HERALD_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub database_max_connections: u32,

    /// PostgreSQL: the longest a single statement may run before it is cancelled (0s: no limit).
    #[arg(long, env = "HERALD_DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub database_statement_timeout: Duration,

    /// Serve the REST API and the registry's ingest endpoint. With neither --api nor
    /// --worker, a process does both.
    #[arg(long, env = "HERALD_ROLE_API", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, global = true)]
    pub api: bool,

    /// Run the delivery workers. With neither --api nor --worker, a process does both.
    #[arg(long, env = "HERALD_ROLE_WORKER", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, global = true)]
    pub worker: bool,

    /// Token the registry must send as 'Authorization: Bearer <token>' [default: generated
    /// on first start and kept in <data-dir>/registry-token].
    #[arg(
        long,
        env = "HERALD_REGISTRY_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub registry_token: Option<String>,

    /// URL at which the registry reaches Herald, for `registry-config` [default: http://<listen>].
    #[arg(long, env = "HERALD_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Key for secrets at rest, 32 bytes in base64 [default: <data-dir>/secret.key, created
    /// on first start]. Environment only, so it never shows in a process list.
    #[arg(
        long = "secret-key",
        env = "HERALD_SECRET_KEY",
        hide = true,
        hide_env_values = true,
        global = true
    )]
    pub secret_key: Option<String>,

    /// Largest registry envelope accepted, in bytes.
    #[arg(long, env = "HERALD_INGEST_MAX_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub ingest_max_bytes: usize,

    /// Connect timeout of a delivery.
    #[arg(long, env = "HERALD_DELIVERY_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub delivery_connect_timeout: Duration,

    /// Total timeout of a delivery, response body included.
    #[arg(long, env = "HERALD_DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub delivery_timeout: Duration,

    /// How long a worker's claim on a delivery holds; a dead process's deliveries are sent
    /// again after it. Must exceed --delivery-timeout [default: 2 x delivery timeout + 30s].
    #[arg(long, env = "HERALD_DELIVERY_LEASE", value_parser = humantime::parse_duration, global = true)]
    pub delivery_lease: Option<Duration>,

    /// Deliveries in flight at once, over all webhooks.
    #[arg(
        long,
        env = "HERALD_DELIVERY_CONCURRENCY",
        default_value_t = 256,
        global = true
    )]
    pub delivery_concurrency: usize,

    /// Deliveries in flight at once to one webhook.
    #[arg(
        long,
        env = "HERALD_DELIVERY_CONCURRENCY_PER_WEBHOOK",
        default_value_t = 8,
        global = true
    )]
    pub delivery_concurrency_per_webhook: usize,

    /// Whether team owners may create and delete webhooks and their headers (else only admins).
    #[arg(long, env = "HERALD_PERMISSIONS_CREATE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub permissions_create_webhook: bool,

    /// Whether team owners may change, enable and disable webhooks and retrigger deliveries.
    #[arg(long, env = "HERALD_PERMISSIONS_MANAGE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub permissions_manage_webhook: bool,

    /// Let anyone create a (non-admin) account with POST /api/v1/users.
    #[arg(long, env = "HERALD_ALLOW_SIGNUP", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub allow_signup: bool,

    /// Delays before each attempt of a delivery, comma-separated; after the last, it fails.
    #[arg(long, env = "HERALD_RETRY_SCHEDULE", default_value = "0s,5s,5m,30m,2h,5h,10h,10h", value_parser = RetrySchedule::parse, global = true)]
    pub retry_schedule: RetrySchedule,
}

/// Later flags win over earlier ones, so tests can override the defaults they start from.
#[derive(Parser)]
#[command(args_override_self = true)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// Builds a configuration from flags alone (and the environment), as tests do.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("herald"))
            .chain(args.into_iter().map(Into::into));
        ConfigOnly::try_parse_from(argv).map(|c| c.config)
    }

    pub fn permissions(&self) -> crate::auth::policy::Permissions {
        crate::auth::policy::Permissions {
            create_webhook: self.permissions_create_webhook,
            manage_webhook: self.permissions_manage_webhook,
            allow_signup: self.allow_signup,
        }
    }

    /// Whether this process serves the API and ingest: unless it was told only `--worker`.
    pub fn serves_api(&self) -> bool {
        self.api || !self.worker
    }

    /// Whether this process runs the delivery workers: unless it was told only `--api`.
    pub fn runs_workers(&self) -> bool {
        self.worker || !self.api
    }

    /// Long enough that a live attempt is never taken over; short enough that a crashed
    /// process's deliveries resume within minutes.
    pub fn delivery_lease(&self) -> Duration {
        self.delivery_lease
            .unwrap_or(self.delivery_timeout * 2 + Duration::from_secs(30))
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("herald.db").display()))
    }

    /// The database URL with any password masked, for messages and logs.
    pub fn database_url_redacted(&self) -> String {
        let raw = self.database_url();
        match url::Url::parse(&raw) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => raw,
        }
    }

    /// Where the registry should send its notifications.
    pub fn events_url(&self, actual_listen: SocketAddr) -> String {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{actual_listen}"));
        format!("{}/v2/webhooks/events", base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let c = Config::from_args(["--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(c.database_url(), "sqlite:///tmp/x/herald.db");
        assert_eq!(c.delivery_timeout, Duration::from_secs(30));
        assert_eq!(c.retry_schedule.0.len(), 8);
        let c = Config::from_args(["--public-url", "https://herald.example.org/"]).unwrap();
        assert_eq!(
            c.events_url("127.0.0.1:1".parse().unwrap()),
            "https://herald.example.org/v2/webhooks/events"
        );
        assert!(c.serves_api() && c.runs_workers());
        assert_eq!(c.delivery_lease(), Duration::from_secs(90));
        let c = Config::from_args(["--worker", "--delivery-lease", "3s"]).unwrap();
        assert!(!c.serves_api() && c.runs_workers());
        assert_eq!(c.delivery_lease(), Duration::from_secs(3));
        let c = Config::from_args(["--api"]).unwrap();
        assert!(c.serves_api() && !c.runs_workers());
        let c = Config::from_args(["--database", "postgres://herald:s3cret@db/herald"]).unwrap();
        assert_eq!(c.database_url_redacted(), "postgres://herald:***@db/herald");
        let err = Config::from_args(["--retry-schedule", "soon"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("retry-schedule") && err.contains("soon"),
            "{err}"
        );
    }
}
