//! What the operator does from the shell (`tsunagu-server admin …`) and what happens on
//! first start. No signed-in actor: audit entries record `via: operator`.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tsunagu_protocol::accounts::{CreateUser, Profession, Region, User, UserRole};
use tsunagu_protocol::ids::RegionId;

use super::admin::Admin;
use super::admin::NewUser;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::{convert, password, validate};
use crate::audit::{self, Action, Actor, Event, Outcome, RequestMeta};
use crate::clock::now_ms;
use crate::store::regions::{self, RegionRow};
use crate::store::users::{self, UserRow};
use crate::store::StoreError;

/// Slug of the region created on first start.
pub const DEFAULT_REGION: &str = "default";
/// Login id of the first region administrator.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// What first start did.
#[derive(Debug)]
pub enum Bootstrap {
    /// The database already had a region: nothing to do.
    AlreadyDone,
    /// Created the default region and its admin with the given password.
    Created { one_time_password: Option<String> },
}

fn operator_meta() -> RequestMeta {
    RequestMeta {
        ip: None,
        user_agent: Some("tsunagu-server (operator)".into()),
        request_id: None,
    }
}

/// What the operator does at the shell, with no region to act in: bootstrap, regions,
/// account rescue. Uses the user writes of [`Admin`].
#[derive(Clone)]
pub struct Operator {
    shared: Shared,
    admin: Admin,
}

impl Operator {
    pub(super) fn new(shared: Shared, admin: Admin) -> Self {
        Operator { shared, admin }
    }

    /// On an empty database: creates region `default` and its administrator `admin`.
    /// With `password`, that is the admin's password (no forced change, for scripted
    /// set-ups); without, a one-time password is generated and must be changed at first
    /// sign-in. Safe to race between nodes: the loser sees `AlreadyDone`.
    pub async fn bootstrap(&self, password: Option<&SecretString>) -> Result<Bootstrap> {
        // "Empty" means no users at all: a start that died between creating the region
        // and its admin is completed by the next start instead of leaving no way in.
        {
            let mut conn = self.shared.store().conn().await?;
            if users::count(&mut conn).await? > 0 {
                return Ok(Bootstrap::AlreadyDone);
            }
        }
        if password.is_some_and(|p| p.expose_secret().is_empty()) {
            return Err(DomainError::Invalid(
                "TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD is empty".into(),
            ));
        }
        match self.create_region(DEFAULT_REGION, "Default region").await {
            Ok(_) | Err(DomainError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let row = self.region_row_by_slug(DEFAULT_REGION).await?;
        let (pw, one_time) = match password {
            Some(p) => (p.expose_secret().to_owned(), None),
            None => {
                let p = password::generate_one_time();
                (p.clone(), Some(p))
            }
        };
        let req = CreateUser {
            login: BOOTSTRAP_ADMIN.into(),
            display_name: "Administrator".into(),
            display_name_kana: None,
            password: pw,
            profession: Profession::Other,
            organization_id: None,
            role: Some(UserRole::RegionAdmin),
            must_change_password: Some(one_time.is_some()),
        };
        // The bootstrap password may be shorter than the default policy (a scripted
        // set-up's choice); the policy applies to every later change.
        let mut relaxed = row.clone();
        relaxed.password_min_length = 1;
        match self
            .admin
            .insert_user(
                NewUser {
                    region: &relaxed,
                    req,
                },
                &operator_actor(&row.id),
                &operator_meta(),
            )
            .await
        {
            Ok(_) => {}
            // Another node won the race.
            Err(DomainError::Conflict(_)) => return Ok(Bootstrap::AlreadyDone),
            Err(e) => return Err(e),
        }
        Ok(Bootstrap::Created {
            one_time_password: one_time,
        })
    }

    /// Creates a region with the default policy.
    pub async fn create_region(&self, slug: &str, name: &str) -> Result<Region> {
        let now = now_ms();
        let row = RegionRow {
            id: RegionId::new().to_string(),
            slug: validate::slug(slug)?,
            name: validate::name("name", name, 200)?,
            mfa_required: 0,
            password_min_length: 12,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            created_at: now,
            updated_at: now,
            max_file_bytes: 512 * 1024 * 1024,
            allowed_file_kinds: None,
            directory_scope: tsunagu_protocol::accounts::DirectoryScope::Region,
        };
        let mut tx = self.shared.store().begin().await?;
        regions::insert(&mut tx, &row).await.map_err(|e| match e {
            StoreError::Conflict => DomainError::Conflict("that region slug is taken".into()),
            other => other.into(),
        })?;
        audit::append(
            &mut tx,
            &operator_meta(),
            Event::new(
                Action::RegionCreated,
                Outcome::Success,
                &operator_actor(&row.id),
            )
            .target("region", row.id.clone())
            .detail(json!({ "via": "operator" })),
        )
        .await?;
        tx.commit().await?;
        convert::region(&row)
    }

    /// Creates a user in the region `region_slug`, bypassing nothing but the API.
    pub async fn operator_create_user(&self, region_slug: &str, req: CreateUser) -> Result<User> {
        let region = self.region_row_by_slug(region_slug).await?;
        self.admin
            .insert_user(
                NewUser {
                    region: &region,
                    req,
                },
                &operator_actor(&region.id),
                &operator_meta(),
            )
            .await
    }

    /// Sets a new password for `login` and signs them out everywhere. With `None`, a
    /// one-time password is generated (and returned) that must be changed at sign-in.
    pub async fn operator_reset_password(
        &self,
        login: &str,
        password: Option<SecretString>,
    ) -> Result<Option<String>> {
        let row = self.user_by_login(login).await?;
        let (pw, one_time) = match password {
            Some(p) => {
                let region = {
                    let mut conn = self.shared.store().conn().await?;
                    regions::get(&mut conn, &row.region_id)
                        .await?
                        .ok_or_else(|| DomainError::Internal("user without region".into()))?
                };
                password::check_policy(
                    p.expose_secret(),
                    region.password_min_length as usize,
                    &row.login,
                )?;
                (p, None)
            }
            None => {
                let p = password::generate_one_time();
                (SecretString::from(p.clone()), Some(p))
            }
        };
        self.admin
            .set_password_and_sign_out(
                &row,
                pw,
                one_time.is_some(),
                &operator_actor(&row.region_id),
                &operator_meta(),
            )
            .await?;
        Ok(one_time)
    }

    /// Removes `login`'s second factor.
    pub async fn operator_reset_totp(&self, login: &str) -> Result<User> {
        let row = self.user_by_login(login).await?;
        self.admin
            .clear_totp(&row, &operator_actor(&row.region_id), &operator_meta())
            .await
    }

    async fn region_row_by_slug(&self, slug: &str) -> Result<RegionRow> {
        let mut conn = self.shared.store().conn().await?;
        regions::get_by_slug(&mut conn, slug)
            .await?
            .ok_or(DomainError::NotFound("region"))
    }

    async fn user_by_login(&self, login: &str) -> Result<UserRow> {
        let mut conn = self.shared.store().conn().await?;
        users::find_by_login_key(&mut conn, &validate::login_key(login))
            .await?
            .ok_or(DomainError::NotFound("user"))
    }
}

fn operator_actor(region_id: &str) -> Actor {
    Actor {
        user_id: None,
        organization_id: None,
        region_id: Some(region_id.to_owned()),
    }
}
