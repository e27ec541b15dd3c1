//! `GET /api/v1/ws`: the live connection.
//!
//! Three small tasks per connection: a reader that turns socket frames into a bounded
//! channel (the socket is polled only when it has data, never re-polled per event), the
//! session task that owns the delivery state, and a writer that drains a bounded
//! outbound queue. The session task is woken only by its own client's frames and by hub
//! events for threads, groups or the user it watches (`bus::hub`); every frame it sends
//! was serialised once and is shared by all recipients.
//!
//! Delivery rules — order, duplicates, gaps, the live hold, resume caps, resync — are
//! the pure state machine in [`session`]; this module only drives it. Live events are
//! offered to the queue without waiting: when it is full the client is told to `resync`
//! and closed, so a slow consumer costs at most the queue's bound.

mod queue;
pub mod session;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{
    close_code, CloseFrame, Message as WsMessage, Utf8Bytes, WebSocketUpgrade,
};
use axum::extract::State;
use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;
use tsunagu_protocol::ids::ThreadId;
use tsunagu_protocol::messaging::PostMessage;
use tsunagu_protocol::ws::{ClientFrame, ServerFrame};
use tsunagu_protocol::ErrorCode;

use self::session::{FrameStep, MessageStep, Resync, Session};
use super::error::ApiError;
use super::extract::Meta;
use super::AppState;
use crate::audit::RequestMeta;
use crate::bus::{encode, Event, FrameKind, Payload, Subscription};
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
/// The transport's read buffer. Client frames are small JSON (an `auth` frame is about
/// 700 bytes); a larger frame grows the
/// buffer for as long as it needs. tungstenite's default (128 KiB, zero-filled on every
/// read) made an idle connection cost more than the rest of it together.
const READ_BUFFER: usize = 2 * 1024;

/// Upgrade to the websocket protocol. Authenticate in the first frame
/// (`{"type": "auth", "token": "..."}`) within the auth timeout; see docs/protocol.md.
#[utoipa::path(
    get, path = "/api/v1/ws", tag = "websocket", operation_id = "websocket",
    responses(
        (status = 101, description = "Switching protocols; JSON text frames follow (docs/protocol.md)"),
        (status = 400, description = "Not a websocket upgrade request"),
        (status = 426, description = "Upgrade required: this path speaks only the websocket protocol"),
    )
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
    ws.read_buffer_size(READ_BUFFER)
        // Write each frame as it comes (the writer sends one at a time and flushes).
        .write_buffer_size(0)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| serve(state, socket, meta))
}

/// What the writer task is told.
enum Outbound {
    Frame(Utf8Bytes),
    Ping,
}

/// The frame to end on and the close code to send after it.
#[derive(Clone)]
struct Final {
    frame: Option<Utf8Bytes>,
    code: u16,
    reason: &'static str,
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
        retry_after_ms: None,
    }
}

fn domain_error_frame(reference: Option<String>, e: DomainError) -> ServerFrame {
    let retry_after_ms = match &e {
        DomainError::Throttled { retry_after_secs } => Some(retry_after_secs * 1000),
        _ => None,
    };
    let api = ApiError::from(e);
    ServerFrame::Error {
        reference,
        code: api.code().as_str().to_owned(),
        message: api.message().to_owned(),
        retry_after_ms,
    }
}

fn throttled_frame(reference: Option<String>, wait: Duration) -> ServerFrame {
    ServerFrame::Error {
        reference,
        code: ErrorCode::TooManyRequests.as_str().to_owned(),
        message: "slow down".into(),
        retry_after_ms: Some((wait.as_millis() as u64).max(1)),
    }
}

fn per_minute(rate: u32, burst: u32) -> DefaultDirectRateLimiter {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_minute(rate).allow_burst(burst))
}

/// Spends one token of `limiter`: `Err(wait)` when it is empty.
fn spend(limiter: &DefaultDirectRateLimiter) -> Result<(), Duration> {
    use governor::clock::Clock;
    // The limiter's own clock: making a new one per call reads CPUID every time.
    limiter
        .check()
        .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
}

/// Client frames as the reader task hands them over.
type Incoming = Option<Result<WsMessage, axum::Error>>;

