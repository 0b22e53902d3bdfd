//! Several nodes behind one Redis (`ServerConfig::redis`). Every node serves
//! its own connections; Redis numbers the events and carries them to every
//! node in one order.
//!
//! ```text
//!  node A: publish ──EVALSHA──▶ Redis: epoch check, dedup, INCR seq, PUBLISH ──▶ one channel
//!          ◀───────── seq ────┘                                                   │
//!  node A: Hub::apply ◀────────────────────────────────────────────────────────────┤ in order
//!  node B: Hub::apply ◀────────────────────────────────────────────────────────────┘
//! ```
//!
//! Numbering and sending are one script, so the channel carries each
//! topic's events in `seq` order, and a node (the publishing one too)
//! delivers events only as the channel brings them. A connection's
//! publishes that wait while its last ones are on their way go as one
//! batch, in one script call: Redis pays its per-call cost once per batch.
//! The channel still carries one message per event, which nodes of every
//! version read during a rolling deploy. A node knows a topic's
//! position once it has seen one of its events on the channel; before, it
//! leaves the topic out of `last_seq` and cannot recover it.
//!
//! The epoch lives in Redis, tied to the Redis server's `run_id`: a Redis
//! that restarted (whatever it kept) or lost its data gives the cluster a
//! new epoch, since its `seq` counters may have gone back. Each message
//! carries the epoch it was numbered in, and a node that sees a new one
//! forgets its positions and closes its connections (1001 with a reconnect
//! hint), so clients resync instead of dropping restarted numbers as
//! duplicates.
//!
//! Messages are handed to the hub as the bus connection reads them (RESP3
//! pushes), with no queue in between: a node that cannot keep up makes Redis
//! buffer for it, up to Redis's `client-output-buffer-limit pubsub`, past
//! which Redis drops it, and the node comes back as after any loss.
//!
//! A node that loses its connection to Redis may miss events: it forgets
//! every position, closes its connections, refuses publishes, reports
//! unhealthy and reconnects with backoff. Connections opened meanwhile are
//! closed again once it is back, since their subscriptions began before the
//! node listened to the channel again.
//!
//! The same script appends each event to its topic's history in Redis, a
//! stream per topic and epoch (`<prefix>:history:<epoch>:<topic>`), at most
//! `history_len` events, gone `history_max_age` after the topic's last
//! event. A node that cannot replay a `since` from what it saw itself (it
//! joined or restarted after those events) reads the gap from there: any
//! node serves any `since` within the window. Each event costs Redis about
//! its frame's size plus 60 bytes.
//!
//! The script also numbers every event in one counter for the cluster
//! (`wildcard_seq`, see `wildcard.rs`) and appends it to its resource's
//! history (`<prefix>:history:<epoch>:["tenant","resource","*"]`, ten times
//! `history_len`), each entry naming the resource's event before it. The
//! channel brings those numbers in order: a node knows it saw every event
//! after the counter it read once listening, and reads a wildcard's gap
//! from before that from the resource's history.
//!
//! Presence spans the nodes: see `roster`.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use herald_protocol::{Event, Position, Topic, close};
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Script,
    ScriptInvocation, TlsCertificates, Value, aio::MultiplexedConnection,
};
use tokio::{
    sync::Notify,
    time::{sleep, timeout},
};
use tracing::{info, warn};

use crate::{
    ServerConfig, ServerError,
    app::NotPublished,
    hub::{Conflict, Fetched, Frame, Hub, PublishId, Tenant},
    roster::Roster,
    wildcard,
};

