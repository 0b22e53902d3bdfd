//! [`Identity`]: who a connection or request is, and what it may do.

use std::{sync::Arc, time::Duration};

use super::{Claims, unix_now};

/// Who a connection or request is, after its credentials were checked, and
/// what it may do. [`Authenticator`](super::Authenticator)s return one.
///
/// ```
/// use herald_server::Identity;
///
/// let identity = Identity::new("u-1").tenant("acme").topics(["doc:*"]).publish(["doc:7"]);
/// assert!(identity.may_subscribe("doc:1") && !identity.may_subscribe("note:1"));
/// assert!(identity.may_publish("doc:7") && !identity.may_publish("doc:1"));
/// assert_eq!(identity.exp, None, "no expiry unless one is set");
/// ```
///
/// Patterns are `res:id` (that topic), `res:*` (every topic of `res`) or
/// `*` (everything).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id; not empty.
    pub user: Arc<str>,
    /// The user's tenant, a namespace of its own (see [`Claims::tenant`]).
    /// `None`: events without a tenant, and publishing into any (a backend).
    pub tenant: Option<Arc<str>>,
    /// Topic patterns the user may subscribe to. `None`: every topic.
    pub topics: Option<Arc<[String]>>,
    /// Topic patterns the user may publish to. `None`: none.
    pub publish: Option<Arc<[String]>>,
    /// Publishes keep the `data.user_id` they name (see [`Claims::on_behalf`]).
    pub on_behalf: bool,
    /// When the credentials expire, seconds since the Unix epoch: a
    /// WebSocket must `refresh` before then or is closed with 4001, an SSE
    /// stream ends. `None`: never.
    pub exp: Option<u64>,
}

impl Identity {
    /// `user`, who may subscribe to every topic, publish nowhere, without a
    /// tenant and without expiry.
    pub fn new(user: impl Into<Arc<str>>) -> Self {
        Self { user: user.into(), tenant: None, topics: None, publish: None, on_behalf: false, exp: None }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<Arc<str>>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Restricts subscriptions to these patterns.
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.topics = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// Allows publishing to these patterns.
    pub fn publish<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.publish = Some(patterns.into_iter().map(Into::into).collect());
        self
    }

    /// Lets publishes name the user who triggered the change (a backend).
    pub fn on_behalf_of_users(mut self) -> Self {
        self.on_behalf = true;
        self
    }

    /// Expires at `unix_secs` (seconds since the Unix epoch).
    pub fn expires_at_unix(mut self, unix_secs: u64) -> Self {
        self.exp = Some(unix_secs);
        self
    }

    /// Whether the identity may subscribe to `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.topics.as_ref().is_none_or(|patterns| patterns.iter().any(|p| pattern_allows(p, topic)))
    }

    /// Whether the identity may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.as_ref().is_some_and(|patterns| patterns.iter().any(|p| pattern_allows(p, topic)))
    }

    /// The `data.user_id` of an event this identity publishes: its user,
    /// unless it publishes on behalf of users and `named` names one.
    pub fn publisher(&self, named: Option<String>) -> String {
        match named {
            Some(named) if self.on_behalf => named,
            _ => self.user.to_string(),
        }
    }

    /// Seconds until expiry (0 once past); `None` never expires.
    pub fn expires_in(&self) -> Option<u64> {
        self.exp.map(|exp| exp.saturating_sub(unix_now()))
    }

    /// When the identity expires, as seen from `now`; `None` never (or an
    /// `exp` too far away for the clock to represent).
    pub(crate) fn deadline(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        now.checked_add(Duration::from_secs(self.expires_in()?))
    }
}

impl From<Claims> for Identity {
    fn from(claims: Claims) -> Self {
        Self {
            user: claims.sub.into(),
            tenant: claims.tenant.map(Into::into),
            topics: claims.topics.map(Into::into),
            publish: claims.publish.map(Into::into),
            on_behalf: claims.on_behalf,
            exp: Some(claims.exp),
        }
    }
}

/// `*` allows everything, `res:*` every topic of `res` (and the `res:*`
/// wildcard itself), anything else exactly that topic.
fn pattern_allows(pattern: &str, topic: &str) -> bool {
    if pattern == "*" || pattern == topic {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with(':') => topic.starts_with(prefix),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_allow_exact_topics_resource_wildcards_and_star() {
        assert!(pattern_allows("*", "a:1"));
        assert!(pattern_allows("a:1", "a:1"));
        assert!(!pattern_allows("a:1", "a:2"));
        assert!(pattern_allows("a:*", "a:2"));
        assert!(pattern_allows("a:*", "a:*"));
        assert!(!pattern_allows("a:*", "ab:2"));
        assert!(!pattern_allows("a:1", "a:*"));
    }

    #[test]
    fn only_an_identity_on_behalf_of_users_names_the_publisher() {
        let alice = Identity::new("alice");
        assert_eq!(alice.publisher(Some("bob".into())), "alice");
        let backend = Identity::new("backend").on_behalf_of_users();
        assert_eq!(backend.publisher(Some("bob".into())), "bob");
        assert_eq!(backend.publisher(None), "backend");
    }
}
