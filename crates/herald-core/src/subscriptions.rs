//! The application's subscriptions (its intent, kept across reconnects) and
//! the last `seq` seen per concrete topic (for recovery and deduplication).

use std::collections::BTreeMap;

use herald_protocol::{ClientMessage, Event, Subscribe, Subscribed, Topic, limits::MAX_TOPICS_PER_MESSAGE};

use crate::ResyncReason;

#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    intents: TopicMap<Intent>,
    /// Resource types with a `resource:*` intent, to match events without
    /// scanning every intent (applications have few wildcards).
    wildcards: Vec<String>,
    positions: TopicMap<u64>,
}

/// Values by topic, in topic order, found by binary search. A sorted `Vec`
/// rather than a `BTreeMap`: as fast for the tens to thousands of topics a
/// client holds, and a fraction of the code in the browser build.
#[derive(Debug)]
struct TopicMap<V>(Vec<(Topic, V)>);

impl<V> Default for TopicMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> TopicMap<V> {
    fn find(&self, topic: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(t, _)| t.as_str().cmp(topic))
    }

    fn get(&self, topic: &str) -> Option<&V> {
        self.find(topic).ok().map(|at| &self.0[at].1)
    }

    fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.find(topic).ok().map(|at| &mut self.0[at].1)
    }

    /// The value of `topic`, inserted as `value` if there was none.
    fn get_or_insert(&mut self, topic: &Topic, value: V) -> &mut V {
        let at = self.find(topic.as_str()).unwrap_or_else(|at| {
            self.0.insert(at, (topic.clone(), value));
            at
        });
        &mut self.0[at].1
    }

    fn remove(&mut self, topic: &str) -> Option<(Topic, V)> {
        self.find(topic).ok().map(|at| self.0.remove(at))
    }
}

#[derive(Debug, Clone, Copy)]
struct Intent {
    presence: bool,
    /// Sent on a connection that has since been lost: the next connection
    /// must recover it or report a resync.
    sent: bool,
    awaiting_recovery: bool,
}

/// Whether an intent covers `topic`, directly or by a wildcard.
fn wants(intents: &TopicMap<Intent>, wildcards: &[String], topic: &Topic) -> bool {
    intents.get(topic.as_str()).is_some() || wildcards.iter().any(|resource| resource == topic.resource())
}

/// What to do with an incoming event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Deliver,
    /// Delivered, but `seq` skipped numbers.
    Gap {
        expected: u64,
        got: u64,
    },
    /// Already seen (a replay overlapping live events).
    Duplicate,
    /// No subscription wants it (an unsubscribe crossed it on the wire).
    Unwanted,
}

impl Subscriptions {
    /// Adds an intent; `false` if it was already there as asked. Presence
    /// is on while any subscriber of the topic asked for it, so asking for
    /// it on a topic already subscribed without it counts as new.
    pub(crate) fn insert(&mut self, topic: Topic, presence: bool, sent: bool) -> bool {
        if let Some(intent) = self.intents.get_mut(topic.as_str()) {
            let upgrade = presence && !intent.presence;
            intent.presence |= presence;
            return upgrade;
        }
        if topic.is_wildcard() {
            self.wildcards.push(topic.resource().to_owned());
        }
        self.intents.get_or_insert(&topic, Intent { presence, sent, awaiting_recovery: false });
        true
    }

    /// Drops an intent and the positions no other intent needs.
    pub(crate) fn remove(&mut self, topic: &str) -> bool {
        let Some((topic, _)) = self.intents.remove(topic) else {
            return false;
        };
        if topic.is_wildcard() {
            self.wildcards.retain(|resource| resource != topic.resource());
        }
        let (intents, wildcards) = (&self.intents, &self.wildcards);
        self.positions.0.retain(|(t, _)| wants(intents, wildcards, t));
        true
    }

