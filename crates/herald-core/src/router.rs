//! Which of the application's subscribers gets what the session says, in
//! one place for every driver.
//!
//! A driver keeps one [`Router`] of its subscribers (a stream sender, a
//! JavaScript callback: any handle `H`), adds them with
//! [`subscribe`](Router::subscribe) as the application subscribes, and
//! passes every [`SessionEvent`] through [`route`](Router::route), then
//! delivers to the handles it is given.

use herald_protocol::{Position, Topic, TopicMap};

use crate::{Instant, ResyncReason, Session, SessionEvent, SubscribeError, SubscribeOptions};

/// The subscribers of each subscribed topic (concrete or `resource:*`).
///
/// ```
/// use herald_core::{Instant, Router, Session, SessionConfig, SessionEvent, SubscribeOptions};
/// use herald_core::protocol::{Position, Topic};
///
/// let now = Instant::now();
/// let mut session = Session::new(SessionConfig::new("ws://127.0.0.1:8080/ws"), now);
/// let mut router: Router<&str> = Router::default();
/// let mut told = Vec::new();
/// let topic: Topic = "gift-list:1".parse()?;
/// for reader in ["first reader", "second reader"] {
///     let options = SubscribeOptions::default();
///     router.subscribe(&mut session, now, topic.clone(), reader, options, |_, _| unreachable!("nothing yet"))
///         .map_err(|(error, _)| error)?;
/// }
///
/// let live = SessionEvent::Live { topic: topic.clone(), position: Some(Position::new("e1", 4)) };
/// router.route(live, |reader, _| told.push(*reader));
/// assert_eq!(told, ["first reader", "second reader"]);
///
/// // A reader that comes now joins a live topic, and is told so at once.
/// let options = SubscribeOptions::default();
/// router.subscribe(&mut session, now, topic, "late reader", options, |reader, event| {
///     assert!(matches!(event, SessionEvent::Live { .. }));
///     told.push(*reader);
/// }).map_err(|(error, _)| error)?;
/// assert_eq!(told.last(), Some(&"late reader"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Router<H> {
    topics: TopicMap<Route<H>>,
    /// Wildcard routes, so that events look up `resource:*` only when there are any.
    wildcards: usize,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Self { topics: TopicMap::default(), wildcards: 0 }
    }
}

#[derive(Debug)]
struct Route<H> {
    members: Vec<Member<H>>,
    state: State,
}

#[derive(Debug)]
struct Member<H> {
    handle: H,
    /// Where this subscriber said it already is, when another subscriber
    /// of the topic made the session's subscription: if the topic is
    /// further on when it goes live, this one missed events and hears
    /// `Resync` first.
    from: Option<Position>,
}

