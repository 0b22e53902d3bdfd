//! A TCP proxy that breaks the network on command: cut every connection,
//! black-hole them (half-open: nothing flows, nothing closes), delay them,
//! or refuse new ones. `tc netem` is not available, so faults are made here.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

struct Link {
    task: JoinHandle<()>,
    blackholed: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    links: Vec<Link>,
    accepted: Vec<Instant>,
}

/// The proxy; dropping it stops it and closes every connection.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    refuse: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let state = Arc::new(Mutex::new(State::default()));
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
                    let blackholed = Arc::new(AtomicBool::new(false));
                    let task = tokio::spawn(pump(client, target, blackholed.clone(), delay_ms.clone()));
                    let mut state = state.lock().expect("no proxy task panics holding the lock");
                    state.accepted.push(Instant::now());
                    state.links.push(Link { task, blackholed });
                }
            }
        });
        Self { addr, state, refuse, delay_ms, accept }
    }

    /// `ws://` URL of the proxy, for the server's `/ws` path.
    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Closes every open connection (both sides see the TCP connection end).
    pub(crate) fn cut(&self) {
        let mut state = self.state.lock().expect("no proxy task panics holding the lock");
        for link in state.links.drain(..) {
            link.task.abort();
        }
    }

    /// Stops all traffic on the open connections without closing them: a
    /// half-open connection, as after a NAT timeout or a pulled cable.
    /// Connections made afterwards flow normally.
    pub(crate) fn blackhole(&self) {
        let state = self.state.lock().expect("no proxy task panics holding the lock");
        for link in &state.links {
            link.blackholed.store(true, Ordering::SeqCst);
        }
    }

    /// Refuses (resets) new connections while `on`.
    pub(crate) fn refuse(&self, on: bool) {
        self.refuse.store(on, Ordering::SeqCst);
    }

    /// Delays every chunk forwarded, both ways.
    pub(crate) fn delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// When each connection was accepted (refused ones excluded).
    pub(crate) fn accepted(&self) -> Vec<Instant> {
        self.state.lock().expect("no proxy task panics holding the lock").accepted.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pump(client: TcpStream, target: SocketAddr, blackholed: Arc<AtomicBool>, delay_ms: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = copy(client_read, server_write, blackholed.clone(), delay_ms.clone());
    let down = copy(server_read, client_write, blackholed, delay_ms);
    // Either direction ending ends the link, closing both sockets.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
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
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
