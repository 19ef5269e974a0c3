//! Where a webhook's deliveries go, read from its URL's scheme: an HTTP receiver, or a
//! message broker (NATS JetStream, RabbitMQ, a Redis stream, an MQTT broker). The URL
//! grammar of each broker is checked here once, when a webhook is saved, so the sender can
//! trust what it reads back.

use super::names::Invalid;

/// The broker schemes, in the order the docs list them.
pub const BROKER_SCHEMES: &[&str] = &["nats", "amqp", "redis", "mqtt"];

/// Secure variants Herald does not speak yet: named, so the refusal says so.
const SECURE_SCHEMES: &[(&str, &str)] = &[
    ("tls", "nats"),
    ("amqps", "amqp"),
    ("rediss", "redis"),
    ("mqtts", "mqtt"),
];

/// A broker destination, as the URL says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerTarget {
    /// The URL's host, as written (a name or an IP literal, without brackets).
    pub host: String,
    pub port: u16,
    pub broker: Broker,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// `nats://host:4222/<subject>`: a JetStream publish, waiting for the stream's ack.
    Nats { subject: String },
    /// `amqp://host:5672/<vhost>?exchange=<name>&routing_key=<key>`.
    Amqp {
        vhost: String,
        exchange: String,
        routing_key: String,
    },
    /// `redis://host:6379/<db>?stream=<key>[&maxlen=<n>]`: an XADD.
    Redis {
        db: i64,
        stream: String,
        maxlen: Option<u64>,
    },
    /// `mqtt://host:1883/<topic>`: QoS 1.
    Mqtt { topic: String },
}

impl Broker {
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Nats { .. } => "nats",
            Self::Amqp { .. } => "amqp",
            Self::Redis { .. } => "redis",
            Self::Mqtt { .. } => "mqtt",
        }
    }
}

/// Whether `scheme` names a broker.
pub fn is_broker_scheme(scheme: &str) -> bool {
    BROKER_SCHEMES.contains(&scheme)
}

/// The broker a URL names, or `None` for an http(s) URL. The errors name the problem
/// and never echo the URL (it may have held credentials).
pub fn broker_target(url: &url::Url) -> Result<Option<BrokerTarget>, Invalid> {
    let err = |m: String| Invalid::new("url", m);
    let scheme = url.scheme();
    if let Some((_, plain)) = SECURE_SCHEMES.iter().find(|(s, _)| *s == scheme) {
        return Err(err(format!(
            "{scheme}:// is not supported yet: Herald reaches brokers over plain TCP \
             ({plain}://); put the broker on a trusted network or behind a TLS tunnel"
        )));
    }
    if !is_broker_scheme(scheme) {
        return Ok(None);
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => {
            return Err(err(format!(
                "{} {scheme} URL needs a host",
                article(scheme)
            )))
        }
    };
    let port = url.port().unwrap_or(match scheme {
        "nats" => 4222,
        "amqp" => 5672,
        "redis" => 6379,
        _ => 1883,
    });
    if url.fragment().is_some() {
        return Err(err(match scheme {
            "mqtt" => "an mqtt topic to publish to has no wildcards ('+', '#')".into(),
            _ => format!("{} {scheme} URL has no #fragment", article(scheme)),
        }));
    }
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| err(format!("the {scheme} URL's path is not UTF-8")))?
        .into_owned();
    let mut query: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut take = |key: &str| -> Result<Option<String>, Invalid> {
        let found: Vec<usize> = (0..query.len()).filter(|&i| query[i].0 == key).collect();
        match found.as_slice() {
            [] => Ok(None),
            [i] => Ok(Some(query.remove(*i).1)),
            _ => Err(err(format!(
                "the {scheme} URL gives ?{key}= more than once"
            ))),
        }
    };
    let broker = match scheme {
        "nats" => {
            check_nats_subject(&decoded)?;
            Broker::Nats { subject: decoded }
        }
        "amqp" => {
            // Like RabbitMQ's own URIs: no path is the default vhost "/" (also `%2f`).
            let vhost = if path.is_empty() {
                "/".to_string()
            } else {
                decoded
            };
            let exchange = take("exchange")?.ok_or_else(|| {
                err("an amqp URL needs ?exchange= (the exchange to publish to; \
                     ?exchange= with no name is the default exchange, which routes by queue name)"
                    .into())
            })?;
            let routing_key = take("routing_key")?.unwrap_or_default();
            if exchange.len() > 255 || routing_key.len() > 255 || vhost.len() > 255 {
                return Err(err(
                    "an amqp vhost, exchange or routing_key has at most 255 bytes".into(),
                ));
            }
            if exchange.is_empty() && routing_key.is_empty() {
                return Err(err(
                    "the default exchange (?exchange= with no name) needs ?routing_key=<queue>"
                        .into(),
                ));
            }
            Broker::Amqp {
                vhost,
                exchange,
                routing_key,
            }
        }
        "redis" => {
            let db = if decoded.is_empty() {
                0
            } else {
                decoded
                    .parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| {
                        err(format!(
                            "a redis URL's path is the database number (/0), not '{decoded}'"
                        ))
                    })?
            };
            let stream = take("stream")?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err("a redis URL needs ?stream= (the stream's key)".into()))?;
            if stream.len() > 1024 {
                return Err(err("a redis stream key has at most 1024 bytes".into()));
            }
            let maxlen = match take("maxlen")? {
                None => None,
                Some(n) => Some(n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    err(format!(
                        "?maxlen= is the stream's approximate length cap, a positive number, not '{n}'"
                    ))
                })?),
            };
            Broker::Redis { db, stream, maxlen }
        }
        _ => {
            check_mqtt_topic(&decoded)?;
            Broker::Mqtt { topic: decoded }
        }
    };
    if let Some((key, _)) = query.first() {
        let known = match scheme {
            "amqp" => "exchange and routing_key",
            "redis" => "stream and maxlen",
            _ => "none",
        };
        return Err(err(format!(
            "{} {scheme} URL does not take ?{key}= (it takes {known})",
            article(scheme)
        )));
    }
    Ok(Some(BrokerTarget { host, port, broker }))
}

