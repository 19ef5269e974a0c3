//! The registry's notification envelope and what Herald makes of each event in it.
//!
//! Only an envelope that is not JSON, or has no `events` array, is refused: the registry
//! retries a refused envelope forever and blocks every later one behind it. Inside a good
//! envelope, every event is kept, and one that Herald cannot use is stored as ignored.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::events::{expansion_refused, parse_time};
use crate::domain::events::{Action, Disposition, EventFacts, IncomingEvent};
use crate::domain::names::NamespaceName;

/// Media types of manifests: pushes of these trigger webhooks, blob pushes do not.
/// Why an envelope is refused as a whole.
#[derive(Debug, PartialEq, Eq)]
pub struct EnvelopeError(pub String);

/// Splits an envelope into its events, each kept as the exact JSON text the registry sent.
pub fn split_envelope(body: &[u8]) -> Result<Vec<&RawValue>, EnvelopeError> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        events: Option<&'a RawValue>,
    }
    let top: &RawValue = serde_json::from_slice(body)
        .map_err(|e| EnvelopeError(format!("the body is not valid JSON: {e}")))?;
    if !top.get().trim_start().starts_with('{') {
        return Err(EnvelopeError(
            "the body must be a JSON object with an `events` array".into(),
        ));
    }
    let envelope: Envelope = serde_json::from_str(top.get())
        .map_err(|e| EnvelopeError(format!("the envelope is not valid: {e}")))?;
    let events = envelope
        .events
        .ok_or_else(|| EnvelopeError("the envelope has no `events` array".into()))?;
    serde_json::from_str::<Vec<&RawValue>>(events.get())
        .map_err(|_| EnvelopeError("the envelope's `events` must be an array".into()))
}

