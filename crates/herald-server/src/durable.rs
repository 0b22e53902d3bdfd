//! Durable history ([`ServerConfig::data_dir`]): how publishes reach the
//! store before anyone sees them, what a restart reads back, and how two
//! processes hand the store over during a `--reuse-port` deploy.
//!
//! ```text
//!  publish ─▶ channel ─▶ writer thread: take every publish waiting (group commit),
//!  (any task)              dedup and number them, one redb transaction, commit (fsync),
//!      ▲                   then for each, in order: history + fan-out (Hub), ack
//!      └──────── ack ──────┘
//! ```
//!
//! **Write path.** One thread numbers and commits, so a topic's events keep
//! their order and no two publishes race for a `seq`. An event reaches no
//! subscriber, and its publisher no ack, before its commit returned: a
//! crash can lose only events nobody saw, whose numbers may then be given
//! again. Publishes arriving while a commit runs wait and share the next
//! one, so a commit's fsync is paid once per batch rather than per event.
//!
//! **Restart.** Opening reads every topic's position, the history within
//! the limits and the publish ids within the dedup window into the hub,
//! with the store's epoch (`store.rs` says when a new epoch starts instead).
//!
//! **Handover.** redb locks its file, so one process holds the store at a
//! time. A process that finds it held (the new one of a `--reuse-port`
//! deploy) serves at once but holds every request that needs the store
//! (WebSocket, SSE, polls, publishes) until it gets it, at most
//! [`STORE_WAIT`], and tries again every 50 ms. The old process lets go
//! when it shuts down ([`Herald::shutdown`](crate::Herald::shutdown)):
//! right after closing its connections, it commits the publishes it
//! accepted, refuses any later one and closes the store.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, Weak, mpsc},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};
use herald_protocol::{Event, Topic};
use tokio::{
    sync::{oneshot, watch},
    time::{sleep, timeout},
};
use tracing::{error, info, warn};

use crate::{
    ServerConfig, ServerError,
    app::{App, NotPublished},
    cluster::Unavailable,
    extract::Refusal,
    hub::{Conflict, DedupKey, Dropped, Hub, Tenant},
    store::{self, Changes, Limits, NewEvent, OpenError, Opened, Store},
    wildcard::Floor,
};

/// Longest time a request waits for the store before a 503.
pub(crate) const STORE_WAIT: Duration = Duration::from_secs(10);
/// Publishes one commit takes at most.
const MAX_BATCH: usize = 1024;
/// How often an idle writer takes what prune passes dropped.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How often a process waiting for the store tries to take it.
const RETRY_HELD: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Another process holds the store.
    Waiting,
    Open,
    /// Let go of at shutdown.
    Closed,
    /// Could not be opened after waiting, or a commit failed.
    Failed,
}

/// This process's hold on the store.
#[derive(Debug)]
pub(crate) struct Durable {
    dir: PathBuf,
    phase: Arc<watch::Sender<Phase>>,
    /// To the writer thread; `None` before the store is open and once it is closing.
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

#[expect(clippy::large_enum_variant, reason = "nearly every command is a publish: boxing it would allocate for each")]
enum Command {
    Publish(Publish),
    /// Commit what came before, then let go of the store.
    Close(oneshot::Sender<()>),
}

struct Publish {
    event: Event,
    dedup: Option<DedupKey>,
    if_seq: Option<u64>,
    reply: oneshot::Sender<Result<(u64, bool), NotPublished>>,
}

impl Durable {
    /// Opens the store in `dir` and restores what it kept into `hub`; if
    /// another process holds it, keeps trying in the background. A
    /// directory or disk that fails is an error.
    pub(crate) async fn open(config: &ServerConfig, dir: &Path, hub: &Arc<Hub>) -> Result<Arc<Self>, ServerError> {
        let durable = Arc::new(Self {
            dir: dir.to_owned(),
            phase: Arc::new(watch::channel(Phase::Waiting).0),
            commands: Mutex::default(),
        });
        let limits = Limits::from(config);
        match open_blocking(dir, limits.clone()).await {
            Ok(opened) => durable.start(opened, hub.clone()),
            Err(OpenError::Held) => {
                warn!(
                    store = %store::file(dir).display(),
                    "another process holds the store (the one a --reuse-port deploy replaces?): waiting for it to shut down; requests wait for the store up to 10 s meanwhile"
                );
                tokio::spawn(take_over(Arc::downgrade(&durable), Arc::downgrade(hub), limits));
            }
            Err(OpenError::Failed(reason)) => {
                return Err(ServerError::Store { dir: dir.display().to_string(), reason });
            }
        }
        Ok(durable)
    }

