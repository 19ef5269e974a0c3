use super::*;
fn claim(delivery_id: i64, webhook_id: i64, token: i64) -> Claim {
    Claim {
        delivery_id,
        webhook_id,
        token,
        rate_limit: None,
        fifo: false,
    }
}

const MS: Duration = Duration::from_millis(1);

/// Send limits of `n` for HTTP webhooks and 64 for broker ones.
fn http(n: usize) -> SendLimits {
    SendLimits {
        http: n,
        broker: 64,
    }
}

/// Books in which webhook 10 has answered quickly and holds nothing.
fn with_fast_hook(now: Instant) -> InFlight {
    let mut f = InFlight::default();
    let task = f.insert(claim(100, 10, 1), now, Lane::Slow, now).unwrap();
    assert!(f.answered(10, 5 * MS, false, now));
    assert!(f.remove(100, task).is_some());
    f.drained(&[10]);
    f
}

#[test]
fn a_delivery_claimed_again_after_its_send_gets_a_task_of_its_own() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    let first = f.insert(claim(3, 10, 1), now, Lane::Fast, now).unwrap();
    assert!(matches!(f.start_sending(3, first), Start::Send));
    // Its result is committed and a recover makes it due again before the task ends.
    let second = f
        .insert(claim(3, 10, 2), now, Lane::Fast, now)
        .expect("a new task sends the new claim");
    assert_ne!(first, second);
    assert_eq!((f.fast_held, f.hooks[&10].held), (1, 1), "counted once");
    assert_eq!(
        f.remove(3, first),
        None,
        "the old task's end leaves the new claim"
    );
    assert!(matches!(f.start_sending(3, second), Start::Send));
    assert!(f.remove(3, second).is_some());
    assert_eq!((f.fast_held, f.hooks[&10].held), (0, 0));
}

#[test]
fn in_flight_ignores_reclaims_and_other_tasks() {
    let mut f = InFlight::default();
    let now = Instant::now();
    let first = f.insert(claim(1, 10, 1), now, Lane::Fast, now).unwrap();
    let second = f.insert(claim(2, 10, 1), now, Lane::Fast, now).unwrap();
    assert_ne!(first, second);
    // Claimed again here: the running task takes the new token, nothing is counted twice.
    assert_eq!(f.insert(claim(2, 10, 2), now, Lane::Fast, now), None);
    assert_eq!(f.held[&2].token, 2);
    assert_eq!((f.fast_held, f.hooks[&10].held), (2, 2));
    assert_eq!(f.remove(1, second), None, "only its own task forgets it");
    let (held, webhook_left, fast_left) = f.remove(1, first).unwrap();
    assert_eq!((held.lane, webhook_left, fast_left), (Lane::Fast, 1, 1));
    assert_eq!(f.remove(1, first), None, "removing twice changes nothing");
}

#[test]
fn new_webhooks_start_slow_and_move_up_when_they_answer_quickly() {
    let mut f = InFlight::default();
    let now = Instant::now();
    let first = f.insert(claim(1, 10, 1), now, Lane::Slow, now).unwrap();
    assert_eq!(
        f.plan(4, http(1), now),
        Plan {
            fast_room: 4,
            ..Plan::default()
        },
        "unknown, it is neither fast nor passed over"
    );
    f.insert(claim(2, 10, 1), now, Lane::Slow, now).unwrap();
    let plan = f.plan(4, http(1), now);
    assert_eq!((plan.slow_skip, plan.passing_over), (vec![10], true));
    assert!(f.answered(10, 5 * MS, false, now), "a quick answer");
    assert!(!f.answered(10, 5 * MS, false, now), "already fast");
    f.remove(1, first).unwrap();
    let plan = f.plan(4, http(1), now);
    assert_eq!((plan.fast, plan.slow_skip), (vec![10], vec![10]));
    assert_eq!(plan.fast_room, 4, "slow-lane deliveries take no fast room");
}

