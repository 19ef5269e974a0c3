//! The deploy tools' formats: each body is built from what the tool's own code reads, and
//! each is sent only for a push of a tagged manifest (ingest gives a deploy webhook nothing
//! else; a retrigger after a change of format is refused here, with the reason).
//!
//! - `flux`: fluxcd/notification-controller at 2e46958a67f3af0e3e755a4fcaf7397d5803725e,
//!   `internal/server/receiver_handlers.go`: a `generic-hmac` Receiver reads the whole
//!   body, checks `X-Signature` with go-github's `ValidateSignature` (google/go-github
//!   v64.0.0, 480e0733536e878fe9c05e6bc404efcecf412e71, `github/messages.go`: `sha1=`,
//!   `sha256=` or `sha512=` and the hex HMAC of the body keyed with the Receiver's token),
//!   then gives its CEL resource filters the body as `req` when the content type is
//!   `application/json` (`receiver_resource_filter.go`). The body is the deploy's facts,
//!   flat, so that filters read `req.repository`, `req.tag`, `req.image`.
//! - `keel`: keel-hq/keel at 6ac9dc5cfec1fa53c4d95972c00e5f670b988bf4,
//!   `pkg/http/native_webhook_trigger.go` decodes `types.Repository` (`name`, `tag`,
//!   `digest`; `types/types.go`) and refuses an empty name or tag; the image's name carries
//!   the registry's address, as keel's own registry-notification handler writes it
//!   (`pkg/http/registry_notifications.go`: `request.host + "/" + repository`), since keel
//!   matches it against the images of deployments.
//! - `github-dispatch`: github/rest-api-description at
//!   0000036e42b5e7121c2b1ac244cb7bba1d2f3914,
//!   `descriptions/api.github.com/api.github.com.2022-11-28.yaml`, operation
//!   `repos/create-dispatch-event`: `event_type` (1 to 100 characters, required) and
//!   `client_payload` (an object of at most 10 top-level properties, under 64 KB).
//! - `gitlab-trigger`: gitlabhq/gitlabhq at 1847ddf46ce5294644dfc6714e8621ce49b2ba09,
//!   `lib/api/ci/triggers.rb`: `ref` (a non-blank string) and `token` (the trigger token)
//!   required, `variables` a Hash whose keys and values must all be strings (else 400). It
//!   is a Grape API, which reads a JSON body as it reads form parameters; the body is JSON,
//!   and `payload::render` adds the token to it.
//! - `dockerhub`: Docker Hub is closed, so the body is what the tools that accept it decode:
//!   keel (same commit, `pkg/http/dockerhub_webhook_trigger.go`: every field typed, so an
//!   integer must be an integer), argoproj-labs/argocd-image-updater at
//!   de2cfec67880a232bbdfce81c985796251be242a (`pkg/webhook/docker.go`: `repository.name`,
//!   `namespace`, `repo_name`, `push_data.tag`) and Flux's `dockerhub` Receiver (same commit
//!   as above: `push_data.tag`, `repository.repo_url`).

use serde::Serialize;
use serde_json::Value;

use super::cloudevents::event_time;
use super::view::{parsed, subject, text};
use super::Rendered;
use crate::domain::delivery::EventRecord;
use crate::domain::deploy::{FormatOptions, HERALD_VARIABLE_PREFIX};
use crate::domain::format::Format;

/// What a deploy tool is told: the facts of one tagged push, each a string ("" when the
/// registry did not say). Nine, so that they fit GitHub's ten `client_payload` properties
/// as they are; GitLab gets them as `HERALD_<NAME>` variables.
#[derive(Debug, Serialize)]
pub(super) struct Facts {
    /// The registry's id for the event.
    id: String,
    repository: String,
    tag: String,
    digest: String,
    media_type: String,
    /// The registry's address in image names: the `registry` option, else the address the
    /// image was pushed to.
    registry: String,
    /// `registry/repository:tag`, what a deployment's image says.
    image: String,
    /// Who pushed, when the registry authenticates users.
    actor: String,
    /// RFC 3339.
    timestamp: String,
}

impl Facts {
    /// The facts of a tagged push, or why this event is not one.
    fn of(
        format: Format,
        v: &Value,
        record: &EventRecord,
        options: &FormatOptions,
    ) -> Result<Self, String> {
        let field = |pointer: &str| text(v, pointer).unwrap_or("").to_string();
        let action = field("/action");
        let tag = field("/target/tag");
        if action != "push" || tag.is_empty() {
            let what = match action.as_str() {
                "push" => "a push without a tag".to_string(),
                "" => "an event without an action".to_string(),
                other => format!("a {other}"),
            };
            return Err(format!(
                "the {} format triggers deploys only for pushes of tagged manifests; this \
                 event is {what} ({})",
                format.as_str(),
                subject(v)
            ));
        }
        let repository = field("/target/repository");
        let registry = options
            .registry
            .clone()
            .unwrap_or_else(|| field("/request/host"));
        let image = match registry.as_str() {
            "" => format!("{repository}:{tag}"),
            r => format!("{r}/{repository}:{tag}"),
        };
        Ok(Self {
            id: field("/id"),
            digest: field("/target/digest"),
            media_type: field("/target/mediaType"),
            actor: field("/actor/name"),
            timestamp: event_time(text(v, "/timestamp"), record.received_at),
            repository,
            tag,
            registry,
            image,
        })
    }

