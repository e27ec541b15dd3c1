//! Tsunagu Rust SDK: typed calls to the REST API with automatic token refresh.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tsunagu_client::Error> {
//! let client = tsunagu_client::Client::new("http://127.0.0.1:8080")?;
//! client.login("nurse.sato", "correct horse battery staple", None).await?;
//! let me = client.me().await?;
//! println!("{} ({})", me.user.display_name, me.region.name);
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tsunagu_protocol::accounts::{
    CreateOrganization, CreateUser, Me, Organization, OrganizationList, Policy, RegionList,
    ResetPassword, UpdateOrganization, UpdatePolicy, UpdateUser, User, UserList,
};
use tsunagu_protocol::auth::{
    ChangePasswordRequest, LoginRequest, RefreshRequest, TokenResponse, TotpCodeRequest,
    TotpEnrollment,
};
use tsunagu_protocol::ids::{GroupId, MessageId, OrganizationId, ThreadId, UserId};
use tsunagu_protocol::messaging::{
    AcceptInvitation, AcceptedInvitation, AddMember, AddReaction, AddThreadMember, CreateGroup,
    CreateInvitation, CreateThread, EditMessage, Group, GroupList, Invitation, JoinRequestList,
    MarkRead, Member, MemberList, Message, MessageHistory, MessagePage, PostMessage, ReadState,
    Readers, Thread, ThreadList, UpdateGroup, UpdateMember,
};
use tsunagu_protocol::{ErrorBody, ErrorCode, PROTOCOL_VERSION, VERSION_HEADER};
use url::Url;

pub use tsunagu_protocol as protocol;

pub mod apps;
pub mod live;

pub use apps::AppCredentials;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body.
    #[error("{status}: {} ({})", .body.error.message, .body.error.code)]
    Api { status: StatusCode, body: ErrorBody },
    /// The request did not complete (connection refused, TLS, timeout…).
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The answer was not what the protocol says.
    #[error("unexpected response: {0}")]
    Protocol(String),
    #[error("invalid server URL: {0}")]
    Url(#[from] url::ParseError),
    /// A call that needs a sign-in was made without one.
    #[error("not signed in")]
    NotSignedIn,
    /// The server refused a websocket request with an `error` frame. The codes are the
    /// REST ones, so callers branch the same way whichever transport they used.
    #[error("{message} ({code})")]
    Refused { code: ErrorCode, message: String },
    /// The websocket could not be opened, or was lost and could not be re-established
    /// (see [`live`]); like [`Error::Transport`], the server was not reachable.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// The live session has ended: closed by the caller, or after a fatal error that was
    /// reported once.
    #[error("the live session is closed")]
    SessionClosed,
    /// The token endpoint refused an app's credentials or scopes (OAuth's error shape).
    #[error("{status}: {} ({})", .body.error_description.as_deref().unwrap_or(""), .body.error)]
    OAuth {
        status: StatusCode,
        body: tsunagu_protocol::apps::OAuthError,
    },
}

impl Error {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { body, .. } => Some(body.error.code),
            Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The token pair a session holds.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { <redacted> }")
    }
}

