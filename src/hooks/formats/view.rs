//! The event as the formats that speak of it read it, and the fields they all take from
//! it: one place, so each format reads only what it says.

use serde_json::Value;

use crate::domain::delivery::EventRecord;

/// The event as the formats that speak of it read it: a distribution event as received;
/// another registry's payload (zot, Harbor) in distribution's shape, made from what ingest
/// read from it. What Herald knows beside the event (what was pushed, that a reconcile made
/// it up) is under `herald`. The verbatim formats always send the payload itself.
pub(super) fn view<'a>(event: &'a str, record: &EventRecord) -> std::borrow::Cow<'a, str> {
    // Herald's own events are read as they are: templates see their payload.
    if super::is_operational(record) {
        return std::borrow::Cow::Borrowed(event);
    }
    let shaped = registry_view(event, record);
    match herald_part(record) {
        None => shaped,
        Some(herald) => match serde_json::from_str::<Value>(&shaped) {
            Ok(Value::Object(mut fields)) => {
                fields.insert("herald".into(), herald);
                std::borrow::Cow::Owned(Value::Object(fields).to_string())
            }
            _ => shaped,
        },
    }
}

/// `{"facts": {...}, "synthesized": "why"}`, with what Herald has of the two.
fn herald_part(record: &EventRecord) -> Option<Value> {
    if record.facts.is_none() && record.synthesized.is_none() {
        return None;
    }
    let mut herald = serde_json::Map::new();
    if let Some(facts) = &record.facts {
        herald.insert("facts".into(), serde_json::to_value(facts).ok()?);
    }
    if let Some(why) = &record.synthesized {
        herald.insert("synthesized".into(), Value::String(why.clone()));
    }
    Some(Value::Object(herald))
}

/// The facts as the view carries them.
pub(super) fn facts(v: &Value) -> Option<crate::domain::artifact::ArtifactFacts> {
    serde_json::from_value(v.pointer("/herald/facts")?.clone()).ok()
}

fn registry_view<'a>(event: &'a str, record: &EventRecord) -> std::borrow::Cow<'a, str> {
    let distribution = serde_json::from_str::<Value>(event)
        .ok()
        .is_some_and(|v| v.get("target").is_some_and(Value::is_object));
    if distribution {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut target = serde_json::Map::new();
    for (key, value) in [
        ("repository", &record.repository),
        ("tag", &record.tag),
        ("digest", &record.digest),
        ("mediaType", &record.media_type),
    ] {
        if let Some(v) = value {
            target.insert(key.into(), Value::String(v.clone()));
        }
    }
    // The registry's own time when it gave one (zot's `time`, Harbor's `occur_at`), and the
    // source by its name in Herald, where distribution names its instance's address.
    let time = record.occurred_at.unwrap_or(record.received_at);
    let mut v = serde_json::json!({
        "id": record.registry_id,
        "timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "action": record.action,
        "target": target,
    });
    if let Some(source) = &record.source {
        v["source"] = serde_json::json!({ "name": source });
    }
    if let Some(actor) = &record.actor {
        v["actor"] = serde_json::json!({ "name": actor });
    }
    std::borrow::Cow::Owned(v.to_string())
}

pub(super) fn parsed(event: &str) -> Result<Value, String> {
    serde_json::from_str(event).map_err(|e| format!("the event is not JSON: {e}"))
}

pub(super) fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `repository:tag`, else `repository@digest`, else the repository.
pub(super) fn subject(v: &Value) -> String {
    let repo = text(v, "/target/repository").unwrap_or("");
    match (text(v, "/target/tag"), text(v, "/target/digest")) {
        (Some(tag), _) => format!("{repo}:{tag}"),
        (None, Some(digest)) => format!("{repo}@{digest}"),
        _ => repo.to_string(),
    }
}
