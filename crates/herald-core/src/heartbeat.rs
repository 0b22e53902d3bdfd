//! Liveness: ping after a quiet interval, declare the connection dead when
//! nothing arrives within the timeout after it.

use web_time::Instant;

use crate::HeartbeatConfig;

#[derive(Debug)]
pub(crate) struct Heartbeat {
    config: HeartbeatConfig,
    last_frame: Instant,
    ping_sent: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    Idle,
    SendPing,
    Dead,
}

impl Heartbeat {
    pub(crate) fn new(config: HeartbeatConfig, now: Instant) -> Self {
        Self { config, last_frame: now, ping_sent: None }
    }

    /// Any frame from the server, not only a pong, proves the connection lives.
    pub(crate) fn on_frame(&mut self, now: Instant) {
        self.last_frame = now;
        self.ping_sent = None;
    }

    pub(crate) fn deadline(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + self.config.timeout,
            None => self.last_frame + self.config.interval,
        }
    }

    /// Pings now instead of waiting for the quiet interval; `false` if a
    /// ping is already out.
    pub(crate) fn probe(&mut self, now: Instant) -> bool {
        self.ping_sent.is_none() && {
            self.ping_sent = Some(now);
            true
        }
    }

    pub(crate) fn poll(&mut self, now: Instant) -> Beat {
        if now < self.deadline() {
            Beat::Idle
        } else if self.ping_sent.is_some() {
            Beat::Dead
        } else {
            self.ping_sent = Some(now);
            Beat::SendPing
        }
    }
}
