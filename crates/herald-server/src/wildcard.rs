//! What a `resource:*` subscription needs: the connections subscribed to
//! each resource's wildcard, and where the resource's events stand, so that
//! a wildcard resumes after a reconnect as a concrete topic does.
//!
//! Every numbered event also gets a `wildcard_seq`: the next number of one
//! counter the hub keeps for its epoch, shared by every resource so that a
//! resource dropped while idle and made again numbers on from above its old
//! numbers. A resource marks each of its events that its topic's history
//! still holds, in order, with the event's frame (shared with the history,
//! not copied). A wildcard's `since` then replays the events marked after
//! it.
//!
//! Numbering, marking and fan-out happen under the resource's lock, and a
//! wildcard registers under it too: it gets every event after the position
//! it is given live, and none before.
//!
//! On a node of a cluster Redis numbers the events (`cluster.rs`): the node
//! marks what the channel brings, [`BusOrder`] says from which number on it
//! saw everything, and what came before is read from the resource's history
//! in Redis ([`Fetched`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use crate::hub::{Frame, Peer, Tenant};

/// A wildcard replays at most this many times `history_len` events; a gap
/// larger than that answers `recovered: false`, and the client refetches
/// (cheaper than the replay by then). A cluster's resource history in Redis
/// holds as many.
pub(crate) const REPLAY_TIMES: usize = 10;

/// The resource type of a topic's name (`gift-list` of `gift-list:123`),
/// for the hub and the store, which key topics by name.
pub(crate) fn resource_of(topic: &str) -> &str {
    topic.split_once(':').map_or(topic, |(resource, _)| resource)
}

/// One shard's resources, by resource type and namespace (looked up by
/// name without allocating one).
pub(crate) type Resources = HashMap<String, HashMap<Tenant, Resource>>;

/// One resource type of a namespace (`gift-list` of tenant `acme`).
#[derive(Default)]
pub(crate) struct Resource {
    /// The connections subscribed to `resource:*`.
    pub(crate) peers: HashMap<u64, Arc<Peer>>,
    /// The events still in their topics' histories, oldest first.
    marks: VecDeque<Mark>,
    /// No event after a position below this can be replayed: its mark went
    /// with its topic's history.
    floor: u64,
    /// What the resource's entry knows nothing before: the highest
    /// position of the resources dropped before it was made (its own
    /// earlier entry's among them).
    inherited: u64,
    /// The `wildcard_seq` of the last event.
    last: u64,
}

/// A resource's events after a position, read from the cluster's history in
/// Redis for a node that did not see them all.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The resource's last `wildcard_seq` when they were read.
    pub(crate) last: u64,
    /// The cluster's last `wildcard_seq` then.
    pub(crate) numbered: u64,
    /// `events` holds every event of the resource after this, up to `last`.
    pub(crate) complete_after: u64,
    /// `(wildcard_seq, frame)`, oldest first.
    pub(crate) events: Vec<(u64, Frame)>,
}

/// A resource whose floor rose, for the store; `gone` when it was dropped
/// as idle.
#[derive(Debug)]
pub(crate) struct Floor {
    pub(crate) tenant: Tenant,
    pub(crate) resource: String,
    pub(crate) floor: u64,
    pub(crate) gone: bool,
}

/// One event of a resource, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) wildcard_seq: u64,
    pub(crate) frame: Frame,
}

impl Resource {
    /// A resource nothing is known of before `inherited` (the highest
    /// position of the resources dropped before it).
    pub(crate) fn new(inherited: u64) -> Self {
        Self { inherited, last: inherited, ..Self::default() }
    }

    /// A resource a store kept: its events before `floor` went.
    pub(crate) fn kept(floor: u64) -> Self {
        Self { floor, last: floor, ..Self::default() }
    }

    /// Where a wildcard registered now starts: every event up to here came
    /// before it.
    pub(crate) fn position(&self) -> u64 {
        self.last.max(self.floor)
    }

    /// Marks an event its topic's history keeps.
    pub(crate) fn mark(&mut self, mark: Mark) {
        self.last = self.last.max(mark.wildcard_seq);
        self.marks.push_back(mark);
    }

    /// Takes note of an event no history keeps (the caller then forgets
    /// through it).
    pub(crate) fn passed(&mut self, wildcard_seq: u64) {
        self.last = self.last.max(wildcard_seq);
    }

