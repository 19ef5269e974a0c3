//! Configuration: command-line flags, then `HERALD_*` environment variables, then a TOML
//! file (`--config`), then defaults. The file is applied as environment variables that are
//! not already set, so one mechanism (clap's) parses and validates every value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::delivery::retry::RetrySchedule;
use crate::delivery::ssrf::AllowList;

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// A TOML file with any of these settings (`listen = "0.0.0.0:8080"`, `[delivery]
    /// timeout = "10s"` ...); flags and environment variables win over it.
    #[arg(long, env = "HERALD_CONFIG", global = true)]
    pub config: Option<PathBuf>,

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

    /// Registry envelopes being received at once; beyond it Herald answers 503 with
    /// Retry-After (the registry retries), so an overload cannot grow memory without bound.
    #[arg(long, env = "HERALD_INGEST_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub ingest_max_in_flight: u32,

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

    /// Requests to slow receivers (out for over a second of late) and to webhooks not heard
    /// from yet, out at once, two per webhook at most; they never take one of
    /// --delivery-concurrency's slots, so hanging receivers cannot hold up fast ones.
    #[arg(
        long,
        env = "HERALD_DELIVERY_SLOW_LANE",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub delivery_slow_lane: u32,

    /// Whether team owners may create and delete webhooks and their headers (else only admins).
    #[arg(long, env = "HERALD_PERMISSIONS_CREATE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub permissions_create_webhook: bool,

    /// Whether team owners may change, enable and disable webhooks and retrigger deliveries.
    #[arg(long, env = "HERALD_PERMISSIONS_MANAGE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub permissions_manage_webhook: bool,

    /// Let anyone create a (non-admin) account with POST /api/v1/users.
    #[arg(long, env = "HERALD_ALLOW_SIGNUP", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub allow_signup: bool,

    /// A PEM file of CA certificates trusted for deliveries, beside the built-in roots.
    #[arg(long, env = "HERALD_DELIVERY_CA_BUNDLE", global = true)]
    pub delivery_ca_bundle: Option<PathBuf>,

    /// A webhook whose deliveries have all failed for this long is disabled (and the audit
    /// trail says so); enabling it again starts afresh.
    #[arg(long, env = "HERALD_AUTO_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration, global = true)]
    pub auto_disable_after: Duration,

    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"], global = true)]
    pub log_format: String,

    /// How long a shutdown waits for deliveries in flight before handing them back.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_grace: Duration,

    /// Finished deliveries (and their attempts) older than this many days are deleted.
    #[arg(
        long,
        env = "HERALD_RETENTION_DAYS",
        default_value_t = 30,
        global = true
    )]
    pub retention_days: u32,

    /// At most this many finished deliveries are kept per webhook; older ones are deleted.
    #[arg(
        long,
        env = "HERALD_RETENTION_MAX_PER_WEBHOOK",
        default_value_t = 10_000,
        global = true
    )]
    pub retention_max_per_webhook: u32,

    /// How often the retention sweep runs.
    #[arg(long, env = "HERALD_RETENTION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration, global = true)]
    pub retention_interval: Duration,

    /// Delays before each attempt of a delivery, comma-separated; after the last, it fails.
    #[arg(long, env = "HERALD_RETRY_SCHEDULE", default_value = "0s,5s,5m,30m,2h,5h,10h,10h", value_parser = RetrySchedule::parse, global = true)]
    pub retry_schedule: RetrySchedule,

    /// Networks deliveries may reach although the SSRF guard forbids them (loopback, private,
    /// link-local, ...), comma-separated CIDRs such as 127.0.0.1/32,10.1.0.0/16 [default: none].
    #[arg(long, env = "HERALD_DELIVERY_ALLOW_NETWORKS", value_parser = AllowList::parse, global = true)]
    pub delivery_allow_networks: Option<AllowList>,
}

/// Later flags win over earlier ones, so tests can override the defaults they start from.
#[derive(Parser)]
#[command(args_override_self = true)]
struct ConfigOnly {
    #[command(flatten)]
    config: Config,
}

