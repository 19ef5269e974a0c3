//! The command definitions. The server's ~35 settings live on `serve` (and `config`, which
//! shows them); every other command takes only what it uses, so its `--help` stays short.
//! For compatibility a setting may still come before the command
//! (`herald --listen 0.0.0.0:8080 serve`): [`hoist_settings`] moves it after the command's
//! name before clap sees it.

mod accounts;
mod admin;
pub mod context;
mod hooks;
mod listen;
pub mod manage;
pub mod output;
mod server;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use herald::config::Config;

#[derive(Parser)]
#[command(
    name = "herald",
    version = herald::VERSION,
    about = "Webhooks for Docker/OCI registries: registry notifications in, namespace webhooks out",
    long_about = "Herald receives the notifications of a Docker/OCI registry (CNCF distribution) at \
                  /v2/webhooks/events and sends each push and delete to the enabled webhooks of \
                  the repository's namespace, recording every delivery.\n\n\
                  Start with `herald serve`, then `herald registry-config` for the registry side.",
    after_help = "The server's settings (--listen, --data-dir, --database, --registry-token, \
                  --delivery-allow-networks ...) are listed by `herald serve --help`; each command's \
                  --help lists those it takes. A setting may also come before the command \
                  (`herald --listen 0.0.0.0:8080 serve`), and each has a HERALD_* environment \
                  variable and a key in the --config file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server and the delivery workers (creates the data directory on first start).
    Serve(Box<Config>),
    /// Create or upgrade the database schema, and create the registry token and secret key
    /// files if they are not configured (what `serve` would create), then exit.
    Migrate(StoreArgs),
    /// Namespaces: list, show, create, delete.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Webhooks: list, show, create, update, enable, disable, delete, headers, keys, ping.
    #[command(subcommand)]
    Webhook(Box<WebhookCommand>),
    /// A webhook's deliveries: list, show, retrigger.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Teams and their members.
    #[command(subcommand)]
    Team(TeamCommand),
    /// Users: create, list, passwd, disable, enable, promote, demote.
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sources (other registries feeding Herald): create, list, show, delete.
    #[command(subcommand)]
    Source(SourceCommand),
    /// The registries' events, newest first, with what Herald did with each and why.
    Events(EventsArgs),
    /// The activity log, newest first.
    Activity(ActivityArgs),
    /// Print the registry's `notifications` configuration (YAML) for this Herald.
    RegistryConfig(RegistryArgs),
    /// Print every effective setting and where it comes from (flag, env, file, default,
    /// generated), secrets masked. Takes the same settings as `serve`.
    Config(Box<Config>),
    /// Keys for secrets at rest.
    #[command(subcommand)]
    Key(KeyCommand),
    /// A receiver on this machine for trying a webhook: prints every request it gets and
    /// checks its signature (answering 401 when it does not hold).
    Listen {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// The webhook's v1 signing secret (whsec_...), shown when it was created.
        #[arg(long, env = "HERALD_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// The webhook's v1a public key (whpk_...), its `signature_public_key`.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print a shell completion script: `herald completions bash > /etc/bash_completion.d/herald`.
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the Herald to manage keeps its data. These commands never create a database: run
/// them with the data directory (or database) that `herald serve` uses.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// A TOML file of settings, as for `serve`; here only data_dir and database matter.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,

    /// The data directory of the Herald to manage: the one `herald serve` uses.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "herald-data")]
    pub data_dir: PathBuf,

    /// Database URL [default: sqlite://<data-dir>/herald.db].
    #[arg(long = "database", env = "HERALD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The server's key for secrets at rest, when it is not the data directory's
    /// secret.key (set it as the server's is: in the environment).
    #[arg(long, env = "HERALD_SECRET_KEY", hide_env_values = true, hide = true)]
    pub secret_key: Option<String>,
}

impl StoreArgs {
    /// A configuration with these settings and every other one at its default.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::defaults()?;
        config.config = self.config.clone();
        config.data_dir = self.data_dir.clone();
        config.database_url = self.database_url.clone();
        config.secret_key = self.secret_key.clone();
        Ok(config)
    }
}

/// What `registry-config` needs: the token and the URL the registry reaches Herald at.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// A TOML file of settings, as for `serve`.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the server listens on (the URL's default host and port).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// URL at which the registry reaches Herald [default: http://<listen>].
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The data directory of the server, whose registry-token file is printed.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "herald-data")]
    pub data_dir: PathBuf,

    /// The server's configured registry token, if it does not use the generated file.
    #[arg(long, env = "HERALD_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,

    /// The server's database URL, to look up `--source` [default: sqlite://<data-dir>/herald.db].
    #[arg(long = "database", env = "HERALD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Print the configuration for this source's registry (zot, Harbor, GitLab or
    /// distribution; see POST /api/v1/sources) instead of the default endpoint's.
    #[arg(long)]
    pub source: Option<String>,
}

