//! Every rule of the session, driven with a fake clock.

mod harness;

use std::time::Duration;

use harness::{Harness, event};
use herald_core::{
    AuthMode, DisconnectReason, FallbackConfig, PublishError, PublishFailure, PublishOptions, ResyncReason,
    SessionConfig, SessionEvent, Status, SubscribeOptions, TokenReason, Transport,
    protocol::{EventData, EventKind, Payload},
};
use serde_json::json;

const URL: &str = "ws://127.0.0.1:9/ws";
const SECOND: Duration = Duration::from_secs(1);
const CONNECTED: Status = Status::Connected { transport: Transport::WebSocket };
const ON_STREAM: Status = Status::Connected { transport: Transport::ServerSentEvents };

fn config() -> SessionConfig {
    Harness::config(URL)
}

fn no_jitter() -> SessionConfig {
    let mut config = config();
    config.backoff.jitter = 0.0;
    config
}

fn data(n: u32) -> EventData {
    EventData {
        entity_id: format!("e{n}"),
        payload: Payload::from_value(&json!({ "n": n })).unwrap(),
        user_id: None,
        tenant_id: None,
        timestamp: "2026-11-25T10:00:00Z".into(),
    }
}

fn publish(h: &mut Harness, n: u32) -> herald_core::PublishId {
    let id = h
        .session
        .publish(h.now, "gift-list:1".parse().unwrap(), EventKind::Updated, data(n), PublishOptions::default())
        .unwrap();
    h.drain();
    id
}

fn resyncs(events: &[SessionEvent]) -> Vec<(String, ResyncReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Resync { topic, reason } => Some((topic.to_string(), *reason)),
            _ => None,
        })
        .collect()
}

fn delivered_seqs(events: &[SessionEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Event(e) => e.seq,
            _ => None,
        })
        .collect()
}

// --- connecting and auth ---

#[test]
fn first_attempt_asks_for_a_token_and_puts_it_in_the_query() {
    let mut h = Harness::new(config());
    assert_eq!(h.token_requests, [TokenReason::Connect]);
    assert_eq!(h.connects[0].1, "ws://127.0.0.1:9/ws?token=tok-1");
    h.open();
    assert_eq!(h.last_status(), CONNECTED);
    assert_eq!(h.statuses(), [Status::Connecting, CONNECTED]);
}

#[test]
fn query_tokens_are_percent_encoded_and_appended_to_existing_parameters() {
    let mut h = Harness::new(Harness::config("ws://h/ws?room=1"));
    h.token = Some(Ok("a b&c=d/é~".into()));
    h.server_close(None, "refused");
    h.fire_next_timer();
    assert_eq!(h.connects[1].1, "ws://h/ws?room=1&token=a%20b%26c%3Dd%2F%C3%A9~");
}

#[test]
fn first_message_auth_sends_the_token_before_anything_else() {
    let mut config = config();
    config.auth = AuthMode::FirstMessage;
    let mut h = Harness::new(config);
    h.session.subscribe(h.now, "gift-list:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    assert_eq!(h.connects[0].1, URL, "no token in the URL");
    h.open();
    let sent = h.take_sent();
    assert_eq!(sent[0], json!({"type": "auth", "token": "tok-1"}));
    assert_eq!(sent[1], json!({"type": "subscribe", "topics": ["gift-list:1"]}));
}

#[test]
fn no_auth_mode_never_asks_for_a_token() {
    let mut config = config();
    config.auth = AuthMode::None;
    let h = Harness::new(config);
    assert!(h.token_requests.is_empty());
    assert_eq!(h.connects[0].1, URL);
}

#[test]
fn a_failing_token_provider_counts_as_a_failed_attempt() {
    let mut h = Harness::new(config());
    h.server_close(None, "");
    h.token = Some(Err("vault unreachable".into()));
    h.fire_next_timer();
    assert!(
        h.events.iter().any(|e| matches!(e, SessionEvent::TokenFailed { message } if message == "vault unreachable"))
    );
    assert!(matches!(h.last_status(), Status::Reconnecting { attempt: 2, .. }));
    assert_eq!(h.connects.len(), 1);
}

#[test]
fn a_token_provider_that_never_answers_times_out() {
    let mut h = Harness::new(config());
    h.server_close(None, "");
    h.token = None;
    h.fire_next_timer();
    assert_eq!(h.token_requests.len(), 2);
    h.advance(SECOND * 10);
    assert!(h.events.iter().any(|e| matches!(e, SessionEvent::TokenFailed { .. })));
    assert!(matches!(h.last_status(), Status::Reconnecting { attempt: 2, .. }));
}

#[test]
fn a_connect_that_hangs_is_aborted_after_the_connect_timeout() {
    let mut h = Harness::new(no_jitter());
    h.advance(SECOND * 10);
    assert_eq!(h.closes.len(), 1, "the pending connect is aborted");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: SECOND });
}

// --- backoff ---

#[test]
fn reconnect_delays_grow_exponentially_to_the_cap() {
    let mut h = Harness::new(no_jitter());
    let mut delays = Vec::new();
    for _ in 0..8 {
        h.server_close(None, "connection refused");
        let Status::Reconnecting { next_in, .. } = h.last_status() else { panic!("not reconnecting") };
        delays.push(next_in.as_secs());
        assert_eq!(h.fire_next_timer(), next_in, "the next attempt starts when announced");
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
}

#[test]
fn jittered_delays_stay_within_bounds_and_differ_between_clients() {
    let mut firsts = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let mut config = config();
        config.seed = seed;
        let mut session = herald_core::Session::new(config, herald_core::Instant::now());
        let now = herald_core::Instant::now();
        let mut base = 1.0f64;
        for attempt in 1..=7u32 {
            session.handle_timeout(now);
            session.handle_token(now, Ok("t".into()));
            let id = std::iter::from_fn(|| session.poll_output())
                .find_map(|o| match o {
                    herald_core::Output::Connect { id, .. } => Some(id),
                    _ => None,
                })
                .expect("a Connect");
            session.handle_close(now, id, None, "");
            let Status::Reconnecting { attempt: a, next_in } = session.status().clone() else { panic!() };
            assert_eq!(a, attempt);
            let secs = next_in.as_secs_f64();
            assert!(secs >= base * 0.5 - 1e-6 && secs <= base * 1.5 + 1e-6, "attempt {attempt}: {secs} s");
            if attempt == 1 {
                firsts.insert(next_in.as_millis());
            }
            base = (base * 2.0).min(30.0);
            // Jump the session's clock to the attempt time.
            let at = session.poll_timeout().unwrap();
            session.handle_timeout(at);
            while session.poll_output().is_some() {}
        }
    }
    assert!(firsts.len() >= 45, "first delays should spread: {firsts:?}");
}

