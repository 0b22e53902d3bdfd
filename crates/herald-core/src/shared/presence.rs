//! The presence of the holder's session, which is one member of each
//! topic's presence for all the tabs.

use herald_protocol::{Topic, TopicMap};

/// The holder's presence state of each topic (`M` is presence metadata as
/// the driver holds it): whether any tab asked for presence, so that the
/// session's subscription has it; the metadata, where the tab that set it
/// last wins, since the connection is one member; and the members as the
/// server last listed them, for a tab that asks once they were sent.
///
/// ```
/// use herald_core::{PresenceChange, SessionSubscription, SharedPresence};
/// use herald_core::protocol::Topic;
///
/// let mut presence = SharedPresence::default();
/// let topic: Topic = "doc:1".parse()?;
/// // A tab subscribes without presence, another with it, then a third sets other metadata.
/// assert_eq!(presence.subscribe(&topic), Some(SessionSubscription { presence: false, meta: None }));
/// assert_eq!(presence.want(&topic, Some("ann")), Some(PresenceChange::Subscribe(Some("ann"))));
/// assert_eq!(presence.want(&topic, Some("bob")), Some(PresenceChange::SetMeta("bob")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedPresence<M> {
    topics: TopicMap<TopicPresence<M>>,
}

impl<M> Default for SharedPresence<M> {
    fn default() -> Self {
        Self { topics: TopicMap::default() }
    }
}

#[derive(Debug)]
struct TopicPresence<M> {
    /// A tab asked for presence.
    wanted: bool,
    /// The session's subscription, once made: whether it has presence.
    session: Option<bool>,
    meta: Option<M>,
    members: Option<Vec<PresenceMember<M>>>,
}

impl<M> Default for TopicPresence<M> {
    fn default() -> Self {
        Self { wanted: false, session: None, meta: None, members: None }
    }
}

/// A member of a topic's presence: its user id, and its metadata if it set some.
pub type PresenceMember<M> = (String, Option<M>);

/// How the holder subscribes its session to a topic
/// ([`SharedPresence::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSubscription<M> {
    /// With presence: a tab asked for it.
    pub presence: bool,
    /// The metadata to subscribe with.
    pub meta: Option<M>,
}

/// What the holder's session does for a tab that wants presence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceChange<M> {
    /// The session's subscription has no presence yet: subscribe again,
    /// with presence and this metadata, which adds it.
    Subscribe(Option<M>),
    /// Set the session's presence metadata of the topic.
    SetMeta(M),
}

impl<M: Clone> SharedPresence<M> {
    /// A tab wants `topic` with presence, with `meta` if it gave some.
    /// Returns what the session does now, if it is subscribed already.
    pub fn want(&mut self, topic: &Topic, meta: Option<M>) -> Option<PresenceChange<M>> {
        let entry = self.topics.get_or_insert(topic, TopicPresence::default());
        entry.wanted = true;
        if let Some(meta) = &meta {
            entry.meta = Some(meta.clone());
        }
        match (entry.session, meta) {
            (Some(false), _) => {
                entry.session = Some(true);
                Some(PresenceChange::Subscribe(entry.meta.clone()))
            }
            (Some(true), Some(meta)) => Some(PresenceChange::SetMeta(meta)),
            _ => None,
        }
    }

    /// A tab set its presence metadata of `topic`: the session's from now
    /// on. Returns whether to set it on the session now (its subscription
    /// has presence); otherwise it is given when the session subscribes.
    pub fn set_meta(&mut self, topic: &Topic, meta: M) -> bool {
        let entry = self.topics.get_or_insert(topic, TopicPresence::default());
        entry.meta = Some(meta);
        entry.session == Some(true)
    }

    /// The session subscribes to `topic` (the [`Hub`](crate::Hub) said
    /// so): how, or `None` if it is subscribed already.
    pub fn subscribe(&mut self, topic: &Topic) -> Option<SessionSubscription<M>> {
        let entry = self.topics.get_or_insert(topic, TopicPresence::default());
        if entry.session.is_some() {
            return None;
        }
        entry.session = Some(entry.wanted);
        Some(SessionSubscription { presence: entry.wanted, meta: entry.meta.clone().filter(|_| entry.wanted) })
    }

    /// The server listed `topic`'s members.
    pub fn on_presence(&mut self, topic: &str, members: Vec<PresenceMember<M>>) {
        if let Some(entry) = self.topics.get_mut(topic) {
            entry.members = Some(members);
        }
    }

