//! Third-party apps: registration by a region admin, and the OAuth 2.0 client
//! credentials grant that gives an app its access token.
//!
//! An app acts through its **app account**, a user of kind `app` in the admin's region
//! created with the client. Everything else follows from that: group owners add the
//! account to groups like anyone; the visibility rule (`visibility`) applies unchanged;
//! its posts show its name; the audit trail names it. What an app may *call* is the
//! token's scopes ([`Session::require`]); what it may *see* is its account's.
//!
//! [`Session::require`]: super::access::Session::require

pub mod assertion;
pub mod limits;
mod token;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use tsunagu_protocol::accounts::{Profession, UserKind, UserRole};
use tsunagu_protocol::apps::{
    ApiClient, ApiClientCreated, ApiClientSecretInfo, CreateApiClient, RotateSecret, Scope,
    SecretRotated, UpdateApiClient,
};
use tsunagu_protocol::ids::{ApiClientId, UserId};

use super::access::RegionAdmin;
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::{convert, validate};
use crate::audit::{self, Action, Event, Outcome, RequestMeta};
use crate::clock::{now_ms, rfc3339};
use crate::store::api_clients::{self, ApiClientRow, SecretRow};
use crate::store::users::{self, UserRow};
use crate::store::{sessions, Conn, Tx};

pub use token::{ClientAuth, OAuthFailure, TokenGrant};

/// The longest grace period a rotated-out secret may keep working.
const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Bounds on an app's own request rate.
const RATE: std::ops::RangeInclusive<u32> = 1..=100_000;

/// Settings for apps, from `[apps]` in the configuration.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// Lifetime of an app's access token.
    pub token_ttl_secs: u64,
    /// The token endpoint's public URL, which `private_key_jwt` assertions must name as
    /// `aud`; `None` accepts the URL the request reached us by.
    pub token_url: Option<String>,
    /// REST requests per minute per app, unless its registration says otherwise.
    pub requests_per_minute: u32,
}

/// Registration of apps and their token grant.
#[derive(Clone)]
pub struct Apps {
    shared: Shared,
    signer: std::sync::Arc<super::tokens::TokenSigner>,
    settings: std::sync::Arc<AppSettings>,
}

impl Apps {
    pub(super) fn new(
        shared: Shared,
        signer: std::sync::Arc<super::tokens::TokenSigner>,
        settings: AppSettings,
    ) -> Self {
        Apps {
            shared,
            signer,
            settings: std::sync::Arc::new(settings),
        }
    }

