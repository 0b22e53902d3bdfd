//! The token verifier. The first byte picks what the rest is:
//!
//! - even: a token as a client sends it, checked by the HS256, RSA and EC
//!   verifiers. Without the private keys no input may pass the RSA or EC
//!   ones (`alg: none`, HS256 signed with the public key, ...), and one that
//!   passes HS256 carries the secret's signature.
//! - odd: claims, signed with the secret, so that any claims reach the
//!   checks after the signature. An accepted token names its user in `sub`,
//!   has not expired and is already valid (5 s of leeway), carries no `aud`
//!   unless the verifier asks for one, and then the one it asks for.
#![no_main]

use axum::http::HeaderMap;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::FutureExt;
use herald_server::{AuthError, Credentials, Identity, auth::Authenticator, auth::Jwt};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::{
    sync::LazyLock,
    time::{SystemTime, UNIX_EPOCH},
};

const SECRET: &str = "herald-fuzz-secret";
const AUDIENCE: &str = "herald";

struct Verifiers {
    hs256: Jwt,
    hs256_audience: Jwt,
    rsa: Jwt,
    ec: Jwt,
}

static VERIFIERS: LazyLock<Verifiers> = LazyLock::new(|| Verifiers {
    hs256: Jwt::hs256(SECRET).unwrap(),
    hs256_audience: Jwt::hs256(SECRET).unwrap().audience(AUDIENCE),
    rsa: Jwt::public_key_pem(include_bytes!("../../crates/herald-server/tests/keys/rsa-a.pub.pem")).unwrap(),
    ec: Jwt::public_key_pem(include_bytes!("../../crates/herald-server/tests/keys/ec-a.pub.pem")).unwrap(),
});

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let verifiers = &*VERIFIERS;
    if mode % 2 == 0 {
        assert!(check(&verifiers.rsa, text).is_err(), "a token passed the RSA key without its private half");
        assert!(check(&verifiers.ec, text).is_err(), "a token passed the EC key without its private half");
        if check(&verifiers.hs256, text).is_ok() {
            let (input, signature) = text.rsplit_once('.').expect("a JWT has three parts");
            assert_eq!(signature, hmac(input), "a token passed HS256 without the secret's signature");
        }
        return;
    }
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(text));
    let token = format!("{input}.{}", hmac(&input));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if let Ok(identity) = check(&verifiers.hs256, &token) {
        let claims = accepted(text, &identity, now);
        assert!(claims.get("aud").is_none(), "a token with an aud passed a verifier that names no audience");
    }
    if let Ok(identity) = check(&verifiers.hs256_audience, &token) {
        let claims = accepted(text, &identity, now);
        let aud = &claims["aud"];
        assert!(
            aud == AUDIENCE || aud.as_array().is_some_and(|all| all.iter().any(|a| a == AUDIENCE)),
            "a token for audience {aud} passed a verifier for {AUDIENCE}"
        );
    }
});

fn check(jwt: &Jwt, token: &str) -> Result<Identity, AuthError> {
    let headers = HeaderMap::new();
    jwt.authenticate(Credentials::new(Some(token), &headers)).now_or_never().expect("a static key answers at once")
}

fn hmac(input: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, input.as_bytes()).as_ref())
}

/// Checks what an accepted token's claims must say; returns them.
fn accepted(claims: &str, identity: &Identity, now: u64) -> Value {
    let claims: Value = serde_json::from_str(claims).expect("accepted claims are JSON");
    assert_eq!(claims["sub"].as_str(), Some(&*identity.user), "the identity is not the token's sub");
    assert_eq!(claims["tenant"].as_str(), identity.tenant.as_deref(), "the identity's tenant is not the token's");
    let exp = claims["exp"].as_u64().expect("an accepted token has a numeric exp");
    // 5 s of leeway, and a second for the clock to tick during the check.
    // (`exp` may be u64::MAX: the seed claims-huge-exp.bin, which overflowed here once.)
    assert!(exp.saturating_add(6) >= now, "a token that expired at {exp} passed at {now}");
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64) {
        assert!(nbf <= now + 6, "a token valid from {nbf} passed at {now}");
    }
    // Whatever the expiry, the lifetime left is computed without overflow.
    let _ = identity.expires_in();
    claims
}
