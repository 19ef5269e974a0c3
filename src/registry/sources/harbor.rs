//! Harbor's webhooks, as Harbor's own code builds them (goharbor/harbor, read at
//! c50c7ddd; `tests/fixtures/harbor/README.md` names the files): the `Default` format
//! `{type, occur_at, operator, event_data}` and the `CloudEvents` format (structured mode,
//! `type` `harbor.*`, `data` = the Default format's `event_data`).
//!
//! What each event becomes:
//! - The namespace is the Harbor project: `event_data.repository.namespace`; for a
//!   replication `dest_resource.namespace` (the local project in both pull and push mode:
//!   in push mode Harbor swaps the namespaces of the two sides, see `replication.go`); for a
//!   tag retention `retention.project_name`.
//! - Artifact, scan and quota events: one event per entry of `resources` (Harbor sends one),
//!   repository `repo_full_name`; a digest Harbor puts in `tag` (an artifact without a tag)
//!   is the event's digest, not a tag.
//! - Replication and tag retention: one event per payload. Harbor sends one per task, and a
//!   task is one repository (its artifacts are listed in the body); `name_tag` names the
//!   repository without its project.
//! - Default format: Harbor sends no id and `occur_at` counts seconds, so two real events
//!   can be byte for byte alike: each payload is a new event (a retry Harbor makes after a
//!   failed attempt may be delivered twice; a real event is never dropped). CloudEvents
//!   format: deduplicated on `source` + `id`, which Harbor's retries repeat.

use serde_json::Value;

use super::cloudevent::CloudEvent;
use super::{scoped, string, unreadable};
use crate::domain::events::IncomingEvent;
use crate::domain::events::{expansion_refused, parse_time};
use crate::registry::envelope::Translated;

/// The CloudEvents types of Harbor start with this.
pub(super) const CLOUDEVENT_PREFIX: &str = "harbor.";

/// Harbor's event types: (Default format's `type`, CloudEvents `type`, Herald's action).
const TYPES: [(&str, &str, &str); 10] = [
    ("PUSH_ARTIFACT", "harbor.artifact.pushed", "push"),
    ("PULL_ARTIFACT", "harbor.artifact.pulled", "pull"),
    ("DELETE_ARTIFACT", "harbor.artifact.deleted", "delete"),
    (
        "SCANNING_COMPLETED",
        "harbor.scan.completed",
        "scan_completed",
    ),
    ("SCANNING_FAILED", "harbor.scan.failed", "scan_failed"),
    ("SCANNING_STOPPED", "harbor.scan.stopped", "scan_stopped"),
    ("QUOTA_EXCEED", "harbor.quota.exceeded", "quota_exceeded"),
    ("QUOTA_WARNING", "harbor.quota.warned", "quota_warning"),
    (
        "REPLICATION",
        "harbor.replication.status.changed",
        "replication",
    ),
    (
        "TAG_RETENTION",
        "harbor.tag_retention.finished",
        "tag_retention",
    ),
];

/// A payload in the `Default` format.
pub(super) fn default_format(name: &str, body: String) -> Vec<IncomingEvent> {
    let value: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return vec![unreadable(name, body, e)],
    };
    let kind = string(&value, "/type").unwrap_or_default();
    let action = TYPES
        .iter()
        .find(|(t, _, _)| *t == kind)
        .map_or(kind.as_str(), |(_, _, a)| a);
    let context = Context {
        action,
        operator: string(&value, "/operator"),
        occurred_at: value
            .get("occur_at")
            .and_then(Value::as_i64)
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
    };
    let data = value.get("event_data").unwrap_or(&Value::Null);
    let found = events(data, &context);
    build(name, found, &body, || {
        // No id of Harbor's: one of Herald's, so no two events are ever one.
        Some(format!("herald-{}", random_id()))
    })
}

