//! Per-webhook filters: which registry events a webhook wants. Evaluated at ingest, so an
//! event a webhook does not want costs no delivery row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::domain::artifact::ArtifactKind;
use crate::domain::events::{Action, EventFacts};
use crate::domain::names::Invalid;

const MAX_PATTERNS: usize = 50;
const MAX_PATTERN_LEN: usize = 200;

/// Which blobs and manifests a webhook wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    /// Manifests, manifest lists, OCI manifests, indexes and artifact manifests.
    #[default]
    Manifests,
    /// Blobs too (layer and config pushes, mounts).
    All,
}

/// Empty lists mean "everything"; `actions` defaults to push and delete (Portus parity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// Any of `push`, `delete`, `pull`, `mount`, and what other registries report:
    /// `scan_completed`, `scan_failed`, `quota_exceeded`, `lint_failed`,
    /// `repository_created`, `replication`, `tag_retention`; and Herald's operational
    /// events: `webhook.disabled`, `webhook.circuit_opened`, `webhook.recovered`,
    /// `delivery.exhausted`, which a webhook gets only when they are named here (an empty
    /// list means every registry action, none of them).
    #[schema(value_type = Vec<String>)]
    pub actions: Vec<Action>,
    /// Names of the sources whose events it wants (`default` is `/v2/webhooks/events`).
    pub sources: Vec<String>,
    /// Globs on the repository path inside the namespace: `web`, `api/*`, `**`.
    pub repositories: Vec<String>,
    /// Globs on the tag: `v*`, `release-*`.
    pub tags: Vec<String>,
    pub media: Media,
    /// Also the `pull` the registry reports for every HEAD existence check.
    pub include_head_requests: bool,
    /// With `tags` set, also events without a tag (deletes and pushes by digest).
    pub match_untagged: bool,
    /// What was pushed: any of `image`, `index`, `referrer`. Read from the manifest when
    /// the source has registry access (the delivery waits for it, within --facts-wait),
    /// else from the notification.
    #[schema(value_type = Vec<String>)]
    pub kinds: Vec<ArtifactKind>,
    /// Globs over the artifact type (the manifest's `artifactType`, else its config's media
    /// type): `application/spdx+json`, `application/vnd.cyclonedx*`.
    pub artifact_types: Vec<String>,
    /// Globs over the tags of a referrer's subject: `1.*` wants an SBOM or a signature
    /// attached to any 1.x image.
    pub subject_tags: Vec<String>,
    /// Leave out the events a reconcile made for pushes and deletes the registry did not
    /// send.
    pub exclude_synthesized: bool,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            actions: vec![Action::Push, Action::Delete],
            sources: Vec::new(),
            repositories: Vec::new(),
            tags: Vec::new(),
            media: Media::Manifests,
            include_head_requests: false,
            match_untagged: false,
            kinds: Vec::new(),
            artifact_types: Vec::new(),
            subject_tags: Vec::new(),
            exclude_synthesized: false,
        }
    }
}

