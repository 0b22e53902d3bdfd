//! A server restart must not bring every client back at the same instant:
//! the server spreads reconnect hints over a window, and clients honour them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use herald::{Client, Status};
use herald_server::{Epoch, Server};
use herald_test_support::{proxy::FaultProxy, within_for as within};

const CLIENTS: usize = 1000;
const WINDOW: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_reconnecting_after_a_restart_spread_over_the_window() {
    let mut server = Server::builder().dev(true).shutdown_spread(WINDOW).bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(server.local_addr()).await;
    let clients: Vec<Client> =
        (0..CLIENTS).map(|n| Client::builder(proxy.ws_url()).token(format!("u{n}")).connect().unwrap()).collect();
    within(Duration::from_secs(60), "every client to connect", async {
        for client in &clients {
            client.connected().await.unwrap();
        }
    })
    .await;
    assert_eq!(proxy.accepted().len(), CLIENTS);

    let restarted = Instant::now();
    server.restart(Epoch::Same).await.unwrap();
    within(Duration::from_secs(30), "every client to reconnect", async {
        while proxy.accepted().len() < 2 * CLIENTS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let arrivals: Vec<Duration> = proxy.accepted()[CLIENTS..].iter().map(|at| *at - restarted).collect();
    let first = *arrivals.iter().min().unwrap();
    let last = *arrivals.iter().max().unwrap();
    assert!(last <= WINDOW + Duration::from_secs(5), "the last client came back after {last:?}");
    assert!(last - first >= WINDOW / 2, "arrivals span only {:?}", last - first);
    // Uniform over 2 s puts ~5 % in each 100 ms; a herd would put most in one.
    let mut buckets = [0usize; 100];
    for arrival in &arrivals {
        buckets[(arrival.as_millis() / 100).min(99) as usize] += 1;
    }
    let busiest = *buckets.iter().max().unwrap();
    assert!(busiest <= CLIENTS / 5, "{busiest} of {CLIENTS} clients arrived within one 100 ms");
    within(Duration::from_secs(30), "every client to be connected again", async {
        for client in &clients {
            client.connected().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_takes_the_port_first_refuses_no_reconnect() {
    const CLIENTS: usize = 200;
    let old = Server::builder().dev(true).reuse_port(true).shutdown_spread(WINDOW).bind("127.0.0.1:0").await.unwrap();
    let addr = old.local_addr();
    // Without reuse_port the port is taken: the option is what makes room.
    assert!(Server::builder().dev(true).bind(addr).await.is_err());
    // The highest reconnect attempt each client reached: 2 or more means one failed.
    let attempts: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(vec![0; CLIENTS]));
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|n| {
            let attempts = attempts.clone();
            Client::builder(old.ws_url())
                .token(format!("u{n}"))
                .on_status(move |status| {
                    if let Status::Reconnecting { attempt, .. } = status {
                        let mut attempts = attempts.lock().unwrap();
                        attempts[n] = attempts[n].max(*attempt);
                    }
                })
                .connect()
                .unwrap()
        })
        .collect();
    within(Duration::from_secs(30), "every client to connect", async {
        for client in &clients {
            client.connected().await.unwrap();
        }
    })
    .await;

    let new = Server::builder().dev(true).reuse_port(true).bind(addr).await.unwrap();
    old.shutdown().await;
    within(Duration::from_secs(30), "every client to reach the new server", async {
        while new.metrics().connections < CLIENTS as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let attempts = attempts.lock().unwrap();
    assert!(attempts.iter().all(|&a| a == 1), "failed attempts: {:?}", attempts.iter().filter(|&&a| a > 1).count());
}