#[test]
fn a_stale_request_moves_its_webhook_to_the_slow_lane() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    let out = f.insert(claim(5, 10, 1), now, Lane::Fast, now).unwrap();
    let waiting = f.insert(claim(6, 10, 1), now, Lane::Fast, now).unwrap();
    f.insert(claim(7, 10, 1), now, Lane::Fast, now).unwrap();
    assert_eq!(f.start_sending(5, out), Start::Send);
    let limit = f.fast_limit(10, http(8)).unwrap();
    assert_eq!(f.fast_held, 3);

    let mut handed_back: Vec<i64> = f.went_stale(10).unwrap().iter().map(|c| c.0).collect();
    handed_back.sort();
    assert_eq!(handed_back, [6, 7], "what waits is handed back");
    assert!(limit.is_closed(), "and stops waiting");
    assert!(f.fast_limit(10, http(8)).is_none());
    assert_eq!((f.fast_held, f.hooks[&10].held), (1, 1));
    assert_eq!(f.start_sending(6, waiting), Start::Gone);
    assert_eq!(
        f.went_stale(10),
        None,
        "a second stale request: already slow"
    );
    // A claim made in the fast lane just before goes back too.
    let late = f.insert(claim(8, 10, 1), now, Lane::Fast, now).unwrap();
    assert_eq!(f.start_sending(8, late), Start::HandBack(now));
    assert!(!f.held.contains_key(&8));

    f.moved_to_slow_lane(5, out);
    assert_eq!((f.fast_held, f.held[&5].lane), (0, Lane::Slow));
    let plan = f.plan(4, http(1), now);
    assert!(plan.fast.is_empty() && plan.fast_room == 4);
    // Quick answers while a stale request is out do not bring it back.
    assert!(!f.answered(10, MS, false, now));
    assert!(!f.answered(10, MS, false, now));
    assert!(!f.answered(10, 30_000 * MS, true, now), "a stale one, late");
    assert!(!f.answered(10, MS, false, now), "the other is still out");
    assert!(!f.answered(10, 2_000 * MS, true, now));
    let mut quick = 1;
    while !f.answered(10, MS, false, now) {
        quick += 1;
        assert!(quick < 10);
    }
    assert!(quick > 1, "the late answer weighs in the average");
}

#[test]
fn a_rate_limited_webhook_is_claimed_for_its_tokens_and_passed_over_without() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    let limit = crate::domain::control::RateLimit::per_second(2.0).unwrap();
    let limited = |delivery_id| Claim {
        rate_limit: Some(limit),
        ..claim(delivery_id, 10, 1)
    };
    assert!(f.admit(&limited(1), 1, now), "a full bucket: two tokens");
    f.insert(limited(1), now, Lane::Fast, now).unwrap();
    let plan = f.plan(16, http(8), now);
    assert_eq!(plan.fast_limited, [(10, 1)], "claimed alone, for one");
    assert!(plan.fast.is_empty());
    assert!(f.admit(&limited(2), 1, now));
    assert!(!f.admit(&limited(3), 1, now), "no token left");
    let plan = f.plan(16, http(8), now);
    assert!(plan.fast_limited.is_empty() && plan.slow_skip.contains(&10));
    assert_eq!(plan.next_token, Some(now + Duration::from_millis(500)));
    let later = now + Duration::from_millis(500);
    assert_eq!(f.plan(16, http(8), later).fast_limited, [(10, 1)]);
    // Claims without a limit: the webhook's was removed.
    assert!(f.admit(&claim(4, 10, 1), 1, later));
    assert_eq!(f.plan(16, http(8), later).fast, [10]);
}

#[test]
fn idle_webhooks_are_forgotten() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    assert_eq!(f.plan(4, http(1), now).fast, [10]);
    let later = now + PACE_MEMORY + Duration::from_secs(1);
    assert!(f.plan(4, http(1), later).fast.is_empty());
    assert!(f.hooks.is_empty());
}

#[test]
fn a_webhook_that_answers_within_a_claim_round_holds_enough_for_two() {
    assert_eq!(webhook_cap(16, None, Some(20 * MS)), 16, "no pace yet");
    assert_eq!(
        webhook_cap(16, Some(2 * MS), None),
        16,
        "no claim round yet"
    );
    assert_eq!(
        webhook_cap(16, Some(40 * MS), Some(20 * MS)),
        16,
        "slower than a round"
    );
    assert_eq!(
        webhook_cap(16, Some(4 * MS), Some(20 * MS)),
        80,
        "five answers a round"
    );
    assert_eq!(
        webhook_cap(16, Some(MS), Some(1000 * MS)),
        CLAIM_CHUNK,
        "at most a claim"
    );

    // Webhook 10 answers in 5 ms: with 20 ms rounds it is claimed until it holds 4 x 2.
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    f.claim_round(20 * MS);
    for id in 1..=7 {
        f.insert(claim(id, 10, 1), now, Lane::Fast, now).unwrap();
    }
    let plan = f.plan(64, http(1), now);
    assert_eq!((plan.fast, plan.passing_over), (vec![10], false), "7 of 8");
    f.insert(claim(8, 10, 1), now, Lane::Fast, now).unwrap();
    let plan = f.plan(64, http(1), now);
    assert_eq!((plan.fast.len(), plan.passing_over), (0, true), "8 of 8");
    // Rounds that get quicker lower the cap again.
    for _ in 0..20 {
        f.claim_round(MS);
    }
    assert_eq!(webhook_cap(2, f.hooks[&10].pace, f.round), 2);
}

