//! The rules of one connection shared by the tabs of a browser (any peers
//! that talk over a broadcast channel): who holds the connection, which
//! topics it needs, which tab gets what, the session's presence, and which
//! publishes a new holder gets.
//!
//! One tab, the holder, runs the [`Session`](crate::Session). It keeps a
//! [`Hub`]: the union of every tab's topics, each with its subscribing tabs
//! and where each tab is, so that an event reaches exactly the tabs that
//! subscribed, each at most once. Every tab keeps a [`Lease`]: the holder
//! renews it, the others watch it lapse (a closed, crashed or frozen holder)
//! and take over with a higher [`Term`]; anything said under a lower term is
//! stale, and a holder that hears a higher one steps down.
//!
//! The session is one member of each topic's presence for all the tabs:
//! [`SharedPresence`] says how it subscribes and with what metadata. A
//! tab's publishes wait in its [`Unacked`] until a holder answers them, and
//! go again to each new holder.

use std::time::Duration;

use herald_protocol::{Position, Topic, TopicMap};
use web_time::Instant;

use crate::joined_behind;

mod presence;
mod unacked;

pub use presence::{PresenceChange, PresenceMember, SessionSubscription, SharedPresence};
pub use unacked::Unacked;

/// A tab, as the driver numbers them (at random: tabs share no counter).
pub type TabId = u32;

/// A holder's term: a higher term replaces a lower one. Two tabs that take
/// over at once pick the same number; the higher tab id wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term {
    /// One more than the highest term the new holder had seen.
    pub number: u64,
    /// The holder of the term.
    pub holder: TabId,
}

/// What a tab makes of a holder's message, by its term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Heard {
    /// The current holder renewed its lease.
    Current,
    /// A new holder. `stepped_down`: this tab held the connection until now,
    /// and must close its socket and send nothing more on it.
    NewHolder {
        /// This tab was the holder.
        stepped_down: bool,
    },
    /// From an older term (a thawed holder that does not know yet): ignore it.
    Stale,
}

/// One tab's view of who holds the shared connection.
///
/// ```
/// use std::time::Duration;
/// use herald_core::{Heard, Instant, Lease, Term};
///
/// let start = Instant::now();
/// let mut lease = Lease::new(7, Duration::from_millis(1500), start);
/// assert_eq!(lease.heard(start, Term { number: 1, holder: 3 }), Heard::NewHolder { stepped_down: false });
/// assert!(!lease.lapsed(start + Duration::from_millis(1000)));
/// // The holder went quiet (frozen): take over with the next term.
/// assert!(lease.lapsed(start + Duration::from_millis(1500)));
/// assert_eq!(lease.take(start), Term { number: 2, holder: 7 });
/// assert_eq!(lease.heard(start, Term { number: 1, holder: 3 }), Heard::Stale);
/// ```
#[derive(Debug, Clone)]
pub struct Lease {
    me: TabId,
    current: Option<Term>,
    renewed: Instant,
    duration: Duration,
}

impl Lease {
    /// The lease of tab `me`, lapsing `duration` after the holder's last
    /// renewal. A new tab gives a holder it has not heard of yet one lease
    /// to speak up (a holder answers a new tab at once, unless it is frozen).
    pub fn new(me: TabId, duration: Duration, now: Instant) -> Self {
        Self { me, current: None, renewed: now, duration }
    }

    /// The tab this lease is of.
    pub fn me(&self) -> TabId {
        self.me
    }

    /// The current term, if any holder was heard of.
    pub fn term(&self) -> Option<Term> {
        self.current
    }

    /// Whether this tab holds the connection.
    pub fn holds(&self) -> bool {
        self.current.is_some_and(|term| term.holder == self.me)
    }

    /// This tab takes the connection now (it got the lock): its term is one
    /// more than any it has seen.
    pub fn take(&mut self, now: Instant) -> Term {
        let term = Term { number: self.current.map_or(1, |term| term.number + 1), holder: self.me };
        self.current = Some(term);
        self.renewed = now;
        term
    }

    /// The holder renews its own lease (it tells the others with a message
    /// under its term). A holder renews every third of the lease.
    pub fn renew(&mut self, now: Instant) {
        if self.holds() {
            self.renewed = now;
        }
    }