#[test]
fn backoff_resets_only_after_a_connection_stayed_healthy() {
    let mut h = Harness::new(no_jitter());
    h.server_close(None, "");
    h.connect();
    // Fails right after opening: not healthy, the delay keeps growing.
    h.server_close(Some(1006), "");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 2, next_in: SECOND * 2 });
    h.connect();
    h.advance(SECOND * 10);
    h.server_close(Some(1006), "");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: SECOND });
}

#[test]
fn max_attempts_stops_with_retries_exhausted() {
    let mut config = no_jitter();
    config.backoff.max_attempts = Some(3);
    let mut h = Harness::new(config);
    for _ in 0..3 {
        h.server_close(None, "refused");
        h.fire_next_timer();
    }
    h.server_close(None, "refused");
    assert_eq!(h.last_status(), Status::Disconnected { reason: DisconnectReason::RetriesExhausted { attempts: 3 } });
    assert_eq!(h.session.poll_timeout(), None, "no timer after stopping");
    assert_eq!(h.connects.len(), 4);
}

// --- close codes ---

#[test]
fn going_away_reconnects_at_once() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.server_close(Some(1001), "server shutting down");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: Duration::ZERO });
    h.fire_next_timer();
    assert_eq!(h.connects.len(), 2);
}

#[test]
fn a_server_advised_delay_overrides_the_backoff_once() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.server_close(Some(1001), "server restart; retry_after_ms=2500");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: Duration::from_millis(2500) });
    assert_eq!(h.fire_next_timer(), Duration::from_millis(2500));
    h.server_close(None, "refused");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 2, next_in: SECOND }, "back to the backoff");
}

/// Opens the pending (or next) connection, has the server close it at once,
/// and returns the delay the session chose.
fn closed_at_once(h: &mut Harness, code: u16, reason: &str) -> Duration {
    h.connect();
    h.server_close(Some(code), reason);
    let Status::Reconnecting { next_in, .. } = h.last_status() else {
        panic!("not reconnecting: {:?}", h.last_status())
    };
    next_in
}

#[test]
fn going_away_closes_of_connections_that_do_not_stay_up_fall_back_to_the_backoff() {
    // Issue 9: a server closing every connection at once with 1001 got 9,262 reconnects in 15 s.
    let mut h = Harness::new(no_jitter());
    let delays: Vec<u64> = (0..8).map(|_| closed_at_once(&mut h, 1001, "going away").as_secs()).collect();
    assert_eq!(delays, [0, 1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 8, next_in: SECOND * 30 });
}

#[test]
fn repeated_advice_waits_the_longer_of_the_advice_and_the_backoff() {
    let mut h = Harness::new(no_jitter());
    let delays: Vec<u64> =
        (0..5).map(|_| closed_at_once(&mut h, 1001, "restart; retry_after_ms=2500").as_millis() as u64).collect();
    assert_eq!(delays, [2500, 2500, 2500, 4000, 8000]);
}

#[test]
fn advice_after_failures_without_advice_is_still_followed_once() {
    // A network blip, then a real restart before the connection was healthy.
    let mut h = Harness::new(no_jitter());
    assert_eq!(closed_at_once(&mut h, 1006, ""), SECOND);
    assert_eq!(closed_at_once(&mut h, 1001, "restart; retry_after_ms=300"), Duration::from_millis(300));
    assert_eq!(closed_at_once(&mut h, 1001, "restart; retry_after_ms=300"), SECOND * 2, "not twice");
}

#[test]
fn a_connection_that_stayed_healthy_makes_advice_immediate_again() {
    let mut h = Harness::new(no_jitter());
    assert_eq!(closed_at_once(&mut h, 1001, "going away"), Duration::ZERO);
    assert_eq!(closed_at_once(&mut h, 1001, "going away"), SECOND);
    h.connect();
    h.advance(SECOND * 10);
    h.server_close(Some(1001), "going away");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: Duration::ZERO });
}

#[test]
fn an_advised_delay_of_u64_max_is_cut_to_the_ceiling_and_the_session_reconnects() {
    for (ceiling, expected) in [(None, SECOND * 30), (Some(SECOND * 5), SECOND * 5)] {
        let mut config = no_jitter();
        if let Some(ceiling) = ceiling {
            config.backoff.max_advised = ceiling;
        }
        let mut h = Harness::new(config);
        h.open();
        h.server_close(Some(1001), "restart; retry_after_ms=18446744073709551615");
        assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: expected });
        assert_eq!(h.fire_next_timer(), expected);
        assert_eq!(h.connects.len(), 2, "reconnected");
    }
}

#[test]
fn advice_above_the_backoff_max_is_honoured_up_to_its_own_ceiling() {
    // An app that caps its backoff at 3 s must still wait out a server's 5 s spread.
    let mut config = no_jitter();
    config.backoff.max = SECOND * 3;
    let mut h = Harness::new(config);
    assert_eq!(closed_at_once(&mut h, 1001, "restart; retry_after_ms=5000"), SECOND * 5);
    assert_eq!(h.fire_next_timer(), SECOND * 5);
    assert_eq!(closed_at_once(&mut h, 1001, "restart; retry_after_ms=5000"), SECOND * 5, "after a failure too");
    assert_eq!(closed_at_once(&mut h, 1001, "restart; retry_after_ms=45000"), SECOND * 30, "the ceiling");
}

