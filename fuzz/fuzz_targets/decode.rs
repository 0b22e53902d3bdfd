//! Any frame, decoded by either side and fed to a live session, never panics.
#![no_main]

use herald_core::{AuthMode, Output, Session, SessionConfig, Instant};
use herald_protocol::{ClientMessage, ServerMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(message) = ServerMessage::decode(text) {
        // Whatever decodes must encode again.
        let _ = ServerMessage::decode(&message.encode());
    }
    if let Ok(message) = ClientMessage::decode(text) {
        assert!(ClientMessage::decode(&message.encode()).is_ok(), "re-encoding a valid message broke it");
    }
    let mut config = SessionConfig::new("ws://127.0.0.1:9/ws");
    config.auth = AuthMode::None;
    let now = Instant::now();
    let mut session = Session::new(config, now);
    session.handle_timeout(now);
    let id = std::iter::from_fn(|| session.poll_output()).find_map(|o| match o {
        Output::Connect { id, .. } => Some(id),
        _ => None,
    });
    let id = id.expect("a session without auth connects at once");
    session.handle_open(now, id);
    for line in text.split('\n') {
        session.handle_frame(now, id, line);
    }
    while session.poll_output().is_some() {}
});
