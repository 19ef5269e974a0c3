//! `herald namespace ...`, `herald webhook ...` and `herald deliveries ...`.

use std::time::Duration;

use anyhow::Context as _;
use herald::app::access::WebhookRef::NameOrId;
use herald::app::deliveries::Sent;
use herald::app::webhook_view::WebhookView;
use herald::app::{self, Actor};
use herald::domain::delivery::DeliveryDetail;
use herald::domain::model::Webhook;
use herald::domain::names::NamespaceName;
use herald::hooks::input::WebhookInput;

use super::context::{context, operator, read_line, read_secret, NotSentYet};
use super::output::{cell, emit, emit_json, opt_time, table, time};
use super::{
    DeliveriesCommand, HeaderCommand, NamespaceCommand, WaitArgs, WebhookCommand, WebhookFields,
};

pub async fn namespace(cmd: NamespaceCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        NamespaceCommand::List { format, store } => {
            let list = app::namespaces::list(&context(&store).await?, &actor).await?;
            if format.json {
                return emit_json(&serde_json::json!({ "items": list }));
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    vec![
                        n.name.to_string(),
                        n.team.clone().unwrap_or_else(|| "(admins)".into()),
                        n.webhook_count.to_string(),
                        time(n.created_at),
                        cell(&n.description, 60),
                    ]
                })
                .collect();
            emit(table(
                &["NAME", "TEAM", "WEBHOOKS", "CREATED", "DESCRIPTION"],
                &rows,
            ))
        }
        NamespaceCommand::Show {
            namespace,
            format,
            store,
        } => {
            let ns = app::namespaces::show(&context(&store).await?, &actor, &namespace).await?;
            if format.json {
                return emit_json(&ns);
            }
            emit(format!(
                "namespace {}, team {}, {} webhooks, created {}\n{}",
                ns.name,
                ns.team.as_deref().unwrap_or("(admins)"),
                ns.webhook_count,
                time(ns.created_at),
                if ns.description.is_empty() {
                    String::new()
                } else {
                    format!("{}\n", ns.description)
                }
            ))
        }
        NamespaceCommand::Create {
            name,
            team,
            description,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let ns =
                app::namespaces::create(&ctx, &actor, Some(&name), team.as_deref(), &description)
                    .await?;
            if format.json {
                return emit_json(&ns);
            }
            eprintln!("created namespace '{}'", ns.name);
            Ok(())
        }
        NamespaceCommand::Delete { namespace, store } => {
            let name = app::namespaces::delete(&context(&store).await?, &actor, &namespace).await?;
            eprintln!("deleted namespace '{name}' with its webhooks and their deliveries");
            Ok(())
        }
    }
}