fn article(scheme: &str) -> &'static str {
    if scheme.starts_with(['a', 'm']) {
        "an"
    } else {
        "a"
    }
}

fn check_nats_subject(subject: &str) -> Result<(), Invalid> {
    let err = |m: &str| Invalid::new("url", m.to_string());
    if subject.is_empty() {
        return Err(err(
            "a nats URL needs the subject to publish to as its path: nats://host:4222/<subject>",
        ));
    }
    if subject.len() > 255 {
        return Err(err("a nats subject has at most 255 bytes"));
    }
    if subject.split('.').any(str::is_empty) {
        return Err(err(
            "a nats subject is tokens separated by '.', none of them empty",
        ));
    }
    if subject
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err(err(
            "a nats subject to publish to has no spaces and no wildcards ('*', '>')",
        ));
    }
    Ok(())
}

fn check_mqtt_topic(topic: &str) -> Result<(), Invalid> {
    let err = |m: &str| Invalid::new("url", m.to_string());
    if topic.is_empty() {
        return Err(err(
            "an mqtt URL needs the topic to publish to as its path: mqtt://host:1883/<topic>",
        ));
    }
    if topic.len() > 1024 {
        return Err(err("an mqtt topic has at most 1024 bytes"));
    }
    if topic.contains(['+', '#']) || topic.chars().any(|c| c == '\0' || c.is_control()) {
        return Err(err(
            "an mqtt topic to publish to has no wildcards ('+', '#') and no control characters",
        ));
    }
    Ok(())
}

/// Credentials taken out of a broker URL's user part, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for UrlCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlCredentials([redacted])")
    }
}

