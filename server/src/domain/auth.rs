//! Sign-in, refresh rotation, logout, per-request authentication and the caller's own
//! account (password, TOTP).

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;
use tokio::sync::OnceCell;
use tsunagu_protocol::accounts::{Me, UserKind, UserRole};
use tsunagu_protocol::apps::Scope;
use tsunagu_protocol::auth::{ChangePasswordRequest, LoginRequest, TokenResponse, TotpEnrollment};

use super::access::{AppGrant, Member, PendingAction, Session};
use super::error::{DomainError, Result};
use super::shared::Shared;
use super::throttle::Throttle;
use super::tokens::TokenSigner;
use super::{convert, password, tokens, totp, validate};
use crate::audit::{self, Action, Actor, Event, Outcome, RequestMeta};
use crate::blob::keys::{KeyRing, TOTP_DOMAIN};
use crate::clock::now_ms;
use crate::store::users::UserRow;
use crate::store::{organizations, regions, sessions, users, Conn};

/// Sign-in, refresh, logout, per-request authentication and the caller's own account.
#[derive(Clone)]
pub struct Accounts {
    shared: Shared,
    signer: Arc<TokenSigner>,
    throttle: Arc<Throttle>,
    /// Requests per app (token bucket per API client).
    app_limits: Arc<super::apps::limits::AppLimits>,
    /// The issuer shown in authenticator apps.
    totp_issuer: Arc<str>,
    /// The KEKs: TOTP secrets are stored sealed, like file data keys.
    keys: Arc<KeyRing>,
    /// A real argon2 hash of a random password, verified against when the login id is
    /// unknown so that both cases cost the same time.
    dummy_hash: Arc<OnceCell<String>>,
}

impl Accounts {
    pub(super) fn new(
        shared: Shared,
        signer: Arc<TokenSigner>,
        throttle: Throttle,
        app_limits: super::apps::limits::AppLimits,
        totp_issuer: String,
        keys: Arc<KeyRing>,
    ) -> Self {
        Accounts {
            shared,
            signer,
            throttle: Arc::new(throttle),
            app_limits: Arc::new(app_limits),
            totp_issuer: totp_issuer.into(),
            keys,
            dummy_hash: Arc::default(),
        }
    }

    /// Re-reads the access-token key ring (a periodic chore; see `tokens::RELOAD_EVERY`).
    pub fn reload_keys(&self) -> std::result::Result<bool, tokens::KeyError> {
        self.signer.reload()
    }

    /// The access-token keys: id, when added, file, what each does now.
    pub fn signing_keys(&self) -> Vec<(String, i64, std::path::PathBuf, tokens::KeyState)> {
        self.signer.keys()
    }

    /// Forgets sign-in failures old enough not to count (a periodic chore).
    pub fn prune_throttle(&self) {
        self.throttle.prune();
    }

    async fn dummy_hash(&self) -> Result<String> {
        self.dummy_hash
            .get_or_try_init(|| password::hash(password::generate_one_time().into()))
            .await
            .cloned()
    }

