//! Threads: the main timeline every group has, and 内緒話 threads with a fixed member
//! set drawn from the group's professionals.

use std::collections::BTreeSet;

use serde_json::json;
use tsunagu_protocol::accounts::UserKind;
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_protocol::messaging::{CreateThread, Thread, ThreadKind};
use tsunagu_protocol::ws::ServerFrame;

use super::access::Member;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::visibility::ThreadReader;
use super::{convert, validate};
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::bus::{Audience, Payload};
use crate::clock::{now_ms, rfc3339};
use crate::store::threads::{self, ThreadRow};
use crate::store::{groups, Conn};

/// Threads: listing, reading, creating 内緒話 and changing their member sets.
#[derive(Clone)]
pub struct Threads {
    pub(super) shared: Shared,
}

impl Threads {
    pub(super) fn new(shared: Shared) -> Self {
        Threads { shared }
    }

    pub(super) async fn wire_thread(
        &self,
        conn: &mut Conn,
        row: &ThreadRow,
        user_id: &str,
    ) -> Result<Thread> {
        let kind = row.kind;
        let member_ids = match kind {
            ThreadKind::Main => None,
            ThreadKind::Private => Some(
                threads::member_ids(conn, &row.id)
                    .await?
                    .iter()
                    .map(|u| convert::id(u))
                    .collect::<Result<Vec<UserId>>>()?,
            ),
        };
        let last_read = threads::last_read(conn, &row.id, user_id).await?;
        let unread = threads::unread_count(conn, &row.id, user_id, last_read).await?;
        Ok(Thread {
            id: convert::id(&row.id)?,
            group_id: convert::id(&row.group_id)?,
            kind,
            title: row.title.clone(),
            member_ids,
            last_seq: row.last_seq,
            last_read_seq: last_read,
            unread_count: unread.max(0) as u64,
            created_at: rfc3339(row.created_at),
        })
    }

