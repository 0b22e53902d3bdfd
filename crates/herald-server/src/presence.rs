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
//!
//! On a node of a cluster, the members are this node's users and those the
//! other nodes announced (see `cluster`): a user is a member while any node
//! lists them. This node's own list goes to the others whenever it changed.

use std::{
    collections::{BTreeMap, HashMap, HashSet, hash_map::Entry},
    sync::Arc,
};

use herald_protocol::Payload;

#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Connections with presence per member of this node: a user with two
    /// tabs is one member, who leaves when the last tab does.
    local: HashMap<Arc<str>, u32>,
    /// The metadata this node's members set (the last one set, of a user
    /// with several connections).
    meta: HashMap<Arc<str>, Payload>,
    /// The members other nodes of the cluster announced, by node.
    remote: HashMap<Arc<str>, Listed>,
    /// Users whose membership changed since the last announcement, with
    /// whether they were members then.
    touched: HashMap<Arc<str>, bool>,
    /// Members whose metadata changed since the last announcement.
    meta_touched: HashSet<Arc<str>>,
    /// This node's members changed since it last told the other nodes.
    local_changed: bool,
    /// A snapshot was taken since the last announcement.
    snapshot_taken: bool,
    /// Whether the topic waits in the hub's list of topics to announce.
    pub(crate) due: bool,
}

/// What another node lists, with the version of its announcement (an
/// older one arriving late is ignored).
#[derive(Debug, Default)]
struct Listed {
    version: u64,
    users: Vec<Arc<str>>,
    meta: HashMap<Arc<str>, Payload>,
}

/// The changes of one announcement: a member whose metadata changed is in
/// `joined` again.
#[derive(Debug, PartialEq)]
pub(crate) struct Changes {
    pub(crate) joined: Vec<String>,
    pub(crate) left: Vec<String>,
    pub(crate) meta: BTreeMap<String, Payload>,
}

/// Who is there, with the metadata of those who set some.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) members: Vec<String>,
    pub(crate) meta: BTreeMap<String, Payload>,
}

impl Presence {
    /// Counts a connection of `user` in. A user who is not a member yet
    /// becomes one unless the topic has `max` members: then it is not
    /// listed (`false`).
    pub(crate) fn join(&mut self, user: &Arc<str>, max: usize) -> bool {
        if let Some(count) = self.local.get_mut(user) {
            *count += 1;
            return true;
        }
        let member = self.is_member(user);
        if !member && self.len() >= max {
            return false;
        }
        self.touched.entry(user.clone()).or_insert(member);
        self.local.insert(user.clone(), 1);
        self.local_changed = true;
        true
    }

    /// Counts a connection of member `user` out.
    pub(crate) fn leave(&mut self, user: &Arc<str>) {
        let Entry::Occupied(mut count) = self.local.entry(user.clone()) else { return };
        *count.get_mut() -= 1;
        if *count.get() == 0 {
            count.remove();
            self.meta.remove(user);
            self.touched.entry(user.clone()).or_insert(true);
            self.local_changed = true;
        }
    }

    /// Sets what the others see of member `user`; `false` if `user` is no
    /// member through this node.
    pub(crate) fn set_meta(&mut self, user: &Arc<str>, meta: &Payload) -> bool {
        if !self.local.contains_key(user) {
            return false;
        }
        if self.meta.get(user) != Some(meta) {
            self.meta.insert(user.clone(), meta.clone());
            self.meta_touched.insert(user.clone());
            self.local_changed = true;
        }
        true
    }

