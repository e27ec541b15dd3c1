//! Fan-out of committed changes to live connections.
//!
//! The database is the log; the bus is only a hint. An event is published after its
//! transaction commits, and a subscriber that sees a `seq` gap (or lags behind) recovers
//! from the database, so losing a bus event delays delivery but never loses a message.
//!
//! Two halves:
//! - [`hub::Hub`], this node's subscriber registry: connections register the threads,
//!   groups and user they watch, and an event wakes only the connections in its
//!   audience (a post costs work for its audience, not for everyone online).
//! - The [`Bus`], which carries events between nodes: [`LocalBus`] for one process,
//!   [`nats::NatsBus`] for a cluster. Either way an event reaches the local hub at once;
//!   the NATS bus also sends it to the other nodes' hubs.

pub mod hub;
pub mod nats;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use tsunagu_protocol::ws::ServerFrame;

pub use hub::{Hub, Subscription};

/// Who may receive an event. Connections decide with the domain's visibility snapshot
/// (`domain::visibility::VisibleSet`), never on their own; the hub uses the same keys
/// only to route (to wake no connection that could not admit the event).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Audience {
    /// Members of this thread's audience (group or 内緒話 member set).
    pub thread_id: Option<String>,
    /// Members of this group (for group-level events).
    pub group_id: Option<String>,
    /// These users, whatever their membership (e.g. the member who was just removed).
    pub users: Vec<String>,
}

/// A server frame serialised once: every recipient shares the same bytes.
#[derive(Debug, Clone)]
pub struct LiveFrame {
    pub kind: FrameKind,
    pub text: Utf8Bytes,
}

/// What a connection needs to know about a frame without parsing it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum FrameKind {
    /// `message.created`: delivered in `seq` order, gap-filled from the database.
    Message { thread_id: String, seq: i64 },
    /// `typing`: not echoed to the typist.
    Typing { user_id: String },
    /// Anything else, delivered as is.
    Other,
}

impl LiveFrame {
    pub fn new(frame: &ServerFrame) -> Self {
        let kind = match frame {
            ServerFrame::MessageCreated { message } => FrameKind::Message {
                thread_id: message.thread_id.to_string(),
                seq: message.seq,
            },
            ServerFrame::Typing { user_id, .. } => FrameKind::Typing {
                user_id: user_id.to_string(),
            },
            _ => FrameKind::Other,
        };
        LiveFrame {
            kind,
            text: encode(frame),
        }
    }
}

/// Serialises a server frame for the socket.
pub fn encode(frame: &ServerFrame) -> Utf8Bytes {
    match serde_json::to_string(frame) {
        Ok(s) => s.into(),
        Err(_) => r#"{"type":"error","code":"internal","message":"encoding"}"#.into(),
    }
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// A frame to deliver as is.
    Frame(Arc<LiveFrame>),
    /// The user's group or thread memberships changed: their connections must reload
    /// what they can see before delivering anything else.
    AccessChanged { user_id: String },
    /// Sessions ended (logout, deactivation, refresh-token theft): close their sockets.
    SessionsRevoked {
        user_id: String,
        session_id: Option<String>,
    },
    /// This node may have missed events (the cluster bus was away): every connection
    /// checks its session, reloads what it can see and fills gaps from the database.
    CatchUp,
}

impl Payload {
    pub fn frame(frame: ServerFrame) -> Self {
        Payload::Frame(Arc::new(LiveFrame::new(&frame)))
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub region_id: String,
    pub audience: Audience,
    pub payload: Payload,
}

/// How the cluster link is doing, for `/readyz` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusHealth {
    /// One process: nothing to lose.
    Local,
    /// Connected to the cluster bus.
    Connected,
    /// The cluster bus is away: this node serves its own clients; others' posts reach
    /// them by gap fill once it returns.
    Degraded,
}

impl BusHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            BusHealth::Local => "local",
            BusHealth::Connected => "connected",
            BusHealth::Degraded => "degraded",
        }
    }
}

/// The fan-out interface.
pub trait Bus: Send + Sync + 'static {
    /// Hands an event to this node's hub and to every other node. Never blocks; never
    /// fails the caller's request (the change is already committed).
    fn publish(&self, event: Event);
    /// This node's subscriber registry.
    fn hub(&self) -> &Arc<Hub>;
    fn health(&self) -> BusHealth;
    /// Waits (bounded) until published events have left this process: a shell command
    /// calls it before exiting so running nodes hear what it did.
    fn flush(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// In-process fan-out: the hub alone.
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(inbox_capacity: usize) -> Self {
        LocalBus {
            hub: Arc::new(Hub::new(inbox_capacity)),
        }
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: Event) {
        self.hub.deliver(Arc::new(event));
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn health(&self) -> BusHealth {
        BusHealth::Local
    }

    fn flush(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}
