//! Pluggable authentication: HS256, RS256 and ES256 with a static key, an
//! identity provider's JWKS (rotation, outage, HTTPS), and a closure over a
//! session store, each over WebSocket (close 4001), plain SSE and HTTP
//! publish (401). The keys are in tests/keys (made by make.sh there).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use herald_protocol::close;
use herald_server::{
    AuthError, Credentials, Identity, ServerConfig,
    auth::{Jwks, Jwt},
};
use herald_test_support::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};

const AUDIENCE: &str = "herald";
const ISSUER: &str = "https://idp.test/";
const PUBLISH: &str = r#"{"topic":"doc:1","event":"UPDATED","data":{"entity_id":"1"}}"#;

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The claims of a token for `user` that may publish, for this server's
/// audience and issuer, expiring in `ttl` seconds (negative: expired).
fn claims(user: &str, ttl: i64) -> Value {
    json!({"sub": user, "exp": unix_now() + ttl, "aud": AUDIENCE, "iss": ISSUER, "publish": ["doc:*"]})
}

fn with(mut claims: Value, name: &str, value: &str) -> Value {
    claims[name] = json!(value);
    claims
}

/// A private key of tests/keys.
fn private_key(name: &str) -> EncodingKey {
    let pem = std::fs::read(format!("{}/tests/keys/{name}.pem", env!("CARGO_MANIFEST_DIR"))).unwrap();
    if name.starts_with("rsa") { EncodingKey::from_rsa_pem(&pem) } else { EncodingKey::from_ec_pem(&pem) }.unwrap()
}

fn key_path(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let header = Header { kid: kid.map(str::to_owned), ..Header::new(alg) };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(key: &str, claims: &Value) -> String {
    sign(Algorithm::RS256, &private_key(key), Some(key), claims)
}

fn es256(key: &str, claims: &Value) -> String {
    sign(Algorithm::ES256, &private_key(key), Some(key), claims)
}

fn hs256(secret: &str, claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(secret.as_bytes()), None, claims)
}

