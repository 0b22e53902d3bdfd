//! [`Jwks`]: JWTs signed by any key of an identity provider's published key
//! set, fetched over HTTP(S), cached, and fetched again when a token names a
//! key the cache lacks (the provider rotated its keys) and when it grows old.

use std::{
    fmt,
    str::FromStr,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{Request, Uri, header},
};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use tokio::time::{Instant, timeout};
use tracing::{debug, warn};

use super::{
    AuthError, Authenticator, BoxFuture, Credentials, Identity,
    jwt::{self, Rules},
};
use crate::ServerError;

/// A key set larger than this is not one: identity providers publish a few keys.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Checks JWTs against the keys an identity provider publishes as a JSON Web
/// Key Set (its `jwks_uri`, e.g. `https://idp.example/.well-known/jwks.json`),
/// reading [`Claims`](super::Claims).
///
/// - The set is fetched on first use and cached. A token whose `kid` is not
///   in the cache (the provider rotated its keys) makes it fetch the set
///   again, and so does a cache older than the
///   [refresh interval](Self::refresh_interval) (in the background: tokens
///   are checked with the cached keys meanwhile). A key the provider retired
///   is refused from the next fetch on.
/// - Fetches happen at most once per [cooldown](Self::cooldown), however
///   many tokens name unknown keys: forged `kid`s cannot flood the provider.
/// - Each fetch has a [deadline](Self::fetch_timeout). When one fails the
///   keys fetched before stay in use; with none, tokens are refused with
///   [`AuthError::Unavailable`] (close 4001 with that reason, HTTP 503).
/// - RSA keys check RS256, RS384, RS512, PS256, PS384 and PS512, EC keys
///   ES256 (P-256) or ES384 (P-384), or only the key's `alg` when it names
///   one. Other keys (`oct`, `OKP`, `"use":"enc"`) are skipped.
/// - Clones share the cached keys and the cooldown.
///
/// ```no_run
/// use herald_server::{Herald, auth::Jwks};
///
/// # async fn run() -> Result<(), herald_server::ServerError> {
/// let jwks = Jwks::new("https://idp.example/.well-known/jwks.json")?
///     .audience("herald")
///     .issuer("https://idp.example/");
/// let herald = Herald::builder().authenticator(jwks).build().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Jwks {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    rules: Rules,
    refresh_interval: Duration,
    cooldown: Duration,
    fetch_timeout: Duration,
    cache: Arc<Cache>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("rules", &self.rules)
            .field("refresh_interval", &self.refresh_interval)
            .field("cooldown", &self.cooldown)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch began; held while fetching, so that one fetch
    /// runs at a time and the ones waiting for it need not fetch again.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

struct KeySet {
    fetched: Instant,
    keys: Vec<Key>,
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// One key family, as jsonwebtoken requires.
    algorithms: Vec<Algorithm>,
}

