//! Messages: posting (idempotent, gap-free `seq`), paging, edits with history,
//! tombstone deletes, reactions and read receipts (既読).

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;

use tsunagu_protocol::apps::Scope;
use tsunagu_protocol::ids::{MessageId, ThreadId, UserId};
use tsunagu_protocol::messaging::{
    EditMessage, Message, MessageEditRecord, MessageHistory, MessagePage, PostMessage, Reaction,
    ReadState, Reader, Readers,
};
use tsunagu_protocol::ws::ServerFrame;

use super::access::Member;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::visibility::ThreadReader;
use super::{commit, convert, search, validate};
use crate::audit::RequestMeta;
use crate::bus::{Audience, Payload};
use crate::clock::{now_ms, rfc3339};
use crate::store::messages::{self, MessageRow};
use crate::store::threads;
use crate::store::Conn;

/// What one post did inside its batch's transaction.
pub(super) enum Posted {
    /// Stored; published once the batch commits.
    New(Message, Box<ThreadReader>),
    /// A retry: the original message, nothing stored.
    Existing(Message),
}

impl Posted {
    /// `(thread_id, author_id, seq)` of a stored post.
    pub(super) fn read_position(&self) -> Option<(String, String, i64)> {
        match self {
            Posted::New(m, _) => Some((m.thread_id.to_string(), m.author_id.to_string(), m.seq)),
            Posted::Existing(_) => None,
        }
    }
}

/// Largest page of messages one call returns.
pub const MAX_PAGE: i64 = 200;
const DEFAULT_PAGE: i64 = 50;

/// Where to page from: `after` for catching up (ascending), `before` for scrolling back.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageQuery {
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: Option<i64>,
}

fn check_client_msg_id(id: &str) -> Result<()> {
    let ok = (1..=64).contains(&id.chars().count()) && !id.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(DomainError::Invalid(
            "client_msg_id must be 1 to 64 characters".into(),
        ))
    }
}

fn check_emoji(e: &str) -> Result<String> {
    let ok = (1..=16).contains(&e.chars().count())
        && !e.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(e.to_owned())
    } else {
        Err(DomainError::Invalid(
            "emoji must be 1 to 16 characters without spaces".into(),
        ))
    }
}

/// Posting allowance per user, so one runaway client cannot flood a thread.
type PostAllowance = governor::DefaultKeyedRateLimiter<String>;

/// Posting, the timeline, edits, reactions, receipts and typing.
#[derive(Clone)]
pub struct Messages {
    pub(super) shared: Shared,
    /// Longest message body, in characters.
    max_message_chars: usize,
    posts: Arc<PostAllowance>,
    /// The queue in front of the post committers (group commit).
    pub(super) commit: Arc<commit::GroupCommit>,
}

impl Messages {
    pub(super) fn new(shared: Shared, settings: &super::DomainSettings) -> Self {
        let quota = governor::Quota::per_minute(
            NonZeroU32::new(settings.posts_per_minute).unwrap_or(NonZeroU32::MIN),
        )
        .allow_burst(NonZeroU32::new(settings.posts_burst).unwrap_or(NonZeroU32::MIN));
        Messages {
            shared,
            max_message_chars: settings.max_message_chars,
            posts: Arc::new(governor::RateLimiter::keyed(quota)),
            commit: Arc::default(),
        }
    }

    /// Spends one post of `user_id`'s allowance.
    fn spend_post(&self, user_id: &str) -> Result<()> {
        use governor::clock::Clock;
        self.posts
            .check_key(&user_id.to_owned())
            .map_err(|not_until| DomainError::Throttled {
                retry_after_secs: not_until
                    .wait_time_from(self.posts.clock().now())
                    .as_secs()
                    .max(1),
            })
    }
}

