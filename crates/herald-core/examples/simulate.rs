//! Drives a session through a server restart with a scripted server and a
//! simulated clock, printing what a driver would do: connect, subscribe, lose
//! the connection, back off, reconnect, and recover the missed events.
//!
//! Run with: `cargo run -p herald-core --example simulate`

use std::time::Duration;

use herald_core::{ConnectionId, Instant, Output, Session, SessionConfig, SessionEvent, SubscribeOptions};

const TOPIC: &str = "gift-list:family-123";

/// The simulated world: the clock, the session, and the server's side.
struct Sim {
    start: Instant,
    now: Instant,
    session: Session,
    connections: u32,
    open: Option<ConnectionId>,
}

impl Sim {
    fn log(&self, line: impl AsRef<str>) {
        println!("{:6.2}s  {}", (self.now - self.start).as_secs_f64(), line.as_ref());
    }

    /// The contract: after every input, drain every output.
    fn drain(&mut self) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::NeedToken(reason) => {
                    self.log(format!("token provider asked ({reason:?})"));
                    self.session.handle_token(self.now, Ok("demo-token".into()));
                }
                Output::Connect { id, url, .. } => {
                    self.connections += 1;
                    self.log(format!("driver: open {id} to {url}"));
                    if self.connections == 2 {
                        self.log("server: (still restarting) connection refused");
                        self.session.handle_close(self.now, id, None, "connection refused");
                    } else {
                        self.open = Some(id);
                        self.session.handle_open(self.now, id);
                    }
                }
                Output::Send { text, .. } => self.log(format!("driver: send {text}")),
                Output::Close { id, code, reason } => self.log(format!("driver: close {id} ({code} {reason})")),
                Output::Event(SessionEvent::Event(e)) => {
                    self.log(format!("app: {} {} seq {}", e.event, e.data.entity_id, e.seq.unwrap_or(0)))
                }
                Output::Event(SessionEvent::Status(status)) => self.log(format!("app: status {status}")),
                Output::Event(other) => self.log(format!("app: {other:?}")),
                _ => {}
            }
        }
    }

    fn server_sends(&mut self, frame: &str) {
        let id = self.open.expect("an open connection");
        self.session.handle_frame(self.now, id, frame);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.session.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.session.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }
}

fn event(seq: u64) -> String {
    format!(
        r#"{{"topic":"{TOPIC}","event":"UPDATED","data":{{"entity_id":"gift-{seq}","payload":{{"bought":true}},"timestamp":"2026-11-25T10:00:00Z"}},"seq":{seq}}}"#
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = SessionConfig::new("ws://127.0.0.1:8080/ws");
    config.seed = 7;
    let now = Instant::now();
    let mut sim = Sim { start: now, now, session: Session::new(config, now), connections: 0, open: None };
    sim.session.subscribe(now, TOPIC.parse()?, SubscribeOptions::default())?;
    sim.advance(Duration::ZERO);

    sim.server_sends(r#"{"type":"connected","user_id":"demo","epoch":"E1"}"#);
    sim.server_sends(&format!(r#"{{"type":"subscribed","topics":["{TOPIC}"],"last_seq":{{"{TOPIC}":0}}}}"#));
    for seq in 1..=2 {
        sim.advance(Duration::from_millis(500));
        sim.server_sends(&event(seq));
    }
    sim.advance(Duration::from_secs(1));
    sim.log("server: restarting; it advises a 400 ms wait; events 3 and 4 are published meanwhile");
    let id = sim.open.take().expect("connected");
    sim.session.handle_close(sim.now, id, Some(1001), "server restart; retry_after_ms=400");
    sim.drain();
    while sim.open.is_none() {
        sim.advance(Duration::from_millis(100));
    }
    sim.server_sends(r#"{"type":"connected","user_id":"demo","epoch":"E1"}"#);
    sim.log("server: replays what the client missed, after seq 2");
    for seq in 3..=4 {
        sim.server_sends(&event(seq));
    }
    sim.server_sends(&format!(
        r#"{{"type":"subscribed","topics":["{TOPIC}"],"recovered":true,"last_seq":{{"{TOPIC}":4}}}}"#
    ));
    sim.advance(Duration::from_millis(300));
    sim.server_sends(&event(5));
    sim.session.close(sim.now);
    sim.drain();
    Ok(())
}
