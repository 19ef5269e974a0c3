//! The `herald` command line. Everything it does lives in the library.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};

/// See Cargo.toml: why mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("herald=info,tower_http=warn"));
    // Logs go to stderr: stdout is kept for what commands print (a token, a config).
    // Colours only for a terminal, so files and log collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
    let Some(path) = herald::config::config_path(args) else {
        return Ok(Vec::new());
    };
    let known = herald::config::known_env_vars(&cli::settings_command());
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
    let args = cli::hoist_settings(&args);
    let parsed = Cli::command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Name the file's key when the bad value came from the file.
            if let Some(arg) = e.get(clap::error::ContextKind::InvalidArg) {
                let settings = cli::settings_command();
                let arg = arg.to_string();
                let env = settings
                    .get_arguments()
                    .find(|a| arg.starts_with(&format!("--{}", a.get_long().unwrap_or("\u{0}"))))
                    .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
                if let Some((_, key)) = from_file.iter().find(|(e, _)| Some(e) == env.as_ref()) {
                    eprintln!("herald: the configuration file's key '{key}' is invalid:");
                } else if let Some(env) = env.filter(|e| std::env::var_os(e).is_some()) {
                    eprintln!("herald: the environment variable {env} is invalid:");
                }
            }
            e.exit();
        }
    };
    let log_format = match &cli.command {
        Command::Serve(config) | Command::Config(config) => config.log_format.clone(),
        _ => std::env::var("HERALD_LOG_FORMAT").unwrap_or_default(),
    };
    init_tracing(&log_format);
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
    let config_matches = matches.subcommand_matches("config");
    match runtime.block_on(cli::manage::run(
        cli.command,
        config_matches,
        &from_file,
        shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`herald ... | head -1`): stop quietly, as a killed pipe would.
        Err(e) if e.is::<cli::output::ClosedPipe>() => ExitCode::from(141),
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::from(cli::context::exit_code(&e))
        }
    }
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
