//! The application's subscriptions (its intent, kept across reconnects) and
//! the last `seq` seen per concrete topic (for recovery and deduplication).

use std::collections::BTreeMap;

use herald_protocol::{ClientMessage, Event, Subscribe, Subscribed, Topic, limits::MAX_TOPICS_PER_MESSAGE};

use crate::ResyncReason;

#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    intents: BTreeMap<Topic, Intent>,
    /// Resource types with a `resource:*` intent, to match events without
    /// scanning every intent (applications have few wildcards).
    wildcards: Vec<String>,
    positions: BTreeMap<Topic, u64>,
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
fn wants(intents: &BTreeMap<Topic, Intent>, wildcards: &[String], topic: &Topic) -> bool {
    intents.contains_key(topic) || wildcards.iter().any(|resource| resource == topic.resource())
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
        if let Some(intent) = self.intents.get_mut(&topic) {
            let upgrade = presence && !intent.presence;
            intent.presence |= presence;
            return upgrade;
        }
        if topic.is_wildcard() {
            self.wildcards.push(topic.resource().to_owned());
        }
        self.intents.insert(topic, Intent { presence, sent, awaiting_recovery: false });
        true
    }

    /// Drops an intent and the positions no other intent needs.
    pub(crate) fn remove(&mut self, topic: &str) -> bool {
        let Some((topic, _)) = self.intents.remove_entry(topic) else {
            return false;
        };
        if topic.is_wildcard() {
            self.wildcards.retain(|resource| resource != topic.resource());
        }
        let (intents, wildcards) = (&self.intents, &self.wildcards);
        self.positions.retain(|t, _| wants(intents, wildcards, t));
        true
    }

    pub(crate) fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.intents.keys()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }

    pub(crate) fn contains(&self, topic: &str) -> bool {
        self.intents.contains_key(topic)
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
        self.positions.clear();
    }

    /// A new connection opened. For each intent sent on the lost connection,
    /// decides whether the server can recover it; returns the topics that must
    /// resync now. Call before [`subscribe_messages`](Self::subscribe_messages).
    pub(crate) fn on_reconnect(&mut self, server_recovers: bool) -> Vec<(Topic, ResyncReason)> {
        if !server_recovers {
            // Without an epoch, seq numbers of the new connection need not
            // continue the old ones (a restarted peer starts at 1 again).
            self.positions.clear();
        }
        let mut resync = Vec::new();
        for (topic, intent) in &mut self.intents {
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
                self.intents.iter().filter(|(_, i)| i.presence == presence).map(|(t, _)| t.clone()).collect();
            for chunk in topics.chunks(MAX_TOPICS_PER_MESSAGE) {
                // Inserted one by one: collecting into a map would sort, and
                // the browser build would carry a sort for it.
                let mut since = BTreeMap::new();
                for topic in chunk {
                    if let Some(seq) = self.positions.get(topic) {
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
        for intent in self.intents.values_mut() {
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
            if let Some(intent) = self.intents.get_mut(topic)
                && std::mem::take(&mut intent.awaiting_recovery)
                && !recovered
            {
                resync.push((topic.clone(), ResyncReason::NotRecovered));
            }
        }
        for (topic, &seq) in &subscribed.last_seq {
            if !self.wants(topic) {
                continue;
            }
            let position = self.positions.entry(topic.clone()).or_insert(seq);
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
        match self.positions.get_mut(&event.topic) {
            None => {
                self.positions.insert(event.topic.clone(), seq);
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
