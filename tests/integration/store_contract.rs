//! The `Store` contract, written once against `Arc<dyn Store>` and run on every backend:
//! `store_contract::<area>::sqlite` and `store_contract::<area>::postgres`. What passes
//! here on both is what the rest of Herald may rely on, whichever database it runs on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald::config::Config;
use herald::domain::control::{CircuitRule, CircuitState};
use herald::domain::delivery::{
    AttemptRecord, Claim, ClaimScope, DeliveryState, HandOff, Outcome, StoredRequest,
};
use herald::domain::events::Action;
use herald::domain::events::IncomingEvent;
use herald::domain::filters::Filters;
use herald::domain::model::{
    ActivityFilter, Audit, Health, HourStats, NewSource, NewWebhook, QueueStats, Role,
    SourceActivity, StoredHeader, Visibility, WebhookPatch,
};
use herald::domain::names::{
    ContentType, HeaderName, NamespaceName, RequestMethod, WebhookName, WebhookUrl,
};
use herald::domain::operational::Announcement;
use herald::domain::signature::SignatureScheme;
use herald::registry::envelope::parse_envelope;
use herald::secrets::Sealed;
use herald::store::{Store, StoreError, StoreResult};

use crate::helpers::{eventually, fixture};
use crate::pg::PgTestDb;

/// A store on a fresh database, and what must live as long as it.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub _dir: tempfile::TempDir,
    pub db: Option<PgTestDb>,
}

async fn open(database: Option<&str>) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--data-dir".to_string(), dir.path().display().to_string()];
    if let Some(url) = database {
        args.extend(["--database".to_string(), url.to_string()]);
    }
    let config = Config::from_args(&args).unwrap();
    (herald::open_store(&config).await.unwrap(), dir)
}

pub async fn sqlite_store() -> TestStore {
    let (store, dir) = open(None).await;
    TestStore {
        store,
        _dir: dir,
        db: None,
    }
}

/// `None` when PostgreSQL is not there (outside CI): the test then passes, skipped.
pub async fn pg_store() -> Option<TestStore> {
    let db = PgTestDb::create().await?;
    let (store, dir) = open(Some(&db.url)).await;
    Some(TestStore {
        store,
        _dir: dir,
        db: Some(db),
    })
}

macro_rules! contract {
    ($($area:ident),* $(,)?) => {$(
        mod $area {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let s = super::sqlite_store().await;
                super::$area(s.store.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(s) = super::pg_store().await else { return };
                super::$area(s.store.clone()).await;
            }
        }
    )*};
}

contract!(
    namespaces,
    webhooks_and_headers,
    ingest_and_events,
    claims_leases_and_attempts,
    retries_and_manual_attempts,
    concurrent_claims_are_exclusive,
    concurrent_writes_stand_alone,
    claims_pass_over_skipped_webhooks,
    claims_of_some_webhooks_or_one_of_each,
    users_and_tokens,
    teams_and_activities,
    operations_and_wakeups,
    queue_stats_and_release,
    sessions,
    signing_secrets_and_health,
    requeue_and_ping,
    stats_and_retention,
    sources,
    settings_claims_and_liveness,
    health_filters_and_passwords,
    operational_events,
    send_requests,
    webhook_figures,
    registry_reads,
    deliveries_born_claimed,
    hand_offs_see_each_settings_change_and_only_perfect_health,
);

