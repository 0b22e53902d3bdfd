//! Reconnect storm: N real Herald clients (`herald-client`, the reconnect
//! logic applications run) connected and subscribed, then the server
//! restarts — `cargo xtask bench` restarts it, or you do when the bench says
//! it is ready — and the report says how the clients came back: when each
//! reconnected, how the arrivals spread, and when every one of them was
//! receiving events again.
//!
//! Unlike the fan-out and idle generators, these clients are not raw: the
//! point is to measure what applications get from the client and the
//! server together (reconnect hints, jitter, resubscription, recovery).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use herald_client::{Client, Status, Update};
use serde::Serialize;

use crate::BenchError;

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StormOptions {
    /// The server's WebSocket URL; client `n` uses token `bench-<n>`.
    pub url: String,
    /// Clients. Default 1000.
    pub clients: usize,
    /// Topics `bench:0..topics`; client `n` subscribes to `n mod topics`. Default 100.
    pub topics: usize,
    /// How long each phase may take: connecting everyone, waiting for the
    /// restart, coming back. Default 120 s.
    pub timeout: Duration,
}

impl StormOptions {
    /// Defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), clients: 1000, topics: 100, timeout: Duration::from_secs(120) }
    }
}

/// How the clients came back. Times are in milliseconds after the first
/// client lost its connection.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    /// Clients in the run.
    pub clients: usize,
    /// Clients connected again within the timeout.
    pub reconnected: usize,
    /// Clients receiving events again within the timeout (a post-restart
    /// event reached them).
    pub receiving: usize,
    /// Clients told to resync (the restarted server had lost its history).
    pub resynced: usize,
    /// Failed reconnection attempts, over all clients (refused while the
    /// server was down, or by the server).
    pub failed_attempts: u64,
    /// The first client back.
    pub first_back_ms: f64,
    /// Half the clients were back by then.
    pub p50_back_ms: f64,
    /// 99 % of the clients were back by then.
    pub p99_back_ms: f64,
    /// The last client back.
    pub last_back_ms: f64,
    /// The most clients that came back within one 100 ms.
    pub busiest_100ms: usize,
    /// Every client back and receiving.
    pub all_receiving_ms: f64,
}

impl StormReport {
    /// A table for people.
    pub fn table(&self) -> String {
        format!(
            "clients {}   reconnected {}   receiving {}   resynced {}   failed attempts {}\n\
             back after (ms): first {:.0}  p50 {:.0}  p99 {:.0}  last {:.0}   busiest 100 ms: {} clients\n\
             all receiving after {:.0} ms",
            self.clients,
            self.reconnected,
            self.receiving,
            self.resynced,
            self.failed_attempts,
            self.first_back_ms,
            self.p50_back_ms,
            self.p99_back_ms,
            self.last_back_ms,
            self.busiest_100ms,
            self.all_receiving_ms
        )
    }
}

/// What one client went through.
#[derive(Debug, Default, Clone)]
struct Trace {
    /// Lost its connection (after the run was ready).
    lost: Option<Instant>,
    /// Connected again.
    back: Option<Instant>,
    /// The highest reconnection attempt number seen.
    attempts: u32,
    /// Received the probe of the given round.
    probed: [bool; 2],
    received_after_restart: Option<Instant>,
    resynced: bool,
}

type Traces = Arc<Mutex<Vec<Trace>>>;

fn lock(traces: &Traces) -> std::sync::MutexGuard<'_, Vec<Trace>> {
    traces.lock().expect("no panics while the lock is held")
}

