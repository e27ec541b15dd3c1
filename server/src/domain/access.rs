//! Capabilities. `Session` proves a valid access token; `Member` that the account is
//! fully usable (no forced password change or MFA enrolment pending); `RegionAdmin`
//! that the member administers their region. Fields are private to the domain, so only
//! the checks here can make one.

use tsunagu_protocol::apps::Scope;
use tsunagu_protocol::ids::{ApiClientId, OrganizationId, RegionId, UserId};

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
    /// Set when the caller is a third-party app: what its token allows.
    pub(super) app: Option<AppGrant>,
}

/// What an app's token allows: the scopes both granted to its client now and named
/// in the token (narrowing a client's scopes takes effect on issued tokens at once).
#[derive(Debug, Clone)]
pub struct AppGrant {
    pub(super) api_client_id: ApiClientId,
    pub(super) scopes: Vec<Scope>,
}

impl AppGrant {
    pub fn api_client_id(&self) -> ApiClientId {
        self.api_client_id
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }
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

    /// The app's grant, when the caller is a third-party app.
    pub fn app(&self) -> Option<&AppGrant> {
        self.app.as_ref()
    }

    /// Whether the caller is a third-party app's account.
    pub fn is_app(&self) -> bool {
        self.app.is_some()
    }

    /// Ok for a person (their account's rights are the limit); for an app, only when its
    /// token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        match &self.app {
            Some(grant) if !grant.scopes.contains(&scope) => {
                Err(DomainError::InsufficientScope(scope))
            }
            _ => Ok(()),
        }
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

    /// Refuses apps: for what only a person may do (their own password, creating
    /// groups, joining by invitation…), whatever scopes a token carries.
    pub(super) fn person(&self) -> Result<()> {
        if self.0.is_app() {
            Err(DomainError::Forbidden("apps cannot do this"))
        } else {
            Ok(())
        }
    }

    /// The member as a reader of their region's audit reports: a region admin, or an
    /// app whose token carries `audit:read` (an archive pulling the file-access report).
    pub fn audit_reader(self) -> Result<AuditReader> {
        if self.0.is_app() {
            self.0.require(Scope::AuditRead)?;
            Ok(AuditReader(self))
        } else {
            Ok(AuditReader(self.region_admin()?.0))
        }
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

/// May read the region's audit reports (file access and events); nothing else of
/// administration comes with it.
#[derive(Debug, Clone)]
pub struct AuditReader(Member);

impl AuditReader {
    pub fn session(&self) -> &Session {
        self.0.session()
    }

    pub fn region_id(&self) -> RegionId {
        self.0.session().region_id
    }
}
