//! The visibility rule, in one place. A user sees a thread — its messages, receipts,
//! files, search hits and live events — only while they are a current member of its
//! audience: the group's members for the main timeline, the member set for a 内緒話,
//! and always within their own region. Region and group admins get nothing extra.
//!
//! The capabilities below are the only way to reach thread or group data; each is made
//! by a check here. `VisibleSet` is the same rule as a snapshot for live connections.

use std::collections::HashSet;

use tsunagu_protocol::ids::{GroupId, ThreadId};
use tsunagu_protocol::messaging::{MemberRole, ThreadKind};

use super::access::Member;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::threads::Threads;
use crate::bus::Audience;
use crate::store::groups::{self, GroupRow};
use crate::store::scope::{GroupViewer, ThreadViewer, Viewer};
use crate::store::threads::{self, ThreadRow};
use crate::store::Conn;

impl Viewer for Member {
    fn viewer_region(&self) -> String {
        self.session().region_id().to_string()
    }
    fn viewer_id(&self) -> String {
        self.session().user_id().to_string()
    }
}

impl Viewer for GroupMember {
    fn viewer_region(&self) -> String {
        self.member.viewer_region()
    }
    fn viewer_id(&self) -> String {
        self.member.viewer_id()
    }
}

impl GroupViewer for GroupMember {
    fn viewed_group(&self) -> &str {
        &self.group.id
    }
}

impl Viewer for ThreadReader {
    fn viewer_region(&self) -> String {
        self.member.viewer_region()
    }
    fn viewer_id(&self) -> String {
        self.member.viewer_id()
    }
}

impl ThreadViewer for ThreadReader {
    fn viewed_thread(&self) -> &str {
        &self.thread.id
    }
}

/// The caller may read this thread (and, unless the group is archived, post in it).
#[derive(Debug, Clone)]
pub struct ThreadReader {
    pub(super) member: Member,
    pub(super) thread: ThreadRow,
    pub(super) kind: ThreadKind,
    pub(super) archived: bool,
}

impl ThreadReader {
    /// The capability for `thread`, which the visibility rule (the `thread_audience`
    /// view) has just admitted `member` to.
    pub(super) fn admitted(member: &Member, thread: ThreadRow, archived: bool) -> Result<Self> {
        Ok(ThreadReader {
            member: member.clone(),
            kind: thread.kind,
            archived,
            thread,
        })
    }

    pub fn thread_id(&self) -> &str {
        &self.thread.id
    }
}

/// The caller is a member of this group.
#[derive(Debug, Clone)]
pub struct GroupMember {
    pub(super) member: Member,
    pub(super) group: GroupRow,
    pub(super) role: MemberRole,
    pub(super) patient_side: bool,
}

impl GroupMember {
    /// Owners and admins manage membership and the group's details.
    pub(super) fn manager(&self) -> Result<()> {
        match self.role {
            MemberRole::Owner | MemberRole::Admin => Ok(()),
            MemberRole::Member => Err(DomainError::Forbidden("group owners and admins only")),
        }
    }

    /// Patients and family take part in the main timeline only.
    pub(super) fn professional(&self) -> Result<()> {
        if self.patient_side {
            Err(DomainError::Forbidden(
                "patient-side members cannot do this",
            ))
        } else {
            Ok(())
        }
    }
}

impl Shared {
    /// Checks that `member` may read `thread_id`. Unknown and invisible are the same 404.
    pub(super) async fn thread_reader(
        &self,
        conn: &mut Conn,
        member: &Member,
        thread_id: &ThreadId,
    ) -> Result<ThreadReader> {
        let s = member.session();
        let row = threads::access(
            conn,
            &s.region_id().to_string(),
            &thread_id.to_string(),
            &s.user_id().to_string(),
        )
        .await?
        .ok_or(DomainError::NotFound("thread"))?;
        ThreadReader::admitted(member, row.thread, row.archived_at.is_some())
    }

    /// Checks that `member` belongs to `group_id`. Unknown and invisible are the same 404.
    pub(super) async fn group_member(
        &self,
        conn: &mut Conn,
        member: &Member,
        group_id: &GroupId,
    ) -> Result<GroupMember> {
        let s = member.session();
        let row = groups::membership(
            conn,
            &s.region_id().to_string(),
            &group_id.to_string(),
            &s.user_id().to_string(),
        )
        .await?
        .ok_or(DomainError::NotFound("group"))?;
        Ok(GroupMember {
            member: member.clone(),
            role: row.role,
            patient_side: row.patient_side != 0,
            group: row.group,
        })
    }
}

impl Threads {
    /// What `member` can see right now, for filtering live events.
    pub async fn visible_set(&self, member: &Member) -> Result<VisibleSet> {
        let s = member.session();
        let mut conn = self.shared.store().conn().await?;
        let rows = threads::visible_to(&mut conn, member).await?;
        let mut set = VisibleSet {
            user_id: s.user_id().to_string(),
            region_id: s.region_id().to_string(),
            ..Default::default()
        };
        for t in rows {
            set.groups.insert(t.group_id.clone());
            set.threads.insert(t.id, t.last_seq);
        }
        Ok(set)
    }
}

/// A snapshot of what one user can see: the same rule as [`Shared::thread_reader`],
/// evaluated once, refreshed whenever the user's memberships change.
#[derive(Debug, Clone, Default)]
pub struct VisibleSet {
    pub user_id: String,
    pub region_id: String,
    pub groups: HashSet<String>,
    /// Visible threads with their `last_seq` when the snapshot was taken.
    pub threads: std::collections::HashMap<String, i64>,
}

impl VisibleSet {
    /// Whether an event for `audience` may be delivered to this user.
    pub fn admits(&self, region_id: &str, audience: &Audience) -> bool {
        if region_id != self.region_id {
            return false;
        }
        if audience.users.contains(&self.user_id) {
            return true;
        }
        match (&audience.thread_id, &audience.group_id) {
            (Some(t), _) => self.threads.contains_key(t),
            (None, Some(g)) => self.groups.contains(g),
            (None, None) => false,
        }
    }

    pub fn sees_thread(&self, thread_id: &str) -> bool {
        self.threads.contains_key(thread_id)
    }

    pub fn thread_ids(&self) -> HashSet<String> {
        self.threads.keys().cloned().collect()
    }
}
