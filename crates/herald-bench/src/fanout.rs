//! Fan-out: N subscribers, one publisher per server at a fixed rate in all,
//! publish-to-deliver latency, throughput, losses and duplicates.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    BenchError, Latency,
    connect::{Target, Ws},
    frame::EventFields,
    latency::histogram,
    publish::{PublishVia, Publisher},
};

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FanoutOptions {
    /// The servers' WebSocket URLs, several for the nodes of one cluster:
    /// subscriber `i` connects to `urls[i % urls.len()]`, and each URL gets
    /// a publisher with an equal share of `rate`.
    pub urls: Vec<String>,
    /// Subscribing connections. Default 100.
    pub subscribers: usize,
    /// Topics `bench:0..topics`; subscriber `i` takes topic `i % topics`. Default 1.
    pub topics: usize,
    /// Events published per second, over all topics. Default 100.
    pub rate: u64,
    /// How long to publish. Default 5 s.
    pub duration: Duration,
    /// Connections opened at once. Default 256.
    pub connect_concurrency: usize,
    /// Longest wait after publishing for deliveries to arrive. Default 10 s.
    pub drain: Duration,
    /// How events are published. Default over WebSocket.
    pub publish: PublishVia,
}

impl FanoutOptions {
    /// Defaults against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            subscribers: 100,
            topics: 1,
            rate: 100,
            duration: Duration::from_secs(5),
            connect_concurrency: 256,
            drain: Duration::from_secs(10),
            publish: PublishVia::WebSocket,
        }
    }
}

/// What a fan-out run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Subscribing connections.
    pub subscribers: usize,
    /// Topics.
    pub topics: usize,
    /// Seconds to open and subscribe every connection.
    pub connect_secs: f64,
    /// Events the publisher sent.
    pub published: u64,
    /// Acks the publisher got.
    pub acked: u64,
    /// Deliveries that should have happened.
    pub expected: u64,
    /// Deliveries that happened (duplicates excluded).
    pub delivered: u64,
    /// Delivered per second, from the first publish to the last delivery.
    pub deliveries_per_sec: f64,
    /// Publish-to-deliver latency.
    pub latency: Latency,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries of a `seq` a connection had already seen.
    pub duplicates: u64,
    /// Connections that failed or were closed during the run.
    pub errors: u64,
    /// Why publishing stopped early, if it did.
    pub publish_error: Option<String>,
}

impl FanoutReport {
    /// A table for people.
    pub fn table(&self) -> String {
        let l = &self.latency;
        format!(
            "subscribers {:>8}   topics {:>5}   connect {:>7.2} s\n\
             published   {:>8}   acked {:>6}\n\
             delivered   {:>8} of {} ({:.0}/s)\n\
             latency     p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms\n\
             lost {}   duplicates {}   errors {}{}",
            self.subscribers,
            self.topics,
            self.connect_secs,
            self.published,
            self.acked,
            self.delivered,
            self.expected,
            self.deliveries_per_sec,
            l.p50_us as f64 / 1e3,
            l.p90_us as f64 / 1e3,
            l.p99_us as f64 / 1e3,
            l.max_us as f64 / 1e3,
            self.lost,
            self.duplicates,
            self.errors,
            self.publish_error.as_ref().map_or(String::new(), |e| format!("\npublishing failed: {e}")),
        )
    }
}

/// Latencies recorded by many tasks: a few locked histograms, each fed in
/// batches, and delivery counters updated at once (the drain waits on them).
struct Shared {
    base: Instant,
    shards: Vec<Mutex<Histogram<u64>>>,
    delivered: Vec<Counter>,
}

/// One counter per cache line, so receiving threads do not contend.
#[repr(align(64))]
#[derive(Default)]
struct Counter(AtomicU64);

const BATCH: usize = 512;

/// One RFC 3339 timestamp for every event: servers that validate it accept
/// it, and formatting one per event would cost the publisher time.
const TIMESTAMP: &str = "2026-01-01T00:00:00Z";

impl Shared {
    fn record(&self, shard: usize, batch: &mut Vec<u64>) {
        let mut histogram = self.shards[shard % self.shards.len()].lock().expect("no recorder panics");
        for &us in batch.iter() {
            histogram.saturating_record(us.max(1));
        }
        batch.clear();
    }

    fn count(&self, shard: usize) {
        self.delivered[shard % self.delivered.len()].0.fetch_add(1, Ordering::Relaxed);
    }

