//! A small sorted map by topic.

use herald_protocol::Topic;

/// Values by topic, in topic order, found by binary search. A sorted `Vec`
/// rather than a `BTreeMap`: as fast for the tens to thousands of topics a
/// client holds, and a fraction of the code in the browser build.
#[derive(Debug)]
pub(crate) struct TopicMap<V>(pub(crate) Vec<(Topic, V)>);

impl<V> Default for TopicMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> TopicMap<V> {
    pub(crate) fn find(&self, topic: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(t, _)| t.as_str().cmp(topic))
    }

    pub(crate) fn get(&self, topic: &str) -> Option<&V> {
        self.find(topic).ok().map(|at| &self.0[at].1)
    }

    pub(crate) fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.find(topic).ok().map(|at| &mut self.0[at].1)
    }

    /// The value of `topic`, inserted as `value` if there was none.
    pub(crate) fn get_or_insert(&mut self, topic: &Topic, value: V) -> &mut V {
        let at = self.find(topic.as_str()).unwrap_or_else(|at| {
            self.0.insert(at, (topic.clone(), value));
            at
        });
        &mut self.0[at].1
    }

    pub(crate) fn remove(&mut self, topic: &str) -> Option<(Topic, V)> {
        self.find(topic).ok().map(|at| self.0.remove(at))
    }
}
