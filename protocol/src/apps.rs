//! Third-party apps: API clients, their scopes and the OAuth 2.0 token endpoint
//! (client credentials, RFC 6749 §4.4; `private_key_jwt`, RFC 7523). See
//! `docs/integrations.md`.

use serde::{Deserialize, Serialize};

use crate::ids::{ApiClientId, UserId};

wire_enum!(
    /// What an app's access token allows. A person's token allows everything their
    /// account does; an app's only the routes of its scopes (and, like a person, only
    /// what its account may see).
    Scope {
        /// Threads, timelines, receipts, search, the websocket.
        MessagesRead = "messages:read",
        /// Posting, editing and deleting its own messages, reactions, read marks.
        MessagesWrite = "messages:write",
        /// File metadata, downloads, a group's library.
        FilesRead = "files:read",
        /// Uploading, renaming and deleting its own files.
        FilesWrite = "files:write",
        /// The groups it is in and their members.
        GroupsRead = "groups:read",
        /// The region's file-access and event reports.
        AuditRead = "audit:read",
        /// The directory of the region's professionals.
        UsersRead = "users:read",
    }
);

impl Scope {
    /// Parses an OAuth `scope` string (space-separated); `Err` names the first unknown one.
    pub fn parse_list(s: &str) -> Result<Vec<Scope>, String> {
        let mut out = Vec::new();
        for word in s.split(' ').filter(|w| !w.is_empty()) {
            let scope = Scope::parse(word).ok_or_else(|| word.to_owned())?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        out.sort_by_key(|s| s.position());
        Ok(out)
    }

    /// The OAuth `scope` string of `scopes`, in the fixed order of [`Scope::ALL`].
    pub fn join(scopes: &[Scope]) -> String {
        let mut sorted = scopes.to_vec();
        sorted.sort_by_key(|s| s.position());
        sorted.dedup();
        sorted
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn position(self) -> usize {
        Scope::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(usize::MAX)
    }
}

/// `POST /api/v1/admin/api-clients`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "退院サマリー連携", "scopes": ["messages:write", "files:write", "groups:read"], "description": "電子カルテから退院サマリーを投稿"})))]
#[serde(deny_unknown_fields)]
pub struct CreateApiClient {
    /// Shown as the author of the app's posts and uploads.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: String,
    /// The scopes the app may request; at least one.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 7))]
    pub scopes: Vec<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub description: Option<String>,
    /// Public keys for `private_key_jwt` (a JWK Set: `{"keys": [...]}`; each key with a
    /// `kid`, EC P-256/P-384 or RSA of 2048 bits or more, no private parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub jwks: Option<serde_json::Value>,
    /// Requests per minute (REST); absent takes the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub requests_per_minute: Option<u32>,
}

/// The answer to a registration: the secret is shown here once and stored hashed.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiClientCreated {
    pub id: ApiClientId,
    pub client_id: String,
    pub client_secret: String,
    /// The app account: add it to groups with `POST /groups/{id}/members`.
    pub user_id: UserId,
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for ApiClientCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClientCreated")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A secret of an API client, without the secret itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiClientSecretInfo {
    pub created_at: String,
    /// When a rotated-out secret stops working; absent for the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// An API client as administrators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiClient {
    pub id: ApiClientId,
    pub client_id: String,
    pub user_id: UserId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub scopes: Vec<Scope>,
    /// The registered public keys for `private_key_jwt`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub jwks: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    pub active: bool,
    /// Secrets that still work: the current one and any in their grace period.
    pub secrets: Vec<ApiClientSecretInfo>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiClientList {
    pub api_clients: Vec<ApiClient>,
}

/// `PATCH /api/v1/admin/api-clients/{id}`: absent fields stay as they are. Narrowing
/// the scopes or disabling the client takes effect on tokens already issued.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateApiClient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 7))]
    pub scopes: Option<Vec<Scope>>,
    /// Replaces the registered public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub jwks: Option<serde_json::Value>,
    /// Removes the registered public keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_jwks: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    pub requests_per_minute: Option<u32>,
    /// `true` enables a disabled client again (`DELETE` disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// `POST /api/v1/admin/api-clients/{id}/secret`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps working, in seconds (default 0: not at all;
    /// at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 2592000))]
    pub grace_secs: Option<u64>,
}

/// The new secret, shown once.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretRotated {
    pub client_id: String,
    pub client_secret: String,
    /// When the previous secret stops working (now, without a grace period).
    pub previous_expires_at: String,
}

impl std::fmt::Debug for SecretRotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRotated")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/oauth/token` (form-encoded): the client credentials grant.
#[derive(Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRequest {
    /// `client_credentials`.
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub grant_type: String,
    /// Space-separated scopes; absent asks for every granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub scope: Option<String>,
    /// With `client_secret` (`client_secret_post`), or alone beside an assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` for `private_key_jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub client_assertion_type: Option<String>,
    /// The signed JWT (RFC 7523): `iss` = `sub` = client_id, `aud` = this endpoint's
    /// URL, `exp` at most 5 minutes ahead, a `jti` never used before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 16384))]
    pub client_assertion: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The token endpoint's error shape (RFC 6749 §5.2): `invalid_request`,
/// `invalid_client`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
/// `invalid_scope`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OAuthError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_string_parses_in_fixed_order_without_duplicates() {
        let s = Scope::parse_list("files:read  messages:read files:read").unwrap();
        assert_eq!(s, vec![Scope::MessagesRead, Scope::FilesRead]);
        assert_eq!(Scope::join(&s), "messages:read files:read");
        assert_eq!(
            Scope::parse_list("messages:read admin").unwrap_err(),
            "admin"
        );
    }
}