    /// Whether this tab holds the connection by a lease it failed to renew in
    /// time: it was frozen (or its timers stalled), so another tab may have
    /// taken over. It must step down before it acts on anything it missed.
    pub fn expired(&self, now: Instant) -> bool {
        self.holds() && now.saturating_duration_since(self.renewed) >= self.duration
    }

    /// How often the holder renews: a third of the lease, so that one late
    /// renewal does not let it lapse.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// Whether a tab's request, under the term of the holder it last heard
    /// of (`None`: it heard of none), is for this tab as the holder. One
    /// addressed to an older holder is dropped: the tab sends it again when
    /// it hears of the new one.
    pub fn addressed(&self, term: Option<Term>) -> bool {
        self.holds() && term == self.current
    }

    /// A message of the holder of `term` arrived.
    pub fn heard(&mut self, now: Instant, term: Term) -> Heard {
        match self.current {
            Some(current) if term < current => Heard::Stale,
            Some(current) if term == current => {
                self.renewed = now;
                Heard::Current
            }
            _ => {
                let stepped_down = self.holds();
                self.current = Some(term);
                self.renewed = now;
                Heard::NewHolder { stepped_down }
            }
        }
    }

    /// Whether another tab's lease lapsed (no renewal for the lease's
    /// duration): then this tab may take over, even from a holder that still
    /// has the lock (a frozen tab keeps it).
    pub fn lapsed(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|at| now >= at)
    }

    /// When [`lapsed`](Self::lapsed) becomes true, for a tab that follows.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.holds()).then(|| self.renewed + self.duration)
    }
}

/// The holder's table of what the tabs subscribed: for each topic the
/// socket needs, the tabs that want it and where each of them is.
///
/// ```
/// use herald_core::{Hub, Joined};
/// use herald_core::protocol::{Position, Topic};
///
/// let mut hub = Hub::default();
/// let topic: Topic = "doc:1".parse()?;
/// assert_eq!(hub.want(1, topic.clone(), None), Joined::Subscribe { from: None });
/// assert_eq!(hub.want(2, topic.clone(), None), Joined::Waiting);
/// assert_eq!(hub.on_event("doc:1", Some(1)), [1, 2]);
/// assert!(!hub.leave(1, "doc:1"));
/// assert!(hub.leave(2, "doc:1"), "the last tab left: unsubscribe the session");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Hub {
    topics: TopicMap<Route>,
    /// A new holder gathers the tabs' topics before it subscribes any, so
    /// that each topic is subscribed from the earliest position a tab holds.
    gathering: bool,
    /// The tabs seen alive ([`alive`](Self::alive)): only those can be seen gone.
    seen: Vec<TabId>,
}

#[derive(Debug)]
struct Route {
    members: Vec<Member>,
    state: RouteState,
    /// Where the session's subscription started: the earliest position of
    /// its first members.
    from: Option<Position>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RouteState {
    /// Not subscribed on the session yet (the holder is gathering).
    Gathering,
    Subscribing,
    Live(Option<Position>),
    Unconfirmed,
}

#[derive(Debug)]
struct Member {
    tab: TabId,
    /// The last `seq` this tab has of the topic: events up to it are not
    /// sent to it again (a subscription recovered from an earlier position
    /// replays them).
    seq: Option<u64>,
    /// Where the tab was when it joined, until the topic goes live: if the
    /// subscription started later, the tab missed events and resyncs.
    since: Option<Position>,
}

/// What the holder does for a tab that wants a topic ([`Hub::want`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Joined {
    /// The topic's first tab: subscribe the session, from this position.
    Subscribe {
        /// The tab's position, if it has one.
        from: Option<Position>,
    },
    /// The session's subscription is under way (or the holder is still
    /// gathering): the tab hears the answer with the others.
    Waiting,
    /// The topic is live: tell the tab so now, at this position; with
    /// `resync`, the tab missed events and resyncs first.
    Live {
        /// The topic's position.
        position: Option<Position>,
        /// The tab is behind the topic.
        resync: bool,
    },
    /// The server does not confirm subscriptions: tell the tab so now.
    Unconfirmed,
}

/// Whether a tab at `since` missed events of a subscription that started at
/// `start` (its recovery position, or where the topic was when it went live).
fn missed(since: &Position, start: Option<&Position>) -> bool {
    joined_behind(since, start)
}

impl Hub {
    /// A hub for a new holder that first gathers what every tab wants:
    /// [`want`](Self::want) subscribes nothing until [`start`](Self::start).
    pub fn gathering() -> Self {
        Self { topics: TopicMap::default(), gathering: true, seen: Vec::new() }
    }

