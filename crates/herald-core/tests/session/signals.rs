//! Environment signals: wake, suspend, and timers that fire late (sleep, hidden tabs).

use super::*;

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