/// A client for one server and one signed-in user. Cheap to clone; clones share tokens.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<Mutex<Option<Tokens>>>,
    /// Serialises refreshes so concurrent calls do not spend the same refresh token
    /// twice (which the server treats as theft).
    refresh_lock: Arc<tokio::sync::Mutex<()>>,
    /// Set for an app (client credentials): renewal asks the token endpoint again
    /// instead of using a refresh token.
    app: Option<Arc<AppCredentials>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base` (e.g. `https://tsunagu.example.jp`).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tsunagu-client/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Self::with_http(base, http)
    }

    /// A client using a caller-built `reqwest::Client` (custom roots, proxies, timeouts).
    pub fn with_http(base: &str, http: reqwest::Client) -> Result<Self> {
        let mut base = Url::parse(base)?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Client {
            http,
            base,
            tokens: Arc::new(Mutex::new(None)),
            refresh_lock: Arc::new(tokio::sync::Mutex::new(())),
            app: None,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The current tokens, to persist between runs.
    pub fn tokens(&self) -> Option<Tokens> {
        self.tokens.lock().map(|t| t.clone()).unwrap_or(None)
    }

    /// Resumes a saved sign-in.
    pub fn set_tokens(&self, tokens: Option<Tokens>) {
        if let Ok(mut t) = self.tokens.lock() {
            *t = tokens;
        }
    }

    fn url(&self, path: &str) -> Result<Url> {
        Ok(self.base.join(path.trim_start_matches('/'))?)
    }

    async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
        let status = response.status();
        if let Some(v) = response.headers().get(VERSION_HEADER) {
            if v.as_bytes() != PROTOCOL_VERSION.as_bytes() {
                return Err(Error::Protocol(format!(
                    "server speaks protocol {:?}, this client {PROTOCOL_VERSION}",
                    String::from_utf8_lossy(v.as_bytes())
                )));
            }
        }
        let bytes = response.bytes().await?;
        if status.is_success() {
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            serde_json::from_slice(bytes).map_err(|e| Error::Protocol(e.to_string()))
        } else {
            let body = serde_json::from_slice::<ErrorBody>(&bytes)
                .map_err(|_| Error::Protocol(format!("{status} without an error body")))?;
            Err(Error::Api { status, body })
        }
    }

    /// An unauthenticated JSON call.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self.http.request(method, self.url(path)?);
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::decode(req.send().await?).await
    }

    /// An authenticated JSON call; an expired access token is refreshed once.
    pub async fn authed<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let access = match (self.tokens(), &self.app) {
            (Some(t), Some(_)) if self.app_token_due() => {
                self.refresh_after(&t.access_token).await?
            }
            (Some(t), _) => t.access_token,
            // An app gets its first token on its first call.
            (None, Some(_)) => self.refresh_after("").await?,
            (None, None) => return Err(Error::NotSignedIn),
        };
        match self.send_authed(method.clone(), path, body, &access).await {
            Err(Error::Api {
                status: StatusCode::UNAUTHORIZED,
                body: b,
            }) if b.error.code == ErrorCode::Unauthenticated => {
                let fresh = self.refresh_after(&access).await?;
                self.send_authed(method, path, body, &fresh).await
            }
            other => other,
        }
    }

    async fn send_authed<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        access: &str,
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method, self.url(path)?)
            .bearer_auth(access);
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::decode(req.send().await?).await
    }

    /// Refreshes unless another task already did since `stale` was read.
    async fn refresh_after(&self, stale: &str) -> Result<String> {
        let _guard = self.refresh_lock.lock().await;
        if let Some(app) = &self.app {
            if let Some(current) = self.tokens() {
                if current.access_token != stale {
                    return Ok(current.access_token);
                }
            }
            return Ok(self.app_token(app).await?.access_token);
        }
        let current = self.tokens().ok_or(Error::NotSignedIn)?;
        if current.access_token != stale {
            return Ok(current.access_token);
        }
        Ok(self.refresh().await?.access_token)
    }

    /// Signs in and keeps the tokens.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        totp: Option<&str>,
    ) -> Result<TokenResponse> {
        let req = LoginRequest {
            login: login.to_owned(),
            password: password.to_owned(),
            totp: totp.map(str::to_owned),
        };
        let tokens: TokenResponse = self
            .call(Method::POST, "api/v1/auth/login", Some(&req))
            .await?;
        self.set_tokens(Some(Tokens {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
        }));
        Ok(tokens)
    }

    /// Exchanges the refresh token for a new pair and keeps it.
    pub async fn refresh(&self) -> Result<TokenResponse> {
        let current = self.tokens().ok_or(Error::NotSignedIn)?;
        let req = RefreshRequest {
            refresh_token: current.refresh_token,
        };
        let tokens: TokenResponse = self
            .call(Method::POST, "api/v1/auth/refresh", Some(&req))
            .await?;
        self.set_tokens(Some(Tokens {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
        }));
        Ok(tokens)
    }

    /// Ends the sign-in on the server and forgets the tokens.
    pub async fn logout(&self) -> Result<()> {
        let Some(current) = self.tokens() else {
            return Ok(());
        };
        let req = RefreshRequest {
            refresh_token: current.refresh_token,
        };
        let response = self
            .http
            .post(self.url("api/v1/auth/logout")?)
            .bearer_auth(&current.access_token)
            .json(&req)
            .send()
            .await?;
        self.set_tokens(None);
        if response.status().is_success() {
            Ok(())
        } else {
            Self::decode::<()>(response).await
        }
    }

    pub async fn me(&self) -> Result<Me> {
        self.authed::<(), _>(Method::GET, "api/v1/me", None).await
    }

    pub async fn change_password(&self, current: &str, new: &str) -> Result<()> {
        let req = ChangePasswordRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        self.authed(Method::POST, "api/v1/me/password", Some(&req))
            .await
    }

    pub async fn totp_begin(&self) -> Result<TotpEnrollment> {
        self.authed::<(), _>(Method::POST, "api/v1/me/totp", None)
            .await
    }

    pub async fn totp_confirm(&self, code: &str) -> Result<()> {
        let req = TotpCodeRequest {
            code: code.to_owned(),
        };
        self.authed(Method::POST, "api/v1/me/totp/confirm", Some(&req))
            .await
    }

    /// Edits one's own display name, kana and profile line.
    pub async fn update_me(&self, req: &tsunagu_protocol::accounts::UpdateMe) -> Result<Me> {
        self.authed(Method::PATCH, "api/v1/me", Some(req)).await
    }

    /// The directory of the region's professionals: `q` matches name or kana.
    pub async fn directory(
        &self,
        q: Option<&str>,
        cursor: Option<UserId>,
    ) -> Result<tsunagu_protocol::accounts::DirectoryPage> {
        let mut url = self.url("api/v1/users")?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(q) = q {
                pairs.append_pair("q", q);
            }
            if let Some(c) = cursor {
                pairs.append_pair("cursor", &c.to_string());
            }
        }
        let path = match url.query() {
            Some(query) => format!("api/v1/users?{query}"),
            None => "api/v1/users".to_owned(),
        };
        self.authed::<(), _>(Method::GET, &path, None).await
    }

    /// The region's active organisations.
    pub async fn organizations(&self) -> Result<OrganizationList> {
        self.authed::<(), _>(Method::GET, "api/v1/organizations", None)
            .await
    }

    // ---- region administration ----

    pub async fn admin_regions(&self) -> Result<RegionList> {
        self.authed::<(), _>(Method::GET, "api/v1/admin/regions", None)
            .await
    }

    pub async fn create_organization(&self, req: &CreateOrganization) -> Result<Organization> {
        self.authed(Method::POST, "api/v1/admin/organizations", Some(req))
            .await
    }

    pub async fn list_organizations(&self) -> Result<OrganizationList> {
        self.authed::<(), _>(Method::GET, "api/v1/admin/organizations", None)
            .await
    }

    pub async fn get_organization(&self, id: OrganizationId) -> Result<Organization> {
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/admin/organizations/{id}"),
            None,
        )
        .await
    }

    pub async fn update_organization(
        &self,
        id: OrganizationId,
        req: &UpdateOrganization,
    ) -> Result<Organization> {
        self.authed(
            Method::PATCH,
            &format!("api/v1/admin/organizations/{id}"),
            Some(req),
        )
        .await
    }

    pub async fn create_user(&self, req: &CreateUser) -> Result<User> {
        self.authed(Method::POST, "api/v1/admin/users", Some(req))
            .await
    }

    pub async fn list_users(&self) -> Result<UserList> {
        self.authed::<(), _>(Method::GET, "api/v1/admin/users", None)
            .await
    }

    pub async fn get_user(&self, id: UserId) -> Result<User> {
        self.authed::<(), _>(Method::GET, &format!("api/v1/admin/users/{id}"), None)
            .await
    }

    pub async fn update_user(&self, id: UserId, req: &UpdateUser) -> Result<User> {
        self.authed(
            Method::PATCH,
            &format!("api/v1/admin/users/{id}"),
            Some(req),
        )
        .await
    }

    pub async fn deactivate_user(&self, id: UserId) -> Result<User> {
        self.authed::<(), _>(
            Method::POST,
            &format!("api/v1/admin/users/{id}/deactivate"),
            None,
        )
        .await
    }

    pub async fn reactivate_user(&self, id: UserId) -> Result<User> {
        self.authed::<(), _>(
            Method::POST,
            &format!("api/v1/admin/users/{id}/reactivate"),
            None,
        )
        .await
    }

    pub async fn reset_password(&self, id: UserId, req: &ResetPassword) -> Result<User> {
        self.authed(
            Method::POST,
            &format!("api/v1/admin/users/{id}/reset-password"),
            Some(req),
        )
        .await
    }

    pub async fn reset_totp(&self, id: UserId) -> Result<User> {
        self.authed::<(), _>(
            Method::POST,
            &format!("api/v1/admin/users/{id}/reset-totp"),
            None,
        )
        .await
    }

    pub async fn get_policy(&self) -> Result<Policy> {
        self.authed::<(), _>(Method::GET, "api/v1/admin/policy", None)
            .await
    }

    pub async fn update_policy(&self, req: &UpdatePolicy) -> Result<Policy> {
        self.authed(Method::PATCH, "api/v1/admin/policy", Some(req))
            .await
    }

    // ---- groups and membership ----

    pub async fn create_group(&self, req: &CreateGroup) -> Result<Group> {
        self.authed(Method::POST, "api/v1/groups", Some(req)).await
    }

    pub async fn list_groups(&self) -> Result<GroupList> {
        self.authed::<(), _>(Method::GET, "api/v1/groups", None)
            .await
    }

    pub async fn get_group(&self, id: GroupId) -> Result<Group> {
        self.authed::<(), _>(Method::GET, &format!("api/v1/groups/{id}"), None)
            .await
    }

    pub async fn update_group(&self, id: GroupId, req: &UpdateGroup) -> Result<Group> {
        self.authed(Method::PATCH, &format!("api/v1/groups/{id}"), Some(req))
            .await
    }

    pub async fn archive_group(&self, id: GroupId) -> Result<Group> {
        self.authed::<(), _>(Method::POST, &format!("api/v1/groups/{id}/archive"), None)
            .await
    }

    pub async fn list_members(&self, group: GroupId) -> Result<MemberList> {
        self.authed::<(), _>(Method::GET, &format!("api/v1/groups/{group}/members"), None)
            .await
    }

    pub async fn add_member(&self, group: GroupId, req: &AddMember) -> Result<Member> {
        self.authed(
            Method::POST,
            &format!("api/v1/groups/{group}/members"),
            Some(req),
        )
        .await
    }

    pub async fn update_member(
        &self,
        group: GroupId,
        user: UserId,
        req: &UpdateMember,
    ) -> Result<Member> {
        self.authed(
            Method::PATCH,
            &format!("api/v1/groups/{group}/members/{user}"),
            Some(req),
        )
        .await
    }

    /// Removes a member, or leaves the group when `user` is yourself.
    pub async fn remove_member(&self, group: GroupId, user: UserId) -> Result<()> {
        self.authed::<(), _>(
            Method::DELETE,
            &format!("api/v1/groups/{group}/members/{user}"),
            None,
        )
        .await
    }

    pub async fn create_invitation(
        &self,
        group: GroupId,
        req: &CreateInvitation,
    ) -> Result<Invitation> {
        self.authed(
            Method::POST,
            &format!("api/v1/groups/{group}/invitations"),
            Some(req),
        )
        .await
    }

    /// A group's invitation codes (owners and admins); the codes are not shown again.
    pub async fn list_invitations(
        &self,
        group: GroupId,
    ) -> Result<tsunagu_protocol::messaging::InvitationList> {
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/groups/{group}/invitations"),
            None,
        )
        .await
    }

    /// Revokes an invitation code at once.
    pub async fn revoke_invitation(
        &self,
        group: GroupId,
        invitation: tsunagu_protocol::ids::InvitationId,
    ) -> Result<()> {
        self.authed::<(), _>(
            Method::DELETE,
            &format!("api/v1/groups/{group}/invitations/{invitation}"),
            None,
        )
        .await
    }

    pub async fn accept_invitation(&self, code: &str) -> Result<AcceptedInvitation> {
        let req = AcceptInvitation {
            code: code.to_owned(),
        };
        self.authed(Method::POST, "api/v1/invitations/accept", Some(&req))
            .await
    }

    pub async fn list_join_requests(&self, group: GroupId) -> Result<JoinRequestList> {
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/groups/{group}/join-requests"),
            None,
        )
        .await
    }

    pub async fn decide_join_request(
        &self,
        group: GroupId,
        user: UserId,
        approve: bool,
    ) -> Result<()> {
        let verb = if approve { "approve" } else { "reject" };
        self.authed::<(), _>(
            Method::POST,
            &format!("api/v1/groups/{group}/join-requests/{user}/{verb}"),
            None,
        )
        .await
    }

    // ---- threads ----

    /// Creates a 内緒話 thread with the given group members (you are always included).
    pub async fn create_thread(&self, group: GroupId, req: &CreateThread) -> Result<Thread> {
        self.authed(
            Method::POST,
            &format!("api/v1/groups/{group}/threads"),
            Some(req),
        )
        .await
    }

    pub async fn list_threads(&self, group: GroupId) -> Result<ThreadList> {
        self.authed::<(), _>(Method::GET, &format!("api/v1/groups/{group}/threads"), None)
            .await
    }

    pub async fn get_thread(&self, thread: ThreadId) -> Result<Thread> {
        self.authed::<(), _>(Method::GET, &format!("api/v1/threads/{thread}"), None)
            .await
    }

    pub async fn add_thread_member(&self, thread: ThreadId, user: UserId) -> Result<Thread> {
        let req = AddThreadMember { user_id: user };
        self.authed(
            Method::POST,
            &format!("api/v1/threads/{thread}/members"),
            Some(&req),
        )
        .await
    }

    pub async fn remove_thread_member(&self, thread: ThreadId, user: UserId) -> Result<()> {
        self.authed::<(), _>(
            Method::DELETE,
            &format!("api/v1/threads/{thread}/members/{user}"),
            None,
        )
        .await
    }

    // ---- messages ----

    /// Posts; retrying with the same `client_msg_id` returns the original message.
    pub async fn post_message(&self, thread: ThreadId, req: &PostMessage) -> Result<Message> {
        self.authed(
            Method::POST,
            &format!("api/v1/threads/{thread}/messages"),
            Some(req),
        )
        .await
    }

    /// Posts plain text with a fresh `client_msg_id`.
    pub async fn post_text(&self, thread: ThreadId, body: &str) -> Result<Message> {
        let req = PostMessage {
            body: body.to_owned(),
            client_msg_id: new_client_msg_id(),
            reply_to: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
        };
        self.post_message(thread, &req).await
    }

    /// A search hit's context: the messages of `jump.thread_id` from `context` before
    /// `jump.seq` to `context` after it (the hit included).
    pub async fn messages_around(
        &self,
        jump: &tsunagu_protocol::files::JumpTarget,
        context: i64,
    ) -> Result<MessagePage> {
        let seq = jump.seq.unwrap_or(1);
        self.list_messages(
            jump.thread_id,
            Some((seq - context - 1).max(0)),
            None,
            Some(2 * context + 1),
        )
        .await
    }

    /// A page of the timeline: `after_seq` to catch up, `before_seq` to scroll back,
    /// neither for the latest.
    pub async fn list_messages(
        &self,
        thread: ThreadId,
        after_seq: Option<i64>,
        before_seq: Option<i64>,
        limit: Option<i64>,
    ) -> Result<MessagePage> {
        let mut query = Vec::new();
        if let Some(a) = after_seq {
            query.push(format!("after_seq={a}"));
        }
        if let Some(b) = before_seq {
            query.push(format!("before_seq={b}"));
        }
        if let Some(l) = limit {
            query.push(format!("limit={l}"));
        }
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/threads/{thread}/messages{q}"),
            None,
        )
        .await
    }

    pub async fn edit_message(
        &self,
        thread: ThreadId,
        message: MessageId,
        body: &str,
    ) -> Result<Message> {
        let req = EditMessage {
            body: body.to_owned(),
        };
        self.authed(
            Method::PATCH,
            &format!("api/v1/threads/{thread}/messages/{message}"),
            Some(&req),
        )
        .await
    }

    pub async fn delete_message(&self, thread: ThreadId, message: MessageId) -> Result<()> {
        self.authed::<(), _>(
            Method::DELETE,
            &format!("api/v1/threads/{thread}/messages/{message}"),
            None,
        )
        .await
    }

    pub async fn message_history(
        &self,
        thread: ThreadId,
        message: MessageId,
    ) -> Result<MessageHistory> {
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/threads/{thread}/messages/{message}/history"),
            None,
        )
        .await
    }

    pub async fn readers(&self, thread: ThreadId, message: MessageId) -> Result<Readers> {
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/threads/{thread}/messages/{message}/readers"),
            None,
        )
        .await
    }

    pub async fn add_reaction(
        &self,
        thread: ThreadId,
        message: MessageId,
        emoji: &str,
    ) -> Result<()> {
        let req = AddReaction {
            emoji: emoji.to_owned(),
        };
        self.authed(
            Method::POST,
            &format!("api/v1/threads/{thread}/messages/{message}/reactions"),
            Some(&req),
        )
        .await
    }

    pub async fn remove_reaction(
        &self,
        thread: ThreadId,
        message: MessageId,
        emoji: &str,
    ) -> Result<()> {
        let mut url = self.url(&format!(
            "api/v1/threads/{thread}/messages/{message}/reactions/"
        ))?;
        url.path_segments_mut()
            .map_err(|_| Error::Protocol("base url".into()))?
            .pop_if_empty()
            .push(emoji);
        let path = url.path().trim_start_matches(self.base.path()).to_owned();
        self.authed::<(), _>(Method::DELETE, &path, None).await
    }

    /// Marks everything up to `seq` read (既読).
    pub async fn mark_read(&self, thread: ThreadId, seq: i64) -> Result<ReadState> {
        let req = MarkRead { seq };
        self.authed(
            Method::POST,
            &format!("api/v1/threads/{thread}/read"),
            Some(&req),
        )
        .await
    }

    /// The websocket URL of this server (`ws://` or `wss://`).
    pub fn websocket_url(&self) -> Result<Url> {
        let mut url = self.url("api/v1/ws")?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|_| Error::Protocol("cannot derive websocket URL".into()))?;
        Ok(url)
    }
}

