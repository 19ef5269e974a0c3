//! The webhook form, shared by the create form (namespace page) and the edit form.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::deploy::FormatOptions;
use crate::domain::names::Invalid;

#[derive(Deserialize, Default)]
pub struct WebhookForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub request_method: String,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub clear_password: Option<String>,
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub template: String,
    /// Present when the form carries the filter fields (both forms do; a client posting
    /// without them keeps the defaults).
    #[serde(default)]
    pub filters_present: Option<String>,
    #[serde(default)]
    pub action_push: Option<String>,
    #[serde(default)]
    pub action_delete: Option<String>,
    #[serde(default)]
    pub action_pull: Option<String>,
    #[serde(default)]
    pub action_mount: Option<String>,
    #[serde(default)]
    pub action_scan_completed: Option<String>,
    #[serde(default)]
    pub action_scan_failed: Option<String>,
    #[serde(default)]
    pub action_quota_exceeded: Option<String>,
    #[serde(default)]
    pub action_lint_failed: Option<String>,
    #[serde(default)]
    pub action_repository_created: Option<String>,
    #[serde(default)]
    pub action_replication: Option<String>,
    #[serde(default)]
    pub action_tag_retention: Option<String>,
    /// Herald's operational events, off unless ticked.
    #[serde(default)]
    pub op_webhook_disabled: Option<String>,
    #[serde(default)]
    pub op_webhook_circuit_opened: Option<String>,
    #[serde(default)]
    pub op_webhook_recovered: Option<String>,
    #[serde(default)]
    pub op_delivery_exhausted: Option<String>,
    /// Source names, comma-separated; empty: every source.
    #[serde(default)]
    pub sources: String,
    #[serde(default)]
    pub repositories: String,
    #[serde(default)]
    pub tags: String,
    #[serde(default)]
    pub media: String,
    #[serde(default)]
    pub include_head_requests: Option<String>,
    #[serde(default)]
    pub match_untagged: Option<String>,
    #[serde(default)]
    pub kind_image: Option<String>,
    #[serde(default)]
    pub kind_index: Option<String>,
    #[serde(default)]
    pub kind_referrer: Option<String>,
    /// Artifact type globs, comma-separated.
    #[serde(default)]
    pub artifact_types: String,
    /// Globs over a referrer's subject's tags, comma-separated.
    #[serde(default)]
    pub subject_tags: String,
    #[serde(default)]
    pub exclude_synthesized: Option<String>,
    #[serde(default)]
    pub skip_tls_verify: Option<String>,
    /// Deliveries per second; empty: no limit.
    #[serde(default)]
    pub rate_limit: String,
    #[serde(default)]
    pub ordering: String,
    /// `v1` or `v1a`; empty: left as it is (a new webhook: `v1`).
    #[serde(default)]
    pub signature: String,
    /// PEM; empty (with `client_key` empty) keeps the current certificate.
    #[serde(default)]
    pub client_certificate: String,
    /// PEM; never shown again, not even on a form answered with errors.
    #[serde(default)]
    pub client_key: String,
    #[serde(default)]
    pub remove_client_certificate: Option<String>,
    /// The deploy tool's token; never shown again. Blank keeps the current one.
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub clear_token: Option<String>,
    /// The format options as the API's JSON object; blank: none.
    #[serde(default)]
    pub format_options: String,
}

impl WebhookForm {
    pub fn values(&self) -> BTreeMap<String, String> {
        let mut values = self.text_values();
        // The boxes as ticked, so that a refused form keeps them too.
        if self.filters_present.is_some() {
            values.insert("filters_present".into(), "1".into());
            values.insert("media".into(), self.media.clone());
            for (name, on) in self.boxes() {
                if on.is_some() {
                    values.insert(name.to_string(), "1".into());
                }
            }
        }
        values
    }