    /// Tab `tab` wants `topic`, holding it up to `since` (its last position,
    /// after a handover or from the application).
    pub fn want(&mut self, tab: TabId, topic: Topic, since: Option<Position>) -> Joined {
        let member = Member { tab, seq: since.as_ref().map(|at| at.seq), since: since.clone() };
        if let Some(route) = self.topics.get_mut(topic.as_str()) {
            route.members.retain(|m| m.tab != tab);
            let joined = match &route.state {
                RouteState::Gathering => {
                    // The subscription starts from the earliest position of its tabs.
                    if let Some(since) = &since
                        && route.from.as_ref().is_none_or(|from| from.epoch == since.epoch && since.seq < from.seq)
                    {
                        route.from = Some(since.clone());
                    }
                    Joined::Waiting
                }
                RouteState::Subscribing => Joined::Waiting,
                RouteState::Live(position) => {
                    let resync = since.as_ref().is_some_and(|since| missed(since, position.as_ref()));
                    let position = position.clone();
                    route.members.push(Member { since: None, ..member });
                    return Joined::Live { position, resync };
                }
                RouteState::Unconfirmed => Joined::Unconfirmed,
            };
            route.members.push(member);
            return joined;
        }
        let state = if self.gathering { RouteState::Gathering } else { RouteState::Subscribing };
        let from = since.clone();
        self.topics.get_or_insert(&topic, Route { members: vec![member], state, from });
        if self.gathering { Joined::Waiting } else { Joined::Subscribe { from: since } }
    }

    /// Gathering is over: every topic to subscribe the session to, each from
    /// the earliest position its tabs hold.
    pub fn start(&mut self) -> Vec<(Topic, Option<Position>)> {
        self.gathering = false;
        let mut subscribe = Vec::new();
        for (topic, route) in self.topics.iter_mut() {
            if route.state == RouteState::Gathering {
                route.state = RouteState::Subscribing;
                subscribe.push((topic.clone(), route.from.clone()));
            }
        }
        subscribe
    }

    /// Tab `tab` no longer wants `topic`. Returns whether no tab does: then
    /// unsubscribe the session.
    pub fn leave(&mut self, tab: TabId, topic: &str) -> bool {
        let Some(route) = self.topics.get_mut(topic) else { return false };
        let before = route.members.len();
        route.members.retain(|m| m.tab != tab);
        if before == route.members.len() || !route.members.is_empty() {
            return false;
        }
        self.topics.remove(topic);
        true
    }

    /// The tabs alive now (in a browser: those holding their lifetime Web
    /// Lock). A tab seen alive before and missing now went away without a
    /// word (it crashed) and is dropped; one never seen yet may not have
    /// taken its lock yet, and is left. Returns the topics no tab wants any
    /// more, to unsubscribe.
    pub fn alive(&mut self, alive: &[TabId]) -> Vec<Topic> {
        // Plain loops: iterator adapters cost the browser build more bytes.
        let mut unwanted = Vec::new();
        let mut at = 0;
        while let Some(&tab) = self.seen.get(at) {
            if alive.contains(&tab) {
                at += 1;
            } else {
                self.seen.remove(at);
                unwanted.append(&mut self.drop_tab(tab));
            }
        }
        for (_, route) in &self.topics {
            for member in &route.members {
                if alive.contains(&member.tab) && !self.seen.contains(&member.tab) {
                    self.seen.push(member.tab);
                }
            }
        }
        unwanted
    }

    /// Tab `tab` is gone (closed, or its lease of life lapsed): the topics
    /// no tab wants any more, to unsubscribe.
    pub fn drop_tab(&mut self, tab: TabId) -> Vec<Topic> {
        let mut unwanted = Vec::new();
        self.topics.retain(|topic, route| {
            route.members.retain(|m| m.tab != tab);
            let keep = !route.members.is_empty();
            if !keep {
                unwanted.push(topic.clone());
            }
            keep
        });
        unwanted
    }