/// A fresh idempotency key for a post.
pub fn new_client_msg_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "c{nanos:x}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---- files, search and audit reports ----

/// A stream of bytes from the server: a file's content or a CSV export. Errors are
/// transport errors (the server cannot change its status once the body has started,
/// so a body cut short by the server ends with one too).
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes>> + Send + 'static>>;

/// Which bytes of a file to download (`Range: bytes=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From this offset to the end.
    From(u64),
    /// `start..=end`, both inclusive, as HTTP counts.
    Inclusive(u64, u64),
    /// The last `n` bytes.
    Last(u64),
}

impl ByteRange {
    fn header(self) -> String {
        match self {
            ByteRange::From(a) => format!("bytes={a}-"),
            ByteRange::Inclusive(a, b) => format!("bytes={a}-{b}"),
            ByteRange::Last(n) => format!("bytes=-{n}"),
        }
    }
}

/// A download under way: what the server said about the content, and the content.
pub struct Download {
    /// `200 OK` for the whole file, `206 Partial Content` for a range.
    pub status: StatusCode,
    /// Bytes the body will carry, when the server said.
    pub content_length: Option<u64>,
    /// The whole file's size: from `Content-Range` for a range, otherwise the length.
    pub total_size: Option<u64>,
    pub content_type: Option<String>,
    /// The original file name, from `Content-Disposition` (UTF-8 `filename*` first).
    pub file_name: Option<String>,
    /// The content, streamed as it arrives.
    pub body: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("status", &self.status)
            .field("content_length", &self.content_length)
            .field("total_size", &self.total_size)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// Reads the whole body into memory (for small files and tests; stream large ones).
    pub async fn bytes(mut self) -> Result<Vec<u8>> {
        use futures_util::StreamExt;
        let mut out = Vec::with_capacity(self.content_length.unwrap_or(0).min(1 << 26) as usize);
        while let Some(chunk) = self.body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }
}