/// The fields Herald reads; everything else in the event is kept in `body` untouched.
#[derive(Deserialize, Default)]
#[serde(default)]
struct EventFields {
    action: Option<String>,
    timestamp: Option<String>,
    target: Option<TargetFields>,
    actor: Option<ActorFields>,
    request: Option<RequestFields>,
    source: Option<SourceFields>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SourceFields {
    #[serde(rename = "instanceID")]
    instance_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestFields {
    method: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TargetFields {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ActorFields {
    name: Option<String>,
}

impl IncomingEvent {
    pub fn classify(raw: &RawValue) -> Self {
        Self::classify_from(raw, None)
    }

    /// An event of a distribution-shaped envelope from `source` (`None`: the default).
    pub fn classify_from(raw: &RawValue, source: Option<&str>) -> Self {
        let mut event = IncomingEvent::blank(raw.get().to_string(), source);
        if !event.body.trim_start().starts_with('{') {
            event.disposition = Disposition::Ignore("the event is not a JSON object".into());
            return event;
        }
        // Every payload format reads the event as a JSON value, so one that cannot be read
        // so (a number beyond f64, nesting past serde_json's limit, a lone surrogate) is
        // ignored here with the reason, rather than acknowledged and failing at delivery.
        // Its id is still kept when it has one, so the registry's retry is a duplicate.
        let value: serde_json::Value = match serde_json::from_str(raw.get()) {
            Ok(v) => v,
            Err(e) => {
                #[derive(Deserialize)]
                struct IdOnly {
                    id: Option<String>,
                }
                event.registry_id = serde_json::from_str::<IdOnly>(raw.get())
                    .ok()
                    .and_then(|i| i.id)
                    .filter(|s| !s.is_empty());
                event.disposition = Disposition::Ignore(format!(
                    "the event cannot be read as a JSON value, so no payload format could \
                     render it: {e}"
                ));
                return event;
            }
        };
        event.registry_id = value
            .get("id")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let fields = match EventFields::deserialize(&value) {
            Ok(f) => f,
            Err(e) => {
                event.disposition = Disposition::Ignore(format!(
                    "the event does not have the registry's shape: {e}"
                ));
                return event;
            }
        };
        let target = fields.target.unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        event.action = non_empty(fields.action);
        event.repository = non_empty(target.repository);
        event.tag = non_empty(target.tag);
        event.digest = non_empty(target.digest);
        event.media_type = non_empty(target.media_type);
        event.actor = fields.actor.and_then(|a| non_empty(a.name));
        event.occurred_at = fields.timestamp.as_deref().and_then(parse_time);
        event.instance_id = fields
            .source
            .and_then(|s| non_empty(s.instance_id))
            .map(|id| id.chars().take(128).collect());
        let request_method = fields.request.and_then(|r| r.method);
        event.disposition = event.decide(target.url.as_deref(), false, None);
        if !matches!(event.disposition, Disposition::Ignore(_)) {
            event.facts = event.facts(target.url.as_deref(), request_method);
        }
        event
    }

    /// `namespace` is the registry's own word for it (a Harbor project), when it says so
    /// apart from the repository; otherwise it is the repository's first segment.
    fn decide(
        &mut self,
        url: Option<&str>,
        translated: bool,
        namespace: Option<&str>,
    ) -> Disposition {
        if self.registry_id.is_none() {
            return Disposition::Ignore("the event has no id".into());
        }
        let Some(action_text) = self.action.as_deref() else {
            return Disposition::Ignore("the event has no action".into());
        };
        let Some(action) = Action::parse(action_text).filter(|a| {
            // An envelope has distribution's words (and GitLab's rename); the others are
            // Herald's names for what other registries report, set only by a translation.
            a.in_envelopes() || translated
        }) else {
            return Disposition::Ignore(format!("unknown action '{action_text}'"));
        };
        let found = match (namespace, self.repository.as_deref()) {
            (Some(ns), _) => NamespaceName::parse(ns).map_err(|_| {
                format!("the registry's namespace '{ns}' is not a valid namespace name")
            }),
            (None, Some(repository)) => {
                NamespaceName::of_repository(repository).map_err(|e| e.message)
            }
            (None, None) => Err("the event's target has no repository".into()),
        };
        match found {
            Ok(ns) => self.namespace = Some(ns),
            Err(reason) => return Disposition::Ignore(reason),
        }
        match action {
            Action::Delete | Action::Rename => Disposition::Deliver,
            Action::Push if self.is_manifest(url) => Disposition::Deliver,
            Action::Push => Disposition::Skip("blob push".into()),
            Action::Pull => Disposition::Skip("pull".into()),
            Action::Mount => Disposition::Skip("blob mount".into()),
            // Reported by other registries; only webhooks that ask for them get them.
            _ => Disposition::Deliver,
        }
    }

    /// The facts filters need, for a usable event.
    fn facts(&self, url: Option<&str>, request_method: Option<String>) -> Option<EventFacts> {
        let action = Action::parse(self.action.as_deref()?)?;
        let namespace = self.namespace.as_ref()?;
        let path = crate::domain::events::path_in_namespace(
            namespace,
            self.repository.as_deref().unwrap_or_default(),
        );
        let is_manifest = self.is_manifest(url);
        Some(EventFacts {
            action,
            path,
            tag: self.tag.clone(),
            is_manifest,
            request_method,
            source: self.source.clone(),
            artifact: (action == Action::Push)
                .then(|| {
                    crate::domain::artifact::from_notification(
                        self.media_type.as_deref(),
                        self.tag.as_deref(),
                        is_manifest,
                    )
                })
                .flatten(),
            synthesized: false,
        })
    }

    /// A manifest by its media type; without one, by its URL or tag (only manifests have tags).
    fn is_manifest(&self, url: Option<&str>) -> bool {
        if let Some(hint) = self.manifest_hint {
            return hint;
        }
        match self.media_type.as_deref() {
            Some(mt) => crate::domain::artifact::is_manifest_media_type(mt),
            None => self.tag.is_some() || url.is_some_and(|u| u.contains("/manifests/")),
        }
    }
}

/// What a source's translation found in a payload, before Herald decides about it.
#[derive(Debug, Clone, Default)]
pub struct Translated {
    pub registry_id: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub actor: Option<String>,
    pub request_method: Option<String>,
    pub is_manifest: Option<bool>,
    /// The namespace when the registry names it apart from the repository (a Harbor
    /// project); a repository-less event (a replication still running) needs it.
    pub namespace: Option<String>,
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl IncomingEvent {
    /// An event of source `source` translated from another registry's payload; `body` is
    /// that payload unchanged. Decided exactly as distribution's events are.
    pub fn translated(t: Translated, body: String, source: &str) -> Self {
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        // A tag never holds a ':'; a registry that puts a digest where the tag goes (Harbor,
        // for an artifact without a tag) means the digest.
        let (tag, digest) = match non_empty(t.tag) {
            Some(tag) if tag.contains(':') => (None, non_empty(t.digest).or(Some(tag))),
            tag => (tag, non_empty(t.digest)),
        };
        let mut event = IncomingEvent {
            registry_id: non_empty(t.registry_id),
            action: non_empty(t.action),
            repository: non_empty(t.repository),
            tag,
            digest,
            media_type: non_empty(t.media_type),
            actor: non_empty(t.actor),
            manifest_hint: t.is_manifest,
            occurred_at: t.occurred_at,
            ..IncomingEvent::blank(body, Some(source))
        };
        event.disposition = event.decide(None, true, t.namespace.as_deref());
        if !matches!(event.disposition, Disposition::Ignore(_)) {
            event.facts = event.facts(None, t.request_method);
        }
        event
    }
}

/// Splits and classifies an envelope from `source` (`None`: the default endpoint); an
/// envelope past the expansion bounds is kept whole as one ignored event.
pub fn parse_envelope_from(
    body: &[u8],
    source: Option<&str>,
) -> Result<Vec<IncomingEvent>, EnvelopeError> {
    let raws = split_envelope(body)?;
    let bytes = raws.iter().map(|r| r.get().len()).sum();
    if let Some(reason) = expansion_refused(raws.len(), bytes) {
        let whole = String::from_utf8_lossy(body).into_owned();
        return Ok(vec![IncomingEvent::ignored_payload(whole, source, reason)]);
    }
    Ok(raws
        .into_iter()
        .map(|raw| IncomingEvent::classify_from(raw, source))
        .collect())
}

/// Splits and classifies an envelope of the default endpoint.
pub fn parse_envelope(body: &[u8]) -> Result<Vec<IncomingEvent>, EnvelopeError> {
    parse_envelope_from(body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn one(name: &str) -> IncomingEvent {
        let mut events = parse_envelope(&fixture(name)).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn manifest_push_is_delivered_with_its_exact_body() {
        let bytes = fixture("distribution-2.8.2/push-manifest-tagged.json");
        let e = one("distribution-2.8.2/push-manifest-tagged.json");
        assert_eq!(e.disposition, Disposition::Deliver);
        assert_eq!(
            e.registry_id.as_deref(),
            Some("2045f19c-7a89-451b-8ea6-bfb7cac6a943")
        );
        assert_eq!(e.namespace.unwrap().as_str(), "acme");
        assert_eq!(e.tag.as_deref(), Some("1.0"));
        // The body is a verbatim slice of what the registry sent.
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(&e.body));
        let envelope: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body, envelope["events"][0]);
    }

    #[test]
    fn blobs_and_pulls_are_skipped() {
        for name in ["push-layer-blob.json", "push-config-blob.json"] {
            let e = one(&format!("distribution-2.8.2/{name}"));
            assert_eq!(
                e.disposition,
                Disposition::Skip("blob push".into()),
                "{name}"
            );
        }
        let e = one("distribution-2.8.2/pull-manifest.json");
        assert_eq!(e.disposition, Disposition::Skip("pull".into()));
    }

    #[test]
    fn deletes_in_every_shape_are_delivered() {
        let by_digest = one("distribution-2.8.2/delete-manifest-digest.json");
        assert_eq!(by_digest.disposition, Disposition::Deliver);
        assert!(by_digest.tag.is_none() && by_digest.digest.is_some());
        let by_tag = one("distribution-2.8.2/delete-tag.json");
        assert_eq!(by_tag.disposition, Disposition::Deliver);
        assert_eq!(by_tag.tag.as_deref(), Some("1.0"));
    }

    #[test]
    fn actor_is_read_when_present() {
        let e = one("distribution-2.8.2/push-manifest-with-actor-and-references.json");
        assert_eq!(e.actor.as_deref(), Some("alice"));
        assert_eq!(e.namespace.unwrap().as_str(), "alice");
    }

    #[test]
    fn distribution_3_envelope_with_oci_descriptor_target() {
        let events = parse_envelope(&fixture("distribution-3/push-and-delete.json")).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].disposition, Disposition::Deliver, "index push");
        assert_eq!(events[0].namespace.as_ref().unwrap().as_str(), "acme");
        assert!(
            events[0].body.contains("\"annotations\""),
            "unknown fields are kept"
        );
        assert_eq!(events[1].disposition, Disposition::Deliver, "tag delete");
        assert!(events[2].namespace.as_ref().unwrap().is_global());
        assert_eq!(events[2].disposition, Disposition::Skip("blob push".into()));
    }

    /// Found by fuzzing: JSON allows numbers of any size, serde_json's `Value` does not, nor
    /// deep nesting or lone surrogates. Such an event must not refuse the envelope (the
    /// registry would retry it forever), and since no payload format but the verbatim one
    /// could render it, it is ignored with the reason, keeping its id.
    #[test]
    fn events_no_format_can_read_are_ignored_with_their_id() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let body = format!(
            r#"{{"events":[
            7e+831773,
            {{"id":"h","action":"push","target":{{"repository":"acme/x","tag":"v1","size":3}},"extra":7e+831773}},
            {{"id":"s","action":"push","target":{{"repository":"acme/x","tag":"\ud800"}}}},
            {{"id":"n","action":"push","target":{{"repository":"acme/x","tag":"v1"}},"x":{deep}}},
            {{"id":"t","action":"push","target":"acme/x"}}
        ]}}"#
        );
        let events = parse_envelope(body.as_bytes()).unwrap();
        assert_eq!(events.len(), 5);
        for e in &events {
            assert!(
                matches!(&e.disposition, Disposition::Ignore(_)),
                "{:?}",
                e.disposition
            );
        }
        let ids: Vec<_> = events.iter().map(|e| e.registry_id.as_deref()).collect();
        assert_eq!(ids, [None, Some("h"), Some("s"), Some("n"), Some("t")]);
        assert!(
            matches!(&events[1].disposition, Disposition::Ignore(r) if r.contains("no payload format"))
        );
    }

    #[test]
    fn odd_events_are_ignored_with_a_reason_not_refused() {
        let body = br#"{"events":[
            {"id":"a","action":"replicate","target":{"repository":"acme/x"}},
            {"id":"b","action":"push","target":{}},
            {"action":"push","target":{"repository":"acme/x"}},
            42,
            {"id":"c","action":"push","target":{"repository":"Bad/x","tag":"1"}},
            {"id":"d","action":"push","target":{"repository":7}},
            {"id":"e","action":"push","target":{"repository":"acme/x","tag":"v1","size":3},"extra":{"x":1}}
        ]}"#;
        let events = parse_envelope(body).unwrap();
        let reasons: Vec<_> = events.iter().map(|e| e.disposition.clone()).collect();
        assert_eq!(
            reasons[0],
            Disposition::Ignore("unknown action 'replicate'".into())
        );
        assert_eq!(
            reasons[1],
            Disposition::Ignore("the event's target has no repository".into())
        );
        assert_eq!(
            reasons[2],
            Disposition::Ignore("the event has no id".into())
        );
        assert_eq!(
            reasons[3],
            Disposition::Ignore("the event is not a JSON object".into())
        );
        assert!(matches!(&reasons[4], Disposition::Ignore(r) if r.contains("Bad/x")));
        assert!(matches!(&reasons[5], Disposition::Ignore(r) if r.contains("shape")));
        assert_eq!(
            reasons[6],
            Disposition::Deliver,
            "unknown fields and size are fine"
        );
    }

    #[test]
    fn malformed_envelopes_are_refused_with_a_named_problem() {
        assert!(split_envelope(b"{not json")
            .unwrap_err()
            .0
            .contains("not valid JSON"));
        assert!(split_envelope(b"[]").unwrap_err().0.contains("JSON object"));
        assert!(split_envelope(b"{}")
            .unwrap_err()
            .0
            .contains("no `events` array"));
        assert!(split_envelope(br#"{"events":{}}"#)
            .unwrap_err()
            .0
            .contains("must be an array"));
        assert_eq!(split_envelope(br#"{"events":[]}"#).unwrap().len(), 0);
    }
}