#[test]
fn advice_of_u64_max_ms_without_a_ceiling_neither_panics_nor_waits_past_a_year() {
    let mut config = no_jitter();
    config.backoff.max_advised = Duration::MAX;
    let mut h = Harness::new(config);
    h.open();
    h.server_close(Some(1001), "restart; retry_after_ms=18446744073709551615");
    let Status::Reconnecting { next_in, .. } = h.last_status() else { panic!("{:?}", h.last_status()) };
    assert!(next_in <= SECOND * 366 * 24 * 60 * 60, "{next_in:?}");
    assert_eq!(h.fire_next_timer(), next_in);
    assert_eq!(h.connects.len(), 2, "reconnected");
}

#[test]
fn unauthorized_asks_for_a_fresh_token_once_then_stops() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.server_close(Some(4001), "token expired");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: Duration::ZERO });
    h.token = Some(Ok("tok-2".into()));
    h.fire_next_timer();
    assert_eq!(h.token_requests, [TokenReason::Connect, TokenReason::Unauthorized]);
    assert_eq!(h.connects[1].1, "ws://127.0.0.1:9/ws?token=tok-2");
    h.open();
    h.server_close(Some(4001), "bad signature");
    assert_eq!(
        h.last_status(),
        Status::Disconnected { reason: DisconnectReason::Unauthorized { reason: "bad signature".into() } }
    );
    assert_eq!(h.connects.len(), 2, "no loop");
}

#[test]
fn an_accepted_connection_renews_the_single_token_retry() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.server_close(Some(4001), "expired");
    h.connect();
    h.recv_json(json!({"type": "connected", "user_id": "u1"}));
    h.server_close(Some(4001), "expired again, an hour later");
    assert!(matches!(h.last_status(), Status::Reconnecting { .. }));
}

#[test]
fn a_token_that_worked_for_the_healthy_period_gets_a_fresh_retry_without_connected() {
    // A seed-style server accepts without `connected`: staying up is the only sign the token worked.
    let mut h = Harness::new(no_jitter());
    h.open();
    h.server_close(Some(4001), "expired");
    h.connect();
    for _ in 0..4 {
        h.advance(SECOND * 20);
        h.recv_json(json!({"type": "ping"}));
    }
    h.server_close(Some(4001), "expired again, a while later");
    assert!(matches!(h.last_status(), Status::Reconnecting { .. }), "{:?}", h.last_status());
    h.fire_next_timer();
    assert_eq!(h.token_requests, [TokenReason::Connect, TokenReason::Unauthorized, TokenReason::Unauthorized]);
    // The fresh token is refused at once: that is the second 4001 in a row.
    h.open();
    h.server_close(Some(4001), "bad signature");
    assert!(matches!(h.last_status(), Status::Disconnected { reason: DisconnectReason::Unauthorized { .. } }));
}

#[test]
fn a_server_that_accepts_then_refuses_every_token_gets_no_reconnect_loop() {
    let mut h = Harness::new(no_jitter());
    let mut delays = Vec::new();
    for _ in 0..4 {
        h.connect();
        h.recv_json(json!({"type": "connected", "user_id": "u1"}));
        h.server_close(Some(4001), "expired");
        let Status::Reconnecting { next_in, .. } = h.last_status() else { panic!("{:?}", h.last_status()) };
        delays.push(next_in.as_secs());
    }
    assert_eq!(delays, [0, 1, 2, 4], "each accepted token renews the retry, but not its haste");
}

#[test]
fn forbidden_close_stops_without_retrying() {
    let mut h = Harness::new(config());
    h.open();
    h.server_close(Some(4003), "no topic allowed");
    assert_eq!(
        h.last_status(),
        Status::Disconnected { reason: DisconnectReason::Forbidden { reason: "no topic allowed".into() } }
    );
    assert_eq!(h.session.poll_timeout(), None);
}

#[test]
fn too_slow_rate_limited_and_too_big_reconnect_with_backoff() {
    for code in [4009, 4008, 1009, 1000, 1011] {
        let mut h = Harness::new(no_jitter());
        h.open();
        h.server_close(Some(code), "");
        assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: SECOND }, "code {code}");
    }
}

#[test]
fn late_inputs_about_an_old_transport_are_ignored() {
    let mut h = Harness::new(config());
    h.open();
    let old = h.current.unwrap();
    h.server_close(Some(1006), "");
    h.connect();
    h.session.handle_close(h.now, old, Some(1000), "late onclose of the old socket");
    h.session.handle_frame(h.now, old, r#"{"type":"ping"}"#);
    h.drain();
    assert_eq!(h.last_status(), CONNECTED);
    assert!(h.take_sent().iter().all(|m| m["type"] != "pong"));
}

// --- heartbeat ---

#[test]
fn pings_after_a_quiet_interval_and_any_frame_counts_as_liveness() {
    let mut h = Harness::new(config());
    h.open();
    h.take_sent();
    h.advance(SECOND * 29);
    h.recv_json(json!({"type": "notification"}));
    h.advance(SECOND * 29);
    assert!(h.take_sent().is_empty(), "traffic 29 s ago: no ping yet");
    h.advance(SECOND);
    assert_eq!(h.take_sent(), [json!({"type": "ping"})]);
    h.advance(SECOND * 9);
    h.recv_json(json!({"type": "pong"}));
    h.advance(SECOND * 20);
    assert_eq!(h.last_status(), CONNECTED);
}

#[test]
fn a_half_open_connection_is_detected_within_interval_plus_timeout() {
    let mut h = Harness::new(no_jitter());
    h.open();
    let opened = h.now;
    // The network black-holes everything from here on.
    while h.closes.is_empty() {
        h.fire_next_timer();
    }
    assert_eq!(h.now - opened, Duration::from_secs(40), "30 s interval + 10 s timeout");
    assert_eq!(h.closes[0].2, "heartbeat timeout");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 1, next_in: SECOND });
}

