//! Rows to wire types. A stored value that does not parse is a corrupt row (500), never
//! silently defaulted.

use std::str::FromStr;

use tsunagu_protocol::accounts::{Organization, Policy, Region, User};

use super::error::{DomainError, Result};
use crate::clock::rfc3339;
use crate::store::organizations::OrganizationRow;
use crate::store::regions::RegionRow;
use crate::store::users::UserRow;

fn corrupt(what: &str) -> DomainError {
    DomainError::Internal(format!("corrupt {what} in database").into())
}

pub(super) fn id<T: FromStr>(s: &str) -> Result<T> {
    s.parse().map_err(|_| corrupt("id"))
}

pub(super) fn user(row: &UserRow) -> Result<User> {
    Ok(User {
        id: id(&row.id)?,
        region_id: id(&row.region_id)?,
        login: row.login.clone(),
        display_name: row.display_name.clone(),
        display_name_kana: row.display_name_kana.clone(),
        profession: row.profession,
        organization_id: row.organization_id.as_deref().map(id).transpose()?,
        role: row.role,
        kind: row.kind,
        active: row.active != 0,
        totp_enabled: row.totp_enabled != 0,
        must_change_password: row.must_change_password != 0,
        created_at: rfc3339(row.created_at),
    })
}

pub(super) fn organization(row: &OrganizationRow) -> Result<Organization> {
    Ok(Organization {
        id: id(&row.id)?,
        region_id: id(&row.region_id)?,
        name: row.name.clone(),
        kind: row.kind,
        active: row.active != 0,
        created_at: rfc3339(row.created_at),
    })
}

pub(super) fn region(row: &RegionRow) -> Result<Region> {
    Ok(Region {
        id: id(&row.id)?,
        slug: row.slug.clone(),
        name: row.name.clone(),
        created_at: rfc3339(row.created_at),
    })
}

pub(super) fn policy(row: &RegionRow) -> Policy {
    Policy {
        mfa_required: row.mfa_required != 0,
        password_min_length: row.password_min_length.clamp(0, u32::MAX as i64) as u32,
        access_token_ttl_secs: row.access_token_ttl_secs.max(0) as u64,
        refresh_token_ttl_secs: row.refresh_token_ttl_secs.max(0) as u64,
        max_file_bytes: row.max_file_bytes.max(0) as u64,
        allowed_file_kinds: row
            .allowed_file_kinds
            .as_deref()
            .and_then(|k| serde_json::from_str(k).ok()),
        directory_scope: row.directory_scope,
    }
}