impl Shared {
    /// Messages as the caller sees them: reactions and 既読 counts (how many of the
    /// thread's current members other than the author have read up to each message).
    pub(super) async fn wire_messages(
        &self,
        conn: &mut Conn,
        reader: &ThreadReader,
        rows: Vec<MessageRow>,
    ) -> Result<Vec<Message>> {
        let thread = &reader.thread;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let mut reactions: HashMap<String, BTreeMap<String, Vec<UserId>>> = HashMap::new();
        for (message_id, emoji, user_id) in
            messages::reactions_in_range(conn, &thread.id, first.seq, last.seq).await?
        {
            reactions
                .entry(message_id)
                .or_default()
                .entry(emoji)
                .or_default()
                .push(convert::id(&user_id)?);
        }
        let receipts = threads::audience_receipts(conn, reader).await?;
        rows.into_iter()
            .map(|row| {
                let read_count = receipts
                    .iter()
                    .filter(|r| r.user_id != row.author_id && r.last_read_seq >= row.seq)
                    .count() as u64;
                let reactions = reactions
                    .remove(&row.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(emoji, user_ids)| Reaction { emoji, user_ids })
                    .collect();
                wire_message(&row, reactions, read_count)
            })
            .collect()
    }
}

impl Messages {
    /// Posts a message. The `seq` is taken in the same transaction that stores it, so
    /// seqs are gap-free and the answer comes only after commit. A retry with the same
    /// `client_msg_id` returns the original message (`false`: nothing new was stored).
    /// Posts that arrive together share one transaction (`domain::commit`).
    pub async fn post_message(
        &self,
        member: &Member,
        thread_id: ThreadId,
        mut req: PostMessage,
        _meta: &RequestMeta,
    ) -> Result<(Message, bool)> {
        // REST checks the route's scope too; the websocket's frames only meet this.
        member.session().require(Scope::MessagesWrite)?;
        check_client_msg_id(&req.client_msg_id)?;
        // Checked (and cleaned) once, here, before the post queues for a transaction.
        req.body = validate::text("body", &req.body, self.max_message_chars)?;
        if req.attachments.len() > 20 {
            return Err(DomainError::Invalid("at most 20 attachments".into()));
        }
        if req.mentions.len() > 100 {
            return Err(DomainError::Invalid("too many mentions".into()));
        }
        self.spend_post(&member.session().user_id().to_string())?;
        self.commit_post(member.clone(), thread_id, req).await
    }
}

