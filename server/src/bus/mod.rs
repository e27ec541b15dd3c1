//! Fan-out of committed changes to live connections.
//!
//! The database is the log; the bus is only a hint. An event is published after its
//! transaction commits, and a subscriber that sees a `seq` gap (or lags behind the bus)
//! recovers from the database, so losing a bus event delays delivery but never loses
//! a message. The in-process implementation serves one node; a cross-node one (NATS)
//! implements the same trait.

use std::sync::Arc;

use tokio::sync::broadcast;
use tsunagu_protocol::ws::ServerFrame;

/// Who may receive an event. Connections decide with the domain's visibility snapshot
/// (`domain::visibility::VisibleSet`), never on their own.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// Members of this thread's audience (group or 内緒話 member set).
    pub thread_id: Option<String>,
    /// Members of this group (for group-level events).
    pub group_id: Option<String>,
    /// These users, whatever their membership (e.g. the member who was just removed).
    pub users: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// A frame to deliver as is.
    Frame(Box<ServerFrame>),
    /// The user's group or thread memberships changed: their connections must reload
    /// what they can see before delivering anything else.
    AccessChanged { user_id: String },
    /// Sessions ended (logout, deactivation, refresh-token theft): close their sockets.
    SessionsRevoked {
        user_id: String,
        session_id: Option<String>,
    },
}

impl Payload {
    pub fn frame(frame: ServerFrame) -> Self {
        Payload::Frame(Box::new(frame))
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub region_id: String,
    pub audience: Audience,
    pub payload: Payload,
}

/// The fan-out interface.
pub trait Bus: Send + Sync + 'static {
    /// Hands an event to every subscriber on every node. Never blocks; never fails the
    /// caller's request (the change is already committed).
    fn publish(&self, event: Event);
    /// A stream of every event published from now on. A receiver that falls more than
    /// the bus capacity behind gets `Lagged` and must resync from the database.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
}

/// In-process fan-out over a bounded tokio broadcast channel.
pub struct LocalBus {
    tx: broadcast::Sender<Arc<Event>>,
}

impl LocalBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(16));
        LocalBus { tx }
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: Event) {
        // No receivers is fine: nobody is connected.
        let _ = self.tx.send(Arc::new(event));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