    /// The tabs of the subscription `topic` (concrete or `resource:*`) that
    /// get an event with `seq`: each once, so a tab that already has it (a
    /// replay after a handover) does not get it again.
    pub fn on_event(&mut self, topic: &str, seq: Option<u64>) -> Vec<TabId> {
        let Some(route) = self.topics.get_mut(topic) else { return Vec::new() };
        let concrete = !route_is_wildcard(topic);
        if concrete
            && let (Some(seq), RouteState::Live(Some(position))) = (seq, &mut route.state)
            && seq > position.seq
        {
            position.seq = seq;
        }
        let mut tabs = Vec::with_capacity(route.members.len());
        for member in &mut route.members {
            match (seq, member.seq) {
                (Some(seq), Some(has)) if concrete && seq <= has => continue,
                (Some(seq), _) if concrete => member.seq = Some(seq),
                _ => {}
            }
            tabs.push(member.tab);
        }
        tabs
    }

    /// The subscription `topic` went live at `position`: its tabs, each
    /// with whether it missed events before the subscription's start and
    /// resyncs first.
    pub fn on_live(&mut self, topic: &str, position: Option<Position>) -> Vec<(TabId, bool)> {
        let Some(route) = self.topics.get_mut(topic) else { return Vec::new() };
        let start = route.from.take().or_else(|| position.clone());
        let tabs = route
            .members
            .iter_mut()
            .map(|member| {
                let resync = member.since.take().is_some_and(|since| missed(&since, start.as_ref()));
                // From now on, what the session delivers is what the tab has
                // (in a new epoch too, where numbers start over).
                if let Some(position) = &position {
                    member.seq = Some(position.seq);
                }
                (member.tab, resync)
            })
            .collect();
        route.state = RouteState::Live(position);
        tabs
    }

    /// The server never confirms `topic`: its tabs.
    pub fn on_unconfirmed(&mut self, topic: &str) -> Vec<TabId> {
        let Some(route) = self.topics.get_mut(topic) else { return Vec::new() };
        route.state = RouteState::Unconfirmed;
        route.members.iter().map(|m| m.tab).collect()
    }

    /// The server refused `topic`: its tabs, which are removed.
    pub fn on_refused(&mut self, topic: &str) -> Vec<TabId> {
        self.topics.remove(topic).map(|(_, route)| route.members.iter().map(|m| m.tab).collect()).unwrap_or_default()
    }

    /// Anything else for the subscription `topic` (a resync, presence): its
    /// tabs. A resync forgets where the tabs were.
    pub fn on_other(&mut self, topic: &str, resync: bool) -> Vec<TabId> {
        let Some(route) = self.topics.get_mut(topic) else { return Vec::new() };
        route
            .members
            .iter_mut()
            .map(|member| {
                if resync {
                    member.seq = None;
                }
                member.tab
            })
            .collect()
    }

    /// The topics the session is subscribed to (or about to be).
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.keys()
    }
}

/// Where one tab is in each topic it subscribed (by its subscription), so
/// that a new holder recovers from there after a handover.
///
/// ```
/// use herald_core::Held;
/// use herald_core::protocol::Position;
///
/// let mut held = Held::default();
/// held.on_live("doc:1", Some(Position::new("e1", 4)));
/// held.on_event("doc:1", Some(6));
/// assert_eq!(held.since("doc:1"), Some(Position::new("e1", 6)));
/// held.forget("doc:1"); // a resync: the tab holds nothing it can recover from
/// assert_eq!(held.since("doc:1"), None);
/// ```
#[derive(Debug, Default)]
pub struct Held {
    positions: Vec<(String, Position)>,
}

impl Held {
    /// The subscription went live at `position` (none: it holds no position).
    pub fn on_live(&mut self, topic: &str, position: Option<Position>) {
        self.forget(topic);
        if let Some(position) = position.filter(|_| !route_is_wildcard(topic)) {
            self.positions.push((topic.to_owned(), position));
        }
    }

    /// An event with `seq` reached the subscription `topic`.
    pub fn on_event(&mut self, topic: &str, seq: Option<u64>) {
        if let (Some(seq), Some((_, position))) = (seq, self.positions.iter_mut().find(|(t, _)| t == topic))
            && seq > position.seq
        {
            position.seq = seq;
        }
    }

    /// The tab resynced or left the topic: it holds no position there.
    pub fn forget(&mut self, topic: &str) {
        self.positions.retain(|(t, _)| t != topic);
    }

    /// Where the tab is in `topic`, to recover from.
    pub fn since(&self, topic: &str) -> Option<Position> {
        self.positions.iter().find(|(t, _)| t == topic).map(|(_, position)| position.clone())
    }
}

