//! The websocket test client: protocol frames over tokio-tungstenite, every read bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::Message as ChatMessage;
use tsunagu_protocol::ws::ServerFrame;

use crate::app::TestApp;

/// Generous bound for "this frame should arrive": only a hang trips it.
pub const ARRIVAL: Duration = Duration::from_secs(30);

pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What came off the socket. (Test-only and short-lived: its size does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Received {
    Frame(ServerFrame),
    /// The close code, when the server sent a close frame with one.
    Closed(Option<u16>),
}

impl Received {
    pub fn is_closed(&self) -> bool {
        matches!(self, Received::Closed(_))
    }
}

impl WsClient {
    /// Connects to `url` without authenticating.
    pub async fn connect_url(url: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        WsClient { stream }
    }

    /// Connects to `app` without authenticating.
    pub async fn raw(app: &TestApp) -> WsClient {
        Self::connect_url(&app.ws_url()).await
    }

    /// Connects to `url` and authenticates, then says nothing; panics unless the server
    /// answers `ready`.
    pub async fn authenticated(url: &str, token: &str) -> WsClient {
        let mut c = Self::connect_url(url).await;
        c.send(json!({ "type": "auth", "token": token })).await;
        match c.next().await {
            Received::Frame(ServerFrame::Ready { .. }) => c,
            other => panic!("expected ready, got {other:?}"),
        }
    }

    /// [`WsClient::authenticated`] on `app`.
    pub async fn connect_quiet(app: &TestApp, token: &str) -> WsClient {
        Self::authenticated(&app.ws_url(), token).await
    }

    /// Connects and authenticates, then, like a real client, speaks at once (an empty
    /// `resume`), which ends the server's short hold on live messages; returns once the
    /// server answered `resumed`.
    pub async fn connect(app: &TestApp, token: &str) -> WsClient {
        let mut c = Self::connect_quiet(app, token).await;
        c.send(json!({ "type": "resume", "threads": {} })).await;
        match c.next().await {
            Received::Frame(ServerFrame::Resumed { .. }) => c,
            other => panic!("expected resumed, got {other:?}"),
        }
    }

    /// Connects to `url`, authenticates and resumes from `last_seqs`, without waiting:
    /// the replay and the `resumed` answer are the caller's to read.
    pub async fn resuming(url: &str, token: &str, last_seqs: &BTreeMap<ThreadId, i64>) -> WsClient {
        let mut c = Self::authenticated(url, token).await;
        c.send(json!({ "type": "resume", "threads": last_seqs }))
            .await;
        c
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

    /// Sends `ping` and reads until `pong`; returns what came before it. The server
    /// handles one connection's frames in order, so whatever was sent before the ping
    /// (a `typing`, say) has been acted on — and published — by then.
    pub async fn barrier(&mut self) -> Vec<ServerFrame> {
        self.send(json!({ "type": "ping" })).await;
        let mut seen = self.until(|f| matches!(f, ServerFrame::Pong {})).await;
        seen.pop();
        seen
    }

    /// Reads until `message` arrives. Events reach a connection in the order they were
    /// published, so when it does, everything published before it has been delivered
    /// or withheld: the frames returned are all this socket will ever get of them.
    pub async fn until_message(&mut self, message: &ChatMessage) -> Vec<ServerFrame> {
        self.until(
            |f| matches!(f, ServerFrame::MessageCreated { message: m } if m.id == message.id),
        )
        .await
    }

    /// Reads `message.created` seqs of `thread` into `seqs` until it holds `want`;
    /// other frames are skipped. False when the connection closed first.
    pub async fn collect_seqs(
        &mut self,
        thread: ThreadId,
        want: usize,
        seqs: &mut Vec<i64>,
    ) -> bool {
        while seqs.len() < want {
            match self.next().await {
                Received::Frame(ServerFrame::MessageCreated { message })
                    if message.thread_id == thread =>
                {
                    seqs.push(message.seq)
                }
                Received::Frame(_) => {}
                Received::Closed(_) => return false,
            }
        }
        true
    }
}
