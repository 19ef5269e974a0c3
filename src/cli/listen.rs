//! `herald listen`: a receiver on this machine that prints every request it gets and checks
//! its Standard Webhooks signature, so a first webhook can be seen working without writing
//! one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use herald::hooks::signing;

use super::output::emit;

/// Signatures older or newer than this are refused, as the standard advises receivers.
const TOLERANCE_SECS: i64 = 5 * 60;

/// What a request is checked with.
#[derive(Clone, Default)]
pub struct Keys {
    /// `whsec_...`: the webhook's `v1` signing secret.
    pub secret: Option<String>,
    /// `whpk_...`: the webhook's `v1a` public key.
    pub public_key: Option<String>,
}

pub async fn listen(
    addr: SocketAddr,
    keys: Keys,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if let Some(secret) = &keys.secret {
        signing::SigningSecret::parse(secret)
            .map_err(|e| anyhow::anyhow!("--secret: {}", e.message))?;
    }
    if let Some(key) = &keys.public_key {
        anyhow::ensure!(
            key.starts_with(signing::PUBLIC_KEY_PREFIX),
            "--public-key is a webhook's signature_public_key, whpk_..."
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let checking = match (&keys.secret, &keys.public_key) {
        (None, None) => "not checking signatures (give --secret or --public-key)",
        _ => "checking Standard Webhooks signatures",
    };
    eprintln!("listening on http://{local}/ , {checking}; Ctrl-C stops");
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(Arc::new(keys));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Whether the request's signature holds, in words; `None` when nothing is checked.
fn check(keys: &Keys, headers: &HeaderMap, body: &[u8]) -> Option<Result<String, String>> {
    if keys.secret.is_none() && keys.public_key.is_none() {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) = (
        header(signing::HEADER_ID),
        header(signing::HEADER_TIMESTAMP),
        header(signing::HEADER_SIGNATURE),
    ) else {
        return Some(Err(
            "unsigned: no webhook-id, webhook-timestamp and webhook-signature".into(),
        ));
    };
    let Ok(timestamp) = timestamp.parse::<i64>() else {
        return Some(Err(format!(
            "webhook-timestamp '{timestamp}' is not a number"
        )));
    };
    let skew = (chrono::Utc::now().timestamp() - timestamp).abs();
    if skew > TOLERANCE_SECS {
        return Some(Err(format!("the timestamp is {skew} s away from now")));
    }
    let v1 = keys
        .secret
        .as_deref()
        .and_then(|s| signing::SigningSecret::parse(s).ok());
    if let Some(secret) = v1 {
        if signing::verify(secret.as_bytes(), id, timestamp, body, signature) {
            return Some(Ok("valid v1 signature".into()));
        }
    }
    if let Some(key) = &keys.public_key {
        if signing::verify_v1a(key, id, timestamp, body, signature) {
            return Some(Ok("valid v1a signature".into()));
        }
    }
    Some(Err("INVALID signature: not made with the key given".into()))
}

async fn receive(
    State(keys): State<Arc<Keys>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    use std::fmt::Write;
    // A bare probe (is it up?) is answered and not printed: it is no delivery.
    if body.is_empty() && !headers.contains_key(signing::HEADER_ID) {
        return (StatusCode::OK, "herald listen is here\n");
    }
    let verdict = check(&keys, &headers, &body);
    let mut out = format!(
        "\n{} {method} {uri} ({} bytes)\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        body.len()
    );
    for (name, value) in &headers {
        let name = name.as_str();
        let shown = name.starts_with("webhook-")
            || name.starts_with("x-herald")
            || name.starts_with("ce-")
            || name == "content-type"
            || name == "user-agent";
        if shown {
            let _ = writeln!(
                out,
                "  {name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            );
        }
    }
    match &verdict {
        Some(Ok(words)) => {
            let _ = writeln!(out, "  => {words}");
        }
        Some(Err(words)) => {
            let _ = writeln!(out, "  => {words}; answering 401");
        }
        None => {}
    }
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    let _ = writeln!(out, "{text}");
    let _ = emit(out);
    match verdict {
        Some(Err(_)) => (StatusCode::UNAUTHORIZED, "signature refused\n"),
        _ => (StatusCode::OK, "received\n"),
    }
}
