//! Chat messages: Slack, Microsoft Teams, Discord, Mattermost and Google Chat, each with
//! registry text escaped for its service and within its documented limits.

use chrono::Utc;
use serde_json::Value;

use super::cloudevents::event_time;
use super::view::{facts, parsed, text};
use crate::domain::artifact::ArtifactKind;

/// `sha256:7a6c8d182783…`: enough to recognise, short enough to read.
pub(super) fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) if hex.chars().count() > 12 => {
            format!("{algo}:{}…", hex.chars().take(12).collect::<String>())
        }
        _ => digest.to_string(),
    }
}

/// Registry text where `&`, `<` and `>` are control characters: Slack's mrkdwn (`<!channel>`
/// pings everyone, `<url|text>` is a link) and Google Chat's text (`<users/all>` mentions
/// everyone). Both document escaping them as HTML entities.
pub(super) fn entities(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Registry text inside the CommonMark-like markdown of Teams (Adaptive Cards), Discord and
/// Mattermost: every character that can start emphasis, a link, code, a quote, a spoiler,
/// an autolink, an entity or a channel link is backslash-escaped (CommonMark allows that
/// for any ASCII punctuation), and a zero-width space after each `@` keeps `@channel`,
/// `@all`, `@here` and `@everyone` from being mentions.
pub(super) fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '~' | '|' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '&'
            | '!' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200B}"),
            c => out.push(c),
        }
    }
    out
}

/// Unicode's bidirectional formatting characters: embeddings, overrides and isolates, and
/// the marks. In a name they can make `evil\u{202E}gpj.exe` read as `evilexe.jpg`.
pub(super) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// At most `max` characters, the last an ellipsis when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escaped text in at most `max` characters, the last an ellipsis when cut; an escape the
/// cut would split (`&am`, a lone backslash) goes too, so the cut never shows as junk or escapes
/// the ellipsis.
pub(super) fn clip_markup(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = kept.rfind('&') {
        if kept.len() - amp < "&amp;".len() && !kept[amp..].contains(';') {
            kept.truncate(amp);
        }
    }
    if kept.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1 {
        kept.pop();
    }
    kept.push('…');
    kept
}

/// What one registry-supplied field may take of a message, so that even fully escaped
/// (`&` becomes five characters) every text stays within the tightest limit it is put in,
/// and a final cut never splits an escape. Repository names can be 255 characters long,
/// tags 128.
pub(super) fn field_max(pointer: &str) -> usize {
    match pointer {
        "/target/repository" => 250,
        "/target/tag" => 128,
        _ => 150,
    }
}

/// What happened, as every chat format tells it: the registry's fields clipped to
/// [`field_max`], control characters (line breaks that could start a markdown list or
/// quote) made spaces, and nothing escaped yet: each format escapes for its service.
pub(super) struct Summary {
    actor: String,
    verb: String,
    /// A rename's new path.
    renamed_to: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    registry: Option<String>,
    time: String,
    /// An index's platforms, `linux/amd64, linux/arm64`, for a push.
    platforms: Option<String>,
    /// A reconcile made the event up: the registry never sent it.
    synthesized: bool,
}

/// What the platforms of one index may take of a message.
const PLATFORMS_MAX: usize = 200;

impl Summary {
    fn of(v: &Value) -> Self {
        let field = |pointer: &str| {
            text(v, pointer).map(|t| {
                // Line breaks become spaces; a bidi control (U+202E turns the rest of a
                // line around) becomes U+FFFD, so a name reads as the registry holds it.
                let flat: String = t
                    .chars()
                    .map(|c| match c {
                        c if c.is_control() => ' ',
                        c if is_bidi_control(c) => '\u{FFFD}',
                        c => c,
                    })
                    .collect();
                clip(&flat, field_max(pointer))
            })
        };
        let action = field("/action").unwrap_or_default();
        let verb = match action.as_str() {
            "push" => "pushed",
            "delete" => "deleted",
            "pull" => "pulled",
            "mount" => "mounted",
            "ping" => "pinged",
            "rename" => "renamed",
            "scan_completed" => "scanned",
            "scan_failed" => "failed to scan",
            "scan_stopped" => "stopped scanning",
            "quota_exceeded" => "hit the quota with",
            "quota_warning" => "neared the quota with",
            "repository_created" => "created",
            "replication" => "replicated",
            "tag_retention" => "ran tag retention on",
            "lint_failed" => "failed lint with",
            other => other,
        }
        .to_string();
        // GitLab's renames name the old path as the repository and the new one here.
        let renamed_to = (action == "rename")
            .then(|| field("/target/rename/to"))
            .flatten();
        let mut summary = Summary {
            actor: field("/actor/name").unwrap_or_else(|| "someone".into()),
            verb,
            renamed_to,
            repository: field("/target/repository").unwrap_or_default(),
            tag: field("/target/tag"),
            digest: field("/target/digest"),
            registry: field("/source/addr"),
            time: event_time(text(v, "/timestamp"), Utc::now()),
            platforms: None,
            synthesized: v.pointer("/herald/synthesized").is_some(),
        };
        if action == "push" {
            summary.tell_what_was_pushed(v);
        }
        summary
    }