/// Longest wait for a connection to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for an answer from Redis; a publish waits this long at most.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a node checks that Redis still answers: a half-open
/// connection never reports itself.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Reconnect delays to Redis double from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// Publishes a batch of events in its order: one call, so that Redis pays
/// its per-call cost once per batch. KEYS: the epoch and the cluster's
/// `wildcard_seq` counter, then five per event: the topic's seq counter,
/// its history, the history of the topic's resource and its last
/// `wildcard_seq`, and the publish id ('' when not deduplicating). ARGV: the
/// epoch the node believes in, the channel, the dedup window in
/// milliseconds, the history's length and its age in milliseconds, and the
/// resource history's length; then three per event: the routing head, the
/// event without `seq` (which is the last key of the encoding, so
/// `,"seq":N,"wildcard_seq":W}` replaces the closing brace) and the `if_seq`
/// (empty for none). Each entry of a resource's history names the
/// resource's event before it (`p`), so that a reader knows whether it
/// reaches back far enough. Returns two numbers per event: `0, seq`, `1,
/// earlier seq` for a duplicate, or `3, current seq` when `if_seq` is not
/// the topic's `seq`; or `2, 0` alone when the epoch is not the node's
/// (nothing was published). Checking and numbering are one step, so two
/// racing conditional publishes cannot both pass. Each event is its own
/// message on the channel, which nodes of every version read.
const PUBLISH: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {2, 0} end
local replies, messages, expiring, last = {}, {}, {}, {}
for i = 0, (#ARGV - 6) / 3 - 1 do
  local k, a = 3 + i * 5, 7 + i * 3
  local dedup, if_seq = KEYS[k + 4], ARGV[a + 2]
  local earlier = dedup ~= '' and redis.call('GET', dedup)
  local current = not earlier and if_seq ~= '' and tonumber(redis.call('GET', KEYS[k]) or '0')
  if earlier then
    replies[#replies + 1] = 1; replies[#replies + 1] = tonumber(earlier)
  elseif current and current ~= tonumber(if_seq) then
    replies[#replies + 1] = 3; replies[#replies + 1] = current
  else
    local seq = string.format('%d', redis.call('INCR', KEYS[k]))
    local wseq = string.format('%d', redis.call('INCR', KEYS[2]))
    if dedup ~= '' then redis.call('SET', dedup, seq, 'PX', ARGV[3]) end
    local frame = string.sub(ARGV[a + 1], 1, -2) .. ',"seq":' .. seq .. ',"wildcard_seq":' .. wseq .. '}'
    local resource = KEYS[k + 3]
    if ARGV[4] ~= '0' then
      redis.call('XADD', KEYS[k + 1], 'MAXLEN', ARGV[4], '0-' .. seq, 'f', frame)
      local before = last[resource] or redis.call('GET', resource) or '0'
      redis.call('XADD', KEYS[k + 2], 'MAXLEN', ARGV[6], '0-' .. wseq, 'f', frame, 'p', before)
      expiring[KEYS[k + 1]] = true; expiring[KEYS[k + 2]] = true
    end
    last[resource] = wseq
    messages[#messages + 1] = ARGV[1] .. '\n' .. seq .. '\n' .. ARGV[a] .. '\n' .. frame
    replies[#replies + 1] = 0; replies[#replies + 1] = tonumber(seq)
  end
end
for key in pairs(expiring) do redis.call('PEXPIRE', key, ARGV[5]) end
for key, wseq in pairs(last) do redis.call('SET', key, wseq) end
for _, message in ipairs(messages) do redis.call('PUBLISH', ARGV[2], message) end
return replies
"#;

/// Reads a topic's events after a `seq`. KEYS: epoch, the topic's seq
/// counter, its history. ARGV: the epoch the node believes in, the `seq`,
/// the most events to return. Returns `{epoch, seq, entries}`, with no
/// entries when the epoch is not the node's.
const HISTORY: &str = r#"
local epoch = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if epoch ~= ARGV[1] then return {epoch or '', seq, {}} end
return {epoch, seq, redis.call('XRANGE', KEYS[3], '(0-' .. ARGV[2], '+', 'COUNT', ARGV[3])}
"#;

/// Reads a resource's events after a `wildcard_seq`. KEYS: epoch, the
/// resource's history, its last `wildcard_seq`, the cluster's counter.
/// ARGV: the epoch the node believes in, the `wildcard_seq`, the most
/// events to return. Returns `{epoch, last, counter, entries}`, with no
/// entries when the epoch is not the node's.
const WILDCARD_HISTORY: &str = r#"
local epoch = redis.call('GET', KEYS[1])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
local counter = tonumber(redis.call('GET', KEYS[4]) or '0')
if epoch ~= ARGV[1] then return {epoch or '', last, counter, {}} end
return {epoch, last, counter, redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[2], '+', 'COUNT', ARGV[3])}
"#;

/// Names the cluster's history. KEYS: epoch, and the `run_id` of the Redis
/// server that named it. ARGV: a fresh epoch. A Redis server that restarted
/// may have come back with older counters (or none), so it gets a new epoch.
const ESTABLISH: &str = r#"
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local epoch = redis.call('GET', KEYS[1])
if epoch and redis.call('GET', KEYS[2]) == run then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], run)
return ARGV[1]
"#;

/// One numbered publish of a [`Cluster::publish_many`] batch.
#[derive(Clone, Copy)]
pub(crate) struct Numbered<'a> {
    pub(crate) event: &'a Event,
    pub(crate) dedup: Option<PublishId<'a>>,
    pub(crate) if_seq: Option<u64>,
}

/// A publish that did not go through the cluster bus; the text says what
/// happened and what to do.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable(pub(crate) String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node's membership of a cluster.
pub(crate) struct Cluster {
    client: Client,
    /// The Redis URL without its password, for messages.
    url: String,
    prefix: String,
    epoch_key: String,
    /// The cluster's last `wildcard_seq`. Never reset: a new epoch makes
    /// older positions void anyway.
    wildcard_seq_key: String,
    run_key: String,
    channel: String,
    publish: Script,
    establish: Script,
    history: Script,
    wildcard_history: Script,
    dedup_window_ms: u64,
    history_len: usize,
    history_max_age_ms: u64,
    hub: Arc<Hub>,
    roster: Arc<Roster>,
    /// The connection publishes go through; `None` while the node is off the bus.
    commands: RwLock<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("url", &self.url).field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Why a Redis Cluster is refused at start.
const REDIS_CLUSTER_REFUSED: &str = "this is a Redis Cluster, which Herald does not support: its publish script \
     reads and writes the epoch, a topic's seq and the publish ids in one atomic call, which a Redis Cluster \
     allows only within one hash slot, and one channel carries every event to every node. Point --redis at a \
     single Redis (with replicas and Sentinel for failover)";

/// The subscribed connection, whose driver hands each message to the hub.
pub(crate) struct Bus {
    conn: MultiplexedConnection,
    gate: Arc<Gate>,
}

/// Shared with the bus connection's push handler.
struct Gate {
    /// The channel of events (the other one is the roster's).
    events: String,
    roster: Arc<Roster>,
    /// Whether the handler may still touch the hub; closed, under this lock,
    /// when the node leaves the connection, so no late message lands after
    /// the positions were forgotten.
    open: Mutex<bool>,
    /// Redis closed the connection.
    lost: Notify,
}

impl Cluster {
    /// Connects to Redis, agrees on the epoch and subscribes to the channel.
    pub(crate) async fn join(config: &ServerConfig, url: &str, hub: Arc<Hub>) -> Result<(Arc<Self>, Bus), ServerError> {
        let shown = redact(url);
        let refuse = |reason: String| ServerError::Redis { url: shown.clone(), reason };
        let info = url.into_connection_info().map_err(|e| refuse(format!("not a Redis URL ({e})")))?;
        // Messages arrive as RESP3 pushes, handled as the connection reads
        // them: no queue between Redis and the hub.
        let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = match &config.redis_ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| refuse(format!("cannot read the Redis CA file {}: {e}", path.display())))?;
                Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(pem) })
            }
            None => Client::open(info),
        }
        .map_err(|e| refuse(e.to_string()))?;
        let prefix = config.redis_prefix.clone();
        let cluster = Arc::new(Self {
            client,
            url: shown.clone(),
            epoch_key: format!("{prefix}:epoch"),
            wildcard_seq_key: format!("{prefix}:wildcard_seq"),
            run_key: format!("{prefix}:epoch:run"),
            channel: format!("{prefix}:events"),
            prefix,
            publish: Script::new(PUBLISH),
            establish: Script::new(ESTABLISH),
            history: Script::new(HISTORY),
            wildcard_history: Script::new(WILDCARD_HISTORY),
            dedup_window_ms: config.dedup_window.as_millis().clamp(1, u64::MAX.into()) as u64,
            history_len: config.history_len,
            history_max_age_ms: config.history_max_age.as_millis().clamp(1, u64::MAX.into()) as u64,
            roster: Arc::new(Roster::new(&config.redis_prefix, config.presence_ttl, hub.clone())),
            hub,
            commands: RwLock::default(),
        });
        if cluster.is_redis_cluster().await.map_err(|e| refuse(e.to_string()))? {
            return Err(refuse(REDIS_CLUSTER_REFUSED.into()));
        }
        let bus = cluster.connect().await.map_err(|e| refuse(e.to_string()))?;
        info!(url = %shown, epoch = %cluster.hub.epoch(), "joined the cluster");
        Ok((cluster, bus))
    }

    /// Whether the server is a node of a Redis Cluster (`cluster_enabled:1`).
    async fn is_redis_cluster(&self) -> Result<bool, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(REPLY_TIMEOUT));
        let mut connection = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut connection).await?;
        Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }

    /// Whether the node is on the bus (publishes can go through).
    pub(crate) fn online(&self) -> bool {
        self.commands.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    fn commands(&self) -> Option<MultiplexedConnection> {
        self.commands.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_commands(&self, commands: Option<MultiplexedConnection>) {
        let up = commands.is_some();
        *self.commands.write().unwrap_or_else(PoisonError::into_inner) = commands;
        if let Some(bus) = &self.hub.metrics.bus {
            bus.up.set(i64::from(up));
        }
    }

    /// Gets on the bus: connections, epoch, then the channel.
    async fn connect(&self) -> Result<Bus, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(REPLY_TIMEOUT));
        let mut commands = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let epoch = self.establish_epoch(&mut commands).await?;
        self.hub.adopt_epoch(&epoch);
        // Positions are learnt anew from the first events the channel brings.
        self.hub.forget_positions();
        let gate = Arc::new(Gate {
            events: self.channel.clone(),
            roster: self.roster.clone(),
            open: Mutex::new(true),
            lost: Notify::new(),
        });
        let handler = {
            let (gate, hub) = (gate.clone(), self.hub.clone());
            move |push: PushInfo| -> Result<(), Infallible> {
                on_push(&gate, &hub, push);
                Ok(())
            }
        };
        let mut conn =
            self.client.get_multiplexed_async_connection_with_config(&config.set_push_sender(handler)).await?;
        conn.subscribe(&self.channel).await?;
        // Read once listening: every event numbered after it comes.
        let numbered: Option<u64> = redis::cmd("GET").arg(&self.wildcard_seq_key).query_async(&mut commands).await?;
        self.hub.listening_from(numbered.unwrap_or(0));
        conn.subscribe(&self.roster.channel).await?;
        // Connections opened while the node was off the bus subscribed before
        // it listened again: what was published in between never reached them.
        self.hub.kill_all(close::GOING_AWAY);
        self.set_commands(Some(commands));
        self.roster.rejoined();
        Ok(Bus { conn, gate })
    }

    async fn establish_epoch(&self, commands: &mut MultiplexedConnection) -> Result<String, RedisError> {
        let fresh = format!("{:012x}", fastrand::u64(..) >> 16);
        self.establish.key(&self.epoch_key).key(&self.run_key).arg(fresh).invoke_async(commands).await
    }

    /// Keeps the node on the bus, and gets it back on after losing Redis;
    /// tells the other nodes its presence. Runs until aborted.
    pub(crate) async fn supervise(self: Arc<Self>, bus: Bus) {
        tokio::join!(self.stay_on_bus(bus), self.roster.run(|| self.commands()));
    }

    /// Tells the other nodes that this one is going away: its users leave
    /// their presence at once rather than after `presence_ttl`.
    pub(crate) async fn bye(&self) {
        self.roster.bye(self.commands()).await;
    }

    async fn stay_on_bus(&self, mut bus: Bus) {
        loop {
            self.watch(&mut bus).await;
            self.leave(&bus);
            warn!(url = %self.url, "lost the cluster bus (Redis): connections closed, publishes refused until it is back");
            bus = self.rejoin().await;
            info!(url = %self.url, epoch = %self.hub.epoch(), "back on the cluster bus");
        }
    }

    /// Returns when Redis closed the bus connection or stopped answering.
    async fn watch(&self, bus: &mut Bus) {
        loop {
            tokio::select! {
                () = bus.gate.lost.notified() => return,
                () = sleep(PING_INTERVAL) => {
                    let Some(mut commands) = self.commands() else { return };
                    if !(ping(&mut bus.conn).await && ping(&mut commands).await) {
                        return;
                    }
                }
            }
        }
    }

    /// Off the bus: events may be missed from now on.
    fn leave(&self, bus: &Bus) {
        *bus.gate.open.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.set_commands(None);
        self.hub.forget_positions();
        self.hub.kill_all(close::GOING_AWAY);
    }

    async fn rejoin(&self) -> Bus {
        let mut delay = BACKOFF.0;
        loop {
            // ±50 % jitter, so that nodes do not come back in step.
            sleep(delay.mul_f64(0.5 + fastrand::f64())).await;
            match self.connect().await {
                Ok(bus) => return bus,
                Err(error) => {
                    info!(url = %self.url, %error, "Redis still unreachable");
                    delay = (delay * 2).min(BACKOFF.1);
                }
            }
        }
    }

    /// Numbers `event` and sends it to every node (this one too, which
    /// delivers it when the channel brings it). With `dedup`, a publish id
    /// seen within the dedup window on any node returns its `seq` and is not
    /// sent again; with `if_seq`, only while the topic's `seq` in Redis is
    /// that. Returns the event's position (in the epoch Redis numbered it
    /// in) and whether it was a duplicate.
    pub(crate) async fn publish(
        &self,
        event: &Event,
        dedup: Option<PublishId<'_>>,
        if_seq: Option<u64>,
    ) -> Result<(Position, bool), NotPublished> {
        let mut published = self.publish_many(&[Numbered { event, dedup, if_seq }]).await;
        published.pop().unwrap_or_else(|| Err(self.failed(&"no answer for the publish").into()))
    }

    /// Publishes `batch` in its order, as [`publish`](Self::publish) does
    /// each, in one script call: one round trip, and Redis pays its
    /// per-call cost once (a connection's publishes to a topic keep their
    /// order).
    pub(crate) async fn publish_many(&self, batch: &[Numbered<'_>]) -> Vec<Result<(Position, bool), NotPublished>> {
        match self.number(batch).await {
            Ok(published) => published,
            Err(unavailable) => batch.iter().map(|_| Err(unavailable.clone().into())).collect(),
        }
    }

    async fn number(&self, batch: &[Numbered<'_>]) -> Result<Vec<Result<(Position, bool), NotPublished>>, Unavailable> {
        // A second try follows a new epoch found in Redis; another change at once is not waited out.
        for _ in 0..2 {
            let mut commands = self.commands().ok_or_else(|| self.unreachable())?;
            let epoch = self.hub.epoch();
            let mut invocation = self.publish.key(&self.epoch_key);
            invocation.key(&self.wildcard_seq_key).arg(&*epoch).arg(&self.channel).arg(self.dedup_window_ms);
            invocation
                .arg(self.history_len)
                .arg(self.history_max_age_ms)
                .arg(self.history_len * wildcard::REPLAY_TIMES);
            for item in batch {
                self.add_publish(&mut invocation, &epoch, item);
            }
            let started = std::time::Instant::now();
            let reply = timeout(REPLY_TIMEOUT, invocation.invoke_async::<Vec<u64>>(&mut commands)).await;
            if let Some(bus) = &self.hub.metrics.bus {
                bus.publish.observe(started.elapsed().as_secs_f64());
            }
            match reply {
                Ok(Ok(reply)) if reply == [2, 0] => {
                    let epoch = self.establish_epoch(&mut commands).await.map_err(|e| self.failed(&e))?;
                    self.hub.adopt_epoch(&epoch);
                }
                Ok(Ok(reply)) if reply.len() == 2 * batch.len() => {
                    return Ok(reply
                        .chunks_exact(2)
                        .map(|answer| self.published(&epoch, answer[0], answer[1]))
                        .collect());
                }
                Ok(Ok(_)) => return Err(self.failed(&"an unexpected answer from the publish script")),
                Ok(Err(error)) => return Err(self.failed(&error)),
                Err(_) => return Err(self.failed(&"no answer in time")),
            }
        }
        Err(Unavailable("the cluster's epoch changed twice during the publish; retry".into()))
    }

    /// What the publish script's answer for one event in `epoch` means.
    fn published(&self, epoch: &str, code: u64, seq: u64) -> Result<(Position, bool), NotPublished> {
        match code {
            0 => {
                self.hub.metrics.events_published.inc();
                Ok((Position::new(epoch, seq), false))
            }
            1 => Ok((Position::new(epoch, seq), true)),
            3 => Err(Conflict { current: seq }.into()),
            _ => Err(self.failed(&"an unexpected answer from the publish script").into()),
        }
    }

    /// Adds `item`'s keys and arguments in `epoch` to the publish script's.
    fn add_publish(&self, invocation: &mut ScriptInvocation<'_>, epoch: &str, item: &Numbered<'_>) {
        let tenant = item.event.data.tenant_id.as_deref();
        let head = head(tenant, &item.event.topic);
        let resource = resource_head(tenant, item.event.topic.resource());
        invocation.key(self.seq_key(&head)).key(self.history_key(epoch, &head));
        invocation.key(self.history_key(epoch, &resource)).key(self.wildcard_seq_key_of(&resource));
        invocation.key(item.dedup.map(|dedup| self.dedup_key(dedup)).unwrap_or_default());
        invocation.arg(head).arg(item.event.encode()).arg(item.if_seq.map(|seq| seq.to_string()).unwrap_or_default());
    }

    fn dedup_key(&self, dedup: PublishId<'_>) -> String {
        format!("{}:dedup:{}", self.prefix, serde_json::json!([dedup.tenant.as_deref(), &**dedup.user, dedup.id]))
    }

    /// Sends an ephemeral event to every node, which queues it to its
    /// current subscribers: no `seq`, no history. Its message carries no
    /// epoch, so that a node that has not yet heard of a new epoch cannot
    /// bring an old one back to the others.
    pub(crate) async fn broadcast(&self, event: &Event) -> Result<(), Unavailable> {
        let mut commands = self.commands().ok_or_else(|| self.unreachable())?;
        let message = format!("\n\n{}\n{}", head(event.data.tenant_id.as_deref(), &event.topic), event.encode());
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(message);
        let publish = cmd.query_async::<Value>(&mut commands);
        match timeout(REPLY_TIMEOUT, publish).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(self.failed(&error)),
            Err(_) => Err(self.failed(&"no answer in time")),
        }
    }

    /// The cluster's epoch and `topic`'s `seq` in `tenant`'s namespace, as
    /// Redis holds them (read together, so the `seq` is of that epoch).
    pub(crate) async fn position(&self, tenant: Option<&str>, topic: &Topic) -> Result<Position, Unavailable> {
        let mut commands = self.commands().ok_or_else(|| self.unreachable())?;
        let seq_key = self.seq_key(&head(tenant, topic));
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&self.epoch_key).arg(&seq_key);
        let read = cmd.query_async::<(Option<String>, Option<u64>)>(&mut commands);
        match timeout(REPLY_TIMEOUT, read).await {
            Ok(Ok((Some(epoch), seq))) => Ok(Position::new(epoch, seq.unwrap_or(0))),
            Ok(Ok((None, _))) => Err(self.failed(&"the cluster has no epoch in Redis (it lost its data?)")),
            Ok(Err(error)) => Err(self.failed(&error)),
            Err(_) => Err(self.failed(&"no answer in time")),
        }
    }

    /// The events of `topic` in `tenant`'s namespace after `since`, as
    /// Redis holds them, with the topic's `seq` read in the same step: the
    /// history of the node's epoch, or nothing in another.
    pub(crate) async fn history(
        &self,
        tenant: Option<&str>,
        topic: &Topic,
        since: u64,
    ) -> Result<Fetched, Unavailable> {
        let mut commands = self.commands().ok_or_else(|| self.unreachable())?;
        let head = head(tenant, topic);
        let epoch = self.hub.epoch();
        let mut invocation = self.history.key(&self.epoch_key);
        invocation.key(self.seq_key(&head)).key(self.history_key(&epoch, &head));
        invocation.arg(&*epoch).arg(since).arg(self.history_len.max(1));
        let read = invocation.invoke_async::<(String, u64, Vec<(String, Vec<(String, String)>)>)>(&mut commands);
        let (found, seq, entries) = match timeout(REPLY_TIMEOUT, read).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return Err(self.failed(&error)),
            Err(_) => return Err(self.failed(&"no answer in time")),
        };
        if found != *epoch {
            return Ok(Fetched { seq: 0, events: Vec::new() });
        }
        let events = entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let seq = id.strip_prefix("0-")?.parse().ok()?;
                let (_, frame) = fields.into_iter().find(|(name, _)| name == "f")?;
                Some((seq, Frame::from(frame)))
            })
            .collect();
        Ok(Fetched { seq, events })
    }

    fn history_key(&self, epoch: &str, head: &str) -> String {
        format!("{}:history:{epoch}:{head}", self.prefix)
    }

    /// The last `wildcard_seq` of the resource `head` names.
    fn wildcard_seq_key_of(&self, head: &str) -> String {
        format!("{}:wildcard_seq:{head}", self.prefix)
    }

    /// The events of `resource` in `tenant`'s namespace after the
    /// `wildcard_seq` `since`, as Redis holds them, with the resource's last
    /// `wildcard_seq` and the cluster's read in the same step: the history
    /// of the node's epoch, or nothing in another.
    pub(crate) async fn wildcard_history(
        &self,
        tenant: Option<&str>,
        resource: &str,
        since: u64,
    ) -> Result<wildcard::Fetched, Unavailable> {
        let mut commands = self.commands().ok_or_else(|| self.unreachable())?;
        let head = resource_head(tenant, resource);
        let epoch = self.hub.epoch();
        let mut invocation = self.wildcard_history.key(&self.epoch_key);
        invocation.key(self.history_key(&epoch, &head)).key(self.wildcard_seq_key_of(&head));
        invocation
            .key(&self.wildcard_seq_key)
            .arg(&*epoch)
            .arg(since)
            .arg(self.history_len.max(1) * wildcard::REPLAY_TIMES);
        type Reply = (String, u64, u64, Vec<(String, Vec<(String, String)>)>);
        let (found, last, numbered, entries) =
            match timeout(REPLY_TIMEOUT, invocation.invoke_async::<Reply>(&mut commands)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(error)) => return Err(self.failed(&error)),
                Err(_) => return Err(self.failed(&"no answer in time")),
            };
        if found != *epoch {
            return Ok(wildcard::Fetched::default());
        }
        let mut fetched = wildcard::Fetched { last, numbered, complete_after: last, events: Vec::new() };
        for (id, fields) in entries {
            let Some(seq) = id.strip_prefix("0-").and_then(|seq| seq.parse().ok()) else { continue };
            let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, value)| value.clone());
            let (Some(frame), Some(before)) = (field("f"), field("p").and_then(|p| p.parse().ok())) else { continue };
            if fetched.events.is_empty() {
                fetched.complete_after = before;
            }
            fetched.events.push((seq, Frame::from(frame)));
        }
        Ok(fetched)
    }

    fn seq_key(&self, head: &str) -> String {
        format!("{}:seq:{head}", self.prefix)
    }

    fn unreachable(&self) -> Unavailable {
        Unavailable(format!(
            "the cluster bus is unavailable (Redis at {} unreachable): nothing was published; retry later",
            self.url
        ))
    }

    fn failed(&self, error: &dyn std::fmt::Display) -> Unavailable {
        Unavailable(format!(
            "the cluster bus (Redis at {}) failed: {error}; the event may have been published: a retry with the same publish id is not broadcast twice",
            self.url
        ))
    }
}

