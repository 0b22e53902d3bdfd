//! Why credentials were refused.

/// Why an [`Authenticator`](super::Authenticator) refused credentials.
///
/// The message reaches the client (a WebSocket close reason, at most 123
/// bytes, or an HTTP error body): it says what to do and never contains the
/// token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The client presented no credentials.
    #[error("no token: send Authorization: Bearer <token>, ?token= or an auth message")]
    Missing,
    /// The token's `exp` has passed.
    #[error("token expired; get a fresh one")]
    Expired,
    /// The token's `nbf` is still ahead.
    #[error("token not valid yet (its nbf is in the future); check the issuer's clock")]
    NotYetValid,
    /// The signature was not made by the server's key.
    #[error("token signature does not match the server's key; sign it with that key")]
    Signature,
    /// The token is signed with an algorithm the key does not allow.
    #[error("token algorithm not accepted; sign it with {accepted}")]
    Algorithm {
        /// What the server accepts, e.g. `HS256`.
        accepted: String,
    },
    /// The token's `aud` is not the server's audience, or the server has
    /// none and the token names one.
    #[error("token audience (aud) is not this server's; get a token for this service")]
    Audience,
    /// The token's `iss` is not the issuer the server trusts.
    #[error("token issuer (iss) is not the one this server trusts; get a token from that issuer")]
    Issuer,
    /// The claims are missing or of the wrong type.
    #[error("token claims invalid: {0}")]
    Claims(String),
    /// Not a JWT at all.
    #[error("token is not a valid JWT; send the token as it was issued")]
    Malformed,
    /// The token's `kid` is not in the identity provider's key set, even
    /// after fetching it again (or it was fetched too recently to ask again).
    #[error("token key id (kid) is not in the server's key set; sign it with a current key")]
    UnknownKey,
    /// The server cannot check credentials now (its identity provider or
    /// session store does not answer). HTTP answers 503.
    #[error("authentication unavailable: {0}; retry later")]
    Unavailable(String),
    /// Refused for a reason of the application's own; see [`refused`](Self::refused).
    #[error("{0}")]
    Refused(String),
}

impl AuthError {
    /// A refusal with the application's own `reason` (e.g. "session expired;
    /// log in again"). Keep it short, and never put a secret in it.
    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused(reason.into())
    }
}