impl Shared {
    /// One post inside the (shared) transaction `tx`, whose body, id and list sizes
    /// [`Messages::post_message`] has already checked. Nothing here commits; the author's
    /// read position is moved by the caller (once per batch).
    ///
    /// Every check reads before anything is written, so a refused post leaves the
    /// transaction untouched and the other posts of its batch stand without savepoints;
    /// the common path is four statements (the visibility check, the `seq`, the row,
    /// the author's read position). A retry of a stored `client_msg_id` is found by
    /// the insert's conflict, or — when a check would now refuse it (the group was
    /// archived since, say) — by looking it up before refusing: a retry always gets
    /// the original.
    pub(super) async fn post_in_tx(
        &self,
        tx: &mut Conn,
        member: &Member,
        thread_id: &ThreadId,
        req: &PostMessage,
    ) -> Result<Posted> {
        let author = member.session().user_id().to_string();
        let plain = req.reply_to.is_none() && req.mentions.is_empty() && req.attachments.is_empty();
        // A plain post (most are) checks visibility and takes its seq in one statement.
        let fast = if plain {
            threads::next_seq_if_postable(
                tx,
                &member.session().region_id().to_string(),
                &thread_id.to_string(),
                &author,
            )
            .await?
        } else {
            None
        };
        let (reader, seq, mentions, attachments) = match fast {
            Some(thread) => {
                let seq = thread.last_seq;
                let reader = ThreadReader::admitted(member, thread, false)?;
                (reader, seq, Vec::new(), Vec::new())
            }
            None => {
                // The full path: says why a post is refused, and handles reply_to,
                // mentions and attachments.
                let reader = self.thread_reader(tx, member, thread_id).await?;
                let (mentions, attachments) = match self.post_checks(tx, &reader, req).await {
                    Ok(checked) => checked,
                    Err(refusal) => {
                        return match self.existing_post(tx, &reader, &author, req).await? {
                            Some(message) => Ok(Posted::Existing(message)),
                            None => Err(refusal),
                        }
                    }
                };
                let seq = threads::next_seq(tx, &reader.thread.id).await?;
                (reader, seq, mentions, attachments)
            }
        };
        let row = MessageRow {
            id: MessageId::new().to_string(),
            thread_id: reader.thread.id.clone(),
            seq,
            author_id: author.clone(),
            client_msg_id: req.client_msg_id.clone(),
            body: req.body.clone(),
            reply_to: req.reply_to.map(|r| r.to_string()),
            mentions: serde_json::to_string(&mentions).unwrap_or_else(|_| "[]".into()),
            attachments: serde_json::to_string(&attachments).unwrap_or_else(|_| "[]".into()),
            created_at: now_ms(),
            edited_at: None,
            deleted_at: None,
        };
        if !messages::insert(tx, &row).await? {
            // Already stored (a retry, or a concurrent one on another node that won):
            // give the `seq` back — this transaction holds the thread's row (SQLite:
            // the write lock; PostgreSQL: the row lock taken by `next_seq`), so nobody
            // took a later one — and answer with the original.
            threads::give_back_seq(tx, &reader.thread.id, seq).await?;
            return match self.existing_post(tx, &reader, &author, req).await? {
                Some(message) => Ok(Posted::Existing(message)),
                None => Err(DomainError::Internal("idempotent post vanished".into())),
            };
        }
        // Findable from the same commit on.
        let kinds = if attachments.is_empty() {
            Vec::new()
        } else {
            crate::store::files::kinds_of(tx, &row.attachments_list()).await?
        };
        search::index::add_message(
            tx,
            &member.session().region_id().to_string(),
            &reader.thread.group_id,
            &row,
            &kinds,
        )
        .await?;
        // The author has read the thread up to their own message: moved for the whole
        // batch at once, before it commits (`domain::commit`).
        let message = wire_message(&row, Vec::new(), 0)?;
        Ok(Posted::New(message, Box::new(reader)))
    }

    /// The checks of a post that need the database; reads only. Returns the mentions
    /// and attachments, sorted and without duplicates.
    async fn post_checks(
        &self,
        tx: &mut Conn,
        reader: &ThreadReader,
        req: &PostMessage,
    ) -> Result<(Vec<String>, Vec<String>)> {
        if reader.archived {
            return Err(DomainError::Conflict("the group is archived".into()));
        }
        if let Some(reply_to) = &req.reply_to {
            if messages::get(tx, &reader.thread.id, &reply_to.to_string())
                .await?
                .is_none()
            {
                return Err(DomainError::Invalid(
                    "reply_to is not a message of this thread".into(),
                ));
            }
        }
        let mut mentions: Vec<String> = req.mentions.iter().map(|u| u.to_string()).collect();
        mentions.sort();
        mentions.dedup();
        for m in &mentions {
            if threads::access(tx, &reader.thread_region(), &reader.thread.id, m)
                .await?
                .is_none()
            {
                return Err(DomainError::Invalid(
                    "mentions must be members of the thread".into(),
                ));
            }
        }
        let mut attachments = req.attachments.clone();
        attachments.sort();
        attachments.dedup();
        // Attachments must be live files uploaded into this very thread: a file of a
        // 内緒話 can never be attached to the main timeline.
        if !attachments.is_empty()
            && messages::attachment_files_in_thread(tx, &reader.thread.id, &attachments).await?
                != attachments.len()
        {
            return Err(DomainError::Invalid(
                "attachments must be files uploaded to this thread".into(),
            ));
        }
        Ok((mentions, attachments))
    }

