//! Heartbeats: pings after quiet, half-open detection, answering the server's pings.

use super::*;

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
