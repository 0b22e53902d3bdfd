//! Hooks for tests and demos that imitate failures: a server paused,
//! restarted with or without its history, connections dropped. Behind the
//! `testing` feature: a production server has no use for them.

use std::sync::Arc;

use tracing::info;

use crate::{Herald, ServerError, ServerHandle, app::App, hub::Hub};

/// What a restart does with the event history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Epoch {
    /// Keep the history and the epoch: reconnecting clients recover what they missed.
    Same,
    /// Drop the history and pick a new epoch: reconnecting clients must resync.
    New,
}

impl ServerHandle {
    /// Closes every open connection with `code` while the server keeps
    /// running: [`close::ABNORMAL`](herald_protocol::close::ABNORMAL) (1006)
    /// drops sockets without a close frame, [`close::GOING_AWAY`](herald_protocol::close::GOING_AWAY)
    /// adds a reconnect hint, [`close::TOO_SLOW`](herald_protocol::close::TOO_SLOW)
    /// imitates a slow-consumer drop.
    pub fn disconnect_all(&self, code: u16) {
        self.herald.app.hub.kill_all(code);
    }

    /// Shuts down gracefully and starts again on the same address, keeping or
    /// dropping the history: [`pause`](Self::pause) then [`resume`](Self::resume).
    /// A node of a cluster keeps the cluster's history: [`Epoch::New`] is a
    /// [`ServerError::Config`] there.
    pub async fn restart(&mut self, epoch: Epoch) -> Result<(), ServerError> {
        self.pause().await;
        self.resume(epoch).await
    }

    /// Takes the server down as a graceful shutdown would (clients get 1001
    /// and a reconnect hint, the port stops listening) but keeps its state,
    /// so a test can publish during the outage and then [`resume`](Self::resume).
    /// Does nothing if already paused.
    pub async fn pause(&mut self) {
        self.stop().await;
    }

    /// Listens again on the same address after [`pause`](Self::pause),
    /// keeping or dropping the history. Does nothing if running.
    pub async fn resume(&mut self, epoch: Epoch) -> Result<(), ServerError> {
        if self.is_listening() {
            return Ok(());
        }
        let app = &self.herald.app;
        if epoch == Epoch::New && app.cluster.is_some() {
            return Err(ServerError::Config(
                "a node of a cluster cannot drop the history alone: it belongs to the cluster and changes when Redis restarts".into(),
            ));
        }
        if app.durable.is_some() {
            return Err(ServerError::Config(
                "a server with a data directory let go of its store when paused: build a new one on the same directory, as a restarted process would".into(),
            ));
        }
        if epoch == Epoch::New {
            let mut config = app.config.clone();
            // Even a configured epoch must change: the history is gone.
            config.epoch = None;
            let hub = Arc::new(Hub::new(&config));
            let app = App::new(app.config.clone(), app.auth.clone(), hub, None, None);
            self.herald = Herald { app: Arc::new(app) };
        }
        let listener = self.rebind().await?;
        info!(addr = %self.local_addr(), epoch = %self.epoch(), "herald restarted");
        self.serve(listener);
        Ok(())
    }
}
