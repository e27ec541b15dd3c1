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

pub mod live;

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
        let access = self.tokens().ok_or(Error::NotSignedIn)?.access_token;
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