struct Connection {
    state: AppState,
    member: Member,
    /// The visibility snapshot: the final word on whether an event may be delivered.
    visible: VisibleSet,
    session: Session,
    sub: Subscription,
    out: queue::Sender<Outbound>,
    finish: watch::Sender<Option<Final>>,
    meta: RequestMeta,
    typing: DefaultDirectRateLimiter,
    reads: DefaultDirectRateLimiter,
}

enum Flow {
    Continue,
    Stop,
}

/// Serves one upgraded socket. Generic over the transport, so the driver can be run
/// over channels as well as a real socket.
pub async fn serve<S>(state: AppState, socket: S, meta: RequestMeta)
where
    S: Sink<WsMessage, Error = axum::Error>
        + Stream<Item = Result<WsMessage, axum::Error>>
        + Send
        + Unpin
        + 'static,
{
    let (mut sink, mut stream) = socket.split();
    // Authentication and the first snapshot are boxed: their futures are large and
    // needed once, so they do not stay in every idle connection's task.
    let Some((member, visible, sub)) = Box::pin(open(&state, &mut sink, &mut stream)).await else {
        return;
    };
    let limits = state.ws.clone();
    let (in_tx, mut in_rx) = queue::bounded::<Incoming>(1);
    let reader = tokio::spawn(async move {
        loop {
            let item = stream.next().await;
            let end = !matches!(item, Some(Ok(_)));
            if in_tx.send(item).await.is_err() || end {
                break;
            }
        }
    });
    let (out, out_rx) = queue::bounded(limits.outbound_queue.max(1));
    let (finish, finish_rx) = watch::channel(None);
    let writer = tokio::spawn(write_loop(sink, out_rx, finish_rx));
    let user_id = member.session().user_id();
    let live = state.live.clone();
    let mut conn = Connection {
        session: Session::new(&visible.threads, limits.outbound_queue),
        state,
        member,
        visible,
        sub,
        out,
        finish,
        meta,
        typing: per_minute(live.typing_per_minute, live.typing_burst),
        reads: per_minute(live.reads_per_minute, live.reads_burst),
    };
    metrics::gauge!("tsunagu_ws_connections").increment(1.0);
    tracing::debug!(%user_id, "websocket: authenticated");

    conn.offer_frame(&ServerFrame::Ready {
        user_id,
        heartbeat_secs: limits.heartbeat_secs,
        max_frame_bytes: limits.max_frame_bytes,
    });

    let heartbeat = Duration::from_secs(limits.heartbeat_secs.max(1));
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut last_heard = Instant::now();
    let hold_until = tokio::time::Instant::now() + LIVE_HOLD;
    let mut shutdown = conn.state.shutdown.clone();
    loop {
        let flow = tokio::select! {
            incoming = in_rx.recv() => {
                last_heard = Instant::now();
                let flow = match incoming.flatten() {
                    Some(Ok(msg)) => Box::pin(conn.on_client_message(msg, &limits)).await,
                    Some(Err(e)) => conn.on_transport_error(e),
                    None => Flow::Stop,
                };
                match flow {
                    Flow::Continue => Box::pin(conn.go_live()).await,
                    stop => stop,
                }
            }
            _ = tokio::time::sleep_until(hold_until), if conn.session.holding() => Box::pin(conn.go_live()).await,
            event = conn.sub.recv() => match event {
                _ if conn.sub.lagged() => {
                    tracing::info!(%user_id, "websocket: events were dropped for this connection; asking for resync");
                    conn.resync(Resync::Lagged)
                }
                Some(event) => Box::pin(conn.on_event(event)).await,
                None => Flow::Stop,
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    conn.end_with(None, close_code::AWAY, "heartbeat timeout")
                } else {
                    let _ = conn.out.try_send(Outbound::Ping);
                    Flow::Continue
                }
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => conn.resync(Resync::Shutdown),
        };
        if matches!(flow, Flow::Stop) {
            break;
        }
    }
    let Connection {
        out, finish, sub, ..
    } = conn;
    drop(sub);
    drop(out);
    drop(in_rx);
    reader.abort();
    let _ = tokio::time::timeout(FINAL_FRAME_TIMEOUT + Duration::from_secs(2), writer).await;
    drop(finish);
    metrics::gauge!("tsunagu_ws_connections").decrement(1.0);
}

