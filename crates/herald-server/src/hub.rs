//! The hub: topics, their subscribers, sequence numbers, history, presence
//! and publish deduplication. Shared by every connection.
//!
//! Tenants are namespaces: a topic's state is kept per (tenant, topic), a
//! connection lives in its token's tenant (`None` without one), and an event
//! goes to the namespace of its `tenant_id`. A client therefore sees a
//! gap-free `seq` of its own tenant's events; filtering one shared sequence
//! per tenant would show it gaps on every foreign event.
//!
//! On a node of a cluster (`cluster.rs`) Redis numbers the events and every
//! node [applies](Hub::apply) them in the order the cluster channel brings
//! them; a node knows a topic's position only once it has seen one of its
//! events since it joined the channel, and says nothing about it before.
//!
//! Locking: topics live in shards, each behind a `std::sync::Mutex` held only
//! for map updates and non-blocking `try_send`s, never across an `.await`.
//! Lock order is epoch, then dedup shard, then topic shard, then resource
//! shard (`wildcard.rs`), then a cluster node's bus order; nothing takes
//! them the other way.

use std::{
    collections::{HashMap, VecDeque, hash_map},
    future::{Future, poll_fn},
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use futures_util::task::AtomicWaker;
use herald_protocol::{Event, Payload, PresenceDiff, ServerMessage, Topic, close};
use tokio::sync::Notify;
use tungstenite::Utf8Bytes;

use crate::{
    ServerConfig,
    metrics::{Metrics, MetricsSnapshot, Sizes, Transport},
    outbox::{FanoutTimer, Full, Outbox},
    presence::{Changes, Presence, Snapshot},
    wildcard::{self, BusOrder, Floor, Mark, Resource, Resources, resource_of},
};

/// One encoded message, shared by every connection it goes to: cloning is a
/// reference-count increment, so an event is serialized once however many
/// subscribers it has.
pub(crate) type Frame = Utf8Bytes;

const SHARDS: usize = 32;

/// At most one event per this interval has its fan-out timed.
const FANOUT_SAMPLE: Duration = Duration::from_millis(10);

/// Takes a lock even if a panicking thread poisoned it: the maps stay
/// consistent because no code panics halfway through an update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The hub's side of one connection (WebSocket, SSE stream or long poll).
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u64,
    pub(crate) user: Arc<str>,
    /// The namespace the connection lives in.
    pub(crate) tenant: Tenant,
    pub(crate) outbox: Outbox,
    /// What carries the connection, for the metrics.
    transport: Transport,
    /// The close code the connection must close with, 0 while it may live.
    killed: AtomicU16,
    /// The task waiting for a kill (a `Notify` and the future waiting on
    /// it would cost every idle connection 80 bytes more).
    kill_waker: AtomicWaker,
    /// Topics whose presence changes did not fit the outbox: the
    /// connection sends their presence whole once it has caught up.
    stale_presence: Mutex<Vec<Topic>>,
}

impl Peer {
    /// Queues `frame` without waiting; returns whether it was queued. A full
    /// queue means the consumer fell behind: it is closed with 4009 rather
    /// than buffered without bound. The caller counts what was queued, once
    /// per fan-out rather than with an atomic add per subscriber.
    fn deliver(&self, frame: &Frame, timer: Option<&Arc<FanoutTimer>>) -> bool {
        match self.outbox.push(frame, timer) {
            Ok(()) => true,
            Err(Full) => {
                self.kill(close::TOO_SLOW);
                false
            }
        }
    }

    /// Queues a presence change unless the outbox is half full: then the
    /// topic's presence is marked stale instead, to be sent whole once the
    /// connection has caught up. Presence traffic is the server's own doing
    /// and never closes a connection.
    fn deliver_presence(&self, frame: &Frame, topic: &Topic) -> bool {
        if self.outbox.len() < self.outbox.capacity() / 2 && self.outbox.push(frame, None).is_ok() {
            return true;
        }
        let mut stale = lock(&self.stale_presence);
        if !stale.contains(topic) {
            stale.push(topic.clone());
        }
        false
    }

    /// Takes the topics whose presence must be sent whole, once the
    /// outbox has room again.
    pub(crate) fn take_stale_presence(&self) -> Vec<Topic> {
        if self.outbox.len() >= self.outbox.capacity() / 2 {
            return Vec::new();
        }
        std::mem::take(&mut lock(&self.stale_presence))
    }

    /// Asks the connection to close with `code`; the first request wins.
    pub(crate) fn kill(&self, code: u16) -> bool {
        let first = self.killed.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if first {
            self.kill_waker.wake();
        }
        first
    }

    pub(crate) fn killed(&self) -> u16 {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once [`kill`](Self::kill) was called, earlier calls
    /// included. One task at a time may wait.
    pub(crate) fn wait_killed(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let peer = self.clone();
        poll_fn(move |cx| {
            if peer.killed() != 0 {
                return Poll::Ready(());
            }
            peer.kill_waker.register(cx.waker());
            // A kill between the check and the registration found no task
            // to wake, but set the code before it looked.
            if peer.killed() != 0 { Poll::Ready(()) } else { Poll::Pending }
        })
    }
}

/// A peer registered with the hub, and its subscriptions. Dropping it
/// unsubscribes and unregisters the peer however its task ends, a panic
/// included, so no ending connection can leak into the hub (the connection
/// gauge, presence, shutdown's wait for the last connection).
pub(crate) struct Connection {
    hub: Arc<Hub>,
    pub(crate) peer: Arc<Peer>,
    /// Sorted. Most connections hold a few topics for a long time: a set's
    /// table, or a vector's usual growth, would cost several times their
    /// size, so the first few are added one place at a time.
    topics: Vec<Topic>,
}

impl Connection {
    /// The topics (concrete and wildcards) it is subscribed to, sorted.
    pub(crate) fn topics(&self) -> &[Topic] {
        &self.topics
    }

    /// Whether it is subscribed to `topic`.
    pub(crate) fn holds(&self, topic: &Topic) -> bool {
        self.topics.binary_search(topic).is_ok()
    }

    fn add(&mut self, topic: &Topic) {
        if let Err(at) = self.topics.binary_search(topic) {
            if self.topics.len() < 4 {
                self.topics.reserve_exact(1);
            }
            self.topics.insert(at, topic.clone());
        }
    }

    /// Subscribes to a concrete topic; see [`Hub::subscribe`].
    pub(crate) fn subscribe(
        &mut self,
        topic: &Topic,
        presence: bool,
        meta: Option<&Payload>,
        since: Option<u64>,
        fetched: Option<Fetched>,
    ) -> Joined {
        self.add(topic);
        self.hub.subscribe(&self.peer, topic, presence, meta, since, fetched)
    }

    /// Sets this user's presence metadata in `topic`; see [`Hub::set_presence_meta`].
    pub(crate) fn set_presence_meta(&self, topic: &Topic, meta: &Payload) -> bool {
        self.hub.set_presence_meta(&self.peer, topic, meta)
    }

    /// Subscribes to every topic of `topic.resource()`; see [`Hub::subscribe_wildcard`].
    pub(crate) fn subscribe_wildcard(
        &mut self,
        topic: &Topic,
        since: Option<u64>,
        fetched: Option<wildcard::Fetched>,
    ) -> Joined {
        self.add(topic);
        self.hub.subscribe_wildcard(&self.peer, topic, since, fetched)
    }

    /// Counts that the server ended the connection with `code`.
    pub(crate) fn closed(&self, code: u16) {
        self.hub.metrics.closed(code);
    }

