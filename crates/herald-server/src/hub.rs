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
//! Lock order is epoch, then dedup shard, then topic shard, then the wildcard
//! map; nothing takes them the other way.

use std::{
    collections::{HashMap, HashSet, VecDeque, hash_map::Entry},
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::extract::ws::Utf8Bytes;
use herald_protocol::{Event, PresenceDiff, ServerMessage, Topic, close};
use tokio::sync::Notify;

use crate::{
    ServerConfig,
    metrics::Metrics,
    outbox::{Full, Outbox},
};

/// One encoded message, shared by every connection it goes to: cloning is a
/// reference-count increment, so an event is serialized once however many
/// subscribers it has.
pub(crate) type Frame = Utf8Bytes;

const SHARDS: usize = 32;

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
    kill: Notify,
    /// The close code the connection must close with, 0 while it may live.
    killed: AtomicU16,
}

impl Peer {
    /// Queues `frame` without waiting; returns whether it was queued. A full
    /// queue means the consumer fell behind: it is closed with 4009 rather
    /// than buffered without bound. The caller counts what was queued, once
    /// per fan-out rather than with an atomic add per subscriber.
    fn deliver(&self, frame: &Frame, metrics: &Metrics) -> bool {
        match self.outbox.push(frame) {
            Ok(()) => true,
            Err(Full) => {
                if self.kill(close::TOO_SLOW) {
                    Metrics::inc(&metrics.drops);
                }
                false
            }
        }
    }

    /// Asks the connection to close with `code`; the first request wins.
    pub(crate) fn kill(&self, code: u16) -> bool {
        let first = self.killed.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if first {
            self.kill.notify_one();
        }
        first
    }