    /// Takes `users` (with `meta`) as what `node` lists now, unless
    /// `version` is not newer than what it listed last. Users beyond `max`
    /// members are not listed.
    pub(crate) fn set_remote(
        &mut self,
        node: &Arc<str>,
        version: u64,
        mut users: Vec<Arc<str>>,
        mut meta: HashMap<Arc<str>, Payload>,
        max: usize,
    ) {
        let old = match self.remote.remove(node) {
            Some(known) if known.version >= version => {
                self.remote.insert(node.clone(), known);
                return;
            }
            Some(old) => old,
            None => Listed::default(),
        };
        for user in &old.users {
            self.touched.entry(user.clone()).or_insert(true);
        }
        users.sort_unstable();
        users.dedup();
        let mut listed = Listed { version, users: Vec::with_capacity(users.len()), meta: HashMap::new() };
        for user in users {
            let member = self.is_member(&user);
            if member || self.len() + listed.users.len() < max {
                self.touched.entry(user.clone()).or_insert(member);
                if let Some(meta) = meta.remove(&user) {
                    if old.meta.get(&user) != Some(&meta) {
                        self.meta_touched.insert(user.clone());
                    }
                    listed.meta.insert(user.clone(), meta);
                }
                listed.users.push(user);
            }
        }
        self.remote.insert(node.clone(), listed);
    }

    /// Forgets what `node` listed (it left the cluster or went silent).
    pub(crate) fn forget_node(&mut self, node: &str) {
        if let Some(Listed { users, .. }) = self.remote.remove(node) {
            for user in users {
                self.touched.entry(user).or_insert(true);
            }
        }
    }

    /// Forgets what every other node listed (this node left the cluster).
    pub(crate) fn forget_nodes(&mut self) {
        for Listed { users, .. } in std::mem::take(&mut self.remote).into_values() {
            for user in users {
                self.touched.entry(user).or_insert(true);
            }
        }
    }

    fn is_member(&self, user: &str) -> bool {
        self.local.contains_key(user) || self.remote.values().any(|listed| listed.users.iter().any(|u| &**u == user))
    }

    /// A member's metadata: what it set through this node, else through another.
    fn meta_of(&self, user: &str) -> Option<&Payload> {
        self.meta.get(user).or_else(|| self.remote.values().find_map(|listed| listed.meta.get(user)))
    }