/// The API's input made from the flags; `name` for create or rename.
fn input(name: Option<String>, f: WebhookFields, creating: bool) -> anyhow::Result<WebhookInput> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let json_or_file = |text: String| match text.strip_prefix('@') {
        Some(path) => read(std::path::Path::new(path)),
        None => Ok(text),
    };
    let filters = match f.filters {
        None => None,
        Some(text) => Some(
            serde_json::from_str(&json_or_file(text)?)
                .context("--filters is not the API's filters JSON")?,
        ),
    };
    let format_options = match f.format_options {
        None => None,
        Some(text) => Some(serde_json::from_str(&json_or_file(text)?).context(
            "--format-options is not the API's format options JSON \
             (event_type, ref, variables, registry)",
        )?),
    };
    let headers = if f.headers.is_empty() {
        None
    } else {
        anyhow::ensure!(
            creating,
            "--header is for `webhook create`; use `webhook header set` afterwards"
        );
        let mut map = std::collections::BTreeMap::new();
        for h in &f.headers {
            let (name, value) = h
                .split_once(':')
                .with_context(|| format!("--header '{h}' is not 'Name: value'"))?;
            map.insert(name.trim().to_string(), value.trim().to_string());
        }
        Some(map)
    };
    let (username, password) = match (f.username, f.no_basic_auth) {
        (Some(u), _) => {
            let password = read_secret(&format!("the password of '{u}' at the receiver"), false)?;
            (Some(Some(u)), Some(Some(password)))
        }
        (None, true) => (Some(None), Some(None)),
        (None, false) => (None, None),
    };
    // After the password: piped in, the password is the first line and the token the next.
    let token = match (f.token, f.no_token) {
        (true, _) => Some(Some(read_secret("the deploy tool's token", false)?)),
        (false, true) => Some(None),
        (false, false) => None,
    };
    let rate_limit = match f.rate_limit.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(n) => Some(Some(n.parse::<f64>().with_context(|| {
            format!("--rate-limit '{n}' is neither a number nor 'none'")
        })?)),
    };
    let client = match (f.client_cert, f.client_key, f.no_client_cert) {
        (Some(c), Some(k), _) => (Some(Some(read(&c)?)), Some(Some(read(&k)?))),
        (_, _, true) => (Some(None), None),
        _ => (None, None),
    };
    Ok(WebhookInput {
        name,
        url: f.url,
        request_method: f.request_method,
        content_type: f.content_type,
        username,
        password,
        headers,
        enabled: None,
        filters,
        format: f.format,
        template: f.template_file.map(|p| read(&p).map(Some)).transpose()?,
        tls_verify: f.tls_verify,
        rate_limit,
        ordering: f.ordering,
        signature: f.signature,
        client_certificate: client.0,
        client_key: client.1,
        token,
        format_options,
    })
}

