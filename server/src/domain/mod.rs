//! The rules: who may see and do what. Every api path reaches the data through here,
//! and the capabilities below can only be obtained by passing the checks — so a handler
//! that forgets to check does not compile.

pub mod access;
pub mod admin;
pub mod apps;
pub mod audit_reports;
pub mod auth;
mod commit;
mod convert;
pub mod directory;
pub mod error;
pub mod files;
pub mod group_admin;
pub mod groups;
pub mod invitations;
pub mod library;
pub mod live;
pub mod maintenance;
pub mod messages;
pub mod operator;
pub mod password;
pub mod search;
mod shared;
pub mod threads;
pub mod throttle;
pub mod tokens;
pub mod totp;
mod validate;
pub mod visibility;

use std::sync::Arc;

pub use access::{Member, RegionAdmin, Session};
pub use error::{DomainError, Result};

use crate::bus::Bus;
use crate::store::Store;
use shared::Shared;
use throttle::Throttle;
use tokens::TokenSigner;

/// Settings the rules need from configuration.
#[derive(Debug, Clone)]
pub struct DomainSettings {
    pub totp_issuer: String,
    /// Longest message body, in characters.
    pub max_message_chars: usize,
    /// Posts per user (REST and websocket together): refill per minute and burst.
    pub posts_per_minute: u32,
    pub posts_burst: u32,
    /// Third-party apps: token lifetime, token URL, default request rate.
    pub apps: apps::AppSettings,
}

/// The rules, as one service per area. Shared and cheap to clone; api handlers hold
/// this and nothing below it, so every read and write passes a service's checks.
///
/// Each service holds the store and bus ([`Shared`]) and only what is its own: the
/// token signer and sign-in throttle for accounts, the post queue and posting allowance
/// for messages, the blob store and keys for files.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<Services>,
}

struct Services {
    shared: Shared,
    accounts: auth::Accounts,
    admin: admin::Admin,
    apps: apps::Apps,
    operator: operator::Operator,
    groups: groups::Groups,
    group_admin: group_admin::GroupAdmin,
    directory: directory::Directory,
    invitations: invitations::Invitations,
    threads: threads::Threads,
    messages: messages::Messages,
    files: files::Files,
    library: library::Library,
    search: search::Search,
    maintenance: maintenance::Maintenance,
    audit_reports: audit_reports::AuditReports,
}

impl Domain {
    pub fn new(
        store: Store,
        signer: TokenSigner,
        throttle: Throttle,
        settings: DomainSettings,
        bus: Arc<dyn Bus>,
        files: files::FileServices,
    ) -> Self {
        let shared = Shared::new(store, bus);
        let keys = files.keys.clone();
        let blobs = Arc::new(files);
        let admin = admin::Admin::new(shared.clone());
        let groups = groups::Groups::new(shared.clone());
        let signer = Arc::new(signer);
        let app_limits = apps::limits::AppLimits::new(settings.apps.requests_per_minute);
        Domain {
            inner: Arc::new(Services {
                accounts: auth::Accounts::new(
                    shared.clone(),
                    signer.clone(),
                    throttle,
                    app_limits,
                    settings.totp_issuer.clone(),
                    keys,
                ),
                apps: apps::Apps::new(shared.clone(), signer, settings.apps.clone()),
                operator: operator::Operator::new(shared.clone(), admin.clone()),
                admin,
                invitations: invitations::Invitations::new(shared.clone(), groups.clone()),
                group_admin: group_admin::GroupAdmin::new(shared.clone(), groups.clone()),
                directory: directory::Directory::new(shared.clone()),
                groups,
                threads: threads::Threads::new(shared.clone()),
                messages: messages::Messages::new(shared.clone(), &settings),
                files: files::Files::new(shared.clone(), blobs.clone()),
                library: library::Library::new(shared.clone()),
                search: search::Search::new(shared.clone()),
                maintenance: maintenance::Maintenance::new(shared.clone(), blobs),
                audit_reports: audit_reports::AuditReports::new(shared.clone()),
                shared,
            }),
        }
    }

    /// Sign-in, tokens, the caller's own account.
    pub fn accounts(&self) -> &auth::Accounts {
        &self.inner.accounts
    }

    /// Region administration: organisations, users, policy.
    pub fn admin(&self) -> &admin::Admin {
        &self.inner.admin
    }

    /// Third-party apps: registration, secrets, the OAuth token grant.
    pub fn apps(&self) -> &apps::Apps {
        &self.inner.apps
    }

    /// What the operator's shell does: bootstrap, regions, account rescue.
    pub fn operator(&self) -> &operator::Operator {
        &self.inner.operator
    }

    /// Groups and their membership.
    pub fn groups(&self) -> &groups::Groups {
        &self.inner.groups
    }

    /// The region's groups as its administrators manage them (without their content).
    pub fn group_admin(&self) -> &group_admin::GroupAdmin {
        &self.inner.group_admin
    }

    /// The directory of professionals, organisations, one's own profile.
    pub fn directory(&self) -> &directory::Directory {
        &self.inner.directory
    }

    /// Invitation codes and join requests.
    pub fn invitations(&self) -> &invitations::Invitations {
        &self.inner.invitations
    }

    /// Threads (the main timeline and 内緒話) and what a user can see live.
    pub fn threads(&self) -> &threads::Threads {
        &self.inner.threads
    }

    /// Posting, the timeline, edits, reactions, receipts, typing.
    pub fn messages(&self) -> &messages::Messages {
        &self.inner.messages
    }

    /// Upload, metadata, download and deletion of files.
    pub fn files(&self) -> &files::Files {
        &self.inner.files
    }

    /// A group's file library.
    pub fn library(&self) -> &library::Library {
        &self.inner.library
    }

    /// Search over messages and file names.
    pub fn search(&self) -> &search::Search {
        &self.inner.search
    }

    /// Key rotation and the orphan sweep.
    pub fn maintenance(&self) -> &maintenance::Maintenance {
        &self.inner.maintenance
    }

    /// File-access and event reports, audit verification.
    pub fn audit_reports(&self) -> &audit_reports::AuditReports {
        &self.inner.audit_reports
    }

    /// The fan-out bus, for live connections to subscribe to.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        self.inner.shared.bus()
    }

    /// Starts the watch that closes this node's sockets of sessions revoked elsewhere
    /// and reloads those whose memberships changed (`live`).
    pub fn spawn_live_watch(&self) -> tokio::task::JoinHandle<()> {
        self.inner.shared.spawn_live_watch()
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        Ok(self.inner.shared.store().ping().await?)
    }

    /// Closes the database pool (shutdown).
    pub async fn close(&self) {
        self.inner.shared.store().close().await;
    }
}