    fn meta_by_user<'a>(&self, users: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Payload> {
        users.into_iter().filter_map(|user| Some((user.to_owned(), self.meta_of(user)?.clone()))).collect()
    }

    /// Members, each once.
    fn members(&self) -> Vec<&Arc<str>> {
        let mut members: Vec<&Arc<str>> =
            self.local.keys().chain(self.remote.values().flat_map(|listed| &listed.users)).collect();
        members.sort_unstable();
        members.dedup();
        members
    }

    fn len(&self) -> usize {
        if self.remote.is_empty() { self.local.len() } else { self.members().len() }
    }

    /// No member on any node.
    pub(crate) fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    /// Whether there may be changes to announce.
    pub(crate) fn changed(&self) -> bool {
        !self.touched.is_empty() || !self.meta_touched.is_empty() || self.local_changed
    }

    /// Who is there now, for a new subscriber (or one that missed changes).
    pub(crate) fn snapshot(&mut self) -> Snapshot {
        self.snapshot_taken = true;
        let members: Vec<String> = self.members().into_iter().map(|user| user.to_string()).collect();
        let meta = self.meta_by_user(members.iter().map(String::as_str));
        Snapshot { members, meta }
    }

    /// This node's members, for the other nodes.
    pub(crate) fn local(&self) -> Snapshot {
        let mut members: Vec<String> = self.local.keys().map(|user| user.to_string()).collect();
        members.sort_unstable();
        let meta = self.meta.iter().map(|(user, meta)| (user.to_string(), meta.clone())).collect();
        Snapshot { members, meta }
    }

    /// This node's members if they changed since the last call.
    pub(crate) fn take_local_change(&mut self) -> Option<Snapshot> {
        std::mem::take(&mut self.local_changed).then(|| self.local())
    }

    /// Takes the changes since the last announcement.
    pub(crate) fn take_changes(&mut self) -> Option<Changes> {
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        let snapshot_taken = std::mem::take(&mut self.snapshot_taken);
        let touched = std::mem::take(&mut self.touched);
        let mut meta_touched = std::mem::take(&mut self.meta_touched);
        for (user, was_member) in touched {
            let is_member = self.is_member(&user);
            let meta_changed = meta_touched.remove(&user);
            if is_member != was_member || snapshot_taken || meta_changed {
                if is_member { &mut joined } else { &mut left }.push(user.to_string());
            }
        }
        joined.extend(meta_touched.into_iter().filter(|user| self.is_member(user)).map(|user| user.to_string()));
        if joined.is_empty() && left.is_empty() {
            return None;
        }
        joined.sort_unstable();
        left.sort_unstable();
        let meta = self.meta_by_user(joined.iter().map(String::as_str));
        Some(Changes { joined, left, meta })
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
        assert_eq!(
            first,
            Some(Changes { joined: vec!["alice".into(), "bob".into()], left: vec![], meta: BTreeMap::new() })
        );
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
        assert_eq!(presence.snapshot().members, ["bob"]);
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
        assert_eq!(presence.snapshot().members, ["a", "b"]);
    }

    #[test]
    fn a_user_is_a_member_while_any_node_lists_them() {
        let mut presence = Presence::default();
        let (alice, bob, node) = (user("alice"), user("bob"), user("node-b"));
        presence.join(&alice, 10);
        presence.take_changes();
        assert_eq!(
            presence.take_local_change().map(|local| local.members),
            Some(vec!["alice".to_owned()]),
            "told to the other nodes"
        );
        presence.set_remote(&node, 1, vec![alice.clone(), bob.clone()], HashMap::new(), 10);
        assert_eq!(
            presence.take_changes(),
            Some(Changes { joined: vec!["bob".into()], left: vec![], meta: BTreeMap::new() })
        );
        assert_eq!(presence.take_local_change().map(|local| local.members), None, "nothing of this node's changed");
        presence.leave(&alice);
        assert_eq!(presence.take_changes(), None, "alice is still on node b");
        assert_eq!(presence.take_local_change().map(|local| local.members), Some(vec![]));
        presence.set_remote(&node, 1, vec![], HashMap::new(), 10);
        assert_eq!(presence.snapshot().members, ["alice", "bob"], "a late copy of an announcement is ignored");
        presence.forget_node("node-b");
        assert_eq!(
            presence.take_changes(),
            Some(Changes { joined: vec![], left: vec!["alice".into(), "bob".into()], meta: BTreeMap::new() })
        );
        assert!(presence.is_empty());
    }

    #[test]
    fn members_other_nodes_list_count_towards_the_cap() {
        let mut presence = Presence::default();
        presence.set_remote(&user("node-b"), 1, vec![user("b"), user("a"), user("c")], HashMap::new(), 2);
        assert_eq!(presence.snapshot().members, ["a", "b"]);
        assert!(!presence.join(&user("d"), 2));
        assert!(presence.join(&user("a"), 2), "a member already, on another node");
    }

    #[test]
    fn a_metadata_change_names_the_member_again_with_it() {
        let mut presence = Presence::default();
        let (alice, node) = (user("alice"), user("node-b"));
        let name = |name: &str| Payload::from_value(&serde_json::json!({ "name": name })).unwrap();
        presence.join(&alice, 10);
        assert!(presence.set_meta(&alice, &name("Alice")));
        let changes = presence.take_changes().unwrap();
        assert_eq!(
            (changes.joined, changes.meta),
            (vec!["alice".to_owned()], BTreeMap::from([("alice".into(), name("Alice"))]))
        );
        assert!(presence.set_meta(&alice, &name("Alice")));
        assert_eq!(presence.take_changes(), None, "the same metadata again changes nothing");
        assert!(!presence.set_meta(&user("bob"), &name("Bob")), "not a member");
        presence.set_remote(&node, 1, vec![user("bob")], HashMap::from([(user("bob"), name("Bob"))]), 10);
        presence.set_meta(&alice, &name("Ally"));
        let changes = presence.take_changes().unwrap();
        assert_eq!(changes.joined, ["alice", "bob"]);
        assert_eq!(changes.meta, BTreeMap::from([("alice".into(), name("Ally")), ("bob".into(), name("Bob"))]));
        assert_eq!(presence.snapshot().meta.len(), 2);
        presence.leave(&alice);
        presence.join(&alice, 10);
        assert_eq!(presence.snapshot().meta.get("alice"), None, "metadata goes with the member");
    }
}
