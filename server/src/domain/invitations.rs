//! Invitation codes and join requests: how a professional, a patient or their family
//! comes into a group. Only a code's hash is stored.

use serde_json::json;
use sha2::{Digest, Sha256};
use tsunagu_protocol::ids::{GroupId, InvitationId, UserId};
use tsunagu_protocol::messaging::{
    AcceptedInvitation, CreateInvitation, Invitation, JoinRequest, MemberRole,
};

use super::access::Member;
use super::convert;
use super::error::{DomainError, Result};
use super::groups::{is_patient_side_profession, Groups};
use super::shared::Shared;
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::clock::{now_ms, rfc3339};
use crate::store::invitations::{self, InvitationRow};
use crate::store::{flag, groups, users};

const DEFAULT_INVITE_SECS: u64 = 7 * 24 * 3600;
const MAX_INVITE_SECS: u64 = 30 * 24 * 3600;
const MAX_INVITE_USES: u32 = 1000;

/// Invitations and join requests; joining goes through the membership writes of
/// [`Groups`].
#[derive(Clone)]
pub struct Invitations {
    shared: Shared,
    groups: Groups,
}

impl Invitations {
    pub(super) fn new(shared: Shared, groups: Groups) -> Self {
        Invitations { shared, groups }
    }

    /// Creates an invitation code (group owners and admins). Only its hash is stored.
    pub async fn create_invitation(
        &self,
        member: &Member,
        group_id: GroupId,
        req: CreateInvitation,
        meta: &RequestMeta,
    ) -> Result<Invitation> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let secs = req.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
        if !(60..=MAX_INVITE_SECS).contains(&secs) {
            return Err(DomainError::Invalid(format!(
                "expires_in_secs must be between 60 and {MAX_INVITE_SECS}"
            )));
        }
        let max_uses = req.max_uses.unwrap_or(1);
        if !(1..=MAX_INVITE_USES).contains(&max_uses) {
            return Err(DomainError::Invalid(format!(
                "max_uses must be between 1 and {MAX_INVITE_USES}"
            )));
        }
        let code = super::password::generate_one_time();
        let now = now_ms();
        let row = InvitationRow {
            id: InvitationId::new().to_string(),
            group_id: gm.group.id.clone(),
            code_hash: hash_code(&code),
            created_by: member.session().user_id().to_string(),
            expires_at: now + (secs as i64) * 1000,
            max_uses: max_uses.into(),
            uses: 0,
            requires_approval: flag(req.requires_approval.unwrap_or(false)),
            patient_side: req.patient_side.map(flag),
            revoked_at: None,
            created_at: now,
        };
        invitations::insert(&mut tx, &row).await?;
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::InvitationCreated,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("invitation", row.id.clone())
            .group(gm.group.id.clone()),
        )
        .await?;
        tx.commit().await?;
        Ok(Invitation {
            code: Some(code),
            ..wire_invitation(&row)?
        })
    }

    /// A group's invitation codes, without the codes (group owners and admins).
    pub async fn list_invitations(
        &self,
        member: &Member,
        group_id: GroupId,
    ) -> Result<Vec<Invitation>> {
        let mut conn = self.shared.store().conn().await?;
        let gm = self
            .shared
            .group_member(&mut conn, member, &group_id)
            .await?;
        gm.manager()?;
        invitations::list_for_group(&mut conn, &gm.group.id)
            .await?
            .iter()
            .map(wire_invitation)
            .collect()
    }

    /// Revokes a code at once (group owners and admins): nobody can use it any more.
    pub async fn revoke_invitation(
        &self,
        member: &Member,
        group_id: GroupId,
        invitation_id: InvitationId,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let id = invitation_id.to_string();
        if !invitations::revoke(&mut tx, &gm.group.id, &id, now_ms()).await? {
            return Err(DomainError::NotFound("invitation"));
        }
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(
                Action::InvitationRevoked,
                Outcome::Success,
                &member.session().actor(),
            )
            .target("invitation", id)
            .group(gm.group.id.clone()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redeems an invitation code: joins at once, or files a request for approval.
    /// A wrong, expired or used-up code, or one of another region, is the same 404.
    pub async fn accept_invitation(
        &self,
        member: &Member,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<AcceptedInvitation> {
        // An app joins a group only when an owner adds it.
        member.person()?;
        let s = member.session();
        let mut tx = self.shared.store().begin().await?;
        let inv = invitations::redeem(&mut tx, &hash_code(code.trim()), now_ms())
            .await?
            .ok_or(DomainError::NotFound("invitation"))?;
        let group = sqlx::query_as::<_, (String, String)>(
            "SELECT id, region_id FROM groups WHERE id = $1 AND archived_at IS NULL",
        )
        .bind(&inv.group_id)
        .fetch_optional(&mut *tx)
        .await?
        .filter(|(_, region)| *region == s.region_id().to_string())
        .ok_or(DomainError::NotFound("invitation"))?;
        let me = users::get(&mut tx, &s.user_id().to_string())
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        if groups::get_member(&mut tx, &group.0, &me.id)
            .await?
            .is_some()
        {
            return Err(DomainError::Conflict("already a member".into()));
        }
        if groups::was_removed(&mut tx, &group.0, &me.id).await? {
            // The code's use is not spent: the transaction is dropped.
            drop(tx);
            audit::append_alone(
                self.shared.store(),
                meta,
                AuditEvent::new(Action::InvitationAccepted, Outcome::Denied, &s.actor())
                    .target("invitation", inv.id.clone())
                    .group(group.0.clone())
                    .detail(json!({ "reason": "removed_member" })),
            )
            .await?;
            return Err(DomainError::Forbidden(
                "you were removed from this group: an owner must add you again",
            ));
        }
        let patient_side =
            is_patient_side_profession(me.profession) || inv.patient_side.is_some_and(|p| p != 0);
        let group_id: GroupId = convert::id(&group.0)?;
        let status = if inv.requires_approval != 0 {
            invitations::add_join_request(
                &mut tx,
                &group.0,
                &me.id,
                &inv.id,
                patient_side,
                now_ms(),
            )
            .await?;
            "pending"
        } else {
            groups::add_member(
                &mut tx,
                &group.0,
                &me.id,
                MemberRole::Member.as_str(),
                patient_side,
                now_ms(),
            )
            .await?;
            "joined"
        };
        audit::append(
            &mut tx,
            meta,
            AuditEvent::new(Action::InvitationAccepted, Outcome::Success, &s.actor())
                .target("invitation", inv.id.clone())
                .group(group.0.clone())
                .detail(json!({ "status": status })),
        )
        .await?;
        tx.commit().await?;
        if status == "joined" {
            self.groups
                .announce_member_added(&group.1, &group.0, &me.id);
        }
        Ok(AcceptedInvitation {
            group_id,
            status: status.into(),
        })
    }

    pub async fn list_join_requests(
        &self,
        member: &Member,
        group_id: GroupId,
    ) -> Result<Vec<JoinRequest>> {
        let mut conn = self.shared.store().conn().await?;
        let gm = self
            .shared
            .group_member(&mut conn, member, &group_id)
            .await?;
        gm.manager()?;
        invitations::join_requests(&mut conn, &gm.group.id)
            .await?
            .iter()
            .map(|r| {
                Ok(JoinRequest {
                    user_id: convert::id(&r.user_id)?,
                    display_name: r.display_name.clone(),
                    profession: r.profession,
                    requested_at: rfc3339(r.created_at),
                })
            })
            .collect()
    }

    /// Approves or rejects a pending join request (group owners and admins).
    pub async fn decide_join_request(
        &self,
        member: &Member,
        group_id: GroupId,
        user_id: UserId,
        approve: bool,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let gm = self.shared.group_member(&mut tx, member, &group_id).await?;
        gm.manager()?;
        let patient_side =
            invitations::take_join_request(&mut tx, &gm.group.id, &user_id.to_string())
                .await?
                .ok_or(DomainError::NotFound("join request"))?;
        if approve {
            let user = users::get_in_region(&mut tx, &gm.group.region_id, &user_id.to_string())
                .await?
                .filter(|u| u.active != 0)
                .ok_or(DomainError::NotFound("user"))?;
            let patient_side = patient_side != 0 || is_patient_side_profession(user.profession);
            self.groups
                .insert_member(
                    &mut tx,
                    &gm,
                    &user.id,
                    MemberRole::Member,
                    patient_side,
                    meta,
                )
                .await?;
        } else {
            // A refusal is a membership decision too: recorded like an approval's
            // member_added.
            audit::append(
                &mut tx,
                meta,
                AuditEvent::new(
                    Action::JoinRequestRejected,
                    Outcome::Success,
                    &member.session().actor(),
                )
                .group(gm.group.id.clone())
                .target("user", user_id.to_string()),
            )
            .await?;
        }
        tx.commit().await?;
        if approve {
            self.groups.announce_member_added(
                &gm.group.region_id,
                &gm.group.id,
                &user_id.to_string(),
            );
        }
        Ok(())
    }
}

fn hash_code(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

fn wire_invitation(row: &InvitationRow) -> Result<Invitation> {
    Ok(Invitation {
        id: convert::id(&row.id)?,
        group_id: convert::id(&row.group_id)?,
        code: None,
        expires_at: rfc3339(row.expires_at),
        max_uses: row.max_uses.clamp(0, u32::MAX as i64) as u32,
        uses: row.uses.clamp(0, u32::MAX as i64) as u32,
        requires_approval: row.requires_approval != 0,
        revoked_at: row.revoked_at.map(rfc3339),
        created_at: rfc3339(row.created_at),
    })
}
