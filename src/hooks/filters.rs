//! Per-webhook filters: which registry events a webhook wants. Evaluated at ingest, so an
//! event a webhook does not want costs no delivery row.

use serde::{Deserialize, Serialize};

use crate::hooks::types::Invalid;
use crate::registry::envelope::Action;

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
    /// Any of `push`, `delete`, `pull`, `mount`.
    #[schema(value_type = Vec<String>)]
    pub actions: Vec<Action>,
    /// Globs on the repository path inside the namespace: `web`, `api/*`, `**`.
    pub repositories: Vec<String>,
    /// Globs on the tag: `v*`, `release-*`.
    pub tags: Vec<String>,
    pub media: Media,
    /// Also the `pull` the registry reports for every HEAD existence check.
    pub include_head_requests: bool,
    /// With `tags` set, also events without a tag (deletes and pushes by digest).
    pub match_untagged: bool,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            actions: vec![Action::Push, Action::Delete],
            repositories: Vec::new(),
            tags: Vec::new(),
            media: Media::Manifests,
            include_head_requests: false,
            match_untagged: false,
        }
    }
}

/// What filters look at, taken from an event once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    pub action: Action,
    /// The repository path inside its namespace (`acme/web/api` in `acme` is `web/api`; in
    /// the global namespace, the whole repository).
    pub path: String,
    pub tag: Option<String>,
    pub is_manifest: bool,
    /// The registry's request method (`HEAD` for existence checks reported as pulls).
    pub request_method: Option<String>,
}

impl Filters {
    /// Checks patterns and sizes; `field` names the offending part.
    pub fn validate(self) -> Result<Self, Invalid> {
        for (field, patterns) in [
            ("filters.repositories", &self.repositories),
            ("filters.tags", &self.tags),
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
        Ok(self)
    }

    pub fn matches(&self, e: &EventFacts) -> bool {
        if !self.actions.is_empty() && !self.actions.contains(&e.action) {
            return false;
        }
        if e.action == Action::Pull
            && !self.include_head_requests
            && e.request_method
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case("HEAD"))
        {
            return false;
        }
        // Deletes carry no media type; everything else must be a manifest unless `all`.
        if self.media == Media::Manifests && e.action != Action::Delete && !e.is_manifest {
            return false;
        }
        if !self.repositories.is_empty() && !self.repositories.iter().any(|p| glob(p, &e.path)) {
            return false;
        }
        if !self.tags.is_empty() {
            return match &e.tag {
                Some(tag) => self.tags.iter().any(|p| glob(p, tag)),
                None => self.match_untagged,
            };
        }
        true
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Glob matching: `*` within one path segment, `**` across any number of segments (also
/// none), `?` one character other than `/`.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') if p.get(1) == Some(&'*') => {
                // `**/` may also match nothing at all, so `**/x` matches `x`.
                let rest = &p[2..];
                let rest_after_slash = rest.strip_prefix(&['/']).unwrap_or(rest);
                (0..=t.len()).any(|i| go(rest, &t[i..]) || go(rest_after_slash, &t[i..]))
            }
            Some('*') => {
                let rest = &p[1..];
                for i in 0..=t.len() {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if i < t.len() && t[i] == '/' {
                        return false;
                    }
                }
                false
            }
            Some('?') => t.first().is_some_and(|c| *c != '/') && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
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
        ] {
            assert_eq!(glob(p, t), ok, "{p} ~ {t}");
        }
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
            let got = [&push, &blob, &pull, &del_digest, &del_tag].map(|e| filters.matches(e));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn head_checks_are_left_out_unless_asked_for() {
        let mut head = facts("distribution-2.8.2/pull-manifest.json");
        head.request_method = Some("HEAD".into());
        let pulls = with(|f| f.actions = vec![Action::Pull]);
        assert!(!pulls.matches(&head));
        let heads = with(|f| {
            f.actions = vec![Action::Pull];
            f.include_head_requests = true
        });
        assert!(heads.matches(&head));
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
