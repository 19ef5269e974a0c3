//! Runs a command. The commands that manage a Herald open its existing database (they
//! never create one) and call the same use cases as the API and the UI, as the operator
//! (`cli:<OS user>` in the activity log).

use super::{accounts, admin, hooks, server, Command};
use herald::Application;

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
        Command::Migrate(args) => server::migrate(&args).await,
        Command::Namespace(cmd) => hooks::namespace(cmd).await,
        Command::Webhook(cmd) => hooks::webhook(*cmd).await,
        Command::Deliveries(cmd) => hooks::deliveries(cmd).await,
        Command::Team(cmd) => admin::team(cmd).await,
        Command::User(cmd) => accounts::user(cmd).await,
        Command::Token(cmd) => accounts::token(cmd).await,
        Command::Source(cmd) => admin::source(cmd).await,
        Command::Events(args) => admin::events(args).await,
        Command::Activity(args) => admin::activity(args).await,
        Command::Config(config) => server::print_config(&config, config_matches, from_file),
        Command::Completions { shell } => server::completions(shell),
        Command::Listen {
            listen,
            secret,
            public_key,
        } => {
            let keys = super::listen::Keys { secret, public_key };
            super::listen::listen(listen, keys, shutdown).await
        }
        Command::Key(super::KeyCommand::Generate) => {
            super::output::emit(format!("{}\n", herald::secrets::generate_key()))
        }
        Command::RegistryConfig(args) => server::registry_config(&args).await,
    }
}