    pub(crate) fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.intents.0.iter().map(|(topic, _)| topic)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.intents.0.is_empty()
    }

    pub(crate) fn contains(&self, topic: &str) -> bool {
        self.intents.get(topic).is_some()
    }

    fn wants(&self, topic: &Topic) -> bool {
        wants(&self.intents, &self.wildcards, topic)
    }

    /// The last `seq` seen on a concrete topic.
    pub(crate) fn position(&self, topic: &str) -> Option<u64> {
        self.positions.get(topic).copied()
    }

    /// Positions belong to a server epoch; a new epoch starts over.
    pub(crate) fn clear_positions(&mut self) {
        self.positions.0.clear();
    }

    /// A new connection opened. For each intent sent on the lost connection,
    /// decides whether the server can recover it; returns the topics that must
    /// resync now. Call before [`subscribe_messages`](Self::subscribe_messages).
    pub(crate) fn on_reconnect(&mut self, server_recovers: bool) -> Vec<(Topic, ResyncReason)> {
        if !server_recovers {
            // Without an epoch, seq numbers of the new connection need not
            // continue the old ones (a restarted peer starts at 1 again).
            self.positions.0.clear();
        }
        let mut resync = Vec::new();
        for (topic, intent) in &mut self.intents.0 {
            if !intent.sent {
                continue;
            }
            if !server_recovers {
                resync.push((topic.clone(), ResyncReason::NoRecovery));
            } else if topic.is_wildcard() {
                resync.push((topic.clone(), ResyncReason::Wildcard));
            } else {
                intent.awaiting_recovery = true;
            }
        }
        resync
    }

    /// `subscribe` messages for every intent, with recovery positions, at most
    /// [`MAX_TOPICS_PER_MESSAGE`] topics each. Marks every intent as sent.
    pub(crate) fn subscribe_messages(&mut self, epoch: Option<&str>) -> Vec<ClientMessage> {
        let mut messages = Vec::new();
        for presence in [false, true] {
            let topics: Vec<Topic> =
                self.intents.0.iter().filter(|(_, i)| i.presence == presence).map(|(t, _)| t.clone()).collect();
            for chunk in topics.chunks(MAX_TOPICS_PER_MESSAGE) {
                // Inserted one by one: collecting into a map would sort, and
                // the browser build would carry a sort for it.
                let mut since = BTreeMap::new();
                for topic in chunk {
                    if let Some(seq) = self.positions.get(topic.as_str()) {
                        since.insert(topic.clone(), *seq);
                    }
                }
                messages.push(ClientMessage::Subscribe(Subscribe {
                    topics: chunk.to_vec(),
                    epoch: epoch.filter(|_| !since.is_empty()).map(str::to_owned),
                    since,
                    presence,
                }));
            }
        }
        for (_, intent) in &mut self.intents.0 {
            intent.sent = true;
        }
        messages
    }

    /// Records that an intent went out on the open connection.
    pub(crate) fn mark_sent(&mut self, topic: &str) {
        if let Some(intent) = self.intents.get_mut(topic) {
            intent.sent = true;
        }
    }

    /// The server confirmed a subscription; returns the topics to resync.
    pub(crate) fn on_subscribed(&mut self, subscribed: &Subscribed) -> Vec<(Topic, ResyncReason)> {
        let recovered = subscribed.recovered == Some(true);
        let mut resync = Vec::new();
        for topic in &subscribed.topics {
            if let Some(intent) = self.intents.get_mut(topic.as_str())
                && std::mem::take(&mut intent.awaiting_recovery)
                && !recovered
            {
                resync.push((topic.clone(), ResyncReason::NotRecovered));
            }
            // Not recovered and no position given (a node of a cluster that
            // has not seen the topic yet): the old position says nothing
            // about the numbers to come, so the next event sets it instead of
            // showing a false gap.
            if subscribed.recovered == Some(false) && !subscribed.last_seq.contains_key(topic) {
                self.positions.remove(topic.as_str());
            }
        }
        for (topic, &seq) in &subscribed.last_seq {
            if !self.wants(topic) {
                continue;
            }
            let position = self.positions.get_or_insert(topic, seq);
            *position = if subscribed.recovered == Some(false) { seq } else { (*position).max(seq) };
        }
        resync
    }

    /// Checks an event against subscriptions and positions, and advances the
    /// position.
    pub(crate) fn on_event(&mut self, event: &Event) -> Delivery {
        if !self.wants(&event.topic) {
            return Delivery::Unwanted;
        }
        let Some(seq) = event.seq else { return Delivery::Deliver };
        match self.positions.get_mut(event.topic.as_str()) {
            None => {
                self.positions.get_or_insert(&event.topic, seq);
                Delivery::Deliver
            }
            Some(last) if seq <= *last => Delivery::Duplicate,
            Some(last) => {
                let expected = *last + 1;
                *last = seq;
                if seq == expected { Delivery::Deliver } else { Delivery::Gap { expected, got: seq } }
            }
        }
    }
}
