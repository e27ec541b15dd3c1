//! `GET /api/v1/ws`: the live connection.
//!
//! One task per connection reads client frames and bus events; a second task writes to
//! the socket from a bounded queue. Live events are offered to the queue without
//! waiting: when it is full the client is told to `resync` and closed, so a slow
//! consumer costs at most the queue's bound. The database is the log: per thread the
//! connection remembers the last `seq` it delivered, drops duplicates and fills gaps
//! from the database, so delivery is in order, gap-free and duplicate-free whatever
//! order the bus hands events over in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::extract::ws::{
    close_code, CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade,
};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, watch};
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::{Message, PostMessage};
use tsunagu_protocol::ws::{ClientFrame, ServerFrame};
use tsunagu_protocol::ErrorCode;

use super::error::ApiError;
use super::extract::Meta;
use super::AppState;
use crate::audit::RequestMeta;
use crate::bus::{Event, Payload};
use crate::config::WsConfig;
use crate::domain::visibility::VisibleSet;
use crate::domain::{DomainError, Member};

/// Messages fetched per database round trip when replaying or filling a gap.
const REPLAY_PAGE: i64 = 200;
/// After `ready`, new messages are held back this long (or until the client's first
/// frame): a client that sends `resume` right away then gets its replay and the live
/// messages strictly in `seq` order, without duplicates.
const LIVE_HOLD: Duration = Duration::from_millis(1500);
/// How long a replay waits for room in the queue before giving up on the client.
const REPLAY_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer keeps trying to hand over a final frame (resync, error) before
/// dropping the connection.
const FINAL_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Upgrade to the websocket protocol. Authenticate in the first frame
/// (`{"type": "auth", "token": "..."}`) within the auth timeout; see docs/protocol.md.
#[utoipa::path(
    get, path = "/api/v1/ws", tag = "websocket",
    responses((status = 101, description = "Switching protocols; JSON text frames follow (docs/protocol.md)"))
)]
pub async fn upgrade(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ws: WebSocketUpgrade,
) -> Response {
    let limits = state.ws.clone();
    // The transport refuses anything far beyond our own limit; up to it we answer
    // oversize frames with an error frame and keep the connection.
    let hard_limit = limits.max_frame_bytes.saturating_mul(4).max(64 * 1024);
    ws.max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| async move {
            Connection::run(state, socket, meta).await;
        })
}

/// What the writer task is told.
enum Outbound {
    Frame(String),
    Ping,
}

/// The frame to end on and the close code to send after it.
#[derive(Clone)]
struct Final {
    frame: Option<String>,
    code: u16,
    reason: &'static str,
}

fn encode(frame: &ServerFrame) -> String {
    serde_json::to_string(frame)
        .unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"encoding"}"#.into())
}

fn error_frame(
    reference: Option<String>,
    code: ErrorCode,
    message: impl Into<String>,
) -> ServerFrame {
    ServerFrame::Error {
        reference,
        code: code.as_str().to_owned(),
        message: message.into(),
    }
}

fn domain_error_frame(reference: Option<String>, e: DomainError) -> ServerFrame {
    let api = ApiError::from(e);
    error_frame(reference, api.code(), api.message().to_owned())
}

struct Connection {
    state: AppState,
    member: Member,
    visible: VisibleSet,
    /// Last `seq` delivered per visible thread.
    delivered: HashMap<String, i64>,
    out: mpsc::Sender<Outbound>,
    finish: watch::Sender<Option<Final>>,
    meta: RequestMeta,
    /// Live `message.created` events are held until the client's first frame (see
    /// [`LIVE_HOLD`]); the threads they were for are remembered here.
    holding: bool,
    held: HashSet<String>,
    /// Other live frames that arrived during the hold, delivered after the messages.
    held_frames: Vec<ServerFrame>,
}

enum Flow {
    Continue,
    Stop,
}

