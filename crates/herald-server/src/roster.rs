//! Presence across the nodes of a cluster: each node tells the others, on a
//! channel of its own, which of its users are in each topic's presence, and
//! lists the members the others told it of besides its own.
//!
//! A node sends its whole list of a topic whenever it changed (batched like
//! the diffs its own subscribers get), never a diff: a list is idempotent,
//! and a version makes a late copy of an older one harmless. So a node
//! needs no reads from Redis, and nothing can be left over:
//!
//! - a node that (re)joins the bus says `hello`: the others drop what it
//!   listed before and send it their lists (after a `relist`), and it sends
//!   them its own. Both markers carry the version the lists start at: a
//!   list of that node with a lower version, still on its way, is older;
//! - every node is heard from every third of `presence_ttl` (a `beat`); a
//!   node not heard from for `presence_ttl` (it died, or lost Redis) has
//!   its users leave the others' presence;
//! - a node that shuts down says `bye`, and its users leave at once.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use herald_protocol::{Payload, Topic};
use redis::{Value, aio::MultiplexedConnection};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::{
    hub::{Hub, LocalPresence},
    presence::Snapshot,
};

/// One message on the presence channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Roll {
    /// The node (re)joined the bus: forget what it listed, send it yours;
    /// its lists follow, from version `floor`.
    Hello { node: String, floor: u64 },
    /// The node's lists follow, from version `floor`: forget the older ones.
    Relist { node: String, floor: u64 },
    /// The node is alive.
    Beat { node: String },
    /// The node is going away: its users leave.
    Bye { node: String },
    /// Which of the node's users are in a topic's presence now, with the
    /// metadata of those who set some.
    List {
        node: String,
        tenant: Option<String>,
        topic: String,
        version: u64,
        users: Vec<String>,
        // Values, not raw JSON: a tagged enum is buffered, and raw JSON
        // cannot be read back from the buffer.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        meta: BTreeMap<String, serde_json::Value>,
    },
}

/// Another node, as this one knows it.
struct Heard {
    at: Instant,
    /// Its lists with a lower version are older than what it sent since.
    floor: u64,
}

/// This node's side of the roll call.
pub(crate) struct Roster {
    pub(crate) node: Arc<str>,
    pub(crate) channel: String,
    ttl: Duration,
    hub: Arc<Hub>,
    /// The other nodes heard from.
    heard: Mutex<HashMap<Arc<str>, Heard>>,
    /// This node (re)joined the bus: say hello and send every list.
    joined: AtomicBool,
    /// Another node said hello, or a send failed: send every list.
    resend: AtomicBool,
}

impl Roster {
    pub(crate) fn new(prefix: &str, ttl: Duration, hub: Arc<Hub>) -> Self {
        Self {
            node: format!("{:012x}", fastrand::u64(..) >> 16).into(),
            channel: format!("{prefix}:presence"),
            ttl,
            hub,
            heard: Mutex::default(),
            joined: AtomicBool::new(false),
            resend: AtomicBool::new(false),
        }
    }

    /// The node is on the bus again: what the others listed may be stale.
    pub(crate) fn rejoined(&self) {
        self.heard().clear();
        self.hub.forget_nodes(None);
        self.joined.store(true, Ordering::Release);
        self.hub.presence_out_wake.notify_one();
    }

    /// Handles a message of the presence channel, in the driver of the bus
    /// connection.
    pub(crate) fn on_message(&self, payload: &[u8]) {
        let roll: Roll = match serde_json::from_slice(payload) {
            Ok(roll) => roll,
            Err(error) => return warn!(%error, "ignored a malformed message on the cluster's presence channel"),
        };
        let (Roll::Hello { node, .. }
        | Roll::Relist { node, .. }
        | Roll::Beat { node }
        | Roll::Bye { node }
        | Roll::List { node, .. }) = &roll;
        if **node == *self.node {
            return;
        }
        let node: Arc<str> = node.as_str().into();
        let now = Instant::now();
        match roll {
            Roll::Hello { floor, .. } | Roll::Relist { floor, .. } => {
                self.hub.forget_nodes(Some(&node));
                if matches!(roll, Roll::Hello { .. }) {
                    self.resend.store(true, Ordering::Release);
                    self.hub.presence_out_wake.notify_one();
                }
                self.heard().insert(node, Heard { at: now, floor });
            }
            Roll::Beat { .. } => {
                if let Some(heard) = self.heard().get_mut(&node) {
                    heard.at = now;
                    return;
                }
                // A node this one forgot (silent for a while) or never
                // heard of: a hello has every node send its lists again.
                self.joined.store(true, Ordering::Release);
                self.hub.presence_out_wake.notify_one();
            }
            Roll::Bye { .. } => {
                self.heard().remove(&node);
                self.hub.forget_nodes(Some(&node));
            }
            Roll::List { tenant, topic, version, users, meta, .. } => {
                let floor = {
                    let mut heard = self.heard();
                    let heard = heard.entry(node.clone()).or_insert(Heard { at: now, floor: 0 });
                    heard.at = now;
                    heard.floor
                };
                if version < floor {
                    return;
                }
                match Topic::new(topic) {
                    Ok(topic) => {
                        let meta = meta
                            .into_iter()
                            .filter_map(|(user, meta)| Some((user, Payload::from_value(&meta).ok()?)))
                            .collect();
                        let local = Snapshot { members: users, meta };
                        let list = LocalPresence { tenant: tenant.map(Into::into), topic, version, local };
                        self.hub.set_remote_presence(&node, list);
                    }
                    Err(error) => warn!(%error, "ignored a presence list of a bad topic"),
                }
            }
        }
    }