/// Runs the storm. `ready` is called once every client is connected and
/// receiving: restart the server then.
pub async fn run(options: &StormOptions, ready: impl FnOnce()) -> Result<StormReport, BenchError> {
    let topics = options.topics.max(1);
    let traces: Traces = Arc::new(Mutex::new(vec![Trace::default(); options.clients]));
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::with_capacity(options.clients);
    for n in 0..options.clients {
        let client = Client::builder(options.url.as_str())
            .token(format!("bench-{n}"))
            .connect()
            .map_err(|e| BenchError::Connect { index: n, url: options.url.clone(), message: e.to_string() })?;
        let subscription = client
            .subscribe(&format!("bench:{}", n % topics))
            .await
            .map_err(|e| BenchError::Connect { index: n, url: options.url.clone(), message: e.to_string() })?;
        tokio::spawn(watch_status(client.status(), n, traces.clone(), armed.clone()));
        tokio::spawn(watch_updates(subscription, n, traces.clone(), armed.clone()));
        clients.push(client);
    }
    let publisher = Client::builder(options.url.as_str()).token("bench-publisher").connect().map_err(|e| {
        BenchError::Connect { index: options.clients, url: options.url.clone(), message: e.to_string() }
    })?;

    probe(&publisher, &traces, topics, 0, options.timeout).await?;
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    ready();

    let deadline = Instant::now() + options.timeout;
    wait_until(deadline, || lock(&traces).iter().any(|t| t.lost.is_some())).await;
    let Some(first_lost) = lock(&traces).iter().filter_map(|t| t.lost).min() else {
        return Err(BenchError::Storm { message: "the server never restarted (no client lost its connection)".into() });
    };
    let deadline = first_lost + options.timeout;
    wait_until(deadline, || lock(&traces).iter().all(|t| t.back.is_some())).await;
    // Everyone back (or out of time): events must reach every client again.
    let _ = probe(&publisher, &traces, topics, 1, deadline.saturating_duration_since(Instant::now())).await;

    let traces = lock(&traces).clone();
    let since = |at: Instant| at.saturating_duration_since(first_lost).as_secs_f64() * 1000.0;
    let mut back: Vec<f64> = traces.iter().filter_map(|t| t.back).map(since).collect();
    back.sort_by(f64::total_cmp);
    let at =
        |q: f64| back.get(((back.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    let mut buckets = std::collections::HashMap::<u64, usize>::new();
    for ms in &back {
        *buckets.entry((*ms / 100.0) as u64).or_default() += 1;
    }
    let all_receiving = traces.iter().map(|t| t.received_after_restart.map(since)).collect::<Option<Vec<f64>>>();
    for client in &clients {
        client.close().await;
    }
    publisher.close().await;
    Ok(StormReport {
        clients: traces.len(),
        reconnected: back.len(),
        receiving: traces.iter().filter(|t| t.received_after_restart.is_some()).count(),
        resynced: traces.iter().filter(|t| t.resynced).count(),
        failed_attempts: traces.iter().map(|t| u64::from(t.attempts.saturating_sub(1))).sum(),
        first_back_ms: back.first().copied().unwrap_or(f64::NAN),
        p50_back_ms: at(0.5),
        p99_back_ms: at(0.99),
        last_back_ms: back.last().copied().unwrap_or(f64::NAN),
        busiest_100ms: buckets.values().copied().max().unwrap_or(0),
        all_receiving_ms: all_receiving.map_or(f64::NAN, |t| t.into_iter().fold(0.0, f64::max)),
    })
}

async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes probe `round` on every topic until every client has received
/// one (publishing again every 200 ms: a client may be resubscribing).
async fn probe(
    publisher: &Client,
    traces: &Traces,
    topics: usize,
    round: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    let entity = format!("probe-{round}");
    while Instant::now() < deadline {
        if lock(traces).iter().all(|t| t.probed[round]) {
            return Ok(());
        }
        for topic in 0..topics {
            // A publish that fails while the publisher itself reconnects is simply retried next round.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                publisher.publish(&format!("bench:{topic}"), "PROBE", &entity, &serde_json::Value::Null),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing = lock(traces).iter().filter(|t| !t.probed[round]).count();
    Err(BenchError::Storm { message: format!("{missing} clients never received probe {round}") })
}

async fn watch_status(
    mut status: tokio::sync::watch::Receiver<Status>,
    n: usize,
    traces: Traces,
    armed: Arc<std::sync::atomic::AtomicBool>,
) {
    while status.changed().await.is_ok() {
        if !armed.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        let now = Instant::now();
        let current = status.borrow_and_update().clone();
        let mut traces = lock(&traces);
        let trace = &mut traces[n];
        match current {
            Status::Reconnecting { attempt, .. } => {
                trace.lost.get_or_insert(now);
                trace.attempts = trace.attempts.max(attempt);
            }
            Status::Connected { .. } if trace.lost.is_some() => {
                trace.back.get_or_insert(now);
            }
            _ => {}
        }
    }
}

async fn watch_updates(
    mut subscription: herald_client::Subscription,
    n: usize,
    traces: Traces,
    armed: Arc<std::sync::atomic::AtomicBool>,
) {
    while let Some(update) = subscription.next().await {
        let now = Instant::now();
        let mut traces = lock(&traces);
        let trace = &mut traces[n];
        match update {
            Update::Event(event) => {
                match event.data.entity_id.as_str() {
                    "probe-0" => trace.probed[0] = true,
                    "probe-1" => trace.probed[1] = true,
                    _ => {}
                }
                if trace.back.is_some() {
                    trace.received_after_restart.get_or_insert(now);
                }
            }
            Update::Resync { .. } if armed.load(std::sync::atomic::Ordering::SeqCst) => trace.resynced = true,
            _ => {}
        }
    }
}
