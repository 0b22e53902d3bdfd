//! Who a connection or request is: an [`Authenticator`] turns the
//! [`Credentials`] a client presents into an [`Identity`], or refuses them
//! with an [`AuthError`] that tells the client what to do.
//!
//! WebSocket, Server-Sent Events, long poll and `POST /api/publish` all ask
//! the same authenticator. Provided:
//!
//! | authenticator | tokens | `herald serve` |
//! | --- | --- | --- |
//! | [`Jwt::hs256`] | HS256 JWTs signed with a shared secret ([`mint_token`]) | `--secret` |
//! | [`Jwt::public_key_pem`] | RS256 (and RS/PS 384, 512) or ES256/ES384 JWTs, one static public key | `--jwt-public-key` |
//! | [`Jwks`] | JWTs signed by any key of an identity provider's JWKS, fetched, cached and refetched on rotation | `--jwks-url` |
//! | a closure | anything: look the session cookie up in your own store | |
//! | development mode | any non-empty token is the user id | `--dev` |
//!
//! The JWT authenticators read [`Claims`] (`sub`, `exp`, and Herald's
//! `tenant`, `topics`, `publish`, `on_behalf`), check `exp` and `nbf` with
//! 5 s of leeway, and check `aud` and `iss` when told an
//! [audience](Jwt::audience) or [issuer](Jwt::issuer). A token with an `aud`
//! is refused unless the audience is set (RFC 7519: a token for another
//! service must not be taken here).
//!
//! A closure authenticator gets the credentials owned, so its future may
//! keep them:
//!
//! ```
//! use herald_server::{AuthError, Credentials, Herald, Identity};
//!
//! # async fn run() -> Result<(), herald_server::ServerError> {
//! let herald = Herald::builder()
//!     .authenticator(|credentials: Credentials<'static>| async move {
//!         // Your session store here: a cookie, or a token sent by a client.
//!         let session = credentials.cookie("session").or(credentials.token()).ok_or(AuthError::Missing)?;
//!         match session {
//!             "s-alice" => Ok(Identity::new("alice").tenant("acme").topics(["doc:*"])),
//!             _ => Err(AuthError::refused("unknown session; log in again")),
//!         }
//!     })
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```

mod error;
mod identity;
mod jwks;
mod jwt;

use std::{borrow::Cow, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::http::{HeaderMap, header};

pub use error::AuthError;
pub use identity::Identity;
pub use jwks::Jwks;
pub(crate) use jwt::unix_now;
pub use jwt::{Claims, Jwt, mint_token};

/// A boxed future that can move between threads, as [`Authenticator`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks what a client presents and says who it is.
///
/// Herald keeps one as `Arc<dyn Authenticator>` and calls it when a
/// WebSocket or SSE connection opens, on every `auth` and `refresh` message,
/// and on every long poll and `POST /api/publish`. A refusal closes a
/// WebSocket with 4001 and its [`AuthError`] as the reason, and answers HTTP
/// with 401 (503 for [`AuthError::Unavailable`]). A call that takes longer
/// than [`ServerConfig::auth_timeout`](crate::ServerConfig::auth_timeout) is
/// refused as unavailable.
///
/// Closures `Fn(Credentials<'static>) -> impl Future<Output = Result<Identity, AuthError>>`
/// are authenticators (see the [module docs](self)).
pub trait Authenticator: Send + Sync {
    /// The identity behind `credentials`, or why there is none.
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Result<Identity, AuthError>>;
}

impl<F, Fut> Authenticator for F
where
    F: Fn(Credentials<'static>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(self(credentials.into_owned()))
    }
}

/// What a client presents: a token, from (in this order) `Authorization:
/// Bearer`, `?token=`, or an `auth` or `refresh` message, and the headers of
/// its request (for a session cookie). A WebSocket's `auth` and `refresh`
/// messages come with the headers of its upgrade request (a `refresh`
/// without the handshake's own: `Connection`, `Upgrade` and
/// `Sec-WebSocket-Key`, `-Version` and `-Extensions`).
///
/// Its `Debug` shows neither the token nor header values.
#[derive(Clone)]
pub struct Credentials<'a> {
    token: Option<Cow<'a, str>>,
    headers: Cow<'a, HeaderMap>,
}

impl<'a> Credentials<'a> {
    /// Credentials of a request with `headers`, presenting `token`.
    pub fn new(token: Option<&'a str>, headers: &'a HeaderMap) -> Self {
        Self { token: token.map(Cow::Borrowed), headers: Cow::Borrowed(headers) }
    }

    /// The token, if the client sent one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The headers of the client's request.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of the cookie `name`, if the request carries it.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        let headers = self.headers.get_all(header::COOKIE).into_iter().filter_map(|v| v.to_str().ok());
        headers.flat_map(|v| v.split(';')).find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
    }

    /// The same credentials, owning their token and headers.
    pub fn into_owned(self) -> Credentials<'static> {
        Credentials {
            token: self.token.map(|t| Cow::Owned(t.into_owned())),
            headers: Cow::Owned(self.headers.into_owned()),
        }
    }
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Development mode: any non-empty token is the user id, who may subscribe
/// and publish anything, and never expires.
#[derive(Debug)]
pub(crate) struct Dev {
    /// `*`, shared by every identity: each connection keeps its identity,
    /// and a copy of its own would be two allocations per connection.
    anywhere: Arc<[String]>,
}

impl Dev {
    pub(crate) fn new() -> Self {
        Self { anywhere: Arc::new(["*".to_owned()]) }
    }
}

impl Authenticator for Dev {
    fn authenticate<'a>(&'a self, credentials: Credentials<'a>) -> BoxFuture<'a, Result<Identity, AuthError>> {
        let identity = match credentials.token() {
            Some(token) if !token.is_empty() => {
                Ok(Identity { publish: Some(self.anywhere.clone()), ..Identity::new(token) })
            }
            _ => Err(AuthError::Missing),
        };
        Box::pin(std::future::ready(identity))
    }
}

/// The server's authenticator, with the deadline of one call.
#[derive(Clone)]
pub(crate) struct Auth {
    authenticator: Arc<dyn Authenticator>,
    deadline: Duration,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(authenticator: Arc<dyn Authenticator>, deadline: Duration) -> Self {
        Self { authenticator, deadline }
    }

    /// The identity behind `credentials`. A slow authenticator (an identity
    /// provider or session store that hangs) is refused at the deadline
    /// rather than holding the connection.
    pub(crate) async fn check(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
        let identity = tokio::time::timeout(self.deadline, self.authenticator.authenticate(credentials))
            .await
            .map_err(|_| AuthError::Unavailable(format!("no answer within {:?}", self.deadline)))??;
        if identity.user.is_empty() {
            return Err(AuthError::Claims("the user id (sub) is empty".into()));
        }
        Ok(identity)
    }
}