/// `token` works over WebSocket, a plain SSE stream and HTTP publish.
async fn accepted_everywhere(server: &ServerHandle, token: &str) {
    let mut client = Client::connect(&format!("{}?token={token}", server.ws_url())).await;
    let connected = client.recv().await;
    assert_eq!(connected["type"], "connected", "{connected}");
    let (status, mut sse) = Sse::open(server, &format!("/sse?topics=doc:1&token={token}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));
    let (status, body) = post_publish(server, token, PUBLISH).await;
    assert_eq!(status, 200, "{body}");
}

/// `token` is refused with a reason containing `why`: close 4001 after the
/// WebSocket upgrade, 401 on a plain SSE stream and on HTTP publish.
async fn refused_everywhere(server: &ServerHandle, token: &str, why: &str) {
    let mut client = Client::connect(&format!("{}?token={token}", server.ws_url())).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");
    assert!(reason.contains(why) && !reason.contains(token), "{reason:?} should say {why:?}");
    let (status, body) = http(server, "GET", &format!("/sse?topics=doc:1&token={token}"), &[], "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(why), "{body} should say {why:?}");
    let (status, body) = post_publish(server, token, PUBLISH).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains(why), "{body} should say {why:?}");
}

#[tokio::test]
async fn hs256_tokens_are_checked_for_signature_expiry_audience_and_issuer() {
    let jwt = Jwt::hs256(SECRET).unwrap().audience(AUDIENCE).issuer(ISSUER);
    let server = Server::builder().authenticator(jwt).bind("127.0.0.1:0").await.unwrap();
    accepted_everywhere(&server, &hs256(SECRET, &claims("u-1", 600))).await;
    refused_everywhere(&server, &hs256(SECRET, &claims("u-1", -60)), "expired").await;
    refused_everywhere(&server, &hs256("another-secret", &claims("u-1", 600)), "signature").await;
    refused_everywhere(&server, &hs256(SECRET, &with(claims("u-1", 600), "aud", "billing")), "audience").await;
    refused_everywhere(&server, &hs256(SECRET, &with(claims("u-1", 600), "iss", "https://evil.test/")), "issuer").await;
    let mut unaddressed = claims("u-1", 600);
    unaddressed.as_object_mut().unwrap().remove("aud");
    refused_everywhere(&server, &hs256(SECRET, &unaddressed), "aud claim is missing").await;
    // Herald's own tokens carry no audience: without one set, they pass.
    let plain = Server::builder().secret(SECRET).bind("127.0.0.1:0").await.unwrap();
    accepted_everywhere(&plain, &mint_token(SECRET, &Claims::new("u-1", 600).publish(["doc:*"])).unwrap()).await;
    refused_everywhere(&plain, &hs256(SECRET, &claims("u-1", 600)), "audience").await;
}

#[tokio::test]
async fn rs256_tokens_are_checked_with_the_public_key_herald_serve_is_given() {
    // The configuration `herald serve --jwt-public-key FILE --jwt-audience .. --jwt-issuer ..` makes.
    let mut config = ServerConfig::default();
    config.jwt_public_key = Some(key_path("rsa-a.pub.pem"));
    config.jwt_audience = vec![AUDIENCE.into()];
    config.jwt_issuer = Some(ISSUER.into());
    let server = herald_server::HeraldBuilder::new(config).bind("127.0.0.1:0").await.unwrap();
    accepted_everywhere(&server, &rs256("rsa-a", &claims("u-1", 600))).await;
    let ps256 = sign(Algorithm::PS256, &private_key("rsa-a"), None, &claims("u-1", 600));
    accepted_everywhere(&server, &ps256).await;
    refused_everywhere(&server, &rs256("rsa-a", &claims("u-1", -60)), "expired").await;
    refused_everywhere(&server, &rs256("rsa-b", &claims("u-1", 600)), "signature").await;
    refused_everywhere(&server, &rs256("rsa-a", &with(claims("u-1", 600), "aud", "billing")), "audience").await;
    refused_everywhere(&server, &rs256("rsa-a", &with(claims("u-1", 600), "iss", "https://evil.test/")), "issuer")
        .await;
    // The public key is public: a token "signed" with it as an HS256 secret proves nothing.
    let public_pem = std::fs::read_to_string(key_path("rsa-a.pub.pem")).unwrap();
    refused_everywhere(&server, &hs256(&public_pem, &claims("u-1", 600)), "algorithm").await;
}

#[tokio::test]
async fn es256_tokens_are_checked_with_a_static_public_key() {
    let pem = std::fs::read(key_path("ec-a.pub.pem")).unwrap();
    let jwt = Jwt::public_key_pem(&pem).unwrap().audience(AUDIENCE);
    let server = Server::builder().authenticator(jwt).bind("127.0.0.1:0").await.unwrap();
    accepted_everywhere(&server, &es256("ec-a", &claims("u-1", 600))).await;
    refused_everywhere(&server, &es256("ec-a", &claims("u-1", -60)), "expired").await;
    refused_everywhere(&server, &es256("ec-b", &claims("u-1", 600)), "signature").await;
    refused_everywhere(&server, &es256("ec-a", &with(claims("u-1", 600), "aud", "billing")), "audience").await;
    refused_everywhere(&server, &rs256("rsa-a", &claims("u-1", 600)), "algorithm").await;
}

/// What an identity provider serves at its JWKS URL, switchable by the test.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Keys,
    /// Accepts the connection and never answers.
    Hang,
}

/// A tiny identity provider publishing a JWKS on loopback.
struct Idp {
    addr: SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    scheme: &'static str,
}

impl Idp {
    async fn start(keys: &[&str]) -> Self {
        Self::serve(None, keys).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, keys: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Self {
            addr: listener.local_addr().unwrap(),
            keys: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::Keys)),
            fetches: Arc::default(),
            scheme: if tls.is_some() { "https" } else { "http" },
        };
        idp.publish(keys);
        let (keys, answer, fetches) = (idp.keys.clone(), idp.answer.clone(), idp.fetches.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = json!({"keys": *keys.lock().unwrap()}).to_string();
                let answer = *answer.lock().unwrap();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                respond(stream, answer, &body).await;
                            }
                        }
                        None => respond(tcp, answer, &body).await,
                    }
                });
            }
        });
        idp
    }

    /// Serves the JWKs of these keys of tests/keys from now on.
    fn publish(&self, names: &[&str]) {
        let jwk = |name: &&str| {
            serde_json::from_str(&std::fs::read_to_string(key_path(&format!("{name}.jwk.json"))).unwrap()).unwrap()
        };
        *self.keys.lock().unwrap() = names.iter().map(jwk).collect();
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn url(&self) -> String {
        let host = if self.scheme == "https" { "localhost" } else { "127.0.0.1" };
        format!("{}://{host}:{}/.well-known/jwks.json", self.scheme, self.addr.port())
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn respond(mut stream: impl AsyncRead + AsyncWrite + Unpin, answer: Answer, body: &str) {
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
    if answer == Answer::Hang {
        // Holds the connection until the client gives up.
        let _ = stream.read(&mut byte).await;
        return;
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn jwks_server(jwks: Jwks) -> ServerHandle {
    Server::builder().authenticator(jwks).bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn jwks_tokens_are_checked_with_the_key_their_kid_names() {
    let idp = Idp::start(&["rsa-a", "ec-a"]).await;
    let server = jwks_server(Jwks::new(&idp.url()).unwrap().audience(AUDIENCE).issuer(ISSUER)).await;
    accepted_everywhere(&server, &rs256("rsa-a", &claims("u-1", 600))).await;
    accepted_everywhere(&server, &es256("ec-a", &claims("u-2", 600))).await;
    assert_eq!(idp.fetches(), 1, "the key set is cached");
    refused_everywhere(&server, &rs256("rsa-a", &claims("u-1", -60)), "expired").await;
    let forged = sign(Algorithm::RS256, &private_key("rsa-b"), Some("rsa-a"), &claims("u-1", 600));
    refused_everywhere(&server, &forged, "signature").await;
    refused_everywhere(&server, &rs256("rsa-a", &with(claims("u-1", 600), "aud", "billing")), "audience").await;
    refused_everywhere(&server, &rs256("rsa-a", &with(claims("u-1", 600), "iss", "https://evil.test/")), "issuer")
        .await;
    refused_everywhere(&server, &rs256("rsa-b", &claims("u-1", 600)), "kid").await;
}

/// Publishes with tokens naming kids the provider never had; each is refused.
async fn forged_kids(server: &ServerHandle) {
    for n in 0..20 {
        let forged = sign(Algorithm::RS256, &private_key("rsa-b"), Some(&format!("forged-{n}")), &claims("u-1", 600));
        let (status, body) = post_publish(server, &forged, PUBLISH).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("kid"), "{body}");
    }
}

#[tokio::test]
async fn a_rotated_jwks_key_is_fetched_on_first_use_and_forged_kids_cannot_flood_the_provider() {
    let idp = Idp::start(&["rsa-a"]).await;
    // Long enough that the requests right after a fetch all fall within it.
    let cooldown = Duration::from_secs(2);
    let server = jwks_server(Jwks::new(&idp.url()).unwrap().audience(AUDIENCE).cooldown(cooldown)).await;
    let old = rs256("rsa-a", &claims("u-1", 600));
    accepted_everywhere(&server, &old).await;
    assert_eq!(idp.fetches(), 1);

    // The provider rotates: rsa-b replaces rsa-a. Within the cooldown of
    // the last fetch, no kid makes the server fetch again.
    idp.publish(&["rsa-b"]);
    let new = rs256("rsa-b", &claims("u-1", 600));
    assert_eq!(post_publish(&server, &new, PUBLISH).await.0, 401);
    forged_kids(&server).await;
    assert_eq!(idp.fetches(), 1, "no fetch within the cooldown, however many unknown kids");

    // Past it, the new key is fetched on its first use and accepted everywhere.
    tokio::time::sleep(cooldown).await;
    accepted_everywhere(&server, &new).await;
    assert_eq!(idp.fetches(), 2);
    // The retired key went with that fetch.
    refused_everywhere(&server, &old, "kid").await;
    forged_kids(&server).await;
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test]
async fn a_jwks_outage_refuses_in_time_with_a_clear_reason_and_keeps_the_keys_fetched_before() {
    let idp = Idp::start(&["rsa-a"]).await;
    idp.answer(Answer::Hang);
    let jwks = || Jwks::new(&idp.url()).unwrap().audience(AUDIENCE).fetch_timeout(Duration::from_millis(300));
    let server = jwks_server(jwks()).await;
    let token = rs256("rsa-a", &claims("u-1", 600));
    let mut client = Client::connect(&format!("{}?token={token}", server.ws_url())).await;
    let (code, reason) = within_for(Duration::from_secs(3), "the refusal", client.closed()).await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");
    assert!(reason.contains("unavailable") && reason.contains("retry later"), "{reason}");
    let (status, body) = post_publish(&server, &token, PUBLISH).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = http(&server, "GET", &format!("/sse?topics=doc:1&token={token}"), &[], "").await;
    assert_eq!(status, 503, "{body}");

    // Keys fetched before an outage stay in use while it lasts.
    idp.answer(Answer::Keys);
    let server = jwks_server(jwks().refresh_interval(Duration::from_millis(100)).cooldown(Duration::ZERO)).await;
    accepted_everywhere(&server, &token).await;
    idp.answer(Answer::Hang);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fetches = idp.fetches();
    accepted_everywhere(&server, &token).await;
    eventually("a refresh of the stale keys to be tried", || idp.fetches() > fetches).await;
}

#[tokio::test]
async fn a_jwks_over_https_is_checked_against_the_roots_given() {
    let (acceptor, client_config) = tls::self_signed();
    let idp = Idp::serve(Some(acceptor), &["ec-a"]).await;
    let token = es256("ec-a", &claims("u-1", 600));
    let jwks = || Jwks::new(&idp.url()).unwrap().audience(AUDIENCE);
    // Mozilla's roots do not include the test's own certificate.
    let untrusting = jwks_server(jwks()).await;
    let (status, body) = post_publish(&untrusting, &token, PUBLISH).await;
    assert_eq!(status, 503, "{body}");
    let trusting = jwks_server(jwks().tls_config((*client_config).clone())).await;
    accepted_everywhere(&trusting, &token).await;
}

/// A WebSocket to `server` whose upgrade request carries `cookie`.
async fn connect_with_cookie(server: &ServerHandle, cookie: &str) -> Client {
    let mut request = server.ws_url().into_client_request().unwrap();
    request.headers_mut().insert("Cookie", HeaderValue::from_str(cookie).unwrap());
    let (ws, _) = within("the handshake", tokio_tungstenite::connect_async(request)).await.unwrap();
    Client { ws }
}

#[tokio::test]
async fn a_closure_authenticates_sessions_from_the_services_own_store() {
    // The service's session store: session id → (user, expiry).
    let store: Arc<tokio::sync::RwLock<HashMap<String, (String, i64)>>> = Arc::default();
    store.write().await.insert("s-alive".into(), ("alice".into(), unix_now() + 600));
    store.write().await.insert("s-old".into(), ("bob".into(), unix_now() - 60));
    let sessions = store.clone();
    let authenticator = move |credentials: Credentials<'static>| {
        let sessions = sessions.clone();
        async move {
            let id = credentials.cookie("session").or(credentials.token()).ok_or(AuthError::Missing)?;
            let Some((user, exp)) = sessions.read().await.get(id).cloned() else {
                return Err(AuthError::refused("unknown session; log in again"));
            };
            if exp < unix_now() {
                return Err(AuthError::Expired);
            }
            Ok(Identity::new(user).publish(["doc:*"]).expires_at_unix(exp as u64))
        }
    };
    let server = Server::builder().authenticator(authenticator).bind("127.0.0.1:0").await.unwrap();

    // A session id works as a token, ...
    accepted_everywhere(&server, "s-alive").await;
    refused_everywhere(&server, "s-old", "expired").await;
    refused_everywhere(&server, "s-forged", "unknown session").await;
    // ... and as a cookie, on every transport.
    let mut client = connect_with_cookie(&server, "theme=dark; session=s-alive").await;
    assert_eq!(client.recv().await["user_id"], "alice");
    let (status, mut sse) = Sse::open(&server, "/sse?topics=doc:1", &[("Cookie", "session=s-alive")]).await;
    assert_eq!(status, 200);
    assert_eq!(field(&sse.next().await, "event"), Some("herald.connected"));
    let headers = [("Cookie", "session=s-alive"), ("Content-Type", "application/json")];
    assert_eq!(http(&server, "POST", "/api/publish", &headers, PUBLISH).await.0, 200);
    let mut client = connect_with_cookie(&server, "session=s-old").await;
    let (code, reason) = client.closed().await;
    assert_eq!((code, reason.contains("expired")), (close::UNAUTHORIZED, true), "{reason}");
    let (status, body) = http(&server, "POST", "/api/publish", &[("Cookie", "session=s-old")], PUBLISH).await;
    assert_eq!(status, 401, "{body}");

    // Without a cookie, a WebSocket may still send its session in an `auth` message,
    // and refresh it; a session ended in the store ends the connection at its refresh.
    let mut client = Client::connect(&server.ws_url()).await;
    client.send(&json!({"type":"auth","token":"s-alive"}).to_string()).await;
    assert_eq!(client.recv().await["user_id"], "alice");
    store.write().await.remove("s-alive");
    client.send(&json!({"type":"refresh","token":"s-alive"}).to_string()).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");
    assert!(reason.contains("refresh refused: unknown session"), "{reason}");
    // Two tokens refused on three transports, two cookies, one refresh.
    assert_eq!(server.metrics().auth_failures, 2 * 3 + 2 + 1);
}

#[tokio::test]
async fn a_slow_authenticator_is_refused_at_the_auth_deadline() {
    let hanging = |_: Credentials<'static>| std::future::pending::<Result<Identity, AuthError>>();
    let mut builder = Server::builder().authenticator(hanging);
    builder.config_mut().auth_timeout = Duration::from_millis(200);
    let server = builder.bind("127.0.0.1:0").await.unwrap();
    let mut client = Client::connect(&format!("{}?token=t", server.ws_url())).await;
    let (code, reason) = client.closed().await;
    assert_eq!(code, close::UNAUTHORIZED, "{reason}");
    assert!(reason.contains("unavailable"), "{reason}");
    assert_eq!(post_publish(&server, "t", PUBLISH).await.0, 503);
}

#[tokio::test]
async fn conflicting_or_missing_auth_settings_are_refused_with_what_to_do() {
    let problem = |config: &ServerConfig| config.validate().unwrap_err().to_string();
    let mut config = ServerConfig::default();
    assert!(problem(&config).contains("--jwt-public-key or --jwks-url"), "{}", problem(&config));
    config.secret = Some(SECRET.into());
    config.jwks_url = Some("https://idp.test/jwks.json".into());
    assert!(problem(&config).contains("keep one"), "{}", problem(&config));
    config.secret = None;
    config.validate().unwrap();
    config.jwks_url = Some("ftp://idp.test/jwks.json".into());
    assert!(problem(&config).contains("http:// or https://"), "{}", problem(&config));
    config.jwks_url = None;
    config.jwt_public_key = Some(key_path("missing.pem"));
    assert!(problem(&config).contains("cannot read the JWT public key file"), "{}", problem(&config));
    config.jwt_public_key = Some(key_path("rsa-a.jwk.json"));
    assert!(problem(&config).contains("PEM"), "{}", problem(&config));
    config.jwt_public_key = Some(std::fs::read_to_string(key_path("ec-a.pub.pem")).unwrap());
    config.validate().unwrap();

    let both = Server::builder().secret(SECRET).authenticator(Jwt::hs256(SECRET).unwrap()).build().await;
    assert!(both.unwrap_err().to_string().contains("keep one"));
}
