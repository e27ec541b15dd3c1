//! Region administration: organisations, users and the region policy. Every lookup is
//! scoped to the administrator's own region, so another region's things are simply
//! not found.

use secrecy::SecretString;
use serde_json::json;
use tsunagu_protocol::accounts::{
    CreateOrganization, CreateUser, Organization, Policy, Region, ResetPassword,
    UpdateOrganization, UpdatePolicy, UpdateUser, User, UserKind, UserRole,
};
use tsunagu_protocol::ids::{OrganizationId, UserId};

use super::access::RegionAdmin;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::{convert, password, validate};
use crate::audit::{self, Action, Actor, Event, Outcome, RequestMeta};
use crate::clock::now_ms;
use crate::store::organizations::{self, OrganizationRow};
use crate::store::regions::{self, RegionRow};
use crate::store::users::{self, UserFilter, UserRow};
use crate::store::{flag, sessions, Conn};

/// Bounds on policy values: outside them a typo would lock people out or weaken sign-in.
const PASSWORD_MIN_LENGTH: std::ops::RangeInclusive<u32> = 8..=128;
const ACCESS_TTL: std::ops::RangeInclusive<u64> = 60..=3600;
const REFRESH_TTL: std::ops::RangeInclusive<u64> = 3600..=90 * 24 * 3600;
const FILE_BYTES: std::ops::RangeInclusive<u64> = 1..=16 * 1024 * 1024 * 1024;

/// A new user as both the API and the operator's shell create them.
pub(super) struct NewUser<'a> {
    pub region: &'a RegionRow,
    pub req: CreateUser,
}

/// Region administration; also the user writes the operator's shell shares.
#[derive(Clone)]
pub struct Admin {
    shared: Shared,
}

impl Admin {
    pub(super) fn new(shared: Shared) -> Self {
        Admin { shared }
    }

    pub async fn admin_regions(&self, admin: &RegionAdmin) -> Result<Vec<Region>> {
        let mut conn = self.shared.store().conn().await?;
        let region = own_region(&mut conn, admin).await?;
        Ok(vec![convert::region(&region)?])
    }

    pub async fn list_organizations(
        &self,
        admin: &RegionAdmin,
        include_inactive: bool,
    ) -> Result<Vec<Organization>> {
        let mut conn = self.shared.store().conn().await?;
        organizations::list_in_region(&mut conn, &admin.region_id().to_string(), include_inactive)
            .await?
            .iter()
            .map(convert::organization)
            .collect()
    }

    pub async fn get_organization(
        &self,
        admin: &RegionAdmin,
        id: OrganizationId,
    ) -> Result<Organization> {
        let mut conn = self.shared.store().conn().await?;
        let row = find_org(&mut conn, admin, id).await?;
        convert::organization(&row)
    }

    pub async fn create_organization(
        &self,
        admin: &RegionAdmin,
        req: CreateOrganization,
        meta: &RequestMeta,
    ) -> Result<Organization> {
        let now = now_ms();
        let row = OrganizationRow {
            id: OrganizationId::new().to_string(),
            region_id: admin.region_id().to_string(),
            name: validate::name("name", &req.name, 200)?,
            kind: req.kind,
            active: 1,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.shared.store().begin().await?;
        organizations::insert(&mut tx, &row).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::OrganizationCreated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("organization", row.id.clone()),
        )
        .await?;
        tx.commit().await?;
        convert::organization(&row)
    }

