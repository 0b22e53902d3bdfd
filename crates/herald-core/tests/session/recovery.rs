//! Subscriptions and recovery: resubscribing with positions, duplicates, gaps, epochs, wildcards, refusals.

use super::*;

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

/// An event of `topic` at `seq`, `wildcard_seq` among its resource's.
fn stamped(topic: &str, seq: u64, wildcard_seq: u64) -> serde_json::Value {
    let mut event = event(topic, seq);
    event["wildcard_seq"] = json!(wildcard_seq);
    event
}

#[test]
fn a_wildcard_resumes_from_the_last_wildcard_seq_it_saw() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "gift-list:*".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(json!({"type": "subscribed", "topics": ["gift-list:*"], "last_seq": {"gift-list:*": 10}}));
    h.recv_json(stamped("gift-list:1", 3, 12));
    h.recv_json(stamped("gift-list:2", 8, 15));
    // Another resource's numbers do not move it.
    h.recv_json(stamped("user:1", 1, 40));
    h.take_sent();
    h.server_close(Some(1006), "");
    h.connect();
    assert!(resyncs(&h.events).is_empty(), "{:?}", h.events);
    assert_eq!(
        h.take_sent(),
        [json!({"type": "subscribe", "topics": ["gift-list:*"], "since": {"gift-list:*": 15}, "epoch": "E1"})]
    );
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    // The replay overlaps what was seen: the duplicate is dropped.
    h.recv_json(stamped("gift-list:2", 8, 15));
    h.recv_json(stamped("gift-list:3", 1, 16));
    h.recv_json(
        json!({"type": "subscribed", "topics": ["gift-list:*"], "recovered": true, "last_seq": {"gift-list:*": 16}}),
    );
    assert!(resyncs(&h.events).is_empty(), "{:?}", h.events);
    assert_eq!(delivered_seqs(&h.events), [3, 8, 1]);
    assert_eq!(h.session.position("gift-list:*"), Some(16));
}

#[test]
fn a_wildcard_the_server_cannot_replay_resyncs() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "gift-list:*".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(json!({"type": "subscribed", "topics": ["gift-list:*"], "last_seq": {"gift-list:*": 10}}));
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(
        json!({"type": "subscribed", "topics": ["gift-list:*"], "recovered": false, "last_seq": {"gift-list:*": 90}}),
    );
    assert_eq!(resyncs(&h.events), [("gift-list:*".into(), ResyncReason::NotRecovered)]);
    assert_eq!(h.session.position("gift-list:*"), Some(90));
}

#[test]
fn wildcard_subscriptions_without_a_position_resync_after_a_reconnect() {
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "gift-list:*".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.recv_json(json!({"type": "subscribed", "topics": ["gift-list:*"]}));
    h.server_close(Some(1006), "");
    h.connect();
    assert_eq!(resyncs(&h.events), [("gift-list:*".into(), ResyncReason::Wildcard)]);
}

#[test]
fn a_subscription_lost_before_its_answer_is_not_resynced_and_one_from_a_position_keeps_it() {
    // A subscribe swallowed by a half-open connection: the application was
    // told nothing of the topic yet, so there is nothing to resync.
    let mut h = Harness::new(config());
    h.session.subscribe(h.now, "a:1".parse().unwrap(), SubscribeOptions::default()).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.server_close(Some(1006), "");
    h.connect();
    h.recv_json(json!({"type": "subscribed", "topics": ["a:1"], "last_seq": {"a:1": 4}}));
    assert!(resyncs(&h.events).is_empty(), "{:?}", h.events);
    assert!(h.events.iter().any(|e| matches!(e, SessionEvent::Live { topic, .. } if topic.as_str() == "a:1")));

    // One from a REST position sends that position again on the next connection.
    let mut h = Harness::new(config());
    let from = herald_core::protocol::Position::new("E1", 7);
    h.session.subscribe(h.now, "a:2".parse().unwrap(), SubscribeOptions::default().from(from)).unwrap();
    h.open();
    h.recv_json(json!({"type": "connected", "epoch": "E1"}));
    h.take_sent();
    h.server_close(Some(1006), "");
    h.connect();
    let resent = h.take_sent();
    assert!(
        resent.iter().any(|m| m["type"] == "subscribe" && m["since"]["a:2"] == 7 && m["epoch"] == "E1"),
        "{resent:?}"
    );
    h.recv_json(json!({"type": "subscribed", "topics": ["a:2"], "recovered": true, "last_seq": {"a:2": 9}}));
    assert!(resyncs(&h.events).is_empty(), "recovered from the REST position: {:?}", h.events);
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

#[test]
fn presence_metadata_goes_with_the_subscription_and_a_change_is_sent_to_servers_that_take_it() {
    let name = |name: &str| Payload::from_value(&json!({ "name": name })).unwrap();
    let mut h = Harness::new(config());
    let options = SubscribeOptions::default().presence_meta(name("Ann"));
    h.session.subscribe(h.now, "doc:7".parse().unwrap(), options).unwrap();
    h.session.subscribe(h.now, "doc:8".parse().unwrap(), SubscribeOptions::default().presence()).unwrap();
    h.open();
    assert_eq!(
        h.take_sent(),
        [
            json!({"type": "subscribe", "topics": ["doc:8"], "presence": true}),
            json!({"type": "subscribe", "topics": ["doc:7"], "presence": true, "meta": {"name": "Ann"}}),
        ],
        "one message per metadata"
    );
    h.recv_json(json!({"type": "connected", "epoch": "E1", "features": ["recovery", "presence", "presence_meta"]}));
    h.session.set_presence(h.now, "doc:7", name("Ann B.")).unwrap();
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "set_presence", "topic": "doc:7", "meta": {"name": "Ann B."}})]);

    // The latest metadata is the subscription's on the next connection.
    h.server_close(Some(1006), "");
    h.connect();
    let sent = h.take_sent();
    assert!(
        sent.contains(&json!({"type": "subscribe", "topics": ["doc:7"], "presence": true, "meta": {"name": "Ann B."}})),
        "{sent:?}"
    );

    // A server that does not announce metadata is not sent what it cannot read.
    h.recv_json(json!({"type": "connected", "epoch": "E1", "features": ["recovery", "presence"]}));
    h.session.set_presence(h.now, "doc:7", name("Ann C.")).unwrap();
    h.drain();
    assert_eq!(h.take_sent(), Vec::<serde_json::Value>::new());

    let refused = h.session.set_presence(h.now, "doc:9", name("Ann"));
    assert!(matches!(refused, Err(SubscribeError::NoPresence { .. })), "{refused:?}");
    let too_big = Payload::from_value(&json!({ "bio": "x".repeat(600) })).unwrap();
    let refused = h.session.set_presence(h.now, "doc:7", too_big).unwrap_err();
    assert!(refused.to_string().contains("the limit is 512"), "{refused}");
    let not_an_object = Payload::from_value(&json!("Ann")).unwrap();
    assert!(
        h.session
            .subscribe(h.now, "doc:1".parse().unwrap(), SubscribeOptions::default().presence_meta(not_an_object))
            .is_err()
    );
}
