//! The client credentials grant (RFC 6749 §4.4) with client authentication by secret
//! (HTTP Basic or `client_secret_post`) or by `private_key_jwt` (RFC 7523).
//!
//! Every refusal is audited with its reason; the app learns only the OAuth error code,
//! so a wrong secret, an unknown client and a disabled one look the same to it.

use serde_json::json;
use tsunagu_protocol::apps::{Scope, TokenResponse};

use super::super::error::DomainError;
use super::{api_clients, assertion, hash_secret, Apps};
use crate::audit::{self, Action, Actor, Event, Outcome, RequestMeta};
use crate::clock::now_ms;
use crate::store::api_clients::ApiClientRow;
use crate::store::{sessions, users};

/// How the client proved who it is.
pub enum ClientAuth {
    /// `client_id` + `client_secret`, from the Basic header (`basic`) or the body.
    Secret {
        client_id: String,
        secret: String,
        basic: bool,
    },
    /// A signed JWT; `client_id`, when sent, must name the same client.
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
    /// No (usable) client authentication in the request.
    Missing,
}

/// A token request, already read from the form.
pub struct TokenGrant {
    pub grant_type: String,
    pub scope: Option<String>,
    pub client: ClientAuth,
    /// The URLs this request reached the token endpoint by (an assertion's `aud` may
    /// name one when no `token_url` is configured).
    pub endpoint_urls: Vec<String>,
}

/// An OAuth error (RFC 6749 §5.2). `invalid_client` is 401; the others 400.
#[derive(Debug)]
pub enum OAuthFailure {
    InvalidRequest(String),
    /// `basic`: the client tried HTTP Basic, so the answer carries `WWW-Authenticate`.
    InvalidClient {
        basic: bool,
    },
    InvalidScope(String),
    UnsupportedGrantType,
    /// Not the app's doing: answered as a 500 in our error shape.
    Internal(DomainError),
}

impl From<DomainError> for OAuthFailure {
    fn from(e: DomainError) -> Self {
        OAuthFailure::Internal(e)
    }
}

impl From<crate::store::StoreError> for OAuthFailure {
    fn from(e: crate::store::StoreError) -> Self {
        OAuthFailure::Internal(e.into())
    }
}

impl From<sqlx::Error> for OAuthFailure {
    fn from(e: sqlx::Error) -> Self {
        OAuthFailure::Internal(e.into())
    }
}

type Grant<T> = std::result::Result<T, OAuthFailure>;

