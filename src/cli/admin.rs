//! `herald team ...`, `herald source ...`, `herald events`, `herald activity`.

use herald::app;
use herald::app::sources::SourceInput;

use super::context::{context, operator, read_secret, NotSentYet};
use super::output::{cell, emit, emit_json, table, time};
use super::{ActivityArgs, EventsArgs, MemberCommand, SourceCommand, TeamCommand};

pub async fn team(cmd: TeamCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        TeamCommand::List { format, store } => {
            let teams = app::teams::list(&context(&store).await?, &actor).await?;
            if format.json {
                return emit_json(&teams);
            }
            let rows: Vec<Vec<String>> = teams
                .iter()
                .filter(|t| !t.personal)
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.members.len().to_string(),
                        time(t.created_at),
                        cell(&t.description, 60),
                    ]
                })
                .collect();
            emit(table(&["NAME", "MEMBERS", "CREATED", "DESCRIPTION"], &rows))
        }
        TeamCommand::Show {
            team,
            format,
            store,
        } => {
            let team = app::teams::show(&context(&store).await?, &actor, &team).await?;
            if format.json {
                return emit_json(&team);
            }
            let rows: Vec<Vec<String>> = team
                .members
                .iter()
                .map(|m| vec![m.username.clone(), m.role.as_str().to_string()])
                .collect();
            emit(format!(
                "team {}{}\n\n{}",
                team.name,
                if team.description.is_empty() {
                    String::new()
                } else {
                    format!(": {}", team.description)
                },
                table(&["MEMBER", "ROLE"], &rows)
            ))
        }
        TeamCommand::Create {
            name,
            owner,
            description,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let team = app::teams::create(&ctx, &actor, &name, &description, Some(&owner)).await?;
            if format.json {
                return emit_json(&team);
            }
            eprintln!("created team '{}', owned by '{owner}'", team.name);
            Ok(())
        }
        TeamCommand::Member(MemberCommand::Set {
            team,
            user,
            role,
            store,
        }) => {
            let ctx = context(&store).await?;
            let (role, added) = app::teams::set_member(&ctx, &actor, &team, &user, &role).await?;
            eprintln!(
                "{} '{user}' {} team '{team}' as {}",
                if added { "added" } else { "kept" },
                if added { "to" } else { "in" },
                role.as_str()
            );
            Ok(())
        }
        TeamCommand::Member(MemberCommand::Remove { team, user, store }) => {
            let ctx = context(&store).await?;
            app::teams::remove_member(&ctx, &actor, &team, &user).await?;
            eprintln!("removed '{user}' from team '{team}'");
            Ok(())
        }
    }
}