#[test]
fn server_pings_are_answered_with_pongs() {
    let mut h = Harness::new(config());
    h.open();
    h.take_sent();
    h.recv(r#"{"type":"ping"}"#);
    assert_eq!(h.take_sent(), [json!({"type": "pong"})]);
}

// --- subscriptions and recovery ---

#[test]
fn subscriptions_survive_reconnects_and_are_resent_in_one_batch_with_positions() {
    let mut h = Harness::new(config());
    for topic in ["gift-list:1", "gift-list:2", "user:9"] {
        h.session.subscribe(h.now, topic.parse().unwrap(), SubscribeOptions::default()).unwrap();
    }
    h.open();
    assert_eq!(h.take_sent(), [json!({"type": "subscribe", "topics": ["gift-list:1", "gift-list:2", "user:9"]})]);
    h.recv_json(json!({"type": "connected", "user_id": "u1", "epoch": "E1"}));
    h.recv_json(json!({"type": "subscribed", "topics": ["gift-list:1", "gift-list:2", "user:9"],
                       "last_seq": {"gift-list:1": 5, "gift-list:2": 0, "user:9": 2}}));
    h.recv_json(event("gift-list:1", 6));
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(
        h.take_sent(),
        [json!({"type": "subscribe", "topics": ["gift-list:1", "gift-list:2", "user:9"],
                "since": {"gift-list:1": 6, "gift-list:2": 0, "user:9": 2}, "epoch": "E1"})]
    );
}

#[test]
fn subscribing_while_connected_sends_at_once_and_twice_is_a_no_op() {
    let mut h = Harness::new(config());
    h.open();
    h.session.subscribe(h.now, "doc:7".parse().unwrap(), SubscribeOptions::default().presence()).unwrap();
    h.session.subscribe(h.now, "doc:7".parse().unwrap(), SubscribeOptions::default().presence()).unwrap();
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "subscribe", "topics": ["doc:7"], "presence": true})]);
}

#[test]
fn asking_for_presence_on_a_topic_subscribed_without_it_subscribes_again_with_it() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "doc:7".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    assert_eq!(h.take_sent(), [json!({"type": "subscribe", "topics": ["doc:7"]})]);
    h.session.subscribe(h.now, "doc:7".parse().unwrap(), SubscribeOptions::default().presence()).unwrap();
    // A later subscriber without presence does not turn it off for the first.
    h.session.subscribe(h.now, "doc:7".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "subscribe", "topics": ["doc:7"], "presence": true})]);
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(h.take_sent(), [json!({"type": "subscribe", "topics": ["doc:7"], "presence": true})]);
}

#[test]
fn unsubscribe_online_tells_the_server_and_offline_only_drops_the_intent() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.session.subscribe(h.now, "a:2".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.take_sent();
    assert!(h.session.unsubscribe(h.now, "a:1"));
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "unsubscribe", "topics": ["a:1"]})]);
    h.server_close(None, "");
    assert!(h.session.unsubscribe(h.now, "a:2"));
    assert!(!h.session.unsubscribe(h.now, "a:3"));
    h.drain();
    h.connect();
    assert!(h.take_sent().is_empty(), "nothing left to subscribe");
}

#[test]
fn events_of_unsubscribed_topics_are_dropped() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(event("a:2", 1));
    h.recv_json(event("a:1", 1));
    assert_eq!(delivered_seqs(&h.events), [1]);
}

#[test]
fn wildcards_receive_every_identifier_of_their_resource() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "gift-list:*".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(event("gift-list:1", 1));
    h.recv_json(event("gift-list:2", 1));
    h.recv_json(event("user:1", 1));
    assert_eq!(delivered_seqs(&h.events), [1, 1]);
}

#[test]
fn replayed_duplicates_are_dropped_and_gaps_resync() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    for seq in [1, 2, 2, 1, 3, 6, 7] {
        h.recv_json(event("a:1", seq));
    }
    assert_eq!(delivered_seqs(&h.events), [1, 2, 3, 6, 7]);
    assert_eq!(resyncs(&h.events), [("a:1".into(), ResyncReason::Gap { expected: 4, got: 6 })]);
}

#[test]
fn a_recovered_reconnect_delivers_the_gap_exactly_once_without_resync() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(json!({"type": "subscribed", "topics": ["a:1"], "last_seq": {"a:1": 0}}));
    for seq in 1..=3 {
        h.recv_json(event("a:1", seq));
    }
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    // The server replays 4..=6, one of them twice (a live event overlapping the replay).
    for seq in [4, 5, 5, 6] {
        h.recv_json(event("a:1", seq));
    }
    h.recv_json(json!({"type": "subscribed", "topics": ["a:1"], "recovered": true, "last_seq": {"a:1": 6}}));
    h.recv_json(event("a:1", 7));
    assert_eq!(delivered_seqs(&h.events), (1..=7).collect::<Vec<_>>());
    assert!(resyncs(&h.events).is_empty());
}

#[test]
fn an_unrecovered_topic_resyncs() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.session.subscribe(h.now, "a:2".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(event("a:1", 10));
    h.recv_json(event("a:2", 3));
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(json!({"type": "subscribed", "topics": ["a:1"], "recovered": false, "last_seq": {"a:1": 900}}));
    h.recv_json(json!({"type": "subscribed", "topics": ["a:2"], "recovered": true, "last_seq": {"a:2": 3}}));
    assert_eq!(resyncs(&h.events), [("a:1".into(), ResyncReason::NotRecovered)]);
    h.recv_json(event("a:1", 901));
    assert_eq!(*delivered_seqs(&h.events).last().unwrap(), 901, "the new baseline is 900");
    assert!(resyncs(&h.events).len() == 1, "no gap after the new baseline");
}