    /// The message the author already stored with this `client_msg_id`, if any.
    async fn existing_post(
        &self,
        tx: &mut Conn,
        reader: &ThreadReader,
        author: &str,
        req: &PostMessage,
    ) -> Result<Option<Message>> {
        let Some(row) =
            messages::find_by_client_id(tx, &reader.thread.id, author, &req.client_msg_id).await?
        else {
            return Ok(None);
        };
        Ok(self.wire_messages(tx, reader, vec![row]).await?.pop())
    }

    /// Publishes a committed post to its thread's audience.
    pub(super) fn publish_post(&self, reader: &ThreadReader, message: &Message) {
        self.publish_thread(
            reader,
            Payload::frame(ServerFrame::MessageCreated {
                message: message.clone(),
            }),
        );
    }
}

impl Messages {
    /// A page of the timeline. See [`PageQuery`].
    pub async fn list_messages(
        &self,
        member: &Member,
        thread_id: ThreadId,
        q: PageQuery,
    ) -> Result<MessagePage> {
        let limit = q.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(DomainError::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        if q.after_seq.is_some_and(|s| s < 0) || q.before_seq.is_some_and(|s| s < 0) {
            return Err(DomainError::Invalid(
                "seq bounds must not be negative".into(),
            ));
        }
        let mut conn = self.shared.store().conn().await?;
        let reader = self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await?;
        let mut rows = messages::page(
            &mut conn,
            &reader.thread.id,
            q.after_seq,
            q.before_seq,
            limit + 1,
        )
        .await?;
        let has_more = rows.len() as i64 > limit;
        if has_more {
            if q.after_seq.is_some() {
                rows.pop();
            } else {
                rows.remove(0);
            }
        }
        let messages = self.shared.wire_messages(&mut conn, &reader, rows).await?;
        Ok(MessagePage { messages, has_more })
    }

    /// Every message after `after_seq`, for a reconnecting socket, in pages.
    pub async fn messages_after(
        &self,
        member: &Member,
        thread_id: ThreadId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let mut conn = self.shared.store().conn().await?;
        let reader = self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await?;
        let rows = messages::page(
            &mut conn,
            &reader.thread.id,
            Some(after_seq.max(0)),
            None,
            limit.clamp(1, MAX_PAGE),
        )
        .await?;
        self.shared.wire_messages(&mut conn, &reader, rows).await
    }

    async fn own_message(
        &self,
        conn: &mut Conn,
        reader: &ThreadReader,
        message_id: &MessageId,
    ) -> Result<MessageRow> {
        let row = messages::get(conn, &reader.thread.id, &message_id.to_string())
            .await?
            .ok_or(DomainError::NotFound("message"))?;
        if row.author_id != reader.member.session().user_id().to_string() {
            return Err(DomainError::Forbidden(
                "only the author can change a message",
            ));
        }
        if row.deleted_at.is_some() {
            return Err(DomainError::Conflict("the message was deleted".into()));
        }
        if reader.archived {
            return Err(DomainError::Conflict("the group is archived".into()));
        }
        Ok(row)
    }

    /// Edits the caller's own message; the previous text is kept in its history.
    pub async fn edit_message(
        &self,
        member: &Member,
        thread_id: ThreadId,
        message_id: MessageId,
        req: EditMessage,
    ) -> Result<Message> {
        let body = validate::text("body", &req.body, self.max_message_chars)?;
        let mut tx = self.shared.store().begin().await?;
        let reader = self
            .shared
            .thread_reader(&mut tx, member, &thread_id)
            .await?;
        let mut row = self.own_message(&mut tx, &reader, &message_id).await?;
        if row.body == body {
            return Ok(self
                .shared
                .wire_messages(&mut tx, &reader, vec![row])
                .await?
                .remove(0));
        }
        let now = now_ms();
        messages::add_edit(
            &mut tx,
            &row.id,
            &row.body,
            row.edited_at.unwrap_or(row.created_at),
        )
        .await?;
        row.body = body;
        row.edited_at = Some(now);
        messages::update_body(&mut tx, &row).await?;
        search::index::set_text(
            &mut tx,
            &row.id,
            &search::normalize::normalize(&row.body),
            None,
        )
        .await?;
        let message = self
            .shared
            .wire_messages(&mut tx, &reader, vec![row])
            .await?
            .remove(0);
        tx.commit().await?;
        self.shared.publish_thread(
            &reader,
            Payload::frame(ServerFrame::MessageEdited {
                message: message.clone(),
            }),
        );
        Ok(message)
    }

    /// Deletes the caller's own message: a tombstone keeps its place (`seq`) in the
    /// timeline; its text and edit history are gone.
    pub async fn delete_message(
        &self,
        member: &Member,
        thread_id: ThreadId,
        message_id: MessageId,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let reader = self
            .shared
            .thread_reader(&mut tx, member, &thread_id)
            .await?;
        let mut row = self.own_message(&mut tx, &reader, &message_id).await?;
        row.body = String::new();
        row.mentions = "[]".into();
        row.deleted_at = Some(now_ms());
        messages::update_body(&mut tx, &row).await?;
        messages::delete_edits(&mut tx, &row.id).await?;
        search::index::remove(&mut tx, &row.id).await?;
        tx.commit().await?;
        self.shared.publish_thread(
            &reader,
            Payload::frame(ServerFrame::MessageDeleted {
                thread_id,
                message_id,
                seq: row.seq,
            }),
        );
        Ok(())
    }

    /// Earlier versions of a message, for the thread's members.
    pub async fn message_history(
        &self,
        member: &Member,
        thread_id: ThreadId,
        message_id: MessageId,
    ) -> Result<MessageHistory> {
        let mut conn = self.shared.store().conn().await?;
        let reader = self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await?;
        let row = messages::get(&mut conn, &reader.thread.id, &message_id.to_string())
            .await?
            .ok_or(DomainError::NotFound("message"))?;
        let edits = messages::edits(&mut conn, &row.id)
            .await?
            .into_iter()
            .map(|(version, body, at)| MessageEditRecord {
                version,
                body,
                edited_at: rfc3339(at),
            })
            .collect();
        Ok(MessageHistory { edits })
    }

    /// Adds (`add`) or removes a reaction of the caller.
    pub async fn react(
        &self,
        member: &Member,
        thread_id: ThreadId,
        message_id: MessageId,
        emoji: &str,
        add: bool,
    ) -> Result<()> {
        let emoji = check_emoji(emoji)?;
        let mut tx = self.shared.store().begin().await?;
        let reader = self
            .shared
            .thread_reader(&mut tx, member, &thread_id)
            .await?;
        let row = messages::get(&mut tx, &reader.thread.id, &message_id.to_string())
            .await?
            .filter(|m| m.deleted_at.is_none())
            .ok_or(DomainError::NotFound("message"))?;
        let me = member.session().user_id();
        let changed = if add {
            messages::add_reaction(&mut tx, &row.id, &me.to_string(), &emoji, now_ms()).await?
        } else {
            messages::remove_reaction(&mut tx, &row.id, &me.to_string(), &emoji).await?
        };
        tx.commit().await?;
        if changed {
            let frame = if add {
                ServerFrame::ReactionAdded {
                    thread_id,
                    message_id,
                    user_id: me,
                    emoji,
                }
            } else {
                ServerFrame::ReactionRemoved {
                    thread_id,
                    message_id,
                    user_id: me,
                    emoji,
                }
            };
            self.shared.publish_thread(&reader, Payload::frame(frame));
        }
        Ok(())
    }

    /// Moves the caller's read position forward to `seq` (never back, never past the
    /// last message).
    pub async fn mark_read(
        &self,
        member: &Member,
        thread_id: ThreadId,
        seq: i64,
    ) -> Result<ReadState> {
        member.session().require(Scope::MessagesWrite)?;
        if seq < 0 {
            return Err(DomainError::Invalid("seq must not be negative".into()));
        }
        let mut tx = self.shared.store().begin().await?;
        let reader = self
            .shared
            .thread_reader(&mut tx, member, &thread_id)
            .await?;
        let me = member.session().user_id();
        let before = threads::last_read(&mut tx, &reader.thread.id, &me.to_string()).await?;
        let target = seq.min(reader.thread.last_seq);
        let after = threads::mark_read(
            &mut tx,
            &reader.thread.id,
            &me.to_string(),
            target,
            now_ms(),
        )
        .await?;
        let unread =
            threads::unread_count(&mut tx, &reader.thread.id, &me.to_string(), after).await?;
        tx.commit().await?;
        if after > before {
            self.shared.publish_thread(
                &reader,
                Payload::frame(ServerFrame::Receipt {
                    thread_id,
                    user_id: me,
                    seq: after,
                }),
            );
        }
        Ok(ReadState {
            thread_id,
            last_read_seq: after,
            unread_count: unread.max(0) as u64,
        })
    }

    /// Who of the thread's current members has read a message (既読一覧).
    pub async fn readers(
        &self,
        member: &Member,
        thread_id: ThreadId,
        message_id: MessageId,
    ) -> Result<Readers> {
        let mut conn = self.shared.store().conn().await?;
        let reader = self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await?;
        let row = messages::get(&mut conn, &reader.thread.id, &message_id.to_string())
            .await?
            .ok_or(DomainError::NotFound("message"))?;
        let readers = threads::audience_receipts(&mut conn, &reader)
            .await?
            .into_iter()
            .filter(|r| r.user_id != row.author_id && r.last_read_seq >= row.seq)
            .map(|r| {
                Ok(Reader {
                    user_id: convert::id(&r.user_id)?,
                    display_name: r.display_name,
                    read_at: rfc3339(r.updated_at),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Readers {
            message_id,
            readers,
        })
    }

    /// Relays "typing" to the thread's other members; nothing is stored.
    pub async fn typing(&self, member: &Member, thread_id: ThreadId) -> Result<()> {
        member.session().require(Scope::MessagesWrite)?;
        let mut conn = self.shared.store().conn().await?;
        let reader = self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await?;
        self.shared.publish_thread(
            &reader,
            Payload::frame(ServerFrame::Typing {
                thread_id,
                user_id: member.session().user_id(),
            }),
        );
        Ok(())
    }
}

impl Shared {
    pub(super) fn publish_thread(&self, reader: &ThreadReader, payload: Payload) {
        self.publish(
            &reader.thread_region(),
            Audience {
                thread_id: Some(reader.thread.id.clone()),
                ..Default::default()
            },
            payload,
        );
    }
}

impl ThreadReader {
    fn thread_region(&self) -> String {
        self.member.session().region_id().to_string()
    }
}

fn wire_message(row: &MessageRow, reactions: Vec<Reaction>, read_count: u64) -> Result<Message> {
    let ids = |json: &str| -> Result<Vec<String>> {
        serde_json::from_str(json).map_err(|_| DomainError::Internal("corrupt id list".into()))
    };
    Ok(Message {
        id: convert::id(&row.id)?,
        thread_id: convert::id(&row.thread_id)?,
        seq: row.seq,
        author_id: convert::id(&row.author_id)?,
        body: row.body.clone(),
        client_msg_id: row.client_msg_id.clone(),
        reply_to: row.reply_to.as_deref().map(convert::id).transpose()?,
        mentions: ids(&row.mentions)?
            .iter()
            .map(|u| convert::id(u))
            .collect::<Result<_>>()?,
        attachments: ids(&row.attachments)?,
        reactions,
        created_at: rfc3339(row.created_at),
        edited_at: row.edited_at.map(rfc3339),
        deleted: row.deleted_at.is_some(),
        read_count,
    })
}