    /// A referrer is "attached to" its subject (`alice attached an SBOM to acme/web:1.0`),
    /// an index names its platforms (`... for linux/amd64, linux/arm64`).
    fn tell_what_was_pushed(&mut self, v: &Value) {
        let Some(f) = facts(v) else {
            return;
        };
        match f.kind {
            ArtifactKind::Referrer => {
                self.verb = format!("attached {} to", f.referrer_noun());
                // The subject by its tag when Herald knows one, and by its digest: the
                // referrer's own digest is in the event.
                self.tag = f
                    .subject_tags
                    .first()
                    .map(|t| clip(t, field_max("/target/tag")));
                self.digest = f.subject.as_deref().map(|d| clip(d, field_max("")));
            }
            ArtifactKind::Index if !f.platforms.is_empty() => {
                let list = f
                    .platforms
                    .iter()
                    .map(|p| {
                        p.chars()
                            .map(|c| {
                                if c.is_control() || is_bidi_control(c) {
                                    '\u{FFFD}'
                                } else {
                                    c
                                }
                            })
                            .collect::<String>()
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                self.platforms = Some(clip(&list, PLATFORMS_MAX));
            }
            _ => {}
        }
    }

    /// `repository:tag`, else the repository.
    fn what(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{}:{tag}", self.repository),
            None => self.repository.clone(),
        }
    }

    /// What the verb acts on: [`Self::what`], for a rename ` to ` the new path, and for
    /// an index ` for ` its platforms.
    fn object(&self) -> String {
        let what = match &self.renamed_to {
            Some(to) => format!("{} to {to}", self.what()),
            None => self.what(),
        };
        match &self.platforms {
            Some(platforms) => format!("{what} for {platforms}"),
            None => what,
        }
    }

    fn short_digest(&self) -> Option<String> {
        self.digest.as_deref().map(short_digest)
    }

    /// `alice pushed alice/tool:v2 (sha256:7a6c8d182783…)`, unescaped.
    fn line(&self) -> String {
        let head = format!("{} {} {}", self.actor, self.verb, self.object());
        match self.short_digest() {
            Some(d) => format!("{head} ({d})"),
            None => head,
        }
    }

    /// `digest …`, `registry …` and `via Herald`, each escaped with `escape`.
    fn context(&self, escape: fn(&str) -> String, digest: impl Fn(String) -> String) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.short_digest() {
            parts.push(format!("digest {}", digest(escape(&d))));
        }
        if let Some(addr) = &self.registry {
            parts.push(format!("registry {}", escape(addr)));
        }
        if self.synthesized {
            parts.push("found by a reconcile: the registry sent no event".to_string());
        }
        parts.push("via Herald".to_string());
        parts.join(" · ")
    }
}

/// Block Kit's limit on a text object in a section or a context element.
pub(super) const SLACK_TEXT_MAX: usize = 3000;

pub(super) fn slack(event: &str) -> Result<String, String> {
    let s = Summary::of(&parsed(event)?);
    let mut to = match &s.renamed_to {
        Some(to) => format!(" to `{}`", entities(to)),
        None => String::new(),
    };
    if let Some(platforms) = &s.platforms {
        to.push_str(&format!(" for {}", entities(platforms)));
    }
    let section = format!(
        "*{}* {} `{}`{to}",
        entities(&s.actor),
        entities(&s.verb),
        entities(&s.what())
    );
    let context = s.context(entities, |d| format!("`{d}`"));
    let message = serde_json::json!({
        "text": clip_markup(&entities(&s.line()), SLACK_TEXT_MAX),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": clip_markup(&section, SLACK_TEXT_MAX)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": clip_markup(&context, SLACK_TEXT_MAX)}]}
        ]
    });
    Ok(message.to_string())
}