impl Filters {
    /// Checks patterns and sizes; `field` names the offending part.
    pub fn validate(self) -> Result<Self, Invalid> {
        if self.sources.len() > MAX_PATTERNS {
            return Err(Invalid::new(
                "filters.sources",
                format!("at most {MAX_PATTERNS} sources"),
            ));
        }
        for s in &self.sources {
            crate::domain::events::validate_name(s)
                .map_err(|m| Invalid::new("filters.sources", m))?;
        }
        if self.kinds.len() > ArtifactKind::ALL.len() {
            return Err(Invalid::new("filters.kinds", "list each kind once"));
        }
        for (field, patterns) in [
            ("filters.repositories", &self.repositories),
            ("filters.tags", &self.tags),
            ("filters.artifact_types", &self.artifact_types),
            ("filters.subject_tags", &self.subject_tags),
        ] {
            if patterns.len() > MAX_PATTERNS {
                return Err(Invalid::new(
                    field,
                    format!("at most {MAX_PATTERNS} patterns"),
                ));
            }
            for p in patterns {
                if p.trim().is_empty() {
                    return Err(Invalid::new(field, "a pattern cannot be empty"));
                }
                if p.len() > MAX_PATTERN_LEN {
                    return Err(Invalid::new(
                        field,
                        format!("the pattern '{p}' is longer than {MAX_PATTERN_LEN} characters"),
                    ));
                }
                if p.chars().any(char::is_control) || p.contains(' ') {
                    return Err(Invalid::new(
                        field,
                        format!("the pattern '{p}' cannot hold spaces or control characters"),
                    ));
                }
            }
        }
        // Only patterns that compile within the size limit are stored.
        CompiledFilters::compile(self).map(|c| c.filters)
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether matching needs what only the manifest tells: such a webhook's deliveries wait
    /// for the facts when the registry can be read.
    pub fn needs_facts(&self) -> bool {
        !self.kinds.is_empty() || !self.artifact_types.is_empty() || !self.subject_tags.is_empty()
    }
}

/// Filters compiled for matching: each glob becomes a regular expression, which the
/// `regex` crate matches in time linear in the text whatever the pattern (backtracking over
/// `**` and `*` was exponential, and it runs inside ingest on the writer thread).
#[derive(Debug)]
pub struct CompiledFilters {
    filters: Filters,
    repositories: Option<Vec<Regex>>,
    tags: Option<Vec<Regex>>,
    artifact_types: Option<Vec<Regex>>,
    subject_tags: Option<Vec<Regex>>,
    /// Stored filters that no longer compile match nothing.
    broken: bool,
}

/// A compiled pattern may take this much memory; generous for 200 characters.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl CompiledFilters {
    pub fn compile(filters: Filters) -> Result<Self, Invalid> {
        let repositories = glob_set("filters.repositories", &filters.repositories)?;
        let tags = glob_set("filters.tags", &filters.tags)?;
        let artifact_types = glob_set("filters.artifact_types", &filters.artifact_types)?;
        let subject_tags = glob_set("filters.subject_tags", &filters.subject_tags)?;
        Ok(Self {
            filters,
            repositories,
            tags,
            artifact_types,
            subject_tags,
            broken: false,
        })
    }

    /// The compiled form of filters stored as JSON (NULL: the defaults), compiled once per
    /// distinct text and shared, so ingest does not compile on every envelope.
    pub fn cached(json: Option<&str>) -> Arc<Self> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<CompiledFilters>>>> = OnceLock::new();
        /// Distinct filter texts kept; past it the cache starts over (it is only a cache).
        const MAX_ENTRIES: usize = 10_000;
        let key = json.unwrap_or("");
        let cache = CACHE.get_or_init(Default::default);
        if let Some(hit) = cache.lock().ok().and_then(|c| c.get(key).cloned()) {
            return hit;
        }
        let filters = json
            .and_then(|j| serde_json::from_str::<Filters>(j).ok())
            .unwrap_or_default();
        let compiled = Arc::new(Self::compile(filters).unwrap_or_else(|e| {
            // Validation compiles every pattern before it is stored, so this is an old or
            // hand-edited row: match nothing rather than everything.
            tracing::warn!(error = %e.message, "stored filters do not compile; they match no event");
            Self {
                filters: Filters::default(),
                repositories: None,
                tags: None,
                artifact_types: None,
                subject_tags: None,
                broken: true,
            }
        }));
        if let Ok(mut c) = cache.lock() {
            if c.len() >= MAX_ENTRIES {
                c.clear();
            }
            c.insert(key.to_string(), compiled.clone());
        }
        compiled
    }

    /// Whether the webhook asked for this operational kind: only `actions` counts, since
    /// such an event has no repository, tag, media or source to filter on.
    pub fn wants_operational(&self, kind: Action) -> bool {
        !self.broken && kind.is_operational() && self.filters.actions.contains(&kind)
    }

    /// See [`Filters::needs_facts`].
    pub fn needs_facts(&self) -> bool {
        self.filters.needs_facts()
    }

    pub fn matches(&self, e: &EventFacts) -> bool {
        self.matches_before_facts(e) && self.matches_artifact(e)
    }

    /// Everything but `kinds`, `artifact_types` and `subject_tags`: whether the event may
    /// match once its facts are read.
    pub fn matches_before_facts(&self, e: &EventFacts) -> bool {
        let f = &self.filters;
        if self.broken {
            return false;
        }
        if f.exclude_synthesized && e.synthesized {
            return false;
        }
        if !f.actions.is_empty() && !f.actions.contains(&e.action) {
            return false;
        }
        if !f.sources.is_empty() {
            let name = e
                .source
                .as_deref()
                .unwrap_or(crate::domain::events::DEFAULT_SOURCE);
            if !f.sources.iter().any(|s| s == name) {
                return false;
            }
        }
        if e.action == Action::Pull
            && !f.include_head_requests
            && e.request_method
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("HEAD"))
        {
            return false;
        }
        // Only pushes, pulls and mounts are of blobs or manifests; deletes and renames
        // carry no media type, and the other registries' actions are about artifacts.
        let of_content = matches!(e.action, Action::Push | Action::Pull | Action::Mount);
        if f.media == Media::Manifests && of_content && !e.is_manifest {
            return false;
        }
        if let Some(repositories) = &self.repositories {
            if !repositories.iter().any(|r| r.is_match(&e.path)) {
                return false;
            }
        }
        if let Some(tags) = &self.tags {
            return match &e.tag {
                Some(tag) => tags.iter().any(|r| r.is_match(tag)),
                None => f.match_untagged,
            };
        }
        true
    }
}

