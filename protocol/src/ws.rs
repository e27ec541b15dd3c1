//! Websocket frames (`GET /api/v1/ws`). Every frame is a JSON text frame with a `type`.
//!
//! The client authenticates in its first frame (tokens never go in URLs), then sends
//! `resume` with the last `seq` it holds per thread and receives exactly what it missed,
//! followed by live events. See `docs/protocol.md` for examples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, MessageId, ThreadId, UserId};
use crate::messaging::{Message, Thread};

/// Frames a client sends.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    /// Must be the first frame.
    #[serde(rename = "auth")]
    Auth { token: String },
    /// Replays, per thread, every message with `seq` greater than the given one, then
    /// answers `resumed`. Threads the caller cannot see are ignored silently.
    #[serde(rename = "resume")]
    Resume { threads: BTreeMap<ThreadId, i64> },
    /// Posts a message; answered by `ack` (with the assigned `seq`) or `error`, both
    /// carrying the same `ref`.
    #[serde(rename = "post")]
    Post {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        thread_id: ThreadId,
        body: String,
        client_msg_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<MessageId>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<UserId>,
        /// File ids uploaded to the same thread.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<String>,
    },
    /// Moves the caller's read position.
    #[serde(rename = "read")]
    Read { thread_id: ThreadId, seq: i64 },
    /// "I am typing" in a thread; relayed to the thread's other members, not stored.
    #[serde(rename = "typing")]
    Typing { thread_id: ThreadId },
    /// Application-level heartbeat; answered by `pong`.
    #[serde(rename = "ping")]
    Ping {},
}

impl std::fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientFrame::Auth { .. } => f.write_str("Auth { <redacted> }"),
            ClientFrame::Resume { threads } => {
                f.debug_struct("Resume").field("threads", threads).finish()
            }
            ClientFrame::Post { thread_id, .. } => f
                .debug_struct("Post")
                .field("thread_id", thread_id)
                .finish_non_exhaustive(),
            ClientFrame::Read { thread_id, seq } => f
                .debug_struct("Read")
                .field("thread_id", thread_id)
                .field("seq", seq)
                .finish(),
            ClientFrame::Typing { thread_id } => f
                .debug_struct("Typing")
                .field("thread_id", thread_id)
                .finish(),
            ClientFrame::Ping {} => f.write_str("Ping"),
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    /// Authentication succeeded.
    #[serde(rename = "ready")]
    Ready {
        user_id: UserId,
        /// The server pings at this interval; a silent client is closed after twice it.
        heartbeat_secs: u64,
        /// Largest frame the server accepts.
        max_frame_bytes: usize,
    },
    /// Replay finished: the last `seq` now delivered per resumed thread.
    #[serde(rename = "resumed")]
    Resumed { threads: BTreeMap<ThreadId, i64> },
    #[serde(rename = "message.created")]
    MessageCreated { message: Message },
    #[serde(rename = "message.edited")]
    MessageEdited { message: Message },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        thread_id: ThreadId,
        message_id: MessageId,
        seq: i64,
    },
    #[serde(rename = "reaction.added")]
    ReactionAdded {
        thread_id: ThreadId,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
    },
    #[serde(rename = "reaction.removed")]
    ReactionRemoved {
        thread_id: ThreadId,
        message_id: MessageId,
        user_id: UserId,
        emoji: String,
    },
    /// Someone's read position in a thread moved (既読).
    #[serde(rename = "receipt")]
    Receipt {
        thread_id: ThreadId,
        user_id: UserId,
        seq: i64,
    },
    #[serde(rename = "member.added")]
    MemberAdded { group_id: GroupId, user_id: UserId },
    /// Sent to the group and to the removed user, whose access ends with it.
    #[serde(rename = "member.removed")]
    MemberRemoved { group_id: GroupId, user_id: UserId },
    /// A thread the receiver can now see (a new 内緒話 including them).
    #[serde(rename = "thread.created")]
    ThreadCreated { thread: Thread },
    #[serde(rename = "thread.member_added")]
    ThreadMemberAdded {
        thread_id: ThreadId,
        group_id: GroupId,
        user_id: UserId,
    },
    #[serde(rename = "thread.member_removed")]
    ThreadMemberRemoved {
        thread_id: ThreadId,
        group_id: GroupId,
        user_id: UserId,
    },
    #[serde(rename = "typing")]
    Typing {
        thread_id: ThreadId,
        user_id: UserId,
    },
    /// The answer to a `post`.
    #[serde(rename = "ack")]
    Ack {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        message: Message,
    },
    /// A frame could not be handled; the connection stays open unless followed by a close.
    #[serde(rename = "error")]
    Error {
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
        code: String,
        message: String,
        /// With `too_many_requests`: how long to wait before trying again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The server could not keep up with this connection (or lost events for it): the
    /// client must reconnect and `resume`. The server closes right after.
    #[serde(rename = "resync")]
    Resync { reason: String },
    #[serde(rename = "pong")]
    Pong {},
}
