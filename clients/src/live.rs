//! The live session: new messages as they happen over the websocket (`GET /api/v1/ws`),
//! each delivered to the caller exactly once and in `seq` order per thread, across
//! dropped connections, server restarts and resyncs.
//!
//! Why a session rather than a raw socket: the server delivers in order, without gaps and
//! without duplicates *per connection*, and replays what a reconnecting client missed when
//! told the last `seq` it holds per thread. Connections do drop — mobile networks, deploys,
//! a consumer too slow for the server's bounded queue being told to `resync`. The session
//! therefore:
//!
//! - remembers, per thread, the last `seq` it has handed to the caller, and sends exactly
//!   that in `resume` on every (re)connect, so the server replays precisely what is missing;
//! - drops a message whose `seq` it has already handed over (the live stream and a replay
//!   overlap while a `resume` is being served), and holds back one that arrives ahead of a
//!   hole until the hole is filled, so the caller never sees a gap either; a hole that
//!   survives the replay makes it reconnect and resume again — the database is the log;
//! - reconnects with exponential backoff and jitter ([`Backoff`]) so that a restarted
//!   server is not hit by every client at once, refreshing the access token through the
//!   [`Client`] when the server no longer accepts it;
//! - keeps reading the socket even when the caller is slow: beyond its buffer it stops
//!   accepting messages and later catches up by resuming, so memory stays bounded and no
//!   message is lost.
//!
//! Only `message.created` is replayed by the server. Edits, reactions, receipts and the
//! like that happen while disconnected are not; [`LiveEvent::Connected`] with
//! `reconnected: true` is the caller's cue to refetch state it displays.
//!
//! ```no_run
//! # async fn demo(client: tsunagu_client::Client) -> Result<(), tsunagu_client::Error> {
//! use tsunagu_client::live::LiveEvent;
//!
//! let mut session = client.live().connect().await?;
//! loop {
//!     match session.next_event().await? {
//!         LiveEvent::Message(m) => println!("#{} {}", m.seq, m.body),
//!         LiveEvent::Connected { reconnected: true, .. } => { /* refetch receipts, edits */ }
//!         _ => {}
//!     }
//! }
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tsunagu_protocol::ids::{ThreadId, UserId};
use tsunagu_protocol::messaging::{Message, PostMessage};
use tsunagu_protocol::ws::{ClientFrame, ServerFrame};
use tsunagu_protocol::ErrorCode;
use url::Url;

use crate::{new_client_msg_id, Client, Error, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Commands queued from handles to the session task; a few is plenty, senders wait.
const COMMAND_QUEUE: usize = 64;
/// How long a clean close waits for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one frame may take to go out before the connection is presumed dead.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// Silence tolerated beyond two server heartbeats before the connection is presumed dead.
const SILENCE_MARGIN: Duration = Duration::from_secs(5);

/// How long to wait between reconnect attempts.
///
/// The delay grows by `factor` per consecutive failed attempt up to `max`; `jitter` is
/// the fraction of each delay that is random, so that clients dropped together (a
/// server restart) do not all come back in the same instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the first attempt after a connection is lost.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// Growth per consecutive failed attempt (at least 1).
    pub factor: f64,
    /// Fraction of each delay that is random, 0.0 (none) to 1.0 (anywhere in `0..=delay`).
    pub jitter: f64,
    /// Give up after this many consecutive failed attempts and report the last error;
    /// `None` retries for as long as the session lives.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delay before attempt number `attempt` (0 for the first after a loss).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = if self.factor.is_nan() {
            1.0
        } else {
            self.factor.clamp(1.0, 1000.0)
        };
        let max = self.max.as_secs_f64();
        let exponent = i32::try_from(attempt.min(63)).unwrap_or(63);
        let grown = self.initial.as_secs_f64() * factor.powi(exponent);
        let capped = if grown.is_finite() {
            grown.min(max)
        } else {
            max
        };
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let random: f64 = rand::thread_rng().gen_range(0.0..=1.0);
        Duration::try_from_secs_f64(capped * (1.0 - jitter * random)).unwrap_or(self.max)
    }
}

/// What a live session hands to its caller.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LiveEvent {
    /// A new message in a followed thread — including the caller's own posts. Each is
    /// delivered exactly once, and per thread in increasing `seq` without gaps.
    Message(Message),
    /// The connection is up and caught up: every message up to `threads[t]` in each
    /// followed thread `t` has been delivered before this event. After a reconnect
    /// (`reconnected: true`), edits, reactions, receipts and membership changes made while
    /// disconnected were not replayed: refetch what you display.
    Connected {
        threads: BTreeMap<ThreadId, i64>,
        reconnected: bool,
    },
    /// The connection was lost; the session tries again after `retry_in`. `attempt`
    /// counts consecutive attempts since the last healthy connection.
    Disconnected {
        reason: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// Any other server event for followed threads and the caller's groups: edits,
    /// deletions, reactions, receipts, typing, membership, thread changes, and `error`
    /// frames not tied to a request. Never `message.created`, `ack`, `ready`, `resumed`,
    /// `resync` or `pong`, which the session handles itself.
    Update(ServerFrame),
}