    pub(crate) fn killed(&self) -> u16 {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once [`kill`](Self::kill) was called (a stored permit makes
    /// an earlier call count too).
    pub(crate) async fn wait_killed(&self) {
        self.kill.notified().await;
    }
}

/// A peer registered with the hub, and its subscriptions. Dropping it
/// unsubscribes and unregisters the peer however its task ends, a panic
/// included, so no ending connection can leak into the hub (the connection
/// gauge, presence, shutdown's wait for the last connection).
pub(crate) struct Connection {
    hub: Arc<Hub>,
    pub(crate) peer: Arc<Peer>,
    topics: HashSet<Topic>,
}

impl Connection {
    /// The topics (concrete and wildcards) it is subscribed to.
    pub(crate) fn topics(&self) -> &HashSet<Topic> {
        &self.topics
    }

    /// Subscribes to a concrete topic; see [`Hub::subscribe`].
    pub(crate) fn subscribe(&mut self, topic: &Topic, presence: bool, since: Option<u64>) -> Joined {
        self.topics.insert(topic.clone());
        self.hub.subscribe(&self.peer, topic, presence, since)
    }

    /// Subscribes to every topic of `topic.resource()`.
    pub(crate) fn subscribe_wildcard(&mut self, topic: &Topic) {
        self.topics.insert(topic.clone());
        self.hub.subscribe_wildcard(&self.peer, topic);
    }

    /// Ends one subscription; returns whether there was one.
    pub(crate) fn unsubscribe(&mut self, topic: &Topic) -> bool {
        let was = self.topics.remove(topic);
        if was {
            self.hub.unsubscribe(&self.peer, topic);
        }
        was
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.hub.disconnect(&self.peer, &self.topics);
    }
}

/// A tenant's namespace: `None` holds tenant-less connections and events.
pub(crate) type Tenant = Option<Arc<str>>;

/// One shard's topics, by namespace and name.
type Topics = HashMap<(Tenant, String), TopicState>;

/// tenant -> resource type -> connections subscribed to `resource:*`.
type Wildcards = HashMap<Tenant, HashMap<String, HashMap<u64, Arc<Peer>>>>;

struct Sub {
    peer: Arc<Peer>,
    presence: bool,
}

struct Stored {
    seq: u64,
    at: Instant,
    frame: Frame,
}

#[derive(Default)]
struct TopicState {
    /// Whether `seq` is the topic's position: always on a single node; on a
    /// node of a cluster only once it has seen an event of the topic.
    known: bool,
    seq: u64,
    history: VecDeque<Stored>,
    subs: HashMap<u64, Sub>,
    /// Connections with presence per user: a user with two tabs joins once
    /// and leaves when the last one goes.
    presence: HashMap<Arc<str>, u32>,
}

impl TopicState {
    fn new(known: bool) -> Self {
        Self { known, ..Self::default() }
    }

    fn prune(&mut self, now: Instant, max_age: Duration) {
        while self.history.front().is_some_and(|e| now.duration_since(e.at) > max_age) {
            self.history.pop_front();
        }
    }

    fn members(&self) -> Vec<String> {
        let mut members: Vec<String> = self.presence.keys().map(|user| user.to_string()).collect();
        members.sort_unstable();
        members
    }

    fn presence_diff(&self, topic: &str, joined: &str, left: bool, skip: u64, m: &Metrics) {
        let Ok(topic) = Topic::new(topic) else { return };
        let (joined, left) =
            if left { (Vec::new(), vec![joined.to_owned()]) } else { (vec![joined.to_owned()], Vec::new()) };
        let frame: Frame = ServerMessage::PresenceDiff(PresenceDiff { topic, joined, left }).encode().into();
        let to = self.subs.values().filter(|sub| sub.presence && sub.peer.id != skip);
        let queued = to.filter(|sub| sub.peer.deliver(&frame, m)).count();
        Metrics::add(&m.messages_out, queued);
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
    pub(crate) members: Option<Vec<String>>,
}

/// Who published with which id: the publisher's tenant and user (user ids
/// are unique only within a tenant), and the id the client chose. The same
/// on one node and across a cluster.
pub(crate) struct PublishId<'a> {
    pub(crate) tenant: &'a Tenant,
    pub(crate) user: &'a Arc<str>,
    pub(crate) id: &'a str,
}

/// A [`PublishId`] kept for the dedup window.
type DedupKey = (Tenant, Arc<str>, String);

/// Remembered client publish ids, so retransmissions are acked, not re-broadcast.
#[derive(Default)]
struct Dedup {
    seen: HashMap<DedupKey, u64>,
    order: VecDeque<(Instant, DedupKey)>,
}

pub(crate) struct Hub {
    epoch: RwLock<Arc<str>>,
    /// A node of a cluster: positions are learnt from the cluster channel.
    clustered: bool,
    shards: Box<[Mutex<Topics>]>,
    hasher: RandomState,
    wildcards: RwLock<Wildcards>,
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    peers_gone: Notify,
    /// Set during shutdown: connections that slip in are closed at once.
    closing: AtomicBool,
    /// Sharded by key, so publishes of different ids rarely wait for each other.
    dedup: Box<[Mutex<Dedup>]>,
    next_id: AtomicU64,
    history_len: usize,
    history_max_age: Duration,
    dedup_window: Duration,
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
            wildcards: RwLock::default(),
            peers: Mutex::default(),
            peers_gone: Notify::new(),
            closing: AtomicBool::new(false),
            dedup: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next_id: AtomicU64::new(1),
            history_len: config.history_len,
            history_max_age: config.history_max_age,
            dedup_window: config.dedup_window,
            metrics: Metrics::new(clustered),
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

    /// Forgets every topic's position and history (a node of a cluster that
    /// may have missed events); topics with subscribers stay, as unknown.
    pub(crate) fn forget_positions(&self) {
        for shard in &self.shards {
            let mut topics = lock(shard);
            topics.retain(|_, state| !state.subs.is_empty());
            for state in topics.values_mut() {
                state.known = false;
                state.seq = 0;
                state.history.clear();
            }
        }
    }

    fn new_topic(&self) -> TopicState {
        TopicState::new(!self.clustered)
    }

    fn shard(&self, tenant: &Tenant, topic: &str) -> MutexGuard<'_, Topics> {
        let index = (self.hasher.hash_one((tenant, topic)) as usize) % SHARDS;
        lock(&self.shards[index])
    }

    /// Registers a new peer whose frames arrive in its outbox, which holds
    /// at most `queue`. The peer stays registered as long as the returned
    /// [`Connection`] lives.
    pub(crate) fn connect(self: &Arc<Self>, user: Arc<str>, tenant: Option<Arc<str>>, queue: usize) -> Connection {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = Outbox::new(queue);
        let peer = Arc::new(Peer { id, user, tenant, outbox, kill: Notify::new(), killed: AtomicU16::new(0) });
        lock(&self.peers).insert(id, peer.clone());
        Metrics::inc(&self.metrics.connections);
        if self.closing.load(Ordering::Acquire) {
            peer.kill(close::GOING_AWAY);
        }
        Connection { hub: self.clone(), peer, topics: HashSet::new() }
    }

    /// Forgets a peer; `topics` are the subscriptions it still had.
    fn disconnect<'a>(&self, peer: &Peer, topics: impl IntoIterator<Item = &'a Topic>) {
        for topic in topics {
            self.unsubscribe(peer, topic);
        }
        let mut peers = lock(&self.peers);
        if peers.remove(&peer.id).is_some() {
            Metrics::dec(&self.metrics.connections);
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

    /// Assigns the next `seq` of the event's topic in the namespace of its
    /// `tenant_id`, keeps it in the history and queues it to the namespace's
    /// subscribers. Returns the `seq`. The caller has validated the event.
    pub(crate) fn publish(&self, mut event: Event) -> u64 {
        let tenant: Tenant = event.data.tenant_id.as_deref().map(Into::into);
        let mut shard = self.shard(&tenant, event.topic.as_str());
        let state = shard.entry((tenant.clone(), event.topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        let seq = state.seq + 1;
        event.seq = Some(seq);
        self.record(state, &tenant, &event.topic, seq, event.encode().into());
        Metrics::inc(&self.metrics.events_published);
        seq
    }

    /// Applies an event of a cluster, numbered by Redis, in the order the
    /// cluster channel brought it: keeps it in the history and queues it to
    /// the namespace's subscribers.
    pub(crate) fn apply(&self, tenant: Tenant, topic: &Topic, seq: u64, frame: Frame) {
        let mut shard = self.shard(&tenant, topic.as_str());
        let state = shard.entry((tenant.clone(), topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        if !state.known || seq != state.seq + 1 {
            // Recovery replays from the history, which must hold every event
            // from its oldest on: it starts here.
            state.history.clear();
            state.known = true;
        }
        self.record(state, &tenant, topic, seq, frame);
    }

    /// Makes `seq` the topic's position, keeps `frame` in the history and
    /// queues it to the namespace's subscribers.
    fn record(&self, state: &mut TopicState, tenant: &Tenant, topic: &Topic, seq: u64, frame: Frame) {
        let now = Instant::now();
        state.seq = seq;
        if self.history_len > 0 {
            if state.history.len() >= self.history_len {
                state.history.pop_front();
            }
            state.history.push_back(Stored { seq, at: now, frame: frame.clone() });
            state.prune(now, self.history_max_age);
        }
        let mut queued = state.subs.values().filter(|sub| sub.peer.deliver(&frame, &self.metrics)).count();
        let wildcards = self.wildcards.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(peers) = wildcards.get(tenant).and_then(|resources| resources.get(topic.resource())) {
            // A connection subscribed to both `doc:1` and `doc:*` gets the event once.
            let others = peers.values().filter(|peer| !state.subs.contains_key(&peer.id));
            queued += others.filter(|peer| peer.deliver(&frame, &self.metrics)).count();
        }
        Metrics::add(&self.metrics.messages_out, queued);
    }

    /// Subscribes `peer` to a concrete topic of its tenant. With `since`,
    /// also collects the events it missed, under the same lock as the
    /// registration so that none is lost or reordered between the replay and
    /// live delivery.
    fn subscribe(&self, peer: &Arc<Peer>, topic: &Topic, presence: bool, since: Option<u64>) -> Joined {
        let now = Instant::now();
        let mut shard = self.shard(&peer.tenant, topic.as_str());
        let state = shard.entry((peer.tenant.clone(), topic.as_str().to_owned())).or_insert_with(|| self.new_topic());
        state.prune(now, self.history_max_age);
        let mut joined = Joined { last_seq: state.known.then_some(state.seq), ..Joined::default() };
        if let Some(since) = since {
            let oldest = state.history.front().map_or(state.seq + 1, |e| e.seq);
            // A `since` past the position is a client's mistake on a single
            // node; on a node of a cluster it is a position seen on another
            // node, whose events are still on their way here (and will reach
            // this subscriber, which drops those it has).
            let reachable = since <= state.seq || self.clustered;
            let recovered = state.known && reachable && oldest <= since.saturating_add(1);
            if recovered {
                joined.replay = state.history.iter().filter(|e| e.seq > since).map(|e| e.frame.clone()).collect();
            }
            joined.recovered = Some(recovered);
        }
        let previous = state.subs.insert(peer.id, Sub { peer: peer.clone(), presence });
        let had_presence = match previous {
            Some(sub) => sub.presence,
            None => {
                Metrics::inc(&self.metrics.subscriptions);
                false
            }
        };
        if presence && !had_presence {
            let count = state.presence.entry(peer.user.clone()).or_default();
            *count += 1;
            if *count == 1 {
                state.presence_diff(topic.as_str(), &peer.user, false, peer.id, &self.metrics);
            }
        } else if !presence && had_presence {
            self.leave_presence(state, topic.as_str(), peer);
        }
        if presence {
            joined.members = Some(state.members());
        }
        joined
    }

    fn leave_presence(&self, state: &mut TopicState, topic: &str, peer: &Peer) {
        if let Entry::Occupied(mut entry) = state.presence.entry(peer.user.clone()) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
                state.presence_diff(topic, &peer.user, true, peer.id, &self.metrics);
            }
        }
    }

    /// Removes one subscription (concrete or wildcard) of `peer`.
    fn unsubscribe(&self, peer: &Peer, topic: &Topic) {
        if topic.is_wildcard() {
            let mut wildcards = self.wildcards.write().unwrap_or_else(PoisonError::into_inner);
            let Some(resources) = wildcards.get_mut(&peer.tenant) else { return };
            if let Some(peers) = resources.get_mut(topic.resource()) {
                if peers.remove(&peer.id).is_some() {
                    Metrics::dec(&self.metrics.subscriptions);
                }
                if peers.is_empty() {
                    resources.remove(topic.resource());
                }
            }
            if resources.is_empty() {
                wildcards.remove(&peer.tenant);
            }
            return;
        }
        let key = (peer.tenant.clone(), topic.as_str().to_owned());
        let mut shard = self.shard(&peer.tenant, topic.as_str());
        let Some(state) = shard.get_mut(&key) else { return };
        if let Some(sub) = state.subs.remove(&peer.id) {
            Metrics::dec(&self.metrics.subscriptions);
            if sub.presence {
                self.leave_presence(state, topic.as_str(), peer);
            }
        }
        // A topic nobody listens to and with nothing to replay costs nothing.
        if state.subs.is_empty() && state.history.is_empty() && state.seq == 0 {
            shard.remove(&key);
        }
    }

    /// Subscribes `peer` to every topic of `topic.resource()` in its tenant.
    fn subscribe_wildcard(&self, peer: &Arc<Peer>, topic: &Topic) {
        let mut wildcards = self.wildcards.write().unwrap_or_else(PoisonError::into_inner);
        let resources = wildcards.entry(peer.tenant.clone()).or_default();
        if resources.entry(topic.resource().to_owned()).or_default().insert(peer.id, peer.clone()).is_none() {
            Metrics::inc(&self.metrics.subscriptions);
        }
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
    pub(crate) fn publish_once(&self, publish: &PublishId<'_>, event: Event) -> (u64, bool) {
        let key: DedupKey = (publish.tenant.clone(), publish.user.clone(), publish.id.to_owned());
        let index = (self.hasher.hash_one(&key) as usize) % SHARDS;
        let mut dedup = lock(&self.dedup[index]);
        let now = Instant::now();
        while let Some((at, _)) = dedup.order.front() {
            if now.duration_since(*at) <= self.dedup_window {
                break;
            }
            if let Some((_, expired)) = dedup.order.pop_front() {
                dedup.seen.remove(&expired);
            }
        }
        if let Some(&seq) = dedup.seen.get(&key) {
            return (seq, true);
        }
        let seq = self.publish(event);
        dedup.seen.insert(key.clone(), seq);
        dedup.order.push_back((now, key));
        (seq, false)
    }
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
            let mut connection = task_hub.connect("u-1".into(), None, 8);
            connection.subscribe(&task_topic, true, None);
            connection.subscribe_wildcard(&Topic::new("doc:*").unwrap());
            panic!("a bug in a connection task");
        });
        assert!(task.join().is_err(), "the task panicked");
        let metrics = hub.metrics.snapshot();
        assert_eq!((metrics.connections, metrics.subscriptions), (0, 0));
        let mut other = hub.connect("u-2".into(), None, 8);
        assert_eq!(other.subscribe(&topic, true, None).members, Some(vec!["u-2".to_owned()]), "u-1 left presence");
    }
}