    fn boxes(&self) -> [(&'static str, &Option<String>); 24] {
        [
            ("action_push", &self.action_push),
            ("action_delete", &self.action_delete),
            ("action_pull", &self.action_pull),
            ("action_mount", &self.action_mount),
            ("action_scan_completed", &self.action_scan_completed),
            ("action_scan_failed", &self.action_scan_failed),
            ("action_quota_exceeded", &self.action_quota_exceeded),
            ("action_lint_failed", &self.action_lint_failed),
            ("action_repository_created", &self.action_repository_created),
            ("action_replication", &self.action_replication),
            ("action_tag_retention", &self.action_tag_retention),
            ("op_webhook_disabled", &self.op_webhook_disabled),
            ("op_webhook_circuit_opened", &self.op_webhook_circuit_opened),
            ("op_webhook_recovered", &self.op_webhook_recovered),
            ("op_delivery_exhausted", &self.op_delivery_exhausted),
            ("include_head_requests", &self.include_head_requests),
            ("match_untagged", &self.match_untagged),
            ("kind_image", &self.kind_image),
            ("kind_index", &self.kind_index),
            ("kind_referrer", &self.kind_referrer),
            ("exclude_synthesized", &self.exclude_synthesized),
            ("skip_tls_verify", &self.skip_tls_verify),
            ("clear_password", &self.clear_password),
            ("clear_token", &self.clear_token),
        ]
    }

    fn text_values(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("name".to_string(), self.name.clone()),
            ("url".to_string(), self.url.clone()),
            ("request_method".to_string(), self.request_method.clone()),
            ("content_type".to_string(), self.content_type.clone()),
            ("username".to_string(), self.username.clone()),
            ("format".to_string(), self.format.clone()),
            ("artifact_types".to_string(), self.artifact_types.clone()),
            ("subject_tags".to_string(), self.subject_tags.clone()),
            ("template".to_string(), self.template.clone()),
            ("sources".to_string(), self.sources.clone()),
            ("repositories".to_string(), self.repositories.clone()),
            ("tags".to_string(), self.tags.clone()),
            ("rate_limit".to_string(), self.rate_limit.clone()),
            ("ordering".to_string(), self.ordering.clone()),
            ("signature".to_string(), self.signature.clone()),
            (
                "client_certificate".to_string(),
                self.client_certificate.clone(),
            ),
            ("format_options".to_string(), self.format_options.clone()),
        ])
    }

    /// The rate limit field as the API takes it, when the form carries it: empty is none,
    /// and what is not a number is refused by the same check as any bad limit.
    pub fn rate_limit(&self) -> Option<Option<f64>> {
        self.filters_present.as_ref()?;
        let text = self.rate_limit.trim();
        Some((!text.is_empty()).then(|| text.parse().unwrap_or(f64::NAN)))
    }

    /// The ordering field, when the form carries it.
    pub fn ordering(&self) -> Option<String> {
        self.filters_present.as_ref()?;
        Some(self.ordering.clone())
    }

    /// The client certificate fields as webhook input: blank keeps (or, for a new webhook,
    /// means none), the remove box clears both; a blank one of the two is left out so the
    /// input's rule names it.
    #[allow(clippy::type_complexity)]
    pub fn client_identity(&self) -> (Option<Option<String>>, Option<Option<String>>) {
        if self.remove_client_certificate.is_some() {
            return (Some(None), None);
        }
        let given = |s: &str| (!s.trim().is_empty()).then(|| Some(s.to_string()));
        (given(&self.client_certificate), given(&self.client_key))
    }

    /// The token field as webhook input: blank keeps the current one (for a new webhook:
    /// none), the remove box clears it.
    pub fn token(&self) -> Option<Option<String>> {
        if self.clear_token.is_some() {
            return Some(None);
        }
        (!self.token.trim().is_empty()).then(|| Some(self.token.clone()))
    }

    /// The format options field as webhook input, when the form carries it: blank is none;
    /// text that is not the API's JSON object is refused, named as the API names it.
    pub fn format_options(&self) -> Result<Option<FormatOptions>, Invalid> {
        if self.filters_present.is_none() {
            return Ok(None);
        }
        let text = self.format_options.trim();
        if text.is_empty() {
            return Ok(Some(FormatOptions::default()));
        }
        serde_json::from_str(text).map(Some).map_err(|e| {
            Invalid::new(
                "format_options",
                format!(
                    "format options are a JSON object of event_type, ref, variables and \
                     registry: {e}"
                ),
            )
        })
    }

    /// The filters of the edit form; `None` when the form has no filter fields.
    pub fn filters(&self) -> Option<crate::domain::filters::Filters> {
        use crate::domain::artifact::ArtifactKind;
        use crate::domain::events::Action;
        use crate::domain::filters::{Filters, Media};
        self.filters_present.as_ref()?;
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut actions = Vec::new();
        for (on, action) in [
            (&self.action_push, Action::Push),
            (&self.action_delete, Action::Delete),
            (&self.action_pull, Action::Pull),
            (&self.action_mount, Action::Mount),
            (&self.action_scan_completed, Action::ScanCompleted),
            (&self.action_scan_failed, Action::ScanFailed),
            (&self.action_quota_exceeded, Action::QuotaExceeded),
            (&self.action_lint_failed, Action::LintFailed),
            (&self.action_repository_created, Action::RepositoryCreated),
            (&self.action_replication, Action::Replication),
            (&self.action_tag_retention, Action::TagRetention),
            (&self.op_webhook_disabled, Action::WebhookDisabled),
            (
                &self.op_webhook_circuit_opened,
                Action::WebhookCircuitOpened,
            ),
            (&self.op_webhook_recovered, Action::WebhookRecovered),
            (&self.op_delivery_exhausted, Action::DeliveryExhausted),
        ] {
            if on.is_some() {
                actions.push(action);
            }
        }
        Some(Filters {
            actions,
            sources: list(&self.sources),
            repositories: list(&self.repositories),
            tags: list(&self.tags),
            media: if self.media == "all" {
                Media::All
            } else {
                Media::Manifests
            },
            include_head_requests: self.include_head_requests.is_some(),
            match_untagged: self.match_untagged.is_some(),
            kinds: [
                (&self.kind_image, ArtifactKind::Image),
                (&self.kind_index, ArtifactKind::Index),
                (&self.kind_referrer, ArtifactKind::Referrer),
            ]
            .into_iter()
            .filter_map(|(on, kind)| on.is_some().then_some(kind))
            .collect(),
            artifact_types: list(&self.artifact_types),
            subject_tags: list(&self.subject_tags),
            exclude_synthesized: self.exclude_synthesized.is_some(),
        })
    }
}

/// `parsed` with one more problem, found outside the input (the form's own parsing).
pub fn with_problem<T>(
    parsed: Result<T, Vec<Invalid>>,
    problem: Option<Invalid>,
) -> Result<T, Vec<Invalid>> {
    match (parsed, problem) {
        (parsed, None) => parsed,
        (Ok(_), Some(problem)) => Err(vec![problem]),
        (Err(mut problems), Some(problem)) => {
            problems.push(problem);
            Err(problems)
        }
    }
}
