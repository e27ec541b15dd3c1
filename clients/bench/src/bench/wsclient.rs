//! A bare websocket client speaking the Tsunagu frames: used unchanged against the
//! server and against the baseline broadcast server, so that the client's own cost is
//! the same on both sides of every ratio.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tsunagu_client::protocol::ids::ThreadId;
use tsunagu_client::protocol::ws::ClientFrame;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type Sink = SplitSink<Socket, WsMessage>;
pub type Source = SplitStream<Socket>;

/// How long the handshake frames may take.
const HANDSHAKE: Duration = Duration::from_secs(60);

/// Microseconds since the first call: the clock every send and receive time is read
/// from (one process, one monotonic clock).
pub fn now_micros() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

pub fn text(frame: &ClientFrame) -> WsMessage {
    WsMessage::text(serde_json::to_string(frame).unwrap_or_default())
}

/// The parts of a server frame the bench looks at.
#[derive(Deserialize)]
pub struct Incoming {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub message: Option<IncomingMessage>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize)]
pub struct IncomingMessage {
    pub thread_id: ThreadId,
    pub seq: i64,
    pub body: String,
}

/// Reads frames until one of type `kind`; an `error` frame or a close is a failure.
async fn wait_for(source: &mut Source, kind: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE;
    loop {
        let frame = tokio::time::timeout_at(deadline, source.next())
            .await
            .with_context(|| format!("waiting for {kind}"))?;
        match frame {
            Some(Ok(WsMessage::Text(t))) => {
                let f: Incoming = serde_json::from_str(t.as_str())?;
                if f.kind == kind {
                    return Ok(());
                }
                if f.kind == "error" {
                    bail!("server error frame: {}", f.code.unwrap_or_default());
                }
            }
            Some(Ok(WsMessage::Close(c))) => bail!("closed while waiting for {kind}: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended while waiting for {kind}"),
        }
    }
}

/// Connects, authenticates and resumes `threads` (the last `seq` held per thread):
/// after this, every new message of those threads arrives on the source.
pub async fn open(
    url: &str,
    token: &str,
    threads: &BTreeMap<ThreadId, i64>,
) -> anyhow::Result<(Sink, Source)> {
    let (socket, _) = tokio::time::timeout(HANDSHAKE, connect(url))
        .await
        .context("connecting")??;
    let (mut sink, mut source) = socket.split();
    sink.send(text(&ClientFrame::Auth {
        token: token.to_owned(),
    }))
    .await?;
    wait_for(&mut source, "ready").await?;
    sink.send(text(&ClientFrame::Resume {
        threads: threads.clone(),
    }))
    .await?;
    wait_for(&mut source, "resumed").await?;
    Ok((sink, source))
}

/// Source addresses for loopback connections. One source address gives at most the
/// ephemeral port range (about 28,000 ports here) of connections to one server port;
/// spreading them over 127.0.0.2–127.0.0.33 allows far more.
const SOURCE_ADDRESSES: u32 = 32;

/// Connects to `url`; for a plain `ws://127.0.0.1` URL, from a rotating loopback source
/// address so that tens of thousands of connections fit in the port range.
async fn connect(
    url: &str,
) -> Result<
    (
        Socket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let parsed = url::Url::parse(url).ok();
    let target = parsed.as_ref().and_then(|u| {
        let host: std::net::Ipv4Addr = u.host_str()?.parse().ok()?;
        (u.scheme() == "ws" && host.is_loopback()).then(|| (host, u.port().unwrap_or(80)))
    });
    let Some((host, port)) = target else {
        return tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true)
            .await;
    };
    let k = NEXT.fetch_add(1, Ordering::Relaxed) % SOURCE_ADDRESSES;
    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + k as u8);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let tcp = socket.connect((host, port).into()).await?;
    let _ = tcp.set_nodelay(true);
    tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(tcp),
        Some(client_config()),
    )
    .await
}

/// The load generator's own sockets: a small read buffer, so that thousands of
/// simulated clients do not spend the shared cores zero-filling 128 KiB buffers
/// (tungstenite's default) on every read. The same for every system measured.
fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

/// A message body that carries its index and send time, padded to the length of a
/// typical care note.
pub fn body(index: u32, sent_micros: u64) -> String {
    format!(
        "b{index}t{sent_micros}|訪問時バイタル安定。食事摂取良好、服薬確認済み。次回訪問で褥瘡の経過を確認します。"
    )
}

/// `(index, sent_micros)` of a bench body.
pub fn parse_body(body: &str) -> Option<(u32, u64)> {
    let rest = body.strip_prefix('b')?;
    let (index, rest) = rest.split_once('t')?;
    let (sent, _) = rest.split_once('|')?;
    Some((index.parse().ok()?, sent.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_index_and_time() {
        assert_eq!(parse_body(&body(42, 123_456)), Some((42, 123_456)));
        assert_eq!(parse_body("hello"), None);
    }
}
