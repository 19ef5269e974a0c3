//! The `herald` command line. Everything it does lives in the library.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::Config;
use herald::{auth, Application};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Webhooks for Docker/OCI registries: registry notifications in, namespace webhooks out",
    long_about = "Herald receives the notifications of a Docker/OCI registry (CNCF distribution) at \
                  /v2/webhooks/events and sends each push and delete to the enabled webhooks of \
                  the repository's namespace, recording every delivery.\n\n\
                  Start with `herald serve`, then `herald registry-config` for the registry side."
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server and the delivery workers.
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the registry's `notifications` configuration (YAML) for this Herald, or with
    /// `--source NAME` the configuration for that source's registry (zot, Harbor, GitLab,
    /// distribution).
    RegistryConfig {
        #[arg(long)]
        source: Option<String>,
    },
    /// Print the effective configuration (flags > environment > file > defaults), secrets masked.
    Config,
    /// Print a shell completion script: `herald completions bash > /etc/bash_completion.d/herald`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
    Create {
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user and print it (it is shown only this once).
    Create {
        user: String,
        #[arg(long, default_value = "")]
        label: String,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("herald=info,tower_http=warn"));
    // Logs go to stderr: stdout is kept for what commands print (a token, a config).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// Applies `--config FILE` as `HERALD_*` variables not already set. This runs before any
/// thread exists, because changing the environment is only sound then.
fn apply_config_file(args: &[std::ffi::OsString]) -> Result<Vec<(String, String)>, String> {
    use clap::CommandFactory;
    let Some(path) = herald::config::config_path(args) else {
        return Ok(Vec::new());
    };
    let known = herald::config::known_env_vars(&Cli::command());
    let entries = herald::config::read_config_file(&path, &known)?;
    let mut applied = Vec::new();
    for (env, key, value) in entries {
        if std::env::var_os(&env).is_none() {
            std::env::set_var(&env, &value);
            applied.push((env, key));
        }
    }
    Ok(applied)
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The server starts this binary again as its template sandbox: no config, no threads.
    if args
        .get(1)
        .is_some_and(|a| a == herald::hooks::templates::SANDBOX_ARG)
    {
        return herald::hooks::templates::sandbox_main();
    }
    let from_file = match apply_config_file(&args) {
        Ok(applied) => applied,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Name the file's key when the bad value came from the file.
            if let Some(arg) = e.get(clap::error::ContextKind::InvalidArg) {
                use clap::CommandFactory;
                let cmd = Cli::command();
                let arg = arg.to_string();
                let env = cmd
                    .get_arguments()
                    .find(|a| arg.starts_with(&format!("--{}", a.get_long().unwrap_or("\u{0}"))))
                    .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
                if let Some((_, key)) = from_file.iter().find(|(e, _)| Some(e) == env.as_ref()) {
                    eprintln!("herald: the configuration file's key '{key}' is invalid:");
                }
            }
            e.exit();
        }
    };
    init_tracing(&cli.config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Serve => {
            let app = Application::build(config).await?;
            app.run(shutdown_signal()).await
        }
        Command::Migrate => {
            herald::open_store(&config).await?;
            eprintln!("database {} is up to date", config.database_url_redacted());
            Ok(())
        }
        Command::User(UserCommand::Create { name, admin, email }) => {
            // The name is checked before the password is asked for.
            auth::validate_username(&name)?;
            let password = read_password()?;
            let store = herald::open_store(&config).await?;
            let gate = auth::PasswordGate::default();
            let user = auth::register_user(
                store.as_ref(),
                &gate,
                &name,
                password,
                email.as_deref(),
                admin,
            )
            .await?;
            eprintln!(
                "created {} '{}'",
                if user.admin { "admin" } else { "user" },
                user.username
            );
            Ok(())
        }
        Command::Token(TokenCommand::Create { user, label }) => {
            let store = herald::open_store(&config).await?;
            let (found, _) = store
                .user_credentials(&user)
                .await?
                .with_context(|| format!("there is no user '{user}'"))?;
            let token = auth::new_api_token();
            store
                .create_token(found.id, &label, &auth::token_hash(&token))
                .await?;
            println!("{token}");
            Ok(())
        }
        Command::Config => {
            for (key, value) in config.describe() {
                println!("{key} = {value}");
            }
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "herald", &mut std::io::stdout());
            Ok(())
        }
        Command::RegistryConfig { source: Some(name) } => {
            let store = herald::open_store(&config).await?;
            let Some((source, _)) = store.source_credential(&name).await? else {
                anyhow::bail!("there is no source '{name}'; create it with POST /api/v1/sources");
            };
            let url = config
                .events_url(config.listen)
                .replace("/v2/webhooks/events", &format!("/v2/sources/{name}/events"));
            print!(
                "{}",
                herald::registry::sources::config_snippet(&source, &url)
            );
            Ok(())
        }
        Command::RegistryConfig { source: None } => {
            let token = herald::registry_token(&config)?;
            print!(
                "{}",
                registry_yaml(&config.events_url(config.listen), token.expose())
            );
            Ok(())
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn registry_yaml(url: &str, token: &str) -> String {
    format!(
        "# Paste into the registry's config.yml (distribution 2.x and 3.x).\n\
         notifications:\n\
         \x20 endpoints:\n\
         \x20   - name: herald\n\
         \x20     url: {url}\n\
         \x20     headers:\n\
         \x20       Authorization: [Bearer {token}]\n\
         \x20     timeout: 5s\n\
         \x20     threshold: 5\n\
         \x20     backoff: 2s\n"
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
