//! Herald's own listener: accepts TCP connections within the server's
//! connection limits and serves HTTP/1.1 on them with a header timeout.
//!
//! `axum::serve` has neither: its connections wait forever for a request
//! head, and it accepts until the process runs out of file descriptors, at
//! which point nothing (`/healthz` included) is answered any more. Here every
//! connection takes a [`Slot`] first: within the total, not-yet-authenticated
//! and per-address limits it is served; over one it is answered by a small
//! refusal service (which still answers `/healthz`) from a bounded overflow
//! pool; beyond that pool it is closed at once.
//!
//! With TLS, the handshake comes after the gate (a connection in its
//! handshake holds a slot and counts as not yet authenticated) and within
//! the header timeout; refused connections get their answer over TLS too,
//! so that a client reads why.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
    http::StatusCode,
    routing::get,
};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
    time::timeout,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::either::Either;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::{ServerConfig, app::App, extract::Refusal, metrics, quota::release};

/// Connections over a limit answered at once by the refusal service, and
/// how many of those one address may hold: enough for health checks and a
/// clear refusal, too few to matter to the file descriptor budget.
const OVERFLOW: usize = 64;
const OVERFLOW_PER_IP: usize = 4;
/// How long the refusal service waits for a request head.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// File descriptors kept free for everything but client connections:
/// Redis, static files, the overflow pool, the runtime's own.
const RESERVED_FDS: u64 = 128 + OVERFLOW as u64;

/// The connection limits, resolved from the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    total: usize,
    unauthenticated: usize,
    /// 0: none.
    per_ip: usize,
}

/// The most connections the server may hold: the configured number, or
/// what the process's file descriptor limit leaves after a reserve.
pub(crate) fn max_connections(config: &ServerConfig) -> usize {
    config.max_connections.unwrap_or_else(|| {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX);
        usize::try_from(soft.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
    })
}

/// Counts the connections held against the limits.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: Limits,
    /// Peers whose address is not a client's but a proxy's.
    trusted: Arc<[ipnet::IpNet]>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    open: usize,
    unauthenticated: usize,
    by_ip: HashMap<IpAddr, usize>,
    overflow: usize,
    overflow_by_ip: HashMap<IpAddr, usize>,
}

/// What the gate decided for a new connection.
enum Admission {
    Serve(Slot),
    /// Over a limit: answer with the refusal service.
    Refuse(Overflow, metrics::Refusal, Refusal),
    /// Over every limit: close.
    Drop,
}

impl Gate {
    pub(crate) fn new(config: &ServerConfig) -> Arc<Self> {
        let total = max_connections(config);
        let limits = Limits {
            total,
            unauthenticated: config.max_unauthenticated.min(total),
            per_ip: config.max_connections_per_ip,
        };
        let trusted = config.trusted_proxies.clone().into();
        Arc::new(Self { limits, trusted, counts: Mutex::default() })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Nothing panics while holding the lock, so the counts stay consistent.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Admission {
        let Limits { total, unauthenticated, per_ip } = self.limits;
        // A proxy carries many clients: their addresses are limited per request.
        let counted_ip = (!self.trusted.iter().any(|net| net.contains(&ip))).then_some(ip);
        let mut counts = self.counts();
        let from_ip = counted_ip.map_or(0, |ip| counts.by_ip.get(&ip).copied().unwrap_or(0));
        let over = if counts.open >= total {
            Some((
                metrics::Refusal::Connections,
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the server holds its limit of {total} connections; retry later"),
                ),
            ))
        } else if counts.unauthenticated >= unauthenticated {
            Some((
                metrics::Refusal::Unauthenticated,
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{unauthenticated} connections are waiting to authenticate, the server's limit; retry later"
                    ),
                ),
            ))
        } else if per_ip > 0 && from_ip >= per_ip {
            Some((
                metrics::Refusal::PerAddress,
                Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("this address holds {per_ip} connections, the server's limit per address; close some"),
                ),
            ))
        } else {
            None
        };
        let Some((reason, refusal)) = over else {
            counts.open += 1;
            counts.unauthenticated += 1;
            if let Some(ip) = counted_ip {
                *counts.by_ip.entry(ip).or_default() += 1;
            }
            let slot = Slot { gate: self.clone(), ip: counted_ip, authenticated: AtomicBool::new(false) };
            return Admission::Serve(slot);
        };
        let overflow_from_ip = counts.overflow_by_ip.get(&ip).copied().unwrap_or(0);
        if counts.overflow >= OVERFLOW || overflow_from_ip >= OVERFLOW_PER_IP {
            return Admission::Drop;
        }
        counts.overflow += 1;
        *counts.overflow_by_ip.entry(ip).or_default() += 1;
        Admission::Refuse(Overflow { gate: self.clone(), ip }, reason, refusal.retry_after(5))
    }
}

/// One connection's place within the limits, held as long as the TCP
/// connection is open (by its HTTP connection, then by the WebSocket it
/// became). Requests carry it as an extension.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
    /// The address counted against the per-address limit.
    ip: Option<IpAddr>,
    authenticated: AtomicBool,
}