/// Every method of the traits `Store` is made of (as `src/store/mod.rs` declares them) is
/// called somewhere in this contract, so a new method cannot go untested on either backend.
#[test]
fn the_contract_calls_every_store_method() {
    let store_rs = include_str!("../../src/store/mod.rs");
    let methods: Vec<&str> = store_rs
        .split("#[async_trait]\npub trait ")
        .skip(1)
        .map(|rest| &rest[..rest.find("\n}\n").expect("the trait ends")])
        .flat_map(|body| body.split("fn ").skip(1))
        .filter_map(|rest| rest.split(['(', '<']).next())
        .map(str::trim)
        .collect();
    assert!(
        methods.len() >= 40 && methods.contains(&"ingest") && methods.contains(&"prune"),
        "the trait was not read: {methods:?}"
    );
    let contract = include_str!("store_contract.rs");
    let missing: Vec<&&str> = methods
        .iter()
        .filter(|m| !contract.contains(&format!(".{m}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "Store methods the contract never calls: {missing:?}"
    );
}

const PUSH: &str = "distribution-2.8.2/push-manifest-tagged.json";

pub(crate) fn ns(name: &str) -> NamespaceName {
    NamespaceName::parse(name).unwrap()
}

pub(crate) fn audit(action: &'static str) -> Audit {
    Audit::new("tester", action)
}

fn header(name: &str, value: &[u8]) -> StoredHeader {
    StoredHeader {
        name: HeaderName::parse(name).unwrap(),
        value: Sealed(value.to_vec()),
    }
}

fn new_webhook(name: &str, headers: Vec<StoredHeader>) -> NewWebhook {
    NewWebhook {
        name: WebhookName::parse(name).unwrap(),
        url: WebhookUrl::parse("http://receiver.example.org/hook").unwrap(),
        request_method: RequestMethod::parse("POST").unwrap(),
        content_type: ContentType::parse("application/json").unwrap(),
        username: Some("bot".into()),
        password: Some(Sealed(vec![1, 0, 2, 255])),
        headers,
        signing_secret: Sealed(vec![7, 0, 7]),
        filters: Default::default(),
        format: Default::default(),
        template: None,
        tls_verify: true,
        rate_limit: None,
        ordering: Default::default(),
        signature: Default::default(),
        client_certificate: None,
        client_key: None,
        token: None,
        format_options: Default::default(),
    }
}

fn conflict<T: std::fmt::Debug>(r: StoreResult<T>) -> String {
    match r {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn not_found<T: std::fmt::Debug>(r: StoreResult<T>) -> String {
    match r {
        Err(StoreError::NotFound(m)) => m,
        other => panic!("expected not found, got {other:?}"),
    }
}

/// Push events for `acme/web`, one per id suffix, each with its own registry id.
pub(crate) fn pushes(n: usize, tag: &str) -> Vec<IncomingEvent> {
    let template = String::from_utf8(fixture(PUSH)).unwrap();
    (0..n)
        .flat_map(|i| {
            let body = template.replace("2045f19c", &format!("{tag}{i:04}"));
            parse_envelope(body.as_bytes()).unwrap()
        })
        .collect()
}

/// A namespace `acme` with one enabled webhook; returns the webhook's id.
pub(crate) async fn acme_with_hook(store: &Arc<dyn Store>) -> i64 {
    store
        .create_namespace(&ns("acme"), "", None, &audit("namespace.create"))
        .await
        .unwrap();
    let hook = store
        .create_webhook(
            &ns("acme"),
            new_webhook("d", vec![]),
            &audit("webhook.create"),
        )
        .await
        .unwrap();
    let patch = WebhookPatch {
        enabled: Some(true),
        ..Default::default()
    };
    store
        .update_webhook(&ns("acme"), hook.id, patch, &audit("webhook.enabled"))
        .await
        .unwrap();
    hook.id
}

fn attempt(delivery_id: i64, lease: Option<i64>, outcome: Outcome, status: u16) -> AttemptRecord {
    AttemptRecord {
        delivery_id,
        started_at: Utc::now(),
        duration_ms: 12,
        status: Some(status),
        error: (status != 200).then(|| format!("the receiver answered {status}")),
        response_headers: vec![("content-length".into(), "2".into())],
        response_body: "ok".into(),
        response_truncated: false,
        manual: lease.is_none(),
        request: StoredRequest {
            method: "POST".into(),
            url: "http://receiver.example.org/hook".into(),
            headers: vec![("Authorization".into(), "[redacted]".into())],
            body: "ignored: the event body".into(),
        },
        body_is_event: true,
        outcome,
        lease,
    }
}

pub(crate) fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

async fn namespaces(store: Arc<dyn Store>) {
    let all = store.list_namespaces(&Visibility::All).await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].name.is_global());
    let created = store
        .create_namespace(&ns("acme"), "Acme's", None, &audit("namespace.create"))
        .await
        .unwrap();
    assert_eq!(created.name.as_str(), "acme");
    assert_eq!(created.description, "Acme's");
    assert_eq!(created.team, None);
    assert_eq!(created.webhook_count, 0);
    assert_eq!(
        conflict(
            store
                .create_namespace(&ns("acme"), "", None, &audit("namespace.create"))
                .await
        ),
        "the namespace 'acme' already exists"
    );
    assert_eq!(
        not_found(store.get_namespace(&ns("nope")).await),
        "namespace 'nope'"
    );
    assert_eq!(
        conflict(
            store
                .delete_namespace(&NamespaceName::global(), &audit("namespace.destroy"))
                .await
        ),
        "the global namespace always exists and cannot be deleted"
    );
    let names: Vec<String> = store
        .list_namespaces(&Visibility::All)
        .await
        .unwrap()
        .iter()
        .map(|n| n.name.as_str().to_string())
        .collect();
    assert_eq!(names, ["_global", "acme"]);

    // A member sees only their teams' namespaces.
    let bob = store.create_user("bob", "hash", None, false).await.unwrap();
    let team = store
        .create_team("web", "", bob.id, &audit("team.create"))
        .await
        .unwrap();
    store
        .create_namespace(&ns("webns"), "", Some(team.id), &audit("namespace.create"))
        .await
        .unwrap();
    let seen: Vec<String> = store
        .list_namespaces(&Visibility::MemberOf(bob.id))
        .await
        .unwrap()
        .iter()
        .map(|n| format!("{}:{}", n.name.as_str(), n.team.clone().unwrap_or_default()))
        .collect();
    assert_eq!(seen, ["bob:~bob", "webns:web"]);

    store
        .delete_namespace(&ns("acme"), &audit("namespace.destroy"))
        .await
        .unwrap();
    not_found(store.get_namespace(&ns("acme")).await);
    assert_eq!(
        not_found(
            store
                .delete_namespace(&ns("acme"), &audit("namespace.destroy"))
                .await
        ),
        "namespace 'acme'"
    );
    let trail = store
        .list_activities(&Visibility::All, Some("acme"), 10, None)
        .await
        .unwrap();
    let actions: Vec<&str> = trail.items.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["namespace.destroy", "namespace.create"]);
}

async fn webhooks_and_headers(store: Arc<dyn Store>) {
    let acme = ns("acme");
    store
        .create_namespace(&acme, "", None, &audit("namespace.create"))
        .await
        .unwrap();
    let hook = store
        .create_webhook(
            &acme,
            new_webhook("deploy", vec![header("X-Token", b"sealed\x00bytes")]),
            &audit("webhook.create"),
        )
        .await
        .unwrap();
    assert!(!hook.enabled, "new webhooks start disabled");
    assert_eq!(hook.namespace.as_str(), "acme");
    assert_eq!(hook.username.as_deref(), Some("bot"));
    assert_eq!(hook.password, Some(Sealed(vec![1, 0, 2, 255])));
    assert_eq!(hook.headers.len(), 1);
    assert_eq!(hook.headers[0].value, Sealed(b"sealed\x00bytes".to_vec()));
    assert_eq!(
        conflict(
            store
                .create_webhook(
                    &acme,
                    new_webhook("deploy", vec![]),
                    &audit("webhook.create")
                )
                .await
        ),
        "a webhook named 'deploy' already exists in namespace 'acme'"
    );
    assert_eq!(
        conflict(
            store
                .create_webhook(
                    &acme,
                    new_webhook("twice", vec![header("X-A", b"1"), header("x-a", b"2")]),
                    &audit("webhook.create"),
                )
                .await
        ),
        "the header 'x-a' is given twice"
    );
    assert_eq!(store.list_webhooks(&acme).await.unwrap().len(), 1);
    assert_eq!(store.get_namespace(&acme).await.unwrap().webhook_count, 1);
    assert_eq!(
        not_found(store.get_webhook(&NamespaceName::global(), hook.id).await),
        format!("webhook {} in namespace '_global'", hook.id)
    );
    not_found(store.list_webhooks(&ns("nope")).await);

    // Headers: names are compared without regard to case.
    assert!(
        !store
            .set_header(
                &acme,
                hook.id,
                header("x-token", b"v2"),
                &audit("webhook.header.set")
            )
            .await
            .unwrap(),
        "replacing a header in another case is not new"
    );
    assert!(store
        .set_header(
            &acme,
            hook.id,
            header("A-First", b"v"),
            &audit("webhook.header.set")
        )
        .await
        .unwrap());
    let names: Vec<String> = store
        .get_webhook(&acme, hook.id)
        .await
        .unwrap()
        .headers
        .iter()
        .map(|h| h.name.as_str().to_string())
        .collect();
    assert_eq!(names, ["A-First", "x-token"]);
    store
        .delete_header(&acme, hook.id, "X-TOKEN", &audit("webhook.header.delete"))
        .await
        .unwrap();
    assert_eq!(
        not_found(
            store
                .delete_header(&acme, hook.id, "x-token", &audit("webhook.header.delete"))
                .await
        ),
        format!("header 'x-token' of webhook {}", hook.id)
    );

    // Patches change only what they name; Some(None) clears.
    let patch = WebhookPatch {
        name: Some(WebhookName::parse("renamed").unwrap()),
        password: Some(None),
        enabled: Some(true),
        headers: Some(vec![header("X-B", b"b")]),
        ..Default::default()
    };
    let updated = store
        .update_webhook(&acme, hook.id, patch, &audit("webhook.update"))
        .await
        .unwrap();
    assert_eq!(updated.name.as_str(), "renamed");
    assert!(updated.enabled);
    assert_eq!(updated.password, None);
    assert_eq!(updated.username.as_deref(), Some("bot"));
    assert_eq!(updated.headers.len(), 1);
    assert_eq!(updated.headers[0].name.as_str(), "X-B");
    assert_eq!(updated.signature, SignatureScheme::V1, "v1 is the default");
    assert_eq!(
        (updated.client_certificate, updated.client_key),
        (None, None)
    );

    // A scheme switch brings its key, which takes over while the old one signs beside it;
    // a client certificate and its sealed key are set, and cleared, together.
    let until = Utc::now() + secs(3600);
    let switch = WebhookPatch {
        signature: Some(SignatureScheme::V1a),
        signing_secret: Some((Sealed(vec![5, 5]), until)),
        client_identity: Some(Some(("PEM".into(), Sealed(vec![6, 0, 6])))),
        ..Default::default()
    };
    let switched = store
        .update_webhook(&acme, hook.id, switch, &audit("webhook.update"))
        .await
        .unwrap();
    assert_eq!(switched.signature, SignatureScheme::V1a);
    assert_eq!(
        switched.signing_secrets,
        [Sealed(vec![5, 5]), Sealed(vec![7, 0, 7])]
    );
    assert_eq!(switched.previous_secret_until.map(ms), Some(ms(until)));
    assert_eq!(switched.client_certificate.as_deref(), Some("PEM"));
    assert_eq!(switched.client_key, Some(Sealed(vec![6, 0, 6])));
    let cleared = store
        .update_webhook(
            &acme,
            hook.id,
            WebhookPatch {
                client_identity: Some(None),
                ..Default::default()
            },
            &audit("webhook.update"),
        )
        .await
        .unwrap();
    assert_eq!(
        (cleared.client_certificate, cleared.client_key),
        (None, None)
    );
    assert_eq!(cleared.signature, SignatureScheme::V1a, "kept");
    assert_eq!(cleared.signing_secrets.len(), 2, "kept");

    // A deploy format's sealed token (bytes kept exactly, NUL too) and its options are
    // written, kept by patches that do not name them, and cleared.
    let options: herald::domain::deploy::FormatOptions = serde_json::from_value(
        serde_json::json!({"ref": "main", "variables": {"ENV": "prod"}, "registry": "r:5000"}),
    )
    .unwrap();
    let deploy = store
        .update_webhook(
            &acme,
            hook.id,
            WebhookPatch {
                format: Some(herald::domain::format::Format::GitlabTrigger),
                token: Some(Some(Sealed(vec![9, 0, 9]))),
                format_options: Some(options.clone()),
                ..Default::default()
            },
            &audit("webhook.update"),
        )
        .await
        .unwrap();
    assert_eq!(deploy.token, Some(Sealed(vec![9, 0, 9])));
    assert_eq!(deploy.format_options, options);
    let kept = store
        .update_webhook(
            &acme,
            hook.id,
            WebhookPatch {
                tls_verify: Some(true),
                ..Default::default()
            },
            &audit("webhook.update"),
        )
        .await
        .unwrap();
    assert_eq!(
        (kept.token, kept.format_options),
        (Some(Sealed(vec![9, 0, 9])), options)
    );
    let cleared = store
        .update_webhook(
            &acme,
            hook.id,
            WebhookPatch {
                format: Some(Default::default()),
                token: Some(None),
                format_options: Some(Default::default()),
                ..Default::default()
            },
            &audit("webhook.update"),
        )
        .await
        .unwrap();
    assert_eq!(cleared.token, None);
    assert!(cleared.format_options.is_empty());
    let other = store
        .create_webhook(
            &acme,
            new_webhook("other", vec![]),
            &audit("webhook.create"),
        )
        .await
        .unwrap();
    let clash = WebhookPatch {
        name: Some(WebhookName::parse("renamed").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        conflict(
            store
                .update_webhook(&acme, other.id, clash, &audit("webhook.update"))
                .await
        ),
        "a webhook named 'renamed' already exists in namespace 'acme'"
    );
    let ids: Vec<i64> = store
        .list_webhooks(&acme)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, [hook.id, other.id]);
    store
        .delete_webhook(&acme, hook.id, &audit("webhook.destroy"))
        .await
        .unwrap();
    not_found(
        store
            .delete_webhook(&acme, hook.id, &audit("webhook.destroy"))
            .await,
    );
    let trail = store
        .list_activities(&Visibility::All, Some("acme"), 50, None)
        .await
        .unwrap();
    let destroyed = &trail.items[0];
    assert_eq!(destroyed.action, "webhook.destroy");
    assert_eq!(destroyed.webhook_name.as_deref(), Some("renamed"));
    assert_eq!(
        destroyed.webhook_host.as_deref(),
        Some("receiver.example.org")
    );
    // Thirteen changes made it (two of them the scheme and client certificate updates,
    // three the deploy token and options).
    assert_eq!(trail.items.len(), 13, "failed changes leave no entry");
}

async fn ingest_and_events(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let disabled = store
        .create_webhook(
            &ns("acme"),
            new_webhook("off", vec![]),
            &audit("webhook.create"),
        )
        .await
        .unwrap();
    let now = Utc::now();
    let events = pushes(3, "aaaa");
    let summary = store.ingest(&events, now).await.unwrap();
    assert_eq!((summary.accepted, summary.deliveries), (3, 3));
    let again = store.ingest(&events[..1], now).await.unwrap();
    assert_eq!((again.duplicates, again.deliveries), (1, 0));
    // The deliveries a range of events made, with their webhook and namespace.
    let stored = store.list_events(10, None).await.unwrap().items;
    let (first, last) = (stored[2].id, stored[0].id);
    let made = store.deliveries_of_events(first, last, 10).await.unwrap();
    assert_eq!(made.len(), 3, "{made:?}");
    assert!(made.iter().all(|d| d.webhook_id == hook
        && d.namespace == "acme"
        && d.webhook == "d"
        && d.state == "pending"));
    assert_eq!(
        made.iter().map(|d| d.event_id).collect::<Vec<_>>(),
        vec![first, stored[1].id, last]
    );
    assert_eq!(
        store
            .deliveries_of_events(first, last, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store
        .deliveries_of_events(last + 1, last + 10, 10)
        .await
        .unwrap()
        .is_empty());

    // Odd events are kept with their reason; NUL in their text does not break storage.
    let odd = br#"{"events": [
        {"id": "odd-1", "action": "sing", "target": {"repository": "acme/web"}},
        {"id": "odd-\u0000-2", "action": "push", "actor": {"name": "a\u0000b"},
         "target": {"repository": "nowhere/web", "tag": "1", "mediaType": "application/vnd.oci.image.manifest.v1+json"}},
        {"id": "odd-3", "action": "pull", "target": {"repository": "acme/web"}}
    ]}"#;
    let odd = store
        .ingest(&parse_envelope(odd).unwrap(), now)
        .await
        .unwrap();
    assert_eq!(
        (odd.ignored, odd.skipped, odd.accepted, odd.deliveries),
        (1, 2, 0, 0)
    );
    let page = store.list_events(4, None).await.unwrap();
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.items[0].registry_id.as_deref(), Some("odd-3"));
    assert_eq!(page.items[0].reason.as_deref(), Some("pull"));
    assert_eq!(page.items[1].status, "skipped");
    assert_eq!(
        page.items[1].reason.as_deref(),
        Some("namespace 'nowhere' does not exist")
    );
    assert_eq!(
        page.items[2].reason.as_deref(),
        Some("unknown action 'sing'")
    );
    let rest = store
        .list_events(4, page.next.as_deref().map(|c| c.parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert_eq!(rest.next, None);

    let deliveries = store.list_deliveries(hook, 2, None).await.unwrap();
    assert_eq!(deliveries.items.len(), 2);
    let newest = &deliveries.items[0];
    assert_eq!(newest.state, DeliveryState::Pending);
    assert_eq!(newest.attempt_count, 0);
    assert_eq!(
        newest.event.id.as_deref(),
        Some("aaaa0002-7a89-451b-8ea6-bfb7cac6a943")
    );
    assert_eq!(newest.event.tag.as_deref(), Some("1.0"));
    assert_eq!(newest.event.repository.as_deref(), Some("acme/web"));
    assert_eq!(
        newest.next_attempt_at.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis())
    );
    let older = store
        .list_deliveries(hook, 2, deliveries.next.map(|c| c.parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(older.items.len(), 1);
    assert!(store
        .list_deliveries(disabled.id, 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
    let detail = store.get_delivery(hook, newest.id).await.unwrap();
    assert!(detail.request.is_none() && detail.attempts.is_empty());
    assert_eq!(
        not_found(store.get_delivery(disabled.id, newest.id).await),
        format!("delivery {} of webhook {}", newest.id, disabled.id)
    );
}

async fn claims_leases_and_attempts(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(3, "bbbb"), now).await.unwrap();
    // Due now, oldest first, each claimed once while its lease holds.
    let first = store.claim_due(now, now + secs(10), 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|c| c.webhook_id == hook));
    assert!(first[0].delivery_id < first[1].delivery_id);
    let second = store.claim_due(now, now + secs(10), 5).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(store
        .claim_due(now + secs(9), now + secs(19), 5)
        .await
        .unwrap()
        .is_empty());
    let before_due: DateTime<Utc> = now - secs(1);
    assert!(store
        .claim_due(before_due, before_due + secs(10), 5)
        .await
        .unwrap()
        .is_empty());

    // The lease expires (its process died): the delivery is claimed again, under a new token.
    let old: Claim = first[0];
    let later = now + secs(11);
    let again = store.claim_due(later, later + secs(10), 5).await.unwrap();
    assert_eq!(again.len(), 3);
    let new = *again
        .iter()
        .find(|c| c.delivery_id == old.delivery_id)
        .unwrap();
    assert_ne!(new.token, old.token);

    // The stalled worker may neither renew, nor record, nor abandon under its old claim.
    assert!(!store
        .renew_lease(old.delivery_id, old.token, later + secs(30))
        .await
        .unwrap());
    let lost = conflict(
        store
            .record_attempt(attempt(
                old.delivery_id,
                Some(old.token),
                Outcome::Succeeded,
                200,
            ))
            .await,
    );
    assert!(lost.contains("was lost"), "{lost}");
    conflict(
        store
            .abandon(old.delivery_id, Some(old.token), "stale")
            .await,
    );
    let untouched = store.get_delivery(hook, old.delivery_id).await.unwrap();
    assert_eq!(untouched.summary.state, DeliveryState::Pending);
    assert!(untouched.attempts.is_empty());

    // The current claim renews (past the old lease) and records.
    assert!(store
        .renew_lease(new.delivery_id, new.token, later + secs(60))
        .await
        .unwrap());
    let third = store
        .claim_due(later + secs(30), later + secs(40), 5)
        .await
        .unwrap();
    assert_eq!(third.len(), 2, "all but the renewed one");
    assert!(third.iter().all(|c| c.delivery_id != new.delivery_id));
    // The job carries the webhook as `get_webhook` reads it, binary header values included.
    for (name, value) in [("X-Zero", &[0u8, 255, 16][..]), ("X-Auth", &b"sealed"[..])] {
        store
            .set_header(&ns("acme"), hook, header(name, value), &audit("header.set"))
            .await
            .unwrap();
    }
    let job = store.load_job(new.delivery_id).await.unwrap();
    let direct = store.get_webhook(&ns("acme"), hook).await.unwrap();
    assert_eq!(job.webhook.id, hook);
    let headers = |w: &herald::domain::model::Webhook| -> Vec<(String, Vec<u8>)> {
        w.headers
            .iter()
            .map(|h| (h.name.as_str().to_string(), h.value.0.clone()))
            .collect()
    };
    assert_eq!(headers(&job.webhook), headers(&direct));
    assert_eq!(headers(&job.webhook).len(), 2);
    assert_eq!(job.webhook.url.as_str(), direct.url.as_str());
    assert!(job.webhook.password == direct.password && job.webhook.password.is_some());
    assert!(job.webhook.signing_secrets == direct.signing_secrets);
    assert_eq!(job.attempts_so_far, 0);
    assert_eq!(job.event_action, "push");
    assert!(job.event_body.contains("bbbb0000"));
    // A claim's jobs in one query: those that exist, in id order, each as `load_job` reads it.
    let mut wanted: Vec<i64> = third.iter().map(|c| c.delivery_id).collect();
    wanted.extend([999_999, new.delivery_id]);
    let jobs = store.load_jobs(&wanted).await.unwrap();
    let mut expected: Vec<i64> = third.iter().map(|c| c.delivery_id).collect();
    expected.push(new.delivery_id);
    expected.sort();
    assert_eq!(
        jobs.iter().map(|j| j.delivery_id).collect::<Vec<_>>(),
        expected
    );
    let same = jobs
        .iter()
        .find(|j| j.delivery_id == new.delivery_id)
        .unwrap();
    assert_eq!(headers(&same.webhook), headers(&job.webhook));
    assert_eq!(
        (
            &same.event_body,
            &same.event.registry_id,
            same.automatic_attempts
        ),
        (
            &job.event_body,
            &job.event.registry_id,
            job.automatic_attempts
        )
    );
    assert!(store.load_jobs(&[]).await.unwrap().is_empty());
    let mut record = attempt(new.delivery_id, Some(new.token), Outcome::Succeeded, 200);
    record.response_body = "body with a \0 NUL".into();
    store.record_attempt(record).await.unwrap();
    let done = store.get_delivery(hook, new.delivery_id).await.unwrap();
    assert_eq!(done.summary.state, DeliveryState::Succeeded);
    assert_eq!(done.summary.attempt_count, 1);
    assert_eq!(done.summary.last_status, Some(200));
    assert_eq!(done.summary.next_attempt_at, None);
    let request = done.request.unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.body, *job.event_body,
        "the event body is stored once"
    );
    assert_eq!(
        request.headers,
        [("Authorization".to_string(), "[redacted]".to_string())]
    );
    assert_eq!(done.attempts.len(), 1);
    let a = &done.attempts[0];
    assert_eq!((a.status, a.duration_ms, a.manual), (Some(200), 12, false));
    // PostgreSQL text cannot hold NUL: it may come back as U+FFFD, the rest intact.
    assert_eq!(
        a.response_body.replace('\u{FFFD}', "\0"),
        "body with a \0 NUL"
    );
    // Finished: no renewal, no further claims.
    assert!(!store
        .renew_lease(new.delivery_id, new.token, later + secs(60))
        .await
        .unwrap());

    // Abandoning under the current claim fails the delivery with the reason.
    let other = third[0];
    store
        .abandon(
            other.delivery_id,
            Some(other.token),
            "the webhook was disabled",
        )
        .await
        .unwrap();
    let failed = store.get_delivery(hook, other.delivery_id).await.unwrap();
    assert_eq!(failed.summary.state, DeliveryState::Failed);
    assert_eq!(
        failed.summary.last_error.as_deref(),
        Some("the webhook was disabled")
    );
    let last = store
        .claim_due(later + secs(3600), later + secs(3700), 10)
        .await
        .unwrap();
    let ids: Vec<i64> = last.iter().map(|c| c.delivery_id).collect();
    assert_eq!(
        ids,
        [third[1].delivery_id],
        "only the unfinished one is left"
    );
    not_found(store.load_job(999_999).await);
}

async fn retries_and_manual_attempts(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(1, "cccc"), now).await.unwrap();
    let claim = store.claim_due(now, now + secs(10), 5).await.unwrap()[0];
    let retry_at = now + secs(5);
    store
        .record_attempt(attempt(
            claim.delivery_id,
            Some(claim.token),
            Outcome::RetryAt(retry_at),
            500,
        ))
        .await
        .unwrap();
    let d = store.get_delivery(hook, claim.delivery_id).await.unwrap();
    assert_eq!(d.summary.state, DeliveryState::Retrying);
    assert_eq!(
        d.summary.last_error.as_deref(),
        Some("the receiver answered 500")
    );
    assert_eq!(
        d.summary.next_attempt_at.map(|t| t.timestamp_millis()),
        Some(retry_at.timestamp_millis())
    );
    // Not due before its time, although its lease was released.
    assert!(store
        .claim_due(now + secs(4), now + secs(14), 5)
        .await
        .unwrap()
        .is_empty());
    let retry = store
        .claim_due(now + secs(5), now + secs(15), 5)
        .await
        .unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!(
        store
            .load_job(claim.delivery_id)
            .await
            .unwrap()
            .attempts_so_far,
        1
    );

    // A manual attempt meanwhile (no lease) records, and leaves the worker's lease alone:
    // due again at once, the delivery is still not claimable while that lease holds.
    store
        .record_attempt(attempt(claim.delivery_id, None, Outcome::RetryAt(now), 502))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_delivery(hook, claim.delivery_id)
            .await
            .unwrap()
            .summary
            .state,
        DeliveryState::Retrying
    );
    assert!(store
        .claim_due(now + secs(6), now + secs(16), 5)
        .await
        .unwrap()
        .is_empty());
    store
        .record_attempt(attempt(
            claim.delivery_id,
            Some(retry[0].token),
            Outcome::Failed,
            500,
        ))
        .await
        .unwrap();
    let d = store.get_delivery(hook, claim.delivery_id).await.unwrap();
    assert_eq!(d.summary.state, DeliveryState::Failed);
    assert_eq!(d.summary.attempt_count, 3);
    let manual: Vec<bool> = d.attempts.iter().map(|a| a.manual).collect();
    assert_eq!(manual, [false, true, false]);
    // A manual retry of a finished delivery holds no lease and succeeds.
    store
        .record_attempt(attempt(claim.delivery_id, None, Outcome::Succeeded, 200))
        .await
        .unwrap();
    let d = store.get_delivery(hook, claim.delivery_id).await.unwrap();
    assert_eq!(d.summary.state, DeliveryState::Succeeded);
    assert_eq!(d.summary.attempt_count, 4);
    not_found(
        store
            .record_attempt(attempt(999_999, None, Outcome::Succeeded, 200))
            .await,
    );
}