#[test]
fn an_unrecovered_topic_without_a_position_takes_the_next_event_as_its_position() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(event("a:1", 10));
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    // Another node of the cluster, which has not seen a:1 since it joined: no last_seq.
    h.recv_json(json!({"type": "subscribed", "topics": ["a:1"], "recovered": false}));
    h.recv_json(event("a:1", 15));
    h.recv_json(event("a:1", 16));
    assert_eq!(delivered_seqs(&h.events), [10, 15, 16]);
    assert_eq!(resyncs(&h.events), [("a:1".into(), ResyncReason::NotRecovered)], "one resync, no false gap");
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(
        h.take_sent().last().unwrap(),
        &json!({"type": "subscribe", "topics": ["a:1"], "since": {"a:1": 16}, "epoch": "E1"}),
        "the position is the last event seen"
    );
}

#[test]
fn a_server_without_recovery_resyncs_every_topic_after_a_reconnect() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "bench:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "userId": "u1"}));
    h.recv_json(event("bench:1", 50));
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(resyncs(&h.events), [("bench:1".into(), ResyncReason::NoRecovery)]);
    assert_eq!(h.take_sent().last().unwrap(), &json!({"type": "subscribe", "topics": ["bench:1"]}), "no since");
    // The restarted peer numbers from 1 again: not a duplicate.
    h.recv_json(event("bench:1", 1));
    assert_eq!(delivered_seqs(&h.events), [50, 1]);
}

#[test]
fn a_new_epoch_forgets_old_positions() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(event("a:1", 40));
    h.server_close(Some(1001), "restart");
    h.connect();
    h.recv_json(json!({"type": "connected", "epoch": "E2"}));
    h.recv_json(json!({"type": "subscribed", "topics": ["a:1"], "recovered": false, "last_seq": {"a:1": 0}}));
    h.recv_json(event("a:1", 1));
    assert_eq!(delivered_seqs(&h.events), [40, 1]);
    assert_eq!(resyncs(&h.events), [("a:1".into(), ResyncReason::NotRecovered)]);
}

#[test]
fn wildcard_subscriptions_resync_after_a_reconnect() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "gift-list:*".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(resyncs(&h.events), [("gift-list:*".into(), ResyncReason::Wildcard)]);
}

#[test]
fn topics_first_subscribed_while_offline_do_not_resync() {
    let mut h = Harness::new(config());
    h.open();
    h.server_close(Some(1006), "");
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.connect();
    assert!(resyncs(&h.events).is_empty());
}

#[test]
fn a_forbidden_topic_is_dropped_and_others_stay() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "admin:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "error", "code": 4003, "message": "not allowed", "topic": "admin:1"}));
    assert!(h.events.iter().any(|e| matches!(e, SessionEvent::SubscribeFailed { topic, .. } if topic == "admin:1")));
    let topics: Vec<String> = h.session.topics().map(|t| t.to_string()).collect();
    assert_eq!(topics, ["a:1"]);
    assert_eq!(h.last_status(), CONNECTED);
}

#[test]
fn every_subscribed_topic_refused_with_4003_stops_with_forbidden() {
    let mut h = Harness::new(config());
    for topic in ["admin:1", "admin:*"] {
        h.session.subscribe(h.now, topic.parse().unwrap(), SubscribeOptions::default()).unwrap();
    }
    h.open();
    h.recv_json(json!({"type": "error", "code": 4003, "message": "not allowed", "topic": "admin:1"}));
    assert_eq!(h.last_status(), CONNECTED, "one topic is still asked for");
    h.recv_json(json!({"type": "error", "code": "forbidden", "message": "no admin for you", "topic": "admin:*"}));
    assert_eq!(
        h.last_status(),
        Status::Disconnected { reason: DisconnectReason::Forbidden { reason: "no admin for you".into() } }
    );
    assert_eq!(h.closes.last().map(|c| c.1), Some(1000), "the connection is closed cleanly");
    assert_eq!(h.session.poll_timeout(), None, "and never retried");
    assert!(h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).is_err());
}

#[test]
fn refusals_that_are_not_4003_or_leave_a_topic_keep_the_session_running() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "error", "code": 429, "message": "slow down", "topic": "a:1"}));
    assert!(h.session.topics().next().is_none());
    assert_eq!(h.last_status(), CONNECTED, "a rate limit is not a verdict on the token");
}

#[test]
fn a_publish_only_session_is_not_stopped_by_4003_errors() {
    let mut h = Harness::new(config());
    h.open();
    let id = publish(&mut h, 1);
    h.recv_json(json!({"type": "error", "code": 4003, "message": "publish not allowed", "id": id.0}));
    h.recv_json(json!({"type": "error", "code": 4003, "message": "not yours", "topic": "gift-list:1"}));
    h.recv_json(json!({"type": "error", "code": 4003, "message": "nope"}));
    assert_eq!(h.last_status(), CONNECTED);
    publish(&mut h, 2);
    assert_eq!(h.session.pending_publishes(), 1, "it still publishes");
}

#[test]
fn a_late_publish_refusal_leaves_the_subscription_of_its_topic_alone() {
    let mut config = config();
    config.publish_timeout = SECOND;
    let mut h = Harness::new(config);
    h.session.subscribe(h.now, "gift-list:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    let id = publish(&mut h, 1);
    h.advance(SECOND);
    h.recv_json(
        json!({"type": "error", "code": 4003, "message": "publish not allowed", "id": id.0, "topic": "gift-list:1"}),
    );
    assert_eq!(h.session.topics().map(|t| t.to_string()).collect::<Vec<_>>(), ["gift-list:1"]);
    assert_eq!(h.last_status(), CONNECTED);
}

// --- publish ---

#[test]
fn offline_publishes_wait_and_are_sent_after_subscriptions_on_connect() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    let first = publish(&mut h, 1);
    let second = publish(&mut h, 2);
    assert!(h.sent.is_empty());
    h.open();
    let sent = h.take_sent();
    assert_eq!(sent[0]["type"], "subscribe");
    assert_eq!((sent[1]["id"].as_str(), sent[2]["id"].as_str()), (Some(first.0.as_str()), Some(second.0.as_str())));
    assert_eq!(sent[1]["data"]["payload"], json!({"n": 1}));
}

