//! `herald serve`: run the reference server until SIGINT or SIGTERM.

use std::{path::PathBuf, time::Duration};

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use herald_server::{HeraldBuilder, IpNet, ServerConfig, TlsFiles};
use tracing::Level;
use tracing_subscriber::{EnvFilter, filter::filter_fn, prelude::*};

use crate::duration;

/// Run the Herald server.
///
/// Clients connect to ws://ADDR/ws?token=.. (or send {"type":"auth","token":..} first);
/// backends publish with POST /api/publish and `Authorization: Bearer <token>`.
///
/// Production: `herald serve --secret "$(openssl rand -hex 32)"`, then mint tokens with
/// `herald token --secret .. --user ..`. With an identity provider's tokens instead: its public
/// key (`--jwt-public-key`, RS256/ES256) or its key set (`--jwks-url`), with `--jwt-audience`
/// and `--jwt-issuer`. Development: `herald serve --dev` accepts any token as the user id.
/// A refused token closes a WebSocket with 4001 and the reason (after the upgrade, never HTTP
/// 401) and answers HTTP requests with 401 (503 while the key set cannot be fetched).
/// Every flag can also be set by the environment variable shown.
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more.
///
/// Endpoints: GET /ws (WebSocket), POST /api/publish, GET /sse?topics=.. (Server-Sent Events),
/// GET /api/poll?topics=..&since=.. (long poll), GET /healthz, GET /metrics (Prometheus).
/// SIGINT/SIGTERM: connections are closed with 1001 and a spread reconnect hint, then exit 0.
///
/// TLS: `--tls-cert fullchain.pem --tls-key key.pem` serves https:// and wss:// (HTTP/1.1).
/// The files are read again on SIGHUP and when they change (checked every 2 s): new connections
/// get the new certificate, open ones keep theirs; a bad file keeps the previous one and is logged.
///
/// History: without --data-dir the epoch and every topic's history live in memory, and a
/// restart starts a new epoch (every client resyncs). With --data-dir they survive restarts,
/// --reuse-port deploys and crashes, and reconnecting clients recover what they missed.
///
/// Limits: everything a client can make the server hold is bounded, before authentication too:
/// request heads and bodies (time and size), connections (in all, before authentication, per
/// address, per user), subscriptions, presence, queued frames, message and publish rates,
/// history and publish ids. Each has a flag below; docs/protocol.md ("Limits") says what a
/// client sees when it hits one.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ServeArgs {
    /// Check the settings, print what the server would run with, and exit (0 when they are
    /// fine, 1 when not) without starting anything.
    #[arg(long)]
    check_config: bool,
    /// Log records as `text` (colours only on a terminal) or as `json`, one object per line.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address to listen on.
    #[arg(long, env = "HERALD_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Secret for HS256 tokens. One of --secret, --jwt-public-key and --jwks-url is required
    /// unless --dev.
    #[arg(long, env = "HERALD_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Public key (RSA or EC, PEM) of the RS256/ES256 tokens an identity provider signs: a file,
    /// or the PEM text itself (-----BEGIN PUBLIC KEY-----..). HS256 tokens are then refused.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY", value_name = "FILE|PEM")]
    jwt_public_key: Option<String>,
    /// URL of an identity provider's key set (JWKS), e.g. https://idp.example/.well-known/jwks.json.
    /// Fetched on the first token, cached, fetched again when a token names an unknown key id
    /// (rotation; at most every 30s) and every 10 minutes; each fetch gives up after 5s. While it
    /// cannot be fetched, the keys fetched before stay in use.
    #[arg(long, env = "HERALD_JWKS_URL", value_name = "URL")]
    jwks_url: Option<String>,
    /// Audience a token's `aud` must name (comma-separated or repeated). Without it, tokens that
    /// carry an `aud` are refused.
    #[arg(long, env = "HERALD_JWT_AUDIENCE", value_delimiter = ',')]
    jwt_audience: Vec<String>,
    /// Issuer a token's `iss` must be. Without it, `iss` is not checked.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Development mode: accept ANY token as the user id. Insecure.
    #[arg(long, env = "HERALD_DEV")]
    dev: bool,
    /// Browser origin allowed to connect, e.g. https://app.example (comma-separated or repeated).
    /// Without it every origin is allowed.
    #[arg(long = "allowed-origin", env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Serve a built web app from this directory at `/`.
    #[arg(long = "static", env = "HERALD_STATIC", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Events kept per topic for recovery after reconnects.
    #[arg(long, env = "HERALD_HISTORY_LEN", default_value_t = 1_000)]
    history_len: usize,
    /// How long events stay in the history.
    #[arg(long, env = "HERALD_HISTORY_MAX_AGE", default_value = "5m", value_parser = duration::parse)]
    history_max_age: Duration,
    /// Bytes of history one topic keeps at most (its oldest events go first).
    #[arg(long, env = "HERALD_HISTORY_MAX_BYTES", default_value_t = 1 << 20)]
    history_max_bytes: usize,
    /// Bytes of history all topics keep together at most.
    #[arg(long, env = "HERALD_HISTORY_TOTAL_BYTES", default_value_t = 256 << 20)]
    history_total_bytes: usize,
    /// How long client publish ids are remembered to drop retransmissions.
    #[arg(long, env = "HERALD_DEDUP_WINDOW", default_value = "5m", value_parser = duration::parse)]
    dedup_window: Duration,
    /// Interval of the server's {"type":"ping"}.
    #[arg(long, env = "HERALD_PING_INTERVAL", default_value = "25s", value_parser = duration::parse)]
    ping_interval: Duration,
    /// Close connections that send nothing for this long.
    #[arg(long, env = "HERALD_IDLE_TIMEOUT", default_value = "60s", value_parser = duration::parse)]
    idle_timeout: Duration,
    /// Deadline for the first auth message when the URL has no ?token=, and for one check of a
    /// token (fetching the JWKS included).
    #[arg(long, env = "HERALD_AUTH_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    auth_timeout: Duration,
    /// Frames queued per connection before a slow consumer is closed (4009).
    #[arg(long, env = "HERALD_OUTBOUND_QUEUE", default_value_t = 1_024)]
    outbound_queue: usize,
    /// A socket write taking longer than this closes the connection (4009).
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    write_timeout: Duration,
    /// Inbound messages per second per connection (0: unlimited).
    #[arg(long, env = "HERALD_RATE_LIMIT", default_value_t = 1_000)]
    rate_limit: u32,
    /// Inbound burst per connection.
    #[arg(long, env = "HERALD_RATE_BURST", default_value_t = 2_000)]
    rate_burst: u32,
    /// Rate-limited messages in a row (each answered with error 429) before close 4008.
    #[arg(long, env = "HERALD_RATE_STRIKES", default_value_t = 20)]
    rate_strikes: u32,
    /// On shutdown, clients are told to reconnect after a random delay within this window.
    #[arg(long, env = "HERALD_SHUTDOWN_SPREAD", default_value = "5s", value_parser = duration::parse)]
    shutdown_spread: Duration,
    /// Listen with SO_REUSEPORT, so a restart refuses no connection: start the new `herald serve
    /// --reuse-port` on the same address, then SIGTERM the old one; its clients reconnect to the new.
    #[arg(long, env = "HERALD_REUSE_PORT")]
    reuse_port: bool,
    /// Keep the epoch, every topic's history and the publish ids in DIR (file herald.redb), so
    /// that restarts, --reuse-port deploys and crashes (kill -9) keep them and clients recover
    /// instead of resyncing. A publish is acked only once it is on disk (fsync). One process
    /// holds DIR at a time: a new one waits for the old one to shut down, holding its requests
    /// up to 10 s. An unreadable store is moved aside and a new epoch starts. Not with --redis.
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Name of the event history (default: random at start; a cluster keeps its own in Redis).
    #[arg(long, env = "HERALD_EPOCH")]
    epoch: Option<String>,
    /// Join a cluster: nodes sharing this Redis (6 or later), e.g. redis://127.0.0.1:6379,
    /// redis://:PASSWORD@host:6379/0 or rediss://user:PASSWORD@host:6380 (TLS), share seq numbers, the epoch, publish ids and every event,
    /// so clients may reconnect to any node, and presence spans the nodes.
    #[arg(long, env = "HERALD_REDIS", hide_env_values = true, value_name = "URL")]
    redis: Option<String>,
    /// Prefix of the cluster's Redis keys and channel (several clusters can share one Redis).
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald")]
    redis_prefix: String,
    /// With a rediss:// URL: the PEM file of the CA that signed the Redis server's certificate,
    /// trusted instead of the system's roots.
    #[arg(long, env = "HERALD_REDIS_CA", value_name = "PEM")]
    redis_ca: Option<PathBuf>,
    /// With --redis: how long other nodes keep listing this node's presence members after last
    /// hearing from it (a node is heard from every third of it); a node that dies has its users
    /// leave within it.
    #[arg(long, env = "HERALD_PRESENCE_TTL", default_value = "15s", value_parser = duration::parse)]
    presence_ttl: Duration,
    /// Longest wait for a request's head (request line and headers), the WebSocket handshake's
    /// included, and for the next request on an idle keep-alive connection.
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    header_timeout: Duration,
    /// Longest time an HTTP request body may take to arrive (408 after).
    #[arg(long, env = "HERALD_BODY_TIMEOUT", default_value = "10s", value_parser = duration::parse)]
    body_timeout: Duration,
    /// Connections held at most; over it new ones get 503 (GET /healthz is still answered).
    /// Default: what `ulimit -n` leaves after a reserve of 192 (herald serve raises its soft limit
    /// to the hard one at start).
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections without a valid token yet; over it new ones get 503.
    #[arg(long, env = "HERALD_MAX_UNAUTHENTICATED", default_value_t = 1_000)]
    max_unauthenticated: usize,
    /// Connections per client address (0: unlimited); over it: HTTP 429 or close 4008.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_IP", default_value_t = 1_000)]
    max_connections_per_ip: usize,
    /// WebSocket and SSE connections and long polls per user (0: unlimited); over it: HTTP 429
    /// or close 4008.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_USER", default_value_t = 100)]
    max_connections_per_user: usize,
    /// Proxies whose Forwarded / X-Forwarded-For headers name the client, as addresses or
    /// networks (e.g. 10.0.0.0/8, 127.0.0.1); comma-separated or repeated. Headers from any other
    /// peer are ignored.
    #[arg(long = "trusted-proxy", env = "HERALD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<IpNet>,
    /// Users listed in one topic's presence; subscribers beyond get presence but are not listed.
    #[arg(long, env = "HERALD_MAX_PRESENCE_MEMBERS", default_value_t = 1_000)]
    max_presence_members: usize,
    /// Presence changes of a topic are announced together, at most once per this interval.
    #[arg(long, env = "HERALD_PRESENCE_INTERVAL", default_value = "100ms", value_parser = duration::parse)]
    presence_interval: Duration,
    /// Client publish ids remembered at most (besides --dedup-window).
    #[arg(long, env = "HERALD_MAX_PUBLISH_IDS", default_value_t = 100_000)]
    max_publish_ids: usize,
    /// Topics one connection may hold, wildcards included (error 429 beyond).
    #[arg(long, env = "HERALD_MAX_SUBSCRIPTIONS", default_value_t = 1_000)]
    max_subscriptions: usize,
    /// POST /api/publish requests per second per user (0: unlimited); 429 beyond.
    #[arg(long, env = "HERALD_HTTP_PUBLISH_RATE", default_value_t = 1_000)]
    http_publish_rate: u32,
    /// POST /api/publish burst per user.
    #[arg(long, env = "HERALD_HTTP_PUBLISH_BURST", default_value_t = 2_000)]
    http_publish_burst: u32,
    /// Longest wait of GET /api/poll.
    #[arg(long, env = "HERALD_POLL_TIMEOUT", default_value = "25s", value_parser = duration::parse)]
    poll_timeout: Duration,
    /// Serve https:// and wss:// with this certificate chain (PEM, the server's certificate first,
    /// then intermediates). Needs --tls-key. The handshake must finish within --header-timeout.
    #[arg(long, env = "HERALD_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(long, env = "HERALD_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ServeArgs {
    fn config(self) -> ServerConfig {
        let mut config = ServerConfig::default();
        config.secret = self.secret;
        config.jwt_public_key = self.jwt_public_key;
        config.jwks_url = self.jwks_url;
        config.jwt_audience = self.jwt_audience;
        config.jwt_issuer = self.jwt_issuer;
        config.dev = self.dev;
        config.allowed_origins = self.allowed_origins;
        config.static_dir = self.static_dir;
        config.history_len = self.history_len;
        config.history_max_bytes = self.history_max_bytes;
        config.history_total_bytes = self.history_total_bytes;
        config.history_max_age = self.history_max_age;
        config.dedup_window = self.dedup_window;
        config.ping_interval = self.ping_interval;
        config.idle_timeout = self.idle_timeout;
        config.auth_timeout = self.auth_timeout;
        config.outbound_queue = self.outbound_queue;
        config.write_timeout = self.write_timeout;
        config.rate_limit_per_sec = self.rate_limit;
        config.rate_limit_burst = self.rate_burst;
        config.rate_limit_strikes = self.rate_strikes;
        config.shutdown_spread = self.shutdown_spread;
        config.reuse_port = self.reuse_port;
        config.epoch = self.epoch;
        config.redis = self.redis;
        config.redis_prefix = self.redis_prefix;
        config.presence_ttl = self.presence_ttl;
        config.redis_ca = self.redis_ca;
        config.data_dir = self.data_dir;
        config.poll_timeout = self.poll_timeout;
        config.header_timeout = self.header_timeout;
        config.body_timeout = self.body_timeout;
        config.max_connections = self.max_connections;
        config.max_unauthenticated = self.max_unauthenticated;
        config.max_connections_per_ip = self.max_connections_per_ip;
        config.max_connections_per_user = self.max_connections_per_user;
        config.trusted_proxies = self.trusted_proxies;
        config.max_subscriptions = self.max_subscriptions;
        config.max_presence_members = self.max_presence_members;
        config.presence_interval = self.presence_interval;
        config.max_publish_ids = self.max_publish_ids;
        config.http_publish_rate = self.http_publish_rate;
        config.http_publish_burst = self.http_publish_burst;
        config.tls = self.tls_cert.zip(self.tls_key).map(|(cert, key)| TlsFiles::new(cert, key));
        config
    }
}