async fn concurrent_claims_are_exclusive(store: Arc<dyn Store>) {
    acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(60, "dddd"), now).await.unwrap();
    let mut claimers = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim_due(now, now + secs(60), 4).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.iter().map(|c| c.delivery_id));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(
            tokio::time::timeout(Duration::from_secs(30), c)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 60, "every delivery claimed exactly once");
    assert_eq!(unique.len(), 60);
}

async fn users_and_tokens(store: Arc<dyn Store>) {
    let alice = store
        .create_user("alice", "hash-a", Some("alice@example.org"), true)
        .await
        .unwrap();
    assert!(alice.admin && !alice.disabled);
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(
        conflict(store.create_user("alice", "h", None, false).await),
        "the user 'alice' already exists"
    );
    let personal = store.get_namespace(&ns("alice")).await.unwrap();
    assert_eq!(personal.team.as_deref(), Some("~alice"));
    // All or nothing: a taken personal namespace leaves no user behind.
    store
        .create_namespace(&ns("carol"), "", None, &audit("namespace.create"))
        .await
        .unwrap();
    let taken = conflict(store.create_user("carol", "h", None, false).await);
    assert!(
        taken.contains("a namespace named 'carol' already exists"),
        "{taken}"
    );
    assert!(store.user_credentials("carol").await.unwrap().is_none());
    not_found(store.get_team("~carol").await);

    let (found, hash) = store.user_credentials("alice").await.unwrap().unwrap();
    assert_eq!((found.id, hash.as_str()), (alice.id, "hash-a"));
    store
        .create_user("bob", "hash-b", None, false)
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let bob = store.update_user("bob", Some(true), None).await.unwrap();
    assert!(bob.admin && !bob.disabled);
    let bob = store.update_user("bob", None, Some(true)).await.unwrap();
    assert!(bob.admin && bob.disabled);
    assert_eq!(
        not_found(store.update_user("nobody", Some(true), None).await),
        "user 'nobody'"
    );

    let token = store
        .create_token(alice.id, "laptop", "hash-1")
        .await
        .unwrap();
    assert_eq!(token.label, "laptop");
    assert_eq!(token.last_used_at, None);
    let now = Utc::now();
    let user = store
        .authenticate_token("hash-1", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id, alice.id);
    assert!(store
        .authenticate_token("hash-x", now)
        .await
        .unwrap()
        .is_none());
    let listed = store.list_tokens(alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].last_used_at.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis())
    );
    assert!(store.list_tokens(bob.id).await.unwrap().is_empty());
    assert_eq!(
        not_found(store.revoke_token(bob.id, token.id).await),
        format!("token {}", token.id)
    );
    store.revoke_token(alice.id, token.id).await.unwrap();
    assert!(store
        .authenticate_token("hash-1", now)
        .await
        .unwrap()
        .is_none());
    assert!(store.list_tokens(alice.id).await.unwrap().is_empty());
    not_found(store.revoke_token(alice.id, token.id).await);
}