impl<H> Member<H> {
    /// `Resync` first for a subscriber that [`joined_behind`] the topic.
    fn before_live(&mut self, topic: &Topic, at: Option<&Position>, deliver: &mut impl FnMut(&mut H, SessionEvent)) {
        if let Some(from) = self.from.take()
            && joined_behind(&from, at)
        {
            deliver(
                &mut self.handle,
                SessionEvent::Resync { topic: topic.clone(), reason: ResyncReason::NotRecovered },
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the server's answer.
    Subscribing,
    /// Confirmed (or recovered) by the server.
    Live,
    /// The server never confirms subscriptions.
    Unconfirmed,
}

impl<H> Router<H> {
    /// Adds a subscriber of `topic`. The topic's first subscriber (or one
    /// that asks for presence) subscribes the session. One that joins a
    /// topic already live or unconfirmed is told so at once, through
    /// `deliver`, with the session's position; if it said where it already
    /// is (`options.from`) and the topic is further on, it hears `Resync`
    /// first. On an error nothing changed, and the handle comes back.
    pub fn subscribe(
        &mut self,
        session: &mut Session,
        now: Instant,
        topic: Topic,
        handle: H,
        options: SubscribeOptions,
        mut deliver: impl FnMut(&mut H, SessionEvent),
    ) -> Result<(), (SubscribeError, H)> {
        let state = self.topics.get(topic.as_str()).map(|route| route.state);
        // The session sends the first subscriber's `from` to the server; a
        // later one's is checked against where the topic stands.
        let from = state.and(options.from.clone());
        if (state.is_none() || options.presence)
            && let Err(error) = session.subscribe(now, topic.clone(), options)
        {
            return Err((error, handle));
        }
        if state.is_none() && topic.is_wildcard() {
            self.wildcards += 1;
        }
        let route = self.topics.get_or_insert(&topic, Route { members: Vec::new(), state: State::Subscribing });
        route.members.push(Member { handle, from });
        let member = route.members.last_mut().expect("pushed above");
        match state {
            Some(State::Live) => {
                let position = session.position_of(topic.as_str());
                member.before_live(&topic, position.as_ref(), &mut deliver);
                deliver(&mut member.handle, SessionEvent::Live { topic, position });
            }
            Some(State::Unconfirmed) => deliver(&mut member.handle, SessionEvent::Unconfirmed { topic }),
            _ => {}
        }
        Ok(())
    }

    /// Keeps the subscribers of `topic` that `keep` says to. Returns whether
    /// none is left: then unsubscribe the session.
    pub fn retain(&mut self, topic: &str, mut keep: impl FnMut(&mut H) -> bool) -> bool {
        let Some(route) = self.topics.get_mut(topic) else { return false };
        route.members.retain_mut(|member| keep(&mut member.handle));
        if !route.members.is_empty() {
            return false;
        }
        self.drop_route(topic);
        true
    }

    /// Every subscriber, for what concerns all of them (a flush, the end).
    pub fn handles_mut(&mut self) -> impl Iterator<Item = &mut H> {
        self.topics.iter_mut().flat_map(|(_, route)| route.members.iter_mut().map(|member| &mut member.handle))
    }

    /// Gives `event` to the subscribers it is for:
    ///
    /// - an event, presence, or a resync of a concrete topic: the topic's
    ///   subscribers and those of its `resource:*`;
    /// - a resync of a wildcard: every subscriber of its resource;
    /// - `Live`, `Unconfirmed` and a refusal: the topic's own subscribers (a
    ///   refusal also removes them); `Live` after `Resync` for a subscriber
    ///   that joined behind (see [`subscribe`](Self::subscribe)).
    ///
    /// Each subscriber but the last gets a copy; the last gets `event`
    /// itself, so the common single reader costs no copy.
    pub fn route(&mut self, event: SessionEvent, mut deliver: impl FnMut(&mut H, SessionEvent)) {
        let mut refused = None;
        match &event {
            SessionEvent::Live { topic, .. } => self.set_state(topic, State::Live),
            SessionEvent::Unconfirmed { topic } => self.set_state(topic, State::Unconfirmed),
            SessionEvent::SubscribeFailed { topic, .. } => refused = Some(topic.clone()),
            _ => {}
        }
        // Indices of the routes, so that `event` is free to move into the last delivery.
        let routes = self.routes(&event);
        let mut remaining: usize = routes.iter().map(|&at| self.topics.entries()[at].1.members.len()).sum();
        let mut event = Some(event);
        for at in routes {
            for member in &mut self.topics.value_at_mut(at).members {
                if let Some(SessionEvent::Live { topic, position }) = &event {
                    member.before_live(topic, position.as_ref(), &mut deliver);
                }
                remaining -= 1;
                let item = if remaining == 0 { event.take() } else { event.clone() };
                if let Some(item) = item {
                    deliver(&mut member.handle, item);
                }
            }
        }
        if let Some(topic) = refused {
            self.drop_route(&topic);
        }
    }

    /// Where [`route`](Self::route) delivers `event`: indices into `topics`.
    fn routes(&self, event: &SessionEvent) -> Vec<usize> {
        let all = self.topics.entries().iter().enumerate();
        match target(event) {
            Target::Topic { topic, wildcard } => {
                let mut routes = Vec::with_capacity(2);
                if wildcard && self.wildcards > 0 {
                    routes.extend(all.filter(|(_, (t, _))| t.is_wildcard() && t.matches_str(topic)).map(|(at, _)| at));
                }
                routes.extend(self.topics.find(topic).ok());
                routes
            }
            Target::Resource(resource) => {
                all.filter(|(_, (t, _))| t.resource() == resource).map(|(at, _)| at).collect()
            }
            Target::Nobody => Vec::new(),
        }
    }

    fn set_state(&mut self, topic: &Topic, state: State) {
        if let Some(route) = self.topics.get_mut(topic.as_str()) {
            route.state = state;
        }
    }

    fn drop_route(&mut self, topic: &str) {
        if let Some((topic, _)) = self.topics.remove(topic)
            && topic.is_wildcard()
        {
            self.wildcards -= 1;
        }
    }
}

/// Whether a subscriber that joins a topic someone else subscribed, saying
/// it already is at `from`, missed events by the time the topic is `live`:
/// the topic is further on, in another epoch, or at no known position. Its
/// driver then tells it [`Resync`](SessionEvent::Resync) before `Live`.
///
/// ```
/// use herald_core::{joined_behind, protocol::Position};
///
/// let from = Position::new("e1", 4);
/// assert!(!joined_behind(&from, Some(&Position::new("e1", 4))));
/// assert!(joined_behind(&from, Some(&Position::new("e1", 5))));
/// assert!(joined_behind(&from, Some(&Position::new("e2", 1))));
/// assert!(joined_behind(&from, None));
/// ```
pub fn joined_behind(from: &Position, live: Option<&Position>) -> bool {
    live.is_none_or(|at| at.epoch != from.epoch || at.seq > from.seq)
}

/// Whom an event is for: a topic's subscribers (and its wildcard's), or
/// every subscriber of a resource.
enum Target<'a> {
    Topic { topic: &'a str, wildcard: bool },
    Resource(&'a str),
    Nobody,
}

fn target(event: &SessionEvent) -> Target<'_> {
    fn shared(topic: &Topic) -> Target<'_> {
        Target::Topic { topic: topic.as_str(), wildcard: true }
    }
    match event {
        SessionEvent::Event(event) => shared(&event.topic),
        SessionEvent::Presence(presence) => shared(&presence.topic),
        SessionEvent::PresenceDiff(diff) => shared(&diff.topic),
        SessionEvent::Resync { topic, .. } if topic.is_wildcard() => Target::Resource(topic.resource()),
        SessionEvent::Resync { topic, .. } => shared(topic),
        SessionEvent::Live { topic, .. } | SessionEvent::Unconfirmed { topic } => {
            Target::Topic { topic: topic.as_str(), wildcard: false }
        }
        SessionEvent::SubscribeFailed { topic, .. } => Target::Topic { topic, wildcard: false },
        _ => Target::Nobody,
    }
}

#[cfg(test)]
mod tests {
    use herald_protocol::{ErrorCode, ErrorMessage, Event, EventData, EventKind, Payload};

    use super::*;

    fn topic(text: &str) -> Topic {
        text.parse().unwrap()
    }

    fn event(on: &str) -> SessionEvent {
        let data = EventData {
            entity_id: "1".into(),
            payload: Payload::default(),
            user_id: None,
            tenant_id: None,
            timestamp: "2026-11-25T10:00:00Z".into(),
        };
        SessionEvent::Event(Event {
            topic: topic(on),
            event: EventKind::Updated,
            data,
            trace_id: None,
            seq: Some(1),
            wildcard_seq: None,
            ephemeral: false,
        })
    }

    /// Who `event` goes to, by name.
    fn to(router: &mut Router<&'static str>, event: &SessionEvent) -> Vec<&'static str> {
        let mut names = Vec::new();
        router.route(event.clone(), |name, _| names.push(*name));
        names.sort_unstable();
        names
    }

    /// A router and the session it subscribes, which never connects.
    struct Readers {
        router: Router<&'static str>,
        session: Session,
        now: Instant,
    }

    impl Readers {
        fn new() -> Self {
            let now = Instant::now();
            let session = Session::new(crate::SessionConfig::new("ws://127.0.0.1:1/ws"), now);
            Self { router: Router::default(), session, now }
        }

        /// Subscribes `name` to `on`; what it is told at once.
        fn join(&mut self, on: &str, name: &'static str, from: Option<Position>) -> Vec<SessionEvent> {
            let options = SubscribeOptions { from, ..SubscribeOptions::default() };
            let mut told = Vec::new();
            let joined =
                self.router.subscribe(&mut self.session, self.now, topic(on), name, options, |_, e| told.push(e));
            joined.map_err(|(error, _)| error).expect("the session takes it");
            told
        }
    }

    fn live(on: &str, seq: u64) -> SessionEvent {
        SessionEvent::Live { topic: topic(on), position: Some(Position::new("e", seq)) }
    }

    fn not_recovered(on: &str) -> SessionEvent {
        SessionEvent::Resync { topic: topic(on), reason: ResyncReason::NotRecovered }
    }

    /// Events have no `PartialEq` (a malformed frame's error is shared): compared as shown.
    fn shown(events: impl std::fmt::Debug) -> String {
        format!("{events:?}")
    }

    #[test]
    fn events_reach_their_topic_and_its_wildcard_and_a_wildcard_resync_every_topic_of_its_resource() {
        let mut r = Readers::new();
        for (on, name) in [("doc:1", "doc 1"), ("doc:2", "doc 2"), ("doc:*", "every doc"), ("note:1", "note 1")] {
            assert!(r.join(on, name, None).is_empty(), "nothing is live yet");
        }
        let router = &mut r.router;
        assert_eq!(to(router, &event("doc:1")), ["doc 1", "every doc"]);
        assert_eq!(to(router, &event("doc:3")), ["every doc"]);
        assert_eq!(to(router, &event("note:1")), ["note 1"]);
        assert_eq!(to(router, &not_recovered("doc:2")), ["doc 2", "every doc"]);
        assert_eq!(to(router, &not_recovered("doc:*")), ["doc 1", "doc 2", "every doc"]);
    }

    #[test]
    fn live_and_refusals_reach_only_their_topic_and_a_refusal_removes_its_subscribers() {
        let mut r = Readers::new();
        r.join("doc:1", "first", None);
        r.join("doc:*", "every doc", None);
        assert_eq!(r.session.topics().count(), 2, "each topic's first subscriber subscribed the session");
        assert_eq!(to(&mut r.router, &live("doc:1", 1)), ["first"]);
        // The session never connected, so it knows no position to tell.
        let late = r.join("doc:1", "late", None);
        assert_eq!(shown(late), shown([SessionEvent::Live { topic: topic("doc:1"), position: None }]));

        let error =
            ErrorMessage { code: ErrorCode::Number(4003), message: "no".into(), id: None, topic: None, seq: None };
        let refused = SessionEvent::SubscribeFailed { topic: "doc:*".into(), error };
        assert_eq!(to(&mut r.router, &refused), ["every doc"]);
        assert_eq!(to(&mut r.router, &event("doc:2")), Vec::<&str>::new(), "the wildcard's subscribers are gone");
        assert!(r.join("doc:*", "again", None).is_empty(), "and subscribing again starts over");
    }

    #[test]
    fn a_later_subscriber_that_joined_behind_hears_resync_before_live() {
        let mut r = Readers::new();
        r.join("doc:1", "first", Some(Position::new("e", 2)));
        r.join("doc:1", "behind", Some(Position::new("e", 2)));
        r.join("doc:1", "level", Some(Position::new("e", 5)));
        r.join("doc:1", "other epoch", Some(Position::new("old", 5)));
        let mut told = Vec::new();
        r.router.route(live("doc:1", 5), |name, event| told.push((*name, event)));
        assert_eq!(
            shown(&told),
            shown([
                ("first", live("doc:1", 5)),
                ("behind", not_recovered("doc:1")),
                ("behind", live("doc:1", 5)),
                ("level", live("doc:1", 5)),
                ("other epoch", not_recovered("doc:1")),
                ("other epoch", live("doc:1", 5)),
            ]),
            "the first subscriber's position went to the server, which answers for it"
        );
        told.clear();
        r.router.route(live("doc:1", 9), |name, event| told.push((*name, event)));
        assert!(told.iter().all(|(_, event)| matches!(event, SessionEvent::Live { .. })), "only once: {told:?}");

        let late = r.join("doc:1", "late", Some(Position::new("e", 5)));
        let position = None; // the session never connected
        assert_eq!(
            shown(late),
            shown([not_recovered("doc:1"), SessionEvent::Live { topic: topic("doc:1"), position }])
        );
    }

    #[test]
    fn a_refused_subscribe_changes_nothing_and_gives_the_handle_back() {
        let mut r = Readers::new();
        r.session.close(r.now);
        let refused =
            r.router.subscribe(&mut r.session, r.now, topic("doc:1"), "a", SubscribeOptions::default(), |_, _| {
                unreachable!("told nothing")
            });
        assert!(matches!(refused, Err((SubscribeError::Stopped(_), "a"))));
        assert_eq!(to(&mut r.router, &event("doc:1")), Vec::<&str>::new());
    }

    #[test]
    fn the_last_subscriber_to_leave_says_to_unsubscribe() {
        let mut r = Readers::new();
        r.join("doc:1", "a", None);
        r.join("doc:1", "b", None);
        assert!(!r.router.retain("doc:1", |name| *name != "a"));
        assert!(r.router.retain("doc:1", |name| *name != "b"));
        assert_eq!(to(&mut r.router, &event("doc:1")), Vec::<&str>::new());
    }
}
