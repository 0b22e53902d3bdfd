//! Child processes of the tests: the `herald` CLI (`herald serve` until it
//! prints its address, with everything it logs kept), a Node server, and
//! free loopback ports for them. Every process is killed if the test ends
//! first.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread::JoinHandle,
    time::Duration,
};

/// How long a process gets to exit when a test waits for it.
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// A running child process, killed if the test ends before it exits; for
/// [`serve`], with everything it writes to stderr.
pub struct Running {
    /// `None` once [`exit`](Self::exit) took it.
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    drain: Option<JoinHandle<()>>,
}

impl Running {
    /// Guards a child that was started another way.
    pub fn new(child: Child) -> Self {
        Self { child: Some(child), stderr: Arc::default(), drain: None }
    }

    /// The process, to read its pipes or wait for it.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("still running")
    }

    /// What it wrote to stderr so far ([`serve`] only).
    pub fn log(&self) -> String {
        self.stderr.lock().expect("the drain thread does not panic").clone()
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) with `kill`.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("still running").id().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; returns its status and its whole stderr.
    pub async fn exit(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("still running");
        let drain = self.drain.take();
        let status = tokio::time::timeout(EXIT_WAIT, tokio::task::spawn_blocking(move || child.wait()))
            .await
            .expect("the process exits in time")
            .expect("the wait task does not panic")
            .expect("waiting works");
        if let Some(drain) = drain {
            drain.join().expect("the drain thread does not panic");
        }
        (status, self.log())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `command` (a `herald serve` command line) with stderr piped until
/// it says where it listens; returns it with its WebSocket URL. Its stderr
/// is drained from then on, so it never blocks on a full pipe.
pub fn serve(mut command: Command) -> (Running, String) {
    let mut child = command.stderr(Stdio::piped()).spawn().expect("the herald binary runs");
    let stderr = Arc::new(Mutex::new(String::new()));
    let keep = |log: &Mutex<String>, line: &str| log.lock().expect("not poisoned").push_str(&format!("{line}\n"));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let url = loop {
        let line = lines.next().expect("herald prints its address").expect("stderr is UTF-8");
        keep(&stderr, &line);
        if let Some(rest) = line.split("(WebSocket ").nth(1) {
            break rest.trim_end_matches(')').to_owned();
        }
    };
    let collected = stderr.clone();
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| keep(&collected, &line)));
    (Running { child: Some(child), stderr, drain: Some(drain) }, url)
}

/// The lines of a child's pipe, as they come.
pub fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// A loopback port free now (another process may take it before it is used).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

/// `127.0.0.1:<free port>`, for a server that must come back on the same address.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}
