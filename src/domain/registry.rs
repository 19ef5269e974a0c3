//! Herald's read access to a registry, and what reading it can change: the tag -> digest
//! map that events imply, and the events a reconcile makes up for the ones the registry
//! lost.

use serde::{Deserialize, Serialize};

use crate::domain::names::Invalid;

/// The address of a registry's OCI distribution API (`https://registry.example.org`); the
/// `/v2/` routes are under it. Chosen by an admin, so it is not subject to the receivers'
/// SSRF rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryUrl(url::Url);

impl RegistryUrl {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let err = |m: String| Invalid::new("registry_url", m);
        let s = input.trim();
        if s.len() > 2048 {
            return Err(err("the registry URL is longer than 2048 characters".into()));
        }
        let mut url = url::Url::parse(s).map_err(|e| {
            err(format!(
                "'{s}' is not a URL ({e}); give the registry's address, e.g. https://registry.example.org"
            ))
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(err(format!(
                "the registry URL's scheme must be http or https, not '{}'",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(err(format!("'{s}' has no host")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                "put the credentials in registry_username and registry_password, not in the URL \
                 (they would be stored and shown in plain text)"
                    .into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(err(
                "the registry URL cannot have a query or a fragment".into()
            ));
        }
        if url.path().trim_end_matches('/').ends_with("/v2") {
            return Err(err(
                "give the registry's address without /v2 (Herald adds the API's paths)".into(),
            ));
        }
        // One form: no trailing slash, so joining "/v2/..." is plain concatenation.
        let path = url.path().trim_end_matches('/').to_string();
        url.set_path(&path);
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }

    /// `<base>/v2/<rest>`.
    pub fn api(&self, rest: &str) -> String {
        format!("{}/v2/{rest}", self.as_str())
    }

    /// Whether `other` is on this registry's origin (scheme, host and port).
    pub fn same_origin(&self, other: &url::Url) -> bool {
        self.0.origin() == other.origin()
    }
}

impl TryFrom<String> for RegistryUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).map_err(|e| e.message)
    }
}

impl From<RegistryUrl> for String {
    fn from(u: RegistryUrl) -> String {
        u.as_str().to_string()
    }
}

impl std::fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A username for the registry: what Basic auth can carry.
pub fn check_registry_username(name: &str) -> Result<(), Invalid> {
    if name.is_empty()
        || name.len() > 255
        || name.contains(':')
        || name.chars().any(char::is_control)
    {
        return Err(Invalid::new(
            "registry_username",
            "a registry username has 1 to 255 characters, without ':' or control characters",
        ));
    }
    Ok(())
}

/// A registry password or token, as Basic auth and token servers take it.
pub fn check_registry_password(password: &str) -> Result<(), Invalid> {
    if password.is_empty() || password.len() > 4096 || password.chars().any(char::is_control) {
        return Err(Invalid::new(
            "registry_password",
            "a registry password has 1 to 4096 characters, without control characters",
        ));
    }
    Ok(())
}

/// How a tag changed between what Herald's events imply and what the registry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    /// The registry has a tag Herald never heard of.
    New { tag: String, digest: String },
    /// The registry's tag points at another manifest than Herald's last event said.
    Moved {
        tag: String,
        from: String,
        digest: String,
    },
    /// Herald's events say the tag exists; the registry no longer has it.
    Gone { tag: String, digest: String },
}

impl TagChange {
    /// Why the event that stands for this change was made: it says what Herald saw.
    pub fn reason(&self) -> String {
        match self {
            Self::New { .. } => {
                "reconcile: the registry has this tag but sent no push event for it".into()
            }
            Self::Moved { from, .. } => format!(
                "reconcile: the registry's tag points at another manifest than the last event said ({from})"
            ),
            Self::Gone { .. } => {
                "reconcile: the registry no longer has this tag but sent no delete event for it"
                    .into()
            }
        }
    }
}

/// The changes between Herald's tags of one repository (`known`, tag -> digest) and the
/// registry's (`actual`), in tag order. Both lists are sorted by tag.
pub fn tag_changes(known: &[(String, String)], actual: &[(String, String)]) -> Vec<TagChange> {
    let mut changes = Vec::new();
    let (mut k, mut a) = (known.iter().peekable(), actual.iter().peekable());
    loop {
        match (k.peek(), a.peek()) {
            (None, None) => break,
            (Some((tag, digest)), None) => {
                changes.push(TagChange::Gone {
                    tag: tag.clone(),
                    digest: digest.clone(),
                });
                k.next();
            }
            (None, Some((tag, digest))) => {
                changes.push(TagChange::New {
                    tag: tag.clone(),
                    digest: digest.clone(),
                });
                a.next();
            }
            (Some((kt, kd)), Some((at, ad))) => match kt.cmp(at) {
                std::cmp::Ordering::Less => {
                    changes.push(TagChange::Gone {
                        tag: kt.clone(),
                        digest: kd.clone(),
                    });
                    k.next();
                }
                std::cmp::Ordering::Greater => {
                    changes.push(TagChange::New {
                        tag: at.clone(),
                        digest: ad.clone(),
                    });
                    a.next();
                }
                std::cmp::Ordering::Equal => {
                    if kd != ad {
                        changes.push(TagChange::Moved {
                            tag: at.clone(),
                            from: kd.clone(),
                            digest: ad.clone(),
                        });
                    }
                    k.next();
                    a.next();
                }
            },
        }
    }
    changes
}

/// A manifest push whose facts are still to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFacts {
    pub event_id: i64,
    /// The source's name (`default` for the default endpoint).
    pub source: String,
    pub repository: String,
    pub digest: String,
    pub tag: Option<String>,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// What reading one event's facts came to, for the store to record.
#[derive(Debug, Clone, PartialEq)]
pub struct FactsRead {
    pub event_id: i64,
    /// The facts, or why they could not be read.
    pub outcome: Result<crate::domain::artifact::ArtifactFacts, String>,
    /// The digest to keep the facts under, when they were read from the registry (not
    /// from what was kept before).
    pub cache: Option<String>,
}

/// A reconcile's progress and outcome, as the API and the UI show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReconcileStatus {
    pub source: String,
    /// `idle`, `requested` or `running`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last repository compared, where a run that stopped resumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Whether a run has finished once: the first only learns the registry's state.
    pub learned: bool,
    pub repositories: i64,
    pub tags: i64,
    /// Events made for pushes and deletes the registry did not send (this or the last run).
    pub pushes: i64,
    pub deletes: i64,
    /// Why the last run stopped short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn changes_are_new_moved_and_gone_tags() {
        let known = pairs(&[
            ("1.0", "sha256:a"),
            ("1.1", "sha256:b"),
            ("old", "sha256:c"),
        ]);
        let actual = pairs(&[
            ("1.0", "sha256:a"),
            ("1.1", "sha256:x"),
            ("2.0", "sha256:d"),
        ]);
        assert_eq!(
            tag_changes(&known, &actual),
            vec![
                TagChange::Moved {
                    tag: "1.1".into(),
                    from: "sha256:b".into(),
                    digest: "sha256:x".into()
                },
                TagChange::New {
                    tag: "2.0".into(),
                    digest: "sha256:d".into()
                },
                TagChange::Gone {
                    tag: "old".into(),
                    digest: "sha256:c".into()
                },
            ]
        );
        assert!(tag_changes(&known, &known).is_empty());
    }

    #[test]
    fn a_registry_url_is_an_http_address_without_credentials() {
        let u = RegistryUrl::parse("https://registry.example.org/").unwrap();
        assert_eq!(
            u.api("_catalog"),
            "https://registry.example.org/v2/_catalog"
        );
        let prefixed = RegistryUrl::parse("http://127.0.0.1:5000/mirror").unwrap();
        assert_eq!(
            prefixed.api("x/tags/list"),
            "http://127.0.0.1:5000/mirror/v2/x/tags/list"
        );
        for (bad, says) in [
            ("ftp://r", "scheme"),
            ("https://u:p@r.example.org", "registry_username"),
            ("https://r.example.org/v2/", "without /v2"),
            ("https://r.example.org/?a=b", "query"),
            ("not a url", "not a URL"),
        ] {
            let e = RegistryUrl::parse(bad).unwrap_err();
            assert_eq!(e.field, "registry_url");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }
}