/// Teams has no limit on one text block, only on the whole message (28 KB); this keeps
/// each text far below it.
pub(super) const TEAMS_TEXT_MAX: usize = 4000;

pub(super) fn teams(event: &str) -> Result<String, String> {
    let s = Summary::of(&parsed(event)?);
    let headline = format!(
        "**{}** {} {}",
        markdown(&s.actor),
        markdown(&s.verb),
        markdown(&s.object())
    );
    let mut facts =
        vec![serde_json::json!({"title": "Repository", "value": markdown(&s.repository)})];
    if let Some(tag) = &s.tag {
        facts.push(serde_json::json!({"title": "Tag", "value": markdown(tag)}));
    }
    if let Some(d) = &s.digest {
        facts.push(serde_json::json!({"title": "Digest", "value": markdown(d)}));
    }
    facts.push(serde_json::json!({"title": "Actor", "value": markdown(&s.actor)}));
    if let Some(addr) = &s.registry {
        facts.push(serde_json::json!({"title": "Registry", "value": markdown(addr)}));
    }
    let message = serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": clip_markup(&headline, TEAMS_TEXT_MAX), "wrap": true, "size": "Medium"},
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": "via Herald", "isSubtle": true, "size": "Small", "wrap": true}
                ]
            }
        }]
    });
    Ok(message.to_string())
}

/// Discord's documented limits on a webhook message and its embeds.
pub(super) const DISCORD_CONTENT_MAX: usize = 2000;
pub(super) const DISCORD_TITLE_MAX: usize = 256;
pub(super) const DISCORD_FIELD_VALUE_MAX: usize = 1024;
pub(super) const DISCORD_FOOTER_MAX: usize = 2048;

pub(super) fn discord(event: &str) -> Result<String, String> {
    let s = Summary::of(&parsed(event)?);
    let content = format!(
        "**{}** {} {}",
        markdown(&s.actor),
        markdown(&s.verb),
        markdown(&s.object())
    );
    let field = |name: &str, value: &str, inline: bool| {
        serde_json::json!({
            "name": name,
            "value": clip_markup(&markdown(value), DISCORD_FIELD_VALUE_MAX),
            "inline": inline,
        })
    };
    let mut fields = vec![field("Repository", &s.repository, true)];
    if let Some(tag) = &s.tag {
        fields.push(field("Tag", tag, true));
    }
    if let Some(d) = &s.digest {
        fields.push(field("Digest", d, false));
    }
    // Footers are plain text: the registry's address needs no escape there.
    let footer = match &s.registry {
        Some(addr) => format!("{addr} · via Herald"),
        None => "via Herald".to_string(),
    };
    // Field names are Herald's own; three fields of at most 1024 characters, a title of 256
    // and a short footer stay within the 6,000 characters an embed may hold in all.
    let message = serde_json::json!({
        "content": clip_markup(&content, DISCORD_CONTENT_MAX),
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": clip_markup(&markdown(&s.what()), DISCORD_TITLE_MAX),
            "fields": fields,
            "footer": {"text": clip_markup(&footer, DISCORD_FOOTER_MAX)},
            "timestamp": s.time,
        }]
    });
    Ok(message.to_string())
}

/// Mattermost's limit on a post's text (16,383 characters since Mattermost 5.0).
pub(super) const MATTERMOST_TEXT_MAX: usize = 16383;

pub(super) fn mattermost(event: &str) -> Result<String, String> {
    let s = Summary::of(&parsed(event)?);
    let text = format!(
        "**{}** {} {}\n{}",
        markdown(&s.actor),
        markdown(&s.verb),
        markdown(&s.object()),
        s.context(markdown, |d| d)
    );
    Ok(serde_json::json!({ "text": clip_markup(&text, MATTERMOST_TEXT_MAX) }).to_string())
}

/// Google Chat's limit on a message's text.
pub(super) const GOOGLE_CHAT_TEXT_MAX: usize = 4096;

pub(super) fn google_chat(event: &str) -> Result<String, String> {
    let s = Summary::of(&parsed(event)?);
    let text = format!(
        "*{}* {} {}\n{}",
        entities(&s.actor),
        entities(&s.verb),
        entities(&s.object()),
        s.context(entities, |d| d)
    );
    Ok(serde_json::json!({ "text": clip_markup(&text, GOOGLE_CHAT_TEXT_MAX) }).to_string())
}