impl CompiledFilters {
    /// `kinds`, `artifact_types` and `subject_tags`: an event without artifact facts (a
    /// delete, a blob) matches none of them.
    fn matches_artifact(&self, e: &EventFacts) -> bool {
        let f = &self.filters;
        if !self.needs_facts() {
            return true;
        }
        let Some(a) = &e.artifact else {
            return false;
        };
        if !f.kinds.is_empty() && !f.kinds.contains(&a.kind) {
            return false;
        }
        if let Some(types) = &self.artifact_types {
            match &a.artifact_type {
                Some(t) if types.iter().any(|r| r.is_match(t)) => {}
                _ => return false,
            }
        }
        if let Some(globs) = &self.subject_tags {
            if !a
                .subject_tags
                .iter()
                .any(|t| globs.iter().any(|r| r.is_match(t)))
            {
                return false;
            }
        }
        true
    }
}

/// A regular expression per glob; `None` for an empty list ("everything").
fn glob_set(field: &'static str, patterns: &[String]) -> Result<Option<Vec<Regex>>, Invalid> {
    if patterns.is_empty() {
        return Ok(None);
    }
    patterns
        .iter()
        .map(|p| {
            RegexBuilder::new(&format!("^{}$", glob_to_regex(p)))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|_| {
                    Invalid::new(
                        field,
                        format!("the pattern '{p}' is too complex to match quickly"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Glob syntax: `*` within one path segment, `**` across any number of segments (`**/x`
/// also matches `x`), `?` one character other than `/`; everything else is literal.
fn glob_to_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("(?s:");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_segment_start = i == 0 || chars[i - 1] == '/';
                if at_segment_start && chars.get(i + 2) == Some(&'/') {
                    out.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
                // A run of stars is one `**`.
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
            }
            '*' => {
                out.push_str("[^/]*");
                i += 1;
            }
            '?' => {
                out.push_str("[^/]");
                i += 1;
            }
            c => {
                out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
                i += 1;
            }
        }
    }
    out.push(')');
    out
}

/// Whether `text` matches the glob `pattern` (as a filter would match it).
pub fn glob(pattern: &str, text: &str) -> bool {
    glob_set("pattern", &[pattern.to_string()])
        .ok()
        .flatten()
        .is_some_and(|r| r.iter().any(|r| r.is_match(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::envelope::parse_envelope;

    fn facts(fixture: &str) -> EventFacts {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        parse_envelope(&bytes)
            .unwrap()
            .remove(0)
            .facts
            .expect("usable event")
    }

    fn with(f: impl FnOnce(&mut Filters)) -> Filters {
        let mut filters = Filters::default();
        f(&mut filters);
        filters
    }

    #[test]
    fn globs() {
        for (p, t, ok) in [
            ("web", "web", true),
            ("web", "web/api", false),
            ("api/*", "api/v1", true),
            ("api/*", "api/v1/x", false),
            ("**", "a/b/c", true),
            ("**/base", "base", true),
            ("**/base", "x/y/base", true),
            ("a/**/z", "a/z", true),
            ("a/**/z", "a/b/c/z", true),
            ("v*", "v1.0", true),
            ("v*", "latest", false),
            ("release-?", "release-1", true),
            ("release-?", "release-10", false),
            ("*", "a/b", false),
            ("**/base", "xbase", false),
            ("a**", "a/b/c", true),
            ("a.b", "axb", false),
            ("(x)+", "(x)+", true),
            ("[ab]", "a", false),
        ] {
            assert_eq!(glob(p, t), ok, "{p} ~ {t}");
        }
    }

    /// Patterns that made the old backtracking matcher take exponential time: with a
    /// linear matcher they answer at once (this test would not finish before).
    #[test]
    fn pathological_patterns_match_in_linear_time() {
        let stars = "**".repeat(90) + "x";
        let text = "a".repeat(200);
        assert!(!glob(&stars, &text));
        let tag = "*a".repeat(90) + "b";
        let long_tag = "a".repeat(128);
        assert!(!glob(&tag, &long_tag));
        let filters = with(|f| {
            f.repositories = vec![stars.clone(); 50];
            f.tags = vec![tag.clone(); 50];
        })
        .validate()
        .unwrap();
        let compiled = CompiledFilters::compile(filters).unwrap();
        let mut e = facts("distribution-2.8.2/push-manifest-tagged.json");
        e.path = text;
        e.tag = Some(long_tag);
        assert!(!compiled.matches(&e));
    }

    #[test]
    fn each_filter_over_the_real_fixtures() {
        let push = facts("distribution-2.8.2/push-manifest-tagged.json");
        let blob = facts("distribution-2.8.2/push-layer-blob.json");
        let pull = facts("distribution-2.8.2/pull-manifest.json");
        let del_digest = facts("distribution-2.8.2/delete-manifest-digest.json");
        let del_tag = facts("distribution-2.8.2/delete-tag.json");
        assert_eq!(push.path, "web");
        let d = Filters::default();
        let table: Vec<(&str, Filters, [bool; 5])> = vec![
            // push, blob, pull, delete by digest, delete by tag
            ("defaults", d.clone(), [true, false, false, true, true]),
            (
                "only deletes",
                with(|f| f.actions = vec![Action::Delete]),
                [false, false, false, true, true],
            ),
            (
                "pulls too",
                with(|f| f.actions = vec![Action::Pull, Action::Push]),
                [true, false, true, false, false],
            ),
            (
                "all media",
                with(|f| f.media = Media::All),
                [true, true, false, true, true],
            ),
            (
                "repository web",
                with(|f| f.repositories = vec!["web".into()]),
                [true, false, false, true, true],
            ),
            (
                "repository api/*",
                with(|f| f.repositories = vec!["api/*".into()]),
                [false, false, false, false, false],
            ),
            (
                "tags v*",
                with(|f| f.tags = vec!["v*".into()]),
                [false, false, false, false, false],
            ),
            (
                "tags 1.*",
                with(|f| f.tags = vec!["1.*".into()]),
                [true, false, false, false, true],
            ),
            (
                "tags 1.* + untagged",
                with(|f| {
                    f.tags = vec!["1.*".into()];
                    f.match_untagged = true
                }),
                [true, false, false, true, true],
            ),
            (
                "combined",
                with(|f| {
                    f.actions = vec![Action::Push];
                    f.repositories = vec!["**".into()];
                    f.tags = vec!["1.0".into()]
                }),
                [true, false, false, false, false],
            ),
        ];
        for (name, filters, expected) in table {
            let compiled = CompiledFilters::compile(filters).unwrap();
            let got = [&push, &blob, &pull, &del_digest, &del_tag].map(|e| compiled.matches(e));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn head_checks_are_left_out_unless_asked_for() {
        let mut head = facts("distribution-2.8.2/pull-manifest.json");
        head.request_method = Some("HEAD".into());
        let pulls = with(|f| f.actions = vec![Action::Pull]);
        assert!(!CompiledFilters::compile(pulls).unwrap().matches(&head));
        let heads = with(|f| {
            f.actions = vec![Action::Pull];
            f.include_head_requests = true
        });
        assert!(CompiledFilters::compile(heads).unwrap().matches(&head));
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(
            with(|f| f.tags = vec!["".into()])
                .validate()
                .unwrap_err()
                .field,
            "filters.tags"
        );
        assert_eq!(
            with(|f| f.repositories = vec!["a b".into()])
                .validate()
                .unwrap_err()
                .field,
            "filters.repositories"
        );
        assert!(serde_json::from_str::<Filters>(r#"{"actions":["replicate"]}"#).is_err());
        assert!(serde_json::from_str::<Filters>(r#"{"media":"blobs"}"#).is_err());
        let f: Filters = serde_json::from_str(r#"{"tags":["v*"]}"#).unwrap();
        assert_eq!(
            f.actions,
            vec![Action::Push, Action::Delete],
            "defaults fill the rest"
        );
    }
}