    /// The threads of a group the caller can see: the main timeline and only those
    /// 内緒話 they belong to. Others are not listed, counted or hinted at.
    pub async fn list_threads(&self, member: &Member, group_id: GroupId) -> Result<Vec<Thread>> {
        let mut conn = self.shared.store().conn().await?;
        let gm = self
            .shared
            .group_member(&mut conn, member, &group_id)
            .await?;
        let me = member.session().user_id().to_string();
        let rows = threads::visible_in_group(&mut conn, &gm).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.wire_thread(&mut conn, row, &me).await?);
        }
        Ok(out)
    }

    pub async fn get_thread(&self, member: &Member, thread_id: ThreadId) -> Result<Thread> {
        let mut conn = self.shared.store().conn().await?;
        let reader = self
            .shared
            .thread_reader(&mut conn, member, &thread_id)
            .await?;
        self.wire_thread(
            &mut conn,
            &reader.thread,
            &member.session().user_id().to_string(),
        )
        .await
    }

    /// Checks that every id is a professional (not patient-side) member of the group.
    async fn check_private_members(
        &self,
        conn: &mut Conn,
        group_id: &str,
        ids: &BTreeSet<String>,
    ) -> Result<()> {
        for id in ids {
            match groups::get_member(conn, group_id, id).await? {
                // The visibility rule gives apps main timelines only.
                Some(m) if m.kind == UserKind::App => {
                    return Err(DomainError::Invalid(
                        "app accounts cannot be in a 内緒話 thread".into(),
                    ));
                }
                Some(m) if m.patient_side == 0 => {}
                Some(_) => {
                    return Err(DomainError::Invalid(
                        "patient-side members cannot be in a 内緒話 thread".into(),
                    ));
                }
                None => {
                    return Err(DomainError::Invalid(
                        "every member must belong to the group".into(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Creates a 内緒話 thread; the creator is always a member.
    pub async fn create_thread(
        &self,
        member: &Member,
        group_id: GroupId,
        req: CreateThread,
        meta: &RequestMeta,
    ) -> Result<Thread> {
        member.person()?;
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.professional()?;
        if gm.group.archived_at.is_some() {
            return Err(DomainError::Conflict("the group is archived".into()));
        }
        let me = member.session().user_id().to_string();
        let mut ids: BTreeSet<String> = req.member_ids.iter().map(|u| u.to_string()).collect();
        ids.insert(me.clone());
        if ids.len() > 500 {
            return Err(DomainError::Invalid("too many members".into()));
        }
        self.check_private_members(&mut tx, &gm.group.id, &ids)
            .await?;
        let now = now_ms();
        let row = ThreadRow {
            id: ThreadId::new().to_string(),
            group_id: gm.group.id.clone(),
            kind: ThreadKind::Private,
            title: Some(validate::name("title", &req.title, 100)?),
            last_seq: 0,
            created_by: me.clone(),
            created_at: now,
        };
        threads::insert(&mut tx, &row).await?;
        for id in &ids {
            threads::add_member(&mut tx, &row.id, id, now).await?;
        }
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::ThreadCreated,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("thread", row.id.clone())
            .group(gm.group.id.clone())
            .detail(json!({ "members": ids.len() })),
        )
        .await?;
        let thread = self.wire_thread(&mut tx, &row, &me).await?;
        tx.commit().await?;
        let region = gm.group.region_id.clone();
        for id in &ids {
            self.shared.access_changed(&region, id);
        }
        self.shared.publish(
            &region,
            Audience {
                thread_id: Some(row.id.clone()),
                users: ids.into_iter().collect(),
                ..Default::default()
            },
            Payload::frame(ServerFrame::ThreadCreated {
                thread: Thread {
                    last_read_seq: 0,
                    unread_count: 0,
                    ..thread.clone()
                },
            }),
        );
        Ok(thread)
    }

    fn private(reader: &ThreadReader) -> Result<()> {
        match reader.kind {
            ThreadKind::Private => Ok(()),
            ThreadKind::Main => Err(DomainError::Invalid(
                "the main timeline's members are the group's members".into(),
            )),
        }
    }

    /// Adds a group professional to a 内緒話 thread (any member of the thread may).
    pub async fn add_thread_member(
        &self,
        member: &Member,
        thread_id: ThreadId,
        user_id: UserId,
        meta: &RequestMeta,
    ) -> Result<Thread> {
        let mut tx = self.shared.store().begin().await?;
        let reader = self
            .shared
            .thread_reader(&mut tx, member, &thread_id)
            .await?;
        Self::private(&reader)?;
        let uid = user_id.to_string();
        self.check_private_members(
            &mut tx,
            &reader.thread.group_id,
            &BTreeSet::from([uid.clone()]),
        )
        .await?;
        threads::add_member(&mut tx, &reader.thread.id, &uid, now_ms())
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict => {
                    DomainError::Conflict("already a member of the thread".into())
                }
                other => other.into(),
            })?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::ThreadMemberAdded,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("user", uid.clone())
            .group(reader.thread.group_id.clone())
            .detail(json!({ "thread_id": reader.thread.id })),
        )
        .await?;
        let me = member.session().user_id().to_string();
        let thread = self.wire_thread(&mut tx, &reader.thread, &me).await?;
        tx.commit().await?;
        let region = member.session().region_id().to_string();
        self.shared.access_changed(&region, &uid);
        let group_id = convert::id(&reader.thread.group_id)?;
        self.shared.publish(
            &region,
            Audience {
                thread_id: Some(reader.thread.id.clone()),
                users: vec![uid],
                ..Default::default()
            },
            Payload::frame(ServerFrame::ThreadMemberAdded {
                thread_id,
                group_id,
                user_id,
            }),
        );
        Ok(thread)
    }

    /// Removes someone (or oneself) from a 内緒話 thread (any member of the thread may).
    pub async fn remove_thread_member(
        &self,
        member: &Member,
        thread_id: ThreadId,
        user_id: UserId,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let reader = self
            .shared
            .thread_reader(&mut tx, member, &thread_id)
            .await?;
        Self::private(&reader)?;
        let uid = user_id.to_string();
        if !threads::remove_member(&mut tx, &reader.thread.id, &uid).await? {
            return Err(DomainError::NotFound("thread member"));
        }
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::ThreadMemberRemoved,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("user", uid.clone())
            .group(reader.thread.group_id.clone())
            .detail(json!({ "thread_id": reader.thread.id })),
        )
        .await?;
        tx.commit().await?;
        let region = member.session().region_id().to_string();
        let group_id = convert::id(&reader.thread.group_id)?;
        self.shared.access_changed(&region, &uid);
        self.shared.publish(
            &region,
            Audience {
                thread_id: Some(reader.thread.id.clone()),
                users: vec![uid.clone()],
                ..Default::default()
            },
            Payload::frame(ServerFrame::ThreadMemberRemoved {
                thread_id,
                group_id,
                user_id,
            }),
        );
        Ok(())
    }
}