    /// Registers an app: its client, its first secret (returned once, stored hashed)
    /// and its app account, in one transaction.
    pub async fn create(
        &self,
        admin: &RegionAdmin,
        req: CreateApiClient,
        meta: &RequestMeta,
    ) -> Result<ApiClientCreated> {
        let name = validate::name("name", &req.name, 100)?;
        let description = req
            .description
            .as_deref()
            .map(|d| validate::text("description", d, 1000))
            .transpose()?;
        let scopes = granted_scopes(&req.scopes)?;
        let jwks = req
            .jwks
            .as_ref()
            .map(assertion::validate_jwks)
            .transpose()?;
        let rate = req.requests_per_minute.map(check_rate).transpose()?;
        let region_id = admin.region_id().to_string();
        let now = now_ms();
        let id = ApiClientId::new();
        let client_id = format!("tsa_{}", random_token(16));
        let secret = format!("tss_{}", random_token(32));
        let user = UserRow {
            id: UserId::new().to_string(),
            region_id: region_id.clone(),
            // Not a login anyone can use (sign-in refuses app accounts before any
            // password check); unique and recognisable in the admins' user list.
            login: format!("app.{}", &client_id[4..]),
            login_key: format!("app.{}", client_id[4..].to_ascii_lowercase()),
            display_name: name.clone(),
            display_name_kana: None,
            profession: Profession::Other,
            organization_id: None,
            role: UserRole::User,
            kind: UserKind::App,
            // No PHC string matches this; the account never signs in with a password.
            password_hash: "!app".into(),
            must_change_password: 0,
            active: 1,
            totp_secret: None,
            totp_enabled: 0,
            totp_last_step: 0,
            created_at: now,
            updated_at: now,
        };
        let row = ApiClientRow {
            id: id.to_string(),
            region_id: region_id.clone(),
            user_id: user.id.clone(),
            client_id: client_id.clone(),
            name,
            description,
            scopes: Scope::join(&scopes),
            jwks,
            requests_per_minute: rate.map(i64::from),
            active: 1,
            created_by: admin.session().user_id().to_string(),
            created_at: now,
            updated_at: now,
            disabled_at: None,
        };
        let mut tx = self.shared.store().begin().await?;
        users::insert(&mut tx, &user).await?;
        api_clients::insert(&mut tx, &row).await?;
        api_clients::insert_secret(&mut tx, &new_secret_row(&row.id, &secret, now)).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::ApiClientCreated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("api_client", row.id.clone())
            .detail(json!({ "user_id": user.id, "scopes": row.scopes, "private_key_jwt": row.jwks.is_some() })),
        )
        .await?;
        tx.commit().await?;
        Ok(ApiClientCreated {
            id,
            client_id,
            client_secret: secret,
            user_id: convert::id(&user.id)?,
            scopes,
        })
    }

    pub async fn list(&self, admin: &RegionAdmin) -> Result<Vec<ApiClient>> {
        let mut conn = self.shared.store().conn().await?;
        let rows = api_clients::list_in_region(&mut conn, &admin.region_id().to_string()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(wire(&mut conn, &row).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, admin: &RegionAdmin, id: ApiClientId) -> Result<ApiClient> {
        let mut conn = self.shared.store().conn().await?;
        let row = find(&mut conn, admin, id).await?;
        wire(&mut conn, &row).await
    }

    /// Changes what an admin may change. Narrowed scopes and a disabled client take
    /// effect on the tokens already issued (authentication reads the client each time);
    /// disabling also ends the app's sessions and closes its sockets.
    pub async fn update(
        &self,
        admin: &RegionAdmin,
        id: ApiClientId,
        req: UpdateApiClient,
        meta: &RequestMeta,
    ) -> Result<ApiClient> {
        let mut tx = self.shared.store().begin().await?;
        let mut row = find(&mut tx, admin, id).await?;
        let mut changed = Vec::new();
        if let Some(name) = &req.name {
            row.name = validate::name("name", name, 100)?;
            changed.push("name");
        }
        if let Some(d) = &req.description {
            row.description = Some(validate::text("description", d, 1000)?);
            changed.push("description");
        }
        if let Some(scopes) = &req.scopes {
            row.scopes = Scope::join(&granted_scopes(scopes)?);
            changed.push("scopes");
        }
        if req.clear_jwks == Some(true) {
            if req.jwks.is_some() {
                return Err(DomainError::Invalid(
                    "give jwks or clear_jwks, not both".into(),
                ));
            }
            row.jwks = None;
            changed.push("jwks");
        } else if let Some(jwks) = &req.jwks {
            row.jwks = Some(assertion::validate_jwks(jwks)?);
            changed.push("jwks");
        }
        if let Some(rate) = req.requests_per_minute {
            row.requests_per_minute = Some(i64::from(check_rate(rate)?));
            changed.push("requests_per_minute");
        }
        let now = now_ms();
        let disabling = req.active == Some(false) && row.active != 0;
        let enabling = req.active == Some(true) && row.active == 0;
        if disabling {
            row.active = 0;
            row.disabled_at = Some(now);
        } else if enabling {
            row.active = 1;
            row.disabled_at = None;
        }
        row.updated_at = now;
        api_clients::update(&mut tx, &row).await?;
        if changed.contains(&"name") {
            rename_account(&mut tx, &row.user_id, &row.name, now).await?;
        }
        let actor = admin.session().actor();
        if !changed.is_empty() {
            audit::append(
                &mut tx,
                meta,
                Event::new(Action::ApiClientUpdated, Outcome::Success, &actor)
                    .target("api_client", row.id.clone())
                    .detail(json!({ "fields": changed, "scopes": row.scopes })),
            )
            .await?;
        }
        if disabling {
            self.disable_in_tx(&mut tx, &row, &actor, meta, now).await?;
        }
        if enabling {
            audit::append(
                &mut tx,
                meta,
                Event::new(Action::ApiClientUpdated, Outcome::Success, &actor)
                    .target("api_client", row.id.clone())
                    .detail(json!({ "fields": ["active"], "active": true })),
            )
            .await?;
        }
        tx.commit().await?;
        if disabling {
            self.shared
                .sessions_revoked(&row.region_id, &row.user_id, None);
        }
        let mut conn = self.shared.store().conn().await?;
        wire(&mut conn, &row).await
    }

    /// `DELETE`: disables the client. Nothing is forgotten — the account, its posts and
    /// the audit trail stay; an admin can enable it again.
    pub async fn disable(
        &self,
        admin: &RegionAdmin,
        id: ApiClientId,
        meta: &RequestMeta,
    ) -> Result<ApiClient> {
        self.update(
            admin,
            id,
            UpdateApiClient {
                active: Some(false),
                ..Default::default()
            },
            meta,
        )
        .await
    }

    async fn disable_in_tx(
        &self,
        tx: &mut Tx,
        row: &ApiClientRow,
        actor: &audit::Actor,
        meta: &RequestMeta,
        now: i64,
    ) -> Result<()> {
        let revoked =
            sessions::revoke_user_sessions(tx, &row.user_id, None, "api_client_disabled", now)
                .await?;
        audit::append(
            tx,
            meta,
            Event::new(Action::ApiClientDisabled, Outcome::Success, actor)
                .target("api_client", row.id.clone())
                .detail(json!({ "sessions_revoked": revoked })),
        )
        .await?;
        Ok(())
    }

    /// A new secret; the previous ones keep working for `grace_secs` (default 0).
    pub async fn rotate_secret(
        &self,
        admin: &RegionAdmin,
        id: ApiClientId,
        req: RotateSecret,
        meta: &RequestMeta,
    ) -> Result<SecretRotated> {
        let grace = req.grace_secs.unwrap_or(0);
        if grace > MAX_GRACE_SECS {
            return Err(DomainError::Invalid(
                "grace_secs must be at most 2592000 (30 days)".into(),
            ));
        }
        let secret = format!("tss_{}", random_token(32));
        let now = now_ms();
        let previous_expires_at = now + (grace as i64) * 1000;
        let mut tx = self.shared.store().begin().await?;
        let row = find(&mut tx, admin, id).await?;
        api_clients::expire_secrets(&mut tx, &row.id, previous_expires_at).await?;
        api_clients::insert_secret(&mut tx, &new_secret_row(&row.id, &secret, now)).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::ApiClientSecretRotated,
                Outcome::Success,
                &admin.session().actor(),
            )
            .target("api_client", row.id.clone())
            .detail(json!({ "grace_secs": grace })),
        )
        .await?;
        tx.commit().await?;
        Ok(SecretRotated {
            client_id: row.client_id,
            client_secret: secret,
            previous_expires_at: rfc3339(previous_expires_at),
        })
    }
}

