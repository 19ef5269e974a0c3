//! What each command does. The commands that manage a Herald (users, tokens, webhooks,
//! deliveries) open its existing database and never create one; changes are recorded in
//! the activity log as the API records them, with the actor `cli:<OS user>`.

use std::io::BufRead;

use anyhow::Context;
use clap::parser::ValueSource;
use herald::config::Config;
use herald::domain::names::NamespaceName;
use herald::store::{Audit, DeliveryDetail, Store, WebhookPatch};
use herald::{auth, Application};

use super::output::{cell, emit, emit_json, opt_time, table, time};
use super::{
    Command, DeliveriesCommand, RegistryArgs, SourceCommand, StoreArgs, TokenCommand, UserCommand,
    WebhookCommand,
};

/// Who the activity log says made a change from the command line.
fn actor() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_string(),
    }
}

async fn store_of(args: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    herald::open_existing_store(&args.to_config()?).await
}

fn namespace(name: &str) -> anyhow::Result<NamespaceName> {
    Ok(NamespaceName::parse(name)?)
}

/// Runs a command; `config_matches` are those of `herald config`, to tell where each
/// setting came from, and `from_file` the variables the --config file set.
pub async fn run(
    command: Command,
    config_matches: Option<&clap::ArgMatches>,
    from_file: &[(String, String)],
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match command {
        Command::Serve(config) => {
            let app = Application::build(*config).await?;
            app.run(shutdown).await
        }
        Command::Migrate(args) => {
            let config = args.to_config()?;
            herald::open_store(&config).await?;
            // What the first `serve` would create (unless configured in the environment),
            // so that `registry-config` works next.
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
        Command::User(cmd) => user(cmd).await,
        Command::Token(cmd) => token(cmd).await,
        Command::Source(cmd) => source(cmd).await,
        Command::Webhook(cmd) => webhook(cmd).await,
        Command::Deliveries(cmd) => deliveries(cmd).await,
        Command::Config(config) => print_config(&config, config_matches, from_file),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut super::Cli::command(), "herald", &mut script);
            emit(script)
        }
        Command::RegistryConfig(args) => registry_config(&args).await,
    }
}

fn read_password() -> anyhow::Result<String> {
    read_line("the password")
}

/// The first line of standard input, without its line ending.
fn read_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading {what} from standard input"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn source(cmd: SourceCommand) -> anyhow::Result<()> {
    use herald::app::sources::{self, SourceInput};
    match cmd {
        SourceCommand::Create {
            name,
            kind,
            username,
            store,
        } => {
            // The name and kind are checked before the secret is asked for.
            sources::check_name_and_kind(&name, &kind)?;
            let store = store_of(&store).await?;
            let (token, password) = match username {
                Some(_) => (None, Some(read_password()?)),
                None => (Some(read_line("the token")?), None),
            };
            let input = SourceInput {
                name,
                kind,
                token,
                username,
                password,
            };
            let by = actor();
            let gate = auth::PasswordGate::default();
            let source = sources::create_as(store.as_ref(), &gate, &by, input).await?;
            tracing::info!(source = %source.name, kind = source.kind.as_str(), by = %by, "source created");
            eprintln!(
                "created source '{}' ({}): its registry posts to /v2/sources/{}/events \
                 (see `herald registry-config --source {}`)",
                source.name,
                source.kind.as_str(),
                source.name,
                source.name
            );
            Ok(())
        }
        SourceCommand::List { format, store } => {
            let list = store_of(&store).await?.list_sources().await?;
            if format.json {
                return emit_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.kind.as_str().into(),
                        s.auth.into(),
                        time(s.created_at),
                        s.username.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            emit(table(
                &["NAME", "KIND", "AUTH", "CREATED", "USERNAME"],
                &rows,
            ))
        }
        SourceCommand::Delete { name, store } => {
            let store = store_of(&store).await?;
            let by = actor();
            sources::delete_as(store.as_ref(), &by, &name).await?;
            tracing::info!(source = %name, by = %by, "source deleted");
            eprintln!("deleted source '{name}'");
            Ok(())
        }
    }
}

