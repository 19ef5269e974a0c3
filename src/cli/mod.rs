//! The command definitions. The server's ~35 settings live on `serve` (and `config`, which
//! shows them); every other command takes only what it uses, so its `--help` stays short.
//! For compatibility a setting may still come before the command
//! (`herald --listen 0.0.0.0:8080 serve`): [`hoist_settings`] moves it after the command's
//! name before clap sees it.

pub mod manage;
pub mod output;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use herald::config::Config;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
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
    /// Manage users: create, list, passwd, disable, enable.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage sources (other registries feeding Herald): create, list, delete.
    #[command(subcommand)]
    Source(SourceCommand),
    /// List webhooks and enable or disable them.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Look at a webhook's deliveries and retrigger one.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Print the registry's `notifications` configuration (YAML) for this Herald.
    RegistryConfig(RegistryArgs),
    /// Print every effective setting and where it comes from (flag, env, file, default,
    /// generated), secrets masked. Takes the same settings as `serve`.
    Config(Box<Config>),
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
}

impl StoreArgs {
    /// A configuration with these settings and every other one at its default.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::defaults()?;
        config.config = self.config.clone();
        config.data_dir = self.data_dir.clone();
        config.database_url = self.database_url.clone();
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

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
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
    /// Set a user's password; the new password is read from the first line of standard input.
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
    /// --username, its password) is read from the first line of standard input.
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
    /// Delete a source: its registry's events are refused from then on.
    Delete {
        /// The source's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
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
    /// Enable a webhook (recorded in the activity log as done by `cli`).
    Enable {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        /// The webhook's id (see `webhook list`).
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a webhook: it gets no new deliveries (recorded in the activity log).
    Disable {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        /// The webhook's id (see `webhook list`).
        id: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List a webhook's deliveries, newest first.
    List {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        /// The webhook's id (see `webhook list`).
        webhook_id: i64,
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
        /// The webhook's id.
        webhook_id: i64,
        /// The delivery's id (see `deliveries list`).
        delivery_id: i64,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Send a delivery again now, from this process, with the webhook's current settings
    /// (as the API's retrigger does), and print the attempt's result.
    ///
    /// It works whether or not `herald serve` runs (elsewhere or here): the attempt is a
    /// manual one, which leaves a worker's claim alone. It is sent with this command's
    /// delivery settings, so give it the server's: the same --config file or environment
    /// (--delivery-allow-networks, timeouts, --delivery-ca-bundle, HERALD_SECRET_KEY).
    Retrigger {
        /// The namespace; `_global` for repositories without a `/`.
        namespace: String,
        /// The webhook's id.
        webhook_id: i64,
        /// The delivery's id (see `deliveries list`).
        delivery_id: i64,
        #[command(flatten)]
        format: Format,
        #[command(flatten)]
        config: Box<Config>,
    },
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

    #[test]
    fn the_command_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