/// Authenticates with the first frame, registers with the hub and takes the first
/// visibility snapshot. `None`: the socket was answered and should be dropped.
async fn open<Si, St>(
    state: &AppState,
    sink: &mut Si,
    stream: &mut St,
) -> Option<(Member, VisibleSet, Subscription)>
where
    Si: Sink<WsMessage, Error = axum::Error> + Unpin,
    St: Stream<Item = Result<WsMessage, axum::Error>> + Unpin,
{
    let limits = &state.ws;
    let auth =
        tokio::time::timeout(Duration::from_secs(limits.auth_timeout_secs), stream.next()).await;
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
        Some(t) => match state.domain.accounts().authenticate(&t).await {
            Ok(s) => Some(s),
            // The database being down is not the client's fault: say so, so it retries
            // instead of asking its user to sign in again.
            Err(DomainError::Internal(cause)) => {
                tracing::error!(error = %cause, "websocket: authentication unavailable");
                let frame = encode(&error_frame(
                    None,
                    ErrorCode::Unavailable,
                    "try again shortly",
                ));
                let _ = sink.send(WsMessage::Text(frame)).await;
                let _ = sink.send(close(close_code::ERROR, "unavailable")).await;
                return None;
            }
            Err(_) => None,
        },
        None => None,
    };
    // An app's socket needs `messages:read`; its frames are checked by the domain.
    let member = match session.map(|s| {
        s.require(tsunagu_protocol::apps::Scope::MessagesRead)?;
        s.member()
    }) {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            let frame = encode(&domain_error_frame(None, e));
            let _ = sink.send(WsMessage::Text(frame)).await;
            let _ = sink
                .send(close(close_code::POLICY, "account action pending"))
                .await;
            return None;
        }
        None => {
            let frame = encode(&error_frame(
                None,
                ErrorCode::Unauthenticated,
                "the first frame must be a valid auth frame",
            ));
            let _ = sink.send(WsMessage::Text(frame)).await;
            let _ = sink
                .send(close(close_code::POLICY, "authentication required"))
                .await;
            return None;
        }
    };
    // Register before taking the snapshot: anything committed after the snapshot
    // arrives through the hub; anything before is at or under the baseline. Until the
    // keys are known the user's own key is enough to hear about membership changes.
    let sub = state.domain.bus().hub().subscribe();
    let user_key = member.session().user_id().to_string();
    sub.watch(&user_key, std::iter::empty(), std::iter::empty());
    let visible = match state.domain.threads().visible_set(&member).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "websocket: loading visibility failed");
            let _ = sink.send(close(close_code::ERROR, "internal error")).await;
            return None;
        }
    };
    sub.watch(&user_key, visible.threads.keys(), visible.groups.iter());
    Some((member, visible, sub))
}

impl Connection {
    /// Queues a live frame without waiting. A full queue means the client cannot keep
    /// up: it is told to resync and closed.
    fn offer(&self, text: Utf8Bytes) -> bool {
        match self.out.try_send(Outbound::Frame(text)) {
            Ok(()) => true,
            Err(queue::TrySendError::Full) => {
                metrics::counter!("tsunagu_ws_slow_consumers_total").increment(1);
                tracing::info!(user_id = %self.member.session().user_id(), "websocket: slow consumer; asking for resync");
                self.resync(Resync::SlowConsumer);
                false
            }
            Err(queue::TrySendError::Closed) => false,
        }
    }

    fn offer_frame(&self, frame: &ServerFrame) -> bool {
        self.offer(encode(frame))
    }

