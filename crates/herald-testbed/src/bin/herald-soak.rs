//! `herald-soak --seconds S --clients N`: the chaos soak of `cargo xtask
//! soak`, on loopback only. N native clients subscribe, unsubscribe, publish
//! and reconnect at random through a fault proxy that cuts, black-holes,
//! delays and refuses connections, while the server is restarted and its
//! connections dropped now and then: half the time against one server, half
//! against a two-node cluster on a real `redis-server`, each node behind a
//! proxy of its own. Then the faults stop and it checks:
//!
//! - every acked publish reached every subscription that stayed, from the
//!   first event it saw on, unless the subscription got `Resync` after it;
//! - no subscription saw an event twice;
//! - once the clients are gone, the server holds no connection or
//!   subscription, the process has as many tasks and file descriptors as
//!   before the clients came, and its memory after the second phase is
//!   near where the first left it.
//!
//! Prints the figures as one JSON object (docs/reliability.md shows them);
//! exits non-zero if a check fails, and names each subscription that lost
//! events. The clients run in the same process as the servers, so the memory
//! figures are the whole process's, and the allocator keeps much of what the
//! clients freed: a leak shows as growth from one phase to the next.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use herald_client::{BackoffConfig, Client, Subscription, Update};
use herald_protocol::close;
use herald_server::{Epoch, Server, ServerHandle};
use herald_test_support::{RedisServer, proxy::FaultProxy};
use serde_json::json;
use tokio::{sync::watch, task::JoinSet};

/// Enough topics that each has tens of subscribers, not hundreds: the
/// fan-out of a thousand clients stays within what two shared cores deliver.
const TOPICS: usize = 100;
/// Subscriptions one client holds at most.
const MAX_SUBSCRIPTIONS: usize = 3;
/// Heartbeats short enough that a black-holed connection heals within seconds.
const PING: Duration = Duration::from_millis(1_000);
const IDLE: Duration = Duration::from_millis(3_000);

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: u64| {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map_or(Some(default), |v| v.parse().ok())
    };
    let (Some(seconds), Some(clients)) = (value("--seconds", 60), value("--clients", 200)) else {
        eprintln!("usage: herald-soak [--seconds S] [--clients N]");
        return std::process::ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let figures = runtime.block_on(soak(Duration::from_secs(seconds), clients as usize));
    println!("{}", serde_json::to_string_pretty(&figures.json()).expect("JSON"));
    if figures.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        for failure in &figures.failures {
            eprintln!("herald-soak: {failure}");
        }
        std::process::ExitCode::FAILURE
    }
}

/// What one subscription saw: the seqs of each stretch between resyncs.
#[derive(Default)]
struct Seen {
    topic: usize,
    segments: Vec<Vec<u64>>,
    /// The subscription was still held when the faults stopped.
    stayed: bool,
}

#[derive(Default)]
struct Counters {
    subscribes: AtomicU64,
    unsubscribes: AtomicU64,
    reconnects: AtomicU64,
    publishes_acked: AtomicU64,
    publishes_failed: AtomicU64,
    events: AtomicU64,
    resyncs: AtomicU64,
}

/// Everything the clients did and saw, shared by their tasks.
#[derive(Default)]
struct Ledger {
    counters: Counters,
    /// Acked seqs per topic.
    acked: Mutex<HashMap<usize, Vec<u64>>>,
    seen: Mutex<Vec<Arc<Mutex<Seen>>>>,
    /// Clients still acting: one may be awaiting a publish's ack when the
    /// stage turns quiet, and an ack that comes after the check began would
    /// be owed to subscriptions no longer watched.
    acting: AtomicUsize,
    /// Resyncs by reason (`Debug` of the reason, without its fields).
    resyncs: Mutex<BTreeMap<String, u64>>,
}

#[derive(Default)]
struct Figures {
    seconds: u64,
    clients: usize,
    /// Per phase.
    faults: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    lost: u64,
    duplicates: u64,
    checked_subscriptions: u64,
    memory: BTreeMap<&'static str, u64>,
    /// Per phase: tasks and file descriptors before the clients and after.
    leaks: BTreeMap<&'static str, [usize; 4]>,
    /// Per phase.
    counters: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    resyncs: BTreeMap<&'static str, BTreeMap<String, u64>>,
    failures: Vec<String>,
}

impl Figures {
    fn json(&self) -> serde_json::Value {
        json!({
            "seconds": self.seconds,
            "clients": self.clients,
            "counters": self.counters,
            "faults": self.faults,
            "resyncs_by_reason": self.resyncs,
            "checked_subscriptions": self.checked_subscriptions,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "memory_kib": self.memory,
            "tasks_and_fds_before_and_after": self.leaks,
            "failures": self.failures,
        })
    }
}