async fn teams_and_activities(store: Arc<dyn Store>) {
    let alice = store.create_user("alice", "h", None, false).await.unwrap();
    let bob = store.create_user("bob", "h", None, false).await.unwrap();
    let carol = store.create_user("carol", "h", None, false).await.unwrap();
    let web = store
        .create_team(
            "web",
            "The web team",
            alice.id,
            &Audit::new("alice", "team.create"),
        )
        .await
        .unwrap();
    assert_eq!(web.description, "The web team");
    assert!(!web.personal);
    assert_eq!(web.members.len(), 1);
    assert_eq!(web.members[0].role, Role::Owner);
    assert_eq!(
        conflict(
            store
                .create_team("web", "", bob.id, &audit("team.create"))
                .await
        ),
        "the team 'web' already exists"
    );
    let set = |user: i64, role: Role| {
        let store = store.clone();
        async move {
            store
                .set_member("web", user, role, &Audit::new("alice", "team.member.set"))
                .await
        }
    };
    assert!(set(bob.id, Role::Viewer).await.unwrap(), "added");
    assert!(!set(bob.id, Role::Contributor).await.unwrap(), "changed");
    assert_eq!(
        store.role_in_team(web.id, bob.id).await.unwrap(),
        Some(Role::Contributor)
    );
    assert_eq!(store.role_in_team(web.id, carol.id).await.unwrap(), None);
    assert_eq!(
        conflict(set(alice.id, Role::Viewer).await),
        "team 'web' must keep at least one owner: make someone else owner first"
    );
    conflict(
        store
            .remove_member("web", alice.id, &audit("team.member.remove"))
            .await,
    );
    assert_eq!(
        not_found(
            store
                .remove_member("web", carol.id, &audit("team.member.remove"))
                .await
        ),
        "that member of team 'web'"
    );
    assert_eq!(
        not_found(set_member_elsewhere(&store, bob.id).await),
        "team 'nope'"
    );
    set(bob.id, Role::Owner).await.unwrap();
    set(alice.id, Role::Viewer).await.unwrap();
    store
        .remove_member("web", alice.id, &audit("team.member.remove"))
        .await
        .unwrap();
    let web = store.get_team("web").await.unwrap();
    let members: Vec<(String, Role)> = web
        .members
        .iter()
        .map(|m| (m.username.clone(), m.role))
        .collect();
    assert_eq!(members, [("bob".to_string(), Role::Owner)]);
    store
        .create_team("ops", "", carol.id, &audit("team.create"))
        .await
        .unwrap();
    let all: Vec<String> = store
        .list_teams(&Visibility::All)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(all, ["ops", "web"], "personal teams are left out");
    let bobs: Vec<String> = store
        .list_teams(&Visibility::MemberOf(bob.id))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(bobs, ["web"]);
    not_found(store.get_team("nope").await);

    // The audit trail: a team's members read its entries; pages go newest first.
    store
        .create_namespace(&ns("webns"), "", Some(web.id), &audit("namespace.create"))
        .await
        .unwrap();
    store
        .record_activity(
            &ns("webns"),
            None,
            &audit("webhook.delivery.retrigger").detail("delivery 7"),
        )
        .await
        .unwrap();
    let page = store
        .list_activities(&Visibility::MemberOf(bob.id), None, 3, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.items[0].action, "webhook.delivery.retrigger");
    assert_eq!(page.items[0].detail.as_deref(), Some("delivery 7"));
    assert_eq!(page.items[0].namespace.as_deref(), Some("webns"));
    assert_eq!(page.items[0].team.as_deref(), Some("web"));
    let rest = store
        .list_activities(
            &Visibility::MemberOf(bob.id),
            None,
            50,
            page.next.map(|c| c.parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.next, None);
    let seen = page.items.len() + rest.items.len();
    // web: its creation, 4 member changes, 1 removal, the namespace, the retrigger.
    assert_eq!(seen, 8);
    assert!(rest.items.iter().all(|a| a.team.as_deref() == Some("web")));
    let carols = store
        .list_activities(&Visibility::MemberOf(carol.id), None, 50, None)
        .await
        .unwrap();
    assert_eq!(carols.items.len(), 1, "only ops's creation");
    assert_eq!(
        store
            .list_activities(&Visibility::All, Some("webns"), 50, None)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

async fn set_member_elsewhere(store: &Arc<dyn Store>, user: i64) -> StoreResult<bool> {
    store
        .set_member("nope", user, Role::Viewer, &audit("team.member.set"))
        .await
}

/// Envelopes and results that arrive together (and share a commit on SQLite) each get
/// their own answer: a lost claim or a duplicate affects only its own write.
async fn concurrent_writes_stand_alone(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(40, "gggg"), now).await.unwrap();
    let claims = store.claim_due(now, now + secs(60), 100).await.unwrap();
    assert_eq!(claims.len(), 40);
    let stale = claims[7].delivery_id;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, claim) in claims.iter().enumerate() {
        let store = store.clone();
        // One of them records under a claim token that is no longer current.
        let token = if i == 7 { claim.token - 1 } else { claim.token };
        let record = attempt(claim.delivery_id, Some(token), Outcome::Succeeded, 200);
        tasks.spawn(async move { (record.delivery_id, store.record_attempt(record).await) });
    }
    for i in 0..10 {
        let store = store.clone();
        // Fresh envelopes, and one that repeats an event already stored.
        let events = if i == 3 {
            pushes(1, "gggg")
        } else {
            pushes(1, &format!("hh{i:02}"))
        };
        tasks.spawn(async move {
            let result = store.ingest(&events, now).await.map(|summary| {
                let expected = if i == 3 { (0, 1) } else { (1, 0) };
                assert_eq!(
                    (summary.accepted, summary.duplicates),
                    expected,
                    "envelope {i}"
                );
            });
            (-(i as i64) - 1, result)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (id, result) = done.unwrap();
        if id == stale {
            conflict(result);
        } else {
            result.unwrap_or_else(|e| panic!("write {id} failed: {e}"));
        }
    }
    let page = store.list_deliveries(hook, 100, None).await.unwrap();
    let states: Vec<(i64, DeliveryState)> = page.items.iter().map(|d| (d.id, d.state)).collect();
    assert_eq!(
        states.len(),
        49,
        "40 claimed and 9 new deliveries: {states:?}"
    );
    for (id, state) in states {
        let expected = if claims.iter().any(|c| c.delivery_id == id) && id != stale {
            DeliveryState::Succeeded
        } else {
            DeliveryState::Pending
        };
        assert_eq!(state, expected, "delivery {id}");
    }
    let events = store.list_events(100, None).await.unwrap();
    assert_eq!(events.items.len(), 49, "the repeated event is stored once");
}

/// `acme` with two enabled webhooks (the first from `acme_with_hook`).
async fn acme_with_two_hooks(store: &Arc<dyn Store>) -> (i64, i64) {
    let first = acme_with_hook(store).await;
    let second = store
        .create_webhook(
            &ns("acme"),
            new_webhook("e", vec![]),
            &audit("webhook.create"),
        )
        .await
        .unwrap()
        .id;
    let patch = WebhookPatch {
        enabled: Some(true),
        ..Default::default()
    };
    store
        .update_webhook(&ns("acme"), second, patch, &audit("webhook.enabled"))
        .await
        .unwrap();
    (first, second)
}

async fn claims_pass_over_skipped_webhooks(store: Arc<dyn Store>) {
    let (first, second) = acme_with_two_hooks(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(3, "kkkk"), now).await.unwrap();
    let lease = now + secs(30);
    let others = store
        .claim_due_skipping(now, lease, 10, &[first])
        .await
        .unwrap();
    let hooks: Vec<i64> = others.iter().map(|c| c.webhook_id).collect();
    assert_eq!(hooks, [second; 3]);
    let ids: Vec<i64> = others.iter().map(|c| c.delivery_id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "earliest due first");
    let rest = store.claim_due(now, lease, 10).await.unwrap();
    let hooks: Vec<i64> = rest.iter().map(|c| c.webhook_id).collect();
    assert_eq!(
        hooks, [first; 3],
        "the skipped webhook's deliveries stayed due"
    );
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Migrations run again are a no-op; the store answers; its writer settles when idle; and
/// a store shared by processes wakes a listener when new deliveries are committed.
async fn operations_and_wakeups(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
    store.ping().await.unwrap();
    acme_with_hook(&store).await;
    store.ingest(&pushes(2, "oooo"), Utc::now()).await.unwrap();
    // SQLite's group committer is busy only while it writes a batch; none is left.
    eventually(Duration::from_secs(5), "the writer is idle", || async {
        store.writer_busy_for().is_none()
    })
    .await;

    let wakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = wakes.clone();
    let count = || wakes.load(std::sync::atomic::Ordering::SeqCst);
    let wake = Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    // None where the in-process wake after ingest is all there is (SQLite).
    if let Some(task) = store.wakeups(wake) {
        let listening = tokio::spawn(task);
        // A listener wakes once when it connects, for whatever it missed.
        eventually(Duration::from_secs(10), "the listener connects", || async {
            count() > 0
        })
        .await;
        let before = count();
        store.ingest(&pushes(1, "wwww"), Utc::now()).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "new deliveries wake the listener",
            || async { count() > before },
        )
        .await;
        listening.abort();
    }
}

async fn queue_stats_and_release(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    assert_eq!(store.queue_stats().await.unwrap(), QueueStats::default());
    let now = Utc::now();
    let due = now - secs(60);
    store.ingest(&pushes(3, "qqqq"), due).await.unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying), (3, 0));
    assert_eq!(stats.oldest_due_at.map(ms), Some(ms(due)));

    // One retries in an hour: counted, but not due.
    let claims = store.claim_due(now, now + secs(60), 10).await.unwrap();
    assert_eq!(claims.len(), 3);
    store
        .record_attempt(attempt(
            claims[0].delivery_id,
            Some(claims[0].token),
            Outcome::RetryAt(now + secs(3600)),
            500,
        ))
        .await
        .unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.pending, stats.retrying), (2, 1));
    assert_eq!(stats.oldest_due_at.map(ms), Some(ms(due)));

    // Released leases are claimable at once; a released finished delivery stays finished.
    store
        .record_attempt(attempt(
            claims[1].delivery_id,
            Some(claims[1].token),
            Outcome::Succeeded,
            200,
        ))
        .await
        .unwrap();
    assert!(store
        .claim_due(now, now + secs(60), 10)
        .await
        .unwrap()
        .is_empty());
    let held: Vec<i64> = claims.iter().map(|c| c.delivery_id).collect();
    store.release(&held).await.unwrap();
    let again: Vec<i64> = store
        .claim_due(now, now + secs(60), 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.delivery_id)
        .collect();
    assert_eq!(again, [claims[2].delivery_id], "the one due and unfinished");
    let finished = store
        .get_delivery(hook, claims[1].delivery_id)
        .await
        .unwrap();
    assert_eq!(finished.summary.state, DeliveryState::Succeeded);
    store.release(&[]).await.unwrap();
    store.release(&[999_999]).await.unwrap();
}

