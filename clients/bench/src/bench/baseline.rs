//! The baselines that run as child processes of this binary, so that they are measured
//! like the server: a process of their own, reached over loopback, memory read from
//! `/proc`.
//!
//! - `baseline-ws`: the least a websocket broadcast server can do. It speaks the same
//!   frames as Tsunagu (`auth` → `ready`, `resume` → `resumed`, `post` → `ack` and
//!   `message.created` to every connection following the thread, built from the same
//!   protocol types so that frames have the same size), with no authentication, no
//!   database and no visibility rules. Each connection has a bounded outbound queue of
//!   the server's default size.
//! - `baseline-copy`: the same bytes as the file workload written to and read back from
//!   an `object_store` local directory, unencrypted, in the server's part size.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tsunagu_client::protocol::ids::{MessageId, ThreadId, UserId};
use tsunagu_client::protocol::messaging::Message;
use tsunagu_client::protocol::ws::{ClientFrame, ServerFrame};

use super::files::{Expected, Generator};
use super::target::{own_peak_rss, Rss};

/// The server's default outbound queue per connection.
const OUTBOUND_QUEUE: usize = 512;
/// The server's multipart part size.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// A running `baseline-ws` child.
pub struct BaselineWs {
    addr: String,
    pub rss: Option<Rss>,
    _child: tokio::process::Child,
}

impl BaselineWs {
    pub async fn spawn() -> anyhow::Result<BaselineWs> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("baseline-ws")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the baseline server")?;
        let stdout = child.stdout.take().context("baseline stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the baseline server did not start")??
            .context("the baseline server said nothing")?;
        let rss = child.id().map(Rss::new);
        Ok(BaselineWs {
            addr,
            rss,
            _child: child,
        })
    }

    pub fn url(&self) -> String {
        format!("ws://{}/api/v1/ws", self.addr)
    }
}

type Subscribers = Vec<(u64, mpsc::Sender<WsMessage>)>;

#[derive(Default)]
struct Hub {
    threads: Mutex<HashMap<ThreadId, (i64, Subscribers)>>,
}

fn frame(f: &ServerFrame) -> WsMessage {
    WsMessage::text(serde_json::to_string(f).unwrap_or_default())
}

/// `created_at` as the server writes it: RFC 3339 UTC with milliseconds.
fn rfc3339_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// `tsunagu-bench baseline-ws`: serves until killed.
pub async fn serve_ws() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let hub = Arc::new(Hub::default());
    let mut next_id = 0_u64;
    loop {
        let (stream, _) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(connection(stream, hub.clone(), next_id));
    }
}

async fn connection(stream: TcpStream, hub: Arc<Hub>, id: u64) {
    if std::env::var_os("TSUNAGU_BENCH_BASELINE_NAGLE").is_none() {
        let _ = stream.set_nodelay(true);
    }
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<WsMessage>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let user = UserId::new();
    let mut followed: Vec<ThreadId> = Vec::new();
    while let Some(Ok(msg)) = source.next().await {
        let WsMessage::Text(text) = msg else {
            if matches!(msg, WsMessage::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(f) = serde_json::from_str::<ClientFrame>(text.as_str()) else {
            continue;
        };
        let reply = match f {
            ClientFrame::Auth { .. } => ServerFrame::Ready {
                user_id: user,
                heartbeat_secs: 30,
                max_frame_bytes: 64 * 1024,
            },
            ClientFrame::Resume { threads } => {
                let mut hub_threads = hub.threads.lock().unwrap_or_else(|e| e.into_inner());
                for t in threads.keys() {
                    hub_threads.entry(*t).or_default().1.push((id, tx.clone()));
                    followed.push(*t);
                }
                ServerFrame::Resumed { threads }
            }
            ClientFrame::Post {
                reference,
                thread_id,
                body,
                client_msg_id,
                reply_to,
                mentions,
                attachments,
            } => {
                let mut hub_threads = hub.threads.lock().unwrap_or_else(|e| e.into_inner());
                let entry = hub_threads.entry(thread_id).or_default();
                entry.0 += 1;
                let message = Message {
                    id: MessageId::new(),
                    thread_id,
                    seq: entry.0,
                    author_id: user,
                    body,
                    client_msg_id,
                    reply_to,
                    mentions,
                    attachments,
                    reactions: Vec::new(),
                    created_at: rfc3339_now(),
                    edited_at: None,
                    deleted: false,
                    read_count: 0,
                };
                let created = frame(&ServerFrame::MessageCreated {
                    message: message.clone(),
                });
                // A subscriber whose queue is full is dropped, as the server would
                // tell it to resync.
                entry.1.retain(|(_, s)| s.try_send(created.clone()).is_ok());
                ServerFrame::Ack { reference, message }
            }
            ClientFrame::Ping {} => ServerFrame::Pong {},
            _ => continue,
        };
        if tx.send(frame(&reply)).await.is_err() {
            break;
        }
    }
    {
        let mut hub_threads = hub.threads.lock().unwrap_or_else(|e| e.into_inner());
        for t in followed {
            if let Some(e) = hub_threads.get_mut(&t) {
                e.1.retain(|(c, _)| *c != id);
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The JSON line `baseline-copy` prints.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct CopyResult {
    pub bytes: u64,
    pub upload_secs: f64,
    pub download_secs: f64,
    pub peak_rss: u64,
}

/// `tsunagu-bench baseline-copy`: writes `bytes` generated bytes into an object_store
/// directory in parts, reads them back as a stream comparing every byte, deletes them.
pub async fn copy(dir: &Path, bytes: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
    let path = ObjectPath::from("files/baseline");
    let t = Instant::now();
    let upload = store.put_multipart(&path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    let mut gen = Generator::new(bytes);
    while let Some(chunk) = gen.next_chunk() {
        writer.wait_for_capacity(2).await?;
        writer.write(&chunk);
    }
    writer.finish().await?;
    let upload_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut body = store.get(&path).await?.into_stream();
    let mut expected = Expected::new(bytes);
    while let Some(chunk) = body.next().await {
        expected.check(&chunk?)?;
    }
    expected.finish()?;
    let download_secs = t.elapsed().as_secs_f64();
    store.delete(&path).await?;
    let result = CopyResult {
        bytes,
        upload_secs,
        download_secs,
        peak_rss: own_peak_rss(),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_look_like_the_servers() {
        let t = super::rfc3339_now();
        assert_eq!(t.len(), "2026-11-24T05:03:05.000Z".len());
        assert!(t.ends_with('Z'));
        assert!(t.starts_with("20"));
    }
}