    fn delivered(&self) -> u64 {
        self.delivered.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

#[derive(Debug, Default)]
struct Received {
    duplicates: u64,
    last_ns: u64,
    failed: bool,
}

async fn receive(mut ws: Ws, index: usize, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Received {
    let mut out = Received::default();
    let mut last_seq = 0;
    let mut batch = Vec::with_capacity(BATCH);
    let fields = EventFields::new();
    // One stop future for the whole run, polled only when no frame is ready:
    // a fresh one per frame was a tenth of the generator's CPU.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let message = tokio::select! {
            biased;
            message = ws.next() => message,
            _ = &mut stopped => break,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let Some((seq, sent)) = fields.read(&text) else {
                    continue;
                };
                if seq <= last_seq {
                    out.duplicates += 1;
                    continue;
                }
                last_seq = seq;
                let now = shared.now_ns();
                out.last_ns = now;
                shared.count(index);
                batch.push(now.saturating_sub(sent) / 1_000);
                if batch.len() == BATCH {
                    shared.record(index, &mut batch);
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                out.failed = true;
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    shared.record(index, &mut batch);
    out
}

/// What one publisher sent, and the publisher, still open for its last acks.
struct Published {
    publisher: Publisher,
    per_topic: Vec<u64>,
    error: Option<String>,
}

/// Publishes `rate` events per second for `duration`, topic by topic in turn.
async fn publish(
    mut publisher: Publisher,
    node: usize,
    rate: u64,
    options: &FanoutOptions,
    shared: &Shared,
    run_id: u128,
) -> Published {
    let topics = options.topics.max(1);
    let started = Instant::now();
    let mut per_topic = vec![0u64; topics];
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut error = None;
    while started.elapsed() < options.duration && error.is_none() {
        tick.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        while published < due {
            let topic = (published % topics as u64) as usize;
            let id = format!("b{run_id:x}-{node}-{published}");
            let body = format!(
                r#""topic":"bench:{topic}","event":"UPDATED","data":{{"entity_id":"{published}","payload":{{"sent_ns":{}}},"timestamp":"{TIMESTAMP}"}}"#,
                shared.now_ns()
            );
            if let Err(e) = publisher.feed(&id, &body).await {
                error = Some(e);
                break;
            }
            published += 1;
            per_topic[topic] += 1;
        }
        if let Err(e) = publisher.flush().await {
            error.get_or_insert(e);
        }
    }
    Published { publisher, per_topic, error }
}

/// Runs the fan-out benchmark.
pub async fn run(options: &FanoutOptions) -> Result<FanoutReport, BenchError> {
    let topics = options.topics.max(1);
    let nodes = options.urls.len();
    if nodes == 0 {
        return Err(BenchError::Url { url: String::new(), problem: "no URL given".into() });
    }
    let mut targets = Vec::with_capacity(nodes);
    for (node, url) in options.urls.iter().enumerate() {
        // This server's share of the subscribers, and its publisher.
        let connections = (options.subscribers + nodes - 1 - node) / nodes + 1;
        targets.push(Target::new(url, connections).await?);
    }
    let shared = Arc::new(Shared {
        base: Instant::now(),
        shards: (0..16).map(|_| Mutex::new(histogram())).collect(),
        delivered: (0..16).map(|_| Counter::default()).collect(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    let connect_started = Instant::now();
    let opened: Vec<Result<Ws, BenchError>> = stream::iter(0..options.subscribers)
        .map(|i| {
            let target = &targets[i % nodes];
            async move { target.open_subscribed(i, &format!("bench:{}", i % topics)).await }
        })
        .buffer_unordered(options.connect_concurrency.max(1))
        .collect()
        .await;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let mut receivers = Vec::with_capacity(opened.len());
    for (index, ws) in opened.into_iter().enumerate() {
        receivers.push(tokio::spawn(receive(ws?, index, shared.clone(), stop_rx.clone())));
    }

    let mut publishers = Vec::with_capacity(nodes);
    for (node, (target, url)) in targets.iter().zip(&options.urls).enumerate() {
        publishers.push(match options.publish {
            PublishVia::WebSocket => Publisher::websocket(target.open(options.subscribers + node).await?),
            PublishVia::Http => Publisher::http(target.addr(), url).await?,
        });
    }

    // Ids unique across runs: servers drop a user's repeated publish ids as retransmissions.
    let run_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let first_publish_ns = shared.now_ns();
    // Side by side, so that a node slow to take its publishes does not hold back the others'.
    let share = |node: usize| options.rate / nodes as u64 + u64::from((node as u64) < options.rate % nodes as u64);
    let sent = futures::future::join_all(
        publishers.into_iter().enumerate().map(|(node, p)| publish(p, node, share(node), options, &shared, run_id)),
    )
    .await;
    let mut published_per_topic = vec![0u64; topics];
    for done in &sent {
        for (total, n) in published_per_topic.iter_mut().zip(&done.per_topic) {
            *total += n;
        }
    }
    let published = published_per_topic.iter().sum();

    let subscribers_per_topic =
        |t: usize| (options.subscribers / topics + usize::from(t < options.subscribers % topics)) as u64;
    let expected: u64 = published_per_topic.iter().enumerate().map(|(t, n)| n * subscribers_per_topic(t)).sum();
    let drain_until = Instant::now() + options.drain;
    while shared.delivered() < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let mut duplicates = 0;
    let mut errors = sent.iter().filter(|done| done.error.is_some()).count() as u64;
    let mut last_ns = first_publish_ns;
    for receiver in receivers {
        let received = receiver.await.unwrap_or(Received { failed: true, ..Default::default() });
        duplicates += received.duplicates;
        errors += u64::from(received.failed);
        last_ns = last_ns.max(received.last_ns);
    }
    let mut publish_error = None;
    let mut finishing = Vec::with_capacity(sent.len());
    for done in sent {
        publish_error = publish_error.or(done.error);
        finishing.push(done.publisher.finish());
    }
    let acked = futures::future::join_all(finishing).await.into_iter().sum();

    let delivered = shared.delivered();
    let mut merged = histogram();
    for shard in &shared.shards {
        merged.add(&*shard.lock().expect("no recorder panics")).expect("histograms share bounds");
    }
    let window = (last_ns.saturating_sub(first_publish_ns)) as f64 / 1e9;
    Ok(FanoutReport {
        subscribers: options.subscribers,
        topics,
        connect_secs,
        published,
        acked,
        expected,
        delivered,
        deliveries_per_sec: if window > 0.0 { delivered as f64 / window } else { 0.0 },
        latency: Latency::from_histogram(&merged),
        lost: expected.saturating_sub(delivered),
        duplicates,
        errors,
        publish_error,
    })
}