impl Apps {
    /// Authenticates the client and issues an access token for its app account with the
    /// requested (or all granted) scopes.
    pub async fn token(&self, grant: TokenGrant, meta: &RequestMeta) -> Grant<TokenResponse> {
        if grant.grant_type != "client_credentials" {
            return Err(if grant.grant_type.is_empty() {
                OAuthFailure::InvalidRequest("grant_type is required".into())
            } else {
                OAuthFailure::UnsupportedGrantType
            });
        }
        let basic = matches!(grant.client, ClientAuth::Secret { basic: true, .. });
        let client = self.authenticate_client(&grant, meta).await?;
        let granted = Scope::parse_list(&client.scopes).map_err(|s| {
            OAuthFailure::Internal(DomainError::Internal(
                format!("stored scope {s} is unknown").into(),
            ))
        })?;
        let scopes = match grant.scope.as_deref().map(str::trim) {
            None | Some("") => granted.clone(),
            Some(asked) => {
                let asked = Scope::parse_list(asked)
                    .map_err(|s| OAuthFailure::InvalidScope(format!("unknown scope {s}")))?;
                if let Some(extra) = asked.iter().find(|s| !granted.contains(s)) {
                    self.refuse(&client, meta, "scope_not_granted").await?;
                    return Err(OAuthFailure::InvalidScope(format!(
                        "{extra} was not granted to this client"
                    )));
                }
                asked
            }
        };
        let mut tx = self.shared.store().begin().await?;
        let user = users::get(&mut tx, &client.user_id)
            .await?
            .filter(|u| u.active != 0)
            .ok_or(OAuthFailure::InvalidClient { basic })?;
        // One session per token: it is what sockets and revocation name, like a
        // person's sign-in.
        let session_id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        sessions::insert_session(&mut tx, &session_id, &user.id, now).await?;
        let scope = Scope::join(&scopes);
        audit::append(
            &mut tx,
            meta,
            Event::new(
                Action::AppTokenIssued,
                Outcome::Success,
                &app_actor(&client),
            )
            .target("api_client", client.id.clone())
            .detail(json!({ "session_id": session_id, "scope": scope })),
        )
        .await?;
        tx.commit().await?;
        let ttl = self.settings.token_ttl_secs;
        let access_token = self
            .signer
            .issue_with_scope(
                &user.id,
                &user.region_id,
                &session_id,
                ttl,
                Some(scope.clone()),
            )
            .map_err(|e| OAuthFailure::Internal(DomainError::Internal(e.into())))?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl,
            scope,
        })
    }

    /// The active client the request authenticates, or `invalid_client`.
    async fn authenticate_client(
        &self,
        grant: &TokenGrant,
        meta: &RequestMeta,
    ) -> Grant<ApiClientRow> {
        let mut conn = self.shared.store().conn().await?;
        match &grant.client {
            ClientAuth::Missing => Err(OAuthFailure::InvalidClient { basic: false }),
            ClientAuth::Secret {
                client_id,
                secret,
                basic,
            } => {
                let invalid = OAuthFailure::InvalidClient { basic: *basic };
                let Some(client) = api_clients::find_by_client_id(&mut conn, client_id).await?
                else {
                    return Err(invalid);
                };
                drop(conn);
                if client.active == 0 {
                    self.refuse(&client, meta, "disabled").await?;
                    return Err(invalid);
                }
                let hash = hash_secret(secret);
                let mut conn = self.shared.store().conn().await?;
                let live = api_clients::live_secrets(&mut conn, &client.id, now_ms()).await?;
                drop(conn);
                if !live.iter().any(|s| s.secret_hash == hash) {
                    self.refuse(&client, meta, "wrong_secret").await?;
                    return Err(invalid);
                }
                Ok(client)
            }
            ClientAuth::Assertion {
                client_id,
                assertion: jwt,
            } => {
                let invalid = OAuthFailure::InvalidClient { basic: false };
                let Some(claimed) = assertion::claimed_client(jwt) else {
                    return Err(invalid);
                };
                if client_id.as_deref().is_some_and(|c| c != claimed) {
                    return Err(invalid);
                }
                let Some(client) = api_clients::find_by_client_id(&mut conn, &claimed).await?
                else {
                    return Err(invalid);
                };
                drop(conn);
                if client.active == 0 {
                    self.refuse(&client, meta, "disabled").await?;
                    return Err(invalid);
                }
                let audiences = match &self.settings.token_url {
                    Some(url) => vec![url.clone()],
                    None => grant.endpoint_urls.clone(),
                };
                let now_secs = (now_ms() / 1000) as u64;
                let claims = match assertion::verify(
                    jwt,
                    client.jwks.as_deref(),
                    &client.client_id,
                    &audiences,
                    now_secs,
                ) {
                    Ok(claims) => claims,
                    Err(refusal) => {
                        self.refuse(&client, meta, refusal.as_str()).await?;
                        return Err(invalid);
                    }
                };
                // Kept until the assertion would have expired anyway: a replay inside
                // its lifetime finds it.
                let mut conn = self.shared.store().conn().await?;
                let fresh = api_clients::record_assertion(
                    &mut conn,
                    &client.id,
                    &claims.jti,
                    (claims.exp as i64 + 60) * 1000,
                )
                .await?;
                drop(conn);
                if !fresh {
                    self.refuse(&client, meta, "replayed_jti").await?;
                    return Err(invalid);
                }
                Ok(client)
            }
        }
    }

    async fn refuse(&self, client: &ApiClientRow, meta: &RequestMeta, reason: &str) -> Grant<()> {
        audit::append_alone(
            self.shared.store(),
            meta,
            Event::new(Action::AppTokenRefused, Outcome::Denied, &app_actor(client))
                .target("api_client", client.id.clone())
                .detail(json!({ "reason": reason })),
        )
        .await
        .map(|_| ())
        .map_err(|e| OAuthFailure::Internal(e.into()))
    }

    /// Forgets used assertions that can no longer be replayed (a periodic chore).
    pub async fn prune_assertions(&self) -> super::Result<u64> {
        let mut conn = self.shared.store().conn().await?;
        Ok(api_clients::prune_assertions(&mut conn, now_ms()).await?)
    }
}

/// The app as the actor of its own token requests.
fn app_actor(client: &ApiClientRow) -> Actor {
    Actor {
        user_id: Some(client.user_id.clone()),
        organization_id: None,
        region_id: Some(client.region_id.clone()),
    }
}
