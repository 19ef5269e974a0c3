//! Property tests for the validated types: whatever a user sends, validation answers without
//! panicking, and whatever it accepts is something the rest of Herald (the URL parser, the
//! HTTP header types reqwest uses) accepts too, so a stored webhook can always be sent.

use proptest::prelude::*;

use crate::domain::names::*;

/// Strings shaped like webhook URLs, with the odd characters that trip up parsers.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just(""),
        Just("http://"),
        Just("https://"),
        Just("HTTP://"),
        Just("ftp://"),
        Just("://"),
        Just("http:/"),
    ];
    let host = prop_oneof![
        "[a-z0-9.-]{0,20}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}",
        "\\[[0-9a-f:.]{0,20}\\]",
        "[a-zA-Z0-9@:%._\\\\ éß-]{0,20}",
        "xn--[a-z0-9]{1,10}",
    ];
    let port = prop_oneof![Just(String::new()), "(:[0-9]{0,6})"];
    let rest = "[ -~\t\né%]{0,40}";
    (scheme, host, port, rest).prop_map(|(s, h, p, r)| format!("{s}{h}{p}{r}"))
}

/// Header-ish names and values: tokens, separators, spaces, control and non-ASCII bytes.
fn header_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{0,30}",
        "[ -~]{0,30}",
        "[\\x00-\\x7f]{0,10}",
        any::<String>(),
    ]
}

/// Near the length limit, with characters that percent-encoding makes longer.
fn long_url() -> impl Strategy<Value = String> {
    (
        "https?://[a-z]{1,10}\\.example/",
        "[a-z é<>\"`{}]{500,1100}",
    )
        .prop_map(|(base, path)| format!("{base}{path}"))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "\\PC{0,60}", "[ -~]{0,60}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn accepted_urls_are_normal_http_urls_that_reparse_to_themselves(
        input in prop_oneof![url_like(), long_url(), any_text()]
    ) {
        if let Ok(url) = WebhookUrl::parse(&input) {
            let again = WebhookUrl::parse(url.as_str());
            prop_assert_eq!(again.as_ref(), Ok(&url), "re-parsing {:?}", url.as_str());
            let parsed = url::Url::parse(url.as_str());
            prop_assert!(parsed.is_ok(), "the url crate refuses {:?}", url.as_str());
            let parsed = parsed.unwrap();
            prop_assert!(matches!(parsed.scheme(), "http" | "https"));
            prop_assert!(parsed.host_str().is_some_and(|h| !h.is_empty()));
            prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
            prop_assert!(!url.host().is_empty());
            prop_assert!(url.as_str().len() <= 2048);
            // reqwest builds its request from the same string.
            prop_assert!(reqwest::Url::parse(url.as_str()).is_ok());
        }
    }

    #[test]
    fn accepted_header_names_are_http_header_names(name in header_like()) {
        if let Ok(h) = HeaderName::parse(&name) {
            prop_assert!(axum::http::HeaderName::from_bytes(h.as_str().as_bytes()).is_ok());
            prop_assert_eq!(h.as_str(), h.as_str().trim());
            prop_assert!(!h.as_str().is_empty());
            let reparsed = HeaderName::parse(h.as_str());
            prop_assert_eq!(reparsed.as_ref(), Ok(&h));
            prop_assert!(!h.eq_ignore_case("content-length") && !h.eq_ignore_case("host"));
        }
    }

    #[test]
    fn accepted_header_values_are_http_header_values(value in header_like()) {
        if let Ok(v) = HeaderValue::parse("X-Test", &value) {
            prop_assert!(axum::http::HeaderValue::from_str(v.as_str()).is_ok());
            prop_assert!(!v.as_str().contains(['\r', '\n', '\0']));
            prop_assert!(v.as_str().len() <= 8192);
        }
    }

    #[test]
    fn namespaces_are_registry_path_components(s in prop_oneof![
        "[a-z0-9._-]{0,20}",
        any_text(),
    ]) {
        if let Ok(ns) = NamespaceName::parse(&s) {
            prop_assert!(ns.is_global() || is_path_component(ns.as_str()));
            prop_assert!(ns.as_str().len() <= 255);
            let reparsed = NamespaceName::parse(ns.as_str());
            prop_assert_eq!(reparsed.as_ref(), Ok(&ns));
            // A namespace is always the namespace of a repository under it.
            if !ns.is_global() {
                let of_repo = NamespaceName::of_repository(&format!("{}/app", ns.as_str()));
                prop_assert_eq!(of_repo.as_ref(), Ok(&ns));
            }
        }
    }

    #[test]
    fn methods_and_content_types_round_trip(s in prop_oneof![
        "(?i)(get|post|put|application/json|application/x-www-form-urlencoded)",
        any_text(),
    ]) {
        if let Ok(m) = RequestMethod::parse(&s) {
            prop_assert_eq!(RequestMethod::parse(m.as_str()), Ok(m));
        }
        if let Ok(c) = ContentType::parse(&s) {
            prop_assert_eq!(ContentType::parse(c.as_str()), Ok(c));
            prop_assert!(axum::http::HeaderValue::from_str(c.as_str()).is_ok());
        }
        let _ = WebhookName::parse(&s);
    }
}