/// Configures and opens a [`Session`]; from [`Client::live`].
#[derive(Debug, Clone)]
pub struct SessionBuilder {
    client: Client,
    resume_from: BTreeMap<ThreadId, i64>,
    follow_all: bool,
    backoff: Backoff,
    connect_timeout: Duration,
    buffer: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A live session for this client's user; see [`live`](crate::live). Follows every
    /// thread the user can see unless told otherwise.
    pub fn live(&self) -> SessionBuilder {
        SessionBuilder {
            client: self.clone(),
            resume_from: BTreeMap::new(),
            follow_all: true,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(20),
            buffer: 1024,
            tls: None,
        }
    }
}

impl SessionBuilder {
    /// Follows `thread`, delivering every message with a `seq` greater than `after_seq`
    /// (0: from the beginning) — typically the last `seq` the caller already holds.
    pub fn follow(mut self, thread: ThreadId, after_seq: i64) -> Self {
        self.resume_from.insert(thread, after_seq);
        self
    }

    /// [`follow`](Self::follow) for each entry, e.g. a saved [`Session::last_seqs`].
    pub fn resume_from(mut self, last_seqs: BTreeMap<ThreadId, i64>) -> Self {
        self.resume_from.extend(last_seqs);
        self
    }

    /// Also follow every other thread the user can see — discovered over REST at each
    /// connect and as threads appear — from the moment it is discovered (default: on).
    /// Off, only the threads given to [`follow`](Self::follow) are delivered, and updates
    /// about other threads are filtered out.
    pub fn follow_all(mut self, on: bool) -> Self {
        self.follow_all = on;
        self
    }

    /// The reconnect policy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Bound on each websocket step of a connect (TCP, TLS, upgrade, auth) — default 20 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Events held for a caller that is not reading (default 1024). Beyond twice that the
    /// session stops accepting messages and catches up later by resuming.
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// TLS settings for `wss://` (custom roots for a private CA, client certificates).
    /// Without it the webpki roots are used; if no rustls crypto provider is installed in
    /// the process yet, *ring* is installed as the default, as reqwest uses for REST.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Connects, authenticates and asks for what was missed. The first connect is tried
    /// once, so that a wrong URL or a refused sign-in is reported here; later losses are
    /// retried in the background according to the [`Backoff`].
    pub async fn connect(self) -> Result<Session> {
        let dialer = Dialer {
            client: self.client.clone(),
            url: self.client.websocket_url()?,
            tls: self.tls,
            connect_timeout: self.connect_timeout,
            discover: self.follow_all,
        };
        let mut tracker = Tracker {
            follow_all: self.follow_all,
            ..Tracker::default()
        };
        for (&thread, &seq) in &self.resume_from {
            tracker.baseline(thread, seq);
        }
        let opened = match dialer.clone().open().await {
            Ok(o) => o,
            Err(Failure::Retry(e) | Failure::Fatal(e)) => return Err(e),
        };
        let user_id = opened.user_id;
        let (events_tx, events) = mpsc::channel(self.buffer);
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let driver = Driver {
            dialer,
            backoff: self.backoff,
            buffer: self.buffer,
            tracker,
            outbox: VecDeque::new(),
            events: events_tx,
            posts: BTreeMap::new(),
            next_ref: 0,
            reads: BTreeMap::new(),
            max_frame_bytes: opened.max_frame_bytes,
            overflowed: false,
            attempt: 0,
            connected_before: false,
        };
        let task = tokio::spawn(driver.run(commands, opened));
        Ok(Session {
            handle: SessionHandle {
                commands: commands_tx,
            },
            events,
            delivered: self.resume_from,
            user_id,
            task: AbortOnDrop(task),
        })
    }
}

/// A live connection for one signed-in user that survives disconnects. Read it with
/// [`next_event`](Self::next_event); post, mark read and signal typing through it or a
/// [`SessionHandle`]. Dropping it ends the connection; [`close`](Self::close) ends it
/// politely.
#[derive(Debug)]
pub struct Session {
    handle: SessionHandle,
    events: mpsc::Receiver<Result<LiveEvent>>,
    delivered: BTreeMap<ThreadId, i64>,
    user_id: UserId,
    task: AbortOnDrop,
}

impl Session {
    /// Opens a session following every visible thread, resuming the given ones after the
    /// given `seq`s; the short form of `client.live().resume_from(..).connect()`.
    pub async fn connect(client: &Client, resume_from: BTreeMap<ThreadId, i64>) -> Result<Self> {
        client.live().resume_from(resume_from).connect().await
    }

    /// The next event. An error is fatal and reported once (the sign-in ended, the server
    /// refused the session, or the [`Backoff`] gave up); after it, and after
    /// [`close`](Self::close), this returns [`Error::SessionClosed`].
    pub async fn next_event(&mut self) -> Result<LiveEvent> {
        match self.events.recv().await {
            Some(Ok(event)) => {
                match &event {
                    LiveEvent::Message(m) => {
                        self.delivered.insert(m.thread_id, m.seq);
                    }
                    LiveEvent::Connected { threads, .. } => {
                        for (&thread, &seq) in threads {
                            let held = self.delivered.entry(thread).or_insert(seq);
                            *held = (*held).max(seq);
                        }
                    }
                    _ => {}
                }
                Ok(event)
            }
            Some(Err(e)) => Err(e),
            None => Err(Error::SessionClosed),
        }
    }

    /// Per thread, the last `seq` the caller has received (or was caught up to): save it
    /// and pass it to [`SessionBuilder::resume_from`] to continue exactly there later.
    pub fn last_seqs(&self) -> &BTreeMap<ThreadId, i64> {
        &self.delivered
    }

