//! Tokens: HS256 JWTs, or any string in development mode.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::ServerError;

/// The claims of a Herald token.
///
/// ```
/// use herald_server::{Claims, mint_token};
///
/// let claims = Claims::new("u-1", 3600).tenant("acme").topics(["gift-list:*"]).publish(["gift-list:*"]);
/// let token = mint_token("a long random secret", &claims)?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok::<(), herald_server::ServerError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's tenant, a namespace of its own: the user sees only events
    /// carrying this `tenant_id`, and publishes only into it. Absent: the
    /// user sees only events without a `tenant_id`, and may publish into the
    /// tenant an event names (a backend service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Topic patterns this user may subscribe to: `gift-list:1`, `gift-list:*`
    /// or `*`. Absent: every topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Topic patterns this user may publish to. Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// A backend's token that publishes on behalf of its users: its
    /// publishes keep the `data.user_id` they name (who triggered the
    /// change). Without it, `data.user_id` is always this token's `sub`, so
    /// no user can publish as another. Default: `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_behalf: bool,
    /// Not valid before, seconds since the Unix epoch. Absent: valid at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl Claims {
    /// Claims for `user`, valid for `ttl_secs` from now, any topic, no publish.
    pub fn new(user: impl Into<String>, ttl_secs: u64) -> Self {
        let exp = unix_now().saturating_add(ttl_secs);
        Self { sub: user.into(), tenant: None, topics: None, publish: None, on_behalf: false, nbf: None, exp }
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
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

    /// Lets this token name the user who triggered a change in its
    /// publishes (`data.user_id`): for a backend that announces its users'
    /// writes. See [`on_behalf`](Self::on_behalf).
    pub fn on_behalf_of_users(mut self) -> Self {
        self.on_behalf = true;
        self
    }

    /// Makes the token valid only from `unix_secs` on.
    pub fn not_before(mut self, unix_secs: u64) -> Self {
        self.nbf = Some(unix_secs);
        self
    }
}

/// Signs `claims` as an HS256 JWT with `secret`.
pub fn mint_token(secret: &str, claims: &Claims) -> Result<String, ServerError> {
    if secret.is_empty() {
        return Err(ServerError::Config("the token secret is empty; pass --secret or set HERALD_SECRET".into()));
    }
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| ServerError::Config(format!("cannot sign the token: {e}")))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Who a connection or request is, after its token was checked.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) user: Arc<str>,
    pub(crate) tenant: Option<Arc<str>>,
    topics: Option<Arc<[String]>>,
    publish: Option<Arc<[String]>>,
    /// May name who triggered the changes it publishes.
    on_behalf: bool,
    /// Unix seconds; `None` never expires (development mode).
    pub(crate) exp: Option<u64>,
}

impl Identity {
    pub(crate) fn may_subscribe(&self, topic: &str) -> bool {
        self.topics.as_ref().is_none_or(|patterns| patterns.iter().any(|p| pattern_allows(p, topic)))
    }

    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.publish.as_ref().is_some_and(|patterns| patterns.iter().any(|p| pattern_allows(p, topic)))
    }

    /// The `data.user_id` of an event this identity publishes: the token's
    /// user, unless the token publishes on behalf of users and names one.
    pub(crate) fn publisher(&self, named: Option<String>) -> String {
        match named {
            Some(named) if self.on_behalf => named,
            _ => self.user.to_string(),
        }
    }

    pub(crate) fn expires_in(&self) -> Option<u64> {
        self.exp.map(|exp| exp.saturating_sub(unix_now()))
    }

    /// When the token expires, as seen from `now`; `None` never (development
    /// mode, or an `exp` too far away for the clock to represent).
    pub(crate) fn expires_at(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        now.checked_add(std::time::Duration::from_secs(self.expires_in()?))
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

/// Checks tokens. Cheap to clone into handlers.
#[derive(Clone)]
pub(crate) struct Authenticator {
    key: Option<Arc<DecodingKey>>,
    validation: Arc<Validation>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("dev", &self.key.is_none()).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `secret: None` is development mode.
    pub(crate) fn new(secret: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Clocks of token issuers and this server differ a little, not by minutes.
        validation.leeway = 5;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Self { key: secret.map(|s| Arc::new(DecodingKey::from_secret(s.as_bytes()))), validation: Arc::new(validation) }
    }

    /// The identity in `token`, or a reason fit for a close frame (it never
    /// contains the token).
    pub(crate) fn check(&self, token: &str) -> Result<Identity, String> {
        if token.is_empty() {
            return Err("empty token".into());
        }
        let Some(key) = &self.key else {
            // Development mode: the token is the user id, who may do anything.
            let anything: Arc<[String]> = Arc::from(vec!["*".to_owned()]);
            let publish = Some(anything);
            return Ok(Identity {
                user: token.into(),
                tenant: None,
                topics: None,
                publish,
                on_behalf: false,
                exp: None,
            });
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => "token expired; get a fresh one".to_owned(),
            ErrorKind::ImmatureSignature => "token not valid yet (its nbf is in the future)".to_owned(),
            ErrorKind::InvalidSignature => "token signature does not match the server secret".to_owned(),
            ErrorKind::InvalidAlgorithm => "token is not signed with HS256".to_owned(),
            ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => {
                "token claims invalid: need sub (string) and exp (number)".to_owned()
            }
            _ => "token is not a valid JWT".to_owned(),
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err("token has an empty sub claim".into());
        }
        Ok(Identity {
            user: claims.sub.into(),
            tenant: claims.tenant.map(Into::into),
            topics: claims.topics.map(Into::into),
            publish: claims.publish.map(Into::into),
            on_behalf: claims.on_behalf,
            exp: Some(claims.exp),
        })
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
    fn minted_tokens_check_and_bad_ones_say_why_without_the_token() {
        let auth = Authenticator::new(Some("s3cret"));
        let token = mint_token("s3cret", &Claims::new("u-1", 60).tenant("acme")).unwrap();
        let identity = auth.check(&token).unwrap();
        assert_eq!(&*identity.user, "u-1");
        assert_eq!(identity.tenant.as_deref(), Some("acme"));
        assert!(!identity.may_publish("a:1"));
        let other = mint_token("other", &Claims::new("u-1", 60)).unwrap();
        let reason = auth.check(&other).unwrap_err();
        assert!(reason.contains("signature") && !reason.contains(&other));
        let mut old = Claims::new("u-1", 0);
        old.exp -= 120;
        assert!(auth.check(&mint_token("s3cret", &old).unwrap()).unwrap_err().contains("expired"));
        let later = Claims::new("u-1", 7200).not_before(unix_now() + 3600);
        assert!(auth.check(&mint_token("s3cret", &later).unwrap()).unwrap_err().contains("not valid yet"));
        let now = Claims::new("u-1", 7200).not_before(unix_now());
        assert!(auth.check(&mint_token("s3cret", &now).unwrap()).is_ok());
    }

    #[test]
    fn only_a_token_on_behalf_of_users_names_the_publisher() {
        let auth = Authenticator::new(Some("s3cret"));
        let alice = auth.check(&mint_token("s3cret", &Claims::new("alice", 60)).unwrap()).unwrap();
        assert_eq!(alice.publisher(Some("bob".into())), "alice");
        let backend = Claims::new("backend", 60).on_behalf_of_users();
        let backend = auth.check(&mint_token("s3cret", &backend).unwrap()).unwrap();
        assert_eq!(backend.publisher(Some("bob".into())), "bob");
        assert_eq!(backend.publisher(None), "backend");
    }
}
