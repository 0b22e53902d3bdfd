//! Herald on its own listener: [`Server::bind`], [`ServerHandle`].

use std::{io, net::SocketAddr, ops::Deref, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpSocket, ToSocketAddrs},
    sync::oneshot,
    task::JoinHandle,
    time::timeout,
};
use tracing::info;

use crate::{Herald, HeraldBuilder, ServerError, accept::Gate, tls::Tls};

/// Starts servers on their own listener. See [`Server::bind`] and
/// [`Herald`] for mounting Herald in your own axum app instead.
#[derive(Debug)]
#[non_exhaustive]
pub struct Server;

impl Server {
    /// Starts a server in development mode (any non-empty token is the user
    /// id) with the default configuration, e.g. on `"127.0.0.1:0"` for tests.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), herald_server::ServerError> {
    /// let server = herald_server::Server::bind("127.0.0.1:0").await?;
    /// println!("connect to {}", server.ws_url());
    /// server.publish("gift-list:1", "UPDATED", "gift-7", &serde_json::json!({"bought": true})).await?;
    /// server.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs) -> Result<ServerHandle, ServerError> {
        Self::builder().dev(true).bind(addr).await
    }

    /// A builder for any configuration; the same as [`Herald::builder`].
    pub fn builder() -> HeraldBuilder {
        HeraldBuilder::default()
    }
}

/// A [`Herald`] serving on its own listener, with the listener's limits:
/// request head timeout, connections in all, before authentication and per
/// address. It derefs to its [`Herald`] (to publish, read metrics, ...).
/// Dropping it stops the server without waiting; call
/// [`shutdown`](Self::shutdown) to stop gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    pub(crate) herald: Herald,
    addr: SocketAddr,
    listening: Option<Listening>,
    /// With [`ServerConfig::tls`](crate::ServerConfig::tls).
    tls: Option<Arc<Tls>>,
}

#[derive(Debug)]
struct Listening {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Deref for ServerHandle {
    type Target = Herald;

    fn deref(&self) -> &Herald {
        &self.herald
    }
}

impl ServerHandle {
    /// Serves `herald` on `addr`.
    pub(crate) async fn listen(herald: Herald, addr: impl ToSocketAddrs) -> Result<Self, ServerError> {
        let tls = match &herald.app.config.tls {
            Some(files) => {
                let tls = Tls::load(files).await.map_err(|error| ServerError::Config(error.to_string()))?;
                tokio::spawn(crate::tls::watch(Arc::downgrade(&tls)));
                Some(tls)
            }
            None => None,
        };
        let listener = bind(addr, herald.app.config.reuse_port).await?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: "?".into(), source })?;
        info!(%addr, epoch = %herald.epoch(), tls = tls.is_some(), "herald listening");
        let mut handle = Self { herald, addr, listening: None, tls };
        handle.serve(listener);
        Ok(handle)
    }

    pub(crate) fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let app = self.herald.app.clone();
        app.hub.reopen();
        let gate = Gate::new(&app.config);
        let tls = self.tls.as_ref().map(Tls::acceptor);
        let task = tokio::spawn(crate::accept::serve(listener, tls, app, gate, self.herald.router(), stopped));
        self.listening = Some(Listening { stop, task });
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://<addr>/ws`, or `wss://<addr>/ws` with TLS (clients that check
    /// the certificate's name connect to a name it holds instead of the address).
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }

    /// `http://<addr>`, or `https://<addr>` with TLS.
    pub fn http_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Reads the TLS certificate and key files again (see
    /// [`ServerConfig::tls`](crate::ServerConfig::tls)): new connections get
    /// the new certificate, open ones keep theirs. On an error the previous
    /// certificate stays, and the error (also logged) says what to fix.
    /// Herald reloads by itself when the files change; this is for a host
    /// that knows sooner.
    pub async fn reload_tls(&self) -> Result<(), ServerError> {
        let Some(tls) = &self.tls else {
            return Err(ServerError::Config("this server has no TLS to reload (ServerConfig::tls is not set)".into()));
        };
        tls.reload().await.map_err(|error| ServerError::Config(error.to_string()))
    }

    /// Reloads the TLS certificate and key (as [`reload_tls`](Self::reload_tls))
    /// on every SIGHUP from this call on, as `herald serve` does. Installing
    /// the handler means SIGHUP no longer ends the process. Does nothing
    /// without TLS, or on systems other than Unix. Call it on a tokio runtime.
    pub fn reload_tls_on_hangup(&self) {
        #[cfg(unix)]
        if let Some(tls) = &self.tls {
            crate::tls::reload_on_hangup(Arc::downgrade(tls));
        }
    }

    /// Stops gracefully: stops accepting, closes every connection with 1001
    /// and a reconnect hint spread over [`ServerConfig::shutdown_spread`](crate::ServerConfig::shutdown_spread),
    /// and waits (at most 10 s) for connections to finish.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Waits for SIGINT or SIGTERM (Ctrl-C on other systems), then shuts down
    /// gracefully. On Unix the signals are caught from this call on, before
    /// the future first runs, so a program may announce that it is ready
    /// right after calling it: a signal sent at once still shuts down
    /// gracefully instead of killing the process. Call it on a tokio runtime.
    pub fn shutdown_on_signal(self) -> impl Future<Output = ()> + Send {
        let signal = signal_received();
        async move {
            signal.await;
            info!("signal received, shutting down");
            self.shutdown().await;
        }
    }

    /// Stops listening and closes every connection; the state stays.
    pub(crate) async fn stop(&mut self) {
        let Some(listening) = self.listening.take() else { return };
        let _ = listening.stop.send(());
        self.herald.shutdown().await;
        let _ = timeout(Duration::from_secs(5), listening.task).await;
    }

    /// Whether it is listening.
    #[cfg(feature = "testing")]
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.is_some()
    }

    /// Binds the address it had again, retrying briefly while the operating
    /// system releases it.
    #[cfg(feature = "testing")]
    pub(crate) async fn rebind(&self) -> Result<TcpListener, ServerError> {
        let mut attempt = 0;
        loop {
            match bind_one(self.addr, self.herald.app.config.reuse_port) {
                Ok(listener) => return Ok(listener),
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => return Err(ServerError::Bind { addr: self.addr.to_string(), source }),
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(listening) = self.listening.take() {
            let _ = listening.stop.send(());
            self.herald.app.hub.close(herald_protocol::close::GOING_AWAY);
        }
    }
}

async fn bind(addr: impl ToSocketAddrs, reuse_port: bool) -> Result<TcpListener, ServerError> {
    let mut last = None;
    let addrs = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ServerError::Bind { addr: "the given address".into(), source })?;
    for addr in addrs {
        match bind_one(addr, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(source) => last = Some(ServerError::Bind { addr: addr.to_string(), source }),
        }
    }
    Err(last.unwrap_or_else(|| ServerError::Config("the address resolved to nothing".into())))
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restart binds the same port while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(reuse_port)?;
    #[cfg(not(unix))]
    if reuse_port {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "reuse_port needs a Unix system"));
    }
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Registers for SIGINT and SIGTERM now; resolves when one arrives.
#[cfg(unix)]
fn signal_received() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let (interrupt, terminate) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            // The handlers could not be installed; Ctrl-C is still worth waiting for.
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn signal_received() -> impl Future<Output = ()> + Send {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