/// The scopes an admin grants: at least one, each known (the type guarantees that).
fn granted_scopes(scopes: &[Scope]) -> Result<Vec<Scope>> {
    if scopes.is_empty() {
        return Err(DomainError::Invalid("scopes must name at least one".into()));
    }
    Scope::parse_list(&Scope::join(scopes))
        .map_err(|s| DomainError::Invalid(format!("unknown scope {s}")))
}

fn check_rate(rate: u32) -> Result<u32> {
    if RATE.contains(&rate) {
        Ok(rate)
    } else {
        Err(DomainError::Invalid(
            "requests_per_minute must be 1 to 100000".into(),
        ))
    }
}

/// `bytes` random bytes, base64url.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A secret has 256 random bits: SHA-256 is enough to store it (as for refresh
/// tokens), and lookups by hash leak nothing useful.
pub(super) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret_row(api_client_id: &str, secret: &str, now: i64) -> SecretRow {
    SecretRow {
        id: uuid::Uuid::now_v7().to_string(),
        api_client_id: api_client_id.to_owned(),
        secret_hash: hash_secret(secret),
        created_at: now,
        expires_at: None,
    }
}

async fn find(conn: &mut Conn, admin: &RegionAdmin, id: ApiClientId) -> Result<ApiClientRow> {
    api_clients::get_in_region(conn, &admin.region_id().to_string(), &id.to_string())
        .await?
        .ok_or(DomainError::NotFound("api client"))
}

/// The app's name is its account's display name: what timelines show as the author.
async fn rename_account(conn: &mut Conn, user_id: &str, name: &str, now: i64) -> Result<()> {
    let mut user = users::get(conn, user_id)
        .await?
        .ok_or_else(|| DomainError::Internal("api client without its account".into()))?;
    user.display_name = name.to_owned();
    user.updated_at = now;
    users::update_profile(conn, &user).await?;
    Ok(())
}

async fn wire(conn: &mut Conn, row: &ApiClientRow) -> Result<ApiClient> {
    let secrets = api_clients::live_secrets(conn, &row.id, now_ms()).await?;
    Ok(ApiClient {
        id: convert::id(&row.id)?,
        client_id: row.client_id.clone(),
        user_id: convert::id(&row.user_id)?,
        name: row.name.clone(),
        description: row.description.clone(),
        scopes: Scope::parse_list(&row.scopes)
            .map_err(|s| DomainError::Internal(format!("stored scope {s} is unknown").into()))?,
        jwks: row
            .jwks
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| DomainError::Internal(super::error::Internal::caused_by("jwks", e)))?,
        requests_per_minute: row
            .requests_per_minute
            .map(|r| r.clamp(0, u32::MAX as i64) as u32),
        active: row.active != 0,
        secrets: secrets
            .iter()
            .map(|s| ApiClientSecretInfo {
                created_at: rfc3339(s.created_at),
                expires_at: s.expires_at.map(rfc3339),
            })
            .collect(),
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        disabled_at: row.disabled_at.map(rfc3339),
    })
}
