//! Configuration: command-line flags, then `HERALD_*` environment variables, then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::delivery::retry::RetrySchedule;
use crate::delivery::ssrf::AllowList;

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

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("herald.db").display()))
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
