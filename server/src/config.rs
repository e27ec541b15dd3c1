//! Configuration: built-in defaults, then a TOML file (`TSUNAGU_CONFIG`), then
//! `TSUNAGU_*` environment variables. Secrets are wrapped so they never reach a log line
//! through `Debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Top-level keys that are plain values; every other `TSUNAGU_<SECTION>_<KEY>` variable
/// maps to `[section] key`.
const TOP_LEVEL_KEYS: &[&str] = &["listen", "data_dir", "database_url"];
const SECTIONS: &[&str] = &[
    "http", "tls", "auth", "log", "database", "ws", "messages", "files", "audit", "bus", "limits",
    "apps", "webhooks",
];
/// Variables read directly rather than through the layered configuration.
const DIRECT_VARS: &[&str] = &[
    "TSUNAGU_FILES_KEKS",
    "TSUNAGU_FILES_S3_SECRET_ACCESS_KEY",
    "TSUNAGU_FILES_S3_SECRET_ACCESS_KEY_FILE",
    "TSUNAGU_CONFIG",
    "TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD",
    "TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD_FILE",
    "TSUNAGU_BUS_TOKEN",
    "TSUNAGU_BUS_TOKEN_FILE",
    "TSUNAGU_BUS_PASSWORD",
    "TSUNAGU_BUS_PASSWORD_FILE",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Defaults to loopback: exposing the server is a decision.
    pub listen: String,
    /// Where the SQLite database, local blobs and generated keys live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to SQLite in the data dir.
    pub database_url: Option<String>,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub database: DatabaseConfig,
    pub ws: WsConfig,
    pub messages: MessagesConfig,
    pub files: FilesConfig,
    pub audit: AuditConfig,
    pub bus: BusConfig,
    pub limits: LimitsConfig,
    pub webhooks: WebhooksConfig,
    pub apps: AppsConfig,
    #[serde(skip)]
    pub bootstrap: BootstrapConfig,
}

/// Third-party apps (docs/integrations.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppsConfig {
    /// Lifetime of an app's access token (60–3600 s).
    pub token_ttl_secs: u64,
    /// The token endpoint's public URL (`https://…/api/v1/oauth/token`), which a
    /// `private_key_jwt` assertion must name as `aud`. Set it behind a proxy; unset,
    /// the URL the request reached the server by is accepted.
    pub token_url: Option<String>,
    /// REST requests per minute per app, unless the app's registration says otherwise.
    pub requests_per_minute: u32,
}