/// Filters of a group's file library (`GET /api/v1/groups/{id}/files`). Empty fields
/// are left out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LibraryFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<tsunagu_protocol::files::FileKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploader_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<ThreadId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Substring of the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Uploaded at or after (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Uploaded before (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `newest` (default), `oldest`, `name` or `largest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Filters of an audit report (`/api/v1/admin/audit/events` and `/file-access`); every
/// field set is ANDed. `cursor` and `limit` apply to JSON pages only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// The actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<OrganizationId>,
    /// One action, e.g. `file_downloaded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `success`, `failure` or `denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// At or after (RFC 3339 or Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Before (RFC 3339 or Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Entries per JSON page, 1–1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl AuditFilter {
    /// Everything about one file.
    pub fn file(file_id: impl Into<String>) -> Self {
        AuditFilter {
            file_id: Some(file_id.into()),
            ..Default::default()
        }
    }
}

/// Characters escaped in a path segment: all but unreserved ones.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `filename*=UTF-8''…` (preferred) or `filename="…"` of a `Content-Disposition`.
fn disposition_file_name(value: &str) -> Option<String> {
    let mut plain = None;
    for part in value.split(';').map(str::trim) {
        if let Some(v) = part.strip_prefix("filename*=") {
            let v = v.trim_matches('"');
            let encoded = v
                .strip_prefix("UTF-8''")
                .or_else(|| v.strip_prefix("utf-8''"))?;
            return percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned());
        }
        if let Some(v) = part.strip_prefix("filename=") {
            plain = Some(v.trim_matches('"').to_owned());
        }
    }
    plain
}

