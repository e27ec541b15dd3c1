//! A minimal websocket test client speaking the protocol frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tsunagu_protocol::ws::ServerFrame;

use crate::helpers::TestApp;

/// Generous bound for "this frame should arrive": only a hang trips it.
pub const ARRIVAL: Duration = Duration::from_secs(20);

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What came off the socket. (Test-only and short-lived: its size does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Received {
    Frame(ServerFrame),
    Closed(Option<u16>),
}

impl WsClient {
    /// Connects without authenticating.
    pub async fn raw(app: &TestApp) -> WsClient {
        let url = format!("ws://{}/api/v1/ws", app.addr);
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        WsClient { stream }
    }

    /// Connects and authenticates; panics unless the server answers `ready`. Like a
    /// real client it then speaks at once (an empty `resume`), which ends the server's
    /// short hold on live messages.
    pub async fn connect(app: &TestApp, token: &str) -> WsClient {
        let mut c = Self::connect_quiet(app, token).await;
        c.send(json!({ "type": "resume", "threads": {} })).await;
        match c.next().await {
            Received::Frame(ServerFrame::Resumed { .. }) => c,
            other => panic!("expected resumed, got {other:?}"),
        }
    }

    /// Connects and authenticates, then says nothing.
    pub async fn connect_quiet(app: &TestApp, token: &str) -> WsClient {
        let mut c = Self::raw(app).await;
        c.send(json!({ "type": "auth", "token": token })).await;
        match c.next().await {
            Received::Frame(ServerFrame::Ready { .. }) => c,
            other => panic!("expected ready, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.stream.send(msg).await.expect("ws send");
    }

    /// The next protocol frame (websocket pings and pongs are skipped), or the close.
    pub async fn next(&mut self) -> Received {
        loop {
            let item = tokio::time::timeout(ARRIVAL, self.stream.next())
                .await
                .expect("a frame within the bound");
            match item {
                Some(Ok(Message::Text(text))) => {
                    let frame: ServerFrame = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("unparseable server frame {text}: {e}"));
                    return Received::Frame(frame);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Received::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected ws message {other:?}"),
                Some(Err(_)) | None => return Received::Closed(None),
            }
        }
    }

    /// The next frame, which must be a frame (not a close).
    pub async fn frame(&mut self) -> ServerFrame {
        match self.next().await {
            Received::Frame(f) => f,
            Received::Closed(code) => {
                panic!("connection closed ({code:?}) while a frame was expected")
            }
        }
    }

    /// Reads frames until `pred` matches one; returns every frame read, the match last.
    pub async fn until(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> Vec<ServerFrame> {
        let mut seen = Vec::new();
        loop {
            let f = self.frame().await;
            let done = pred(&f);
            seen.push(f);
            if done {
                return seen;
            }
        }
    }
}