impl Default for AppsConfig {
    fn default() -> Self {
        AppsConfig {
            token_ttl_secs: 900,
            token_url: None,
            requests_per_minute: 600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest JSON body accepted, in bytes. The default fits the largest body the
    /// published schema allows in any JSON encoding (a 10 000-character message of
    /// `\uXXXX\uXXXX` escapes is 120 kB), so that no schema-valid request meets a 413.
    pub max_body_bytes: usize,
    /// Requests taking longer are answered 408 (uploads get their own limit later).
    pub request_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. TLS is on when both files are set.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `iss` of issued access tokens.
    pub issuer: String,
    /// `aud` of issued access tokens.
    pub audience: String,
    /// PKCS#8 PEM Ed25519 key that signs access tokens. Defaults to
    /// `<data_dir>/keys/jwt-ed25519.pem`, created on first start. All nodes of a
    /// cluster must share it.
    pub jwt_key_file: Option<PathBuf>,
    /// The access-token key ring: keys added by `tsunagu-server keys jwt-rotate`
    /// (`jwt-<unix ms>.pem`), next to `jwt_key_file`. Defaults to `<data_dir>/keys/jwt`.
    /// Every node reloads it every 10 s; all nodes of a cluster must share it.
    pub jwt_key_dir: Option<PathBuf>,
    /// Seconds a key added to the ring is only accepted before it signs, so every node
    /// has loaded it before any token signed by it arrives (more than the 10 s reload
    /// interval; 60 by default).
    pub jwt_key_activation_secs: u64,
    /// Login attempts one account may make in a burst before 429.
    pub account_burst: u32,
    /// Seconds for one account attempt to be refilled.
    pub account_refill_secs: u64,
    /// Login attempts one client address may make in a burst before 429.
    pub ip_burst: u32,
    /// Seconds for one address attempt to be refilled.
    pub ip_refill_secs: u64,
    /// Issuer name shown in authenticator apps.
    pub totp_issuer: String,
    /// argon2id cost of new password hashes: memory in KiB and passes. Release builds
    /// refuse less than OWASP's minimum (19456 KiB, 2); debug builds accept less so the
    /// test suite can sign in hundreds of times cheaply.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log shippers.
    pub format: String,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Frames queued for one connection before it is told to resync and closed.
    pub outbound_queue: usize,
    /// Largest frame accepted from a client, in bytes.
    pub max_frame_bytes: usize,
    /// Server ping interval; a client silent for twice this is closed.
    pub heartbeat_secs: u64,
    /// Seconds a new connection has to send its `auth` frame.
    pub auth_timeout_secs: u64,
    /// Events waiting in one connection's inbox; a connection further behind resyncs.
    pub bus_capacity: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            outbound_queue: 512,
            max_frame_bytes: 64 * 1024,
            heartbeat_secs: 30,
            auth_timeout_secs: 10,
            bus_capacity: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagesConfig {
    /// Longest message body, in characters.
    pub max_body_chars: usize,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            max_body_chars: 10_000,
        }
    }
}

/// The encrypted file store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// `local` (a directory) or `s3` (any S3-compatible service).
    pub storage: String,
    /// Blob directory for `local`; defaults to `<data_dir>/blobs`.
    pub local_dir: Option<PathBuf>,
    /// Directory of key-encryption keys (`<id>.kek`, base64 of 32 bytes); defaults to
    /// `<data_dir>/keys/kek`, where one is generated on first start. Keys can also come
    /// from `TSUNAGU_FILES_KEKS=id=base64,...`.
    pub kek_dir: Option<PathBuf>,
    /// The KEK that wraps new data keys; defaults to the greatest (newest) id.
    pub current_kek: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    /// Allow plain-HTTP endpoints (a local S3-compatible server).
    pub s3_allow_http: bool,
    /// Blobs without metadata older than this are removed by the sweeper.
    pub orphan_grace_secs: u64,
    /// Read from `TSUNAGU_FILES_S3_SECRET_ACCESS_KEY` (or `_FILE`) only.
    #[serde(skip)]
    pub s3_secret_access_key: Option<SecretString>,
    /// Read from `TSUNAGU_FILES_KEKS` only.
    #[serde(skip)]
    pub env_keks: Option<SecretString>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            storage: "local".into(),
            local_dir: None,
            kek_dir: None,
            current_kek: None,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_allow_http: false,
            orphan_grace_secs: 3600,
            s3_secret_access_key: None,
            env_keks: None,
        }
    }
}

/// The cluster bus that carries live events between nodes (docs/operations.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `local` (one process) or `nats` (a cluster).
    pub kind: String,
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// Subjects are `<subject_prefix>.ev.<region_id>`.
    pub subject_prefix: String,
    pub user: Option<String>,
    /// A NATS `.creds` file (JWT + NKey).
    pub creds_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_required: bool,
    /// Events waiting to leave this node; beyond it the cluster is told to catch up.
    pub publish_queue: usize,
    /// Events waiting on our subscription before NATS reports a slow consumer.
    pub subscription_capacity: usize,
    /// Read from `TSUNAGU_BUS_TOKEN` (or `_FILE`) only.
    #[serde(skip)]
    pub token: Option<SecretString>,
    /// Read from `TSUNAGU_BUS_PASSWORD` (or `_FILE`) only.
    #[serde(skip)]
    pub password: Option<SecretString>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            kind: "local".into(),
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "tsunagu".into(),
            user: None,
            creds_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_required: false,
            publish_queue: 65_536,
            subscription_capacity: 65_536,
            token: None,
            password: None,
        }
    }
}