    /// Queues a frame the client asked for (replay, ack), waiting for room — but not
    /// forever: a client that stops reading during a replay is told to resync.
    async fn send(&self, frame: &ServerFrame) -> bool {
        if self.is_closing() {
            return false;
        }
        match tokio::time::timeout(
            REPLAY_SEND_TIMEOUT,
            self.out.send(Outbound::Frame(encode(frame))),
        )
        .await
        {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.resync(Resync::SlowConsumer);
                false
            }
        }
    }

    /// Ends the connection with `resync`: the client reconnects and resumes.
    fn resync(&self, why: Resync) -> Flow {
        self.end_with(
            Some(ServerFrame::Resync {
                reason: why.reason().into(),
            }),
            close_code::AGAIN,
            "resync",
        )
    }

    /// Tells the writer to send `frame` (if any), then close with `code`.
    fn end_with(&self, frame: Option<ServerFrame>, code: u16, reason: &'static str) -> Flow {
        let _ = self.finish.send(Some(Final {
            frame: frame.map(|f| encode(&f)),
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
                self.offer_frame(&error_frame(
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
            self.offer_frame(&error_frame(
                frame_ref(text.as_str()),
                ErrorCode::FrameTooLarge,
                format!("frames are limited to {} bytes", limits.max_frame_bytes),
            ));
            return Flow::Continue;
        }
        let frame = match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(f) => f,
            Err(_) => {
                self.offer_frame(&error_frame(
                    frame_ref(text.as_str()),
                    ErrorCode::MalformedFrame,
                    "not a valid frame (see docs/protocol.md)",
                ));
                return Flow::Continue;
            }
        };
        match frame {
            ClientFrame::Auth { .. } => {
                self.offer_frame(&error_frame(
                    None,
                    ErrorCode::InvalidRequest,
                    "already authenticated",
                ));
            }
            ClientFrame::Ping {} => {
                self.offer_frame(&ServerFrame::Pong {});
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
                    .messages()
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
                if let Err(wait) = spend(&self.reads) {
                    self.offer_frame(&throttled_frame(None, wait));
                } else if let Err(e) = self
                    .state
                    .domain
                    .messages()
                    .mark_read(&self.member, thread_id, seq)
                    .await
                {
                    self.offer_frame(&domain_error_frame(None, e));
                }
            }
            ClientFrame::Typing { thread_id } => {
                if let Err(wait) = spend(&self.typing) {
                    self.offer_frame(&throttled_frame(None, wait));
                } else if let Err(e) = self
                    .state
                    .domain
                    .messages()
                    .typing(&self.member, thread_id)
                    .await
                {
                    self.offer_frame(&domain_error_frame(None, e));
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
        for (thread_id, claimed) in threads {
            let key = thread_id.to_string();
            let Some(from) = self.session.resume_from(&key, claimed) else {
                continue; // unknown or invisible: ignored, indistinguishably
            };
            let Some(cursor) = self.replay_after(thread_id, from).await else {
                return Flow::Stop;
            };
            self.session.resumed(&key, cursor);
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

    async fn on_event(&mut self, event: Arc<Event>) -> Flow {
        if self.is_closing() {
            return Flow::Stop;
        }
        let me = &self.visible.user_id;
        match &event.payload {
            Payload::SessionsRevoked {
                user_id,
                session_id,
            } => {
                let mine = user_id == me
                    && session_id
                        .as_ref()
                        .is_none_or(|s| s == self.member.session().session_id());
                if mine {
                    return self.session_ended();
                }
                Flow::Continue
            }
            Payload::AccessChanged { user_id } if user_id == me => {
                self.reload_visibility().await;
                Flow::Continue
            }
            Payload::AccessChanged { .. } => Flow::Continue,
            Payload::CatchUp => self.catch_up().await,
            Payload::Frame(frame) => {
                if !self.visible.admits(&event.region_id, &event.audience) {
                    return Flow::Continue;
                }
                match &frame.kind {
                    FrameKind::Message { thread_id, seq } => {
                        self.deliver_message(thread_id, *seq, &frame.text).await
                    }
                    FrameKind::Typing { user_id } if user_id == me => Flow::Continue,
                    _ => match self.session.on_frame(&frame.text) {
                        FrameStep::Deliver => {
                            if self.offer(frame.text.clone()) {
                                Flow::Continue
                            } else {
                                Flow::Stop
                            }
                        }
                        FrameStep::Held => Flow::Continue,
                        FrameStep::Overflow => self.resync(Resync::SlowConsumer),
                    },
                }
            }
        }
    }

    fn session_ended(&self) -> Flow {
        self.end_with(
            Some(error_frame(
                None,
                ErrorCode::Unauthenticated,
                "the session has ended",
            )),
            close_code::POLICY,
            "session ended",
        )
    }

    /// In-order, gap-free, duplicate-free delivery of one thread's live message.
    async fn deliver_message(&mut self, thread: &str, seq: i64, text: &Utf8Bytes) -> Flow {
        loop {
            match self.session.on_message(thread, seq) {
                MessageStep::Deliver => {
                    return if self.offer(text.clone()) {
                        Flow::Continue
                    } else {
                        Flow::Stop
                    };
                }
                MessageStep::Duplicate | MessageStep::NotVisible | MessageStep::Held => {
                    return Flow::Continue
                }
                MessageStep::Fill { after, before } => {
                    // A gap: an event is late or lost. The database has it.
                    let Ok(thread_id) = thread.parse::<ThreadId>() else {
                        return Flow::Continue;
                    };
                    let mut progressed = false;
                    if let Ok(page) = self
                        .state
                        .domain
                        .messages()
                        .messages_after(&self.member, thread_id, after, REPLAY_PAGE)
                        .await
                    {
                        for m in page.into_iter().take_while(|m| m.seq < before) {
                            progressed = true;
                            if self.session.filled(thread, m.seq)
                                && !self.offer_frame(&ServerFrame::MessageCreated { message: m })
                            {
                                return Flow::Stop;
                            }
                        }
                    }
                    if !progressed {
                        // The gap cannot be filled now: never skip over it silently.
                        return self.resync(Resync::Gap);
                    }
                }
            }
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
                .messages()
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
    /// was delivered (a `resume` may already have covered it), then the held frames.
    async fn go_live(&mut self) -> Flow {
        let Some(release) = self.session.end_hold() else {
            return Flow::Continue;
        };
        if let Flow::Stop = self.replay_threads(release.replay).await {
            return Flow::Stop;
        }
        for text in release.frames {
            if !self.offer(text) {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Memberships changed: take a new snapshot and re-register with the hub. New
    /// threads start at their current `seq`; threads no longer visible stop at once.
    async fn reload_visibility(&mut self) -> bool {
        match self.state.domain.threads().visible_set(&self.member).await {
            Ok(visible) => {
                self.session.reload(&visible.threads);
                self.sub.watch(
                    &visible.user_id,
                    visible.threads.keys(),
                    visible.groups.iter(),
                );
                self.visible = visible;
                true
            }
            Err(e) => {
                // Fail closed: see nothing rather than something stale, and tell the
                // client to come back (its next connection rebuilds everything).
                tracing::warn!(error = %e, "websocket: reloading visibility failed");
                self.visible.threads.clear();
                self.visible.groups.clear();
                self.session.clear();
                self.resync(Resync::Internal);
                false
            }
        }
    }

    /// This node may have missed events (the cluster bus was away): check the session
    /// still stands, reload visibility, and send whatever was committed meanwhile.
    async fn catch_up(&mut self) -> Flow {
        if let Flow::Stop = self.go_live().await {
            return Flow::Stop;
        }
        match self
            .state
            .domain
            .accounts()
            .session_active(&self.member)
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.session_ended(),
            Err(_) => return self.resync(Resync::Internal),
        }
        if !self.reload_visibility().await {
            return Flow::Stop;
        }
        let behind = self.session.behind(&self.visible.threads);
        self.replay_threads(behind).await
    }

    /// Replays each `(thread, last delivered seq)` from the database and moves the
    /// session on to what was sent.
    async fn replay_threads(&mut self, threads: Vec<(String, i64)>) -> Flow {
        for (key, last) in threads {
            let Ok(thread_id) = key.parse::<ThreadId>() else {
                continue;
            };
            let Some(cursor) = self.replay_after(thread_id, last).await else {
                return Flow::Stop;
            };
            self.session.resumed(&key, cursor);
        }
        Flow::Continue
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
async fn write_loop<Si>(
    mut sink: Si,
    mut rx: queue::Receiver<Outbound>,
    mut finish: watch::Receiver<Option<Final>>,
) where
    Si: Sink<WsMessage, Error = axum::Error> + Unpin,
{
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
            Outbound::Frame(text) => WsMessage::Text(text),
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
                sink.send(WsMessage::Text(text)).await?;
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
