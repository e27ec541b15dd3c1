//! Capabilities. `Session` proves a valid access token; `Member` that the account is
//! fully usable (no forced password change or MFA enrolment pending); `RegionAdmin`
//! that the member administers their region. Fields are private to the domain, so only
//! the checks here can make one.

use tsunagu_protocol::ids::{OrganizationId, RegionId, UserId};

use super::error::{DomainError, Result};
use crate::audit::Actor;

/// Something the caller must do before the rest of the API opens to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAction {
    ChangePassword,
    EnrollMfa,
}

impl PendingAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PendingAction::ChangePassword => "password_change_required",
            PendingAction::EnrollMfa => "mfa_enrollment_required",
        }
    }
}

/// An authenticated caller, whatever their account state.
#[derive(Debug, Clone)]
pub struct Session {
    pub(super) user_id: UserId,
    pub(super) region_id: RegionId,
    pub(super) organization_id: Option<OrganizationId>,
    pub(super) session_id: String,
    pub(super) is_region_admin: bool,
    pub(super) pending: Option<PendingAction>,
}

impl Session {
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    /// The sign-in this request belongs to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn pending(&self) -> Option<PendingAction> {
        self.pending
    }

    /// The caller as a full member, or the error saying what they must do first.
    pub fn member(self) -> Result<Member> {
        match self.pending {
            None => Ok(Member(self)),
            Some(PendingAction::ChangePassword) => Err(DomainError::PasswordChangeRequired),
            Some(PendingAction::EnrollMfa) => Err(DomainError::MfaEnrollmentRequired),
        }
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user_id.to_string()),
            organization_id: self.organization_id.map(|o| o.to_string()),
            region_id: Some(self.region_id.to_string()),
        }
    }
}

/// A fully usable account.
#[derive(Debug, Clone)]
pub struct Member(Session);

impl Member {
    pub fn session(&self) -> &Session {
        &self.0
    }

    /// The member as their region's administrator, or 403.
    pub fn region_admin(self) -> Result<RegionAdmin> {
        if self.0.is_region_admin {
            Ok(RegionAdmin(self))
        } else {
            Err(DomainError::Forbidden("region administrators only"))
        }
    }
}

/// A region administrator: manages accounts and policy of exactly one region.
#[derive(Debug, Clone)]
pub struct RegionAdmin(Member);

impl RegionAdmin {
    pub fn session(&self) -> &Session {
        self.0.session()
    }

    pub fn region_id(&self) -> RegionId {
        self.0.session().region_id
    }
}