/// Per-user limits that keep one runaway client from flooding a thread. Each is a token
/// bucket: `*_per_minute` is the refill rate, `*_burst` what can be spent at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Posts (REST and websocket together) per user.
    pub posts_per_minute: u32,
    pub posts_burst: u32,
    /// `typing` frames per connection.
    pub typing_per_minute: u32,
    pub typing_burst: u32,
    /// Read receipts per connection.
    pub reads_per_minute: u32,
    pub reads_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            posts_per_minute: 300,
            posts_burst: 60,
            typing_per_minute: 60,
            typing_burst: 10,
            reads_per_minute: 600,
            reads_burst: 60,
        }
    }
}

impl LimitsConfig {
    /// Limits no test or load generator reaches (they post far faster than a person).
    pub fn unlimited() -> Self {
        LimitsConfig {
            posts_per_minute: 100_000_000,
            posts_burst: 1_000_000,
            typing_per_minute: 100_000_000,
            typing_burst: 1_000_000,
            reads_per_minute: 100_000_000,
            reads_burst: 1_000_000,
        }
    }
}

/// The audit log's signed checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// PKCS#8 PEM Ed25519 key that signs audit checkpoints. Defaults to
    /// `<data_dir>/keys/audit-ed25519.pem`, created on first start. All nodes of a
    /// cluster must share it, and `audit verify` needs the same one.
    pub signing_key_file: Option<PathBuf>,
    /// Public keys of earlier checkpoint signing keys (`<key id>.pub`, base64 of the 32
    /// bytes), kept by `tsunagu-server keys audit-rotate` so older checkpoints still
    /// verify. Defaults to `<data_dir>/keys/audit-verify`. Shared by all nodes.
    pub verify_keys_dir: Option<PathBuf>,
    /// Sign a checkpoint at every entry whose seq is a multiple of this.
    pub checkpoint_every: u64,
    /// Also sign the newest entry when the last checkpoint is older than this.
    pub checkpoint_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key_file: None,
            verify_keys_dir: None,
            checkpoint_every: 1000,
            checkpoint_interval_secs: 3600,
        }
    }
}

/// Outbound webhook calls and their delivery (docs/operations.md, docs/integrations.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow `http://` webhook URLs (tests, a receiver on the same host).
    pub allow_http: bool,
    /// Allow loopback, private, link-local, unique-local, CGNAT and metadata addresses.
    /// Off, a webhook can only reach the internet, never the operator's own network.
    pub allow_private_addresses: bool,
    /// Time to connect to a receiver.
    pub connect_timeout_secs: u64,
    /// Longest attempt, connecting and answering included.
    pub timeout_secs: u64,
    /// A delivery still failing this long after it was queued is dead.
    pub max_age_secs: u64,
    /// Attempts in flight at once on this node, across all webhooks.
    pub concurrency: usize,
    /// First retry delay in milliseconds; doubled per attempt up to `backoff_max_secs`.
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    /// How often the outbox is looked at for due deliveries, in milliseconds.
    pub poll_interval_ms: u64,
    /// Delivered and dead deliveries are kept this many days, then removed.
    pub retention_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_http: false,
            allow_private_addresses: false,
            connect_timeout_secs: 5,
            timeout_secs: 15,
            max_age_secs: 24 * 3600,
            concurrency: 16,
            backoff_base_ms: 5_000,
            backoff_max_secs: 3600,
            poll_interval_ms: 500,
            retention_days: 7,
        }
    }
}

