//! zot's events extension: CloudEvents 1.0 of type `zotregistry.image.updated`,
//! `.image.deleted`, `.image.lint_failed`, `.image.scanned` and `.repository.created`, with
//! `name`, `reference`, `digest`, `mediaType` (and `manifest`, `actor`, `request`) as data.
//! zot sends each event once (it does not retry), binary mode, a new UUID as `id`.

use super::cloudevent::CloudEvent;
use super::{scoped, string, unreadable};
use crate::domain::events::parse_time;
use crate::domain::events::IncomingEvent;
use crate::registry::envelope::Translated;

fn action(kind: &str) -> &str {
    match kind {
        "zotregistry.image.updated" => "push",
        "zotregistry.image.deleted" => "delete",
        "zotregistry.image.lint_failed" => "lint_failed",
        "zotregistry.image.scanned" => "scan_completed",
        "zotregistry.repository.created" => "repository_created",
        other => other,
    }
}

pub(super) fn event(name: &str, ce: CloudEvent) -> IncomingEvent {
    let key = ce.key();
    let data = match ce.data {
        Ok(data) => data,
        Err(e) => {
            let mut ignored = unreadable(name, ce.body, e);
            ignored.registry_id = scoped(name, key);
            return ignored;
        }
    };
    let reference = string(&data, "/reference");
    IncomingEvent::translated(
        Translated {
            registry_id: scoped(name, key),
            action: ce.kind.as_deref().map(|k| action(k).to_string()),
            repository: string(&data, "/name"),
            // A digest in `reference` is moved to the digest by `translated`.
            tag: reference.clone(),
            digest: string(&data, "/digest"),
            media_type: string(&data, "/mediaType"),
            actor: string(&data, "/actor/name"),
            request_method: string(&data, "/request/method"),
            // Every zot image event is about a manifest.
            is_manifest: Some(true),
            namespace: None,
            occurred_at: ce.time.as_deref().and_then(parse_time),
        },
        ce.body,
        name,
    )
}