impl Connection {
    async fn run(state: AppState, socket: WebSocket, meta: RequestMeta) {
        let limits = state.ws.clone();
        let (mut sink, mut stream) = socket.split();

        // 1. Authenticate with the first frame.
        let auth =
            tokio::time::timeout(Duration::from_secs(limits.auth_timeout_secs), stream.next())
                .await;
        let token = match auth {
            Ok(Some(Ok(WsMessage::Text(text)))) => {
                match serde_json::from_str::<ClientFrame>(text.as_str()) {
                    Ok(ClientFrame::Auth { token }) => Some(token),
                    _ => None,
                }
            }
            _ => None,
        };
        let session = match token {
            Some(t) => match state.domain.authenticate(&t).await {
                Ok(s) => Some(s),
                // The database being down is not the client's fault: say so, so it
                // retries instead of asking its user to sign in again.
                Err(DomainError::Internal(cause)) => {
                    tracing::error!(error = %cause, "websocket: authentication unavailable");
                    let frame = encode(&error_frame(
                        None,
                        ErrorCode::Unavailable,
                        "try again shortly",
                    ));
                    let _ = sink.send(WsMessage::Text(frame.into())).await;
                    let _ = sink.send(close(close_code::ERROR, "unavailable")).await;
                    return;
                }
                Err(_) => None,
            },
            None => None,
        };
        let member = match session.map(|s| s.member()) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                let frame = encode(&domain_error_frame(None, e));
                let _ = sink.send(WsMessage::Text(frame.into())).await;
                let _ = sink
                    .send(close(close_code::POLICY, "account action pending"))
                    .await;
                return;
            }
            None => {
                let frame = encode(&error_frame(
                    None,
                    ErrorCode::Unauthenticated,
                    "the first frame must be a valid auth frame",
                ));
                let _ = sink.send(WsMessage::Text(frame.into())).await;
                let _ = sink
                    .send(close(close_code::POLICY, "authentication required"))
                    .await;
                return;
            }
        };

        // 2. Subscribe before taking the snapshot: anything committed after the
        //    snapshot arrives on the bus; anything before is at or under the baseline.
        let mut bus = state.domain.bus().subscribe();
        let visible = match state.domain.visible_set(&member).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "websocket: loading visibility failed");
                let _ = sink.send(close(close_code::ERROR, "internal error")).await;
                return;
            }
        };
        let delivered = visible.threads.clone();

        let (out, out_rx) = mpsc::channel(limits.outbound_queue.max(1));
        let (finish, finish_rx) = watch::channel(None);
        let writer = tokio::spawn(write_loop(sink, out_rx, finish_rx));
        let user_id = member.session().user_id();
        let mut conn = Connection {
            state,
            member,
            visible,
            delivered,
            out,
            finish,
            meta,
            holding: true,
            held: HashSet::new(),
            held_frames: Vec::new(),
        };
        metrics::gauge!("tsunagu_ws_connections").increment(1.0);
        tracing::debug!(%user_id, "websocket: authenticated");

        conn.offer(&ServerFrame::Ready {
            user_id,
            heartbeat_secs: limits.heartbeat_secs,
            max_frame_bytes: limits.max_frame_bytes,
        });

        // 3. Serve until either side stops.
        let heartbeat = Duration::from_secs(limits.heartbeat_secs.max(1));
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.tick().await;
        let mut last_heard = Instant::now();
        let hold_until = tokio::time::Instant::now() + LIVE_HOLD;
        let mut shutdown = conn.state.shutdown.clone();
        loop {
            let flow = tokio::select! {
                incoming = stream.next() => {
                    last_heard = Instant::now();
                    let flow = match incoming {
                        Some(Ok(msg)) => conn.on_client_message(msg, &limits).await,
                        Some(Err(e)) => conn.on_transport_error(e),
                        None => Flow::Stop,
                    };
                    match flow {
                        Flow::Continue => conn.go_live().await,
                        stop => stop,
                    }
                }
                _ = tokio::time::sleep_until(hold_until), if conn.holding => conn.go_live().await,
                event = bus.recv() => match event {
                    Ok(event) => conn.on_event(&event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(%user_id, missed, "websocket: fell behind the bus; asking for resync");
                        conn.end_with(Some(ServerFrame::Resync { reason: "lagged".into() }), close_code::AGAIN, "resync")
                    }
                    Err(broadcast::error::RecvError::Closed) => Flow::Stop,
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() > heartbeat * 2 {
                        conn.end_with(None, close_code::AWAY, "heartbeat timeout")
                    } else {
                        let _ = conn.out.try_send(Outbound::Ping);
                        Flow::Continue
                    }
                }
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                    conn.end_with(Some(ServerFrame::Resync { reason: "server_shutdown".into() }), close_code::AWAY, "server shutting down")
                }
            };
            if matches!(flow, Flow::Stop) {
                break;
            }
        }
        let Connection { out, finish, .. } = conn;
        drop(out);
        let _ = tokio::time::timeout(FINAL_FRAME_TIMEOUT + Duration::from_secs(2), writer).await;
        drop(finish);
        metrics::gauge!("tsunagu_ws_connections").decrement(1.0);
    }

    /// Queues a live frame without waiting. A full queue means the client cannot keep
    /// up: it is told to resync and closed.
    fn offer(&self, frame: &ServerFrame) -> bool {
        match self.out.try_send(Outbound::Frame(encode(frame))) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("tsunagu_ws_slow_consumers_total").increment(1);
                tracing::info!(user_id = %self.member.session().user_id(), "websocket: slow consumer; asking for resync");
                let _ = self.finish.send(Some(Final {
                    frame: Some(encode(&ServerFrame::Resync {
                        reason: "slow_consumer".into(),
                    })),
                    code: close_code::AGAIN,
                    reason: "resync",
                }));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame the client asked for (replay, ack), waiting for room — but not
    /// forever: a client that stops reading during a replay is told to resync.
    async fn send(&self, frame: &ServerFrame) -> bool {
        match tokio::time::timeout(
            REPLAY_SEND_TIMEOUT,
            self.out.send(Outbound::Frame(encode(frame))),
        )
        .await
        {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                metrics::counter!("tsunagu_ws_slow_consumers_total").increment(1);
                let _ = self.end_with(
                    Some(ServerFrame::Resync {
                        reason: "slow_consumer".into(),
                    }),
                    close_code::AGAIN,
                    "resync",
                );
                false
            }
        }
    }

    fn end_with(&self, frame: Option<ServerFrame>, code: u16, reason: &'static str) -> Flow {
        let _ = self.finish.send(Some(Final {
            frame: frame.as_ref().map(encode),
            code,
            reason,
        }));
        Flow::Stop
    }

    fn is_closing(&self) -> bool {
        self.finish.borrow().is_some() || self.out.is_closed()
    }

    async fn on_client_message(&mut self, msg: WsMessage, limits: &WsConfig) -> Flow {
        let text = match msg {
            WsMessage::Text(text) => text,
            WsMessage::Binary(_) => {
                self.offer(&error_frame(
                    None,
                    ErrorCode::MalformedFrame,
                    "binary frames are not supported; send JSON text",
                ));
                return Flow::Continue;
            }
            WsMessage::Close(_) => return Flow::Stop,
            WsMessage::Ping(_) | WsMessage::Pong(_) => return Flow::Continue,
        };
        if text.len() > limits.max_frame_bytes {
            self.offer(&error_frame(
                frame_ref(text.as_str()),
                ErrorCode::FrameTooLarge,
                format!("frames are limited to {} bytes", limits.max_frame_bytes),
            ));
            return Flow::Continue;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(f) => f,
            Err(_) => {
                self.offer(&error_frame(
                    frame_ref(text.as_str()),
                    ErrorCode::MalformedFrame,
                    "not a valid frame (see docs/protocol.md)",
                ));
                return Flow::Continue;
            }
        };
        match frame {
            ClientFrame::Auth { .. } => {
                self.offer(&error_frame(
                    None,
                    ErrorCode::InvalidRequest,
                    "already authenticated",
                ));
            }
            ClientFrame::Ping {} => {
                self.offer(&ServerFrame::Pong {});
            }
            ClientFrame::Resume { threads } => return self.resume(threads).await,
            ClientFrame::Post {
                reference,
                thread_id,
                body,
                client_msg_id,
                reply_to,
                mentions,
                attachments,
            } => {
                let req = PostMessage {
                    body,
                    client_msg_id,
                    reply_to,
                    mentions,
                    attachments,
                };
                let reply = match self
                    .state
                    .domain
                    .post_message(&self.member, thread_id, req, &self.meta)
                    .await
                {
                    Ok((message, _)) => ServerFrame::Ack { reference, message },
                    Err(e) => domain_error_frame(reference, e),
                };
                if !self.send(&reply).await {
                    return Flow::Stop;
                }
            }
            ClientFrame::Read { thread_id, seq } => {
                if let Err(e) = self
                    .state
                    .domain
                    .mark_read(&self.member, thread_id, seq)
                    .await
                {
                    self.offer(&domain_error_frame(None, e));
                }
            }
            ClientFrame::Typing { thread_id } => {
                if let Err(e) = self.state.domain.typing(&self.member, thread_id).await {
                    self.offer(&domain_error_frame(None, e));
                }
            }
        }
        Flow::Continue
    }

    fn on_transport_error(&self, e: axum::Error) -> Flow {
        // Invalid UTF-8 in a text frame, a frame over the hard limit, a protocol
        // violation: say so if the socket still takes it, then close.
        let text = e.to_string();
        let (code, ws_code, reason) =
            if text.contains("UTF-8") || text.contains("utf-8") || text.contains("Utf8") {
                (
                    ErrorCode::MalformedFrame,
                    close_code::INVALID,
                    "invalid UTF-8",
                )
            } else if text.contains("too long")
                || text.contains("too big")
                || text.contains("Space limit")
            {
                (
                    ErrorCode::FrameTooLarge,
                    close_code::SIZE,
                    "frame too large",
                )
            } else {
                (
                    ErrorCode::MalformedFrame,
                    close_code::PROTOCOL,
                    "protocol error",
                )
            };
        tracing::debug!(error = %e, "websocket: transport error");
        self.end_with(Some(error_frame(None, code, reason)), ws_code, reason)
    }

    /// Replays, per thread, what the client missed, then confirms with `resumed`.
    async fn resume(&mut self, threads: BTreeMap<ThreadId, i64>) -> Flow {
        let mut confirmed = BTreeMap::new();
        for (thread_id, since) in threads {
            let key = thread_id.to_string();
            if !self.visible.sees_thread(&key) {
                continue; // unknown or invisible: ignored, indistinguishably
            }
            // A client cannot hold more than was ever delivered: a number beyond that
            // (say, after a server restore) would silently swallow later messages.
            let cap = self
                .visible
                .threads
                .get(&key)
                .copied()
                .unwrap_or(0)
                .max(self.delivered.get(&key).copied().unwrap_or(0));
            let Some(cursor) = self.replay_after(thread_id, since.clamp(0, cap)).await else {
                return Flow::Stop;
            };
            self.delivered.insert(key, cursor);
            confirmed.insert(thread_id, cursor);
        }
        if self
            .send(&ServerFrame::Resumed { threads: confirmed })
            .await
        {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    async fn on_event(&mut self, event: &Event) -> Flow {
        if self.is_closing() {
            return Flow::Stop;
        }
        let me = self.visible.user_id.clone();
        match &event.payload {
            Payload::SessionsRevoked {
                user_id,
                session_id,
            } => {
                let mine = *user_id == me
                    && session_id
                        .as_ref()
                        .is_none_or(|s| s == self.member.session().session_id());
                if mine {
                    return self.end_with(
                        Some(error_frame(
                            None,
                            ErrorCode::Unauthenticated,
                            "the session has ended",
                        )),
                        close_code::POLICY,
                        "session ended",
                    );
                }
                Flow::Continue
            }
            Payload::AccessChanged { user_id } if *user_id == me => {
                self.reload_visibility().await;
                Flow::Continue
            }
            Payload::AccessChanged { .. } => Flow::Continue,
            Payload::Frame(frame) => {
                if !self.visible.admits(&event.region_id, &event.audience) {
                    return Flow::Continue;
                }
                match frame.as_ref() {
                    ServerFrame::MessageCreated { message } if self.holding => {
                        self.held.insert(message.thread_id.to_string());
                        Flow::Continue
                    }
                    // Keep edits, reactions, receipts behind the messages they are about.
                    other if self.holding => {
                        if self.held_frames.len() >= self.state.ws.outbound_queue {
                            return self.end_with(
                                Some(ServerFrame::Resync {
                                    reason: "slow_consumer".into(),
                                }),
                                close_code::AGAIN,
                                "resync",
                            );
                        }
                        self.held_frames.push(other.clone());
                        Flow::Continue
                    }
                    ServerFrame::MessageCreated { message } => self.deliver_message(message).await,
                    ServerFrame::Typing { user_id, .. } if user_id.to_string() == me => {
                        Flow::Continue
                    }
                    other => {
                        self.offer(other);
                        Flow::Continue
                    }
                }
            }
        }
    }

    /// In-order, gap-free, duplicate-free delivery of one thread's messages.
    async fn deliver_message(&mut self, message: &Message) -> Flow {
        let key = message.thread_id.to_string();
        let Some(&last) = self.delivered.get(&key) else {
            return Flow::Continue;
        };
        if message.seq <= last {
            return Flow::Continue; // already delivered (replay or gap fill)
        }
        if message.seq > last + 1 {
            // A gap: an event is late or lost. The database has it.
            let mut cursor = last;
            while cursor < message.seq - 1 {
                let before = cursor;
                if let Ok(page) = self
                    .state
                    .domain
                    .messages_after(&self.member, message.thread_id, cursor, REPLAY_PAGE)
                    .await
                {
                    for m in page.into_iter().take_while(|m| m.seq < message.seq) {
                        cursor = m.seq;
                        if !self.offer(&ServerFrame::MessageCreated { message: m }) {
                            return Flow::Stop;
                        }
                    }
                }
                if cursor == before {
                    // The gap cannot be filled now: never skip over it silently.
                    return self.end_with(
                        Some(ServerFrame::Resync {
                            reason: "gap".into(),
                        }),
                        close_code::AGAIN,
                        "resync",
                    );
                }
            }
        }
        self.delivered.insert(key, message.seq);
        if self.offer(&ServerFrame::MessageCreated {
            message: message.clone(),
        }) {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    /// Sends every message of `thread_id` after `cursor`, a page at a time, waiting for
    /// room in the queue. Returns the last `seq` sent (or `cursor`), or `None` when the
    /// connection is ending.
    async fn replay_after(&self, thread_id: ThreadId, mut cursor: i64) -> Option<i64> {
        loop {
            let Ok(page) = self
                .state
                .domain
                .messages_after(&self.member, thread_id, cursor, REPLAY_PAGE)
                .await
            else {
                return Some(cursor);
            };
            let full = page.len() as i64 == REPLAY_PAGE;
            for message in page {
                cursor = message.seq;
                if !self.send(&ServerFrame::MessageCreated { message }).await {
                    return None;
                }
            }
            if !full {
                return Some(cursor);
            }
        }
    }

    /// Ends the hold: sends, in order, whatever arrived for the held threads beyond what
    /// was delivered (a `resume` may already have covered it).
    async fn go_live(&mut self) -> Flow {
        if !self.holding {
            return Flow::Continue;
        }
        self.holding = false;
        for key in std::mem::take(&mut self.held) {
            let (Some(&last), Ok(thread_id)) = (self.delivered.get(&key), key.parse::<ThreadId>())
            else {
                continue;
            };
            let Some(cursor) = self.replay_after(thread_id, last).await else {
                return Flow::Stop;
            };
            self.delivered.insert(key, cursor);
        }
        for frame in std::mem::take(&mut self.held_frames) {
            if !self.offer(&frame) {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Memberships changed: take a new snapshot. New threads start at their current
    /// `seq`; threads no longer visible stop at once.
    async fn reload_visibility(&mut self) {
        match self.state.domain.visible_set(&self.member).await {
            Ok(visible) => {
                self.delivered
                    .retain(|t, _| visible.threads.contains_key(t));
                for (t, last_seq) in &visible.threads {
                    self.delivered.entry(t.clone()).or_insert(*last_seq);
                }
                self.visible = visible;
            }
            Err(e) => {
                // Fail closed: see nothing rather than something stale, and tell the
                // client to come back (its next connection rebuilds everything).
                tracing::warn!(error = %e, "websocket: reloading visibility failed");
                self.visible.threads.clear();
                self.visible.groups.clear();
                self.delivered.clear();
                self.end_with(
                    Some(ServerFrame::Resync {
                        reason: "internal".into(),
                    }),
                    close_code::ERROR,
                    "resync",
                );
            }
        }
    }
}

/// The `ref` of a frame we reject, if it has one, so the client can match the error to
/// its request.
fn frame_ref(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("ref")?
        .as_str()
        .map(|r| r.chars().take(64).collect())
}

fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Writes queued frames to the socket; on a finish signal, tries to hand over the final
/// frame (bounded by a timeout), closes, and returns.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut rx: mpsc::Receiver<Outbound>,
    mut finish: watch::Receiver<Option<Final>>,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = finish.changed() => None,
            item = rx.recv() => match item {
                Some(item) => Some(item),
                None => break,
            },
        };
        let Some(item) = next else {
            break;
        };
        let msg = match item {
            Outbound::Frame(text) => WsMessage::Text(text.into()),
            Outbound::Ping => WsMessage::Ping(Default::default()),
        };
        let sent = tokio::select! {
            biased;
            _ = finish.changed() => break,
            r = sink.send(msg) => r,
        };
        if sent.is_err() {
            return;
        }
    }
    let last = finish.borrow().clone();
    if let Some(Final {
        frame,
        code,
        reason,
    }) = last
    {
        let _ = tokio::time::timeout(FINAL_FRAME_TIMEOUT, async {
            if let Some(text) = frame {
                sink.send(WsMessage::Text(text.into())).await?;
            }
            sink.send(close(code, reason)).await
        })
        .await;
    } else {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            sink.send(close(close_code::NORMAL, "")),
        )
        .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}