/// First-start settings. Read from the environment only, never from the TOML file, so a
/// password does not end up in a configuration file that is copied around.
#[derive(Debug, Clone, Default)]
pub struct BootstrapConfig {
    pub admin_password: Option<SecretString>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            database: DatabaseConfig::default(),
            ws: WsConfig::default(),
            messages: MessagesConfig::default(),
            files: FilesConfig::default(),
            audit: AuditConfig::default(),
            bus: BusConfig::default(),
            limits: LimitsConfig::default(),
            webhooks: WebhooksConfig::default(),
            apps: AppsConfig::default(),
            bootstrap: BootstrapConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 256 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 20,
            trust_forwarded_for: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "tsunagu".into(),
            audience: "tsunagu-api".into(),
            jwt_key_file: None,
            jwt_key_dir: None,
            jwt_key_activation_secs: 60,
            account_burst: 5,
            account_refill_secs: 60,
            ip_burst: 30,
            ip_refill_secs: 2,
            totp_issuer: "Tsunagu".into(),
            argon2_memory_kib: crate::domain::password::OWASP_MEMORY_KIB,
            argon2_iterations: crate::domain::password::OWASP_ITERATIONS,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
}

/// Maps `TSUNAGU_TLS_CERT_FILE` to `tls.cert_file`, `TSUNAGU_DATA_DIR` to `data_dir`.
/// Returns `None` for variables that are not configuration keys.
fn env_key(rest: &str) -> Option<String> {
    // Secrets and the file path are read directly, never as configuration keys.
    let full = format!("TSUNAGU_{}", rest.to_ascii_uppercase());
    if DIRECT_VARS.contains(&full.as_str()) {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    if TOP_LEVEL_KEYS.contains(&rest.as_str()) {
        return Some(rest);
    }
    SECTIONS.iter().find_map(|section| {
        rest.strip_prefix(section)
            .and_then(|r| r.strip_prefix('_'))
            .filter(|key| !key.is_empty())
            .map(|key| format!("{section}.{key}"))
    })
}

impl Config {
    /// Loads the layered configuration from the process environment.
    pub fn load() -> Result<Config, ConfigError> {
        let file = std::env::var_os("TSUNAGU_CONFIG").map(PathBuf::from);
        Self::load_from(file.as_deref())
    }

    /// Loads defaults, then `file` (if any), then `TSUNAGU_*` variables.
    pub fn load_from(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "TSUNAGU_CONFIG names {} which does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment
            .merge(Env::prefixed("TSUNAGU_").filter_map(|k| env_key(k.as_str()).map(Into::into)));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.bootstrap.admin_password = read_secret("TSUNAGU_BOOTSTRAP_ADMIN_PASSWORD")?;
        config.files.s3_secret_access_key = read_secret("TSUNAGU_FILES_S3_SECRET_ACCESS_KEY")?;
        config.bus.token = read_secret("TSUNAGU_BUS_TOKEN")?;
        config.bus.password = read_secret("TSUNAGU_BUS_PASSWORD")?;
        config.files.env_keks = std::env::var("TSUNAGU_FILES_KEKS")
            .ok()
            .map(SecretString::from);
        config.validate()?;
        Ok(config)
    }

    /// `TSUNAGU_*` variables that mean nothing to us: most likely typos, which would
    /// otherwise silently leave a default in place.
    pub fn unknown_env_vars() -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("TSUNAGU_") && !k.starts_with("TSUNAGU_TEST_"))
            .filter(|k| !DIRECT_VARS.contains(&k.as_str()))
            .filter(|k| env_key(&k["TSUNAGU_".len()..]).is_none())
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::Invalid(format!("listen {:?} is not host:port", self.listen))
        })?;
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert_file and tls.key_file must be set together".into(),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(
                "log.format must be text or json".into(),
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http.max_body_bytes is too small".into(),
            ));
        }
        if self.auth.account_burst == 0 || self.auth.ip_burst == 0 {
            return Err(ConfigError::Invalid(
                "auth bursts must be at least 1".into(),
            ));
        }
        crate::domain::password::check_cost(
            self.auth.argon2_memory_kib,
            self.auth.argon2_iterations,
        )
        .map_err(ConfigError::Invalid)?;
        if !matches!(self.bus.kind.as_str(), "local" | "nats") {
            return Err(ConfigError::Invalid(
                "bus.kind must be local or nats".into(),
            ));
        }
        let l = &self.limits;
        if [
            l.posts_per_minute,
            l.posts_burst,
            l.typing_per_minute,
            l.typing_burst,
            l.reads_per_minute,
            l.reads_burst,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid("limits must be at least 1".into()));
        }
        if !(60..=3600).contains(&self.apps.token_ttl_secs) || self.apps.requests_per_minute == 0 {
            return Err(ConfigError::Invalid(
                "apps.token_ttl_secs must be 60 to 3600 and apps.requests_per_minute at least 1"
                    .into(),
            ));
        }
        if let Some(url) = &self.apps.token_url {
            if url::Url::parse(url).map(|u| u.scheme().starts_with("http")) != Ok(true) {
                return Err(ConfigError::Invalid(
                    "apps.token_url must be an http(s) URL".into(),
                ));
            }
        }
        if self.audit.checkpoint_every == 0
            || self.audit.checkpoint_every > i64::MAX as u64
            || self.audit.checkpoint_interval_secs == 0
            || self.audit.checkpoint_interval_secs > (i64::MAX / 1000) as u64
        {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_every and audit.checkpoint_interval_secs must be at least 1"
                    .into(),
            ));
        }
        let w = &self.webhooks;
        if w.connect_timeout_secs == 0
            || w.timeout_secs == 0
            || w.timeout_secs > 3600
            || w.concurrency == 0
            || w.backoff_base_ms == 0
            || w.backoff_max_secs == 0
            || w.poll_interval_ms == 0
            || w.retention_days == 0
            || w.max_age_secs > 90 * 24 * 3600
            || w.retention_days > 3650
        {
            return Err(ConfigError::Invalid(
                "webhooks: timeouts, concurrency, backoff, poll interval and retention must be at least 1 (timeout_secs at most 3600, max_age_secs at most 90 days)".into(),
            ));
        }
        Ok(())
    }

    /// The database URL, defaulting to a SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("tsunagu.db").display()
            ),
        }
    }

    /// The blob backend this configuration describes.
    pub fn blob_backend(&self) -> Result<crate::blob::Backend, ConfigError> {
        use secrecy::ExposeSecret;
        match self.files.storage.as_str() {
            "local" => Ok(crate::blob::Backend::Local {
                dir: self
                    .files
                    .local_dir
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("blobs")),
            }),
            "s3" => Ok(crate::blob::Backend::S3 {
                endpoint: self.files.s3_endpoint.clone(),
                bucket: self.files.s3_bucket.clone().ok_or_else(|| {
                    ConfigError::Invalid("files.s3_bucket is required for s3 storage".into())
                })?,
                region: self.files.s3_region.clone(),
                access_key_id: self.files.s3_access_key_id.clone(),
                secret_access_key: self
                    .files
                    .s3_secret_access_key
                    .as_ref()
                    .map(|s| s.expose_secret().to_owned()),
                allow_http: self.files.s3_allow_http,
            }),
            other => Err(ConfigError::Invalid(format!(
                "files.storage {other:?} must be local or s3"
            ))),
        }
    }

    /// Where key-encryption keys live.
    pub fn kek_dir(&self) -> PathBuf {
        self.files
            .kek_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("kek"))
    }

    /// Where the audit checkpoint signing key lives.
    pub fn audit_signing_key_file(&self) -> PathBuf {
        self.audit
            .signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("audit-ed25519.pem"))
    }

    /// Where the access-token key ring lives.
    pub fn jwt_key_dir(&self) -> PathBuf {
        self.auth
            .jwt_key_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("jwt"))
    }

    /// Where the public keys of earlier audit checkpoint signing keys live.
    pub fn audit_verify_keys_dir(&self) -> PathBuf {
        self.audit
            .verify_keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("audit-verify"))
    }

    /// Where the access-token signing key lives.
    pub fn jwt_key_file(&self) -> PathBuf {
        self.auth
            .jwt_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("jwt-ed25519.pem"))
    }
}

