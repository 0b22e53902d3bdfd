//! Connections without sockets: the task that serves a WebSocket (`conn.rs`,
//! the same code, with the same authentication, limits and hub), handed one
//! client message at a time, answering with everything the server would
//! write in consequence. For fuzzing the server's message handling and for
//! tests that need no network; behind the `testing` feature.
//!
//! Each call runs the connections until none of them can make progress
//! without more input, so what it returns is complete and the same for the
//! same inputs. Timers run on the real clock: inputs given microseconds apart
//! never reach the heartbeat, idle or token-expiry deadlines.
//!
//! ```
//! use herald_server::{
//!     Herald,
//!     scripted::{Input, Output, Scripted},
//! };
//!
//! let mut server = Scripted::new(Herald::builder().dev(true))?;
//! let alice = server.connect(Some("alice"));
//! let greeting = server.take(alice); // {"type":"connected",..}
//! assert_eq!(greeting.len(), 1);
//! let written = server.send(alice, Input::Text(r#"{"type":"ping"}"#.into()));
//! assert_eq!(written, [(alice, Output::Frame(r#"{"type":"pong"}"#.into()))]);
//! # Ok::<(), herald_server::ServerError>(())
//! ```

use std::{
    collections::VecDeque,
    future::{Future, poll_fn},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use axum::http::HeaderMap;
use tokio::runtime::Runtime;

use crate::{
    Herald, HeraldBuilder, ServerError,
    conn::{Ending, Gone, Inbound, Link, truncate_reason},
    extract::Remote,
    hub::Frame,
    metrics::Transport,
};

/// What a client does on its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A text frame.
    Text(String),
    /// A binary frame (its content does not matter: the protocol has none).
    Binary,
    /// The client goes away without a close frame.
    Gone,
}

/// What the server writes to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// A text frame.
    Frame(String),
    /// The end of the connection: a close frame with `code` and `reason`,
    /// or, with `code` `None`, a drop without one.
    Close {
        /// The close code.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
}

/// A Herald server whose connections are scripted. Create it outside any
/// tokio runtime: it runs its own, on the calling thread.
pub struct Scripted {
    runtime: Runtime,
    herald: Herald,
    connections: Vec<Connection>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted").field("connections", &self.connections.len()).finish_non_exhaustive()
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Connection {
    /// `None` once the connection ended.
    task: Option<Task>,
    shared: Arc<Shared>,
    /// Set when the task may progress; the task's waker sets it.
    ready: Arc<Ready>,
}

#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    written: Mutex<Vec<Output>>,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Input>,
    /// The task waiting for input.
    waiter: Option<Waker>,
}

struct Ready(AtomicBool);

impl Wake for Ready {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic of a connection task reaches the caller of `send` and ends the
    // test or fuzz run; nothing is left to read afterwards.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scripted {
    /// Builds Herald as `builder` says (an authenticator or secret, limits;
    /// no Redis: the network is what this avoids).
    pub fn new(builder: HeraldBuilder) -> Result<Self, ServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|error| ServerError::Config(format!("cannot start a tokio runtime: {error}")))?;
        let herald = runtime.block_on(builder.build())?;
        Ok(Self { runtime, herald, connections: Vec::new() })
    }

    /// The server, to publish as a backend would or to read its metrics.
    pub fn herald(&self) -> &Herald {
        &self.herald
    }

    /// Opens a connection with `?token=` (or none: the client must send an
    /// `auth` message) and runs it until it waits for the client; returns
    /// its number. What it wrote (`connected`, or a close) is in
    /// [`take`](Self::take).
    pub fn connect(&mut self, token: Option<&str>) -> usize {
        let shared = Arc::new(Shared::default());
        let link = ScriptedLink(shared.clone());
        let task = crate::conn::run(
            link,
            self.herald.app.clone(),
            token.map(str::to_owned),
            HeaderMap::new(),
            true,
            Remote::default(),
        );
        let ready = Arc::new(Ready(AtomicBool::new(true)));
        self.connections.push(Connection { task: Some(Box::pin(task)), shared, ready });
        self.settle();
        self.connections.len() - 1
    }

    /// Hands `input` to `connection` and runs every connection until none
    /// can progress; returns what each wrote meanwhile (what `connection`
    /// wrote during [`connect`](Self::connect) too), in order per
    /// connection. Input to a connection that ended is dropped.
    ///
    /// # Panics
    ///
    /// If `connection` was never opened.
    pub fn send(&mut self, connection: usize, input: Input) -> Vec<(usize, Output)> {
        let target = &self.connections[connection];
        if target.task.is_some() {
            let waiter = {
                let mut inbox = lock(&target.shared.inbox);
                inbox.queue.push_back(input);
                inbox.waiter.take()
            };
            waiter.into_iter().for_each(Waker::wake);
            self.settle();
        }
        (0..self.connections.len()).flat_map(|n| self.take(n).into_iter().map(move |output| (n, output))).collect()
    }

    /// What `connection` wrote since the last call.
    ///
    /// # Panics
    ///
    /// If `connection` was never opened.
    pub fn take(&mut self, connection: usize) -> Vec<Output> {
        std::mem::take(&mut lock(&self.connections[connection].shared.written))
    }

    /// Whether `connection` has ended.
    ///
    /// # Panics
    ///
    /// If `connection` was never opened.
    pub fn is_closed(&self, connection: usize) -> bool {
        self.connections[connection].task.is_none()
    }

    /// Polls every connection that was woken until none is. Each pass is one
    /// poll of `block_on`'s future, so tokio's cooperative budget (which a
    /// single long poll would exhaust) starts afresh and the hub's own tasks
    /// get their turn between passes.
    fn settle(&mut self) {
        let connections = &mut self.connections;
        self.runtime.block_on(poll_fn(|cx| {
            for connection in connections.iter_mut() {
                let Some(task) = &mut connection.task else { continue };
                if !connection.ready.0.swap(false, Ordering::SeqCst) {
                    continue;
                }
                let waker = Waker::from(connection.ready.clone());
                if task.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                    connection.task = None;
                }
            }
            if connections.iter().any(|c| c.task.is_some() && c.ready.0.load(Ordering::SeqCst)) {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }));
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // The tasks hold timers of this runtime: dropped inside it.
        let _inside = self.runtime.enter();
        self.connections.clear();
    }
}

struct ScriptedLink(Arc<Shared>);

impl Link for ScriptedLink {
    const TRANSPORT: Transport = Transport::WebSocket;

    async fn recv(&mut self) -> Option<Result<Inbound, Ending>> {
        let input = poll_fn(|cx| {
            let mut inbox = lock(&self.0.inbox);
            match inbox.queue.pop_front() {
                Some(input) => Poll::Ready(input),
                None => {
                    inbox.waiter = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        match input {
            Input::Text(text) => Some(Ok(Inbound::Text(Frame::from(text)))),
            Input::Binary => Some(Ok(Inbound::Binary)),
            Input::Gone => None,
        }
    }

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(&mut self, frame: Frame) -> Result<(), Gone> {
        lock(&self.0.written).push(Output::Frame(frame.as_str().to_owned()));
        Ok(())
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Gone>> {
        Poll::Ready(Ok(()))
    }

    async fn close(&mut self, ending: Ending) {
        // As the WebSocket link writes it: a close frame holds 123 bytes of reason.
        let reason = truncate_reason(ending.reason);
        lock(&self.0.written).push(Output::Close { code: ending.code, reason });
    }
}