async fn soak(duration: Duration, clients: usize) -> Figures {
    let mut figures = Figures { seconds: duration.as_secs(), clients, ..Figures::default() };
    let half = duration / 2;
    // One server behind one proxy.
    let ledger = Arc::new(Ledger::default());
    let single = phase(&ledger, vec![node(None).await], half, clients, &mut figures).await;
    record(&ledger, "single node", &mut figures);
    // Two nodes on one Redis, each behind its own proxy; seqs start again.
    let redis = RedisServer::start().await;
    let ledger = Arc::new(Ledger::default());
    let nodes = vec![node(Some(&redis)).await, node(Some(&redis)).await];
    let cluster = phase(&ledger, nodes, duration - half, clients, &mut figures).await;
    record(&ledger, "two-node cluster", &mut figures);
    figures.memory.insert("peak", proc_status("VmHWM:"));
    drop((single, cluster, redis));
    figures
}

/// Copies a phase's counters into the figures.
fn record(ledger: &Ledger, phase: &'static str, figures: &mut Figures) {
    let c = &ledger.counters;
    let counters = figures.counters.entry(phase).or_default();
    for (name, counter) in [
        ("subscribes", &c.subscribes),
        ("unsubscribes", &c.unsubscribes),
        ("reconnects", &c.reconnects),
        ("publishes_acked", &c.publishes_acked),
        ("publishes_failed", &c.publishes_failed),
        ("events_received", &c.events),
        ("resyncs", &c.resyncs),
    ] {
        counters.insert(name, counter.load(Ordering::Relaxed));
    }
    figures.resyncs.insert(phase, lock(&ledger.resyncs).clone());
}

async fn node(redis: Option<&RedisServer>) -> (ServerHandle, FaultProxy) {
    let mut builder = Server::builder().dev(true).heartbeat(PING, IDLE).shutdown_spread(Duration::from_millis(200));
    if let Some(redis) = redis {
        builder = builder.redis(redis.url());
    }
    // Every client comes from 127.0.0.1.
    builder.config_mut().max_connections_per_ip = usize::MAX;
    let server = builder.bind("127.0.0.1:0").await.expect("bind a loopback port");
    let proxy = FaultProxy::start(server.local_addr()).await;
    (server, proxy)
}

/// Runs the clients against `nodes` for `duration` with faults, then checks.
async fn phase(
    ledger: &Arc<Ledger>,
    nodes: Vec<(ServerHandle, FaultProxy)>,
    duration: Duration,
    clients: usize,
    figures: &mut Figures,
) -> Vec<(ServerHandle, FaultProxy)> {
    let name = if nodes.len() == 1 { "single node" } else { "two-node cluster" };
    eprintln!("herald-soak: {name}, {clients} clients, {} s", duration.as_secs());
    // Let the servers' own tasks settle before counting them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tasks_before, fds_before, rss_before) = (alive_tasks(), open_fds(), proc_status("VmRSS:"));
    figures.memory.entry("baseline").or_insert(rss_before);
    let urls: Vec<String> = nodes.iter().map(|(_, proxy)| proxy.ws_url()).collect();
    let (stage, staged) = watch::channel(Stage::Acting);
    let mut tasks = JoinSet::new();
    ledger.acting.store(clients, Ordering::SeqCst);
    for n in 0..clients {
        let (ledger, urls, staged) = (ledger.clone(), urls.clone(), staged.clone());
        tasks.spawn(client(n, ledger, urls, staged));
    }
    let started = Instant::now();
    let mut nodes = nodes;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1_000..3_000))).await;
        let pick = fastrand::usize(..nodes.len());
        let (server, proxy) = &mut nodes[pick];
        proxy.delay(Duration::ZERO);
        proxy.refuse(false);
        let fault = match fastrand::u8(..6) {
            0 => {
                proxy.cut();
                "cut"
            }
            1 => {
                proxy.blackhole();
                "black-hole"
            }
            2 => {
                proxy.delay(Duration::from_millis(fastrand::u64(20..300)));
                "delay"
            }
            3 => {
                proxy.refuse(true);
                "refuse"
            }
            4 => {
                server.restart(Epoch::Same).await.expect("the server restarts on its address");
                "server restart"
            }
            _ => {
                server.disconnect_all(close::ABNORMAL);
                "drop all connections"
            }
        };
        *figures.faults.entry(name).or_default().entry(fault).or_default() += 1;
    }
    // The faults and the clients' actions stop; black-holed links are cut so
    // their clients reconnect.
    let _ = stage.send(Stage::Quiet);
    for (_, proxy) in &nodes {
        proxy.delay(Duration::ZERO);
        proxy.refuse(false);
        proxy.cut();
    }
    let checked = caught_up(ledger).await;
    figures.checked_subscriptions += checked.len() as u64;
    let _ = stage.send(Stage::Leaving);
    while tasks.join_next().await.is_some() {}
    let (lost, duplicates) = tally(ledger, &checked, true);
    figures.lost += lost;
    figures.duplicates += duplicates;
    if lost > 0 || duplicates > 0 {
        figures.failures.push(format!("{name}: {lost} events lost, {duplicates} duplicates"));
    }
    // With the clients gone, the servers and the process come back to where they were.
    let settled = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let held = nodes.iter().map(|(s, _)| s.metrics()).any(|m| m.connections + m.subscriptions > 0);
            if !held && alive_tasks() <= tasks_before && open_fds() <= fds_before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (tasks_after, fds_after, rss_after) = (alive_tasks(), open_fds(), proc_status("VmRSS:"));
    figures.memory.insert(if nodes.len() == 1 { "after_single" } else { "after_cluster" }, rss_after);
    figures.leaks.insert(name, [tasks_before, tasks_after, fds_before, fds_after]);
    if settled.is_err() {
        let held: Vec<_> = nodes.iter().map(|(s, _)| s.metrics()).collect();
        figures.failures.push(format!(
            "{name}: 15 s after the clients left: tasks {tasks_before} -> {tasks_after}, fds {fds_before} -> {fds_after}, server state {held:?}"
        ));
    }
    // The allocator keeps what the clients freed for reuse, so the first
    // phase's level is the baseline of the second: the same load again, with
    // thousands more connections made and dropped, must not grow it.
    if let Some(&before) = figures.memory.get("after_single")
        && nodes.len() > 1
        && rss_after > before + 32 * 1024
    {
        figures.failures.push(format!("{name}: memory grew from {before} KiB to {rss_after} KiB"));
    }
    nodes
}