/// Reads a secret from `NAME`, or from the file named by `NAME_FILE` (for container
/// secrets), trimming one trailing newline.
fn read_secret(name: &str) -> Result<Option<SecretString>, ConfigError> {
    if let Ok(value) = std::env::var(name) {
        return Ok(Some(SecretString::from(value)));
    }
    if let Some(path) = std::env::var_os(format!("{name}_FILE")) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::Invalid(format!("{name}_FILE: {e}")))?;
        let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
        return Ok(Some(SecretString::from(text)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_sections_and_top_level_keys() {
        assert_eq!(env_key("LISTEN").as_deref(), Some("listen"));
        assert_eq!(env_key("DATA_DIR").as_deref(), Some("data_dir"));
        assert_eq!(env_key("DATABASE_URL").as_deref(), Some("database_url"));
        assert_eq!(
            env_key("DATABASE_MAX_CONNECTIONS").as_deref(),
            Some("database.max_connections")
        );
        assert_eq!(env_key("TLS_CERT_FILE").as_deref(), Some("tls.cert_file"));
        assert_eq!(env_key("AUTH_IP_BURST").as_deref(), Some("auth.ip_burst"));
        assert_eq!(env_key("NOPE"), None);
        assert_eq!(env_key("FILES_KEKS"), None);
        assert_eq!(env_key("FILES_S3_SECRET_ACCESS_KEY"), None);
        assert_eq!(env_key("BOOTSTRAP_ADMIN_PASSWORD"), None);
        assert_eq!(env_key("CONFIG"), None);
        assert_eq!(
            env_key("FILES_S3_BUCKET").as_deref(),
            Some("files.s3_bucket")
        );
        assert_eq!(env_key("TLS"), None);
    }

    #[test]
    fn the_audit_section_maps_from_the_environment_and_is_validated() {
        assert_eq!(
            env_key("AUDIT_SIGNING_KEY_FILE").as_deref(),
            Some("audit.signing_key_file")
        );
        assert_eq!(
            env_key("AUDIT_CHECKPOINT_EVERY").as_deref(),
            Some("audit.checkpoint_every")
        );
        let config = Config::default();
        assert_eq!(config.audit.checkpoint_every, 1000);
        assert_eq!(config.audit.checkpoint_interval_secs, 3600);
        assert!(config
            .audit_signing_key_file()
            .ends_with("keys/audit-ed25519.pem"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[audit]\ncheckpoint_every = 0\n").unwrap();
        assert!(Config::load_from(Some(&path)).is_err());
    }

    #[test]
    fn the_webhooks_section_maps_from_the_environment_and_is_validated() {
        assert_eq!(
            env_key("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES").as_deref(),
            Some("webhooks.allow_private_addresses")
        );
        let config = Config::default();
        assert!(!config.webhooks.allow_http && !config.webhooks.allow_private_addresses);
        assert_eq!(config.webhooks.max_age_secs, 24 * 3600);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[webhooks]\nconcurrency = 0\n").unwrap();
        assert!(Config::load_from(Some(&path)).is_err());
        std::fs::write(&path, "[webhooks]\nallow_http = true\ntimeout_secs = 3\n").unwrap();
        let loaded = Config::load_from(Some(&path)).unwrap();
        assert!(loaded.webhooks.allow_http);
        assert_eq!(loaded.webhooks.timeout_secs, 3);
    }

    #[test]
    fn toml_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\n[http]\nmax_body_bytes = 4096\n",
        )
        .unwrap();
        let config = Config::load_from(Some(&path)).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9999");
        assert_eq!(config.http.max_body_bytes, 4096);
        assert_eq!(config.auth.issuer, "tsunagu");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[http]\nmax_body_byte = 4096\n").unwrap();
        assert!(Config::load_from(Some(&path)).is_err());
    }
}