async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            name,
            admin,
            email,
            store,
        } => {
            // The name is checked before the password is asked for.
            auth::validate_username(&name)?;
            let store = store_of(&store).await?;
            let password = read_password()?;
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
            tracing::info!(user = %user.username, admin = user.admin, by = %actor(), "user created");
            eprintln!(
                "created {} '{}'",
                if user.admin { "admin" } else { "user" },
                user.username
            );
            Ok(())
        }
        UserCommand::List { format, store } => {
            let users = store_of(&store).await?.list_users().await?;
            if format.json {
                return emit_json(&users);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.username.clone(),
                        if u.admin { "yes" } else { "no" }.into(),
                        if u.disabled { "yes" } else { "no" }.into(),
                        time(u.created_at),
                        u.email.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            emit(table(
                &["USERNAME", "ADMIN", "DISABLED", "CREATED", "EMAIL"],
                &rows,
            ))
        }
        UserCommand::Passwd { name, store } => {
            let store = store_of(&store).await?;
            store
                .user_credentials(&name)
                .await?
                .with_context(|| format!("there is no user '{name}'"))?;
            let password = read_password()?;
            auth::validate_password(&password)?;
            let hash = auth::PasswordGate::default().hash(password).await?;
            store.set_password(&name, &hash).await?;
            tracing::info!(user = %name, by = %actor(), "password changed");
            eprintln!("changed the password of '{name}'");
            Ok(())
        }
        UserCommand::Disable { name, store } => set_disabled(&store, &name, true).await,
        UserCommand::Enable { name, store } => set_disabled(&store, &name, false).await,
    }
}

async fn set_disabled(store: &StoreArgs, name: &str, disabled: bool) -> anyhow::Result<()> {
    let user = store_of(store)
        .await?
        .update_user(name, None, Some(disabled))
        .await?;
    tracing::info!(user = %user.username, admin = user.admin, disabled = user.disabled, by = %actor(), "user updated");
    eprintln!(
        "{} '{}'",
        if disabled { "disabled" } else { "enabled" },
        user.username
    );
    Ok(())
}

async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { user, label, store } => {
            let store = store_of(&store).await?;
            let (found, _) = store
                .user_credentials(&user)
                .await?
                .with_context(|| format!("there is no user '{user}'"))?;
            let token = auth::new_api_token();
            let stored = store
                .create_token(found.id, &label, &auth::token_hash(&token))
                .await?;
            tracing::info!(user = %found.username, token_id = stored.id, by = %actor(), "API token created");
            emit(format!("{token}\n"))
        }
        TokenCommand::List {
            user,
            format,
            store,
        } => {
            let store = store_of(&store).await?;
            let (found, _) = store
                .user_credentials(&user)
                .await?
                .with_context(|| format!("there is no user '{user}'"))?;
            let tokens = store.list_tokens(found.id).await?;
            if format.json {
                return emit_json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        time(t.created_at),
                        opt_time(t.last_used_at),
                        t.label.clone(),
                    ]
                })
                .collect();
            emit(table(&["ID", "CREATED", "LAST USED", "LABEL"], &rows))
        }
        TokenCommand::Revoke { id, store } => {
            let store = store_of(&store).await?;
            // Tokens are listed per user: find the one holding this id.
            for user in store.list_users().await? {
                let tokens = store.list_tokens(user.id).await?;
                if let Some(t) = tokens.iter().find(|t| t.id == id) {
                    store.revoke_token(user.id, id).await?;
                    tracing::info!(user = %user.username, token_id = id, by = %actor(), "API token revoked");
                    eprintln!("revoked token {id} ('{}') of '{}'", t.label, user.username);
                    return Ok(());
                }
            }
            anyhow::bail!("there is no unrevoked token {id}")
        }
    }
}