/// A webhook for people: one line of what matters, then its warnings.
fn webhook_text(v: &WebhookView) -> String {
    let mut out = format!(
        "webhook {} ({}) of {}: {} {} [{}]\n",
        v.id,
        v.name.as_str(),
        v.namespace,
        v.request_method.as_str(),
        v.url.as_str(),
        if v.enabled { "enabled" } else { "disabled" }
    );
    out.push_str(&format!(
        "format {}, signature {}, circuit {}\n",
        v.format.as_str(),
        v.signature.as_str(),
        v.circuit.as_str()
    ));
    if v.has_token || !v.format_options.is_empty() {
        let options = v.format_options.to_stored().unwrap_or_else(|| "{}".into());
        let token = if v.has_token { "set" } else { "none" };
        out.push_str(&format!("token {token}, format options {options}\n"));
    }
    if let Some(key) = &v.signature_public_key {
        out.push_str(&format!("receivers verify v1a signatures with {key}\n"));
    }
    for w in &v.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// Shows a webhook as the operator sees it; `secret` is a signing secret shown this once.
fn show(
    ctx: &app::Context,
    hook: Webhook,
    secret: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut view = WebhookView::for_operator(hook, &ctx.cipher)?;
    view.signing_secret = secret;
    if json {
        return emit_json(&view);
    }
    let mut text = webhook_text(&view);
    if let Some(secret) = &view.signing_secret {
        text.push_str(&format!(
            "signing secret (shown only now; receivers verify with it): {secret}\n"
        ));
    }
    emit(text)
}

pub async fn webhook(cmd: WebhookCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        WebhookCommand::List {
            namespace,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let (_, hooks) = app::webhooks::list(&ctx, &actor, &namespace).await?;
            if format.json {
                // The API's own view of a webhook, so scripts read one shape everywhere.
                let items = hooks
                    .into_iter()
                    .map(|w| WebhookView::for_operator(w, &ctx.cipher))
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
        WebhookCommand::Show {
            namespace,
            webhook,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let (_, hook) = app::webhooks::load(
                &ctx,
                &actor,
                &namespace,
                NameOrId(&webhook),
                app::access::READ,
            )
            .await?;
            let warnings = app::webhook_view::ssrf_warnings(&ctx, &hook).await;
            let mut view = WebhookView::for_operator(hook, &ctx.cipher)?;
            view.warnings.extend(warnings);
            if format.json {
                return emit_json(&view);
            }
            emit(webhook_text(&view))
        }
        WebhookCommand::Create {
            namespace,
            name,
            fields,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let new = input(Some(name), fields, true)?.into_new(&ctx.cipher);
            let (_, hook) = app::webhooks::create(&ctx, &actor, &namespace, new).await?;
            let secret = app::webhooks::current_secret(&hook, &ctx.cipher)?;
            eprintln!(
                "created webhook {} ('{}') of {namespace}, disabled: `herald webhook enable {namespace} {}` once it is set up",
                hook.id,
                hook.name.as_str(),
                hook.name.as_str()
            );
            show(&ctx, hook, secret, format.json)
        }
        WebhookCommand::Update {
            namespace,
            webhook,
            name,
            fields,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let patch = input(name, fields, false)?.into_patch(&ctx.cipher);
            let (_, hook, secret) = app::webhooks::update_showing_secret(
                &ctx,
                &actor,
                &namespace,
                NameOrId(&webhook),
                patch,
            )
            .await?;
            eprintln!("updated webhook {} ('{}')", hook.id, hook.name.as_str());
            show(&ctx, hook, secret, format.json)
        }
        WebhookCommand::Enable {
            namespace,
            webhook,
            store,
        } => set_enabled(&store, &actor, &namespace, &webhook, true).await,
        WebhookCommand::Disable {
            namespace,
            webhook,
            store,
        } => set_enabled(&store, &actor, &namespace, &webhook, false).await,
        WebhookCommand::Delete {
            namespace,
            webhook,
            store,
        } => {
            let ctx = context(&store).await?;
            let hook = app::webhooks::delete(&ctx, &actor, &namespace, NameOrId(&webhook)).await?;
            eprintln!(
                "deleted webhook {} ('{}') of {namespace} with its deliveries",
                hook.id,
                hook.name.as_str()
            );
            Ok(())
        }
        WebhookCommand::RotateSecret {
            namespace,
            webhook,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let (_, hook, secret) =
                app::webhooks::rotate_secret(&ctx, &actor, &namespace, NameOrId(&webhook)).await?;
            eprintln!("new signing key; the previous one keeps signing for 24 hours");
            show(&ctx, hook, secret, format.json)
        }
        WebhookCommand::Ping {
            namespace,
            webhook,
            wait,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let (access, hook, detail, sent) =
                app::webhooks::ping(&ctx, &actor, &namespace, NameOrId(&webhook)).await?;
            let detail = waited(&ctx, &actor, &namespace, &hook, detail, sent, &wait).await?;
            print_delivery(&access.namespace.name, &hook, &detail, format.json)
        }
        WebhookCommand::Recover {
            namespace,
            webhook,
            since,
            until,
            store,
        } => {
            let ctx = context(&store).await?;
            let (_, hook, n) =
                app::webhooks::recover(&ctx, &actor, &namespace, NameOrId(&webhook), since, until)
                    .await?;
            eprintln!(
                "queued {n} failed deliveries of webhook {} ('{}') again",
                hook.id,
                hook.name.as_str()
            );
            Ok(())
        }
        WebhookCommand::Header(HeaderCommand::Set {
            namespace,
            webhook,
            name,
            value,
            store,
        }) => {
            let ctx = context(&store).await?;
            let value = match value {
                Some(v) => v,
                None => read_line("the header's value")?,
            };
            let set = app::webhooks::set_header(
                &ctx,
                &actor,
                &namespace,
                NameOrId(&webhook),
                &name,
                &value,
            )
            .await?;
            eprintln!(
                "{} header {} of webhook {} ('{}')",
                if set.created { "added" } else { "replaced" },
                set.name.as_str(),
                set.webhook.id,
                set.webhook.name.as_str()
            );
            Ok(())
        }
        WebhookCommand::Header(HeaderCommand::Delete {
            namespace,
            webhook,
            name,
            store,
        }) => {
            let ctx = context(&store).await?;
            let hook =
                app::webhooks::delete_header(&ctx, &actor, &namespace, NameOrId(&webhook), &name)
                    .await?;
            eprintln!(
                "removed header {name} of webhook {} ('{}')",
                hook.id,
                hook.name.as_str()
            );
            Ok(())
        }
    }
}

async fn set_enabled(
    store: &super::StoreArgs,
    actor: &Actor,
    namespace: &str,
    webhook: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let ctx = context(store).await?;
    let (_, hook) =
        app::webhooks::set_enabled(&ctx, actor, namespace, NameOrId(webhook), enabled).await?;
    eprintln!(
        "{} webhook {} ('{}') of {namespace}",
        if enabled { "enabled" } else { "disabled" },
        hook.id,
        hook.name.as_str()
    );
    Ok(())
}

pub async fn deliveries(cmd: DeliveriesCommand) -> anyhow::Result<()> {
    let actor = operator();
    match cmd {
        DeliveriesCommand::List {
            namespace,
            webhook,
            limit,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let (_, page) =
                app::deliveries::list(&ctx, &actor, &namespace, NameOrId(&webhook), limit, None)
                    .await?;
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
            namespace,
            webhook,
            delivery,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let ns = NamespaceName::parse(&namespace)?;
            let (hook, detail) =
                app::deliveries::show(&ctx, &actor, &namespace, NameOrId(&webhook), &delivery)
                    .await?;
            print_delivery(&ns, &hook, &detail, format.json)
        }
        DeliveriesCommand::Retrigger {
            namespace,
            webhook,
            delivery,
            wait,
            format,
            store,
        } => {
            let ctx = context(&store).await?;
            let (access, hook, detail, sent) =
                app::deliveries::retrigger(&ctx, &actor, &namespace, NameOrId(&webhook), &delivery)
                    .await?;
            let detail = waited(&ctx, &actor, &namespace, &hook, detail, sent, &wait).await?;
            print_delivery(&access.namespace.name, &hook, &detail, format.json)
        }
    }
}

/// Waits, up to `wait`, for the running server to make the attempt a queued send asked
/// for, and returns the delivery with it.
async fn waited(
    ctx: &app::Context,
    actor: &Actor,
    namespace: &str,
    hook: &Webhook,
    before: DeliveryDetail,
    sent: Sent,
    wait: &WaitArgs,
) -> anyhow::Result<DeliveryDetail> {
    if sent == Sent::Now {
        return Ok(before);
    }
    let id = before.summary.id.to_string();
    eprintln!("queued delivery {id} for the running `herald serve`");
    if wait.wait.is_zero() {
        return Ok(before);
    }
    let deadline = tokio::time::Instant::now() + wait.wait;
    loop {
        let (_, now) = app::deliveries::show(
            ctx,
            actor,
            namespace,
            herald::app::access::WebhookRef::Id(&hook.id.to_string()),
            &id,
        )
        .await?;
        if now.attempts.len() > before.attempts.len() {
            return Ok(now);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NotSentYet(format!(
                "delivery {id} is queued, but no running `herald serve` on this database sent \
                 it within {}; it goes out when one runs",
                humantime::format_duration(wait.wait)
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_delivery(
    ns: &NamespaceName,
    hook: &Webhook,
    detail: &DeliveryDetail,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return emit_json(detail);
    }
    emit(delivery_text(ns, hook, detail))
}

fn event_text(e: &herald::domain::delivery::EventRef) -> String {
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

/// A delivery for people: its state, the request sent and each attempt (numbered within
/// the delivery), oldest first.
fn delivery_text(ns: &NamespaceName, hook: &Webhook, d: &DeliveryDetail) -> String {
    use std::fmt::Write;
    let s = &d.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "delivery {} of webhook {} ({ns}/{})",
        s.id,
        s.webhook_id,
        hook.name.as_str()
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
    for (n, a) in d.attempts.iter().enumerate() {
        let status = a
            .status
            .map_or_else(|| "no answer".into(), |s| s.to_string());
        let _ = writeln!(
            out,
            "\nattempt {} at {}: {status}, {} ms{}",
            n + 1,
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
