//! Configuration: command-line flags, then `HERALD_*` environment variables, then a TOML
//! file (`--config`), then defaults. The file is applied as environment variables that are
//! not already set, so one mechanism (clap's) parses and validates every value.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::delivery::proxy::{Egress, NoProxyList, ProxyUrl, ProxyUrlParser};
use crate::delivery::ssrf::AllowList;
use crate::domain::retry::RetrySchedule;

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// A TOML file with any of these settings (`listen = "0.0.0.0:8080"`, `[delivery]
    /// timeout = "10s"` ...); flags and environment variables win over it.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the HTTP server listens on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory for the SQLite database, the registry token and the secret key.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "herald-data")]
    pub data_dir: PathBuf,

    /// Database URL [default: sqlite://<data-dir>/herald.db].
    #[arg(long = "database", env = "HERALD_DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL: the most connections this process opens (one more listens for wakeups).
    #[arg(long, env = "HERALD_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,

    /// PostgreSQL: the longest a single statement may run before it is cancelled (0s: no limit).
    #[arg(long, env = "HERALD_DATABASE_STATEMENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub database_statement_timeout: Duration,

    /// Serve the REST API and the registry's ingest endpoint. With neither --api nor
    /// --worker, a process does both.
    #[arg(long, env = "HERALD_ROLE_API", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub api: bool,

    /// Run the delivery workers. With neither --api nor --worker, a process does both.
    #[arg(long, env = "HERALD_ROLE_WORKER", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub worker: bool,

    /// Token the registry must send as 'Authorization: Bearer <token>' [default: generated
    /// on first start and kept in <data-dir>/registry-token].
    #[arg(long, env = "HERALD_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,

    /// The default endpoint's registry, which Herald may read (manifests, the catalog and
    /// tags): its address, such as https://registry.example.org [default: none, Herald reads
    /// nothing]. Sources have their own (`herald source update NAME --registry-url`).
    #[arg(long, env = "HERALD_REGISTRY_URL", value_parser = parse_registry_url)]
    pub registry_url: Option<crate::domain::registry::RegistryUrl>,

    /// A username with read (pull and catalog) access to --registry-url.
    #[arg(long, env = "HERALD_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,

    /// Its password or token; prefer the environment variable, which no process list shows.
    #[arg(long, env = "HERALD_REGISTRY_PASSWORD", hide_env_values = true)]
    pub registry_password: Option<String>,

    /// A PEM file of CA certificates trusted for the registries Herald reads, beside the
    /// built-in roots.
    #[arg(long, env = "HERALD_REGISTRY_CA_BUNDLE")]
    pub registry_ca_bundle: Option<PathBuf>,

    /// The longest one request to a registry Herald reads may take.
    #[arg(long, env = "HERALD_REGISTRY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub registry_timeout: Duration,

    /// How long a delivery whose webhook filters on what was pushed (kinds, artifact types,
    /// subject tags) waits for the manifest to be read; past it, it is recorded as not sent.
    #[arg(long, env = "HERALD_FACTS_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub facts_wait: Duration,

    /// How often each registry Herald reads is compared with what its events said (0s:
    /// only at start, after a registry restart, and on demand).
    #[arg(long, env = "HERALD_RECONCILE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Duration,

    /// The most requests a second one reconcile makes to its registry.
    #[arg(long, env = "HERALD_RECONCILE_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub reconcile_rate: u32,

    /// URL at which the registry reaches Herald, for `registry-config` [default: http://<listen>].
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Key for secrets at rest, 32 bytes in base64 [default: <data-dir>/secret.key, created
    /// on first start]. Environment only, so it never shows in a process list.
    #[arg(
        long = "secret-key",
        env = "HERALD_SECRET_KEY",
        hide = true,
        hide_env_values = true,
        value_parser = parse_secret_key
    )]
    pub secret_key: Option<String>,

    /// The `herald` binary that renders templates in sandbox processes [default: this one].
    /// Only tests, which run Herald inside another binary, need to set it.
    #[arg(long, env = "HERALD_TEMPLATE_SANDBOX_EXE", hide = true)]
    pub template_sandbox_exe: Option<PathBuf>,

    /// Largest registry envelope accepted, in bytes.
    #[arg(long, env = "HERALD_INGEST_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub ingest_max_bytes: usize,

    /// Registry envelopes being received at once; beyond it Herald answers 503 with
    /// Retry-After (the registry retries), so an overload cannot grow memory without bound.
    #[arg(long, env = "HERALD_INGEST_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub ingest_max_in_flight: u32,

    /// The longest the body of a registry envelope may take to arrive once Herald has
    /// admitted it; a slower sender gets 408, so it cannot hold an in-flight place for long.
    #[arg(long, env = "HERALD_INGEST_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub ingest_read_timeout: Duration,

    /// Connect timeout of a delivery.
    #[arg(long, env = "HERALD_DELIVERY_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub delivery_connect_timeout: Duration,

    /// Total timeout of a delivery, response body included.
    #[arg(long, env = "HERALD_DELIVERY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// How long a worker's claim on a delivery holds; a dead process's deliveries are sent
    /// again after it. Must exceed --delivery-timeout [default: 2 x delivery timeout + 30s].
    #[arg(long, env = "HERALD_DELIVERY_LEASE", value_parser = humantime::parse_duration)]
    pub delivery_lease: Option<Duration>,

    /// Deliveries in flight at once, over all webhooks.
    #[arg(long, env = "HERALD_DELIVERY_CONCURRENCY", default_value_t = 256)]
    pub delivery_concurrency: usize,

    /// Deliveries in flight at once to one webhook.
    #[arg(
        long,
        env = "HERALD_DELIVERY_CONCURRENCY_PER_WEBHOOK",
        default_value_t = 8
    )]
    pub delivery_concurrency_per_webhook: usize,

    /// Deliveries in flight at once to one webhook whose URL is a broker's (nats, amqp,
    /// redis, mqtt). A broker takes many publishes pipelined on one pooled connection and
    /// acknowledges each after storing it, so one webhook's rate is this divided by the
    /// acknowledgement time: at 8, a persisting broker is held to a third of its rate.
    #[arg(
        long,
        env = "HERALD_DELIVERY_CONCURRENCY_PER_BROKER",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub delivery_concurrency_per_broker: u32,

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
    #[arg(long, env = "HERALD_PERMISSIONS_CREATE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    pub permissions_create_webhook: bool,

    /// Whether team owners may change, enable and disable webhooks and retrigger deliveries.
    #[arg(long, env = "HERALD_PERMISSIONS_MANAGE_WEBHOOK", default_value_t = true, action = clap::ArgAction::Set)]
    pub permissions_manage_webhook: bool,

    /// Let anyone create a (non-admin) account with POST /api/v1/users.
    #[arg(long, env = "HERALD_ALLOW_SIGNUP", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_signup: bool,

    /// A PEM file of CA certificates trusted for deliveries, beside the built-in roots.
    #[arg(long, env = "HERALD_DELIVERY_CA_BUNDLE")]
    pub delivery_ca_bundle: Option<PathBuf>,

    /// A webhook whose deliveries have all failed for this long is disabled (and the audit
    /// trail says so); enabling it again starts afresh.
    #[arg(long, env = "HERALD_AUTO_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration)]
    pub auto_disable_after: Duration,

    /// The UI shows a webhook as failing, under "Needs attention" on the dashboard, once
    /// every attempt has failed for this long (or at once when its circuit opens), rather
    /// than only after a delivery has used all its retries.
    #[arg(long, env = "HERALD_ATTENTION_AFTER", default_value = "15m", value_parser = humantime::parse_duration)]
    pub attention_after: Duration,

    /// Failed attempts in a row after which a webhook's circuit opens: its due deliveries
    /// wait (no attempt counted) instead of each failing against a dead receiver, until
    /// one probe goes after --circuit-cooldown. 0 turns the circuit breaker off.
    #[arg(long, env = "HERALD_CIRCUIT_FAILURES", default_value_t = 5)]
    pub circuit_failures: u32,

    /// How long an open circuit waits before its probe; each failed probe doubles it, up
    /// to 10 minutes (or this, if longer). At least 100ms.
    #[arg(long, env = "HERALD_CIRCUIT_COOLDOWN", default_value = "30s", value_parser = parse_cooldown)]
    pub circuit_cooldown: Duration,

    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(long, env = "HERALD_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    pub log_format: String,

    /// `/readyz` fails (503) once the SQLite writer has been on one batch, or the delivery
    /// dispatcher on one round of its claim loop, for longer than this: a stuck process is
    /// taken out of service. Waiting for work is not being stuck.
    #[arg(long, env = "HERALD_READY_STALL_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ready_stall_timeout: Duration,

    /// How long a shutdown waits for deliveries in flight before handing them back.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Finished deliveries (and their attempts) older than this many days are deleted.
    #[arg(long, env = "HERALD_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,

    /// At most this many finished deliveries are kept per webhook; older ones are deleted.
    #[arg(
        long,
        env = "HERALD_RETENTION_MAX_PER_WEBHOOK",
        default_value_t = 10_000
    )]
    pub retention_max_per_webhook: u32,

    /// How often the retention sweep runs.
    #[arg(long, env = "HERALD_RETENTION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,

    /// Delays before each attempt of a delivery, comma-separated; after the last, it fails.
    #[arg(long, env = "HERALD_RETRY_SCHEDULE", default_value = "0s,5s,5m,30m,2h,5h,10h,10h", value_parser = RetrySchedule::parse)]
    pub retry_schedule: RetrySchedule,

    /// How long creating or changing a webhook through the API waits for its host to
    /// resolve, to warn when the SSRF guard would block it; 0s: names are not resolved
    /// (IP-literal URLs are still checked).
    #[arg(long, env = "HERALD_WEBHOOK_RESOLVE_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub webhook_resolve_timeout: Duration,

    /// Networks deliveries may reach although the SSRF guard forbids them (loopback, private,
    /// link-local, ...), comma-separated CIDRs such as 127.0.0.1/32,10.1.0.0/16 [default: none].
    #[arg(long, env = "HERALD_DELIVERY_ALLOW_NETWORKS", value_parser = AllowList::parse)]
    pub delivery_allow_networks: Option<AllowList>,

    /// A proxy for deliveries, for networks that let nothing else out: http://host:port
    /// (CONNECT for https receivers), socks5:// or socks5h://, with user:password@ if it
    /// asks for them. The SSRF guard still vets every receiver (not the proxy) [default:
    /// none, deliveries connect directly; HTTP_PROXY and HTTPS_PROXY are ignored].
    #[arg(
        long,
        env = "HERALD_DELIVERY_PROXY",
        value_name = "URL",
        hide_env_values = true,
        value_parser = ProxyUrlParser
    )]
    pub delivery_proxy: Option<ProxyUrl>,

    /// Receivers that bypass --delivery-proxy, comma-separated: host names (each covers its
    /// subdomains too), domains such as .internal, IP addresses or CIDRs (these match
    /// IP-literal URLs only), or * for every receiver [default: none].
    #[arg(long, env = "HERALD_DELIVERY_NO_PROXY", value_name = "LIST", value_parser = NoProxyList::parse)]
    pub delivery_no_proxy: Option<NoProxyList>,
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
    /// The binary started as the template sandbox.
    pub fn template_sandbox_exe(&self) -> anyhow::Result<PathBuf> {
        match &self.template_sandbox_exe {
            Some(exe) => Ok(exe.clone()),
            None => std::env::current_exe().map_err(|e| {
                anyhow::anyhow!("cannot find the herald binary for the template sandbox: {e}")
            }),
        }
    }

    /// Every effective setting as `(key, value)`, keyed by the flag's clap id (its field
    /// name), secrets masked. Settings left unset show what Herald uses instead.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let dur = |d: Duration| humantime::format_duration(d).to_string();
        let path_or = |p: &Option<PathBuf>, none: &str| {
            p.as_ref()
                .map_or_else(|| none.to_string(), |p| p.display().to_string())
        };
        // A secret shows only where it comes from, never its value.
        let secret = |configured: &Option<String>, file: &str| match configured {
            Some(_) => "********".to_string(),
            None => {
                let path = absolute(&self.data_dir.join(file));
                if path.exists() {
                    format!("******** (in {})", path.display())
                } else {
                    format!("(not set: `herald serve` generates {})", path.display())
                }
            }
        };
        let roles = match (self.serves_api(), self.runs_workers()) {
            (true, true) => "both roles",
            (true, false) => "api only",
            _ => "worker only",
        };
        vec![
            ("config", path_or(&self.config, "(none)")),
            ("listen", self.listen.to_string()),
            (
                "data_dir",
                format!(
                    "{} ({})",
                    self.data_dir.display(),
                    absolute(&self.data_dir).display()
                ),
            ),
            ("database_url", self.database_url_redacted()),
            (
                "database_max_connections",
                self.database_max_connections.to_string(),
            ),
            (
                "database_statement_timeout",
                dur(self.database_statement_timeout),
            ),
            ("api", format!("{} ({roles})", self.serves_api())),
            ("worker", format!("{} ({roles})", self.runs_workers())),
            (
                "registry_token",
                secret(&self.registry_token, "registry-token"),
            ),
            (
                "registry_url",
                match &self.registry_url {
                    Some(url) => url.to_string(),
                    None => "(none: Herald does not read the default endpoint's registry)".into(),
                },
            ),
            (
                "registry_username",
                self.registry_username
                    .clone()
                    .unwrap_or_else(|| "(none)".into()),
            ),
            (
                "registry_password",
                if self.registry_password.is_some() {
                    "(set)"
                } else {
                    "(none)"
                }
                .into(),
            ),
            (
                "registry_ca_bundle",
                path_or(&self.registry_ca_bundle, "(none: built-in roots only)"),
            ),
            ("registry_timeout", dur(self.registry_timeout)),
            ("facts_wait", dur(self.facts_wait)),
            ("reconcile_interval", dur(self.reconcile_interval)),
            ("reconcile_rate", self.reconcile_rate.to_string()),
            (
                "public_url",
                self.public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", self.listen)),
            ),
            ("secret_key", secret(&self.secret_key, "secret.key")),
            (
                "template_sandbox_exe",
                path_or(&self.template_sandbox_exe, "(this herald binary)"),
            ),
            ("ingest_max_bytes", self.ingest_max_bytes.to_string()),
            (
                "ingest_max_in_flight",
                self.ingest_max_in_flight.to_string(),
            ),
            ("ingest_read_timeout", dur(self.ingest_read_timeout)),
            (
                "delivery_connect_timeout",
                dur(self.delivery_connect_timeout),
            ),
            ("delivery_timeout", dur(self.delivery_timeout)),
            ("delivery_lease", dur(self.delivery_lease())),
            (
                "delivery_concurrency",
                self.delivery_concurrency.to_string(),
            ),
            (
                "delivery_concurrency_per_webhook",
                self.delivery_concurrency_per_webhook.to_string(),
            ),
            (
                "delivery_concurrency_per_broker",
                self.delivery_concurrency_per_broker.to_string(),
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
            (
                "delivery_ca_bundle",
                path_or(&self.delivery_ca_bundle, "(none: built-in roots only)"),
            ),
            ("auto_disable_after", dur(self.auto_disable_after)),
            ("attention_after", dur(self.attention_after)),
            (
                "circuit_failures",
                match self.circuit_failures {
                    0 => "0 (the circuit breaker is off)".into(),
                    n => n.to_string(),
                },
            ),
            ("circuit_cooldown", dur(self.circuit_cooldown)),
            ("log_format", self.log_format.clone()),
            ("ready_stall_timeout", dur(self.ready_stall_timeout)),
            ("shutdown_grace", dur(self.shutdown_grace)),
            ("retention_days", self.retention_days.to_string()),
            (
                "retention_max_per_webhook",
                self.retention_max_per_webhook.to_string(),
            ),
            ("retention_interval", dur(self.retention_interval)),
            ("retry_schedule", self.retry_schedule.to_string()),
            ("webhook_resolve_timeout", dur(self.webhook_resolve_timeout)),
            (
                "delivery_allow_networks",
                match &self.delivery_allow_networks {
                    Some(a) if !a.is_empty() => a.to_string(),
                    _ => "(none: the SSRF guard refuses loopback, private, link-local, ...)".into(),
                },
            ),
            (
                "delivery_proxy",
                match &self.delivery_proxy {
                    Some(proxy) => proxy.to_string(),
                    None => "(none: deliveries connect directly)".into(),
                },
            ),
            (
                "delivery_no_proxy",
                match (&self.delivery_no_proxy, &self.delivery_proxy) {
                    (Some(list), _) if !list.is_empty() => list.to_string(),
                    (_, Some(_)) => "(none: every delivery goes through the proxy)".into(),
                    _ => "(none)".into(),
                },
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

    /// Every setting at its default, whatever the environment says: the base for commands
    /// that take only a few settings.
    pub fn defaults() -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let cmd = ConfigOnly::command().mut_args(|a| a.env(None));
        let matches = cmd.try_get_matches_from(["herald"])?;
        ConfigOnly::from_arg_matches(&matches).map(|c| c.config)
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

    /// The circuit breaker's rule, from `--circuit-failures` and `--circuit-cooldown`.
    pub fn circuit(&self) -> crate::domain::control::CircuitRule {
        crate::domain::control::CircuitRule::new(self.circuit_failures, self.circuit_cooldown)
    }

    /// Where deliveries go out: through `--delivery-proxy` unless `--delivery-no-proxy`
    /// lists the receiver.
    pub fn egress(&self) -> Egress {
        Egress {
            proxy: self.delivery_proxy.clone(),
            no_proxy: self.delivery_no_proxy.clone().unwrap_or_default(),
        }
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

    /// Who Herald says it is in CloudEvents webhook validation (`WebHook-Request-Origin`):
    /// the host of `--public-url`, else `herald`.
    pub fn webhook_origin(&self) -> String {
        self.public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "herald".to_string())
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

/// A key for secrets at rest, checked when read: 32 bytes in base64. A bad one is refused
/// here, before anything (a database) is created.
fn parse_registry_url(text: &str) -> Result<crate::domain::registry::RegistryUrl, String> {
    crate::domain::registry::RegistryUrl::parse(text).map_err(|e| e.message)
}

fn parse_secret_key(text: &str) -> Result<String, String> {
    crate::secrets::check_key(text.trim())?;
    Ok(text.trim().to_string())
}

/// A circuit's cool-down: a probe every few milliseconds would be no cool-down at all.
fn parse_cooldown(text: &str) -> Result<Duration, String> {
    let cooldown = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if cooldown < Duration::from_millis(100) {
        return Err("the cool-down must be at least 100ms".into());
    }
    Ok(cooldown)
}

/// `path` made absolute against the current directory, for messages; as given if that fails.
pub fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
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
        assert_eq!(c.ingest_read_timeout, Duration::from_secs(10));
        assert_eq!(c.ready_stall_timeout, Duration::from_secs(30));
        assert_eq!(
            c.circuit(),
            crate::domain::control::CircuitRule::new(5, Duration::from_secs(30)),
            "the circuit breaker is on by default"
        );
        let err = Config::from_args(["--circuit-cooldown", "0s"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--circuit-cooldown") && err.contains("100ms"),
            "{err}"
        );
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
    fn describe_shows_every_setting_by_its_id_and_defaults_ignore_the_environment() {
        use clap::CommandFactory;
        let c = Config::from_args(["--data-dir", "/tmp/x"]).unwrap();
        let keys: Vec<&str> = c.describe().iter().map(|(k, _)| *k).collect();
        let cmd = ConfigOnly::command();
        let ids: Vec<&str> = cmd
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| *id != "help")
            .collect();
        assert_eq!(keys.len(), ids.len(), "{keys:?} vs {ids:?}");
        for id in ids {
            assert!(keys.contains(&id), "`herald config` leaves out {id}");
        }
        let d = Config::defaults().unwrap();
        assert_eq!(d.data_dir, PathBuf::from("herald-data"));
        assert_eq!(d.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn the_delivery_proxy_is_parsed_shown_redacted_and_bad_values_named() {
        let c = Config::from_args(["--data-dir", "/tmp/x"]).unwrap();
        assert!(
            c.egress().proxy.is_none(),
            "deliveries connect directly by default"
        );
        let shown = |c: &Config, key: &str| {
            c.describe()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .unwrap()
        };
        assert_eq!(
            shown(&c, "delivery_proxy"),
            "(none: deliveries connect directly)"
        );
        let c = Config::from_args([
            "--delivery-proxy",
            "http://herald:s3cret@proxy.internal:3128",
            "--delivery-no-proxy",
            ".internal,10.0.0.0/8",
        ])
        .unwrap();
        assert_eq!(
            shown(&c, "delivery_proxy"),
            "http://***:***@proxy.internal:3128"
        );
        assert_eq!(shown(&c, "delivery_no_proxy"), ".internal,10.0.0.0/8");
        assert!(!format!("{c:?}").contains("s3cret"), "nor in Debug");
        let egress = c.egress();
        assert!(egress.proxy.is_some() && !egress.no_proxy.is_empty());

        for (args, flag) in [
            (
                ["--delivery-proxy", "ftp://herald:s3cret@proxy:21"],
                "--delivery-proxy",
            ),
            (
                ["--delivery-proxy", "herald:s3cret@proxy:3128"],
                "--delivery-proxy",
            ),
            (
                ["--delivery-no-proxy", ".internal,10.0.0.0/33"],
                "--delivery-no-proxy",
            ),
        ] {
            let err = Config::from_args(args).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
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
