//! The payload formats a webhook can choose; rendering them is `hooks::formats`.

use serde::{Deserialize, Serialize};

use crate::domain::names::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The single event object exactly as the registry sent it (Portus parity).
    #[default]
    RegistryEvent,
    /// `{"events":[event]}`: the registry's own envelope, for receivers written for it.
    RegistryEnvelope,
    /// A CloudEvents 1.0 event in structured mode (`application/cloudevents+json`).
    Cloudevents,
    /// A CloudEvents 1.0 event in binary mode: `ce-*` headers, the registry event as body.
    CloudeventsBinary,
    /// A chat message for Slack, Mattermost and Rocket.Chat incoming webhooks.
    Slack,
    /// A Microsoft Teams message carrying an Adaptive Card (workflows and incoming webhooks).
    Teams,
    /// A Discord webhook execute body: `content` and an embed, pinging no one.
    Discord,
    /// A Mattermost incoming-webhook post in Mattermost's markdown.
    Mattermost,
    /// A Google Chat incoming-webhook message.
    GoogleChat,
    /// A user's minijinja template.
    Template,
    /// Flux's notification-controller, a Receiver of type `generic-hmac`: the deploy facts
    /// as JSON, signed in `X-Signature` with the webhook's token.
    Flux,
    /// Keel's native webhook (`/v1/webhooks/native`): the image's name, tag and digest.
    Keel,
    /// GitHub's `repository_dispatch` (`POST /repos/{owner}/{repo}/dispatches`), with the
    /// webhook's token as a Bearer token.
    GithubDispatch,
    /// GitLab's pipeline trigger API (`POST /projects/:id/trigger/pipeline`), with the
    /// webhook's token as the trigger token.
    GitlabTrigger,
    /// Docker Hub's push webhook body, which Flux, Keel, Argo CD Image Updater and Jenkins read.
    Dockerhub,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegistryEvent => "registry-event",
            Self::RegistryEnvelope => "registry-envelope",
            Self::Cloudevents => "cloudevents",
            Self::CloudeventsBinary => "cloudevents-binary",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Discord => "discord",
            Self::Mattermost => "mattermost",
            Self::GoogleChat => "google-chat",
            Self::Template => "template",
            Self::Flux => "flux",
            Self::Keel => "keel",
            Self::GithubDispatch => "github-dispatch",
            Self::GitlabTrigger => "gitlab-trigger",
            Self::Dockerhub => "dockerhub",
        }
    }

    /// Every format, in the order they are listed to users.
    pub const ALL: [Format; 15] = [
        Self::RegistryEvent,
        Self::RegistryEnvelope,
        Self::Cloudevents,
        Self::CloudeventsBinary,
        Self::Slack,
        Self::Teams,
        Self::Discord,
        Self::Mattermost,
        Self::GoogleChat,
        Self::Template,
        Self::Flux,
        Self::Keel,
        Self::GithubDispatch,
        Self::GitlabTrigger,
        Self::Dockerhub,
    ];

    /// The format of this name, as stored.
    pub fn named(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Self::named(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|f| f.as_str()).collect();
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            Invalid::new(
                "format",
                format!(
                    "format must be {} or {last}, not '{}'",
                    rest.join(", "),
                    s.chars().take(80).collect::<String>()
                ),
            )
        })
    }

    /// Why this format must be sent with POST, if it must: the CloudEvents HTTP webhook
    /// spec says so, and the chat services' incoming webhooks take nothing else.
    pub fn needs_post(self) -> Option<&'static str> {
        match self {
            Self::Cloudevents | Self::CloudeventsBinary => {
                Some("CloudEvents over HTTP webhooks must be delivered with POST")
            }
            Self::Slack => Some("Slack incoming webhooks accept only POST"),
            Self::Teams => Some("Microsoft Teams webhooks accept only POST"),
            Self::Discord => Some("Discord webhooks are executed only with POST"),
            Self::Mattermost => Some("Mattermost incoming webhooks accept only POST"),
            Self::GoogleChat => Some("Google Chat incoming webhooks accept only POST"),
            Self::Flux => Some(
                "Flux reads the signed body of a POST (and its CEL resource filters read it as `req`)",
            ),
            Self::Keel => Some("Keel's webhook triggers are routed for POST only"),
            Self::GithubDispatch => Some("GitHub creates a repository dispatch event only on POST"),
            Self::GitlabTrigger => Some("GitLab triggers a pipeline only on POST"),
            Self::Dockerhub => {
                Some("the tools that read Docker Hub's webhook (Keel, Argo CD Image Updater) take only POST")
            }
            Self::RegistryEvent | Self::RegistryEnvelope | Self::Template => None,
        }
    }

    /// Why this format cannot be form-encoded, if it cannot: no CloudEvents SDK reads a
    /// CloudEvent from `payload=...` form data, and Teams, Discord and Google Chat read only
    /// JSON (Slack and Mattermost also read `payload=`).
    pub fn refuses_form(self) -> Option<&'static str> {
        match self {
            Self::Cloudevents | Self::CloudeventsBinary => Some(
                "CloudEvents are sent as JSON; application/x-www-form-urlencoded is not a CloudEvents mode",
            ),
            Self::Teams => Some("Microsoft Teams webhooks read only JSON bodies"),
            Self::Discord => Some("Discord webhooks read JSON (or multipart), not payload= forms"),
            Self::GoogleChat => Some("Google Chat incoming webhooks read only JSON bodies"),
            Self::Flux => Some(
                "Flux's CEL resource filters read only a JSON body; a payload= form would hide the deploy's facts",
            ),
            Self::Keel => Some("Keel decodes its native webhook from JSON only"),
            Self::GithubDispatch => Some("GitHub's dispatches endpoint reads only JSON"),
            Self::GitlabTrigger => Some(
                "GitLab reads the trigger's token, ref and variables from the JSON body Herald writes; a payload= form would hide them",
            ),
            Self::Dockerhub => Some("Docker Hub's webhook body is JSON, and the tools that read it decode only JSON"),
            _ => None,
        }
    }
}

impl Format {
    /// Whether this format triggers a deploy: then it is sent only for a push of a tagged
    /// manifest, whatever the webhook's filters say (a delete, a pull, a blob, a push by
    /// digest or one of Herald's operational events must not start a deploy).
    pub fn triggers_deploy(self) -> bool {
        matches!(
            self,
            Self::Flux | Self::Keel | Self::GithubDispatch | Self::GitlabTrigger | Self::Dockerhub
        )
    }

    /// Whether a webhook of this format gets a delivery for an event with these facts: any
    /// the filters let through, but only tagged manifest pushes for a deploy format.
    pub fn wants(self, facts: &crate::domain::events::EventFacts) -> bool {
        !self.triggers_deploy() || facts.is_tagged_push()
    }
}
