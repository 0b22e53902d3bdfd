//! Close, status and raw frames: a clean final close, observable statuses, foreign JSON, token refresh.

use super::*;

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

#[test]
fn a_token_handed_in_unasked_is_a_refresh_while_open_and_ignored_between_connections() {
    let mut h = Harness::new(no_jitter());
    h.open();
    h.take_sent();
    h.session.handle_token(h.now, Ok("tok-2".into()));
    h.drain();
    assert_eq!(h.take_sent(), [json!({"type": "refresh", "token": "tok-2"})]);

    h.server_close(Some(1006), "");
    h.session.handle_token(h.now, Ok("tok-3".into()));
    h.drain();
    assert_eq!(h.connects.len(), 1, "a token between connections opens nothing");
    assert_eq!(h.token_requests, [TokenReason::Connect], "and asks for nothing");
    h.connect();
    assert_eq!(h.token_requests, [TokenReason::Connect, TokenReason::Connect], "the next connection asks the driver");
}
