//! Configuring a client.

use std::{
    fmt,
    future::Future,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use herald_core::{AuthMode, BackoffConfig, HeartbeatConfig, Session, SessionConfig, Status, TokenReason};
use herald_protocol::Event;
use tokio::sync::{mpsc, watch};

use crate::{
    Client, Error, Result,
    driver::{Callbacks, Driver, TokenProvider},
};

/// Requests from handles waiting for the background task; a sender waits
/// while it is full instead of the queue growing.
const COMMAND_QUEUE: usize = 256;

/// Options for a [`Client`]; every one has a default.
///
/// ```no_run
/// # fn run() -> Result<(), herald_client::Error> {
/// use std::time::Duration;
/// use herald_client::{AuthMode, Client};
///
/// let client = Client::builder("wss://realtime.example.com/ws")
///     .token_provider(|_reason| async { Ok::<_, std::io::Error>(std::env::var("HERALD_TOKEN").unwrap_or_default()) })
///     .auth_mode(AuthMode::FirstMessage)
///     .heartbeat(Duration::from_secs(15), Duration::from_secs(5))
///     .on_status(|status| eprintln!("herald: {status}"))
///     .connect()?;
/// # Ok(()) }
/// ```
pub struct ClientBuilder {
    config: SessionConfig,
    token: Option<TokenProvider>,
    auth: Option<AuthMode>,
    capacity: usize,
    callbacks: Callbacks,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("config", &self.config)
            .field("token", &self.token.as_ref().map(|_| "<provider>"))
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            config: SessionConfig::new(url),
            token: None,
            auth: None,
            capacity: 1024,
            callbacks: Callbacks::default(),
            tls: None,
        }
    }

    /// A fixed token. For tokens that expire, use [`token_provider`](Self::token_provider).
    pub fn token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token_provider(move |_| std::future::ready(Ok::<_, std::convert::Infallible>(token.clone())))
    }

    /// Called for a token before every connection attempt, after a 4001
    /// (`TokenReason::Unauthorized`: return a fresh one), and before the
    /// current one expires (`TokenReason::Refresh`). An error counts as a
    /// failed connection attempt.
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn(TokenReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display,
    {
        self.token = Some(Arc::new(move |reason| {
            let token = provider(reason);
            Box::pin(async move { token.await.map_err(|e| e.to_string()) })
        }));
        self
    }

    /// How the token reaches the server. Default [`AuthMode::Query`]
    /// (`?token=`, what seed-style servers expect); [`AuthMode::FirstMessage`]
    /// keeps it out of URLs and logs, and is recommended with Herald's server.
    pub fn auth_mode(mut self, mode: AuthMode) -> Self {
        self.auth = Some(mode);
        self
    }

    /// Reconnect delays. Default: 1 s doubling to 30 s, ±50 % jitter, forever.
    /// [`BackoffConfig::max_advised`] (default 30 s) caps the delays a server
    /// advises, separately from `max`; see [`BackoffConfig`] for when advice
    /// is followed.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), herald_client::Error> {
    /// use std::time::Duration;
    /// use herald_client::{BackoffConfig, Client};
    ///
    /// let mut backoff = BackoffConfig::default();
    /// backoff.max = Duration::from_secs(3);
    /// // Still wait out a server that spreads a restart over 10 s.
    /// backoff.max_advised = Duration::from_secs(10);
    /// let client = Client::builder("wss://realtime.example.com/ws").backoff(backoff).connect()?;
    /// # Ok(()) }
    /// ```
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Ping after `interval` without traffic; give up `timeout` later.
    /// Default 30 s and 10 s.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        let mut heartbeat = HeartbeatConfig::default();
        heartbeat.interval = interval;
        heartbeat.timeout = timeout;
        self.config.heartbeat = heartbeat;
        self
    }

    /// Longest wait for a token and an open socket. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Longest wait for a publish's ack. Default 30 s.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// Publishes waiting for acks, online or offline. Default 1024.
    pub fn max_pending_publishes(mut self, max: usize) -> Self {
        self.config.max_pending_publishes = max;
        self
    }

    /// Items buffered per subscription stream and per [`Client::events`]
    /// stream. A reader that falls further behind loses events and gets an
    /// `Update::Resync` with `ResyncReason::Lagged` instead. Default 1024.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Fixes the seed of jitter and publish ids (tests); random by default.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// TLS settings for `wss://`: a `rustls` 0.23 `ClientConfig`, e.g. with
    /// your own root certificates (a private CA, a development certificate)
    /// or a client certificate. Default: the Mozilla roots of `webpki-roots`.
    ///
    /// Behind the feature `rustls-0_23`, since it ties this API to that
    /// rustls version.
    #[cfg(feature = "rustls-0_23")]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Called on the client's task for every event; must not block.
    pub fn on_event(mut self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.callbacks.on_event = Some(Arc::new(callback));
        self
    }

    /// Called on the client's task for every status change; must not block.
    pub fn on_status(mut self, callback: impl Fn(&Status) + Send + Sync + 'static) -> Self {
        self.callbacks.on_status = Some(Arc::new(callback));
        self
    }

    /// Called on the client's task for every JSON message that is not a
    /// Herald message (e.g. from a plain broadcast server); must not block.
    pub fn on_raw(mut self, callback: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.callbacks.on_raw = Some(Arc::new(callback));
        self
    }

    /// Starts the client's task and returns its handle at once; the first
    /// connection is made in the background (see [`Client::connected`]).
    /// Needs a tokio runtime.
    pub fn connect(mut self) -> Result<Client> {
        let url = &self.config.url;
        let bad = |problem: &str| Error::Url { url: url.clone(), problem: problem.into() };
        let scheme = url.split_once("://").map(|(scheme, _)| scheme).ok_or_else(|| bad("no scheme"))?;
        if !matches!(scheme, "ws" | "wss") {
            return Err(bad("the scheme must be ws:// or wss://"));
        }
        let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str());
        request.map_err(|e| bad(&e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        self.config.auth = match (&self.token, self.auth) {
            (None, _) => AuthMode::None,
            (Some(_), Some(mode)) => mode,
            (Some(_), None) => AuthMode::Query,
        };
        if self.config.seed == 0 {
            self.config.seed = fastrand::u64(..);
        }
        let session = Session::new(self.config, herald_core::Instant::now());
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (status_tx, status) = watch::channel(Status::Connecting);
        let driver = Driver::new(session, receiver, self.token, self.tls, status_tx, self.callbacks);
        runtime.spawn(driver.run());
        Ok(Client { commands, status, next_id: Arc::new(AtomicU64::new(0)), capacity: self.capacity })
    }
}
