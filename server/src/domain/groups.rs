//! Groups (patient and free) and their membership. Invitations are in `invitations`.

use serde_json::json;
use tsunagu_protocol::accounts::{Profession, UserKind};
use tsunagu_protocol::ids::{GroupId, ThreadId, UserId};
use tsunagu_protocol::messaging::{
    AddMember, CreateGroup, Group, GroupKind, Member as WireMember, MemberRole, PatientProfile,
    ThreadKind, UpdateGroup,
};
use tsunagu_protocol::ws::ServerFrame;

use super::access::Member;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::visibility::GroupMember;
use super::{convert, validate};
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::bus::{Audience, Payload};
use crate::clock::{now_ms, rfc3339};
use crate::store::groups::{self, GroupRow, MemberRow};
use crate::store::threads::{self, ThreadRow};
use crate::store::{users, StoreError, Tx};

pub(super) fn is_patient_side_profession(p: Profession) -> bool {
    matches!(p, Profession::Patient | Profession::Family)
}

fn check_patient(p: &PatientProfile) -> Result<PatientProfile> {
    let opt = |field: &str, v: &Option<String>, max: usize| -> Result<Option<String>> {
        v.as_deref()
            .map(|s| validate::name(field, s, max))
            .transpose()
    };
    if let Some(date) = &p.birth_date {
        // Exactly YYYY-MM-DD: chrono alone would take "38-04-01" as the year 38.
        let parsed = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok();
        if parsed.map(|d| d.format("%Y-%m-%d").to_string()).as_deref() != Some(date.as_str()) {
            return Err(DomainError::Invalid(
                "patient.birth_date must be YYYY-MM-DD".into(),
            ));
        }
    }
    Ok(PatientProfile {
        name: validate::name("patient.name", &p.name, 100)?,
        name_kana: opt("patient.name_kana", &p.name_kana, 100)?,
        birth_date: p.birth_date.clone(),
        sex: p.sex,
        care_level: p.care_level,
        address: opt("patient.address", &p.address, 300)?,
        primary_physician: opt("patient.primary_physician", &p.primary_physician, 100)?,
        notes: p
            .notes
            .as_deref()
            .map(|n| validate::text("patient.notes", n, 4000))
            .transpose()?,
    })
}

pub(super) fn wire_member(row: &MemberRow) -> Result<WireMember> {
    Ok(WireMember {
        user_id: convert::id(&row.user_id)?,
        display_name: row.display_name.clone(),
        profession: row.profession,
        organization_id: row
            .organization_id
            .as_deref()
            .map(convert::id)
            .transpose()?,
        role: row.role,
        patient_side: row.patient_side != 0,
        kind: row.kind,
        joined_at: rfc3339(row.joined_at),
    })
}

/// Groups and membership.
#[derive(Clone)]
pub struct Groups {
    shared: Shared,
}

impl Groups {
    pub(super) fn new(shared: Shared) -> Self {
        Groups { shared }
    }