    /// Ends one subscription; returns whether there was one.
    pub(crate) fn unsubscribe(&mut self, topic: &Topic) -> bool {
        let Ok(at) = self.topics.binary_search(topic) else { return false };
        self.topics.remove(at);
        self.hub.unsubscribe(&self.peer, topic);
        true
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.disconnect(&self.peer, &self.topics);
    }
}

/// A tenant's namespace: `None` holds tenant-less connections and events.
pub(crate) type Tenant = Option<Arc<str>>;

/// Resources whose floor rose, by namespace and resource: the floor, and whether it went.
type FloorsDue = HashMap<(Tenant, String), (u64, bool)>;

/// One shard's topics, by namespace and name.
type Topics = HashMap<(Tenant, String), TopicState>;

struct Sub {
    peer: Arc<Peer>,
    presence: bool,
    /// Listed in the topic's presence (not when it was full).
    member: bool,
}

struct Stored {
    seq: u64,
    /// 0 for an event without one (from a node before wildcard recovery).
    wildcard_seq: u64,
    at: Instant,
    frame: Frame,
}

#[derive(Default)]
struct TopicState {
    /// Whether `seq` is the topic's position: always on a single node; on a
    /// node of a cluster only once it has seen an event of the topic.
    known: bool,
    seq: u64,
    history: History,
    /// With a store: the oldest `seq` the store may still hold, so that a
    /// prune pass reports only topics whose history moved since the last.
    stored_from: u64,
    subs: HashMap<u64, Sub>,
    presence: Presence,
}

impl TopicState {
    /// Drops history past `max_age`; returns the bytes freed.
    fn prune(&mut self, now: Instant, max_age: Duration) -> usize {
        let mut freed = 0;
        while self.history.front().is_some_and(|e| now.duration_since(e.at) > max_age) {
            freed += self.history.pop_front();
        }
        freed
    }
}

/// A topic's history, oldest first, with the bytes its frames hold.
#[derive(Default)]
struct History {
    events: VecDeque<Stored>,
    bytes: usize,
    /// The highest `wildcard_seq` dropped since its resource last heard
    /// of it ([`Hub::settle`]).
    dropped: u64,
}

impl History {
    fn front(&self) -> Option<&Stored> {
        self.events.front()
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Stored> {
        self.events.iter()
    }

    /// Returns the bytes added.
    fn push_back(&mut self, stored: Stored) -> usize {
        let bytes = stored.frame.len();
        self.bytes += bytes;
        self.events.push_back(stored);
        bytes
    }

    /// Returns the bytes freed.
    fn pop_front(&mut self) -> usize {
        let Some(gone) = self.events.pop_front() else { return 0 };
        self.dropped = self.dropped.max(gone.wildcard_seq);
        self.bytes -= gone.frame.len();
        gone.frame.len()
    }

    /// Returns the bytes freed.
    fn clear(&mut self) -> usize {
        if let Some(last) = self.events.back() {
            self.dropped = self.dropped.max(last.wildcard_seq);
        }
        self.events.clear();
        std::mem::take(&mut self.bytes)
    }

    /// The frame of the event numbered `seq`, if kept.
    fn get(&self, seq: u64) -> Option<&Frame> {
        let front = self.events.front()?.seq;
        let stored = self.events.get(usize::try_from(seq.checked_sub(front)?).ok()?)?;
        (stored.seq == seq).then_some(&stored.frame)
    }
}

/// What subscribing to one concrete topic found.
#[derive(Debug, Default)]
pub(crate) struct Joined {
    /// The topic's position, `None` while unknown (a node of a cluster that
    /// has not seen the topic yet).
    pub(crate) last_seq: Option<u64>,
    /// `Some` when a `since` was given: whether the gap could be replayed.
    pub(crate) recovered: Option<bool>,
    /// The missed events, oldest first, to send before `subscribed`.
    pub(crate) replay: Vec<Frame>,
    /// Who is there, for a subscription with presence.
    pub(crate) members: Option<Snapshot>,
    /// A subscription with presence to a topic whose presence is full: it
    /// gets presence but is not listed in it.
    pub(crate) unlisted: bool,
}

/// Who published with which id: the publisher's tenant and user (user ids
/// are unique only within a tenant), and the id the client chose. The same
/// on one node and across a cluster.
#[derive(Clone, Copy)]
pub(crate) struct PublishId<'a> {
    pub(crate) tenant: &'a Tenant,
    pub(crate) user: &'a Arc<str>,
    pub(crate) id: &'a str,
}

/// A [`PublishId`] kept for the dedup window.
pub(crate) type DedupKey = (Tenant, Arc<str>, String);

impl PublishId<'_> {
    pub(crate) fn key(&self) -> DedupKey {
        (self.tenant.clone(), self.user.clone(), self.id.to_owned())
    }
}

/// Remembered client publish ids, so retransmissions are acked, not re-broadcast.
#[derive(Default)]
struct Dedup {
    seen: HashMap<DedupKey, u64>,
    order: VecDeque<(Instant, DedupKey)>,
}

impl Dedup {
    /// Forgets ids past the window, and the oldest beyond `max` (a
    /// retransmission of one of those would be broadcast again).
    fn expire(&mut self, now: Instant, window: Duration, max: usize) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) <= window && self.order.len() < max {
                break;
            }
            if let Some((_, expired)) = self.order.pop_front() {
                self.seen.remove(&expired);
            }
        }
    }
}

/// A topic a prune pass dropped history of, for the store to drop too.
#[derive(Debug)]
pub(crate) struct Dropped {
    pub(crate) tenant: Tenant,
    pub(crate) topic: String,
    /// The topic's position when it was pruned.
    pub(crate) seq: u64,
    /// The oldest `seq` still kept, or `None` when the whole topic went.
    pub(crate) keep_from: Option<u64>,
}

pub(crate) struct Hub {
    epoch: RwLock<Arc<str>>,
    /// A node of a cluster: positions are learnt from the cluster channel.
    clustered: bool,
    shards: Box<[Mutex<Topics>]>,
    hasher: RandomState,
    /// Resource types, for their wildcards: by (tenant, resource), sharded as topics are.
    resources: Box<[Mutex<Resources>]>,
    /// The last `wildcard_seq` handed out in this epoch (on a single node).
    wildcard_seq: AtomicU64,
    /// On a node of a cluster, where Redis numbers them: from which one on
    /// the node saw every event.
    bus: Option<Mutex<BusOrder>>,
    /// The highest position of a resource dropped while idle: a new resource starts there.
    pruned_wildcard_seq: AtomicU64,
    /// With a store: resources whose floor rose (or that went, `true`),
    /// until the store's writer takes them.
    floors: Option<Mutex<FloorsDue>>,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    peers_gone: Notify,
    /// Set during shutdown: connections that slip in are closed at once.
    closing: AtomicBool,
    /// Sharded by key, so publishes of different ids rarely wait for each other.
    dedup: Box<[Mutex<Dedup>]>,
    /// Topics with presence changes to announce, and the wake-up of the
    /// task announcing them ([`flush_presence`](Self::flush_presence)).
    presence_due: Mutex<Vec<(Tenant, Topic)>>,
    pub(crate) presence_wake: Notify,
    max_presence_members: usize,
    /// On a node of a cluster: this node's presence lists that changed, for
    /// the other nodes, and the wake-up of the task telling them.
    presence_out: Mutex<Vec<LocalPresence>>,
    pub(crate) presence_out_wake: Notify,
    /// Versions of this node's presence lists: a list that arrives after a
    /// newer one of the same topic is ignored.
    presence_version: AtomicU64,
    next_id: AtomicU64,
    history_len: usize,
    history_max_age: Duration,
    /// Bytes of history one topic keeps at most, and all topics together.
    history_max_bytes: usize,
    history_total_bytes: usize,
    /// Bytes of history held now, across topics.
    history_bytes: AtomicUsize,
    /// Held by the one [`trim_history`](Self::trim_history) pass running.
    trimming: Mutex<()>,
    dedup_window: Duration,
    /// Publish ids remembered per dedup shard at most.
    dedup_per_shard: usize,
    /// The highest position of a topic pruned on a single node; see
    /// [`new_topic`](Self::new_topic).
    pruned_seq: AtomicU64,
    /// With a store (`ServerConfig::data_dir`): what prune passes dropped,
    /// until the store's writer takes it.
    dropped: Option<Mutex<Vec<Dropped>>>,
    /// When the hub started, and when (nanoseconds after) the next fan-out
    /// may be timed.
    started: Instant,
    next_timed: AtomicU64,
    pub(crate) metrics: Metrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("epoch", &self.epoch()).finish_non_exhaustive()
    }
}