async fn ping(conn: &mut MultiplexedConnection) -> bool {
    matches!(timeout(REPLY_TIMEOUT, redis::cmd("PING").query_async::<Value>(conn)).await, Ok(Ok(_)))
}

/// Runs in the bus connection's driver, for each push, in the order Redis sent them.
fn on_push(gate: &Gate, hub: &Hub, push: PushInfo) {
    let open = gate.open.lock().unwrap_or_else(PoisonError::into_inner);
    if !*open {
        return;
    }
    match push.kind {
        PushKind::Disconnection => gate.lost.notify_one(),
        PushKind::Message => match (push.data.first(), push.data.get(1)) {
            (Some(Value::BulkString(channel)), Some(Value::BulkString(payload)))
                if **channel != *gate.events.as_bytes() =>
            {
                gate.roster.on_message(payload)
            }
            (_, Some(Value::BulkString(payload))) => match Message::parse(payload) {
                Some(Message { epoch, seq: Some(numbers), tenant, topic, frame }) => {
                    hub.adopt_epoch(epoch);
                    hub.apply(tenant, &topic, numbers, frame.into());
                }
                Some(Message { seq: None, tenant, topic, frame, .. }) => {
                    hub.broadcast_frame(&tenant, &topic, &frame.into())
                }
                None => warn!("ignored a malformed message on the cluster channel"),
            },
            _ => warn!("ignored a message of an unexpected type on the cluster channel"),
        },
        _ => {}
    }
}