    /// Members of `topic` joined and left. One in `joined` has the metadata
    /// it has now: a member whose metadata changed joins again.
    pub fn on_diff(&mut self, topic: &str, joined: Vec<PresenceMember<M>>, left: &[String]) {
        let Some(entry) = self.topics.get_mut(topic) else { return };
        let members = entry.members.get_or_insert_with(Vec::new);
        members.retain(|(user, _)| !left.contains(user));
        for (user, meta) in joined {
            // A member listed already keeps its place in the list.
            match members.iter_mut().find(|(listed, _)| *listed == user) {
                Some(listed) => listed.1 = meta,
                None => members.push((user, meta)),
            }
        }
    }

    /// The members of `topic` as last listed, for a tab that wants its
    /// presence once the server sent it.
    pub fn members(&self, topic: &str) -> Option<&[PresenceMember<M>]> {
        self.topics.get(topic)?.members.as_deref()
    }

    /// The session no longer subscribes to `topic`: its presence starts over.
    pub fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> Topic {
        text.parse().unwrap()
    }

    fn members(pairs: &[(&str, Option<u32>)]) -> Vec<PresenceMember<u32>> {
        pairs.iter().map(|(user, meta)| ((*user).to_owned(), *meta)).collect()
    }

    #[test]
    fn the_session_subscribes_with_presence_when_any_tab_asked_before() {
        let mut presence = SharedPresence::default();
        assert_eq!(presence.want(&topic("doc:1"), Some(1)), None, "not subscribed yet");
        assert_eq!(presence.subscribe(&topic("doc:1")), Some(SessionSubscription { presence: true, meta: Some(1) }));
        assert_eq!(presence.subscribe(&topic("doc:1")), None, "subscribed once");
        assert_eq!(presence.subscribe(&topic("doc:2")), Some(SessionSubscription { presence: false, meta: None }));
        assert!(!presence.set_meta(&topic("doc:3"), 3), "kept for when the session subscribes");
        assert_eq!(
            presence.subscribe(&topic("doc:3")),
            Some(SessionSubscription { presence: false, meta: None }),
            "metadata alone does not ask for presence"
        );
    }

    #[test]
    fn presence_asked_for_later_adds_it_once_and_the_last_metadata_wins() {
        let mut presence = SharedPresence::default();
        presence.subscribe(&topic("doc:1"));
        assert!(!presence.set_meta(&topic("doc:1"), 1), "no presence on the session: nothing to set");
        assert_eq!(presence.want(&topic("doc:1"), None), Some(PresenceChange::Subscribe(Some(1))));
        assert_eq!(presence.want(&topic("doc:1"), None), None, "added once");
        assert_eq!(presence.want(&topic("doc:1"), Some(2)), Some(PresenceChange::SetMeta(2)));
        assert!(presence.set_meta(&topic("doc:1"), 3));
        presence.forget("doc:1");
        assert_eq!(
            presence.subscribe(&topic("doc:1")),
            Some(SessionSubscription { presence: false, meta: None }),
            "a topic subscribed again starts over"
        );
    }

    #[test]
    fn the_members_follow_the_servers_list_and_its_diffs() {
        let mut presence = SharedPresence::default();
        presence.subscribe(&topic("doc:1"));
        assert_eq!(presence.members("doc:1"), None, "nothing listed yet");
        presence.on_presence("doc:1", members(&[("ann", Some(1)), ("bob", None)]));
        presence.on_diff("doc:1", members(&[("cy", None), ("bob", Some(2))]), &["ann".to_owned()]);
        assert_eq!(
            presence.members("doc:1"),
            Some(&members(&[("bob", Some(2)), ("cy", None)])[..]),
            "ann left; bob keeps his place, with his new metadata"
        );
        presence.on_diff("doc:1", members(&[("bob", None)]), &[]);
        assert_eq!(presence.members("doc:1"), Some(&members(&[("bob", None), ("cy", None)])[..]));
        presence.on_presence("doc:2", members(&[("ann", None)]));
        assert_eq!(presence.members("doc:2"), None, "not a topic of the session");
    }

    #[test]
    fn a_diff_before_any_list_starts_from_no_members() {
        let mut presence = SharedPresence::default();
        presence.subscribe(&topic("doc:1"));
        presence.on_diff("doc:1", members(&[("ann", Some(1))]), &[]);
        assert_eq!(presence.members("doc:1"), Some(&members(&[("ann", Some(1))])[..]));
    }
}
