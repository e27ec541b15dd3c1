//! Region administrators manage their region's groups **without reading them**: they
//! see who runs each group and how alive it is, hand a leaving nurse's groups to a
//! colleague, archive and restore, remove a member. They never become members by it
//! (an admin cannot make themselves an owner), so every timeline and 内緒話 route still
//! answers them 404, as for anyone outside the group.

use std::collections::HashMap;

use serde_json::json;
use tsunagu_protocol::accounts::UserKind;
use tsunagu_protocol::ids::{GroupId, UserId};
use tsunagu_protocol::messaging::{AddOwner, AdminGroup, GroupOwner, MemberRole};

use super::access::RegionAdmin;
use super::convert;
use super::error::{DomainError, Result};
use super::groups::{is_patient_side_profession, Groups};
use super::shared::Shared;
use crate::audit::{self, Action, Event, Outcome, RequestMeta};
use crate::clock::{now_ms, rfc3339};
use crate::store::groups::{self, AdminGroupRow, GroupRow};
use crate::store::{threads, users, Conn};

/// Group management for region administrators.
#[derive(Clone)]
pub struct GroupAdmin {
    shared: Shared,
    groups: Groups,
}

impl GroupAdmin {
    pub(super) fn new(shared: Shared, groups: Groups) -> Self {
        GroupAdmin { shared, groups }
    }

    /// The region's groups: name, kind, owners, member count, created, last activity of
    /// the main timeline, archived.
    pub async fn list(
        &self,
        admin: &RegionAdmin,
        include_archived: bool,
    ) -> Result<Vec<AdminGroup>> {
        let region = admin.region_id().to_string();
        let mut conn = self.shared.store().conn().await?;
        let rows = groups::admin_list(&mut conn, &region, include_archived).await?;
        let mut owners: HashMap<String, Vec<GroupOwner>> = HashMap::new();
        for (group, user, name) in groups::owners_in_region(&mut conn, &region).await? {
            owners.entry(group).or_default().push(GroupOwner {
                user_id: convert::id(&user)?,
                display_name: name,
            });
        }
        rows.iter()
            .map(|row| wire(row, owners.remove(&row.id).unwrap_or_default()))
            .collect()
    }

    /// Makes `user_id` (a person of the region, not the admin) an owner, adding them to
    /// the group first if they are not in it.
    pub async fn add_owner(
        &self,
        admin: &RegionAdmin,
        group_id: GroupId,
        req: AddOwner,
        meta: &RequestMeta,
    ) -> Result<AdminGroup> {
        if req.user_id == admin.session().user_id() {
            return Err(DomainError::Conflict(
                "administrators manage groups without joining them: choose a colleague".into(),
            ));
        }
        let mut tx = self.shared.store().begin().await?;
        let group = find(&mut tx, admin, group_id).await?;
        let target = users::get_in_region(&mut tx, &group.region_id, &req.user_id.to_string())
            .await?
            .filter(|u| u.active != 0)
            .ok_or(DomainError::NotFound("user"))?;
        if target.kind == UserKind::App || is_patient_side_profession(target.profession) {
            return Err(DomainError::Invalid(
                "an owner is a professional of the region (not an app, patient or family)".into(),
            ));
        }
        let actor = admin.session().actor();
        let added = match groups::get_member(&mut tx, &group.id, &target.id).await? {
            Some(m) if m.patient_side != 0 => {
                return Err(DomainError::Invalid(
                    "a patient-side member cannot own the group".into(),
                ))
            }
            Some(m) if m.role == MemberRole::Owner => false,
            Some(m) => {
                groups::set_member_role(&mut tx, &group.id, &target.id, MemberRole::Owner.as_str())
                    .await?;
                audit::append(
                    &mut tx,
                    meta,
                    Event::new(Action::MemberRoleChanged, Outcome::Success, &actor)
                        .target("user", target.id.clone())
                        .group(group.id.clone())
                        .detail(json!({ "from": m.role, "to": "owner", "by_region_admin": true })),
                )
                .await?;
                false
            }
            None => {
                groups::add_member(
                    &mut tx,
                    &group.id,
                    &target.id,
                    MemberRole::Owner.as_str(),
                    false,
                    now_ms(),
                )
                .await?;
                groups::clear_removal(&mut tx, &group.id, &target.id).await?;
                audit::append(
                    &mut tx,
                    meta,
                    Event::new(Action::MemberAdded, Outcome::Success, &actor)
                        .target("user", target.id.clone())
                        .group(group.id.clone())
                        .detail(json!({ "role": "owner", "patient_side": false, "by_region_admin": true })),
                )
                .await?;
                true
            }
        };
        let row = self.row(&mut tx, admin, &group.id).await?;
        tx.commit().await?;
        if added {
            self.groups
                .announce_member_added(&group.region_id, &group.id, &target.id);
        }
        self.wire_one(admin, row).await
    }