/// One event on the channel: `epoch \n seq \n ["tenant","topic"] \n frame`;
/// an ephemeral one has neither epoch nor numbers. The `wildcard_seq` is
/// read from the frame's end, where the script put it: nodes before
/// wildcard recovery read these messages as they always did.
struct Message<'a> {
    epoch: &'a str,
    /// `seq`, and `wildcard_seq` (none from a node before wildcard recovery).
    seq: Option<(u64, Option<u64>)>,
    tenant: Tenant,
    topic: Topic,
    frame: String,
}

impl<'a> Message<'a> {
    fn parse(payload: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.splitn(4, '\n');
        let (epoch, seq, head, frame) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let (tenant, topic): (Option<String>, String) = serde_json::from_str(head).ok()?;
        Some(Self {
            epoch,
            seq: if seq.is_empty() { None } else { Some((seq.parse().ok()?, wildcard_seq_of(frame))) },
            tenant: tenant.map(Into::into),
            topic: Topic::new(topic).ok()?,
            frame: frame.to_owned(),
        })
    }
}

/// The `wildcard_seq` the publish script appended to `frame`, if any.
fn wildcard_seq_of(frame: &str) -> Option<u64> {
    let (_, tail) = frame.rsplit_once(",\"wildcard_seq\":")?;
    tail.strip_suffix('}')?.parse().ok()
}

