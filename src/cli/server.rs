//! The server's own commands: serve, migrate, registry-config, config, completions.

use clap::parser::ValueSource;
use herald::config::Config;

use super::output::emit;
use super::{RegistryArgs, StoreArgs};

pub async fn migrate(args: &StoreArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    herald::open_store(&config).await?;
    // What the first `serve` would create (unless configured in the environment), so that
    // `registry-config` works next.
    if std::env::var_os("HERALD_SECRET_KEY").is_none() {
        herald::secrets::Cipher::load_or_create(&config.data_dir, None)?;
    }
    if std::env::var_os("HERALD_REGISTRY_TOKEN").is_none() {
        herald::registry_token(&config)?;
    }
    eprintln!(
        "database {} is up to date; data directory {}",
        config.database_url_redacted(),
        herald::show_path(&config.data_dir)
    );
    Ok(())
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::Cli::command(), "herald", &mut script);
    emit(script)
}

pub async fn registry_config(args: &RegistryArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    if let Some(name) = &args.source {
        let store_args = StoreArgs {
            config: args.config.clone(),
            data_dir: args.data_dir.clone(),
            database_url: args.database_url.clone(),
            secret_key: std::env::var("HERALD_SECRET_KEY").ok(),
        };
        let ctx = super::context::context(&store_args).await?;
        let source = herald::app::sources::get(&ctx, &super::context::operator(), name).await?;
        let url = config
            .events_url(config.listen)
            .replace("/v2/webhooks/events", &format!("/v2/sources/{name}/events"));
        return emit(herald::registry::sources::config_snippet(&source, &url));
    }
    let token = herald::existing_registry_token(&config)?;
    emit(registry_yaml(
        &config.events_url(config.listen),
        token.expose(),
    ))
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

/// `key = value   # source` for every setting, the sources from clap's matches: a flag,
/// an environment variable, the --config file (applied as environment variables), the
/// default, or a file Herald generated in the data directory.
pub fn print_config(
    config: &Config,
    matches: Option<&clap::ArgMatches>,
    from_file: &[(String, String)],
) -> anyhow::Result<()> {
    let settings = super::settings_command();
    let lines: Vec<(String, String)> = config
        .describe()
        .into_iter()
        .map(|(key, value)| {
            let arg = settings.get_arguments().find(|a| a.get_id() == key);
            let env = arg
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned());
            let long = arg.and_then(|a| a.get_long()).unwrap_or(key);
            let source = match matches.and_then(|m| m.value_source(key)) {
                Some(ValueSource::CommandLine) => format!("flag --{long}"),
                Some(ValueSource::EnvVariable) => {
                    match from_file.iter().find(|(e, _)| Some(e) == env.as_ref()) {
                        Some((_, file_key)) => format!("file, key {file_key}"),
                        None => format!("env {}", env.unwrap_or_default()),
                    }
                }
                Some(ValueSource::DefaultValue) => "default".into(),
                _ => match key {
                    "registry_token" | "secret_key" => {
                        let file = if key == "secret_key" {
                            "secret.key"
                        } else {
                            "registry-token"
                        };
                        if config.data_dir.join(file).is_file() {
                            format!("generated, {file} in the data directory")
                        } else {
                            "not set".into()
                        }
                    }
                    "delivery_lease" => "default: 2 x delivery timeout + 30s".into(),
                    "database_url" => "default: the data directory's herald.db".into(),
                    "public_url" => "default: http://<listen>".into(),
                    _ => "default".into(),
                },
            };
            (format!("{key} = {value}"), source)
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .filter(|w| *w <= 60)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (line, source) in lines {
        let pad = width.saturating_sub(line.chars().count());
        out.push_str(&format!("{line}{}  # {source}\n", " ".repeat(pad)));
    }
    emit(out)
}
