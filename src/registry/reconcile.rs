//! Finds the events a registry lost and makes them up. distribution keeps its queue of
//! notifications in memory (a restart loses it), zot does not retry at all: comparing the
//! registry's catalog and tags with the tag map Herald's events imply shows every push and
//! delete that was never notified. One reconcile per source runs at a time across every
//! process (a lease in the store); it is paced (`--reconcile-rate`), holds one repository's
//! tags in memory at a time, saves its cursor after each repository and resumes there.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::client::{RegistryClient, RegistryError};
use super::reader::Registries;
use crate::domain::events::{IncomingEvent, DEFAULT_SOURCE};
use crate::domain::registry::{tag_changes, ReconcileStatus, TagChange};
use crate::metrics::SynthesizedLabels;
use crate::store::StoreError;

/// How long a process holds a reconcile without saving progress.
const LEASE: Duration = Duration::from_secs(120);
/// Names asked for per catalog or tag-list page.
const PAGE: usize = 100;
/// Registry requests between two saves of progress (which renew the lease).
const RENEW_EVERY: u32 = 50;
/// How long a source whose reconcile failed waits before the next try.
const AFTER_FAILURE: Duration = Duration::from_secs(60);

/// How a reconcile is run: by whom, how often, and how fast.
#[derive(Clone)]
pub struct Settings {
    /// This process, as the lease names it.
    pub owner: String,
    /// How often each source is reconciled; zero: only when asked.
    pub interval: Duration,
    /// Requests a second to one registry.
    pub rate: u32,
    /// Tells the dispatcher about deliveries made.
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

/// Asks for a reconcile of every readable source (Herald starts: what happened while it
/// was away is found), then runs those asked for or due, one at a time.
pub async fn run(registries: Arc<Registries>, settings: Settings) {
    match registries.readable_sources().await {
        Ok(sources) => {
            for source in sources {
                if let Err(e) = registries
                    .store()
                    .request_reconcile(&source, Utc::now())
                    .await
                {
                    tracing::warn!(source, error = %e, "cannot ask for a reconcile");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the sources to reconcile"),
    }
    let mut failed_at: HashMap<String, Instant> = HashMap::new();
    loop {
        let sources = match registries.readable_sources().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the sources to reconcile");
                Vec::new()
            }
        };
        for source in sources {
            if failed_at
                .get(&source)
                .is_some_and(|at| at.elapsed() < AFTER_FAILURE)
                && !asked_for(&registries, &source).await
            {
                continue;
            }
            let now = Utc::now();
            let due_before = (!settings.interval.is_zero())
                .then(|| chrono::Duration::from_std(settings.interval).ok())
                .flatten()
                .map(|i| now - i);
            let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
            let claimed = registries
                .store()
                .claim_reconcile(&source, &settings.owner, now, lease_until, due_before)
                .await;
            match claimed {
                Ok(Some(run)) => {
                    if reconcile_one(&registries, &settings, run).await.is_err() {
                        failed_at.insert(source, Instant::now());
                    } else {
                        failed_at.remove(&source);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(source, error = %e, "cannot take a reconcile"),
            }
        }
        tokio::select! {
            _ = registries.reconcile_wanted.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Whether someone asked for a reconcile of `source` (which a failure's pause does not
/// hold back).
async fn asked_for(registries: &Registries, source: &str) -> bool {
    registries
        .store()
        .reconcile_status(source)
        .await
        .ok()
        .flatten()
        .is_some_and(|s| s.state == "requested")
}

/// Why a run stopped short.
#[derive(Debug)]
enum Stop {
    Registry(RegistryError),
    Store(StoreError),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry(e) => e.fmt(f),
            Self::Store(e) => write!(f, "the database failed: {e}"),
        }
    }
}

impl From<RegistryError> for Stop {
    fn from(e: RegistryError) -> Self {
        Self::Registry(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// One run for one source, from its cursor to the end of the catalog.
async fn reconcile_one(
    registries: &Arc<Registries>,
    settings: &Settings,
    run: ReconcileStatus,
) -> Result<(), ()> {
    let source = run.source.clone();
    tracing::info!(
        source,
        resumes_after = run.cursor.as_deref(),
        learning = !run.learned,
        "reconcile started"
    );
    let started = Instant::now();
    let mut walk = match registries.client(&source).await {
        Ok(Some(client)) => Walk::new(registries.clone(), settings.clone(), client, run),
        Ok(None) => {
            finish(
                registries,
                settings,
                &source,
                Some("Herald may not read this source's registry"),
            )
            .await;
            return Err(());
        }
        Err(e) => {
            finish(registries, settings, &source, Some(&e)).await;
            return Err(());
        }
    };
    let outcome = walk.catalog().await;
    if let Err(Stop::Registry(e)) = &outcome {
        registries.record(&source, Err(e));
    }
    let status = walk.status;
    match &outcome {
        Ok(()) => {
            finish(registries, settings, &source, None).await;
            tracing::info!(
                source,
                repositories = status.repositories,
                tags = status.tags,
                pushes = status.pushes,
                deletes = status.deletes,
                learned = !status.learned,
                seconds = started.elapsed().as_secs_f64(),
                "reconcile finished"
            );
            Ok(())
        }
        Err(stop) => {
            let why = stop.to_string();
            tracing::warn!(source, error = %why, after = status.cursor.as_deref(), "reconcile stopped; the next run resumes where it stopped");
            finish(registries, settings, &source, Some(&why)).await;
            Err(())
        }
    }
}

async fn finish(registries: &Registries, settings: &Settings, source: &str, error: Option<&str>) {
    if let Err(e) = registries
        .store()
        .finish_reconcile(source, &settings.owner, error, Utc::now())
        .await
    {
        tracing::warn!(source, error = %e, "cannot record the end of a reconcile");
    }
}

/// A run in progress: its client, its pace and its counts.
struct Walk {
    registries: Arc<Registries>,
    settings: Settings,
    client: Arc<RegistryClient>,
    pace: tokio::time::Interval,
    requests: u32,
    status: ReconcileStatus,
}

impl Walk {
    fn new(
        registries: Arc<Registries>,
        settings: Settings,
        client: Arc<RegistryClient>,
        status: ReconcileStatus,
    ) -> Self {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(
            1.0 / f64::from(settings.rate.max(1)),
        ));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            registries,
            settings,
            client,
            pace,
            requests: 0,
            status,
        }
    }

    fn source(&self) -> &str {
        &self.status.source
    }

    /// Waits for the next request's turn; every so often saves progress, which keeps
    /// the lease.
    async fn turn(&mut self) -> Result<(), Stop> {
        self.pace.tick().await;
        self.requests += 1;
        if self.requests % RENEW_EVERY == 0 {
            self.save().await?;
        }
        Ok(())
    }

    async fn save(&self) -> Result<(), Stop> {
        let lease_until = Utc::now() + chrono::Duration::from_std(LEASE).unwrap_or_default();
        self.registries
            .store()
            .save_reconcile(&self.status, &self.settings.owner, lease_until)
            .await
            .map_err(Stop::from)
    }

    /// The catalog page by page, each repository compared in name order; the known
    /// repositories the catalog skips over are gone.
    async fn catalog(&mut self) -> Result<(), Stop> {
        let mut last = self.status.cursor.clone();
        loop {
            self.turn().await?;
            let page = self.client.catalog(last.as_deref(), PAGE).await?;
            self.registries.record(&self.status.source.clone(), Ok(()));
            let mut names: Vec<String> = page
                .names
                .into_iter()
                .filter(|n| last.as_deref().is_none_or(|l| n.as_str() > l))
                .collect();
            names.sort();
            names.dedup();
            let progressed = !names.is_empty();
            for repository in names {
                self.gone_between(last.as_deref(), Some(&repository))
                    .await?;
                self.repository(&repository).await?;
                self.status.repositories += 1;
                self.status.cursor = Some(repository.clone());
                last = Some(repository);
                self.save().await?;
            }
            // The next page starts after the last repository compared; a registry that
            // says there is more but lists nothing new is at its end.
            if page.next.is_none() || !progressed {
                self.gone_between(last.as_deref(), None).await?;
                return Ok(());
            }
        }
    }

    /// The repositories Herald knows between `after` and `before` that the catalog no
    /// longer lists: every tag of theirs is gone.
    async fn gone_between(
        &mut self,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<(), Stop> {
        let mut from = after.map(str::to_string);
        loop {
            let gone = self
                .registries
                .store()
                .known_repositories(self.source(), from.as_deref(), before, PAGE as i64)
                .await?;
            let Some(last) = gone.last().cloned() else {
                return Ok(());
            };
            for repository in gone {
                self.compare(&repository, Vec::new()).await?;
            }
            from = Some(last);
        }
    }

    /// One repository: its tags and their digests from the registry, compared.
    async fn repository(&mut self, repository: &str) -> Result<(), Stop> {
        let mut tags: Vec<String> = Vec::new();
        let mut last: Option<String> = None;
        loop {
            self.turn().await?;
            let page = self.client.tags(repository, last.as_deref(), PAGE).await?;
            let before = tags.len();
            tags.extend(
                page.names
                    .into_iter()
                    .filter(|t| last.as_deref().is_none_or(|l| t.as_str() > l)),
            );
            match page.next {
                Some(next) if tags.len() > before => last = Some(next),
                _ => break,
            }
        }
        tags.sort();
        tags.dedup();
        let mut actual = Vec::with_capacity(tags.len());
        for tag in tags {
            self.turn().await?;
            // A tag deleted since the list was read is simply not there.
            if let Some((digest, media_type)) = self.client.tag_digest(repository, &tag).await? {
                actual.push(Tagged {
                    tag,
                    digest,
                    media_type,
                });
            }
        }
        self.status.tags += actual.len() as i64;
        self.compare(repository, actual).await
    }

    /// Compares the registry's tags of `repository` with Herald's; the first run learns
    /// them, the others make up the events that were not sent.
    async fn compare(&mut self, repository: &str, actual: Vec<Tagged>) -> Result<(), Stop> {
        let store = self.registries.store().clone();
        let pairs: Vec<(String, String)> = actual
            .iter()
            .map(|t| (t.tag.clone(), t.digest.clone()))
            .collect();
        if !self.status.learned {
            store
                .learn_tags(self.source(), repository, &pairs, Utc::now())
                .await?;
            return Ok(());
        }
        let known = store.known_tags(self.source(), repository).await?;
        let first = tag_changes(&known, &pairs);
        if first.is_empty() {
            return Ok(());
        }
        // A notification may have arrived while the registry was read: only what still
        // differs is made up.
        let known = store.known_tags(self.source(), repository).await?;
        let changes: Vec<TagChange> = tag_changes(&known, &pairs)
            .into_iter()
            .filter(|c| first.contains(c))
            .collect();
        let media_types: HashMap<&str, &str> = actual
            .iter()
            .map(|t| (t.tag.as_str(), t.media_type.as_str()))
            .collect();
        let events: Vec<IncomingEvent> = changes
            .iter()
            .filter_map(|c| {
                let media_type = match c {
                    TagChange::New { tag, .. } | TagChange::Moved { tag, .. } => {
                        media_types.get(tag.as_str()).copied()
                    }
                    TagChange::Gone { .. } => None,
                };
                synthesize(
                    self.source(),
                    self.client.base().as_str(),
                    repository,
                    c,
                    media_type,
                )
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let summary = store.ingest(&events, Utc::now()).await?;
        for c in &changes {
            let action = match c {
                TagChange::Gone { .. } => {
                    self.status.deletes += 1;
                    "delete"
                }
                _ => {
                    self.status.pushes += 1;
                    "push"
                }
            };
            self.registries
                .metrics()
                .synthesized
                .get_or_create(&SynthesizedLabels {
                    source: self.source().to_string(),
                    action: action.into(),
                })
                .inc();
        }
        tracing::info!(
            source = self.source(),
            repository,
            events = events.len(),
            deliveries = summary.deliveries,
            "made up the events the registry did not send"
        );
        if summary.deliveries > 0 {
            (self.settings.wake)();
        }
        self.registries.facts_wanted.notify_one();
        Ok(())
    }
}

/// A tag as the registry has it.
struct Tagged {
    tag: String,
    digest: String,
    media_type: String,
}

/// The event that stands for a change: distribution's shape (what every format reads),
/// marked as made up, with why, under `herald.synthesized`.
fn synthesize(
    source: &str,
    registry: &str,
    repository: &str,
    change: &TagChange,
    media_type: Option<&str>,
) -> Option<IncomingEvent> {
    let reason = change.reason();
    let (action, tag, digest) = match change {
        TagChange::New { tag, digest } | TagChange::Moved { tag, digest, .. } => {
            ("push", tag, digest)
        }
        TagChange::Gone { tag, digest } => ("delete", tag, digest),
    };
    let mut target = serde_json::json!({
        "digest": digest,
        "repository": repository,
        "tag": tag,
    });
    if let Some(mt) = media_type.filter(|m| !m.is_empty()) {
        target["mediaType"] = mt.into();
    }
    let origin = if source == DEFAULT_SOURCE {
        let addr = url::Url::parse(registry)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .unwrap_or_default();
        serde_json::json!({ "addr": addr })
    } else {
        serde_json::json!({ "name": source })
    };
    let event = serde_json::json!({
        "id": crate::secrets::random_token("herald-reconcile-"),
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "action": action,
        "target": target,
        "request": {"method": if action == "push" { "PUT" } else { "DELETE" }, "useragent": "herald-reconcile"},
        "actor": {},
        "source": origin,
        "herald": {"synthesized": reason},
    });
    let envelope = serde_json::json!({ "events": [event] }).to_string();
    let named = (source != DEFAULT_SOURCE).then_some(source);
    let mut event = crate::registry::envelope::parse_envelope_from(envelope.as_bytes(), named)
        .ok()?
        .pop()?;
    event.registry_readable = true;
    event.synthesized = Some(reason);
    if let Some(facts) = &mut event.facts {
        facts.synthesized = true;
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_up_push_is_a_distribution_event_marked_with_why() {
        let change = TagChange::New {
            tag: "1.0".into(),
            digest: "sha256:abc".into(),
        };
        let e = synthesize(
            "default",
            "http://127.0.0.1:5000",
            "acme/web",
            &change,
            Some("application/vnd.oci.image.manifest.v1+json"),
        )
        .unwrap();
        assert_eq!(e.action.as_deref(), Some("push"));
        assert_eq!(e.tag.as_deref(), Some("1.0"));
        assert!(e
            .registry_id
            .as_deref()
            .unwrap()
            .starts_with("herald-reconcile-"));
        assert!(e
            .synthesized
            .as_deref()
            .unwrap()
            .contains("sent no push event"));
        assert!(e.facts.as_ref().unwrap().synthesized);
        assert!(e.registry_readable && e.facts_pending());
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["source"]["addr"], "127.0.0.1:5000");
        assert_eq!(
            body["herald"]["synthesized"],
            e.synthesized.clone().unwrap()
        );
        let gone = synthesize(
            "zot",
            "http://127.0.0.1:5000",
            "acme/web",
            &TagChange::Gone {
                tag: "old".into(),
                digest: "sha256:d".into(),
            },
            None,
        )
        .unwrap();
        assert_eq!(gone.action.as_deref(), Some("delete"));
        assert_eq!(gone.source.as_deref(), Some("zot"));
        assert!(!gone.facts_pending());
    }
}