/// A broker URL without its user part, and the credentials that were in it: they are
/// stored as the webhook's username and (sealed) password, never in the URL. Other URLs
/// come back as given, for `WebhookUrl::parse` to judge.
pub fn split_credentials(input: &str) -> (String, Option<UrlCredentials>) {
    let trimmed = input.trim();
    let Ok(mut url) = url::Url::parse(trimmed) else {
        return (input.to_string(), None);
    };
    if !is_broker_scheme(url.scheme()) || (url.username().is_empty() && url.password().is_none()) {
        return (input.to_string(), None);
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let credentials = UrlCredentials {
        username: Some(decode(url.username())).filter(|u| !u.is_empty()),
        password: url.password().map(decode).filter(|p| !p.is_empty()),
    };
    // Cannot fail on a URL with a host, which every broker URL needs.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (url.to_string(), Some(credentials))
}

/// `input` with any user part replaced, for messages that quote a URL.
pub fn redact_userinfo(input: &str) -> String {
    let Some(start) = input.find("://") else {
        return input.to_string();
    };
    let rest = &input[start + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}[redacted]{}", &input[..start + 3], &rest[at..]),
        None => input.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Result<Option<BrokerTarget>, Invalid> {
        broker_target(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn the_four_shapes() {
        let t = target("nats://127.0.0.1/registry.events").unwrap().unwrap();
        assert_eq!(t.port, 4222);
        assert_eq!(
            t.broker,
            Broker::Nats {
                subject: "registry.events".into()
            }
        );
        let t = target("amqp://mq:5672/%2f?exchange=registry&routing_key=push")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.broker,
            Broker::Amqp {
                vhost: "/".into(),
                exchange: "registry".into(),
                routing_key: "push".into()
            }
        );
        let t = target("amqp://mq/?exchange=x").unwrap().unwrap();
        assert!(matches!(t.broker, Broker::Amqp { ref vhost, .. } if vhost == "/"));
        let t = target("amqp://mq/prod?exchange=x").unwrap().unwrap();
        assert!(matches!(t.broker, Broker::Amqp { ref vhost, .. } if vhost == "prod"));
        let t = target("redis://r/2?stream=events&maxlen=1000")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.broker,
            Broker::Redis {
                db: 2,
                stream: "events".into(),
                maxlen: Some(1000)
            }
        );
        let t = target("mqtt://[::1]:1884/registry/acme/push")
            .unwrap()
            .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1884));
        assert_eq!(
            t.broker,
            Broker::Mqtt {
                topic: "registry/acme/push".into()
            }
        );
        assert_eq!(target("https://x.example/").unwrap(), None);
    }

    #[test]
    fn refusals_name_the_problem() {
        for (url, says) in [
            ("amqp://mq/", "needs ?exchange="),
            ("amqp://mq/?exchange=", "needs ?routing_key="),
            ("amqp://mq/?exchange=x&queue=y", "does not take ?queue="),
            ("redis://r/0", "needs ?stream="),
            ("redis://r/x?stream=s", "database number"),
            ("redis://r/?stream=s&maxlen=0", "maxlen"),
            ("nats://n/", "needs the subject"),
            ("nats://n/a.*", "wildcards"),
            ("nats://n/a..b", "none of them empty"),
            ("mqtt://m/", "needs the topic"),
            ("mqtt://m/a/#", "wildcards"),
            ("amqps://mq/?exchange=x", "not supported yet"),
            ("nats://n/a?x=1", "does not take ?x="),
        ] {
            let e = target(url).unwrap_err();
            assert!(e.message.contains(says), "{url}: {}", e.message);
        }
    }

    #[test]
    fn credentials_leave_the_url() {
        let (url, c) = split_credentials("amqp://bot:p%40ss@mq:5672/%2f?exchange=x");
        assert_eq!(url, "amqp://mq:5672/%2f?exchange=x");
        let c = c.unwrap();
        assert_eq!(c.username.as_deref(), Some("bot"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        let (url, c) = split_credentials("redis://:secret@r/0?stream=s");
        assert_eq!(url, "redis://r/0?stream=s");
        assert_eq!(c.unwrap().username, None);
        let (url, c) = split_credentials("http://u:p@x.example/");
        assert_eq!(url, "http://u:p@x.example/");
        assert!(c.is_none());
        assert_eq!(
            redact_userinfo("amqp://u:p@h/?exchange=a@b"),
            "amqp://[redacted]@h/?exchange=a@b"
        );
        assert_eq!(redact_userinfo("nats://h/a@b"), "nats://h/a@b");
    }
}