fn route_is_wildcard(topic: &str) -> bool {
    topic.ends_with(":*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> Topic {
        text.parse().unwrap()
    }

    fn at(seq: u64) -> Option<Position> {
        Some(Position::new("e1", seq))
    }

    const LEASE: Duration = Duration::from_millis(1500);

    #[test]
    fn a_topic_is_subscribed_while_any_tab_wants_it_and_events_reach_exactly_its_tabs() {
        let mut hub = Hub::default();
        assert_eq!(hub.want(1, topic("doc:1"), None), Joined::Subscribe { from: None });
        assert_eq!(hub.want(2, topic("doc:1"), None), Joined::Waiting);
        assert_eq!(hub.want(2, topic("doc:2"), None), Joined::Subscribe { from: None });
        assert_eq!(hub.want(3, topic("doc:*"), None), Joined::Subscribe { from: None });
        assert_eq!(hub.on_live("doc:1", at(4)), [(1, false), (2, false)]);
        assert_eq!(hub.on_event("doc:1", Some(5)), [1, 2]);
        assert_eq!(hub.on_event("doc:2", Some(1)), [2]);
        assert_eq!(hub.on_event("doc:*", Some(5)), [3], "a wildcard's tabs, whatever the topic's seq");
        assert_eq!(hub.on_event("note:1", Some(1)), Vec::<TabId>::new());

        assert!(!hub.leave(1, "doc:1"));
        assert_eq!(hub.on_event("doc:1", Some(6)), [2], "a tab that left stops receiving");
        assert!(!hub.leave(1, "doc:1"), "leaving twice says nothing");
        assert_eq!(hub.drop_tab(2), [topic("doc:1"), topic("doc:2")], "the last tab of both is gone");
        assert_eq!(hub.topics().collect::<Vec<_>>(), [&topic("doc:*")]);
    }

    #[test]
    fn a_tab_that_joins_a_live_topic_hears_live_at_once_and_resyncs_only_if_it_is_behind() {
        let mut hub = Hub::default();
        hub.want(1, topic("doc:1"), None);
        hub.on_live("doc:1", at(4));
        hub.on_event("doc:1", Some(5));
        assert_eq!(hub.want(2, topic("doc:1"), at(5)), Joined::Live { position: at(5), resync: false });
        assert_eq!(hub.want(3, topic("doc:1"), at(3)), Joined::Live { position: at(5), resync: true });
        assert_eq!(hub.want(4, topic("doc:1"), None), Joined::Live { position: at(5), resync: false });
        assert_eq!(hub.on_event("doc:1", Some(6)), [1, 2, 3, 4]);
    }

    #[test]
    fn after_a_handover_each_topic_recovers_from_the_earliest_tab_and_no_tab_gets_an_event_twice() {
        let mut hub = Hub::gathering();
        // The new holder has seq 7, a second tab only 5, a third none yet.
        assert_eq!(hub.want(1, topic("doc:1"), at(7)), Joined::Waiting);
        assert_eq!(hub.want(2, topic("doc:1"), at(5)), Joined::Waiting);
        assert_eq!(hub.want(3, topic("doc:1"), None), Joined::Waiting);
        assert_eq!(hub.start(), [(topic("doc:1"), at(5))]);
        // The server replays 6 and 7, then 8 comes live.
        assert_eq!(hub.on_event("doc:1", Some(6)), [2, 3]);
        assert_eq!(hub.on_event("doc:1", Some(7)), [2, 3]);
        assert_eq!(hub.on_live("doc:1", at(7)), [(1, false), (2, false), (3, false)]);
        assert_eq!(hub.on_event("doc:1", Some(8)), [1, 2, 3]);
        assert_eq!(hub.on_event("doc:1", Some(8)), Vec::<TabId>::new(), "a duplicate reaches nobody");
    }

    #[test]
    fn a_tab_behind_the_subscriptions_start_resyncs_when_it_goes_live() {
        let mut hub = Hub::default();
        assert_eq!(hub.want(1, topic("doc:1"), at(7)), Joined::Subscribe { from: at(7) });
        assert_eq!(hub.want(2, topic("doc:1"), at(5)), Joined::Waiting);
        assert_eq!(hub.want(3, topic("doc:1"), Some(Position::new("e0", 9))), Joined::Waiting);
        assert_eq!(hub.on_live("doc:1", at(7)), [(1, false), (2, true), (3, true)]);
        assert_eq!(hub.on_other("doc:1", true), [1, 2, 3]);
    }

    #[test]
    fn a_refusal_removes_the_topics_tabs_and_unconfirmed_topics_say_so_to_late_tabs() {
        let mut hub = Hub::default();
        hub.want(1, topic("doc:1"), None);
        hub.want(2, topic("doc:1"), None);
        assert_eq!(hub.on_refused("doc:1"), [1, 2]);
        assert_eq!(hub.want(2, topic("doc:1"), None), Joined::Subscribe { from: None }, "asking again starts over");
        assert_eq!(hub.on_unconfirmed("doc:1"), [2]);
        assert_eq!(hub.want(3, topic("doc:1"), None), Joined::Unconfirmed);
    }

    #[test]
    fn a_tab_seen_alive_and_then_gone_is_dropped_and_one_not_seen_yet_is_left() {
        let mut hub = Hub::default();
        hub.want(1, topic("doc:1"), None);
        hub.want(2, topic("doc:1"), None);
        hub.want(2, topic("doc:2"), None);
        hub.want(3, topic("doc:3"), None);
        assert_eq!(hub.alive(&[1, 2]), Vec::<Topic>::new(), "tab 3 has not taken its lock yet");
        assert_eq!(hub.alive(&[1]), [topic("doc:2")], "tab 2 crashed: doc:1 is still wanted by tab 1");
        assert_eq!(hub.on_event("doc:1", Some(1)), [1]);
        assert_eq!(hub.alive(&[1, 3]), Vec::<Topic>::new());
        assert_eq!(hub.alive(&[]), [topic("doc:1"), topic("doc:3")]);
    }

    #[test]
    fn a_frozen_holders_lease_lapses_and_the_tab_that_takes_over_fences_it_off() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut holder = Lease::new(1, LEASE, start);
        let mut follower = Lease::new(2, LEASE, start);
        assert!(!follower.lapsed(ms(1499)), "a new tab gives a holder one lease to speak up");
        assert!(follower.lapsed(ms(1500)), "and takes over when none did");
        let first = holder.take(start);
        assert!(holder.holds() && !holder.lapsed(ms(10_000)), "a holder never sees its own lease lapse");
        assert_eq!(follower.heard(start, first), Heard::NewHolder { stepped_down: false });
        for beat in [500, 1000, 1500] {
            holder.renew(ms(beat));
            assert!(!holder.expired(ms(beat + 1499)));
            assert_eq!(follower.heard(ms(beat), first), Heard::Current);
        }
        assert_eq!(follower.poll_timeout(), Some(ms(3000)));
        // Frozen: no more renewals.
        assert!(!follower.lapsed(ms(2999)));
        assert!(follower.lapsed(ms(3000)));
        assert!(holder.expired(ms(3000)), "the frozen holder's own lease lapsed too");
        let second = follower.take(ms(3000));
        assert_eq!(second, Term { number: 2, holder: 2 });
        assert!(follower.holds());
        // The follower ignores what the thawed holder still says; the thawed
        // holder hears the new term and steps down.
        assert_eq!(follower.heard(ms(3100), first), Heard::Stale);
        assert_eq!(holder.heard(ms(3100), second), Heard::NewHolder { stepped_down: true });
        assert!(!holder.holds());
    }

    #[test]
    fn two_tabs_that_take_over_at_once_agree_on_the_higher_tab() {
        let start = Instant::now();
        let mut a = Lease::new(3, LEASE, start);
        let mut b = Lease::new(9, LEASE, start);
        let (term_a, term_b) = (a.take(start), b.take(start));
        assert_eq!(term_a.number, term_b.number);
        assert_eq!(a.heard(start, term_b), Heard::NewHolder { stepped_down: true });
        assert_eq!(b.heard(start, term_a), Heard::Stale);
        assert!(b.holds() && !a.holds());
    }

    #[test]
    fn a_holder_takes_only_the_requests_addressed_to_its_own_term() {
        let start = Instant::now();
        let mut lease = Lease::new(2, LEASE, start);
        let first = Term { number: 1, holder: 1 };
        lease.heard(start, first);
        assert!(!lease.addressed(Some(first)), "a follower takes no requests");
        let own = lease.take(start);
        assert!(lease.addressed(Some(own)));
        assert!(!lease.addressed(Some(first)), "sent to the old holder: sent again once the tab hears of this one");
        assert!(!lease.addressed(None), "from a tab that heard of no holder yet");
    }
}