#[test]
fn a_broker_webhook_takes_the_broker_send_limit() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    let limits = http(8);
    assert_eq!(f.fast_limit(10, limits).unwrap().available_permits(), 8);
    for id in 0..20 {
        f.insert(claim(id, 10, 1), now, Lane::Fast, now).unwrap();
    }
    assert!(
        f.plan(256, limits, now).passing_over,
        "an HTTP webhook holding 20 of 16"
    );

    f.learn_destination(10, true);
    assert_eq!(f.fast_limit(10, limits).unwrap().available_permits(), 64);
    let plan = f.plan(256, limits, now);
    assert_eq!(plan.fast, [10], "a broker webhook is claimed up to 128");
    assert!(!plan.passing_over);

    f.learn_destination(10, false);
    assert_eq!(
        f.fast_limit(10, limits).unwrap().available_permits(),
        8,
        "its URL changed back to HTTP"
    );
}

#[test]
fn ingest_room_is_a_claims_room() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    let limits = http(1); // a cap of 2 per webhook
    assert_eq!(
        f.reserve(11, 8, limits),
        Room::NotHeardFrom,
        "a webhook not known here gets no fast room"
    );
    assert_eq!(f.reserve(10, 8, limits), Room::Fast);
    assert_eq!(f.reserve(10, 8, limits), Room::Fast);
    assert_eq!(
        f.reserve(10, 8, limits),
        Room::None,
        "its cap counts what is reserved"
    );
    let plan = f.plan(8, limits, now);
    assert!(
        plan.passing_over && plan.fast.is_empty(),
        "claims pass it over"
    );
    assert_eq!(plan.fast_room, 6, "reserved room is not a claim's");

    // The ingest committed one of the two; the ticket gives both back once it is held.
    f.insert(claim(1, 10, 1), now, Lane::Fast, now).unwrap();
    f.unreserve(&HashMap::from([(10, 2)]));
    assert_eq!((f.reserved, f.hooks[&10].reserved, f.fast_held), (0, 0, 1));
    assert_eq!(
        f.reserve(10, 8, limits),
        Room::None,
        "it refused one: that one waits in the database"
    );
    f.drained(&[10]);
    assert_eq!(
        f.reserve(10, 8, limits),
        Room::Fast,
        "a claim took it: room for one more"
    );
    f.drained(&[10]);
    assert_eq!(
        f.reserve(10, 1, limits),
        Room::None,
        "nor past the fast lane's hold"
    );
}

#[test]
fn no_ingest_room_for_a_slow_fifo_or_rate_limited_webhook() {
    let now = Instant::now();
    let mut f = with_fast_hook(now);
    let limits = http(8);
    let mut fifo = claim(1, 10, 1);
    fifo.fifo = true;
    assert!(f.admit(&fifo, 1, now));
    assert!(
        f.reserve(10, 64, limits) == Room::None,
        "fifo: each delivery waits for the one before"
    );

    let mut f = with_fast_hook(now);
    let mut limited = claim(1, 10, 1);
    limited.rate_limit = Some(crate::domain::control::RateLimit::from_milli(10_000).unwrap());
    assert!(f.admit(&limited, 1, now));
    assert!(
        f.reserve(10, 64, limits) == Room::None,
        "a rate limit is taken by claims only"
    );

    let mut f = with_fast_hook(now);
    f.went_stale(10);
    assert!(
        f.reserve(10, 64, limits) == Room::None,
        "slow webhooks wait for the slow lane"
    );
}

#[test]
fn a_hand_off_uses_kept_settings_only_at_the_revision_ingest_read() {
    use crate::domain::control::CircuitState;
    let cipher = crate::secrets::Cipher::from_key(&[3; 32]);
    let mut hook = crate::hooks::payload::tests::webhook(&cipher);
    hook.revision = 4;
    hook.failing_since = Some(Utc::now());
    hook.circuit.failures = 1;
    let mut settings = hand_off::Settings::default();
    settings.keep(&Arc::new(hook.clone()));
    let now = Utc::now();
    let kept = settings.at(hook.id, 4, now).expect("at its revision");
    assert!(
        kept.failing_since.is_none() && kept.circuit.state == CircuitState::Closed,
        "kept in the perfect health a hand-off's ingest found"
    );
    assert_eq!(kept.circuit.failures, 0);
    assert!(settings.at(hook.id, 5, now).is_none(), "changed since");
    assert!(
        settings.at(hook.id + 1, 4, now).is_none(),
        "another webhook"
    );

    // A rotated-out key that has stopped signing: read again, not signed with.
    let key = |byte| crate::secrets::Sealed(vec![byte; 8]);
    hook.signing_secrets = vec![key(1), key(2)];
    hook.previous_secret_until = Some(now + chrono::Duration::seconds(60));
    hook.revision = 5;
    settings.keep(&Arc::new(hook));
    assert!(settings.at(1, 5, now).is_some());
    let later = now + chrono::Duration::seconds(61);
    assert!(
        settings.at(1, 5, later).is_none(),
        "its previous key expired"
    );
}