    /// Restores what the store kept into `hub` and starts the writer.
    fn start(&self, opened: Opened, hub: Arc<Hub>) {
        let Opened { store, epoch, kept, pruned_seq, pruned_wildcard_seq, topics, resources, publish_ids } = opened;
        hub.set_epoch(&epoch);
        hub.restore_pruned_seq(pruned_seq);
        hub.restore_pruned_wildcard_seq(pruned_wildcard_seq);
        // Each kept event's `wildcard_seq`, from its resource's marks.
        let mut numbered = HashMap::new();
        for resource in &resources {
            let tenant: Tenant = resource.tenant.as_deref().map(Into::into);
            for (wildcard_seq, topic, seq) in &resource.marks {
                numbered.insert((tenant.clone(), topic.clone(), *seq), *wildcard_seq);
            }
        }
        // The store keeps wall-clock times; the hub ages history by the monotonic clock.
        let (now_ms, now) = (store::now_ms(), Instant::now());
        let at = |ms: u64| now.checked_sub(Duration::from_millis(now_ms.saturating_sub(ms))).unwrap_or(now);
        let (topic_count, id_count) = (topics.len(), publish_ids.len());
        let mut events = 0;
        for topic in topics {
            events += topic.history.len();
            let tenant: Tenant = topic.tenant.map(Into::into);
            let mut key = (tenant, topic.topic, 0);
            let history = topic.history.into_iter().map(|(seq, ms, frame)| {
                key.2 = seq;
                (seq, numbered.get(&key).copied().unwrap_or(0), at(ms), frame.into())
            });
            let history = history.collect();
            hub.restore_topic(key.0, key.1, topic.seq, history);
        }
        for resource in resources {
            hub.restore_resource(resource.tenant.map(Into::into), &resource.resource, resource.floor, resource.marks);
        }
        for id in publish_ids {
            hub.remember_id((id.tenant.map(Into::into), id.user.into(), id.id), id.seq, at(id.at_ms));
        }
        if let Some(bytes) = &hub.metrics.store_bytes {
            bytes.set(store.size().try_into().unwrap_or(i64::MAX));
        }
        let path = store::file(&self.dir);
        if kept {
            info!(store = %path.display(), %epoch, topics = topic_count, events, publish_ids = id_count, "store opened: epoch and history kept");
        } else {
            info!(store = %path.display(), %epoch, "store opened: a new epoch starts");
        }
        let (commands, received) = mpsc::channel();
        *lock(&self.commands) = Some(commands);
        let phase = self.phase.clone();
        let writer = std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || write(store, &hub, &received, &phase));
        match writer {
            Ok(_) => {
                self.phase.send_replace(Phase::Open);
            }
            Err(error) => {
                error!(%error, "cannot start the store's writer thread: publishes are refused");
                self.phase.send_replace(Phase::Failed);
            }
        }
    }

    /// Whether this process holds the store and publishes.
    pub(crate) fn is_open(&self) -> bool {
        *self.phase.borrow() == Phase::Open
    }

    /// Waits, at most [`STORE_WAIT`], for the store to be open.
    pub(crate) async fn ready(&self) -> Result<(), Unavailable> {
        let mut phase = self.phase.subscribe();
        match timeout(STORE_WAIT, phase.wait_for(|phase| *phase != Phase::Waiting)).await {
            Ok(Ok(phase)) if *phase == Phase::Open => Ok(()),
            _ => Err(self.unavailable()),
        }
    }

    /// Why publishes cannot go through now.
    pub(crate) fn unavailable(&self) -> Unavailable {
        let store = store::file(&self.dir);
        let store = store.display();
        Unavailable(match *self.phase.borrow() {
            Phase::Waiting => {
                format!("another process still holds the store {store} (a deploy in progress): retry in a moment")
            }
            Phase::Open | Phase::Closed => {
                "this server is shutting down: the event was not published; retry, and its replacement will take it"
                    .into()
            }
            Phase::Failed => format!(
                "the store {store} failed (the server's log says how): the event was not published; retry once the server is back"
            ),
        })
    }

