//! A TCP proxy that can refuse WebSocket upgrades and pass everything else,
//! as a corporate proxy that blocks WebSocket does: the browser sees its
//! WebSocket fail (close 1006) while `EventSource` and `fetch` still work.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The longest request head the gate reads before deciding.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct Gate {
    addr: SocketAddr,
    blocking: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl Gate {
    pub(crate) async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let blocking = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (flag, count) = (blocking.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(pass(client, upstream, flag.clone()));
            }
        });
        Ok(Self { addr, blocking, accepted })
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
}

async fn pass(mut client: TcpStream, upstream: SocketAddr, blocking: Arc<AtomicBool>) {
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
    if server.write_all(&head).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
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