#[test]
fn unacked_publishes_are_retransmitted_after_reconnect_and_acked_once() {
    let mut h = Harness::new(config());
    h.open();
    let id = publish(&mut h, 1);
    assert_eq!(h.take_sent().len(), 1);
    h.server_close(Some(1006), "");
    h.connect();
    let resent = h.take_sent();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0]["id"], id.0.as_str(), "same id, so the server can drop a duplicate");
    h.recv_json(json!({"type": "ack", "id": id.0, "seq": 7, "duplicate": true}));
    h.recv_json(json!({"type": "ack", "id": id.0, "seq": 7}));
    let acks: Vec<_> = h.events.iter().filter(|e| matches!(e, SessionEvent::PublishAcked { .. })).collect();
    assert_eq!(acks.len(), 1);
    assert!(matches!(acks[0], SessionEvent::PublishAcked { seq: Some(7), duplicate: true, .. }));
    assert_eq!(h.session.pending_publishes(), 0);
    h.server_close(Some(1006), "");
    h.connect();
    assert!(h.take_sent().is_empty(), "acked publishes are not sent again");
}

#[test]
fn publish_ids_are_unique() {
    let mut h = Harness::new(config());
    let ids: std::collections::BTreeSet<_> = (0..100).map(|n| publish(&mut h, n)).collect();
    assert_eq!(ids.len(), 100);
}

#[test]
fn a_publish_without_ack_fails_after_the_timeout() {
    let mut h = Harness::new(config());
    h.open();
    let id = publish(&mut h, 1);
    h.advance(SECOND * 29);
    assert_eq!(h.session.pending_publishes(), 1);
    h.advance(SECOND);
    assert!(h.events.iter().any(|e| matches!(e,
        SessionEvent::PublishFailed { id: failed, error: PublishFailure::Timeout { .. } } if *failed == id)));
    assert_eq!(h.session.pending_publishes(), 0);
}

#[test]
fn the_offline_queue_is_bounded() {
    let mut config = config();
    config.max_pending_publishes = 3;
    let mut h = Harness::new(config);
    for n in 0..3 {
        publish(&mut h, n);
    }
    let err = h
        .session
        .publish(h.now, "a:1".parse().unwrap(), EventKind::Added, data(9), PublishOptions::default())
        .unwrap_err();
    assert!(matches!(err, PublishError::QueueFull { capacity: 3 }));
    assert!(err.to_string().contains("raise max_pending_publishes"));
}

#[test]
fn invalid_publishes_are_refused_with_the_reason() {
    let mut h = Harness::new(config());
    let mut bad = data(1);
    bad.timestamp = "yesterday".into();
    let err =
        h.session.publish(h.now, "a:1".parse().unwrap(), EventKind::Added, bad, PublishOptions::default()).unwrap_err();
    assert!(err.to_string().contains("data.timestamp \"yesterday\" is not RFC 3339"), "{err}");
    let err = h
        .session
        .publish(h.now, "a:*".parse().unwrap(), EventKind::Added, data(1), PublishOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("wildcard"), "{err}");
    let mut huge = data(1);
    huge.payload = Payload::from_value(&"x".repeat(60_000)).unwrap();
    let err = h
        .session
        .publish(h.now, "a:1".parse().unwrap(), EventKind::Added, huge, PublishOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("over the 49152-byte limit"), "{err}");
    assert_eq!(h.session.pending_publishes(), 0);
}

#[test]
fn a_rejected_publish_fails_with_the_server_error() {
    let mut h = Harness::new(config());
    h.open();
    let id = publish(&mut h, 1);
    h.recv_json(json!({"type": "error", "code": 4003, "message": "publish not allowed", "id": id.0}));
    assert!(h.events.iter().any(|e| matches!(e,
        SessionEvent::PublishFailed { error: PublishFailure::Rejected { message, .. }, .. } if message == "publish not allowed")));
}

// --- close, status, raw ---

#[test]
fn close_is_clean_and_final() {
    let mut h = Harness::new(config());
    h.open();
    let id = publish(&mut h, 1);
    h.session.close(h.now);
    h.drain();
    assert_eq!(h.closes[0].1, 1000);
    assert_eq!(h.last_status(), Status::Disconnected { reason: DisconnectReason::Closed });
    assert!(h.events.iter().any(|e| matches!(e,
        SessionEvent::PublishFailed { id: failed, error: PublishFailure::Stopped(DisconnectReason::Closed) } if *failed == id)));
    assert_eq!(h.session.poll_timeout(), None);
    assert!(h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).is_err());
    assert!(matches!(
        h.session.publish(h.now, "a:1".parse().unwrap(), EventKind::Added, data(1), PublishOptions::default()),
        Err(PublishError::Stopped(DisconnectReason::Closed))
    ));
    h.advance(SECOND * 3600);
    assert_eq!(h.connects.len(), 1);
}

#[test]
fn status_changes_are_observable_in_order() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(
        h.statuses(),
        [Status::Connecting, CONNECTED, Status::Reconnecting { attempt: 1, next_in: SECOND }, CONNECTED]
    );
}

