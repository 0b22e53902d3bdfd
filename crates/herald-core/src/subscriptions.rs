//! The application's subscriptions (its intent, kept across reconnects) and
//! the last `seq` seen per concrete topic (for recovery and deduplication),
//! and per wildcard the last `wildcard_seq` (for recovery).

use herald_protocol::{
    ClientMessage, Event, Payload, Position, Subscribe, Subscribed, Topic, TopicMap, limits::MAX_TOPICS_PER_MESSAGE,
};

use crate::ResyncReason;

#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    intents: TopicMap<Intent>,
    /// Resource types with a `resource:*` intent, to match events without
    /// scanning every intent (applications have few wildcards).
    wildcards: Vec<String>,
    positions: TopicMap<u64>,
}

#[derive(Debug, Clone)]
struct Intent {
    presence: bool,
    /// What the other members see of this user, with presence.
    meta: Option<Payload>,
    /// Sent on a connection (this one, or one since lost: then the next
    /// must recover it or report a resync).
    sent: bool,
    awaiting_recovery: bool,
    /// The server answered it on this connection (or never will).
    answered: bool,
    /// The application was told of it (Live, or events), so a later
    /// connection must recover it or say to resync.
    told: bool,
    /// Where the application already was when it subscribed; sent as the
    /// `since` until the server confirms the subscription.
    from: Option<Position>,
}

impl Intent {
    /// Marks the intent sent; returns the position to subscribe from and
    /// its epoch: the one `seen` on earlier connections (of `epoch`), or
    /// else the application's, once.
    fn send(&mut self, seen: Option<u64>, epoch: Option<&str>) -> (Option<String>, Option<u64>) {
        self.sent = true;
        match (seen, &self.from) {
            (Some(seq), _) => (epoch.map(str::to_owned), Some(seq)),
            (None, Some(from)) => {
                // Its answer says whether what came after `from` was replayed.
                self.awaiting_recovery = true;
                (Some(from.epoch.clone()), Some(from.seq))
            }
            (None, None) => (None, None),
        }
    }
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
    /// it on a topic already subscribed without it counts as new; metadata
    /// replaces the intent's (see [`set_meta`](Self::set_meta)).
    pub(crate) fn insert(
        &mut self,
        topic: Topic,
        presence: bool,
        meta: Option<Payload>,
        from: Option<Position>,
        sent: bool,
    ) -> bool {
        if let Some(intent) = self.intents.get_mut(topic.as_str()) {
            let upgrade = presence && !intent.presence;
            intent.presence |= presence;
            if meta.is_some() {
                intent.meta = meta;
            }
            return upgrade;
        }
        if topic.is_wildcard() {
            self.wildcards.push(topic.resource().to_owned());
        }
        let intent = Intent { presence, meta, sent, awaiting_recovery: false, answered: false, told: false, from };
        self.intents.get_or_insert(&topic, intent);
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
        self.positions.retain(|t, _| wants(intents, wildcards, t));
        true
    }

    /// Replaces the presence metadata of a subscription with presence;
    /// returns whether it was sent on the connection (then the server must
    /// be told), or `None` without such a subscription.
    pub(crate) fn set_meta(&mut self, topic: &str, meta: Payload) -> Option<bool> {
        let intent = self.intents.get_mut(topic).filter(|intent| intent.presence)?;
        intent.meta = Some(meta);
        Some(intent.sent)
    }