/// The routing head of a resource type.
fn resource_head(tenant: Option<&str>, resource: &str) -> String {
    serde_json::json!([tenant, resource, "*"]).to_string()
}

/// The routing head of a topic: JSON keeps any tenant or topic apart from the separators.
fn head(tenant: Option<&str>, topic: &Topic) -> String {
    serde_json::json!([tenant, topic.as_str()]).to_string()
}

/// `url` without a password, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Message, redact};

    #[test]
    fn passwords_are_left_out_of_urls_shown() {
        assert_eq!(redact("redis://:secret@10.0.0.1:6379/2"), "redis://***@10.0.0.1:6379/2");
        assert_eq!(redact("redis://user:p@ss@host/0"), "redis://***@host/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn a_message_gives_the_wildcard_seq_the_script_appended_and_none_from_an_older_node() {
        let frame = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":{"wildcard_seq":9},"timestamp":"t"},"seq":4,"wildcard_seq":17}"#;
        let payload = format!("e1\n4\n[null,\"doc:1\"]\n{frame}");
        assert_eq!(Message::parse(payload.as_bytes()).unwrap().seq, Some((4, Some(17))));
        let older = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1","payload":{"a":1,"wildcard_seq":9},"timestamp":"t"},"seq":4}"#;
        let payload = format!("e1\n4\n[null,\"doc:1\"]\n{older}");
        assert_eq!(Message::parse(payload.as_bytes()).unwrap().seq, Some((4, None)), "a payload's own field is not it");
    }
}