async fn webhook(cmd: WebhookCommand) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::List {
            namespace: ns,
            format,
            store: store_args,
        } => {
            let ns = namespace(&ns)?;
            let store = store_of(&store_args).await?;
            store.get_namespace(&ns).await?;
            let hooks = store.list_webhooks(&ns).await?;
            if format.json {
                // The API's own view of a webhook, so scripts read one shape everywhere.
                let cipher = herald::existing_cipher(&store_args.to_config()?)?;
                let items = hooks
                    .into_iter()
                    .map(|w| herald::api::WebhookView::for_operator(w, &cipher))
                    .collect::<Result<Vec<_>, _>>()?;
                return emit_json(&serde_json::json!({ "items": items }));
            }
            let rows: Vec<Vec<String>> = hooks
                .iter()
                .map(|w| {
                    vec![
                        w.id.to_string(),
                        w.name.as_str().to_string(),
                        if w.enabled { "yes" } else { "no" }.into(),
                        opt_time(w.failing_since),
                        w.url.as_str().to_string(),
                    ]
                })
                .collect();
            emit(table(
                &["ID", "NAME", "ENABLED", "FAILING SINCE", "URL"],
                &rows,
            ))
        }
        WebhookCommand::Enable {
            namespace: ns,
            id,
            store,
        } => set_enabled(&store, &ns, id, true).await,
        WebhookCommand::Disable {
            namespace: ns,
            id,
            store,
        } => set_enabled(&store, &ns, id, false).await,
    }
}

async fn set_enabled(store: &StoreArgs, ns: &str, id: i64, enabled: bool) -> anyhow::Result<()> {
    let ns = namespace(ns)?;
    let store = store_of(store).await?;
    let patch = WebhookPatch {
        enabled: Some(enabled),
        ..WebhookPatch::default()
    };
    let by = actor();
    let audit = herald::hooks::input::audit_for_patch(&by, &patch);
    let hook = store.update_webhook(&ns, id, patch, &audit).await?;
    tracing::info!(namespace = %ns, webhook = id, enabled = hook.enabled, by = %by, "webhook updated");
    eprintln!(
        "{} webhook {id} ('{}') of {ns}",
        if enabled { "enabled" } else { "disabled" },
        hook.name.as_str()
    );
    Ok(())
}

async fn deliveries(cmd: DeliveriesCommand) -> anyhow::Result<()> {
    match cmd {
        DeliveriesCommand::List {
            namespace: ns,
            webhook_id,
            limit,
            format,
            store,
        } => {
            let ns = namespace(&ns)?;
            let store = store_of(&store).await?;
            // Checks that the webhook is in that namespace.
            store.get_webhook(&ns, webhook_id).await?;
            let page = store.list_deliveries(webhook_id, limit, None).await?;
            if format.json {
                return emit_json(&page);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        d.state.as_str().to_string(),
                        d.attempt_count.to_string(),
                        d.last_status.map_or_else(|| "-".into(), |s| s.to_string()),
                        opt_time(d.next_attempt_at),
                        time(d.created_at),
                        event_text(&d.event),
                        d.last_error
                            .as_deref()
                            .map_or_else(String::new, |e| cell(e, 80)),
                    ]
                })
                .collect();
            emit(table(
                &[
                    "ID",
                    "STATE",
                    "ATTEMPTS",
                    "STATUS",
                    "NEXT ATTEMPT",
                    "CREATED",
                    "EVENT",
                    "LAST ERROR",
                ],
                &rows,
            ))
        }
        DeliveriesCommand::Show {
            namespace: ns,
            webhook_id,
            delivery_id,
            format,
            store,
        } => {
            let ns = namespace(&ns)?;
            let store = store_of(&store).await?;
            let hook = store.get_webhook(&ns, webhook_id).await?;
            let detail = store.get_delivery(hook.id, delivery_id).await?;
            if format.json {
                return emit_json(&detail);
            }
            emit(delivery_text(&ns, hook.name.as_str(), &detail))
        }
        DeliveriesCommand::Retrigger {
            namespace: ns,
            webhook_id,
            delivery_id,
            format,
            config,
        } => {
            let ns = namespace(&ns)?;
            let store = herald::open_existing_store(&config).await?;
            let hook = store.get_webhook(&ns, webhook_id).await?;
            // Checks the delivery belongs to this webhook before sending anything.
            store.get_delivery(hook.id, delivery_id).await?;
            let cipher = herald::existing_cipher(&config)?;
            let metrics = std::sync::Arc::new(herald::metrics::Metrics::default());
            let (dispatcher, _templates) =
                herald::build_dispatcher(&config, store.clone(), cipher, metrics).await?;
            let by = actor();
            let audit = Audit::new(&by, "webhook.delivery.retrigger")
                .detail(format!("delivery {delivery_id}"));
            store.record_activity(&ns, Some(hook.id), &audit).await?;
            dispatcher.retrigger(delivery_id).await?;
            tracing::info!(delivery = delivery_id, webhook = hook.id, by = %by, "delivery retriggered");
            let detail = store.get_delivery(hook.id, delivery_id).await?;
            if format.json {
                return emit_json(&detail);
            }
            emit(delivery_text(&ns, hook.name.as_str(), &detail))
        }
    }
}