/// The environment variables that configure Herald, from the command definition itself.
pub fn known_env_vars(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// Where the settings file is: `--config FILE`, `--config=FILE`, or `HERALD_CONFIG`.
pub fn config_path(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("HERALD_CONFIG").map(PathBuf::from)
}

/// Reads the TOML file into `HERALD_*` names and values; nested tables join with `_`
/// (`[delivery] timeout` is `HERALD_DELIVERY_TIMEOUT`). An unknown key is an error that
/// names it. Returns (environment name, file key, value) triples.
pub fn read_config_file(
    path: &std::path::Path,
    known: &[String],
) -> Result<Vec<(String, String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let mut out = Vec::new();
    flatten(&table, "", &mut out);
    for (key, _) in &out {
        let env = format!(
            "HERALD_{}",
            key.replace(['.', '-'], "_").to_ascii_uppercase()
        );
        if !known.contains(&env) || env == "HERALD_CONFIG" {
            return Err(format!(
                "unknown configuration key '{key}' in {} (each key is a flag's name: \
                 listen, data_dir, delivery.timeout, retry_schedule ...)",
                path.display()
            ));
        }
    }
    Ok(out
        .into_iter()
        .map(|(key, value)| {
            let env = format!(
                "HERALD_{}",
                key.replace(['.', '-'], "_").to_ascii_uppercase()
            );
            (env, key, value)
        })
        .collect())
}

fn flatten(table: &toml::Table, prefix: &str, out: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(t, &key, out),
            toml::Value::String(s) => out.push((key, s.clone())),
            toml::Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(scalar).collect();
                out.push((key, parts.join(",")));
            }
            other => out.push((key, scalar(other))),
        }
    }
}

fn scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) | toml::Value::Table(_) => String::new(),
    }
}

impl Config {
    /// The effective configuration as `key = value` lines, secrets masked.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let masked = |v: &Option<String>| {
            v.as_ref()
                .map_or("(not set)".to_string(), |_| "********".to_string())
        };
        let db = self.database_url();
        let db = match url::Url::parse(&db) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("********"));
                u.to_string()
            }
            _ => db,
        };
        vec![
            (
                "config",
                self.config
                    .as_ref()
                    .map_or("(none)".into(), |p| p.display().to_string()),
            ),
            ("listen", self.listen.to_string()),
            ("data_dir", self.data_dir.display().to_string()),
            ("database_url", db),
            ("registry_token", masked(&self.registry_token)),
            (
                "public_url",
                self.public_url
                    .clone()
                    .unwrap_or_else(|| "(not set)".into()),
            ),
            ("secret_key", masked(&self.secret_key)),
            ("ingest_max_bytes", self.ingest_max_bytes.to_string()),
            (
                "ingest_max_in_flight",
                self.ingest_max_in_flight.to_string(),
            ),
            (
                "delivery_connect_timeout",
                humantime::format_duration(self.delivery_connect_timeout).to_string(),
            ),
            (
                "delivery_timeout",
                humantime::format_duration(self.delivery_timeout).to_string(),
            ),
            (
                "delivery_concurrency",
                self.delivery_concurrency.to_string(),
            ),
            (
                "delivery_concurrency_per_webhook",
                self.delivery_concurrency_per_webhook.to_string(),
            ),
            ("delivery_slow_lane", self.delivery_slow_lane.to_string()),
            (
                "permissions_create_webhook",
                self.permissions_create_webhook.to_string(),
            ),
            (
                "permissions_manage_webhook",
                self.permissions_manage_webhook.to_string(),
            ),
            ("allow_signup", self.allow_signup.to_string()),
            ("log_format", self.log_format.clone()),
            (
                "shutdown_grace",
                humantime::format_duration(self.shutdown_grace).to_string(),
            ),
            ("retention_days", self.retention_days.to_string()),
            (
                "retention_max_per_webhook",
                self.retention_max_per_webhook.to_string(),
            ),
            (
                "retention_interval",
                humantime::format_duration(self.retention_interval).to_string(),
            ),
            ("retry_schedule", self.retry_schedule.to_string()),
            (
                "auto_disable_after",
                humantime::format_duration(self.auto_disable_after).to_string(),
            ),
        ]
    }

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

    #[test]
    fn allow_networks_are_parsed_and_bad_ones_named() {
        let c = Config::from_args(["--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(
            c.delivery_allow_networks, None,
            "the guard is on by default"
        );
        let c =
            Config::from_args(["--delivery-allow-networks", "127.0.0.1/32,10.1.0.0/16"]).unwrap();
        assert_eq!(
            c.delivery_allow_networks.unwrap().to_string(),
            "127.0.0.1/32,10.1.0.0/16"
        );
        // The last flag wins, and an empty one closes everything again.
        let c = Config::from_args([
            "--delivery-allow-networks",
            "127.0.0.1/32",
            "--delivery-allow-networks",
            "",
        ])
        .unwrap();
        assert!(c.delivery_allow_networks.unwrap().is_empty());
        let err = Config::from_args(["--delivery-allow-networks", "127.0.0.1/32,10.0.0.0/33"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("delivery-allow-networks") && err.contains("'10.0.0.0/33'"),
            "{err}"
        );
    }
}