    pub async fn update_organization(
        &self,
        admin: &RegionAdmin,
        id: OrganizationId,
        req: UpdateOrganization,
        meta: &RequestMeta,
    ) -> Result<Organization> {
        let mut tx = self.shared.store().begin().await?;
        let mut row = find_org(&mut tx, admin, id).await?;
        let mut changed = Vec::new();
        if let Some(name) = &req.name {
            row.name = validate::name("name", name, 200)?;
            changed.push("name");
        }
        if let Some(kind) = req.kind {
            row.kind = kind;
            changed.push("kind");
        }
        if let Some(active) = req.active {
            row.active = flag(active);
            changed.push("active");
        }
        row.updated_at = now_ms();
        organizations::update(&mut tx, &row).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::OrganizationUpdated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("organization", row.id.clone())
            .detail(json!({ "fields": changed })),
        )
        .await?;
        tx.commit().await?;
        convert::organization(&row)
    }

    pub async fn list_users(
        &self,
        admin: &RegionAdmin,
        include_inactive: bool,
        organization_id: Option<OrganizationId>,
    ) -> Result<Vec<User>> {
        let mut conn = self.shared.store().conn().await?;
        let filter = UserFilter {
            include_inactive,
            organization_id: organization_id.map(|o| o.to_string()),
        };
        users::list_in_region(&mut conn, &admin.region_id().to_string(), &filter)
            .await?
            .iter()
            .map(convert::user)
            .collect()
    }

    pub async fn get_user(&self, admin: &RegionAdmin, id: UserId) -> Result<User> {
        let mut conn = self.shared.store().conn().await?;
        convert::user(&find_any_user(&mut conn, admin, id).await?)
    }

    pub async fn create_user(
        &self,
        admin: &RegionAdmin,
        req: CreateUser,
        meta: &RequestMeta,
    ) -> Result<User> {
        let region = {
            let mut conn = self.shared.store().conn().await?;
            own_region(&mut conn, admin).await?
        };
        self.insert_user(
            NewUser {
                region: &region,
                req,
            },
            &admin.session().actor(),
            meta,
        )
        .await
    }

    /// Validates, hashes and inserts a user, with its audit entry, in one transaction.
    pub(super) async fn insert_user(
        &self,
        new: NewUser<'_>,
        actor: &Actor,
        meta: &RequestMeta,
    ) -> Result<User> {
        let NewUser { region, req } = new;
        let (login, login_key) = validate::login(&req.login)?;
        let display_name = validate::name("display_name", &req.display_name, 100)?;
        let kana = req
            .display_name_kana
            .as_deref()
            .map(|k| validate::name("display_name_kana", k, 100))
            .transpose()?;
        password::check_policy(&req.password, region.password_min_length as usize, &login)?;
        let phc = password::hash(SecretString::from(req.password)).await?;
        let now = now_ms();
        let mut tx = self.shared.store().begin().await?;
        let organization_id = match req.organization_id {
            Some(org) => Some(
                organizations::get_in_region(&mut tx, &region.id, &org.to_string())
                    .await?
                    .ok_or(DomainError::NotFound("organization"))?
                    .id,
            ),
            None => None,
        };
        let row = UserRow {
            id: UserId::new().to_string(),
            region_id: region.id.clone(),
            login,
            login_key,
            display_name,
            display_name_kana: kana,
            profession: req.profession,
            organization_id,
            role: req.role.unwrap_or(UserRole::User),
            kind: UserKind::Person,
            password_hash: phc,
            must_change_password: flag(req.must_change_password.unwrap_or(true)),
            active: 1,
            totp_secret: None,
            totp_kek_id: None,
            totp_enabled: 0,
            totp_last_step: 0,
            created_at: now,
            updated_at: now,
        };
        users::insert(&mut tx, &row).await.map_err(|e| match e {
            crate::store::StoreError::Conflict => {
                DomainError::Conflict("that login id is taken".into())
            }
            other => other.into(),
        })?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::UserCreated, Outcome::Success, actor)
                .region(region.id.clone())
                .target("user", row.id.clone())
                .detail(json!({ "role": row.role })),
        )
        .await?;
        tx.commit().await?;
        convert::user(&row)
    }

    pub async fn update_user(
        &self,
        admin: &RegionAdmin,
        id: UserId,
        req: UpdateUser,
        meta: &RequestMeta,
    ) -> Result<User> {
        let mut tx = self.shared.store().begin().await?;
        let mut row = find_user(&mut tx, admin, id).await?;
        let mut changed = Vec::new();
        if let Some(name) = &req.display_name {
            row.display_name = validate::name("display_name", name, 100)?;
            changed.push("display_name");
        }
        if let Some(kana) = &req.display_name_kana {
            row.display_name_kana = Some(validate::name("display_name_kana", kana, 100)?);
            changed.push("display_name_kana");
        }
        if let Some(p) = req.profession {
            row.profession = p;
            changed.push("profession");
        }
        if req.clear_organization == Some(true) {
            row.organization_id = None;
            changed.push("organization_id");
        } else if let Some(org) = req.organization_id {
            let found = organizations::get_in_region(&mut tx, &row.region_id, &org.to_string())
                .await?
                .ok_or(DomainError::NotFound("organization"))?;
            row.organization_id = Some(found.id);
            changed.push("organization_id");
        }
        let old_role = row.role;
        if let Some(role) = req.role {
            if row.id == admin.session().user_id().to_string() && role != UserRole::RegionAdmin {
                return Err(DomainError::Conflict(
                    "you cannot remove your own administrator role".into(),
                ));
            }
            row.role = role;
        }
        row.updated_at = now_ms();
        users::update_profile(&mut tx, &row).await?;
        let actor = admin.session().actor();
        if !changed.is_empty() {
            audit::append(
                &mut tx,
                meta,
                Event::new(Action::UserUpdated, Outcome::Success, &actor)
                    .target("user", row.id.clone())
                    .detail(json!({ "fields": changed })),
            )
            .await?;
        }
        if old_role != row.role {
            audit::append(
                &mut tx,
                meta,
                Event::new(Action::UserRoleChanged, Outcome::Success, &actor)
                    .target("user", row.id.clone())
                    .detail(json!({ "from": old_role, "to": row.role })),
            )
            .await?;
        }
        tx.commit().await?;
        convert::user(&row)
    }

    /// Deactivates a user and revokes every session at once: their access and refresh
    /// tokens stop working on the next request.
    pub async fn deactivate_user(
        &self,
        admin: &RegionAdmin,
        id: UserId,
        meta: &RequestMeta,
    ) -> Result<User> {
        if id == admin.session().user_id() {
            return Err(DomainError::Conflict(
                "you cannot deactivate yourself".into(),
            ));
        }
        let mut tx = self.shared.store().begin().await?;
        let mut row = find_user(&mut tx, admin, id).await?;
        let now = now_ms();
        users::set_active(&mut tx, &row.id, false, now).await?;
        let revoked =
            sessions::revoke_user_sessions(&mut tx, &row.id, None, "user_deactivated", now).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::UserDeactivated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("user", row.id.clone())
            .detail(json!({ "sessions_revoked": revoked })),
        )
        .await?;
        tx.commit().await?;
        self.shared.sessions_revoked(&row.region_id, &row.id, None);
        row.active = 0;
        convert::user(&row)
    }

    pub async fn reactivate_user(
        &self,
        admin: &RegionAdmin,
        id: UserId,
        meta: &RequestMeta,
    ) -> Result<User> {
        let mut tx = self.shared.store().begin().await?;
        let mut row = find_user(&mut tx, admin, id).await?;
        users::set_active(&mut tx, &row.id, true, now_ms()).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::UserReactivated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("user", row.id.clone()),
        )
        .await?;
        tx.commit().await?;
        row.active = 1;
        convert::user(&row)
    }

    /// Sets a new (by default temporary) password and signs the user out everywhere.
    pub async fn reset_password(
        &self,
        admin: &RegionAdmin,
        id: UserId,
        req: ResetPassword,
        meta: &RequestMeta,
    ) -> Result<User> {
        // Without the current password (POST /me/password asks for it), a stolen admin
        // session could take the account over for good.
        if id == admin.session().user_id() {
            return Err(DomainError::Conflict(
                "change your own password with POST /api/v1/me/password".into(),
            ));
        }
        let (row, region) = {
            let mut conn = self.shared.store().conn().await?;
            (
                find_user(&mut conn, admin, id).await?,
                own_region(&mut conn, admin).await?,
            )
        };
        password::check_policy(
            &req.password,
            region.password_min_length as usize,
            &row.login,
        )?;
        let must_change = req.must_change_password.unwrap_or(true);
        self.set_password_and_sign_out(
            &row,
            SecretString::from(req.password),
            must_change,
            &admin.session().actor(),
            meta,
        )
        .await
    }

    pub(super) async fn set_password_and_sign_out(
        &self,
        row: &UserRow,
        new_password: SecretString,
        must_change: bool,
        actor: &Actor,
        meta: &RequestMeta,
    ) -> Result<User> {
        let phc = password::hash(new_password).await?;
        let now = now_ms();
        let mut tx = self.shared.store().begin().await?;
        users::set_password(&mut tx, &row.id, &phc, must_change, now).await?;
        sessions::revoke_user_sessions(&mut tx, &row.id, None, "password_reset", now).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::PasswordReset, Outcome::Success, actor)
                .region(row.region_id.clone())
                .target("user", row.id.clone()),
        )
        .await?;
        tx.commit().await?;
        self.shared.sessions_revoked(&row.region_id, &row.id, None);
        let mut row = row.clone();
        row.must_change_password = flag(must_change);
        convert::user(&row)
    }

    /// Removes a user's second factor (lost phone); they enrol again at next sign-in if
    /// the policy requires it.
    pub async fn reset_totp(
        &self,
        admin: &RegionAdmin,
        id: UserId,
        meta: &RequestMeta,
    ) -> Result<User> {
        // A stolen admin session must not be able to strip its own second factor.
        if id == admin.session().user_id() {
            return Err(DomainError::Conflict(
                "another administrator must reset your second factor".into(),
            ));
        }
        let row = {
            let mut conn = self.shared.store().conn().await?;
            find_user(&mut conn, admin, id).await?
        };
        self.clear_totp(&row, &admin.session().actor(), meta).await
    }

    pub(super) async fn clear_totp(
        &self,
        row: &UserRow,
        actor: &Actor,
        meta: &RequestMeta,
    ) -> Result<User> {
        let mut tx = self.shared.store().begin().await?;
        users::set_totp(&mut tx, &row.id, None, false, now_ms()).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::TotpReset, Outcome::Success, actor)
                .region(row.region_id.clone())
                .target("user", row.id.clone()),
        )
        .await?;
        tx.commit().await?;
        let mut row = row.clone();
        row.totp_enabled = 0;
        row.totp_secret = None;
        convert::user(&row)
    }

    pub async fn get_policy(&self, admin: &RegionAdmin) -> Result<Policy> {
        let mut conn = self.shared.store().conn().await?;
        Ok(convert::policy(&own_region(&mut conn, admin).await?))
    }

    pub async fn update_policy(
        &self,
        admin: &RegionAdmin,
        req: UpdatePolicy,
        meta: &RequestMeta,
    ) -> Result<Policy> {
        let mut tx = self.shared.store().begin().await?;
        let mut row = own_region(&mut tx, admin).await?;
        let before = convert::policy(&row);
        if let Some(v) = req.mfa_required {
            row.mfa_required = flag(v);
        }
        if let Some(v) = req.password_min_length {
            in_range("password_min_length", v, &PASSWORD_MIN_LENGTH)?;
            row.password_min_length = v.into();
        }
        if let Some(v) = req.access_token_ttl_secs {
            in_range("access_token_ttl_secs", v, &ACCESS_TTL)?;
            row.access_token_ttl_secs = v as i64;
        }
        if let Some(v) = req.refresh_token_ttl_secs {
            in_range("refresh_token_ttl_secs", v, &REFRESH_TTL)?;
            row.refresh_token_ttl_secs = v as i64;
        }
        if let Some(v) = req.max_file_bytes {
            in_range("max_file_bytes", v, &FILE_BYTES)?;
            row.max_file_bytes = v as i64;
        }
        if let Some(kinds) = &req.allowed_file_kinds {
            let mut kinds = kinds.clone();
            kinds.sort();
            kinds.dedup();
            if kinds.is_empty()
                || kinds
                    .iter()
                    .any(|k| tsunagu_protocol::files::FileKind::parse(k).is_none())
            {
                return Err(DomainError::Invalid(
                    "allowed_file_kinds must list kinds among image, pdf, word, excel, powerpoint, text, other".into(),
                ));
            }
            row.allowed_file_kinds = Some(serde_json::to_string(&kinds).unwrap_or_default());
        }
        if let Some(scope) = req.directory_scope {
            row.directory_scope = scope;
        }
        row.updated_at = now_ms();
        regions::update_policy(&mut tx, &row).await?;
        let after = convert::policy(&row);
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::PolicyChanged,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("region", row.id.clone())
            .detail(json!({ "before": policy_json(&before), "after": policy_json(&after) })),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<()> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(DomainError::Invalid(format!(
            "{field} must be between {} and {}",
            range.start(),
            range.end()
        )))
    }
}

