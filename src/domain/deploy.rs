//! The deploy formats' settings: the token each authenticates with, the options each reads,
//! and the one rule that says whether a webhook's format, token, options and password go
//! together. The API, the web UI and the command line all reach it through
//! `hooks::input`, at create and at every update, so they accept and refuse alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::format::Format;
use super::names::Invalid;

/// How a format sends the webhook's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// `X-Signature: sha256=<hex>`, the HMAC-SHA256 of the body keyed with the token: what
    /// Flux's `generic-hmac` Receiver checks (through go-github's `ValidateSignature`).
    HmacSignature,
    /// `Authorization: Bearer <token>`: GitHub's REST API.
    Bearer,
    /// The body's `token` field: GitLab's trigger API reads the trigger token there.
    BodyField,
}

impl Format {
    /// How this format sends the webhook's token; `None`: it sends none, and a webhook of
    /// this format may not have one (a token that is never sent is a mistake to point out).
    pub fn token_use(self) -> Option<TokenUse> {
        match self {
            Self::Flux => Some(TokenUse::HmacSignature),
            Self::GithubDispatch => Some(TokenUse::Bearer),
            Self::GitlabTrigger => Some(TokenUse::BodyField),
            _ => None,
        }
    }

    /// What the token is to the tool, for messages.
    fn token_meaning(self) -> &'static str {
        match self {
            Self::Flux => "the Receiver's token, the HMAC key of X-Signature",
            Self::GithubDispatch => {
                "a GitHub token allowed to create repository dispatch events (sent as a Bearer token)"
            }
            Self::GitlabTrigger => "the project's pipeline trigger token",
            _ => "",
        }
    }
}

/// The non-secret settings of the deploy formats; each format reads only some of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FormatOptions {
    /// `github-dispatch` (required): the `event_type` of the repository dispatch, 1 to 100
    /// characters; workflows choose it with `on: repository_dispatch: types: [...]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// `gitlab-trigger` (required): the branch or tag whose pipeline runs.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// `gitlab-trigger`: more CI/CD variables for the pipeline, name to value (names of
    /// letters, digits and `_`, not starting with `HERALD_`, which are Herald's own).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Every deploy format: the registry's address as image names hold it
    /// (`registry.example.org:5000`), when it is not the address the image was pushed to
    /// (the event's `request.host`). `dockerhub` puts it before `repo_name` only when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// Most extra variables a `gitlab-trigger` webhook may send.
pub const MAX_VARIABLES: usize = 50;
/// GitHub's limit on `event_type` (the OpenAPI description's `maxLength`).
pub const EVENT_TYPE_MAX: usize = 100;
/// The prefix of the variables Herald sets itself.
pub const HERALD_VARIABLE_PREFIX: &str = "HERALD_";

impl FormatOptions {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The options' names that are set, as `format_options.<name>`.
    fn set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.event_type.is_some() {
            set.push("event_type");
        }
        if self.git_ref.is_some() {
            set.push("ref");
        }
        if !self.variables.is_empty() {
            set.push("variables");
        }
        if self.registry.is_some() {
            set.push("registry");
        }
        set
    }

    /// Stored as JSON text; `None` when no option is set.
    pub fn to_stored(&self) -> Option<String> {
        (!self.is_empty()).then(|| serde_json::to_string(self).unwrap_or_default())
    }

    /// As stored; a row that does not read (hand-edited) has no options, and its webhook's
    /// deliveries then say what is missing.
    pub fn from_stored(text: Option<&str>) -> Self {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }
}

/// The options `format` reads.
fn reads(format: Format) -> &'static [&'static str] {
    match format {
        Format::GithubDispatch => &["event_type", "registry"],
        Format::GitlabTrigger => &["ref", "variables", "registry"],
        Format::Flux | Format::Keel | Format::Dockerhub => &["registry"],
        _ => &[],
    }
}