    /// Password (+ TOTP) sign-in. Unknown login ids, wrong passwords and deactivated
    /// accounts answer identically and take the same time.
    pub async fn login(&self, req: LoginRequest, meta: &RequestMeta) -> Result<TokenResponse> {
        let key = validate::login_key(req.login.trim());
        if let Err(retry_after_secs) = self.throttle.check(&key, meta.ip.as_deref()) {
            audit::append_alone(
                self.shared.store(),
                meta,
                Event::new(Action::LoginThrottled, Outcome::Denied, &Actor::default()),
            )
            .await?;
            return Err(DomainError::Throttled { retry_after_secs });
        }
        let found = {
            let mut conn = self.shared.store().conn().await?;
            users::find_by_login_key(&mut conn, &key).await?
        };
        let phc = match &found {
            Some(user) if user.kind == UserKind::Person => user.password_hash.clone(),
            // Apps have no password; they authenticate at /oauth/token.
            _ => self.dummy_hash().await?,
        };
        let too_long = req.password.chars().count() > password::MAX_PASSWORD_CHARS;
        let matches = !too_long && password::verify(SecretString::from(req.password), phc).await?;
        let user = match found {
            Some(user) if matches && user.active != 0 && user.kind == UserKind::Person => user,
            other => {
                let actor = other.as_ref().map(actor_of).unwrap_or_default();
                let reason = match &other {
                    None => "unknown_login",
                    Some(u) if u.kind == UserKind::App => "app_account",
                    Some(u) if u.active == 0 => "inactive",
                    Some(_) => "wrong_password",
                };
                self.throttle.failed(meta.ip.as_deref());
                audit::append_alone(
                    self.shared.store(),
                    meta,
                    Event::new(Action::LoginFailed, Outcome::Failure, &actor)
                        .detail(json!({ "reason": reason })),
                )
                .await?;
                return Err(DomainError::InvalidCredentials);
            }
        };

        let mut tx = self.shared.store().begin().await?;
        if user.totp_enabled != 0 {
            let Some(code) = req.totp.as_deref() else {
                return Err(DomainError::TotpRequired);
            };
            if !self.check_totp(&mut tx, &user, code).await? {
                self.throttle.failed(meta.ip.as_deref());
                audit::append(
                    &mut tx,
                    meta,
                    Event::new(Action::LoginFailed, Outcome::Failure, &actor_of(&user))
                        .detail(json!({ "reason": "invalid_totp" })),
                )
                .await?;
                tx.commit().await?;
                return Err(DomainError::InvalidTotp);
            }
        }
        let region = regions::get(&mut tx, &user.region_id)
            .await?
            .ok_or_else(|| DomainError::Internal("user without region".into()))?;
        let session_id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        sessions::insert_session(&mut tx, &session_id, &user.id, now).await?;
        let refresh = self
            .add_refresh_token(&mut tx, &session_id, now, region.refresh_token_ttl_secs)
            .await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::LoginSucceeded, Outcome::Success, &actor_of(&user))
                .target("session", session_id.clone()),
        )
        .await?;
        tx.commit().await?;
        self.token_response(&user, &session_id, refresh, region.access_token_ttl_secs)
    }

    /// Exchanges a refresh token for a new pair. A token that was already used means it
    /// was copied: the whole session is revoked and the event audited.
    pub async fn refresh(&self, token: &str, meta: &RequestMeta) -> Result<TokenResponse> {
        let hash = tokens::hash_refresh_token(token);
        let now = now_ms();
        let mut tx = self.shared.store().begin().await?;
        let Some(session_id) = sessions::consume_refresh_token(&mut tx, &hash, now).await? else {
            if let Some(state) = sessions::find_refresh_token(&mut tx, &hash).await? {
                if state.used_at.is_some()
                    && sessions::revoke_session(&mut tx, &state.session_id, "refresh_reuse", now)
                        .await?
                {
                    let user = users::get(&mut tx, &state.user_id).await?;
                    let actor = user.as_ref().map(actor_of).unwrap_or_default();
                    audit::append(
                        &mut tx,
                        meta,
                        Event::new(Action::RefreshReuseDetected, Outcome::Denied, &actor)
                            .target("session", state.session_id.clone()),
                    )
                    .await?;
                    tx.commit().await?;
                    tracing::warn!(session_id = %state.session_id, "refresh token reuse: session revoked");
                    if let Some(u) = &user {
                        self.shared
                            .sessions_revoked(&u.region_id, &u.id, Some(&state.session_id));
                    }
                }
            }
            return Err(DomainError::InvalidRefreshToken);
        };
        let user_id = sessions::session_user(&mut tx, &session_id)
            .await?
            .ok_or(DomainError::InvalidRefreshToken)?;
        let user = users::get(&mut tx, &user_id)
            .await?
            .ok_or(DomainError::InvalidRefreshToken)?;
        if user.active == 0 {
            sessions::revoke_session(&mut tx, &session_id, "user_inactive", now).await?;
            tx.commit().await?;
            return Err(DomainError::InvalidRefreshToken);
        }
        let region = regions::get(&mut tx, &user.region_id)
            .await?
            .ok_or_else(|| DomainError::Internal("user without region".into()))?;
        let refresh = self
            .add_refresh_token(&mut tx, &session_id, now, region.refresh_token_ttl_secs)
            .await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::TokenRefreshed, Outcome::Success, &actor_of(&user))
                .target("session", session_id.clone()),
        )
        .await?;
        tx.commit().await?;
        self.token_response(&user, &session_id, refresh, region.access_token_ttl_secs)
    }

    /// Ends the session named by the access token and/or the refresh token. Answers the
    /// same whether or not there was anything to revoke.
    pub async fn logout(
        &self,
        session: Option<&Session>,
        refresh_token: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<()> {
        let mut tx = self.shared.store().begin().await?;
        let now = now_ms();
        let mut targets = Vec::new();
        if let Some(s) = session {
            targets.push((s.session_id.clone(), s.actor()));
        }
        if let Some(token) = refresh_token {
            let hash = tokens::hash_refresh_token(token);
            if let Some(state) = sessions::find_refresh_token(&mut tx, &hash).await? {
                let user = users::get(&mut tx, &state.user_id).await?;
                targets.push((
                    state.session_id,
                    user.as_ref().map(actor_of).unwrap_or_default(),
                ));
            }
        }
        let mut ended = Vec::new();
        for (session_id, actor) in targets {
            if sessions::revoke_session(&mut tx, &session_id, "logout", now).await? {
                if let (Some(user), Some(region)) = (&actor.user_id, &actor.region_id) {
                    ended.push((region.clone(), user.clone(), session_id.clone()));
                }
                audit::append(
                    &mut tx,
                    meta,
                    Event::new(Action::SessionRevoked, Outcome::Success, &actor)
                        .target("session", session_id)
                        .detail(json!({ "reason": "logout" })),
                )
                .await?;
            }
        }
        tx.commit().await?;
        for (region, user, session) in ended {
            self.shared.sessions_revoked(&region, &user, Some(&session));
        }
        Ok(())
    }

    /// Turns a bearer token into a `Session`: signature, claims, a live session and an
    /// active user are all required. Any failure is the same 401.
    pub async fn authenticate(&self, bearer: &str) -> Result<Session> {
        let claims = self
            .signer
            .verify(bearer)
            .ok_or(DomainError::Unauthenticated)?;
        let mut conn = self.shared.store().conn().await?;
        let row = users::auth_context(&mut conn, &claims.sid, &claims.sub)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        if row.active == 0 || row.region_id != claims.rid {
            return Err(DomainError::Unauthenticated);
        }
        let app = match (row.kind, &claims.scope) {
            (UserKind::Person, None) => None,
            (UserKind::App, Some(scope)) => {
                let grant = app_grant(&row, scope)?;
                let rate = row.client_rpm.map(|r| r.clamp(1, u32::MAX as i64) as u32);
                self.app_limits
                    .check(&grant.api_client_id.to_string(), rate)
                    .map_err(|retry_after_secs| DomainError::Throttled { retry_after_secs })?;
                Some(grant)
            }
            // A person's token with scopes, or an app's without: not one we issued.
            _ => return Err(DomainError::Unauthenticated),
        };
        let pending = if app.is_some() {
            // Apps have no password and no second factor: client authentication is both.
            None
        } else if row.must_change_password != 0 {
            Some(PendingAction::ChangePassword)
        } else if row.mfa_required != 0 && row.totp_enabled == 0 {
            Some(PendingAction::EnrollMfa)
        } else {
            None
        };
        Ok(Session {
            user_id: convert::id(&row.id)?,
            region_id: convert::id(&row.region_id)?,
            organization_id: row
                .organization_id
                .as_deref()
                .map(convert::id)
                .transpose()?,
            session_id: claims.sid,
            is_region_admin: row.role == UserRole::RegionAdmin && app.is_none(),
            pending,
            app,
        })
    }

    /// Whether the session behind a live connection still stands (not revoked, the
    /// account active): a connection asks after it may have missed a revocation.
    pub async fn session_active(&self, member: &Member) -> Result<bool> {
        let s = member.session();
        let mut conn = self.shared.store().conn().await?;
        let row = users::auth_context(&mut conn, s.session_id(), &s.user_id().to_string()).await?;
        Ok(row.is_some_and(|r| {
            r.active != 0
                && r.region_id == s.region_id().to_string()
                // An app's socket ends with its client.
                && (r.kind == UserKind::Person || r.client_id.is_some())
        }))
    }

    /// The caller, their region and organisation.
    pub async fn me(&self, session: &Session) -> Result<Me> {
        let mut conn = self.shared.store().conn().await?;
        let user = users::get(&mut conn, &session.user_id.to_string())
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let region = regions::get(&mut conn, &user.region_id)
            .await?
            .ok_or_else(|| DomainError::Internal("user without region".into()))?;
        let organization = match &user.organization_id {
            Some(org) => organizations::get_in_region(&mut conn, &user.region_id, org)
                .await?
                .as_ref()
                .map(convert::organization)
                .transpose()?,
            None => None,
        };
        Ok(Me {
            user: convert::user(&user)?,
            region: convert::region(&region)?,
            organization,
            pending_action: session.pending.map(|p| p.as_str().to_owned()),
            about: crate::store::directory::about(&mut conn, &user.id).await?,
        })
    }

    /// Changes the caller's own password; their other sessions are signed out.
    pub async fn change_password(
        &self,
        session: &Session,
        req: ChangePasswordRequest,
        meta: &RequestMeta,
    ) -> Result<()> {
        let user_id = session.user_id.to_string();
        let (user, region) = {
            let mut conn = self.shared.store().conn().await?;
            let user = users::get(&mut conn, &user_id)
                .await?
                .ok_or(DomainError::Unauthenticated)?;
            let region = regions::get(&mut conn, &user.region_id)
                .await?
                .ok_or_else(|| DomainError::Internal("user without region".into()))?;
            (user, region)
        };
        if let Err(retry_after_secs) = self.throttle.check(&user.login_key, meta.ip.as_deref()) {
            return Err(DomainError::Throttled { retry_after_secs });
        }
        if !password::verify(
            SecretString::from(req.current_password),
            user.password_hash.clone(),
        )
        .await?
        {
            self.throttle.failed(meta.ip.as_deref());
            return Err(DomainError::InvalidCredentials);
        }
        password::check_policy(
            &req.new_password,
            region.password_min_length as usize,
            &user.login,
        )?;
        if password::verify(
            SecretString::from(req.new_password.clone()),
            user.password_hash.clone(),
        )
        .await?
        {
            return Err(DomainError::WeakPassword(
                "the new password must differ from the current one".into(),
            ));
        }
        let phc = password::hash(SecretString::from(req.new_password)).await?;
        let now = now_ms();
        let mut tx = self.shared.store().begin().await?;
        users::set_password(&mut tx, &user_id, &phc, false, now).await?;
        sessions::revoke_user_sessions(
            &mut tx,
            &user_id,
            Some(&session.session_id),
            "password_changed",
            now,
        )
        .await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::PasswordChanged, Outcome::Success, &session.actor())
                .target("user", user_id.clone()),
        )
        .await?;
        tx.commit().await?;
        self.shared
            .sessions_revoked(&user.region_id, &user_id, None);
        Ok(())
    }

    /// Starts TOTP enrolment: a new secret, inactive until confirmed with a code.
    pub async fn totp_begin(&self, session: &Session) -> Result<TotpEnrollment> {
        let user_id = session.user_id.to_string();
        let mut conn = self.shared.store().conn().await?;
        let user = users::get(&mut conn, &user_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        if user.totp_enabled != 0 {
            return Err(DomainError::Conflict(
                "TOTP is already enabled; an administrator can reset it".into(),
            ));
        }
        let secret = totp::new_secret();
        let generator = totp::generator(&secret, &self.totp_issuer, &user.login)?;
        let (kek, sealed) = self.keys.seal(TOTP_DOMAIN, &user_id, secret.as_bytes());
        users::set_totp(&mut conn, &user_id, Some((&kek, &sealed)), false, now_ms()).await?;
        Ok(TotpEnrollment {
            otpauth_url: generator.get_url(),
            secret,
        })
    }

    /// Confirms enrolment with a current code; from now on sign-in needs a code.
    pub async fn totp_confirm(
        &self,
        session: &Session,
        code: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        let user_id = session.user_id.to_string();
        let mut tx = self.shared.store().begin().await?;
        let user = users::get(&mut tx, &user_id)
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        if user.totp_enabled != 0 {
            return Err(DomainError::Conflict("TOTP is already enabled".into()));
        }
        let Some(secret) = self.totp_secret(&user)? else {
            return Err(DomainError::Invalid(
                "start enrolment first (POST /api/v1/me/totp)".into(),
            ));
        };
        let generator = totp::generator(&secret, &self.totp_issuer, &user.login)?;
        let Some(step) = totp::matching_step(&generator, code, (now_ms() / 1000) as u64) else {
            return Err(DomainError::InvalidTotp);
        };
        let (kek, sealed) = self.keys.seal(TOTP_DOMAIN, &user_id, secret.as_bytes());
        users::set_totp(&mut tx, &user_id, Some((&kek, &sealed)), true, now_ms()).await?;
        users::advance_totp_step(&mut tx, &user_id, step).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::TotpEnrolled, Outcome::Success, &session.actor())
                .target("user", user_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's TOTP secret (base32), opened with its KEK; a secret still in plain text
    /// (written before migration 0011, not yet sealed by the start-up pass) as it is.
    fn totp_secret(&self, user: &UserRow) -> Result<Option<zeroize::Zeroizing<String>>> {
        let Some(stored) = user.totp_secret.as_deref() else {
            return Ok(None);
        };
        let Some(kek) = user.totp_kek_id.as_deref() else {
            return Ok(Some(stored.to_owned().into()));
        };
        let bytes = self
            .keys
            .open(TOTP_DOMAIN, kek, &user.id, stored)
            .map_err(|e| {
                DomainError::Internal(super::error::Internal::caused_by(
                    format!("TOTP secret of user {}", user.id),
                    e,
                ))
            })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| DomainError::Internal("a sealed TOTP secret is not text".into()))?;
        Ok(Some(text.into()))
    }

    /// Checks a sign-in code and burns its time step, so a code works once.
    async fn check_totp(&self, conn: &mut Conn, user: &UserRow, code: &str) -> Result<bool> {
        let Some(secret) = self.totp_secret(user)? else {
            return Ok(false);
        };
        let generator = totp::generator(&secret, &self.totp_issuer, &user.login)?;
        match totp::matching_step(&generator, code, (now_ms() / 1000) as u64) {
            Some(step) => Ok(users::advance_totp_step(conn, &user.id, step).await?),
            None => Ok(false),
        }
    }

    async fn add_refresh_token(
        &self,
        conn: &mut Conn,
        session_id: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Result<String> {
        let token = tokens::new_refresh_token();
        sessions::insert_refresh_token(
            conn,
            &uuid::Uuid::now_v7().to_string(),
            session_id,
            &tokens::hash_refresh_token(&token),
            now,
            now + ttl_secs * 1000,
        )
        .await?;
        Ok(token)
    }

    fn token_response(
        &self,
        user: &UserRow,
        session_id: &str,
        refresh: String,
        ttl_secs: i64,
    ) -> Result<TokenResponse> {
        let ttl = ttl_secs.max(1) as u64;
        let access = self
            .signer
            .issue(&user.id, &user.region_id, session_id, ttl)
            .map_err(|e| DomainError::Internal(e.into()))?;
        Ok(TokenResponse {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: ttl,
        })
    }
}

pub(super) fn actor_of(user: &UserRow) -> Actor {
    Actor {
        user_id: Some(user.id.clone()),
        organization_id: user.organization_id.clone(),
        region_id: Some(user.region_id.clone()),
    }
}

/// The grant of an app's token: the scopes it names that its client (active, or the
/// row would have none) still grants.
fn app_grant(row: &users::AuthRow, token_scope: &str) -> Result<AppGrant> {
    let (Some(client_id), Some(granted)) = (&row.client_id, &row.client_scopes) else {
        // The client was disabled: its tokens stop at once.
        return Err(DomainError::Unauthenticated);
    };
    let granted = Scope::parse_list(granted)
        .map_err(|s| DomainError::Internal(format!("stored scope {s} is unknown").into()))?;
    let asked = Scope::parse_list(token_scope).map_err(|_| DomainError::Unauthenticated)?;
    Ok(AppGrant {
        api_client_id: convert::id(client_id)?,
        scopes: asked.into_iter().filter(|s| granted.contains(s)).collect(),
    })
}