    /// Sends this node's lists as they change, and a beat every third of
    /// the TTL; forgets the nodes not heard from within it. `commands` gives
    /// the connection to Redis while the node is on the bus. Runs until aborted.
    pub(crate) async fn run(&self, commands: impl Fn() -> Option<MultiplexedConnection>) {
        let mut beat = tokio::time::interval(self.ttl / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut rolls = Vec::new();
            tokio::select! {
                () = self.hub.presence_out_wake.notified() => {}
                _ = beat.tick() => {
                    rolls.push(Roll::Beat { node: self.node.to_string() });
                    self.forget_silent();
                }
            }
            let node = self.node.to_string();
            let lists = if self.joined.swap(false, Ordering::AcqRel) {
                self.resend.store(false, Ordering::Release);
                let (floor, lists) = self.hub.local_presence();
                rolls.push(Roll::Hello { node, floor });
                lists
            } else if self.resend.swap(false, Ordering::AcqRel) {
                let (floor, lists) = self.hub.local_presence();
                rolls.push(Roll::Relist { node, floor });
                lists
            } else {
                self.hub.take_local_presence()
            };
            rolls.extend(lists.into_iter().map(|list| self.list(list)));
            if rolls.is_empty() {
                continue;
            }
            // Off the bus, nothing is sent: the hello on the way back sends everything.
            let Some(mut commands) = commands() else { continue };
            if let Err(error) = self.send(&mut commands, &rolls).await {
                debug!(%error, "presence not sent to the other nodes; sending every list again");
                self.resend.store(true, Ordering::Release);
            }
        }
    }

    /// Tells the other nodes that this one is going away.
    pub(crate) async fn bye(&self, commands: Option<MultiplexedConnection>) {
        if let Some(mut commands) = commands {
            let _ = self.send(&mut commands, &[Roll::Bye { node: self.node.to_string() }]).await;
        }
    }

    fn list(&self, list: LocalPresence) -> Roll {
        let LocalPresence { tenant, topic, version, local: Snapshot { members, meta } } = list;
        Roll::List {
            node: self.node.to_string(),
            tenant: tenant.map(|tenant| tenant.to_string()),
            topic: topic.as_str().to_owned(),
            version,
            users: members,
            meta: meta.into_iter().filter_map(|(user, meta)| Some((user, meta.parse().ok()?))).collect(),
        }
    }

    /// Sends `rolls` in one pipeline, in order.
    async fn send(&self, commands: &mut MultiplexedConnection, rolls: &[Roll]) -> Result<(), String> {
        let mut pipe = redis::pipe();
        for roll in rolls {
            let message = serde_json::to_string(roll).expect("a roll is JSON");
            pipe.cmd("PUBLISH").arg(&self.channel).arg(message).ignore();
        }
        match timeout(self.ttl / 3, pipe.query_async::<Value>(commands)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer in time".into()),
        }
    }

    fn forget_silent(&self) {
        let now = Instant::now();
        let mut silent = Vec::new();
        self.heard().retain(|node, heard| {
            let alive = now.duration_since(heard.at) <= self.ttl;
            if !alive {
                silent.push(node.clone());
            }
            alive
        });
        for node in silent {
            warn!(%node, "a node of the cluster went silent: its users leave presence");
            self.hub.forget_nodes(Some(&node));
        }
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Heard>> {
        self.heard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
