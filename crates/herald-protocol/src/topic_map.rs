//! Values by topic: the positions a `subscribe` and a `subscribed` carry,
//! and the session's own tables.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{MapAccess, Visitor},
    ser::SerializeMap,
};

use crate::{Topic, limits::MAX_TOPICS_PER_MESSAGE};

/// Values by topic, in topic order, found by binary search; a JSON object
/// on the wire (the `since` of a [`Subscribe`](crate::Subscribe), the
/// `last_seq` of a [`Subscribed`](crate::Subscribed)). A sorted `Vec` rather
/// than a `BTreeMap`: as fast for the tens to thousands of topics a client
/// holds, and a fraction of the code in the browser build.
///
/// ```
/// use herald_protocol::{Topic, TopicMap};
///
/// let mut since = TopicMap::new();
/// since.insert(Topic::new("gift-list:1")?, 41);
/// since.insert(Topic::new("gift-list:*")?, 318);
/// assert_eq!(since.get("gift-list:1"), Some(&41));
/// assert_eq!(serde_json::to_string(&since)?, r#"{"gift-list:*":318,"gift-list:1":41}"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TopicMap<V>(Vec<(Topic, V)>);

impl<V> Default for TopicMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V: fmt::Debug> fmt::Debug for TopicMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(topic, value)| (topic, value))).finish()
    }
}

impl<V> TopicMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where `topic` is (`Ok`), or would go (`Err`), in [`entries`](Self::entries).
    pub fn find(&self, topic: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(t, _)| t.as_str().cmp(topic))
    }

    /// The value of `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        self.find(topic).ok().map(|at| &self.0[at].1)
    }

    /// The value of `topic`, to change.
    pub fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.find(topic).ok().map(|at| &mut self.0[at].1)
    }

    /// The value of `topic`, inserted as `value` if there was none.
    pub fn get_or_insert(&mut self, topic: &Topic, value: V) -> &mut V {
        let at = self.find(topic.as_str()).unwrap_or_else(|at| {
            self.0.insert(at, (topic.clone(), value));
            at
        });
        &mut self.0[at].1
    }

    /// Sets `topic`'s value; returns the one it replaced.
    pub fn insert(&mut self, topic: Topic, value: V) -> Option<V> {
        match self.find(topic.as_str()) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (topic, value));
                None
            }
        }
    }

    /// Takes `topic`'s entry out.
    pub fn remove(&mut self, topic: &str) -> Option<(Topic, V)> {
        self.find(topic).ok().map(|at| self.0.remove(at))
    }

    /// Keeps the entries `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Topic, &mut V) -> bool) {
        self.0.retain_mut(|(topic, value)| keep(topic, value));
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// How many topics have a value.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no topic has a value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in topic order.
    pub fn entries(&self) -> &[(Topic, V)] {
        &self.0
    }

    /// The value of the entry at `at` (from [`find`](Self::find)).
    ///
    /// # Panics
    ///
    /// If `at` is past the last entry.
    pub fn value_at_mut(&mut self, at: usize) -> &mut V {
        &mut self.0[at].1
    }

    /// The entries, in topic order.
    pub fn iter(&self) -> impl Iterator<Item = (&Topic, &V)> {
        self.0.iter().map(|(topic, value)| (topic, value))
    }

    /// The entries, in topic order, values to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Topic, &mut V)> {
        self.0.iter_mut().map(|(topic, value)| (&*topic, value))
    }

    /// The topics, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Topic> {
        self.0.iter().map(|(topic, _)| topic)
    }
}

impl<V> FromIterator<(Topic, V)> for TopicMap<V> {
    /// A later value of a topic replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = (Topic, V)>>(entries: I) -> Self {
        let mut map = Self::new();
        for (topic, value) in entries {
            map.insert(topic, value);
        }
        map
    }
}

impl<V> IntoIterator for TopicMap<V> {
    type Item = (Topic, V);
    type IntoIter = std::vec::IntoIter<(Topic, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a TopicMap<V> {
    type Item = (&'a Topic, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (Topic, V)>, fn(&'a (Topic, V)) -> (&'a Topic, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(topic, value)| (topic, value))
    }
}

impl<V: Serialize> Serialize for TopicMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (topic, value) in &self.0 {
            map.serialize_entry(topic, value)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for TopicMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = TopicMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Self::Value, A::Error> {
                let mut map = TopicMap::new();
                while let Some((topic, value)) = entries.next_entry()? {
                    // A message names at most this many topics; the bound
                    // also keeps each sorted insertion's shift short.
                    if map.len() == MAX_TOPICS_PER_MESSAGE && map.get(Topic::as_str(&topic)).is_none() {
                        return Err(serde::de::Error::custom(format_args!(
                            "a map of positions names at most {MAX_TOPICS_PER_MESSAGE} topics: split the message"
                        )));
                    }
                    map.insert(topic, value);
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_TOPICS_PER_MESSAGE, TopicMap};

    #[test]
    fn a_json_object_reads_into_topic_order_the_last_value_of_a_topic_winning_and_a_bad_topic_refused() {
        let map: TopicMap<u64> = serde_json::from_str(r#"{"b:1":2,"a:*":1,"b:1":3}"#).unwrap();
        let entries: Vec<(&str, u64)> = map.iter().map(|(topic, seq)| (topic.as_str(), *seq)).collect();
        assert_eq!(entries, [("a:*", 1), ("b:1", 3)]);
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a:*":1,"b:1":3}"#);
        assert!(serde_json::from_str::<TopicMap<u64>>(r#"{"no-colon":1}"#).is_err());
        assert!(serde_json::from_str::<TopicMap<u64>>("[]").is_err());
    }

    #[test]
    fn a_map_of_more_topics_than_a_message_may_name_is_refused() {
        let map =
            |n: usize| format!("{{{}}}", (0..n).rev().map(|n| format!(r#""doc:{n}":1"#)).collect::<Vec<_>>().join(","));
        let full: TopicMap<u64> = serde_json::from_str(&map(MAX_TOPICS_PER_MESSAGE)).unwrap();
        assert_eq!(full.len(), MAX_TOPICS_PER_MESSAGE);
        let error = serde_json::from_str::<TopicMap<u64>>(&map(MAX_TOPICS_PER_MESSAGE + 1)).unwrap_err();
        assert!(error.to_string().contains("at most 256 topics"), "{error}");
    }
}
