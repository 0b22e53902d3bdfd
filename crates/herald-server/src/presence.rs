//! Presence of one topic: who is subscribed with presence, and whose
//! membership changed since the changes were last announced.
//!
//! Changes are announced together, at most once per
//! [`presence_interval`](crate::ServerConfig::presence_interval) and topic,
//! as one `presence_diff` to every subscriber with presence: a thousand
//! users joining at once cost each subscriber a few diffs, not a thousand
//! (nor the connection, closed as too slow for traffic it never asked for).
//!
//! A diff states the current membership of every user it names (`joined`:
//! there, `left`: gone), so applying it is idempotent: a subscriber that
//! took a snapshot between two announcements ends up right whichever
//! changes its snapshot already had. A change undone before the
//! announcement (a join, then a leave) is left out unless someone took a
//! snapshot in between, who may have seen it.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
};

#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Connections with presence per member: a user with two tabs is one
    /// member, who leaves when the last tab does.
    members: HashMap<Arc<str>, u32>,
    /// Users whose membership changed since the last announcement, with
    /// whether they were members then.
    touched: HashMap<Arc<str>, bool>,
    /// A snapshot was taken since the last announcement.
    snapshot_taken: bool,
    /// Whether the topic waits in the hub's list of topics to announce.
    pub(crate) due: bool,
}

/// The changes of one announcement.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) joined: Vec<String>,
    pub(crate) left: Vec<String>,
}

impl Presence {
    /// Counts a connection of `user` in. A user who is not a member yet
    /// becomes one unless the topic has `max` members: then it is not
    /// listed (`false`).
    pub(crate) fn join(&mut self, user: &Arc<str>, max: usize) -> bool {
        if let Some(count) = self.members.get_mut(user) {
            *count += 1;
            return true;
        }
        if self.members.len() >= max {
            return false;
        }
        self.members.insert(user.clone(), 1);
        self.touched.entry(user.clone()).or_insert(false);
        true
    }

    /// Counts a connection of member `user` out.
    pub(crate) fn leave(&mut self, user: &Arc<str>) {
        let Entry::Occupied(mut count) = self.members.entry(user.clone()) else { return };
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
            self.touched.entry(user.clone()).or_insert(true);
        }
    }

    /// Whether there may be changes to announce.
    pub(crate) fn changed(&self) -> bool {
        !self.touched.is_empty()
    }

    /// Who is there now, for a new subscriber (or one that missed changes).
    pub(crate) fn snapshot(&mut self) -> Vec<String> {
        self.snapshot_taken = true;
        let mut members: Vec<String> = self.members.keys().map(|user| user.to_string()).collect();
        members.sort_unstable();
        members
    }

    /// Takes the changes since the last announcement.
    pub(crate) fn take_changes(&mut self) -> Option<Changes> {
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        let snapshot_taken = std::mem::take(&mut self.snapshot_taken);
        for (user, was_member) in self.touched.drain() {
            let is_member = self.members.contains_key(&user);
            if is_member != was_member || snapshot_taken {
                if is_member { &mut joined } else { &mut left }.push(user.to_string());
            }
        }
        if joined.is_empty() && left.is_empty() {
            return None;
        }
        joined.sort_unstable();
        left.sort_unstable();
        Some(Changes { joined, left })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Arc<str> {
        name.into()
    }

    #[test]
    fn changes_are_announced_together_and_undone_ones_not_at_all() {
        let mut presence = Presence::default();
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        assert!(presence.join(&alice, 10) && presence.join(&bob, 10));
        let first = presence.take_changes();
        assert_eq!(first, Some(Changes { joined: vec!["alice".into(), "bob".into()], left: vec![] }));
        presence.join(&carol, 10);
        presence.leave(&carol);
        presence.leave(&alice);
        presence.join(&alice, 10);
        assert_eq!(presence.take_changes(), None, "carol came and went, alice left and came back");
        presence.join(&bob, 10);
        presence.leave(&bob);
        assert_eq!(presence.take_changes(), None, "bob's second tab came and went");
    }

    #[test]
    fn a_snapshot_between_announcements_is_brought_up_to_date_by_the_next_one() {
        let mut presence = Presence::default();
        let (alice, bob) = (user("alice"), user("bob"));
        presence.join(&alice, 10);
        presence.join(&bob, 10);
        presence.take_changes();
        // Alice leaves and comes back around a new subscriber's snapshot.
        presence.leave(&alice);
        assert_eq!(presence.snapshot(), ["bob"]);
        presence.join(&alice, 10);
        let changes = presence.take_changes().expect("the snapshot holder must hear of alice");
        assert_eq!((changes.joined, changes.left), (vec!["alice".to_owned()], vec![]));
    }

    #[test]
    fn members_beyond_the_cap_are_not_listed() {
        let mut presence = Presence::default();
        assert!(presence.join(&user("a"), 2) && presence.join(&user("b"), 2));
        assert!(!presence.join(&user("c"), 2));
        assert!(presence.join(&user("a"), 2), "a second tab of a member");
        assert_eq!(presence.snapshot(), ["a", "b"]);
    }
}