/// The `exp` claim of a JWT, without checking anything (the server does).
fn token_expiry(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

impl Client {
    /// The URL of `api/v1/<prefix>/<id>/<suffix>` with `id` escaped as one path segment.
    fn id_url(&self, prefix: &str, id: &str, suffix: &str) -> Result<Url> {
        let id = percent_encoding::utf8_percent_encode(id, SEGMENT);
        self.url(&format!("api/v1/{prefix}/{id}{suffix}"))
    }

    /// Turns a non-success answer into its error.
    async fn error_of(response: reqwest::Response) -> Error {
        match Self::decode::<serde_json::Value>(response).await {
            Err(e) => e,
            Ok(_) => Error::Protocol("an error status with a success body".into()),
        }
    }

    /// Sends an authenticated request built by `make` and hands back the successful
    /// answer unread (for streamed bodies); an expired access token is refreshed once
    /// and the request rebuilt.
    async fn send_authed_raw<F>(&self, make: F) -> Result<reqwest::Response>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let access = self.tokens().ok_or(Error::NotSignedIn)?.access_token;
        let response = make().bearer_auth(&access).send().await?;
        let response = if response.status() == StatusCode::UNAUTHORIZED {
            match Self::error_of(response).await {
                Error::Api { body, .. } if body.error.code == ErrorCode::Unauthenticated => {
                    let fresh = self.refresh_after(&access).await?;
                    make().bearer_auth(&fresh).send().await?
                }
                e => return Err(e),
            }
        } else {
            response
        };
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(Self::error_of(response).await)
        }
    }

    /// An access token good for at least another minute, refreshing first if needed:
    /// a streamed upload cannot be replayed after a 401.
    async fn fresh_access_token(&self) -> Result<String> {
        let access = self.tokens().ok_or(Error::NotSignedIn)?.access_token;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        match token_expiry(&access) {
            Some(exp) if exp > now + 60 => Ok(access),
            // Not a JWT we can read: let the server judge it.
            None => Ok(access),
            Some(_) => self.refresh_after(&access).await,
        }
    }

    /// An authenticated GET with a query string, decoded as JSON.
    async fn get_with_query<Q: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: Url,
        query: &Q,
    ) -> Result<T> {
        let response = self
            .send_authed_raw(|| self.http.get(url.clone()).query(query))
            .await?;
        Self::decode(response).await
    }

    /// Uploads a file into `thread`, streaming `body` (any stream of byte chunks, e.g.
    /// a file read in pieces); memory does not grow with the file's size. `len`, when
    /// known, is sent as `Content-Length` so that the server can refuse a file over the
    /// region's limit before it is sent. The kind is detected by the server from the
    /// content. An upload is not retried (a stream cannot be replayed): the access token
    /// is refreshed beforehand if it is about to expire.
    pub async fn upload_file<S, B, E>(
        &self,
        thread: ThreadId,
        name: &str,
        body: S,
        len: Option<u64>,
    ) -> Result<tsunagu_protocol::files::FileInfo>
    where
        S: futures_util::Stream<Item = std::result::Result<B, E>> + Send + 'static,
        bytes::Bytes: From<B>,
        B: 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let access = self.fresh_access_token().await?;
        let mut url = self.url(&format!("api/v1/threads/{thread}/files"))?;
        url.query_pairs_mut().append_pair("name", name);
        let mut req = self
            .http
            .post(url)
            .bearer_auth(access)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        Self::decode(req.send().await?).await
    }

    /// [`upload_file`](Self::upload_file) from anything readable (a `tokio::fs::File`),
    /// read in 64 KiB pieces.
    pub async fn upload_reader<R>(
        &self,
        thread: ThreadId,
        name: &str,
        reader: R,
        len: Option<u64>,
    ) -> Result<tsunagu_protocol::files::FileInfo>
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
        self.upload_file(thread, name, stream, len).await
    }

    /// Downloads a file, or the `range` of it, as a stream. A tampered or corrupted blob
    /// is refused by the server (`integrity_error`) rather than delivered.
    pub async fn download_file(&self, id: &str, range: Option<ByteRange>) -> Result<Download> {
        use futures_util::StreamExt;
        let url = self.id_url("files", id, "/content")?;
        let response = self
            .send_authed_raw(|| {
                let req = self.http.get(url.clone());
                match range {
                    Some(r) => req.header(reqwest::header::RANGE, r.header()),
                    None => req,
                }
            })
            .await?;
        let headers = response.headers();
        let text = |name: reqwest::header::HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status();
        let content_length = text(reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        let total_size = match text(reqwest::header::CONTENT_RANGE) {
            Some(cr) => cr.rsplit('/').next().and_then(|t| t.trim().parse().ok()),
            None if status == StatusCode::OK => content_length,
            None => None,
        };
        let content_type = text(reqwest::header::CONTENT_TYPE);
        let file_name = text(reqwest::header::CONTENT_DISPOSITION)
            .as_deref()
            .and_then(disposition_file_name);
        Ok(Download {
            status,
            content_length,
            total_size,
            content_type,
            file_name,
            body: response
                .bytes_stream()
                .map(|r| r.map_err(Error::from))
                .boxed(),
        })
    }

    /// A file's metadata (recorded in the audit log as a metadata view).
    pub async fn file_info(&self, id: &str) -> Result<tsunagu_protocol::files::FileInfo> {
        let url = self.id_url("files", id, "")?;
        let response = self.send_authed_raw(|| self.http.get(url.clone())).await?;
        Self::decode(response).await
    }

    /// Files a file in a folder and tags it.
    pub async fn update_file(
        &self,
        id: &str,
        req: &tsunagu_protocol::files::UpdateFile,
    ) -> Result<tsunagu_protocol::files::FileInfo> {
        let url = self.id_url("files", id, "")?;
        let response = self
            .send_authed_raw(|| self.http.patch(url.clone()).json(req))
            .await?;
        Self::decode(response).await
    }

    /// Deletes a file: its key is destroyed (crypto-shredding), then its blob.
    pub async fn delete_file(&self, id: &str) -> Result<()> {
        let url = self.id_url("files", id, "")?;
        self.send_authed_raw(|| self.http.delete(url.clone()))
            .await?;
        Ok(())
    }

    /// A page of a group's file library: files of the threads the caller is in.
    pub async fn file_library(
        &self,
        group: GroupId,
        filter: &LibraryFilter,
    ) -> Result<tsunagu_protocol::files::FileList> {
        let url = self.url(&format!("api/v1/groups/{group}/files"))?;
        self.get_with_query(url, filter).await
    }

    /// Messages and files the caller may see that contain every term of `q`, ranked.
    pub async fn search(&self, q: &str) -> Result<tsunagu_protocol::files::SearchResults> {
        self.search_with(&tsunagu_protocol::files::SearchQuery::text(q))
            .await
    }

    /// [`search`](Self::search) with filters (group, thread, author, time range, has a
    /// file, file kind, messages or files only) and a limit. Each hit's `jump` names the
    /// thread and `seq` to open; [`Client::messages_around`] pages the context.
    pub async fn search_with(
        &self,
        query: &tsunagu_protocol::files::SearchQuery,
    ) -> Result<tsunagu_protocol::files::SearchResults> {
        let url = self.url("api/v1/search")?;
        self.get_with_query(url, query).await
    }

    async fn audit_page(
        &self,
        report: &str,
        filter: &AuditFilter,
    ) -> Result<tsunagu_protocol::audit::AuditPage> {
        let url = self.url(&format!("api/v1/admin/audit/{report}"))?;
        self.get_with_query(url, filter).await
    }

    async fn audit_csv(&self, report: &str, filter: &AuditFilter) -> Result<Download> {
        use futures_util::StreamExt;
        let url = self.url(&format!("api/v1/admin/audit/{report}"))?;
        let response = self
            .send_authed_raw(|| {
                self.http
                    .get(url.clone())
                    .query(filter)
                    .query(&[("format", "csv")])
            })
            .await?;
        let headers = response.headers();
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Download {
            status: response.status(),
            content_length: response.content_length(),
            total_size: None,
            content_type: text(reqwest::header::CONTENT_TYPE),
            file_name: text(reqwest::header::CONTENT_DISPOSITION)
                .as_deref()
                .and_then(disposition_file_name),
            body: response
                .bytes_stream()
                .map(|r| r.map_err(Error::from))
                .boxed(),
        })
    }

    /// A page of the file-access report (region administrators): uploads, views,
    /// downloads, deletions and refused attempts. Pulling it is itself audited.
    pub async fn audit_file_access(
        &self,
        filter: &AuditFilter,
    ) -> Result<tsunagu_protocol::audit::AuditPage> {
        self.audit_page("file-access", filter).await
    }

    /// The whole file-access report as CSV (UTF-8 with BOM, CRLF; opens in Japanese
    /// Excel), streamed. `cursor` and `limit` must be unset.
    pub async fn audit_file_access_csv(&self, filter: &AuditFilter) -> Result<Download> {
        self.audit_csv("file-access", filter).await
    }

    /// A page of every audit entry of the region (security events and file access).
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
    ) -> Result<tsunagu_protocol::audit::AuditPage> {
        self.audit_page("events", filter).await
    }

    /// Every matching audit entry as CSV, streamed. `cursor` and `limit` must be unset.
    pub async fn audit_events_csv(&self, filter: &AuditFilter) -> Result<Download> {
        self.audit_csv("events", filter).await
    }

    /// Re-hashes the audit chain and checks its signed checkpoints on the server: starts
    /// (or joins) the region's verification job and polls it until it ends, however
    /// long the chain.
    pub async fn audit_verify(&self) -> Result<tsunagu_protocol::audit::AuditVerification> {
        use tsunagu_protocol::audit::AuditVerifyJobState as State;
        let mut job = self.start_audit_verify().await?;
        loop {
            match job.state {
                State::Running => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    job = self.audit_verify_job(&job.id).await?;
                }
                State::Done => {
                    return job.result.ok_or_else(|| {
                        Error::Protocol("a finished verification job without a result".into())
                    })
                }
                State::Failed => {
                    return Err(Error::Protocol(format!(
                        "the verification job failed: {}",
                        job.error.unwrap_or_default()
                    )))
                }
            }
        }
    }

    /// Starts a verification job (`POST /admin/audit/verify`), or joins the running one.
    pub async fn start_audit_verify(&self) -> Result<tsunagu_protocol::audit::AuditVerifyJob> {
        self.authed::<(), _>(Method::POST, "api/v1/admin/audit/verify", None)
            .await
    }

    /// A verification job's progress or result.
    pub async fn audit_verify_job(
        &self,
        id: &str,
    ) -> Result<tsunagu_protocol::audit::AuditVerifyJob> {
        self.authed::<(), _>(
            Method::GET,
            &format!("api/v1/admin/audit/verify/{id}"),
            None,
        )
        .await
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn content_disposition_prefers_the_utf8_name() {
        let v = "attachment; filename=\"____.pdf\"; filename*=UTF-8''%E8%A8%AA%E5%95%8F.pdf";
        assert_eq!(disposition_file_name(v).as_deref(), Some("訪問.pdf"));
        assert_eq!(
            disposition_file_name("attachment; filename=\"a.csv\"").as_deref(),
            Some("a.csv")
        );
        assert_eq!(disposition_file_name("inline"), None);
    }

    #[test]
    fn ranges_render_as_http_says() {
        assert_eq!(ByteRange::From(5).header(), "bytes=5-");
        assert_eq!(ByteRange::Inclusive(0, 9).header(), "bytes=0-9");
        assert_eq!(ByteRange::Last(3).header(), "bytes=-3");
    }

    #[test]
    fn token_expiry_reads_the_exp_claim() {
        use base64::Engine;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1234,"sub":"x"}"#);
        assert_eq!(token_expiry(&format!("h.{payload}.s")), Some(1234));
        assert_eq!(token_expiry("not a token"), None);
    }
}