/// A payload in the `CloudEvents` format.
pub(super) fn cloudevent(name: &str, ce: CloudEvent) -> Vec<IncomingEvent> {
    let key = ce.key();
    let data = match ce.data {
        Ok(d) => d,
        Err(e) => {
            let mut ignored = unreadable(name, ce.body, e);
            ignored.registry_id = scoped(name, key);
            return vec![ignored];
        }
    };
    let kind = ce.kind.unwrap_or_default();
    let action = TYPES
        .iter()
        .find(|(_, t, _)| *t == kind)
        .map_or(kind.as_str(), |(_, _, a)| a);
    let context = Context {
        action,
        operator: ce
            .extensions
            .get("operator")
            .cloned()
            .filter(|o| !o.is_empty()),
        occurred_at: ce.time.as_deref().and_then(parse_time),
    };
    let found = events(&data, &context);
    let many = found.len() > 1;
    let mut n = 0;
    build(name, found, &ce.body, || {
        n += 1;
        // The id names the payload; several events of one payload each get their own.
        key.as_ref()
            .map(|k| if many { format!("{k}#{n}") } else { k.clone() })
    })
}

/// What every event of one payload shares.
struct Context<'a> {
    action: &'a str,
    operator: Option<String>,
    occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The events of one payload, each with the payload as its body, unless that would pass
/// the expansion bounds: then the payload once, ignored with the reason.
fn build(
    name: &str,
    found: Vec<Translated>,
    body: &str,
    mut id: impl FnMut() -> Option<String>,
) -> Vec<IncomingEvent> {
    if let Some(reason) = expansion_refused(found.len(), found.len() * body.len()) {
        return vec![IncomingEvent::ignored_payload(
            body.to_string(),
            Some(name),
            reason,
        )];
    }
    found
        .into_iter()
        .map(|mut t| {
            t.registry_id = scoped(name, id());
            IncomingEvent::translated(t, body.to_string(), name)
        })
        .collect()
}

/// The events `event_data` describes, without ids.
fn events(data: &Value, c: &Context) -> Vec<Translated> {
    let base = Translated {
        action: Some(c.action.to_string()),
        actor: c.operator.clone(),
        is_manifest: Some(true),
        occurred_at: c.occurred_at,
        ..Translated::default()
    };
    match c.action {
        "replication" => vec![replication(data, base)],
        "tag_retention" => vec![retention(data, base)],
        _ => {
            let repository = string(data, "/repository/repo_full_name").or_else(|| {
                match (
                    string(data, "/repository/namespace"),
                    string(data, "/repository/name"),
                ) {
                    (Some(ns), Some(repo)) => Some(format!("{ns}/{repo}")),
                    (None, Some(repo)) => Some(repo),
                    _ => None,
                }
            });
            let base = Translated {
                repository,
                namespace: string(data, "/repository/namespace"),
                ..base
            };
            let resources = data
                .get("resources")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if resources.is_empty() {
                return vec![base];
            }
            resources
                .iter()
                .map(|r| Translated {
                    tag: string(r, "/tag"),
                    digest: string(r, "/digest"),
                    ..base.clone()
                })
                .collect()
        }
    }
}

/// A replication task's status change. The local project is `dest_resource.namespace` in
/// both modes; the repository, once the task has one, is `name_tag` (the repository without
/// its project, then ` [N item(s) in total]`).
fn replication(data: &Value, base: Translated) -> Translated {
    let project = string(data, "/replication/dest_resource/namespace");
    let name_tag = ["successful_artifact", "failed_artifact"]
        .iter()
        .find_map(|list| string(data, &format!("/replication/{list}/0/name_tag")));
    let path = name_tag.map(|n| match n.rsplit_once(" [") {
        Some((path, count)) if count.ends_with(']') => path.to_string(),
        _ => n,
    });
    Translated {
        repository: in_project(project.as_deref(), path.as_deref()),
        namespace: project,
        ..base
    }
}

/// A tag retention run over one repository: its deleted artifacts' `name_tag` is the
/// repository without its project, then `:tag` or `@digest`.
fn retention(data: &Value, base: Translated) -> Translated {
    let project = string(data, "/retention/project_name");
    let path = string(data, "/retention/deleted_artifact/0/name_tag").map(|n| {
        let repo = match n.split_once('@') {
            Some((repo, _)) => repo,
            None => match n.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo,
                _ => n.as_str(),
            },
        };
        repo.to_string()
    });
    Translated {
        repository: in_project(project.as_deref(), path.as_deref()),
        namespace: project,
        ..base
    }
}

/// `project/path`, or nothing when either is unknown.
fn in_project(project: Option<&str>, path: Option<&str>) -> Option<String> {
    match (project, path) {
        (Some(p), Some(path)) if !path.is_empty() => Some(format!("{p}/{path}")),
        _ => None,
    }
}

/// 128 random bits as hex: a name no two events share.
fn random_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