impl Jwks {
    /// The key set at `url` (`https://`, or `http://` for a provider on the
    /// same host or network), with Mozilla's root certificates. Nothing is
    /// fetched until the first token arrives.
    pub fn new(url: &str) -> Result<Self, ServerError> {
        let url: Uri = url.parse().map_err(|_| bad_url(url))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(bad_url(&url.to_string()));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Config(format!("cannot set up TLS for the JWKS: {e}")))?
            .with_webpki_roots()
            .with_no_client_auth();
        let fetch_timeout = Duration::from_secs(5);
        Ok(Self {
            client: client(tls, fetch_timeout),
            url,
            rules: Rules::default(),
            refresh_interval: Duration::from_secs(600),
            cooldown: Duration::from_secs(30),
            fetch_timeout,
            cache: Arc::default(),
        })
    }

    /// Accepts only tokens whose `aud` names `audience` (repeat for more).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.rules.audience(audience.into());
        self
    }

    /// Accepts only tokens whose `iss` is `issuer` (repeat for more).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.rules.issuer(issuer.into());
        self
    }

    /// How old the cached set may grow before it is fetched again. Default: 10 minutes.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two fetches. Default: 30 s.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The longest a fetch may take, connecting included. Default: 5 s.
    pub fn fetch_timeout(mut self, deadline: Duration) -> Self {
        self.fetch_timeout = deadline;
        self
    }

    /// TLS settings for an `https://` set, e.g. roots that include a
    /// private certificate authority (the default trusts Mozilla's roots).
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.client = client(config, self.fetch_timeout);
        self
    }

    async fn check(&self, token: &str) -> Result<Identity, AuthError> {
        let kid = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?.kid;
        let mut keys = self.cached();
        match &keys {
            None => keys = self.fetch().await,
            Some(set) if set.fetched.elapsed() >= self.refresh_interval => {
                let jwks = self.clone();
                tokio::spawn(async move { jwks.fetch().await });
            }
            Some(_) => {}
        }
        if keys.as_ref().is_some_and(|set| set.find(kid.as_deref()).is_none()) {
            keys = self.fetch().await;
        }
        let Some(keys) = keys else {
            return Err(AuthError::Unavailable("the identity provider's keys (JWKS) cannot be fetched".into()));
        };
        let key = keys.find(kid.as_deref()).ok_or(AuthError::UnknownKey)?;
        jwt::verify(token, &key.key, &self.rules.validation(&key.algorithms))
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        self.cache.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Fetches the set unless a fetch began within the cooldown (perhaps
    /// while this one waited for it), and returns the newest keys. A failed
    /// fetch keeps the keys fetched before.
    async fn fetch(&self) -> Option<Arc<KeySet>> {
        let mut last_fetch = self.cache.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < self.cooldown) {
            return self.cached();
        }
        *last_fetch = Some(Instant::now());
        match timeout(self.fetch_timeout, self.download()).await.unwrap_or_else(|_| Err("no answer in time".into())) {
            Ok(keys) => {
                debug!(url = %self.url, keys = keys.len(), "fetched the JWKS");
                let set = Arc::new(KeySet { fetched: Instant::now(), keys });
                *self.cache.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(set);
            }
            Err(problem) => {
                warn!(url = %self.url, %problem, "cannot fetch the JWKS; the keys fetched before stay in use")
            }
        }
        self.cached()
    }

    async fn download(&self) -> Result<Vec<Key>, String> {
        let request = Request::get(self.url.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| chain(&e))?;
        if !response.status().is_success() {
            return Err(format!("the server answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES).collect().await.map_err(|e| chain(&*e))?;
        parse(&body.to_bytes())
    }
}

impl Authenticator for Jwks {
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            match credentials.token() {
                Some(token) if !token.is_empty() => self.check(token).await,
                _ => Err(AuthError::Missing),
            }
        })
    }
}

impl KeySet {
    /// The key named `kid`; a token without one may use the only key.
    fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match (kid, self.keys.as_slice()) {
            (None, [only]) => Some(only),
            (None, _) => None,
            (Some(kid), keys) => keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
        }
    }
}

fn client(tls: rustls::ClientConfig, connect_timeout: Duration) -> Client<HttpsConnector<HttpConnector>, Empty<Bytes>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let https = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

fn bad_url(url: &str) -> ServerError {
    ServerError::Config(format!("the JWKS URL {url:?} is not an http:// or https:// URL with a host"))
}

/// The usable signing keys of a JWKS document; keys of other kinds, or that
/// do not parse, are skipped so that one odd key does not hide the others.
fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document ({{\"keys\":[..]}}): {e}"))?;
    let keys: Vec<Key> =
        document.keys.into_iter().filter_map(|value| key(serde_json::from_value(value).ok()?)).collect();
    if keys.is_empty() {
        return Err("the JWKS holds no RSA or EC signing key".into());
    }
    Ok(keys)
}

fn key(jwk: Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => jwt::RSA,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    let algorithms = match &jwk.common.key_algorithm {
        Some(named) => {
            let named = Algorithm::from_str(&named.to_string()).ok().filter(|alg| family.contains(alg))?;
            vec![named]
        }
        None => family.to_vec(),
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key { kid: jwk.common.key_id, key, algorithms })
}

/// An error and its causes, for a log line: the client's own message is
/// often just "client error (Connect)".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
