//! Connecting and authentication: tokens in the query or a first message, token providers, connect timeouts.

use super::*;

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