    /// The signed-in user, as the server confirmed when the session opened.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// A cloneable handle to post and mark read from other tasks while this one reads.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// See [`SessionHandle::post`].
    pub async fn post(&self, thread: ThreadId, body: &str) -> Result<Message> {
        self.handle.post(thread, body).await
    }

    /// See [`SessionHandle::post_message`].
    pub async fn post_message(&self, thread: ThreadId, req: &PostMessage) -> Result<Message> {
        self.handle.post_message(thread, req).await
    }

    /// See [`SessionHandle::mark_read`].
    pub async fn mark_read(&self, thread: ThreadId, seq: i64) -> Result<()> {
        self.handle.mark_read(thread, seq).await
    }

    /// See [`SessionHandle::typing`].
    pub async fn typing(&self, thread: ThreadId) -> Result<()> {
        self.handle.typing(thread).await
    }

    /// See [`SessionHandle::force_reconnect`].
    pub async fn force_reconnect(&self) -> Result<()> {
        self.handle.force_reconnect().await
    }

    /// Says goodbye to the server (a close frame) and ends the session; posts still
    /// waiting for their `ack` fail with [`Error::SessionClosed`].
    pub async fn close(mut self) -> Result<()> {
        let (done, closed) = oneshot::channel();
        if self
            .handle
            .commands
            .send(Command::Close { done })
            .await
            .is_ok()
        {
            let _ = closed.await;
        }
        // Nobody reads events any more: a task still handing some over stops at once.
        self.events.close();
        // The task ends right after answering; wait so that nothing outlives the call.
        let _ = (&mut self.task.0).await;
        Ok(())
    }
}

/// Posts, read receipts and typing signals into a [`Session`] from any task.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    commands: mpsc::Sender<Command>,
}

impl SessionHandle {
    async fn command(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::SessionClosed)
    }

    /// Posts plain text with a fresh `client_msg_id`; see
    /// [`post_message`](Self::post_message).
    pub async fn post(&self, thread: ThreadId, body: &str) -> Result<Message> {
        let req = PostMessage {
            body: body.to_owned(),
            client_msg_id: new_client_msg_id(),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        self.post_message(thread, &req).await
    }

    /// Posts over the socket and returns the stored message once the server has
    /// committed it (its `ack`). If the connection drops before the `ack`, the session
    /// sends the post again after reconnecting: the server recognises the
    /// `client_msg_id` and answers with the original message, so nothing is posted twice
    /// — and a caller that gives up and retries later with the same `client_msg_id`
    /// (here or over REST) is just as safe. Waits for as long as the session keeps
    /// reconnecting; bound it with a timeout if that matters.
    pub async fn post_message(&self, thread: ThreadId, req: &PostMessage) -> Result<Message> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Post {
            thread_id: thread,
            req: req.clone(),
            reply,
        })
        .await?;
        answer.await.unwrap_or(Err(Error::SessionClosed))
    }

    /// Moves the user's read position (既読) in `thread` up to `seq`. Not acknowledged by
    /// the server; while disconnected the latest position per thread is kept and sent
    /// after reconnecting. A refusal arrives as an [`LiveEvent::Update`] error frame.
    pub async fn mark_read(&self, thread: ThreadId, seq: i64) -> Result<()> {
        self.command(Command::Read {
            thread_id: thread,
            seq,
        })
        .await
    }

    /// "I am typing" in `thread`. Ephemeral: dropped while disconnected.
    pub async fn typing(&self, thread: ThreadId) -> Result<()> {
        self.command(Command::Typing { thread_id: thread }).await
    }

    /// Drops the current connection abruptly — no close handshake, as a network failure
    /// would — and goes through the normal reconnect path. For tests and diagnostics: a
    /// healthy session never needs it.
    pub async fn force_reconnect(&self) -> Result<()> {
        self.command(Command::Reconnect).await
    }
}

/// Ends the session task when the [`Session`] is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Command {
    Post {
        thread_id: ThreadId,
        req: PostMessage,
        reply: oneshot::Sender<Result<Message>>,
    },
    Read {
        thread_id: ThreadId,
        seq: i64,
    },
    Typing {
        thread_id: ThreadId,
    },
    Reconnect,
    Close {
        done: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the message body.
        f.write_str(match self {
            Command::Post { .. } => "Post",
            Command::Read { .. } => "Read",
            Command::Typing { .. } => "Typing",
            Command::Reconnect => "Reconnect",
            Command::Close { .. } => "Close",
        })
    }
}

/// Per-thread delivery state: exactly once, in order, without gaps.
#[derive(Debug, Default)]
struct Tracker {
    /// Deliver messages of threads first seen live (not only those with a baseline).
    follow_all: bool,
    /// The last `seq` handed towards the caller, per followed thread.
    last: BTreeMap<ThreadId, i64>,
    /// Messages that arrived ahead of a hole, per thread, by `seq`.
    held: BTreeMap<ThreadId, BTreeMap<i64, Message>>,
}

impl Tracker {
    /// Starts following `thread` after `seq` unless it is already followed.
    fn baseline(&mut self, thread: ThreadId, seq: i64) {
        self.last.entry(thread).or_insert(seq);
    }

    fn follows(&self, thread: &ThreadId) -> bool {
        self.follow_all || self.last.contains_key(thread)
    }

