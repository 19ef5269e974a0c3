//! The registries Herald may read: a client per source (the default endpoint's from the
//! configuration, the others' from the store), and how the last read of each went, for the
//! UI, the API, `/readyz`, the log and the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use super::client::{Credentials, RegistryClient, RegistryError};
use crate::domain::events::DEFAULT_SOURCE;
use crate::domain::model::RegistryStatus;
use crate::domain::registry::RegistryUrl;
use crate::metrics::{Metrics, RegistryErrorLabels, SourceLabel};
use crate::secrets::Cipher;
use crate::store::Store;

/// The default endpoint's registry access, from `--registry-url` and its friends.
#[derive(Clone, Debug)]
pub struct DefaultAccess {
    pub url: RegistryUrl,
    pub credentials: Option<Credentials>,
}

/// A client, and what it was built from (so a changed source gets a new one).
struct Cached {
    key: String,
    client: Arc<RegistryClient>,
}

pub struct Registries {
    store: Arc<dyn Store>,
    cipher: Cipher,
    metrics: Arc<Metrics>,
    roots: Vec<reqwest::Certificate>,
    timeout: Duration,
    default: Option<DefaultAccess>,
    clients: Mutex<HashMap<String, Cached>>,
    health: Mutex<HashMap<String, RegistryStatus>>,
    /// The registry instance each source's events last came from, as this process saw.
    instances: Mutex<HashMap<String, String>>,
    /// Rung when an ingest stored manifest pushes whose facts are to be read.
    pub facts_wanted: Notify,
    /// Rung when a reconcile is asked for.
    pub reconcile_wanted: Notify,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registries(..)")
    }
}

impl Registries {
    pub fn new(
        store: Arc<dyn Store>,
        cipher: Cipher,
        metrics: Arc<Metrics>,
        roots: Vec<reqwest::Certificate>,
        timeout: Duration,
        default: Option<DefaultAccess>,
    ) -> Self {
        Self {
            store,
            cipher,
            metrics,
            roots,
            timeout,
            default,
            clients: Mutex::default(),
            health: Mutex::default(),
            instances: Mutex::default(),
            facts_wanted: Notify::new(),
            reconcile_wanted: Notify::new(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether Herald may read the default endpoint's registry.
    pub fn default_readable(&self) -> bool {
        self.default.is_some()
    }

    pub fn default_access(&self) -> Option<&DefaultAccess> {
        self.default.as_ref()
    }

    /// The names of every source Herald may read, `default` first when it may.
    pub async fn readable_sources(&self) -> Result<Vec<String>, crate::store::StoreError> {
        let mut names: Vec<String> = self
            .default
            .iter()
            .map(|_| DEFAULT_SOURCE.to_string())
            .collect();
        names.extend(
            self.store
                .list_sources()
                .await?
                .into_iter()
                .filter(|s| s.registry_url.is_some())
                .map(|s| s.name),
        );
        Ok(names)
    }

    /// The client for `source`'s registry; `Ok(None)` when Herald may not read it.
    pub async fn client(&self, source: &str) -> Result<Option<Arc<RegistryClient>>, String> {
        let (url, credentials) = if source == DEFAULT_SOURCE {
            match &self.default {
                Some(d) => (d.url.clone(), d.credentials.clone()),
                None => return Ok(None),
            }
        } else {
            let Some(access) = self
                .store
                .registry_access(source)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let Some(url) = access.url.as_deref() else {
                return Ok(None);
            };
            let url = RegistryUrl::parse(url).map_err(|e| e.message)?;
            let password = match &access.password {
                Some(sealed) => Some(self.cipher.open(sealed)?),
                None => None,
            };
            let credentials = match (access.username, password) {
                (Some(username), Some(password)) => Some(Credentials { username, password }),
                _ => None,
            };
            (url, credentials)
        };
        // The key says what the client was built from, without holding the password.
        let key = format!(
            "{url} {} {}",
            credentials
                .as_ref()
                .map(|c| c.username.as_str())
                .unwrap_or(""),
            credentials
                .as_ref()
                .map(|c| crate::auth::token_hash(&c.password))
                .unwrap_or_default()
        );
        let mut clients = self.clients.lock().map_err(|_| "a lock was poisoned")?;
        if let Some(cached) = clients.get(source).filter(|c| c.key == key) {
            return Ok(Some(cached.client.clone()));
        }
        let client = Arc::new(RegistryClient::new(
            url,
            credentials,
            &self.roots,
            self.timeout,
        )?);
        clients.insert(
            source.to_string(),
            Cached {
                key,
                client: client.clone(),
            },
        );
        Ok(Some(client))
    }

    /// Records how a read of `source`'s registry went: the status the UI and API show, the
    /// metrics, and a WARN when it starts failing (and an INFO when it works again), not one
    /// per failed request.
    pub fn record(&self, source: &str, outcome: Result<(), &RegistryError>) {
        let status = RegistryStatus {
            ok: outcome.is_ok(),
            checked_at: Utc::now(),
            problem: outcome.err().map(|e| e.kind().to_string()),
            error: outcome.err().map(ToString::to_string),
        };
        self.metrics
            .registry_up
            .get_or_create(&SourceLabel {
                source: source.to_string(),
            })
            .set(i64::from(status.ok));
        if let Err(e) = outcome {
            self.metrics
                .registry_errors
                .get_or_create(&RegistryErrorLabels {
                    source: source.to_string(),
                    problem: e.kind().to_string(),
                })
                .inc();
        }
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        let was = health.get(source).map(|s| (s.ok, s.problem.clone()));
        match (&was, outcome) {
            (Some((true, _)) | None, Err(e)) => {
                tracing::warn!(source, problem = e.kind(), error = %e, "cannot read the source's registry");
            }
            (Some((false, before)), Err(e)) if before.as_deref() != Some(e.kind()) => {
                tracing::warn!(source, problem = e.kind(), error = %e, "cannot read the source's registry");
            }
            (Some((false, _)), Ok(())) => {
                tracing::info!(source, "the source's registry can be read again");
            }
            _ => {}
        }
        health.insert(source.to_string(), status);
    }

    /// How the last read of `source`'s registry went, if there was one.
    pub fn status(&self, source: &str) -> Option<RegistryStatus> {
        self.health.lock().ok()?.get(source).cloned()
    }

    /// The sources whose registry could not be read the last time, with why, for
    /// `/readyz`'s detail.
    pub fn failing(&self) -> Vec<(String, String)> {
        let Ok(health) = self.health.lock() else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = health
            .iter()
            .filter(|(_, s)| !s.ok)
            .map(|(name, s)| (name.clone(), s.error.clone().unwrap_or_default()))
            .collect();
        out.sort();
        out
    }

    /// Forgets what was learned of `source` (its access changed or it was deleted).
    pub fn forget(&self, source: &str) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.remove(source);
        }
        if let Ok(mut health) = self.health.lock() {
            health.remove(source);
        }
    }

    /// Whether `instance_id` is new for `source` in this process (its first, or another
    /// than the last): only then is the store asked, so ingest writes nothing more for it.
    pub fn instance_changed(&self, source: &str, instance_id: &str) -> bool {
        let Ok(mut seen) = self.instances.lock() else {
            return false;
        };
        if seen.get(source).map(String::as_str) == Some(instance_id) {
            return false;
        }
        if seen.len() > 10_000 {
            seen.clear();
        }
        seen.insert(source.to_string(), instance_id.to_string());
        true
    }
}