impl RegistryArgs {
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::defaults()?;
        config.config = self.config.clone();
        config.listen = self.listen;
        config.public_url = self.public_url.clone();
        config.data_dir = self.data_dir.clone();
        config.registry_token = self.registry_token.clone();
        config.database_url = self.database_url.clone();
        Ok(config)
    }
}

/// `--json` for scripts.
#[derive(Args, Debug, Clone, Copy)]
pub struct Format {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A webhook as commands name it: its name, or its id (see `webhook list`).
const WEBHOOK_HELP: &str = "The webhook's name, or its id (see `webhook list`)";

#[derive(Subcommand)]
pub enum NamespaceCommand {
    /// List the namespaces.
    List {
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a namespace.
    Show {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create a namespace: the first path segment of the repositories whose events its
    /// webhooks get.
    Create {
        /// The namespace's name.
        name: String,
        /// The team that owns it (its owners manage its webhooks); none: admins only.
        #[arg(long)]
        team: Option<String>,
        /// What it is for, shown beside its name.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a namespace with its webhooks and their deliveries.
    Delete {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A webhook's settings as flags; each one left out is left as it is (or, on create, at
/// its default), as the API's fields are.
#[derive(Args, Debug, Clone, Default)]
pub struct WebhookFields {
    /// Where deliveries go: http(s)://...
    #[arg(long)]
    pub url: Option<String>,
    /// GET (the default, as Portus) or POST.
    #[arg(long = "method")]
    pub request_method: Option<String>,
    /// application/json (default) or application/x-www-form-urlencoded.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Basic auth username; the password is asked for (or read from standard input).
    #[arg(long)]
    pub username: Option<String>,
    /// Remove Basic auth (username and password).
    #[arg(long, conflicts_with = "username")]
    pub no_basic_auth: bool,
    /// A custom header, `Name: value`; repeat for several (create only; afterwards see
    /// `webhook header set`).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The payload format: registry-event (default), registry-envelope, cloudevents,
    /// cloudevents-binary, slack, teams, discord, mattermost, google-chat, template, or a
    /// deploy tool's: flux, keel, github-dispatch, gitlab-trigger, dockerhub.
    #[arg(long)]
    pub format: Option<String>,
    /// Set the deploy tool's token (Flux's Receiver token, a GitHub token, a GitLab
    /// trigger token), asked for or read from standard input (after the password, when
    /// --username asks for one too).
    #[arg(long)]
    pub token: bool,
    /// Remove the token.
    #[arg(long, conflicts_with = "token")]
    pub no_token: bool,
    /// The deploy formats' options as the API's JSON, e.g. '{"event_type":"deploy"}' for
    /// github-dispatch or '{"ref":"main","variables":{"ENV":"prod"}}' for gitlab-trigger,
    /// or @FILE; '{}' removes them.
    #[arg(long, value_name = "JSON")]
    pub format_options: Option<String>,
    /// For `--format template`: a file holding the minijinja template.
    #[arg(long, value_name = "FILE")]
    pub template_file: Option<PathBuf>,
    /// The filters as the API's JSON, e.g. '{"actions":["push"],"tags":["v*"]}', or @FILE.
    #[arg(long, value_name = "JSON")]
    pub filters: Option<String>,
    /// Verify the receiver's TLS certificate (true, the default) or not (false: unsafe).
    #[arg(long, value_name = "BOOL")]
    pub tls_verify: Option<bool>,
    /// At most this many deliveries a second (0.01 to 10000), or `none`.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate_limit: Option<String>,
    /// `none` (default) or `fifo`: one delivery at a time, in the order events arrived.
    #[arg(long)]
    pub ordering: Option<String>,
    /// Signature scheme: v1 (HMAC-SHA256, default) or v1a (ed25519).
    #[arg(long)]
    pub signature: Option<String>,
    /// A PEM client certificate chain to present to receivers behind mutual TLS (with
    /// --client-key).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Remove the client certificate and its key.
    #[arg(long, conflicts_with = "client_cert")]
    pub no_client_cert: bool,
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// List a namespace's webhooks.
    List {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a webhook (header values left out; `--json` is the API's view of it).
    Show {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create a webhook. It starts disabled: `webhook enable` once it is set up. Its
    /// signing secret is printed this once.
    Create {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        /// The webhook's name, unique in its namespace.
        name: String,
        #[command(flatten)]
        fields: WebhookFields,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a webhook's settings (those given; the rest stay).
    Update {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: WebhookFields,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a webhook: events are delivered to it.
    Enable {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a webhook: it gets no new deliveries.
    Disable {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a webhook with its deliveries.
    Delete {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// A new signing key; the old one keeps signing for 24 hours. A v1 secret is printed
    /// this once.
    RotateSecret {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send a `ping` event: the running server sends it and the result is printed.
    Ping {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send again the failed deliveries created in a time window (after an outage).
    Recover {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// RFC 3339 time: failed deliveries created at or after it.
        #[arg(long)]
        since: chrono::DateTime<chrono::Utc>,
        /// RFC 3339 time, default now: only deliveries created before it.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Custom headers: set, delete.
    #[command(subcommand)]
    Header(HeaderCommand),
}

#[derive(Subcommand)]
pub enum HeaderCommand {
    /// Add a header or replace the one of that name; the value is read from standard
    /// input when not given (it may be a secret).
    Set {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// The header's name.
        name: String,
        /// The value; read from standard input when left out.
        value: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a header.
    Delete {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// The header's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// How long a command waits for the running server to send what it queued.
#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// How long to wait for the running `herald serve` to send it and print the result;
    /// `0s`: queue it and return at once.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: std::time::Duration,
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List a webhook's deliveries, newest first.
    List {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show one delivery: the request sent and every attempt's response.
    Show {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// The delivery's id (see `deliveries list`).
        delivery: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send a delivery again: queued for the running `herald serve`, which sends it with
    /// the webhook's current settings and its own delivery settings, exactly as the UI's
    /// retrigger; then the result is printed. This command never sends anything itself.
    Retrigger {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        #[arg(help = WEBHOOK_HELP)]
        webhook: String,
        /// The delivery's id (see `deliveries list`).
        delivery: String,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum TeamCommand {
    /// List the teams.
    List {
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a team and its members.
    Show {
        /// The team's name.
        team: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create a team owned by a user.
    Create {
        /// The team's name.
        name: String,
        /// The user who owns it (owners manage its members and namespaces).
        #[arg(long)]
        owner: String,
        /// What it is for, shown beside its name.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Members: set (add, or change the role), remove.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Add a member or change their role.
    Set {
        /// The team's name.
        team: String,
        /// The username.
        user: String,
        /// owner, contributor or viewer.
        role: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a member (a team keeps at least one owner).
    Remove {
        /// The team's name.
        team: String,
        /// The username.
        user: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is asked for without echo on a terminal, else read
    /// from the first line of standard input.
    Create {
        /// The username (lowercase letters, digits, '.', '_', '-').
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// The user's email address.
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the users.
    List {
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a user's password (asked for as with `create`).
    Passwd {
        /// The username.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user: they can no longer sign in, and their API tokens stop working.
    Disable {
        /// The username.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled user again.
    Enable {
        /// The username.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make a user an administrator.
    Promote {
        /// The username.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make an administrator an ordinary user.
    Demote {
        /// The username.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (it is shown only this once).
    Create {
        /// The user the token acts as.
        user: String,
        /// A label to tell the user's tokens apart (e.g. the machine it is for).
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a user's API tokens (not the tokens themselves, which are stored hashed).
    List {
        /// The username.
        user: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke an API token by its id (see `token list`).
    Revoke {
        /// The token's id.
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Create a source, whose registry posts to /v2/sources/NAME/events. Its token (or, with
    /// --username, its password) is asked for without echo on a terminal, else read from
    /// the first line of standard input.
    Create {
        /// The source's name (lowercase letters, digits, '-', '_'; not 'default').
        name: String,
        /// What the registry is: distribution, zot, harbor or gitlab.
        #[arg(long)]
        kind: String,
        /// Use Basic auth with this username (the password on standard input) instead of a
        /// bearer token.
        #[arg(long)]
        username: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the sources (never their credentials).
    List {
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a source (never its credential).
    Show {
        /// The source's name.
        name: String,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give Herald read access to a source's registry (it then reads what each push was,
    /// and reconciles), change it, or take it away. With --registry-username, the password
    /// or token is asked for without echo on a terminal, else read from standard input.
    Update {
        /// The source's name.
        name: String,
        /// The registry's address, e.g. https://registry.example.org.
        #[arg(long, conflicts_with = "no_registry")]
        registry_url: Option<String>,
        /// A username with read (pull and catalog) access.
        #[arg(long, conflicts_with = "no_registry")]
        registry_username: Option<String>,
        /// Take the read access away.
        #[arg(long)]
        no_registry: bool,
        /// Read the source's events from NATS (zot and distribution sources): the server,
        /// nats://[user:password@]host:4222; its credentials are sealed, never shown.
        #[arg(long, conflicts_with = "no_nats")]
        nats_url: Option<String>,
        /// The subject the registry publishes to (wildcards allowed).
        #[arg(long, conflicts_with = "no_nats")]
        nats_subject: Option<String>,
        /// The JetStream stream that captures the subject.
        #[arg(long, conflicts_with = "no_nats")]
        nats_stream: Option<String>,
        /// The durable consumer's name (default herald-NAME).
        #[arg(long, conflicts_with = "no_nats")]
        nats_consumer: Option<String>,
        /// Stop reading the source's events from NATS.
        #[arg(long)]
        no_nats: bool,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Compare the source's registry with what its events said, now, and make up the pushes
    /// and deletes it did not send; the running `herald serve` does it.
    Reconcile {
        /// The source's name; `default` for the default endpoint.
        name: String,
        /// How long to wait for the running `herald serve` to finish it and print the result;
        /// `0s`: ask and return at once.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a source: its registry's events are refused from then on.
    Delete {
        /// The source's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print a new key for secrets at rest (32 random bytes in base64), for
    /// HERALD_SECRET_KEY or a data directory's secret.key. Nothing is written.
    Generate,
}

#[derive(Args)]
pub struct EventsArgs {
    /// How many to show.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=500))]
    pub limit: i64,
    #[command(flatten)]
    pub format: Format,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Args)]
pub struct ActivityArgs {
    /// Only this namespace's.
    #[arg(long)]
    pub namespace: Option<String>,
    /// How many to show.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=500))]
    pub limit: i64,
    #[command(flatten)]
    pub format: Format,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The server's settings as their own command, to look them up by name.
pub fn settings_command() -> clap::Command {
    Config::augment_args(clap::Command::new("herald"))
}

/// Moves settings given before the command to just after its name (and its subcommand's),
/// so `herald --data-dir /srv/herald user list` means `herald user list --data-dir ...`.
/// Anything else is left where it is, for clap to judge.
pub fn hoist_settings(args: &[OsString]) -> Vec<OsString> {
    use clap::CommandFactory;
    let settings = settings_command();
    let mut head = Vec::new();
    let mut hoisted = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let text = args[i].to_string_lossy();
        if !text.starts_with("--") || text == "--" {
            break;
        }
        let name = text[2..].split('=').next().unwrap_or_default().to_string();
        match settings
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
        {
            Some(arg) => {
                hoisted.push(args[i].clone());
                if arg.get_action().takes_values() && !text.contains('=') && i + 1 < args.len() {
                    i += 1;
                    hoisted.push(args[i].clone());
                }
            }
            None => head.push(args[i].clone()),
        }
        i += 1;
    }
    // The command's path: `user list`, `serve` ...
    let root = Cli::command();
    let mut path_end = i;
    let mut current = &root;
    while path_end < args.len() {
        let name = args[path_end].to_string_lossy();
        match current.find_subcommand(name.as_ref()) {
            Some(sub) => {
                current = sub;
                path_end += 1;
                if !sub.has_subcommands() {
                    break;
                }
            }
            None => break,
        }
    }
    let mut out = vec![args[0].clone()];
    out.extend(head);
    if path_end == i {
        // No known command: leave everything in place.
        out.extend(hoisted);
        out.extend(args[i..].iter().cloned());
    } else {
        out.extend(args[i..path_end].iter().cloned());
        out.extend(hoisted);
        out.extend(args[path_end..].iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoist(args: &[&str]) -> Vec<String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        hoist_settings(&args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn settings_before_the_command_move_after_its_name() {
        assert_eq!(
            hoist(&["herald", "--listen", "0.0.0.0:1", "--api", "serve"]),
            ["herald", "serve", "--listen", "0.0.0.0:1", "--api"]
        );
        assert_eq!(
            hoist(&["herald", "--data-dir=/x", "user", "create", "alice"]),
            ["herald", "user", "create", "--data-dir=/x", "alice"]
        );
        assert_eq!(
            hoist(&["herald", "--version"]),
            ["herald", "--version"],
            "clap's own flags stay"
        );
        assert_eq!(
            hoist(&["herald", "--listen", "x"]),
            ["herald", "--listen", "x"],
            "no command: nothing moves"
        );
    }

    /// Every argument of every command says what it is.
    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && !arg.is_hide_set() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "herald", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
