//! Publishing: the offline queue, retransmission after reconnects, acks, timeouts and refusals.

use super::*;

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
fn a_publish_id_given_by_the_application_is_the_one_sent_and_acked() {
    let mut h = Harness::new(config());
    h.open();
    let options = PublishOptions::default().id("tab-7-1");
    let id = h.session.publish(h.now, "gift-list:1".parse().unwrap(), EventKind::Updated, data(1), options).unwrap();
    h.drain();
    assert_eq!(id.0, "tab-7-1");
    assert_eq!(h.take_sent()[0]["id"], "tab-7-1");
    h.recv_json(json!({"type": "ack", "id": "tab-7-1", "seq": 3, "duplicate": true}));
    assert!(h.take_events().iter().any(|e| matches!(e, SessionEvent::PublishAcked { id, .. } if id.0 == "tab-7-1")));
    let too_long = PublishOptions::default().id("x".repeat(200));
    let refused = h.session.publish(h.now, "gift-list:1".parse().unwrap(), EventKind::Updated, data(2), too_long);
    assert!(refused.unwrap_err().to_string().contains("id must be 1 to 128 bytes"));
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