    /// The events up to `wildcard_seq` can no longer all be replayed;
    /// returns whether the floor rose.
    pub(crate) fn forget_through(&mut self, wildcard_seq: u64) -> bool {
        if wildcard_seq <= self.floor {
            return false;
        }
        self.floor = wildcard_seq;
        let gone = self.marks.partition_point(|mark| mark.wildcard_seq <= wildcard_seq);
        self.marks.drain(..gone);
        true
    }

    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// Forgets every mark (a node of a cluster off the channel).
    pub(crate) fn forget_all(&mut self) {
        self.marks.clear();
        self.floor = self.position();
    }

    /// The frames of the events after `since`, oldest first; `None` when
    /// some may be gone, there are more than `max`, or `since` is no
    /// position of this resource. Nothing before `known_from` is known (see
    /// [`BusOrder`]).
    pub(crate) fn after(&self, since: u64, known_from: u64, max: usize) -> Option<Vec<Frame>> {
        if !self.replays(since, known_from) {
            return None;
        }
        self.marked_after(since, max)
    }

    /// Whether [`after`](Self::after) has the events after `since`.
    pub(crate) fn replays(&self, since: u64, known_from: u64) -> bool {
        since >= known_from.max(self.floor).max(self.inherited) && since <= self.position()
    }

    /// The frames of the marked events after `from`; `None` if marks after
    /// it went (since this entry was made: the caller knows what came
    /// before), or there are more than `max`.
    fn marked_after(&self, from: u64, max: usize) -> Option<Vec<Frame>> {
        if from < self.floor {
            return None;
        }
        let from = self.marks.partition_point(|mark| mark.wildcard_seq <= from);
        let marks = self.marks.range(from..);
        (marks.len() <= max).then(|| marks.map(|mark| mark.frame.clone()).collect())
    }

    /// On a node of a cluster that cannot replay `since` from what it saw:
    /// the events Redis held after it (`fetched`, read before this
    /// registration), then those this node saw after the read. `None` if
    /// Redis did not reach back to `since`, or the node may have missed an
    /// event after the read (it was not listening yet, `known_from`).
    pub(crate) fn after_fetched(
        &self,
        since: u64,
        known_from: u64,
        fetched: Fetched,
        max: usize,
    ) -> Option<Vec<Frame>> {
        // Every event after `fetched.last` was numbered after the read, which
        // a node listening since before `fetched.numbered` saw.
        let whole = fetched.events.last().is_none_or(|(last, _)| *last == fetched.last);
        if !whole || fetched.complete_after > since || since > fetched.last || known_from > fetched.numbered {
            return None;
        }
        let later = self.marked_after(fetched.last, max.checked_sub(fetched.events.len())?)?;
        Some(fetched.events.into_iter().map(|(_, frame)| frame).chain(later).collect())
    }

    /// Nothing to deliver to and nothing to replay: it can go.
    pub(crate) fn is_idle(&self) -> bool {
        self.peers.is_empty() && self.marks.is_empty()
    }
}

/// On a node of a cluster: from which `wildcard_seq` on the node saw every
/// event. Redis numbers them one after the other, and the channel brings
/// them in that order, from the moment the node listens.
#[derive(Debug, Default)]
pub(crate) struct BusOrder {
    /// Every event after it was seen; `None`: nothing is known.
    floor: Option<u64>,
    /// The last one seen since the node listened.
    last: Option<u64>,
    /// An event without a `wildcard_seq` (from a node before wildcard
    /// recovery) came since: what a position before the next one missed
    /// is unknown.
    unnumbered: bool,
}

impl BusOrder {
    pub(crate) fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// Redis's counter, read once the node listened: every later event comes.
    pub(crate) fn listening_from(&mut self, counter: u64) {
        self.floor = Some(self.floor.map_or(counter, |floor| floor.max(counter)));
    }

