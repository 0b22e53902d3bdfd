//! Which of the application's subscribers gets what the session says, in
//! one place for every driver.
//!
//! A driver keeps one [`Router`] of its subscribers (a stream sender, a
//! JavaScript callback: any handle `H`), adds them as the application
//! subscribes, and passes every [`SessionEvent`] through
//! [`route`](Router::route), then delivers to the handles it is given.

use herald_protocol::{Position, Topic, TopicMap};

use crate::SessionEvent;

/// The subscribers of each subscribed topic (concrete or `resource:*`).
///
/// ```
/// use herald_core::{Added, Router, SessionEvent};
/// use herald_core::protocol::{Position, Topic};
///
/// let mut router: Router<&str> = Router::default();
/// let topic: Topic = "gift-list:1".parse()?;
/// assert_eq!(router.add(topic.clone(), "first reader"), Added::First); // subscribe the session
/// assert_eq!(router.add(topic.clone(), "second reader"), Added::Subscribing);
///
/// let live = SessionEvent::Live { topic: topic.clone(), position: Some(Position::new("e1", 4)) };
/// let mut told = Vec::new();
/// router.route(live, |reader, _| told.push(*reader));
/// assert_eq!(told, ["first reader", "second reader"]);
/// // A reader that comes now joins a live topic: the driver tells it so at once.
/// assert_eq!(router.add(topic, "late reader"), Added::Live);
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
    handles: Vec<H>,
    state: State,
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

/// Where a subscriber added to a [`Router`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Added {
    /// The topic's first subscriber: subscribe the session.
    First,
    /// The session's subscription waits for the server; the subscriber
    /// will hear the answer with the others.
    Subscribing,
    /// The topic is live already: tell the new subscriber so now, with the
    /// session's position ([`Session::position_of`](crate::Session::position_of)).
    Live,
    /// The server does not confirm subscriptions: tell the new subscriber so now.
    Unconfirmed,
}

impl<H> Router<H> {
    /// Adds a subscriber of `topic`.
    pub fn add(&mut self, topic: Topic, handle: H) -> Added {
        if let Some(route) = self.topics.get_mut(topic.as_str()) {
            route.handles.push(handle);
            return match route.state {
                State::Subscribing => Added::Subscribing,
                State::Live => Added::Live,
                State::Unconfirmed => Added::Unconfirmed,
            };
        }
        if topic.is_wildcard() {
            self.wildcards += 1;
        }
        self.topics.get_or_insert(&topic, Route { handles: vec![handle], state: State::Subscribing });
        Added::First
    }

    /// Keeps the subscribers of `topic` that `keep` says to. Returns whether
    /// none is left: then unsubscribe the session.
    pub fn retain(&mut self, topic: &str, keep: impl FnMut(&mut H) -> bool) -> bool {
        let Some(route) = self.topics.get_mut(topic) else { return false };
        route.handles.retain_mut(keep);
        if !route.handles.is_empty() {
            return false;
        }
        self.drop_route(topic);
        true
    }

    /// The subscribers of exactly `topic`.
    pub fn handles_of_mut(&mut self, topic: &str) -> impl Iterator<Item = &mut H> {
        self.topics.get_mut(topic).into_iter().flat_map(|route| route.handles.iter_mut())
    }

    /// Every subscriber, for what concerns all of them (a flush, the end).
    pub fn handles_mut(&mut self) -> impl Iterator<Item = &mut H> {
        self.topics.iter_mut().flat_map(|(_, route)| route.handles.iter_mut())
    }

    /// Gives `event` to the subscribers it is for:
    ///
    /// - an event, presence, or a resync of a concrete topic: the topic's
    ///   subscribers and those of its `resource:*`;
    /// - a resync of a wildcard: every subscriber of its resource;
    /// - `Live`, `Unconfirmed` and a refusal: the topic's own subscribers (a
    ///   refusal also removes them).
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
        let mut remaining: usize = routes.iter().map(|&at| self.topics.entries()[at].1.handles.len()).sum();
        let mut event = Some(event);
        for at in routes {
            for handle in &mut self.topics.value_at_mut(at).handles {
                remaining -= 1;
                let item = if remaining == 0 { event.take() } else { event.clone() };
                if let Some(item) = item {
                    deliver(handle, item);
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
    use crate::ResyncReason;

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

    #[test]
    fn events_reach_their_topic_and_its_wildcard_and_a_wildcard_resync_every_topic_of_its_resource() {
        let mut router = Router::default();
        router.add(topic("doc:1"), "doc 1");
        router.add(topic("doc:2"), "doc 2");
        router.add(topic("doc:*"), "every doc");
        router.add(topic("note:1"), "note 1");
        assert_eq!(to(&mut router, &event("doc:1")), ["doc 1", "every doc"]);
        assert_eq!(to(&mut router, &event("doc:3")), ["every doc"]);
        assert_eq!(to(&mut router, &event("note:1")), ["note 1"]);
        let resync = |t: &str| SessionEvent::Resync { topic: topic(t), reason: ResyncReason::NotRecovered };
        assert_eq!(to(&mut router, &resync("doc:2")), ["doc 2", "every doc"]);
        assert_eq!(to(&mut router, &resync("doc:*")), ["doc 1", "doc 2", "every doc"]);
    }

    #[test]
    fn live_and_refusals_reach_only_their_topic_and_a_refusal_removes_its_subscribers() {
        let mut router = Router::default();
        assert_eq!(router.add(topic("doc:1"), "first"), Added::First);
        router.add(topic("doc:*"), "every doc");
        let live = SessionEvent::Live { topic: topic("doc:1"), position: Some(Position::new("e", 1)) };
        assert_eq!(to(&mut router, &live), ["first"]);
        assert_eq!(router.add(topic("doc:1"), "late"), Added::Live, "joins a live topic");

        let error =
            ErrorMessage { code: ErrorCode::Number(4003), message: "no".into(), id: None, topic: None, seq: None };
        let refused = SessionEvent::SubscribeFailed { topic: "doc:*".into(), error };
        assert_eq!(to(&mut router, &refused), ["every doc"]);
        assert_eq!(to(&mut router, &event("doc:2")), Vec::<&str>::new(), "the wildcard's subscribers are gone");
        assert_eq!(router.add(topic("doc:*"), "again"), Added::First, "and subscribing again starts over");
    }

    #[test]
    fn the_last_subscriber_to_leave_says_to_unsubscribe() {
        let mut router = Router::default();
        router.add(topic("doc:1"), "a");
        router.add(topic("doc:1"), "b");
        assert!(!router.retain("doc:1", |name| *name != "a"));
        assert!(router.retain("doc:1", |name| *name != "b"));
        assert_eq!(router.add(topic("doc:1"), "c"), Added::First);
    }
}
