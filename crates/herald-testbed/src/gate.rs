//! A TCP proxy that can refuse WebSocket upgrades and pass everything else,
//! as a corporate proxy that blocks WebSocket does: the browser sees its
//! WebSocket fail (close 1006) while `EventSource` and `fetch` still work.
//! It can also black-hole its connections: they stay open but every byte
//! is dropped, as on a link that died without closing (a sleeping laptop's
//! Wi-Fi, a NAT that forgot the connection).

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The longest request head the gate reads before deciding.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct Gate {
    addr: SocketAddr,
    blocking: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl Gate {
    pub(crate) async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let blocking = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (flags, count) = ((blocking.clone(), silent.clone()), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(pass(client, upstream, flags.0.clone(), flags.1.clone()));
            }
        });
        Ok(Self { addr, blocking, silent, accepted })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn block(&self, on: bool) {
        self.blocking.store(on, Ordering::SeqCst);
    }

    /// Drops every byte in both directions while on, without closing anything.
    pub(crate) fn black_hole(&self, on: bool) {
        self.silent.store(on, Ordering::SeqCst);
    }
}

async fn pass(mut client: TcpStream, upstream: SocketAddr, blocking: Arc<AtomicBool>, silent: Arc<AtomicBool>) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            return;
        }
    }
    if blocking.load(Ordering::SeqCst) && is_websocket_upgrade(&head) {
        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    if silent.load(Ordering::SeqCst) || server.write_all(&head).await.is_ok() {
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::join!(forward(client_read, server_write, &silent), forward(server_read, client_write, &silent));
    }
}

/// Copies until `from` ends, dropping what it reads while `silent` is on.
async fn forward(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, silent: &AtomicBool) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        if !silent.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn is_websocket_upgrade(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade") && value.trim().eq_ignore_ascii_case("websocket")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_websocket_upgrades_are_recognized() {
        assert!(is_websocket_upgrade(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\r\n"));
        assert!(!is_websocket_upgrade(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"));
        assert!(!is_websocket_upgrade(b"GET /ws HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n"));
    }
}