/// Waits (up to 60 s) until no client acts any more and every subscription
/// that stayed has every acked event after its first; returns those
/// subscriptions.
async fn caught_up(ledger: &Ledger) -> Vec<Arc<Mutex<Seen>>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.acting.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let stayed: Vec<_> = lock(&ledger.seen).iter().filter(|s| lock(s).stayed).cloned().collect();
        if tally(ledger, &stayed, false).0 == 0 || Instant::now() > deadline {
            return stayed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Events lost by the subscriptions that stayed, and duplicates seen by any.
fn tally(ledger: &Ledger, stayed: &[Arc<Mutex<Seen>>], report: bool) -> (u64, u64) {
    let acked = lock(&ledger.acked);
    let mut lost = 0;
    for seen in stayed {
        let seen = lock(seen);
        let Some(last) = seen.segments.last() else { continue };
        let Some(&first) = last.first() else { continue };
        let got: HashSet<u64> = last.iter().copied().collect();
        let missing: Vec<u64> = acked
            .get(&seen.topic)
            .map(|seqs| seqs.iter().copied().filter(|&s| s > first && !got.contains(&s)).collect())
            .unwrap_or_default();
        if !missing.is_empty() && report {
            eprintln!(
                "lost on soak:{}: {:?} (first {first}, last {:?}, {} seen, {} segments)",
                seen.topic,
                &missing[..missing.len().min(5)],
                last.last(),
                last.len(),
                seen.segments.len()
            );
        }
        lost += missing.len() as u64;
    }
    let mut duplicates = 0;
    for seen in lock(&ledger.seen).iter() {
        for segment in &lock(seen).segments {
            duplicates += (segment.len() - segment.iter().collect::<HashSet<_>>().len()) as u64;
        }
    }
    (lost, duplicates)
}

/// Where a phase is, for its clients.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd)]
enum Stage {
    Acting,
    /// No more actions; the subscriptions are held while they are checked.
    Quiet,
    Leaving,
}

/// One user: a client that acts at random until the stage is quiet,
/// reconnecting now and then with a new client (to a random node).
async fn client(n: usize, ledger: Arc<Ledger>, urls: Vec<String>, mut stage: watch::Receiver<Stage>) {
    let connect = || {
        let mut backoff = BackoffConfig::default();
        backoff.initial = Duration::from_millis(50);
        backoff.max = Duration::from_millis(1_000);
        Client::builder(urls[fastrand::usize(..urls.len())].as_str())
            .token(format!("soak-{n}"))
            .backoff(backoff)
            .heartbeat(PING, IDLE)
            .connect()
            .expect("a valid URL inside a runtime")
    };
    let mut client = connect();
    let mut held: Vec<(Arc<Mutex<Seen>>, watch::Sender<bool>)> = Vec::new();
    let counters = &ledger.counters;
    loop {
        tokio::select! {
            _ = stage.wait_for(|stage| *stage >= Stage::Quiet) => break,
            () = tokio::time::sleep(Duration::from_millis(fastrand::u64(1_000..6_000))) => {}
        }
        match fastrand::u8(..10) {
            0..=3 if held.len() < MAX_SUBSCRIPTIONS => {
                let topic = fastrand::usize(..TOPICS);
                let Ok(Ok(subscription)) =
                    tokio::time::timeout(Duration::from_secs(5), client.subscribe(&format!("soak:{topic}"))).await
                else {
                    continue;
                };
                counters.subscribes.fetch_add(1, Ordering::Relaxed);
                let seen = Arc::new(Mutex::new(Seen { topic, segments: vec![Vec::new()], stayed: false }));
                lock(&ledger.seen).push(seen.clone());
                let (leave, left) = watch::channel(false);
                tokio::spawn(read(subscription, seen.clone(), ledger.clone(), left));
                held.push((seen, leave));
            }
            4 if !held.is_empty() => {
                let (_, leave) = held.swap_remove(fastrand::usize(..held.len()));
                let _ = leave.send(true);
                counters.unsubscribes.fetch_add(1, Ordering::Relaxed);
            }
            9 => {
                // A new connection, as after a page reload: the old client's subscriptions end.
                client.close().await;
                for (_, leave) in held.drain(..) {
                    let _ = leave.send(true);
                }
                client = connect();
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let topic = fastrand::usize(..TOPICS);
                let (name, payload) = (format!("soak:{topic}"), json!({"n": n}));
                let publish = client.publish(&name, "UPDATED", format!("e-{n}"), &payload);
                match tokio::time::timeout(Duration::from_secs(5), publish).await {
                    Ok(Ok(ack)) => {
                        counters.publishes_acked.fetch_add(1, Ordering::Relaxed);
                        if let Some(seq) = ack.seq {
                            lock(&ledger.acked).entry(topic).or_default().push(seq);
                        }
                    }
                    _ => {
                        counters.publishes_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    ledger.acting.fetch_sub(1, Ordering::SeqCst);
    let _ = stage.wait_for(|stage| *stage == Stage::Leaving).await;
    for (_, leave) in held {
        let _ = leave.send(true);
    }
    client.close().await;
}

/// Records what one subscription receives until it is left.
async fn read(
    mut subscription: Subscription,
    seen: Arc<Mutex<Seen>>,
    ledger: Arc<Ledger>,
    mut left: watch::Receiver<bool>,
) {
    lock(&seen).stayed = true;
    loop {
        let update = tokio::select! {
            _ = left.wait_for(|left| *left) => break,
            update = subscription.next() => update,
        };
        match update {
            Some(Update::Event(event)) => {
                ledger.counters.events.fetch_add(1, Ordering::Relaxed);
                let seq = event.seq.expect("Herald's server numbers events");
                lock(&seen).segments.last_mut().expect("one segment at least").push(seq);
            }
            Some(Update::Resync { reason, .. }) => {
                ledger.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                let reason = format!("{reason:?}").split([' ', '{']).next().unwrap_or_default().to_owned();
                *lock(&ledger.resyncs).entry(reason).or_default() += 1;
                lock(&seen).segments.push(Vec::new());
            }
            Some(_) => {}
            None => break,
        }
    }
    lock(&seen).stayed = false;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().expect("no soak task panics holding a lock")
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// A KiB figure of /proc/self/status (`VmRSS:`, `VmHWM:`).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(ledger: &Ledger, topic: usize, segments: &[&[u64]], stayed: bool) -> Arc<Mutex<Seen>> {
        let seen =
            Arc::new(Mutex::new(Seen { topic, segments: segments.iter().map(|s| s.to_vec()).collect(), stayed }));
        lock(&ledger.seen).push(seen.clone());
        seen
    }

    #[test]
    fn an_acked_event_missing_after_the_first_seen_is_lost_unless_a_resync_came_after_it() {
        let ledger = Ledger::default();
        lock(&ledger.acked).insert(1, vec![1, 2, 3, 4, 5]);
        // Subscribed after 1 (not owed), missed 4.
        let gap = subscription(&ledger, 1, &[&[2, 3, 5]], true);
        assert_eq!(tally(&ledger, &[gap], false), (1, 0));
        // Missed 2 and 3, then said so with a resync.
        let resynced = subscription(&ledger, 1, &[&[1], &[4, 5]], true);
        assert_eq!(tally(&ledger, &[resynced], false), (0, 0));
    }

    #[test]
    fn an_event_seen_twice_in_one_stretch_is_a_duplicate_even_for_a_subscription_that_left() {
        let ledger = Ledger::default();
        lock(&ledger.acked).insert(2, vec![7, 8]);
        subscription(&ledger, 2, &[&[7, 8, 8]], false);
        let fine = subscription(&ledger, 2, &[&[7, 8]], true);
        assert_eq!(tally(&ledger, &[fine], false), (0, 1));
    }
}