#[test]
fn foreign_json_is_raw_and_broken_frames_are_reported_without_disconnecting() {
    let mut h = Harness::new(config());
    h.open();
    h.recv(r#"{"type":"notification","message":"hi"}"#);
    h.recv("not json at all");
    h.recv(r#"{"type":"ack"}"#);
    assert!(matches!(&h.events[2], SessionEvent::Raw(text) if text.contains("notification")));
    let malformed: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Malformed(err) => Some(err.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(malformed.len(), 2);
    assert!(malformed[1].contains("missing field `id`"));
    assert_eq!(h.last_status(), CONNECTED);
}

#[test]
fn the_token_is_refreshed_on_the_live_connection_before_it_expires() {
    let mut h = Harness::new(config());
    h.open();
    h.recv_json(json!({"type": "connected", "user_id": "u1", "expires_in": 100}));
    h.take_sent();
    h.token = Some(Ok("tok-2".into()));
    for _ in 0..3 {
        h.advance(SECOND * 20);
        h.recv_json(json!({"type": "ping"}));
    }
    h.advance(SECOND * 19);
    assert_eq!(h.token_requests, [TokenReason::Connect]);
    h.advance(SECOND);
    assert_eq!(h.token_requests, [TokenReason::Connect, TokenReason::Refresh]);
    assert!(h.take_sent().contains(&json!({"type": "refresh", "token": "tok-2"})));
    assert_eq!(h.connects.len(), 1, "no reconnect needed");
}

#[test]
fn a_token_lifetime_of_u64_max_seconds_neither_panics_nor_asks_for_a_refresh() {
    let mut h = Harness::new(config());
    h.open();
    h.recv_json(json!({"type": "connected", "user_id": "u1", "expires_in": u64::MAX}));
    for _ in 0..10 {
        h.advance(SECOND * 20);
        h.recv_json(json!({"type": "ping"}));
    }
    assert_eq!(h.token_requests, [TokenReason::Connect]);
    assert_eq!(h.last_status(), CONNECTED);
}

// --- environment signals ---

#[test]
fn wake_skips_the_backoff_wait() {
    let mut h = Harness::new(no_jitter());
    for _ in 0..4 {
        h.server_close(None, "offline");
        h.fire_next_timer();
    }
    h.server_close(None, "offline");
    assert_eq!(h.last_status(), Status::Reconnecting { attempt: 5, next_in: SECOND * 16 });
    let before = h.connects.len();
    h.session.wake(h.now);
    h.drain();
    assert_eq!(h.connects.len(), before + 1, "the browser said online: try now, not in 16 s");
}

#[test]
fn wake_probes_an_open_connection_and_a_silent_one_is_dead_within_the_timeout() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.take_sent();
    h.advance(SECOND * 5);
    h.session.wake(h.now);
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "ping"})], "ping at once, not after 30 s of quiet");
    h.session.wake(h.now);
    h.drain();
    assert!(h.take_sent().is_empty(), "one probe at a time");
    h.advance(SECOND * 10);
    assert_eq!(h.closes.last().map(|c| c.2.as_str()), Some("heartbeat timeout"));
}

#[test]
fn suspend_closes_without_stopping_and_wake_reconnects_and_recovers() {
    let mut h = Harness::new(no_jitter());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(event("a:1", 3));
    h.take_sent();
    h.session.suspend(h.now);
    h.drain();
    assert_eq!(h.closes.last().map(|c| c.1), Some(1000));
    assert!(!h.session.is_stopped());
    h.advance(SECOND * 3600);
    assert_eq!(h.connects.len(), 1, "no attempt while suspended");
    h.session.wake(h.now);
    h.drain();
    h.open();
    let subscribe = h.take_sent().into_iter().find(|m| m["type"] == "subscribe").unwrap();
    assert_eq!(subscribe["since"], json!({"a:1": 3}));
}

#[test]
fn a_timer_that_fires_long_after_its_deadline_checks_the_open_connection_at_once() {
    let mut config = no_jitter();
    config.heartbeat.interval = SECOND * 600;
    let mut h = Harness::new(config);
    h.open();
    publish(&mut h, 1);
    h.take_sent();
    // The publish timeout (30 s) is the next timer; the laptop lid closes for a minute before it.
    h.oversleep(SECOND * 60);
    assert_eq!(h.take_sent(), [json!({"type": "ping"})], "ping now, not 600 s after the last frame");
    h.advance(SECOND * 10);
    assert_eq!(h.closes.last().map(|c| c.2.as_str()), Some("heartbeat timeout"), "the socket died in the sleep");
}

#[test]
fn after_sleeping_through_a_dead_connection_the_session_reconnects_without_a_backoff_wait() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.fire_next_timer(); // the server never greets: a plain one
    h.fire_next_timer();
    assert_eq!(h.take_sent(), [json!({"type": "ping"})]);
    // The pong's deadline passes while the machine sleeps.
    h.oversleep(SECOND * 600);
    assert_eq!(h.closes.last().map(|c| c.2.as_str()), Some("heartbeat timeout"));
    assert_eq!(h.connects.len(), 2, "a new attempt at once, not after the 1 s backoff");
    assert_eq!(h.connects[1].0, h.now);
}

#[test]
fn a_timer_a_little_late_is_not_taken_for_sleep() {
    let mut config = no_jitter();
    config.heartbeat.interval = SECOND * 60;
    let mut h = Harness::new(config);
    h.open();
    publish(&mut h, 1);
    h.take_sent();
    h.oversleep(herald_core::SLEEP_THRESHOLD - Duration::from_millis(1));
    assert!(h.take_sent().is_empty(), "a busy event loop is not a sleeping machine");
    h.server_close(None, "refused");
    h.oversleep(herald_core::SLEEP_THRESHOLD / 2);
    assert_eq!(h.connects.len(), 2);
}

#[test]
fn a_timer_throttled_in_a_hidden_tab_is_not_taken_for_sleep() {
    let mut config = no_jitter();
    config.heartbeat.interval = SECOND * 600;
    let mut h = Harness::new(config);
    h.open();
    publish(&mut h, 1);
    h.take_sent();
    h.session.set_timers_may_lag(true);
    // The publish timeout (30 s) fires a minute late, as a hidden tab's timers do.
    h.oversleep(SECOND * 60);
    assert!(h.take_sent().is_empty(), "no ping: the connection was not asleep, only its timers were throttled");
    assert_eq!(h.closes.len(), 0);
    // The tab becomes visible: the driver clears the flag and wakes the session, which checks the link.
    h.session.set_timers_may_lag(false);
    h.session.wake(h.now);
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "ping"})]);
}

#[test]
fn a_suspended_session_stays_suspended_however_late_its_timers_fire() {
    let mut h = Harness::new(no_jitter());
    h.open();
    publish(&mut h, 1);
    h.session.suspend(h.now);
    h.drain();
    h.oversleep(SECOND * 3600);
    assert_eq!(h.connects.len(), 1, "only wake() ends a suspend");
}

