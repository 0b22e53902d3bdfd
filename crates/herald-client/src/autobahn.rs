//! The native client's WebSocket layer under the Autobahn cases: the socket
//! the driver opens ([`driver::open`](crate::driver::open): its settings and
//! limits), read as the driver reads it, against kosoku's fuzzing server.
//! Each case's messages are echoed, which the cases check by; a close frame
//! is answered as the driver answers it ([`answer_close`]), and a read error
//! drops the socket, as the driver drops it. `cargo xtask conformance` starts the fuzzing server and runs this
//! test with its address in `HERALD_AUTOBAHN_SERVER`.

use futures::{SinkExt, StreamExt};
use herald_core::ConnectionId;
use tokio_tungstenite::tungstenite::Message;

use crate::driver::{answer_close, open};

#[tokio::test]
#[ignore = "needs kosoku's fuzzing server: `cargo xtask conformance` runs it"]
async fn every_autobahn_case_against_the_drivers_websocket() {
    let server = std::env::var("HERALD_AUTOBAHN_SERVER").expect("HERALD_AUTOBAHN_SERVER: ws://host:port of kosoku");
    let (_, count) = open(ConnectionId(0), format!("{server}/getCaseCount"), None).await;
    let count: u64 = match count.expect("the fuzzing server answers").next().await {
        Some(Ok(Message::Text(count))) => count.parse().expect("a case count"),
        other => panic!("no case count: {other:?}"),
    };
    for case in 1..=count {
        let url = format!("{server}/runCase?case={case}&agent=herald-client");
        let Ok(mut ws) = open(ConnectionId(case), url, None).await.1 else { continue };
        while let Some(Ok(message)) = ws.next().await {
            let echo = match message {
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => {
                    answer_close(ws);
                    break;
                }
                _ => continue,
            };
            if ws.send(echo).await.is_err() {
                break;
            }
        }
    }
    let (_, report) = open(ConnectionId(count + 1), format!("{server}/updateReports?agent=herald-client"), None).await;
    if let Ok(mut ws) = report {
        let _ = SinkExt::close(&mut ws).await;
    }
}
