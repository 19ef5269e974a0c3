//! `herald user ...` and `herald token ...`.

use herald::app;

use super::context::{context, operator, read_secret};
use super::output::{emit, emit_json, opt_time, table, time};
use super::{TokenCommand, UserCommand};

pub async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        UserCommand::Create {
            name,
            admin,
            email,
            store,
        } => {
            // The name is checked before the password is asked for.
            herald::auth::validate_username(&name)?;
            let ctx = context(&store).await?;
            let password = read_secret("the new password", true)?;
            let new = app::users::NewUser {
                username: name,
                password,
                email,
                admin,
            };
            let user = app::users::create(&ctx, Some(&actor), new).await?;
            eprintln!(
                "created {} '{}'",
                if user.admin { "admin" } else { "user" },
                user.username
            );
            Ok(())
        }
        UserCommand::List { format, store } => {
            let users = app::users::list(&context(&store).await?, &actor).await?;
            if format.json {
                return emit_json(&users);
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.username.clone(),
                        yes_no(u.admin),
                        yes_no(u.disabled),
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
            let ctx = context(&store).await?;
            // The user must exist before the password is asked for.
            app::users::get(&ctx, &actor, &name).await?;
            let password = read_secret("the new password", true)?;
            app::users::reset_password(&ctx, &actor, &name, password).await?;
            eprintln!("changed the password of '{name}'");
            Ok(())
        }
        UserCommand::Disable { name, store } => flags(&store, &name, None, Some(true)).await,
        UserCommand::Enable { name, store } => flags(&store, &name, None, Some(false)).await,
        UserCommand::Promote { name, store } => flags(&store, &name, Some(true), None).await,
        UserCommand::Demote { name, store } => flags(&store, &name, Some(false), None).await,
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

async fn flags(
    store: &super::StoreArgs,
    name: &str,
    admin: Option<bool>,
    disabled: Option<bool>,
) -> anyhow::Result<()> {
    let ctx = context(store).await?;
    let user = app::users::set_flags(&ctx, &operator(), name, admin, disabled).await?;
    let what = match (admin, disabled) {
        (Some(true), _) => "is now an admin",
        (Some(false), _) => "is no longer an admin",
        (_, Some(true)) => "is now disabled",
        _ => "is enabled again",
    };
    eprintln!("user '{}' {what}", user.username);
    Ok(())
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        TokenCommand::Create { user, label, store } => {
            let ctx = context(&store).await?;
            let (_, secret) = app::tokens::create(&ctx, &actor, Some(&user), &label).await?;
            emit(format!("{secret}\n"))
        }
        TokenCommand::List {
            user,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let tokens = app::tokens::list(&ctx, &actor, Some(&user)).await?;
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
            let ctx = context(&store).await?;
            let (user, token) = app::tokens::revoke(&ctx, &actor, id).await?;
            eprintln!(
                "revoked token {id} ('{}') of '{}'",
                token.label, user.username
            );
            Ok(())
        }
    }
}