impl Slot {
    /// A token on this connection checked out: it no longer counts as
    /// waiting to authenticate.
    pub(crate) fn authenticated(&self) {
        if !self.authenticated.swap(true, Ordering::AcqRel) {
            self.gate.counts().unauthenticated -= 1;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.gate.counts();
        counts.open -= 1;
        if !*self.authenticated.get_mut() {
            counts.unauthenticated -= 1;
        }
        if let Some(ip) = self.ip {
            release(&mut counts.by_ip, &ip);
        }
    }
}

/// A place in the overflow pool.
struct Overflow {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Overflow {
    fn drop(&mut self) {
        let mut counts = self.gate.counts();
        counts.overflow -= 1;
        release(&mut counts.overflow_by_ip, &self.ip);
    }
}

/// Accepts and serves connections on `listener` (over TLS with `tls`) until
/// `stop` fires, then asks every HTTP connection to finish its request and
/// close, and returns once they have. (WebSockets, no longer HTTP once
/// upgraded, are closed by the hub.)
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    gate: Arc<Gate>,
    router: Router,
    mut stop: oneshot::Receiver<()>,
) {
    let header_timeout = app.config.header_timeout;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut refusing = http1::Builder::new();
    refusing.timer(TokioTimer::new()).header_read_timeout(OVERFLOW_HEADER_TIMEOUT).keep_alive(false);
    let hub = app.hub.clone();
    let metrics = &hub.metrics;
    let handshakes = Handshakes { tls, app: app.clone() };
    let refusal_router = Router::new().route("/healthz", get(crate::http::ops::healthz)).with_state(app);
    let (shutdown, draining) = watch::channel(false);
    let mut spare = Spare::open();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    spare.on_accept_error(&listener, error).await;
                    continue;
                }
            },
        };
        // Events are small frames that must leave at once: Nagle's algorithm
        // held them until the previous frame's (delayed) ack, for up to 40 ms.
        if let Err(error) = tcp.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY");
        }
        match gate.admit(peer.ip()) {
            Admission::Serve(slot) => {
                let (slot, router) = (Arc::new(slot), router.clone());
                let service = service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.extensions_mut().insert(slot.clone());
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
                let (http, handshakes, mut draining) = (http.clone(), handshakes.clone(), draining.clone());
                connections.spawn(async move {
                    // A handshake in progress is abandoned when draining starts.
                    let io = tokio::select! {
                        io = handshakes.secure(tcp, header_timeout) => io,
                        () = async { drop(draining.wait_for(|draining| *draining).await) } => None,
                    };
                    let Some(io) = io else { return };
                    let connection = http.serve_connection(TokioIo::new(io), service).with_upgrades();
                    until_drained(connection, draining).await;
                });
            }
            Admission::Refuse(overflow, reason, refusal) => {
                metrics.refused(reason);
                let router = refusal_router.clone().fallback(move || std::future::ready(refusal.clone()));
                let service = service_fn(move |request: Request<Incoming>| {
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
                let (refusing, handshakes) = (refusing.clone(), handshakes.clone());
                tokio::spawn(async move {
                    let _overflow = overflow;
                    if let Some(io) = handshakes.secure(tcp, OVERFLOW_HEADER_TIMEOUT).await {
                        let _ = refusing.serve_connection(TokioIo::new(io), service).await;
                    }
                });
            }
            Admission::Drop => {
                metrics.refused(metrics::Refusal::Overflow);
                drop(tcp);
            }
        }
    }
    drop(listener);
    let _ = shutdown.send(true);
    while connections.join_next().await.is_some() {}
}

/// A connection's stream: TCP, or TLS over it (boxed: plain connections
/// stay small).
type Io = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The TLS handshakes of a listener, if it has TLS.
#[derive(Clone)]
struct Handshakes {
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
}

impl Handshakes {
    /// `tcp` as it is to be served: as it is without TLS, else once its
    /// handshake completes within `limit`. A failed handshake is counted and
    /// the connection dropped (with its slot).
    async fn secure(&self, tcp: TcpStream, limit: Duration) -> Option<Io> {
        let Some(tls) = &self.tls else { return Some(Either::Left(tcp)) };
        let peer = tcp.peer_addr().ok();
        let failure = match timeout(limit, tls.accept(tcp)).await {
            Ok(Ok(stream)) => return Some(Either::Right(Box::new(stream))),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no handshake within {limit:?}"),
        };
        // Scanners, plain HTTP and clients that distrust the certificate end
        // here: worth a counter, not a warning.
        self.app.hub.metrics.tls_handshake_failures.inc();
        debug!(?peer, error = %failure, "TLS handshake failed");
        None
    }
}

/// Serves `connection` to its end; once draining starts, lets it finish the
/// request in flight and close.
async fn until_drained<I, S, B>(
    connection: http1::UpgradeableConnection<TokioIo<I>, S>,
    mut draining: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async { drop(draining.wait_for(|draining| *draining).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        debug!(%error, "connection ended with an error");
    }
}

/// A file descriptor held in reserve: when `accept` fails because the
/// process has none left, closing it makes room to accept one connection
/// and close it at once, so the backlog drains instead of every client
/// hanging until its own timeout, and the loop does not spin on the error.
struct Spare(Option<std::fs::File>);

impl Spare {
    fn open() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    async fn on_accept_error(&mut self, listener: &TcpListener, error: io::Error) {
        // EMFILE (24) and ENFILE (23): this process, or the system, has no
        // file descriptor left.
        if matches!(error.raw_os_error(), Some(23 | 24)) {
            warn!(%error, "out of file descriptors: shedding a connection; lower --max-connections or raise `ulimit -n`");
            self.0 = None;
            if let Ok(Ok((tcp, _))) = tokio::time::timeout(Duration::from_millis(1), listener.accept()).await {
                drop(tcp);
            }
            *self = Self::open();
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            // Per-connection errors (a reset before accept) need nothing.
            debug!(%error, "accept failed");
        }
    }
}
