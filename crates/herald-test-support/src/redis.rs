//! Real `redis-server` processes for the cluster tests, and a link to one
//! that can be cut.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::{process::free_port, within};

/// A real `redis-server` on a free loopback port, without persistence
/// unless asked, killed on drop.
pub struct RedisServer {
    port: u16,
    /// Where a server that keeps its data writes it.
    dir: Option<std::path::PathBuf>,
    /// Configuration beyond the defaults, e.g. ACL users.
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts an empty server that keeps nothing on disk.
    pub async fn start() -> Self {
        Self::start_in(None, &[]).await
    }

    /// Starts an empty server with more configuration, as `redis-server`
    /// arguments (`["--user", "herald", "on", ">secret", "~*", "&*", "+@all"]`).
    pub async fn start_with(args: &[&str]) -> Self {
        Self::start_in(None, args).await
    }

    /// Starts an empty server that saves its data in a directory of its own
    /// on [`save`](Self::save), and loads it on [`restart`](Self::restart).
    pub async fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(format!("herald-redis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self::start_in(Some(dir), &[]).await
    }

    async fn start_in(dir: Option<std::path::PathBuf>, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
        // Another test may take the free port first: try a few.
        for _ in 0..5 {
            let mut server = Self { port: free_port(), dir: dir.clone(), args: args.clone(), child: None };
            if server.spawn().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// [`url`](Self::url) with a user and password (an ACL user).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it answers; `false` if it exited.
    async fn spawn(&mut self) -> bool {
        let mut command = std::process::Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        if let Some(dir) = &self.dir {
            command.arg("--dir").arg(dir);
        }
        command.args(&self.args);
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let child = command.spawn().unwrap_or_else(|error| {
            panic!("cannot run redis-server ({error}); `cargo xtask install` installs it (Debian package redis-server)")
        });
        let child = self.child.insert(child);
        within("redis-server to answer", async {
            loop {
                if child.try_wait().expect("the child's status").is_some() {
                    return false;
                }
                if ping(self.port).await {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Writes the data to disk (a server started with [`start_persistent`](Self::start_persistent)).
    pub async fn save(&self) {
        assert_eq!(command(self.port, "SAVE").await, "+OK\r\n");
    }

    /// How many times Redis ran `command` (scripts' own calls included),
    /// from `INFO commandstats`.
    pub async fn calls(&self, command: &str) -> u64 {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)).await else { return 0 };
        let mut stream = BufReader::new(stream);
        stream.get_mut().write_all(b"INFO commandstats\r\n").await.expect("INFO sent");
        let mut length = String::new();
        stream.read_line(&mut length).await.expect("INFO answered");
        let length: usize = length.trim().trim_start_matches('$').parse().expect("a bulk string");
        let mut info = vec![0; length];
        stream.read_exact(&mut info).await.expect("INFO read");
        let prefix = format!("cmdstat_{}:calls=", command.to_lowercase());
        let info = String::from_utf8_lossy(&info);
        let line = info.lines().find_map(|line| line.strip_prefix(&prefix));
        line.and_then(|rest| rest.split(',').next()?.parse().ok()).unwrap_or(0)
    }

    /// Drops every key while the server and its connections stay up.
    pub async fn flush_all(&self) {
        assert_eq!(command(self.port, "FLUSHALL").await, "+OK\r\n");
    }

    /// Kills the server without saving: what it held in memory is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty or with what it saved.
    pub async fn restart(&mut self) {
        assert!(self.spawn().await, "redis-server restarts on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A TCP relay to a Redis server that can be cut (every connection dropped,
/// new ones refused) and restored, as a network failure between a node and
/// Redis would: Redis keeps running and keeps its data. It can also delay
/// what Redis sends, as a slow or overloaded Redis would.
pub struct RedisLink {
    port: u16,
    target: String,
    /// Milliseconds each chunk from Redis waits before it is passed on.
    delay: Arc<AtomicU64>,
    relay: Option<tokio::task::JoinHandle<()>>,
}

impl RedisLink {
    pub async fn to(redis: &RedisServer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("a bound address").port();
        let target = format!("127.0.0.1:{}", redis.port);
        let delay = Arc::new(AtomicU64::new(0));
        let relay = Some(tokio::spawn(relay(listener, target.clone(), delay.clone())));
        Self { port, target, delay, relay }
    }

    /// Delays every answer and message from Redis by `delay` from now on
    /// (`Duration::ZERO`: none).
    pub fn delay(&self, delay: Duration) {
        self.delay.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cut(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.abort();
        }
    }

    pub async fn restore(&mut self) {
        let listener = within("the relay's port to be free again", async {
            loop {
                match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                    Ok(listener) => return listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        self.relay = Some(tokio::spawn(relay(listener, self.target.clone(), self.delay.clone())));
    }
}

impl Drop for RedisLink {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Relays every accepted connection to `target`, what Redis sends `delay`
/// milliseconds late; aborting it drops them all.
async fn relay(listener: tokio::net::TcpListener, target: String, delay: Arc<AtomicU64>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((inbound, _)) = listener.accept().await {
        let (target, delay) = (target.clone(), delay.clone());
        connections.spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else { return };
            let ((mut from_node, mut to_node), (mut from_redis, mut to_redis)) =
                (inbound.into_split(), outbound.into_split());
            let up = tokio::io::copy(&mut from_node, &mut to_redis);
            let down = async {
                let mut buffer = vec![0; 16 * 1024];
                loop {
                    let read = from_redis.read(&mut buffer).await?;
                    if read == 0 {
                        return Ok::<_, std::io::Error>(0);
                    }
                    let wait = delay.load(Ordering::Relaxed);
                    if wait > 0 {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    to_node.write_all(&buffer[..read]).await?;
                }
            };
            let _ = tokio::try_join!(up, down);
        });
    }
}

async fn ping(port: u16) -> bool {
    command(port, "PING").await == "+PONG\r\n"
}

/// One inline Redis command and the first line of its answer.
async fn command(port: u16, command: &str) -> String {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await else { return String::new() };
    let mut stream = BufReader::new(stream);
    if stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.is_err() {
        return String::new();
    }
    let mut line = String::new();
    let _ = stream.read_line(&mut line).await;
    line
}