/// A webhook's format, format options, token and password as they will be after a create
/// or an update, checked together: a format's required token and options are there, and
/// nothing is set that the format would not send. The first problem, naming its field.
pub fn check_settings(
    format: Format,
    options: &FormatOptions,
    has_token: bool,
    has_password: bool,
) -> Result<(), Invalid> {
    let name = format.as_str();
    match (format.token_use(), has_token) {
        (Some(_), false) => {
            return Err(Invalid::new(
                "token",
                format!("the {name} format needs a token: {}", format.token_meaning()),
            ))
        }
        (None, true) => {
            return Err(Invalid::new(
                "token",
                format!(
                    "the {name} format sends no token (only flux, github-dispatch and gitlab-trigger do); remove it"
                ),
            ))
        }
        _ => {}
    }
    if format == Format::GithubDispatch && has_password {
        return Err(Invalid::new(
            "password",
            "github-dispatch authenticates with the token as a Bearer token; a Basic auth \
             password would replace it: remove the username and password",
        ));
    }
    let readable = reads(format);
    if let Some(extra) = options.set().into_iter().find(|o| !readable.contains(o)) {
        let why = if readable.is_empty() {
            format!("the {name} format reads no format options")
        } else {
            format!("the {name} format reads only {}", readable.join(", "))
        };
        return Err(Invalid::new(
            format!("format_options.{extra}"),
            format!("{why}; remove {extra}"),
        ));
    }
    match format {
        Format::GithubDispatch => check_event_type(options.event_type.as_deref())?,
        Format::GitlabTrigger => {
            check_ref(options.git_ref.as_deref())?;
            check_variables(&options.variables)?;
        }
        _ => {}
    }
    if let Some(registry) = &options.registry {
        check_registry(registry)?;
    }
    Ok(())
}

fn check_event_type(event_type: Option<&str>) -> Result<(), Invalid> {
    let field = "format_options.event_type";
    let Some(t) = event_type else {
        return Err(Invalid::new(
            field,
            "github-dispatch needs an event_type: the type your workflow lists in \
             `on: repository_dispatch: types`",
        ));
    };
    let count = t.chars().count();
    if count == 0 || count > EVENT_TYPE_MAX || t.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            format!(
                "an event_type has 1 to {EVENT_TYPE_MAX} characters (GitHub's limit), without \
                 control characters; this one has {count}"
            ),
        ));
    }
    Ok(())
}

fn check_ref(git_ref: Option<&str>) -> Result<(), Invalid> {
    let field = "format_options.ref";
    let Some(r) = git_ref else {
        return Err(Invalid::new(
            field,
            "gitlab-trigger needs a ref: the branch or tag whose pipeline runs",
        ));
    };
    if r.is_empty() || r.len() > 255 || r.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Invalid::new(
            field,
            "a ref is a branch or tag name of 1 to 255 bytes, without spaces or control characters",
        ));
    }
    Ok(())
}

fn check_variables(variables: &BTreeMap<String, String>) -> Result<(), Invalid> {
    let field = "format_options.variables";
    if variables.len() > MAX_VARIABLES {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_VARIABLES} variables"),
        ));
    }
    for (name, value) in variables {
        let shown: String = name.chars().take(80).collect();
        let valid = (1..=255).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(Invalid::new(
                field,
                format!(
                    "a variable's name has 1 to 255 letters, digits and '_' (GitLab's rule); \
                     '{shown}' is not one"
                ),
            ));
        }
        if name
            .to_ascii_uppercase()
            .starts_with(HERALD_VARIABLE_PREFIX)
        {
            return Err(Invalid::new(
                field,
                format!(
                    "'{shown}': the {HERALD_VARIABLE_PREFIX}* variables are the ones Herald sets"
                ),
            ));
        }
        if value.len() > 4096 || value.contains('\0') {
            return Err(Invalid::new(
                field,
                format!("the value of '{shown}' has at most 4096 bytes, without NUL"),
            ));
        }
    }
    Ok(())
}

