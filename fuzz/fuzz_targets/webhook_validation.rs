//! Webhook fields come from API users: validation must never panic, and what it accepts must
//! be accepted again and by the HTTP types the delivery is built with.

#![no_main]

use herald::hooks::types::{
    ContentType, HeaderName, HeaderValue, NamespaceName, RequestMethod, WebhookUrl,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(url) = WebhookUrl::parse(input) {
        assert_eq!(WebhookUrl::parse(url.as_str()).as_ref(), Ok(&url));
        assert!(url.as_str().starts_with("http://") || url.as_str().starts_with("https://"));
        assert!(!url.host().is_empty());
    }
    if let Ok(ns) = NamespaceName::parse(input) {
        assert_eq!(NamespaceName::parse(ns.as_str()).as_ref(), Ok(&ns));
    }
    if let Ok(name) = HeaderName::parse(input) {
        assert!(http::HeaderName::from_bytes(name.as_str().as_bytes()).is_ok());
    }
    if let Ok(value) = HeaderValue::parse("X-Fuzz", input) {
        assert!(http::HeaderValue::from_str(value.as_str()).is_ok());
    }
    if let Ok(method) = RequestMethod::parse(input) {
        assert_eq!(RequestMethod::parse(method.as_str()), Ok(method));
    }
    if let Ok(content_type) = ContentType::parse(input) {
        assert_eq!(ContentType::parse(content_type.as_str()), Ok(content_type));
    }
});
