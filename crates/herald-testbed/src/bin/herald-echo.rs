//! `herald-echo`: Herald's WebSocket stack with an echo at every path
//! ([`herald_server::EchoServer`]), for the Autobahn cases of `cargo xtask
//! conformance`, which run in Python and cannot start one themselves. Prints
//! `ws://<addr>` on stdout and exits when its standard input closes, so it
//! never outlives the run.

use herald_server::EchoServer;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() {
    let server = match EchoServer::bind("127.0.0.1:0").await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("herald-echo: {error}");
            std::process::exit(1);
        }
    };
    println!("ws://{}", server.local_addr());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}