impl Hub {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let epoch = config.epoch.clone().unwrap_or_else(|| format!("{:012x}", fastrand::u64(..) >> 16));
        let clustered = config.redis.is_some();
        Self {
            epoch: RwLock::new(epoch.into()),
            clustered,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            resources: (0..SHARDS).map(|_| Mutex::default()).collect(),
            wildcard_seq: AtomicU64::new(0),
            bus: clustered.then(Mutex::default),
            pruned_wildcard_seq: AtomicU64::new(0),
            floors: config.data_dir.is_some().then(Mutex::default),
            peers: Mutex::default(),
            peers_gone: Notify::new(),
            closing: AtomicBool::new(false),
            dedup: (0..SHARDS).map(|_| Mutex::default()).collect(),
            presence_due: Mutex::default(),
            presence_wake: Notify::new(),
            max_presence_members: config.max_presence_members,
            presence_out: Mutex::default(),
            presence_out_wake: Notify::new(),
            presence_version: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
            history_len: config.history_len,
            history_max_age: config.history_max_age,
            history_max_bytes: config.history_max_bytes,
            history_total_bytes: config.history_total_bytes,
            history_bytes: AtomicUsize::new(0),
            trimming: Mutex::default(),
            dedup_window: config.dedup_window,
            dedup_per_shard: config.max_publish_ids.div_ceil(SHARDS).max(1),
            pruned_seq: AtomicU64::new(0),
            dropped: config.data_dir.is_some().then(Mutex::default),
            started: Instant::now(),
            next_timed: AtomicU64::new(0),
            metrics: Metrics::new(clustered, config.data_dir.is_some()),
        }
    }

    /// The name of the history positions belong to.
    pub(crate) fn epoch(&self) -> Arc<str> {
        self.epoch.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes `epoch` as the history's name (a cluster's, from Redis). A
    /// different one means the history is gone: positions are forgotten and
    /// every connection is closed with 1001 and a reconnect hint, so that
    /// clients come back, see the new epoch and resync instead of dropping
    /// restarted `seq` numbers as duplicates.
    pub(crate) fn adopt_epoch(&self, epoch: &str) {
        if *self.epoch() == *epoch {
            return;
        }
        let mut current = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        if **current == *epoch {
            return;
        }
        *current = epoch.into();
        // Under the lock: nobody reads the new epoch before the old positions are gone.
        self.forget_positions();
        self.kill_all(close::GOING_AWAY);
    }

    /// The counters, with the gauges of what the hub holds.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot(&self.sizes())
    }

    /// `/metrics`, with the gauges of what the hub holds.
    pub(crate) fn render_metrics(&self) -> String {
        self.metrics.render(&self.sizes())
    }

    /// What the hub holds, measured now: a pass over topics, publish ids and
    /// connections, for scrapes rather than the hot path.
    fn sizes(&self) -> Sizes {
        let mut sizes = Sizes::default();
        for shard in &self.shards {
            let topics = lock(shard);
            sizes.topics += topics.len() as u64;
            sizes.history_events += topics.values().map(|state| state.history.len() as u64).sum::<u64>();
        }
        sizes.history_bytes = self.history_bytes.load(Ordering::Relaxed) as u64;
        sizes.publish_ids = self.dedup.iter().map(|dedup| lock(dedup).order.len() as u64).sum();
        for peer in lock(&self.peers).values() {
            let queued = peer.outbox.len() as u64;
            sizes.queued_frames += queued;
            sizes.longest_queue = sizes.longest_queue.max(queued);
        }
        sizes
    }

    /// Drops history past its age, and topics left with neither
    /// subscribers nor history: idle topics cost nothing. A client that
    /// comes back to a dropped topic with a position resyncs.
    pub(crate) fn prune_idle(&self) {
        let now = Instant::now();
        let mut dropped = Vec::new();
        for shard in &self.shards {
            lock(shard).retain(|(tenant, topic), state| {
                self.freed(state.prune(now, self.history_max_age));
                self.settle(tenant, resource_of(topic), &mut state.history);
                let keep = !state.subs.is_empty() || !state.history.is_empty() || !state.presence.is_empty();
                if !keep && !self.clustered {
                    self.pruned_seq.fetch_max(state.seq, Ordering::Relaxed);
                }
                let front = state.history.front().map_or(state.seq + 1, |e| e.seq);
                if self.dropped.is_some() && (!keep || front > state.stored_from) {
                    state.stored_from = front;
                    let keep_from = keep.then_some(front);
                    dropped.push(Dropped { tenant: tenant.clone(), topic: topic.clone(), seq: state.seq, keep_from });
                }
                keep
            });
        }
        if let Some(pending) = &self.dropped {
            lock(pending).append(&mut dropped);
        }
        for shard in &self.resources {
            lock(shard).retain(|name, by_tenant| {
                by_tenant.retain(|tenant, resource| {
                    if !resource.is_idle() {
                        return true;
                    }
                    self.pruned_wildcard_seq.fetch_max(resource.position(), Ordering::Relaxed);
                    if let Some(floors) = &self.floors {
                        lock(floors).insert((tenant.clone(), name.clone()), (resource.position(), true));
                    }
                    false
                });
                !by_tenant.is_empty()
            });
        }
    }

    /// Resources whose floor rose since the last call (`true`: that went,
    /// idle), with it, for the store.
    pub(crate) fn take_floors(&self) -> Vec<Floor> {
        let Some(floors) = &self.floors else { return Vec::new() };
        let floors = std::mem::take(&mut *lock(floors));
        floors.into_iter().map(|((tenant, resource), (floor, gone))| Floor { tenant, resource, floor, gone }).collect()
    }

    /// The highest position of a resource dropped while idle.
    pub(crate) fn pruned_wildcard_seq(&self) -> u64 {
        self.pruned_wildcard_seq.load(Ordering::Relaxed)
    }

    /// The next `wildcard_seq` (for the store's writer, which numbers the
    /// events it commits and delivers them in that order).
    pub(crate) fn next_wildcard_seq(&self) -> u64 {
        self.wildcard_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Restores a resource a store kept, after its topics: its floor and
    /// its marks, oldest first, as `(wildcard_seq, topic, seq)`. A mark
    /// whose event the history no longer holds raises the floor instead.
    /// Numbering goes on from above both.
    pub(crate) fn restore_resource(&self, tenant: Tenant, name: &str, floor: u64, marks: Vec<(u64, String, u64)>) {
        let top = marks.last().map_or(floor, |(wildcard_seq, ..)| floor.max(*wildcard_seq));
        self.wildcard_seq.fetch_max(top, Ordering::Relaxed);
        let mut resource = Resource::kept(floor);
        for (wildcard_seq, topic, seq) in marks {
            let shard = self.shard(&tenant, &topic);
            match shard.get(&(tenant.clone(), topic)).and_then(|state| state.history.get(seq)) {
                Some(frame) => resource.mark(Mark { wildcard_seq, frame: frame.clone() }),
                None => {
                    resource.passed(wildcard_seq);
                    resource.forget_through(wildcard_seq);
                }
            }
        }
        let mut shard = self.resource_shard(&tenant, name);
        *self.resource(&mut shard, &tenant, name) = resource;
    }

    /// Restores the highest position of the resources dropped before a
    /// restart (and numbers on from above it).
    pub(crate) fn restore_pruned_wildcard_seq(&self, seq: u64) {
        self.pruned_wildcard_seq.fetch_max(seq, Ordering::Relaxed);
        self.wildcard_seq.fetch_max(seq, Ordering::Relaxed);
    }

    fn resource_shard(&self, tenant: &Tenant, resource: &str) -> MutexGuard<'_, Resources> {
        let index = (self.hasher.hash_one((tenant, resource)) as usize) % SHARDS;
        lock(&self.resources[index])
    }

    /// The resource `name` of `tenant` in its `shard`, made if new.
    fn resource<'a>(&self, shard: &'a mut Resources, tenant: &Tenant, name: &str) -> &'a mut Resource {
        if !shard.contains_key(name) {
            shard.insert(name.to_owned(), HashMap::new());
        }
        let floor = self.pruned_wildcard_seq.load(Ordering::Relaxed);
        let by_tenant = shard.get_mut(name).expect("inserted above");
        by_tenant.entry(tenant.clone()).or_insert_with(|| Resource::new(floor))
    }

    /// Every resource of every shard, each under its shard's lock.
    fn each_resource(&self, mut f: impl FnMut(&mut Resource)) {
        for shard in &self.resources {
            lock(shard).values_mut().flat_map(HashMap::values_mut).for_each(&mut f);
        }
    }

    /// Tells a topic's resource up to where its history dropped events: a
    /// wildcard position before them can no longer be replayed. Called with
    /// the topic's shard held.
    fn settle(&self, tenant: &Tenant, name: &str, history: &mut History) {
        let dropped = std::mem::take(&mut history.dropped);
        if dropped > 0 {
            let mut shard = self.resource_shard(tenant, name);
            let resource = self.resource(&mut shard, tenant, name);
            self.raise_floor(tenant, name, resource, dropped);
        }
    }

    fn raise_floor(&self, tenant: &Tenant, name: &str, resource: &mut Resource, through: u64) {
        if resource.forget_through(through)
            && let Some(floors) = &self.floors
        {
            lock(floors).insert((tenant.clone(), name.to_owned()), (resource.floor(), false));
        }
    }

    /// What prune passes dropped since the last call, for the store.
    pub(crate) fn take_dropped(&self) -> Vec<Dropped> {
        self.dropped.as_ref().map(|pending| std::mem::take(&mut *lock(pending))).unwrap_or_default()
    }

    /// The highest position of any pruned topic: a new topic numbers from above it.
    pub(crate) fn pruned_seq(&self) -> u64 {
        self.pruned_seq.load(Ordering::Relaxed)
    }

    /// Takes `epoch` as the history's name, before anyone connected (a
    /// store's, at start).
    pub(crate) fn set_epoch(&self, epoch: &str) {
        *self.epoch.write().unwrap_or_else(PoisonError::into_inner) = epoch.into();
    }

    /// Restores a topic a store kept: its position, and its history, oldest
    /// first, as `(seq, wildcard_seq, when it was published, frame)`.
    pub(crate) fn restore_topic(
        &self,
        tenant: Tenant,
        topic: String,
        seq: u64,
        history: Vec<(u64, u64, Instant, Frame)>,
    ) {
        let mut shard = self.shard(&tenant, &topic);
        let state = shard.entry((tenant, topic)).or_insert_with(|| self.new_topic());
        state.seq = seq;
        self.freed(state.history.clear());
        for (seq, wildcard_seq, at, frame) in history {
            self.keep(state, Stored { seq, wildcard_seq, at, frame });
        }
        state.history.dropped = 0;
    }

    /// Restores the highest position of the topics pruned before a restart.
    pub(crate) fn restore_pruned_seq(&self, seq: u64) {
        self.pruned_seq.fetch_max(seq, Ordering::Relaxed);
    }

    /// Forgets every topic's position and history (a node of a cluster that
    /// may have missed events); topics with subscribers stay, as unknown.
    pub(crate) fn forget_positions(&self) {
        for shard in &self.shards {
            let mut topics = lock(shard);
            for state in topics.values_mut() {
                state.known = false;
                state.seq = 0;
                self.freed(state.history.clear());
                state.history.dropped = 0;
            }
            topics.retain(|_, state| !state.subs.is_empty());
        }
        if let Some(bus) = &self.bus {
            // First: a wildcard registering from here on gets no position.
            *lock(bus) = BusOrder::default();
            self.each_resource(Resource::forget_all);
        }
    }

    /// On a node of a cluster: it listens to the channel, and Redis had
    /// numbered `counter` wildcard events by then.
    pub(crate) fn listening_from(&self, counter: u64) {
        if let Some(bus) = &self.bus {
            lock(bus).listening_from(counter);
        }
    }

    /// From which `wildcard_seq` on every event is known here: `None` on
    /// a node of a cluster that does not know yet.
    fn wildcards_known_from(&self) -> Option<u64> {
        self.bus.as_ref().map_or(Some(0), |bus| lock(bus).floor())
    }

    fn new_topic(&self) -> TopicState {
        // A topic pruned earlier numbers on from above every pruned topic's
        // position: a client holding an old position of it then sees a gap
        // and resyncs, instead of taking new events as old ones.
        TopicState { known: !self.clustered, seq: self.pruned_seq.load(Ordering::Relaxed), ..TopicState::default() }
    }

    fn shard(&self, tenant: &Tenant, topic: &str) -> MutexGuard<'_, Topics> {
        let index = (self.hasher.hash_one((tenant, topic)) as usize) % SHARDS;
        lock(&self.shards[index])
    }

    /// Registers a new peer whose frames arrive in its outbox, which holds
    /// at most `queue`. The peer stays registered as long as the returned
    /// [`Connection`] lives.
    pub(crate) fn connect(
        self: &Arc<Self>,
        user: Arc<str>,
        tenant: Option<Arc<str>>,
        queue: usize,
        transport: Transport,
    ) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Outbox::new(queue);
        let peer = Arc::new(Peer {
            id,
            user,
            tenant,
            outbox,
            transport,
            killed: AtomicU16::new(0),
            kill_waker: AtomicWaker::new(),
            stale_presence: Mutex::default(),
        });
        lock(&self.peers).insert(id, peer.clone());
        self.metrics.transport(transport).connections.inc();
        if self.closing.load(Ordering::Acquire) {
            peer.kill(close::GOING_AWAY);
        }
        Connection { hub: self.clone(), peer, topics: Vec::new() }
    }

    /// Forgets a peer; `topics` are the subscriptions it still had. A peer
    /// killed as too slow counts as one drop, however it noticed.
    fn disconnect<'a>(&self, peer: &Peer, topics: impl IntoIterator<Item = &'a Topic>) {
        if peer.killed() == close::TOO_SLOW {
            self.metrics.slow_consumers.inc();
        }
        for topic in topics {
            self.unsubscribe(peer, topic);
        }
        let mut peers = lock(&self.peers);
        if peers.remove(&peer.id).is_some() {
            self.metrics.transport(peer.transport).connections.dec();
        }
        if peers.is_empty() {
            self.peers_gone.notify_waiters();
        }
    }

    /// Closes every connection with `code`, and every one that connects until [`reopen`](Self::reopen).
    pub(crate) fn close(&self, code: u16) {
        self.closing.store(true, Ordering::Release);
        self.kill_all(code);
    }

    pub(crate) fn reopen(&self) {
        self.closing.store(false, Ordering::Release);
    }

    /// Asks every connection to close with `code`.
    pub(crate) fn kill_all(&self, code: u16) {
        for peer in lock(&self.peers).values() {
            peer.kill(code);
        }
    }

    /// Resolves when no connection is left.
    pub(crate) async fn all_gone(&self) {
        loop {
            let notified = self.peers_gone.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.peers).is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// A single node's position of `topic` in `tenant`'s namespace: where its
    /// next event numbers from.
    pub(crate) fn position(&self, tenant: &Tenant, topic: &str) -> u64 {
        let shard = self.shard(tenant, topic);
        shard.get(&(tenant.clone(), topic.to_owned())).map_or_else(|| self.pruned_seq(), |state| state.seq)
    }

    /// Delivers an event the store numbered and committed: keeps it in the
    /// history and queues it to the namespace's subscribers.
    pub(crate) fn deliver_committed(&self, tenant: &Tenant, topic: &Topic, seq: u64, wildcard_seq: u64, frame: Frame) {
        let mut shard = self.shard(tenant, topic.as_str());
        let state = shard.entry((tenant.clone(), topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        let mut resources = self.resource_shard(tenant, topic.resource());
        let resource = self.resource(&mut resources, tenant, topic.resource());
        self.record(state, resource, tenant, topic, (seq, Some(wildcard_seq)), frame);
        drop((resources, shard));
        self.metrics.events_published.inc();
        self.trim_history();
    }

    /// Assigns the next `seq` of the event's topic in the namespace of its
    /// `tenant_id`, keeps it in the history and queues it to the namespace's
    /// subscribers. Returns the `seq`. With `if_seq`, only while the topic is
    /// at that `seq`. The caller has validated the event.
    pub(crate) fn publish(&self, mut event: Event, if_seq: Option<u64>) -> Result<u64, Conflict> {
        let tenant: Tenant = event.data.tenant_id.as_deref().map(Into::into);
        let mut shard = self.shard(&tenant, event.topic.as_str());
        let state = shard.entry((tenant.clone(), event.topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        if let Some(expected) = if_seq
            && expected != state.seq
        {
            return Err(Conflict { current: state.seq });
        }
        let seq = state.seq + 1;
        event.seq = Some(seq);
        let mut resources = self.resource_shard(&tenant, event.topic.resource());
        let resource = self.resource(&mut resources, &tenant, event.topic.resource());
        // Numbered under the resource's lock: its events reach every
        // wildcard subscriber in this order.
        let wildcard_seq = self.next_wildcard_seq();
        event.wildcard_seq = Some(wildcard_seq);
        let frame = event.encode().into();
        self.record(state, resource, &tenant, &event.topic, (seq, Some(wildcard_seq)), frame);
        drop((resources, shard));
        self.metrics.events_published.inc();
        self.trim_history();
        Ok(seq)
    }

    /// Queues an ephemeral event to the current subscribers of its topic in
    /// the namespace of its `tenant_id`: no `seq`, no history.
    pub(crate) fn broadcast(&self, event: &Event) {
        let tenant: Tenant = event.data.tenant_id.as_deref().map(Into::into);
        self.broadcast_frame(&tenant, &event.topic, &event.encode().into());
    }

    /// [`broadcast`](Self::broadcast) of an encoded event (from the cluster channel).
    pub(crate) fn broadcast_frame(&self, tenant: &Tenant, topic: &Topic, frame: &Frame) {
        let shard = self.shard(tenant, topic.as_str());
        let subs = shard.get(&(tenant.clone(), topic.as_str().to_owned())).map(|state| &state.subs);
        let resources = self.resource_shard(tenant, topic.resource());
        let resource = resources.get(topic.resource()).and_then(|by_tenant| by_tenant.get(tenant));
        let wildcard = resource.map(|resource| &resource.peers);
        self.fan_out(subs, wildcard, frame);
    }

    /// Applies an event of a cluster, numbered by Redis, in the order the
    /// cluster channel brought it: keeps it in the history and queues it to
    /// the namespace's subscribers.
    pub(crate) fn apply(&self, tenant: Tenant, topic: &Topic, (seq, wildcard_seq): (u64, Option<u64>), frame: Frame) {
        let missed = self.bus.as_ref().is_some_and(|bus| lock(bus).saw(wildcard_seq));
        if missed {
            // Events never came: a wildcard that registered meanwhile was
            // given a position it did not get everything after.
            self.each_resource(|resource| {
                resource.peers.values().for_each(|peer| {
                    peer.kill(close::GOING_AWAY);
                });
            });
        }
        let mut shard = self.shard(&tenant, topic.as_str());
        let state = shard.entry((tenant.clone(), topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        if !state.known || seq != state.seq + 1 {
            // Recovery replays from the history, which must hold every event
            // from its oldest on: it starts here.
            self.freed(state.history.clear());
            state.known = true;
        }
        let mut resources = self.resource_shard(&tenant, topic.resource());
        let resource = self.resource(&mut resources, &tenant, topic.resource());
        self.record(state, resource, &tenant, topic, (seq, wildcard_seq), frame);
        drop((resources, shard));
        self.trim_history();
    }

    /// Appends `stored` to the topic's history within the topic's byte
    /// bound, its oldest events first to go (an event larger than the bound
    /// alone is not kept). The total is [`trim_history`](Self::trim_history)'s.
    fn keep(&self, state: &mut TopicState, stored: Stored) {
        self.history_bytes.fetch_add(state.history.push_back(stored), Ordering::Relaxed);
        while !state.history.is_empty() && state.history.bytes > self.history_max_bytes {
            self.freed(state.history.pop_front());
        }
    }

    /// Past the total bound, drops the histories that start earliest, whole
    /// (a history holds every event from its oldest on), until 90 % of the
    /// bound: one pass over the topics pays for many publishes. Called with
    /// no shard held.
    fn trim_history(&self) {
        if self.history_bytes.load(Ordering::Relaxed) <= self.history_total_bytes {
            return;
        }
        // One trimmer at a time; the others publish on.
        let Ok(_trimming) = self.trimming.try_lock() else { return };
        let mut oldest: Vec<(Instant, usize, (Tenant, String))> = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let topics = lock(shard);
            let fronts = topics.iter().filter_map(|(key, state)| Some((state.history.front()?.at, index, key.clone())));
            oldest.extend(fronts);
        }
        oldest.sort_unstable_by_key(|(at, ..)| *at);
        let target = self.history_total_bytes / 10 * 9;
        for (_, index, key) in oldest {
            if self.history_bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            if let Some(state) = lock(&self.shards[index]).get_mut(&key) {
                self.freed(state.history.clear());
                self.settle(&key.0, resource_of(&key.1), &mut state.history);
            }
        }
    }

    fn freed(&self, bytes: usize) {
        if bytes > 0 {
            self.history_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Makes `seq` the topic's position, keeps `frame` in the history, marks
    /// it in its `resource` (with a `wildcard_seq`) and queues it to the
    /// namespace's subscribers, the resource's wildcard's included.
    fn record(
        &self,
        state: &mut TopicState,
        resource: &mut Resource,
        tenant: &Tenant,
        topic: &Topic,
        (seq, wildcard_seq): (u64, Option<u64>),
        frame: Frame,
    ) {
        let now = Instant::now();
        state.seq = seq;
        if self.history_len > 0 {
            if state.history.len() >= self.history_len {
                self.freed(state.history.pop_front());
            }
            let stored = Stored { seq, wildcard_seq: wildcard_seq.unwrap_or(0), at: now, frame: frame.clone() };
            self.keep(state, stored);
            self.freed(state.prune(now, self.history_max_age));
        }
        if let Some(wildcard_seq) = wildcard_seq {
            let mut through = std::mem::take(&mut state.history.dropped);
            if state.history.get(seq).is_some() {
                resource.mark(Mark { wildcard_seq, frame: frame.clone() });
            } else {
                // Not kept (no history, or larger than a topic's bound): not replayable.
                resource.passed(wildcard_seq);
                through = wildcard_seq;
            }
            self.raise_floor(tenant, topic.resource(), resource, through);
        }
        self.fan_out(Some(&state.subs), Some(&resource.peers), &frame);
    }

    /// Queues `frame` to a topic's subscribers `subs` and to those of its
    /// resource's wildcard.
    fn fan_out(&self, subs: Option<&HashMap<u64, Sub>>, wildcard: Option<&HashMap<u64, Arc<Peer>>>, frame: &Frame) {
        let timer = self.fanout_timer();
        let timer = timer.as_ref();
        let mut queued = subs.map_or(0, |subs| subs.values().filter(|sub| sub.peer.deliver(frame, timer)).count());
        if let Some(peers) = wildcard {
            // A connection subscribed to both `doc:1` and `doc:*` gets the event once.
            let others = peers.values().filter(|peer| !subs.is_some_and(|subs| subs.contains_key(&peer.id)));
            queued += others.filter(|peer| peer.deliver(frame, timer)).count();
        }
        self.metrics.messages_out.inc_by(queued as u64);
    }

    /// A timer for this event's fan-out, for at most one event per
    /// [`FANOUT_SAMPLE`]: the histogram then costs the hot path nothing
    /// measurable, however many events there are.
    fn fanout_timer(&self) -> Option<Arc<FanoutTimer>> {
        let now = self.started.elapsed().as_nanos() as u64;
        let due = self.next_timed.load(Ordering::Relaxed);
        let next = now + FANOUT_SAMPLE.as_nanos() as u64;
        (now >= due && self.next_timed.compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed).is_ok())
            .then(|| FanoutTimer::start(&self.metrics.fanout))
    }

    /// Subscribes `peer` to a concrete topic of its tenant. With `since`,
    /// also collects the events it missed, under the same lock as the
    /// registration so that none is lost or reordered between the replay and
    /// live delivery.
    fn subscribe(
        &self,
        peer: &Arc<Peer>,
        topic: &Topic,
        presence: bool,
        meta: Option<&Payload>,
        since: Option<u64>,
        fetched: Option<Fetched>,
    ) -> Joined {
        let now = Instant::now();
        let mut shard = self.shard(&peer.tenant, topic.as_str());
        let state = shard.entry((peer.tenant.clone(), topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        self.freed(state.prune(now, self.history_max_age));
        self.settle(&peer.tenant, topic.resource(), &mut state.history);
        // A node of a cluster that has seen none of the topic's events gives
        // where Redis said the topic was, read before this registration:
        // what came after reaches the subscriber, or shows it a gap.
        let read = fetched.as_ref().filter(|_| !state.known).map(|fetched| fetched.seq);
        let mut joined = Joined { last_seq: state.known.then_some(state.seq).or(read), ..Joined::default() };
        if let Some(since) = since {
            let mut recovered = self.replays(state, since);
            if recovered {
                joined.replay = state.history.iter().filter(|e| e.seq > since).map(|e| e.frame.clone()).collect();
            } else if let Some(fetched) = fetched.filter(|fetched| fetched.covers(since)) {
                // Read from the cluster's history: what this node saw since
                // the read follows without a gap, or the node saw nothing
                // of the topic since.
                let (read, local) = (fetched.seq, state.seq);
                let oldest = state.history.front().map_or(local + 1, |e| e.seq);
                recovered = !state.known || local <= read || oldest <= read + 1;
                if recovered {
                    let later = state.history.iter().filter(|e| e.seq > read).map(|e| e.frame.clone());
                    joined.replay = fetched.events.into_iter().map(|(_, frame)| frame).chain(later).collect();
                    joined.last_seq = Some(if state.known { local.max(read) } else { read });
                }
            }
            joined.recovered = Some(recovered);
        }
        let previous = state.subs.get(&peer.id).map(|sub| (sub.presence, sub.member));
        if previous.is_none() {
            self.metrics.transport(peer.transport).subscriptions.inc();
        }
        let member = match (presence, previous) {
            (true, Some((true, member))) => member,
            (true, _) => state.presence.join(&peer.user, self.max_presence_members),
            (false, Some((true, true))) => {
                state.presence.leave(&peer.user);
                false
            }
            (false, _) => false,
        };
        state.subs.insert(peer.id, Sub { peer: peer.clone(), presence, member });
        if let Some(meta) = meta.filter(|_| member) {
            state.presence.set_meta(&peer.user, meta);
        }
        if presence {
            joined.members = Some(state.presence.snapshot());
            joined.unlisted = !member;
        }
        self.presence_changed(state, &peer.tenant, topic);
        joined
    }

    /// Sets what the other members see of `peer`'s user in `topic`; `false`
    /// if `peer` is not listed in its presence (not subscribed with
    /// presence, or the presence was full).
    fn set_presence_meta(&self, peer: &Peer, topic: &Topic, meta: &Payload) -> bool {
        let mut shard = self.shard(&peer.tenant, topic.as_str());
        let Some(state) = shard.get_mut(&(peer.tenant.clone(), topic.as_str().to_owned())) else { return false };
        if !state.subs.get(&peer.id).is_some_and(|sub| sub.member) {
            return false;
        }
        let set = state.presence.set_meta(&peer.user, meta);
        self.presence_changed(state, &peer.tenant, topic);
        set
    }

    /// Whether this node knows where `topic` stands (on a node of a cluster,
    /// once it has seen one of its events).
    pub(crate) fn knows(&self, tenant: &Tenant, topic: &Topic) -> bool {
        let shard = self.shard(tenant, topic.as_str());
        shard.get(&(tenant.clone(), topic.as_str().to_owned())).is_some_and(|state| state.known)
    }

    /// Whether this node has the events of `wildcard`'s resource after the
    /// `wildcard_seq` `since`.
    pub(crate) fn recovers_wildcard(&self, tenant: &Tenant, wildcard: &Topic, since: u64) -> bool {
        let Some(known_from) = self.wildcards_known_from() else { return false };
        let resources = self.resource_shard(tenant, wildcard.resource());
        let resource = resources.get(wildcard.resource()).and_then(|by_tenant| by_tenant.get(tenant));
        resource.is_some_and(|resource| resource.replays(since, known_from))
    }

    /// Whether the events of `topic` after `since` are in this node's history.
    pub(crate) fn recovers(&self, tenant: &Tenant, topic: &Topic, since: u64) -> bool {
        let shard = self.shard(tenant, topic.as_str());
        shard.get(&(tenant.clone(), topic.as_str().to_owned())).is_some_and(|state| self.replays(state, since))
    }

    fn replays(&self, state: &TopicState, since: u64) -> bool {
        let oldest = state.history.front().map_or(state.seq + 1, |e| e.seq);
        // A `since` past the position is a client's mistake on a single
        // node; on a node of a cluster it is a position seen on another
        // node, whose events are still on their way here (and will reach
        // this subscriber, which drops those it has).
        let reachable = since <= state.seq || self.clustered;
        state.known && reachable && oldest <= since.saturating_add(1)
    }

    /// Puts the topic on the list to announce when its presence changed.
    fn presence_changed(&self, state: &mut TopicState, tenant: &Tenant, topic: &Topic) {
        if state.presence.changed() && !state.presence.due {
            state.presence.due = true;
            lock(&self.presence_due).push((tenant.clone(), topic.clone()));
            self.presence_wake.notify_one();
        }
    }

    /// Announces the presence changes of every topic that has some: one
    /// `presence_diff` to each subscriber with presence.
    pub(crate) fn flush_presence(&self) {
        let due = std::mem::take(&mut *lock(&self.presence_due));
        for (tenant, topic) in due {
            let mut shard = self.shard(&tenant, topic.as_str());
            let Some(state) = shard.get_mut(&(tenant.clone(), topic.as_str().to_owned())) else { continue };
            state.presence.due = false;
            if self.clustered
                && let Some(local) = state.presence.take_local_change()
            {
                let version = self.presence_version.fetch_add(1, Ordering::Relaxed);
                lock(&self.presence_out).push(LocalPresence { tenant, topic: topic.clone(), version, local });
                self.presence_out_wake.notify_one();
            }
            let Some(Changes { joined, left, meta }) = state.presence.take_changes() else { continue };
            let diff = PresenceDiff { topic: topic.clone(), joined, left, meta };
            let frame: Frame = ServerMessage::PresenceDiff(diff).encode().into();
            let to = state.subs.values().filter(|sub| sub.presence);
            let queued = to.filter(|sub| sub.peer.deliver_presence(&frame, &topic)).count();
            self.metrics.messages_out.inc_by(queued as u64);
        }
    }

    /// This node's presence lists that changed, for the other nodes.
    pub(crate) fn take_local_presence(&self) -> Vec<LocalPresence> {
        std::mem::take(&mut *lock(&self.presence_out))
    }

    /// Every presence list of this node, for a node that joined, and the
    /// version they start at: any list of this node with a lower one is
    /// older than these (the lists still queued are dropped).
    pub(crate) fn local_presence(&self) -> (u64, Vec<LocalPresence>) {
        let floor = self.presence_version.fetch_add(1, Ordering::Relaxed);
        lock(&self.presence_out).clear();
        let mut all = Vec::new();
        for shard in &self.shards {
            for ((tenant, topic), state) in lock(shard).iter() {
                let local = state.presence.local();
                let Ok(topic) = Topic::new(topic.as_str()) else { continue };
                if !local.members.is_empty() {
                    let version = self.presence_version.fetch_add(1, Ordering::Relaxed);
                    all.push(LocalPresence { tenant: tenant.clone(), topic, version, local });
                }
            }
        }
        (floor, all)
    }

    /// Takes what another node lists in a topic's presence.
    pub(crate) fn set_remote_presence(&self, node: &Arc<str>, list: LocalPresence) {
        let LocalPresence { tenant, topic, version, local: Snapshot { members, meta } } = list;
        let key = (tenant.clone(), topic.as_str().to_owned());
        let mut shard = self.shard(&tenant, topic.as_str());
        let state = match shard.entry(key) {
            hash_map::Entry::Occupied(state) => state.into_mut(),
            hash_map::Entry::Vacant(_) if members.is_empty() => return,
            hash_map::Entry::Vacant(vacant) => vacant.insert(self.new_topic()),
        };
        let users = members.into_iter().map(Arc::from).collect();
        let meta = meta.into_iter().map(|(user, meta)| (Arc::from(user), meta)).collect();
        state.presence.set_remote(node, version, users, meta, self.max_presence_members);
        self.presence_changed(state, &tenant, &topic);
    }

    /// Forgets what `node` listed in presence, or every other node with `None`.
    pub(crate) fn forget_nodes(&self, node: Option<&str>) {
        for shard in &self.shards {
            for ((tenant, topic), state) in lock(shard).iter_mut() {
                match node {
                    Some(node) => state.presence.forget_node(node),
                    None => state.presence.forget_nodes(),
                }
                if let Ok(topic) = Topic::new(topic.as_str()) {
                    self.presence_changed(state, tenant, &topic);
                }
            }
        }
    }

    /// Who is in `topic`'s presence, for a subscriber of it whose changes
    /// did not fit its outbox; `None` if it no longer has presence there.
    pub(crate) fn presence_of(&self, peer: &Peer, topic: &Topic) -> Option<Snapshot> {
        let mut shard = self.shard(&peer.tenant, topic.as_str());
        let state = shard.get_mut(&(peer.tenant.clone(), topic.as_str().to_owned()))?;
        state.subs.get(&peer.id).filter(|sub| sub.presence)?;
        Some(state.presence.snapshot())
    }

    /// Removes one subscription (concrete or wildcard) of `peer`.
    fn unsubscribe(&self, peer: &Peer, topic: &Topic) {
        if topic.is_wildcard() {
            let mut resources = self.resource_shard(&peer.tenant, topic.resource());
            let resource = resources.get_mut(topic.resource()).and_then(|by_tenant| by_tenant.get_mut(&peer.tenant));
            if let Some(resource) = resource
                && resource.peers.remove(&peer.id).is_some()
            {
                self.metrics.transport(peer.transport).subscriptions.dec();
            }
            return;
        }
        let key = (peer.tenant.clone(), topic.as_str().to_owned());
        let mut shard = self.shard(&peer.tenant, topic.as_str());
        let Some(state) = shard.get_mut(&key) else { return };
        if let Some(sub) = state.subs.remove(&peer.id) {
            self.metrics.transport(peer.transport).subscriptions.dec();
            if sub.member {
                state.presence.leave(&peer.user);
                self.presence_changed(state, &peer.tenant, topic);
            }
        }
        // A topic nobody listens to and with nothing to replay costs nothing.
        if state.subs.is_empty() && state.history.is_empty() && state.seq == 0 && state.presence.is_empty() {
            shard.remove(&key);
        }
    }

    /// Subscribes `peer` to every topic of `topic.resource()` in its
    /// tenant. With `since` (a `wildcard_seq`), also collects the events it
    /// missed, under the same lock as the registration, so that every later
    /// event reaches it live. A node of a cluster replays what it saw since
    /// it listens to the channel, and what Redis held before (`fetched`,
    /// read before this registration), and gives no position before it
    /// knows where the cluster's numbers stand.
    fn subscribe_wildcard(
        &self,
        peer: &Arc<Peer>,
        topic: &Topic,
        since: Option<u64>,
        fetched: Option<wildcard::Fetched>,
    ) -> Joined {
        let mut resources = self.resource_shard(&peer.tenant, topic.resource());
        let resource = self.resource(&mut resources, &peer.tenant, topic.resource());
        if resource.peers.insert(peer.id, peer.clone()).is_none() {
            self.metrics.transport(peer.transport).subscriptions.inc();
        }
        let Some(known_from) = self.wildcards_known_from() else {
            // A node of a cluster that does not know where the numbers stand yet.
            return Joined { recovered: since.map(|_| false), ..Joined::default() };
        };
        let read = fetched.as_ref().map_or(0, |fetched| fetched.last);
        let mut joined = Joined { last_seq: Some(resource.position().max(known_from).max(read)), ..Joined::default() };
        let Some(since) = since else { return joined };
        let max = self.history_len * wildcard::REPLAY_TIMES;
        let replay = resource.after(since, known_from, max).or_else(|| {
            // Read from the cluster's history: events this node did not see.
            fetched.and_then(|fetched| resource.after_fetched(since, known_from, fetched, max))
        });
        joined.recovered = Some(replay.is_some());
        joined.replay = replay.unwrap_or_default();
        joined
    }

    /// Publishes `event` unless the same [`PublishId`] was published within
    /// the dedup window. Returns the `seq` and whether it was a duplicate (then
    /// the earlier publish's `seq`, and nothing is broadcast).
    ///
    /// Checking, publishing and remembering happen under the key's dedup
    /// lock: a copy racing on another connection of the same user waits
    /// there, then finds the first copy's `seq`. Separate steps would let
    /// both copies through, each broadcast with a `seq` of its own, which no
    /// client can recognise as a duplicate.
    pub(crate) fn publish_once(
        &self,
        publish: &PublishId<'_>,
        event: Event,
        if_seq: Option<u64>,
    ) -> Result<(u64, bool), Conflict> {
        let key = publish.key();
        let mut dedup = self.dedup_shard(&key);
        let now = Instant::now();
        dedup.expire(now, self.dedup_window, self.dedup_per_shard);
        // A conditional publish sent again after a reconnect is its first
        // copy's duplicate, not a conflict with itself.
        if let Some(&seq) = dedup.seen.get(&key) {
            return Ok((seq, true));
        }
        let seq = self.publish(event, if_seq)?;
        dedup.seen.insert(key.clone(), seq);
        dedup.order.push_back((now, key));
        Ok((seq, false))
    }

    fn dedup_shard(&self, key: &DedupKey) -> MutexGuard<'_, Dedup> {
        lock(&self.dedup[(self.hasher.hash_one(key) as usize) % SHARDS])
    }

    /// The `seq` an id was published with, if it is remembered. With a
    /// store, whose writer alone publishes, checking and remembering need
    /// not be one step as in [`publish_once`](Self::publish_once).
    pub(crate) fn published_id(&self, key: &DedupKey) -> Option<u64> {
        let mut dedup = self.dedup_shard(key);
        dedup.expire(Instant::now(), self.dedup_window, self.dedup_per_shard);
        dedup.seen.get(key).copied()
    }

    /// Remembers that `key` was published as `seq` at `at`.
    pub(crate) fn remember_id(&self, key: DedupKey, seq: u64, at: Instant) {
        let mut dedup = self.dedup_shard(&key);
        dedup.expire(Instant::now(), self.dedup_window, self.dedup_per_shard);
        if dedup.seen.insert(key.clone(), seq).is_none() {
            dedup.order.push_back((at, key));
        }
    }
}

/// Runs the hub's timers: announces presence changes, each batch
/// `presence_interval` after its first change, and prunes idle topics as
/// often as their history ages.
pub(crate) async fn maintain(hub: Arc<Hub>, presence_interval: Duration) {
    let every = hub.history_max_age.clamp(Duration::from_millis(10), Duration::from_secs(60));
    let mut prune = tokio::time::interval(every);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = hub.presence_wake.notified() => {
                tokio::time::sleep(presence_interval).await;
                hub.flush_presence();
            }
            _ = prune.tick() => hub.prune_idle(),
        }
    }
}

/// A topic's events after a `since`, read from the cluster's history in
/// Redis for a node that did not see them.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The topic's `seq` when they were read.
    pub(crate) seq: u64,
    /// The events after the `since`, oldest first, up to `seq`.
    pub(crate) events: Vec<(u64, Frame)>,
}

impl Fetched {
    /// Whether these are every event after `since`.
    fn covers(&self, since: u64) -> bool {
        match (self.events.first(), self.events.last()) {
            (Some((first, _)), Some((last, _))) => *first == since + 1 && *last == self.seq,
            _ => self.seq <= since,
        }
    }
}

/// This node's members of a topic's presence, for the other nodes of the
/// cluster, or what another node listed.
#[derive(Debug)]
pub(crate) struct LocalPresence {
    pub(crate) tenant: Tenant,
    pub(crate) topic: Topic,
    /// Newer lists of a topic have higher versions.
    pub(crate) version: u64,
    pub(crate) local: Snapshot,
}

/// A conditional publish (`if_seq`) found its topic at another `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The topic's `seq`.
    pub(crate) current: u64,
}

/// The `subscribed` message for `topics`, with `last_seq` of the concrete ones.
pub(crate) fn subscribed_frame(topics: Vec<Topic>, recovered: Option<bool>, last_seq: Vec<(Topic, u64)>) -> Frame {
    let message = herald_protocol::Subscribed { topics, recovered, last_seq: last_seq.into_iter().collect() };
    ServerMessage::Subscribed(message).encode().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_whose_task_panics_leaves_nothing_behind() {
        let hub = Arc::new(Hub::new(&ServerConfig::default()));
        let topic = Topic::new("doc:1").unwrap();
        let (task_hub, task_topic) = (hub.clone(), topic.clone());
        let task = std::thread::spawn(move || {
            let mut connection = task_hub.connect("u-1".into(), None, 8, Transport::WebSocket);
            connection.subscribe(&task_topic, true, None, None, None);
            connection.subscribe_wildcard(&Topic::new("doc:*").unwrap(), None, None);
            panic!("a bug in a connection task");
        });
        assert!(task.join().is_err(), "the task panicked");
        let metrics = hub.snapshot();
        assert_eq!((metrics.connections, metrics.subscriptions), (0, 0));
        let mut other = hub.connect("u-2".into(), None, 8, Transport::WebSocket);
        assert_eq!(
            other.subscribe(&topic, true, None, None, None).members.map(|s| s.members),
            Some(vec!["u-2".to_owned()]),
            "u-1 left presence"
        );
    }

    #[test]
    fn presence_that_does_not_fit_a_busy_outbox_is_sent_whole_once_it_has_caught_up() {
        let hub = Arc::new(Hub::new(&ServerConfig::default()));
        let topic = Topic::new("room:1").unwrap();
        let mut reader = hub.connect("reader".into(), None, 4, Transport::WebSocket);
        reader.subscribe(&topic, true, None, None, None);
        for _ in 0..2 {
            reader.peer.outbox.push(&Frame::from("an event"), None).unwrap();
        }
        let mut joiner = hub.connect("joiner".into(), None, 4, Transport::WebSocket);
        joiner.subscribe(&topic, true, None, None, None);
        hub.flush_presence();
        assert_eq!(reader.peer.outbox.len(), 2, "half full: the diff was not queued");
        assert_eq!(reader.peer.killed(), 0, "nor the reader closed");
        assert!(reader.peer.take_stale_presence().is_empty(), "not while the outbox is still half full");

        let mut written = VecDeque::new();
        futures_util::FutureExt::now_or_never(reader.peer.outbox.take_all(&mut written)).unwrap();
        assert_eq!(reader.peer.take_stale_presence(), std::slice::from_ref(&topic));
        let members = hub.presence_of(&reader.peer, &topic).unwrap();
        assert_eq!(members.members, ["joiner", "reader"]);
    }
}
