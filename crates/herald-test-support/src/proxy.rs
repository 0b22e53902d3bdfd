//! A TCP proxy that breaks the network on command: cut every connection,
//! black-hole them (half-open: nothing flows, nothing closes), delay them,
//! or refuse new ones. `tc netem` is not available, so faults are made here.
//! It also reads the WebSocket close frames going through (what a client
//! really sent on the wire), and can terminate TLS in front of the server.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;

struct Link {
    task: JoinHandle<()>,
    blackholed: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    links: Vec<Link>,
    accepted: Vec<Instant>,
    /// Close codes of the WebSocket close frames seen, per direction.
    client_closes: Vec<u16>,
    server_closes: Vec<u16>,
    tls_failures: usize,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, State> {
    state.lock().expect("no proxy task panics holding the lock")
}

/// The proxy; dropping it stops it and closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    scheme: &'static str,
    state: Shared,
    refuse: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_with(target, None).await
    }

    /// Like [`start`](Self::start), and clients speak TLS to the proxy,
    /// which forwards plain TCP to `target`: a TLS-terminating load balancer.
    pub async fn start_tls(target: SocketAddr, tls: TlsAcceptor) -> Self {
        Self::start_with(target, Some(tls)).await
    }

    async fn start_with(target: SocketAddr, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let state = Shared::default();
        let refuse = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn({
            let (state, refuse, delay_ms) = (state.clone(), refuse.clone(), delay_ms.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if refuse.load(Ordering::SeqCst) {
                        // Dropping at once: the client sees a reset, as from a refusing host.
                        drop(client);
                        continue;
                    }
                    let _ = client.set_nodelay(true);
                    let blackholed = Arc::new(AtomicBool::new(false));
                    let link = (target, blackholed.clone(), delay_ms.clone(), state.clone());
                    let task = match tls.clone() {
                        None => tokio::spawn(pump(client, link)),
                        Some(tls) => tokio::spawn(async move {
                            match tls.accept(client).await {
                                Ok(client) => pump(client, link).await,
                                Err(_) => lock(&link.3).tls_failures += 1,
                            }
                        }),
                    };
                    let mut state = lock(&state);
                    state.accepted.push(Instant::now());
                    state.links.push(Link { task, blackholed });
                }
            }
        });
        Self { addr, scheme, state, refuse, delay_ms, accept }
    }

    /// `ws://` URL of the proxy, for the server's `/ws` path; with TLS,
    /// `wss://localhost:<port>/ws`, the name on the certificate.
    pub fn ws_url(&self) -> String {
        match self.scheme {
            "wss" => format!("wss://localhost:{}/ws", self.addr.port()),
            scheme => format!("{scheme}://{}/ws", self.addr),
        }
    }

    /// Closes every open connection (both sides see the TCP connection end,
    /// without a WebSocket close frame).
    pub fn cut(&self) {
        for link in lock(&self.state).links.drain(..) {
            link.task.abort();
        }
    }

    /// Stops all traffic on the open connections without closing them: a
    /// half-open connection, as after a NAT timeout or a pulled cable.
    /// Connections made afterwards flow normally.
    pub fn blackhole(&self) {
        for link in &lock(&self.state).links {
            link.blackholed.store(true, Ordering::SeqCst);
        }
    }

    /// Refuses (resets) new connections while `on`.
    pub fn refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::SeqCst);
    }

    /// Delays every chunk forwarded, both ways.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// When each connection was accepted (refused ones excluded).
    pub fn accepted(&self) -> Vec<Instant> {
        lock(&self.state).accepted.clone()
    }

    /// The codes of the close frames clients sent, in order.
    pub fn client_closes(&self) -> Vec<u16> {
        lock(&self.state).client_closes.clone()
    }

    /// The codes of the close frames the server sent, in order.
    pub fn server_closes(&self) -> Vec<u16> {
        lock(&self.state).server_closes.clone()
    }

    /// TLS handshakes that failed (e.g. a client that does not trust the certificate).
    pub fn tls_failures(&self) -> usize {
        lock(&self.state).tls_failures
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pump<S>(
    client: S,
    (target, blackholed, delay_ms, state): (SocketAddr, Arc<AtomicBool>, Arc<AtomicU64>, Shared),
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = tokio::io::split(client);
    let (server_read, server_write) = server.into_split();
    let up = copy(client_read, server_write, Tap::new(state.clone(), true), blackholed.clone(), delay_ms.clone());
    let down = copy(server_read, client_write, Tap::new(state, false), blackholed, delay_ms);
    // Either direction ending ends the link, closing both sockets.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut tap: Tap,
    blackholed: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if blackholed.load(Ordering::SeqCst) {
            // Swallow everything from now on, and never close.
            std::future::pending::<()>().await;
        }
        let delay = delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        tap.feed(&buffer[..n]);
        if to.write_all(&buffer[..n]).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
}

/// Reads one direction of a WebSocket connection as it passes: skips the
/// HTTP upgrade, then splits frames (RFC 6455 §5.2) and records close codes.
struct Tap {
    state: Shared,
    from_client: bool,
    upgraded: bool,
    pending: Vec<u8>,
}

impl Tap {
    fn new(state: Shared, from_client: bool) -> Self {
        Self { state, from_client, upgraded: false, pending: Vec::new() }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if !self.upgraded {
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            self.pending.drain(..end + 4);
            self.upgraded = true;
        }
        while let Some(len) = self.frame() {
            self.pending.drain(..len);
        }
    }

    /// Records the first complete frame if it is a close; returns its length.
    fn frame(&mut self) -> Option<usize> {
        let bytes = &self.pending;
        let (opcode, masked, len7) = (bytes.first()? & 0x0f, bytes.get(1)? & 0x80 != 0, bytes.get(1)? & 0x7f);
        let (payload_len, mut at) = match len7 {
            126 => (u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize, 4),
            127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize, 10),
            len => (len as usize, 2),
        };
        let mask = if masked {
            at += 4;
            bytes.get(at - 4..at)?.to_vec()
        } else {
            vec![0; 4]
        };
        let payload = bytes.get(at..at + payload_len)?;
        if opcode == 0x8 && payload.len() >= 2 {
            let code = u16::from_be_bytes([payload[0] ^ mask[0], payload[1] ^ mask[1]]);
            let mut state = lock(&self.state);
            if self.from_client { state.client_closes.push(code) } else { state.server_closes.push(code) }
        }
        Some(at + payload_len)
    }
}
