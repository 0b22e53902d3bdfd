//! Reconnect delays: exponential growth, jitter, resets after a healthy connection, the attempt limit.

use super::*;

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