fn event_text(e: &herald::store::EventRef) -> String {
    let mut out = e.action.clone().unwrap_or_else(|| "-".into());
    if let Some(repo) = &e.repository {
        out.push(' ');
        out.push_str(repo);
        if let Some(tag) = &e.tag {
            out.push(':');
            out.push_str(tag);
        }
    }
    out
}

/// A delivery for people: its state, the request sent and each attempt, newest last.
fn delivery_text(ns: &NamespaceName, webhook: &str, d: &DeliveryDetail) -> String {
    use std::fmt::Write;
    let s = &d.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "delivery {} of webhook {} ({ns}/{webhook})",
        s.id, s.webhook_id
    );
    let _ = writeln!(out, "state:        {}", s.state.as_str());
    let _ = writeln!(out, "attempts:     {}", s.attempt_count);
    let _ = writeln!(out, "next attempt: {}", opt_time(s.next_attempt_at));
    let _ = writeln!(out, "created:      {}", time(s.created_at));
    let _ = writeln!(out, "event:        {}", event_text(&s.event));
    if let Some(id) = &s.event.id {
        let _ = writeln!(out, "event id:     {id}");
    }
    if let Some(digest) = &s.event.digest {
        let _ = writeln!(out, "digest:       {digest}");
    }
    match &d.request {
        Some(r) => {
            let _ = writeln!(out, "\nrequest: {} {}", r.method, r.url);
            for (name, value) in &r.headers {
                let _ = writeln!(out, "  {name}: {value}");
            }
            let _ = writeln!(out, "\n{}", r.body);
        }
        None => {
            let _ = writeln!(out, "\nrequest: not sent yet");
        }
    }
    for a in &d.attempts {
        let status = a
            .status
            .map_or_else(|| "no answer".into(), |s| s.to_string());
        let _ = writeln!(
            out,
            "\nattempt {} at {}: {status}, {} ms{}",
            a.id,
            time(a.started_at),
            a.duration_ms,
            if a.manual { " (retriggered)" } else { "" }
        );
        if let Some(e) = &a.error {
            let _ = writeln!(out, "  error: {e}");
        }
        for (name, value) in &a.response_headers {
            let _ = writeln!(out, "  {name}: {value}");
        }
        if !a.response_body.is_empty() {
            let _ = writeln!(
                out,
                "\n{}{}",
                a.response_body,
                if a.response_truncated {
                    "\n[cut at 64 KiB]"
                } else {
                    ""
                }
            );
        }
    }
    out
}

async fn registry_config(args: &RegistryArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    if let Some(name) = &args.source {
        let store = herald::open_existing_store(&config).await?;
        let Some((source, _)) = store.source_credential(name).await? else {
            anyhow::bail!("there is no source '{name}'; create it with POST /api/v1/sources");
        };
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
fn print_config(
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