pub async fn source(cmd: SourceCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        SourceCommand::Create {
            name,
            kind,
            username,
            store,
        } => {
            // The name and kind are checked before the secret is asked for.
            app::sources::check_name_and_kind(&name, &kind)?;
            let ctx = context(&store).await?;
            let (token, password) = match username {
                Some(_) => (None, Some(read_secret("the password", true)?)),
                None => (Some(read_secret("the token", false)?), None),
            };
            let input = SourceInput {
                name,
                kind,
                token,
                username,
                password,
            };
            let source = app::sources::create(&ctx, &actor, input).await?;
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
            let list = app::sources::list(&context(&store).await?, &actor).await?;
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
                        s.created_at
                            .map(time)
                            .unwrap_or_else(|| "(built in)".into()),
                        s.username.clone().unwrap_or_default(),
                        s.registry_url.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            emit(table(
                &[
                    "NAME",
                    "KIND",
                    "AUTH",
                    "CREATED",
                    "USERNAME",
                    "READS REGISTRY",
                ],
                &rows,
            ))
        }
        SourceCommand::Show {
            name,
            format,
            store,
        } => {
            let source = app::sources::get(&context(&store).await?, &actor, &name).await?;
            if format.json {
                return emit_json(&source);
            }
            emit(format!(
                "source {} ({}), {} auth{}, created {}\n",
                source.name,
                source.kind.as_str(),
                source.auth,
                source
                    .username
                    .as_deref()
                    .map(|u| format!(" as '{u}'"))
                    .unwrap_or_default(),
                source
                    .created_at
                    .map(time)
                    .unwrap_or_else(|| "(built in)".into())
            ))?;
            match &source.registry_url {
                Some(url) => {
                    let mut line = format!(
                        "reads its registry at {url}{}",
                        source
                            .registry_username
                            .as_deref()
                            .map(|u| format!(" as '{u}'"))
                            .unwrap_or_default()
                    );
                    if let Some(s) = &source.registry_status {
                        line.push_str(&match &s.error {
                            None => format!("; read fine at {}", time(s.checked_at)),
                            Some(e) => format!("; could not at {}: {e}", time(s.checked_at)),
                        });
                    }
                    emit(format!("{line}\n"))?;
                    let ctx = context(&store).await?;
                    if let Ok(r) = app::sources::reconcile_status(&ctx, &actor, &name).await {
                        emit(reconcile_text(&r))?;
                    }
                    Ok(())
                }
                None => emit("reads no registry (herald source update NAME --registry-url URL)\n"),
            }
        }
        SourceCommand::Update {
            name,
            registry_url,
            registry_username,
            no_registry,
            nats_url,
            nats_subject,
            nats_stream,
            nats_consumer,
            no_nats,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let nats = app::sources::NatsInput {
                url: if no_nats {
                    Some(None)
                } else {
                    nats_url.map(Some)
                },
                subject: nats_subject,
                stream: nats_stream,
                consumer: nats_consumer,
            };
            let registry_given =
                no_registry || registry_url.is_some() || registry_username.is_some();
            if !nats.is_empty() {
                if registry_given {
                    anyhow::bail!(
                        "change the registry access and the NATS settings in two commands"
                    );
                }
                let source = app::sources::set_nats(&ctx, &actor, &name, nats).await?;
                if format.json {
                    return emit_json(&source);
                }
                match (&source.nats_url, &source.nats_subject, &source.nats_stream) {
                    (Some(url), Some(subject), Some(stream)) => eprintln!(
                        "source '{name}' reads its events from NATS at {url}, subject {subject} \
                         (stream {stream}, consumer {}); the running `herald serve` starts within seconds",
                        source.nats_consumer.as_deref().unwrap_or_default()
                    ),
                    _ => eprintln!("source '{name}' no longer reads its events from NATS"),
                }
                return Ok(());
            }
            let input = if no_registry {
                app::sources::RegistryAccessInput {
                    registry_url: Some(None),
                    registry_username: Some(None),
                    registry_password: Some(None),
                }
            } else {
                // A username comes with its password, asked for here.
                let password = match &registry_username {
                    Some(_) => Some(Some(read_secret("the registry password", false)?)),
                    None => None,
                };
                app::sources::RegistryAccessInput {
                    registry_url: registry_url.map(Some),
                    registry_username: registry_username.map(Some),
                    registry_password: password,
                }
            };
            let source = app::sources::update(&ctx, &actor, &name, input).await?;
            if format.json {
                return emit_json(&source);
            }
            match &source.registry_url {
                Some(url) => eprintln!(
                    "source '{name}' reads its registry at {url}{}; a reconcile learns it now",
                    source
                        .registry_username
                        .as_deref()
                        .map(|u| format!(" as '{u}'"))
                        .unwrap_or_default()
                ),
                None => eprintln!("source '{name}' no longer reads its registry"),
            }
            Ok(())
        }
        SourceCommand::Reconcile {
            name,
            wait,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let asked = app::sources::reconcile(&ctx, &actor, &name).await?;
            let since = asked.requested_at;
            eprintln!("asked the running `herald serve` to reconcile source '{name}'");
            let deadline = tokio::time::Instant::now() + wait;
            let done = loop {
                let now = app::sources::reconcile_status(&ctx, &actor, &name).await?;
                let finished = now.state == "idle"
                    && now
                        .finished_at
                        .is_some_and(|f| since.is_none_or(|s| f >= s));
                if wait.is_zero() || finished {
                    break now;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(NotSentYet(format!(
                        "the reconcile of '{name}' is asked for, but no running `herald serve` on                          this database finished it within {} ({}); it runs when one does",
                        humantime::format_duration(wait),
                        now.state
                    ))
                    .into());
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            };
            if format.json {
                return emit_json(&done);
            }
            emit(reconcile_text(&done))
        }
        SourceCommand::Delete { name, store } => {
            app::sources::delete(&context(&store).await?, &actor, &name).await?;
            eprintln!("deleted source '{name}'");
            Ok(())
        }
    }
}

/// A reconcile's state in a few lines.
fn reconcile_text(r: &herald::domain::registry::ReconcileStatus) -> String {
    let mut out = format!("reconcile of {}: {}", r.source, r.state);
    if let Some(at) = r.finished_at {
        out.push_str(&format!(", last finished {}", time(at)));
    }
    out.push('\n');
    out.push_str(&format!(
        "repositories {}, tags {}, made-up pushes {}, made-up deletes {}{}\n",
        r.repositories,
        r.tags,
        r.pushes,
        r.deletes,
        if r.learned {
            ""
        } else {
            " (the first run only learns the registry)"
        }
    ));
    if let Some(e) = &r.error {
        out.push_str(&format!("stopped: {e}\n"));
    }
    out
}

pub async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let ctx = context(&args.store).await?;
    let page = app::history::events(&ctx, &operator(), args.limit, None).await?;
    if args.format.json {
        return emit_json(&page);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|e| {
            let what = match (&e.repository, &e.tag, &e.digest) {
                (Some(r), Some(t), _) => format!("{r}:{t}"),
                (Some(r), None, Some(d)) => format!("{r}@{}", cell(d, 19)),
                (Some(r), _, _) => r.clone(),
                _ => "-".into(),
            };
            vec![
                e.id.to_string(),
                time(e.received_at),
                e.source.clone().unwrap_or_else(|| "default".into()),
                e.action.clone().unwrap_or_else(|| "-".into()),
                what,
                e.status.clone(),
                e.reason.as_deref().map(|r| cell(r, 60)).unwrap_or_default(),
            ]
        })
        .collect();
    emit(table(
        &[
            "ID", "RECEIVED", "SOURCE", "ACTION", "WHAT", "STATUS", "REASON",
        ],
        &rows,
    ))
}

pub async fn activity(args: ActivityArgs) -> anyhow::Result<()> {
    let ctx = context(&args.store).await?;
    let page = app::history::activities(
        &ctx,
        &operator(),
        args.namespace.as_deref(),
        args.limit,
        None,
    )
    .await?;
    if args.format.json {
        return emit_json(&page);
    }
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|a| {
            vec![
                time(a.created_at),
                a.actor.clone(),
                a.action.clone(),
                a.namespace.clone().unwrap_or_default(),
                a.webhook_name.clone().unwrap_or_default(),
                a.detail.as_deref().map(|d| cell(d, 60)).unwrap_or_default(),
            ]
        })
        .collect();
    emit(table(
        &["WHEN", "ACTOR", "ACTION", "NAMESPACE", "WEBHOOK", "DETAIL"],
        &rows,
    ))
}