    /// Takes one arriving message; returns those now deliverable, in order.
    fn accept(&mut self, message: Message) -> Vec<Message> {
        let thread = message.thread_id;
        let last = match self.last.get(&thread) {
            Some(&last) => last,
            // A thread that appeared while connected: follow it from its first message.
            None if self.follow_all => message.seq - 1,
            None => return Vec::new(),
        };
        if message.seq <= last {
            return Vec::new(); // already delivered: the replay and the live stream overlap
        }
        if message.seq > last + 1 {
            self.held
                .entry(thread)
                .or_default()
                .entry(message.seq)
                .or_insert(message);
            return Vec::new();
        }
        let mut cursor = message.seq;
        let mut out = vec![message];
        if let Some(held) = self.held.get_mut(&thread) {
            while let Some(entry) = held.first_entry() {
                if *entry.key() <= cursor {
                    entry.remove();
                } else if *entry.key() == cursor + 1 {
                    out.push(entry.remove());
                    cursor += 1;
                } else {
                    break;
                }
            }
            if held.is_empty() {
                self.held.remove(&thread);
            }
        }
        self.last.insert(thread, cursor);
        out
    }

    fn has_gaps(&self) -> bool {
        !self.held.is_empty()
    }

    /// What to put in `resume`.
    fn positions(&self) -> BTreeMap<ThreadId, i64> {
        self.last.clone()
    }
}

/// A connection that has been authenticated.
struct Opened {
    ws: Socket,
    user_id: UserId,
    heartbeat: Duration,
    max_frame_bytes: usize,
    /// Threads found over REST (with their current `seq`), to follow from now on.
    discovered: Vec<(ThreadId, i64)>,
}

enum Failure {
    /// Worth another attempt after a delay (network, server busy or restarting).
    Retry(Error),
    /// Retrying cannot help (signed out, refused, a URL that is not a websocket).
    Fatal(Error),
}

/// Everything needed to open a connection; cloned into the connect future so that the
/// session keeps serving its caller while a connect is under way.
#[derive(Clone)]
struct Dialer {
    client: Client,
    url: Url,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    discover: bool,
}

impl Dialer {
    async fn open(self) -> Result<Opened, Failure> {
        let discovered = if self.discover {
            self.discover().await.map_err(rest_failure)?
        } else {
            Vec::new()
        };
        let mut refreshed = false;
        loop {
            let token = self
                .client
                .tokens()
                .ok_or(Failure::Fatal(Error::NotSignedIn))?
                .access_token;
            let mut ws = self.dial().await?;
            let auth = ClientFrame::Auth {
                token: token.clone(),
            };
            let first = tokio::time::timeout(self.connect_timeout, async {
                send_frame(&mut ws, &auth).await?;
                first_frame(&mut ws).await
            })
            .await
            .map_err(|_| {
                Failure::Retry(Error::WebSocket(
                    "the server did not answer the auth frame".into(),
                ))
            })?
            .map_err(Failure::Retry)?;
            match first {
                ServerFrame::Ready {
                    user_id,
                    heartbeat_secs,
                    max_frame_bytes,
                } => {
                    return Ok(Opened {
                        ws,
                        user_id,
                        heartbeat: Duration::from_secs(heartbeat_secs.max(1)),
                        max_frame_bytes,
                        discovered,
                    })
                }
                ServerFrame::Error { code, .. }
                    if code == ErrorCode::Unauthenticated.as_str() && !refreshed =>
                {
                    // Most likely an expired access token: refresh once and try again.
                    refreshed = true;
                    drop(ws);
                    self.client
                        .refresh_after(&token)
                        .await
                        .map_err(rest_failure)?;
                }
                ServerFrame::Error { code, message, .. } => {
                    let error = refused(&code, message);
                    // The server's bad moment (its database, say), not the user's.
                    let transient = matches!(
                        error.code(),
                        Some(
                            ErrorCode::Unavailable
                                | ErrorCode::Internal
                                | ErrorCode::Timeout
                                | ErrorCode::TooManyRequests
                        )
                    );
                    return Err(if transient {
                        Failure::Retry(error)
                    } else {
                        Failure::Fatal(error)
                    });
                }
                _ => {
                    return Err(Failure::Retry(Error::Protocol(
                        "the server's first frame was neither ready nor error".into(),
                    )))
                }
            }
        }
    }

    /// Every thread the user can see now, with its current `seq`.
    async fn discover(&self) -> Result<Vec<(ThreadId, i64)>> {
        let mut found = Vec::new();
        for group in self.client.list_groups().await?.groups {
            match self.client.list_threads(group.id).await {
                Ok(list) => found.extend(list.threads.into_iter().map(|t| (t.id, t.last_seq))),
                // Left or removed since the list was taken.
                Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    async fn dial(&self) -> Result<Socket, Failure> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| Failure::Fatal(Error::WebSocket(e.to_string())))?;
        request.headers_mut().insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("tsunagu-client/", env!("CARGO_PKG_VERSION"))),
        );
        let connector = if self.url.scheme() == "wss" {
            match &self.tls {
                Some(config) => Some(Connector::Rustls(config.clone())),
                None => {
                    ensure_crypto_provider();
                    None
                }
            }
        } else {
            None
        };
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => Err(Failure::Retry(Error::WebSocket(format!(
                "no connection to {} within {:?}",
                self.url, self.connect_timeout
            )))),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(ws_failure(e)),
        }
    }
}

