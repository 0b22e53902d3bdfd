//! JWTs: Herald's [`Claims`], [`mint_token`] for HS256, and [`Jwt`], which
//! checks tokens signed with one static key. [`Jwks`](super::Jwks) checks them
//! with [`verify`] too.

use std::{
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::{AuthError, Authenticator, BoxFuture, Credentials, Identity};
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

/// What a token must say besides being signed and current: its audience and
/// issuer, when set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    audience: Vec<String>,
    issuer: Vec<String>,
}

impl Rules {
    pub(crate) fn audience(&mut self, audience: String) {
        self.audience.push(audience);
    }

    pub(crate) fn issuer(&mut self, issuer: String) {
        self.issuer.push(issuer);
    }

    /// How to validate a token signed with one of `algorithms` (one key family).
    pub(crate) fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        // Clocks of token issuers and this server differ a little, not by minutes.
        validation.leeway = 5;
        validation.validate_nbf = true;
        // jsonwebtoken lets a token without `aud` or `iss` pass those checks
        // unless the claims are required.
        let mut required = vec!["exp"];
        if !self.audience.is_empty() {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        if !self.issuer.is_empty() {
            validation.set_issuer(&self.issuer);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// The identity in `token`, signed with `key` by one of `validation`'s algorithms.
pub(crate) fn verify(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Identity, AuthError> {
    let data = jsonwebtoken::decode::<Addressed>(token, key, validation).map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        // A key that does not fit the signature (e.g. a JWK that does not
        // parse as the algorithm's key) cannot have signed it either.
        ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey => AuthError::Signature,
        ErrorKind::InvalidAlgorithm => AuthError::Algorithm { accepted: accepted(&validation.algorithms) },
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::Claims(format!("the {claim} claim is missing")),
        ErrorKind::Json(_) => AuthError::Claims("need sub (string) and exp (number)".into()),
        _ => AuthError::Malformed,
    })?;
    // jsonwebtoken refuses an `aud` without a configured audience only when
    // it parses as one (a string or strings); a number or null would pass.
    if data.claims.aud && validation.aud.is_none() {
        return Err(AuthError::Audience);
    }
    Ok(data.claims.claims.into())
}

/// The claims, and whether the token has an `aud` of any shape.
#[derive(Deserialize)]
struct Addressed {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default, deserialize_with = "present")]
    aud: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// `RS256, PS256`, for a message.
fn accepted(algorithms: &[Algorithm]) -> String {
    algorithms.iter().map(|alg| format!("{alg:?}")).collect::<Vec<_>>().join(", ")
}

/// The algorithms an RSA public key may sign with.
pub(crate) const RSA: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
/// ES256 for P-256 keys, ES384 for P-384 keys.
pub(crate) const EC: &[Algorithm] = &[Algorithm::ES256, Algorithm::ES384];

/// Checks JWTs signed with one key: a shared secret (HS256) or a public key
/// (RSA or EC), reading [`Claims`].
///
/// ```
/// use herald_server::{Claims, Credentials, auth::{Authenticator, Jwt}, mint_token};
/// use axum::http::HeaderMap;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let jwt = Jwt::hs256("a long random secret")?.audience("herald").issuer("https://auth.example");
/// let token = mint_token("a long random secret", &Claims::new("u-1", 60))?;
/// // No `aud` and `iss` in the token: refused.
/// let refused = jwt.authenticate(Credentials::new(Some(&token), &HeaderMap::new())).await;
/// assert!(refused.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Jwt {
    key: Arc<DecodingKey>,
    algorithms: &'static [Algorithm],
    rules: Rules,
    validation: Arc<Validation>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt").field("algorithms", &self.algorithms).field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl Jwt {
    /// HS256 tokens signed with `secret`, as [`mint_token`] makes them.
    /// An empty secret is refused: anyone could sign with it.
    pub fn hs256(secret: &str) -> Result<Self, ServerError> {
        if secret.is_empty() {
            return Err(ServerError::Config("the token secret is empty; pass a long random one".into()));
        }
        Ok(Self::new(DecodingKey::from_secret(secret.as_bytes()), &[Algorithm::HS256]))
    }