fn policy_json(p: &Policy) -> serde_json::Value {
    json!({
        "mfa_required": p.mfa_required,
        "password_min_length": p.password_min_length,
        "access_token_ttl_secs": p.access_token_ttl_secs,
        "refresh_token_ttl_secs": p.refresh_token_ttl_secs,
        "max_file_bytes": p.max_file_bytes,
        "allowed_file_kinds": p.allowed_file_kinds,
        "directory_scope": p.directory_scope,
    })
}

async fn own_region(conn: &mut Conn, admin: &RegionAdmin) -> Result<RegionRow> {
    regions::get(conn, &admin.region_id().to_string())
        .await?
        .ok_or_else(|| DomainError::Internal("administrator without region".into()))
}

async fn find_org(
    conn: &mut Conn,
    admin: &RegionAdmin,
    id: OrganizationId,
) -> Result<OrganizationRow> {
    organizations::get_in_region(conn, &admin.region_id().to_string(), &id.to_string())
        .await?
        .ok_or(DomainError::NotFound("organization"))
}

/// A user of the admin's region, app accounts included (for reading).
async fn find_any_user(conn: &mut Conn, admin: &RegionAdmin, id: UserId) -> Result<UserRow> {
    users::get_in_region(conn, &admin.region_id().to_string(), &id.to_string())
        .await?
        .ok_or(DomainError::NotFound("user"))
}

/// A person of the admin's region, for the account changes of this module. An app's
/// account has no password, no second factor and no region role; it is enabled,
/// renamed and disabled with its API client, so its scopes and sessions change with it.
async fn find_user(conn: &mut Conn, admin: &RegionAdmin, id: UserId) -> Result<UserRow> {
    let row = find_any_user(conn, admin, id).await?;
    if row.kind == UserKind::App {
        return Err(DomainError::Conflict(
            "this is an app account: manage it under /api/v1/admin/api-clients".into(),
        ));
    }
    Ok(row)
}