/// tungstenite builds its default TLS configuration with the process-wide rustls
/// provider; with more than one provider compiled in (ring for reqwest, aws-lc-rs
/// elsewhere) there is none until someone installs one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: either way one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn ws_failure(e: WsError) -> Failure {
    match &e {
        WsError::Http(response) => {
            let status = response.status();
            let message = format!("the server refused the websocket upgrade: {status}");
            if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Failure::Fatal(Error::WebSocket(message))
            } else {
                Failure::Retry(Error::WebSocket(message))
            }
        }
        WsError::Url(_) => Failure::Fatal(Error::WebSocket(e.to_string())),
        _ => Failure::Retry(Error::WebSocket(e.to_string())),
    }
}

/// REST failures while connecting: the network and the server's bad moments are worth
/// retrying; an answer that the user may not do this is not.
fn rest_failure(e: Error) -> Failure {
    let transient = match &e {
        Error::Transport(_) | Error::WebSocket(_) | Error::Protocol(_) => true,
        Error::Api { status, .. } => {
            status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
        }
        _ => false,
    };
    if transient {
        Failure::Retry(e)
    } else {
        Failure::Fatal(e)
    }
}

/// An `error` frame as an [`Error`].
fn refused(code: &str, message: String) -> Error {
    match serde_json::from_value::<ErrorCode>(serde_json::Value::String(code.to_owned())) {
        Ok(code) => Error::Refused { code, message },
        Err(_) => Error::Protocol(format!("unknown error code {code:?}: {message}")),
    }
}

async fn send_frame(ws: &mut Socket, frame: &ClientFrame) -> Result<()> {
    let text = serde_json::to_string(frame).map_err(|e| Error::Protocol(e.to_string()))?;
    send_text(ws, text).await
}

async fn send_text(ws: &mut Socket, text: String) -> Result<()> {
    // A peer that stopped reading must not stall the session: treat it as lost.
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(WsMessage::text(text))).await {
        Ok(sent) => sent.map_err(|e| Error::WebSocket(e.to_string())),
        Err(_) => Err(Error::WebSocket("the server stopped taking frames".into())),
    }
}

/// The first protocol frame after `auth`.
async fn first_frame(ws: &mut Socket) -> Result<ServerFrame> {
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                if let Ok(frame) = serde_json::from_str::<ServerFrame>(text.as_str()) {
                    return Ok(frame);
                }
            }
            Some(Ok(WsMessage::Close(frame))) => {
                return Err(Error::WebSocket(describe_close(frame.as_ref())))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Error::WebSocket(e.to_string())),
            None => return Err(Error::WebSocket("the server closed the connection".into())),
        }
    }
}

fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) if !f.reason.is_empty() => format!(
            "the server closed the connection ({}: {})",
            u16::from(f.code),
            f.reason.as_str()
        ),
        Some(f) => format!("the server closed the connection ({})", u16::from(f.code)),
        None => "the server closed the connection".into(),
    }
}

/// The thread an update is about, if it is about one.
fn thread_of(frame: &ServerFrame) -> Option<ThreadId> {
    match frame {
        ServerFrame::MessageCreated { message } | ServerFrame::MessageEdited { message } => {
            Some(message.thread_id)
        }
        ServerFrame::MessageDeleted { thread_id, .. }
        | ServerFrame::ReactionAdded { thread_id, .. }
        | ServerFrame::ReactionRemoved { thread_id, .. }
        | ServerFrame::Receipt { thread_id, .. }
        | ServerFrame::ThreadMemberAdded { thread_id, .. }
        | ServerFrame::ThreadMemberRemoved { thread_id, .. }
        | ServerFrame::Typing { thread_id, .. } => Some(*thread_id),
        _ => None,
    }
}

struct PendingPost {
    /// The serialised `post` frame, sent again as is after a reconnect.
    text: String,
    reply: oneshot::Sender<Result<Message>>,
}

/// How a connection ended.
enum End {
    /// Lost or given up on; reconnect.
    Lost(String),
    /// The caller closed the session.
    Closed(oneshot::Sender<()>),
    /// Nobody holds the session any more.
    Dropped,
    Fatal(Error),
}

/// What woke the connection loop.
enum Step {
    Incoming(Option<Result<WsMessage, WsError>>),
    Command(Option<Command>),
}

/// What happened while waiting without a connection.
enum Offline<T> {
    Done(T),
    Closed(oneshot::Sender<()>),
    Dropped,
    /// The caller asked to reconnect now.
    Hurry,
}

