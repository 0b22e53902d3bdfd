//! What each close code does: advised delays, unauthorized and forbidden, late inputs about old transports.

use super::*;

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