/// `host`, `host:port` or `[v6]:port`, as the first component of an image name.
fn check_registry(registry: &str) -> Result<(), Invalid> {
    let valid = (1..=255).contains(&registry.len())
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        && registry.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[');
    if valid {
        Ok(())
    } else {
        Err(Invalid::new(
            "format_options.registry",
            "the registry is an address as image names start with it: host or host:port \
             (registry.example.org:5000), without a scheme or a path",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> FormatOptions {
        serde_json::from_value(json).unwrap()
    }

    fn field(r: Result<(), Invalid>) -> String {
        r.unwrap_err().field
    }

    #[test]
    fn formats_that_send_a_token_need_one_and_the_others_refuse_it() {
        let none = FormatOptions::default();
        let dispatch = options(serde_json::json!({"event_type": "deploy"}));
        let trigger = options(serde_json::json!({"ref": "main"}));
        assert_eq!(
            field(check_settings(Format::Flux, &none, false, false)),
            "token"
        );
        assert!(check_settings(Format::Flux, &none, true, false).is_ok());
        assert_eq!(
            field(check_settings(
                Format::GithubDispatch,
                &dispatch,
                false,
                false
            )),
            "token"
        );
        assert!(check_settings(Format::GithubDispatch, &dispatch, true, false).is_ok());
        assert_eq!(
            field(check_settings(
                Format::GitlabTrigger,
                &trigger,
                false,
                false
            )),
            "token"
        );
        assert!(check_settings(Format::GitlabTrigger, &trigger, true, false).is_ok());
        for f in [
            Format::Keel,
            Format::Dockerhub,
            Format::RegistryEvent,
            Format::Slack,
        ] {
            assert!(check_settings(f, &none, false, true).is_ok(), "{f:?}");
            let e = check_settings(f, &none, true, false).unwrap_err();
            assert_eq!(e.field, "token");
            assert!(e.message.contains("sends no token"), "{}", e.message);
        }
    }

    #[test]
    fn required_options_are_named_when_missing() {
        let e = check_settings(
            Format::GithubDispatch,
            &FormatOptions::default(),
            true,
            false,
        )
        .unwrap_err();
        assert_eq!(e.field, "format_options.event_type");
        assert!(e.message.contains("repository_dispatch"));
        let e = check_settings(
            Format::GitlabTrigger,
            &FormatOptions::default(),
            true,
            false,
        )
        .unwrap_err();
        assert_eq!(e.field, "format_options.ref");
    }

    #[test]
    fn an_option_the_format_does_not_read_is_refused() {
        let o = options(serde_json::json!({"event_type": "deploy", "ref": "main"}));
        let e = check_settings(Format::GithubDispatch, &o, true, false).unwrap_err();
        assert_eq!(e.field, "format_options.ref");
        assert!(
            e.message.contains("reads only event_type, registry"),
            "{}",
            e.message
        );
        let o = options(serde_json::json!({"registry": "r.example.org"}));
        let e = check_settings(Format::RegistryEvent, &o, false, false).unwrap_err();
        assert_eq!(e.field, "format_options.registry");
        assert!(check_settings(Format::Keel, &o, false, false).is_ok());
        assert!(check_settings(Format::Dockerhub, &o, false, false).is_ok());
    }

    #[test]
    fn event_type_ref_variables_and_registry_are_checked() {
        let long = "x".repeat(EVENT_TYPE_MAX + 1);
        let o = options(serde_json::json!({"event_type": long}));
        assert_eq!(
            field(check_settings(Format::GithubDispatch, &o, true, false)),
            "format_options.event_type"
        );
        let exact = "é".repeat(EVENT_TYPE_MAX);
        let o = options(serde_json::json!({"event_type": exact}));
        assert!(check_settings(Format::GithubDispatch, &o, true, false).is_ok());
        let o = options(serde_json::json!({"ref": "has space"}));
        assert_eq!(
            field(check_settings(Format::GitlabTrigger, &o, true, false)),
            "format_options.ref"
        );
        for bad in ["A-B", "", "HERALD_TAG", "herald_x"] {
            let o = options(serde_json::json!({"ref": "main", "variables": {bad: "v"}}));
            assert_eq!(
                field(check_settings(Format::GitlabTrigger, &o, true, false)),
                "format_options.variables",
                "{bad}"
            );
        }
        let o =
            options(serde_json::json!({"ref": "main", "variables": {"ENV": "prod", "x_1": ""}}));
        assert!(check_settings(Format::GitlabTrigger, &o, true, false).is_ok());
        for bad in ["https://r.example.org", "r.example.org/path", "", " r"] {
            let o = options(serde_json::json!({"registry": bad}));
            assert_eq!(
                field(check_settings(Format::Keel, &o, false, false)),
                "format_options.registry",
                "{bad}"
            );
        }
        for good in [
            "r.example.org:5000",
            "127.0.0.1:5001",
            "[::1]:5000",
            "localhost",
        ] {
            let o = options(serde_json::json!({"registry": good}));
            assert!(
                check_settings(Format::Flux, &o, true, false).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn github_dispatch_refuses_a_basic_auth_password() {
        let o = options(serde_json::json!({"event_type": "deploy"}));
        assert_eq!(
            field(check_settings(Format::GithubDispatch, &o, true, true)),
            "password"
        );
        assert!(check_settings(Format::Flux, &FormatOptions::default(), true, true).is_ok());
    }

    #[test]
    fn options_are_stored_as_json_and_read_back() {
        assert_eq!(FormatOptions::default().to_stored(), None);
        let o = options(serde_json::json!({"ref": "main", "variables": {"A": "1"}}));
        let text = o.to_stored().unwrap();
        assert_eq!(text, r#"{"ref":"main","variables":{"A":"1"}}"#);
        assert_eq!(FormatOptions::from_stored(Some(&text)), o);
        assert_eq!(
            FormatOptions::from_stored(Some("not json")),
            FormatOptions::default()
        );
        assert!(serde_json::from_value::<FormatOptions>(serde_json::json!({"refs": "x"})).is_err());
        assert!(
            serde_json::from_value::<FormatOptions>(serde_json::json!({"variables": {"A": 1}}))
                .is_err(),
            "GitLab takes only string values, and so does the option"
        );
    }
}