    /// Numbers `event`, commits it and only then delivers and acks it.
    /// With `dedup`, a publish id remembered returns its `seq` and is not
    /// sent again; with `if_seq`, only while the topic is at that `seq`
    /// (checked by the writer, which alone numbers). Returns the `seq` and
    /// whether it was a duplicate.
    pub(crate) async fn publish(
        &self,
        event: Event,
        dedup: Option<DedupKey>,
        if_seq: Option<u64>,
    ) -> Result<(u64, bool), NotPublished> {
        let mut published = self.publish_many(vec![(event, dedup, if_seq)]).await;
        published.pop().unwrap_or_else(|| Err(self.unavailable().into()))
    }

    /// Publishes `batch` in its order, as [`publish`](Self::publish) does
    /// each: every command goes to the writer before the first answer is
    /// awaited, so the batch costs one wait for the store, not one each.
    pub(crate) async fn publish_many(
        &self,
        batch: Vec<(Event, Option<DedupKey>, Option<u64>)>,
    ) -> Vec<Result<(u64, bool), NotPublished>> {
        if let Err(unavailable) = self.ready().await {
            return batch.iter().map(|_| Err(unavailable.clone().into())).collect();
        }
        let mut answers = Vec::with_capacity(batch.len());
        {
            let commands = lock(&self.commands);
            for (event, dedup, if_seq) in batch {
                let (reply, answer) = oneshot::channel();
                let command = Command::Publish(Publish { event, dedup, if_seq, reply });
                let sent = commands.as_ref().is_some_and(|commands| commands.send(command).is_ok());
                answers.push(sent.then_some(answer));
            }
        }
        let mut published = Vec::with_capacity(answers.len());
        for answer in answers {
            // A writer that stopped without answering never committed it.
            let answered = match answer {
                Some(answer) => answer.await.ok(),
                None => None,
            };
            published.push(answered.unwrap_or_else(|| Err(self.unavailable().into())));
        }
        published
    }

    /// Lets go of the store for a replacement: commits the publishes
    /// accepted so far, refuses later ones, closes the file.
    pub(crate) async fn close(&self) {
        let commands = lock(&self.commands).take();
        let Some(commands) = commands else {
            // Not open yet: stop waiting for it.
            self.phase.send_if_modified(|phase| std::mem::replace(phase, Phase::Closed) == Phase::Waiting);
            return;
        };
        let (done, closed) = oneshot::channel();
        if commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn open_blocking(dir: &Path, limits: Limits) -> Result<Opened, OpenError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Store::open(&dir, limits))
        .await
        .unwrap_or_else(|panic| Err(OpenError::Failed(format!("reading the store failed: {panic}"))))
}

/// Tries to take the store until the process holding it lets go, or this
/// Herald is gone or shut down.
async fn take_over(durable: Weak<Durable>, hub: Weak<Hub>, limits: Limits) {
    loop {
        sleep(RETRY_HELD).await;
        let Some(durable) = durable.upgrade() else { return };
        if *durable.phase.borrow() != Phase::Waiting {
            return;
        }
        match open_blocking(&durable.dir, limits.clone()).await {
            Err(OpenError::Held) => {}
            Ok(opened) => {
                if let Some(hub) = hub.upgrade()
                    && *durable.phase.borrow() == Phase::Waiting
                {
                    durable.start(opened, hub);
                }
                return;
            }
            Err(OpenError::Failed(reason)) => {
                error!(store = %store::file(&durable.dir).display(), %reason, "cannot open the store: publishes are refused");
                durable.phase.send_replace(Phase::Failed);
                return;
            }
        }
    }
}

