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
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            Invalid::new(
                "format",
                format!("format must be registry-event, registry-envelope, cloudevents, cloudevents-binary, slack, teams, discord, mattermost, google-chat or template, not '{s}'"),
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
            _ => None,
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
            _ => None,
        }
    }
}