    /// The image's name without its tag: `registry/repository`.
    fn name(&self) -> String {
        match self.registry.as_str() {
            "" => self.repository.clone(),
            r => format!("{r}/{}", self.repository),
        }
    }

    fn as_object(&self) -> serde_json::Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// The body (and headers) of a deploy format for the event `view` (distribution's shape).
pub(super) fn render(
    format: Format,
    options: &FormatOptions,
    view: &str,
    record: &EventRecord,
) -> Result<Rendered, String> {
    let v = parsed(view)?;
    let facts = Facts::of(format, &v, record, options)?;
    let json = |body: Value| Ok(Rendered::plain(body.to_string()));
    match format {
        Format::Flux => json(Value::Object(facts.as_object())),
        Format::Keel => {
            let mut body = serde_json::json!({"name": facts.name(), "tag": facts.tag});
            if !facts.digest.is_empty() {
                body["digest"] = Value::String(facts.digest.clone());
            }
            json(body)
        }
        Format::GithubDispatch => {
            let event_type = options
                .event_type
                .as_deref()
                .ok_or("the github-dispatch format needs format_options.event_type")?;
            Ok(Rendered {
                headers: vec![
                    ("Accept".into(), "application/vnd.github+json".into()),
                    ("X-GitHub-Api-Version".into(), "2022-11-28".into()),
                ],
                ..Rendered::plain(
                    serde_json::json!({
                        "event_type": event_type,
                        "client_payload": facts.as_object(),
                    })
                    .to_string(),
                )
            })
        }
        Format::GitlabTrigger => {
            let git_ref = options
                .git_ref
                .as_deref()
                .ok_or("the gitlab-trigger format needs format_options.ref")?;
            json(serde_json::json!({
                "ref": git_ref,
                "variables": gitlab_variables(&facts, options),
            }))
        }
        Format::Dockerhub => json(dockerhub(&facts, options)),
        other => Err(format!("{} is not a deploy format", other.as_str())),
    }
}

/// `HERALD_REPOSITORY`, `HERALD_TAG`, ... and the webhook's own variables, every value a
/// string, as GitLab's trigger API requires.
fn gitlab_variables(facts: &Facts, options: &FormatOptions) -> serde_json::Map<String, Value> {
    let mut variables: serde_json::Map<String, Value> = facts
        .as_object()
        .into_iter()
        .map(|(name, value)| {
            let name = format!("{HERALD_VARIABLE_PREFIX}{}", name.to_ascii_uppercase());
            (name, value)
        })
        .collect();
    for (name, value) in &options.variables {
        variables.insert(name.clone(), Value::String(value.clone()));
    }
    variables
}

/// Docker Hub's push webhook, every field its readers type: strings, booleans, and integers
/// where keel decodes `int`. `repo_name` is the repository as Docker Hub names one
/// (`namespace/name`), with the `registry` option before it only when that is set: keel
/// then matches it against images of that registry; argo's reader takes it as docker.io's.
fn dockerhub(facts: &Facts, options: &FormatOptions) -> Value {
    let (namespace, name) = facts
        .repository
        .rsplit_once('/')
        .unwrap_or(("", facts.repository.as_str()));
    let owner = facts.repository.split('/').next().unwrap_or("");
    let repo_name = match &options.registry {
        Some(registry) => format!("{registry}/{}", facts.repository),
        None => facts.repository.clone(),
    };
    // The registry's tag list for the repository: a URL that exists, where Docker Hub
    // points at its web page.
    let repo_url = match facts.registry.as_str() {
        "" => String::new(),
        r => format!("https://{r}/v2/{}/tags/list", facts.repository),
    };
    let pushed_at = crate::domain::events::parse_time(&facts.timestamp)
        .map(|t| t.timestamp())
        .unwrap_or(0);
    serde_json::json!({
        "callback_url": "",
        "push_data": {
            "pushed_at": pushed_at,
            "pusher": facts.actor,
            "tag": facts.tag,
            "images": [],
        },
        "repository": {
            "repo_name": repo_name,
            "name": name,
            "namespace": namespace,
            "owner": owner,
            "repo_url": repo_url,
            "status": "Active",
            "description": "",
            "full_description": "",
            "dockerfile": "",
            "is_trusted": false,
            "is_official": false,
            "is_private": false,
            "star_count": 0,
            "comment_count": 0,
            "date_created": 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    const TAGGED: &str = "distribution-2.8.2/push-manifest-tagged.json";
    const WITH_ACTOR: &str = "distribution-2.8.2/push-manifest-with-actor-and-references.json";

    fn options(json: Value) -> FormatOptions {
        serde_json::from_value(json).unwrap()
    }

    fn body(format: Format, opts: &FormatOptions, fixture: &str) -> Value {
        let r = render(format, opts, &event(fixture), &EventRecord::default()).unwrap();
        serde_json::from_str(&r.body).unwrap()
    }

    #[test]
    fn flux_gets_the_flat_facts() {
        let b = body(Format::Flux, &FormatOptions::default(), WITH_ACTOR);
        assert_eq!(
            b,
            serde_json::json!({
                "id": "41f44862-abaa-4c34-bd41-5a194af78d77",
                "repository": "alice/tool",
                "tag": "v2",
                "digest": "sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31",
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "registry": "127.0.0.1:5001",
                "image": "127.0.0.1:5001/alice/tool:v2",
                "actor": "alice",
                "timestamp": "2026-11-26T21:38:19.918574769Z",
            })
        );
    }

    #[test]
    fn the_registry_option_names_the_image() {
        let o = options(serde_json::json!({"registry": "registry.example.org"}));
        assert_eq!(
            body(Format::Flux, &o, TAGGED)["image"],
            "registry.example.org/acme/web:1.0"
        );
        assert_eq!(
            body(Format::Keel, &o, TAGGED),
            serde_json::json!({
                "name": "registry.example.org/acme/web",
                "tag": "1.0",
                "digest": "sha256:7a6c8d1827831df4d97af55fb131c0c0f3146961996ce75cb482291fd1c81a31",
            })
        );
        let hub = body(Format::Dockerhub, &o, TAGGED);
        assert_eq!(
            hub["repository"]["repo_name"],
            "registry.example.org/acme/web"
        );
        let plain = body(Format::Dockerhub, &FormatOptions::default(), TAGGED);
        assert_eq!(plain["repository"]["repo_name"], "acme/web");
        assert_eq!(
            plain["repository"]["repo_url"],
            "https://127.0.0.1:5001/v2/acme/web/tags/list"
        );
    }

    #[test]
    fn github_payload_fits_githubs_limit() {
        let o = options(serde_json::json!({"event_type": "registry-push"}));
        let b = body(Format::GithubDispatch, &o, WITH_ACTOR);
        assert_eq!(b["event_type"], "registry-push");
        let payload = b["client_payload"].as_object().unwrap();
        assert!(payload.len() <= 10, "{payload:?}");
        assert_eq!(payload["image"], "127.0.0.1:5001/alice/tool:v2");
        let r = render(
            Format::GithubDispatch,
            &o,
            &event(TAGGED),
            &EventRecord::default(),
        )
        .unwrap();
        assert!(r
            .headers
            .contains(&("X-GitHub-Api-Version".into(), "2022-11-28".into())));
    }

    #[test]
    fn gitlab_variables_are_strings_and_the_webhooks_own_come_too() {
        let o = options(serde_json::json!({"ref": "main", "variables": {"ENVIRONMENT": "prod"}}));
        let b = body(Format::GitlabTrigger, &o, TAGGED);
        assert_eq!(b["ref"], "main");
        assert!(b.get("token").is_none(), "the token is added when sent");
        let vars = b["variables"].as_object().unwrap();
        assert!(vars.values().all(Value::is_string));
        assert_eq!(vars["HERALD_TAG"], "1.0");
        assert_eq!(vars["HERALD_ACTOR"], "");
        assert_eq!(vars["ENVIRONMENT"], "prod");
        assert_eq!(vars.len(), 10);
    }

    #[test]
    fn dockerhub_integers_are_integers() {
        let b = body(Format::Dockerhub, &FormatOptions::default(), WITH_ACTOR);
        assert_eq!(b["push_data"]["pushed_at"], 1_795_729_099);
        assert_eq!(b["push_data"]["pusher"], "alice");
        assert_eq!(b["repository"]["namespace"], "alice");
        assert_eq!(b["repository"]["name"], "tool");
        let nested = event(TAGGED).replace("\"acme/web\"", "\"acme/web/api\"");
        let r = render(
            Format::Dockerhub,
            &FormatOptions::default(),
            &nested,
            &EventRecord::default(),
        )
        .unwrap();
        let b: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(b["repository"]["namespace"], "acme/web");
        assert_eq!(b["repository"]["name"], "api");
        assert_eq!(b["repository"]["owner"], "acme");
    }

    #[test]
    fn only_tagged_pushes_make_a_deploy() {
        for (fixture, what) in [
            (
                "distribution-2.8.2/delete-tag.json",
                "a delete (acme/web:1.0)",
            ),
            (
                "distribution-2.8.2/delete-manifest-digest.json",
                "a delete (acme/web@sha256:",
            ),
            ("distribution-2.8.2/pull-manifest.json", "a pull"),
            (
                "distribution-2.8.2/push-config-blob.json",
                "a push without a tag",
            ),
        ] {
            for format in [
                Format::Flux,
                Format::Keel,
                Format::GithubDispatch,
                Format::GitlabTrigger,
                Format::Dockerhub,
            ] {
                let o = options(serde_json::json!({"event_type": "x", "ref": "main"}));
                let e = render(format, &o, &event(fixture), &EventRecord::default()).unwrap_err();
                assert!(
                    e.contains("only for pushes of tagged manifests") && e.contains(what),
                    "{format:?} {fixture}: {e}"
                );
            }
        }
    }
}
