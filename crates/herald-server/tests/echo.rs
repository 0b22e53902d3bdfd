//! The echo endpoint the Autobahn cases run against (`cargo xtask
//! conformance`) is Herald's WebSocket stack: it echoes text and binary,
//! and closes as `/ws` does on a frame over the limit.

use futures_util::{SinkExt, StreamExt};
use herald_protocol::{close, limits::MAX_FRAME_BYTES};
use herald_server::EchoServer;
use herald_test_support::within;
use tokio_tungstenite::{connect_async, tungstenite::Message};

#[tokio::test]
async fn text_and_binary_come_back_and_a_frame_over_the_limit_closes_with_1009() {
    let server = EchoServer::bind("127.0.0.1:0").await.unwrap();
    let (mut ws, _) = connect_async(format!("ws://{}/any/path", server.local_addr())).await.unwrap();
    for message in [Message::text("héllo"), Message::binary(vec![0u8, 255, 7])] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(within("the echo", ws.next()).await.unwrap().unwrap(), message);
    }
    ws.send(Message::binary(vec![1u8; MAX_FRAME_BYTES + 1])).await.unwrap();
    let closed = within("the close", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await;
    assert_eq!(closed, Some(close::TOO_BIG));
}