async fn sessions(store: Arc<dyn Store>) {
    let alice = store.create_user("alice", "h", None, false).await.unwrap();
    let now = Utc::now();
    store
        .create_session("sess-1", alice.id, "csrf-1", now + secs(3600))
        .await
        .unwrap();
    let (user, csrf) = store.session("sess-1", now).await.unwrap().unwrap();
    assert_eq!((user.id, csrf.as_str()), (alice.id, "csrf-1"));
    assert!(store.session("sess-x", now).await.unwrap().is_none());
    assert!(
        store
            .session("sess-1", now + secs(3601))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    // A disabled user's sessions do not count, and count again once enabled.
    store.update_user("alice", None, Some(true)).await.unwrap();
    assert!(store.session("sess-1", now).await.unwrap().is_none());
    store.update_user("alice", None, Some(false)).await.unwrap();
    assert!(store.session("sess-1", now).await.unwrap().is_some());
    store.delete_session("sess-1").await.unwrap();
    assert!(store.session("sess-1", now).await.unwrap().is_none());
    store.delete_session("sess-1").await.unwrap();

    // Expired sessions are swept when a new one starts.
    store
        .create_session("sess-old", alice.id, "c", now - secs(1))
        .await
        .unwrap();
    assert!(store
        .session("sess-old", now - secs(10))
        .await
        .unwrap()
        .is_some());
    store
        .create_session("sess-new", alice.id, "c", now + secs(60))
        .await
        .unwrap();
    assert!(
        store
            .session("sess-old", now - secs(10))
            .await
            .unwrap()
            .is_none(),
        "swept"
    );
}

async fn signing_secrets_and_health(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let acme = ns("acme");
    let first = Sealed(vec![7, 0, 7]);
    assert_eq!(
        store
            .get_webhook(&acme, hook)
            .await
            .unwrap()
            .signing_secrets,
        [Sealed(vec![7, 0, 7])]
    );
    // The previous secret signs beside the new one until its time is up.
    let until = Utc::now() + secs(3600);
    let rotated = store
        .rotate_signing_secret(
            &acme,
            hook,
            Sealed(vec![8, 8]),
            until,
            &audit("webhook.secret.rotate"),
        )
        .await
        .unwrap();
    assert_eq!(rotated.signing_secrets, [Sealed(vec![8, 8]), first]);
    assert_eq!(rotated.previous_secret_until.map(ms), Some(ms(until)));
    let expired = store
        .rotate_signing_secret(
            &acme,
            hook,
            Sealed(vec![9]),
            Utc::now() - secs(1),
            &audit("webhook.secret.rotate"),
        )
        .await
        .unwrap();
    assert_eq!(expired.signing_secrets, [Sealed(vec![9])]);
    not_found(
        store
            .rotate_signing_secret(
                &acme,
                999_999,
                Sealed(vec![1]),
                until,
                &audit("webhook.secret.rotate"),
            )
            .await,
    );
    let trail = store
        .list_activities(&Visibility::All, Some("acme"), 10, None)
        .await
        .unwrap();
    assert_eq!(trail.items[0].action, "webhook.secret.rotate");
    assert_eq!(trail.items[1].action, "webhook.secret.rotate");

    // Failing since the first failure; a success clears it; failing for `disable_after`
    // disables the webhook, once, with an entry by "herald".
    let day = Duration::from_secs(86_400);
    let no_breaker = CircuitRule::new(0, Duration::from_secs(1));
    let t0 = Utc::now();
    let failing = |store: Arc<dyn Store>| async move {
        store
            .get_webhook(&ns("acme"), hook)
            .await
            .unwrap()
            .failing_since
            .map(ms)
    };
    assert!(
        !store
            .webhook_health(hook, Health::Failed, t0, day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    assert_eq!(failing(store.clone()).await, Some(ms(t0)));
    assert!(
        !store
            .webhook_health(hook, Health::Failed, t0 + secs(3600), day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    assert_eq!(
        failing(store.clone()).await,
        Some(ms(t0)),
        "the first failure counts"
    );
    assert!(
        !store
            .webhook_health(hook, Health::Succeeded, t0 + secs(7200), day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    assert_eq!(failing(store.clone()).await, None);
    let t1 = t0 + secs(10_800);
    store
        .webhook_health(hook, Health::Failed, t1, day, no_breaker)
        .await
        .unwrap();
    assert!(
        store
            .webhook_health(hook, Health::Failed, t1 + secs(86_400), day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    let disabled = store.get_webhook(&acme, hook).await.unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.failing_since, None);
    let trail = store
        .list_activities(&Visibility::All, Some("acme"), 10, None)
        .await
        .unwrap();
    assert_eq!(trail.items[0].action, "webhook.auto_disabled");
    assert_eq!(trail.items[0].actor, "herald");
    assert!(
        !store
            .webhook_health(hook, Health::Gone, t1, day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    // 410 Gone disables an enabled webhook at once.
    let enable = WebhookPatch {
        enabled: Some(true),
        ..Default::default()
    };
    store
        .update_webhook(&acme, hook, enable, &audit("webhook.enabled"))
        .await
        .unwrap();
    assert!(
        store
            .webhook_health(hook, Health::Gone, t1, day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    assert!(!store.get_webhook(&acme, hook).await.unwrap().enabled);
    assert!(
        !store
            .webhook_health(999_999, Health::Gone, t1, day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
}

async fn requeue_and_ping(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(3, "rrrr"), now).await.unwrap();
    for c in store.claim_due(now, now + secs(60), 10).await.unwrap() {
        store
            .record_attempt(attempt(c.delivery_id, Some(c.token), Outcome::Failed, 500))
            .await
            .unwrap();
    }
    // Only failed deliveries created inside [since, until) of that webhook come back.
    assert_eq!(
        store
            .requeue_failed(hook, now + secs(1), now + secs(2), now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .requeue_failed(hook + 1, now - secs(1), now + secs(1), now)
            .await
            .unwrap(),
        0
    );
    let later = now + secs(5);
    assert_eq!(
        store
            .requeue_failed(hook, now - secs(1), now + secs(1), later)
            .await
            .unwrap(),
        3
    );
    let page = store.list_deliveries(hook, 10, None).await.unwrap();
    assert!(
        page.items
            .iter()
            .all(|d| d.state == DeliveryState::Pending
                && d.next_attempt_at.map(ms) == Some(ms(later)))
    );
    assert!(store
        .claim_due(later - secs(1), later + secs(60), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_due(later, later + secs(60), 10)
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store
            .requeue_failed(hook, now - secs(1), now + secs(1), later)
            .await
            .unwrap(),
        0,
        "none is failed any more"
    );

    // A ping: its own event and one delivery, which no worker claims (it is sent at once).
    let body = r#"{"id":"ping-abc","action":"ping"}"#;
    let ping = store
        .create_ping(hook, "ping-abc", "acme/herald-ping", body, now)
        .await
        .unwrap();
    let d = store.get_delivery(hook, ping).await.unwrap();
    assert_eq!(d.summary.state, DeliveryState::Pending);
    assert_eq!(d.summary.event.id.as_deref(), Some("ping-abc"));
    assert_eq!(d.summary.event.action.as_deref(), Some("ping"));
    assert_eq!(
        d.summary.event.repository.as_deref(),
        Some("acme/herald-ping")
    );
    let claimed = store
        .claim_due(now + secs(3600), now + secs(3660), 10)
        .await
        .unwrap();
    assert!(claimed.iter().all(|c| c.delivery_id != ping));
    let job = store.load_job(ping).await.unwrap();
    assert_eq!(
        (job.event_action.as_str(), &*job.event_body),
        ("ping", body)
    );
    not_found(
        store
            .create_ping(999_999, "ping-x", "acme/herald-ping", body, now)
            .await,
    );
}

/// Hourly figures for the chart, then retention: finished deliveries older than the cutoff
/// or beyond a webhook's newest go, in batches, with the events nothing needs any more;
/// pending ones never.
async fn stats_and_retention(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    let old = now - secs(90 * 60);
    store.ingest(&pushes(2, "ssss"), old).await.unwrap();
    store.ingest(&pushes(1, "tttt"), now).await.unwrap();
    let claims = store.claim_due(old, now + secs(60), 10).await.unwrap();
    assert_eq!(claims.len(), 2, "only the old ones are due then");
    let outcomes = [(Outcome::Succeeded, 200), (Outcome::Failed, 500)];
    for (c, (outcome, status)) in claims.iter().zip(outcomes) {
        store
            .record_attempt(attempt(c.delivery_id, Some(c.token), outcome, status))
            .await
            .unwrap();
    }
    // Hours count from `since`: the old deliveries are in hour 0, the new one and both
    // attempts (made just now) in hour 1.
    let since = now - secs(119 * 60);
    assert_eq!(
        store.delivery_stats(hook, since).await.unwrap(),
        [
            HourStats {
                hour: 0,
                succeeded: 1,
                failed: 1,
                waiting: 0,
                mean_ms: None
            },
            HourStats {
                hour: 1,
                succeeded: 0,
                failed: 0,
                waiting: 1,
                mean_ms: Some(12.0)
            },
        ]
    );
    assert!(store
        .delivery_stats(hook, now + secs(3600))
        .await
        .unwrap()
        .is_empty());

    // By age, at most `batch` at a time.
    let cutoff = now - secs(3600);
    assert_eq!(store.prune(cutoff, 1000, 1).await.unwrap(), 1);
    assert_eq!(store.prune(cutoff, 1000, 500).await.unwrap(), 1);
    assert_eq!(store.prune(cutoff, 1000, 500).await.unwrap(), 0);
    let left = store.list_deliveries(hook, 10, None).await.unwrap();
    assert_eq!(left.items.len(), 1);
    assert_eq!(left.items[0].state, DeliveryState::Pending);
    let events = store.list_events(10, None).await.unwrap();
    let ids: Vec<&str> = events
        .items
        .iter()
        .filter_map(|e| e.registry_id.as_deref())
        .collect();
    assert_eq!(
        ids,
        ["tttt0000-7a89-451b-8ea6-bfb7cac6a943"],
        "the pruned deliveries' events went with them"
    );

    // By count: beyond the newest 2 of the webhook, finished ones go, pending ones stay.
    store.ingest(&pushes(3, "uuuu"), now).await.unwrap();
    let pending = left.items[0].id;
    for c in store.claim_due(now, now + secs(60), 10).await.unwrap() {
        if c.delivery_id != pending {
            store
                .record_attempt(attempt(
                    c.delivery_id,
                    Some(c.token),
                    Outcome::Succeeded,
                    200,
                ))
                .await
                .unwrap();
        }
    }
    let long_ago = now - secs(86_400);
    assert_eq!(store.prune(long_ago, 2, 500).await.unwrap(), 1);
    let kept: Vec<(i64, DeliveryState)> = store
        .list_deliveries(hook, 10, None)
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| (d.id, d.state))
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept.contains(&(pending, DeliveryState::Pending)),
        "{kept:?}"
    );
    assert_eq!(store.prune(long_ago, 0, 500).await.unwrap(), 2);
    assert_eq!(
        store
            .list_deliveries(hook, 10, None)
            .await
            .unwrap()
            .items
            .len(),
        1,
        "only the pending one is left"
    );
}

/// Sources: created, listed without their secret, looked up with it for ingest, deleted.
async fn sources(store: Arc<dyn Store>) {
    use herald::domain::events::SourceKind;
    assert!(store.list_sources().await.unwrap().is_empty());
    let audit = Audit::new("admin", "source.create");
    let new = NewSource {
        name: "zot-a".into(),
        kind: SourceKind::parse("zot").unwrap(),
        username: None,
        secret_hash: "hash-of-the-token".into(),
    };
    let made = store.create_source(&new, &audit).await.unwrap();
    assert_eq!((made.name.as_str(), made.auth), ("zot-a", "bearer"));
    // When each last sent an event: the default endpoint first, then each source.
    let never = store.last_events_by_source().await.unwrap();
    assert_eq!(
        never,
        vec![
            SourceActivity {
                source: None,
                last_event_at: None
            },
            SourceActivity {
                source: Some("zot-a".into()),
                last_event_at: None
            },
        ]
    );
    let earlier = Utc::now() - chrono::Duration::minutes(5);
    let later = Utc::now();
    let mut from_zot = pushes(2, "zzzz");
    for e in &mut from_zot {
        e.source = Some("zot-a".into());
    }
    store.ingest(&from_zot[..1], earlier).await.unwrap();
    store.ingest(&from_zot[1..], later).await.unwrap();
    store.ingest(&pushes(1, "dddd"), earlier).await.unwrap();
    let last = store.last_events_by_source().await.unwrap();
    let ms = |t: chrono::DateTime<Utc>| t.timestamp_millis();
    assert_eq!(last[0].source, None);
    assert_eq!(last[0].last_event_at.map(ms), Some(ms(earlier)));
    assert_eq!(last[1].source.as_deref(), Some("zot-a"));
    assert_eq!(last[1].last_event_at.map(ms), Some(ms(later)));
    assert!(conflict(store.create_source(&new, &audit).await).contains("zot-a"));
    let listed = store.list_sources().await.unwrap();
    assert_eq!(listed.len(), 1);
    let (found, secret) = store.source_credential("zot-a").await.unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), secret.as_str()),
        ("zot-a", "hash-of-the-token")
    );
    assert!(store.source_credential("nosuch").await.unwrap().is_none());
    store
        .delete_source("zot-a", &Audit::new("admin", "source.destroy"))
        .await
        .unwrap();
    assert!(store.list_sources().await.unwrap().is_empty());
    assert!(not_found(
        store
            .delete_source("zot-a", &Audit::new("admin", "source.destroy"))
            .await
    )
    .contains("zot-a"));
}

/// The secret key's check value is recorded once and then kept; every lease can be given
/// back at once; a shared database registers the process for heartbeats.
async fn settings_claims_and_liveness(store: Arc<dyn Store>) {
    assert!(!store.has_key_check().await.unwrap());
    assert!(store.any_sealed_secret().await.unwrap().is_none());
    assert_eq!(store.record_key_check("first").await.unwrap(), "first");
    assert_eq!(store.record_key_check("second").await.unwrap(), "first");
    assert!(store.has_key_check().await.unwrap());
    acme_with_hook(&store).await;
    assert!(store.any_sealed_secret().await.unwrap().is_some());

    let now = Utc::now();
    store
        .ingest(&pushes(2, "llll"), now - secs(1))
        .await
        .unwrap();
    let claims = store.claim_due(now, now + secs(600), 10).await.unwrap();
    assert_eq!(claims.len(), 2);
    assert!(store
        .claim_due(now, now + secs(600), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.release_all_claims().await.unwrap(), 2);
    assert_eq!(
        store
            .claim_due(now, now + secs(600), 10)
            .await
            .unwrap()
            .len(),
        2
    );

    assert_eq!(store.claiming_processes(), 1, "alone");
    let registered = store.liveness(Arc::new(|| {})).await.unwrap();
    // SQLite: one process owns the database, so there is nothing to register.
    if let Some(task) = registered {
        let beating = tokio::spawn(task);
        // A second registration stands for another process on the same database: the
        // heartbeats count both, so each would keep half of a rate limit.
        let other = store.liveness(Arc::new(|| {})).await.unwrap().unwrap();
        let other = tokio::spawn(other);
        crate::helpers::eventually(
            Duration::from_secs(10),
            "the heartbeats counted two",
            || async { store.claiming_processes() == 2 },
        )
        .await;
        beating.abort();
        other.abort();
    } else {
        assert_eq!(store.claiming_processes(), 1);
    }
}

/// What the UI's health badges, attention panel and filters read; and password changes.
async fn health_filters_and_passwords(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    store
        .ingest(&pushes(2, "hhhh"), now - secs(1))
        .await
        .unwrap();
    let claims = store.claim_due(now, now + secs(60), 10).await.unwrap();
    assert_eq!(claims.len(), 2);
    store
        .record_attempt(attempt(
            claims[0].delivery_id,
            Some(claims[0].token),
            Outcome::Succeeded,
            200,
        ))
        .await
        .unwrap();
    store
        .record_attempt(attempt(
            claims[1].delivery_id,
            Some(claims[1].token),
            Outcome::Failed,
            500,
        ))
        .await
        .unwrap();
    store
        .webhook_health(
            hook,
            Health::Failed,
            now,
            Duration::from_secs(3600),
            CircuitRule::new(0, Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let statuses = store
        .webhook_statuses(&ns("acme"), now - secs(3600))
        .await
        .unwrap();
    let status = statuses.iter().find(|s| s.webhook_id == hook).unwrap();
    assert_eq!((status.succeeded, status.failed), (1, 1));
    assert!(status.failing_since.is_some());
    assert_eq!(status.circuit, CircuitState::Closed);
    let attention = store
        .webhooks_needing_attention(&Visibility::All, now - secs(3600))
        .await
        .unwrap();
    assert!(attention.iter().any(|s| s.webhook_id == hook));
    // A failure that opens the circuit: the status says so, with the probe's time.
    store
        .webhook_health(
            hook,
            Health::Failed,
            now,
            Duration::from_secs(3600),
            CircuitRule::new(1, Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let attention = store
        .webhooks_needing_attention(&Visibility::All, now - secs(3600))
        .await
        .unwrap();
    let status = attention.iter().find(|s| s.webhook_id == hook).unwrap();
    assert_eq!(status.circuit, CircuitState::Open);
    assert_eq!(
        status.circuit_open_until.map(|t| t.timestamp_millis()),
        Some((now + secs(30)).timestamp_millis())
    );

    let failed = store
        .list_deliveries_in(hook, Some(DeliveryState::Failed), 50, None)
        .await
        .unwrap();
    assert_eq!(failed.items.len(), 1);
    assert_eq!(failed.items[0].id, claims[1].delivery_id);
    let all = store
        .list_deliveries_in(hook, None, 50, None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);

    let by_admin = store
        .list_activities_by(
            &Visibility::All,
            ActivityFilter {
                namespace: Some("acme"),
                actor: Some("tester"),
            },
            50,
            None,
        )
        .await
        .unwrap();
    let nobody = store
        .list_activities_by(
            &Visibility::All,
            ActivityFilter {
                namespace: Some("acme"),
                actor: Some("nobody"),
            },
            50,
            None,
        )
        .await
        .unwrap();
    assert!(nobody.items.is_empty());
    assert!(!by_admin.items.is_empty());
    assert!(by_admin.items.iter().all(|a| a.actor == "tester"));

    store
        .create_user("pat", "old-hash", None, false)
        .await
        .unwrap();
    store.set_password("pat", "new-hash").await.unwrap();
    let (_, hash) = store.user_credentials("pat").await.unwrap().unwrap();
    assert_eq!(hash, "new-hash");
    assert!(not_found(store.set_password("nosuch", "x").await).contains("nosuch"));
}

async fn claims_of_some_webhooks_or_one_of_each(store: Arc<dyn Store>) {
    let (first, second) = acme_with_two_hooks(&store).await;
    let now = Utc::now();
    store.ingest(&pushes(3, "llll"), now).await.unwrap();
    let lease = now + secs(30);
    let sorted = |claims: &[Claim]| {
        let mut claims = claims.to_vec();
        claims.sort_by_key(|c| c.delivery_id);
        claims
    };
    let earliest = store
        .claim_due_in(now, lease, 1, ClaimScope::OnePerWebhookSkipping(&[]))
        .await
        .unwrap();
    assert_eq!(earliest.len(), 1, "no more than the limit");
    let each = sorted(
        &store
            .claim_due_in(now, lease, 10, ClaimScope::OnePerWebhookSkipping(&[]))
            .await
            .unwrap(),
    );
    assert_eq!(each.len(), 2, "one of each webhook: {each:?}");
    assert_ne!(each[0].webhook_id, each[1].webhook_id);
    let none = store
        .claim_due_in(
            now,
            lease,
            10,
            ClaimScope::OnePerWebhookSkipping(&[first, second]),
        )
        .await
        .unwrap();
    assert!(none.is_empty(), "both passed over: {none:?}");
    let theirs = store
        .claim_due_in(now, lease, 10, ClaimScope::Only(&[second]))
        .await
        .unwrap();
    assert!(
        !theirs.is_empty() && theirs.iter().all(|c| c.webhook_id == second),
        "only the listed webhook's: {theirs:?}"
    );
    assert!(store
        .claim_due_in(now, lease, 10, ClaimScope::Only(&[]))
        .await
        .unwrap()
        .is_empty());
    let rest = store.claim_due(now, lease, 10).await.unwrap();
    assert!(
        !rest.is_empty() && rest.iter().all(|c| c.webhook_id == first),
        "the other webhook's stayed due: {rest:?}"
    );
    for c in &each {
        assert!(
            [&theirs, &rest]
                .into_iter()
                .flatten()
                .filter(|later| later.webhook_id == c.webhook_id)
                .all(|later| later.delivery_id > c.delivery_id),
            "the earliest due of each webhook"
        );
    }
    let all: HashSet<i64> = [earliest, each, theirs, rest]
        .concat()
        .iter()
        .map(|c| c.delivery_id)
        .collect();
    assert_eq!(all.len(), 6, "each delivery claimed once");
}

/// A webhook of `namespace`, enabled, subscribed to every operational kind only.
async fn ops_subscriber(store: &Arc<dyn Store>, namespace: &str, name: &str) -> i64 {
    let mut new = new_webhook(name, vec![]);
    new.filters = Filters {
        actions: Action::OPERATIONAL.to_vec(),
        ..Filters::default()
    };
    let id = store
        .create_webhook(&ns(namespace), new, &audit("webhook.create"))
        .await
        .unwrap()
        .id;
    let patch = WebhookPatch {
        enabled: Some(true),
        ..Default::default()
    };
    store
        .update_webhook(&ns(namespace), id, patch, &audit("webhook.enabled"))
        .await
        .unwrap();
    id
}

/// The operational events stored so far, oldest first: (action, status).
async fn operational(store: &Arc<dyn Store>) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = store
        .list_events(100, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.action
                .as_deref()
                .is_some_and(|a| Action::parse_operational(a).is_some())
        })
        .map(|e| (e.action.unwrap_or_default(), e.status))
        .collect();
    found.reverse();
    found
}

/// The payloads of the deliveries a webhook has, newest first.
async fn payloads(store: &Arc<dyn Store>, webhook: i64) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for d in store
        .list_deliveries(webhook, 100, None)
        .await
        .unwrap()
        .items
    {
        let job = store.load_job(d.id).await.unwrap();
        out.push(serde_json::from_str(&job.event_body).unwrap());
    }
    out
}

async fn operational_events(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let subscriber = ops_subscriber(&store, "acme", "ops").await;
    let global = ops_subscriber(&store, "_global", "admins").await;
    store
        .create_namespace(&ns("other"), "", None, &audit("namespace.create"))
        .await
        .unwrap();
    let elsewhere = ops_subscriber(&store, "other", "theirs").await;
    let now = Utc::now();
    let summary = store.ingest(&pushes(1, "oooo"), now).await.unwrap();
    assert_eq!(
        summary.deliveries, 1,
        "operational subscribers get no registry event"
    );
    let claims = store.claim_due(now, now + secs(60), 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    let failed = claims[0].delivery_id;

    let exhausted = Announcement::new(Action::DeliveryExhausted, hook, "").delivery(failed);
    assert_eq!(
        store.announce(&exhausted, now).await.unwrap(),
        None,
        "a delivery still waiting is not exhausted"
    );
    store
        .record_attempt(attempt(failed, Some(claims[0].token), Outcome::Failed, 500))
        .await
        .unwrap();
    assert!(store.announce(&exhausted, now).await.unwrap().is_some());
    assert_eq!(
        store.announce(&exhausted, now).await.unwrap(),
        None,
        "one failure is announced once"
    );
    let told = payloads(&store, subscriber).await;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["type"], "delivery.exhausted");
    assert_eq!(told[0]["namespace"], "acme");
    assert_eq!(told[0]["webhook"]["id"], hook);
    assert_eq!(told[0]["webhook"]["host"], "receiver.example.org");
    assert_eq!(told[0]["delivery"]["id"], failed);
    assert_eq!(told[0]["delivery"]["last_status"], 500);
    assert_eq!(told[0]["delivery"]["event"]["action"], "push");
    assert_eq!(
        payloads(&store, global).await.len(),
        1,
        "the global namespace hears it"
    );
    assert!(
        payloads(&store, elsewhere).await.is_empty(),
        "another namespace does not"
    );
    assert!(
        payloads(&store, hook)
            .await
            .iter()
            .all(|p| p["type"].is_null()),
        "nor the webhook itself"
    );

    // The subscriber's delivery of it fails for good: that is never announced.
    let later = now + secs(1);
    let claims = store.claim_due(later, later + secs(60), 10).await.unwrap();
    let ops_delivery = claims.iter().find(|c| c.webhook_id == subscriber).unwrap();
    store
        .record_attempt(attempt(
            ops_delivery.delivery_id,
            Some(ops_delivery.token),
            Outcome::Failed,
            500,
        ))
        .await
        .unwrap();
    let cascade = Announcement::new(Action::DeliveryExhausted, subscriber, "")
        .delivery(ops_delivery.delivery_id);
    assert_eq!(store.announce(&cascade, later).await.unwrap(), None);
    // Nor does its health, failing or recovering.
    let day = Duration::from_secs(86_400);
    for health in [Health::Failed, Health::Succeeded] {
        store
            .webhook_health_after(
                subscriber,
                Some(ops_delivery.delivery_id),
                health,
                later,
                day,
                CircuitRule::new(0, Duration::from_secs(1)),
            )
            .await
            .unwrap();
    }
    assert_eq!(operational(&store).await.len(), 1);

    // A registry delivery's recovery is announced once, in the health change.
    let no_breaker = CircuitRule::new(0, Duration::from_secs(1));
    store
        .webhook_health_after(hook, Some(failed), Health::Failed, later, day, no_breaker)
        .await
        .unwrap();
    for _ in 0..2 {
        store
            .webhook_health_after(
                hook,
                Some(failed),
                Health::Succeeded,
                later,
                day,
                no_breaker,
            )
            .await
            .unwrap();
    }
    // 410 Gone: disabled, and announced.
    assert!(
        store
            .webhook_health_after(hook, Some(failed), Health::Gone, later, day, no_breaker)
            .await
            .unwrap()
            .disabled
    );
    let circuit = Announcement::new(
        Action::WebhookCircuitOpened,
        hook,
        "5 failures; paused for 30s",
    );
    assert!(store.announce(&circuit, later).await.unwrap().is_some());
    assert_eq!(
        store
            .announce(
                &Announcement::new(Action::WebhookCircuitOpened, 999_999, "x"),
                later
            )
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        operational(&store).await,
        [
            ("delivery.exhausted", "accepted"),
            ("webhook.recovered", "accepted"),
            ("webhook.disabled", "accepted"),
            ("webhook.circuit_opened", "accepted"),
        ]
        .map(|(a, s)| (a.to_string(), s.to_string()))
    );
    let told: Vec<String> = payloads(&store, subscriber)
        .await
        .iter()
        .map(|p| p["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        told,
        [
            "webhook.circuit_opened",
            "webhook.disabled",
            "webhook.recovered",
            "delivery.exhausted"
        ]
    );
    let disabled = &payloads(&store, global).await[1];
    assert_eq!(disabled["detail"], "the receiver answered 410 Gone");
    assert_eq!(disabled["delivery"], serde_json::Value::Null);

    // Nobody subscribed: stored all the same, as skipped, with the reason.
    for id in [subscriber, global] {
        store
            .delete_webhook(
                &ns(if id == global { "_global" } else { "acme" }),
                id,
                &audit("webhook.delete"),
            )
            .await
            .unwrap();
    }
    assert!(store.announce(&circuit, later).await.unwrap().is_some());
    let last = store.list_events(1, None).await.unwrap().items.remove(0);
    assert_eq!(last.status, "skipped");
    assert_eq!(
        last.reason.as_deref(),
        Some("no enabled webhook subscribes to webhook.circuit_opened")
    );
}

/// Sends the command line asks for: taken oldest first, each by one taker, a delivery's
/// requests gone with it.
async fn send_requests(store: Arc<dyn Store>) {
    let hook = acme_with_hook(&store).await;
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..24 {
        let id = store
            .create_ping(
                hook,
                &format!("ping-send-{i}"),
                "acme/herald-ping",
                "{}",
                now,
            )
            .await
            .unwrap();
        ids.push(id);
    }
    assert!(store.take_send_requests(10).await.unwrap().is_empty());
    store.request_send(ids[1]).await.unwrap();
    store.request_send(ids[0]).await.unwrap();
    assert_eq!(store.take_send_requests(1).await.unwrap(), [ids[1]]);
    assert_eq!(store.take_send_requests(10).await.unwrap(), [ids[0]]);
    assert!(store.take_send_requests(10).await.unwrap().is_empty());
    // Two takers at once never take the same request.
    for id in &ids {
        store.request_send(*id).await.unwrap();
    }
    let (a, b) = tokio::join!(store.take_send_requests(16), store.take_send_requests(16));
    let mut taken: Vec<i64> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    taken.extend(store.take_send_requests(100).await.unwrap());
    taken.sort_unstable();
    assert_eq!(taken, ids, "every request taken exactly once");
    // A deleted webhook's deliveries take their requests with them.
    store.request_send(ids[0]).await.unwrap();
    store
        .delete_webhook(&ns("acme"), hook, &Audit::new("admin", "webhook.destroy"))
        .await
        .unwrap();
    assert!(store.take_send_requests(10).await.unwrap().is_empty());
}

/// The webhooks' health in figures: counts by state, and the failing ones longest first,
/// as many as asked for.
async fn webhook_figures(store: Arc<dyn Store>) {
    assert_eq!(
        store.webhook_figures(10).await.unwrap(),
        herald::store::WebhookFigures::default()
    );
    let first = acme_with_hook(&store).await;
    let mut hooks = vec![first];
    for name in ["b", "c"] {
        let hook = store
            .create_webhook(
                &ns("acme"),
                new_webhook(name, vec![]),
                &audit("webhook.create"),
            )
            .await
            .unwrap();
        hooks.push(hook.id);
    }
    // Enabled: the first and the second; the third stays disabled.
    store
        .update_webhook(
            &ns("acme"),
            hooks[1],
            WebhookPatch {
                enabled: Some(true),
                ..Default::default()
            },
            &audit("webhook.enabled"),
        )
        .await
        .unwrap();
    let day = Duration::from_secs(86_400);
    let now = Utc::now();
    let breaker = CircuitRule::new(1, Duration::from_secs(60));
    // The second fails first (and opens its circuit), the first a minute later.
    store
        .webhook_health_after(
            hooks[1],
            None,
            Health::Failed,
            now - secs(120),
            day,
            breaker,
        )
        .await
        .unwrap();
    store
        .webhook_health_after(
            hooks[0],
            None,
            Health::Failed,
            now - secs(60),
            day,
            CircuitRule::new(0, Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let f = store.webhook_figures(10).await.unwrap();
    assert_eq!(
        (f.enabled, f.disabled, f.failing, f.circuit_open),
        (2, 1, 2, 1),
        "{f:?}"
    );
    let listed: Vec<i64> = f.failing_longest.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(listed, [hooks[1], hooks[0]], "longest failing first");
    assert_eq!(f.failing_longest[0].1, "acme");
    assert_eq!(
        store
            .webhook_figures(1)
            .await
            .unwrap()
            .failing_longest
            .len(),
        1
    );
}

/// A distribution push of `repository`, tagged or by digest, of a manifest of `media_type`,
/// from a source Herald can read.
fn readable_push(id: &str, repository: &str, tag: Option<&str>, digest: &str) -> IncomingEvent {
    let mut target = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": 100, "repository": repository,
    });
    if let Some(tag) = tag {
        target["tag"] = tag.into();
    }
    let body = serde_json::json!({"events": [{
        "id": id, "timestamp": "2026-12-07T10:00:00Z", "action": "push", "target": target,
        "request": {"method": "PUT"}, "source": {"addr": "r:5000", "instanceID": "i-1"}
    }]});
    let mut events = parse_envelope(body.to_string().as_bytes()).unwrap();
    events[0].registry_readable = true;
    events.remove(0)
}

async fn registry_reads(store: Arc<dyn Store>) {
    use herald::domain::artifact::ArtifactKind::Referrer;
    use herald::domain::artifact::{ArtifactFacts, ArtifactKind, FactsOrigin};
    use herald::domain::registry::FactsRead;
    let plain = acme_with_hook(&store).await;
    let mut sbom_hook = new_webhook("sboms", vec![]);
    sbom_hook.filters = Filters {
        kinds: vec![Referrer],
        ..Filters::default()
    };
    let sboms = store
        .create_webhook(&ns("acme"), sbom_hook, &audit("webhook.create"))
        .await
        .unwrap()
        .id;
    let enable = WebhookPatch {
        enabled: Some(true),
        ..Default::default()
    };
    store
        .update_webhook(&ns("acme"), sboms, enable, &audit("webhook.enabled"))
        .await
        .unwrap();
    let now = Utc::now();
    // A tagged image push: the plain webhook gets it at once; the one filtering on what was
    // pushed waits for the facts; the tag map learns 1.0.
    let image = readable_push("r-1", "acme/web", Some("1.0"), "sha256:aaa");
    let summary = store.ingest(&[image], now).await.unwrap();
    assert_eq!((summary.accepted, summary.deliveries), (1, 1));
    let referrer = readable_push("r-2", "acme/web", None, "sha256:bbb");
    store.ingest(&[referrer], now).await.unwrap();
    let pending = store.pending_facts(10).await.unwrap();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert_eq!(
        (
            pending[0].source.as_str(),
            pending[0].repository.as_str(),
            pending[0].digest.as_str()
        ),
        ("default", "acme/web", "sha256:aaa")
    );
    assert_eq!(pending[0].tag.as_deref(), Some("1.0"));
    assert_eq!(
        store
            .tags_of_digest("default", "acme/web", "sha256:aaa")
            .await
            .unwrap(),
        vec!["1.0".to_string()]
    );
    // The referrer's facts arrive: the waiting webhook gets its delivery, once.
    let facts = ArtifactFacts {
        kind: ArtifactKind::Referrer,
        artifact_type: Some("application/spdx+json".into()),
        subject: Some("sha256:aaa".into()),
        subject_tags: vec!["1.0".into()],
        platforms: vec![],
        annotations: Default::default(),
        origin: FactsOrigin::Registry,
    };
    let referrer_id = pending[1].event_id;
    let referrer_read = FactsRead {
        event_id: referrer_id,
        outcome: Ok(facts.clone()),
        cache: Some("sha256:bbb".into()),
    };
    assert!(store.cached_manifest("sha256:bbb").await.unwrap().is_none());
    assert_eq!(
        store
            .complete_facts(std::slice::from_ref(&referrer_read), now)
            .await
            .unwrap(),
        vec![Some(1)]
    );
    let delivered = store.list_deliveries(sboms, 10, None).await.unwrap().items;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].state, DeliveryState::Pending);
    // In one batch: the referrer again (completed once; its manifest kept once) and the
    // image, whose facts cannot be read: the waiting webhook's delivery says why, unsent.
    let image_id = pending[0].event_id;
    let why = "the registry at http://127.0.0.1:1 cannot be reached: refused".to_string();
    let image_read = FactsRead {
        event_id: image_id,
        outcome: Err(why),
        cache: None,
    };
    assert_eq!(
        store
            .complete_facts(&[referrer_read, image_read], now)
            .await
            .unwrap(),
        vec![None, Some(1)],
        "the referrer was completed once"
    );
    let failed = store.list_deliveries(sboms, 10, None).await.unwrap().items;
    assert_eq!(failed.len(), 2);
    let unsent = failed
        .iter()
        .find(|d| d.state == DeliveryState::Failed)
        .unwrap();
    assert!(
        unsent
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot be reached"),
        "{unsent:?}"
    );
    assert!(store.pending_facts(10).await.unwrap().is_empty());
    assert_eq!(
        store
            .list_deliveries(plain, 10, None)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    // The manifest read is kept by its digest.
    assert_eq!(
        store.cached_manifest("sha256:bbb").await.unwrap(),
        Some(facts)
    );
    // The tag map: learned whole, listed by repository, changed by deletes.
    let learned = vec![
        ("1.0".to_string(), "sha256:aaa".to_string()),
        ("2.0".to_string(), "sha256:ccc".to_string()),
    ];
    store
        .learn_tags("zot", "lib/x", &learned, now)
        .await
        .unwrap();
    store
        .learn_tags("zot", "lib/y", &learned[..1], now)
        .await
        .unwrap();
    assert_eq!(store.known_tags("zot", "lib/x").await.unwrap(), learned);
    assert_eq!(
        store
            .known_repositories("zot", None, None, 10)
            .await
            .unwrap(),
        vec!["lib/x".to_string(), "lib/y".to_string()]
    );
    assert_eq!(
        store
            .known_repositories("zot", Some("lib/x"), None, 10)
            .await
            .unwrap(),
        vec!["lib/y".to_string()]
    );
    assert_eq!(
        store
            .known_repositories("zot", None, Some("lib/y"), 10)
            .await
            .unwrap(),
        vec!["lib/x".to_string()]
    );
    let mut delete = readable_push("r-3", "acme/web", Some("1.0"), "sha256:aaa");
    delete.body = delete.body.replace("\"push\"", "\"delete\"");
    let mut delete = parse_envelope(format!("{{\"events\":[{}]}}", delete.body).as_bytes())
        .unwrap()
        .remove(0);
    delete.registry_readable = true;
    store.ingest(&[delete], now).await.unwrap();
    assert!(store
        .known_tags("default", "acme/web")
        .await
        .unwrap()
        .is_empty());
    // One reconcile per source: a fresh source is due; a leased run is not taken; a run
    // that finished is not due until asked for or its period passes.
    let lease = now + chrono::Duration::minutes(1);
    let run = store
        .claim_reconcile("zot", "p1", now, lease, None)
        .await
        .unwrap()
        .expect("a source never reconciled is due");
    assert_eq!((run.state.as_str(), run.learned), ("running", false));
    assert!(store
        .claim_reconcile("zot", "p2", now, lease, None)
        .await
        .unwrap()
        .is_none());
    let mut progress = run.clone();
    progress.cursor = Some("lib/x".into());
    progress.repositories = 1;
    store.save_reconcile(&progress, "p1", lease).await.unwrap();
    assert!(store.save_reconcile(&progress, "p2", lease).await.is_err());
    // p1 stops; after its lease, another process resumes at the cursor.
    let later = lease + chrono::Duration::seconds(1);
    let resumed = store
        .claim_reconcile(
            "zot",
            "p2",
            later,
            later + chrono::Duration::minutes(1),
            None,
        )
        .await
        .unwrap()
        .expect("an unfinished run is taken over after its lease");
    assert_eq!(
        (resumed.cursor.as_deref(), resumed.repositories),
        (Some("lib/x"), 1)
    );
    store
        .finish_reconcile("zot", "p2", None, later)
        .await
        .unwrap();
    let done = store.reconcile_status("zot").await.unwrap().unwrap();
    assert_eq!(
        (done.state.as_str(), done.learned, done.cursor),
        ("idle", true, None)
    );
    assert!(store
        .claim_reconcile("zot", "p1", later, lease, None)
        .await
        .unwrap()
        .is_none());
    let much_later = later + chrono::Duration::hours(2);
    assert!(
        store
            .claim_reconcile(
                "zot",
                "p1",
                much_later,
                much_later,
                Some(much_later - chrono::Duration::hours(1))
            )
            .await
            .unwrap()
            .is_some(),
        "due after its period"
    );
    store
        .finish_reconcile("zot", "p1", Some("refused"), much_later)
        .await
        .unwrap();
    assert_eq!(
        store
            .reconcile_status("zot")
            .await
            .unwrap()
            .unwrap()
            .error
            .as_deref(),
        Some("refused")
    );
    store.request_reconcile("zot", much_later).await.unwrap();
    assert_eq!(
        store.reconcile_status("zot").await.unwrap().unwrap().state,
        "requested"
    );
    // A registry's new instance (it restarted, its queue is gone) asks for a reconcile.
    assert!(!store.note_instance("default", "i-1", now).await.unwrap());
    assert!(!store.note_instance("default", "i-1", now).await.unwrap());
    assert!(store.note_instance("default", "i-2", now).await.unwrap());
    assert_eq!(
        store
            .reconcile_status("default")
            .await
            .unwrap()
            .unwrap()
            .state,
        "requested"
    );
    // Registry access of a source: replaced whole, the password sealed and never listed.
    let source = NewSource {
        name: "zot".into(),
        kind: herald::domain::events::SourceKind::Zot,
        username: None,
        secret_hash: "h".into(),
    };
    store
        .create_source(&source, &audit("source.create"))
        .await
        .unwrap();
    let access = herald::domain::model::RegistryAccess {
        url: Some("http://127.0.0.1:5000".into()),
        username: Some("reader".into()),
        password: Some(Sealed(vec![9, 0, 9])),
    };
    let updated = store
        .set_registry_access("zot", &access, &audit("source.update"))
        .await
        .unwrap();
    assert!(updated.has_registry_password);
    assert_eq!(
        updated.registry_url.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    let read = store.registry_access("zot").await.unwrap().unwrap();
    assert_eq!(read.password.unwrap().0, vec![9, 0, 9]);
    assert!(store.registry_access("nope").await.unwrap().is_none());
    // Reading from NATS: set whole, the password sealed and never shown, then removed.
    let intake = herald::domain::model::NatsIntake {
        url: "nats://127.0.0.1:4222".into(),
        subject: "zot.>".into(),
        stream: "ZOT".into(),
        consumer: "herald-zot".into(),
        username: Some("reader".into()),
        password: Some(Sealed(vec![7, 7])),
    };
    let updated = store
        .set_nats_intake("zot", Some(&intake), &audit("source.update"))
        .await
        .unwrap();
    assert_eq!(updated.nats_stream.as_deref(), Some("ZOT"));
    let listed = store.nats_intakes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1, intake);
    let cleared = store
        .set_nats_intake("zot", None, &audit("source.update"))
        .await
        .unwrap();
    assert!(cleared.nats_url.is_none());
    assert!(store.nats_intakes().await.unwrap().is_empty());
    store
        .delete_source("zot", &audit("source.destroy"))
        .await
        .unwrap();
    assert!(
        store.known_tags("zot", "lib/x").await.unwrap().is_empty(),
        "forgotten with its source"
    );
    assert!(store.reconcile_status("zot").await.unwrap().is_none());
}

/// Takes up to `room` deliveries of any webhook, remembering what it was asked.
struct Offer {
    room: std::sync::Mutex<usize>,
    asked: std::sync::Mutex<Vec<i64>>,
    until: DateTime<Utc>,
}

impl HandOff for Offer {
    fn take(&self, webhook_id: i64) -> bool {
        self.asked.lock().unwrap().push(webhook_id);
        let mut room = self.room.lock().unwrap();
        let taken = *room > 0;
        *room = room.saturating_sub(1);
        taken
    }

    fn lease_until(&self) -> DateTime<Utc> {
        self.until
    }
}

/// Ingest leases what the offer takes in its own transaction, asks only for webhooks whose
/// rules allow it (here not the fifo one), and leaves the rest to claims.
async fn deliveries_born_claimed(store: Arc<dyn Store>) {
    let (plain, ordered) = acme_with_two_hooks(&store).await;
    let fifo = WebhookPatch {
        ordering: Some(herald::domain::control::DeliveryOrder::Fifo),
        ..Default::default()
    };
    store
        .update_webhook(&ns("acme"), ordered, fifo, &audit("webhook.update"))
        .await
        .unwrap();
    let now = Utc::now();
    let offer = Arc::new(Offer {
        room: std::sync::Mutex::new(1),
        asked: std::sync::Mutex::new(Vec::new()),
        until: now + secs(600),
    });
    let summary = store
        .ingest_handing_off(&pushes(2, "bbbb"), now - secs(1), Some(offer.clone()))
        .await
        .unwrap();
    assert_eq!(summary.deliveries, 4);
    assert_eq!(
        *offer.asked.lock().unwrap(),
        [plain, plain],
        "never asked for the fifo webhook"
    );
    assert_eq!(summary.handed_off.len(), 1, "as much as the offer took");
    let revision = store
        .get_webhook(&ns("acme"), plain)
        .await
        .unwrap()
        .revision;
    assert_eq!(
        (summary.handed_off[0].event, summary.handed_off[0].revision),
        (0, revision),
        "the first event's, with the revision read in the transaction"
    );
    let born = summary.handed_off[0].claim;
    assert_eq!(
        (born.webhook_id, born.rate_limit, born.fifo),
        (plain, None, false)
    );

    // Leased: claims pass over it, and its token is the one to write its result under.
    let claims = store.claim_due(now, now + secs(600), 10).await.unwrap();
    let mut claimed: Vec<i64> = claims.iter().map(|c| c.webhook_id).collect();
    claimed.sort();
    assert_eq!(
        claimed,
        [plain, ordered],
        "the other plain one and the first fifo one"
    );
    assert!(claims.iter().all(|c| c.delivery_id != born.delivery_id));
    store
        .record_attempt(attempt(
            born.delivery_id,
            Some(born.token + 1),
            Outcome::Succeeded,
            200,
        ))
        .await
        .expect_err("an older or newer token is not its claim's");
    store
        .record_attempt(attempt(
            born.delivery_id,
            Some(born.token),
            Outcome::Succeeded,
            200,
        ))
        .await
        .unwrap();
    let job = store.load_job(born.delivery_id).await.unwrap();
    assert_eq!(job.state, DeliveryState::Succeeded);

    // Without an offer nothing is leased.
    let summary = store.ingest(&pushes(1, "cccc"), now).await.unwrap();
    assert!(summary.handed_off.is_empty());
    assert_eq!(store.release_all_claims().await.unwrap(), 2);
}

/// Every change of a webhook's settings moves its revision (so no hand-off uses a copy
/// from before it), and a webhook with a failure counted is not offered until it succeeds.
async fn hand_offs_see_each_settings_change_and_only_perfect_health(store: Arc<dyn Store>) {
    let id = acme_with_hook(&store).await;
    let revision = || {
        let store = store.clone();
        async move { store.get_webhook(&ns("acme"), id).await.unwrap().revision }
    };
    let mut last = revision().await;
    let patch = WebhookPatch {
        url: Some(WebhookUrl::parse("http://127.0.0.1:9/changed").unwrap()),
        ..Default::default()
    };
    store
        .update_webhook(&ns("acme"), id, patch, &audit("webhook.update"))
        .await
        .unwrap();
    assert!(revision().await > last, "an update");
    last = revision().await;
    let header = StoredHeader {
        name: HeaderName::parse("X-Team").unwrap(),
        value: Sealed(b"a".to_vec()),
    };
    store
        .set_header(&ns("acme"), id, header, &audit("webhook.header"))
        .await
        .unwrap();
    assert!(revision().await > last, "a header set");
    last = revision().await;
    store
        .delete_header(&ns("acme"), id, "x-team", &audit("webhook.header"))
        .await
        .unwrap();
    assert!(revision().await > last, "a header deleted");
    last = revision().await;
    store
        .rotate_signing_secret(
            &ns("acme"),
            id,
            Sealed(vec![9, 9]),
            Utc::now() + secs(60),
            &audit("webhook.rotate"),
        )
        .await
        .unwrap();
    assert!(revision().await > last, "a key rotated");

    // Ingest after an attempt: deliveries made, and deliveries offered and taken.
    let after = |health: Health, digest: &'static str| {
        let store = store.clone();
        async move {
            let rule = CircuitRule::new(3, Duration::from_secs(30));
            let day = Duration::from_secs(86_400);
            store
                .webhook_health_after(id, None, health, Utc::now(), day, rule)
                .await
                .unwrap();
            let offer = Arc::new(Offer {
                room: std::sync::Mutex::new(10),
                asked: std::sync::Mutex::new(Vec::new()),
                until: Utc::now() + secs(600),
            });
            let summary = store
                .ingest_handing_off(&pushes(1, digest), Utc::now(), Some(offer))
                .await
                .unwrap();
            (summary.deliveries, summary.handed_off.len())
        }
    };
    assert_eq!(
        after(Health::Failed, "dddd").await,
        (1, 0),
        "a failure counted"
    );
    assert_eq!(
        after(Health::Succeeded, "eeee").await,
        (1, 1),
        "healthy again"
    );
}
