//! A CloudEvent as a source sends it, in binary mode (`ce-*` headers, the data as the body:
//! zot's only mode over HTTP) or structured mode (`application/cloudevents+json`: Harbor's).
//!
//! Whichever mode it came in, the event Herald stores is the structured form, so that a
//! receiver of the verbatim formats can always read its `type`: binary mode's body alone
//! (zot's `data`) does not say whether an image was pushed or deleted.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A header's value, percent-decoded as the CloudEvents HTTP binding encodes it.
pub(super) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .filter(|v| !v.is_empty())
}

/// Context attributes the spec defines; anything else at the top is an extension.
const SPEC_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

pub(super) struct CloudEvent {
    pub id: Option<String>,
    pub source: Option<String>,
    pub kind: Option<String>,
    pub time: Option<String>,
    /// Extension attributes with string values (Harbor's `operator`, zot's `channel`).
    pub extensions: BTreeMap<String, String>,
    /// The event in structured mode: as received, or built from binary mode.
    pub body: String,
    /// The data; an error when it cannot be read as a JSON value (nesting past serde_json's
    /// limit, a number beyond f64), in which case the event is stored as ignored.
    pub data: Result<Value, serde_json::Error>,
}

impl CloudEvent {
    /// What identifies the event: the spec makes `id` unique within its `source`.
    pub fn key(&self) -> Option<String> {
        self.id
            .as_ref()
            .map(|id| format!("{}/{id}", self.source.as_deref().unwrap_or_default()))
    }

    /// Reads the event from a request whose body `text` is a JSON object.
    pub fn read(headers: &HeaderMap, text: String) -> Self {
        if headers.contains_key("ce-specversion") {
            Self::binary(headers, text)
        } else {
            Self::structured(text)
        }
    }

    fn structured(text: String) -> Self {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(mut map)) => {
                let attr = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
                let extensions = map
                    .iter()
                    .filter(|(k, _)| !SPEC_ATTRIBUTES.contains(&k.as_str()))
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect();
                Self {
                    id: attr("id"),
                    source: attr("source"),
                    kind: attr("type"),
                    time: attr("time"),
                    extensions,
                    data: Ok(map.remove("data").unwrap_or(Value::Null)),
                    body: text,
                }
            }
            Ok(_) => unreachable_object(text),
            Err(e) => {
                // The attributes are still read (their values are flat), so the event keeps
                // its id and a resend is a duplicate.
                #[derive(Deserialize, Default)]
                struct Attributes {
                    id: Option<String>,
                    source: Option<String>,
                    #[serde(rename = "type")]
                    kind: Option<String>,
                    time: Option<String>,
                }
                let a: Attributes = serde_json::from_str(&text).unwrap_or_default();
                Self {
                    id: a.id,
                    source: a.source,
                    kind: a.kind,
                    time: a.time,
                    extensions: BTreeMap::new(),
                    data: Err(e),
                    body: text,
                }
            }
        }
    }

    fn binary(headers: &HeaderMap, data: String) -> Self {
        let attr = |name: &str| header(headers, &format!("ce-{name}"));
        // The context attributes in the spec's order (datacontenttype is binary mode's
        // Content-Type), then the extensions by name.
        let mut attributes: Vec<(String, String)> = SPEC_ATTRIBUTES
            .iter()
            .filter_map(|&name| {
                let value = match name {
                    "datacontenttype" => Some(
                        header(headers, "content-type")
                            .unwrap_or_else(|| "application/json".to_string()),
                    ),
                    "data" | "data_base64" => None,
                    _ => attr(name),
                };
                value.map(|v| (name.to_string(), v))
            })
            .collect();
        let extensions: BTreeMap<String, String> = headers
            .keys()
            .filter_map(|k| k.as_str().strip_prefix("ce-"))
            .filter(|name| !SPEC_ATTRIBUTES.contains(name))
            .filter_map(|name| Some((name.to_string(), attr(name)?)))
            .collect();
        attributes.extend(extensions.iter().map(|(k, v)| (k.clone(), v.clone())));
        let body = RawValue::from_string(data.clone())
            .ok()
            .and_then(|raw| {
                serde_json::to_string(&Structured {
                    attributes: &attributes,
                    data: &raw,
                })
                .ok()
            })
            .unwrap_or_else(|| data.clone());
        Self {
            id: attr("id"),
            source: attr("source"),
            kind: attr("type"),
            time: attr("time"),
            extensions,
            data: serde_json::from_str(&data),
            body,
        }
    }
}

/// A structured body that parsed but is not an object cannot reach here (the caller checked
/// it is an object); kept as an event without data rather than a panic.
fn unreachable_object(text: String) -> CloudEvent {
    CloudEvent {
        id: None,
        source: None,
        kind: None,
        time: None,
        extensions: BTreeMap::new(),
        data: Ok(Value::Null),
        body: text,
    }
}

/// The structured form: the attributes in order, then the data as received.
struct Structured<'a> {
    attributes: &'a [(String, String)],
    data: &'a RawValue,
}

impl Serialize for Structured<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.attributes.len() + 1))?;
        for (name, value) in self.attributes {
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("data", self.data)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn binary_mode_is_stored_in_structured_form_with_the_data_verbatim() {
        let data = r#"{"name":"acme/web","reference":"1.0","n":1.50}"#;
        let ce = CloudEvent::read(
            &headers(&[
                ("ce-specversion", "1.0"),
                ("ce-id", "a%20b"),
                ("ce-source", "zotregistry.dev"),
                ("ce-type", "zotregistry.image.updated"),
                ("ce-time", "2026-11-26T21:40:00.5Z"),
                ("ce-channel", "zot"),
                ("content-type", "application/json"),
            ]),
            data.to_string(),
        );
        assert_eq!(ce.id.as_deref(), Some("a b"));
        assert_eq!(
            ce.extensions.get("channel").map(String::as_str),
            Some("zot")
        );
        assert_eq!(
            ce.body,
            "{\"specversion\":\"1.0\",\"id\":\"a b\",\"source\":\"zotregistry.dev\",\
             \"type\":\"zotregistry.image.updated\",\"time\":\"2026-11-26T21:40:00.5Z\",\
             \"datacontenttype\":\"application/json\",\"channel\":\"zot\",\
             \"data\":{\"name\":\"acme/web\",\"reference\":\"1.0\",\"n\":1.50}}"
        );
        assert_eq!(ce.data.unwrap()["reference"], "1.0");
    }

    #[test]
    fn structured_mode_is_kept_as_received_with_its_extensions() {
        let text = r#"{"specversion":"1.0","id":"x","source":"/projects/3/webhook/policies/7","type":"harbor.artifact.pushed","time":"2025-11-26T21:40:36Z","data":{"a":1},"operator":"alice","requestid":"r"}"#;
        let ce = CloudEvent::read(&HeaderMap::new(), text.to_string());
        assert_eq!(ce.body, text);
        assert_eq!(ce.kind.as_deref(), Some("harbor.artifact.pushed"));
        assert_eq!(
            ce.extensions.get("operator").map(String::as_str),
            Some("alice")
        );
        assert_eq!(ce.data.unwrap()["a"], 1);
    }

    #[test]
    fn unreadable_data_keeps_the_attributes() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let text =
            format!(r#"{{"specversion":"1.0","id":"x","source":"s","type":"t","data":{deep}}}"#);
        let ce = CloudEvent::read(&HeaderMap::new(), text.clone());
        assert!(ce.data.is_err());
        assert_eq!(ce.id.as_deref(), Some("x"));
        assert_eq!(ce.body, text);
    }
}
