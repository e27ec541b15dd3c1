//! Third-party apps: the app mode of the client (OAuth 2.0 client credentials with
//! automatic renewal) and the region admin's calls that register apps.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tsunagu_client::Error> {
//! use tsunagu_client::{AppCredentials, Client};
//! let app = Client::app(
//!     "https://tsunagu.example.jp",
//!     AppCredentials::secret("tsa_…", "tss_…"),
//! )?;
//! for group in app.list_groups().await?.groups {
//!     println!("{}", group.name);
//! }
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use tsunagu_protocol::apps::{
    ApiClient, ApiClientCreated, ApiClientList, CreateApiClient, OAuthError, RotateSecret,
    SecretRotated, TokenResponse, UpdateApiClient,
};
use tsunagu_protocol::ids::ApiClientId;

use crate::{Client, Error, Result, Tokens};

/// Renew this long before the token expires, so a call never races its expiry.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// An app's credentials for the client credentials grant.
pub struct AppCredentials {
    client_id: String,
    client_secret: String,
    /// Space-separated scopes to ask for; `None` asks for every granted scope.
    scope: Option<String>,
    /// When the current token should be renewed.
    renew_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl AppCredentials {
    /// A client id and secret, sent with HTTP Basic.
    pub fn secret(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        AppCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: None,
            renew_at: Mutex::new(None),
        }
    }

    /// Asks for these scopes only (least privilege for this process).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn due(&self) -> bool {
        self.renew_at
            .lock()
            .map(|at| at.is_some_and(|at| Instant::now() >= at))
            .unwrap_or(true)
    }
}

impl Client {
    /// A client acting as a third-party app. It gets its token on the first call and a
    /// new one whenever the old one nears its expiry or is refused.
    pub fn app(base: &str, credentials: AppCredentials) -> Result<Self> {
        let mut client = Client::new(base)?;
        client.app = Some(Arc::new(credentials));
        Ok(client)
    }

    /// Asks the token endpoint for a token now (an app client does this by itself).
    pub async fn app_token(&self, app: &AppCredentials) -> Result<TokenResponse> {
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(scope) = &app.scope {
            form.push(("scope", scope.clone()));
        }
        let response = self
            .http
            .post(self.url("api/v1/oauth/token")?)
            .basic_auth(
                form_encode(&app.client_id),
                Some(form_encode(&app.client_secret)),
            )
            .form(&form)
            .send()
            .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            let body = serde_json::from_slice::<OAuthError>(&bytes)
                .map_err(|_| Error::Protocol(format!("{status} without an OAuth error body")))?;
            return Err(Error::OAuth { status, body });
        }
        let token: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(e.to_string()))?;
        let lifetime = Duration::from_secs(token.expires_in);
        if let Ok(mut at) = app.renew_at.lock() {
            *at = Some(Instant::now() + lifetime.saturating_sub(RENEW_BEFORE));
        }
        self.set_tokens(Some(Tokens {
            access_token: token.access_token.clone(),
            refresh_token: String::new(),
        }));
        Ok(token)
    }

    /// For an app whose token is due for renewal: the stale token, so the next call
    /// renews it first.
    pub(crate) fn app_token_due(&self) -> bool {
        self.app.as_ref().is_some_and(|a| a.due())
    }

    // ---- region administration: apps ----

    pub async fn create_api_client(&self, req: &CreateApiClient) -> Result<ApiClientCreated> {
        self.authed(Method::POST, "api/v1/admin/api-clients", Some(req))
            .await
    }

    pub async fn list_api_clients(&self) -> Result<ApiClientList> {
        self.authed::<(), _>(Method::GET, "api/v1/admin/api-clients", None)
            .await
    }

    pub async fn get_api_client(&self, id: ApiClientId) -> Result<ApiClient> {
        self.authed::<(), _>(Method::GET, &format!("api/v1/admin/api-clients/{id}"), None)
            .await
    }

    pub async fn update_api_client(
        &self,
        id: ApiClientId,
        req: &UpdateApiClient,
    ) -> Result<ApiClient> {
        self.authed(
            Method::PATCH,
            &format!("api/v1/admin/api-clients/{id}"),
            Some(req),
        )
        .await
    }

    /// Disables the app (nothing is deleted).
    pub async fn disable_api_client(&self, id: ApiClientId) -> Result<ApiClient> {
        self.authed::<(), _>(
            Method::DELETE,
            &format!("api/v1/admin/api-clients/{id}"),
            None,
        )
        .await
    }

    pub async fn rotate_api_client_secret(
        &self,
        id: ApiClientId,
        grace_secs: Option<u64>,
    ) -> Result<SecretRotated> {
        self.authed(
            Method::POST,
            &format!("api/v1/admin/api-clients/{id}/secret"),
            Some(&RotateSecret { grace_secs }),
        )
        .await
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-encoded first.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