    /// Tokens signed with the private half of `pem`, a public key
    /// (`-----BEGIN PUBLIC KEY-----`, or `BEGIN RSA PUBLIC KEY`): RSA keys
    /// check RS256, RS384, RS512, PS256, PS384 and PS512, EC keys ES256 (P-256)
    /// and ES384 (P-384). Only those: a token naming HS256 or `none` is
    /// refused, so the public key can never serve as a shared secret.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, ServerError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, RSA));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::new(key, EC));
        }
        Err(ServerError::Config(
            "the JWT public key is not an RSA or EC public key in PEM (-----BEGIN PUBLIC KEY-----); export it with `openssl pkey -pubout`".into(),
        ))
    }

    fn new(key: DecodingKey, algorithms: &'static [Algorithm]) -> Self {
        let rules = Rules::default();
        let validation = Arc::new(rules.validation(algorithms));
        Self { key: Arc::new(key), algorithms, rules, validation }
    }

    /// Accepts only tokens whose `aud` names `audience` (repeat for more).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audience(audience.into());
        self.validation = Arc::new(self.rules.validation(self.algorithms));
        self
    }

    /// Accepts only tokens whose `iss` is `issuer` (repeat for more).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuer(issuer.into());
        self.validation = Arc::new(self.rules.validation(self.algorithms));
        self
    }
}

impl Authenticator for Jwt {
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let identity = match credentials.token() {
            Some(token) if !token.is_empty() => verify(token, &self.key, &self.validation),
            _ => Err(AuthError::Missing),
        };
        Box::pin(std::future::ready(identity))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;
    use serde_json::json;

    use super::*;

    fn check(jwt: &Jwt, token: &str) -> Result<Identity, AuthError> {
        let headers = HeaderMap::new();
        let future = jwt.authenticate(Credentials::new(Some(token), &headers));
        futures_util::FutureExt::now_or_never(future).expect("a static key answers at once")
    }

    #[test]
    fn minted_tokens_check_and_bad_ones_say_why_without_the_token() {
        let jwt = Jwt::hs256("s3cret").unwrap();
        let token = mint_token("s3cret", &Claims::new("u-1", 60).tenant("acme")).unwrap();
        let identity = check(&jwt, &token).unwrap();
        assert_eq!(&*identity.user, "u-1");
        assert_eq!(identity.tenant.as_deref(), Some("acme"));
        assert!(!identity.may_publish("a:1"));
        let other = mint_token("other", &Claims::new("u-1", 60)).unwrap();
        let reason = check(&jwt, &other).unwrap_err().to_string();
        assert!(reason.contains("signature") && !reason.contains(&other), "{reason}");
        let mut old = Claims::new("u-1", 0);
        old.exp -= 120;
        assert_eq!(check(&jwt, &mint_token("s3cret", &old).unwrap()), Err(AuthError::Expired));
        let later = Claims::new("u-1", 7200).not_before(unix_now() + 3600);
        assert_eq!(check(&jwt, &mint_token("s3cret", &later).unwrap()), Err(AuthError::NotYetValid));
        let now = Claims::new("u-1", 7200).not_before(unix_now());
        assert!(check(&jwt, &mint_token("s3cret", &now).unwrap()).is_ok());
        assert_eq!(check(&jwt, "not.a.jwt"), Err(AuthError::Malformed));
    }

    /// Found by the fuzzer (fuzz/seeds/token/claims-aud-number.bin): an `aud`
    /// that is not a string passed a verifier that names no audience.
    #[test]
    fn an_aud_of_any_shape_is_refused_without_an_audience() {
        let jwt = Jwt::hs256("s3cret").unwrap();
        let audienced = Jwt::hs256("s3cret").unwrap().audience("herald");
        let exp = unix_now() + 60;
        for aud in [json!(4102444000u64), json!(null), json!({"herald": true}), json!("herald"), json!(["herald"])] {
            let claims = json!({"sub": "u-1", "exp": exp, "aud": aud});
            let token =
                jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"s3cret")).unwrap();
            assert_eq!(check(&jwt, &token), Err(AuthError::Audience), "aud {aud}");
            assert_eq!(check(&audienced, &token).is_ok(), aud.is_string() || aud.is_array(), "aud {aud}");
        }
    }

    #[test]
    fn an_empty_secret_or_a_key_that_is_no_public_key_is_refused() {
        assert!(Jwt::hs256("").is_err());
        let problem = Jwt::public_key_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap_err();
        assert!(problem.to_string().contains("openssl pkey -pubout"), "{problem}");
    }
}