    /// Makes an owner a plain member again; the group keeps at least one owner.
    pub async fn remove_owner(
        &self,
        admin: &RegionAdmin,
        group_id: GroupId,
        user_id: UserId,
        meta: &RequestMeta,
    ) -> Result<AdminGroup> {
        let mut tx = self.shared.store().begin().await?;
        let group = find(&mut tx, admin, group_id).await?;
        let uid = user_id.to_string();
        match groups::get_member(&mut tx, &group.id, &uid).await? {
            Some(m) if m.role == MemberRole::Owner => {}
            _ => return Err(DomainError::NotFound("owner")),
        }
        if groups::count_owners(&mut tx, &group.id).await? <= 1 {
            return Err(DomainError::Conflict(
                "a group keeps at least one owner: add the new owner first".into(),
            ));
        }
        groups::set_member_role(&mut tx, &group.id, &uid, MemberRole::Member.as_str()).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::MemberRoleChanged,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("user", uid)
            .group(group.id.clone())
            .detail(json!({ "from": "owner", "to": "member", "by_region_admin": true })),
        )
        .await?;
        let row = self.row(&mut tx, admin, &group.id).await?;
        tx.commit().await?;
        self.wire_one(admin, row).await
    }

    /// Archives (`true`) or restores (`false`) a group.
    pub async fn set_archived(
        &self,
        admin: &RegionAdmin,
        group_id: GroupId,
        archived: bool,
        meta: &RequestMeta,
    ) -> Result<AdminGroup> {
        let mut tx = self.shared.store().begin().await?;
        let mut group = find(&mut tx, admin, group_id).await?;
        if group.archived_at.is_some() != archived {
            let now = now_ms();
            group.archived_at = archived.then_some(now);
            group.updated_at = now;
            groups::update(&mut tx, &group).await?;
            let action = if archived {
                Action::GroupArchived
            } else {
                Action::GroupRestored
            };
            audit::append(
                &mut tx,
                meta,
                Event::new(action, Outcome::Success, &admin.session().actor())
                    .target("group", group.id.clone())
                    .group(group.id.clone())
                    .detail(json!({ "by_region_admin": true })),
            )
            .await?;
        }
        let row = self.row(&mut tx, admin, &group.id).await?;
        tx.commit().await?;
        self.wire_one(admin, row).await
    }

    /// Removes a member (not the last owner). Like an owner's removal: they lose the
    /// group and its 内緒話 at once and cannot come back by an invitation code.
    pub async fn remove_member(
        &self,
        admin: &RegionAdmin,
        group_id: GroupId,
        user_id: UserId,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let group = find(&mut tx, admin, group_id).await?;
        let uid = user_id.to_string();
        let target = groups::get_member(&mut tx, &group.id, &uid)
            .await?
            .ok_or(DomainError::NotFound("member"))?;
        if target.role == MemberRole::Owner && groups::count_owners(&mut tx, &group.id).await? <= 1
        {
            return Err(DomainError::Conflict(
                "a group keeps at least one owner: add the new owner first".into(),
            ));
        }
        let private = threads::private_threads_of_member(&mut tx, &group.id, &uid).await?;
        groups::remove_member(&mut tx, &group.id, &uid).await?;
        groups::record_removal(
            &mut tx,
            &group.id,
            &uid,
            &admin.session().user_id().to_string(),
            now_ms(),
        )
        .await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::MemberRemoved,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("user", uid.clone())
            .group(group.id.clone())
            .detail(
                json!({ "left": false, "private_threads": private.len(), "by_region_admin": true }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.groups
            .announce_member_removed(&group.region_id, group_id, &uid, &private);
        Ok(())
    }

    async fn row(
        &self,
        conn: &mut Conn,
        admin: &RegionAdmin,
        group_id: &str,
    ) -> Result<AdminGroupRow> {
        groups::admin_list(conn, &admin.region_id().to_string(), true)
            .await?
            .into_iter()
            .find(|g| g.id == group_id)
            .ok_or_else(|| DomainError::Internal("group vanished".into()))
    }

    async fn wire_one(&self, admin: &RegionAdmin, row: AdminGroupRow) -> Result<AdminGroup> {
        let mut conn = self.shared.store().conn().await?;
        let owners = groups::owners_in_region(&mut conn, &admin.region_id().to_string())
            .await?
            .into_iter()
            .filter(|(g, _, _)| *g == row.id)
            .map(|(_, user, name)| {
                Ok(GroupOwner {
                    user_id: convert::id(&user)?,
                    display_name: name,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        wire(&row, owners)
    }
}

async fn find(conn: &mut Conn, admin: &RegionAdmin, group_id: GroupId) -> Result<GroupRow> {
    groups::get_in_region(conn, &admin.region_id().to_string(), &group_id.to_string())
        .await?
        .ok_or(DomainError::NotFound("group"))
}

fn wire(row: &AdminGroupRow, owners: Vec<GroupOwner>) -> Result<AdminGroup> {
    Ok(AdminGroup {
        id: convert::id(&row.id)?,
        kind: row.kind,
        name: row.name.clone(),
        owners,
        member_count: row.member_count.max(0) as u64,
        created_at: rfc3339(row.created_at),
        last_activity_at: row.last_activity.map(rfc3339),
        archived: row.archived_at.is_some(),
    })
}