/// The task behind a [`Session`]: owns the socket and the delivery state.
struct Driver {
    dialer: Dialer,
    backoff: Backoff,
    buffer: usize,
    tracker: Tracker,
    /// Events waiting for room in the caller's channel.
    outbox: VecDeque<Result<LiveEvent>>,
    events: mpsc::Sender<Result<LiveEvent>>,
    /// Posts waiting for their `ack`, by `ref` number.
    posts: BTreeMap<u64, PendingPost>,
    next_ref: u64,
    /// Read positions not yet sent.
    reads: BTreeMap<ThreadId, i64>,
    max_frame_bytes: usize,
    /// Messages were turned away because the caller is behind; catch up by resuming.
    overflowed: bool,
    /// Consecutive reconnect attempts since the last healthy connection.
    attempt: u32,
    connected_before: bool,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, first: Opened) {
        let mut opened = first;
        loop {
            let reason = match self.serve(&mut opened, &mut commands).await {
                End::Lost(reason) => reason,
                End::Closed(done) => {
                    close_politely(&mut opened.ws).await;
                    let _ = done.send(());
                    return;
                }
                End::Dropped => return,
                End::Fatal(e) => return self.fail(e, commands).await,
            };
            drop(opened);
            opened = match self.reconnect(reason, &mut commands).await {
                Ok(o) => o,
                Err(End::Closed(done)) => {
                    let _ = done.send(());
                    return;
                }
                Err(End::Fatal(e)) => return self.fail(e, commands).await,
                Err(End::Dropped | End::Lost(_)) => return,
            };
        }
    }

    /// Waits out the backoff and connects again, as often as the policy allows.
    async fn reconnect(
        &mut self,
        mut reason: String,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<Opened, End> {
        loop {
            if let Some(max) = self.backoff.max_attempts {
                if self.attempt >= max {
                    return Err(End::Fatal(Error::WebSocket(format!(
                        "gave up after {max} attempts: {reason}"
                    ))));
                }
            }
            let retry_in = self.backoff.delay(self.attempt);
            self.attempt += 1;
            let event = Ok(LiveEvent::Disconnected {
                reason: reason.clone(),
                attempt: self.attempt,
                retry_in,
            });
            // A caller that is not reading gets the latest attempt, not one per attempt.
            match self.outbox.back_mut() {
                Some(last @ Ok(LiveEvent::Disconnected { .. })) => *last = event,
                _ => self.outbox.push_back(event),
            }
            match self
                .offline(tokio::time::sleep(retry_in), commands, true)
                .await
            {
                Offline::Done(()) | Offline::Hurry => {}
                Offline::Closed(done) => return Err(End::Closed(done)),
                Offline::Dropped => return Err(End::Dropped),
            }
            match self
                .offline(self.dialer.clone().open(), commands, false)
                .await
            {
                Offline::Done(Ok(opened)) => return Ok(opened),
                Offline::Done(Err(Failure::Retry(e))) => reason = e.to_string(),
                Offline::Done(Err(Failure::Fatal(e))) => return Err(End::Fatal(e)),
                Offline::Closed(done) => return Err(End::Closed(done)),
                Offline::Dropped => return Err(End::Dropped),
                // Not offered while connecting: a connect is already under way.
                Offline::Hurry => {}
            }
        }
    }

    /// Drives `work` while keeping the caller served: events flow out, posts and read
    /// positions are queued for the next connection.
    async fn offline<T>(
        &mut self,
        work: impl Future<Output = T>,
        commands: &mut mpsc::Receiver<Command>,
        may_hurry: bool,
    ) -> Offline<T> {
        tokio::pin!(work);
        loop {
            let command = tokio::select! {
                out = &mut work => return Offline::Done(out),
                command = commands.recv() => command,
                permit = self.events.reserve(), if !self.outbox.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.outbox.pop_front() {
                            permit.send(event);
                        }
                        continue;
                    }
                    Err(_) => return Offline::Dropped,
                },
            };
            match command {
                None => return Offline::Dropped,
                Some(Command::Close { done }) => return Offline::Closed(done),
                Some(Command::Reconnect) => {
                    if may_hurry {
                        return Offline::Hurry;
                    }
                }
                Some(command) => self.queue(command),
            }
        }
    }

    /// Serves one authenticated connection until it ends.
    async fn serve(&mut self, opened: &mut Opened, commands: &mut mpsc::Receiver<Command>) -> End {
        for (thread, seq) in opened.discovered.drain(..) {
            self.tracker.baseline(thread, seq);
        }
        self.max_frame_bytes = opened.max_frame_bytes;
        // Whatever was held belongs to the previous connection; the replay brings it again.
        self.tracker.held.clear();
        self.overflowed = false;
        if let Err(e) = self.start(&mut opened.ws).await {
            return End::Lost(e.to_string());
        }
        let silence = opened.heartbeat * 2 + SILENCE_MARGIN;
        let mut deadline = Instant::now() + silence;
        let mut resumed = false;
        loop {
            if self.overflowed && self.outbox.len() <= self.buffer / 2 {
                // Healthy, only behind: reconnect promptly, without growing the backoff.
                self.attempt = 0;
                return End::Lost("catching up after falling behind".into());
            }
            let step = tokio::select! {
                incoming = opened.ws.next() => Step::Incoming(incoming),
                command = commands.recv() => Step::Command(command),
                permit = self.events.reserve(), if !self.outbox.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.outbox.pop_front() {
                            permit.send(event);
                        }
                        continue;
                    }
                    Err(_) => return End::Dropped,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return End::Lost("the server went silent".into());
                }
            };
            let end = match step {
                Step::Incoming(incoming) => {
                    deadline = Instant::now() + silence;
                    match incoming {
                        // Frame types this version does not know are skipped.
                        Some(Ok(WsMessage::Text(text))) => {
                            match serde_json::from_str::<ServerFrame>(text.as_str()) {
                                Ok(frame) => self.on_frame(frame, &mut resumed),
                                Err(_) => None,
                            }
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            Some(End::Lost(describe_close(frame.as_ref())))
                        }
                        Some(Ok(_)) => None,
                        Some(Err(e)) => Some(End::Lost(e.to_string())),
                        None => Some(End::Lost("the connection closed".into())),
                    }
                }
                Step::Command(None) => Some(End::Dropped),
                Step::Command(Some(command)) => self.on_command(command, &mut opened.ws).await,
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// A fresh connection: ask for what was missed, send what is pending.
    async fn start(&mut self, ws: &mut Socket) -> Result<()> {
        send_frame(
            ws,
            &ClientFrame::Resume {
                threads: self.tracker.positions(),
            },
        )
        .await?;
        for post in self.posts.values() {
            send_text(ws, post.text.clone()).await?;
        }
        let reads = std::mem::take(&mut self.reads);
        for (&thread_id, &seq) in &reads {
            if let Err(e) = send_frame(ws, &ClientFrame::Read { thread_id, seq }).await {
                self.reads = reads;
                return Err(e);
            }
        }
        Ok(())
    }

    fn push(&mut self, event: LiveEvent) -> bool {
        if self.outbox.len() >= self.buffer {
            // The caller is behind. Turn messages away from here on; the resume that
            // follows once the caller has caught up brings them again.
            self.overflowed = true;
            return false;
        }
        self.outbox.push_back(Ok(event));
        true
    }

    fn on_frame(&mut self, frame: ServerFrame, resumed: &mut bool) -> Option<End> {
        match frame {
            ServerFrame::MessageCreated { message } => {
                if self.overflowed || self.outbox.len() >= self.buffer {
                    self.overflowed = true;
                    return None;
                }
                for m in self.tracker.accept(message) {
                    self.outbox.push_back(Ok(LiveEvent::Message(m)));
                }
                if *resumed && self.tracker.has_gaps() {
                    // The server fills gaps itself; should one get through, the
                    // database has the messages and a resume asks for them.
                    return Some(End::Lost("a gap in a thread's messages".into()));
                }
            }
            ServerFrame::Resumed { threads } => {
                *resumed = true;
                if self.tracker.has_gaps() {
                    return Some(End::Lost("a gap in a thread's messages".into()));
                }
                if !self.overflowed {
                    self.attempt = 0;
                    let reconnected = std::mem::replace(&mut self.connected_before, true);
                    self.push(LiveEvent::Connected {
                        threads,
                        reconnected,
                    });
                }
            }
            ServerFrame::Ack { reference, message } => {
                if let Some(post) = self.take_post(reference.as_deref()) {
                    let _ = post.reply.send(Ok(message));
                }
            }
            ServerFrame::Error {
                reference: Some(reference),
                code,
                message,
                retry_after_ms,
            } => match self.take_post(Some(&reference)) {
                Some(post) => {
                    let _ = post.reply.send(Err(refused(&code, message)));
                }
                None => {
                    self.push(LiveEvent::Update(ServerFrame::Error {
                        reference: Some(reference),
                        code,
                        message,
                        retry_after_ms,
                    }));
                }
            },
            ServerFrame::Resync { reason } => {
                return Some(End::Lost(format!("the server asked to resync ({reason})")));
            }
            ServerFrame::Ready { .. } | ServerFrame::Pong {} => {}
            other => {
                if let ServerFrame::ThreadCreated { thread } = &other {
                    if self.tracker.follow_all {
                        self.tracker.baseline(thread.id, thread.last_seq);
                    }
                }
                let wanted = thread_of(&other).is_none_or(|t| self.tracker.follows(&t));
                if wanted && !self.overflowed {
                    self.push(LiveEvent::Update(other));
                }
            }
        }
        None
    }

    fn take_post(&mut self, reference: Option<&str>) -> Option<PendingPost> {
        let n = reference?.strip_prefix('p')?.parse::<u64>().ok()?;
        self.posts.remove(&n)
    }

    /// Registers a post; `None` when it was answered locally (too large to send).
    fn register_post(
        &mut self,
        thread_id: ThreadId,
        req: PostMessage,
        reply: oneshot::Sender<Result<Message>>,
    ) -> Option<String> {
        let n = self.next_ref;
        self.next_ref += 1;
        let frame = ClientFrame::Post {
            reference: Some(format!("p{n}")),
            thread_id,
            body: req.body,
            client_msg_id: req.client_msg_id,
            reply_to: req.reply_to,
            mentions: req.mentions,
            attachments: req.attachments,
        };
        let text = match serde_json::to_string(&frame) {
            Ok(text) => text,
            Err(e) => {
                let _ = reply.send(Err(Error::Protocol(e.to_string())));
                return None;
            }
        };
        if text.len() > self.max_frame_bytes {
            // The server would answer without our `ref`: refuse here, as it would.
            let _ = reply.send(Err(Error::Refused {
                code: ErrorCode::FrameTooLarge,
                message: format!("frames are limited to {} bytes", self.max_frame_bytes),
            }));
            return None;
        }
        self.posts.insert(
            n,
            PendingPost {
                text: text.clone(),
                reply,
            },
        );
        Some(text)
    }

    /// A command while disconnected: keep what the next connection must send.
    fn queue(&mut self, command: Command) {
        match command {
            Command::Post {
                thread_id,
                req,
                reply,
            } => {
                let _ = self.register_post(thread_id, req, reply);
            }
            Command::Read { thread_id, seq } => {
                let position = self.reads.entry(thread_id).or_insert(seq);
                *position = (*position).max(seq);
            }
            Command::Typing { .. } | Command::Reconnect | Command::Close { .. } => {}
        }
    }

    /// A command while connected.
    async fn on_command(&mut self, command: Command, ws: &mut Socket) -> Option<End> {
        let sent = match command {
            Command::Post {
                thread_id,
                req,
                reply,
            } => match self.register_post(thread_id, req, reply) {
                Some(text) => send_text(ws, text).await,
                None => Ok(()),
            },
            Command::Read { thread_id, seq } => {
                let sent = send_frame(ws, &ClientFrame::Read { thread_id, seq }).await;
                if sent.is_err() {
                    self.queue(Command::Read { thread_id, seq });
                }
                sent
            }
            Command::Typing { thread_id } => {
                send_frame(ws, &ClientFrame::Typing { thread_id }).await
            }
            Command::Reconnect => return Some(End::Lost("reconnect requested".into())),
            Command::Close { done } => return Some(End::Closed(done)),
        };
        // A post that did not go out stays pending and is sent after reconnecting.
        sent.err().map(|e| End::Lost(e.to_string()))
    }

    /// Reports `error` after everything already received, then ends.
    async fn fail(mut self, error: Error, commands: mpsc::Receiver<Command>) {
        // New commands fail at once rather than wait on a session that is ending.
        drop(commands);
        self.posts.clear();
        self.outbox.push_back(Err(error));
        while let Some(event) = self.outbox.pop_front() {
            if self.events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Sends a close frame and waits briefly for the server's, as the protocol asks.
async fn close_politely(ws: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(thread: ThreadId, seq: i64) -> Message {
        Message {
            id: tsunagu_protocol::ids::MessageId::new(),
            thread_id: thread,
            seq,
            author_id: UserId::new(),
            body: format!("m{seq}"),
            client_msg_id: format!("c{seq}"),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
            reactions: Vec::new(),
            created_at: "2025-01-01T00:00:00Z".into(),
            edited_at: None,
            deleted: false,
            read_count: 0,
        }
    }

    fn seqs(messages: Vec<Message>) -> Vec<i64> {
        messages.into_iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_replay_overlapping_the_live_stream_is_delivered_once_in_order() {
        let t = ThreadId::new();
        let mut tracker = Tracker::default();
        tracker.baseline(t, 3);
        // Live 6 arrives before the replay of 4..=6 (the resume race), then live 7.
        assert!(seqs(tracker.accept(message(t, 6))).is_empty());
        assert!(tracker.has_gaps());
        assert_eq!(seqs(tracker.accept(message(t, 4))), vec![4]);
        assert_eq!(seqs(tracker.accept(message(t, 5))), vec![5, 6]);
        assert!(!tracker.has_gaps());
        assert!(seqs(tracker.accept(message(t, 6))).is_empty());
        assert!(seqs(tracker.accept(message(t, 3))).is_empty());
        assert_eq!(seqs(tracker.accept(message(t, 7))), vec![7]);
        assert_eq!(tracker.positions()[&t], 7);
    }

    #[test]
    fn threads_not_followed_are_ignored_unless_following_all() {
        let followed = ThreadId::new();
        let other = ThreadId::new();
        let mut only = Tracker::default();
        only.baseline(followed, 0);
        assert!(seqs(only.accept(message(other, 1))).is_empty());
        assert!(!only.follows(&other));
        assert_eq!(seqs(only.accept(message(followed, 1))), vec![1]);

        let mut all = Tracker {
            follow_all: true,
            ..Tracker::default()
        };
        // A thread first seen live is followed from that message on.
        assert_eq!(seqs(all.accept(message(other, 9))), vec![9]);
        assert!(seqs(all.accept(message(other, 9))).is_empty());
        assert_eq!(all.positions()[&other], 9);
    }

    #[test]
    fn a_baseline_never_moves_an_existing_position() {
        let t = ThreadId::new();
        let mut tracker = Tracker::default();
        tracker.baseline(t, 5);
        tracker.baseline(t, 2);
        assert_eq!(tracker.positions()[&t], 5);
    }

    #[test]
    fn backoff_grows_to_its_bound_and_jitter_only_shortens() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            factor: 2.0,
            jitter: 0.5,
            max_attempts: None,
        };
        for attempt in 0..100 {
            let full = (0.1 * 2f64.powi(attempt.min(60) as i32)).min(2.0);
            let d = backoff.delay(attempt).as_secs_f64();
            assert!(d <= full + 1e-9, "attempt {attempt}: {d} > {full}");
            assert!(d >= full * 0.5 - 1e-9, "attempt {attempt}: {d} < {full}/2");
        }
        let none = Backoff {
            jitter: 0.0,
            ..backoff.clone()
        };
        assert_eq!(none.delay(0), Duration::from_millis(100));
        assert_eq!(none.delay(3), Duration::from_millis(800));
        assert_eq!(none.delay(u32::MAX), Duration::from_secs(2));
        let odd = Backoff {
            initial: Duration::ZERO,
            factor: f64::NAN,
            jitter: f64::NAN,
            ..backoff
        };
        assert_eq!(odd.delay(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn error_frames_become_typed_errors() {
        match refused("not_found", "no such thread".into()) {
            Error::Refused { code, message } => {
                assert_eq!(code, ErrorCode::NotFound);
                assert_eq!(message, "no such thread");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            refused("brand_new_code", String::new()),
            Error::Protocol(_)
        ));
    }
}