    fn wire_group(&self, row: &GroupRow, my_role: MemberRole, member_count: i64) -> Result<Group> {
        Ok(Group {
            id: convert::id(&row.id)?,
            kind: row.kind,
            name: row.name.clone(),
            description: row.description.clone(),
            patient: row
                .patient
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|_| DomainError::Internal("patient profile".into()))?,
            main_thread_id: convert::id(&row.main_thread_id)?,
            archived: row.archived_at.is_some(),
            my_role,
            member_count: member_count.max(0) as u64,
            created_at: rfc3339(row.created_at),
        })
    }

    /// Creates a group with its main timeline; the creator becomes its owner.
    pub async fn create_group(
        &self,
        member: &Member,
        req: CreateGroup,
        meta: &RequestMeta,
    ) -> Result<Group> {
        member.person()?;
        let s = member.session();
        let mut tx = self.shared.store().begin().await?;
        let me = users::get(&mut tx, &s.user_id().to_string())
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        if is_patient_side_profession(me.profession) {
            return Err(DomainError::Forbidden(
                "patients and family cannot create groups",
            ));
        }
        let patient = match (req.kind, &req.patient) {
            (GroupKind::Patient, Some(p)) => Some(check_patient(p)?),
            (GroupKind::Patient, None) => {
                return Err(DomainError::Invalid(
                    "a patient group needs `patient`".into(),
                ))
            }
            (GroupKind::Free, Some(_)) => {
                return Err(DomainError::Invalid(
                    "free groups carry no patient data".into(),
                ));
            }
            (GroupKind::Free, None) => None,
        };
        let now = now_ms();
        let group_id = GroupId::new().to_string();
        let thread_id = ThreadId::new().to_string();
        let row = GroupRow {
            id: group_id.clone(),
            region_id: s.region_id().to_string(),
            kind: req.kind,
            name: validate::name("name", &req.name, 100)?,
            description: req
                .description
                .as_deref()
                .map(|d| validate::text("description", d, 2000))
                .transpose()?,
            patient: patient
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_default()),
            main_thread_id: thread_id.clone(),
            archived_at: None,
            created_by: me.id.clone(),
            created_at: now,
            updated_at: now,
        };
        groups::insert(&mut tx, &row).await?;
        threads::insert(
            &mut tx,
            &ThreadRow {
                id: thread_id,
                group_id: group_id.clone(),
                kind: ThreadKind::Main,
                title: None,
                last_seq: 0,
                created_by: me.id.clone(),
                created_at: now,
            },
        )
        .await?;
        groups::add_member(
            &mut tx,
            &group_id,
            &me.id,
            MemberRole::Owner.as_str(),
            false,
            now,
        )
        .await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(Action::GroupCreated, Outcome::Success, &s.actor())
                .target("group", group_id.clone())
                .group(group_id)
                .detail(json!({ "kind": row.kind })),
        )
        .await?;
        tx.commit().await?;
        self.shared.access_changed(&row.region_id, &me.id);
        self.wire_group(&row, MemberRole::Owner, 1)
    }

    pub async fn list_groups(&self, member: &Member, include_archived: bool) -> Result<Vec<Group>> {
        let s = member.session();
        let mut conn = self.shared.store().conn().await?;
        let rows = groups::memberships_of(
            &mut conn,
            &s.region_id().to_string(),
            &s.user_id().to_string(),
            include_archived,
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let count = groups::member_count(&mut conn, &row.group.id).await?;
            let role = row.role;
            out.push(self.wire_group(&row.group, role, count)?);
        }
        Ok(out)
    }

    pub async fn get_group(&self, member: &Member, group_id: GroupId) -> Result<Group> {
        let mut conn = self.shared.store().conn().await?;
        let gm = self
            .shared
            .group_member(&mut conn, member, &group_id)
            .await?;
        let count = groups::member_count(&mut conn, &gm.group.id).await?;
        self.wire_group(&gm.group, gm.role, count)
    }

    pub async fn update_group(
        &self,
        member: &Member,
        group_id: GroupId,
        req: UpdateGroup,
        meta: &RequestMeta,
    ) -> Result<Group> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let mut row = gm.group.clone();
        let mut changed = Vec::new();
        if let Some(name) = &req.name {
            row.name = validate::name("name", name, 100)?;
            changed.push("name");
        }
        if let Some(d) = &req.description {
            row.description = Some(validate::text("description", d, 2000)?);
            changed.push("description");
        }
        if let Some(p) = &req.patient {
            if row.kind != GroupKind::Patient {
                return Err(DomainError::Invalid(
                    "free groups carry no patient data".into(),
                ));
            }
            row.patient = Some(serde_json::to_string(&check_patient(p)?).unwrap_or_default());
            changed.push("patient");
        }
        row.updated_at = now_ms();
        groups::update(&mut tx, &row).await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::GroupUpdated,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("group", row.id.clone())
            .group(row.id.clone())
            .detail(json!({ "fields": changed })),
        )
        .await?;
        let count = groups::member_count(&mut tx, &row.id).await?;
        tx.commit().await?;
        self.wire_group(&row, gm.role, count)
    }

    /// Archives a group: it stays readable to its members but accepts no new posts.
    pub async fn archive_group(
        &self,
        member: &Member,
        group_id: GroupId,
        meta: &RequestMeta,
    ) -> Result<Group> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let mut row = gm.group.clone();
        if row.archived_at.is_none() {
            row.archived_at = Some(now_ms());
            row.updated_at = now_ms();
            groups::update(&mut tx, &row).await?;
            audit::append(
                &mut tx,
                meta,
                AuditEvent::new(
                    Action::GroupArchived,
                    Outcome::Success,
                    &member.session().actor(),
                )
                .target("group", row.id.clone())
                .group(row.id.clone()),
            )
            .await?;
        }
        let count = groups::member_count(&mut tx, &row.id).await?;
        tx.commit().await?;
        self.wire_group(&row, gm.role, count)
    }

    pub async fn list_members(
        &self,
        member: &Member,
        group_id: GroupId,
    ) -> Result<Vec<WireMember>> {
        let mut conn = self.shared.store().conn().await?;
        let gm = self
            .shared
            .group_member(&mut conn, member, &group_id)
            .await?;
        groups::list_members(&mut conn, &gm.group.id)
            .await?
            .iter()
            .map(wire_member)
            .collect()
    }

    /// Adds a user of the same region to the group (group owners and admins).
    pub async fn add_member(
        &self,
        member: &Member,
        group_id: GroupId,
        req: AddMember,
        meta: &RequestMeta,
    ) -> Result<WireMember> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let role = req.role.unwrap_or(MemberRole::Member);
        if role == MemberRole::Owner && gm.role != MemberRole::Owner {
            return Err(DomainError::Forbidden("only owners can make owners"));
        }
        let target = users::get_in_region(&mut tx, &gm.group.region_id, &req.user_id.to_string())
            .await?
            .filter(|u| u.active != 0)
            .ok_or(DomainError::NotFound("user"))?;
        // An app takes part as a plain member: it manages nothing and is never
        // patient-side (it would then see what only the family sees, or more).
        if target.kind == UserKind::App
            && (role != MemberRole::Member || req.patient_side == Some(true))
        {
            return Err(DomainError::Invalid(
                "an app account is added as a plain member".into(),
            ));
        }
        // Patients and family are always patient-side, whatever the request says.
        let patient_side =
            is_patient_side_profession(target.profession) || req.patient_side.unwrap_or(false);
        if patient_side && role != MemberRole::Member {
            return Err(DomainError::Invalid(
                "patient-side members cannot manage the group".into(),
            ));
        }
        self.insert_member(&mut tx, &gm, &target.id, role, patient_side, meta)
            .await?;
        // An owner's own decision: a removed member may come back this way.
        groups::clear_removal(&mut tx, &gm.group.id, &target.id).await?;
        let row = groups::get_member(&mut tx, &gm.group.id, &target.id)
            .await?
            .ok_or_else(|| DomainError::Internal("member vanished".into()))?;
        tx.commit().await?;
        self.announce_member_added(&gm.group.region_id, &gm.group.id, &target.id);
        wire_member(&row)
    }

    pub(super) async fn insert_member(
        &self,
        conn: &mut Tx,
        gm: &GroupMember,
        user_id: &str,
        role: MemberRole,
        patient_side: bool,
        meta: &RequestMeta,
    ) -> Result<()> {
        groups::add_member(
            conn,
            &gm.group.id,
            user_id,
            role.as_str(),
            patient_side,
            now_ms(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict => DomainError::Conflict("already a member".into()),
            other => other.into(),
        })?;
        audit::append(
            conn,
            meta,
            AuditEvent::new(
                Action::MemberAdded,
                Outcome::Success,
                &gm.member.session().actor(),
            )
            .target("user", user_id.to_owned())
            .group(gm.group.id.clone())
            .detail(json!({ "role": role.as_str(), "patient_side": patient_side })),
        )
        .await?;
        Ok(())
    }

    pub(super) fn announce_member_added(&self, region_id: &str, group_id: &str, user_id: &str) {
        self.shared.access_changed(region_id, user_id);
        if let (Ok(g), Ok(u)) = (group_id.parse(), user_id.parse()) {
            self.shared.publish(
                region_id,
                Audience {
                    group_id: Some(group_id.to_owned()),
                    users: vec![user_id.to_owned()],
                    ..Default::default()
                },
                Payload::frame(ServerFrame::MemberAdded {
                    group_id: g,
                    user_id: u,
                }),
            );
        }
    }

    /// Changes a member's role (group owners and admins; only owners touch ownership).
    pub async fn set_member_role(
        &self,
        member: &Member,
        group_id: GroupId,
        user_id: UserId,
        role: MemberRole,
        meta: &RequestMeta,
    ) -> Result<WireMember> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let target = groups::get_member(&mut tx, &gm.group.id, &user_id.to_string())
            .await?
            .ok_or(DomainError::NotFound("member"))?;
        let touches_owner = role == MemberRole::Owner || target.role == MemberRole::Owner;
        if touches_owner && gm.role != MemberRole::Owner {
            return Err(DomainError::Forbidden(
                "only owners can grant or remove ownership",
            ));
        }
        if target.patient_side != 0 && role != MemberRole::Member {
            return Err(DomainError::Invalid(
                "patient-side members cannot manage the group".into(),
            ));
        }
        if target.kind == UserKind::App && role != MemberRole::Member {
            return Err(DomainError::Invalid(
                "an app account stays a plain member".into(),
            ));
        }
        if target.role == MemberRole::Owner
            && role != MemberRole::Owner
            && groups::count_owners(&mut tx, &gm.group.id).await? <= 1
        {
            return Err(DomainError::Conflict(
                "a group keeps at least one owner".into(),
            ));
        }
        groups::set_member_role(&mut tx, &gm.group.id, &target.user_id, role.as_str()).await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::MemberRoleChanged,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("user", target.user_id.clone())
            .group(gm.group.id.clone())
            .detail(json!({ "from": target.role, "to": role.as_str() })),
        )
        .await?;
        let row = groups::get_member(&mut tx, &gm.group.id, &target.user_id)
            .await?
            .ok_or_else(|| DomainError::Internal("member vanished".into()))?;
        tx.commit().await?;
        wire_member(&row)
    }

    /// Removes a member (group owners and admins), or leaves (anyone, for themselves).
    /// They lose the group's 内緒話 threads with it, and live sockets stop at once.
    pub async fn remove_member(
        &self,
        member: &Member,
        group_id: GroupId,
        user_id: UserId,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        let leaving = user_id == member.session().user_id();
        if !leaving {
            gm.manager()?;
        }
        let target = groups::get_member(&mut tx, &gm.group.id, &user_id.to_string())
            .await?
            .ok_or(DomainError::NotFound("member"))?;
        if target.role == MemberRole::Owner {
            if !leaving && gm.role != MemberRole::Owner {
                return Err(DomainError::Forbidden("only owners can remove an owner"));
            }
            if groups::count_owners(&mut tx, &gm.group.id).await? <= 1 {
                return Err(DomainError::Conflict(
                    "a group keeps at least one owner: hand ownership over first".into(),
                ));
            }
        }
        let private =
            threads::private_threads_of_member(&mut tx, &gm.group.id, &target.user_id).await?;
        groups::remove_member(&mut tx, &gm.group.id, &target.user_id).await?;
        if !leaving {
            groups::record_removal(
                &mut tx,
                &gm.group.id,
                &target.user_id,
                &member.session().user_id().to_string(),
                now_ms(),
            )
            .await?;
        }
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::MemberRemoved,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("user", target.user_id.clone())
            .group(gm.group.id.clone())
            .detail(json!({ "left": leaving, "private_threads": private.len() })),
        )
        .await?;
        tx.commit().await?;
        self.announce_member_removed(&gm.group.region_id, group_id, &target.user_id, &private);
        Ok(())
    }

    /// After a removal commits: cuts the user's live access, then tells them (and the
    /// group) — the frames name them explicitly, so they still learn of it.
    pub(super) fn announce_member_removed(
        &self,
        region: &str,
        group_id: GroupId,
        user_id: &str,
        private: &[String],
    ) {
        self.shared.access_changed(region, user_id);
        let Ok(u) = user_id.parse::<UserId>() else {
            return;
        };
        for t in private {
            if let Ok(tid) = t.parse() {
                self.shared.publish(
                    region,
                    Audience {
                        thread_id: Some(t.clone()),
                        users: vec![user_id.to_owned()],
                        ..Default::default()
                    },
                    Payload::frame(ServerFrame::ThreadMemberRemoved {
                        thread_id: tid,
                        group_id,
                        user_id: u,
                    }),
                );
            }
        }
        self.shared.publish(
            region,
            Audience {
                group_id: Some(group_id.to_string()),
                users: vec![user_id.to_owned()],
                ..Default::default()
            },
            Payload::frame(ServerFrame::MemberRemoved {
                group_id,
                user_id: u,
            }),
        );
    }
}