    pub(crate) fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.intents.keys()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }

    pub(crate) fn contains(&self, topic: &str) -> bool {
        self.intents.get(topic).is_some()
    }

    fn wants(&self, topic: &Topic) -> bool {
        wants(&self.intents, &self.wildcards, topic)
    }

    /// Marks the intents `topic` is delivered to (its own and its
    /// resource's wildcard) as told.
    fn told(&mut self, topic: &Topic) {
        if let Some(intent) = self.intents.get_mut(topic.as_str()) {
            intent.told = true;
        }
        if !self.wildcards.is_empty()
            && let Some((_, intent)) =
                self.intents.iter_mut().find(|(t, _)| t.is_wildcard() && t.resource() == topic.resource())
        {
            intent.told = true;
        }
    }

    /// Moves the position of `topic`'s wildcard, if subscribed, to
    /// `wildcard_seq`. Only a position the server gave (in `subscribed`)
    /// moves: it says every earlier event of the resource reached this
    /// connection, which an event alone does not.
    fn advance_wildcard(&mut self, topic: &Topic, wildcard_seq: u64) {
        if !self.wildcards.iter().any(|resource| resource == topic.resource()) {
            return;
        }
        let wildcard = format!("{}:*", topic.resource());
        if let Some(position) = self.positions.get_mut(&wildcard) {
            *position = (*position).max(wildcard_seq);
        }
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
        for (topic, intent) in self.intents.iter_mut() {
            intent.answered = false;
            if !intent.sent {
                continue;
            }
            if !server_recovers {
                resync.push((topic.clone(), ResyncReason::NoRecovery));
            } else if !intent.told && intent.from.is_none() {
                // Lost before the server answered it or sent any of its
                // events: the application holds nothing of it yet, and its
                // first Live is still to come.
            } else if topic.is_wildcard() && self.positions.get(topic.as_str()).is_none() {
                // The server gave the wildcard no position to resume from.
                resync.push((topic.clone(), ResyncReason::Wildcard));
            } else {
                intent.awaiting_recovery = true;
            }
        }
        resync
    }

    /// `subscribe` messages for every intent, with recovery positions, at most
    /// [`MAX_TOPICS_PER_MESSAGE`] topics each. A position seen on earlier
    /// connections belongs to `epoch`; one the application gave
    /// ([`SubscribeOptions::from`](crate::SubscribeOptions::from)) to its own
    /// epoch, so topics go in one message per epoch. Marks every intent as sent.
    pub(crate) fn subscribe_messages(&mut self, epoch: Option<&str>) -> Vec<ClientMessage> {
        // ((presence, its metadata, the epoch of its `since`), topic, since)
        type Key = (bool, Option<Payload>, Option<String>);
        let mut wanted: Vec<(Key, Topic, Option<u64>)> = Vec::new();
        for (topic, intent) in self.intents.iter_mut() {
            let (since_epoch, since) = intent.send(self.positions.get(topic.as_str()).copied(), epoch);
            wanted.push(((intent.presence, intent.meta.clone(), since_epoch), topic.clone(), since));
        }
        // Grouped by presence, metadata and epoch; a stable sort keeps topic order within each.
        let order = |key: &Key| (key.0, key.1.as_ref().map(Payload::get).map(str::to_owned), key.2.clone());
        wanted.sort_by_cached_key(|(key, _, _)| order(key));
        let mut messages = Vec::new();
        for group in wanted.chunk_by(|a, b| a.0 == b.0) {
            for chunk in group.chunks(MAX_TOPICS_PER_MESSAGE) {
                let since: TopicMap<u64> =
                    chunk.iter().filter_map(|(_, topic, seq)| Some((topic.clone(), (*seq)?))).collect();
                let (presence, meta, epoch) = chunk[0].0.clone();
                messages.push(ClientMessage::Subscribe(Subscribe {
                    topics: chunk.iter().map(|(_, topic, _)| topic.clone()).collect(),
                    epoch: epoch.filter(|_| !since.is_empty()),
                    since,
                    presence,
                    meta,
                }));
            }
        }
        messages
    }

    /// The `subscribe` message of one intent, for the open connection
    /// (with its position, as [`subscribe_messages`](Self::subscribe_messages)
    /// would). Marks it as sent.
    pub(crate) fn subscribe_message(&mut self, topic: &Topic, epoch: Option<&str>) -> Option<ClientMessage> {
        let seen = self.positions.get(topic.as_str()).copied();
        let intent = self.intents.get_mut(topic.as_str())?;
        let (epoch, since) = intent.send(seen, epoch);
        Some(ClientMessage::Subscribe(Subscribe {
            topics: vec![topic.clone()],
            epoch,
            since: since.map(|seq| (topic.clone(), seq)).into_iter().collect(),
            presence: intent.presence,
            meta: intent.meta.clone(),
        }))
    }

    /// The server confirmed subscriptions: returns each confirmed topic,
    /// with why it must resync first, if it must.
    pub(crate) fn on_subscribed(&mut self, subscribed: &Subscribed) -> Vec<(Topic, Option<ResyncReason>)> {
        let recovered = subscribed.recovered == Some(true);
        let mut confirmed = Vec::new();
        for topic in &subscribed.topics {
            if let Some(intent) = self.intents.get_mut(topic.as_str()) {
                intent.answered = true;
                intent.told = true;
                intent.from = None;
                let resync =
                    (std::mem::take(&mut intent.awaiting_recovery) && !recovered).then_some(ResyncReason::NotRecovered);
                confirmed.push((topic.clone(), resync));
            }
            // Not recovered and no position given (a node of a cluster that
            // has not seen the topic yet): the old position says nothing
            // about the numbers to come, so the next event sets it instead of
            // showing a false gap.
            if subscribed.recovered == Some(false) && subscribed.last_seq.get(topic.as_str()).is_none() {
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
        confirmed
    }

    /// The intents sent on this connection that the server has not answered
    /// (and never will: it does not confirm subscriptions); marks them answered.
    pub(crate) fn take_unanswered(&mut self) -> Vec<Topic> {
        let unanswered = self.intents.iter_mut().filter(|(_, intent)| intent.sent && !intent.answered);
        unanswered
            .map(|(topic, intent)| {
                intent.answered = true;
                topic.clone()
            })
            .collect()
    }

    /// Checks an event against subscriptions and positions, and advances the
    /// position.
    pub(crate) fn on_event(&mut self, event: &Event) -> Delivery {
        if !self.wants(&event.topic) {
            return Delivery::Unwanted;
        }
        self.told(&event.topic);
        if let Some(wildcard_seq) = event.wildcard_seq {
            self.advance_wildcard(&event.topic, wildcard_seq);
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
