//! The Server-Sent Events fallback: when it opens, how a WebSocket takes over again.

use super::*;

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