    /// Takes note of an event the channel brought; returns whether events
    /// were missed before it (then a wildcard registered meanwhile may have
    /// missed them live).
    pub(crate) fn saw(&mut self, wildcard_seq: Option<u64>) -> bool {
        let Some(seq) = wildcard_seq else {
            (self.floor, self.last, self.unnumbered) = (None, None, true);
            return false;
        };
        let gap = self.last.is_some_and(|last| seq != last + 1);
        // After an unnumbered event, a position just before this one may
        // not have seen it.
        let through = if std::mem::take(&mut self.unnumbered) { seq } else { seq - 1 };
        if gap || self.floor.is_none() || through > seq - 1 {
            self.floor = Some(self.floor.map_or(through, |floor| floor.max(through)));
        }
        self.last = Some(seq);
        gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(wildcard_seq: u64, topic: &str, seq: u64) -> Mark {
        Mark { wildcard_seq, frame: format!("{topic} {seq}").into() }
    }

    fn frames(marks: &[Mark]) -> Option<Vec<Frame>> {
        Some(marks.iter().map(|mark| mark.frame.clone()).collect())
    }

    #[test]
    fn a_position_replays_the_marks_after_it_until_the_floor_passes_it() {
        let mut resource = Resource::new(10);
        assert_eq!(resource.position(), 10);
        assert_eq!(resource.after(10, 0, 10), Some(vec![]));
        assert_eq!(resource.after(9, 0, 10), None, "below what a new resource knows");
        resource.mark(mark(11, "doc:1", 1));
        resource.mark(mark(14, "doc:2", 1));
        resource.mark(mark(15, "doc:1", 2));
        assert_eq!(resource.after(11, 0, 10), frames(&[mark(14, "doc:2", 1), mark(15, "doc:1", 2)]));
        assert_eq!(resource.after(11, 12, 10), None, "before what the node knows");
        assert_eq!(resource.after(16, 0, 10), None, "past the last event");
        assert_eq!(resource.after(10, 0, 2), None, "more than the most a wildcard replays");
        assert!(resource.forget_through(14));
        assert!(!resource.forget_through(12), "the floor never goes down");
        assert_eq!(resource.after(11, 0, 10), None);
        assert_eq!(resource.after(14, 0, 10), frames(&[mark(15, "doc:1", 2)]));
        resource.passed(20);
        resource.forget_through(20);
        assert_eq!((resource.position(), resource.after(15, 0, 10)), (20, None));
        assert!(resource.is_idle());
    }

    #[test]
    fn what_redis_held_replays_when_it_reaches_back_and_the_node_saw_the_rest() {
        let mut resource = Resource::new(0);
        resource.mark(mark(31, "doc:1", 3));
        let fetched = |complete_after, last| Fetched {
            last,
            numbered: 30,
            complete_after,
            events: vec![(12, "doc:2 1".into()), (last, "doc:1 2".into())],
        };
        let all = frames(&[mark(12, "doc:2", 1), mark(20, "doc:1", 2), mark(31, "doc:1", 3)]);
        assert_eq!(resource.after_fetched(10, 25, fetched(10, 20), 10), all);
        assert_eq!(resource.after_fetched(9, 25, fetched(10, 20), 10), None, "Redis no longer reaches back to 9");
        assert_eq!(resource.after_fetched(10, 31, fetched(10, 20), 10), None, "the node listened after the read");
        assert_eq!(resource.after_fetched(10, 25, fetched(10, 20), 2), None, "more than the most a wildcard replays");
        let mut short = fetched(10, 20);
        short.events.pop();
        assert_eq!(resource.after_fetched(10, 25, short, 10), None, "the reply stopped short of the last");
        resource.forget_through(25);
        assert_eq!(resource.after_fetched(10, 25, fetched(10, 20), 10), None, "the node's marks after the read went");
        // A quiet resource, made after others were dropped: what Redis says stands.
        let quiet = Resource::new(28);
        let nothing = Fetched { last: 20, numbered: 30, complete_after: 20, events: Vec::new() };
        assert_eq!(quiet.after(20, 25, 10), None, "not from what this node knows");
        assert_eq!(quiet.after_fetched(20, 25, nothing, 10), Some(vec![]));
    }

    #[test]
    fn a_node_knows_the_events_after_it_listened_until_one_is_missing() {
        let mut bus = BusOrder::default();
        assert_eq!(bus.floor(), None);
        // In flight when the counter was read (40): below it, harmless.
        assert!(!bus.saw(Some(39)));
        bus.listening_from(40);
        assert_eq!(bus.floor(), Some(40));
        for seq in 40..=42 {
            assert!(!bus.saw(Some(seq)));
        }
        assert_eq!(bus.floor(), Some(40));
        assert!(bus.saw(Some(45)), "43 and 44 never came");
        assert_eq!(bus.floor(), Some(44));
        assert!(!bus.saw(None));
        assert_eq!(bus.floor(), None, "an unnumbered event: nothing is known");
        assert!(!bus.saw(Some(46)));
        assert_eq!(bus.floor(), Some(46), "a position of 45 may not have seen it");
        assert!(!bus.saw(Some(47)));
        assert_eq!(bus.floor(), Some(46));
    }
}