/// A session that falls back to Server-Sent Events after 2 failed WebSocket attempts.
fn with_fallback() -> Harness {
    let mut config = no_jitter();
    let mut fallback = FallbackConfig::default();
    fallback.after_failures = 2;
    config.fallback = Some(fallback);
    let mut h = Harness::new(config);
    h.session.subscribe(h.now, "gift-list:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h
}

/// Fails WebSocket attempts until the session opens an event stream, and opens it.
fn fall_back(h: &mut Harness) {
    for _ in 0..2 {
        while h.current.is_none() {
            h.fire_next_timer();
        }
        assert_eq!(h.transports.last(), Some(&Transport::WebSocket));
        h.server_close(None, "403 from a proxy");
    }
    while h.current.is_none() {
        h.fire_next_timer();
    }
    assert_eq!(h.transports.last(), Some(&Transport::ServerSentEvents));
    h.open();
}

#[test]
fn without_fallback_the_session_only_ever_opens_websockets() {
    let mut h = Harness::new(no_jitter());
    for _ in 0..6 {
        while h.current.is_none() {
            h.fire_next_timer();
        }
        h.server_close(None, "blocked");
    }
    assert!(h.transports.iter().all(|t| *t == Transport::WebSocket));
}

#[test]
fn after_enough_failed_websockets_the_session_opens_an_event_stream() {
    let mut h = with_fallback();
    fall_back(&mut h);
    let (_, url) = h.connects.last().unwrap();
    assert_eq!(url, "http://127.0.0.1:9/sse?mode=frames&token=tok-1");
    assert_eq!(h.last_status(), ON_STREAM);
    // The stream is a whole connection: subscriptions go out as over a WebSocket.
    assert_eq!(h.take_sent(), [json!({"type":"subscribe","topics":["gift-list:1"]})]);
    h.recv_json(event("gift-list:1", 1));
    assert_eq!(delivered_seqs(&h.take_events()), [1]);
}

#[test]
fn on_the_stream_a_websocket_is_tried_at_once_and_then_every_upgrade_interval() {
    let mut h = with_fallback();
    fall_back(&mut h);
    h.advance(Duration::ZERO);
    assert!(h.probe.is_some(), "a WebSocket is tried as soon as the stream opens");
    assert_eq!(h.transports.last(), Some(&Transport::WebSocket));
    h.fail_probe();
    // The server's pings keep the stream alive meanwhile.
    for _ in 0..3 {
        h.advance(19 * SECOND);
        h.recv_json(json!({"type":"ping"}));
    }
    h.advance(2 * SECOND);
    assert!(h.probe.is_none(), "no new attempt before the interval");
    h.advance(SECOND);
    assert!(h.probe.is_some(), "tried again after the interval");
    assert_eq!(h.last_status(), ON_STREAM, "the stream stays up meanwhile");
}

#[test]
fn a_websocket_that_opens_takes_over_and_recovers_from_the_last_seq() {
    let mut h = with_fallback();
    fall_back(&mut h);
    h.recv_json(json!({"type":"connected","epoch":"e1"}));
    h.recv_json(event("gift-list:1", 7));
    let stream = h.current.unwrap();
    h.advance(Duration::ZERO);
    h.take_sent();
    h.take_events();
    h.open_probe();
    assert!(h.closes.iter().any(|(id, _, reason)| *id == stream && reason.contains("upgraded")), "{:?}", h.closes);
    assert_eq!(h.last_status(), CONNECTED);
    assert_eq!(
        h.take_sent(),
        [json!({"type":"subscribe","topics":["gift-list:1"],"since":{"gift-list:1":7},"epoch":"e1"})]
    );
    h.recv_json(event("gift-list:1", 7));
    h.recv_json(event("gift-list:1", 8));
    h.recv_json(json!({"type":"subscribed","topics":["gift-list:1"],"recovered":true}));
    assert_eq!(delivered_seqs(&h.events), [8], "the event seen on the stream is not delivered twice");
    assert!(resyncs(&h.events).is_empty());
}

#[test]
fn a_websocket_try_that_hangs_is_abandoned_after_the_connect_timeout() {
    let mut h = with_fallback();
    fall_back(&mut h);
    h.advance(Duration::ZERO);
    let probe = h.probe.unwrap();
    h.advance(10 * SECOND);
    assert!(h.probe.is_none());
    assert!(h.closes.iter().any(|(id, _, _)| *id == probe));
    assert_eq!(h.last_status(), ON_STREAM);
}

#[test]
fn losing_the_stream_reconnects_on_a_stream_and_close_closes_both_transports() {
    let mut h = with_fallback();
    fall_back(&mut h);
    h.server_close(None, "stream ended");
    while h.current.is_none() {
        h.fire_next_timer();
    }
    assert_eq!(h.transports.last(), Some(&Transport::ServerSentEvents), "WebSocket is still blocked");
    h.open();
    h.advance(Duration::ZERO);
    let (stream, probe) = (h.current.unwrap(), h.probe.unwrap());
    h.session.close(h.now);
    h.drain();
    let closed: Vec<_> = h.closes.iter().map(|(id, _, _)| *id).collect();
    assert!(closed.contains(&stream) && closed.contains(&probe), "{closed:?}");
}

#[test]
fn a_websocket_that_opens_resets_the_count_of_failures() {
    let mut h = with_fallback();
    while h.current.is_none() {
        h.fire_next_timer();
    }
    h.server_close(None, "refused");
    h.connect();
    h.server_close(Some(1006), "");
    for _ in 0..1 {
        while h.current.is_none() {
            h.fire_next_timer();
        }
        h.server_close(None, "refused");
    }
    while h.current.is_none() {
        h.fire_next_timer();
    }
    assert_eq!(h.transports.last(), Some(&Transport::WebSocket), "one failure since the last open is not enough");
}
