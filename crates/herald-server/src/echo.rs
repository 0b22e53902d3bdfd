//! An echo endpoint on Herald's own listener and WebSocket settings — the
//! same HTTP handling, limits (64 KiB frames) and close codes on bad input
//! as `/ws` — that sends every text and binary message back. Protocol v1
//! answers no message with itself, so the Autobahn cases, which check a
//! WebSocket stack by its echoes, run against this (`cargo xtask
//! conformance`); behind the `testing` feature.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, response::Response};
use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tungstenite::Message;

use crate::{
    Herald, ServerError,
    accept::Gate,
    app::App,
    conn::Link,
    ws::{Socket, Upgrade},
};

/// A server whose every path echoes; stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Listens on `addr` (e.g. `127.0.0.1:0`) with the default configuration.
    pub async fn bind(addr: &str) -> Result<Self, ServerError> {
        let herald = Herald::builder().dev(true).build().await?;
        let app = herald.app;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr: addr.into(), source })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: addr.into(), source })?;
        let router = Router::new().fallback(echo).with_state(app.clone());
        let (stop, stopped) = oneshot::channel();
        let gate = Gate::new(&app.config);
        let task = tokio::spawn(crate::accept::serve(listener, None, app, gate, router, stopped));
        Ok(Self { addr, _stop: stop, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(State(app): State<Arc<App>>, upgrade: Upgrade) -> Response {
    upgrade.on_upgrade(crate::ws::settings(&app.config), echo_messages)
}

/// Sends every message back; pings and closes are answered by the library,
/// as on `/ws`. A read error closes as `/ws` closes on it.
async fn echo_messages(mut socket: Socket) {
    loop {
        let reply = match socket.next().await {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Link::close(&mut socket, crate::ws::read_error(error)).await,
            None => return,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