/// The writer thread: commits batches until the store is closed, a commit
/// fails, or Herald is dropped.
fn write(store: Store, hub: &Hub, commands: &mpsc::Receiver<Command>, phase: &watch::Sender<Phase>) {
    loop {
        let first = match commands.recv_timeout(IDLE_TICK) {
            Ok(command) => Some(command),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut publishes = Vec::new();
        let mut close = None;
        for command in first.into_iter().chain(std::iter::from_fn(|| commands.try_recv().ok())) {
            match command {
                Command::Publish(publish) => publishes.push(publish),
                Command::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if publishes.len() == MAX_BATCH {
                break;
            }
        }
        let dropped = hub.take_dropped();
        let floors = hub.take_floors();
        if !(publishes.is_empty() && dropped.is_empty() && floors.is_empty()) {
            if let Err(error) = commit(&store, hub, publishes, (dropped, floors)) {
                error!(%error, "the store failed: publishes are refused until herald restarts");
                phase.send_replace(Phase::Failed);
                return;
            }
            if let Some(bytes) = &hub.metrics.store_bytes {
                bytes.set(store.size().try_into().unwrap_or(i64::MAX));
            }
        }
        if let Some(done) = close {
            drop(store);
            phase.send_replace(Phase::Closed);
            let _ = done.send(());
            return;
        }
    }
}

/// What became of one publish of a batch.
enum Outcome {
    /// Numbered, to deliver once committed.
    New { seq: (u64, u64), tenant: Tenant, topic: Topic, frame: String, dedup: Option<DedupKey> },
    /// Its id was published before, as this `seq`.
    Duplicate(u64),
    /// Its `if_seq` was not the topic's `seq`.
    Conflict(Conflict),
}

/// Numbers `publishes` in order, commits them with what prune passes
/// dropped and the floors that rose, then delivers and acks each; on a
/// failed commit, tells each publisher.
fn commit(
    store: &Store,
    hub: &Hub,
    publishes: Vec<Publish>,
    (dropped, floors): (Vec<Dropped>, Vec<Floor>),
) -> Result<(), store::StoreError> {
    let floors = floors
        .into_iter()
        .map(|Floor { tenant, resource, floor, gone }| (tenant.as_deref().map(Into::into), resource, floor, gone));
    let mut changes = Changes {
        dropped,
        pruned_seq: hub.pruned_seq(),
        floors: floors.collect(),
        pruned_wildcard_seq: hub.pruned_wildcard_seq(),
        ..Changes::default()
    };
    let mut positions: HashMap<(Tenant, Topic), u64> = HashMap::new();
    let mut ids: HashMap<DedupKey, u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(publishes.len());
    for Publish { mut event, dedup, if_seq, reply } in publishes {
        // Ids published earlier, or earlier in this batch.
        if let Some(seq) = dedup.as_ref().and_then(|key| ids.get(key).copied().or_else(|| hub.published_id(key))) {
            outcomes.push((reply, Outcome::Duplicate(seq)));
            continue;
        }
        let tenant: Tenant = event.data.tenant_id.as_deref().map(Into::into);
        let topic = event.topic.clone();
        let position =
            positions.entry((tenant.clone(), topic.clone())).or_insert_with(|| hub.position(&tenant, topic.as_str()));
        if let Some(expected) = if_seq
            && expected != *position
        {
            outcomes.push((reply, Outcome::Conflict(Conflict { current: *position })));
            continue;
        }
        *position += 1;
        let seq = *position;
        event.seq = Some(seq);
        // Delivered in this order, by this thread alone.
        let wildcard_seq = hub.next_wildcard_seq();
        event.wildcard_seq = Some(wildcard_seq);
        let frame = event.encode();
        if let Some((id_tenant, user, id)) = &dedup {
            ids.insert((id_tenant.clone(), user.clone(), id.clone()), seq);
            changes.publish_ids.push((id_tenant.as_deref().map(Into::into), user.to_string(), id.clone(), seq));
        }
        let stored_tenant = tenant.as_deref().map(Into::into);
        let new = NewEvent { tenant: stored_tenant, topic: topic.to_string(), seq, wildcard_seq, frame: frame.clone() };
        changes.events.push(new);
        outcomes.push((reply, Outcome::New { seq: (seq, wildcard_seq), tenant, topic, frame, dedup }));
    }
    if let Err(error) = store.commit(&changes) {
        let message = format!(
            "the store could not save the event ({error}): it was not published; retry once the server is back"
        );
        for (reply, _) in outcomes {
            let _ = reply.send(Err(Unavailable(message.clone()).into()));
        }
        return Err(error);
    }
    let now = Instant::now();
    for (reply, outcome) in outcomes {
        let answer = match outcome {
            Outcome::New { seq: (seq, wildcard_seq), tenant, topic, frame, dedup } => {
                hub.deliver_committed(&tenant, &topic, seq, wildcard_seq, frame.into());
                if let Some(key) = dedup {
                    hub.remember_id(key, seq, now);
                }
                Ok((seq, false))
            }
            Outcome::Duplicate(seq) => Ok((seq, true)),
            Outcome::Conflict(conflict) => Err(conflict.into()),
        };
        let _ = reply.send(answer);
    }
    Ok(())
}

/// Holds a request that needs the store until this process holds it (a
/// deploy's new process waits for the old one), at most [`STORE_WAIT`];
/// then answers 503.
pub(crate) async fn hold_until_open(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(durable) = &app.durable
        && let Err(unavailable) = durable.ready().await
    {
        return Refusal::new(StatusCode::SERVICE_UNAVAILABLE, unavailable.0).retry_after(1).into_response();
    }
    next.run(request).await
}