/// `--check-config`: the settings as the server would run with them.
fn check_config(args: ServeArgs) -> Result<(), String> {
    let addr = args.addr.clone();
    let config = args.config();
    config.validate().map_err(|error| format!("the configuration is not valid: {error}"))?;
    let mode = if config.dev {
        "development mode (any token is the user id)"
    } else if config.jwks_url.is_some() {
        "tokens checked against the JWKS URL's keys"
    } else if config.jwt_public_key.is_some() {
        "tokens checked against the public key"
    } else {
        "HS256 tokens"
    };
    println!("configuration OK: would listen on {addr} with {mode}");
    println!("{config:#?}");
    Ok(())
}

/// `10.0.0.0/8`, or one address.
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a network like 10.0.0.0/8"))
}

/// A server holds a file descriptor per connection: take every one the
/// system allows this process (the soft limit is often 1,024, the hard one
/// far more).
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current != maximum
        && let Err(error) = setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum })
    {
        tracing::warn!(%error, "could not raise the file descriptor limit");
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // tungstenite logs every WebSocket message at TRACE, and `auth` and
    // `refresh` messages carry tokens: even RUST_LOG=trace must not log them.
    let no_messages = filter_fn(|meta| !(*meta.level() == Level::TRACE && meta.target().starts_with("tungstenite")));
    let registry = tracing_subscriber::registry().with(filter).with(no_messages);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        // Colour codes only help a person at a terminal; in files they are noise.
        LogFormat::Text => registry.with(fmt.with_ansi(std::io::stderr().is_terminal())).init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).init(),
    }
}

pub(crate) fn run(args: ServeArgs) -> Result<(), String> {
    if args.check_config {
        return check_config(args);
    }
    init_logs(args.log_format);
    raise_fd_limit();
    let addr = args.addr.clone();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let server = HeraldBuilder::new(args.config()).bind(addr).await.map_err(|e| e.to_string())?;
        let ready = format!("herald listening on {} (WebSocket {})", server.http_url(), server.ws_url());
        // Before the line below: whoever waits for it may send SIGHUP at once.
        server.reload_tls_on_hangup();
        // Signals are caught from here on, so whoever waits for the line below may signal at once.
        let stopped = server.shutdown_on_signal();
        eprintln!("{ready}");
        stopped.await;
        Ok(())
    })
}
